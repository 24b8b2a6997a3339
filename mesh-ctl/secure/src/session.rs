//! The session envelope: frames (the agent's control frames, opaque here) sealed with
//! ChaCha20-Poly1305, one key per direction, a sequence number and a 1024-wide replay
//! window. Authentication wraps the framing; routing never sees it.
//!
//! ```text
//! "X06E" | version u8 = 1 | epoch u32 | seq u64 | ciphertext | tag [16]
//! ```
//!
//! The 17-byte header is the AEAD's associated data and `epoch | seq` its nonce, so a
//! nonce never repeats under a key. 33 bytes of overhead per message. The sender moves to
//! the next epoch (key = HKDF-Expand(key, "rekey"), the old one wiped) when the policy's
//! interval or byte count is reached; the receiver follows on the first authenticated
//! message of the next epoch. The ratchet gives forward secrecy between epochs; a fresh
//! handshake (for post-compromise security) is the agent's call.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{
    refusal::Refusal,
    replay::{ReplayError, ReplayWindow},
};

const MAGIC: [u8; 4] = *b"X06E";

/// Whether bytes claim to be an envelope (opening decides whether they are one).
pub fn is_envelope(b: &[u8]) -> bool {
    b.len() >= 4 && b[..4] == MAGIC
}
const VERSION: u8 = 1;
/// Header bytes before the ciphertext.
pub const HEADER: usize = 4 + 1 + 4 + 8;
/// Bytes an envelope adds to the frame it carries.
pub const OVERHEAD: usize = HEADER + 16;
/// Epochs a receiver will ratchet forward in one go (all messages of the ones between lost).
const MAX_EPOCH_SKIP: u32 = 4;

/// Which end of the handshake we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// When the sender moves to a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyPolicy {
    pub interval_ms: u64,
    pub bytes: u64,
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        Self {
            interval_ms: 120_000,
            bytes: 1 << 30,
        }
    }
}

/// Why an envelope was refused or could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Shorter than a header and tag.
    #[error("envelope of {0} bytes is too short")]
    Truncated(usize),
    /// Not an envelope.
    #[error("bad envelope magic")]
    Magic,
    /// An envelope version we do not speak.
    #[error("envelope version {0}")]
    Version(u8),
    /// An epoch we already left, or too far ahead.
    #[error("epoch {got}, current {current}")]
    Epoch { got: u32, current: u32 },
    /// A sequence number already seen or left of the window.
    #[error("{0}")]
    Replay(#[from] ReplayError),
    /// The tag does not verify: tampered, or not under this session's key.
    #[error("authentication failed")]
    Decrypt,
    /// The key's epochs are used up: a new handshake is needed.
    #[error("session exhausted, handshake again")]
    Exhausted,
}

impl SessionError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Truncated(_) | Self::Magic => Refusal::Malformed,
            Self::Version(_) => Refusal::Version,
            Self::Epoch { .. } => Refusal::Stale,
            Self::Replay(e) => e.refusal(),
            Self::Decrypt => Refusal::Decrypt,
            Self::Exhausted => Refusal::Internal,
        }
    }
}

fn next_key(key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::from_prk(key).expect("32-byte key");
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(b"x0tta6bl4/session/v1 rekey", &mut out[..])
        .expect("32 bytes is a valid HKDF length");
    out
}

fn nonce(epoch: u32, seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&epoch.to_be_bytes());
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// One direction's key and where it is. The cipher holds a copy of the key (wiped on
/// drop by the crate) so it is not set up per message.
struct Send {
    key: Zeroizing<[u8; 32]>,
    cipher: ChaCha20Poly1305,
    epoch: u32,
    next_seq: u64,
    bytes: u64,
    since_ms: u64,
}

struct Recv {
    key: Zeroizing<[u8; 32]>,
    cipher: ChaCha20Poly1305,
    epoch: u32,
    window: ReplayWindow,
}

/// An established session with one peer.
pub struct Session {
    send: Send,
    recv: Recv,
    policy: RekeyPolicy,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("send_epoch", &self.send.epoch)
            .field("next_seq", &self.send.next_seq)
            .field("recv_epoch", &self.recv.epoch)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(
        send: Zeroizing<[u8; 32]>,
        recv: Zeroizing<[u8; 32]>,
        policy: RekeyPolicy,
        now_ms: u64,
    ) -> Self {
        Self {
            send: Send {
                cipher: ChaCha20Poly1305::new((&*send).into()),
                key: send,
                epoch: 0,
                next_seq: 0,
                bytes: 0,
                since_ms: now_ms,
            },
            recv: Recv {
                cipher: ChaCha20Poly1305::new((&*recv).into()),
                key: recv,
                epoch: 0,
                window: ReplayWindow::default(),
            },
            policy,
        }
    }

    /// The sender's current epoch (how many times it rekeyed).
    pub fn send_epoch(&self) -> u32 {
        self.send.epoch
    }

    pub fn recv_epoch(&self) -> u32 {
        self.recv.epoch
    }

    /// Whether the next seal moves to a new key.
    pub fn needs_rekey(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.send.since_ms) >= self.policy.interval_ms
            || self.send.bytes >= self.policy.bytes
            || self.send.next_seq == u64::MAX
    }

    /// Moves the sending side to the next epoch now; the old key is wiped.
    pub fn rekey(&mut self, now_ms: u64) -> Result<(), SessionError> {
        let epoch = self
            .send
            .epoch
            .checked_add(1)
            .ok_or(SessionError::Exhausted)?;
        self.send.key = next_key(&self.send.key);
        self.send.cipher = ChaCha20Poly1305::new((&*self.send.key).into());
        self.send.epoch = epoch;
        self.send.next_seq = 0;
        self.send.bytes = 0;
        self.send.since_ms = now_ms;
        Ok(())
    }

    /// Seals a frame.
    pub fn seal(&mut self, frame: &[u8], now_ms: u64) -> Result<Vec<u8>, SessionError> {
        if self.needs_rekey(now_ms) {
            self.rekey(now_ms)?;
        }
        let seq = self.send.next_seq;
        let mut out = Vec::with_capacity(OVERHEAD + frame.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.send.epoch.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        let ct = self
            .send
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce(self.send.epoch, seq)),
                Payload {
                    msg: frame,
                    aad: &out,
                },
            )
            .map_err(|_| SessionError::Decrypt)?;
        out.extend_from_slice(&ct);
        self.send.next_seq += 1;
        self.send.bytes = self.send.bytes.saturating_add(frame.len() as u64);
        Ok(out)
    }

    /// Opens an envelope: the frame inside, once authenticated and not replayed.
    pub fn open(&mut self, envelope: &[u8]) -> Result<Vec<u8>, SessionError> {
        if envelope.len() < OVERHEAD {
            return Err(SessionError::Truncated(envelope.len()));
        }
        if envelope[..4] != MAGIC {
            return Err(SessionError::Magic);
        }
        if envelope[4] != VERSION {
            return Err(SessionError::Version(envelope[4]));
        }
        let epoch = u32::from_be_bytes(envelope[5..9].try_into().expect("4 bytes"));
        let seq = u64::from_be_bytes(envelope[9..17].try_into().expect("8 bytes"));
        let current = self.recv.epoch;
        let ahead = epoch.wrapping_sub(current);
        if epoch < current || ahead > MAX_EPOCH_SKIP {
            return Err(SessionError::Epoch {
                got: epoch,
                current,
            });
        }
        // A later epoch starts a fresh window: check this one only within the current.
        if ahead == 0 {
            self.recv.window.check(seq)?;
        }
        let nonce = nonce(epoch, seq);
        let payload = Payload {
            msg: &envelope[HEADER..],
            aad: &envelope[..HEADER],
        };
        let plain = if ahead == 0 {
            self.recv.cipher.decrypt(Nonce::from_slice(&nonce), payload)
        } else {
            let mut key = Zeroizing::new(*self.recv.key);
            for _ in 0..ahead {
                key = next_key(&key);
            }
            let cipher = ChaCha20Poly1305::new((&*key).into());
            let plain = cipher.decrypt(Nonce::from_slice(&nonce), payload);
            // Only an authenticated message moves the receiver to the new epoch.
            if plain.is_ok() {
                self.recv.key = key;
                self.recv.cipher = cipher;
                self.recv.epoch = epoch;
                self.recv.window = ReplayWindow::default();
            }
            plain
        }
        .map_err(|_| SessionError::Decrypt)?;
        self.recv.window.accept(seq)?;
        Ok(plain)
    }
}

/// A pair of sessions over fresh random keys, for tests and the benchmark (feature
/// `fixture`).
#[cfg(any(test, feature = "fixture"))]
pub fn pair(policy: RekeyPolicy, now_ms: u64) -> (Session, Session) {
    let a = Zeroizing::new(rand::random::<[u8; 32]>());
    let b = Zeroizing::new(rand::random::<[u8; 32]>());
    (
        Session::new(a.clone(), b.clone(), policy, now_ms),
        Session::new(b, a, policy, now_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a control frame: the envelope is blind to what it carries.
    const FRAME: &[u8] = b"X06C\x01\x01 a control frame's bytes";

    #[test]
    fn wraps_frames() {
        let (mut a, mut b) = pair(RekeyPolicy::default(), 0);
        let env = a.seal(FRAME, 1).expect("seals");
        assert_eq!(
            env.len(),
            FRAME.len() + OVERHEAD,
            "overhead is {OVERHEAD} bytes"
        );
        assert_eq!(b.open(&env).expect("opens").as_slice(), FRAME, "same bytes");
        let back = b.seal(FRAME, 2).expect("seals");
        assert_eq!(
            a.open(&back).expect("opens").as_slice(),
            FRAME,
            "other direction"
        );
    }

    #[test]
    fn replayed_reordered_and_tampered_are_refused() {
        let (mut a, mut b) = pair(RekeyPolicy::default(), 0);
        let envs: Vec<_> = (0..1100)
            .map(|i| a.seal(&[i as u8; 20], 0).expect("seals"))
            .collect();
        b.open(&envs[5]).expect("first");
        assert_eq!(
            b.open(&envs[5]).map_err(|e| e.refusal()),
            Err(Refusal::ReplayWindow),
            "replayed"
        );
        b.open(&envs[2]).expect("reordered within window");
        b.open(&envs[1099]).expect("far ahead");
        assert_eq!(
            b.open(&envs[10]).map_err(|e| e.refusal()),
            Err(Refusal::ReplayWindow),
            "reordered outside the window"
        );
        b.open(&envs[1000]).expect("reordered inside the window");
        let mut counts = super::super::refusal::RefusalCounts::default();
        let good = &envs[1050];
        for i in 0..good.len() {
            let mut e = good.clone();
            e[i] ^= 0x01;
            let got = b.open(&e).expect_err("tampered envelope opened").refusal();
            counts.record(got);
            let want = match i {
                0..4 => Refusal::Malformed,
                4 => Refusal::Version,
                5..9 => Refusal::Stale,
                _ => Refusal::Decrypt,
            };
            // A flipped low epoch bit lands in a later epoch, which fails the tag.
            let want = if i == 8 { Refusal::Decrypt } else { want };
            assert_eq!(got, want, "flip at byte {i}");
        }
        assert_eq!(
            counts.total(),
            good.len() as u64,
            "every tampered envelope counted"
        );
        b.open(good).expect("the untampered one still opens");
        assert_eq!(
            b.open(&good[..OVERHEAD - 1]).map_err(|e| e.refusal()),
            Err(Refusal::Malformed),
            "truncated"
        );
    }

    #[test]
    fn rekeys_on_time_and_bytes_and_wipes_the_old_epoch() {
        let policy = RekeyPolicy {
            interval_ms: 1000,
            bytes: 100,
        };
        let (mut a, mut b) = pair(policy, 0);
        let old = a.seal(b"x", 10).expect("seals");
        assert_eq!(a.send_epoch(), 0, "no rekey yet");
        let by_time = a.seal(b"y", 1010).expect("seals");
        assert_eq!(a.send_epoch(), 1, "rekeyed by time");
        for _ in 0..3 {
            a.seal(&[0; 40], 1020).expect("seals");
        }
        let by_bytes = a.seal(b"z", 1030).expect("seals");
        assert_eq!(a.send_epoch(), 2, "rekeyed by bytes");
        assert_eq!(b.open(&by_time).expect("epoch 1"), b"y", "receiver follows");
        assert_eq!(
            b.open(&by_bytes).expect("epoch 2"),
            b"z",
            "receiver follows again"
        );
        assert_eq!(b.recv_epoch(), 2, "receiver at epoch 2");
        assert_eq!(
            b.open(&old).map_err(|e| e.refusal()),
            Err(Refusal::Stale),
            "an old-epoch message after the rekey"
        );
        // A forged next-epoch message does not move the receiver.
        let mut forged = a.seal(b"w", 1040).expect("seals");
        forged[8] = forged[8].wrapping_add(1);
        assert_eq!(
            b.open(&forged).map_err(|e| e.refusal()),
            Err(Refusal::Decrypt),
            "forged epoch"
        );
        assert_eq!(b.recv_epoch(), 2, "receiver did not ratchet on a forgery");
    }
}
