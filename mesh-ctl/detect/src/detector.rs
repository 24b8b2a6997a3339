//! The interface the agent's Analyze stage calls once per cycle: the current snapshot in,
//! findings out. Every detector keeps its own per-element history, so feed it every cycle.

use serde::{Deserialize, Serialize};

use super::{
    DetectError,
    baseline::{Rule, rule_scores},
    features::{FeatureSpec, FeatureState, Features, GraphSample, LINK_FEATURES, NODE_FEATURES},
    sage::Aggregation,
    trace::{Class, Element, Snapshot, Topology},
    train::Model,
};
// The score types are part of the `Detector` interface; they live in `scores` so that the
// baseline rules can produce them without depending on this module.
pub use super::scores::{CLASSES, Scores, best_class, relative_score};

/// The model kind the agent should run, chosen by the bench table (README, "Anomaly
/// detection"): macro-F1 within noise of the MLP's, several times fewer false alarms.
pub const DEFAULT_MODEL: &str = "graphsage";

/// One anomaly report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub element: Element,
    pub class: Class,
    /// Score relative to the class threshold: 1.0 is at the threshold, higher is surer.
    pub score: f32,
    pub reason: String,
}

/// What the Analyze stage calls.
pub trait Detector {
    /// Short name for tables and reasons.
    fn name(&self) -> &str;
    /// Per-class scores of every element for this cycle; advances the history.
    fn scores(&mut self, topo: &Topology, snap: &Snapshot) -> Result<Scores, DetectError>;
    /// Per-class thresholds (indexed by `Class as usize`).
    fn thresholds(&self) -> &[f32; CLASSES];
    /// The last cycle's features (for reasons).
    fn last_features(&self) -> Option<&Features>;

    /// Findings for this cycle: every element with a class score at or above its threshold,
    /// strongest first.
    fn analyze(&mut self, topo: &Topology, snap: &Snapshot) -> Result<Vec<Finding>, DetectError> {
        let s = self.scores(topo, snap)?;
        Ok(self.findings(&s))
    }

    /// Findings in scores this detector made, strongest first.
    fn findings(&self, s: &Scores) -> Vec<Finding> {
        let th = *self.thresholds();
        let mut out = Vec::new();
        let name = self.name().to_string();
        let feats = self.last_features();
        for (kind, rows) in [(false, &s.node), (true, &s.link)] {
            for (i, row) in rows.iter().enumerate() {
                let Some((class, score)) = best_class(row, &th, s.probabilities) else {
                    continue;
                };
                let element = if kind {
                    Element::Link(i as u32)
                } else {
                    Element::Node(i as u32)
                };
                out.push(Finding {
                    element,
                    class,
                    score,
                    reason: reason(&name, class, row[class as usize], feats, element),
                });
            }
        }
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }
}

fn reason(name: &str, class: Class, raw: f32, f: Option<&Features>, e: Element) -> String {
    // Name the two features furthest from the element's own history.
    let (names, row): (&[&str], &[f32]) = match (f, e) {
        (Some(f), Element::Node(i)) => {
            let w = NODE_FEATURES.len();
            (
                &NODE_FEATURES,
                &f.node[i as usize * w..(i as usize + 1) * w],
            )
        }
        (Some(f), Element::Link(i)) => {
            let w = LINK_FEATURES.len();
            (
                &LINK_FEATURES,
                &f.link[i as usize * w..(i as usize + 1) * w],
            )
        }
        (None, _) => (&[], &[]),
    };
    let mut z: Vec<(usize, f32)> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.starts_with("z_"))
        .map(|(k, _)| (k, row[k]))
        .collect();
    z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let top: Vec<String> = z
        .iter()
        .take(2)
        .map(|(k, v)| format!("{}={:.1}", names[*k], v * 4.0))
        .collect();
    format!("{name}: {} score {raw:.3}; {}", class.name(), top.join(" "))
}

/// What a detector scores with.
pub enum Scorer {
    /// A trained network (GraphSAGE or the MLP baseline).
    Model(Box<Model>, Aggregation),
    /// A hand-written rule on the features.
    Rule(Rule),
}

/// A detector over the shared features.
pub struct FeatureDetector {
    name: String,
    scorer: Scorer,
    state: FeatureState,
    thresholds: [f32; CLASSES],
    last: Option<Features>,
}

impl FeatureDetector {
    pub fn new(name: &str, scorer: Scorer, thresholds: [f32; CLASSES]) -> Self {
        FeatureDetector {
            name: name.into(),
            scorer,
            state: FeatureState::new(FeatureSpec::default()),
            thresholds,
            last: None,
        }
    }

    /// A saved model as a detector, with the thresholds saved beside it.
    pub fn from_model(model: Model) -> Self {
        let mut th = [0.5f32; CLASSES];
        for (t, v) in th.iter_mut().zip(&model.meta.thresholds) {
            *t = *v;
        }
        let name = model.meta.kind.clone();
        FeatureDetector::new(&name, Scorer::Model(Box::new(model), Aggregation::Auto), th)
    }

    pub fn set_thresholds(&mut self, th: [f32; CLASSES]) {
        self.thresholds = th;
    }

    /// Forgets every element's history (a new run).
    pub fn reset(&mut self) {
        self.state = FeatureState::new(FeatureSpec::default());
        self.last = None;
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    pub fn into_scorer(self) -> Scorer {
        self.scorer
    }
}

/// Model probabilities spread into per-class columns.
pub fn model_scores(
    model: &Model,
    topo: &Topology,
    f: &Features,
    agg: Aggregation,
) -> Result<Scores, DetectError> {
    let g = GraphSample::new(topo, f, None);
    let (np, lp) = model.probabilities(g, agg)?;
    Ok(spread(&np, &lp))
}

/// Head-ordered probabilities to `Class`-indexed rows.
pub fn spread(np: &[f32], lp: &[f32]) -> Scores {
    let (kn, kl) = (Class::NODE.len(), Class::LINK.len());
    let row = |p: &[f32], classes: &[Class]| {
        let mut r = [0f32; CLASSES];
        for (c, v) in classes.iter().zip(p) {
            r[*c as usize] = *v;
        }
        r
    };
    Scores {
        node: np.chunks(kn).map(|p| row(p, &Class::NODE)).collect(),
        link: lp.chunks(kl).map(|p| row(p, &Class::LINK)).collect(),
        probabilities: true,
    }
}

impl Detector for FeatureDetector {
    fn name(&self) -> &str {
        &self.name
    }

    fn scores(&mut self, topo: &Topology, snap: &Snapshot) -> Result<Scores, DetectError> {
        let f = self.state.update(topo, snap);
        let s = match &self.scorer {
            Scorer::Model(m, agg) => model_scores(m, topo, &f, *agg)?,
            Scorer::Rule(r) => rule_scores(*r, topo, snap, &f),
        };
        self.last = Some(f);
        Ok(s)
    }

    fn thresholds(&self) -> &[f32; CLASSES] {
        &self.thresholds
    }

    fn last_features(&self) -> Option<&Features> {
        self.last.as_ref()
    }
}
