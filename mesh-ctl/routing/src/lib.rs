//! Link-state routing, pure: adverts and the LSDB that holds them, SPF with equal-cost
//! next hops and loop-free alternates, route diffs, and a flooding simulation over
//! generated meshes (feature `sim`). No kernel, no sockets, no clock: time comes in as
//! `now_ms`; randomness comes in as a seed. The crate's dependency list is the proof.

pub mod diff;
pub mod lsa;
pub mod lsdb;
#[cfg(feature = "sim")]
pub mod mesh;
#[cfg(feature = "sim")]
pub mod sim;
pub mod spf;
pub mod topology;

#[cfg(all(test, feature = "sim"))]
mod props;

pub use self::{
    diff::{RouteChange, RouteDiff, changed},
    lsa::{Lsa, LsaLink},
    lsdb::{Lsdb, Receive},
    spf::{NodeRoute, PrefixRoute, Routes, compute, compute_avoiding, compute_with},
    topology::{AVOID_COST, Algorithm, Avoid, Topology},
};
