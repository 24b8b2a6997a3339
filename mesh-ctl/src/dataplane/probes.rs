//! The probe maps: who each slot probes (ours to write) and what the replies said (XDP's).

use aya::maps::{Array, MapData};
use mesh_common::{
    maps::{PROBE_CAPACITY, PROBE_PEERS, PROBE_STATE},
    probe::ProbeState,
    telemetry::NeighborKey,
};

use super::{Dataplane, DataplaneError, Result, typed, typed_ref};

/// One slot's probe state as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReading {
    pub slot: u32,
    pub state: ProbeState,
}

impl Dataplane {
    /// Says who slot `slot` probes; replies from anyone else are refused by XDP.
    pub fn set_probe_peer(&mut self, slot: u32, peer: NeighborKey) -> Result<()> {
        let mut map: Array<&mut MapData, NeighborKey> = typed(&mut self.maps, PROBE_PEERS)?;
        map.set(slot, peer, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: PROBE_PEERS,
                action: format!("writing probe slot {slot}"),
                source,
            })
    }

    /// Every slot with a peer: (slot, peer), for adopting a running data plane's slots.
    pub fn probe_peers(&self) -> Result<Vec<(u32, NeighborKey)>> {
        let map: Array<&MapData, NeighborKey> = typed_ref(&self.maps, PROBE_PEERS)?;
        let mut out = Vec::new();
        for slot in 0..PROBE_CAPACITY {
            let peer = map
                .get(&slot, 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: PROBE_PEERS,
                    action: format!("reading probe slot {slot}"),
                    source,
                })?;
            if peer.ifindex != 0 {
                out.push((slot, peer));
            }
        }
        Ok(out)
    }

    /// The probe state of the given slots.
    pub fn read_probes(&self, slots: &[u32], out: &mut Vec<ProbeReading>) -> Result<()> {
        out.clear();
        let map: Array<&MapData, ProbeState> = typed_ref(&self.maps, PROBE_STATE)?;
        for &slot in slots {
            let state = map
                .get(&slot, 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: PROBE_STATE,
                    action: format!("reading probe slot {slot}"),
                    source,
                })?;
            out.push(ProbeReading { slot, state });
        }
        Ok(())
    }
}
