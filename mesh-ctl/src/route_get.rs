//! `meshctl route get`: how the running data plane forwards to an address, read from its
//! pinned maps (as `ip route get` asks the kernel): the longest-prefix match, its
//! next-hop group, the member a flow's hash picks, that member's backup and whether fast
//! reroute uses the backup right now. The choice is made by the same code the XDP program
//! runs (`mesh_common`'s hash, group selection and probe predicates).

use std::net::IpAddr;

use ipnet::IpNet;
use mesh_common::{
    hash::FlowTuple,
    probe::ProbeState,
    types::{DataplaneConfig, NextHop, NextHopGroup, ROUTE_F_LOCAL, Route},
};
use serde::{Deserialize, Serialize};

/// A flow, as `--flow PROTO SRC SPORT DST DPORT` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

/// Why `--flow` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    /// The protocol is neither a name we know nor a number.
    #[error("protocol `{0}`: use tcp, udp, icmp, icmpv6 or a number 0-255")]
    Proto(String),
    /// An address did not parse.
    #[error("address `{0}` is not an IP address")]
    Addr(String),
    /// A port did not parse.
    #[error("port `{0}` is not a number 0-65535")]
    Port(String),
    /// The two addresses are of different families.
    #[error("the source and destination are not of the same family")]
    Family,
    /// The flow's destination is not the address asked about.
    #[error("the flow's destination {flow} is not {addr}")]
    Destination { flow: IpAddr, addr: IpAddr },
}

impl Flow {
    /// Parses `[PROTO, SRC, SPORT, DST, DPORT]`.
    pub fn parse(parts: &[String; 5]) -> Result<Self, FlowError> {
        let proto = match parts[0].to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmpv6" => 58,
            n => n.parse().map_err(|_| FlowError::Proto(parts[0].clone()))?,
        };
        let addr = |s: &String| s.parse().map_err(|_| FlowError::Addr(s.clone()));
        let port = |s: &String| s.parse().map_err(|_| FlowError::Port(s.clone()));
        let (src, dst): (IpAddr, IpAddr) = (addr(&parts[1])?, addr(&parts[3])?);
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(FlowError::Family);
        }
        Ok(Self {
            proto,
            src,
            src_port: port(&parts[2])?,
            dst,
            dst_port: port(&parts[4])?,
        })
    }

    /// The flow as the data plane hashes it (addresses as network-order words).
    pub fn tuple(&self) -> FlowTuple {
        FlowTuple {
            src: words(self.src),
            dst: words(self.dst),
            proto: self.proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

fn words(addr: IpAddr) -> [u32; 4] {
    let bytes: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut out = [0u32; 4];
    for (w, chunk) in out.iter_mut().zip(bytes.chunks(4)) {
        *w = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    out
}

/// One next hop as `route get` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub interface: String,
    pub ifindex: u32,
    /// The neighbour's MAC, written as the frame's destination.
    pub neighbor_mac: String,
    /// Milliseconds since the neighbour last proved alive (probe reply or request); none
    /// if it never did.
    pub alive_ms_ago: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteLookup {
    pub addr: IpAddr,
    /// The longest matching prefix; none: the kernel gets the packet (`pass_no_route`).
    pub prefix: Option<IpNet>,
    /// The prefix is one of this node's: delivered by the kernel.
    pub local: bool,
    pub group: Option<u32>,
    /// The group's members, in the order the hash indexes them.
    pub members: Vec<Hop>,
    /// The member the flow's hash picks; none without `--flow`.
    pub chosen: Option<usize>,
    /// That member's loop-free alternate, if it has one.
    pub backup: Option<Hop>,
    /// Fast reroute sends the flow to the backup now: the member is silent for longer
    /// than `probe.dead_ms` and the backup is steady.
    pub backup_in_use: bool,
}

/// What the lookup reads from the data plane.
pub struct Tables<'a> {
    pub routes: &'a [(IpNet, Route)],
    pub groups: &'a [(u32, NextHopGroup)],
    pub config: &'a DataplaneConfig,
    /// Probe state by neighbour index (`NextHop::neighbor`).
    pub probes: &'a dyn Fn(u32) -> Option<ProbeState>,
    /// Interface names by index.
    pub ifname: &'a dyn Fn(u32) -> String,
    /// CLOCK_MONOTONIC now, ns.
    pub now_ns: u64,
}

/// Looks `addr` up as the XDP program would, for `flow` if given.
pub fn lookup(t: &Tables<'_>, addr: IpAddr, flow: Option<&Flow>) -> RouteLookup {
    let mut out = RouteLookup {
        addr,
        prefix: None,
        local: false,
        group: None,
        members: Vec::new(),
        chosen: None,
        backup: None,
        backup_in_use: false,
    };
    let Some(&(prefix, route)) = t
        .routes
        .iter()
        .filter(|(p, _)| p.contains(&addr))
        .max_by_key(|(p, _)| p.prefix_len())
    else {
        return out;
    };
    out.prefix = Some(prefix);
    if route.flags & ROUTE_F_LOCAL != 0 {
        out.local = true;
        return out;
    }
    out.group = Some(route.group);
    let Some(group) = t
        .groups
        .iter()
        .find(|(id, _)| *id == route.group)
        .map(|(_, g)| g)
    else {
        return out;
    };
    let hop = |h: &NextHop| Hop {
        interface: (t.ifname)(h.ifindex),
        ifindex: h.ifindex,
        neighbor_mac: mac(h.dst_mac),
        alive_ms_ago: (t.probes)(h.neighbor)
            .filter(|s| s.alive_ns != 0)
            .map(|s| t.now_ns.saturating_sub(s.alive_ns) / 1_000_000),
    };
    out.members = group
        .members
        .iter()
        .take(group.count as usize)
        .map(hop)
        .collect();
    let Some(flow) = flow else {
        return out;
    };
    let Some(i) = group.select_index(flow.tuple().hash(t.config.hash_seed)) else {
        return out;
    };
    out.chosen = Some(i);
    if let Some(alt) = group.backups.get(i).filter(|b| b.ifindex != 0) {
        out.backup = Some(hop(alt));
        let dead_ns = u64::from(t.config.probe_dead_us) * 1000;
        let member = group.members[i];
        out.backup_in_use = t.config.probe_dead_us != 0
            && (t.probes)(member.neighbor).is_none_or(|s| s.silent(t.now_ns, dead_ns))
            && (t.probes)(alt.neighbor).is_some_and(|s| s.steady(t.now_ns, dead_ns));
    }
    out
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads the data plane pinned at `pins` and looks `addr` up in it.
pub fn from_pins(
    pins: &crate::dataplane::pins::PinDir,
    addr: IpAddr,
    flow: Option<&Flow>,
) -> Result<RouteLookup, crate::dataplane::DataplaneError> {
    let dp = crate::dataplane::Dataplane::open_pinned(pins)?;
    let (v4, v6) = dp.read_routes()?;
    let routes: Vec<(IpNet, Route)> = v4
        .into_iter()
        .map(|(p, r)| (IpNet::V4(p), r))
        .chain(v6.into_iter().map(|(p, r)| (IpNet::V6(p), r)))
        .collect();
    let groups = dp.read_groups()?;
    let config = dp.read_config()?;
    let probes = |n: u32| dp.probe_state(n).ok();
    let ifname = |i: u32| {
        nix::net::if_::if_indextoname(i)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("ifindex {i}"))
    };
    // The clock the data plane stamps probes with.
    let now_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0);
    Ok(lookup(
        &Tables {
            routes: &routes,
            groups: &groups,
            config: &config,
            probes: &probes,
            ifname: &ifname,
            now_ns,
        },
        addr,
        flow,
    ))
}

/// The lookup for people, one line per fact.
pub fn render(r: &RouteLookup) -> String {
    let hop = |h: &Hop| {
        let alive = h
            .alive_ms_ago
            .map_or("never heard".to_owned(), |ms| format!("heard {ms} ms ago"));
        format!("dev {} lladdr {} ({alive})", h.interface, h.neighbor_mac)
    };
    let Some(prefix) = r.prefix else {
        return format!("{}: no route: the kernel gets it (pass_no_route)\n", r.addr);
    };
    if r.local {
        return format!(
            "{} local via {prefix}: the kernel delivers it (pass_local)\n",
            r.addr
        );
    }
    let mut out = format!(
        "{} via {prefix} group {}\n",
        r.addr,
        r.group.map_or("-".to_owned(), |g| g.to_string())
    );
    if r.members.is_empty() {
        out.push_str("  the group is empty: the kernel gets it (pass_empty_group)\n");
        return out;
    }
    for (i, m) in r.members.iter().enumerate() {
        let mark = if r.chosen == Some(i) { "*" } else { " " };
        out.push_str(&format!(" {mark}member {i}: {}\n", hop(m)));
    }
    match (r.chosen, &r.backup) {
        (None, _) => out.push_str("  the member depends on the flow: pass --flow to see which\n"),
        (Some(i), Some(b)) => out.push_str(&format!(
            "  backup of member {i}: {}; {}\n",
            hop(b),
            if r.backup_in_use {
                "IN USE: the member is silent"
            } else {
                "not in use"
            }
        )),
        (Some(i), None) => out.push_str(&format!("  member {i} has no backup\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(ifindex: u32, neighbor: u32) -> NextHop {
        NextHop {
            ifindex,
            slot: 1,
            neighbor,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 9, neighbor as u8],
        }
    }

    fn group() -> NextHopGroup {
        let mut g = NextHopGroup {
            count: 2,
            ..Default::default()
        };
        g.members[0] = hop(10, 0);
        g.members[1] = hop(11, 1);
        g.backups[0] = hop(11, 1);
        g.backups[1] = hop(10, 0);
        g
    }

    fn flow(sport: u16) -> Flow {
        Flow::parse(&[
            "udp".into(),
            "10.0.0.1".into(),
            sport.to_string(),
            "10.9.0.7".into(),
            "5201".into(),
        ])
        .expect("flow")
    }

    fn run(alive: [u64; 2], flow: Option<&Flow>) -> RouteLookup {
        let routes = [
            (
                "10.0.0.0/8".parse().expect("p"),
                Route { group: 3, flags: 0 },
            ),
            (
                "10.9.0.0/16".parse().expect("p"),
                Route { group: 4, flags: 0 },
            ),
            (
                "10.9.0.7/32".parse().expect("p"),
                Route {
                    group: 0,
                    flags: ROUTE_F_LOCAL,
                },
            ),
        ];
        let groups = [(4, group())];
        let config = DataplaneConfig {
            hash_seed: 7,
            probe_dead_us: 15_000,
            ..Default::default()
        };
        let probes = move |n: u32| {
            Some(ProbeState {
                alive_ns: alive[n as usize],
                ..Default::default()
            })
        };
        let t = Tables {
            routes: &routes[..2],
            groups: &groups,
            config: &config,
            probes: &probes,
            ifname: &|i| format!("eth{i}"),
            now_ns: 1_000_000_000,
        };
        lookup(&t, "10.9.0.7".parse().expect("a"), flow)
    }

    #[test]
    fn the_flow_picks_the_member_the_data_plane_would() {
        let r = run([999_000_000; 2], None);
        assert_eq!(
            r.prefix,
            Some("10.9.0.0/16".parse().expect("p")),
            "longest match"
        );
        assert_eq!(r.group, Some(4));
        assert_eq!(r.members.len(), 2);
        assert_eq!(r.chosen, None);
        assert!(render(&r).contains("pass --flow"));
        let mut picked = std::collections::BTreeSet::new();
        for sport in 40_000..40_064 {
            let f = flow(sport);
            let r = run([999_000_000; 2], Some(&f));
            let want = group().select_index(f.tuple().hash(7));
            assert_eq!(r.chosen, want);
            picked.insert(r.chosen);
            assert!(!r.backup_in_use, "both members answer");
        }
        assert_eq!(picked.len(), 2, "flows spread over both members");
    }

    #[test]
    fn a_silent_member_with_a_steady_backup_uses_the_backup() {
        let f = (40_000..)
            .map(flow)
            .find(|f| group().select_index(f.tuple().hash(7)) == Some(0))
            .expect("a flow on member 0");
        // Member 0 silent for 500 ms (dead time 15 ms), its backup heard 1 ms ago.
        let r = run([500_000_000, 999_000_000], Some(&f));
        assert_eq!(r.chosen, Some(0));
        assert!(r.backup_in_use, "{r:?}");
        assert!(render(&r).contains("IN USE"));
        // Both silent: the primary stays, as in the data plane.
        let r = run([500_000_000, 500_000_000], Some(&f));
        assert!(!r.backup_in_use);
    }

    #[test]
    fn no_route_and_bad_flows_are_said_plainly() {
        let t = Tables {
            routes: &[],
            groups: &[],
            config: &DataplaneConfig::default(),
            probes: &|_| None,
            ifname: &|i| i.to_string(),
            now_ns: 0,
        };
        let r = lookup(&t, "192.0.2.1".parse().expect("a"), None);
        assert!(render(&r).contains("no route"));
        let bad = |p: [&str; 5]| Flow::parse(&p.map(String::from)).expect_err("refused");
        assert_eq!(
            bad(["gre?", "10.0.0.1", "1", "10.0.0.2", "2"]),
            FlowError::Proto("gre?".into())
        );
        assert_eq!(
            bad(["tcp", "10.0.0.1", "1", "fd00::2", "2"]),
            FlowError::Family
        );
        assert_eq!(
            bad(["tcp", "10.0.0.1", "70000", "10.0.0.2", "2"]),
            FlowError::Port("70000".into())
        );
    }
}
