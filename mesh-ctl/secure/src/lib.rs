//! The authenticated, post-quantum control plane's core: node identities under a mesh
//! authority, a hybrid X25519 + ML-KEM-768 handshake signed with ML-DSA-65, AEAD sessions
//! that seal frames (the control framing is the agent's; a session only sees bytes), and
//! origin-signed link-state adverts.
//!
//! Pure: time and randomness are passed in; nothing here opens a socket or a file (the
//! agent's `secure` module reads key files and drives the handshake over TCP).

pub mod advert;
pub mod cert;
pub mod handshake;
pub mod keys;
pub mod refusal;
pub mod replay;
pub mod session;
pub mod spiffe;
pub mod wire;

#[cfg(test)]
mod corpus_tests;

pub use self::{
    advert::{AdvertError, AdvertVerifier, CertRef, SignedAdvert},
    cert::{Cert, CertError, Identity, RevocationList, TrustStore},
    handshake::{Context, Established, HandshakeError, Initiator, Responder},
    refusal::{LogLimiter, Refusal, RefusalCounts},
    session::{RekeyPolicy, Session, SessionError},
    spiffe::SpiffeId,
};
