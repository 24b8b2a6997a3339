//! The detection reports at scale, simulated: a generated mesh's windows (the detection
//! generator's geometric family, one injected fault) turned into every node's cumulative
//! report, as the agent builds it and floods it every window. Measured: the control bytes
//! the flood puts on a link per second, and the windows from a fault's onset to the static
//! detector's first finding of it on the view every peer assembles from the reports.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};

use mesh_ctl::detect::{
    Class, Detector as _, Element, Trace,
    baseline::Rule,
    detector::{FeatureDetector, Scorer},
    live::{Insert, LinkCounters, LiveView, NodeCounters, Report},
    scenario::{Family, ScenarioSpec, generate},
};

const WINDOWS: u32 = 30;
const WINDOW_MS: u64 = 1000;

/// The faults each size is measured with: class and the generator's intensity.
const FAULTS: [(Class, f32); 3] = [
    (Class::Blackhole, 0.5),
    (Class::GrayLink, 0.14),
    (Class::DdosVictim, 0.5),
];

/// Every node's cumulative report at the end of each window of `trace`. The trace has
/// links' counters for both ends together: each end gets half.
fn reports(trace: &Trace) -> Vec<Vec<Report>> {
    let topo = &trace.header.topology;
    let mut node = vec![NodeCounters::default(); topo.nodes.len()];
    let mut links: Vec<BTreeMap<u32, LinkCounters>> = vec![BTreeMap::new(); topo.nodes.len()];
    let mut out = Vec::new();
    for (w, snap) in trace.windows.iter().enumerate() {
        for (c, t) in node.iter_mut().zip(&snap.nodes) {
            c.rx += t.rx_pkts;
            c.rx_bytes += t.rx_bytes;
            c.tx += t.tx_pkts;
            c.tx_bytes += t.tx_bytes;
            c.forwarded += t.fwd_pkts;
            c.local += t.local_pkts;
            c.dropped += t.dropped_pkts;
            c.flows_in = t.flows_in;
            c.flows_out = t.flows_out;
        }
        for (&(a, b), t) in topo.links.iter().zip(&snap.links) {
            for (end, other, first) in [(a, b, true), (b, a, false)] {
                let half = |v: u64| if first { v / 2 } else { v - v / 2 };
                let l = links[end as usize]
                    .entry(other)
                    .or_insert_with(|| LinkCounters {
                        neighbor: topo.nodes[other as usize].clone(),
                        ..LinkCounters::default()
                    });
                let sent = half(u64::from(t.probes_sent));
                l.tx += half(t.tx_pkts);
                l.rx += half(t.rx_pkts);
                l.rx_bytes += half(t.bytes);
                l.probes_sent += sent;
                l.probe_replies += sent.saturating_sub(half(u64::from(t.probes_lost)));
                l.rtt_ms = t.rtt_ms;
                l.jitter_ms = t.jitter_ms;
            }
        }
        let slot_ms = (w as u64 + 1) * WINDOW_MS;
        out.push(
            topo.nodes
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let mut l: Vec<LinkCounters> = links[i].values().cloned().collect();
                    l.sort_by(|x, y| x.neighbor.cmp(&y.neighbor));
                    Report {
                        origin: name.clone(),
                        seq: w as u64 + 1,
                        slot_ms,
                        at_ms: slot_ms,
                        node: node[i].clone(),
                        links: l,
                    }
                })
                .collect(),
        );
    }
    out
}

/// What the flood of one trace's reports gave.
struct Run {
    /// Report bytes sent per window (JSON, as the control plane encodes them).
    bytes: Vec<u64>,
    /// Windows from the fault's first to the first finding of it (None: never found).
    latency: Option<u32>,
}

fn run(trace: &Trace, all: &[Vec<Report>]) -> Result<Run> {
    let fault = &trace.header.faults[0];
    let th = mesh_ctl::agent::static_thresholds(&mesh_ctl::config::Detect::default());
    let mut det = FeatureDetector::new("static", Scorer::Rule(Rule::Static), th);
    let mut view = LiveView::new(WINDOW_MS);
    let mut bytes = Vec::new();
    let mut latency = None;
    for (w, window) in all.iter().enumerate() {
        let mut b = 0;
        for r in window {
            b += serde_json::to_vec(r)?.len() as u64;
            anyhow::ensure!(
                view.insert(r.clone(), r.slot_ms)? == Insert::New,
                "a report was old"
            );
        }
        bytes.push(b);
        let slot_ms = window[0].slot_ms;
        view.expire(slot_ms);
        if w == 0 {
            continue;
        }
        let topo = view.topology();
        anyhow::ensure!(
            topo.nodes.len() == trace.header.topology.nodes.len(),
            "{} of {} nodes in the view at window {w}",
            topo.nodes.len(),
            trace.header.topology.nodes.len()
        );
        let snap = view.snapshot(&topo, w as u32, slot_ms);
        let found = det.analyze(&topo, &snap)?;
        let w = w as u32;
        if latency.is_none() && (fault.start..fault.end).contains(&w) {
            let hit = found.iter().any(|f| {
                f.class == fault.class
                    && match (f.element, fault.element) {
                        (Element::Node(a), Element::Node(b)) => {
                            topo.nodes[a as usize] == trace.header.topology.nodes[b as usize]
                        }
                        (Element::Link(a), Element::Link(b)) => {
                            let name = |t: &mesh_ctl::detect::Topology, i: u32| {
                                let (x, y) = t.links[i as usize];
                                (t.nodes[x as usize].clone(), t.nodes[y as usize].clone())
                            };
                            name(&topo, a) == name(&trace.header.topology, b)
                        }
                        _ => false,
                    }
            });
            if hit {
                latency = Some(w - fault.start);
            }
        }
    }
    Ok(Run { bytes, latency })
}

/// The flood on one generated mesh of `nodes` nodes, for every fault.
pub fn measure(nodes: usize, seed: u64) -> Result<Value> {
    let mut faults = Vec::new();
    let (mut links, mut steady) = (0, Vec::new());
    for (class, intensity) in FAULTS {
        let trace = generate(&ScenarioSpec {
            family: Family::Geometric,
            nodes,
            windows: WINDOWS,
            seed: seed ^ class as u64,
            fault: Some((class, intensity)),
            window_ms: WINDOW_MS as u32,
        });
        let topo = &trace.header.topology;
        links = topo.links.len();
        let r = run(&trace, &reports(&trace))?;
        // Each report crosses every link about once: the origin sends it on each of its
        // links and every other node on each of its links but the one it came in on.
        let per_link = (2 * links + 1 - topo.nodes.len()) as f64 / links as f64;
        let rate = |from: usize, to: usize| {
            let w = &r.bytes[from..to];
            w.iter().sum::<u64>() as f64 * per_link / w.len() as f64 / (WINDOW_MS as f64 / 1000.0)
        };
        let start = trace.header.faults[0].start as usize;
        steady.push(rate(0, start));
        faults.push(json!({
            "class": class.name(),
            "magnitude": trace.header.faults[0].magnitude,
            "onset_window": start,
            "bytes_per_link_s": rate(0, WINDOWS as usize),
            "latency_windows": r.latency,
        }));
        eprintln!(
            "  reports on {nodes} nodes, {}: {:.1} kB per link per second, found {}",
            class.name(),
            rate(0, WINDOWS as usize) / 1e3,
            r.latency
                .map_or("never".to_owned(), |w| format!("after {w} windows")),
        );
    }
    Ok(json!({
        "links": links,
        "window_ms": WINDOW_MS,
        "steady_bytes_per_link_s": steady.iter().sum::<f64>() / steady.len() as f64,
        "faults": faults,
    }))
}

#[cfg(test)]
mod tests {
    /// The simulation's view finds what the generator injected, and the flood's cost per
    /// link grows with the mesh.
    #[test]
    fn the_view_assembled_from_every_report_finds_the_blackhole_and_costs_grow() {
        let small = super::measure(60, 7).expect("measured");
        let large = super::measure(240, 7).expect("measured");
        let f = &small["faults"][0];
        assert_eq!(f["class"], "blackhole");
        assert!(f["latency_windows"].as_u64().is_some(), "{f}");
        let cost = |m: &serde_json::Value| m["steady_bytes_per_link_s"].as_f64().expect("cost");
        assert!(cost(&large) > 2.0 * cost(&small), "{small} {large}");
    }
}
