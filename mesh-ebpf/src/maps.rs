use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use mesh_common::{
    maps::{
        BLOCKLIST_CAPACITY, EGRESS_CAPACITY, EVENTS_BYTES, FLOWS_DEFAULT_CAPACITY, IFACES_CAPACITY,
        LINKS_CAPACITY, NEIGHBOR_TX_CAPACITY, NEIGHBORS_CAPACITY, NEXTHOP_GROUPS_CAPACITY,
        PROBE_CAPACITY, ROUTES_V4_CAPACITY, ROUTES_V6_CAPACITY,
    },
    probe::ProbeState,
    reason::REASON_CAPACITY,
    telemetry::{
        BlockEntry, BlockKey, EventBudget, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, NeighborTx, counter,
    },
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
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_CAPACITY, 0);

/// Capacity here is a default; meshctl sets the configured one before loading.
#[map]
pub static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(FLOWS_DEFAULT_CAPACITY, 0);

#[map]
pub static LINKS: PerCpuArray<LinkStats> = PerCpuArray::with_max_entries(LINKS_CAPACITY, 0);

#[map]
pub static NEIGHBORS: LruPerCpuHashMap<NeighborKey, NeighborStats> =
    LruPerCpuHashMap::with_max_entries(NEIGHBORS_CAPACITY, 0);

#[map]
pub static NEIGHBOR_TX: PerCpuArray<NeighborTx> =
    PerCpuArray::with_max_entries(NEIGHBOR_TX_CAPACITY, 0);

#[map]
pub static TELEMETRY: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space for one frame's [`crate::route::Seen`].
#[map]
pub static SEEN: PerCpuArray<crate::route::Seen> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PROBE_PEERS: Array<NeighborKey> = Array::with_max_entries(PROBE_CAPACITY, 0);

#[map]
pub static PROBE_STATE: Array<ProbeState> = Array::with_max_entries(PROBE_CAPACITY, 0);

#[map]
pub static PROBE_SLOTS: HashMap<NeighborKey, u32> = HashMap::with_max_entries(PROBE_CAPACITY, 0);

#[map]
pub static BLOCKLIST: HashMap<BlockKey, BlockEntry> =
    HashMap::with_max_entries(BLOCKLIST_CAPACITY, 0);

/// The layout stamp a restarted agent checks before adopting pinned maps.
#[map]
pub static META: Array<u32> = Array::with_max_entries(1, 0);
