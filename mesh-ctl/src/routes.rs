//! Turns a validated configuration into what the data plane is given: the interfaces and
//! settings as map entries, and the static routes in the form Plan produces and Execute
//! writes ([`Desired`]), so they reach the maps by the one path the agent's routes take.
//! Pure: the host's interfaces come in through [`HostView`], so this runs without root.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_common::{
    maps::{
        EGRESS_CAPACITY, IFACES_CAPACITY, LAYOUT_VERSION, NEIGHBOR_TX_CAPACITY,
        NEXTHOP_GROUPS_CAPACITY, ROUTES_V4_CAPACITY, ROUTES_V6_CAPACITY,
    },
    telemetry::NeighborKey,
    types::{
        CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY, DataplaneConfig, Iface, NextHop,
        NextHopGroup,
    },
};

use crate::config::{Config, MacAddr, Problem};

/// An interface as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIface {
    pub ifindex: u32,
    pub mac: MacAddr,
}

/// What route building needs to know about the host.
pub trait HostView {
    fn iface(&self, name: &str) -> Option<HostIface>;
    /// Every address configured on the host, all interfaces, and the broadcast address
    /// of each IPv4 subnet (directed broadcasts are the kernel's, never forwarded).
    fn addresses(&self) -> Vec<IpAddr>;
}

/// What a prefix should lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a few thousand routes at most, built once per SPF; boxing buys nothing"
)]
pub enum Target {
    /// One of ours: the kernel gets it.
    Local,
    Group(NextHopGroup),
}

/// Every route the data plane should hold, by prefix. Group ids are not chosen here:
/// Execute gives each distinct group one when it writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub v4: BTreeMap<Ipv4Net, Target>,
    pub v6: BTreeMap<Ipv6Net, Target>,
}

impl Desired {
    /// Sets the route for `prefix`, replacing the one it had.
    pub fn insert(&mut self, prefix: IpNet, target: Target) {
        match prefix {
            IpNet::V4(p) => {
                self.v4.insert(p, target);
            }
            IpNet::V6(p) => {
                self.v6.insert(p, target);
            }
        }
    }

    pub fn contains(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(p) => self.v4.contains_key(p),
            IpNet::V6(p) => self.v6.contains_key(p),
        }
    }

    /// The route for `prefix`, if it has one.
    pub fn get(&self, prefix: &IpNet) -> Option<&Target> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p),
        }
    }
}

/// What the config gives the data plane: the base entries written as they are, before
/// any route, and the static routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    pub config: DataplaneConfig,
    /// Mesh interfaces by ifindex; also the egress ports.
    pub ifaces: Vec<(u32, Iface)>,
    /// The static routes and our local addresses, which Execute writes
    /// (`agent::install_routes` outside the agent).
    pub routes: Desired,
    /// Next-hop neighbours; `NextHop::neighbor` indexes this list.
    pub neighbors: Vec<NeighborKey>,
}

impl Tables {
    /// Builds the tables; `hash_seed` is used when the config leaves it 0.
    pub fn build(config: &Config, host: &dyn HostView, hash_seed: u32) -> Result<Self, Problem> {
        let mut ifaces = Vec::new();
        let mut by_name = HashMap::new();
        for (slot, iface) in config.interfaces.iter().enumerate() {
            let i = slot;
            let found = host.iface(&iface.name).ok_or_else(|| {
                Problem::new(
                    format!("interfaces[{i}].name"),
                    format!("no interface named `{}` on this host", iface.name),
                )
            })?;
            ifaces.push((
                found.ifindex,
                Iface {
                    mac: found.mac.0,
                    slot: slot as u32,
                    ..Default::default()
                },
            ));
            by_name.insert(iface.name.as_str(), (found, slot as u32));
        }

        let mut groups = HashMap::new();
        let mut neighbors: Vec<NeighborKey> = Vec::new();
        for group in &config.groups {
            let mut g = NextHopGroup::default();
            for (entry, member) in g.members.iter_mut().zip(&group.members) {
                // validate() checked that the member's interface is a mesh interface.
                let (egress, slot) = by_name[member.interface.as_str()];
                let key = NeighborKey {
                    ifindex: egress.ifindex,
                    mac: member.neighbor.0,
                    _pad: [0; 2],
                };
                let neighbor = match neighbors.iter().position(|n| *n == key) {
                    Some(i) => i,
                    None => {
                        neighbors.push(key);
                        neighbors.len() - 1
                    }
                } as u32;
                *entry = NextHop {
                    ifindex: egress.ifindex,
                    slot,
                    neighbor,
                    src_mac: egress.mac.0,
                    dst_mac: member.neighbor.0,
                };
            }
            g.count = group.members.len() as u32;
            groups.insert(group.name.as_str(), g);
        }

        let mut routes = Desired::default();
        for route in &config.routes {
            // validate() checked that the group exists.
            routes.insert(route.prefix, Target::Group(groups[route.group.as_str()]));
        }
        // Local addresses win over any static route through longest-prefix match: a host
        // route for every address of ours, plus what the config declares local.
        let mut locals: Vec<IpNet> = host.addresses().into_iter().map(IpNet::from).collect();
        locals.extend(config.local.iter().copied());
        for prefix in locals {
            routes.insert(prefix, Target::Local);
        }

        let limits = [
            (
                "interfaces",
                ifaces.len(),
                IFACES_CAPACITY.min(EGRESS_CAPACITY),
            ),
            ("groups", config.groups.len(), NEXTHOP_GROUPS_CAPACITY),
            (
                "groups (distinct next-hop neighbours)",
                neighbors.len(),
                NEIGHBOR_TX_CAPACITY,
            ),
            (
                "routes (IPv4, with local addresses)",
                routes.v4.len(),
                ROUTES_V4_CAPACITY,
            ),
            (
                "routes (IPv6, with local addresses)",
                routes.v6.len(),
                ROUTES_V6_CAPACITY,
            ),
        ];
        for (key, have, cap) in limits {
            if have > cap as usize {
                return Err(Problem::new(
                    key,
                    format!("{have} entries, the data plane holds {cap}"),
                ));
            }
        }

        Ok(Self {
            config: DataplaneConfig {
                layout_version: LAYOUT_VERSION,
                hash_seed: if config.dataplane.hash_seed != 0 {
                    config.dataplane.hash_seed
                } else {
                    hash_seed
                },
                flags: if config.telemetry.flows {
                    CFG_F_FLOW_TELEMETRY
                } else {
                    0
                } | if config.telemetry.neighbors {
                    CFG_F_NEIGHBOR_TELEMETRY
                } else {
                    0
                },
                flow_sample_n: config.telemetry.sample_new_flows,
                drop_events_per_s: config.telemetry.drop_events_per_s,
                // validate() bounds dead_ms so that this fits.
                probe_dead_us: (config.probe.dead_ms * 1000) as u32,
            },
            ifaces,
            routes,
            neighbors,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    struct FakeHost;

    impl HostView for FakeHost {
        fn iface(&self, name: &str) -> Option<HostIface> {
            let (ifindex, last) = match name {
                "r-eth0" => (4, 0x10),
                "r-eth1" => (5, 0x11),
                "r-eth2" => (6, 0x12),
                _ => return None,
            };
            Some(HostIface {
                ifindex,
                mac: MacAddr([2, 0, 0, 0, 0, last]),
            })
        }

        fn addresses(&self) -> Vec<IpAddr> {
            vec!["10.0.1.2".parse().unwrap(), "fd00:1::2".parse().unwrap()]
        }
    }

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).expect("valid config")
    }

    const BASE: &str = r#"
node = "r"
[security]
enabled = false
[[interfaces]]
name = "r-eth0"
[[interfaces]]
name = "r-eth1"
[[interfaces]]
name = "r-eth2"
[[groups]]
name = "ecmp"
members = [
  { interface = "r-eth1", neighbor = "02:00:00:00:01:01" },
  { interface = "r-eth2", neighbor = "02:00:00:00:01:02" },
]
[[groups]]
name = "back"
members = [{ interface = "r-eth0", neighbor = "02:00:00:00:01:00" }]
[[routes]]
prefix = "10.0.0.0/8"
group = "back"
[[routes]]
prefix = "10.0.2.0/24"
group = "ecmp"
[[routes]]
prefix = "10.0.1.2/32"
group = "ecmp"
[[routes]]
prefix = "::/0"
group = "back"
"#;

    fn target(t: &Tables, prefix: &str) -> Option<Target> {
        t.routes.get(&prefix.parse().expect("a prefix")).copied()
    }

    fn group(t: &Tables, prefix: &str) -> NextHopGroup {
        match target(t, prefix) {
            Some(Target::Group(g)) => g,
            other => panic!("{prefix} leads to {other:?}, not a group"),
        }
    }

    #[test]
    fn builds_groups_with_egress_macs_and_routes() {
        let t = Tables::build(&config(BASE), &FakeHost, 99).expect("tables");
        assert_eq!(t.ifaces.len(), 3);
        let ecmp = group(&t, "10.0.2.0/24");
        assert_eq!(ecmp.count, 2);
        assert_eq!(ecmp.members[1].ifindex, 6);
        assert_eq!(ecmp.members[1].slot, 2, "r-eth2 is the third interface");
        assert_eq!(ecmp.members[1].src_mac, [2, 0, 0, 0, 0, 0x12]);
        assert_eq!(ecmp.members[1].dst_mac, [2, 0, 0, 0, 1, 2]);
        assert_eq!(ecmp.members[2], NextHop::default());
        let back = group(&t, "10.0.0.0/8");
        assert_eq!((back.count, back.members[0].ifindex), (1, 4));
        assert_eq!(group(&t, "::/0"), back, "one group for both families");
        assert_eq!(t.config.hash_seed, 99);
        assert_eq!(t.config.layout_version, LAYOUT_VERSION);
        // Each next hop names its neighbour's NEIGHBOR_TX slot.
        for g in [ecmp, back] {
            for m in &g.members[..g.count as usize] {
                let n = t.neighbors[m.neighbor as usize];
                assert_eq!((n.ifindex, n.mac), (m.ifindex, m.dst_mac));
            }
        }
        assert_eq!(t.neighbors.len(), 3);
    }

    #[test]
    fn our_addresses_are_local_even_where_a_static_route_names_them() {
        let t = Tables::build(&config(BASE), &FakeHost, 99).expect("tables");
        assert_eq!(target(&t, "10.0.1.2/32"), Some(Target::Local));
        assert_eq!(target(&t, "fd00:1::2/128"), Some(Target::Local));
        assert_eq!(
            (t.routes.v4.len(), t.routes.v6.len()),
            (3, 2),
            "4 static routes, 2 local addresses, one of them on a static route's prefix"
        );
    }

    #[test]
    fn configured_seed_wins() {
        let t = Tables::build(
            &config(&BASE.replace("node = \"r\"", "node = \"r\"\n[dataplane]\nhash_seed = 5")),
            &FakeHost,
            99,
        )
        .expect("tables");
        assert_eq!(t.config.hash_seed, 5);
    }

    #[test]
    fn missing_interface_names_the_key() {
        let c = config(
            &BASE
                .replace("name = \"r-eth2\"", "name = \"r-eth9\"")
                .replace("interface = \"r-eth2\"", "interface = \"r-eth9\""),
        );
        let p = Tables::build(&c, &FakeHost, 1).expect_err("no such interface");
        assert_eq!(p.key, "interfaces[2].name");
        assert!(p.reason.contains("r-eth9"));
    }
}
