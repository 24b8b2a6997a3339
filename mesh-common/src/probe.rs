//! Link probes: a request the far side's XDP program answers itself (`XDP_TX`) and a reply
//! the near side's XDP program records in `PROBE_STATE`, so no agent handles probes one by
//! one. The fields after `kind` belong to the sender: the responder only flips `kind`, so
//! their byte order is the sender's own (little-endian on every target we build for).

/// The probe EtherType: IEEE 802 "local experimental 1", never forwarded by anyone else.
pub const ETH_P_MESH_PROBE: u16 = 0x88b5;
/// First bytes of every probe header.
pub const PROBE_MAGIC: [u8; 4] = *b"x06p";
/// [`ProbeHdr::version`] this build speaks.
pub const PROBE_VERSION: u8 = 1;
/// [`ProbeHdr::kind`]: please send this back.
pub const PROBE_REQUEST: u8 = 1;
/// [`ProbeHdr::kind`]: a request, sent back.
pub const PROBE_REPLY: u8 = 2;
/// Ethernet header length; the probe header follows it directly (no VLAN tags).
pub const PROBE_OFFSET: usize = 14;
/// Bytes a probe frame carries on the wire (Ethernet's minimum, without the FCS).
pub const PROBE_FRAME_LEN: usize = 60;

/// What follows the Ethernet header of a probe frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeHdr {
    pub magic: [u8; 4],
    pub version: u8,
    pub kind: u8,
    pub _pad: [u8; 2],
    /// The sender's `PROBE_PEERS` index for the neighbour it probes.
    pub cookie: [u8; 4],
    pub seq: [u8; 4],
    /// CLOCK_MONOTONIC when the request left, in ns.
    pub sent_ns: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<ProbeHdr>() == 24);
const _: () = assert!(PROBE_OFFSET + core::mem::size_of::<ProbeHdr>() <= PROBE_FRAME_LEN);

/// What the data plane learned from one neighbour's probe replies (`PROBE_STATE`, an
/// array indexed like `PROBE_PEERS`). Written by XDP only; the agent derives loss, RTT
/// and jitter from the deltas between two reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// CLOCK_MONOTONIC of the last valid reply; 0: never. Fast reroute compares it with
    /// `DataplaneConfig::probe_dead_us`.
    pub last_reply_ns: u64,
    pub replies: u64,
    /// Sum of round-trip times, ns.
    pub rtt_sum_ns: u64,
    /// Sum of squared round-trip times in µs², for jitter.
    pub rtt_sq_sum_us2: u64,
    /// Highest sequence number replied to.
    pub last_seq: u32,
    /// Replies that failed validation for this slot (wrong interface or source MAC).
    pub mismatched: u32,
}

const _: () = assert!(core::mem::size_of::<ProbeState>() == 40);

impl ProbeHdr {
    /// A request from the sender's `cookie` slot.
    pub fn request(cookie: u32, seq: u32, sent_ns: u64) -> Self {
        Self {
            magic: PROBE_MAGIC,
            version: PROBE_VERSION,
            kind: PROBE_REQUEST,
            _pad: [0; 2],
            cookie: cookie.to_le_bytes(),
            seq: seq.to_le_bytes(),
            sent_ns: sent_ns.to_le_bytes(),
        }
    }
}
