//! Execute: every map write the agent makes, through [`Datapath`]. Routes go in
//! make-before-break: groups first, then the routes that use them, and only then removals
//! and freeing of groups no route uses, so no packet ever meets a half-written route.
//! Blocks, unblocks and probe peers are written here too.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use ipnet::{Ipv4Net, Ipv6Net};
use mesh_common::{
    maps::NEXTHOP_GROUPS_CAPACITY,
    telemetry::NeighborKey,
    types::{NextHopGroup, ROUTE_F_LOCAL, Route},
};

use super::{
    knowledge::Knowledge,
    plan::{Desired, Target},
};
use crate::{
    dataplane::{Datapath, DataplaneError, blocklist::Source},
    probe::Peer,
};

/// What the data plane holds, as we wrote (or adopted) it.
#[derive(Debug, Default)]
pub struct Installed {
    pub v4: BTreeMap<Ipv4Net, Route>,
    pub v6: BTreeMap<Ipv6Net, Route>,
    pub groups: HashMap<u32, NextHopGroup>,
    ids: HashMap<NextHopGroup, u32>,
    next_id: u32,
    free: Vec<u32>,
}

/// What one apply changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub groups_written: usize,
    pub routes_set: usize,
    pub routes_removed: usize,
    pub groups_freed: usize,
}

impl Applied {
    pub fn changed(&self) -> bool {
        *self != Self::default()
    }
}

impl Installed {
    /// What a running data plane holds, to continue from after a restart.
    pub fn adopt(dp: &impl Datapath) -> Result<Self, DataplaneError> {
        let (v4, v6) = dp.read_routes()?;
        let mut me = Self {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
            ..Self::default()
        };
        for (id, g) in dp.read_groups()? {
            me.ids.insert(g, id);
            me.groups.insert(id, g);
            me.next_id = me.next_id.max(id + 1);
        }
        Ok(me)
    }

    fn route_for(
        &mut self,
        dp: &mut impl Datapath,
        t: &Target,
        a: &mut Applied,
    ) -> Result<Route, DataplaneError> {
        match t {
            Target::Local => Ok(Route {
                group: 0,
                flags: ROUTE_F_LOCAL,
            }),
            Target::Group(g) => {
                if let Some(id) = self.ids.get(g) {
                    return Ok(Route {
                        group: *id,
                        flags: 0,
                    });
                }
                let (id, reused) = match self.free.pop() {
                    Some(id) => (id, true),
                    None if self.next_id < NEXTHOP_GROUPS_CAPACITY => {
                        self.next_id += 1;
                        (self.next_id - 1, false)
                    }
                    None => return Err(DataplaneError::GroupsFull(NEXTHOP_GROUPS_CAPACITY)),
                };
                if let Err(e) = dp.write_group(id, g) {
                    // The id was not written: it stays free for the next attempt.
                    if reused {
                        self.free.push(id);
                    } else {
                        self.next_id -= 1;
                    }
                    return Err(e);
                }
                a.groups_written += 1;
                self.ids.insert(*g, id);
                self.groups.insert(id, *g);
                Ok(Route {
                    group: id,
                    flags: 0,
                })
            }
        }
    }

    /// Makes the data plane hold `want`. With `keep`, nothing is removed (a restarted
    /// agent relearning the mesh only adds).
    pub fn apply(
        &mut self,
        dp: &mut impl Datapath,
        want: &Desired,
        keep: bool,
    ) -> Result<Applied, DataplaneError> {
        let mut a = Applied::default();
        for (p, t) in &want.v4 {
            let r = self.route_for(dp, t, &mut a)?;
            if self.v4.get(p) != Some(&r) {
                dp.set_route_v4(*p, r)?;
                self.v4.insert(*p, r);
                a.routes_set += 1;
            }
        }
        for (p, t) in &want.v6 {
            let r = self.route_for(dp, t, &mut a)?;
            if self.v6.get(p) != Some(&r) {
                dp.set_route_v6(*p, r)?;
                self.v6.insert(*p, r);
                a.routes_set += 1;
            }
        }
        if keep {
            return Ok(a);
        }
        let gone4: Vec<_> = self
            .v4
            .keys()
            .filter(|p| !want.v4.contains_key(p))
            .copied()
            .collect();
        for p in gone4 {
            dp.remove_route_v4(p)?;
            self.v4.remove(&p);
            a.routes_removed += 1;
        }
        let gone6: Vec<_> = self
            .v6
            .keys()
            .filter(|p| !want.v6.contains_key(p))
            .copied()
            .collect();
        for p in gone6 {
            dp.remove_route_v6(p)?;
            self.v6.remove(&p);
            a.routes_removed += 1;
        }
        let used: std::collections::HashSet<u32> = self
            .v4
            .values()
            .chain(self.v6.values())
            .filter(|r| r.flags & ROUTE_F_LOCAL == 0)
            .map(|r| r.group)
            .collect();
        let unused: Vec<u32> = self
            .groups
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        for id in unused {
            // Emptied, so that a restarted agent does not adopt it as live.
            dp.write_group(id, &NextHopGroup::default())?;
            if let Some(g) = self.groups.remove(&id) {
                self.ids.remove(&g);
            }
            self.free.push(id);
            a.groups_freed += 1;
        }
        Ok(a)
    }
}

/// Writes `routes` to a data plane that holds none of ours yet, through [`Installed::apply`]
/// as the agent does at start-up: the path for static routes in tests and tools that drive
/// a data plane of their own. A failed write stops it with every route written pointing at
/// a written group; what was written stays (a later apply, or an adopting agent, finishes
/// it).
pub fn install_routes(
    dp: &mut impl Datapath,
    routes: &Desired,
) -> Result<Installed, DataplaneError> {
    let mut installed = Installed::default();
    installed.apply(dp, routes, false)?;
    Ok(installed)
}

/// Blocks `sources` until `until_ns`; returns those blocked. Stops at the first failed
/// write (reported), so what is returned is exactly what the data plane holds.
pub fn block(dp: &mut impl Datapath, sources: Vec<IpAddr>, until_ns: u64) -> Vec<IpAddr> {
    write_each(sources, |s| dp.block(*s, until_ns))
}

/// Writes each item in order until one fails (reported); returns those written.
fn write_each<T>(items: Vec<T>, mut write: impl FnMut(&T) -> Result<(), DataplaneError>) -> Vec<T> {
    let mut done = Vec::new();
    for item in items {
        if let Err(e) = write(&item) {
            crate::event!(ERROR, "execute_error", error = format!("{e:#}"));
            break;
        }
        done.push(item);
    }
    done
}

/// Stops blocking `sources`; a failed write is reported and the rest still unblocked.
pub fn unblock(dp: &mut impl Datapath, sources: Vec<IpAddr>) {
    undo_each(sources, |s| dp.unblock(s));
}

/// Takes back each item; a failure is reported and the rest still taken back.
fn undo_each<T>(items: Vec<T>, mut undo: impl FnMut(T) -> Result<(), DataplaneError>) {
    for item in items {
        if let Err(e) = undo(item) {
            crate::event!(ERROR, "execute_error", error = format!("{e:#}"));
        }
    }
}

/// Rate-limits `limits` (source, packets a second) until `until_ns`, in order; stops at
/// the first failed write (reported) and returns what was limited.
pub fn limit(
    dp: &mut impl Datapath,
    limits: Vec<(Source, u32)>,
    until_ns: u64,
) -> Vec<(Source, u32)> {
    write_each(limits, |(s, rate)| dp.limit(*s, *rate, until_ns))
}

/// Ends the limits on `sources`; a failed write is reported and the rest still ended.
pub fn unlimit(dp: &mut impl Datapath, sources: Vec<Source>) {
    undo_each(sources, |s| dp.unlimit(s));
}

/// Removes the rate limits that expired by `now_ns`; returns their sources.
pub fn expire_limits(dp: &mut impl Datapath, now_ns: u64) -> Result<Vec<Source>, DataplaneError> {
    crate::dataplane::expire_limits(dp, now_ns)
}

/// Removes the blocks that expired by `now_ns`; returns their sources.
pub fn expire_blocks(dp: &mut impl Datapath, now_ns: u64) -> Result<Vec<IpAddr>, DataplaneError> {
    crate::dataplane::expire_blocks(dp, now_ns)
}

/// Tells the data plane who the neighbours are: each one's probe slot, and which
/// neighbour each `NEIGHBOR_TX` slot stands for (`statics` are the config's). Returns the
/// peers the probe sender should probe: those whose slot was written.
pub fn peers(dp: &mut impl Datapath, k: &Knowledge, statics: &[NeighborKey]) -> Vec<Peer> {
    let mut peers = Vec::new();
    for n in &k.neighbors {
        let key = NeighborKey {
            ifindex: n.ifindex,
            mac: n.mac.0,
            _pad: [0; 2],
        };
        if let Err(e) = dp.set_probe_peer(n.slot, key) {
            crate::event!(ERROR, "execute_error", error = format!("{e:#}"));
            continue;
        }
        peers.push(Peer {
            slot: n.slot,
            ifindex: n.ifindex,
            src_mac: n.local_mac,
            dst_mac: n.mac.0,
        });
    }
    let mut keys = statics.to_vec();
    for ((ifindex, mac), slot) in &k.slots {
        let slot = *slot as usize;
        if keys.len() <= slot {
            keys.resize(slot + 1, NeighborKey::default());
        }
        keys[slot] = NeighborKey {
            ifindex: *ifindex,
            mac: *mac,
            _pad: [0; 2],
        };
    }
    dp.set_neighbors(keys);
    peers
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddrV6, path::Path};

    use ipnet::IpNet;
    use mesh_common::types::NextHop;

    use super::*;
    use crate::{
        agent::{knowledge::Neighbor, plan},
        config::{Config, MacAddr},
        dataplane::fake::{FakeDatapath, Write},
        probe::quality::Quality,
        routes::{HostIface, HostView, Tables},
        routing::{Lsdb, PrefixRoute, Routes},
    };

    fn group(hops: &[u32]) -> NextHopGroup {
        let mut g = NextHopGroup::default();
        for (m, &i) in g.members.iter_mut().zip(hops) {
            *m = NextHop {
                ifindex: i,
                slot: i,
                neighbor: i,
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, i as u8],
            };
        }
        g.count = hops.len() as u32;
        g
    }

    fn plan(routes: &[(&str, Option<&[u32]>)]) -> Desired {
        let mut d = Desired::default();
        for (p, hops) in routes {
            let t = hops.map_or(Target::Local, |h| Target::Group(group(h)));
            match p.parse::<IpNet>().expect("a prefix") {
                IpNet::V4(p) => {
                    d.v4.insert(p, t);
                }
                IpNet::V6(p) => {
                    d.v6.insert(p, t);
                }
            }
        }
        d
    }

    /// What each prefix leads to, whatever the group ids: the forwarding behaviour.
    fn forwarding(dp: &FakeDatapath) -> BTreeMap<IpNet, Option<NextHopGroup>> {
        let resolve = |r: &Route| (r.flags & ROUTE_F_LOCAL == 0).then(|| dp.groups[&r.group]);
        dp.v4
            .iter()
            .map(|(p, r)| (IpNet::V4(*p), resolve(r)))
            .chain(dp.v6.iter().map(|(p, r)| (IpNet::V6(*p), resolve(r))))
            .collect()
    }

    fn desired_forwarding(want: &Desired) -> BTreeMap<IpNet, Option<NextHopGroup>> {
        let resolve = |t: &Target| match t {
            Target::Local => None,
            Target::Group(g) => Some(*g),
        };
        want.v4
            .iter()
            .map(|(p, t)| (IpNet::V4(*p), resolve(t)))
            .chain(want.v6.iter().map(|(p, t)| (IpNet::V6(*p), resolve(t))))
            .collect()
    }

    /// Replays `writes` over `dp`'s state before them and checks that after every single
    /// write each route leads to a written, non-empty group.
    fn assert_never_dangling(mut dp: FakeDatapath, writes: &[Write]) {
        for (i, w) in writes.iter().enumerate() {
            match *w {
                Write::Group(id, g) => dp.write_group(id, &g),
                Write::RouteV4(p, r) => dp.set_route_v4(p, r),
                Write::RouteV6(p, r) => dp.set_route_v6(p, r),
                Write::RemoveV4(p) => dp.remove_route_v4(p),
                Write::RemoveV6(p) => dp.remove_route_v6(p),
                _ => Ok(()),
            }
            .expect("the replay writes");
            for r in dp.v4.values().chain(dp.v6.values()) {
                if r.flags & ROUTE_F_LOCAL == 0 {
                    let g = dp.groups.get(&r.group);
                    assert!(
                        g.is_some_and(|g| g.count != 0),
                        "after write {i} ({w:?}) a route points at group {} = {g:?}",
                        r.group
                    );
                }
            }
        }
    }

    /// The state of `dp` as a fresh fake (contents only), to replay writes over.
    fn copy(dp: &FakeDatapath) -> FakeDatapath {
        let mut fresh = FakeDatapath::default();
        fresh.groups = dp.groups.clone();
        fresh.v4 = dp.v4.clone();
        fresh.v6 = dp.v6.clone();
        fresh
    }

    /// Installed's belief equals the fake's contents.
    fn assert_consistent(installed: &Installed, dp: &FakeDatapath) {
        let read = Installed::adopt(dp).expect("the fake reads");
        assert_eq!(installed.v4, read.v4, "v4 routes as believed and as held");
        assert_eq!(installed.v6, read.v6, "v6 routes as believed and as held");
        assert_eq!(installed.groups, read.groups, "groups as believed and held");
    }

    fn before() -> Desired {
        plan(&[
            ("10.0.1.0/24", Some(&[1, 2])),
            ("10.0.2.0/24", Some(&[1, 2])),
            ("10.0.3.0/24", Some(&[3])),
            ("10.9.9.9/32", None),
            ("fd00:1::/64", Some(&[3])),
        ])
    }

    fn after() -> Desired {
        plan(&[
            ("10.0.1.0/24", Some(&[2])),
            ("10.0.3.0/24", Some(&[3])),
            ("10.0.4.0/24", Some(&[4, 1])),
            ("10.9.9.9/32", None),
            ("fd00:2::/64", Some(&[2])),
        ])
    }

    #[test]
    fn groups_are_written_before_routes_use_them_and_freed_after() {
        let mut dp = FakeDatapath::default();
        let mut installed = Installed::default();
        installed
            .apply(&mut dp, &before(), false)
            .expect("the first plan applies");
        assert_never_dangling(FakeDatapath::default(), &dp.writes);
        let start = copy(&dp);
        dp.take_writes();
        let old = installed.ids[&group(&[1, 2])];

        let a = installed
            .apply(&mut dp, &after(), false)
            .expect("the second plan applies");
        let writes = dp.take_writes();
        assert_never_dangling(start, &writes);
        assert_eq!(forwarding(&dp), desired_forwarding(&after()));
        assert_consistent(&installed, &dp);

        let new = installed.ids[&group(&[2])];
        let at = |w: &Write| writes.iter().position(|x| x == w).expect("written");
        let route = |p: &str, id| {
            Write::RouteV4(
                p.parse().expect("a prefix"),
                Route {
                    group: id,
                    flags: 0,
                },
            )
        };
        let moved = at(&route("10.0.1.0/24", new));
        assert!(
            at(&Write::Group(new, group(&[2]))) < moved,
            "make before..."
        );
        let removed = at(&Write::RemoveV4("10.0.2.0/24".parse().expect("a prefix")));
        let freed = at(&Write::Group(old, NextHopGroup::default()));
        assert!(moved < removed && removed < freed, "...break");
        let last_set = writes
            .iter()
            .rposition(|w| matches!(w, Write::RouteV4(..) | Write::RouteV6(..)))
            .expect("routes were set");
        let first_removal = writes
            .iter()
            .position(|w| matches!(w, Write::RemoveV4(..) | Write::RemoveV6(..)))
            .expect("routes were removed");
        assert!(last_set < first_removal, "every set before any removal");
        assert_eq!(
            (a.routes_removed, a.groups_freed),
            (2, 1),
            "10.0.2.0/24 and fd00:1::/64 go; [1, 2] is freed, [3] still used"
        );
    }

    #[test]
    fn an_unchanged_plan_writes_nothing() {
        let mut dp = FakeDatapath::default();
        let mut installed = Installed::default();
        installed.apply(&mut dp, &after(), false).expect("applies");
        dp.take_writes();
        let a = installed.apply(&mut dp, &after(), false).expect("applies");
        assert!(!a.changed());
        assert_eq!(dp.writes, Vec::new());
    }

    #[test]
    fn keep_only_adds() {
        let mut dp = FakeDatapath::default();
        let mut installed = Installed::default();
        installed.apply(&mut dp, &before(), false).expect("applies");
        installed.apply(&mut dp, &after(), true).expect("applies");
        let held = forwarding(&dp);
        for p in desired_forwarding(&before())
            .keys()
            .chain(desired_forwarding(&after()).keys())
        {
            assert!(held.contains_key(p), "{p} is held during a restart hold");
        }
        assert_consistent(&installed, &dp);
    }

    #[test]
    fn a_failed_write_leaves_belief_and_maps_equal_and_the_next_apply_converges() {
        // Every write of the second plan in turn fails once.
        let writes = {
            let mut dp = FakeDatapath::default();
            let mut installed = Installed::default();
            installed.apply(&mut dp, &before(), false).expect("applies");
            dp.take_writes();
            installed.apply(&mut dp, &after(), false).expect("applies");
            dp.writes.len()
        };
        assert!(writes > 4);
        for n in 1..=writes {
            let mut dp = FakeDatapath::default();
            let mut installed = Installed::default();
            installed.apply(&mut dp, &before(), false).expect("applies");
            let start = copy(&dp);
            dp.take_writes();
            dp.fail_write(n);
            let failed = installed.apply(&mut dp, &after(), false);
            assert!(
                matches!(failed, Err(DataplaneError::MapAccess { .. })),
                "write {n} fails: {failed:?}"
            );
            assert_never_dangling(start, &dp.writes);
            assert_consistent(&installed, &dp);

            installed
                .apply(&mut dp, &after(), false)
                .expect("the retry applies");
            assert_eq!(forwarding(&dp), desired_forwarding(&after()), "write {n}");
            assert_consistent(&installed, &dp);
            assert_eq!(
                installed.groups.len() + installed.free.len(),
                installed.next_id as usize,
                "no group id is lost to the failed write {n}"
            );
        }
    }

    /// A host with the interfaces and addresses [`STATIC_CONFIG`] names.
    struct Host;

    impl HostView for Host {
        fn iface(&self, name: &str) -> Option<HostIface> {
            let ifindex = match name {
                "r-eth0" => 4,
                "r-eth1" => 5,
                _ => return None,
            };
            Some(HostIface {
                ifindex,
                mac: MacAddr([2, 0, 0, 0, 0, ifindex as u8]),
            })
        }

        fn addresses(&self) -> Vec<IpAddr> {
            vec!["10.0.1.2".parse().expect("an address")]
        }
    }

    const STATIC_CONFIG: &str = r#"
node = "r"
local = ["fd00:1::/64"]
[security]
enabled = false
[[interfaces]]
name = "r-eth0"
[[interfaces]]
name = "r-eth1"
[[groups]]
name = "ecmp"
members = [
  { interface = "r-eth0", neighbor = "02:00:00:00:01:00" },
  { interface = "r-eth1", neighbor = "02:00:00:00:01:01" },
]
[[groups]]
name = "back"
members = [{ interface = "r-eth1", neighbor = "02:00:00:00:01:01" }]
[[routes]]
prefix = "10.0.2.0/24"
group = "ecmp"
[[routes]]
prefix = "10.0.0.0/8"
group = "back"
[[routes]]
prefix = "fd00:9::/64"
group = "ecmp"
"#;

    fn static_tables() -> Tables {
        let config = Config::parse(STATIC_CONFIG, Path::new("r.toml")).expect("a valid config");
        Tables::build(&config, &Host, 1).expect("the host has the interfaces")
    }

    /// One next hop as the config's members describe it: (egress ifindex, neighbour MAC).
    fn hops(g: &NextHopGroup) -> Vec<(u32, [u8; 6])> {
        g.members[..g.count as usize]
            .iter()
            .map(|m| (m.ifindex, m.dst_mac))
            .collect()
    }

    #[test]
    fn static_routes_from_a_config_reach_the_route_and_group_maps() {
        let t = static_tables();
        let mut dp = FakeDatapath::default();
        let installed = install_routes(&mut dp, &t.routes).expect("the statics install");
        assert_never_dangling(FakeDatapath::default(), &dp.writes);
        assert_eq!(forwarding(&dp), desired_forwarding(&t.routes));
        assert_consistent(&installed, &dp);

        let via =
            |p: &str| forwarding(&dp)[&p.parse::<IpNet>().expect("a prefix")].map(|g| hops(&g));
        let (n0, n1) = ((4, [2, 0, 0, 0, 1, 0]), (5, [2, 0, 0, 0, 1, 1]));
        assert_eq!(via("10.0.2.0/24"), Some(vec![n0, n1]));
        assert_eq!(via("fd00:9::/64"), Some(vec![n0, n1]));
        assert_eq!(via("10.0.0.0/8"), Some(vec![n1]));
        assert_eq!(via("10.0.1.2/32"), None, "our address is local");
        assert_eq!(via("fd00:1::/64"), None, "declared local");
        assert_eq!(
            dp.groups.len(),
            2,
            "one group id per distinct group, shared by both families"
        );
        let ecmp = dp.v4[&"10.0.2.0/24".parse().expect("a prefix")];
        let ecmp6 = dp.v6[&"fd00:9::/64".parse().expect("a prefix")];
        assert_eq!(ecmp, ecmp6);
        assert_eq!(
            dp.groups[&ecmp.group].members[0].src_mac,
            [2, 0, 0, 0, 0, 4]
        );
    }

    #[test]
    fn learned_routes_join_the_static_ones_which_keep_their_prefixes() {
        let t = static_tables();
        let mut dp = FakeDatapath::default();
        let mut installed = install_routes(&mut dp, &t.routes).expect("the statics install");
        dp.take_writes();
        let learned = |prefix: &str| PrefixRoute {
            prefix: prefix.parse().expect("a prefix"),
            origin: "far".into(),
            cost: 20,
            next_hops: vec!["n7".into()],
            backups: vec![None],
        };
        let routes = Routes {
            nodes: Vec::new(),
            prefixes: vec![learned("10.0.2.0/24"), learned("10.0.3.0/24")],
        };
        let hop = |name: &str| (name == "n7").then_some(group(&[7]).members[0]);
        let want = plan::desired(&t.routes, &routes, &hop);
        let a = installed.apply(&mut dp, &want, false).expect("applies");
        assert_eq!(
            (a.routes_set, a.routes_removed, a.groups_written),
            (1, 0, 1),
            "only the learned 10.0.3.0/24 and its group are written"
        );
        assert_eq!(forwarding(&dp), desired_forwarding(&want));
        let statics = desired_forwarding(&t.routes);
        let held = forwarding(&dp);
        for (p, g) in &statics {
            assert_eq!(
                held.get(p),
                Some(g),
                "{p} still leads where the config says"
            );
        }
    }

    #[test]
    fn a_failed_static_write_leaves_no_dangling_route_and_a_restart_completes_it() {
        let t = static_tables();
        let writes = {
            let mut dp = FakeDatapath::default();
            install_routes(&mut dp, &t.routes).expect("the statics install");
            dp.writes.len()
        };
        for n in 1..=writes {
            let mut dp = FakeDatapath::default();
            dp.fail_write(n);
            let failed = install_routes(&mut dp, &t.routes);
            assert!(
                matches!(failed, Err(DataplaneError::MapAccess { .. })),
                "write {n} fails: {failed:?}"
            );
            assert_never_dangling(FakeDatapath::default(), &dp.writes);
            assert_eq!(dp.writes.len(), n - 1, "nothing is written after write {n}");

            // What a restarted agent does: adopt what is there, then add the statics.
            let mut installed = Installed::adopt(&dp).expect("the fake reads");
            installed
                .apply(&mut dp, &t.routes, true)
                .expect("the retry applies");
            assert_eq!(
                forwarding(&dp),
                desired_forwarding(&t.routes),
                "after write {n} failed"
            );
            assert_consistent(&installed, &dp);
        }
    }

    #[test]
    fn blocks_expire_and_unblock() {
        let mut dp = FakeDatapath::default();
        let a: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "fd00::3"]
            .iter()
            .map(|s| s.parse().expect("an address"))
            .collect();
        assert_eq!(block(&mut dp, a[..2].to_vec(), 100), a[..2]);
        assert_eq!(block(&mut dp, a[2..].to_vec(), 300), a[2..]);
        assert!(expire_blocks(&mut dp, 99).expect("expires").is_empty());
        assert_eq!(expire_blocks(&mut dp, 100).expect("expires"), a[..2]);
        assert_eq!(dp.blocked().expect("reads"), vec![(a[2], 300)]);
        unblock(&mut dp, vec![a[2], a[0]]);
        assert_eq!(dp.blocked().expect("reads"), Vec::new());
    }

    #[test]
    fn a_failed_block_stops_and_says_what_was_blocked() {
        let mut dp = FakeDatapath::default();
        let a: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|s| s.parse().expect("an address"))
            .collect();
        dp.fail_write(2);
        let done = block(&mut dp, a.clone(), 100);
        assert_eq!(done, a[..1]);
        let held: Vec<IpAddr> = dp.blocks.keys().copied().collect();
        assert_eq!(held, done, "what is reported blocked is what is held");
    }

    fn neighbor(ifindex: u32, mac: u8, slot: u32) -> Neighbor {
        Neighbor {
            node: format!("n{mac}"),
            iface: format!("eth{ifindex}"),
            ifindex,
            iface_slot: ifindex,
            local_mac: [2, 0, 0, 0, 0, 1],
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            addr: SocketAddrV6::new("fe80::1".parse().expect("an address"), 1, 0, ifindex),
            slot,
            last_hello_ns: 0,
            two_way: false,
            quality: Quality::new(0),
        }
    }

    #[test]
    fn probe_peers_are_written_for_every_neighbour() {
        let statics = vec![NeighborKey {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 7],
            _pad: [0; 2],
        }];
        let mut k = Knowledge::new(Lsdb::new("n1", 60_000), Installed::default(), 1);
        for (ifindex, mac) in [(3, 5), (4, 6)] {
            let slot = k.slot_for(ifindex, [2, 0, 0, 0, 0, mac]);
            k.neighbors.push(neighbor(ifindex, mac, slot));
        }
        let mut dp = FakeDatapath::default();
        let peers = execute_peers(&mut dp, &k, &statics);
        assert_eq!(peers, vec![(1, 3), (2, 4)]);
        let key = |ifindex, mac| NeighborKey {
            ifindex,
            mac: [2, 0, 0, 0, 0, mac],
            _pad: [0; 2],
        };
        assert_eq!(
            dp.writes,
            vec![
                Write::ProbePeer(1, key(3, 5)),
                Write::ProbePeer(2, key(4, 6))
            ]
        );
        assert_eq!(dp.neighbors, vec![statics[0], key(3, 5), key(4, 6)]);

        // A slot that cannot be written is not probed.
        let mut dp = FakeDatapath::default();
        dp.fail_write(1);
        assert_eq!(execute_peers(&mut dp, &k, &statics), vec![(2, 4)]);
        assert_eq!(dp.probe_peers().expect("reads"), vec![(2, key(4, 6))]);
    }

    fn execute_peers(
        dp: &mut FakeDatapath,
        k: &Knowledge,
        statics: &[NeighborKey],
    ) -> Vec<(u32, u32)> {
        peers(dp, k, statics)
            .iter()
            .map(|p| (p.slot, p.ifindex))
            .collect()
    }
}
