//! An in-memory [`Datapath`]: holds what was written, records every write in order, and
//! can be told to fail a write, so that Execute's ordering and its state after a failed
//! write can be checked without a kernel.

use std::{collections::BTreeMap, io, net::IpAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use mesh_common::{
    telemetry::NeighborKey,
    types::{NextHopGroup, Route},
};

use super::{
    Datapath, DataplaneError,
    blocklist::{Limit, Source},
    update::RouteList,
};

type Result<T> = std::result::Result<T, DataplaneError>;

/// One map write, as the fake received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a test's log of a few dozen writes; boxing would only obscure the asserts"
)]
pub enum Write {
    Group(u32, NextHopGroup),
    RouteV4(Ipv4Net, Route),
    RouteV6(Ipv6Net, Route),
    RemoveV4(Ipv4Net),
    RemoveV6(Ipv6Net),
    Block(IpAddr, u64),
    Unblock(IpAddr),
    Limit(Source, u32, u64),
    Unlimit(Source),
    ProbePeer(u32, NeighborKey),
}

/// The maps the agent writes, in memory.
#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub groups: BTreeMap<u32, NextHopGroup>,
    pub v4: BTreeMap<Ipv4Net, Route>,
    pub v6: BTreeMap<Ipv6Net, Route>,
    pub blocks: BTreeMap<IpAddr, u64>,
    /// Rate limits: (rate, expiry).
    pub limits: BTreeMap<Source, (u32, u64)>,
    pub probe_peers: BTreeMap<u32, NeighborKey>,
    pub neighbors: Vec<NeighborKey>,
    /// Every write that succeeded, in order.
    pub writes: Vec<Write>,
    /// Writes attempted so far, failed ones included.
    attempts: usize,
    fail_at: Option<usize>,
}

impl FakeDatapath {
    /// Makes the `n`th write from now (1 for the next one) fail and change nothing.
    pub fn fail_write(&mut self, n: usize) {
        self.fail_at = Some(self.attempts + n);
    }

    /// Forgets the writes recorded so far (the contents stay).
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    fn write(&mut self, w: Write) -> Result<()> {
        self.attempts += 1;
        if self.fail_at == Some(self.attempts) {
            self.fail_at = None;
            return Err(DataplaneError::MapAccess {
                map: "fake",
                action: format!("{w:?}"),
                source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "bpf_map_update_elem",
                    io_error: io::Error::from_raw_os_error(nix::libc::ENOMEM),
                }),
            });
        }
        match w {
            Write::Group(id, g) => {
                self.groups.insert(id, g);
            }
            Write::RouteV4(p, r) => {
                self.v4.insert(p, r);
            }
            Write::RouteV6(p, r) => {
                self.v6.insert(p, r);
            }
            Write::RemoveV4(p) => {
                self.v4.remove(&p);
            }
            Write::RemoveV6(p) => {
                self.v6.remove(&p);
            }
            Write::Block(a, exp) => {
                self.blocks.insert(a, exp);
            }
            Write::Unblock(a) => {
                self.blocks.remove(&a);
            }
            Write::Limit(s, rate, exp) => {
                self.limits.insert(s, (rate, exp));
            }
            Write::Unlimit(s) => {
                self.limits.remove(&s);
            }
            Write::ProbePeer(slot, peer) => {
                self.probe_peers.insert(slot, peer);
            }
        }
        self.writes.push(w);
        Ok(())
    }
}

impl Datapath for FakeDatapath {
    fn write_group(&mut self, id: u32, group: &NextHopGroup) -> Result<()> {
        self.write(Write::Group(id, *group))
    }

    fn set_route_v4(&mut self, prefix: Ipv4Net, route: Route) -> Result<()> {
        self.write(Write::RouteV4(prefix, route))
    }

    fn set_route_v6(&mut self, prefix: Ipv6Net, route: Route) -> Result<()> {
        self.write(Write::RouteV6(prefix, route))
    }

    fn remove_route_v4(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.write(Write::RemoveV4(prefix))
    }

    fn remove_route_v6(&mut self, prefix: Ipv6Net) -> Result<()> {
        self.write(Write::RemoveV6(prefix))
    }

    fn block(&mut self, addr: IpAddr, expires_ns: u64) -> Result<()> {
        self.write(Write::Block(addr, expires_ns))
    }

    fn unblock(&mut self, addr: IpAddr) -> Result<()> {
        self.write(Write::Unblock(addr))
    }

    fn limit(&mut self, source: Source, rate_pps: u32, expires_ns: u64) -> Result<()> {
        self.write(Write::Limit(source, rate_pps, expires_ns))
    }

    fn unlimit(&mut self, source: Source) -> Result<()> {
        self.write(Write::Unlimit(source))
    }

    fn set_probe_peer(&mut self, slot: u32, peer: NeighborKey) -> Result<()> {
        self.write(Write::ProbePeer(slot, peer))
    }

    fn set_neighbors(&mut self, neighbors: Vec<NeighborKey>) {
        self.neighbors = neighbors;
    }

    fn read_routes(&self) -> Result<RouteList> {
        Ok((
            self.v4.iter().map(|(p, r)| (*p, *r)).collect(),
            self.v6.iter().map(|(p, r)| (*p, *r)).collect(),
        ))
    }

    fn read_groups(&self) -> Result<Vec<(u32, NextHopGroup)>> {
        Ok(self
            .groups
            .iter()
            .filter(|(_, g)| g.count != 0)
            .map(|(id, g)| (*id, *g))
            .collect())
    }

    fn probe_peers(&self) -> Result<Vec<(u32, NeighborKey)>> {
        Ok(self
            .probe_peers
            .iter()
            .filter(|(_, p)| p.ifindex != 0)
            .map(|(s, p)| (*s, *p))
            .collect())
    }

    fn blocked(&self) -> Result<Vec<(IpAddr, u64)>> {
        Ok(self.blocks.iter().map(|(a, e)| (*a, *e)).collect())
    }

    fn limits(&self) -> Result<Vec<Limit>> {
        Ok(self
            .limits
            .iter()
            .map(|(s, (rate_pps, expires_ns))| Limit {
                source: *s,
                rate_pps: *rate_pps,
                expires_ns: *expires_ns,
            })
            .collect())
    }
}
