//! The ECMP flow hash: murmur3's 32-bit mixing, cheap enough for every packet.

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The inputs that identify a flow for path selection.
///
/// Addresses are the raw network-order bytes read as native `u32` words; IPv4 uses word 0.
/// Fragments carry zero ports so all fragments of a datagram take one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTuple {
    /// Source address words; IPv4 in word 0, the rest zero.
    pub src: [u32; 4],
    /// Destination address words; IPv4 in word 0, the rest zero.
    pub dst: [u32; 4],
    /// IP protocol: IPv4's, or for IPv6 the next header after the extension headers skipped.
    pub proto: u8,
    /// Transport source port in host byte order; 0 for fragments and portless protocols.
    pub src_port: u16,
    /// Transport destination port in host byte order; 0 for fragments and portless protocols.
    pub dst_port: u16,
}

impl FlowTuple {
    /// A well-mixed 32-bit hash; equal tuples give equal hashes for one seed.
    #[inline(always)]
    pub fn hash(&self, seed: u32) -> u32 {
        let mut h = seed;
        h = mix(h, self.src[0]);
        h = mix(h, self.src[1]);
        h = mix(h, self.src[2]);
        h = mix(h, self.src[3]);
        h = mix(h, self.dst[0]);
        h = mix(h, self.dst[1]);
        h = mix(h, self.dst[2]);
        h = mix(h, self.dst[3]);
        h = mix(h, ((self.src_port as u32) << 16) | self.dst_port as u32);
        h = mix(h, self.proto as u32);
        finish(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(i: u32) -> FlowTuple {
        FlowTuple {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0x0a00_0102u32.to_be(), 0, 0, 0],
            proto: 17,
            src_port: 10_000 + (i as u16),
            dst_port: 5201,
        }
    }

    #[test]
    fn same_tuple_same_hash() {
        assert_eq!(tuple(7).hash(1), tuple(7).hash(1));
        assert_ne!(tuple(7).hash(1), tuple(7).hash(2));
    }

    #[test]
    fn spreads_source_ports_evenly_over_members() {
        for members in 2..=8u32 {
            let mut bins = [0u32; 8];
            let n = 8_000;
            for i in 0..n {
                bins[(tuple(i).hash(0x5eed) % members) as usize] += 1;
            }
            let expect = n / members;
            for (m, &b) in bins.iter().take(members as usize).enumerate() {
                assert!(
                    b > expect * 8 / 10 && b < expect * 12 / 10,
                    "{members} members: member {m} got {b}, expected about {expect}"
                );
            }
        }
    }
}
