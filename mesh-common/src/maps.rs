//! Map names and capacities: the one place both sides take them from.

/// Bumped whenever the key or value layout of any map below changes.
pub const LAYOUT_VERSION: u32 = 7;

/// IPv4 routes: `LpmTrie<[u8; 4], Route>`.
pub const ROUTES_V4: &str = "ROUTES_V4";
/// IPv6 routes: `LpmTrie<[u8; 16], Route>`.
pub const ROUTES_V6: &str = "ROUTES_V6";
/// Next-hop groups: `Array<NextHopGroup>`, indexed by group id.
pub const NEXTHOP_GROUPS: &str = "NEXTHOP_GROUPS";
/// Egress ports: `DevMapHash` keyed by ifindex.
pub const EGRESS: &str = "EGRESS";
/// Mesh interfaces: `HashMap<u32 /* ifindex */, Iface>`.
pub const IFACES: &str = "IFACES";
/// Data plane settings: `Array<DataplaneConfig>` with one entry.
pub const CONFIG: &str = "CONFIG";
/// One counter per [`crate::Reason`]: `PerCpuArray<u64>`.
pub const REASONS: &str = "REASONS";

/// Per-flow counters: `LruPerCpuHashMap<FlowKey, FlowStats>`, capacity set at load time.
pub const FLOWS: &str = "FLOWS";
/// Per-interface counters: `PerCpuArray<LinkStats>`, indexed by `Iface::slot`.
pub const LINKS: &str = "LINKS";
/// Per-neighbour counters: `LruPerCpuHashMap<NeighborKey, NeighborStats>`.
pub const NEIGHBORS: &str = "NEIGHBORS";
/// Frames forwarded to each next-hop neighbour: `PerCpuArray<NeighborTx>`, indexed by
/// `NextHop::neighbor`.
pub const NEIGHBOR_TX: &str = "NEIGHBOR_TX";
/// Telemetry bookkeeping: `PerCpuArray<u64>`, see [`crate::telemetry::counter`].
pub const TELEMETRY: &str = "TELEMETRY";
/// New-flow samples and drop events: `RingBuf` of [`crate::telemetry::Event`].
pub const EVENTS: &str = "EVENTS";
/// Per-CPU drop-event rate limit: `PerCpuArray<EventBudget>`, one entry.
pub const EVENT_BUDGET: &str = "EVENT_BUDGET";

/// Who each probe slot is: `Array<NeighborKey>` (ifindex and MAC), written by the agent;
/// a reply is only recorded if it arrives from there. Indexed like `NEIGHBOR_TX`.
pub const PROBE_PEERS: &str = "PROBE_PEERS";
/// Probe replies and requests per slot: `Array<ProbeState>`, written by XDP.
pub const PROBE_STATE: &str = "PROBE_STATE";
/// The slot of each probed neighbour: `HashMap<NeighborKey, u32>`, written by the agent
/// beside `PROBE_PEERS`, so that XDP can record a neighbour's requests in its slot.
pub const PROBE_SLOTS: &str = "PROBE_SLOTS";
/// Sources (and source prefixes) whose traffic is dropped or rate-limited until an
/// expiry: `HashMap<BlockKey, BlockEntry>`, written by the agent, buckets kept by XDP.
pub const BLOCKLIST: &str = "BLOCKLIST";
/// Layout stamp of a pinned set of maps: `Array<u32>`, one entry, [`LAYOUT_VERSION`].
pub const META: &str = "META";

/// The XDP forwarding program.
pub const PROG_XDP: &str = "mesh_xdp";
/// The TC egress telemetry program.
pub const PROG_TC_EGRESS: &str = "mesh_tc_egress";
/// The forwarding program at TCX (or clsact) ingress, where the XDP hook is taken.
pub const PROG_TC_INGRESS: &str = "mesh_tc_ingress";
/// The pass-everything XDP program a veth peer needs to receive redirected frames.
pub const PROG_VETH_PEER: &str = "mesh_veth_peer";

/// IPv4 prefixes in `ROUTES_V4`, local addresses included; the agent refuses a config
/// that needs more.
pub const ROUTES_V4_CAPACITY: u32 = 65_536;
/// IPv6 prefixes in `ROUTES_V6`, local addresses included; the agent refuses a config
/// that needs more.
pub const ROUTES_V6_CAPACITY: u32 = 65_536;
/// Next-hop groups: the agent hands out group ids `0..NEXTHOP_GROUPS_CAPACITY`.
pub const NEXTHOP_GROUPS_CAPACITY: u32 = 4_096;
/// Interfaces XDP can redirect to; with [`IFACES_CAPACITY`] it bounds the mesh interfaces.
pub const EGRESS_CAPACITY: u32 = 256;
/// Mesh interfaces in `IFACES`, each with its own `LINKS` slot.
pub const IFACES_CAPACITY: u32 = 256;
/// Default flow-table capacity; the config may set anything in
/// `FLOWS_MIN_CAPACITY..=FLOWS_MAX_CAPACITY`.
pub const FLOWS_DEFAULT_CAPACITY: u32 = 65_536;
/// Smallest `telemetry.flow_capacity` the agent accepts.
pub const FLOWS_MIN_CAPACITY: u32 = 256;
/// Largest `telemetry.flow_capacity` the agent accepts.
pub const FLOWS_MAX_CAPACITY: u32 = 4_194_304;
/// One slot per mesh interface.
pub const LINKS_CAPACITY: u32 = IFACES_CAPACITY;
/// Neighbour MACs counted in `NEIGHBORS`; an LRU map, so the least recently seen make room.
pub const NEIGHBORS_CAPACITY: u32 = 4_096;
/// Distinct next-hop neighbours the routes may use.
pub const NEIGHBOR_TX_CAPACITY: u32 = 1_024;
/// Probe slots: one per neighbour, the same index as its `NEIGHBOR_TX` entry.
pub const PROBE_CAPACITY: u32 = NEIGHBOR_TX_CAPACITY;
/// Ring buffer bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Blocked sources at once.
pub const BLOCKLIST_CAPACITY: u32 = 4_096;
/// Members of one next-hop group (ECMP width).
pub const MAX_NEXTHOPS: usize = 8;
