//! The statistics of the crate: quantiles, average precision and Student-t intervals over
//! seeds. Every median and percentile in `detect` is this one.

use serde::Serialize;

/// Average precision of a ranking: scores with whether each is a positive. Zero without
/// positives.
pub(crate) fn average_precision(mut pts: Vec<(f32, bool)>) -> f64 {
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = pts.iter().filter(|p| p.1).count();
    if pos == 0 {
        return 0.0;
    }
    let (mut tp, mut ap) = (0.0, 0.0);
    for (k, p) in pts.iter().enumerate() {
        if p.1 {
            tp += 1.0;
            ap += tp / (k + 1) as f64;
        }
    }
    ap / pos as f64
}

/// The `q` quantile (0..=1) of `v`, nearest rank. None when `v` is empty or the value is not
/// finite: a missed detection has an infinite latency, and a tail that holds one has no p95.
pub(crate) fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let x = v[((v.len() - 1) as f64 * q).round() as usize];
    x.is_finite().then_some(x)
}

/// The median of `v`, as `percentile` at one half.
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 0.5)
}

/// Mean and 95 % interval half-width over seeds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Interval {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

/// Student-t interval of the mean of `v`.
pub fn interval(v: &[f64]) -> Interval {
    let n = v.len();
    if n == 0 {
        return Interval::default();
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Interval { mean, ci95: 0.0, n };
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // t(0.975, df) for df 1..10, then the normal value.
    const T: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    Interval {
        mean,
        ci95: t * (var / n as f64).sqrt(),
        n,
    }
}
