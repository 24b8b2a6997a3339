//! The control messages and their framing:
//!
//! ```text
//! magic "X06C" | version u8 | kind u8 | body length u16 (big-endian) | body (JSON)
//! ```
//!
//! The kind byte lets a receiver refuse what it does not know before parsing the body.

use serde::{Deserialize, Serialize};

use crate::{config::MacAddr, detect::live::Report, routing::Lsa};

const MAGIC: [u8; 4] = *b"X06C";
const VERSION: u8 = 1;
const HEADER: usize = 8;
/// The largest frame we send or accept (a UDP datagram, fragmented by IPv6 if need be).
pub const MAX_FRAME: usize = crate::secure::advert::MAX_ADVERT;

const KIND_HELLO: u8 = 1;
const KIND_LSA: u8 = 2;
const KIND_REPORT: u8 = 3;
const KIND_SIGNED_LSA: u8 = 4;

/// Sent on every mesh interface every hello interval: who we are there, and whom we hear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node: String,
    /// The sender's MAC on this link: the destination for frames and probes to it.
    pub mac: MacAddr,
    /// Neighbours the sender has heard on this link recently: seeing ourselves listed
    /// makes the adjacency two-way.
    pub heard: Vec<String>,
    pub hello_interval_ms: u64,
    /// The sender restarted and is relearning its neighbours: a hello that does not list
    /// us yet keeps a two-way adjacency rather than ending it.
    #[serde(default)]
    pub restarting: bool,
}

/// One control message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Hello(Hello),
    Lsa(Lsa),
    /// A node's counters for anomaly detection, flooded once per detection window.
    Report(Report),
    /// A link-state advert signed by its origin (`secure::advert` encoding, carried as
    /// is so that every node can verify it and pass it on unchanged).
    SignedLsa(Vec<u8>),
}

/// Why bytes were not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the header or than the length it announces.
    #[error("truncated: {got} bytes, need {need}")]
    Truncated { got: usize, need: usize },
    /// Not ours at all.
    #[error("bad magic")]
    Magic,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// A kind this build does not know.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// Bytes after the announced body.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The body is not the message it claims to be.
    #[error("malformed body: {0}")]
    Body(String),
    /// The message would not fit in one frame.
    #[error("message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
}

/// Frames a message.
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let (kind, body) = match msg {
        Message::SignedLsa(b) => (KIND_SIGNED_LSA, Ok(b.clone())),
        Message::Hello(h) => (KIND_HELLO, serde_json::to_vec(h)),
        Message::Lsa(l) => (KIND_LSA, serde_json::to_vec(l)),
        Message::Report(r) => (KIND_REPORT, serde_json::to_vec(r)),
    };
    let body = body.map_err(|e| FrameError::Body(e.to_string()))?;
    let len = u16::try_from(body.len())
        .ok()
        .filter(|_| HEADER + body.len() <= MAX_FRAME)
        .ok_or(FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses one frame; anything but exactly one well-formed message is an error.
pub fn decode(bytes: &[u8]) -> Result<Message, FrameError> {
    if bytes.len() < HEADER {
        return Err(FrameError::Truncated {
            got: bytes.len(),
            need: HEADER,
        });
    }
    if bytes[..4] != MAGIC {
        return Err(FrameError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(FrameError::Version(bytes[4]));
    }
    let kind = bytes[5];
    let len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    let need = HEADER + len;
    if bytes.len() < need {
        return Err(FrameError::Truncated {
            got: bytes.len(),
            need,
        });
    }
    if bytes.len() > need {
        return Err(FrameError::Trailing(bytes.len() - need));
    }
    let body = &bytes[HEADER..];
    let bad = |e: serde_json::Error| FrameError::Body(e.to_string());
    match kind {
        KIND_HELLO => serde_json::from_slice(body)
            .map(Message::Hello)
            .map_err(bad),
        KIND_LSA => serde_json::from_slice(body).map(Message::Lsa).map_err(bad),
        KIND_SIGNED_LSA => Ok(Message::SignedLsa(body.to_vec())),
        KIND_REPORT => serde_json::from_slice(body)
            .map(Message::Report)
            .map_err(bad),
        other => Err(FrameError::Kind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LsaLink;

    fn lsa() -> Message {
        Message::Lsa(Lsa {
            origin: "n1".into(),
            seq: 42,
            age_ms: 7,
            links: vec![LsaLink {
                neighbor: "n2".into(),
                cost: 10,
            }],
            prefixes: vec!["10.255.0.1/32".parse().expect("a prefix")],
        })
    }

    fn hello() -> Message {
        Message::Hello(Hello {
            node: "n2".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            heard: vec!["n1".into()],
            hello_interval_ms: 100,
            restarting: false,
        })
    }

    fn report() -> Message {
        use crate::detect::live::{LinkCounters, NodeCounters};
        Message::Report(Report {
            origin: "n3".into(),
            seq: 9,
            slot_ms: 12_000,
            at_ms: 12_345,
            node: NodeCounters {
                rx: 100,
                forwarded: 90,
                ..NodeCounters::default()
            },
            links: vec![LinkCounters {
                neighbor: "n1".into(),
                tx: 90,
                rtt_ms: 0.25,
                ..LinkCounters::default()
            }],
        })
    }

    #[test]
    fn round_trips() {
        for m in [lsa(), hello(), report(), Message::SignedLsa(vec![1, 2, 3])] {
            let bytes = encode(&m).expect("encodes");
            assert_eq!(decode(&bytes).expect("decodes"), m);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = encode(&lsa()).expect("encodes");
        for n in 0..bytes.len() {
            assert!(
                decode(&bytes[..n]).is_err(),
                "a {n}-byte prefix was accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(FrameError::Trailing(1)));
    }

    #[test]
    fn header_fields_are_checked() {
        let bytes = encode(&hello()).expect("encodes");
        let mut b = bytes.clone();
        b[0] ^= 1;
        assert_eq!(decode(&b), Err(FrameError::Magic));
        let mut b = bytes.clone();
        b[4] = 9;
        assert_eq!(decode(&b), Err(FrameError::Version(9)));
        let mut b = bytes.clone();
        b[5] = 77;
        assert_eq!(decode(&b), Err(FrameError::Kind(77)));
        let mut b = bytes;
        // A hello body under the advert kind is malformed, not misread.
        b[5] = KIND_LSA;
        assert!(matches!(decode(&b), Err(FrameError::Body(_))));
    }

    #[test]
    fn flipped_body_bytes_never_panic() {
        for m in [lsa(), hello(), report(), Message::SignedLsa(vec![7; 64])] {
            let bytes = encode(&m).expect("encodes");
            for i in HEADER..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    // Either refused or a different, well-formed message; never a panic.
                    if let Ok(Message::Report(r)) = decode(&b) {
                        let _ = r.validate();
                    }
                }
            }
        }
    }
}
