//! Analyze: turns observations into findings with reasons. Thresholds for now (silence,
//! loss, RTT through the link cost, hello timeouts); the anomaly detector plugs in here.

use super::{
    knowledge::Knowledge,
    monitor::{HelloOutcome, LinkChange},
};
use crate::probe::quality::{Change, LinkState};

/// Something routing must react to.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
    pub reason: String,
}

/// Findings from link quality changes.
pub fn links(changes: &[LinkChange]) -> Vec<Finding> {
    changes
        .iter()
        .filter_map(|c| {
            let detail = format!("{} via {}", c.node, c.iface);
            match &c.change {
                Change::None => None,
                Change::Up => Some(Finding {
                    kind: "link_up",
                    detail,
                    reason: "probes answered (past the hold-down)".to_owned(),
                }),
                Change::Down { silent_ms } => Some(Finding {
                    kind: "link_down",
                    detail,
                    reason: format!("no probe reply or request for {silent_ms:.1} ms"),
                }),
                Change::Cost { from, to } => Some(Finding {
                    kind: "link_cost",
                    detail: format!("{detail}: {from} -> {to}"),
                    reason: "loss or RTT changed beyond the hysteresis".to_owned(),
                }),
            }
        })
        .collect()
}

/// A finding from a hello, if it matters.
pub fn hello(node: &str, iface: &str, outcome: &HelloOutcome) -> Option<Finding> {
    let detail = format!("{node} via {iface}");
    match outcome {
        HelloOutcome::Nothing => None,
        HelloOutcome::Restarted => Some(Finding {
            kind: "neighbor_restarted",
            detail,
            reason: "its agent restarted while its data plane kept forwarding".to_owned(),
        }),
        HelloOutcome::New { .. } => Some(Finding {
            kind: "neighbor_found",
            detail,
            reason: "first hello heard; probing starts".to_owned(),
        }),
        HelloOutcome::TwoWay(true) => Some(Finding {
            kind: "two_way",
            detail,
            reason: "it hears us too".to_owned(),
        }),
        HelloOutcome::TwoWay(false) => Some(Finding {
            kind: "one_way",
            detail,
            reason: "it no longer lists us in its hellos".to_owned(),
        }),
    }
}

/// Neighbours unheard for longer than `dead_ns`: removed from knowledge, one finding each.
/// One whose data plane still answers probes is an agent restarting and gets `grace_ns`.
pub fn hello_timeouts(k: &mut Knowledge, now_ns: u64, dead_ns: u64, grace_ns: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    k.neighbors.retain(|n| {
        let unheard = now_ns.saturating_sub(n.last_hello_ns);
        let limit = if n.quality.state == LinkState::Up {
            grace_ns
        } else {
            dead_ns
        };
        let alive = unheard <= limit;
        if !alive {
            out.push(Finding {
                kind: "neighbor_lost",
                detail: format!("{} via {}", n.node, n.iface),
                reason: format!("no hello for {} ms", limit / 1_000_000),
            });
        }
        alive
    });
    out
}
