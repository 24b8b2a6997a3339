//! The real XDP program in the running kernel, through BPF_PROG_TEST_RUN: every verdict,
//! the rewritten bytes, the reason counters, ECMP spread and stability.
//!
//! Each test runs in a network namespace of its own (unshared by its thread), so the veth
//! egress ports it creates vanish with it. Needs root: the tests are ignored unless run
//! with `--include-ignored`.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use mesh_common::{
    Reason,
    parse::{Bytes, parse},
    reason::XDP_REDIRECT,
};
use mesh_ctl::{agent::install, dataplane::Dataplane};
use mesh_lab::{
    cases::{self, ECMP_WIDTH, HASH_SEED, neighbor_mac, truncation_sources, verdict_cases},
    frames::{self, L4, ROUTER_MAC, ipv4_checksum_ok},
    netns,
};
use support::{LOOPBACK, router};

/// CLOCK_MONOTONIC in ns, the clock blocklist expiries are on.
fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

fn counters(dp: &Dataplane) -> HashMap<Reason, u64> {
    dp.reasons().expect("reason counters").into_iter().collect()
}

/// Runs one frame and checks the verdict, that exactly one counter (the expected one)
/// moved, and that frames not forwarded come back untouched.
fn check(dp: &Dataplane, name: &str, frame: &[u8], expect: Reason) -> Vec<u8> {
    let before = counters(dp);
    let out = dp.test_run(frame, 1).expect("test_run");
    let after = counters(dp);
    assert_eq!(
        out.action,
        expect.action(),
        "{name}: verdict (wanted {expect:?})"
    );
    for r in Reason::ALL {
        let delta = after[r] - before[r];
        let want = u64::from(*r == expect);
        assert_eq!(
            delta,
            want,
            "{name}: counter {} moved by {delta} (wanted {expect:?})",
            r.name()
        );
    }
    assert_eq!(out.frame.len(), frame.len(), "{name}: frame length changed");
    if expect.action() != XDP_REDIRECT && expect != Reason::ProbeEchoed {
        assert_eq!(
            out.frame, frame,
            "{name}: a frame not forwarded must not be modified"
        );
    }
    out.frame
}

/// The next hop the userspace copy of the hash predicts for a frame to an ECMP prefix.
fn predicted_member(frame: &[u8]) -> usize {
    let p = parse(&Bytes(frame)).expect("parses");
    (p.flow.hash(HASH_SEED) % ECMP_WIDTH as u32) as usize
}

#[test]
#[ignore = "needs root"]
fn every_verdict_with_counters_and_rewritten_bytes() {
    let (dp, egress) = router();
    for c in verdict_cases() {
        let out = check(&dp, c.name, &c.frame, c.expect);
        if c.expect.action() != XDP_REDIRECT {
            continue;
        }
        let p = parse(&Bytes(&c.frame)).expect("forwarded frames parse");
        let ecmp = c.name.contains("ecmp");
        let member = if ecmp { predicted_member(&c.frame) } else { 0 };
        let group = u8::from(ecmp);
        assert_eq!(
            out[..6],
            neighbor_mac(group, member as u8),
            "{}: destination MAC",
            c.name
        );
        assert_eq!(out[6..12], egress[member].1, "{}: source MAC", c.name);
        let l3 = p.l3_off;
        match c.expect {
            Reason::ForwardedV4 => {
                assert_eq!(out[l3 + 8], c.frame[l3 + 8] - 1, "{}: TTL", c.name);
                assert!(ipv4_checksum_ok(&out, l3), "{}: IPv4 checksum", c.name);
                assert_eq!(
                    out[l3 + 12..],
                    c.frame[l3 + 12..],
                    "{}: rest of packet",
                    c.name
                );
            }
            Reason::ForwardedV6 => {
                assert_eq!(out[l3 + 7], c.frame[l3 + 7] - 1, "{}: hop limit", c.name);
                assert_eq!(
                    out[l3 + 8..],
                    c.frame[l3 + 8..],
                    "{}: rest of packet",
                    c.name
                );
            }
            other => panic!("{}: {other:?} is not a forwarding reason", c.name),
        }
        // VLAN tags and everything between the MACs and the IP header stay as they were.
        assert_eq!(out[12..l3], c.frame[12..l3], "{}: tags", c.name);
    }
}

#[test]
#[ignore = "needs root"]
fn truncated_at_every_header_matches_the_parser_and_is_never_forwarded() {
    let (dp, _) = router();
    for (name, frame) in truncation_sources() {
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header; the parser
        // tests cover those lengths.
        for cut in 14..frame.len() {
            let expect = parse(&Bytes(&frame[..cut])).expect_err("truncated frames never parse");
            check(&dp, &format!("{name} cut at {cut}"), &frame[..cut], expect);
        }
    }
}

#[test]
#[ignore = "needs root"]
fn ecmp_spreads_flows_and_keeps_each_flow_on_one_path() {
    let (dp, _) = router();
    let flows = 400u16;
    let mut per_member = [0u32; ECMP_WIDTH];
    for port in 0..flows {
        for v6 in [false, true] {
            let l4 = L4::Udp {
                src: 20_000 + port,
                dst: 53,
            };
            let frame = if v6 {
                frames::ipv6(ROUTER_MAC, cases::SRC_V6, cases::ECMP_V6, 64, l4, 16)
            } else {
                frames::ipv4(ROUTER_MAC, cases::SRC_V4, cases::ECMP_V4, 64, l4, 16)
            };
            let mut chosen = None;
            for _ in 0..3 {
                let out = dp.test_run(&frame, 1).expect("test_run");
                assert_eq!(out.action, XDP_REDIRECT);
                let member = (0..ECMP_WIDTH)
                    .find(|&m| out.frame[..6] == neighbor_mac(1, m as u8))
                    .expect("a member of the ECMP group");
                assert!(
                    chosen.is_none_or(|c| c == member),
                    "flow {port} changed path"
                );
                chosen = Some(member);
            }
            let member = chosen.expect("ran");
            assert_eq!(
                member,
                predicted_member(&frame),
                "kernel and userspace hash disagree"
            );
            per_member[member] += 1;
        }
    }
    let expect = u32::from(flows) * 2 / ECMP_WIDTH as u32;
    for (m, n) in per_member.iter().enumerate() {
        assert!(
            *n > expect * 7 / 10 && *n < expect * 13 / 10,
            "member {m} carried {n} of {} flows: {per_member:?}",
            flows * 2
        );
    }
}

#[test]
#[ignore = "needs root"]
fn fragments_of_one_datagram_share_a_path() {
    let (dp, _) = router();
    for id in 0..64u16 {
        let src = Ipv4Addr::new(10, 0, 1, (id % 200) as u8 + 10);
        let mut first = frames::ipv4(
            ROUTER_MAC,
            src,
            cases::ECMP_V4,
            64,
            L4::Udp {
                src: 1000 + id,
                dst: 53,
            },
            64,
        );
        frames::set_ipv4_fragment(&mut first, true, 0);
        let mut later = frames::ipv4(
            ROUTER_MAC,
            src,
            cases::ECMP_V4,
            64,
            L4::Udp { src: 9, dst: 9 },
            64,
        );
        frames::set_ipv4_fragment(&mut later, false, 10);
        let a = dp.test_run(&first, 1).expect("test_run").frame;
        let b = dp.test_run(&later, 1).expect("test_run").frame;
        assert_eq!(
            a[..6],
            b[..6],
            "fragments of datagram {id} took different paths"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn nothing_is_forwarded_before_the_config_is_written() {
    netns::unshare_thread().expect("new network namespace");
    let dp = Dataplane::load().expect("loads");
    let frame = frames::ipv4(ROUTER_MAC, cases::SRC_V4, cases::ONE_V4, 64, L4::Icmp, 8);
    check(&dp, "unconfigured", &frame, Reason::PassNotReady);
}

#[test]
#[ignore = "needs root"]
fn frames_from_interfaces_that_are_not_mesh_interfaces_go_to_the_kernel() {
    let (mut dp, egress) = router();
    // Re-install with the ingress (loopback) left out of the mesh interfaces.
    let mut t = cases::tables(LOOPBACK, &egress);
    t.ifaces.remove(0);
    drop(dp);
    dp = Dataplane::load().expect("loads");
    install(&mut dp, &t).expect("installs");
    let frame = frames::ipv4(ROUTER_MAC, cases::SRC_V4, cases::ONE_V4, 64, L4::Icmp, 8);
    check(&dp, "not mesh", &frame, Reason::PassNotMesh);
}

#[test]
#[ignore = "needs root"]
fn blocked_sources_are_dropped_until_their_entry_expires() {
    use mesh_lab::{
        cases::{ONE_V4, ONE_V6, SRC_V4, SRC_V6},
        frames::{L4, ipv6},
    };
    let (mut dp, _) = router();
    let udp = L4::Udp { src: 4000, dst: 53 };
    let v4 = |src| frames::ipv4(ROUTER_MAC, src, ONE_V4, 64, udp, 32);
    let v6 = |src| ipv6(ROUTER_MAC, src, ONE_V6, 64, udp, 32);
    let other = Ipv4Addr::new(10, 0, 1, 2);
    let now_ns = monotonic_ns();
    let hour = 3_600_000_000_000;
    dp.block(SRC_V4.into(), now_ns + hour).expect("block v4");
    dp.block(SRC_V6.into(), now_ns + hour).expect("block v6");
    check(&dp, "blocked v4 source", &v4(SRC_V4), Reason::DropBlocked);
    check(&dp, "blocked v6 source", &v6(SRC_V6), Reason::DropBlocked);
    check(&dp, "another v4 source", &v4(other), Reason::ForwardedV4);
    // An entry past its expiry does nothing, and the agent's sweep removes it. (XDP reads
    // the coarse clock, a tick behind: a second ago is past for both.)
    dp.block(SRC_V4.into(), now_ns - 1_000_000_000)
        .expect("expired entry");
    check(&dp, "expired entry", &v4(SRC_V4), Reason::ForwardedV4);
    let gone = dp.expire_blocks(now_ns + 1).expect("sweep");
    assert_eq!(gone, vec![std::net::IpAddr::from(SRC_V4)]);
    let left = dp.blocked().expect("blocklist");
    assert_eq!(left.len(), 1, "the v6 entry stays: {left:?}");
    assert_eq!(left[0].0, std::net::IpAddr::from(SRC_V6));
}

#[test]
#[ignore = "needs root"]
fn rate_limits_let_their_burst_through_and_a_prefix_limits_only_sources_without_their_own() {
    use mesh_ctl::dataplane::blocklist::Source;
    use mesh_lab::{
        cases::{ONE_V4, ONE_V6, SRC_V4, SRC_V6},
        frames::{L4, ipv6},
    };
    let (mut dp, _) = router();
    let udp = L4::Udp { src: 4000, dst: 53 };
    let v4 = |src| frames::ipv4(ROUTER_MAC, src, ONE_V4, 64, udp, 32);
    let until = monotonic_ns() + 3_600_000_000_000;
    // `n` frames back to back (one run each: a repeated run would see the frame the last
    // one rewrote): (forwarded, rate-limited, seconds they took).
    let burst_of = |dp: &Dataplane, frame: &[u8], n: u32| {
        let before = counters(dp);
        let start = monotonic_ns();
        for _ in 0..n {
            dp.test_run(frame, 1).expect("test_run");
        }
        let secs = monotonic_ns().saturating_sub(start) as f64 / 1e9;
        let after = counters(dp);
        let d = |r: Reason| after[&r] - before[&r];
        (
            d(Reason::ForwardedV4) + d(Reason::ForwardedV6),
            d(Reason::DropRateLimited),
            secs,
        )
    };
    // What a bucket of `burst` filled at `rate` a second lets through of `sent` frames sent
    // over `secs`: the machine's speed (an emulated CPU is many times slower) sets how
    // long the frames took, so the bound follows the time they took, not a fixed second.
    let allowed =
        |burst: f64, rate: f64, secs: f64, sent: u64| (burst + rate * secs).min(sent as f64);
    // 10/s (a bucket of 8): of 200 frames back to back, about 8 pass.
    let src: std::net::IpAddr = SRC_V4.into();
    dp.limit(Source::Addr(src), 10, until).expect("limit");
    let (fwd, limited, secs) = burst_of(&dp, &v4(SRC_V4), 200);
    assert_eq!(fwd + limited, 200);
    let most = allowed(8.0, 10.0, secs, 200);
    assert!(
        fwd >= 8 && fwd as f64 <= most + 2.0,
        "{fwd} of 200 through a 10/s limit in {secs:.2} s (at most {most:.0})"
    );
    // Paced: 200/s for a second through 50/s lets about 50 and the bucket through.
    let paced = Ipv4Addr::new(10, 0, 7, 7);
    dp.limit(Source::Addr(paced.into()), 50, until)
        .expect("limit");
    let before = counters(&dp);
    let start = monotonic_ns();
    let mut sent = 0u64;
    while monotonic_ns().saturating_sub(start) < 1_000_000_000 {
        dp.test_run(&v4(paced), 1).expect("test_run");
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = monotonic_ns().saturating_sub(start) as f64 / 1e9;
    let fwd = counters(&dp)[&Reason::ForwardedV4] - before[&Reason::ForwardedV4];
    let most = allowed(8.0, 50.0, secs, sent);
    assert!(
        fwd as f64 >= (most * 0.8).min(sent as f64) && fwd as f64 <= most + 2.0,
        "{fwd} of {sent} paced over {secs:.2} s through 50/s (about {most:.0})"
    );
    // Its prefix, limited hard, applies to a neighbour without an entry of its own ...
    let prefix = Source::prefix_of(src);
    assert_eq!(prefix.to_string(), "10.0.1.0/24");
    dp.limit(prefix, 1, until).expect("prefix limit");
    let neighbour = Ipv4Addr::new(10, 0, 1, 99);
    let (fwd, limited, secs) = burst_of(&dp, &v4(neighbour), 100);
    let most = allowed(8.0, 1.0, secs, 100);
    assert!(
        fwd as f64 <= most + 2.0 && fwd + limited == 100,
        "{fwd} through the prefix limit in {secs:.2} s"
    );
    // ... and not to a source with its own generous limit, nor outside the prefix.
    let own = Ipv4Addr::new(10, 0, 1, 50);
    dp.limit(Source::Addr(own.into()), 1_000_000, until)
        .expect("own limit");
    let passed = |(fwd, limited, _): (u64, u64, f64)| (fwd, limited);
    assert_eq!(passed(burst_of(&dp, &v4(own), 100)), (100, 0));
    assert_eq!(
        passed(burst_of(&dp, &v4(Ipv4Addr::new(10, 0, 2, 7)), 100)),
        (100, 0)
    );
    // IPv6 by its /64.
    let v6 = ipv6(ROUTER_MAC, SRC_V6, ONE_V6, 64, udp, 32);
    dp.limit(Source::prefix_of(SRC_V6.into()), 1, until)
        .expect("v6 prefix");
    let (fwd, _, secs) = burst_of(&dp, &v6, 100);
    let most = allowed(8.0, 1.0, secs, 100);
    assert!(
        fwd as f64 <= most + 2.0,
        "{fwd} through the /64 limit in {secs:.2} s"
    );
    // Listed, and gone once ended.
    let limits = dp.limits().expect("limits");
    assert_eq!(limits.len(), 5, "{limits:?}");
    assert!(
        dp.blocked().expect("blocked").is_empty(),
        "limits are not blocks"
    );
    dp.unlimit(prefix).expect("unlimit");
    assert_eq!(passed(burst_of(&dp, &v4(neighbour), 50)), (50, 0));
}

/// A probe frame from `from` to the router, carrying `hdr`.
fn probe_frame(from: [u8; 6], hdr: mesh_common::probe::ProbeHdr) -> Vec<u8> {
    use mesh_common::probe::{ETH_P_MESH_PROBE, PROBE_FRAME_LEN, PROBE_OFFSET};
    let mut f = vec![0u8; PROBE_FRAME_LEN];
    f[..6].copy_from_slice(&ROUTER_MAC);
    f[6..12].copy_from_slice(&from);
    f[12..14].copy_from_slice(&ETH_P_MESH_PROBE.to_be_bytes());
    // SAFETY: ProbeHdr is repr(C), integers and byte arrays with no padding.
    let bytes: &[u8] = unsafe {
        core::slice::from_raw_parts(
            (&raw const hdr).cast::<u8>(),
            core::mem::size_of::<mesh_common::probe::ProbeHdr>(),
        )
    };
    f[PROBE_OFFSET..PROBE_OFFSET + bytes.len()].copy_from_slice(bytes);
    f
}

#[test]
#[ignore = "needs root"]
fn a_neighbours_probe_request_is_answered_and_recorded_as_proof_of_life_in_its_slot() {
    use mesh_common::{
        probe::{LinkFigures, PROBE_OFFSET, PROBE_REPLY, ProbeHdr},
        telemetry::NeighborKey,
    };
    let (mut dp, _) = router();
    let (peer, stranger) = ([2, 0, 0, 0, 0, 0x51], [2, 0, 0, 0, 0, 0x52]);
    let slot = 7;
    dp.set_probe_peer(
        slot,
        NeighborKey {
            ifindex: LOOPBACK,
            mac: peer,
            _pad: [0; 2],
        },
    )
    .expect("probe slot");
    let state = |dp: &Dataplane| {
        let mut out = Vec::new();
        dp.read_probes(&[slot], &mut out).expect("probe state");
        out[0].state
    };
    let figures = LinkFigures {
        rtt_us: 1_250,
        loss_ppm: 200_000,
        jitter_us: 90,
    };
    // The peer's slot for us is its own business: 3 here, not ours.
    let request = probe_frame(peer, ProbeHdr::request(3, 41, 123, figures));
    let out = check(&dp, "request", &request, Reason::ProbeEchoed);
    assert_eq!(out[..6], peer, "sent back to the peer");
    assert_eq!(out[6..12], ROUTER_MAC, "from us");
    assert_eq!(out[PROBE_OFFSET + 5], PROBE_REPLY, "as a reply");
    let kind = PROBE_OFFSET + 5;
    assert_eq!(
        (&out[12..kind], &out[kind + 1..]),
        (&request[12..kind], &request[kind + 1..]),
        "the rest untouched, but for the kind"
    );
    let s = state(&dp);
    assert_eq!((s.requests, s.request_seq), (1, 41), "{s:?}");
    assert!(
        s.last_request_ns > 0 && s.alive_ns == s.last_request_ns,
        "{s:?}"
    );
    assert_eq!(
        (s.peer_rtt_us, s.peer_loss_ppm, s.peer_jitter_us),
        (1_250, 200_000, 90),
        "the prober's figures"
    );
    assert_eq!(
        (s.replies, s.last_reply_ns),
        (0, 0),
        "a request is no reply"
    );

    // A stranger is answered, and recorded nowhere.
    let out = check(
        &dp,
        "stranger's request",
        &probe_frame(
            stranger,
            ProbeHdr::request(slot, 99, 1, LinkFigures::default()),
        ),
        Reason::ProbeEchoed,
    );
    assert_eq!(out[..6], stranger);
    assert_eq!(state(&dp), s, "nothing recorded for a stranger");

    // Our own request, echoed by the peer, is a reply in our slot.
    let mut reply = ProbeHdr::request(slot, 5, 0, LinkFigures::default());
    reply.kind = PROBE_REPLY;
    check(&dp, "reply", &probe_frame(peer, reply), Reason::ProbeReply);
    let r = state(&dp);
    assert_eq!((r.replies, r.last_seq, r.requests), (1, 5, 1), "{r:?}");
    assert!(
        r.alive_ns >= s.alive_ns && r.alive_ns == r.last_reply_ns,
        "{r:?}"
    );
    // The same reply from the stranger is refused and counted against the slot.
    check(
        &dp,
        "reply from a stranger",
        &probe_frame(stranger, reply),
        Reason::DropBadProbe,
    );
    assert_eq!(state(&dp).mismatched, 1);
}

#[test]
#[ignore = "needs root"]
fn fast_reroute_takes_a_steady_backup_for_a_silent_primary_but_not_one_just_back_from_silence() {
    use mesh_common::{
        probe::{LinkFigures, PROBE_REPLY, ProbeHdr},
        telemetry::NeighborKey,
        types::NextHop,
    };
    let (dp, egress) = router();
    drop(dp);
    // The one-hop group (10.0.2.0/24): primary neighbour slot 0 on egress 0, backup slot
    // 1 on egress 1. 200 ms of silence makes a link dead: far more than a loaded host stalls
    // between two steps of this test.
    let mut t = cases::tables(LOOPBACK, &egress);
    t.config.probe_dead_us = 200_000;
    cases::edit_group(&mut t, "10.0.2.0/24", |g| {
        g.backups[0] = NextHop {
            ifindex: egress[1].0,
            slot: 2,
            neighbor: 1,
            src_mac: egress[1].1,
            dst_mac: neighbor_mac(0, 1),
        };
    });
    let mut dp = Dataplane::load().expect("loads");
    install(&mut dp, &t).expect("installs");
    let (primary, backup) = ([2, 0, 0, 0, 0, 0x61], [2, 0, 0, 0, 0, 0x62]);
    for (slot, mac) in [(0, primary), (1, backup)] {
        dp.set_probe_peer(
            slot,
            NeighborKey {
                ifindex: LOOPBACK,
                mac,
                _pad: [0; 2],
            },
        )
        .expect("probe slot");
    }
    let reply = |dp: &Dataplane, slot: u32, mac: [u8; 6]| {
        let mut h = ProbeHdr::request(slot, 1, 0, LinkFigures::default());
        h.kind = PROBE_REPLY;
        check(dp, "reply", &probe_frame(mac, h), Reason::ProbeReply);
    };
    let frame = frames::ipv4(ROUTER_MAC, cases::SRC_V4, cases::ONE_V4, 64, L4::Icmp, 8);
    let via = |dp: &Dataplane, want: Reason| {
        let out = check(dp, "to 10.0.2.1", &frame, want);
        out[..6].to_vec()
    };
    reply(&dp, 0, primary);
    reply(&dp, 1, backup);
    assert_eq!(
        via(&dp, Reason::ForwardedV4),
        neighbor_mac(0, 0),
        "both answer"
    );

    std::thread::sleep(Duration::from_millis(500));
    // Only the backup answers, once, after a silence as long as the primary's: as after
    // a pause of the whole machine. The primary stays.
    reply(&dp, 1, backup);
    assert_eq!(
        via(&dp, Reason::ForwardedV4),
        neighbor_mac(0, 0),
        "a backup just back from silence is not switched to"
    );
    // It answers again: steady. The primary is still silent: the backup takes over.
    reply(&dp, 1, backup);
    assert_eq!(
        via(&dp, Reason::ForwardedBackupV4),
        neighbor_mac(0, 1),
        "a steady backup carries the silent primary's traffic"
    );
    // The primary answers: traffic is back on it at once.
    reply(&dp, 0, primary);
    assert_eq!(via(&dp, Reason::ForwardedV4), neighbor_mac(0, 0));
    let mut st = Vec::new();
    dp.read_probes(&[0, 1], &mut st).expect("probe state");
    for s in &st {
        assert_eq!(s.state.dead_gaps, 1, "one silence past 200 ms each: {s:?}");
        assert!(s.state.max_gap_us >= 500_000, "{s:?}");
    }
}
