use mesh_common::telemetry::{FlowStats, LinkStats};

use super::*;

const S: u64 = 1_000_000_000;

fn flow(port: u16, packets: u64, bytes: u64, last_ns: u64) -> FlowRecord {
    FlowRecord {
        key: FlowKey {
            ifindex: 3,
            src: [u32::from_ne_bytes([10, 0, 1, 1]), 0, 0, 0],
            dst: [u32::from_ne_bytes([10, 0, 2, 1]), 0, 0, 0],
            src_port: port,
            dst_port: 5201,
            proto: 17,
            family: 4,
            ..Default::default()
        },
        stats: FlowStats {
            packets,
            bytes,
            first_ns: 1,
            last_ns,
            forwarded: packets,
            ..Default::default()
        },
    }
}

fn reading<'a>(
    now_ns: u64,
    flows: &'a [FlowRecord],
    links: &'a [LinkStats],
    created: u64,
) -> Reading<'a> {
    let mut counters = [0; counter::COUNT as usize];
    counters[counter::FLOWS_CREATED as usize] = created;
    Reading {
        now_ns,
        flows,
        flow_capacity: 1000,
        links,
        neighbors: &[],
        reasons: &[],
        counters,
        read_ns: 0,
    }
}

fn tracker() -> Tracker {
    Tracker::new(
        vec![LinkName {
            name: "r-eth0".into(),
            ifindex: 3,
        }],
        10 * S,
        2,
    )
}

#[test]
fn rates_come_from_deltas_over_the_interval() {
    let mut t = tracker();
    let links = [LinkStats {
        rx_packets: 100,
        rx_bytes: 10_000,
        ..Default::default()
    }];
    t.update(&reading(S, &[flow(1, 10, 1000, S)], &links, 1));
    let links2 = [LinkStats {
        rx_packets: 300,
        rx_bytes: 30_000,
        ..Default::default()
    }];
    let (s, _) = t.update(&reading(3 * S, &[flow(1, 50, 5000, 3 * S)], &links2, 1));
    assert_eq!(s.interval_s, 2.0);
    assert_eq!(s.top_rate[0].pps, 20.0, "40 packets in 2 s");
    assert_eq!(s.top_rate[0].bps, 16_000.0, "4000 bytes in 2 s");
    assert_eq!(s.links[0].rx_pps, 100.0);
    assert_eq!(s.links[0].rx_bps, 80_000.0);
    assert_eq!(s.top_rate[0].src, "10.0.1.1:1");
    assert_eq!(s.top_rate[0].link, "r-eth0");
}

#[test]
fn idle_flows_are_expired_and_not_shown() {
    let mut t = tracker();
    let flows = [flow(1, 10, 1000, S), flow(2, 10, 1000, 20 * S)];
    let (s, d) = t.update(&reading(20 * S, &flows, &[], 2));
    assert_eq!(d.expire, vec![flows[0].key]);
    assert_eq!(s.top_bytes.len(), 1);
    t.expired(1);
    let (s, _) = t.update(&reading(21 * S, &flows[1..], &[], 5));
    assert_eq!(s.flow_table.expired_total, 1);
    // 5 created, 1 expired, 1 present: 3 must have been evicted.
    assert_eq!(s.flow_table.evicted_total, 3);
}

#[test]
fn top_k_keeps_the_largest_in_order() {
    let mut t = tracker();
    let flows = [flow(1, 5, 100, S), flow(2, 1, 900, S), flow(3, 9, 500, S)];
    let (s, _) = t.update(&reading(S, &flows, &[], 3));
    let ports = |v: &[FlowView]| v.iter().map(|f| f.src.clone()).collect::<Vec<_>>();
    assert_eq!(ports(&s.top_bytes), ["10.0.1.1:2", "10.0.1.1:3"]);
    assert_eq!(ports(&s.top_packets), ["10.0.1.1:3", "10.0.1.1:1"]);
}

#[test]
fn events_decode_and_refuse_garbage() {
    use mesh_common::telemetry::{EVENT_DROP, Event};
    let e = Event {
        kind: EVENT_DROP,
        reason: Reason::DropBadIhl as u32,
        len: 60,
        ..Default::default()
    };
    // SAFETY: Event is plain integers.
    let bytes = unsafe {
        std::slice::from_raw_parts((&e as *const Event).cast::<u8>(), size_of::<Event>())
    };
    let got = events::decode(bytes).expect("a valid event");
    let v = events::view(&got, 0.0, &|i| format!("if{i}"));
    assert_eq!(v.reason, "drop_bad_ihl");
    assert_eq!(v.flow, None);
    assert!(events::decode(&bytes[1..]).is_err());
    let mut bad = bytes.to_vec();
    bad[0] = 9;
    assert_eq!(events::decode(&bad), Err(events::EventError::Kind(9)));
}
