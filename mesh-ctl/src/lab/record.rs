//! Records the live six-router mesh as a detection trace (`detect::trace`), the format the
//! scenario generator writes, so detectors can be evaluated on real runs too. Each window
//! takes every agent's interface counters and probe figures (totals, through its API),
//! turns them into deltas and lays them over the router graph: a node's figures are the
//! sum over its interfaces, a link's the sum over its two ends. Flow fan-in and fan-out
//! stay zero: the routers' flow tables hold transit flows, not their own.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{Agent, mesh6::Mesh6};
use crate::{
    api::Request,
    detect::trace::{LinkTelemetry, NodeTelemetry, Snapshot, TRACE_VERSION, Topology, TraceHeader},
    telemetry::LinkView,
};

/// One interface's totals as an agent reports them.
#[derive(Debug, Clone, Copy, Default)]
struct Iface {
    rx: u64,
    rx_bytes: u64,
    tx: u64,
    tx_bytes: u64,
    forwarded: u64,
    passed: u64,
    dropped: u64,
}

/// One agent's probe figures for one neighbour.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    sent: u64,
    replies: u64,
    rtt_ms: f64,
    jitter_ms: f64,
}

/// Everything read from every agent at one instant, keyed by (node, interface name) and
/// (node, neighbour). Probe frames are in none of the data plane's link counters.
#[derive(Debug, Default)]
struct Reading {
    ifaces: BTreeMap<(String, String), Iface>,
    probes: BTreeMap<(String, String), Probe>,
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn read(agents: &[Agent]) -> Result<Reading> {
    let mut r = Reading::default();
    for a in agents {
        let links = a.query(&Request::Links)?;
        // The agent's own view type: a renamed field is an error here, not a silent zero.
        let views: Vec<LinkView> = serde_json::from_value(links["links"].clone())
            .with_context(|| format!("reading {}'s links view", a.node))?;
        for l in views {
            r.ifaces.insert(
                (a.node.clone(), l.link),
                Iface {
                    rx: l.rx_packets,
                    rx_bytes: l.rx_bytes,
                    tx: l.tx_packets,
                    tx_bytes: l.tx_bytes,
                    forwarded: l.forwarded,
                    passed: l.passed,
                    dropped: l.dropped,
                },
            );
        }
        let neighbours = a.query(&Request::Neighbors)?;
        for n in neighbours["neighbors"]
            .as_array()
            .context("a neighbours view")?
        {
            let peer = n["node"].as_str().context("a neighbour name")?.to_owned();
            r.probes.insert(
                (a.node.clone(), peer),
                Probe {
                    sent: u(n, "probes_sent"),
                    replies: u(n, "probe_replies"),
                    rtt_ms: n["rtt_ms"].as_f64().unwrap_or(0.0),
                    jitter_ms: n["jitter_ms"].as_f64().unwrap_or(0.0),
                },
            );
        }
    }
    Ok(r)
}

/// Takes windows of the running mesh.
pub struct Recorder {
    topology: Topology,
    /// Per link, the interface name at each end.
    ends: Vec<[(String, String); 2]>,
    last: Reading,
    window: u32,
}

impl Recorder {
    /// Starts from the agents' current totals; the first window is what happens next.
    pub fn new(mesh: &Mesh6, agents: &[Agent]) -> Result<Self> {
        let core = mesh.core_links()?;
        let index = |n: &str| mesh.routers.iter().position(|r| r == n).map(|i| i as u32);
        let mut links = Vec::new();
        let mut ends = Vec::new();
        for l in core {
            let (a, b) = (
                index(&l.a.node).context("a core link end is a router")?,
                index(&l.b.node).context("a core link end is a router")?,
            );
            let (lo, hi) = if a < b { (&l.a, &l.b) } else { (&l.b, &l.a) };
            links.push((a.min(b), a.max(b)));
            ends.push([
                (lo.node.clone(), lo.ifname.clone()),
                (hi.node.clone(), hi.ifname.clone()),
            ]);
        }
        Ok(Self {
            topology: Topology {
                kind: "live".into(),
                nodes: mesh.routers.clone(),
                links,
            },
            ends,
            last: read(agents)?,
            window: 0,
        })
    }

    /// The trace header for windows of `window_ms`.
    pub fn header(&self, window_ms: u32) -> TraceHeader {
        TraceHeader {
            version: TRACE_VERSION,
            seed: 0,
            window_ms,
            topology: self.topology.clone(),
            faults: Vec::new(),
        }
    }

    /// Closes the current window: what every counter did since the last call.
    pub fn window(&mut self, agents: &[Agent]) -> Result<Snapshot> {
        let now = read(agents)?;
        let mut snap = Snapshot::empty(self.window, &self.topology);
        self.window += 1;
        let d = |key: &(String, String)| -> Iface {
            let (a, b) = (
                now.ifaces.get(key).copied().unwrap_or_default(),
                self.last.ifaces.get(key).copied().unwrap_or_default(),
            );
            Iface {
                rx: a.rx.saturating_sub(b.rx),
                rx_bytes: a.rx_bytes.saturating_sub(b.rx_bytes),
                tx: a.tx.saturating_sub(b.tx),
                tx_bytes: a.tx_bytes.saturating_sub(b.tx_bytes),
                forwarded: a.forwarded.saturating_sub(b.forwarded),
                passed: a.passed.saturating_sub(b.passed),
                dropped: a.dropped.saturating_sub(b.dropped),
            }
        };
        for (i, name) in self.topology.nodes.iter().enumerate() {
            let node: &mut NodeTelemetry = &mut snap.nodes[i];
            for key in now.ifaces.keys().filter(|(n, _)| n == name) {
                let x = d(key);
                node.rx_pkts += x.rx;
                node.rx_bytes += x.rx_bytes;
                node.tx_pkts += x.tx;
                node.tx_bytes += x.tx_bytes;
                node.fwd_pkts += x.forwarded;
                node.local_pkts += x.passed;
                node.dropped_pkts += x.dropped;
            }
        }
        for (i, pair) in self.ends.iter().enumerate() {
            let link: &mut LinkTelemetry = &mut snap.links[i];
            let mut rtt = Vec::new();
            for (end, other) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
                let x = d(end);
                // Traffic only: what the data plane sent onto the link, and what it took
                // off it (forwarded on or delivered); probes are the columns below.
                link.tx_pkts += x.tx;
                link.rx_pkts += x.forwarded + x.passed;
                link.bytes += x.rx_bytes;
                let key = (end.0.clone(), other.0.clone());
                let (p, q) = (
                    now.probes.get(&key).copied().unwrap_or_default(),
                    self.last.probes.get(&key).copied().unwrap_or_default(),
                );
                let sent = p.sent.saturating_sub(q.sent);
                let replies = p.replies.saturating_sub(q.replies).min(sent);
                link.probes_sent += sent as u32;
                link.probes_lost += (sent - replies) as u32;
                if replies > 0 {
                    rtt.push((p.rtt_ms, p.jitter_ms));
                }
            }
            if !rtt.is_empty() {
                let n = rtt.len() as f64;
                link.rtt_ms = (rtt.iter().map(|r| r.0).sum::<f64>() / n) as f32;
                link.jitter_ms = (rtt.iter().map(|r| r.1).sum::<f64>() / n) as f32;
            }
        }
        self.last = now;
        Ok(snap)
    }
}
