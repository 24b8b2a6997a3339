//! The result of an evaluation: one row per detector, every figure the mean over seeds with
//! a 95 % Student-t interval, and the timing; as text for people and a one-line summary.

use serde::Serialize;

use super::{
    metrics::{ClassMetrics, SeedMetrics},
    protocol::{EvalConfig, SEEN},
    statistics::{Interval, interval},
    timing::Timing,
};
use crate::trace::Class;

/// One detector's row of the table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub detector: String,
    pub macro_f1: Interval,
    pub top1: Interval,
    pub top3: Interval,
    pub fpr: Interval,
    pub false_alarms_per_hour: Interval,
    pub held_out_recall: Interval,
    pub held_out_top1: Interval,
    /// Over seeds where every fault was found (a missed fault makes the p95 infinite).
    pub latency_median: Interval,
    pub latency_p95: Interval,
    pub gray_latency_p95: Interval,
    pub seeds_with_missed_faults: usize,
    pub per_class: Vec<ClassRow>,
    pub seeds: Vec<SeedMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: Class,
    pub precision: Interval,
    pub recall: Interval,
    pub f1: Interval,
    pub pr_auc: Interval,
    pub fpr: Interval,
}

/// A detector's row from its per-seed figures.
pub(super) fn row(name: &str, seeds: Vec<SeedMetrics>) -> Row {
    let g = |f: &dyn Fn(&SeedMetrics) -> f64| interval(&seeds.iter().map(f).collect::<Vec<_>>());
    let opt = |f: &dyn Fn(&SeedMetrics) -> Option<f64>| {
        interval(&seeds.iter().filter_map(f).collect::<Vec<_>>())
    };
    let per_class = SEEN
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let cm = |f: &dyn Fn(&ClassMetrics) -> f64| {
                interval(
                    &seeds
                        .iter()
                        .map(|s| f(&s.per_class[k].1))
                        .collect::<Vec<_>>(),
                )
            };
            ClassRow {
                class: c,
                precision: cm(&|m| m.precision),
                recall: cm(&|m| m.recall),
                f1: cm(&|m| m.f1),
                pr_auc: cm(&|m| m.pr_auc),
                fpr: cm(&|m| m.fpr),
            }
        })
        .collect();
    Row {
        detector: name.into(),
        macro_f1: g(&|s| s.macro_f1),
        top1: g(&|s| s.top1),
        top3: g(&|s| s.top3),
        fpr: g(&|s| s.fpr),
        false_alarms_per_hour: g(&|s| s.false_alarms_per_hour),
        held_out_recall: g(&|s| s.held_out_recall),
        held_out_top1: g(&|s| s.held_out_top1),
        latency_median: opt(&|s| s.latency_median),
        latency_p95: opt(&|s| s.latency_p95),
        gray_latency_p95: opt(&|s| s.gray_latency_p95),
        seeds_with_missed_faults: seeds.iter().filter(|s| s.latency_p95.is_none()).count(),
        per_class,
        seeds,
    }
}

/// The whole result.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub config: EvalConfig,
    pub rows: Vec<Row>,
    pub best_baseline: String,
    /// GraphSAGE macro-F1 minus the best baseline's, paired by seed.
    pub gnn_minus_best_baseline: Interval,
    pub timing: Vec<Timing>,
    /// (nodes, sparse ms, dense ms) of the aggregation comparison.
    pub aggregation: Vec<(usize, f64, f64)>,
    pub dense_faster_up_to: usize,
    pub threads: String,
    /// The same detectors (test thresholds) on real networks' graphs, per family.
    pub on_graphs: Vec<FamilyRows>,
}

/// The detectors on one family of real graphs.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyRows {
    pub family: String,
    /// Graphs of the family drawn from.
    pub graphs: usize,
    pub rows: Vec<Row>,
}

fn class_row(r: &Row, c: Class) -> Option<&ClassRow> {
    r.per_class.iter().find(|x| x.class == c)
}

fn class_recall(r: &Row, c: Class) -> f64 {
    class_row(r, c).map_or(0.0, |x| x.recall.mean)
}

fn fmt(i: &Interval) -> String {
    format!("{:.3}±{:.3}", i.mean, i.ci95)
}

/// The table as text.
pub fn render(t: &Table) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<10} {:>13} {:>13} {:>13} {:>13} {:>13} {:>13} {:>9} {:>9} {:>9}\n",
        "detector",
        "macro-F1",
        "top-1",
        "top-3",
        "FPR",
        "alarms/h",
        "flap recall",
        "lat med",
        "lat p95",
        "gray p95"
    ));
    s.push_str(
        "(latency in windows; p95 columns are means over the seeds where the p95 is finite)\n",
    );
    for r in &t.rows {
        s.push_str(&format!(
            "{:<10} {:>13} {:>13} {:>13} {:>13} {:>13} {:>13} {:>9.2} {:>9.2} {:>9.2}{}\n",
            r.detector,
            fmt(&r.macro_f1),
            fmt(&r.top1),
            fmt(&r.top3),
            format!("{:.4}±{:.4}", r.fpr.mean, r.fpr.ci95),
            format!(
                "{:.1}±{:.1}",
                r.false_alarms_per_hour.mean, r.false_alarms_per_hour.ci95
            ),
            fmt(&r.held_out_recall),
            r.latency_median.mean,
            r.latency_p95.mean,
            r.gray_latency_p95.mean,
            {
                let gray_missed = r
                    .seeds
                    .iter()
                    .filter(|x| x.gray_latency_p95.is_none())
                    .count();
                format!(
                    "  (seeds with an infinite p95: {} overall, {} gray)",
                    r.seeds_with_missed_faults, gray_missed
                )
            }
        ));
    }
    s.push_str("\nper class (precision / recall / F1 / PR-AUC / FPR):\n");
    for r in &t.rows {
        for c in &r.per_class {
            s.push_str(&format!(
                "{:<10} {:<12} P {} R {} F1 {} AUC {} FPR {:.4}\n",
                r.detector,
                c.class.name(),
                fmt(&c.precision),
                fmt(&c.recall),
                fmt(&c.f1),
                fmt(&c.pr_auc),
                c.fpr.mean
            ));
        }
    }
    for f in &t.on_graphs {
        s.push_str(&format!(
            "\non {} ({} real graphs, never trained on):\n{:<10} {:>13} {:>13} {:>13} {:>13} {:>9}  seeds with an infinite gray p95\n",
            f.family, f.graphs, "detector", "macro-F1", "FPR", "ddos R", "gray R", "gray p95"
        ));
        for r in &f.rows {
            let ci = |c: Class| class_row(r, c).map_or("-".to_owned(), |x| fmt(&x.recall));
            s.push_str(&format!(
                "{:<10} {:>13} {:>13} {:>13} {:>13} {:>9.2}  {}\n",
                r.detector,
                fmt(&r.macro_f1),
                format!("{:.4}±{:.4}", r.fpr.mean, r.fpr.ci95),
                ci(Class::DdosVictim),
                ci(Class::GrayLink),
                r.gray_latency_p95.mean,
                r.seeds
                    .iter()
                    .filter(|x| x.gray_latency_p95.is_none())
                    .count()
            ));
        }
    }
    s.push_str(&format!(
        "\ngraphsage - {} macro-F1: {}\n",
        t.best_baseline,
        fmt(&t.gnn_minus_best_baseline)
    ));
    s.push_str("aggregation (nodes: sparse ms / dense ms): ");
    for (n, a, b) in &t.aggregation {
        s.push_str(&format!("{n}: {a:.3}/{b:.3}  "));
    }
    s.push_str(&format!(
        "; dense faster up to {} nodes\n",
        t.dense_faster_up_to
    ));
    for x in &t.timing {
        s.push_str(&format!(
            "inference cycle at {} nodes / {} links: {:.2} ms (sparse {:.2}, dense {}) threads: {}\n",
            x.nodes,
            x.links,
            x.cycle_ms,
            x.sparse_ms,
            x.dense_ms.map_or("-".into(), |d| format!("{d:.2}")),
            t.threads
        ));
    }
    s
}

/// The summary line.
pub fn summary(t: &Table) -> String {
    let g = &t.rows[0];
    let best = t
        .rows
        .iter()
        .find(|r| r.detector == t.best_baseline)
        .map_or(0.0, |r| r.macro_f1.mean);
    let ddos = class_recall(g, Class::DdosVictim);
    let ms1000 = t
        .timing
        .iter()
        .find(|x| x.nodes == 1000)
        .map_or(f64::NAN, |x| x.cycle_ms);
    let mut line = format!(
        "bench detect: gnn_macro_f1={:.3} best_baseline_macro_f1={best:.3} top1={:.3} top3={:.3} ddos_recall={ddos:.3} fpr={:.4} infer_ms_1000={ms1000:.2}",
        g.macro_f1.mean, g.top1.mean, g.top3.mean, g.fpr.mean
    );
    for f in &t.on_graphs {
        if let Some(r) = f.rows.first() {
            line += &format!(
                " {0}_macro_f1={1:.3} {0}_ddos_recall={2:.3} {0}_fpr={3:.4}",
                f.family,
                r.macro_f1.mean,
                class_recall(r, Class::DdosVictim),
                r.fpr.mean
            );
        }
    }
    line
}
