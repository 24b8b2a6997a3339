//! What the evaluation runs on: the protocol's sizes, its splits and the scenarios of each.
//! Splits are by scenario, never by window: training and validation run on grid, ring and
//! random geometric meshes of 16-60 nodes with fault intensities in the odd tenths of 0..1;
//! the test runs on scale-free meshes (a family never trained on) of 40-150 nodes, new
//! seeds, intensities in the even tenths, and one class (flapping) that no detector saw
//! before.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::{
    scenario::{Family, ScenarioSpec},
    trace::{Class, Topology},
    train::TrainConfig,
};

/// The class no detector trains or calibrates on.
pub const HELD_OUT: Class = Class::Flapping;
/// Classes trained on and in the macro-F1.
pub const SEEN: [Class; 6] = [
    Class::LinkDown,
    Class::GrayLink,
    Class::Congested,
    Class::Blackhole,
    Class::DdosVictim,
    Class::Scanner,
];

/// Sizes of the protocol.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EvalConfig {
    pub seeds: Vec<u64>,
    pub train_per_class: usize,
    pub val_per_class: usize,
    pub test_per_class: usize,
    pub fault_free: usize,
    pub windows: u32,
    pub train: TrainConfig,
    pub timing_sizes: Vec<usize>,
    /// Real networks' graphs tested on besides the generated families, never trained or
    /// calibrated on (the report names the families and counts, not the graphs).
    #[serde(default, skip_serializing)]
    pub graphs: Vec<NamedGraph>,
    /// Scenarios per class (and fault-free) on each family of `graphs`, per seed.
    #[serde(default)]
    pub graph_per_class: usize,
}

/// A real network's graph and the family it belongs to (`topozoo`, `sndlib`).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct NamedGraph {
    pub family: String,
    pub topology: Topology,
}

impl EvalConfig {
    /// The families of `graphs`, in first-seen order.
    pub fn graph_families(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in &self.graphs {
            if !out.contains(&g.family) {
                out.push(g.family.clone());
            }
        }
        out
    }
}

impl EvalConfig {
    /// The benchmark's sizes (under ten seconds per seed on one core).
    pub fn bench() -> Self {
        EvalConfig {
            seeds: vec![1, 2, 3, 4, 5],
            train_per_class: 16,
            val_per_class: 6,
            test_per_class: 8,
            fault_free: 10,
            windows: 40,
            train: TrainConfig::default(),
            timing_sizes: vec![100, 1000, 10000],
            graphs: Vec::new(),
            graph_per_class: 4,
        }
    }

    /// A small protocol for tests and quick runs.
    pub fn quick() -> Self {
        EvalConfig {
            seeds: vec![1, 2],
            train_per_class: 2,
            val_per_class: 1,
            test_per_class: 1,
            fault_free: 1,
            windows: 24,
            train: TrainConfig {
                steps: 60,
                ..TrainConfig::default()
            },
            timing_sizes: vec![100],
            graphs: Vec::new(),
            graph_per_class: 1,
        }
    }
}

/// Which split a scenario belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

/// The scenarios of one split for one seed.
pub fn scenarios(cfg: &EvalConfig, seed: u64, split: Split) -> Vec<ScenarioSpec> {
    let tag = match split {
        Split::Train => 1,
        Split::Val => 2,
        Split::Test => 3,
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag);
    let (per_class, classes): (usize, Vec<Class>) = match split {
        Split::Train => (cfg.train_per_class, SEEN.to_vec()),
        Split::Val => (cfg.val_per_class, SEEN.to_vec()),
        Split::Test => (cfg.test_per_class, Class::ANOMALIES.to_vec()),
    };
    let mut faults: Vec<Option<Class>> = vec![None; cfg.fault_free];
    for c in classes {
        faults.extend(std::iter::repeat_n(Some(c), per_class));
    }
    faults
        .into_iter()
        .map(|fault| {
            let (family, nodes) = match split {
                Split::Test => (Family::ScaleFree, rng.random_range(40..=150)),
                _ => (
                    [Family::Grid, Family::Ring, Family::Geometric][rng.random_range(0..3)],
                    rng.random_range(16..=60),
                ),
            };
            // Train and validation draw from the odd tenths, the test from the even ones.
            let band = rng.random_range(0..5) * 2 + u32::from(split != Split::Test);
            let intensity = (band as f32 + rng.random::<f32>()) / 10.0;
            ScenarioSpec {
                family,
                nodes,
                windows: cfg.windows,
                seed: rng.random(),
                fault: fault.map(|c| (c, intensity)),
                window_ms: 10_000,
            }
        })
        .collect()
}

/// The test scenarios on the real graphs of `family` for one seed, each with the index
/// into `cfg.graphs` of the graph it runs on: fault-free runs and every class, test
/// intensities (the even tenths), a graph drawn for each.
pub fn graph_scenarios(cfg: &EvalConfig, seed: u64, family: &str) -> Vec<(ScenarioSpec, usize)> {
    let pool: Vec<usize> = (0..cfg.graphs.len())
        .filter(|&i| cfg.graphs[i].family == family)
        .collect();
    if pool.is_empty() {
        return Vec::new();
    }
    let tag = family
        .bytes()
        .fold(4u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag);
    let mut faults: Vec<Option<Class>> = vec![None; cfg.graph_per_class];
    for c in Class::ANOMALIES {
        faults.extend(std::iter::repeat_n(Some(c), cfg.graph_per_class));
    }
    faults
        .into_iter()
        .map(|fault| {
            let g = pool[rng.random_range(0..pool.len())];
            let band = rng.random_range(0..5) * 2;
            let intensity = (band as f32 + rng.random::<f32>()) / 10.0;
            (
                ScenarioSpec {
                    // Not used: the graph is given.
                    family: Family::ScaleFree,
                    nodes: cfg.graphs[g].topology.nodes.len(),
                    windows: cfg.windows,
                    seed: rng.random(),
                    fault: fault.map(|c| (c, intensity)),
                    window_ms: 10_000,
                },
                g,
            )
        })
        .collect()
}
