//! Baselines on the same features: static thresholds on the raw values and per-element EWMA
//! z-scores, one rule per class. (The third baseline, the MLP without message passing, is
//! `Sage` with `message_passing = false`.) Thresholds on the scores are picked on validation
//! scenarios like the models'. Neither rule has a flapping case: like the networks, they
//! never see that class before the test.

use serde::{Deserialize, Serialize};

use super::{
    features::{Features, LINK_FEATURES, NODE_FEATURES},
    scores::{CLASSES, Scores},
    trace::{Class, Snapshot, Topology},
};

/// Which rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Fixed levels of the raw values: loss, RTT, unaccounted transit, fan-in, fan-out.
    Static,
    /// How far each value is from the element's own EWMA history.
    Ewma,
}

fn col(names: &[&str], name: &str) -> usize {
    names.iter().position(|n| *n == name).unwrap_or(0)
}

/// Per-class scores by the rule.
pub fn rule_scores(rule: Rule, topo: &Topology, snap: &Snapshot, f: &Features) -> Scores {
    let (wn, wl) = (NODE_FEATURES.len(), LINK_FEATURES.len());
    let n = |name| col(&NODE_FEATURES, name);
    let l = |name| col(&LINK_FEATURES, name);
    let mut s = Scores {
        node: vec![[0.0; CLASSES]; topo.nodes.len()],
        link: vec![[0.0; CLASSES]; topo.links.len()],
        probabilities: false,
    };
    for (i, row) in s.link.iter_mut().enumerate() {
        let x = &f.link[i * wl..(i + 1) * wl];
        let down = x[l("down")];
        row[Class::LinkDown as usize] = down;
        match rule {
            Rule::Static => {
                row[Class::GrayLink as usize] =
                    (1.0 - down) * x[l("loss_ratio")].max(x[l("probe_loss")]);
                row[Class::Congested as usize] = (1.0 - down) * snap.links[i].rtt_ms;
            }
            Rule::Ewma => {
                row[Class::GrayLink as usize] =
                    (1.0 - down) * x[l("z_loss")].max(x[l("z_probe_loss")]).max(0.0);
                row[Class::Congested as usize] =
                    (1.0 - down) * x[l("z_rtt")].max(x[l("z_jitter")]).max(0.0);
            }
        }
    }
    for (i, row) in s.node.iter_mut().enumerate() {
        let x = &f.node[i * wn..(i + 1) * wn];
        let t = &snap.nodes[i];
        match rule {
            Rule::Static => {
                row[Class::Blackhole as usize] = x[n("unaccounted_ratio")];
                row[Class::DdosVictim as usize] = t.flows_in as f32;
                row[Class::Scanner as usize] = t.flows_out as f32;
            }
            Rule::Ewma => {
                row[Class::Blackhole as usize] = x[n("z_unaccounted")].max(0.0);
                row[Class::DdosVictim as usize] = x[n("z_flows_in")].max(0.0);
                row[Class::Scanner as usize] = x[n("z_flows_out")].max(0.0);
            }
        }
    }
    s
}
