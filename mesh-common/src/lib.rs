//! Types and constants shared by the XDP data plane (`mesh-ebpf`) and userspace (`meshctl`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree on the bytes.
//! The `user` feature adds `aya::Pod` impls so userspace can put these types in maps.
#![no_std]
#![warn(missing_docs)]

pub mod csum;
pub mod hash;
mod layout;
pub mod limit;
pub mod maps;
pub mod martian;
pub mod parse;
pub mod probe;
pub mod reason;
pub mod telemetry;
pub mod types;

#[cfg(feature = "user")]
mod pod;

pub use reason::Reason;
