//! Inference timing. The pure core reads no clock of its own: the caller hands in one, and
//! only differences of its readings are used.

use std::time::Duration;

use serde::Serialize;

use super::{protocol::EvalConfig, statistics::median};
use crate::{
    DetectError,
    detector::model_scores,
    features::{FeatureSpec, FeatureState, GraphSample},
    sage::{Aggregation, GraphTensors},
    scenario::{Family, ScenarioSpec, generate},
    train::Model,
};

/// The caller's monotonic clock: the time since an origin of its choosing.
pub type Clock<'a> = dyn FnMut() -> Duration + 'a;

/// Inference time per cycle (features + forward) at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub nodes: usize,
    pub links: usize,
    pub sparse_ms: f64,
    pub dense_ms: Option<f64>,
    pub cycle_ms: f64,
}

/// Median wall time of `reps` calls of `f` in milliseconds, read from the caller's clock.
fn median_ms(
    clock: &mut Clock<'_>,
    mut f: impl FnMut() -> Result<(), DetectError>,
    reps: usize,
) -> Result<f64, DetectError> {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = clock();
        f()?;
        v.push(clock().saturating_sub(start).as_secs_f64() * 1e3);
    }
    Ok(median(&v).unwrap_or(0.0))
}

/// Per size, the inference cycle; per size of the aggregation comparison, (nodes, sparse
/// ms, dense ms).
pub(super) type Timings = (Vec<Timing>, Vec<(usize, f64, f64)>);

/// Times the forward pass of `model` with either aggregation, and whole inference cycles at
/// the protocol's sizes.
pub(super) fn timings(
    model: &Model,
    cfg: &EvalConfig,
    clock: &mut Clock<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<Timings, DetectError> {
    let c = &model.meta.config;
    let mut agg = Vec::new();
    for n in [16, 32, 64, 128, 256, 512] {
        let t = generate(&ScenarioSpec {
            family: Family::Geometric,
            nodes: n,
            windows: 2,
            seed: n as u64,
            fault: None,
            window_ms: 10_000,
        });
        let mut st = FeatureState::new(FeatureSpec::default());
        let f = st.update(&t.header.topology, &t.windows[0]);
        let g = GraphSample::new(&t.header.topology, &f, None);
        let mut ms = [0.0; 2];
        for (k, a) in [Aggregation::Sparse, Aggregation::Dense]
            .into_iter()
            .enumerate()
        {
            let gt = GraphTensors::new(&g, c.node_in, c.link_in, a, &candle_core::Device::Cpu)?;
            ms[k] = median_ms(clock, || model.sage.forward(&gt).map(|_| ()), 21)?;
        }
        log(&format!(
            "aggregation at {n} nodes: sparse {:.3} ms, dense {:.3} ms",
            ms[0], ms[1]
        ));
        agg.push((n, ms[0], ms[1]));
    }
    let mut out = Vec::new();
    for &n in &cfg.timing_sizes {
        let mut cycle = Cycle::new(n);
        let reps = if n >= 10_000 { 5 } else { 15 };
        let mut time = |a: Aggregation| median_ms(clock, || cycle.run(model, a), reps);
        let sparse = time(Aggregation::Sparse)?;
        let dense = if n <= 1000 {
            Some(time(Aggregation::Dense)?)
        } else {
            None
        };
        let auto = time(Aggregation::Auto)?;
        log(&format!("cycle at {n} nodes: {auto:.2} ms"));
        out.push(Timing {
            nodes: n,
            links: cycle.links(),
            sparse_ms: sparse,
            dense_ms: dense,
            cycle_ms: auto,
        });
    }
    Ok((out, agg))
}

/// Whole inference cycles on a generated mesh: each run takes the next fault-free window's
/// features (with their history) and scores every node and link.
pub struct Cycle {
    trace: crate::trace::Trace,
    state: FeatureState,
    next: usize,
}

impl Cycle {
    /// A mesh of the generator's geometric family of `nodes` nodes (5,284 links at 1,000,
    /// 72,101 at 10,000) with a dozen windows.
    pub fn new(nodes: usize) -> Self {
        Cycle {
            trace: generate(&ScenarioSpec {
                family: Family::Geometric,
                nodes,
                windows: 12,
                seed: 7 + nodes as u64,
                fault: None,
                window_ms: 10_000,
            }),
            state: FeatureState::new(FeatureSpec::default()),
            next: 0,
        }
    }

    pub fn links(&self) -> usize {
        self.trace.header.topology.links.len()
    }

    /// One cycle: features of the next window, then `model` with aggregation `agg`.
    pub fn run(&mut self, model: &Model, agg: Aggregation) -> Result<(), DetectError> {
        let topo = &self.trace.header.topology;
        let f = self.state.update(
            topo,
            &self.trace.windows[self.next % self.trace.windows.len()],
        );
        self.next += 1;
        model_scores(model, topo, &f, agg).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::median_ms;

    #[test]
    fn timing_reads_only_the_callers_clock() {
        // A clock that moves one millisecond per reading: every call lasts exactly that.
        let mut now = Duration::ZERO;
        let mut clock = || {
            now += Duration::from_millis(1);
            now
        };
        let mut calls = 0;
        let ms = median_ms(
            &mut clock,
            || {
                calls += 1;
                Ok(())
            },
            5,
        )
        .unwrap();
        assert_eq!(calls, 5);
        assert_eq!(ms, 1.0);
    }
}
