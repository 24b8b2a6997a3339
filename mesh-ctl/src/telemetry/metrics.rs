//! Publishing a snapshot as Prometheus metrics (through the `metrics` facade).
//!
//! One prefix, base units, `_total` on counters. Labels are the interface and the verdict
//! reason only, never anything per flow or per neighbour: the series count is fixed by the
//! configuration, whatever the traffic.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use super::{Snapshot, events::Recent};

pub const PREFIX: &str = "x0tta6bl4_";
/// The map-read histogram, whose buckets the exporter must be told.
pub const MAP_READ: &str = "x0tta6bl4_map_read_duration_seconds";
/// Map reads take from microseconds (a few flows) to tens of milliseconds (100k).
pub const MAP_READ_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

type LinkField = (&'static str, &'static str, fn(&super::LinkView) -> u64);

const LINK_COUNTERS: [LinkField; 9] = [
    (
        "link_rx_packets_total",
        "Frames received on the interface (seen by XDP)",
        |l| l.rx_packets,
    ),
    (
        "link_rx_bytes_total",
        "Bytes received on the interface (seen by XDP)",
        |l| l.rx_bytes,
    ),
    (
        "link_forwarded_packets_total",
        "Received frames the data plane forwarded",
        |l| l.forwarded,
    ),
    (
        "link_passed_packets_total",
        "Received frames passed to the kernel",
        |l| l.passed,
    ),
    (
        "link_dropped_packets_total",
        "Received frames the data plane dropped",
        |l| l.dropped,
    ),
    (
        "link_tx_packets_total",
        "Frames the data plane forwarded out of the interface",
        |l| l.tx_packets,
    ),
    (
        "link_tx_bytes_total",
        "Bytes the data plane forwarded out of the interface",
        |l| l.tx_bytes,
    ),
    (
        "link_host_tx_packets_total",
        "Frames the host's own stack sent on the interface",
        |l| l.host_tx_packets,
    ),
    (
        "link_host_tx_bytes_total",
        "Bytes the host's own stack sent on the interface",
        |l| l.host_tx_bytes,
    ),
];

fn name(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

/// Registers help text and units; call once after installing the recorder.
pub fn describe() {
    for (suffix, help, _) in LINK_COUNTERS {
        let unit = if suffix.contains("bytes") {
            Unit::Bytes
        } else {
            Unit::Count
        };
        describe_counter!(name(suffix), unit, help);
    }
    describe_counter!(
        name("packets_total"),
        Unit::Count,
        "Frames by data plane verdict reason"
    );
    describe_gauge!(name("flows"), Unit::Count, "Flows in the flow table");
    describe_gauge!(
        name("flow_table_capacity"),
        Unit::Count,
        "Flow table capacity"
    );
    describe_gauge!(
        name("flow_table_fill_ratio"),
        "Flows in the table over its capacity"
    );
    describe_counter!(
        name("flows_created_total"),
        Unit::Count,
        "Flows the data plane created"
    );
    describe_counter!(
        name("flows_evicted_total"),
        Unit::Count,
        "Flows the full table evicted (least recently used)"
    );
    describe_counter!(
        name("flows_expired_total"),
        Unit::Count,
        "Idle flows the agent removed"
    );
    describe_counter!(
        name("flow_insert_failures_total"),
        Unit::Count,
        "Flows the kernel could not insert"
    );
    describe_counter!(
        name("events_total"),
        Unit::Count,
        "Ring-buffer events the agent read, by kind"
    );
    describe_counter!(
        name("events_lost_total"),
        Unit::Count,
        "Events lost to a full ring buffer"
    );
    describe_counter!(
        name("drop_events_suppressed_total"),
        Unit::Count,
        "Drop events held back by the per-CPU rate limit"
    );
    describe_counter!(
        name("egress_frames_total"),
        Unit::Count,
        "Frames the TC egress program saw"
    );
    describe_counter!(
        name("egress_unparsed_total"),
        Unit::Count,
        "Egress frames counted per link but not per flow"
    );
    describe_histogram!(
        MAP_READ,
        Unit::Seconds,
        "Time to read and aggregate the telemetry maps"
    );
}

/// Publishes one snapshot.
pub fn publish(s: &Snapshot, recent: Option<&Recent>) {
    for l in &s.links {
        for (suffix, _, field) in LINK_COUNTERS {
            counter!(name(suffix), "link" => l.link.clone()).absolute(field(l));
        }
    }
    for r in &s.reasons {
        counter!(name("packets_total"), "reason" => r.reason.clone(), "action" => r.action.clone())
            .absolute(r.packets);
    }
    let t = &s.flow_table;
    gauge!(name("flows")).set(t.active as f64);
    gauge!(name("flow_table_capacity")).set(f64::from(t.capacity));
    gauge!(name("flow_table_fill_ratio")).set(t.fill_ratio);
    counter!(name("flows_created_total")).absolute(t.created_total);
    counter!(name("flows_evicted_total")).absolute(t.evicted_total);
    counter!(name("flows_expired_total")).absolute(t.expired_total);
    counter!(name("flow_insert_failures_total")).absolute(t.insert_failed_total);
    let c = |n: &str| {
        s.counters
            .iter()
            .find(|(k, _)| k == n)
            .map_or(0, |(_, v)| *v)
    };
    counter!(name("events_lost_total")).absolute(c("events_lost"));
    counter!(name("drop_events_suppressed_total")).absolute(c("drop_events_suppressed"));
    counter!(name("egress_frames_total")).absolute(c("egress_frames"));
    counter!(name("egress_unparsed_total")).absolute(c("egress_unparsed"));
    if let Some(r) = recent {
        counter!(name("events_total"), "kind" => "new_flow").absolute(r.new_flows);
        counter!(name("events_total"), "kind" => "drop").absolute(r.drops);
        counter!(name("events_total"), "kind" => "malformed").absolute(r.malformed);
    }
    metrics::histogram!(MAP_READ).record(s.read_ms / 1e3);
}
