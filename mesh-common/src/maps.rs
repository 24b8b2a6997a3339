//! Map names and capacities: the one place both sides take them from.

/// Bumped whenever the key or value layout of any map below changes.
pub const LAYOUT_VERSION: u32 = 1;

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

/// The XDP forwarding program.
pub const PROG_XDP: &str = "mesh_xdp";

pub const ROUTES_V4_CAPACITY: u32 = 65_536;
pub const ROUTES_V6_CAPACITY: u32 = 65_536;
pub const NEXTHOP_GROUPS_CAPACITY: u32 = 4_096;
pub const EGRESS_CAPACITY: u32 = 256;
pub const IFACES_CAPACITY: u32 = 256;
/// Members of one next-hop group (ECMP width).
pub const MAX_NEXTHOPS: usize = 8;
