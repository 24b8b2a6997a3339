//! Threshold calibration: per-class thresholds come from validation scenarios only, never
//! from the test.

use super::{
    protocol::{EvalConfig, SEEN, Split, scenarios},
    scoring::{labelled_rows, score_trace},
};
use crate::{
    DetectError,
    detector::{FeatureDetector, Scorer},
    sage::Aggregation,
    scenario::generate,
    scores::{CLASSES, Scores},
    trace::{Element, Trace},
    train::Model,
};

/// Highest false-positive rate a class threshold may have on validation.
pub const MAX_VAL_FPR: f64 = 0.005;

/// Per-class thresholds maximising F1 on validation with at most `MAX_VAL_FPR`.
pub(super) fn calibrate(val: &[(Trace, Vec<Scores>)]) -> [f32; CLASSES] {
    let mut th = [f32::MAX; CLASSES];
    for c in SEEN {
        let mut pts: Vec<(f32, bool)> = Vec::new();
        for (t, s) in val {
            for (e, label, row, _) in labelled_rows(t, s) {
                if matches!(e, Element::Link(_)) == c.is_link() {
                    pts.push((row[c as usize], label == c));
                }
            }
        }
        pts.sort_by(|a, b| b.0.total_cmp(&a.0));
        let pos = pts.iter().filter(|p| p.1).count().max(1) as f64;
        let neg = pts.iter().filter(|p| !p.1).count().max(1) as f64;
        let (mut tp, mut fp, mut best) = (0.0, 0.0, (-1.0, f32::MAX));
        for (k, &(v, y)) in pts.iter().enumerate() {
            if y {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            if pts.get(k + 1).is_some_and(|n| n.0 == v) || v <= 0.0 {
                continue;
            }
            let f1 = 2.0 * tp / (tp + fp + pos);
            if fp / neg <= MAX_VAL_FPR && f1 > best.0 {
                // Halfway to the next lower score: the lowest score that reaches this F1
                // would put every test positive a hair below it on the wrong side.
                let next = pts.get(k + 1).map_or(v, |n| n.0.max(0.0));
                best = (f1, (v + next) / 2.0);
            }
        }
        th[c as usize] = best.1;
    }
    // The held-out class has no threshold of its own: it can only be caught as another
    // class, which is what generalisation means here.
    th
}

/// Picks a model's thresholds on the validation scenarios of `seed`.
pub fn calibrate_model(model: Model, cfg: &EvalConfig, seed: u64) -> Result<Model, DetectError> {
    let name = model.meta.kind.clone();
    let mut det = FeatureDetector::new(
        &name,
        Scorer::Model(Box::new(model), Aggregation::Auto),
        [1.0; CLASSES],
    );
    let val: Vec<(Trace, Vec<Scores>)> = scenarios(cfg, seed, Split::Val)
        .iter()
        .map(|s| {
            let t = generate(s);
            let sc = score_trace(&mut det, &t)?;
            Ok((t, sc))
        })
        .collect::<Result<_, DetectError>>()?;
    let th = calibrate(&val);
    match det.into_scorer() {
        Scorer::Model(m, _) => {
            let mut m = *m;
            m.meta.thresholds = th.to_vec();
            Ok(m)
        }
        Scorer::Rule(_) => Err(DetectError::Model("not a model".into())),
    }
}
