//! Link-state routing, pure: adverts and the LSDB that holds them, SPF with equal-cost
//! next hops and loop-free alternates, route diffs, and a flooding simulation over
//! generated meshes. No kernel, no sockets, no clock: time comes in as `now_ms`.

pub mod diff;
pub mod lsa;
pub mod lsdb;
pub mod mesh;
pub mod sim;
pub mod spf;
pub mod topology;

#[cfg(test)]
mod props;

pub use self::{
    diff::{RouteChange, RouteDiff, changed},
    lsa::{Lsa, LsaLink},
    lsdb::{Lsdb, Receive},
    spf::{NodeRoute, PrefixRoute, Routes, compute, compute_avoiding, compute_with},
    topology::{AVOID_COST, Algorithm, Avoid, Topology},
};
