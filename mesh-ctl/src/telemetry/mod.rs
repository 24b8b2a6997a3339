//! From raw map reads to what people and Prometheus see: deltas and rates per interval,
//! idle-flow ageing, the top-K flows, recent events. Pure: no kernel access; the clock and
//! the counters come in as arguments, so it runs in unit tests and benchmarks alike.

pub mod events;
pub mod metrics;
mod view;

use std::collections::HashMap;

use mesh_common::{
    Reason,
    telemetry::{FlowKey, LinkStats, NeighborKey, NeighborStats, counter},
};

pub use self::view::{
    DropView, EventView, FlowTableView, FlowView, LinkView, NeighborView, Snapshot, SortKey,
    flow_view,
};
use crate::dataplane::FlowRecord;

/// A mesh interface as telemetry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkName {
    pub name: String,
    pub ifindex: u32,
}

/// The name of the mesh interface `ifindex`, or `if<N>` for one we do not know.
pub fn link_name(links: &[LinkName], ifindex: u32) -> String {
    links
        .iter()
        .find(|l| l.ifindex == ifindex)
        .map_or_else(|| format!("if{ifindex}"), |l| l.name.clone())
}

/// Everything one interval read from the data plane.
pub struct Reading<'a> {
    /// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` uses.
    pub now_ns: u64,
    pub flows: &'a [FlowRecord],
    pub flow_capacity: u32,
    /// Per-interface counters by slot.
    pub links: &'a [LinkStats],
    pub neighbors: &'a [(NeighborKey, NeighborStats)],
    pub reasons: &'a [(Reason, u64)],
    pub counters: [u64; counter::COUNT as usize],
    /// How long reading the maps took.
    pub read_ns: u64,
}

/// What the tracker wants done after an interval.
#[derive(Debug, Default)]
pub struct Decision {
    /// Flows idle past the timeout: remove them from the table.
    pub expire: Vec<FlowKey>,
}

/// The agent's memory of the previous interval.
pub struct Tracker {
    links: Vec<LinkName>,
    idle_timeout_ns: u64,
    top_k: usize,
    prev_ns: Option<u64>,
    prev_flows: HashMap<FlowKey, (u64, u64)>,
    prev_links: Vec<LinkStats>,
    prev_reasons: Vec<u64>,
    expired_total: u64,
}

impl Tracker {
    pub fn new(links: Vec<LinkName>, idle_timeout_ns: u64, top_k: usize) -> Self {
        Self {
            links,
            idle_timeout_ns,
            top_k: top_k.max(1),
            prev_ns: None,
            prev_flows: HashMap::new(),
            prev_links: Vec::new(),
            prev_reasons: Vec::new(),
            expired_total: 0,
        }
    }

    /// The slot-ordered interfaces.
    pub fn links(&self) -> &[LinkName] {
        &self.links
    }

    /// Records that `n` flows the last decision named were removed.
    pub fn expired(&mut self, n: usize) {
        self.expired_total += n as u64;
    }

    /// Turns one reading into a snapshot, and decides which flows to age out.
    pub fn update(&mut self, r: &Reading<'_>) -> (Snapshot, Decision) {
        let dt = self
            .prev_ns
            .map(|p| r.now_ns.saturating_sub(p) as f64 / 1e9)
            .filter(|dt| *dt > 0.0);
        let rate = |now: u64, before: Option<u64>| match (dt, before) {
            (Some(dt), Some(b)) => now.saturating_sub(b) as f64 / dt,
            _ => 0.0,
        };

        let mut decision = Decision::default();
        let mut flows = Vec::with_capacity(r.flows.len());
        let mut next_prev = HashMap::with_capacity(r.flows.len());
        for f in r.flows {
            let before = self.prev_flows.get(&f.key).copied();
            // A flow first seen in this interval counts from zero.
            let before = before.or(dt.map(|_| (0, 0)));
            let pps = rate(f.stats.packets, before.map(|b| b.0));
            let bps = rate(f.stats.bytes, before.map(|b| b.1)) * 8.0;
            if r.now_ns.saturating_sub(f.stats.last_ns) > self.idle_timeout_ns {
                decision.expire.push(f.key);
                continue;
            }
            next_prev.insert(f.key, (f.stats.packets, f.stats.bytes));
            flows.push((f, pps, bps));
        }
        self.prev_flows = next_prev;

        let name_of = |ifindex: u32| link_name(&self.links, ifindex);
        let top = |key: SortKey| {
            let score = |x: &(&FlowRecord, f64, f64)| match key {
                SortKey::Bytes => x.0.stats.bytes as f64,
                SortKey::Packets => x.0.stats.packets as f64,
                SortKey::Rate => x.2,
            };
            let mut v: Vec<&(&FlowRecord, f64, f64)> = flows.iter().collect();
            let k = self.top_k.min(v.len());
            if k < v.len() {
                v.select_nth_unstable_by(k, |a, b| score(b).total_cmp(&score(a)));
                v.truncate(k);
            }
            v.sort_by(|a, b| score(b).total_cmp(&score(a)));
            v.into_iter()
                .map(|(f, pps, bps)| flow_view(f, *pps, *bps, r.now_ns, &name_of))
                .collect::<Vec<_>>()
        };

        let links = self
            .links
            .iter()
            .enumerate()
            .map(|(slot, l)| {
                let now = r.links.get(slot).copied().unwrap_or_default();
                let prev = self.prev_links.get(slot).copied();
                LinkView::new(l, &now, |f| rate(f(&now), prev.as_ref().map(f)))
            })
            .collect();
        self.prev_links = r.links.to_vec();

        let neighbors = r
            .neighbors
            .iter()
            .map(|(k, s)| NeighborView::new(&name_of(k.ifindex), k, s))
            .collect();

        let reasons = r
            .reasons
            .iter()
            .enumerate()
            .map(|(i, (reason, n))| {
                DropView::new(*reason, *n, rate(*n, self.prev_reasons.get(i).copied()))
            })
            .collect();
        self.prev_reasons = r.reasons.iter().map(|(_, n)| *n).collect();

        let active = r.flows.len() as u64;
        let created = r.counters[counter::FLOWS_CREATED as usize];
        let flow_table = FlowTableView {
            active,
            capacity: r.flow_capacity,
            fill_ratio: active as f64 / f64::from(r.flow_capacity.max(1)),
            created_total: created,
            // LRU evictions are not reported by the kernel: every flow created is either
            // still in the table, removed by us, or evicted.
            evicted_total: created
                .saturating_sub(self.expired_total)
                .saturating_sub(active),
            expired_total: self.expired_total,
            insert_failed_total: r.counters[counter::FLOWS_INSERT_FAILED as usize],
        };

        self.prev_ns = Some(r.now_ns);
        let snapshot = Snapshot {
            interval_s: dt.unwrap_or(0.0),
            read_ms: r.read_ns as f64 / 1e6,
            flow_table,
            top_bytes: top(SortKey::Bytes),
            top_packets: top(SortKey::Packets),
            top_rate: top(SortKey::Rate),
            links,
            neighbors,
            reasons,
            counters: view::counter_object(&r.counters),
        };
        (snapshot, decision)
    }
}

#[cfg(test)]
mod tests;
