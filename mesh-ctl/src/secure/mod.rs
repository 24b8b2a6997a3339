//! The authenticated control plane in `meshctl`: the pure core (`mesh-secure`: identities,
//! handshake, sessions, signed adverts) under its own paths, and what touches the system:
//! reading key files ([`config`]), the handshake over TCP ([`tcp`]) and the
//! `meshctl identity` commands ([`cli`]).

pub mod cli;
pub mod config;
pub mod tcp;

pub use mesh_secure::*;

pub use self::config::SecureConfig;
