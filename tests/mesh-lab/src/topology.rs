//! The lab topologies: node wiring plus the agent configuration each node runs.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::{AgentConfig, Group, Lab, Link};

/// A wired lab topology, agents not yet started.
pub struct Topology {
    /// Agent configuration per node, in start order.
    pub configs: Vec<AgentConfig>,
    /// Where traffic starts and ends.
    pub src: String,
    pub dst: String,
    pub dst_v4: Ipv4Addr,
    pub dst_v6: Ipv6Addr,
    /// The nodes that must forward in XDP.
    pub routers: Vec<String>,
}

fn group(name: &str, members: &[(&Link, &str)]) -> Group {
    Group {
        name: name.to_owned(),
        members: members
            .iter()
            .map(|(l, node)| (l.end(node).ifname.clone(), l.peer_of(node).mac))
            .collect(),
    }
}

fn subnet_routes(link: &Link, group: &str) -> Vec<(String, String)> {
    vec![
        (format!("10.0.{}.0/24", link.index), group.to_owned()),
        (format!("fd00:{}::/64", link.index), group.to_owned()),
    ]
}

/// Default routes (IPv4 and IPv6) from `node` via the far end of `via`.
pub fn host_default(lab: &Lab, node: &str, via: &Link) -> Result<()> {
    let gw = via.peer_of(node);
    lab.exec_ok(
        node,
        &["ip", "route", "add", "default", "via", &gw.v4.to_string()],
    )?;
    lab.exec_ok(
        node,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            &gw.v6.to_string(),
        ],
    )?;
    Ok(())
}

fn edge(node: &str, links: &[&Link]) -> AgentConfig {
    AgentConfig {
        node: node.to_owned(),
        interfaces: links.iter().map(|l| l.end(node).ifname.clone()).collect(),
        ..Default::default()
    }
}

/// `a – r – b`: hosts a and b, router r.
pub fn line(lab: &mut Lab) -> Result<Topology> {
    for n in ["a", "r", "b"] {
        lab.node(n)?;
    }
    let ar = lab.link("a", "r")?;
    let rb = lab.link("r", "b")?;
    host_default(lab, "a", &ar)?;
    host_default(lab, "b", &rb)?;
    let mut routes = subnet_routes(&ar, "to-a");
    routes.extend(subnet_routes(&rb, "to-b"));
    let r = AgentConfig {
        node: "r".into(),
        interfaces: vec![ar.end("r").ifname.clone(), rb.end("r").ifname.clone()],
        groups: vec![group("to-a", &[(&ar, "r")]), group("to-b", &[(&rb, "r")])],
        routes,
        ..Default::default()
    };
    Ok(Topology {
        configs: vec![edge("a", &[&ar]), edge("b", &[&rb]), r],
        src: "a".into(),
        dst: "b".into(),
        dst_v4: rb.b.v4,
        dst_v6: rb.b.v6,
        routers: vec!["r".into()],
    })
}

/// `s – a`, then the diamond `a – {b, c} – d`: a spreads flows to d over b and c (ECMP).
/// d's address lives on its loopback, reachable through both.
pub fn diamond(lab: &mut Lab) -> Result<Topology> {
    for n in ["s", "a", "b", "c", "d"] {
        lab.node(n)?;
    }
    let sa = lab.link("s", "a")?;
    let ab = lab.link("a", "b")?;
    let ac = lab.link("a", "c")?;
    let bd = lab.link("b", "d")?;
    let cd = lab.link("c", "d")?;
    let dst_v4 = Ipv4Addr::new(10, 255, 0, 4);
    let dst_v6 = Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 4);
    lab.exec_ok(
        "d",
        &["ip", "addr", "add", &format!("{dst_v4}/32"), "dev", "lo"],
    )?;
    lab.exec_ok(
        "d",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{dst_v6}/128"),
            "dev",
            "lo",
        ],
    )?;
    host_default(lab, "s", &sa)?;
    // d answers from its loopback service address, not its link address: a connected UDP
    // socket (iperf3's) only accepts replies from the address it sent to.
    let gw = bd.peer_of("d");
    let (v4_src, v6_src) = (dst_v4.to_string(), dst_v6.to_string());
    let (gw4, gw6) = (gw.v4.to_string(), gw.v6.to_string());
    lab.exec_ok(
        "d",
        &["ip", "route", "add", "default", "via", &gw4, "src", &v4_src],
    )?;
    lab.exec_ok(
        "d",
        &[
            "ip", "-6", "route", "add", "default", "via", &gw6, "src", &v6_src,
        ],
    )?;
    let dst = |g: &str| {
        vec![
            (format!("{dst_v4}/32"), g.to_owned()),
            (format!("{dst_v6}/128"), g.to_owned()),
        ]
    };

    let mut a_routes = subnet_routes(&sa, "to-s");
    a_routes.extend(subnet_routes(&ab, "to-b"));
    a_routes.extend(subnet_routes(&ac, "to-c"));
    a_routes.extend(subnet_routes(&bd, "to-b"));
    a_routes.extend(subnet_routes(&cd, "to-c"));
    a_routes.extend(dst("ecmp"));
    let a = AgentConfig {
        node: "a".into(),
        interfaces: [&sa, &ab, &ac]
            .iter()
            .map(|l| l.end("a").ifname.clone())
            .collect(),
        groups: vec![
            group("to-s", &[(&sa, "a")]),
            group("to-b", &[(&ab, "a")]),
            group("to-c", &[(&ac, "a")]),
            group("ecmp", &[(&ab, "a"), (&ac, "a")]),
        ],
        routes: a_routes,
        ..Default::default()
    };
    let middle = |node: &str, up: &Link, down: &Link| {
        let mut routes = subnet_routes(&sa, "to-a");
        routes.extend(subnet_routes(up, "to-a"));
        routes.extend(subnet_routes(down, "to-d"));
        routes.extend(dst("to-d"));
        AgentConfig {
            node: node.into(),
            interfaces: vec![up.end(node).ifname.clone(), down.end(node).ifname.clone()],
            groups: vec![group("to-a", &[(up, node)]), group("to-d", &[(down, node)])],
            routes,
            ..Default::default()
        }
    };
    let b = middle("b", &ab, &bd);
    let c = middle("c", &ac, &cd);
    Ok(Topology {
        configs: vec![edge("s", &[&sa]), edge("d", &[&bd, &cd]), a, b, c],
        src: "s".into(),
        dst: "d".into(),
        dst_v4,
        dst_v6,
        routers: vec!["a".into(), "b".into(), "c".into()],
    })
}
