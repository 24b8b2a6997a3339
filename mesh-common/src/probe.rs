//! Link probes: a request the far side's XDP program answers itself (`XDP_TX`) and a reply
//! the near side's XDP program records in `PROBE_STATE`, so no agent handles probes one by
//! one. The fields after `kind` belong to the sender: the responder only flips `kind`, so
//! their byte order is the sender's own (little-endian on every target we build for).
//!
//! One side of a link probes it (the prober); the other's XDP records every request it
//! answers as its own proof that the link lives, so each side learns of a silence from the
//! same frames and a link costs one request and one reply per interval, not two of each.
//! A request also carries the prober's figures for the link, so both ends cost it alike.

/// The probe EtherType: IEEE 802 "local experimental 1", never forwarded by anyone else.
pub const ETH_P_MESH_PROBE: u16 = 0x88b5;
/// First bytes of every probe header.
pub const PROBE_MAGIC: [u8; 4] = *b"x06p";
/// [`ProbeHdr::version`] this build speaks.
pub const PROBE_VERSION: u8 = 2;
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
    /// [`PROBE_MAGIC`]; XDP drops a probe-EtherType frame without it (`drop_bad_probe`).
    pub magic: [u8; 4],
    /// The sender's [`PROBE_VERSION`]; XDP drops probes of any other version.
    pub version: u8,
    /// [`PROBE_REQUEST`] or [`PROBE_REPLY`]: the responder's XDP flips it in place.
    pub kind: u8,
    /// Explicit padding that keeps the words after it on 4-byte offsets; always zero.
    pub _pad: [u8; 2],
    /// The sender's `PROBE_PEERS` index for the neighbour it probes.
    pub cookie: [u8; 4],
    /// The sender's tick: one more every interval, the same in all of that tick's requests.
    pub seq: [u8; 4],
    /// CLOCK_MONOTONIC when the request left, in ns.
    pub sent_ns: [u8; 8],
    /// The prober's smoothed round-trip time for this link in µs (0: not measured yet).
    pub rtt_us: [u8; 4],
    /// The prober's smoothed round-trip probe loss in parts per million.
    pub loss_ppm: [u8; 4],
    /// The prober's smoothed RTT jitter in µs.
    pub jitter_us: [u8; 4],
    /// Explicit padding to 40 bytes; always zero.
    pub _pad2: [u8; 4],
}

const _: () = assert!(PROBE_OFFSET + core::mem::size_of::<ProbeHdr>() <= PROBE_FRAME_LEN);

/// What the data plane learned from one neighbour's probes (`PROBE_STATE`, an array
/// indexed like `PROBE_PEERS`): the replies to ours and the requests it sent us. Written
/// by XDP only; the agent derives loss, RTT and jitter from the deltas between two reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// CLOCK_MONOTONIC of the last valid reply; 0: never.
    pub last_reply_ns: u64,
    /// Valid replies; against the requests sent, the agent's measure of loss.
    pub replies: u64,
    /// Sum of round-trip times, ns.
    pub rtt_sum_ns: u64,
    /// Sum of squared round-trip times in µs², for jitter.
    pub rtt_sq_sum_us2: u64,
    /// Highest sequence number replied to.
    pub last_seq: u32,
    /// Replies that failed validation for this slot (wrong interface or source MAC).
    pub mismatched: u32,
    /// CLOCK_MONOTONIC of the last reply or request from this neighbour, whichever is
    /// newer; 0: never. Fast reroute compares it with `DataplaneConfig::probe_dead_us`.
    pub alive_ns: u64,
    /// CLOCK_MONOTONIC of the last request from this neighbour; 0: never.
    pub last_request_ns: u64,
    /// Requests from this neighbour, answered.
    pub requests: u64,
    /// Highest sequence number among its requests.
    pub request_seq: u32,
    /// The neighbour's smoothed RTT for the link in µs, from its latest request
    /// ([`ProbeHdr::rtt_us`]); the agent uses it for links the neighbour probes.
    pub peer_rtt_us: u32,
    /// The neighbour's smoothed probe loss in parts per million, from its latest request.
    pub peer_loss_ppm: u32,
    /// The neighbour's smoothed RTT jitter in µs, from its latest request.
    pub peer_jitter_us: u32,
    /// The longest silence between two proofs of life (replies or requests) so far, µs.
    pub max_gap_us: u32,
    /// Silences longer than `DataplaneConfig::probe_dead_us`: each one made fast reroute
    /// bypass the link, rightly or not.
    pub dead_gaps: u32,
    /// The silence that the latest proof of life ended, µs. A backup whose last silence
    /// passed the dead time has only just come back, from a failure or from a pause of
    /// the whole machine, and is not switched to until it has answered once more.
    pub last_gap_us: u32,
    /// Explicit padding to the 8-byte alignment; always zero.
    pub _pad: u32,
}

impl ProbeState {
    /// Whether this neighbour's last proof of life is older than `dead_ns` (or never
    /// came): fast reroute leaves a silent primary for its backup.
    #[inline(always)]
    pub fn silent(&self, now_ns: u64, dead_ns: u64) -> bool {
        now_ns.saturating_sub(self.alive_ns) > dead_ns
    }

    /// Whether this neighbour answers and its latest answer did not end a silence longer
    /// than `dead_ns`: only a steady backup is worth switching to.
    #[inline(always)]
    pub fn steady(&self, now_ns: u64, dead_ns: u64) -> bool {
        now_ns.saturating_sub(self.alive_ns) <= dead_ns
            && u64::from(self.last_gap_us) * 1000 <= dead_ns
    }
}

/// The prober's figures a request carries ([`ProbeHdr::rtt_us`] and the two after it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFigures {
    /// Smoothed round-trip time in µs; 0 until measured.
    pub rtt_us: u32,
    /// Smoothed probe loss in parts per million.
    pub loss_ppm: u32,
    /// Smoothed RTT jitter (standard deviation) in µs.
    pub jitter_us: u32,
}

impl ProbeHdr {
    /// A request from the sender's `cookie` slot, with its figures for the link.
    pub fn request(cookie: u32, seq: u32, sent_ns: u64, figures: LinkFigures) -> Self {
        Self {
            magic: PROBE_MAGIC,
            version: PROBE_VERSION,
            kind: PROBE_REQUEST,
            _pad: [0; 2],
            cookie: cookie.to_le_bytes(),
            seq: seq.to_le_bytes(),
            sent_ns: sent_ns.to_le_bytes(),
            rtt_us: figures.rtt_us.to_le_bytes(),
            loss_ppm: figures.loss_ppm.to_le_bytes(),
            jitter_us: figures.jitter_us.to_le_bytes(),
            _pad2: [0; 4],
        }
    }
}
