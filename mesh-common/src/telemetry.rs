//! Telemetry records the data plane keeps per flow, per link and per neighbour, and the
//! events it sends to the agent.

use crate::{hash::FlowTuple, parse::Family};

/// [`FlowKey::direction`]: seen by XDP on ingress.
pub const DIR_INGRESS: u8 = 0;
/// [`FlowKey::direction`]: sent by this host, seen by the TC egress program.
pub const DIR_EGRESS: u8 = 1;

/// Identifies a flow: where it was seen, and its 5-tuple.
///
/// Addresses are network-order bytes read as native words, as in [`FlowTuple`]; IPv4 uses
/// word 0 and leaves the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Ingress interface (XDP) or egress interface (TC).
    pub ifindex: u32,
    /// Source address, as [`FlowTuple::src`].
    pub src: [u32; 4],
    /// Destination address, as [`FlowTuple::dst`].
    pub dst: [u32; 4],
    /// Source port in host byte order; 0 for fragments and portless protocols.
    pub src_port: u16,
    /// Destination port in host byte order; 0 for fragments and portless protocols.
    pub dst_port: u16,
    /// IP protocol, as [`FlowTuple::proto`].
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// Explicit padding; always zero, so no stray byte splits one flow into two keys.
    pub _pad: u8,
}

impl FlowKey {
    /// The key of a flow seen on `ifindex` in `direction` (`DIR_*`), padding zeroed.
    #[inline(always)]
    pub fn new(ifindex: u32, direction: u8, family: Family, t: &FlowTuple) -> Self {
        Self {
            ifindex,
            src: t.src,
            dst: t.dst,
            src_port: t.src_port,
            dst_port: t.dst_port,
            proto: t.proto,
            family: match family {
                Family::V4 => 4,
                Family::V6 => 6,
            },
            direction,
            _pad: 0,
        }
    }
}

/// One CPU's share of a flow's counters (`FLOWS` is a per-CPU LRU hash).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets; on TC egress a GSO super-packet counts as its segments.
    pub packets: u64,
    /// Frame bytes, Ethernet header included (as interface counters count them).
    pub bytes: u64,
    /// Coarse CLOCK_MONOTONIC (`bpf_ktime_get_coarse_ns`) of the first packet this CPU
    /// saw, ns; 0 if none.
    pub first_ns: u64,
    /// The same clock at the latest packet this CPU saw; the agent ages idle flows by it.
    pub last_ns: u64,
    /// Packets XDP forwarded (`XDP_REDIRECT`); egress packets count in none of the three.
    pub forwarded: u64,
    /// Packets XDP passed to the kernel.
    pub passed: u64,
    /// Packets XDP dropped.
    pub dropped: u64,
    /// OR of the TCP flags byte of every segment (0 for other protocols).
    pub tcp_flags: u32,
    /// Explicit padding to the 8-byte alignment; always zero.
    pub _pad: u32,
}

/// One CPU's share of a mesh interface's counters (`LINKS`, indexed by [`crate::types::Iface::slot`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Every frame XDP saw arriving on the interface, probes excepted.
    pub rx_packets: u64,
    /// Their frame bytes, Ethernet header included.
    pub rx_bytes: u64,
    /// Of `rx_packets`: forwarded to a next hop.
    pub forwarded: u64,
    /// Of `rx_packets`: passed to the kernel.
    pub passed: u64,
    /// Of `rx_packets`: dropped.
    pub dropped: u64,
    /// Frames the data plane forwarded out of this interface.
    pub tx_packets: u64,
    /// Their frame bytes, as received.
    pub tx_bytes: u64,
    /// Frames the host's own stack sent out of this interface (TC egress).
    pub host_tx_packets: u64,
    /// Their bytes (`skb->len`: a GSO super-packet's headers count once).
    pub host_tx_bytes: u64,
}

/// A blocked or rate-limited source (`BLOCKLIST` key): the words of [`FlowKey::src`], or
/// of its prefix ([`BLOCK_PREFIX`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// IPv4 in the first word (network order), the rest zero; or the IPv6 address.
    pub src: [u32; 4],
    /// 4 or 6 for one address; with [`BLOCK_PREFIX`] set, the source's prefix
    /// ([`BLOCK_PREFIX_V4`] or [`BLOCK_PREFIX_V6`] bits, the rest of `src` zero).
    pub family: u32,
}

/// `BlockKey::family` flag: the key is a source prefix, for the sources without an entry
/// of their own.
pub const BLOCK_PREFIX: u32 = 0x100;
/// The prefix length of an IPv4 prefix key.
pub const BLOCK_PREFIX_V4: u32 = 24;
/// The prefix length of an IPv6 prefix key.
pub const BLOCK_PREFIX_V6: u32 = 64;
/// A token: one frame, in the bucket's units (frames x 1e9, so that `rate_pps` tokens
/// flow in per nanosecond).
pub const TOKEN: u64 = 1_000_000_000;

/// What happens to a source's frames until an expiry (`BLOCKLIST` value): all dropped, or
/// let through at a rate (a token bucket XDP keeps in the entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEntry {
    /// CLOCK_MONOTONIC ns; the entry does nothing after it (the agent removes it).
    pub expires_ns: u64,
    /// 0: every frame is dropped (`drop_blocked`). Otherwise frames per second let
    /// through; the rest are dropped as `drop_rate_limited`.
    pub rate_pps: u32,
    /// Most frames let through at once after a quiet spell.
    pub burst: u32,
    /// The bucket, in [`TOKEN`]s; updated by XDP without atomics (CPUs racing on one
    /// source let a few frames more through, never fewer).
    pub tokens: u64,
    /// When XDP last filled the bucket (coarse CLOCK_MONOTONIC ns).
    pub last_ns: u64,
}

/// A neighbour: an interface and the peer's MAC address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighborKey {
    /// The interface the neighbour is on: where its frames arrive, or ours leave for it.
    pub ifindex: u32,
    /// The neighbour's MAC: the source of what it sends, the destination of what we send.
    pub mac: [u8; 6],
    /// Explicit padding; always zero, as the kernel hashes and compares every key byte.
    pub _pad: [u8; 2],
}

/// One CPU's share of a neighbour's counters (`NEIGHBORS`, a per-CPU LRU hash).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborStats {
    /// Frames from this neighbour (source MAC) that XDP saw.
    pub rx_packets: u64,
    /// Their frame bytes.
    pub rx_bytes: u64,
    /// Frames the data plane forwarded to it (kept in `NEIGHBOR_TX`; meshctl merges them).
    pub tx_packets: u64,
    /// Their frame bytes (likewise from `NEIGHBOR_TX`).
    pub tx_bytes: u64,
    /// Frames the host's own stack sent to it (TC egress).
    pub host_tx_packets: u64,
    /// Their bytes (`skb->len`).
    pub host_tx_bytes: u64,
}

/// One CPU's share of what was forwarded to a next-hop neighbour (`NEIGHBOR_TX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborTx {
    /// Frames XDP forwarded to this neighbour, as a group member or as a member's backup.
    pub packets: u64,
    /// Their frame bytes.
    pub bytes: u64,
}

/// Indexes of the `TELEMETRY` per-CPU counter array.
pub mod counter {
    /// Flows inserted into `FLOWS` (evictions = created - expired by the agent - present).
    pub const FLOWS_CREATED: u32 = 0;
    /// Flows that could not be inserted (the kernel refused even with LRU eviction).
    pub const FLOWS_INSERT_FAILED: u32 = 1;
    /// Events written to the ring buffer.
    pub const EVENTS_SENT: u32 = 2;
    /// Events lost because the ring buffer was full.
    pub const EVENTS_LOST: u32 = 3;
    /// Drop events held back by the per-CPU rate limit.
    pub const DROP_EVENTS_SUPPRESSED: u32 = 4;
    /// Neighbours inserted into `NEIGHBORS`.
    pub const NEIGHBORS_CREATED: u32 = 5;
    /// Frames the TC egress program saw on mesh interfaces.
    pub const EGRESS_FRAMES: u32 = 6;
    /// Egress frames whose headers could not be parsed (counted per link, not per flow).
    pub const EGRESS_UNPARSED: u32 = 7;
    /// Number of counters: the length of the `TELEMETRY` array.
    pub const COUNT: u32 = 8;
}

/// [`Event::kind`]: a sampled new flow.
pub const EVENT_NEW_FLOW: u32 = 1;
/// [`Event::kind`]: a frame the data plane dropped.
pub const EVENT_DROP: u32 = 2;

/// A ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `EVENT_*`.
    pub kind: u32,
    /// The [`crate::Reason`] of the frame's verdict.
    pub reason: u32,
    /// Frame length in bytes.
    pub len: u32,
    /// Non-zero when `key` holds the frame's flow (drops of malformed frames have none).
    pub has_key: u32,
    /// CLOCK_MONOTONIC when XDP sent it, ns (the coarse clock for new-flow events).
    pub ts_ns: u64,
    /// The frame's flow if `has_key` is set; else zero but `ifindex`, the ingress interface.
    pub key: FlowKey,
    /// Explicit padding to the 8-byte alignment; always zero.
    pub _pad: u32,
}

/// Per-CPU drop-event budget: at most `CONFIG.drop_events_per_s` per CPU per second.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    /// CLOCK_MONOTONIC when this CPU's current one-second window began, ns.
    pub window_start_ns: u64,
    /// Drop events this CPU sent in the window; past `drop_events_per_s` the rest are held back.
    pub sent: u64,
}

// The kernel and meshctl must agree on these sizes; padding is explicit so no byte is
// left uninitialized in a map key.

impl FlowStats {
    /// Adds another CPU's share: sums, earliest first, latest last, OR of flags.
    pub fn merge(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        if o.first_ns != 0 && (self.first_ns == 0 || o.first_ns < self.first_ns) {
            self.first_ns = o.first_ns;
        }
        self.last_ns = self.last_ns.max(o.last_ns);
        self.forwarded += o.forwarded;
        self.passed += o.passed;
        self.dropped += o.dropped;
        self.tcp_flags |= o.tcp_flags;
    }
}

impl LinkStats {
    /// Adds another CPU's share.
    pub fn merge(&mut self, o: &Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.forwarded += o.forwarded;
        self.passed += o.passed;
        self.dropped += o.dropped;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.host_tx_packets += o.host_tx_packets;
        self.host_tx_bytes += o.host_tx_bytes;
    }
}

impl NeighborStats {
    /// Adds another CPU's share.
    pub fn merge(&mut self, o: &Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.host_tx_packets += o.host_tx_packets;
        self.host_tx_bytes += o.host_tx_bytes;
    }
}
