//! Why the secure layer refused something, counted per reason, and a limiter so a
//! misbehaving peer is logged once per interval rather than once per packet. Pure: the
//! caller passes the time.

use std::collections::HashMap;

use serde::Serialize;

macro_rules! refusals {
    ($($(#[doc = $doc:literal])* $name:ident => $label:literal,)*) => {
        /// A refusal reason; `as_str` is the stable Prometheus label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Refusal {
            $($(#[doc = $doc])* $name,)*
        }

        impl Refusal {
            /// Every reason, in label order of declaration.
            pub const ALL: &'static [Refusal] = &[$(Refusal::$name,)*];

            /// The label value, stable across releases.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Refusal::$name => $label,)*
                }
            }
        }
    };
}

refusals! {
    /// Bytes that do not parse as the structure they claim to be.
    Malformed => "malformed",
    /// A length field beyond its bound.
    Oversized => "oversized",
    /// A format or protocol version we do not speak.
    Version => "version",
    /// A suite we do not know.
    UnsupportedSuite => "unsupported_suite",
    /// A suite weaker than the one we require.
    Downgrade => "downgrade",
    /// A SPIFFE ID that is not valid per the SPIFFE ID spec, or not a node ID.
    BadSpiffeId => "bad_spiffe_id",
    /// A certificate of another trust domain.
    WrongTrustDomain => "wrong_trust_domain",
    /// A certificate issued by an authority we do not trust.
    ForeignAuthority => "foreign_authority",
    /// A certificate whose authority signature does not verify.
    BadCertSignature => "bad_cert_signature",
    /// A certificate past its not-after.
    Expired => "expired",
    /// A certificate before its not-before.
    NotYetValid => "not_yet_valid",
    /// A certificate whose serial is on the revocation list.
    Revoked => "revoked",
    /// A transcript or advert signature that does not verify.
    BadSignature => "bad_signature",
    /// A key-confirmation MAC that does not verify.
    BadMac => "bad_mac",
    /// A responder cookie token that does not decrypt or has expired.
    BadToken => "bad_token",
    /// A handshake message that was already accepted.
    Replay => "replay",
    /// A handshake message sent back to its author.
    Reflected => "reflected",
    /// A peer other than the one we dialled.
    WrongPeer => "wrong_peer",
    /// A handshake message out of order.
    UnexpectedMessage => "unexpected_message",
    /// A message or advert older than we accept.
    Stale => "stale",
    /// A session message already seen, or left of the replay window.
    ReplayWindow => "replay_window",
    /// A session message whose AEAD tag does not verify.
    Decrypt => "decrypt",
    /// An advert whose origin is not the node its certificate names.
    OriginMismatch => "origin_mismatch",
    /// An advert naming a certificate serial we have not seen.
    UnknownCert => "unknown_cert",
    /// A local failure (randomness, the PQ library), not the peer's fault.
    Internal => "internal",
    /// A source opened handshakes faster than the listener allows.
    RateLimited => "rate_limited",
    /// A control message that must be sealed came in the clear.
    Unauthenticated => "unauthenticated",
    /// A sealed message from an address we have no session with.
    NoSession => "no_session",
}

/// Refusals counted per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefusalCounts {
    counts: HashMap<Refusal, u64>,
}

impl RefusalCounts {
    pub fn record(&mut self, reason: Refusal) {
        *self.counts.entry(reason).or_default() += 1;
    }

    pub fn get(&self, reason: Refusal) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Every reason with its count (zeros included, so a scrape shows every series).
    pub fn iter(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

/// Says whether to log a refusal from a peer: at most once per interval per peer, with
/// the number suppressed since. The peer table is bounded: past `max_peers` the entries
/// not logged for an interval are dropped, and if none is, new peers share one entry.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval_ms: u64,
    max_peers: usize,
    peers: HashMap<String, (u64, u64)>,
}

/// The entry unknown peers share when the table is full of recent ones.
const OVERFLOW: &str = "<others>";

impl LogLimiter {
    pub fn new(interval_ms: u64, max_peers: usize) -> Self {
        Self {
            interval_ms,
            max_peers: max_peers.max(1),
            peers: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when this event should be logged (with how many were not since
    /// the last one), `None` when it should not.
    pub fn check(&mut self, peer: &str, now_ms: u64) -> Option<u64> {
        let interval = self.interval_ms;
        if !self.peers.contains_key(peer) && self.peers.len() >= self.max_peers {
            self.peers
                .retain(|_, (last, _)| now_ms.saturating_sub(*last) < interval);
        }
        let key = if self.peers.contains_key(peer) || self.peers.len() < self.max_peers {
            peer
        } else {
            OVERFLOW
        };
        match self.peers.get_mut(key) {
            Some((last, suppressed)) if now_ms.saturating_sub(*last) < interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now_ms;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.peers.insert(key.to_owned(), (now_ms, 0));
                Some(0)
            }
        }
    }

    /// How many peers the limiter tracks.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Refusal::ALL {
            let l = r.as_str();
            assert!(seen.insert(l), "label {l} used twice");
            assert!(
                l.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "label {l} is not a valid Prometheus label value style"
            );
            assert_eq!(
                serde_json::to_value(r).expect("serializes"),
                serde_json::Value::String(l.to_owned()),
                "serde and as_str disagree for {r:?}"
            );
        }
    }

    #[test]
    fn counts_per_reason() {
        let mut c = RefusalCounts::default();
        c.record(Refusal::BadMac);
        c.record(Refusal::BadMac);
        c.record(Refusal::Expired);
        assert_eq!(c.get(Refusal::BadMac), 2, "two MAC refusals");
        assert_eq!(c.get(Refusal::Revoked), 0, "no revocations");
        assert_eq!(c.total(), 3, "three in all");
        assert_eq!(c.iter().count(), Refusal::ALL.len(), "every series listed");
    }

    #[test]
    fn logs_once_per_peer_per_interval() {
        let mut l = LogLimiter::new(1_000, 2);
        assert_eq!(l.check("a", 0), Some(0), "first event logs");
        assert_eq!(l.check("a", 10), None, "second within interval suppressed");
        assert_eq!(l.check("a", 20), None, "third suppressed");
        assert_eq!(l.check("b", 20), Some(0), "another peer logs on its own");
        assert_eq!(
            l.check("a", 1_000),
            Some(2),
            "after the interval, with the count"
        );
        // The table is full of recent peers: a third shares the overflow entry.
        assert_eq!(l.check("c", 1_001), Some(0), "overflow entry logs first");
        assert_eq!(l.check("d", 1_002), None, "and then limits everyone new");
        assert!(l.len() <= 3, "bounded table: {}", l.len());
        // Much later, stale entries make room again.
        assert_eq!(l.check("e", 10_000), Some(0), "room after expiry");
        assert!(l.len() <= 3, "still bounded: {}", l.len());
    }
}
