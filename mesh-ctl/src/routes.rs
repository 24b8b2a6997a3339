//! Turns a validated configuration into the exact entries the data plane maps will hold.
//! Pure: the host's interfaces come in through [`HostView`], so this runs without root.

use std::{collections::HashMap, net::IpAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_common::{
    maps::{
        EGRESS_CAPACITY, IFACES_CAPACITY, LAYOUT_VERSION, NEIGHBOR_TX_CAPACITY,
        NEXTHOP_GROUPS_CAPACITY, ROUTES_V4_CAPACITY, ROUTES_V6_CAPACITY,
    },
    telemetry::NeighborKey,
    types::{
        CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY, DataplaneConfig, Iface, NextHop,
        NextHopGroup, ROUTE_F_LOCAL, Route,
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
    /// Every address configured on the host, all interfaces.
    fn addresses(&self) -> Vec<IpAddr>;
}

/// Everything the data plane maps will hold, in the order it must be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    pub config: DataplaneConfig,
    /// Mesh interfaces by ifindex; also the egress ports.
    pub ifaces: Vec<(u32, Iface)>,
    /// Next-hop groups; a group's id is its index.
    pub groups: Vec<NextHopGroup>,
    pub v4: Vec<(Ipv4Net, Route)>,
    pub v6: Vec<(Ipv6Net, Route)>,
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

        let mut groups = Vec::new();
        let mut group_ids = HashMap::new();
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
            group_ids.insert(group.name.as_str(), groups.len() as u32);
            groups.push(g);
        }

        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for route in &config.routes {
            let r = Route {
                group: group_ids[route.group.as_str()],
                flags: 0,
            };
            match route.prefix {
                IpNet::V4(p) => v4.push((p, r)),
                IpNet::V6(p) => v6.push((p, r)),
            }
        }
        // Local addresses win over any static route through longest-prefix match: a host
        // route for every address of ours, plus what the config declares local.
        let local = Route {
            group: 0,
            flags: ROUTE_F_LOCAL,
        };
        let mut locals: Vec<IpNet> = host.addresses().into_iter().map(IpNet::from).collect();
        locals.extend(config.local.iter().copied());
        for prefix in locals {
            match prefix {
                IpNet::V4(p) => replace_or_push(&mut v4, p, local),
                IpNet::V6(p) => replace_or_push(&mut v6, p, local),
            }
        }

        let limits = [
            (
                "interfaces",
                ifaces.len(),
                IFACES_CAPACITY.min(EGRESS_CAPACITY),
            ),
            ("groups", groups.len(), NEXTHOP_GROUPS_CAPACITY),
            (
                "groups (distinct next-hop neighbours)",
                neighbors.len(),
                NEIGHBOR_TX_CAPACITY,
            ),
            (
                "routes (IPv4, with local addresses)",
                v4.len(),
                ROUTES_V4_CAPACITY,
            ),
            (
                "routes (IPv6, with local addresses)",
                v6.len(),
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
            groups,
            v4,
            v6,
            neighbors,
        })
    }
}

fn replace_or_push<P: PartialEq>(routes: &mut Vec<(P, Route)>, prefix: P, route: Route) {
    match routes.iter_mut().find(|(p, _)| *p == prefix) {
        Some(entry) => entry.1 = route,
        None => routes.push((prefix, route)),
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

    #[test]
    fn builds_groups_with_egress_macs_and_routes() {
        let t = Tables::build(&config(BASE), &FakeHost, 99).expect("tables");
        assert_eq!(t.ifaces.len(), 3);
        assert_eq!(t.groups.len(), 2);
        let ecmp = &t.groups[0];
        assert_eq!(ecmp.count, 2);
        assert_eq!(ecmp.members[1].ifindex, 6);
        assert_eq!(ecmp.members[1].src_mac, [2, 0, 0, 0, 0, 0x12]);
        assert_eq!(ecmp.members[1].dst_mac, [2, 0, 0, 0, 1, 2]);
        assert_eq!(ecmp.members[2], NextHop::default());
        assert_eq!(t.config.hash_seed, 99);
        assert_eq!(t.config.layout_version, LAYOUT_VERSION);
        let route = |p: &str| {
            t.v4.iter()
                .find(|(n, _)| *n == p.parse::<Ipv4Net>().unwrap())
                .map(|e| e.1)
        };
        assert_eq!(route("10.0.2.0/24"), Some(Route { group: 0, flags: 0 }));
        assert_eq!(route("10.0.0.0/8"), Some(Route { group: 1, flags: 0 }));
        // A host's own address is local even where a static route names it.
        assert_eq!(route("10.0.1.2/32").map(|r| r.flags), Some(ROUTE_F_LOCAL));
        assert_eq!(
            t.v4.iter()
                .filter(|(n, _)| n.to_string() == "10.0.1.2/32")
                .count(),
            1
        );
        assert!(
            t.v6.iter()
                .any(|(n, r)| n.to_string() == "fd00:1::2/128" && r.flags == ROUTE_F_LOCAL)
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
