//! Per-source packet rates towards each destination, for the flows entering the mesh
//! here, over the last few detection windows: what a flood response limits an old
//! source to is its own rate from before the attack.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use mesh_common::telemetry::{BlockKey, DIR_INGRESS};

use crate::dataplane::{FlowRecord, blocklist::block_addr};

/// Windows of history kept per (source, destination).
pub const HISTORY: usize = 8;

/// Cumulative packets of one (source, destination) pair at the end of each of the last
/// windows, oldest first.
type Series = [u64; HISTORY];

/// The history, rebuilt every window from the flow table (pairs whose flows are gone are
/// dropped, so it is bounded by the table).
#[derive(Debug, Default)]
pub struct Rates {
    series: BTreeMap<(IpAddr, IpAddr), Series>,
    /// Windows seen, up to `HISTORY`: how many columns of `series` are real.
    filled: usize,
    /// Per source, the packets XDP dropped at the end of the last two windows.
    dropped: BTreeMap<IpAddr, (u64, u64)>,
}

impl Rates {
    /// The flow table at the end of a window: every ingress flow on an `edge` interface.
    pub fn update(&mut self, flows: &[FlowRecord], edge: &BTreeSet<u32>) {
        let mut now: BTreeMap<(IpAddr, IpAddr), u64> = BTreeMap::new();
        let mut dropped: BTreeMap<IpAddr, u64> = BTreeMap::new();
        for r in flows
            .iter()
            .filter(|r| r.key.direction == DIR_INGRESS && edge.contains(&r.key.ifindex))
        {
            let addr = |w: [u32; 4]| {
                block_addr(&BlockKey {
                    src: w,
                    family: u32::from(r.key.family),
                })
            };
            if let (Some(s), Some(d)) = (addr(r.key.src), addr(r.key.dst)) {
                *now.entry((s, d)).or_default() += r.stats.packets;
                *dropped.entry(s).or_default() += r.stats.dropped;
            }
        }
        let mut next = BTreeMap::new();
        for (pair, total) in now {
            let mut s = self.series.get(&pair).copied().unwrap_or([total; HISTORY]);
            s.rotate_left(1);
            s[HISTORY - 1] = total;
            next.insert(pair, s);
        }
        self.series = next;
        self.filled = (self.filled + 1).min(HISTORY);
        self.dropped = dropped
            .into_iter()
            .map(|(s, n)| {
                let was = self.dropped.get(&s).map_or(n, |d| d.1);
                (s, (was, n))
            })
            .collect();
    }

    /// The sources XDP dropped frames of in the last window (blocked, or over a limit):
    /// an attack still going on behind its block.
    pub fn dropping(&self) -> BTreeSet<IpAddr> {
        self.dropped
            .iter()
            .filter(|(_, (was, now))| now > was)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Each source's packets per second towards `victim` over the windows that ended
    /// `ago` windows back and before (of `window_ms` each): its rate before an attack
    /// that began then. Sources with no packets then are left out.
    pub fn before(&self, victim: &[IpNet], ago: usize, window_ms: u64) -> BTreeMap<IpAddr, f64> {
        let end = HISTORY - 1 - ago.min(HISTORY - 1);
        let start = (HISTORY - self.filled).min(end);
        let span = (end - start) as f64 * window_ms as f64 / 1000.0;
        let mut out: BTreeMap<IpAddr, f64> = BTreeMap::new();
        if span <= 0.0 {
            return out;
        }
        for ((src, dst), s) in &self.series {
            if !victim.iter().any(|n| n.contains(dst)) {
                continue;
            }
            let packets = s[end].saturating_sub(s[start]);
            if packets > 0 {
                *out.entry(*src).or_default() += packets as f64 / span;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use mesh_common::telemetry::{FlowKey, FlowStats};

    use super::*;

    fn flow(src: [u8; 4], dst: [u8; 4], ifindex: u32, packets: u64) -> FlowRecord {
        let w = |o: [u8; 4]| [u32::from_ne_bytes(o), 0, 0, 0];
        FlowRecord {
            key: FlowKey {
                src: w(src),
                dst: w(dst),
                ifindex,
                direction: DIR_INGRESS,
                family: 4,
                ..FlowKey::default()
            },
            stats: FlowStats {
                packets,
                ..FlowStats::default()
            },
        }
    }

    #[test]
    fn a_source_keeps_its_rate_from_before_the_attack() {
        let edge: BTreeSet<u32> = [7].into();
        let victim: Vec<IpNet> = vec!["10.0.9.0/24".parse().expect("net")];
        let mut r = Rates::default();
        // An old source at 10/s for 5 windows, then 500/s for 3; another destination and
        // a transit flow (not on an edge interface) do not count.
        let mut total = 0;
        for w in 0..8 {
            total += if w < 5 { 10 } else { 500 };
            r.update(
                &[
                    flow([10, 0, 1, 5], [10, 0, 9, 2], 7, total),
                    flow([10, 0, 1, 5], [10, 0, 3, 3], 7, 1000 * w),
                    flow([10, 0, 5, 5], [10, 0, 9, 2], 3, 1000 * w),
                ],
                &edge,
            );
        }
        let before = r.before(&victim, 3, 1000);
        let a: IpAddr = "10.0.1.5".parse().expect("addr");
        assert_eq!(before.keys().copied().collect::<Vec<_>>(), [a]);
        assert!((before[&a] - 10.0).abs() < 1e-9, "{before:?}");
        // Looking at the last windows instead sees the attack.
        assert!(r.before(&victim, 0, 1000)[&a] > 100.0);
        // A flow gone from the table is forgotten.
        r.update(&[], &edge);
        assert!(r.before(&victim, 0, 1000).is_empty());
    }

    #[test]
    fn a_source_is_dropping_while_its_drops_grow() {
        let edge: BTreeSet<u32> = [7].into();
        let mut r = Rates::default();
        let mut f = flow([10, 0, 1, 5], [10, 0, 9, 2], 7, 10);
        for (dropped, still) in [(0, false), (5, true), (9, true), (9, false)] {
            f.stats.dropped = dropped;
            r.update(&[f], &edge);
            assert_eq!(!r.dropping().is_empty(), still, "at {dropped}");
        }
    }

    #[test]
    fn a_short_history_uses_what_there_is() {
        let edge: BTreeSet<u32> = [7].into();
        let victim: Vec<IpNet> = vec!["10.0.9.0/24".parse().expect("net")];
        let mut r = Rates::default();
        for w in 1..=3 {
            r.update(&[flow([10, 0, 1, 5], [10, 0, 9, 2], 7, 20 * w)], &edge);
        }
        // Three windows seen: the two before the last one.
        let b = r.before(&victim, 1, 1000);
        assert_eq!(b.values().copied().collect::<Vec<_>>(), [20.0]);
        assert!(
            r.before(&victim, 6, 1000).is_empty(),
            "no history that far back"
        );
    }
}
