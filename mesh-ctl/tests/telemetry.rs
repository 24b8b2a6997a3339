//! The data plane's telemetry through BPF_PROG_TEST_RUN: per-flow, per-link and
//! per-neighbour counters, the bookkeeping counters and the event ring buffer, as the real
//! program in the running kernel keeps them.
//!
//! Each test runs in a network namespace of its own (unshared by its thread), so the veth
//! egress ports it creates vanish with it. Needs root: the tests are ignored unless run
//! with `--include-ignored`.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use mesh_common::{
    Reason,
    maps::FLOWS_MIN_CAPACITY,
    parse::{Bytes, Family, parse},
    reason::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    telemetry::{
        DIR_INGRESS, EVENT_DROP, EVENT_NEW_FLOW, Event, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, counter,
    },
};
use mesh_ctl::dataplane::Dataplane;
use mesh_lab::{
    cases::{self, ECMP_WIDTH, neighbor_mac, truncation_sources, verdict_cases},
    frames::{self, HOST_MAC, L4, ROUTER_MAC},
};
use support::{LOOPBACK, router_with};

/// `LINKS` slots in use: the ingress (0) and one per egress port.
const SLOTS: u32 = 1 + ECMP_WIDTH as u32;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn flows(dp: &Dataplane) -> HashMap<FlowKey, FlowStats> {
    let mut out = Vec::new();
    let n = dp.read_flows(&mut out).expect("reading FLOWS");
    assert_eq!(n, out.len(), "read_flows count disagrees with its records");
    let map: HashMap<_, _> = out.iter().map(|r| (r.key, r.stats)).collect();
    assert_eq!(map.len(), out.len(), "a flow key was listed twice");
    map
}

fn neighbors(dp: &Dataplane) -> HashMap<NeighborKey, NeighborStats> {
    dp.read_neighbors()
        .expect("reading NEIGHBORS")
        .into_iter()
        .collect()
}

fn links(dp: &Dataplane) -> Vec<LinkStats> {
    dp.read_links(SLOTS).expect("reading LINKS")
}

fn telemetry(dp: &Dataplane) -> [u64; counter::COUNT as usize] {
    dp.telemetry_counters().expect("reading TELEMETRY")
}

fn reasons(dp: &Dataplane) -> HashMap<Reason, u64> {
    dp.reasons().expect("reason counters").into_iter().collect()
}

/// Every event waiting in the ring buffer.
fn drain(rb: &mut RingBuf<MapData>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(item) = rb.next() {
        assert_eq!(
            item.len(),
            size_of::<Event>(),
            "ring buffer record of the wrong size"
        );
        // SAFETY: the record is exactly one `Event` (checked above), which is plain
        // integers; the ring buffer only guarantees 8-byte alignment, hence unaligned.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
    }
    out
}

fn v4_words(a: Ipv4Addr) -> [u32; 4] {
    [u32::from_ne_bytes(a.octets()), 0, 0, 0]
}

fn v6_words(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    std::array::from_fn(|i| {
        u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

/// The key the program should file a frame under, as the userspace parser sees it.
fn parsed_key(frame: &[u8]) -> Option<(FlowKey, u8)> {
    let p = parse(&Bytes(frame)).ok()?;
    Some((
        FlowKey::new(LOOPBACK, DIR_INGRESS, p.family, &p.flow),
        p.tcp_flags,
    ))
}

/// Sets the TCP flags byte of a frame built by `frames` (no VLAN tags, no options).
fn set_tcp_flags(frame: &mut [u8], family: Family, flags: u8) {
    let l4 = match family {
        Family::V4 => 14 + 20,
        Family::V6 => 14 + 40,
    };
    frame[l4 + 13] = flags;
}

fn udp_v4(src_port: u16) -> Vec<u8> {
    frames::ipv4(
        ROUTER_MAC,
        cases::SRC_V4,
        cases::ONE_V4,
        64,
        L4::Udp {
            src: src_port,
            dst: 5201,
        },
        32,
    )
}

fn udp_v6(src_port: u16) -> Vec<u8> {
    frames::ipv6(
        ROUTER_MAC,
        cases::SRC_V6,
        cases::ONE_V6,
        64,
        L4::Udp {
            src: src_port,
            dst: 5201,
        },
        32,
    )
}

fn tcp(family: Family, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        src: 40_001,
        dst: 443,
    };
    let mut f = match family {
        Family::V4 => frames::ipv4(ROUTER_MAC, cases::SRC_V4, cases::ONE_V4, 64, l4, 16),
        Family::V6 => frames::ipv6(ROUTER_MAC, cases::SRC_V6, cases::ONE_V6, 64, l4, 16),
    };
    set_tcp_flags(&mut f, family, flags);
    f
}

/// Runs a frame and insists it is forwarded.
fn forward(dp: &Dataplane, name: &str, frame: &[u8]) {
    let out = dp.test_run(frame, 1).expect("test_run");
    assert_eq!(out.action, XDP_REDIRECT, "{name}: verdict");
}

#[test]
#[ignore = "needs root"]
fn one_frame_updates_exactly_its_flow_links_and_neighbours() {
    let (dp, egress) = router_with(65_536, |_| {});
    let v6_flags = TCP_SYN | TCP_ACK;
    let cases = [
        (
            "udp v4",
            udp_v4(40_000),
            FlowKey {
                ifindex: LOOPBACK,
                src: v4_words(cases::SRC_V4),
                dst: v4_words(cases::ONE_V4),
                src_port: 40_000,
                dst_port: 5201,
                proto: 17,
                family: 4,
                direction: DIR_INGRESS,
                _pad: 0,
            },
            0,
        ),
        (
            "tcp v6",
            tcp(Family::V6, v6_flags),
            FlowKey {
                ifindex: LOOPBACK,
                src: v6_words(cases::SRC_V6),
                dst: v6_words(cases::ONE_V6),
                src_port: 40_001,
                dst_port: 443,
                proto: 6,
                family: 6,
                direction: DIR_INGRESS,
                _pad: 0,
            },
            u32::from(v6_flags),
        ),
    ];
    // The one-hop group's only member: the first egress port, LINKS slot 1.
    let (out_ifindex, out_slot) = (egress[0].0, 1);
    let rx_neighbor = NeighborKey {
        ifindex: LOOPBACK,
        mac: HOST_MAC,
        _pad: [0; 2],
    };
    let tx_neighbor = NeighborKey {
        ifindex: out_ifindex,
        mac: neighbor_mac(0, 0),
        _pad: [0; 2],
    };

    for (name, frame, want, want_flags) in cases {
        let len = frame.len() as u64;
        let (flows0, links0, neigh0) = (flows(&dp), links(&dp), neighbors(&dp));
        forward(&dp, name, &frame);
        let (flows1, links1, neigh1) = (flows(&dp), links(&dp), neighbors(&dp));

        let new: Vec<_> = flows1.keys().filter(|k| !flows0.contains_key(k)).collect();
        assert_eq!(new.len(), 1, "{name}: new flows {new:?}");
        let got = *new[0];
        assert_eq!(got.ifindex, want.ifindex, "{name}: ifindex");
        assert_eq!(got.family, want.family, "{name}: family");
        assert_eq!(got.proto, want.proto, "{name}: proto");
        assert_eq!(got.src, want.src, "{name}: source address words");
        assert_eq!(got.dst, want.dst, "{name}: destination address words");
        assert_eq!(got.src_port, want.src_port, "{name}: source port");
        assert_eq!(got.dst_port, want.dst_port, "{name}: destination port");
        assert_eq!(got.direction, want.direction, "{name}: direction");
        assert_eq!(got, want, "{name}: whole key (padding included)");
        for (k, v) in &flows0 {
            assert_eq!(flows1.get(k), Some(v), "{name}: another flow changed");
        }

        let s = flows1[&got];
        assert_eq!(
            (s.packets, s.bytes, s.forwarded, s.passed, s.dropped),
            (1, len, 1, 0, 0),
            "{name}: packets, bytes, forwarded, passed, dropped"
        );
        assert!(
            s.first_ns != 0 && s.first_ns <= s.last_ns,
            "{name}: first_ns {} last_ns {}",
            s.first_ns,
            s.last_ns
        );
        assert_eq!(s.tcp_flags, want_flags, "{name}: tcp_flags");

        let mut want_links = links0.clone();
        want_links[0].rx_packets += 1;
        want_links[0].rx_bytes += len;
        want_links[0].forwarded += 1;
        want_links[out_slot].tx_packets += 1;
        want_links[out_slot].tx_bytes += len;
        assert_eq!(links1, want_links, "{name}: link counters");

        let mut want_neigh = neigh0.clone();
        let rx = want_neigh.entry(rx_neighbor).or_default();
        rx.rx_packets += 1;
        rx.rx_bytes += len;
        let tx = want_neigh.entry(tx_neighbor).or_default();
        tx.tx_packets += 1;
        tx.tx_bytes += len;
        assert_eq!(neigh1, want_neigh, "{name}: neighbour counters");

        // The same frame again belongs to the same flow.
        forward(&dp, name, &frame);
        let flows2 = flows(&dp);
        assert_eq!(
            flows2.len(),
            flows1.len(),
            "{name}: a repeated frame made a new flow"
        );
        let s2 = flows2[&got];
        assert_eq!(
            (s2.packets, s2.bytes, s2.forwarded, s2.passed, s2.dropped),
            (2, 2 * len, 2, 0, 0),
            "{name}: after the second frame"
        );
        assert_eq!(s2.first_ns, s.first_ns, "{name}: first_ns moved");
        assert!(s2.last_ns >= s.last_ns, "{name}: last_ns went back");
        assert_eq!(s2.tcp_flags, want_flags, "{name}: tcp_flags");
    }
}

/// Every reason the kernel lets `test_run` produce: it refuses frames shorter than an
/// Ethernet header, so `drop_trunc_ethernet` is left to the parser tests.
fn reachable(r: Reason) -> bool {
    r != Reason::DropTruncEthernet
}

#[test]
#[ignore = "needs root"]
fn every_reason_counts_on_its_link_and_every_drop_sends_an_event() {
    let (mut dp, egress) = router_with(65_536, |c| {
        // Far above what this test sends: every drop must make an event.
        c.drop_events_per_s = 1_000_000;
    });
    let mut rb = dp.take_events().expect("event ring buffer");
    let mut frames: Vec<(String, Vec<u8>, Reason)> = verdict_cases()
        .into_iter()
        .map(|c| (c.name.to_owned(), c.frame, c.expect))
        .collect();
    // The verdict table has no frame cut inside a VLAN tag or an IPv6 header.
    for (name, frame) in truncation_sources() {
        for cut in 14..frame.len() {
            let expect = parse(&Bytes(&frame[..cut])).expect_err("truncated frames never parse");
            frames.push((
                format!("{name} cut at {cut}"),
                frame[..cut].to_vec(),
                expect,
            ));
        }
    }

    let mut seen = HashSet::new();
    for (name, frame, expect) in &frames {
        let len = frame.len() as u64;
        let (reasons0, links0, flows0, tele0) =
            (reasons(&dp), links(&dp), flows(&dp), telemetry(&dp));
        let out = dp.test_run(frame, 1).expect("test_run");
        let (reasons1, links1, flows1, tele1) =
            (reasons(&dp), links(&dp), flows(&dp), telemetry(&dp));
        let events = drain(&mut rb);
        assert_eq!(out.action, expect.action(), "{name}: verdict");
        seen.insert(*expect);

        for r in Reason::ALL {
            let want = reasons0[r] + u64::from(r == expect);
            assert_eq!(reasons1[r], want, "{name}: counter {}", r.name());
        }

        let mut want_links = links0.clone();
        want_links[0].rx_packets += 1;
        want_links[0].rx_bytes += len;
        match expect.action() {
            XDP_REDIRECT => {
                want_links[0].forwarded += 1;
                let slot = 1 + egress
                    .iter()
                    .position(|(_, mac)| out.frame[6..12] == *mac)
                    .unwrap_or_else(|| panic!("{name}: forwarded from no egress port"));
                want_links[slot].tx_packets += 1;
                want_links[slot].tx_bytes += len;
            }
            XDP_PASS => want_links[0].passed += 1,
            _ => want_links[0].dropped += 1,
        }
        assert_eq!(links1, want_links, "{name}: link counters");

        // Frames that parse belong to a flow, whatever their verdict; the others to none.
        let mut want_flows = flows0.clone();
        if let Some((key, flags)) = parsed_key(frame) {
            let s = want_flows.entry(key).or_default();
            s.packets += 1;
            s.bytes += len;
            s.tcp_flags |= u32::from(flags);
            match expect.action() {
                XDP_REDIRECT => s.forwarded += 1,
                XDP_PASS => s.passed += 1,
                _ => s.dropped += 1,
            }
            let got = flows1
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: no flow {key:?}"));
            assert!(
                got.first_ns != 0 && got.first_ns <= got.last_ns,
                "{name}: flow times {got:?}"
            );
            // A known flow keeps its first time; a new one takes this frame's.
            if s.first_ns == 0 {
                s.first_ns = got.first_ns;
            }
            assert!(got.last_ns >= s.last_ns, "{name}: last_ns went back");
            s.last_ns = got.last_ns;
        }
        assert_eq!(flows1, want_flows, "{name}: flow counters");

        if expect.action() == XDP_DROP {
            assert_eq!(events.len(), 1, "{name}: events {events:?}");
            let e = events[0];
            assert_eq!(e.kind, EVENT_DROP, "{name}: event kind");
            assert_eq!(e.reason, *expect as u32, "{name}: event reason");
            assert_eq!(u64::from(e.len), len, "{name}: event length");
            assert_ne!(e.ts_ns, 0, "{name}: event time");
            if let Some((key, _)) = parsed_key(frame) {
                // Well-formed but refused (a martian source): the event names its flow.
                assert_eq!(e.has_key, 1, "{name}: has_key");
                assert_eq!(e.key, key, "{name}: event key");
            } else {
                // Malformed frames never parse, so no flow to report, only where they
                // came in.
                assert_eq!(e.has_key, 0, "{name}: has_key");
                assert_eq!(
                    e.key,
                    FlowKey {
                        ifindex: LOOPBACK,
                        ..FlowKey::default()
                    },
                    "{name}: event key"
                );
            }
            assert_eq!(
                tele1[counter::EVENTS_SENT as usize],
                tele0[counter::EVENTS_SENT as usize] + 1,
                "{name}: EVENTS_SENT"
            );
        } else {
            assert!(events.is_empty(), "{name}: not a drop, yet {events:?}");
        }
    }
    // Not mesh and not ready need other tables; xdp_verdicts covers them. Probe frames
    // are link maintenance, deliberately not counted on links; fast reroute needs probe
    // state: the mesh lab covers those; a blocked or rate-limited source needs a
    // blocklist entry, which xdp_verdicts covers.
    let elsewhere = [
        Reason::PassNotMesh,
        Reason::PassNotReady,
        Reason::ForwardedBackupV4,
        Reason::ForwardedBackupV6,
        Reason::ProbeEchoed,
        Reason::ProbeReply,
        Reason::DropBadProbe,
        Reason::DropBlocked,
        Reason::DropRateLimited,
    ];
    let missing: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| reachable(**r) && !elsewhere.contains(r))
        .filter(|r| !seen.contains(r))
        .map(|r| r.name())
        .collect();
    assert!(missing.is_empty(), "no frame for {missing:?}");
    let tele = telemetry(&dp);
    assert_eq!(tele[counter::EVENTS_LOST as usize], 0, "events lost");
    assert_eq!(
        tele[counter::DROP_EVENTS_SUPPRESSED as usize],
        0,
        "drop events suppressed under a budget never reached"
    );
}

/// Pins the calling thread to one CPU, so every `test_run` draws on one CPU's budget.
fn pin_to_one_cpu() {
    use nix::{
        sched::{CpuSet, sched_getaffinity, sched_setaffinity},
        unistd::Pid,
    };
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    let cpu = (0..CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .expect("some CPU is allowed");
    let mut one = CpuSet::new();
    one.set(cpu).expect("CPU index in range");
    sched_setaffinity(Pid::from_raw(0), &one).expect("sched_setaffinity");
}

#[test]
#[ignore = "needs root"]
fn drop_events_are_rate_limited_per_cpu_per_second() {
    const BUDGET: u32 = 5;
    const BURST: u64 = 50;
    let (mut dp, _) = router_with(65_536, |c| {
        c.drop_events_per_s = BUDGET;
    });
    pin_to_one_cpu();
    let mut rb = dp.take_events().expect("event ring buffer");
    let malformed = verdict_cases()
        .into_iter()
        .find(|c| c.expect == Reason::DropBadIhl)
        .expect("the verdict table has a bad IHL frame");

    let tele0 = telemetry(&dp);
    let start = Instant::now();
    for _ in 0..BURST {
        let out = dp.test_run(&malformed.frame, 1).expect("test_run");
        assert_eq!(out.action, XDP_DROP, "malformed frame verdict");
    }
    let took = start.elapsed();
    let tele1 = telemetry(&dp);
    let events = drain(&mut rb);
    let delta = |i: u32| tele1[i as usize] - tele0[i as usize];

    for e in &events {
        assert_eq!(
            (e.kind, e.reason),
            (EVENT_DROP, Reason::DropBadIhl as u32),
            "event {e:?}"
        );
    }
    let sent = events.len() as u64;
    assert_eq!(
        delta(counter::EVENTS_SENT),
        sent,
        "EVENTS_SENT vs ring buffer"
    );
    assert_eq!(delta(counter::EVENTS_LOST), 0, "EVENTS_LOST");
    let suppressed = delta(counter::DROP_EVENTS_SUPPRESSED);
    assert_eq!(
        sent + suppressed,
        BURST,
        "sent {sent} + suppressed {suppressed}"
    );
    // One CPU, and (unless this machine is very slow) one one-second window.
    let windows = took.as_secs() + 1;
    assert!(
        sent <= u64::from(BUDGET) * windows,
        "{sent} events from one CPU in {took:?} with a budget of {BUDGET}/s"
    );
    if windows == 1 {
        assert_eq!(
            sent,
            u64::from(BUDGET),
            "a fresh budget is spent in full within the second"
        );
    }

    // The budget comes back with the next second.
    std::thread::sleep(Duration::from_millis(1100));
    let out = dp.test_run(&malformed.frame, 1).expect("test_run");
    assert_eq!(out.action, XDP_DROP);
    let later = drain(&mut rb);
    assert_eq!(later.len(), 1, "events a second later: {later:?}");
}

#[test]
#[ignore = "needs root"]
fn new_flows_are_sampled_into_events() {
    const FLOWS: u16 = 16;
    for sample_n in [1, 0] {
        let test = format!("new_flows_are_sampled_into_events (1 in {sample_n})");
        // Each round gets its own thread, hence its own namespace and fresh counters.
        std::thread::scope(|s| {
            s.spawn(|| {
                let (mut dp, _) = router_with(65_536, |c| c.flow_sample_n = sample_n);
                let mut rb = dp.take_events().expect("event ring buffer");
                for port in 0..FLOWS {
                    for (family, frame) in [(4, udp_v4(30_000 + port)), (6, udp_v6(30_000 + port))]
                    {
                        let name = format!("{test}: v{family} port {}", 30_000 + port);
                        let (key, _) = parsed_key(&frame).expect("parses");
                        forward(&dp, &name, &frame);
                        let events = drain(&mut rb);
                        if sample_n == 0 {
                            assert!(events.is_empty(), "{name}: {events:?}");
                        } else {
                            assert_eq!(events.len(), 1, "{name}: {events:?}");
                            let e = events[0];
                            assert_eq!(e.kind, EVENT_NEW_FLOW, "{name}: kind");
                            assert_eq!(e.has_key, 1, "{name}: has_key");
                            assert_eq!(e.key, key, "{name}: key");
                            assert_eq!(e.len as usize, frame.len(), "{name}: length");
                            assert_ne!(e.ts_ns, 0, "{name}: time");
                            let verdict = if family == 4 {
                                Reason::ForwardedV4
                            } else {
                                Reason::ForwardedV6
                            };
                            assert_eq!(e.reason, verdict as u32, "{name}: reason");
                        }
                        // Only new flows are sampled.
                        forward(&dp, &name, &frame);
                        let again = drain(&mut rb);
                        assert!(again.is_empty(), "{name}: known flow sampled: {again:?}");
                    }
                }
                // A flow the kernel gets is new too, and its event names that verdict.
                let unrouted = frames::ipv4(
                    ROUTER_MAC,
                    cases::SRC_V4,
                    cases::UNROUTED_V4,
                    64,
                    L4::Udp { src: 1, dst: 2 },
                    8,
                );
                let out = dp.test_run(&unrouted, 1).expect("test_run");
                assert_eq!(out.action, XDP_PASS, "{test}: unrouted verdict");
                let events = drain(&mut rb);
                let want: Vec<_> = (sample_n != 0)
                    .then_some((EVENT_NEW_FLOW, Reason::PassNoRoute as u32))
                    .into_iter()
                    .collect();
                let got: Vec<_> = events.iter().map(|e| (e.kind, e.reason)).collect();
                assert_eq!(got, want, "{test}: unrouted flow events");

                let flows_sent = u64::from(FLOWS) * 2 + 1;
                let tele = telemetry(&dp);
                assert_eq!(
                    tele[counter::FLOWS_CREATED as usize],
                    flows_sent,
                    "{test}: FLOWS_CREATED"
                );
                assert_eq!(
                    tele[counter::EVENTS_SENT as usize],
                    if sample_n == 0 { 0 } else { flows_sent },
                    "{test}: EVENTS_SENT"
                );
            });
        });
    }
}

#[test]
#[ignore = "needs root"]
fn a_full_flow_table_evicts_and_never_stops_forwarding() {
    const SENT: u16 = 2_000;
    let (dp, _) = router_with(FLOWS_MIN_CAPACITY, |_| {});
    assert_eq!(dp.flow_capacity(), FLOWS_MIN_CAPACITY);
    let reasons0 = reasons(&dp);
    for i in 0..SENT {
        forward(&dp, &format!("flow {i}"), &udp_v4(10_000 + i));
    }
    let reasons1 = reasons(&dp);
    let forwarded = reasons1[&Reason::ForwardedV4] - reasons0[&Reason::ForwardedV4];
    assert_eq!(forwarded, u64::from(SENT), "forwarded_v4 counter");
    let tele = telemetry(&dp);
    let created = tele[counter::FLOWS_CREATED as usize];
    assert_eq!(created, u64::from(SENT), "FLOWS_CREATED");
    assert_eq!(
        tele[counter::FLOWS_INSERT_FAILED as usize],
        0,
        "FLOWS_INSERT_FAILED"
    );
    let present = flows(&dp).len() as u64;
    assert!(
        present <= u64::from(FLOWS_MIN_CAPACITY),
        "{present} flows in a table of {FLOWS_MIN_CAPACITY}"
    );
    let evicted = created - present;
    assert!(
        evicted > 0,
        "created {created}, present {present}: nothing evicted"
    );
}

#[test]
#[ignore = "needs root"]
fn with_flow_telemetry_off_frames_forward_and_only_links_count() {
    let (mut dp, _) = router_with(65_536, |c| {
        // Would sample every new flow, if flows were tracked.
        c.flow_sample_n = 1;
    });
    dp.set_flow_telemetry(false).expect("telemetry off");
    dp.set_neighbor_telemetry(false)
        .expect("neighbour telemetry off");
    let mut rb = dp.take_events().expect("event ring buffer");
    let frames = [udp_v4(40_000), tcp(Family::V6, TCP_SYN)];
    let links0 = links(&dp);
    for f in &frames {
        forward(&dp, "telemetry off", f);
    }
    let links1 = links(&dp);
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let n = frames.len() as u64;
    assert_eq!(
        (
            links1[0].rx_packets - links0[0].rx_packets,
            links1[0].rx_bytes - links0[0].rx_bytes,
            links1[0].forwarded - links0[0].forwarded,
        ),
        (n, bytes, n),
        "ingress link counters"
    );
    assert_eq!(
        (
            links1[1].tx_packets - links0[1].tx_packets,
            links1[1].tx_bytes - links0[1].tx_bytes,
        ),
        (n, bytes),
        "egress link counters"
    );
    assert!(flows(&dp).is_empty(), "flows with telemetry off");
    // What is forwarded to a next hop is always counted (an array slot, like links);
    // nothing else per neighbour.
    let neigh = neighbors(&dp);
    assert_eq!(neigh.len(), 1, "only the next hop: {neigh:?}");
    assert!(
        neigh
            .values()
            .all(|s| s.rx_packets == 0 && s.host_tx_packets == 0 && s.tx_packets == n),
        "next-hop tx only: {neigh:?}"
    );
    let tele = telemetry(&dp);
    assert_eq!(tele[counter::FLOWS_CREATED as usize], 0, "FLOWS_CREATED");
    assert_eq!(
        tele[counter::NEIGHBORS_CREATED as usize],
        0,
        "NEIGHBORS_CREATED"
    );
    let events = drain(&mut rb);
    assert!(events.is_empty(), "events with telemetry off: {events:?}");

    // The same frames with the switch back on are tracked: the maps were empty for the
    // switch, not because these frames make no entries.
    dp.set_flow_telemetry(true).expect("telemetry on");
    dp.set_neighbor_telemetry(true)
        .expect("neighbour telemetry on");
    for f in &frames {
        forward(&dp, "telemetry on", f);
    }
    assert_eq!(flows(&dp).len(), frames.len(), "flows with telemetry on");
    assert_eq!(neighbors(&dp).len(), 2, "ingress and next-hop neighbours");
    assert_eq!(drain(&mut rb).len(), frames.len(), "new-flow events");
}

#[test]
#[ignore = "needs root"]
fn tcp_flags_are_ored_over_a_flows_segments() {
    let (dp, _) = router_with(65_536, |_| {});
    for family in [Family::V4, Family::V6] {
        let mut want = 0u8;
        let mut key: Option<FlowKey> = None;
        for flags in [TCP_SYN, TCP_ACK, TCP_FIN] {
            let frame = tcp(family, flags);
            let name = format!("{family:?} flags {flags:#04x}");
            forward(&dp, &name, &frame);
            want |= flags;
            let (k, _) = parsed_key(&frame).expect("parses");
            assert!(
                key.is_none_or(|prev| prev == k),
                "{name}: flags changed the flow key"
            );
            key = Some(k);
            let s = flows(&dp)[&k];
            assert_eq!(s.tcp_flags, u32::from(want), "{name}: tcp_flags {s:?}");
        }
        let key = key.expect("segments sent");
        assert_eq!(
            flows(&dp)[&key].tcp_flags,
            0x13,
            "{family:?}: SYN | ACK | FIN"
        );
    }
}
