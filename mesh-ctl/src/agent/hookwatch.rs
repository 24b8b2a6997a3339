//! Hooks changing under us: another datapath's agent (Cilium's, say) attaching at the
//! head of a TCX chain after we did, or our program gone from one. Our XDP links cannot be
//! replaced by a netlink attach; TCX chains can be reordered by anyone attaching with
//! `BPF_F_BEFORE`, and a program before ours that ends the chain hides every frame from
//! us. Each change is reported once; while it lasts, the agent is degraded.

use std::collections::BTreeMap;

/// One TCX chain of one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Chain {
    pub iface: String,
    /// `ingress` (where we forward) or `egress` (telemetry).
    pub direction: &'static str,
}

/// What is wrong with one chain now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// Our program is no longer in the chain.
    Gone,
    /// Programs run before ours (their names), ours expected first.
    NotFirst(Vec<String>),
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Gone => write!(f, "our program is no longer attached"),
            Trouble::NotFirst(before) => write!(
                f,
                "{} now run(s) before ours: frames they end never reach us",
                before.join(", ")
            ),
        }
    }
}

/// The last trouble seen per chain, so that a change is reported once.
#[derive(Debug, Default)]
pub struct HookWatch {
    seen: BTreeMap<Chain, Option<Trouble>>,
}

/// A change to report: the chain, and its trouble (None: back to normal).
pub type Change = (Chain, Option<Trouble>);

/// One chain as found: the programs (id, name) in the order they run, our program's id
/// there, and whether ours should lead.
pub struct Found {
    pub chain: Chain,
    pub programs: Vec<(u32, String)>,
    pub ours: u32,
    pub first: bool,
}

impl HookWatch {
    /// Judges each chain found; returns what changed since the last call.
    pub fn check(&mut self, chains: Vec<Found>) -> Vec<Change> {
        let mut changes = Vec::new();
        for Found {
            chain,
            programs,
            ours,
            first,
        } in chains
        {
            let at = programs.iter().position(|(id, _)| *id == ours);
            let trouble = match at {
                None => Some(Trouble::Gone),
                Some(i) if first && i > 0 => Some(Trouble::NotFirst(
                    programs[..i].iter().map(|(_, n)| n.clone()).collect(),
                )),
                Some(_) => None,
            };
            let before = self.seen.insert(chain.clone(), trouble.clone());
            if before.flatten() != trouble {
                changes.push((chain, trouble));
            }
        }
        changes
    }

    /// What is wrong now, for the health check.
    pub fn troubles(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|(c, t)| {
                t.as_ref()
                    .map(|t| format!("TCX {} on {}: {t}", c.direction, c.iface))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(dir: &'static str) -> Chain {
        Chain {
            iface: "eth1".into(),
            direction: dir,
        }
    }

    fn found(dir: &'static str, programs: Vec<(u32, String)>, ours: u32, first: bool) -> Found {
        Found {
            chain: chain(dir),
            programs,
            ours,
            first,
        }
    }

    fn progs(list: &[(u32, &str)]) -> Vec<(u32, String)> {
        list.iter().map(|(i, n)| (*i, (*n).to_owned())).collect()
    }

    #[test]
    fn a_program_jumping_ahead_of_ours_is_reported_once_and_its_retreat_too() {
        let mut w = HookWatch::default();
        let ok = progs(&[(7, "mesh_tc_ingress"), (3, "cil_from_netdev")]);
        assert!(
            w.check(vec![found("ingress", ok.clone(), 7, true)])
                .is_empty()
        );
        let ahead = progs(&[(9, "cil_from_netdev"), (7, "mesh_tc_ingress")]);
        let changes = w.check(vec![found("ingress", ahead.clone(), 7, true)]);
        assert_eq!(
            changes,
            [(
                chain("ingress"),
                Some(Trouble::NotFirst(vec!["cil_from_netdev".into()]))
            )]
        );
        assert!(
            w.check(vec![found("ingress", ahead, 7, true)]).is_empty(),
            "once"
        );
        assert_eq!(w.troubles().len(), 1);
        let changes = w.check(vec![found("ingress", ok, 7, true)]);
        assert_eq!(changes, [(chain("ingress"), None)]);
        assert!(w.troubles().is_empty());
    }

    #[test]
    fn ours_gone_is_trouble_and_last_place_is_fine_where_first_is_not_asked() {
        let mut w = HookWatch::default();
        let theirs = progs(&[(3, "cil_to_netdev")]);
        let changes = w.check(vec![found("egress", theirs, 5, false)]);
        assert_eq!(changes, [(chain("egress"), Some(Trouble::Gone))]);
        let last = progs(&[(3, "cil_to_netdev"), (5, "mesh_tc_egress")]);
        assert_eq!(
            w.check(vec![found("egress", last, 5, false)]),
            [(chain("egress"), None)]
        );
    }
}
