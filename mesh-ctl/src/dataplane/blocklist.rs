//! The blocklist: sources whose frames XDP drops (`drop_blocked`), and sources and source
//! prefixes it lets through at a rate (`drop_rate_limited` for the rest), until their
//! entry expires. Ours to write; expired entries do nothing and are removed by the agent.

use std::net::IpAddr;

use aya::maps::{HashMap, MapData, MapError};
use ipnet::IpNet;
use mesh_common::{
    limit::{prefix_len, to_prefix},
    maps::BLOCKLIST,
    telemetry::{BLOCK_PREFIX, BlockEntry, BlockKey, TOKEN},
};
use serde::{Deserialize, Serialize};

/// What a rate limit applies to: one source address, or the sources of a prefix (a /24
/// or a /64) that have no entry of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Addr(IpAddr),
    Prefix(IpNet),
}

impl Source {
    /// The prefix `addr` falls under in the blocklist (/24 or /64, as XDP masks it).
    pub fn prefix_of(addr: IpAddr) -> Self {
        let len = prefix_len(block_key(addr).family) as u8;
        Source::Prefix(IpNet::new(addr, len).map_or(IpNet::from(addr), |n| n.trunc()))
    }

    fn key(&self) -> BlockKey {
        match self {
            Source::Addr(a) => block_key(*a),
            Source::Prefix(n) => {
                let mut k = block_key(n.network());
                to_prefix(&mut k);
                k
            }
        }
    }

    fn from_key(k: &BlockKey) -> Option<Self> {
        if k.family & BLOCK_PREFIX == 0 {
            return block_addr(k).map(Source::Addr);
        }
        let family = k.family & !BLOCK_PREFIX;
        let a = block_addr(&BlockKey { src: k.src, family })?;
        IpNet::new(a, prefix_len(family) as u8)
            .ok()
            .map(Source::Prefix)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Addr(a) => write!(f, "{a}"),
            Source::Prefix(n) => write!(f, "{n}"),
        }
    }
}

/// A rate limit in the blocklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Limit {
    pub source: Source,
    pub rate_pps: u32,
    pub expires_ns: u64,
}

/// The bucket depth for a rate: a tenth of a second of it, at least 8 frames.
pub fn burst(rate_pps: u32) -> u32 {
    (rate_pps / 10).max(8)
}

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
        let entry = BlockEntry {
            expires_ns,
            ..BlockEntry::default()
        };
        self.write_entry(block_key(addr), entry, || format!("blocking {addr}"))
    }

    /// Lets `rate_pps` frames a second from `source` through until `expires_ns` and drops
    /// the rest; the bucket starts full.
    pub fn limit(&mut self, source: Source, rate_pps: u32, expires_ns: u64) -> Result<()> {
        let b = burst(rate_pps);
        let entry = BlockEntry {
            expires_ns,
            rate_pps: rate_pps.max(1),
            burst: b,
            tokens: u64::from(b) * TOKEN,
            last_ns: 0,
        };
        self.write_entry(source.key(), entry, || {
            format!("limiting {source} to {rate_pps}/s")
        })
    }

    /// Ends the limit on `source` (a no-op if there is none).
    pub fn unlimit(&mut self, source: Source) -> Result<()> {
        self.remove_entry(&source.key(), || format!("ending the limit on {source}"))
    }

    /// Every rate limit, sorted.
    pub fn limits(&self) -> Result<Vec<Limit>> {
        let mut out: Vec<Limit> = self
            .entries()?
            .into_iter()
            .filter_map(|(k, v)| {
                let source = Source::from_key(&k)?;
                (v.rate_pps != 0 || matches!(source, Source::Prefix(_))).then_some(Limit {
                    source,
                    rate_pps: v.rate_pps,
                    expires_ns: v.expires_ns,
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Stops blocking `addr` (a no-op if it is not blocked).
    pub fn unblock(&mut self, addr: IpAddr) -> Result<()> {
        self.remove_entry(&block_key(addr), || format!("unblocking {addr}"))
    }

    /// Every blocked address: (source, expiry in CLOCK_MONOTONIC ns), sorted.
    pub fn blocked(&self) -> Result<Vec<(IpAddr, u64)>> {
        let mut out: Vec<(IpAddr, u64)> = self
            .entries()?
            .into_iter()
            .filter(|(_, v)| v.rate_pps == 0)
            .filter_map(|(k, v)| Some((block_addr(&k)?, v.expires_ns)))
            .collect();
        out.sort();
        Ok(out)
    }

    fn write_entry(
        &mut self,
        key: BlockKey,
        entry: BlockEntry,
        action: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut map: HashMap<&mut MapData, BlockKey, BlockEntry> =
            typed(&mut self.maps, BLOCKLIST)?;
        map.insert(key, entry, 0).map_err(|e| access(action(), e))
    }

    fn remove_entry(&mut self, key: &BlockKey, action: impl FnOnce() -> String) -> Result<()> {
        let mut map: HashMap<&mut MapData, BlockKey, BlockEntry> =
            typed(&mut self.maps, BLOCKLIST)?;
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(access(action(), e)),
        }
    }

    fn entries(&self) -> Result<Vec<(BlockKey, BlockEntry)>> {
        let map: HashMap<&MapData, BlockKey, BlockEntry> = typed_ref(&self.maps, BLOCKLIST)?;
        map.iter()
            .map(|item| item.map_err(|e| access("reading the blocklist".into(), e)))
            .collect()
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
    fn sources_and_prefixes_round_trip_through_their_keys() {
        for s in ["10.0.1.77", "fd00:1::9"] {
            let a: IpAddr = s.parse().expect("address");
            let src = Source::Addr(a);
            assert_eq!(Source::from_key(&src.key()), Some(src));
            let p = Source::prefix_of(a);
            assert_eq!(Source::from_key(&p.key()), Some(p));
        }
        assert_eq!(
            Source::prefix_of("10.0.1.77".parse().expect("v4")).to_string(),
            "10.0.1.0/24"
        );
        assert_eq!(
            Source::prefix_of("fd00:1::9".parse().expect("v6")).to_string(),
            "fd00:1::/64"
        );
        assert_eq!((burst(5), burst(2000)), (8, 200));
    }

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
