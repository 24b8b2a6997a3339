//! The authenticated, post-quantum control plane (issue 6): node identities under a
//! mesh authority, a hybrid X25519 + ML-KEM-768 handshake signed with ML-DSA-65, AEAD
//! sessions that wrap the control framing, and origin-signed link-state adverts.
//!
//! Everything here is pure (time and randomness are passed in) except [`tcp`], the
//! async driver that runs the handshake over a TCP stream, and [`cli`], the
//! `meshctl identity` commands that read and write key files.

pub mod advert;
pub mod cert;
pub mod cli;
pub mod config;
pub mod handshake;
pub mod keys;
pub mod refusal;
pub mod replay;
pub mod session;
pub mod spiffe;
pub mod tcp;
pub mod wire;

#[cfg(test)]
mod corpus;

pub use self::{
    advert::{AdvertError, AdvertVerifier, CertRef, SignedAdvert},
    cert::{Cert, CertError, Identity, RevocationList, TrustStore},
    config::SecureConfig,
    handshake::{Context, Established, HandshakeError, Initiator, Responder},
    refusal::{LogLimiter, Refusal, RefusalCounts},
    session::{RekeyPolicy, Session, SessionError},
    spiffe::SpiffeId,
};
