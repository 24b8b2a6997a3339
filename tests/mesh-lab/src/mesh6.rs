//! The failover mesh: six routers in a double diamond, n1 → {n2, n3} → {n4, n5} → n6,
//! so n1 reaches n6 over four equal-cost paths, with hosts hs (at n1) and hd (at n6).
//! Every link is a wire link, so any of them can fail. Routing is left to whoever runs
//! on the routers (our agent, or babeld over kernel forwarding).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{
    Fault, Lab, Link,
    stream::{Outage, analyze, rate_series},
    wire::wait_until,
};
use crate::config::MacAddr;

/// The routers, n1 (at hs) to n6 (at hd).
pub const ROUTERS: [&str; 6] = ["n1", "n2", "n3", "n4", "n5", "n6"];
/// The router-to-router links.
pub const CORE: [(&str, &str); 8] = [
    ("n1", "n2"),
    ("n1", "n3"),
    ("n2", "n4"),
    ("n2", "n5"),
    ("n3", "n4"),
    ("n3", "n5"),
    ("n4", "n6"),
    ("n5", "n6"),
];
/// The four equal-cost paths from n1 to n6.
pub const PATHS: [[&str; 4]; 4] = [
    ["n1", "n2", "n4", "n6"],
    ["n1", "n2", "n5", "n6"],
    ["n1", "n3", "n4", "n6"],
    ["n1", "n3", "n5", "n6"],
];

/// A host and the router it hangs off.
#[derive(Debug, Clone)]
pub struct Attached {
    pub host: String,
    pub router: String,
    /// The router's interface towards the host.
    pub ifname: String,
    pub host_mac: MacAddr,
    pub host_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub link: Link,
}

/// The wired mesh.
#[derive(Debug, Clone)]
pub struct Mesh6 {
    /// n1..n6 (or the routers of another shape, see [`wired`]).
    pub routers: Vec<String>,
    /// The router-to-router links ([`CORE`] for the double diamond).
    pub core: Vec<(String, String)>,
    /// Every link, hs–n1 first, n6–hd last.
    pub links: Vec<Link>,
    /// hs, at n1: where streams start.
    pub hs: Attached,
    /// hd, at n6: where streams end.
    pub hd: Attached,
}

impl Mesh6 {
    /// The link between two nodes (routers or hosts).
    pub fn link(&self, a: &str, b: &str) -> Result<&Link> {
        self.links
            .iter()
            .find(|l| (l.a.node == a && l.b.node == b) || (l.a.node == b && l.b.node == a))
            .with_context(|| format!("mesh6 has no link {a}-{b}"))
    }

    /// The router-to-router links, in [`Mesh6::core`] order.
    pub fn core_links(&self) -> Result<Vec<&Link>> {
        self.core.iter().map(|(a, b)| self.link(a, b)).collect()
    }

    /// The routers next to `router` in the core.
    pub fn neighbours(&self, router: &str) -> Vec<&str> {
        self.core
            .iter()
            .filter_map(|(a, b)| {
                if a == router {
                    Some(b.as_str())
                } else if b == router {
                    Some(a.as_str())
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Builds the mesh: hosts and routers as lab nodes (kernel forwarding off), every link a
/// wire link, and the hosts' default routes via their router.
pub fn mesh6(lab: &mut Lab) -> Result<Mesh6> {
    wired(lab, &ROUTERS, &CORE, "n6")
}

/// Builds a mesh of `routers` joined by `core`, hs at the first router and hd at `hd_at`,
/// as [`mesh6`] does.
pub fn wired(lab: &mut Lab, routers: &[&str], core: &[(&str, &str)], hd_at: &str) -> Result<Mesh6> {
    let hs_at = *routers.first().context("a mesh without routers")?;
    for n in ["hs", "hd"].iter().chain(routers.iter()) {
        lab.node(n)?;
    }
    let mut links = vec![lab.wire_link(hs_at, "hs")?];
    for (a, b) in core {
        links.push(lab.wire_link(a, b)?);
    }
    links.push(lab.wire_link(hd_at, "hd")?);
    let attach = |link: &Link, router: &str, host: &str| -> Result<Attached> {
        let (r, h) = (link.end(router), link.end(host));
        super::topology::host_default(lab, host, link)?;
        Ok(Attached {
            host: host.to_owned(),
            router: router.to_owned(),
            ifname: r.ifname.clone(),
            host_mac: h.mac,
            host_v4: h.v4,
            host_v6: h.v6,
            link: link.clone(),
        })
    };
    let first = links.first().context("mesh6 without links")?;
    let last = links.last().context("mesh6 without links")?;
    let hs = attach(first, hs_at, "hs")?;
    let hd = attach(last, hd_at, "hd")?;
    Ok(Mesh6 {
        routers: routers.iter().map(|r| (*r).to_owned()).collect(),
        core: core
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
        links,
        hs,
        hd,
    })
}

/// Turns IPv4 and IPv6 forwarding on in the routers, for a routing daemon that programs
/// the kernel (babeld) rather than XDP.
pub fn kernel_forwarding(lab: &Lab, mesh: &Mesh6) -> Result<()> {
    for r in &mesh.routers {
        lab.sysctl(r, "net.ipv4.ip_forward", "1")?;
        lab.sysctl(r, "net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(())
}

/// Frames each core link carried during `window`, in [`CORE`] order, in the busier
/// direction: a one-way stream shows there, well above hellos and probes going both ways.
/// Read without running commands, so polling it does not starve the routers.
pub fn core_traffic(lab: &Lab, mesh: &Mesh6, window: Duration) -> Result<Vec<u64>> {
    let links = mesh.core_links()?;
    let before = lab.wire_frames(&links)?;
    std::thread::sleep(window);
    let after = lab.wire_frames(&links)?;
    Ok(after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.0.saturating_sub(b.0).max(a.1.saturating_sub(b.1)))
        .collect())
}

/// The path a stream from hs to hd takes, from the wires' frame counts over `window`:
/// from n1, follow the busiest core link carrying at least `min_packets`, to n6. None
/// while no complete path carries traffic.
pub fn active_path(
    lab: &Lab,
    mesh: &Mesh6,
    window: Duration,
    min_packets: u64,
) -> Result<Option<Vec<String>>> {
    let data = core_traffic(lab, mesh, window)?;
    Ok(path_from_counts(
        &mesh.core,
        &mesh.hs.router,
        &mesh.hd.router,
        &data,
        min_packets,
    ))
}

/// Follows the busiest links of `core` from `from` to `to`; `data` in `core` order.
fn path_from_counts(
    core: &[(String, String)],
    from: &str,
    to: &str,
    data: &[u64],
    min_packets: u64,
) -> Option<Vec<String>> {
    let mut path = vec![from.to_owned()];
    while path.last().is_some_and(|n| n != to) {
        let here = path.last()?.clone();
        let next = core
            .iter()
            .zip(data)
            .filter(|&(_, &n)| n >= min_packets)
            .filter_map(|((a, b), &n)| {
                if *a == here {
                    Some((b, n))
                } else if *b == here {
                    Some((a, n))
                } else {
                    None
                }
            })
            .filter(|(next, _)| !path.iter().any(|p| p == *next))
            .max_by_key(|&(_, n)| n)?;
        path.push(next.0.clone());
    }
    Some(path)
}

/// Whether `path` (a list of routers) crosses the link between `a` and `b`.
pub fn path_uses(path: &[String], a: &str, b: &str) -> bool {
    path.windows(2)
        .any(|w| (w[0] == a && w[1] == b) || (w[0] == b && w[1] == a))
}

/// How a failure round runs.
#[derive(Debug, Clone)]
pub struct RoundOptions {
    /// The stream's rate, hs to hd.
    pub pps: u32,
    /// The fault to inject.
    pub fault: Fault,
    /// How long the mesh may take to route around the fault before the round gives up
    /// (the outage then counts as not restored).
    pub restore_limit: Duration,
    /// Bucket of the round's arrival-rate series, for plots.
    pub series_bucket_ms: u64,
}

/// Where a failure round cut the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The link from n1.
    FirstHop,
    /// The link between the second and the third router of the path.
    Middle,
}

/// One measured failure.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRound {
    pub round: usize,
    pub position: Position,
    /// The failed link, `a-b`.
    pub link: String,
    pub path_before: Vec<String>,
    /// The path traffic took once restored, if it was.
    pub path_after: Option<Vec<String>>,
    pub fault_at_ns: u64,
    pub outage: Outage,
    /// Arrivals per second over the round, time zero at the receiver's start.
    pub series: Vec<(f64, f64)>,
    /// The fault's time on the series' axis, in s.
    pub fault_s: f64,
}

/// Runs one failure round: a stream from hs to hd, the active path found from the wire
/// counters, a fault on its first hop (even rounds) or its middle link (odd rounds), a
/// wait until traffic takes a path around it, then the stream's outage. The fault is
/// healed before returning; waiting for the mesh to take the link back is the caller's.
pub fn failure_round(
    lab: &mut Lab,
    mesh: &Mesh6,
    round: usize,
    opts: &RoundOptions,
) -> Result<FailureRound> {
    let warmup = Duration::from_millis(300);
    let find_limit = Duration::from_secs(3);
    let max_stream = warmup + find_limit + opts.restore_limit + Duration::from_secs(5);
    let stream = lab.stream("hs", "hd", mesh.hd.host_v4.into(), opts.pps, max_stream)?;
    std::thread::sleep(warmup);
    // A link is on the path if it carried half the stream in the window.
    let window = Duration::from_millis(200);
    let min = u64::from(opts.pps) * 200 / 1000 / 2;
    let mut before = None;
    wait_until(find_limit, Duration::ZERO, || {
        before = active_path(lab, mesh, window, min)?;
        Ok(before.is_some())
    })?;
    let Some(path_before) = before else {
        let _ = stream.stop();
        bail!("round {round}: no complete path from n1 to n6 carries the stream");
    };
    let (position, a, b) = if round.is_multiple_of(2) {
        (Position::FirstHop, &path_before[0], &path_before[1])
    } else {
        (Position::Middle, &path_before[1], &path_before[2])
    };
    let link = mesh.link(a, b)?.clone();
    let fault_at_ns = lab.fault_at(&link, opts.fault)?;
    let poll = Duration::from_millis(50);
    let min = u64::from(opts.pps) * 50 / 1000 / 2;
    let mut after = None;
    wait_until(opts.restore_limit, Duration::ZERO, || {
        after = active_path(lab, mesh, poll, min)?.filter(|p| !path_uses(p, a, b));
        Ok(after.is_some())
    })?;
    // Some traffic on the new path, so the analysis sees the gap end.
    std::thread::sleep(Duration::from_millis(300));
    let collected = stream.stop();
    lab.heal(&link)?;
    let (sent, arrivals) = collected?;
    let outage = analyze(sent, &arrivals, fault_at_ns);
    Ok(FailureRound {
        round,
        position,
        link: format!("{a}-{b}"),
        path_before: path_before.clone(),
        path_after: after,
        fault_at_ns,
        outage,
        series: rate_series(&arrivals, opts.series_bucket_ms),
        fault_s: fault_at_ns.saturating_sub(arrivals.start_ns) as f64 / 1e9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Vec<(String, String)> {
        CORE.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn the_busiest_chain_is_the_path() {
        // n1-n3, n3-n5, n5-n6 busy; n1-n2 a little (control noise below the bar).
        let data = [3, 200, 0, 0, 0, 190, 0, 205];
        let path = path_from_counts(&core(), "n1", "n6", &data, 50).expect("a path");
        assert_eq!(path, ["n1", "n3", "n5", "n6"]);
        assert!(path_uses(&path, "n5", "n3"));
        assert!(!path_uses(&path, "n1", "n2"));
    }

    #[test]
    fn a_broken_chain_is_no_path() {
        let data = [200, 0, 0, 0, 0, 0, 0, 200];
        assert_eq!(path_from_counts(&core(), "n1", "n6", &data, 50), None);
    }

    #[test]
    fn every_listed_path_follows_core_links() {
        for p in PATHS {
            for w in p.windows(2) {
                assert!(
                    CORE.contains(&(w[0], w[1])),
                    "{}-{} is not a core link",
                    w[0],
                    w[1]
                );
            }
        }
    }
}
