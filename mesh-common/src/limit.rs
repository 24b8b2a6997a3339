//! What a `BLOCKLIST` entry does to one frame: nothing once expired, drop it (a block), or
//! let it through while its token bucket holds a token (a rate limit). Shared by XDP and
//! the tests that check the arithmetic.

use crate::{
    Reason,
    telemetry::{BLOCK_PREFIX, BLOCK_PREFIX_V4, BLOCK_PREFIX_V6, BlockEntry, BlockKey, TOKEN},
};

/// The longest gap a bucket is filled for at once: enough to fill any burst, and small
/// enough that `gap x rate` cannot overflow.
const MAX_GAP_NS: u64 = 10_000_000_000;

/// The entry's verdict on a frame at `now_ns` (coarse CLOCK_MONOTONIC), taking its token.
#[inline(always)]
pub fn admit(e: &mut BlockEntry, now_ns: u64) -> Result<(), Reason> {
    if now_ns >= e.expires_ns {
        return Ok(());
    }
    if e.rate_pps == 0 {
        return Err(Reason::DropBlocked);
    }
    let gap = now_ns.saturating_sub(e.last_ns);
    let gap = if gap > MAX_GAP_NS { MAX_GAP_NS } else { gap };
    let cap = u64::from(e.burst.max(1)) * TOKEN;
    let mut tokens = e.tokens.saturating_add(gap * u64::from(e.rate_pps));
    if tokens > cap {
        tokens = cap;
    }
    e.last_ns = now_ns;
    if tokens < TOKEN {
        e.tokens = tokens;
        return Err(Reason::DropRateLimited);
    }
    e.tokens = tokens - TOKEN;
    Ok(())
}

/// Turns a source's key into its prefix's key, in place.
#[inline(always)]
pub fn to_prefix(k: &mut BlockKey) {
    if k.family == 4 {
        k.src[0] &= u32::from_ne_bytes([0xff, 0xff, 0xff, 0]);
    }
    k.src[2] = 0;
    k.src[3] = 0;
    k.family |= BLOCK_PREFIX;
}

/// The prefix length of a prefix key's family (without [`BLOCK_PREFIX`]).
pub const fn prefix_len(family: u32) -> u32 {
    if family == 4 {
        BLOCK_PREFIX_V4
    } else {
        BLOCK_PREFIX_V6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate_pps: u32, burst: u32) -> BlockEntry {
        BlockEntry {
            expires_ns: u64::MAX,
            rate_pps,
            burst,
            tokens: u64::from(burst) * TOKEN,
            last_ns: 0,
        }
    }

    /// Frames let through out of `n` offered evenly over `secs` seconds.
    fn passed(e: &mut BlockEntry, n: u64, secs: u64) -> u64 {
        let step = secs * 1_000_000_000 / n;
        (0..n).filter(|i| admit(e, 1 + i * step).is_ok()).count() as u64
    }

    #[test]
    fn a_limit_lets_its_rate_and_burst_through_and_a_slower_source_all() {
        // 1,000/s offered for 10 s against 100/s with a burst of 20.
        let mut e = limit(100, 20);
        let p = passed(&mut e, 10_000, 10);
        assert!((1000..=1021).contains(&p), "{p}");
        // Under the limit: everything.
        let mut e = limit(100, 20);
        assert_eq!(passed(&mut e, 500, 10), 500);
        // A block drops all; an expired entry nothing.
        let mut b = limit(0, 0);
        assert_eq!(admit(&mut b, 5), Err(Reason::DropBlocked));
        b.expires_ns = 5;
        assert_eq!(admit(&mut b, 5), Ok(()));
        // A long quiet spell refills to the burst, never more, and does not overflow.
        let mut e = limit(4_000_000, 3);
        e.tokens = 0;
        e.last_ns = 0;
        let t = u64::MAX / 2;
        assert!((0..3).all(|_| admit(&mut e, t).is_ok()));
        assert_eq!(admit(&mut e, t), Err(Reason::DropRateLimited));
    }

    #[test]
    fn prefix_keys_mask_the_host_part() {
        let mut k = BlockKey {
            src: [u32::from_ne_bytes([10, 0, 1, 77]), 0, 0, 0],
            family: 4,
        };
        to_prefix(&mut k);
        assert_eq!(k.src[0].to_ne_bytes(), [10, 0, 1, 0]);
        assert_eq!(k.family, 4 | BLOCK_PREFIX);
        let mut k = BlockKey {
            src: [1, 2, 3, 4],
            family: 6,
        };
        to_prefix(&mut k);
        assert_eq!((k.src, k.family), ([1, 2, 0, 0], 6 | BLOCK_PREFIX));
        assert_eq!((prefix_len(4), prefix_len(6)), (24, 64));
    }
}
