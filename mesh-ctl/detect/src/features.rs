//! Features per node and per link from one snapshot plus each element's own recent history
//! (EWMA mean and variance, as z-scores), and the graph sample the models consume.

use serde::{Deserialize, Serialize};

use super::trace::{Class, Element, Snapshot, Topology};

/// Node feature names, in column order.
pub const NODE_FEATURES: [&str; 15] = [
    "ln_rx_pkts",
    "ln_tx_pkts",
    "drop_ratio",
    "unaccounted_ratio",
    "ln_flows_in",
    "ln_flows_out",
    "ln_rx_pkt_size",
    "ln_tx_pkt_size",
    "ln_degree",
    "z_rx_pkts",
    "z_tx_pkts",
    "z_unaccounted",
    "z_flows_in",
    "z_flows_out",
    "z_tx_pkt_size",
];

/// Link feature names, in column order.
pub const LINK_FEATURES: [&str; 12] = [
    "ln_pkts",
    "loss_ratio",
    "probe_loss",
    "down",
    "ln_rtt",
    "ln_jitter",
    "z_pkts",
    "z_loss",
    "z_probe_loss",
    "z_rtt",
    "z_jitter",
    "state_changes_8",
];

/// Raw values tracked with an EWMA, per node: (column of the raw value, variance floor).
const NODE_TRACKED: [(usize, f32); 6] = [
    (0, 0.15),
    (1, 0.15),
    (3, 0.01),
    (4, 0.15),
    (5, 0.15),
    (7, 0.1),
];
const LINK_TRACKED: [(usize, f32); 5] = [(0, 0.15), (1, 0.003), (2, 0.01), (4, 0.05), (5, 0.1)];
const NODE_RAW: usize = 9;
const LINK_RAW: usize = 6;

/// What a model was trained on: saved next to its weights and checked on load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub node_features: Vec<String>,
    pub link_features: Vec<String>,
    pub ewma_alpha: f32,
    /// |z| above which the EWMA adapts ten times slower, so a fault does not teach itself
    /// as normal within a few windows.
    pub z_gate: f32,
    pub z_clip: f32,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            node_features: NODE_FEATURES.iter().map(|s| s.to_string()).collect(),
            link_features: LINK_FEATURES.iter().map(|s| s.to_string()).collect(),
            ewma_alpha: 0.1,
            z_gate: 3.0,
            z_clip: 8.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Ewma {
    mean: f32,
    var: f32,
    seen: u32,
}

impl Ewma {
    /// The z-score of `x` against the history so far, then `x` joins the history.
    fn observe(&mut self, x: f32, floor: f32, spec: &FeatureSpec) -> f32 {
        if self.seen == 0 {
            self.mean = x;
            self.seen = 1;
            return 0.0;
        }
        let z = (x - self.mean) / (self.var + floor * floor).sqrt();
        let z = z.clamp(-spec.z_clip, spec.z_clip);
        // Warm-up runs as a plain mean so the first windows settle quickly.
        let mut a = (1.0 / (self.seen as f32 + 1.0)).max(spec.ewma_alpha);
        if z.abs() > spec.z_gate && self.seen > 5 {
            a *= 0.1;
        }
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        self.seen += 1;
        z
    }
}

/// Feature matrices of one window, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub node: Vec<f32>,
    pub link: Vec<f32>,
}

/// Per-element history; feed it every window in order.
#[derive(Clone, Debug)]
pub struct FeatureState {
    spec: FeatureSpec,
    node: Vec<[Ewma; 6]>,
    link: Vec<[Ewma; 5]>,
    link_down: Vec<(bool, u8)>,
}

impl FeatureState {
    pub fn new(spec: FeatureSpec) -> Self {
        FeatureState {
            spec,
            node: Vec::new(),
            link: Vec::new(),
            link_down: Vec::new(),
        }
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Features of `snap`; updates the history. A topology of another size resets it.
    pub fn update(&mut self, topo: &Topology, snap: &Snapshot) -> Features {
        let (n, nl) = (topo.nodes.len(), topo.links.len());
        if self.node.len() != n || self.link.len() != nl {
            self.node = vec![Default::default(); n];
            self.link = vec![Default::default(); nl];
            self.link_down = vec![(false, 0); nl];
        }
        let mut degree = vec![0u32; n];
        for &(a, b) in &topo.links {
            degree[a as usize] += 1;
            degree[b as usize] += 1;
        }
        let mut node = Vec::with_capacity(n * NODE_FEATURES.len());
        for (i, t) in snap.nodes.iter().enumerate() {
            let rx = t.rx_pkts as f32;
            let unaccounted =
                (rx - (t.local_pkts + t.fwd_pkts + t.dropped_pkts) as f32).max(0.0) / (rx + 10.0);
            let raw: [f32; NODE_RAW] = [
                rx.ln_1p(),
                (t.tx_pkts as f32).ln_1p(),
                t.dropped_pkts as f32 / (rx + t.tx_pkts as f32 + 10.0),
                unaccounted,
                (t.flows_in as f32).ln_1p(),
                (t.flows_out as f32).ln_1p(),
                (t.rx_bytes as f32 / rx.max(1.0)).ln_1p() / 7.0,
                (t.tx_bytes as f32 / (t.tx_pkts as f32).max(1.0)).ln_1p() / 7.0,
                (degree[i] as f32).ln_1p(),
            ];
            node.extend_from_slice(&raw);
            for (k, &(col, floor)) in NODE_TRACKED.iter().enumerate() {
                let z = self.node[i][k].observe(raw[col], floor, &self.spec);
                node.push(z / 4.0);
            }
        }
        let mut link = Vec::with_capacity(nl * LINK_FEATURES.len());
        for (l, t) in snap.links.iter().enumerate() {
            let probe_loss = t.probes_lost as f32 / (t.probes_sent.max(1)) as f32;
            let down = t.probes_sent > 0 && t.probes_lost == t.probes_sent;
            let raw: [f32; LINK_RAW] = [
                (t.tx_pkts as f32).ln_1p(),
                (t.tx_pkts.saturating_sub(t.rx_pkts)) as f32 / (t.tx_pkts as f32 + 20.0),
                probe_loss,
                f32::from(u8::from(down)),
                t.rtt_ms.max(0.0).ln_1p(),
                t.jitter_ms.max(0.0).ln_1p(),
            ];
            link.extend_from_slice(&raw);
            for (k, &(col, floor)) in LINK_TRACKED.iter().enumerate() {
                // A down link has no RTT: keep its RTT history as it was.
                let z = if down && col >= 4 {
                    0.0
                } else {
                    self.link[l][k].observe(raw[col], floor, &self.spec)
                };
                link.push(z / 4.0);
            }
            let (was_down, changes) = self.link_down[l];
            // Shift register of up/down changes over the last eight windows.
            let changes = (changes << 1) | u8::from(was_down != down);
            self.link_down[l] = (down, changes);
            link.push(changes.count_ones() as f32 / 4.0);
        }
        Features { node, link }
    }
}

/// One or more windows as one graph (windows side by side), with labels when known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphSample {
    pub nodes: usize,
    /// Directed edges: both directions of every link.
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
    /// The link each directed edge belongs to.
    pub edge_link: Vec<u32>,
    /// Link endpoints.
    pub ends: Vec<(u32, u32)>,
    pub node_x: Vec<f32>,
    pub link_x: Vec<f32>,
    /// Class head index per node / link (0 = normal).
    pub node_y: Vec<u32>,
    pub link_y: Vec<u32>,
}

impl GraphSample {
    /// A sample from a topology, one window's features and (optionally) its labels.
    pub fn new(topo: &Topology, f: &Features, snap: Option<&Snapshot>) -> Self {
        let mut s = GraphSample {
            nodes: topo.nodes.len(),
            node_x: f.node.clone(),
            link_x: f.link.clone(),
            ends: topo.links.clone(),
            node_y: vec![0; topo.nodes.len()],
            link_y: vec![0; topo.links.len()],
            ..Default::default()
        };
        for (i, &(a, b)) in topo.links.iter().enumerate() {
            s.src.extend([a, b]);
            s.dst.extend([b, a]);
            s.edge_link.extend([i as u32, i as u32]);
        }
        if let Some(snap) = snap {
            for &(e, c) in &snap.labels {
                match e {
                    Element::Node(v) => s.node_y[v as usize] = c.head_index() as u32,
                    Element::Link(l) => s.link_y[l as usize] = c.head_index() as u32,
                }
            }
        }
        s
    }

    pub fn links(&self) -> usize {
        self.ends.len()
    }

    /// Appends `other` as a disconnected component.
    pub fn append(&mut self, other: &GraphSample) {
        let (no, lo) = (self.nodes as u32, self.ends.len() as u32);
        self.src.extend(other.src.iter().map(|v| v + no));
        self.dst.extend(other.dst.iter().map(|v| v + no));
        self.edge_link
            .extend(other.edge_link.iter().map(|l| l + lo));
        self.ends
            .extend(other.ends.iter().map(|&(a, b)| (a + no, b + no)));
        self.node_x.extend_from_slice(&other.node_x);
        self.link_x.extend_from_slice(&other.link_x);
        self.node_y.extend_from_slice(&other.node_y);
        self.link_y.extend_from_slice(&other.link_y);
        self.nodes += other.nodes;
    }

    /// Class of the node or link with head index `y`.
    pub fn class_of(link: bool, y: u32) -> Class {
        if link {
            Class::LINK[y as usize]
        } else {
            Class::NODE[y as usize]
        }
    }
}
