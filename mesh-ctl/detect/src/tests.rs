//! Unit tests of the detection module: small graphs and short traces, so they run in
//! seconds in a debug build.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::{
    baseline::Rule,
    detector::{CLASSES, Detector, FeatureDetector, Scorer},
    features::{FeatureSpec, FeatureState, GraphSample, LINK_FEATURES, NODE_FEATURES},
    sage::{Aggregation, GraphTensors, SageLayer},
    scenario::{Family, ScenarioSpec, generate},
    trace::{Class, Element, LinkTelemetry, NodeTelemetry, Snapshot, Topology, Trace},
    train::{Model, TrainConfig, samples, train},
};

fn path3() -> (Topology, GraphSample) {
    let topo = Topology {
        kind: "test".into(),
        nodes: vec!["a".into(), "b".into(), "c".into()],
        links: vec![(0, 1), (1, 2)],
    };
    let f = super::features::Features {
        node: vec![1.0, 2.0, 3.0],
        link: vec![10.0, 20.0],
    };
    let g = GraphSample::new(&topo, &f, None);
    (topo, g)
}

fn set(vm: &VarMap, name: &str, values: &[f32], shape: &[usize]) {
    let data = vm.data().lock().expect("lock");
    data[name]
        .set(&Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).expect("tensor"))
        .expect("set");
}

/// h = [1, 2, 3] on the path a-b-c with link features [10, 20]; W_self = 2, W_nb = [1, 3],
/// b_nb = 0.5. Neighbour means [h || e]: a [2, 10], b [2, 15], c [2, 20], so the layer is
/// 2h + m_h + 3 m_e + 0.5 = [34.5, 51.5, 68.5]; d(sum)/dW_nb = [6, 45], d/db_nb = 3,
/// d/dW_self = 6.
#[test]
fn sage_layer_matches_hand_computed_values_and_gradients() {
    for agg in [Aggregation::Sparse, Aggregation::Dense] {
        let (_, g) = path3();
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let layer = SageLayer::new(1, 1, 1, true, vb.pp("t")).expect("layer");
        set(&vm, "t.self.weight", &[2.0], &[1, 1]);
        set(&vm, "t.self.bias", &[0.0], &[1]);
        set(&vm, "t.nb.weight", &[1.0, 3.0], &[1, 2]);
        set(&vm, "t.nb.bias", &[0.5], &[1]);
        let gt = GraphTensors::new(&g, 1, 1, agg, &Device::Cpu).expect("graph");
        let out = layer.pre_activation(&gt, &gt.node_x).expect("forward");
        assert_eq!(out.dims(), &[3, 1]);
        let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![34.5, 51.5, 68.5], "{agg:?}");
        let grads = out.sum_all().unwrap().backward().unwrap();
        let data = vm.data().lock().unwrap();
        let grad = |n: &str| -> Vec<f32> {
            grads
                .get(data[n].as_tensor())
                .expect("gradient")
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(grad("t.nb.weight"), vec![6.0, 45.0], "{agg:?}");
        assert_eq!(grad("t.nb.bias"), vec![3.0], "{agg:?}");
        assert_eq!(grad("t.self.weight"), vec![6.0], "{agg:?}");
        assert_eq!(grad("t.self.bias"), vec![3.0], "{agg:?}");
    }
}

/// The first fault-free window of a generated scale-free mesh, as a graph sample.
fn scale_free_sample(nodes: usize, seed: u64) -> GraphSample {
    let t = generate(&ScenarioSpec {
        family: Family::ScaleFree,
        nodes,
        windows: 2,
        seed,
        fault: None,
        window_ms: 10_000,
    });
    let mut st = FeatureState::new(FeatureSpec::default());
    let f = st.update(&t.header.topology, &t.windows[0]);
    GraphSample::new(&t.header.topology, &f, None)
}

#[test]
fn index_add_aggregation_equals_dense() {
    let g = scale_free_sample(40, 3);
    let (ni, li) = (NODE_FEATURES.len(), LINK_FEATURES.len());
    let s = GraphTensors::new(&g, ni, li, Aggregation::Sparse, &Device::Cpu).unwrap();
    let d = GraphTensors::new(&g, ni, li, Aggregation::Dense, &Device::Cpu).unwrap();
    let a = s.mean_neighbours(&s.node_x).unwrap();
    let b = d.mean_neighbours(&d.node_x).unwrap();
    assert_eq!(a.dims(), &[40, ni + li]);
    let diff: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn gathered_inference_equals_index_add() {
    let g = scale_free_sample(200, 5);
    let (ni, li) = (NODE_FEATURES.len(), LINK_FEATURES.len());
    let config = super::sage::SageConfig {
        node_in: ni,
        link_in: li,
        hidden: 16,
        node_classes: Class::NODE.len(),
        link_classes: Class::LINK.len(),
        message_passing: true,
    };
    let (sage, _vars) = super::sage::Sage::init(config, &Device::Cpu).expect("model");
    let s = GraphTensors::new(&g, ni, li, Aggregation::Sparse, &Device::Cpu).unwrap();
    let a = GraphTensors::new(&g, ni, li, Aggregation::Auto, &Device::Cpu).unwrap();
    let (sn, sl) = sage.probabilities(&s).unwrap();
    let (an, al) = sage.probabilities(&a).unwrap();
    assert_eq!((sn.len(), sl.len()), (an.len(), al.len()));
    let diff = sn
        .iter()
        .zip(&an)
        .chain(sl.iter().zip(&al))
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "max difference {diff}");
}

fn spec(fault: Option<(Class, f32)>, seed: u64) -> ScenarioSpec {
    ScenarioSpec {
        family: Family::Grid,
        nodes: 16,
        windows: 24,
        seed,
        fault,
        window_ms: 10_000,
    }
}

#[test]
fn generator_is_deterministic_per_seed() {
    let a = generate(&spec(Some((Class::GrayLink, 0.5)), 7));
    let b = generate(&spec(Some((Class::GrayLink, 0.5)), 7));
    let c = generate(&spec(Some((Class::GrayLink, 0.5)), 8));
    assert_eq!(a, b);
    assert_ne!(a.windows, c.windows);
    // Ground truth covers exactly the fault's windows.
    let f = &a.header.faults[0];
    for w in &a.windows {
        let faulty = (f.start..f.end).contains(&w.window);
        assert_eq!(w.label(f.element) == Class::GrayLink, faulty);
    }
}

#[test]
fn every_class_and_family_generates_a_consistent_trace() {
    for (k, family) in [
        Family::Grid,
        Family::Ring,
        Family::Geometric,
        Family::ScaleFree,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, class) in Class::ANOMALIES.into_iter().enumerate() {
            let t = generate(&ScenarioSpec {
                family,
                nodes: 12 + k * 5,
                windows: 20,
                seed: (k * 10 + j) as u64,
                fault: Some((class, 0.7)),
                window_ms: 10_000,
            });
            let f = &t.header.faults[0];
            assert_eq!(f.class, class);
            assert_eq!(matches!(f.element, Element::Link(_)), class.is_link());
            // Packets are conserved: what a node receives is delivered, forwarded or lost.
            for w in &t.windows {
                let rx: u64 = w.nodes.iter().map(|n| n.rx_pkts).sum();
                let link_rx: u64 = w.links.iter().map(|l| l.rx_pkts).sum();
                assert!(
                    rx.abs_diff(link_rx) <= w.nodes.len() as u64,
                    "{family:?} {class:?}"
                );
            }
        }
    }
}

#[test]
fn trace_round_trips_and_the_fixture_still_parses_as_generated() {
    let t = generate(&spec(Some((Class::LinkDown, 0.5)), 1));
    let mut buf = Vec::new();
    t.write(&mut buf).unwrap();
    assert_eq!(Trace::read(&buf[..]).unwrap(), t);
    let fixture = include_str!("fixtures/ring8_gray.jsonl");
    let parsed = Trace::read(fixture.as_bytes()).unwrap();
    assert_eq!(parsed, generate(&fixture_spec()));
}

pub(super) fn fixture_spec() -> ScenarioSpec {
    ScenarioSpec {
        family: Family::Ring,
        nodes: 8,
        windows: 12,
        seed: 5,
        fault: Some((Class::GrayLink, 0.6)),
        window_ms: 10_000,
    }
}

#[test]
fn features_of_a_hand_made_snapshot() {
    let topo = Topology {
        kind: "test".into(),
        nodes: vec!["a".into(), "b".into()],
        links: vec![(0, 1)],
    };
    let node = NodeTelemetry {
        rx_pkts: 1000,
        rx_bytes: 500_000,
        tx_pkts: 400,
        tx_bytes: 40_000,
        fwd_pkts: 300,
        local_pkts: 100,
        dropped_pkts: 0,
        flows_in: 3,
        flows_out: 7,
    };
    let link = LinkTelemetry {
        tx_pkts: 980,
        rx_pkts: 882,
        bytes: 1,
        probes_sent: 50,
        probes_lost: 5,
        rtt_ms: 4.0,
        jitter_ms: 1.0,
    };
    let snap = Snapshot {
        window: 0,
        nodes: vec![node.clone(), NodeTelemetry::default()],
        links: vec![link.clone()],
        labels: vec![],
    };
    let mut st = FeatureState::new(FeatureSpec::default());
    let f = st.update(&topo, &snap);
    let n = |name: &str| f.node[NODE_FEATURES.iter().position(|x| *x == name).unwrap()];
    let l = |name: &str| f.link[LINK_FEATURES.iter().position(|x| *x == name).unwrap()];
    assert!((n("ln_rx_pkts") - 1001f32.ln()).abs() < 1e-5);
    // 1000 received, 100 delivered, 300 forwarded, 0 dropped: 600 unaccounted.
    assert!((n("unaccounted_ratio") - 600.0 / 1010.0).abs() < 1e-6);
    assert!((n("ln_flows_out") - 8f32.ln()).abs() < 1e-6);
    assert!((n("ln_rx_pkt_size") - 501f32.ln() / 7.0).abs() < 1e-6);
    assert!((l("loss_ratio") - 98.0 / 1000.0).abs() < 1e-6);
    assert!((l("probe_loss") - 0.1).abs() < 1e-6);
    assert_eq!(l("down"), 0.0);
    assert_eq!(n("z_rx_pkts"), 0.0, "no history yet");
    // Ten steady windows, then RTT jumps: its z-score is large and positive.
    for _ in 0..10 {
        st.update(&topo, &snap);
    }
    let mut jump = snap.clone();
    jump.links[0].rtt_ms = 40.0;
    let f = st.update(&topo, &jump);
    let z = f.link[LINK_FEATURES.iter().position(|x| *x == "z_rtt").unwrap()] * 4.0;
    assert!(z > 5.0, "z_rtt {z}");
    // A down link counts as down and as a state change.
    let mut down = snap.clone();
    down.links[0].probes_lost = 50;
    let f = st.update(&topo, &down);
    assert_eq!(
        f.link[LINK_FEATURES.iter().position(|x| *x == "down").unwrap()],
        1.0
    );
    assert!(f.link[LINK_FEATURES.len() - 1] > 0.0);
}

fn tiny_data(seeds: std::ops::Range<u64>) -> (Vec<Trace>, Vec<GraphSample>) {
    let classes = [
        Class::LinkDown,
        Class::GrayLink,
        Class::DdosVictim,
        Class::Blackhole,
    ];
    let traces: Vec<Trace> = seeds
        .map(|s| generate(&spec(Some((classes[s as usize % 4], 0.8)), s)))
        .collect();
    let spec = FeatureSpec::default();
    let data = traces.iter().flat_map(|t| samples(t, &spec)).collect();
    (traces, data)
}

fn quick_train(data: &[GraphSample], steps: usize) -> (Model, Vec<f32>) {
    let cfg = TrainConfig {
        steps,
        batch: 4,
        hidden: 16,
        lr: 1e-2,
        ..TrainConfig::default()
    };
    train(data, &cfg, &mut |_, _| {}).expect("train")
}

#[test]
fn training_reduces_loss_and_beats_chance_on_held_out_scenarios() {
    let (_, data) = tiny_data(0..8);
    let (model, losses) = quick_train(&data, 80);
    let head: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let tail: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    assert!(tail < 0.7 * head, "loss {head} -> {tail}");
    // Held-out scenarios: the faulty element outranks a random one far more often than
    // chance (average precision of the anomaly score vs the share of anomalous elements).
    let (_, test) = tiny_data(100..108);
    let mut pts: Vec<(f32, bool)> = Vec::new();
    for g in &test {
        let (np, lp) = model.probabilities(g.clone(), Aggregation::Auto).unwrap();
        for (i, y) in g.node_y.iter().enumerate() {
            pts.push((1.0 - np[i * Class::NODE.len()], *y != 0));
        }
        for (i, y) in g.link_y.iter().enumerate() {
            pts.push((1.0 - lp[i * Class::LINK.len()], *y != 0));
        }
    }
    let prevalence = pts.iter().filter(|p| p.1).count() as f32 / pts.len() as f32;
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut ap) = (0.0f32, 0.0f32);
    for (k, p) in pts.iter().enumerate() {
        if p.1 {
            tp += 1.0;
            ap += tp / (k + 1) as f32;
        }
    }
    let ap = ap / tp.max(1.0);
    assert!(
        ap > 5.0 * prevalence,
        "average precision {ap} vs chance {prevalence}"
    );
}

#[test]
fn safetensors_round_trip_gives_identical_outputs() {
    let (_, data) = tiny_data(0..2);
    let (mut model, _) = quick_train(&data, 5);
    model.meta.thresholds[Class::GrayLink as usize] = 0.37;
    let loaded = Model::from_parts(&model.weights().unwrap(), &model.meta_json().unwrap()).unwrap();
    assert_eq!(loaded.meta, model.meta);
    for g in &data[..3] {
        assert_eq!(
            model.probabilities(g.clone(), Aggregation::Sparse).unwrap(),
            loaded
                .probabilities(g.clone(), Aggregation::Sparse)
                .unwrap()
        );
    }
}

#[test]
fn weights_missing_a_variable_are_refused() {
    let (_, data) = tiny_data(0..2);
    let (model, _) = quick_train(&data, 1);
    let empty = safetensors::serialize(Vec::<(String, candle_core::Tensor)>::new(), None).unwrap();
    assert!(matches!(
        Model::from_parts(&empty, &model.meta_json().unwrap()),
        Err(crate::DetectError::Model(_))
    ));
}

fn findings(det: &mut FeatureDetector, t: &Trace) -> Vec<(u32, Element, Class)> {
    let mut out = Vec::new();
    for w in &t.windows {
        for f in det.analyze(&t.header.topology, w).unwrap() {
            out.push((w.window, f.element, f.class));
        }
    }
    out
}

#[test]
fn baselines_fire_on_an_obvious_fault_and_not_on_a_fault_free_run() {
    let gray = generate(&spec(Some((Class::GrayLink, 1.0)), 11));
    let down = generate(&spec(Some((Class::LinkDown, 1.0)), 12));
    let clean = generate(&spec(None, 13));
    let mut th = [f32::MAX; CLASSES];
    th[Class::LinkDown as usize] = 0.5;
    th[Class::GrayLink as usize] = 0.05;
    let mut stat = FeatureDetector::new("static", Scorer::Rule(Rule::Static), th);
    let mut ewma_th = [f32::MAX; CLASSES];
    ewma_th[Class::LinkDown as usize] = 0.5;
    ewma_th[Class::GrayLink as usize] = 1.5;
    let mut ewma = FeatureDetector::new("ewma", Scorer::Rule(Rule::Ewma), ewma_th);
    for det in [&mut stat, &mut ewma] {
        for t in [&gray, &down] {
            det.reset();
            let f = &t.header.faults[0];
            let got = findings(det, t);
            assert!(
                got.iter()
                    .any(|&(w, e, c)| e == f.element && c == f.class && w >= f.start),
                "{} missed {:?}",
                det.name(),
                f
            );
            assert!(
                got.iter()
                    .all(|&(w, e, _)| e == f.element && (f.start..f.end).contains(&w)),
                "{} false alarm: {got:?}",
                det.name()
            );
        }
        det.reset();
        assert_eq!(findings(det, &clean), vec![], "{}", det.name());
    }
}

#[test]
fn evaluation_statistics_on_hand_made_values() {
    use super::eval::{
        interval,
        statistics::{average_precision, percentile},
    };
    // Ranking [+, -, +]: precision 1 at the first positive, 2/3 at the second.
    let ap = average_precision(vec![(0.9, true), (0.5, false), (0.4, true)]);
    assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    // Mean 3, sample sd sqrt(2.5), five values: t(0.975, 4) = 2.776.
    let i = interval(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    assert!((i.mean - 3.0).abs() < 1e-12);
    assert!((i.ci95 - 2.776 * (2.5f64 / 5.0).sqrt()).abs() < 1e-9);
    assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    // A missed detection (infinite latency) in the tail leaves no finite p95.
    assert_eq!(percentile(&[0.0, 1.0, f64::INFINITY], 0.95), None);
}

#[test]
fn a_trained_detector_reports_the_faulty_link_with_a_reason() {
    let (_, data) = tiny_data(0..8);
    let (model, _) = quick_train(&data, 80);
    let mut det = FeatureDetector::from_model(model);
    let t = generate(&spec(Some((Class::LinkDown, 1.0)), 21));
    let f = &t.header.faults[0];
    let mut hits = 0;
    for w in &t.windows {
        let found = det.analyze(&t.header.topology, w).unwrap();
        if (f.start..f.end).contains(&w.window)
            && found.first().is_some_and(|x| x.element == f.element)
        {
            hits += 1;
            assert!(
                found[0].reason.starts_with("graphsage: "),
                "{}",
                found[0].reason
            );
        }
    }
    assert!(
        hits * 2 > (f.end - f.start),
        "top finding on the down link in {hits} windows"
    );
}

#[test]
fn a_real_graph_keeps_its_largest_component_without_loops_or_repeats() {
    use super::scenario::{ScenarioSpec, generate_on, real_topology};
    let names: Vec<String> = ["a", "b", "c", "d", "x", "y"].map(String::from).to_vec();
    // a-b-c-d ring with a repeat and a self-loop; x-y apart; one edge out of range.
    let links = [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 0),
        (1, 0),
        (2, 2),
        (4, 5),
        (0, 9),
    ];
    let t = real_topology("zoo:test", &names, &links).expect("a graph");
    assert_eq!(t.nodes, ["a", "b", "c", "d"]);
    assert_eq!(t.links, [(0, 1), (0, 3), (1, 2), (2, 3)]);
    assert!(real_topology("zoo:tiny", &names[..2], &[(0, 1)]).is_none());
    // A scenario runs on it with its ground truth.
    let tr = generate_on(
        &ScenarioSpec {
            family: super::scenario::Family::ScaleFree,
            nodes: 0,
            windows: 20,
            seed: 3,
            fault: Some((Class::Blackhole, 0.8)),
            window_ms: 10_000,
        },
        t.clone(),
    );
    assert_eq!(tr.header.topology, t);
    assert!(tr.windows.iter().any(|w| !w.labels.is_empty()));
}
