//! Calibration on site: per-class thresholds that hold a target false-alarm rate on the
//! operator's own fault-free windows. Each class gets an equal share of the budget among
//! the classes of its element kind, so an element-window is flagged by any class at most
//! `fpr` of the time; its threshold is the split-conformal quantile of that class's
//! fault-free scores. A calibrated threshold never goes below the detector's own: a quiet
//! site keeps the shipped sensitivity, a noisy one gets quieter.

use serde::{Deserialize, Serialize};

use super::{
    DetectError,
    scores::{CLASSES, Scores},
    trace::Class,
};

/// Most fault-free scores kept per class; later windows are not sampled.
pub const MAX_SAMPLES: usize = 4_000_000;

/// Thresholds fitted to a site, with what they were fitted on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The detector the thresholds are for (`graphsage`, `mlp`, `static`, a model's kind).
    pub detector: String,
    /// The target share of fault-free element-windows flagged.
    pub fpr: f32,
    /// Fault-free windows used.
    pub windows: u64,
    /// Node-windows and link-windows used.
    pub node_samples: u64,
    pub link_samples: u64,
    /// Per class (by name): the threshold.
    pub thresholds: Vec<(Class, f32)>,
    /// The share of the calibration element-windows the thresholds flag.
    pub flagged: f32,
}

impl Calibration {
    /// The thresholds to run with: ours where we have one, `base` elsewhere.
    pub fn apply(&self, base: &[f32; CLASSES]) -> [f32; CLASSES] {
        let mut th = *base;
        for (c, t) in &self.thresholds {
            th[*c as usize] = *t;
        }
        th
    }

    /// Checks a calibration read from a file against the detector it is to be used with.
    pub fn check(&self, detector: &str) -> Result<(), DetectError> {
        if self.detector != detector {
            return Err(DetectError::Model(format!(
                "the calibration is for the {} detector, not {detector}",
                self.detector
            )));
        }
        if let Some((c, t)) = self.thresholds.iter().find(|(_, t)| !t.is_finite()) {
            return Err(DetectError::Model(format!(
                "the calibrated threshold of {} is {t}",
                c.name()
            )));
        }
        Ok(())
    }
}

/// Collects fault-free scores, window by window.
#[derive(Clone, Debug, Default)]
pub struct Calibrator {
    windows: u64,
    /// Every fault-free node-window's and link-window's scores: a class's samples are the
    /// rows of its element kind.
    node_rows: Vec<[f32; CLASSES]>,
    link_rows: Vec<[f32; CLASSES]>,
    probabilities: bool,
}

impl Calibrator {
    pub fn new() -> Self {
        Calibrator::default()
    }

    /// Whether no more windows are taken.
    pub fn full(&self) -> bool {
        self.node_rows.len().max(self.link_rows.len()) >= MAX_SAMPLES
    }

    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// One fault-free window's scores. Elements the window labels anomalous (a generated
    /// or labelled trace) are left out.
    pub fn add(&mut self, s: &Scores, anomalous: &dyn Fn(bool, usize) -> bool) {
        if self.full() {
            return;
        }
        self.windows += 1;
        self.probabilities = s.probabilities;
        for (is_link, rows) in [(false, &s.node), (true, &s.link)] {
            let kept = if is_link {
                &mut self.link_rows
            } else {
                &mut self.node_rows
            };
            kept.extend(
                rows.iter()
                    .enumerate()
                    .filter(|(i, _)| !anomalous(is_link, *i))
                    .map(|(_, row)| *row),
            );
        }
    }

    /// Thresholds holding `fpr`, never below `floor` (the detector's own).
    pub fn finish(
        &self,
        detector: &str,
        fpr: f32,
        floor: &[f32; CLASSES],
    ) -> Result<Calibration, DetectError> {
        if !(fpr > 0.0 && fpr < 1.0) {
            return Err(DetectError::Model(format!(
                "the false-alarm rate must be in (0, 1), not {fpr}"
            )));
        }
        if self.node_rows.is_empty() && self.link_rows.is_empty() {
            return Err(DetectError::Model(
                "no fault-free element-windows to calibrate on".into(),
            ));
        }
        let mut thresholds = Vec::new();
        for (kind, rows) in [
            (&Class::NODE[..], &self.node_rows),
            (&Class::LINK[..], &self.link_rows),
        ] {
            let classes: Vec<Class> = kind
                .iter()
                .copied()
                .filter(|c| *c != Class::Normal)
                .collect();
            let share = fpr / classes.len() as f32;
            for c in classes {
                let mut s: Vec<f32> = rows.iter().map(|r| r[c as usize]).collect();
                if s.is_empty() {
                    continue;
                }
                s.sort_by(f32::total_cmp);
                let t = quantile_above(&s, share).max(floor[c as usize]);
                thresholds.push((c, t));
            }
        }
        let mut cal = Calibration {
            detector: detector.to_owned(),
            fpr,
            windows: self.windows,
            node_samples: self.node_rows.len() as u64,
            link_samples: self.link_rows.len() as u64,
            thresholds,
            flagged: 0.0,
        };
        cal.flagged = self.flagged(&cal.apply(floor));
        Ok(cal)
    }

    /// The share of the collected element-windows `th` flags.
    pub fn flagged(&self, th: &[f32; CLASSES]) -> f32 {
        let rows = || self.node_rows.iter().chain(&self.link_rows);
        let hit = rows()
            .filter(|row| super::scores::best_class(row, th, self.probabilities).is_some())
            .count();
        let n = self.node_rows.len() + self.link_rows.len();
        if n == 0 { 0.0 } else { hit as f32 / n as f32 }
    }
}

/// The smallest threshold `t` (flagging scores `>= t`) such that a new exchangeable score
/// reaches it with probability at most `alpha` (split conformal): just above the
/// `ceil((n + 1)(1 - alpha))`-th smallest score, or above all of them when `n` is too small.
fn quantile_above(sorted: &[f32], alpha: f32) -> f32 {
    let n = sorted.len();
    let k = (((n + 1) as f64) * (1.0 - f64::from(alpha))).ceil() as usize;
    let at = sorted[k.clamp(1, n) - 1];
    next_up(at)
}

fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(seed: u64, nodes: usize, links: usize) -> Scores {
        // A cheap deterministic spread of scores in [0, 1).
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32) / (1u64 << 24) as f32
        };
        // Scores of the element's own kind's classes; the others' are zero.
        let mut row = |classes: &[Class]| {
            let mut r = [0f32; CLASSES];
            for c in classes.iter().skip(1) {
                r[*c as usize] = next().powi(3);
            }
            r
        };
        Scores {
            node: (0..nodes).map(|_| row(&Class::NODE)).collect(),
            link: (0..links).map(|_| row(&Class::LINK)).collect(),
            probabilities: true,
        }
    }

    #[test]
    fn the_thresholds_hold_the_rate_on_held_out_windows_and_never_drop_below_the_floor() {
        let mut cal = Calibrator::new();
        for w in 0..400 {
            cal.add(&scores(w, 6, 8), &|_, _| false);
        }
        let floor = [0.5f32; CLASSES];
        let c = cal.finish("test", 0.01, &floor).expect("calibrates");
        assert!(c.flagged <= 0.01, "{c:?}");
        let mut held_out = Calibrator::new();
        for w in 1000..1400 {
            held_out.add(&scores(w, 6, 8), &|_, _| false);
        }
        let th = c.apply(&floor);
        let rate = held_out.flagged(&th);
        assert!(rate <= 0.015, "held-out false alarms {rate}");
        // The floor flags far more than the budget: calibration raised every class.
        assert!(held_out.flagged(&floor) > 0.05);
        assert!(th.iter().skip(1).all(|t| *t >= 0.5), "{th:?}");
        // A quiet site keeps the floor.
        let mut quiet = Calibrator::new();
        quiet.add(
            &Scores {
                node: vec![[0.0; CLASSES]; 6],
                link: vec![[0.0; CLASSES]; 8],
                probabilities: true,
            },
            &|_, _| false,
        );
        let q = quiet.finish("test", 0.01, &floor).expect("calibrates");
        assert_eq!(q.apply(&floor), floor);
    }

    #[test]
    fn labelled_elements_are_left_out_and_bad_input_is_an_error() {
        let mut cal = Calibrator::new();
        let mut s = scores(1, 2, 0);
        s.node[0] = [1.0; CLASSES];
        cal.add(&s, &|link, i| !link && i == 0);
        assert_eq!(cal.node_rows.len(), 1);
        assert!(
            cal.node_rows
                .iter()
                .all(|r| r[Class::Blackhole as usize] < 1.0)
        );
        for bad in [0.0, 1.0, f32::NAN, -0.1] {
            assert!(matches!(
                cal.finish("t", bad, &[0.5; CLASSES]),
                Err(DetectError::Model(_))
            ));
        }
        assert!(matches!(
            Calibrator::new().finish("t", 0.01, &[0.5; CLASSES]),
            Err(DetectError::Model(_))
        ));
        let c = cal.finish("graphsage", 0.01, &[0.5; CLASSES]).expect("ok");
        assert!(c.check("graphsage").is_ok());
        assert!(matches!(c.check("mlp"), Err(DetectError::Model(_))));
    }

    #[test]
    fn the_conformal_quantile_is_above_all_but_the_allowed_share() {
        let s: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        // 101 * 0.9 = 90.9 -> the 91st smallest: 91, just above it.
        let t = quantile_above(&s, 0.1);
        assert!(t > 91.0 && t < 91.01, "{t}");
        assert_eq!(s.iter().filter(|v| **v >= t).count(), 9);
        // Too few for 0.1 %: above every score.
        assert!(quantile_above(&s, 0.001) > 100.0);
    }
}
