//! The shapes `meshctl` shows and the API serves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mesh_common::{
    Reason,
    reason::{XDP_DROP, XDP_PASS},
    telemetry::{DIR_EGRESS, FlowKey, LinkStats, NeighborKey, NeighborStats, counter},
};
use serde::{Deserialize, Serialize};

use super::LinkName;
use crate::{config::MacAddr, dataplane::FlowRecord};

/// How `meshctl flows` orders flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum SortKey {
    #[default]
    Bytes,
    Packets,
    /// Bits per second over the last interval.
    Rate,
}

/// One flow as people see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowView {
    /// `ingress` (seen by XDP) or `egress` (sent by this host, seen by TC).
    pub direction: String,
    pub link: String,
    pub protocol: String,
    pub src: String,
    pub dst: String,
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
    pub bps: f64,
    pub forwarded: u64,
    pub passed: u64,
    pub dropped: u64,
    /// TCP flags seen, e.g. `SA` (SYN, ACK); empty for other protocols.
    pub tcp_flags: String,
    pub age_s: f64,
    pub idle_s: f64,
}

/// Converts a flow record; `name_of` names an ifindex.
pub fn flow_view(
    f: &FlowRecord,
    pps: f64,
    bps: f64,
    now_ns: u64,
    name_of: &dyn Fn(u32) -> String,
) -> FlowView {
    let k = &f.key;
    let (src, dst) = (address(k, &k.src), address(k, &k.dst));
    let endpoint = |ip: IpAddr, port: u16| match (ip, has_ports(k.proto)) {
        (IpAddr::V6(ip), true) => format!("[{ip}]:{port}"),
        (ip, true) => format!("{ip}:{port}"),
        (ip, false) => ip.to_string(),
    };
    FlowView {
        direction: if k.direction == DIR_EGRESS {
            "egress"
        } else {
            "ingress"
        }
        .to_owned(),
        link: name_of(k.ifindex),
        protocol: protocol(k.proto),
        src: endpoint(src, k.src_port),
        dst: endpoint(dst, k.dst_port),
        packets: f.stats.packets,
        bytes: f.stats.bytes,
        pps,
        bps,
        forwarded: f.stats.forwarded,
        passed: f.stats.passed,
        dropped: f.stats.dropped,
        tcp_flags: tcp_flags(f.stats.tcp_flags),
        age_s: now_ns.saturating_sub(f.stats.first_ns) as f64 / 1e9,
        idle_s: now_ns.saturating_sub(f.stats.last_ns) as f64 / 1e9,
    }
}

/// A flow key's address words as an IP address.
pub fn address(k: &FlowKey, words: &[u32; 4]) -> IpAddr {
    let mut b = [0u8; 16];
    for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    if k.family == 4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

fn protocol(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        other => other.to_string(),
    }
}

/// `FSRPAUEC` letters for the flags set, in the order tcpdump uses.
fn tcp_flags(f: u32) -> String {
    const NAMES: [(u32, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// A mesh interface's counters and rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    pub link: String,
    pub ifindex: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub passed: u64,
    pub dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub host_tx_packets: u64,
    pub host_tx_bytes: u64,
    pub rx_pps: f64,
    pub rx_bps: f64,
    pub tx_pps: f64,
    pub tx_bps: f64,
}

impl LinkView {
    /// `rate(field)` gives a field's per-second rate over the last interval.
    pub fn new(l: &LinkName, s: &LinkStats, rate: impl Fn(fn(&LinkStats) -> u64) -> f64) -> Self {
        Self {
            link: l.name.clone(),
            ifindex: l.ifindex,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            forwarded: s.forwarded,
            passed: s.passed,
            dropped: s.dropped,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            host_tx_packets: s.host_tx_packets,
            host_tx_bytes: s.host_tx_bytes,
            rx_pps: rate(|s| s.rx_packets),
            rx_bps: rate(|s| s.rx_bytes) * 8.0,
            tx_pps: rate(|s| s.tx_packets + s.host_tx_packets),
            tx_bps: rate(|s| s.tx_bytes + s.host_tx_bytes) * 8.0,
        }
    }
}

/// A neighbour (interface and MAC) and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighborView {
    pub link: String,
    pub mac: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub host_tx_packets: u64,
    pub host_tx_bytes: u64,
}

impl NeighborView {
    pub fn new(link: &str, k: &NeighborKey, s: &NeighborStats) -> Self {
        Self {
            link: link.to_owned(),
            mac: MacAddr(k.mac).to_string(),
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            host_tx_packets: s.host_tx_packets,
            host_tx_bytes: s.host_tx_bytes,
        }
    }
}

/// One verdict reason's counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropView {
    pub reason: String,
    /// `forward`, `pass` or `drop`.
    pub action: String,
    pub packets: u64,
    pub pps: f64,
    pub description: String,
}

impl DropView {
    pub fn new(r: Reason, packets: u64, pps: f64) -> Self {
        Self {
            reason: r.name().to_owned(),
            action: action_name(r.action()).to_owned(),
            packets,
            pps,
            description: r.describe().to_owned(),
        }
    }
}

pub fn action_name(action: u32) -> &'static str {
    match action {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        _ => "forward",
    }
}

/// The flow table's fill and churn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowTableView {
    pub active: u64,
    pub capacity: u32,
    pub fill_ratio: f64,
    pub created_total: u64,
    /// Pushed out by the LRU when the table was full.
    pub evicted_total: u64,
    /// Removed by the agent after the idle timeout.
    pub expired_total: u64,
    pub insert_failed_total: u64,
}

/// An event from the data plane's ring buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// `new_flow` or `drop`.
    pub kind: String,
    /// Seconds since the Unix epoch when the agent read it.
    pub at_unix_s: f64,
    pub link: String,
    pub reason: String,
    pub len: u32,
    /// The flow, when the frame was parsed far enough to have one.
    pub flow: Option<String>,
}

/// Everything one interval produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the previous reading (0 for the first).
    pub interval_s: f64,
    pub read_ms: f64,
    pub flow_table: FlowTableView,
    pub top_bytes: Vec<FlowView>,
    pub top_packets: Vec<FlowView>,
    pub top_rate: Vec<FlowView>,
    pub links: Vec<LinkView>,
    pub neighbors: Vec<NeighborView>,
    pub reasons: Vec<DropView>,
    /// The data plane's bookkeeping counters by name.
    pub counters: Vec<(String, u64)>,
}

pub(super) fn counter_object(c: &[u64; counter::COUNT as usize]) -> Vec<(String, u64)> {
    COUNTER_NAMES
        .iter()
        .map(|(i, name)| ((*name).to_owned(), c[*i as usize]))
        .collect()
}

/// The `TELEMETRY` counters' names, as metrics and JSON show them.
pub const COUNTER_NAMES: [(u32, &str); counter::COUNT as usize] = [
    (counter::FLOWS_CREATED, "flows_created"),
    (counter::FLOWS_INSERT_FAILED, "flow_insert_failures"),
    (counter::EVENTS_SENT, "events_sent"),
    (counter::EVENTS_LOST, "events_lost"),
    (counter::DROP_EVENTS_SUPPRESSED, "drop_events_suppressed"),
    (counter::NEIGHBORS_CREATED, "neighbors_created"),
    (counter::EGRESS_FRAMES, "egress_frames"),
    (counter::EGRESS_UNPARSED, "egress_unparsed"),
];
