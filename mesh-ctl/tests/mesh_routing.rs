//! The self-healing mesh routing around failures: six routers running `meshctl agent` with
//! link-state routing, probes and fast reroute, faults injected in the wires between them.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::time::{Duration, Instant};

use mesh_ctl::api::{self, Request};
use mesh_lab::{Agent, Fault, Lab, mesh6};
use support::mesh::{
    actions, anomalies, assert_actions_in_force, converge, link_events, one_mesh, reason_count,
    route_to, route_to_hd, start, stop_all, stream_on_a_path, wait_explained, wait_for,
};

#[test]
#[ignore = "needs root"]
fn mesh_converges_and_routes_around_a_silent_failure() {
    let (_one, mut lab) = one_mesh("mesh-silent");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let dst = mesh.hd.host_v6.to_string();
    assert_eq!(
        lab.ping("hs", &dst, 10).expect("ping"),
        10,
        "IPv6 across the mesh"
    );
    let n1 = &agents[0];
    let lsdb: api::Lsdb = n1.view(&Request::Lsdb).expect("lsdb");
    assert_eq!(
        lsdb.adverts.len(),
        6,
        "n1 holds every router's advert: {lsdb:?}"
    );
    let hd = route_to_hd(n1, &mesh).expect("n1 routes to hd");
    assert_eq!(
        hd.next_hops,
        ["n2", "n3"],
        "two equal-cost next hops: {hd:?}"
    );
    assert_eq!(
        hd.backups,
        [Some("n3".to_owned()), Some("n2".to_owned())],
        "each protects the other: {hd:?}"
    );

    let link = mesh.link("n1", "n2").expect("link").clone();
    one_prober_per_link(&lab, &link, &agents[0], &agents[1]);
    lab.fault(&link, Fault::Silent).expect("fault");
    // The agents reconverge around it (bounded wait).
    let mut rerouted = false;
    for _ in 0..60 {
        if route_to_hd(&agents[0], &mesh).is_some_and(|r| r.next_hops == ["n3"]) {
            rerouted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rerouted, "n1 stopped routing via n2");
    // Replies come back through n2 too, which has no loop-free alternate towards n1 in
    // this mesh: wait until its agent has reconverged as well.
    wait_for("n2 stops routing hs via n1", Duration::from_secs(5), || {
        route_to(&agents[1], mesh.hs.host_v4)
            .is_some_and(|r| !r.next_hops.is_empty() && !r.next_hops.iter().any(|x| x == "n1"))
    });
    if std::env::var("MESH_DEBUG").is_ok() {
        let out = lab
            .exec(
                "hs",
                &[
                    "ping",
                    "-n",
                    "-c",
                    "20",
                    "-i",
                    "0.05",
                    "-W",
                    "1",
                    &mesh.hd.host_v4.to_string(),
                ],
            )
            .expect("ping");
        eprintln!("PING {}", String::from_utf8_lossy(&out.stdout));
        for a in &agents {
            eprintln!(
                "== {}\n{}\n{}\n{}",
                a.node,
                a.query(&Request::Events)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                a.query(&Request::Routes)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                a.view::<api::Drops>(&Request::Drops)
                    .map(|v| format!("{:?}", v.reasons))
                    .unwrap_or_default()
            );
        }
    }
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 20)
            .expect("ping"),
        20,
        "every ping arrives after the silent failure"
    );
    let events: api::Events = n1.view(&Request::Events).expect("events");
    let kinds: Vec<String> = events.events.into_iter().map(|x| x.kind).collect();
    assert!(
        kinds.iter().any(|k| k == "link_down"),
        "n1 saw the link go down: {kinds:?}"
    );
    for a in agents {
        a.stop().expect("agent stops");
    }
}

/// `low`'s and `high`'s entries for each other: (requests sent, requests received).
fn probe_counts(low: &Agent, high: &Agent) -> ((u64, u64), (u64, u64)) {
    let entry = |a: &Agent, other: &str| {
        let v: api::Neighbors = a.view(&Request::Neighbors).expect("neighbors");
        let n = v
            .neighbors
            .iter()
            .find(|x| x.node == other)
            .unwrap_or_else(|| panic!("{} has no neighbour {other}: {v:?}", a.node));
        (n.probes_sent, n.probe_requests)
    };
    (entry(low, &high.node), entry(high, &low.node))
}

/// On a healthy link only the lower name probes: the wire carries one request and one
/// reply per interval, and the other side lives on the requests it answers.
fn one_prober_per_link(lab: &Lab, link: &mesh_lab::Link, low: &Agent, high: &Agent) {
    let interval_ms = mesh_ctl::config::Probe::default().interval_ms as f64;
    let (c0, (l0, h0)) = (
        lab.wire_counters(link).expect("wire"),
        probe_counts(low, high),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (c1, (l1, h1)) = (
        lab.wire_counters(link).expect("wire"),
        probe_counts(low, high),
    );
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let frames = c1.since(&c0).probe.packets as f64;
    // Both sides probing would put 4 frames per interval on the wire.
    let per_interval = frames / (ms / interval_ms);
    assert!(
        (1.5..2.6).contains(&per_interval),
        "{frames} probe frames in {ms:.0} ms: {per_interval:.2} per interval, not 2"
    );
    assert!(l1.0 > l0.0, "{} probes {}", low.node, high.node);
    // It probes only when the prober's requests are late (a busy host), never as much.
    assert!(
        (h1.0 - h0.0) * 4 <= l1.0 - l0.0,
        "{} left the probing to {}: {h0:?} -> {h1:?} against {l0:?} -> {l1:?}",
        high.node,
        low.node
    );
    assert!(
        h1.1 - h0.1 >= (l1.0 - l0.0) / 2,
        "{} recorded {}'s requests: {h0:?} -> {h1:?}, {} sent {}",
        high.node,
        low.node,
        low.node,
        l1.0 - l0.0
    );
}

/// n1's next hops towards hd (empty without a route).
fn next_hops(n1: &Agent, mesh: &mesh6::Mesh6) -> Vec<String> {
    route_to_hd(n1, mesh)
        .map(|r| r.next_hops)
        .unwrap_or_default()
}

/// Frames whose TTL or hop limit ran out in any of `agents`' data planes: a routing loop
/// shows here first, as traffic circles until its TTL is gone.
fn ttl_expired<'a>(agents: impl IntoIterator<Item = &'a Agent>) -> u64 {
    agents
        .into_iter()
        .map(|a| reason_count(a, "pass_ttl_exceeded"))
        .sum()
}

fn round_options(fault: Fault) -> mesh6::RoundOptions {
    mesh6::RoundOptions {
        pps: 1000,
        fault,
        restore_limit: Duration::from_secs(10),
        series_bucket_ms: 10,
    }
}

#[test]
#[ignore = "needs root"]
fn hard_failure_is_routed_around_without_loops() {
    let (_one, mut lab) = one_mesh("mesh-hard");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let ttl0 = ttl_expired(&agents);
    for round in 0..2 {
        let r = mesh6::failure_round(&mut lab, &mesh, round, &round_options(Fault::Down))
            .expect("failure round");
        assert!(
            r.outage.restored,
            "traffic flows again after the port went down on {}: {:?}",
            r.link, r.outage
        );
        let after = r.path_after.expect("a path after the failure");
        let (a, b) = r.link.split_once('-').expect("a-b");
        assert!(!mesh6::path_uses(&after, a, b), "{after:?} avoids {a}-{b}");
        // Healed; the link comes back after its hold-down.
        let back = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            next_hops(&agents[0], &mesh).len() == 2
        });
        assert!(
            back,
            "the healed link {} is used again within 15 s: {} {:#?}",
            r.link,
            agents[0].query(&Request::Lsdb).expect("lsdb"),
            agents
                .iter()
                .map(|a| (
                    a.node.clone(),
                    a.view::<api::Events>(&Request::Events)
                        .expect("events")
                        .events
                        .iter()
                        .take(14)
                        .map(|e| format!(
                            "{} {:?} {:?} | {:?}",
                            e.mono_ns, e.kind, e.detail, e.reason
                        ))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(ttl_expired(&agents), ttl0, "no loop formed");
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn frozen_agents_still_bypass_a_silent_failure_in_the_data_plane() {
    let (_one, mut lab) = one_mesh("mesh-frozen");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    for a in &agents {
        a.query(&Request::Freeze { on: true }).expect("freeze");
    }
    let n1 = &agents[0];
    let (stream, path) = stream_on_a_path(&mut lab, &mesh);
    let failed = path[1].clone();
    let link = mesh.link("n1", &failed).expect("link").clone();
    let backup0 = reason_count(n1, "forwarded_backup_v4");
    let fault_at = lab.fault_at(&link, Fault::Silent).expect("fault");
    wait_for(
        "traffic leaves the failed link",
        Duration::from_secs(5),
        || {
            mesh6::active_path(&lab, &mesh, Duration::from_millis(100), 40)
                .expect("path")
                .is_some_and(|p| !mesh6::path_uses(&p, "n1", &failed))
        },
    );
    wait_for("n1 sees the link down", Duration::from_secs(5), || {
        link_events(n1, "link_down", &failed) == 1
    });
    // The agent did not reroute: the data plane did, on the backup.
    assert_eq!(
        next_hops(n1, &mesh),
        ["n2", "n3"],
        "frozen routes still list the failed neighbour"
    );
    assert!(
        reason_count(n1, "forwarded_backup_v4") > backup0,
        "n1 forwarded on the backup"
    );
    // Views are republished once per telemetry interval: the log may lag a second.
    wait_for(
        "n1 logged that it did not recompute",
        Duration::from_secs(3),
        || actions(n1).iter().any(|(k, _)| k == "frozen"),
    );
    // The probe sender keeps probing the silent neighbour.
    let sent = |n: &Agent, to: &str| -> u64 {
        let v: api::Neighbors = n.view(&Request::Neighbors).expect("neighbours");
        v.neighbors
            .iter()
            .find(|x| x.node == to)
            .map(|x| x.probes_sent)
            .expect("the neighbour is known")
    };
    let backup = if failed == "n2" { "n3" } else { "n2" };
    let s0 = sent(n1, backup);
    wait_for(
        &format!("probes to {backup} continue"),
        Duration::from_secs(5),
        || sent(n1, backup) > s0,
    );
    let (sent_total, arrivals) = stream.stop().expect("stream");
    lab.heal(&link).expect("heal");
    let outage = mesh_lab::stream::analyze(sent_total, &arrivals, fault_at);
    assert!(
        outage.restored && outage.settled_ms.is_finite(),
        "the stream recovered with the agents frozen: {outage:?}"
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn gray_failure_moves_traffic_at_20_percent_loss_but_not_at_a_tenth_of_a_percent() {
    let (_one, mut lab) = one_mesh("mesh-gray");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    let link = mesh.link("n1", "n2").expect("link").clone();
    lab.fault(&link, Fault::Gray { permille: 1 })
        .expect("0.1 % loss");
    // Many quality windows (100 ms each) under the light loss: nothing moves.
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(next_hops(n1, &mesh), ["n2", "n3"], "0.1 % loss keeps n2");
    }
    for (a, b) in [(&agents[0], "n2"), (&agents[1], "n1")] {
        assert_eq!(link_events(a, "link_cost", b), 0, "no cost change at 0.1 %");
        assert_eq!(link_events(a, "link_down", b), 0, "no link down at 0.1 %");
    }
    assert_actions_in_force(&agents, 0, "the detector leaves 0.1 % loss alone");

    lab.fault(&link, Fault::Gray { permille: 200 })
        .expect("20 % loss");
    wait_for("20 % loss moves n1 off n2", Duration::from_secs(10), || {
        next_hops(n1, &mesh) == ["n3"]
    });
    // Either end may measure the loss first; its advert moves the other.
    let n2 = &agents[1];
    let why = link_events(n1, "link_cost", "n2")
        + link_events(n1, "link_down", "n2")
        + link_events(n2, "link_cost", "n1")
        + link_events(n2, "link_down", "n1");
    assert!(
        why >= 1,
        "an end logged why: {:?} {:?}",
        actions(n1),
        actions(n2)
    );
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 20)
            .expect("ping"),
        20,
        "the clean path carries everything"
    );
    // The detector, over the mesh-wide reports, finds the same link and avoids it too.
    // A loss this heavy may also take the link down now and then: flapping is avoided
    // the same way.
    let gray = |a: &Agent| {
        anomalies(a).active.iter().any(|x| {
            x.target == api::Target::link("n1", "n2")
                && (x.class == "gray_link" || x.class == "flapping")
        })
    };
    wait_explained(
        "every agent's detector avoids the gray link",
        Duration::from_secs(20),
        || agents.iter().all(gray),
        || {
            agents
                .iter()
                .map(|a| format!("{}: {:?} {:?}", a.node, anomalies(a), actions(a)))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_healed_link_is_taken_back_once_without_flapping() {
    let (_one, mut lab) = one_mesh("mesh-back");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    let (down0, up0) = (
        link_events(n1, "link_down", "n2"),
        link_events(n1, "link_up", "n2"),
    );
    let link = mesh.link("n1", "n2").expect("link").clone();
    lab.fault(&link, Fault::Silent).expect("fault");
    wait_for("n1 routes around n2", Duration::from_secs(5), || {
        next_hops(n1, &mesh) == ["n3"]
    });
    lab.heal(&link).expect("heal");
    wait_for("n1 takes n2 back", Duration::from_secs(15), || {
        next_hops(n1, &mesh) == ["n2", "n3"]
    });
    // Once back, it stays back.
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(next_hops(n1, &mesh), ["n2", "n3"], "the route is stable");
    }
    assert_eq!(link_events(n1, "link_down", "n2"), down0 + 1, "one down");
    assert_eq!(link_events(n1, "link_up", "n2"), up0 + 1, "one up");
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 20)
            .expect("ping"),
        20
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_crashed_node_is_routed_around() {
    let (_one, mut lab) = one_mesh("mesh-crash");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let mut agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let ttl0 = ttl_expired(&agents);
    // n2 dies: its agent killed, its links silent (the data plane gone with the node).
    let n2 = agents.remove(1);
    n2.kill().expect("kill n2's agent");
    let links: Vec<_> = ["n1", "n4", "n5"]
        .iter()
        .map(|o| mesh.link("n2", o).expect("link").clone())
        .collect();
    for l in &links {
        lab.fault(l, Fault::Silent).expect("silence");
    }
    let n1 = &agents[0];
    wait_for("n1 routes around n2", Duration::from_secs(5), || {
        next_hops(n1, &mesh) == ["n3"]
    });
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 20)
            .expect("ping"),
        20
    );
    assert_eq!(
        lab.ping("hd", &mesh.hs.host_v6.to_string(), 20)
            .expect("ping"),
        20,
        "and back, over IPv6"
    );
    assert_eq!(ttl_expired(&agents), ttl0, "no loop formed");
    drop(n2);
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_partition_withdraws_routes_and_heals() {
    let (_one, mut lab) = one_mesh("mesh-part");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let ttl0 = ttl_expired(&agents);
    // n6 (and hd behind it) cut off from the rest.
    let cut: Vec<_> = ["n4", "n5"]
        .iter()
        .map(|o| mesh.link("n6", o).expect("link").clone())
        .collect();
    for l in &cut {
        lab.fault(l, Fault::Silent).expect("cut");
    }
    let n1 = &agents[0];
    wait_for(
        "n1 withdraws its route to hd",
        Duration::from_secs(5),
        || route_to_hd(n1, &mesh).is_none(),
    );
    let dst = mesh.hd.host_v4.to_string();
    assert_eq!(
        lab.ping("hs", &dst, 5).expect("ping"),
        0,
        "hd is unreachable"
    );
    for l in &cut {
        lab.heal(l).expect("heal");
    }
    wait_for("the mesh heals", Duration::from_secs(15), || {
        next_hops(n1, &mesh).len() == 2
    });
    // The replies come back through n6, which heals on its own schedule.
    let mut r6 = None;
    let healed = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        r6 = route_to(&agents[5], mesh.hs.host_v4);
        r6.as_ref().is_some_and(|r| r.next_hops.len() == 2)
    });
    assert!(
        healed,
        "n6 routes hs again within 30 s: {r6:?}; n6's neighbours {}; lsdb {}",
        agents[5].query(&Request::Neighbors).expect("neighbors"),
        agents[5].query(&Request::Lsdb).expect("lsdb")
    );
    assert_eq!(lab.ping("hs", &dst, 20).expect("ping"), 20);
    assert_eq!(ttl_expired(&agents), ttl0, "no loop formed");
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn route_get_and_monitor_show_a_silent_member_its_backup_and_the_action() {
    use mesh_ctl::route_get::RouteLookup;
    let (_one, mut lab) = one_mesh("mesh-routeget");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    // Frozen: what changes below is the data plane's own fast reroute, not the routes.
    for a in &agents {
        a.query(&Request::Freeze { on: true }).expect("freeze");
    }
    let n1 = &agents[0];
    let (hs, hd) = (mesh.hs.host_v4.to_string(), mesh.hd.host_v4.to_string());
    let meshctl = lab.meshctl.display().to_string();
    let pin_dir = n1.pin_dir.display().to_string();
    // `meshctl route get` for one flow, as an operator on n1 would run it.
    let route_get = |output: &str| -> String {
        lab.exec_ok(
            "n1",
            &[
                &meshctl,
                "route",
                "get",
                &hd,
                "--flow",
                "udp",
                &hs,
                "40000",
                &hd,
                "5201",
                "--pin-dir",
                &pin_dir,
                "-o",
                output,
            ],
        )
        .expect("meshctl route get")
    };
    let get = || -> RouteLookup {
        let out = route_get("json");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let r = get();
    assert_eq!(
        r.prefix.map(|p| p.to_string()),
        Some(format!("{hd}/32")),
        "{r:?}"
    );
    assert_eq!(r.members.len(), 2, "n1 has two equal-cost ways: {r:?}");
    let chosen = r.chosen.expect("the flow picks a member");
    let member = &r.members[chosen];
    let backup = r.backup.clone().expect("the member has a backup");
    assert_ne!(backup.interface, member.interface);
    assert!(!r.backup_in_use, "{r:?}");
    let via = ["n2", "n3"]
        .into_iter()
        .find(|n| mesh.link("n1", n).expect("link").end("n1").ifname == member.interface)
        .expect("the member is n2 or n3");
    let link = mesh.link("n1", via).expect("link").clone();
    // An operator follows n1's actions live while the link fails.
    let follow = std::process::Command::new(&meshctl)
        .args([
            "monitor",
            "--type",
            "action",
            "--reason",
            "link_down",
            "--count",
            "1",
        ])
        .args(["-o", "json", "--socket"])
        .arg(&n1.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("meshctl monitor");
    std::thread::sleep(Duration::from_millis(300));
    lab.fault(&link, Fault::Silent).expect("fault");
    let last = std::cell::RefCell::new(None);
    wait_explained(
        "route get says the backup is in use",
        Duration::from_secs(5),
        || {
            let r = get();
            let used = r.backup_in_use;
            *last.borrow_mut() = Some(r);
            used
        },
        || format!("{:?}", last.borrow()),
    );
    // What an operator sees.
    let table = route_get("table");
    println!("{table}");
    assert!(table.contains("IN USE"), "{table}");
    let mut follow = follow;
    let ended = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        follow.try_wait().expect("monitor").is_some()
    });
    if !ended {
        let _ = follow.kill();
    }
    let followed = follow.wait_with_output().expect("monitor output");
    assert!(ended, "meshctl monitor showed no link_down within 10 s");
    let line = String::from_utf8_lossy(&followed.stdout);
    let seen: api::Monitored =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        matches!(&seen, api::Monitored::Action(a) if a.kind == "link_down" && a.detail.contains(via)),
        "monitor showed n1 losing {via}: {seen:?}"
    );
    lab.heal(&link).expect("heal");
    wait_for("the member is used again", Duration::from_secs(10), || {
        !get().backup_in_use
    });
    stop_all(agents);
}
