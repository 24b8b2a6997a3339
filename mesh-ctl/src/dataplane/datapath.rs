//! The seam between the agent and the maps: every write the agent makes, and the reads it
//! needs to continue from a running data plane. [`Dataplane`] writes the kernel's maps;
//! the in-memory fake lets Execute and the control plane be tested without privileges.

use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};
use mesh_common::{
    telemetry::NeighborKey,
    types::{NextHopGroup, Route},
};

use super::{
    Dataplane, DataplaneError,
    blocklist::{Limit, Source},
    update::RouteList,
};

type Result<T> = std::result::Result<T, DataplaneError>;

/// The maps as the agent's Execute stage writes them.
pub trait Datapath {
    /// Writes next-hop group `id` (an empty group frees it).
    fn write_group(&mut self, id: u32, group: &NextHopGroup) -> Result<()>;
    fn set_route_v4(&mut self, prefix: Ipv4Net, route: Route) -> Result<()>;
    fn set_route_v6(&mut self, prefix: Ipv6Net, route: Route) -> Result<()>;
    /// Removes a route (a no-op if it is not there).
    fn remove_route_v4(&mut self, prefix: Ipv4Net) -> Result<()>;
    fn remove_route_v6(&mut self, prefix: Ipv6Net) -> Result<()>;
    /// Drops frames from `addr` until CLOCK_MONOTONIC reaches `expires_ns`.
    fn block(&mut self, addr: IpAddr, expires_ns: u64) -> Result<()>;
    /// Stops blocking `addr` (a no-op if it is not blocked).
    fn unblock(&mut self, addr: IpAddr) -> Result<()>;
    /// Lets `rate_pps` frames a second from `source` through until CLOCK_MONOTONIC
    /// reaches `expires_ns`, and drops the rest.
    fn limit(&mut self, source: Source, rate_pps: u32, expires_ns: u64) -> Result<()>;
    /// Ends the limit on `source` (a no-op if there is none).
    fn unlimit(&mut self, source: Source) -> Result<()>;
    /// Says who probe slot `slot` probes.
    fn set_probe_peer(&mut self, slot: u32, peer: NeighborKey) -> Result<()>;
    /// Says which neighbour each `NEIGHBOR_TX` slot is, for the telemetry views.
    fn set_neighbors(&mut self, neighbors: Vec<NeighborKey>);

    /// Every installed route.
    fn read_routes(&self) -> Result<RouteList>;
    /// Every non-empty group: (id, group).
    fn read_groups(&self) -> Result<Vec<(u32, NextHopGroup)>>;
    /// Every slot with a peer: (slot, peer).
    fn probe_peers(&self) -> Result<Vec<(u32, NeighborKey)>>;
    /// Every blocked source: (source, expiry in CLOCK_MONOTONIC ns), sorted.
    fn blocked(&self) -> Result<Vec<(IpAddr, u64)>>;
    /// Every rate limit, sorted.
    fn limits(&self) -> Result<Vec<Limit>>;
}

// The inherent methods stay for the tests and tools that drive a data plane directly.
impl Datapath for Dataplane {
    fn write_group(&mut self, id: u32, group: &NextHopGroup) -> Result<()> {
        Dataplane::write_group(self, id, group)
    }

    fn set_route_v4(&mut self, prefix: Ipv4Net, route: Route) -> Result<()> {
        Dataplane::set_route_v4(self, prefix, route)
    }

    fn set_route_v6(&mut self, prefix: Ipv6Net, route: Route) -> Result<()> {
        Dataplane::set_route_v6(self, prefix, route)
    }

    fn remove_route_v4(&mut self, prefix: Ipv4Net) -> Result<()> {
        Dataplane::remove_route_v4(self, prefix)
    }

    fn remove_route_v6(&mut self, prefix: Ipv6Net) -> Result<()> {
        Dataplane::remove_route_v6(self, prefix)
    }

    fn block(&mut self, addr: IpAddr, expires_ns: u64) -> Result<()> {
        Dataplane::block(self, addr, expires_ns)
    }

    fn unblock(&mut self, addr: IpAddr) -> Result<()> {
        Dataplane::unblock(self, addr)
    }

    fn limit(&mut self, source: Source, rate_pps: u32, expires_ns: u64) -> Result<()> {
        Dataplane::limit(self, source, rate_pps, expires_ns)
    }

    fn unlimit(&mut self, source: Source) -> Result<()> {
        Dataplane::unlimit(self, source)
    }

    fn set_probe_peer(&mut self, slot: u32, peer: NeighborKey) -> Result<()> {
        Dataplane::set_probe_peer(self, slot, peer)
    }

    fn set_neighbors(&mut self, neighbors: Vec<NeighborKey>) {
        Dataplane::set_neighbors(self, neighbors);
    }

    fn read_routes(&self) -> Result<RouteList> {
        Dataplane::read_routes(self)
    }

    fn read_groups(&self) -> Result<Vec<(u32, NextHopGroup)>> {
        Dataplane::read_groups(self)
    }

    fn probe_peers(&self) -> Result<Vec<(u32, NeighborKey)>> {
        Dataplane::probe_peers(self)
    }

    fn blocked(&self) -> Result<Vec<(IpAddr, u64)>> {
        Dataplane::blocked(self)
    }

    fn limits(&self) -> Result<Vec<Limit>> {
        Dataplane::limits(self)
    }
}

/// Removes the blocks that expired by `now_ns`; returns their sources.
pub fn expire_blocks(dp: &mut (impl Datapath + ?Sized), now_ns: u64) -> Result<Vec<IpAddr>> {
    let done: Vec<IpAddr> = dp
        .blocked()?
        .into_iter()
        .filter(|(_, exp)| *exp <= now_ns)
        .map(|(a, _)| a)
        .collect();
    for a in &done {
        dp.unblock(*a)?;
    }
    Ok(done)
}

/// Removes the rate limits that expired by `now_ns`; returns their sources.
pub fn expire_limits(dp: &mut (impl Datapath + ?Sized), now_ns: u64) -> Result<Vec<Source>> {
    let done: Vec<Source> = dp
        .limits()?
        .into_iter()
        .filter(|l| l.expires_ns <= now_ns)
        .map(|l| l.source)
        .collect();
    for s in &done {
        dp.unlimit(*s)?;
    }
    Ok(done)
}
