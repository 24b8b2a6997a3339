//! Fan-in and fan-out from our flow table, for the DDoS and scan detectors, and the
//! sources an action blocks. A node's fan-in is the number of distinct sources with live
//! flows towards its own prefixes (its router sees all of them); its fan-out is the most
//! distinct destinations any one source entering the mesh here has live flows towards.
//! Blocking happens where attack traffic enters the mesh: on host-facing interfaces.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use mesh_common::telemetry::{BlockKey, DIR_INGRESS};

use crate::dataplane::{
    FlowRecord,
    blocklist::{Source, block_addr},
};

/// One live ingress flow's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ifindex: u32,
    pub first_ns: u64,
}

/// The ingress flows last seen at or after `live_since_ns`.
pub fn live(records: &[FlowRecord], live_since_ns: u64) -> Vec<Seen> {
    records
        .iter()
        .filter(|r| r.key.direction == DIR_INGRESS && r.stats.last_ns >= live_since_ns)
        .filter_map(|r| {
            let addr = |w: [u32; 4]| {
                block_addr(&BlockKey {
                    src: w,
                    family: u32::from(r.key.family),
                })
            };
            Some(Seen {
                src: addr(r.key.src)?,
                dst: addr(r.key.dst)?,
                ifindex: r.key.ifindex,
                first_ns: r.stats.first_ns,
            })
        })
        .collect()
}

fn within(a: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&a))
}

/// Distinct sources towards `ours`.
pub fn fan_in(flows: &[Seen], ours: &[IpNet]) -> u32 {
    let srcs: BTreeSet<IpAddr> = flows
        .iter()
        .filter(|f| within(f.dst, ours))
        .map(|f| f.src)
        .collect();
    srcs.len() as u32
}

/// Per source entering on `edge` interfaces, its distinct destinations.
fn destinations(flows: &[Seen], edge: &BTreeSet<u32>) -> BTreeMap<IpAddr, BTreeSet<IpAddr>> {
    let mut by_src: BTreeMap<IpAddr, BTreeSet<IpAddr>> = BTreeMap::new();
    for f in flows.iter().filter(|f| edge.contains(&f.ifindex)) {
        by_src.entry(f.src).or_default().insert(f.dst);
    }
    by_src
}

/// The most distinct destinations one source entering on `edge` has.
pub fn fan_out(flows: &[Seen], edge: &BTreeSet<u32>) -> u32 {
    destinations(flows, edge)
        .values()
        .map(|d| d.len() as u32)
        .max()
        .unwrap_or(0)
}

/// Sources of a flood on `victim`: entering on `edge` interfaces, with flows towards it
/// that began after `onset_ns` (flows older than the attack are left alone), at most
/// `limit`.
pub fn flood_sources(
    flows: &[Seen],
    victim: &[IpNet],
    edge: &BTreeSet<u32>,
    onset_ns: u64,
    limit: usize,
) -> Vec<IpAddr> {
    let old: BTreeSet<IpAddr> = flows
        .iter()
        .filter(|f| within(f.dst, victim) && f.first_ns < onset_ns)
        .map(|f| f.src)
        .collect();
    let new: BTreeSet<IpAddr> = flows
        .iter()
        .filter(|f| edge.contains(&f.ifindex) && within(f.dst, victim) && f.first_ns >= onset_ns)
        .map(|f| f.src)
        .filter(|s| !old.contains(s))
        .collect();
    new.into_iter().take(limit).collect()
}

/// The rate limits of a flood on `victim`, addresses first: every old source (with a flow
/// towards it from before `onset_ns`) entering on `edge`, at `factor` times its own rate
/// from before the attack (`before`, packets a second) and at least `floor`; then the
/// prefix (/24 or /64) of every new source, at `floor`, which holds the sources of that
/// prefix without an entry of their own (the new ones beyond `max_blocked`, or joining
/// later). At most `limit` entries.
#[derive(Clone, Copy)]
pub struct FloodLimits<'a> {
    pub victim: &'a [IpNet],
    pub edge: &'a BTreeSet<u32>,
    pub onset_ns: u64,
    pub before: &'a BTreeMap<IpAddr, f64>,
    pub factor: f32,
    pub floor: u32,
    pub limit: usize,
}

impl FloodLimits<'_> {
    pub fn of(&self, flows: &[Seen]) -> Vec<(Source, u32)> {
        let towards = |f: &&Seen| self.edge.contains(&f.ifindex) && within(f.dst, self.victim);
        let old: BTreeSet<IpAddr> = flows
            .iter()
            .filter(towards)
            .filter(|f| f.first_ns < self.onset_ns)
            .map(|f| f.src)
            .collect();
        let prefixes: BTreeSet<Source> = flows
            .iter()
            .filter(towards)
            .filter(|f| !old.contains(&f.src))
            .map(|f| Source::prefix_of(f.src))
            .collect();
        let own = old.into_iter().map(|s| {
            let was = self.before.get(&s).copied().unwrap_or(0.0);
            let rate = (was * f64::from(self.factor)).min(f64::from(u32::MAX)) as u32;
            (Source::Addr(s), rate.max(self.floor))
        });
        own.chain(prefixes.into_iter().map(|p| (p, self.floor)))
            .take(self.limit)
            .collect()
    }
}

/// Sources entering on `edge` with at least `n` distinct destinations, at most `limit`.
pub fn scanners(flows: &[Seen], edge: &BTreeSet<u32>, n: u32, limit: usize) -> Vec<IpAddr> {
    destinations(flows, edge)
        .into_iter()
        .filter(|(_, d)| d.len() as u32 >= n)
        .map(|(s, _)| s)
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(src: &str, dst: &str, ifindex: u32, first_ns: u64) -> Seen {
        Seen {
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            ifindex,
            first_ns,
        }
    }

    #[test]
    fn fans_and_sources() {
        let victim: Vec<IpNet> = vec!["10.0.9.2/32".parse().expect("net")];
        let edge: BTreeSet<u32> = [7].into();
        let mut flows = vec![seen("10.0.1.2", "10.0.9.2", 7, 0)];
        for i in 0..40 {
            flows.push(seen(&format!("10.0.1.{}", 100 + i), "10.0.9.2", 7, 1000));
        }
        // A transit source from a mesh neighbour's side, and a scanner.
        flows.push(seen("10.0.5.5", "10.0.9.2", 3, 1000));
        for i in 0..30 {
            flows.push(seen("10.0.1.66", &format!("10.0.3.{i}"), 7, 1000));
        }
        assert_eq!(fan_in(&flows, &victim), 42);
        assert_eq!(fan_out(&flows, &edge), 30);
        let flood = flood_sources(&flows, &victim, &edge, 500, 100);
        assert_eq!(flood.len(), 40, "new, entering here, not the old stream");
        assert!(!flood.contains(&"10.0.1.2".parse().expect("a")));
        assert!(!flood.contains(&"10.0.5.5".parse().expect("a")));
        assert_eq!(flood_sources(&flows, &victim, &edge, 500, 8).len(), 8);
        assert_eq!(
            scanners(&flows, &edge, 20, 10),
            vec!["10.0.1.66".parse::<IpAddr>().expect("a")]
        );
    }

    #[test]
    fn old_sources_are_limited_to_their_own_rate_and_new_ones_prefix_to_the_floor() {
        let victim: Vec<IpNet> = vec!["10.0.9.2/32".parse().expect("net")];
        let edge: BTreeSet<u32> = [7].into();
        // The old stream, a pre-opened attacker that opened a new flow at the attack,
        // new sources from two prefixes, and a transit source.
        let mut flows = vec![
            seen("10.0.1.2", "10.0.9.2", 7, 0),
            seen("10.0.1.200", "10.0.9.2", 7, 0),
            seen("10.0.1.200", "10.0.9.2", 7, 1000),
            seen("10.0.5.5", "10.0.9.2", 3, 0),
        ];
        for i in 0..5 {
            flows.push(seen(&format!("10.0.1.{}", 100 + i), "10.0.9.2", 7, 1000));
            flows.push(seen(&format!("10.0.2.{}", 100 + i), "10.0.9.2", 7, 1000));
        }
        let a = |s: &str| s.parse::<IpAddr>().expect("addr");
        let before: BTreeMap<IpAddr, f64> = [(a("10.0.1.2"), 500.0), (a("10.0.1.200"), 1.0)].into();
        let limits = FloodLimits {
            victim: &victim,
            edge: &edge,
            onset_ns: 500,
            before: &before,
            factor: 2.0,
            floor: 50,
            limit: 100,
        };
        let got = limits.of(&flows);
        let shown: Vec<String> = got.iter().map(|(s, r)| format!("{s} {r}")).collect();
        assert_eq!(
            shown,
            [
                "10.0.1.2 1000",
                "10.0.1.200 50",
                "10.0.1.0/24 50",
                "10.0.2.0/24 50"
            ]
        );
        assert_eq!(FloodLimits { limit: 1, ..limits }.of(&flows).len(), 1);
    }
}
