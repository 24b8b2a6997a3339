//! Map keys and values.

use crate::maps::MAX_NEXTHOPS;

const _: () = assert!(MAX_NEXTHOPS.is_power_of_two());

/// [`Route::flags`]: the prefix is one of this node's own addresses; hand it to the kernel.
pub const ROUTE_F_LOCAL: u32 = 1;

/// The value of an LPM route entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Route {
    /// Index into the next-hop group array (ignored for local routes).
    pub group: u32,
    /// `ROUTE_F_*` bits.
    pub flags: u32,
}

/// One way out: the egress interface and the Ethernet addresses to write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// The egress interface, XDP's redirect target in `EGRESS`; 0 marks an unused entry.
    pub ifindex: u32,
    /// The egress interface's `LINKS` slot.
    pub slot: u32,
    /// This neighbour's entry in `NEIGHBOR_TX`.
    pub neighbor: u32,
    /// Source MAC written on egress (the egress interface's own address).
    pub src_mac: [u8; 6],
    /// Destination MAC written on egress (the neighbour's address).
    pub dst_mac: [u8; 6],
}

/// Equal-cost next hops for a set of prefixes; a flow hash picks one member. Each member
/// may have a precomputed loop-free alternate (RFC 5286) that the data plane itself
/// switches to while the member's link is silent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHopGroup {
    /// Members in use, `0..=MAX_NEXTHOPS`; 0 means the group is empty.
    pub count: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// The equal-cost next hops; entries from `count` on are unused and zero.
    pub members: [NextHop; MAX_NEXTHOPS],
    /// `backups[i]` protects `members[i]`; a zero `ifindex` means none.
    pub backups: [NextHop; MAX_NEXTHOPS],
}

impl NextHopGroup {
    /// The index of the member a flow with `hash` takes, or `None` for an empty group.
    #[inline(always)]
    pub fn select_index(&self, hash: u32) -> Option<usize> {
        let count = self.count;
        if count == 0 {
            return None;
        }
        // The mask is what the verifier needs to bound the index (it cannot follow a
        // modulo). Checking `count <= MAX_NEXTHOPS` here would let LLVM prove the mask
        // redundant and delete it; a corrupt larger count just lands on an unused slot,
        // whose zero ifindex the egress map refuses.
        Some((hash % count) as usize & (MAX_NEXTHOPS - 1))
    }

    /// The member a flow with `hash` takes, or `None` for an empty group.
    #[inline(always)]
    pub fn select(&self, hash: u32) -> Option<&NextHop> {
        self.members.get(self.select_index(hash)?)
    }
}

/// A mesh interface as the data plane sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// The interface's own MAC: unicast frames for any other address are not ours to route.
    pub mac: [u8; 6],
    /// Explicit padding that aligns `flags`; always zero.
    pub _pad: [u8; 2],
    /// Reserved for per-interface flags: none are defined, the agent writes 0, XDP ignores it.
    pub flags: u32,
    /// Index of this interface's counters in `LINKS`, `0..LINKS_CAPACITY`.
    pub slot: u32,
}

/// Data plane settings, one entry in the `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Must equal [`crate::maps::LAYOUT_VERSION`]; until it does the program forwards nothing.
    pub layout_version: u32,
    /// Per-node seed for the ECMP hash, so that routers in series don't polarize.
    pub hash_seed: u32,
    /// `CFG_F_*` bits.
    pub flags: u32,
    /// Send 1 in this many new flows to the agent as an event; 0 sends none.
    pub flow_sample_n: u32,
    /// Drop events per CPU per second at most; 0 sends none.
    pub drop_events_per_s: u32,
    /// A next hop whose last probe reply is older than this is bypassed on its backup
    /// (if the backup's is fresh); 0 turns fast reroute off.
    pub probe_dead_us: u32,
}

/// [`DataplaneConfig::flags`]: keep per-flow and per-neighbour counters and send new-flow
/// events. Per-interface and per-reason counters are always kept; drop events depend only
/// on `drop_events_per_s` (0 turns them off).
pub const CFG_F_FLOW_TELEMETRY: u32 = 1;
/// [`DataplaneConfig::flags`]: count frames per neighbour MAC in `NEIGHBORS` (received by
/// source MAC, sent by the host's stack). Frames forwarded to a next hop are counted in
/// `NEIGHBOR_TX` always.
pub const CFG_F_NEIGHBOR_TELEMETRY: u32 = 2;
