//! Test figures of one detector on one seed: per-class precision, recall, F1, PR-AUC and
//! false-positive rate, localisation, the held-out class and detection latency.

use serde::Serialize;

use super::{
    protocol::{HELD_OUT, SEEN},
    scoring::labelled_rows,
    statistics::{average_precision, median, percentile},
};
use crate::{
    scores::{CLASSES, Scores, best_class, relative_score},
    trace::{Class, Element, Trace},
    train::WARMUP_WINDOWS,
};

/// Figures of one detector on one seed's test set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedMetrics {
    pub per_class: Vec<(Class, ClassMetrics)>,
    pub macro_f1: f64,
    pub top1: f64,
    pub top3: f64,
    pub held_out_recall: f64,
    pub held_out_top1: f64,
    pub fpr: f64,
    pub false_alarms_per_hour: f64,
    pub latency_median: Option<f64>,
    pub latency_p95: Option<f64>,
    pub gray_latency_p95: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub pr_auc: f64,
    pub fpr: f64,
}

/// Test figures of one detector from its scores.
pub fn metrics(test: &[(Trace, Vec<Scores>)], th: &[f32; CLASSES]) -> SeedMetrics {
    let mut conf = [[0u64; 3]; CLASSES]; // tp, fp, fn
    let mut neg = [0u64; CLASSES];
    let mut ap_pts: Vec<Vec<(f32, bool)>> = vec![Vec::new(); CLASSES];
    let (mut normal, mut false_pos) = (0u64, 0u64);
    let (mut held, mut held_hit) = (0u64, 0u64);
    let (mut ff_alarms, mut ff_hours) = (0u64, 0.0f64);
    let (mut loc, mut loc1, mut loc3, mut held_loc, mut held_loc1) = (0, 0, 0, 0, 0);
    let (mut lat, mut gray_lat) = (Vec::new(), Vec::new());
    for (t, s) in test {
        let fault_free = t.header.faults.is_empty();
        if fault_free {
            ff_hours += s.len() as f64 * t.header.window_ms as f64 / 3.6e6;
        }
        // Seen-class figures leave out the held-out class's runs: a flapping link is down
        // half the time, and calling that `link_down` is no false alarm. They are scored
        // on their own below.
        let held_run = t.header.faults.iter().any(|f| f.class == HELD_OUT);
        for (e, label, row, probs) in labelled_rows(t, s) {
            let pred = best_class(row, th, probs).map(|p| p.0);
            if held_run {
                if label == HELD_OUT {
                    held += 1;
                    held_hit += u64::from(pred.is_some());
                }
                continue;
            }
            let is_link = matches!(e, Element::Link(_));
            for c in SEEN {
                if c.is_link() == is_link {
                    ap_pts[c as usize].push((row[c as usize], label == c));
                    if label != c {
                        neg[c as usize] += 1;
                    }
                }
            }
            if let Some(p) = pred {
                if p == label {
                    conf[p as usize][0] += 1;
                } else {
                    conf[p as usize][1] += 1;
                }
            }
            if label != Class::Normal && pred != Some(label) {
                conf[label as usize][2] += 1;
            }
            if label == Class::Normal {
                normal += 1;
                false_pos += u64::from(pred.is_some());
                if fault_free {
                    ff_alarms += u64::from(pred.is_some());
                }
            }
        }
        let Some(f) = t.header.faults.first() else {
            continue;
        };
        // Localisation: rank every element by its mean relative score over the fault.
        let span: Vec<&Scores> = s
            .iter()
            .enumerate()
            .filter(|(k, _)| (f.start..f.end).contains(&((k + WARMUP_WINDOWS) as u32)))
            .map(|(_, x)| x)
            .collect();
        if span.is_empty() {
            continue;
        }
        let mut rank: Vec<(Element, f32)> = Vec::new();
        let (n, nl) = (span[0].node.len(), span[0].link.len());
        for i in 0..n {
            let m = span
                .iter()
                .map(|x| relative_score(&x.node[i], th).1)
                .sum::<f32>();
            rank.push((Element::Node(i as u32), m));
        }
        for i in 0..nl {
            let m = span
                .iter()
                .map(|x| relative_score(&x.link[i], th).1)
                .sum::<f32>();
            rank.push((Element::Link(i as u32), m));
        }
        rank.sort_by(|a, b| b.1.total_cmp(&a.1));
        let pos = rank
            .iter()
            .position(|r| r.0 == f.element)
            .unwrap_or(usize::MAX);
        if f.class == HELD_OUT {
            held_loc += 1;
            held_loc1 += usize::from(pos == 0);
        } else {
            loc += 1;
            loc1 += usize::from(pos == 0);
            loc3 += usize::from(pos < 3);
        }
        let first = s.iter().enumerate().find_map(|(k, x)| {
            let w = (k + WARMUP_WINDOWS) as u32;
            let row = match f.element {
                Element::Node(i) => &x.node[i as usize],
                Element::Link(i) => &x.link[i as usize],
            };
            // Lazily: before the fault `w - f.start` would underflow.
            ((f.start..f.end).contains(&w) && best_class(row, th, x.probabilities).is_some())
                .then(|| (w - f.start) as f64)
        });
        let l = first.unwrap_or(f64::INFINITY);
        if f.class != HELD_OUT {
            lat.push(l);
        }
        if f.class == Class::GrayLink {
            gray_lat.push(l);
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let per_class: Vec<(Class, ClassMetrics)> = SEEN
        .iter()
        .map(|&c| {
            let [tp, fp, fneg] = conf[c as usize].map(|x| x as f64);
            let precision = ratio(tp, tp + fp);
            let recall = ratio(tp, tp + fneg);
            (
                c,
                ClassMetrics {
                    precision,
                    recall,
                    f1: ratio(2.0 * precision * recall, precision + recall),
                    pr_auc: average_precision(std::mem::take(&mut ap_pts[c as usize])),
                    fpr: ratio(fp, neg[c as usize] as f64),
                },
            )
        })
        .collect();
    SeedMetrics {
        macro_f1: per_class.iter().map(|(_, m)| m.f1).sum::<f64>() / SEEN.len() as f64,
        per_class,
        top1: ratio(loc1 as f64, loc as f64),
        top3: ratio(loc3 as f64, loc as f64),
        held_out_recall: ratio(held_hit as f64, held as f64),
        held_out_top1: ratio(held_loc1 as f64, held_loc as f64),
        fpr: ratio(false_pos as f64, normal as f64),
        false_alarms_per_hour: ratio(ff_alarms as f64, ff_hours),
        latency_median: median(&lat),
        latency_p95: percentile(&lat, 0.95),
        gray_latency_p95: percentile(&gray_lat, 0.95),
    }
}
