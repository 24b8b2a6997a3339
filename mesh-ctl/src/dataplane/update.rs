//! Route and group writes one at a time, for the agent's make-before-break updates, and
//! reading back what is installed (for adopting a running data plane).

use aya::maps::{Array, LpmTrie, MapData, lpm_trie::Key};
use ipnet::{Ipv4Net, Ipv6Net};
use mesh_common::{
    maps::{CONFIG, NEXTHOP_GROUPS, NEXTHOP_GROUPS_CAPACITY, ROUTES_V4, ROUTES_V6},
    telemetry::NeighborKey,
    types::{DataplaneConfig, NextHopGroup, Route},
};

use super::{Dataplane, DataplaneError, Result, typed, typed_ref};

fn access(map: &'static str, action: String) -> impl FnOnce(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::MapAccess {
        map,
        action,
        source,
    }
}

/// Installed routes: IPv4 and IPv6.
pub type RouteList = (Vec<(Ipv4Net, Route)>, Vec<(Ipv6Net, Route)>);

impl Dataplane {
    pub fn write_group(&mut self, id: u32, group: &NextHopGroup) -> Result<()> {
        let mut map: Array<&mut MapData, NextHopGroup> = typed(&mut self.maps, NEXTHOP_GROUPS)?;
        map.set(id, group, 0)
            .map_err(access(NEXTHOP_GROUPS, format!("writing group {id}")))
    }

    pub fn set_route_v4(&mut self, prefix: Ipv4Net, route: Route) -> Result<()> {
        let mut map: LpmTrie<&mut MapData, [u8; 4], Route> = typed(&mut self.maps, ROUTES_V4)?;
        let key = Key::new(u32::from(prefix.prefix_len()), prefix.network().octets());
        map.insert(&key, route, 0)
            .map_err(access(ROUTES_V4, format!("writing route {prefix}")))
    }

    pub fn set_route_v6(&mut self, prefix: Ipv6Net, route: Route) -> Result<()> {
        let mut map: LpmTrie<&mut MapData, [u8; 16], Route> = typed(&mut self.maps, ROUTES_V6)?;
        let key = Key::new(u32::from(prefix.prefix_len()), prefix.network().octets());
        map.insert(&key, route, 0)
            .map_err(access(ROUTES_V6, format!("writing route {prefix}")))
    }

    pub fn remove_route_v4(&mut self, prefix: Ipv4Net) -> Result<()> {
        let mut map: LpmTrie<&mut MapData, [u8; 4], Route> = typed(&mut self.maps, ROUTES_V4)?;
        let key = Key::new(u32::from(prefix.prefix_len()), prefix.network().octets());
        match map.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(access(ROUTES_V4, format!("removing route {prefix}"))(e)),
        }
    }

    pub fn remove_route_v6(&mut self, prefix: Ipv6Net) -> Result<()> {
        let mut map: LpmTrie<&mut MapData, [u8; 16], Route> = typed(&mut self.maps, ROUTES_V6)?;
        let key = Key::new(u32::from(prefix.prefix_len()), prefix.network().octets());
        match map.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(access(ROUTES_V6, format!("removing route {prefix}"))(e)),
        }
    }

    /// Every installed route.
    pub fn read_routes(&self) -> Result<RouteList> {
        let v4: LpmTrie<&MapData, [u8; 4], Route> = typed_ref(&self.maps, ROUTES_V4)?;
        let mut out4 = Vec::new();
        for entry in v4.iter() {
            let (key, route) = entry.map_err(access(ROUTES_V4, "listing routes".to_owned()))?;
            if let Ok(p) = Ipv4Net::new(key.data().into(), key.prefix_len() as u8) {
                out4.push((p, route));
            }
        }
        let v6: LpmTrie<&MapData, [u8; 16], Route> = typed_ref(&self.maps, ROUTES_V6)?;
        let mut out6 = Vec::new();
        for entry in v6.iter() {
            let (key, route) = entry.map_err(access(ROUTES_V6, "listing routes".to_owned()))?;
            if let Ok(p) = Ipv6Net::new(key.data().into(), key.prefix_len() as u8) {
                out6.push((p, route));
            }
        }
        Ok((out4, out6))
    }

    /// Every non-empty group: (id, group).
    pub fn read_groups(&self) -> Result<Vec<(u32, NextHopGroup)>> {
        let map: Array<&MapData, NextHopGroup> = typed_ref(&self.maps, NEXTHOP_GROUPS)?;
        let mut out = Vec::new();
        for id in 0..NEXTHOP_GROUPS_CAPACITY {
            let g = map
                .get(&id, 0)
                .map_err(access(NEXTHOP_GROUPS, format!("reading group {id}")))?;
            if g.count != 0 {
                out.push((id, g));
            }
        }
        Ok(out)
    }

    /// The data plane settings as installed.
    pub fn read_config(&self) -> Result<DataplaneConfig> {
        let map: Array<&MapData, DataplaneConfig> = typed_ref(&self.maps, CONFIG)?;
        map.get(&0, 0)
            .map_err(access(CONFIG, "reading the data plane config".to_owned()))
    }

    /// Says which neighbour each `NEIGHBOR_TX` slot is, for the telemetry views.
    pub fn set_neighbors(&mut self, neighbors: Vec<NeighborKey>) {
        self.neighbors = neighbors;
    }
}
