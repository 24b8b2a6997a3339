//! Replay protection: a sliding window over session sequence numbers (1024 wide, as
//! IPsec's ESN window and WireGuard's) and a per-origin highest-seen advert sequence.

use std::collections::HashMap;

use super::refusal::Refusal;

/// The window's width in sequence numbers.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Seen already.
    #[error("sequence {0} already seen")]
    Duplicate(u64),
    /// Left of the window: too old to tell, so refused.
    #[error("sequence {seq} is more than {WINDOW} behind {highest}")]
    TooOld { seq: u64, highest: u64 },
}

impl ReplayError {
    pub fn refusal(&self) -> Refusal {
        Refusal::ReplayWindow
    }
}

/// Which of the last [`WINDOW`] sequence numbers were seen. Bit `k` is `highest - k`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// Whether `seq` may be accepted; changes nothing (call [`Self::accept`] once the
    /// message it came with is authenticated).
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if seq > highest {
            return Ok(());
        }
        let back = highest - seq;
        if back >= WINDOW {
            return Err(ReplayError::TooOld { seq, highest });
        }
        if self.bit(back) {
            return Err(ReplayError::Duplicate(seq));
        }
        Ok(())
    }

    /// Checks and records `seq`.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        match self.highest {
            Some(h) if seq <= h => self.set(h - seq),
            Some(h) => {
                self.shift(seq - h);
                self.highest = Some(seq);
                self.set(0);
            }
            None => {
                self.highest = Some(seq);
                self.set(0);
            }
        }
        Ok(())
    }

    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(&self, back: u64) -> bool {
        let k = usize::try_from(back).expect("below WINDOW");
        self.bits[k / 64] >> (k % 64) & 1 == 1
    }

    fn set(&mut self, back: u64) {
        let k = usize::try_from(back).expect("below WINDOW");
        self.bits[k / 64] |= 1 << (k % 64);
    }

    /// Moves every seen bit `n` further back (the highest grew by `n`).
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let n = usize::try_from(n).expect("below WINDOW");
        let (words, bits) = (n / 64, n % 64);
        for w in (0..WORDS).rev() {
            let mut v = 0;
            if w >= words {
                v = self.bits[w - words] << bits;
                if bits > 0 && w > words {
                    v |= self.bits[w - words - 1] >> (64 - bits);
                }
            }
            self.bits[w] = v;
        }
    }
}

/// Why an advert's sequence number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    /// The same sequence number as the newest accepted from this origin.
    #[error("advert {origin} seq {seq} already accepted")]
    Replayed { origin: String, seq: u64 },
    /// Older than the newest accepted from this origin.
    #[error("advert {origin} seq {seq} older than {highest}")]
    Stale {
        origin: String,
        seq: u64,
        highest: u64,
    },
}

impl SeqError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Replayed { .. } => Refusal::Replay,
            Self::Stale { .. } => Refusal::Stale,
        }
    }
}

/// The highest advert sequence accepted per origin.
#[derive(Debug, Clone, Default)]
pub struct OriginTracker {
    highest: HashMap<String, u64>,
}

impl OriginTracker {
    pub fn check(&self, origin: &str, seq: u64) -> Result<(), SeqError> {
        match self.highest.get(origin) {
            Some(&h) if seq == h => Err(SeqError::Replayed {
                origin: origin.to_owned(),
                seq,
            }),
            Some(&h) if seq < h => Err(SeqError::Stale {
                origin: origin.to_owned(),
                seq,
                highest: h,
            }),
            _ => Ok(()),
        }
    }

    pub fn accept(&mut self, origin: &str, seq: u64) -> Result<(), SeqError> {
        self.check(origin, seq)?;
        self.highest.insert(origin.to_owned(), seq);
        Ok(())
    }

    pub fn highest(&self, origin: &str) -> Option<u64> {
        self.highest.get(origin).copied()
    }

    /// Forgets an origin (its advert aged out of the LSDB).
    pub fn forget(&mut self, origin: &str) {
        self.highest.remove(origin);
    }

    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn window_accepts_in_window_once_and_refuses_the_rest() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(5), Ok(()), "first");
        assert_eq!(w.accept(5), Err(ReplayError::Duplicate(5)), "duplicate");
        assert_eq!(w.accept(3), Ok(()), "reordered within the window");
        assert_eq!(
            w.accept(3),
            Err(ReplayError::Duplicate(3)),
            "reordered duplicate"
        );
        assert_eq!(
            w.accept(5 + WINDOW - 1),
            Ok(()),
            "jump to the window's edge"
        );
        assert_eq!(
            w.check(5),
            Err(ReplayError::Duplicate(5)),
            "5 still remembered at the edge"
        );
        assert_eq!(w.accept(5 + WINDOW), Ok(()), "one more");
        assert_eq!(
            w.check(5),
            Err(ReplayError::TooOld {
                seq: 5,
                highest: 5 + WINDOW
            }),
            "slid out of the window"
        );
        assert_eq!(w.check(6), Ok(()), "unseen, at the window's far end");
        assert_eq!(w.accept(1_000_000), Ok(()), "a far jump clears the window");
        assert_eq!(w.check(1_000_000 - 1), Ok(()), "new neighbour unseen");
        assert_eq!(
            w.check(1_000_000 - WINDOW),
            Err(ReplayError::TooOld {
                seq: 1_000_000 - WINDOW,
                highest: 1_000_000
            }),
            "just outside"
        );
    }

    /// The bitmap agrees with a plain set over random, reordered and repeated sequences.
    #[test]
    fn window_matches_a_reference_model() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        for _ in 0..20_000 {
            let seq = match rng.random_range(0..10) {
                0 => top + rng.random_range(1..3000),
                1..=6 => top.saturating_sub(rng.random_range(0..1100)),
                _ => top + rng.random_range(0..4),
            };
            let want = if seen.is_empty() || seq > top {
                Ok(())
            } else if top - seq >= WINDOW {
                Err(ReplayError::TooOld { seq, highest: top })
            } else if seen.contains(&seq) {
                Err(ReplayError::Duplicate(seq))
            } else {
                Ok(())
            };
            let got = w.accept(seq);
            assert_eq!(got, want, "seq {seq} with highest {top}");
            if got.is_ok() {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }

    #[test]
    fn origins_refuse_replayed_and_stale() {
        let mut t = OriginTracker::default();
        assert_eq!(t.accept("a", 5), Ok(()), "first");
        assert_eq!(
            t.accept("a", 5).map_err(|e| e.refusal()),
            Err(Refusal::Replay),
            "same seq"
        );
        assert_eq!(
            t.accept("a", 4).map_err(|e| e.refusal()),
            Err(Refusal::Stale),
            "older seq"
        );
        assert_eq!(t.accept("b", 1), Ok(()), "other origin independent");
        assert_eq!(t.accept("a", 6), Ok(()), "newer");
        assert_eq!(t.highest("a"), Some(6), "highest tracked");
    }
}
