//! Knowledge: what the agent knows and remembers: neighbours and their links, the LSDB,
//! the routes it computed, what is installed, and the history of its actions.

use std::{collections::VecDeque, net::SocketAddrV6};

use super::execute::Installed;
pub use crate::api::Action;
use crate::{
    api,
    config::MacAddr,
    probe::quality::{LinkState, Quality},
    routing::{Lsdb, Routes},
};

/// Actions remembered for `meshctl events`.
const HISTORY: usize = 512;

/// A neighbour heard on one of our interfaces.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub node: String,
    pub iface: String,
    pub ifindex: u32,
    /// The interface's `LINKS` slot and MAC (ours).
    pub iface_slot: u32,
    pub local_mac: [u8; 6],
    pub mac: MacAddr,
    /// Where its control messages come from.
    pub addr: SocketAddrV6,
    /// Its `PROBE_PEERS` / `NEIGHBOR_TX` slot.
    pub slot: u32,
    pub last_hello_ns: u64,
    /// It lists us in its hellos.
    pub two_way: bool,
    pub quality: Quality,
}

impl Neighbor {
    /// Routing may use this link: two-way, answering probes, past any hold-down.
    pub fn adjacent(&self) -> bool {
        self.two_way && self.quality.state == LinkState::Up && self.quality.cost.is_some()
    }
}

/// The agent's knowledge base.
pub struct Knowledge {
    pub lsdb: Lsdb,
    pub neighbors: Vec<Neighbor>,
    pub routes: Routes,
    pub installed: Installed,
    pub history: VecDeque<Action>,
    /// Where actions go to `meshctl monitor` clients as they happen.
    pub monitor: Option<tokio::sync::broadcast::Sender<api::Monitored>>,
    /// Slots by (ifindex, MAC); never reused while the agent runs.
    pub slots: Vec<((u32, [u8; 6]), u32)>,
    pub next_slot: u32,
    pub spf_runs: u64,
}

impl Knowledge {
    pub fn new(lsdb: Lsdb, installed: Installed, first_slot: u32) -> Self {
        Self {
            lsdb,
            neighbors: Vec::new(),
            routes: Routes::default(),
            installed,
            history: VecDeque::new(),
            monitor: None,
            slots: Vec::new(),
            next_slot: first_slot,
            spf_runs: 0,
        }
    }

    /// The probe slot for a neighbour at (ifindex, mac): the one it had, or a new one.
    pub fn slot_for(&mut self, ifindex: u32, mac: [u8; 6]) -> u32 {
        if let Some((_, s)) = self.slots.iter().find(|(k, _)| *k == (ifindex, mac)) {
            return *s;
        }
        let s = self.next_slot;
        self.next_slot += 1;
        self.slots.push(((ifindex, mac), s));
        s
    }

    /// Records an action and prints it as an event line.
    pub fn act(&mut self, stage: &'static str, kind: &str, detail: String, reason: String) {
        let action = Action {
            at: super::unix_now(),
            mono_ns: super::monotonic_ns().unwrap_or(0),
            stage: stage.to_owned(),
            kind: kind.to_owned(),
            detail,
            reason,
        };
        metrics::counter!("x0tta6bl4_actions_total", "kind" => kind.to_owned()).increment(1);
        crate::event!(
            INFO,
            "action",
            stage = stage,
            kind = kind,
            detail = action.detail.as_str(),
            reason = action.reason.as_str(),
            mono_ns = action.mono_ns
        );
        if let Some(tx) = &self.monitor {
            // No client following is no error.
            let _none = tx.send(api::Monitored::Action(action.clone()));
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(action);
    }

    /// The views `meshctl` shows.
    pub fn neighbors_view(&self) -> api::Neighbors {
        let neighbors = self
            .neighbors
            .iter()
            .map(|n| api::Neighbor {
                node: n.node.clone(),
                interface: n.iface.clone(),
                mac: n.mac.to_string(),
                slot: n.slot,
                two_way: n.two_way,
                state: n.quality.state,
                adjacent: n.adjacent(),
                cost: n.quality.cost,
                loss: n.quality.loss,
                rtt_ms: n.quality.rtt_ms,
                jitter_ms: n.quality.jitter_ms,
                probes_sent: n.quality.sent,
                probe_replies: n.quality.replies,
                probe_requests: n.quality.requests,
                max_gap_ms: n.quality.max_gap_ms,
                dead_gaps: n.quality.dead_gaps,
            })
            .collect();
        api::Neighbors { neighbors }
    }

    pub fn lsdb_view(&self, now_ms: u64) -> api::Lsdb {
        let adverts = self
            .lsdb
            .iter(now_ms)
            .map(|(l, age)| api::Advert {
                origin: l.origin.clone(),
                seq: l.seq,
                age_ms: age,
                links: l.links.clone(),
                prefixes: l.prefixes.clone(),
            })
            .collect();
        api::Lsdb { adverts }
    }

    pub fn routes_view(&self) -> api::RouteTable {
        api::RouteTable {
            routes: self.routes.prefixes.clone(),
            installed_v4: self.installed.v4.len(),
            installed_v6: self.installed.v6.len(),
            groups: self.installed.groups.len(),
        }
    }

    pub fn events_view(&self) -> api::Events {
        api::Events {
            events: self.history.iter().rev().cloned().collect(),
        }
    }
}
