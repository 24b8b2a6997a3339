//! The probe maps: who each slot probes (ours to write) and what the replies said (XDP's).

use aya::maps::{Array, HashMap, MapData};
use mesh_common::{
    maps::{PROBE_CAPACITY, PROBE_PEERS, PROBE_SLOTS, PROBE_STATE},
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
    /// Says who slot `slot` probes; replies from anyone else are refused by XDP, and
    /// this neighbour's requests are recorded in the slot.
    pub fn set_probe_peer(&mut self, slot: u32, peer: NeighborKey) -> Result<()> {
        // The slot first: a request recorded in it before the peer entry exists is from
        // the same neighbour, so nothing is ever recorded in another's slot.
        let mut slots: HashMap<&mut MapData, NeighborKey, u32> =
            typed(&mut self.maps, PROBE_SLOTS)?;
        slots
            .insert(peer, slot, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: PROBE_SLOTS,
                action: format!("naming probe slot {slot}"),
                source,
            })?;
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

    /// The probe state of one neighbour slot (`NextHop::neighbor`).
    pub fn probe_state(&self, slot: u32) -> Result<ProbeState> {
        let map: Array<&MapData, ProbeState> = typed_ref(&self.maps, PROBE_STATE)?;
        map.get(&slot, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: PROBE_STATE,
                action: format!("reading probe slot {slot}"),
                source,
            })
    }
}
