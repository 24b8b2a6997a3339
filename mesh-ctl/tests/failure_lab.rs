//! The failure lab on real namespaces: wire links, faults injected in the wire, the
//! timestamped stream, and babeld routing around a silent failure. No agent: plain
//! kernel forwarding, so these test the lab itself.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{net::IpAddr, path::PathBuf, time::Duration};

use mesh_lab::{
    AgentConfig, Fault, Group, Lab, Link,
    babel::{self, BabelSetting},
    mesh6,
    stream::{analyze, now_ns},
};
use support::lab;

/// `a – r – b` over wire links; r forwards in its kernel, a and b route through it.
fn line(lab: &mut Lab) -> (Link, Link) {
    for n in ["a", "r", "b"] {
        lab.node(n).expect("node");
    }
    let ar = lab.wire_link("a", "r").expect("wire link a-r");
    let rb = lab.wire_link("r", "b").expect("wire link r-b");
    lab.sysctl("r", "net.ipv4.ip_forward", "1")
        .expect("forwarding");
    for (host, link) in [("a", &ar), ("b", &rb)] {
        let gw = link.peer_of(host).v4.to_string();
        lab.exec_ok(host, &["ip", "route", "add", "default", "via", &gw])
            .expect("default route");
    }
    (ar, rb)
}

fn carrier(lab: &Lab, node: &str, link: &Link) -> bool {
    lab.has_carrier(node, &link.end(node).ifname)
        .expect("link state")
}

#[test]
#[ignore = "needs root"]
fn silent_fault_stops_traffic_but_keeps_carrier() {
    let mut lab = lab("fl-silent");
    let (ar, rb) = line(&mut lab);
    let b = rb.b.v4.to_string();
    assert_eq!(lab.ping("a", &b, 5).expect("ping"), 5, "healthy line");

    lab.fault(&ar, Fault::Silent).expect("silent fault");
    assert_eq!(
        lab.ping("a", &b, 5).expect("ping"),
        0,
        "pings crossed a silent wire"
    );
    assert!(
        carrier(&lab, "a", &ar) && carrier(&lab, "r", &ar),
        "a silent fault must keep carrier at both ends"
    );

    lab.heal(&ar).expect("heal");
    assert_eq!(lab.ping("a", &b, 5).expect("ping"), 5, "healed line");
    // Healing twice is harmless.
    lab.heal(&ar).expect("heal again");
    assert_eq!(lab.ping("a", &b, 2).expect("ping"), 2, "healed line");
}

#[test]
#[ignore = "needs root"]
fn gray_fault_loses_some_but_not_all() {
    let mut lab = lab("fl-gray");
    let (ar, rb) = line(&mut lab);
    let b = rb.b.v4.to_string();
    assert_eq!(lab.ping("a", &b, 3).expect("ping"), 3, "healthy line");
    lab.fault(&ar, Fault::Gray { permille: 200 })
        .expect("gray fault");
    let out = lab
        .exec(
            "a",
            &[
                "ping", "-q", "-n", "-c", "300", "-i", "0.005", "-W", "1", &b,
            ],
        )
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let received: u32 = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    assert!(
        received > 0 && received < 300,
        "20% loss each way must lose some of 300 pings but not all: {received} answered"
    );
    lab.heal(&ar).expect("heal");
    assert_eq!(lab.ping("a", &b, 5).expect("ping"), 5, "healed line");
}

#[test]
#[ignore = "needs root"]
fn down_fault_removes_carrier_at_the_node_end() {
    let mut lab = lab("fl-down");
    let (ar, rb) = line(&mut lab);
    let b = rb.b.v4.to_string();
    assert!(carrier(&lab, "a", &ar), "carrier before the fault");
    lab.fault(&ar, Fault::Down).expect("down fault");
    assert!(
        !carrier(&lab, "a", &ar),
        "a-r kept carrier with its wire down"
    );
    assert!(carrier(&lab, "r", &ar), "only a's end loses carrier");
    assert_eq!(
        lab.ping("a", &b, 3).expect("ping"),
        0,
        "pings without carrier"
    );
    lab.heal(&ar).expect("heal");
    assert!(carrier(&lab, "a", &ar), "carrier back after healing");
    assert_eq!(lab.ping("a", &b, 5).expect("ping"), 5, "healed line");
}

#[test]
#[ignore = "needs root"]
fn stream_sees_the_outage_of_a_silent_fault() {
    let mut lab = lab("fl-stream");
    let (_, rb) = line(&mut lab);
    assert_eq!(
        lab.ping("a", &rb.b.v4.to_string(), 2).expect("ping"),
        2,
        "healthy line"
    );
    let run = lab
        .stream("a", "b", IpAddr::V4(rb.b.v4), 1000, Duration::from_secs(3))
        .expect("stream starts");
    std::thread::sleep(Duration::from_secs(1));
    let fault_at = lab.fault_at(&rb, Fault::Silent).expect("silent fault");
    std::thread::sleep(Duration::from_millis(300));
    let heal_start = now_ns().expect("clock");
    lab.heal(&rb).expect("heal");
    let (sent, arrivals) = run.finish().expect("stream results");
    assert!(sent > 0, "the sender sent nothing");
    let o = analyze(sent, &arrivals, fault_at);
    assert!(o.lost > 0, "a silent wire lost nothing: {o:?}");
    assert!(o.received > 0, "nothing arrived at all: {o:?}");
    assert!(
        o.restored,
        "the stream did not come back after healing: {o:?}"
    );
    // Nothing sent after the fault crosses the wire before the heal: the first such
    // datagram can only arrive after the heal started.
    let silent_ms = heal_start.saturating_sub(fault_at) as f64 / 1e6;
    assert!(
        o.restore_ms >= silent_ms,
        "restored {} ms after the fault, but the wire was silent for {silent_ms} ms",
        o.restore_ms
    );
    assert!(
        o.settled_ms >= o.restore_ms,
        "loss cannot stop before traffic is back: {o:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn wire_counters_count_pings() {
    let mut lab = lab("fl-count");
    let (ar, rb) = line(&mut lab);
    let b = rb.b.v4.to_string();
    // Resolve neighbours first, so the window holds pings only (and little else).
    assert_eq!(lab.ping("a", &b, 1).expect("ping"), 1, "healthy line");
    let before = lab.wire_counters(&ar).expect("counters");
    let answered = lab.ping("a", &b, 20).expect("ping");
    let after = lab.wire_counters(&ar).expect("counters");
    let d = after.since(&before);
    assert_eq!(answered, 20, "healthy line");
    assert!(
        d.frames.packets >= 2 * u64::from(answered),
        "{answered} pings answered, but only {} frames crossed a-r",
        d.frames.packets
    );
    assert!(
        d.frames.bytes >= d.frames.packets * 60,
        "bytes counted: {d:?}"
    );
    assert_eq!(d.control.packets, 0, "no babel here: {d:?}");
    assert_eq!(d.probe.packets, 0, "no probes here: {d:?}");
}

#[test]
#[ignore = "needs root"]
fn xdp_router_forwards_across_wire_links() {
    let mut lab = lab("fl-xdp");
    for n in ["a", "r", "b"] {
        lab.node(n).expect("node");
    }
    let ar = lab.wire_link("a", "r").expect("wire link a-r");
    let rb = lab.wire_link("r", "b").expect("wire link r-b");
    for (host, link) in [("a", &ar), ("b", &rb)] {
        let gw = link.peer_of(host).v4.to_string();
        lab.exec_ok(host, &["ip", "route", "add", "default", "via", &gw])
            .expect("default route");
    }
    let b = rb.b.v4.to_string();
    assert_eq!(
        lab.ping("a", &b, 2).expect("ping"),
        0,
        "r forwarded in its kernel: the test proves nothing"
    );
    // r's kernel does not forward: every packet crossing r was redirected by XDP into
    // a veth whose peer sits in a wire.
    let group = |name: &str, link: &Link| Group {
        name: name.into(),
        members: vec![(link.end("r").ifname.clone(), link.peer_of("r").mac)],
    };
    let r = AgentConfig {
        node: "r".into(),
        interfaces: vec![ar.end("r").ifname.clone(), rb.end("r").ifname.clone()],
        groups: vec![group("to-a", &ar), group("to-b", &rb)],
        routes: vec![
            ("10.0.1.0/24".into(), "to-a".into()),
            ("10.0.2.0/24".into(), "to-b".into()),
        ],
        ..Default::default()
    };
    let _agent = lab.agent(&r).expect("agent on r");
    assert_eq!(
        lab.ping("a", &b, 20).expect("ping"),
        20,
        "XDP on r forwards across wires"
    );
    let before = lab.wire_counters(&rb).expect("counters");
    assert_eq!(lab.ping("a", &b, 10).expect("ping"), 10, "XDP forwarding");
    let d = lab.wire_counters(&rb).expect("counters").since(&before);
    assert!(
        d.frames.packets >= 20,
        "10 pings through r, {} frames on r-b's wire",
        d.frames.packets
    );
}

#[test]
#[ignore = "needs root"]
fn babeld_routes_around_a_silent_failure() {
    if babel::which_babeld().is_err() {
        eprintln!("skipped: babeld is not installed (Debian package `babeld`)");
        return;
    }
    let setting = BabelSetting {
        name: "babeld -h 0.05".into(),
        hello_s: Some(0.05),
        quiet: Duration::from_secs(1),
    };
    let results =
        babel::babeld_failover(&PathBuf::from(env!("CARGO_BIN_EXE_meshctl")), &[setting], 1)
            .expect("babeld failover run");
    let r = &results[0];
    assert_eq!(r.rounds.len(), 1, "one failure round");
    let round = &r.rounds[0];
    let o = &round.outage;
    assert!(
        o.restored,
        "babeld did not route around {}: {o:?}",
        round.link
    );
    assert!(o.restore_ms.is_finite(), "restore time: {o:?}");
    let (a, b) = round.link.split_once('-').expect("link name");
    assert!(
        mesh6::path_uses(&round.path_before, a, b),
        "the failed link {} was not on the path {:?}",
        round.link,
        round.path_before
    );
    let after = round.path_after.as_ref().expect("a path after the fault");
    assert!(
        !mesh6::path_uses(after, a, b),
        "traffic still crosses the failed link: {after:?}"
    );
    assert!(
        r.control_pps_mean > 0.0,
        "babel sends hellos: control {:?}",
        r.control_pps
    );
}
