//! Internet checksum arithmetic (RFC 1071, RFC 1624).

/// The checksum after one 16-bit word of the covered data changes from `old` to `new`.
///
/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike eqn. 2) never yields 0xFFFF
/// for a header whose true sum is zero. All values are in host order of the big-endian words.
#[inline(always)]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The one's-complement checksum of `data` (big-endian words, odd length padded with zero).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Decrements an IPv4 TTL in place and patches the header checksum incrementally.
///
/// `hdr` starts at the IPv4 header; TTL is byte 8, protocol byte 9, checksum bytes 10–11.
#[inline(always)]
pub fn ipv4_decrement_ttl(ttl: &mut u8, proto: u8, check: &mut [u8; 2]) {
    let old = u16::from_be_bytes([*ttl, proto]);
    *ttl = ttl.wrapping_sub(1);
    let new = u16::from_be_bytes([*ttl, proto]);
    *check = update16(u16::from_be_bytes(*check), old, new).to_be_bytes();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ttl: u8, proto: u8, seed: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        for (i, b) in h.iter_mut().enumerate().skip(1) {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
        }
        h[8] = ttl;
        h[9] = proto;
        h[10] = 0;
        h[11] = 0;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn known_vector() {
        // The classic example header from RFC 1071 discussions (checksum 0xb861).
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn decrement_matches_full_recompute_for_every_ttl_and_proto() {
        for seed in 0..8u8 {
            for ttl in 1..=255u8 {
                for proto in [1u8, 6, 17, 47, 58, 132, 255] {
                    let mut h = header(ttl, proto, seed);
                    let (head, tail) = h.split_at_mut(9);
                    let mut check = [tail[1], tail[2]];
                    ipv4_decrement_ttl(&mut head[8], proto, &mut check);
                    tail[1..3].copy_from_slice(&check);
                    assert_eq!(h[8], ttl - 1);
                    assert_eq!(checksum(&h), 0, "ttl {ttl} proto {proto} seed {seed}");
                    let mut expect = h;
                    expect[10] = 0;
                    expect[11] = 0;
                    let full = checksum(&expect);
                    assert_eq!(u16::from_be_bytes([h[10], h[11]]), full);
                }
            }
        }
    }

    #[test]
    fn update_is_reversible() {
        for (c, o, n) in [
            (0x1234, 0x4011, 0x3f11),
            (0xffff, 0, 0xffff),
            (0, 0xffff, 0),
        ] {
            let c2 = update16(c, o, n);
            let back = update16(c2, n, o);
            // One's complement has two zeros; both encode the same sum.
            assert!(back == c || (back == 0 && c == 0xffff) || (back == 0xffff && c == 0));
        }
    }
}
