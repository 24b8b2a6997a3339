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
    trace::Class,
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
