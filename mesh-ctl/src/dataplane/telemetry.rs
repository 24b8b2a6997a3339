//! Reading the telemetry maps: per-CPU values summed, in plain Rust types.

use std::os::fd::AsFd as _;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf};
use mesh_common::{
    maps::{EVENTS, FLOWS, LINKS, NEIGHBOR_TX, NEIGHBORS, TELEMETRY},
    telemetry::{FlowKey, FlowStats, LinkStats, NeighborKey, NeighborStats, NeighborTx, counter},
};

use super::{Dataplane, DataplaneError, MapSource as _, Result, batch, typed, typed_ref};

/// A flow and its counters summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub stats: FlowStats,
}

impl Dataplane {
    fn map_data(&self, name: &'static str) -> Result<&MapData> {
        match self
            .maps
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?
        {
            aya::maps::Map::PerCpuLruHashMap(m)
            | aya::maps::Map::PerCpuHashMap(m)
            | aya::maps::Map::PerCpuArray(m) => Ok(m),
            _ => Err(DataplaneError::MissingMap(name)),
        }
    }

    /// Every flow in the table, replacing `out`'s contents; returns the entry count.
    pub fn read_flows(&self, out: &mut Vec<FlowRecord>) -> Result<usize> {
        out.clear();
        let fd = self.map_data(FLOWS)?.fd().as_fd();
        batch::lookup_percpu::<FlowKey, FlowStats>(fd, self.ncpus, |key, per_cpu| {
            let mut stats = FlowStats::default();
            for s in per_cpu {
                stats.merge(s);
            }
            out.push(FlowRecord { key: *key, stats });
        })
        .map_err(|source| DataplaneError::Batch {
            map: FLOWS,
            action: "reading",
            source,
        })
    }

    /// The baseline `bench maps` compares against: aya's per-key iteration.
    pub fn read_flows_per_key(&self, out: &mut Vec<FlowRecord>) -> Result<usize> {
        out.clear();
        let map: aya::maps::PerCpuHashMap<&MapData, FlowKey, FlowStats> =
            typed_ref(&self.maps, FLOWS)?;
        for entry in map.iter() {
            // An entry evicted between listing its key and reading it is just skipped.
            let Ok((key, per_cpu)) = entry else { continue };
            let mut stats = FlowStats::default();
            for s in per_cpu.iter() {
                stats.merge(s);
            }
            out.push(FlowRecord { key, stats });
        }
        Ok(out.len())
    }

    /// Removes flows (idle ones, as the agent decides); returns how many were removed.
    pub fn remove_flows(&self, keys: &[FlowKey]) -> Result<usize> {
        let fd = self.map_data(FLOWS)?.fd().as_fd();
        batch::delete(fd, keys).map_err(|source| DataplaneError::Batch {
            map: FLOWS,
            action: "deleting",
            source,
        })
    }

    /// The flow table's capacity as loaded.
    pub fn flow_capacity(&self) -> u32 {
        self.flow_capacity
    }

    /// Counters of interface slots `0..slots`, summed over CPUs.
    pub fn read_links(&self, slots: u32) -> Result<Vec<LinkStats>> {
        let map: PerCpuArray<&MapData, LinkStats> = typed_ref(&self.maps, LINKS)?;
        (0..slots)
            .map(|slot| {
                let per_cpu = map
                    .get(&slot, 0)
                    .map_err(|source| DataplaneError::MapAccess {
                        map: LINKS,
                        action: format!("reading slot {slot}"),
                        source,
                    })?;
                let mut sum = LinkStats::default();
                for s in per_cpu.iter() {
                    sum.merge(s);
                }
                Ok(sum)
            })
            .collect()
    }

    /// Every neighbour the data plane has seen, with its counters summed over CPUs: what
    /// `NEIGHBORS` counted, merged with what was forwarded to each next hop.
    pub fn read_neighbors(&self) -> Result<Vec<(NeighborKey, NeighborStats)>> {
        let mut out: Vec<(NeighborKey, NeighborStats)> = Vec::new();
        let fd = self.map_data(NEIGHBORS)?.fd().as_fd();
        batch::lookup_percpu::<NeighborKey, NeighborStats>(fd, self.ncpus, |key, per_cpu| {
            let mut sum = NeighborStats::default();
            for s in per_cpu {
                sum.merge(s);
            }
            out.push((*key, sum));
        })
        .map_err(|source| DataplaneError::Batch {
            map: NEIGHBORS,
            action: "reading",
            source,
        })?;
        let tx: PerCpuArray<&MapData, NeighborTx> = typed_ref(&self.maps, NEIGHBOR_TX)?;
        for (i, key) in self.neighbors.iter().enumerate() {
            let per_cpu = tx
                .get(&(i as u32), 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: NEIGHBOR_TX,
                    action: format!("reading neighbour {i}"),
                    source,
                })?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes));
            if packets == 0 {
                continue;
            }
            let entry = match out.iter().position(|(k, _)| k == key) {
                Some(at) => &mut out[at].1,
                None => {
                    out.push((*key, NeighborStats::default()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            entry.tx_packets += packets;
            entry.tx_bytes += bytes;
        }
        Ok(out)
    }

    /// The `TELEMETRY` bookkeeping counters, summed over CPUs, by `counter::*` index.
    pub fn telemetry_counters(&self) -> Result<[u64; counter::COUNT as usize]> {
        let mut out = [0; counter::COUNT as usize];
        for (i, v) in out.iter_mut().enumerate() {
            *v = super::sum_over_cpus(&self.maps, TELEMETRY, i as u32)?;
        }
        Ok(out)
    }

    /// Takes the event ring buffer out of the data plane, for a reader task to own.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .maps
            .0
            .remove(EVENTS)
            .ok_or(DataplaneError::MissingMap(EVENTS))?;
        // A second handle stays here, so the ring buffer can be pinned again.
        let dup = match &map {
            aya::maps::Map::RingBuf(m) => m
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .and_then(|fd| MapData::from_fd(fd).ok()),
            _ => None,
        };
        self.events_handle = dup;
        RingBuf::try_from(map).map_err(|source| DataplaneError::MapLayout {
            name: EVENTS,
            source,
        })
    }
}

impl Dataplane {
    /// Possible CPUs: how many values each per-CPU map entry holds.
    pub fn possible_cpus(&self) -> usize {
        self.ncpus
    }

    /// Writes a flow straight into the flow table, CPU `c`'s share being `share(c)` for
    /// every possible CPU (how a table is seeded without traffic on every CPU).
    pub fn insert_flow(
        &mut self,
        key: &FlowKey,
        share: impl FnMut(usize) -> FlowStats,
    ) -> Result<()> {
        let values = PerCpuValues::try_from((0..self.ncpus).map(share).collect::<Vec<_>>())
            .map_err(DataplaneError::Cpus)?;
        let mut map: PerCpuHashMap<&mut MapData, FlowKey, FlowStats> =
            typed(&mut self.maps, FLOWS)?;
        map.insert(key, values, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: FLOWS,
                action: "inserting a flow".to_owned(),
                source,
            })
    }

    /// Copies every flow of `old`'s table into this one (largest first when this one is
    /// smaller); returns how many were kept.
    pub(super) fn copy_flows_from(&mut self, old: &Dataplane) -> Result<usize> {
        let mut flows: Vec<(FlowKey, Vec<FlowStats>)> = Vec::new();
        let fd = old.map_data(FLOWS)?.fd().as_fd();
        batch::lookup_percpu::<FlowKey, FlowStats>(fd, old.ncpus, |key, per_cpu| {
            flows.push((*key, per_cpu.to_vec()));
        })
        .map_err(|source| DataplaneError::Batch {
            map: FLOWS,
            action: "reading",
            source,
        })?;
        let bytes = |v: &[FlowStats]| v.iter().map(|s| s.bytes).sum::<u64>();
        flows.sort_by_key(|(_, v)| std::cmp::Reverse(bytes(v)));
        flows.truncate(self.flow_capacity as usize);
        for (key, per_cpu) in &flows {
            self.insert_flow(key, |c| per_cpu.get(c).copied().unwrap_or_default())?;
        }
        Ok(flows.len())
    }
}
