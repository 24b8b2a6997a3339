//! The scenario generator: a topology, background flows routed on shortest paths, probes on
//! every link and at most one injected fault, simulated window by window. Everything comes
//! from one seed, so the same spec gives the same trace byte for byte.

use std::collections::HashMap;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::trace::{
    Class, Element, Fault, LinkTelemetry, NodeTelemetry, Snapshot, TRACE_VERSION, Topology, Trace,
    TraceHeader,
};

/// Probes each link gets per window (both ends together).
pub const PROBES_PER_WINDOW: u32 = 50;

/// Generated topology families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Grid,
    Ring,
    Geometric,
    ScaleFree,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Grid => "grid",
            Family::Ring => "ring",
            Family::Geometric => "geometric",
            Family::ScaleFree => "scale_free",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSpec {
    pub family: Family,
    pub nodes: usize,
    pub windows: u32,
    pub seed: u64,
    /// The injected fault's class and intensity in 0..1, or none for a fault-free run.
    pub fault: Option<(Class, f32)>,
    pub window_ms: u32,
}

/// The physical size of a fault at `intensity` in 0..1.
pub fn intensity_value(class: Class, intensity: f32) -> f32 {
    let i = intensity.clamp(0.0, 1.0);
    match class {
        Class::GrayLink => 0.01 + 0.29 * i,
        Class::Congested => 5.0 + 45.0 * i,
        Class::DdosVictim => 0.05 + 0.25 * i,
        Class::Scanner => 0.10 + 0.60 * i,
        Class::Flapping => 1.0 + (i * 2.999).floor(),
        Class::Blackhole => 0.5 + 0.5 * i,
        Class::LinkDown | Class::Normal => 1.0,
    }
}

pub(crate) fn gauss(rng: &mut StdRng) -> f64 {
    // Box-Muller: rand 0.9 alone has no normal distribution.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A generated graph of `n` nodes of a family, connected.
pub fn topology(family: Family, n: usize, rng: &mut StdRng) -> Topology {
    let n = n.max(3);
    let mut links: Vec<(u32, u32)> = Vec::new();
    match family {
        Family::Grid => {
            let cols = (n as f64).sqrt().ceil() as usize;
            for i in 0..n {
                if (i + 1) % cols != 0 && i + 1 < n {
                    links.push((i as u32, i as u32 + 1));
                }
                if i + cols < n {
                    links.push((i as u32, (i + cols) as u32));
                }
            }
        }
        Family::Ring => {
            for i in 0..n {
                let j = (i + 1) % n;
                links.push((i.min(j) as u32, i.max(j) as u32));
            }
        }
        Family::Geometric => {
            let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
            let r2 = 1.6 * (n as f64).ln() / (std::f64::consts::PI * n as f64);
            let cell = r2.sqrt();
            let side = (1.0 / cell).ceil() as usize;
            let mut buckets: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
            let key = |p: (f64, f64)| {
                (
                    ((p.0 / cell) as usize).min(side - 1),
                    ((p.1 / cell) as usize).min(side - 1),
                )
            };
            for (i, p) in pts.iter().enumerate() {
                buckets.entry(key(*p)).or_default().push(i);
            }
            let d2 =
                |a: usize, b: usize| (pts[a].0 - pts[b].0).powi(2) + (pts[a].1 - pts[b].1).powi(2);
            for (i, p) in pts.iter().enumerate() {
                let (cx, cy) = key(*p);
                for dx in cx.saturating_sub(1)..=(cx + 1).min(side - 1) {
                    for dy in cy.saturating_sub(1)..=(cy + 1).min(side - 1) {
                        for &j in buckets.get(&(dx, dy)).map_or(&[][..], |v| v) {
                            if j > i && d2(i, j) <= r2 {
                                links.push((i as u32, j as u32));
                            }
                        }
                    }
                }
            }
            // Join stray components to the nearest node outside them, so every run has
            // one connected mesh.
            loop {
                let comp = components(n, &links);
                let main = comp[0];
                let Some(stray) = (0..n).find(|&i| comp[i] != main) else {
                    break;
                };
                let (mut best, mut bd) = (0, f64::MAX);
                let (mut from, mut fd) = (stray, f64::MAX);
                for (j, &c) in comp.iter().enumerate() {
                    if c == main {
                        let d = d2(stray, j);
                        if d < bd {
                            (best, bd) = (j, d);
                        }
                    }
                }
                for (i, &c) in comp.iter().enumerate() {
                    if c == comp[stray] {
                        let d = d2(i, best);
                        if d < fd {
                            (from, fd) = (i, d);
                        }
                    }
                }
                links.push((from.min(best) as u32, from.max(best) as u32));
            }
        }
        Family::ScaleFree => {
            // Barabási-Albert, two links per new node, picking ends by degree.
            let mut ends: Vec<u32> = Vec::new();
            for (a, b) in [(0, 1), (1, 2), (0, 2)] {
                links.push((a, b));
                ends.extend([a, b]);
            }
            for v in 3..n as u32 {
                let mut picked: Vec<u32> = Vec::with_capacity(2);
                while picked.len() < 2 {
                    let u = ends[rng.random_range(0..ends.len())];
                    if !picked.contains(&u) {
                        picked.push(u);
                    }
                }
                for u in picked {
                    links.push((u.min(v), u.max(v)));
                    ends.extend([u, v]);
                }
            }
        }
    }
    links.sort_unstable();
    links.dedup();
    Topology {
        kind: family.name().into(),
        nodes: (0..n).map(|i| format!("n{i}")).collect(),
        links,
    }
}

fn components(n: usize, links: &[(u32, u32)]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &(a, b) in links {
        let (ra, rb) = (find(&mut parent, a as usize), find(&mut parent, b as usize));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    (0..n).map(|i| find(&mut parent, i)).collect()
}

struct Flow {
    src: u32,
    dst: u32,
    pkts: f64,
    size: f64,
    on: f64,
}

/// Shortest-path routes on the links that are up, cached per source.
struct Router {
    adj: Vec<Vec<(u32, u32)>>,
    up: Vec<bool>,
    trees: HashMap<u32, Vec<(u32, u32)>>,
}

impl Router {
    fn set_up(&mut self, up: Vec<bool>) {
        if up != self.up {
            self.up = up;
            self.trees.clear();
        }
    }

    /// Hops (link, next node) from src to dst, or None when unreachable.
    fn path(&mut self, src: u32, dst: u32) -> Option<Vec<(u32, u32)>> {
        let adj = &self.adj;
        let up = &self.up;
        let tree = self.trees.entry(src).or_insert_with(|| {
            let mut parent = vec![(u32::MAX, u32::MAX); adj.len()];
            parent[src as usize] = (src, u32::MAX);
            let mut queue = std::collections::VecDeque::from([src]);
            while let Some(u) = queue.pop_front() {
                for &(v, l) in &adj[u as usize] {
                    if up[l as usize] && parent[v as usize].0 == u32::MAX {
                        parent[v as usize] = (u, l);
                        queue.push_back(v);
                    }
                }
            }
            parent
        });
        if tree[dst as usize].0 == u32::MAX {
            return None;
        }
        let mut hops = Vec::new();
        let mut v = dst;
        while v != src {
            let (p, l) = tree[v as usize];
            hops.push((l, v));
            v = p;
        }
        hops.reverse();
        Some(hops)
    }
}

fn noisy(rng: &mut StdRng, mean: f64) -> f64 {
    (mean + gauss(rng) * mean.max(0.0).sqrt()).max(0.0)
}

/// Generates the trace of a scenario.
pub fn generate(spec: &ScenarioSpec) -> Trace {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let topo = topology(spec.family, spec.nodes, &mut rng);
    generate_with(spec, rng, topo)
}

/// Generates the trace of a scenario on a given graph (a real network's, say) instead of
/// one of `spec.family`; `spec.nodes` is not used.
pub fn generate_on(spec: &ScenarioSpec, topo: Topology) -> Trace {
    generate_with(spec, StdRng::seed_from_u64(spec.seed), topo)
}

/// A real network's graph as a detection topology: node names in `nodes`, links as pairs
/// of indices into it, in any order and with repeats and self-loops; what is kept is the
/// largest connected component, without them. `None` when that has under 3 nodes.
pub fn real_topology(kind: &str, nodes: &[String], links: &[(u32, u32)]) -> Option<Topology> {
    let n = nodes.len();
    let mut clean: Vec<(u32, u32)> = links
        .iter()
        .filter(|(a, b)| a != b && (*a as usize) < n && (*b as usize) < n)
        .map(|&(a, b)| (a.min(b), a.max(b)))
        .collect();
    clean.sort_unstable();
    clean.dedup();
    let comp = components(n, &clean);
    let mut size = HashMap::new();
    for c in &comp {
        *size.entry(*c).or_insert(0usize) += 1;
    }
    let (&main, &count) = size
        .iter()
        .max_by_key(|(c, k)| (**k, std::cmp::Reverse(**c)))?;
    if count < 3 {
        return None;
    }
    let mut index = vec![u32::MAX; n];
    let mut kept = Vec::new();
    for (i, name) in nodes.iter().enumerate() {
        if comp[i] == main {
            index[i] = kept.len() as u32;
            kept.push(name.clone());
        }
    }
    let links = clean
        .iter()
        .filter(|(a, _)| comp[*a as usize] == main)
        .map(|&(a, b)| (index[a as usize], index[b as usize]))
        .collect();
    Some(Topology {
        kind: kind.to_owned(),
        nodes: kept,
        links,
    })
}

fn generate_with(spec: &ScenarioSpec, mut rng: StdRng, topo: Topology) -> Trace {
    let n = topo.nodes.len();
    let nl = topo.links.len();
    let adj = topo.adjacency();

    let nflows = (2 * n).min(4000);
    let mut flows: Vec<Flow> = (0..nflows)
        .map(|_| {
            let src = rng.random_range(0..n as u32);
            let mut dst = rng.random_range(0..n as u32);
            while dst == src {
                dst = rng.random_range(0..n as u32);
            }
            Flow {
                src,
                dst,
                pkts: (4.5 + 0.8 * gauss(&mut rng)).exp(),
                size: rng.random_range(200.0..1400.0),
                on: rng.random_range(0.8..1.0),
            }
        })
        .collect();
    let base_rtt: Vec<f64> = (0..nl).map(|_| rng.random_range(0.3..5.0)).collect();
    let base_loss: Vec<f64> = (0..nl).map(|_| rng.random_range(0.0..0.001)).collect();
    let mut router = Router {
        adj,
        up: vec![true; nl],
        trees: HashMap::new(),
    };

    // Links' capacity: a few times the load they carry with every link up, so the
    // background load queues a little and a DDoS towards a node fills its links.
    let mut load = vec![0.0f64; nl];
    for f in &flows {
        if let Some(p) = router.path(f.src, f.dst) {
            for (l, _) in p {
                load[l as usize] += f.pkts;
            }
        }
    }
    let capacity: Vec<f64> = load
        .iter()
        .map(|&x| (x * rng.random_range(2.5..4.0)).max(1500.0))
        .collect();

    let windows = spec.windows.max(2);
    let mut faults = Vec::new();
    if let Some((class, intensity)) = spec.fault {
        let start = rng.random_range((windows * 2 / 5)..=(windows / 2));
        let end = (start + rng.random_range(8..=15)).min(windows);
        let magnitude = intensity_value(class, intensity);
        let element = if class.is_link() {
            // A link that carries traffic: a fault on an idle link shows only in probes.
            let busy: Vec<u32> = (0..nl as u32).filter(|&l| load[l as usize] > 0.0).collect();
            let pool = if busy.is_empty() {
                (0..nl as u32).collect()
            } else {
                busy
            };
            Element::Link(pool[rng.random_range(0..pool.len())])
        } else if class == Class::Blackhole {
            let mut transit = vec![0.0f64; n];
            for f in &flows {
                if let Some(p) = router.path(f.src, f.dst) {
                    for &(_, v) in &p[..p.len() - 1] {
                        transit[v as usize] += f.pkts;
                    }
                }
            }
            let pool: Vec<u32> = (0..n as u32)
                .filter(|&v| transit[v as usize] > 0.0)
                .collect();
            let pool = if pool.is_empty() {
                (0..n as u32).collect()
            } else {
                pool
            };
            Element::Node(pool[rng.random_range(0..pool.len())])
        } else {
            Element::Node(rng.random_range(0..n as u32))
        };
        faults.push(Fault {
            class,
            element,
            start,
            end,
            intensity,
            magnitude,
        });
    }
    // Attack flows exist only during the fault; picked up front so the draw is fixed.
    let mut attack: Vec<Flow> = Vec::new();
    if let Some(f) = faults.first() {
        // Link faults have no attack flows; u32::MAX then matches no node.
        let v = match f.element {
            Element::Node(v) => v,
            Element::Link(_) => u32::MAX,
        };
        let others: Vec<u32> = (0..n as u32).filter(|&u| u != v).collect();
        let count = |share: f32, min: usize| ((share as f64 * n as f64) as usize).max(min);
        match f.class {
            Class::DdosVictim => {
                for _ in 0..count(f.magnitude, 5).min(others.len()) {
                    let src = others[rng.random_range(0..others.len())];
                    attack.push(Flow {
                        src,
                        dst: v,
                        pkts: rng.random_range(150.0..400.0),
                        size: rng.random_range(60.0..200.0),
                        on: 1.0,
                    });
                }
            }
            Class::Scanner => {
                for _ in 0..count(f.magnitude, 8).min(others.len()) {
                    let dst = others[rng.random_range(0..others.len())];
                    attack.push(Flow {
                        src: v,
                        dst,
                        pkts: rng.random_range(1.0..4.0),
                        size: 60.0,
                        on: 1.0,
                    });
                }
            }
            _ => {}
        }
    }

    let mut out = Vec::with_capacity(windows as usize);
    for w in 0..windows {
        let active: Vec<&Fault> = faults
            .iter()
            .filter(|f| (f.start..f.end).contains(&w))
            .collect();
        let mut up = vec![true; nl];
        let mut loss = base_loss.clone();
        let mut extra_rtt = vec![0.0f64; nl];
        let mut blackhole: Option<(u32, f64)> = None;
        let mut labels = Vec::new();
        let mut attacking = false;
        for f in &active {
            labels.push((f.element, f.class));
            match (f.class, f.element) {
                (Class::LinkDown, Element::Link(l)) => up[l as usize] = false,
                (Class::Flapping, Element::Link(l)) => {
                    let period = f.magnitude as u32;
                    if ((w - f.start) / period.max(1)).is_multiple_of(2) {
                        up[l as usize] = false;
                    }
                }
                (Class::GrayLink, Element::Link(l)) => loss[l as usize] += f.magnitude as f64,
                (Class::Congested, Element::Link(l)) => {
                    extra_rtt[l as usize] = f.magnitude as f64;
                    loss[l as usize] += rng.random_range(0.001..0.005);
                }
                (Class::Blackhole, Element::Node(v)) => blackhole = Some((v, f.magnitude as f64)),
                (Class::DdosVictim | Class::Scanner, _) => attacking = true,
                _ => {}
            }
        }
        router.set_up(up.clone());

        let mut nodes = vec![[0.0f64; 7]; n]; // rx, rxb, tx, txb, fwd, local, dropped
        let mut lt = vec![[0.0f64; 3]; nl]; // tx, rx, bytes
        let mut fan_in = vec![std::collections::BTreeSet::new(); n];
        let mut fan_out = vec![std::collections::BTreeSet::new(); n];
        // A slow swell of the whole load, so normal traffic is not flat.
        let swell = 1.0 + 0.2 * (std::f64::consts::TAU * w as f64 / 48.0).sin();
        for f in flows.iter_mut().chain(if attacking {
            attack.iter_mut()
        } else {
            [].iter_mut()
        }) {
            if rng.random::<f64>() > f.on {
                continue;
            }
            let pkts = noisy(&mut rng, f.pkts * swell);
            if pkts < 0.5 {
                continue;
            }
            fan_out[f.src as usize].insert(f.dst);
            fan_in[f.dst as usize].insert(f.src);
            let Some(path) = router.path(f.src, f.dst) else {
                nodes[f.src as usize][6] += pkts;
                continue;
            };
            let s = &mut nodes[f.src as usize];
            s[2] += pkts;
            s[3] += pkts * f.size;
            let mut p = pkts;
            for (l, v) in path {
                let l = l as usize;
                let q = loss[l].min(1.0);
                let lost = (p * q + gauss(&mut rng) * (p * q * (1.0 - q)).sqrt()).clamp(0.0, p);
                lt[l][0] += p;
                lt[l][2] += p * f.size;
                p -= lost;
                lt[l][1] += p;
                let node = &mut nodes[v as usize];
                node[0] += p;
                node[1] += p * f.size;
                if v == f.dst {
                    node[5] += p;
                    break;
                }
                if let Some((b, share)) = blackhole
                    && b == v
                {
                    // Silent: the dropped transit shows in no counter of the node.
                    p *= 1.0 - share;
                    if p < 0.5 {
                        break;
                    }
                }
                let node = &mut nodes[v as usize];
                node[4] += p;
                node[2] += p;
                node[3] += p * f.size;
            }
        }
        let snap_nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let dropped = c[6] + noisy(&mut rng, 0.5);
                NodeTelemetry {
                    rx_pkts: c[0].round() as u64,
                    rx_bytes: c[1].round() as u64,
                    tx_pkts: c[2].round() as u64,
                    tx_bytes: c[3].round() as u64,
                    fwd_pkts: c[4].round() as u64,
                    local_pkts: c[5].round() as u64,
                    dropped_pkts: dropped.round() as u64,
                    flows_in: fan_in[i].len() as u32,
                    flows_out: fan_out[i].len() as u32,
                }
            })
            .collect();
        let snap_links = (0..nl)
            .map(|l| {
                let k = PROBES_PER_WINDOW;
                let lost = if up[l] {
                    (0..k)
                        .filter(|_| rng.random::<f64>() < loss[l].min(1.0))
                        .count() as u32
                } else {
                    k
                };
                let util = (lt[l][0] / capacity[l]).min(0.97);
                let queue = 0.5 * util / (1.0 - util);
                let jitter = 0.05 * base_rtt[l]
                    + 0.5 * queue
                    + 0.3 * extra_rtt[l]
                    + 0.02 * gauss(&mut rng).abs();
                let answered = (k - lost).max(1) as f64;
                let rtt =
                    base_rtt[l] + queue + extra_rtt[l] + gauss(&mut rng) * jitter / answered.sqrt();
                LinkTelemetry {
                    tx_pkts: lt[l][0].round() as u64,
                    rx_pkts: lt[l][1].round() as u64,
                    bytes: lt[l][2].round() as u64,
                    probes_sent: k,
                    probes_lost: lost,
                    rtt_ms: if lost == k { 0.0 } else { rtt.max(0.01) as f32 },
                    jitter_ms: if lost == k { 0.0 } else { jitter as f32 },
                }
            })
            .collect();
        out.push(Snapshot {
            window: w,
            nodes: snap_nodes,
            links: snap_links,
            labels,
        });
    }
    Trace {
        header: TraceHeader {
            version: TRACE_VERSION,
            seed: spec.seed,
            window_ms: spec.window_ms,
            topology: topo,
            faults,
        },
        windows: out,
    }
}
