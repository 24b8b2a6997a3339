//! The run of the protocol: per seed, train GraphSAGE and the MLP, calibrate every detector
//! on validation, score it on the test; then the table over seeds and the timing.

use super::{
    calibration::calibrate,
    metrics::{SeedMetrics, metrics},
    protocol::{EvalConfig, Split, graph_scenarios, scenarios},
    report::{FamilyRows, Row, Table, row},
    scoring::score_traces,
    statistics::interval,
    timing::{Clock, timings},
};
use crate::{
    DetectError,
    baseline::Rule,
    detector::{Detector as _, FeatureDetector, Scorer},
    features::{FeatureSpec, GraphSample},
    sage::Aggregation,
    scenario::{generate, generate_on},
    scores::CLASSES,
    trace::Trace,
    train::{Model, TrainConfig, samples, train},
};

/// Runs the protocol. Inference is timed with `clock`, `threads` names the thread count
/// inference ran with (the table records it), progress goes to `log`.
pub fn evaluate(
    cfg: &EvalConfig,
    clock: &mut Clock<'_>,
    threads: &str,
    log: &mut dyn FnMut(&str),
) -> Result<(Table, Model), DetectError> {
    let names = ["graphsage", "mlp", "ewma_z", "static"];
    let mut per: Vec<Vec<SeedMetrics>> = vec![Vec::new(); names.len()];
    let families = cfg.graph_families();
    // Per real-graph family, per detector, per seed.
    let mut per_family: Vec<Vec<Vec<SeedMetrics>>> =
        vec![vec![Vec::new(); names.len()]; families.len()];
    let spec = FeatureSpec::default();
    let mut first_model = None;
    for &seed in &cfg.seeds {
        let make =
            |split| -> Vec<Trace> { scenarios(cfg, seed, split).iter().map(generate).collect() };
        let (tr, va, te) = (make(Split::Train), make(Split::Val), make(Split::Test));
        log(&format!(
            "seed {seed}: {} train, {} validation, {} test scenarios",
            tr.len(),
            va.len(),
            te.len()
        ));
        let data: Vec<GraphSample> = tr.iter().flat_map(|t| samples(t, &spec)).collect();
        let mut detectors = Vec::new();
        for mp in [true, false] {
            let tc = TrainConfig {
                seed,
                message_passing: mp,
                ..cfg.train.clone()
            };
            let (m, losses) = train(&data, &tc, &mut |_, _| {})?;
            log(&format!(
                "seed {seed}: trained {} ({} steps, loss {:.3} -> {:.3})",
                m.meta.kind,
                losses.len(),
                losses.first().copied().unwrap_or(0.0),
                losses.last().copied().unwrap_or(0.0)
            ));
            detectors.push(FeatureDetector::new(
                &m.meta.kind.clone(),
                Scorer::Model(Box::new(m), Aggregation::Auto),
                [1.0; CLASSES],
            ));
        }
        detectors.push(FeatureDetector::new(
            "ewma_z",
            Scorer::Rule(Rule::Ewma),
            [1.0; CLASSES],
        ));
        detectors.push(FeatureDetector::new(
            "static",
            Scorer::Rule(Rule::Static),
            [1.0; CLASSES],
        ));
        for (k, det) in detectors.iter_mut().enumerate() {
            let val = score_traces(det, &va)?;
            let th = calibrate(&val);
            det.set_thresholds(th);
            let test = score_traces(det, &te)?;
            let m = metrics(&test, &th);
            log(&format!(
                "seed {seed}: {:<9} macro-F1 {:.3} top-1 {:.3} top-3 {:.3} FPR {:.4}",
                names[k], m.macro_f1, m.top1, m.top3, m.fpr
            ));
            per[k].push(m);
        }
        for (f, family) in families.iter().enumerate() {
            let traces: Vec<Trace> = graph_scenarios(cfg, seed, family)
                .into_iter()
                .map(|(spec, g)| generate_on(&spec, cfg.graphs[g].topology.clone()))
                .collect();
            for (k, det) in detectors.iter_mut().enumerate() {
                let th = *det.thresholds();
                let scored = score_traces(det, &traces)?;
                let m = metrics(&scored, &th);
                log(&format!(
                    "seed {seed}: {:<9} on {family}: macro-F1 {:.3} FPR {:.4}",
                    names[k], m.macro_f1, m.fpr
                ));
                per_family[f][k].push(m);
            }
        }
        if first_model.is_none() {
            let det = detectors.swap_remove(0);
            let th = *det.thresholds();
            if let Scorer::Model(m, _) = det.into_scorer() {
                let mut m = *m;
                m.meta.thresholds = th.to_vec();
                first_model = Some(m);
            }
        }
    }
    let rows: Vec<Row> = names.iter().zip(per).map(|(n, s)| row(n, s)).collect();
    let on_graphs: Vec<FamilyRows> = families
        .iter()
        .zip(per_family)
        .map(|(family, per)| FamilyRows {
            family: family.clone(),
            graphs: cfg.graphs.iter().filter(|g| &g.family == family).count(),
            rows: names.iter().zip(per).map(|(n, s)| row(n, s)).collect(),
        })
        .collect();
    let best = rows[1..]
        .iter()
        .max_by(|a, b| a.macro_f1.mean.total_cmp(&b.macro_f1.mean))
        .map(|r| r.detector.clone())
        .unwrap_or_default();
    let bi = rows.iter().position(|r| r.detector == best).unwrap_or(1);
    let diff: Vec<f64> = rows[0]
        .seeds
        .iter()
        .zip(&rows[bi].seeds)
        .map(|(a, b)| a.macro_f1 - b.macro_f1)
        .collect();
    let model = first_model.ok_or(DetectError::Model("no seeds".into()))?;
    log("timing inference");
    let (timing, aggregation) = timings(&model, cfg, clock, log)?;
    let dense_faster_up_to = aggregation
        .iter()
        .take_while(|(_, s, d)| d < s)
        .last()
        .map_or(0, |a| a.0);
    Ok((
        Table {
            config: cfg.clone(),
            rows,
            best_baseline: best,
            gnn_minus_best_baseline: interval(&diff),
            timing,
            aggregation,
            dense_faster_up_to,
            threads: threads.into(),
            on_graphs,
        },
        model,
    ))
}
