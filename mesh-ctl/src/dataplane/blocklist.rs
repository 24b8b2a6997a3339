//! The blocklist: sources whose frames XDP drops (`drop_blocked`) until their entry
//! expires. Ours to write; expired entries do nothing and are removed by the agent.

use std::net::IpAddr;

use aya::maps::{HashMap, MapData, MapError};
use mesh_common::{
    maps::BLOCKLIST,
    telemetry::{BlockEntry, BlockKey},
};

use super::{Dataplane, DataplaneError, Result, typed, typed_ref};

/// The map key for a source address, laid out as the parser fills `FlowKey::src`.
pub fn block_key(addr: IpAddr) -> BlockKey {
    match addr {
        IpAddr::V4(a) => BlockKey {
            src: [u32::from_ne_bytes(a.octets()), 0, 0, 0],
            family: 4,
        },
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            BlockKey {
                src: [w(0), w(4), w(8), w(12)],
                family: 6,
            }
        }
    }
}

/// The address a key stands for (`None` for a key we would not write).
pub fn block_addr(k: &BlockKey) -> Option<IpAddr> {
    let b = |w: u32| w.to_ne_bytes();
    match k.family {
        4 => Some(IpAddr::from(b(k.src[0]))),
        6 => {
            let mut o = [0u8; 16];
            for (i, w) in k.src.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&b(*w));
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

fn access(action: String, source: MapError) -> DataplaneError {
    DataplaneError::MapAccess {
        map: BLOCKLIST,
        action,
        source,
    }
}

impl Dataplane {
    /// Drops frames from `addr` until CLOCK_MONOTONIC reaches `expires_ns`.
    pub fn block(&mut self, addr: IpAddr, expires_ns: u64) -> Result<()> {
        let mut map: HashMap<&mut MapData, BlockKey, BlockEntry> =
            typed(&mut self.maps, BLOCKLIST)?;
        map.insert(block_key(addr), BlockEntry { expires_ns }, 0)
            .map_err(|e| access(format!("blocking {addr}"), e))
    }

    /// Stops blocking `addr` (a no-op if it is not blocked).
    pub fn unblock(&mut self, addr: IpAddr) -> Result<()> {
        let mut map: HashMap<&mut MapData, BlockKey, BlockEntry> =
            typed(&mut self.maps, BLOCKLIST)?;
        match map.remove(&block_key(addr)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(access(format!("unblocking {addr}"), e)),
        }
    }

    /// Every entry: (source, expiry in CLOCK_MONOTONIC ns).
    pub fn blocked(&self) -> Result<Vec<(IpAddr, u64)>> {
        let map: HashMap<&MapData, BlockKey, BlockEntry> = typed_ref(&self.maps, BLOCKLIST)?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, v) = item.map_err(|e| access("reading the blocklist".into(), e))?;
            if let Some(a) = block_addr(&k) {
                out.push((a, v.expires_ns));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the entries that expired by `now_ns`; returns them.
    pub fn expire_blocks(&mut self, now_ns: u64) -> Result<Vec<IpAddr>> {
        super::datapath::expire_blocks(self, now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_the_parsers_layout() {
        for a in ["10.0.1.7", "fd00:1::2", "::ffff:10.0.0.1"] {
            let a: IpAddr = a.parse().expect("address");
            assert_eq!(block_addr(&block_key(a)), Some(a));
        }
        let k = block_key("10.0.1.7".parse().expect("v4"));
        assert_eq!(
            k.src[0].to_ne_bytes(),
            [10, 0, 1, 7],
            "network order in memory"
        );
    }
}
