use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, PerCpuArray},
};
use mesh_common::{
    maps::{
        EGRESS_CAPACITY, IFACES_CAPACITY, NEXTHOP_GROUPS_CAPACITY, ROUTES_V4_CAPACITY,
        ROUTES_V6_CAPACITY,
    },
    reason::REASON_COUNT,
    types::{DataplaneConfig, Iface, NextHopGroup, Route},
};

// Names must match mesh_common::maps; meshctl checks each one exists when it loads.
#[map]
pub static ROUTES_V4: LpmTrie<[u8; 4], Route> = LpmTrie::with_max_entries(ROUTES_V4_CAPACITY, 0);

#[map]
pub static ROUTES_V6: LpmTrie<[u8; 16], Route> = LpmTrie::with_max_entries(ROUTES_V6_CAPACITY, 0);

#[map]
pub static NEXTHOP_GROUPS: Array<NextHopGroup> =
    Array::with_max_entries(NEXTHOP_GROUPS_CAPACITY, 0);

#[map]
pub static EGRESS: DevMapHash = DevMapHash::with_max_entries(EGRESS_CAPACITY, 0);

#[map]
pub static IFACES: HashMap<u32, Iface> = HashMap::with_max_entries(IFACES_CAPACITY, 0);

#[map]
pub static CONFIG: Array<DataplaneConfig> = Array::with_max_entries(1, 0);

#[map]
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);
