//! Per-class scores of every element and how a row of them is read against thresholds.
//! Its own module so that detectors and the baseline rules that produce scores share the
//! type without depending on each other.

use super::trace::Class;

/// Number of score columns: one per `Class`, indexed by `Class as usize`.
pub const CLASSES: usize = 8;

/// Per element, a score per class (zero for classes of the other element kind).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub node: Vec<[f32; CLASSES]>,
    pub link: Vec<[f32; CLASSES]>,
    /// Scores are probabilities (comparable across classes): the class is the most
    /// probable one that reaches its threshold. Otherwise the one furthest above it.
    pub probabilities: bool,
}

/// The reported class among those reaching their threshold (see `Scores::probabilities`),
/// with its score relative to the threshold.
pub fn best_class(
    row: &[f32; CLASSES],
    th: &[f32; CLASSES],
    probabilities: bool,
) -> Option<(Class, f32)> {
    Class::ANOMALIES
        .iter()
        .map(|&c| {
            (
                c,
                row[c as usize] / th[c as usize].max(1e-6),
                row[c as usize],
            )
        })
        .filter(|(_, r, _)| *r >= 1.0)
        .max_by(|a, b| {
            if probabilities {
                a.2.total_cmp(&b.2)
            } else {
                a.1.total_cmp(&b.1)
            }
        })
        .map(|(c, r, _)| (c, r))
}

/// The element's anomaly score relative to thresholds (for ranking), and its best class.
pub fn relative_score(row: &[f32; CLASSES], th: &[f32; CLASSES]) -> (Class, f32) {
    Class::ANOMALIES
        .iter()
        .map(|&c| (c, row[c as usize] / th[c as usize].max(1e-6)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((Class::Normal, 0.0))
}
