//! The live mesh as a detection snapshot. Every agent floods a [`Report`] of its own
//! cumulative counters once per detection window; every agent keeps the latest two of
//! each origin ([`LiveView`]) and lays their differences over the graph the reports
//! describe, in the trace format the generator writes, so any detector runs on it.
//!
//! Three things make counters read by different nodes comparable:
//! - every node reads its counters at the same instants, the multiples of the window in
//!   wall-clock time, and a report names its instant (`slot_ms`); a window is assembled
//!   from the reports of its two bounding instants only, never from whatever arrived last;
//! - each origin's differences are scaled to the nominal window by its own clock, which
//!   takes out its timer's lateness;
//! - data a node counted as sent on a link whose probes all come back, but that the far
//!   end never counted as received, was lost in the sender (the link demonstrably carries
//!   frames): it is taken off the link and the node's forwarded count, which makes a node
//!   that silently drops its transit after counting it look like what it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::trace::{LinkTelemetry, NodeTelemetry, Snapshot, Topology};

/// Longest node name a report may carry.
pub const MAX_NAME: usize = 64;
/// Most links one report may list.
pub const MAX_LINKS: usize = 256;
/// Below this probe loss a link counts as carrying frames (for the sender attribution).
const CLEAN_PROBE_LOSS: f64 = 0.02;
/// Reports older than this many windows are not used: the node is not reporting.
const STALE_WINDOWS: u64 = 4;

/// One node's totals over all its interfaces (probe frames taken out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounters {
    pub rx: u64,
    pub rx_bytes: u64,
    pub tx: u64,
    pub tx_bytes: u64,
    pub forwarded: u64,
    pub local: u64,
    pub dropped: u64,
    /// Distinct sources with live flows towards the node's own prefixes (a count now,
    /// not a total).
    #[serde(default)]
    pub flows_in: u32,
    /// The most distinct destinations one source entering the mesh at the node has live
    /// flows towards (a count now).
    #[serde(default)]
    pub flows_out: u32,
}

/// One node's totals on its link to one neighbour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkCounters {
    pub neighbor: String,
    /// Data frames sent onto the link.
    pub tx: u64,
    /// Data frames taken off it (forwarded on or delivered).
    pub rx: u64,
    pub rx_bytes: u64,
    pub probes_sent: u64,
    pub probe_replies: u64,
    pub rtt_ms: f32,
    pub jitter_ms: f32,
    /// Times the reporter saw the link go down (its probe state): a window in which
    /// either end did is a down window, whatever share of probes came back.
    #[serde(default)]
    pub downs: u64,
    /// The reporter has lost the neighbour (no hellos): the link is down now. Its other
    /// counters are the last it had, so the window shows the link, fully lost, rather
    /// than no link at all.
    #[serde(default)]
    pub down: bool,
}

/// What a node floods once per detection window: its cumulative counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub origin: String,
    /// Increases with every report of one origin (also across restarts).
    pub seq: u64,
    /// The wall-clock instant (ms, a multiple of the window) the counters are for.
    pub slot_ms: u64,
    /// The origin's own clock in ms when it read the counters; only differences between
    /// two of its reports are used.
    pub at_ms: u64,
    pub node: NodeCounters,
    pub links: Vec<LinkCounters>,
}

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The origin or a neighbour name is empty or longer than [`MAX_NAME`].
    #[error("bad node name {0:?}")]
    Name(String),
    /// More links than [`MAX_LINKS`].
    #[error("{0} links, at most {MAX_LINKS}")]
    TooManyLinks(usize),
    /// An RTT or jitter that is not a finite, non-negative number.
    #[error("bad RTT figures for neighbour {0}")]
    Rtt(String),
}

impl Report {
    /// Checks what a peer sent before it is kept.
    pub fn validate(&self) -> Result<(), ReportError> {
        let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_NAME;
        if !name_ok(&self.origin) {
            return Err(ReportError::Name(self.origin.clone()));
        }
        if self.links.len() > MAX_LINKS {
            return Err(ReportError::TooManyLinks(self.links.len()));
        }
        for l in &self.links {
            if !name_ok(&l.neighbor) || l.neighbor == self.origin {
                return Err(ReportError::Name(l.neighbor.clone()));
            }
            let ok = |v: f32| v.is_finite() && v >= 0.0;
            if !(ok(l.rtt_ms) && ok(l.jitter_ms)) {
                return Err(ReportError::Rtt(l.neighbor.clone()));
            }
        }
        Ok(())
    }
}

/// What [`LiveView::insert`] did with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Newer than what we had: keep flooding it.
    New,
    /// Not newer than what we have: drop it.
    Old,
}

/// Reports kept per origin: the two bounding a window, and one more arriving.
const KEPT: usize = 3;

#[derive(Debug, Clone)]
struct Origin {
    /// Oldest first; counters increase along it (a restart clears it).
    reports: Vec<Report>,
    /// Our clock (ms) when the newest arrived.
    received_ms: u64,
}

/// The latest reports of every origin.
#[derive(Debug, Clone)]
pub struct LiveView {
    window_ms: u64,
    origins: BTreeMap<String, Origin>,
}

impl LiveView {
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            origins: BTreeMap::new(),
        }
    }

    /// Keeps a report (validated) if it is the origin's newest.
    pub fn insert(&mut self, r: Report, now_ms: u64) -> Result<Insert, ReportError> {
        r.validate()?;
        let o = self.origins.entry(r.origin.clone()).or_insert(Origin {
            reports: Vec::new(),
            received_ms: now_ms,
        });
        if let Some(last) = o.reports.last() {
            if r.seq <= last.seq {
                return Ok(Insert::Old);
            }
            // A restarted origin's counters start again: nothing before it compares.
            let restarted = r.at_ms <= last.at_ms
                || r.slot_ms <= last.slot_ms
                || r.node.rx < last.node.rx
                || r.node.tx < last.node.tx;
            if restarted {
                o.reports.clear();
            }
        }
        o.reports.push(r);
        if o.reports.len() > KEPT {
            o.reports.remove(0);
        }
        o.received_ms = now_ms;
        Ok(Insert::New)
    }

    /// Reports from origins not heard for a while go.
    pub fn expire(&mut self, now_ms: u64) {
        let limit = STALE_WINDOWS * self.window_ms;
        self.origins
            .retain(|_, o| now_ms.saturating_sub(o.received_ms) <= limit);
    }

    /// Whether the window ending at `slot_ms` can be judged now: every origin that
    /// reported for the instant before, and every name in `expected` (the nodes routing
    /// knows), has reported for it. One that went quiet, or that runs no detection, keeps
    /// it incomplete: the caller's deadline then decides.
    pub fn complete<'a>(&self, slot_ms: u64, expected: impl IntoIterator<Item = &'a str>) -> bool {
        let start = slot_ms.saturating_sub(self.window_ms);
        let has = |o: &Origin, slot: u64| o.reports.iter().any(|r| r.slot_ms == slot);
        let mut any = false;
        for o in self.origins.values() {
            let now = has(o, slot_ms);
            if !now && has(o, start) {
                return false;
            }
            any |= now;
        }
        any && expected
            .into_iter()
            .all(|n| self.origins.get(n).is_some_and(|o| has(o, slot_ms)))
    }

    /// Origins we hold reports of.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The graph the reports describe: every origin, and every link either end lists
    /// between two origins.
    pub fn topology(&self) -> Topology {
        let nodes: Vec<String> = self.origins.keys().cloned().collect();
        let index = |n: &str| nodes.binary_search_by(|x| x.as_str().cmp(n)).ok();
        let mut links: Vec<(u32, u32)> = Vec::new();
        for (i, o) in self.origins.values().enumerate() {
            for l in o.reports.iter().flat_map(|r| &r.links) {
                if let Some(j) = index(&l.neighbor) {
                    let (a, b) = (i.min(j) as u32, i.max(j) as u32);
                    links.push((a, b));
                }
            }
        }
        links.sort_unstable();
        links.dedup();
        Topology {
            kind: "live".into(),
            nodes,
            links,
        }
    }

    /// The window ending at the instant `slot_ms`, over `topology` (from
    /// [`LiveView::topology`]): each origin's difference between its reports for
    /// `slot_ms` and the instant before, scaled to the nominal window. An origin without
    /// both shows zeros.
    pub fn snapshot(&self, topology: &Topology, window: u32, slot_ms: u64) -> Snapshot {
        let mut snap = Snapshot::empty(window, topology);
        let start = slot_ms.saturating_sub(self.window_ms);
        // Per origin: node differences and per-neighbour link differences, scaled.
        let mut deltas: Vec<Option<(NodeCounters, BTreeMap<&str, Delta>)>> = Vec::new();
        for name in &topology.nodes {
            let d = self.origins.get(name).and_then(|o| {
                let at = |slot: u64| o.reports.iter().find(|r| r.slot_ms == slot);
                let (prev, last) = (at(start)?, at(slot_ms)?);
                let dt = last.at_ms.checked_sub(prev.at_ms).filter(|&d| d > 0)?;
                let k = self.window_ms as f64 / dt as f64;
                let s = |a: u64, b: u64| (a.saturating_sub(b) as f64 * k).round() as u64;
                let (a, b) = (&last.node, &prev.node);
                let node = NodeCounters {
                    rx: s(a.rx, b.rx),
                    rx_bytes: s(a.rx_bytes, b.rx_bytes),
                    tx: s(a.tx, b.tx),
                    tx_bytes: s(a.tx_bytes, b.tx_bytes),
                    forwarded: s(a.forwarded, b.forwarded),
                    local: s(a.local, b.local),
                    dropped: s(a.dropped, b.dropped),
                    flows_in: a.flows_in,
                    flows_out: a.flows_out,
                };
                let mut links = BTreeMap::new();
                for l in &last.links {
                    let Some(o) = prev.links.iter().find(|o| o.neighbor == l.neighbor) else {
                        continue;
                    };
                    let sent = l.probes_sent.saturating_sub(o.probes_sent);
                    links.insert(
                        l.neighbor.as_str(),
                        Delta {
                            tx: s(l.tx, o.tx),
                            rx: s(l.rx, o.rx),
                            rx_bytes: s(l.rx_bytes, o.rx_bytes),
                            // Probe counts are what happened, not a rate.
                            probes_sent: sent,
                            probes_lost: sent
                                .saturating_sub(l.probe_replies.saturating_sub(o.probe_replies)),
                            rtt_ms: l.rtt_ms,
                            jitter_ms: l.jitter_ms,
                            went_down: l.downs > o.downs || l.down,
                        },
                    );
                }
                Some((node, links))
            });
            deltas.push(d);
        }
        let link_of = |i: usize, other: &str| -> Option<Delta> {
            deltas[i].as_ref().and_then(|(_, l)| l.get(other).copied())
        };
        let mut silent_out = vec![0u64; topology.nodes.len()];
        for (li, &(a, b)) in topology.links.iter().enumerate() {
            let (a, b) = (a as usize, b as usize);
            let (na, nb) = (&topology.nodes[a], &topology.nodes[b]);
            let (da, db) = (link_of(a, nb), link_of(b, na));
            let t: &mut LinkTelemetry = &mut snap.links[li];
            let mut rtt = Vec::new();
            for d in [da, db].into_iter().flatten() {
                // Data counts compare only with both ends' (below); probes stand alone.
                t.probes_sent += d.probes_sent as u32;
                t.probes_lost += d.probes_lost as u32;
                if d.probes_sent > d.probes_lost {
                    rtt.push((d.rtt_ms, d.jitter_ms));
                }
            }
            if [da, db].iter().flatten().any(|d| d.went_down) {
                t.probes_lost = t.probes_sent.max(1);
                t.probes_sent = t.probes_lost;
            }
            if !rtt.is_empty() {
                let n = rtt.len() as f32;
                t.rtt_ms = rtt.iter().map(|r| r.0).sum::<f32>() / n;
                t.jitter_ms = rtt.iter().map(|r| r.1).sum::<f32>() / n;
            }
            let (Some(da), Some(db)) = (da, db) else {
                continue;
            };
            for d in [da, db] {
                t.tx_pkts += d.tx;
                t.rx_pkts += d.rx;
                t.bytes += d.rx_bytes;
            }
            let clean = t.probes_sent > 0
                && f64::from(t.probes_lost) / f64::from(t.probes_sent) < CLEAN_PROBE_LOSS;
            if clean {
                for (from, sent, got) in [(a, da.tx, db.rx), (b, db.tx, da.rx)] {
                    let lost = sent.saturating_sub(got);
                    silent_out[from] += lost;
                    t.tx_pkts -= lost;
                }
            }
        }
        for (i, d) in deltas.iter().enumerate() {
            let Some((c, _)) = d else { continue };
            snap.nodes[i] = NodeTelemetry {
                rx_pkts: c.rx,
                rx_bytes: c.rx_bytes,
                tx_pkts: c.tx,
                tx_bytes: c.tx_bytes,
                fwd_pkts: c.forwarded.saturating_sub(silent_out[i]),
                local_pkts: c.local,
                dropped_pkts: c.dropped,
                flows_in: c.flows_in,
                flows_out: c.flows_out,
            };
        }
        snap
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Delta {
    tx: u64,
    rx: u64,
    rx_bytes: u64,
    probes_sent: u64,
    probes_lost: u64,
    rtt_ms: f32,
    jitter_ms: f32,
    went_down: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Totals after `seconds` (+ `phase_ms`) on a line a - b - c carrying `rate` frames per
    /// second from a to c: a share `lost_after_b` of what b sends towards c never
    /// arrives, and the b–c link loses `probe_loss` of every 100 probes.
    fn line(
        rate: u64,
        lost_after_b: f64,
        probe_loss: u64,
        seconds: u64,
        phase_ms: u64,
    ) -> Vec<Report> {
        let t = seconds * 1000 + phase_ms;
        let n = rate * t / 1000;
        let arrived = (n as f64 * (1.0 - lost_after_b)) as u64;
        let probes = 100 * seconds;
        let link = |neighbor: &str, tx: u64, rx: u64, lost: u64| LinkCounters {
            neighbor: neighbor.into(),
            tx,
            rx,
            rx_bytes: rx * 100,
            probes_sent: probes,
            probe_replies: probes - lost * seconds,
            rtt_ms: 0.2,
            jitter_ms: 0.05,
            downs: 0,
            down: false,
        };
        let node = |rx: u64, fwd: u64, local: u64| NodeCounters {
            rx,
            rx_bytes: rx * 100,
            tx: fwd,
            tx_bytes: fwd * 100,
            forwarded: fwd,
            local,
            dropped: 0,
            flows_in: 0,
            flows_out: 0,
        };
        vec![
            Report {
                origin: "a".into(),
                seq: seconds,
                slot_ms: seconds * 1000,
                at_ms: t,
                node: node(n, n, 0),
                links: vec![link("b", n, 0, 0)],
            },
            Report {
                origin: "b".into(),
                seq: seconds,
                slot_ms: seconds * 1000,
                at_ms: t,
                node: node(n, n, 0),
                links: vec![link("a", 0, n, 0), link("c", n, 0, probe_loss)],
            },
            Report {
                origin: "c".into(),
                seq: seconds,
                slot_ms: seconds * 1000,
                at_ms: t,
                node: node(arrived, 0, arrived),
                links: vec![link("b", 0, arrived, probe_loss)],
            },
        ]
    }

    fn view(reports: impl IntoIterator<Item = Vec<Report>>) -> LiveView {
        let mut v = LiveView::new(1000);
        for set in reports {
            for r in set {
                assert_eq!(v.insert(r, 0), Ok(Insert::New));
            }
        }
        v
    }

    fn unaccounted(t: &NodeTelemetry) -> f64 {
        (t.rx_pkts as f64 - (t.fwd_pkts + t.local_pkts + t.dropped_pkts) as f64) / t.rx_pkts as f64
    }

    #[test]
    fn a_node_losing_transit_behind_clean_probes_shows_it_and_its_link_does_not() {
        let v = view([line(1000, 0.6, 0, 1, 0), line(1000, 0.6, 0, 2, 0)]);
        let topo = v.topology();
        assert_eq!(topo.nodes, ["a", "b", "c"]);
        assert_eq!(topo.links, [(0, 1), (1, 2)]);
        let s = v.snapshot(&topo, 0, 2000);
        let b = &s.nodes[1];
        assert!((unaccounted(b) - 0.6).abs() < 0.01, "b dropped 60 %: {b:?}");
        assert!(
            unaccounted(&s.nodes[0]).abs() < 0.01,
            "a is fine: {:?}",
            s.nodes[0]
        );
        let bc = &s.links[1];
        assert_eq!(
            bc.tx_pkts, bc.rx_pkts,
            "the b–c link lost nothing itself: {bc:?}"
        );
    }

    #[test]
    fn loss_on_a_link_that_loses_probes_stays_on_the_link() {
        let v = view([line(1000, 0.25, 40, 1, 0), line(1000, 0.25, 40, 2, 0)]);
        let topo = v.topology();
        let s = v.snapshot(&topo, 0, 2000);
        let bc = &s.links[1];
        let loss = 1.0 - bc.rx_pkts as f64 / bc.tx_pkts as f64;
        assert!((loss - 0.25).abs() < 0.01, "the link lost 25 %: {bc:?}");
        assert!(bc.probes_lost > 0);
        assert!(
            unaccounted(&s.nodes[1]).abs() < 0.01,
            "b is fine: {:?}",
            s.nodes[1]
        );
    }

    #[test]
    fn ends_read_at_different_moments_agree_on_a_steady_stream() {
        // c reads its counters 400 ms later than a and b, and over 1.4 s, not 1 s.
        let mut late = line(1000, 0.0, 0, 2, 0);
        late[2] = line(1000, 0.0, 0, 2, 400).remove(2);
        let v = view([line(1000, 0.0, 0, 1, 0), late]);
        let s = v.snapshot(&v.topology(), 0, 2000);
        let bc = &s.links[1];
        assert!(
            bc.tx_pkts.abs_diff(bc.rx_pkts) <= 2,
            "a steady stream loses nothing on the link: {bc:?}"
        );
        assert!(unaccounted(&s.nodes[1]).abs() < 0.01);
    }

    #[test]
    fn a_window_uses_the_reports_of_its_own_instants_only() {
        // c's report for the second instant has not arrived: c shows nothing rather than
        // an older window set against the others' newer one.
        let mut second = line(1000, 0.0, 0, 2, 0);
        second.pop();
        let v = view([line(1000, 0.0, 0, 1, 0), second]);
        let s = v.snapshot(&v.topology(), 0, 2000);
        assert_eq!(s.nodes[2], NodeTelemetry::default());
        let bc = &s.links[1];
        assert_eq!(
            (bc.tx_pkts, bc.rx_pkts),
            (0, 0),
            "no loss from one end: {bc:?}"
        );
        assert_eq!(bc.probes_sent, 100, "b's probes still count: {bc:?}");
        assert!(
            unaccounted(&s.nodes[1]).abs() < 0.01,
            "no blame without both ends"
        );
    }

    #[test]
    fn a_window_is_complete_once_every_origin_before_and_every_known_node_reported_it() {
        let none: [&str; 0] = [];
        let mut v = view([line(1000, 0.0, 0, 1, 0)]);
        assert!(
            !v.complete(2000, none),
            "nobody reported the second instant yet"
        );
        let mut second = line(1000, 0.0, 0, 2, 0);
        let c = second.pop().expect("c's report");
        for r in second {
            v.insert(r, 0).expect("a and b");
        }
        assert!(
            !v.complete(2000, none),
            "c reported the first instant, not the second"
        );
        v.insert(c, 0).expect("c");
        assert!(v.complete(2000, none));
        assert!(
            !v.complete(2000, ["a", "d"]),
            "routing knows d, which has not reported"
        );
        // A newcomer routing knows is waited for as soon as it is known, and once it
        // reported an instant, also the next.
        let mut third = line(1000, 0.0, 0, 3, 0);
        let mut d = third[0].clone();
        d.origin = "d".into();
        for r in third.drain(..) {
            v.insert(r, 0).expect("third");
        }
        assert!(v.complete(3000, none));
        assert!(!v.complete(3000, ["d"]));
        v.insert(d, 0).expect("d");
        assert!(v.complete(3000, ["d"]));
        for r in line(1000, 0.0, 0, 4, 0) {
            v.insert(r, 0).expect("fourth");
        }
        assert!(
            !v.complete(4000, none),
            "d reported the third instant, not the fourth"
        );
    }

    #[test]
    fn old_reports_bad_reports_and_restarts_are_handled() {
        let mut v = view([line(1000, 0.0, 0, 2, 0)]);
        let again = line(1000, 0.0, 0, 1, 0).remove(0);
        assert_eq!(v.insert(again, 0), Ok(Insert::Old));
        let mut bad = line(1000, 0.0, 0, 3, 0).remove(0);
        bad.links[0].rtt_ms = f32::NAN;
        assert!(matches!(v.insert(bad, 0), Err(ReportError::Rtt(_))));
        let mut selfish = line(1000, 0.0, 0, 3, 0).remove(0);
        selfish.links[0].neighbor = "a".into();
        assert!(matches!(v.insert(selfish, 0), Err(ReportError::Name(_))));
        // A restart: counters start from zero again; no difference is taken over it.
        let mut restarted = line(1000, 0.0, 0, 1, 0).remove(0);
        restarted.seq = 10;
        restarted.slot_ms = 3000;
        assert_eq!(v.insert(restarted, 0), Ok(Insert::New));
        let s = v.snapshot(&v.topology(), 0, 3000);
        assert_eq!(s.nodes[0], NodeTelemetry::default());
        // A node not heard for long is forgotten.
        v.expire(10_000);
        assert!(v.is_empty());
    }
}
