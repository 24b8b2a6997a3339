//! The trace format: one header line (topology, window length, ground truth) and then one
//! JSON line per window with per-node and per-link telemetry. The generator writes it and a
//! live agent can too (`meshctl record`): every field of a snapshot is a per-window counter
//! delta or a probe summary the agent already has.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::DetectError;

/// Format version in every header; bumped when a field changes meaning.
pub const TRACE_VERSION: u32 = 1;

/// What a node-level anomaly class or a link-level one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// No fault on this element.
    Normal,
    /// The link carries nothing and answers no probes.
    LinkDown,
    /// The link loses a share of its packets (1-30 %) but stays up.
    GrayLink,
    /// The link's queue fills: RTT and jitter up, a little loss.
    Congested,
    /// The link goes down and up every one to three windows.
    Flapping,
    /// The node accepts transit traffic and silently drops it.
    Blackhole,
    /// Many sources open flows towards this node at once.
    DdosVictim,
    /// This node opens small flows towards many destinations.
    Scanner,
}

impl Class {
    /// Classes of links, in the order of the link head's outputs (0 = normal).
    pub const LINK: [Class; 5] = [
        Class::Normal,
        Class::LinkDown,
        Class::GrayLink,
        Class::Congested,
        Class::Flapping,
    ];
    /// Classes of nodes, in the order of the node head's outputs (0 = normal).
    pub const NODE: [Class; 4] = [
        Class::Normal,
        Class::Blackhole,
        Class::DdosVictim,
        Class::Scanner,
    ];
    /// Every anomaly class.
    pub const ANOMALIES: [Class; 7] = [
        Class::LinkDown,
        Class::GrayLink,
        Class::Congested,
        Class::Flapping,
        Class::Blackhole,
        Class::DdosVictim,
        Class::Scanner,
    ];

    /// Whether the class is about a link (else a node); `Normal` counts as both.
    pub fn is_link(self) -> bool {
        Class::LINK.contains(&self) && self != Class::Normal
    }

    /// Index in the node or link head.
    pub fn head_index(self) -> usize {
        Class::LINK
            .iter()
            .position(|c| *c == self)
            .or_else(|| Class::NODE.iter().position(|c| *c == self))
            .unwrap_or(0)
    }

    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::Normal => "normal",
            Class::LinkDown => "link_down",
            Class::GrayLink => "gray_link",
            Class::Congested => "congested",
            Class::Flapping => "flapping",
            Class::Blackhole => "blackhole",
            Class::DdosVictim => "ddos_victim",
            Class::Scanner => "scanner",
        }
    }
}

/// A node or a link, by its index in the header's lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// Index into `Topology::nodes`.
    Node(u32),
    /// Index into `Topology::links`.
    Link(u32),
}

/// The graph a trace was taken on. Links are undirected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Generator family (`grid`, `ring`, `geometric`, `scale_free`) or `live`.
    pub kind: String,
    /// Node names, index = node id.
    pub nodes: Vec<String>,
    /// Links as pairs of node indices, `a < b`.
    pub links: Vec<(u32, u32)>,
}

impl Topology {
    /// For each node, (neighbour, link index) pairs.
    pub fn adjacency(&self) -> Vec<Vec<(u32, u32)>> {
        let mut adj = vec![Vec::new(); self.nodes.len()];
        for (i, &(a, b)) in self.links.iter().enumerate() {
            adj[a as usize].push((b, i as u32));
            adj[b as usize].push((a, i as u32));
        }
        adj
    }
}

/// One injected fault: which element, which class, which windows (`start..end`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub class: Class,
    pub element: Element,
    /// First faulty window.
    pub start: u32,
    /// First window after the fault.
    pub end: u32,
    /// 0..1 in the generator's scale for the class (see `scenario::intensity_value`).
    pub intensity: f32,
    /// The physical size: loss share, added RTT in ms, number of attackers or targets.
    pub magnitude: f32,
}

/// First line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub version: u32,
    /// Generator seed (0 for live traces).
    pub seed: u64,
    pub window_ms: u32,
    pub topology: Topology,
    /// Ground truth; empty for fault-free and live traces.
    pub faults: Vec<Fault>,
}

/// Per-node counters for one window (deltas, not totals).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeTelemetry {
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    /// Transit packets sent on (XDP redirect).
    pub fwd_pkts: u64,
    /// Packets for this node itself (XDP pass).
    pub local_pkts: u64,
    /// Packets the node counted as dropped (no route, TTL, queue).
    pub dropped_pkts: u64,
    /// Distinct sources with a live flow towards this node.
    pub flows_in: u32,
    /// Distinct destinations this node has a live flow towards.
    pub flows_out: u32,
}

/// Per-link counters and probe summary for one window, both directions summed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkTelemetry {
    /// Packets the two ends sent onto the link.
    pub tx_pkts: u64,
    /// Packets the two ends received from it.
    pub rx_pkts: u64,
    pub bytes: u64,
    pub probes_sent: u32,
    pub probes_lost: u32,
    /// Mean probe RTT in ms (0 when every probe was lost).
    pub rtt_ms: f32,
    /// Probe RTT standard deviation in ms.
    pub jitter_ms: f32,
}

/// One window of telemetry of the whole graph, indexed like the header's topology.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub window: u32,
    pub nodes: Vec<NodeTelemetry>,
    pub links: Vec<LinkTelemetry>,
    /// Anomalous elements in this window (ground truth); empty in live traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(Element, Class)>,
}

impl Snapshot {
    /// An all-zero snapshot shaped for `topology`, for a recorder to fill from counters.
    pub fn empty(window: u32, topology: &Topology) -> Self {
        Snapshot {
            window,
            nodes: vec![NodeTelemetry::default(); topology.nodes.len()],
            links: vec![LinkTelemetry::default(); topology.links.len()],
            labels: Vec::new(),
        }
    }

    /// The labelled class of an element in this window.
    pub fn label(&self, element: Element) -> Class {
        self.labels
            .iter()
            .find(|(e, _)| *e == element)
            .map_or(Class::Normal, |(_, c)| *c)
    }
}

/// A whole trace in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub header: TraceHeader,
    pub windows: Vec<Snapshot>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Header(TraceHeader),
    Window(Snapshot),
}

impl Trace {
    /// Writes JSON lines: the header, then one line per window.
    pub fn write<W: Write>(&self, mut out: W) -> Result<(), DetectError> {
        write_header(&mut out, &self.header)?;
        for w in &self.windows {
            write_window(&mut out, w)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Reads what `write` wrote; checks every window matches the topology.
    pub fn read<R: BufRead>(input: R) -> Result<Self, DetectError> {
        let mut header = None;
        let mut windows = Vec::new();
        for (n, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line).map_err(|e| DetectError::Trace {
                line: n + 1,
                reason: e.to_string(),
            })?;
            match (parsed, &header) {
                (Line::Header(h), None) => header = Some(h),
                (Line::Window(w), Some(h)) => {
                    let h: &TraceHeader = h;
                    if w.nodes.len() != h.topology.nodes.len()
                        || w.links.len() != h.topology.links.len()
                    {
                        return Err(DetectError::Trace {
                            line: n + 1,
                            reason: "window does not match the topology".into(),
                        });
                    }
                    windows.push(w);
                }
                _ => {
                    return Err(DetectError::Trace {
                        line: n + 1,
                        reason: "expected exactly one header, first".into(),
                    });
                }
            }
        }
        let header = header.ok_or(DetectError::Trace {
            line: 0,
            reason: "no header".into(),
        })?;
        Ok(Trace { header, windows })
    }
}

/// Writes a header line (for a recorder that streams windows).
pub fn write_header<W: Write>(out: &mut W, header: &TraceHeader) -> Result<(), DetectError> {
    serde_json::to_writer(&mut *out, &Line::Header(header.clone()))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes one window line.
pub fn write_window<W: Write>(out: &mut W, window: &Snapshot) -> Result<(), DetectError> {
    serde_json::to_writer(&mut *out, &Line::Window(window.clone()))?;
    out.write_all(b"\n")?;
    Ok(())
}
