//! The mesh's agents restarting: a restart under traffic adopts the pinned data plane, and
//! an invalid configuration is refused with forwarding left running.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::time::Duration;

use mesh_ctl::api::{self, Request};
use mesh_lab::mesh6;
use support::mesh::{
    actions, both_ways, converge, one_mesh, pins, secure_configs, start_with, stop_all,
    wait_explained, wait_for,
};

#[test]
#[ignore = "needs root"]
fn agents_restart_under_traffic_without_losing_a_packet() {
    let (_one, mut lab) = one_mesh("mesh-restart");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let streams = both_ways(&mut lab, &mesh, 1000, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    // The head end and a transit router, one after the other.
    for i in [0, 1] {
        agents[i].exit().expect("agent exits, forwarding kept");
        std::thread::sleep(Duration::from_millis(500));
        let again = lab.agent(&configs[i]).expect("agent restarts");
        assert_eq!(
            again.attached["adopted"], true,
            "the restarted agent adopts the pins: {}",
            again.attached
        );
        agents[i] = again;
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut lost = Vec::new();
    for (what, run) in streams {
        let (sent, arrivals) = run.stop().expect("stream");
        let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
        assert!(sent > 3000, "{what}: the stream ran ({sent} sent)");
        lost.push((what, outage.lost));
    }
    if lost.iter().any(|(_, n)| *n > 0) {
        let views: Vec<String> = agents
            .iter()
            .map(|a| {
                let reasons = a.view::<api::Drops>(&Request::Drops).map(|d| {
                    d.reasons
                        .iter()
                        .filter(|x| x.packets > 0)
                        .map(|x| format!("{:?}={}", x.reason, x.packets))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                format!("{}: {reasons:?}\n  {:?}", a.node, actions(a))
            })
            .collect();
        panic!(
            "packets lost across restarts: {lost:?}\n{}",
            views.join("\n")
        );
    }
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn an_invalid_config_is_refused_and_forwarding_is_untouched() {
    let (_one, mut lab) = one_mesh("mesh-badcfg");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let n1 = agents.remove(0);
    let routes: api::RouteTable = n1.view(&Request::Routes).expect("routes");
    n1.exit().expect("n1's agent exits, forwarding kept");
    let before = pins(&n1.pin_dir);
    let mut bad = configs[0].clone();
    bad.extra
        .push_str("\n[probe]\ninterval_ms = 5\ndead_ms = 2\n");
    let err = lab.agent(&bad).err().expect("the agent refuses the config");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("probe.dead_ms"),
        "the error names the key: {msg}"
    );
    assert_eq!(pins(&n1.pin_dir), before, "the pins are untouched");
    let dst = mesh.hd.host_v4.to_string();
    assert_eq!(
        lab.ping("hs", &dst, 10).expect("ping"),
        10,
        "forwarding runs on"
    );
    let good = lab.agent(&configs[0]).expect("the good config starts");
    assert_eq!(good.attached["adopted"], true, "{}", good.attached);
    let mut now = None;
    let same = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let table: api::RouteTable = good.view(&Request::Routes).expect("routes");
        let same = table.routes == routes.routes;
        now = Some(table);
        same
    });
    assert!(
        same,
        "n1 routes as before: {routes:?} vs {now:?}\n{:?}",
        actions(&good)
    );
    agents.insert(0, good);
    stop_all(agents);
}

/// The nodes `agent` holds a session with.
fn sessions(agent: &mesh_lab::Agent) -> Vec<String> {
    agent
        .view::<Option<api::Peers>>(&Request::Peers)
        .ok()
        .flatten()
        .map(|p| p.peers.into_iter().map(|p| p.node).collect())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn agents_killed_during_handshakes_and_route_installs_leave_a_mesh_that_forwards_and_recovers() {
    let (_one, mut lab) = one_mesh("mesh-kill9");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);

    // A transit router's agent, killed again and again while its handshakes run: right
    // after it attached, and a little later.
    let streams = both_ways(&mut lab, &mesh, 1000, Duration::from_secs(60));
    for delay_ms in [0, 20, 60, 150, 400] {
        agents[1].kill_and_wait().expect("kill -9");
        agents[1] = lab.agent(&configs[1]).expect("restart");
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    agents[1].kill_and_wait().expect("kill -9");
    agents[1] = lab.agent(&configs[1]).expect("restart");
    let n2 = &agents[1];
    let neighbours = mesh.neighbours("n2");
    wait_explained(
        "n2 and each neighbour hold a session again",
        Duration::from_secs(20),
        || {
            let mine = sessions(n2);
            neighbours.iter().all(|n| {
                mine.iter().any(|m| m == n)
                    && agents
                        .iter()
                        .find(|a| a.node == *n)
                        .is_some_and(|a| sessions(a).iter().any(|m| m == "n2"))
            })
        },
        || format!("n2 has sessions with {:?}", sessions(n2)),
    );
    // And routes on them for a while.
    std::thread::sleep(Duration::from_secs(2));
    for (what, run) in streams {
        let (sent, arrivals) = run.stop().expect("stream");
        let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
        assert!(sent > 3000, "{what}: the stream ran ({sent} sent)");
        assert_eq!(outage.lost, 0, "{what}: lost across kills mid-handshake");
    }

    // A transit router's agent, killed while it takes the data plane over for an upgrade
    // (before, amid and after its program swaps): the next start takes over whatever it
    // left, and no packet is lost.
    let streams = both_ways(&mut lab, &mesh, 1000, Duration::from_secs(60));
    let config_file = lab.dir().join(format!("{}.toml", configs[2].node));
    for delay_ms in [5, 15, 40, 100] {
        agents[2].exit().expect("agent exits, forwarding kept");
        let mut upgrade = configs[2].clone();
        upgrade.args = vec![
            "--ebpf-object".into(),
            mesh_lab::labtools::UPGRADE_OBJECT.into(),
        ];
        let file = config_file.display().to_string();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-f", &file])
                .status();
        });
        // It may be killed before or after it attached: either way is the test.
        let upgraded = lab.agent(&upgrade);
        killer.join().expect("killer");
        if let Ok(a) = upgraded {
            let _ = a.kill_and_wait();
        }
        agents[2] = lab.agent(&configs[2]).expect("the next start");
        assert_eq!(
            agents[2].attached["adopted"], true,
            "{}",
            agents[2].attached
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for (what, run) in streams {
        let (sent, arrivals) = run.stop().expect("stream");
        let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
        assert!(sent > 3000, "{what}: the stream ran ({sent} sent)");
        assert_eq!(outage.lost, 0, "{what}: lost across kills mid-upgrade");
    }

    // The head end's agent, killed while it installs the routes of a failure: every
    // route it left in the maps resolves to a next hop (none is half written), and the
    // restarted agent adopts them and routes around the failure.
    let dst = mesh.hd.host_v4.to_string();
    let meshctl = lab.meshctl.display().to_string();
    let link = mesh.link("n1", "n2").expect("link").clone();
    for delay_ms in [0, 5, 30] {
        lab.fault_at(&link, mesh_lab::Fault::Down).expect("fault");
        std::thread::sleep(Duration::from_millis(delay_ms));
        agents[0].kill_and_wait().expect("kill -9 mid-install");
        let pin_dir = agents[0].pin_dir.display().to_string();
        let out = lab
            .exec_ok(
                "n1",
                &[
                    &meshctl,
                    "route",
                    "get",
                    &dst,
                    "--pin-dir",
                    &pin_dir,
                    "-o",
                    "json",
                ],
            )
            .expect("meshctl route get on the dead agent's maps");
        let r: mesh_ctl::route_get::RouteLookup =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(
            r.group.is_some() && !r.members.is_empty(),
            "{delay_ms} ms into the failure: the route to hd is whole: {r:?}"
        );
        agents[0] = lab.agent(&configs[0]).expect("restart");
        assert_eq!(agents[0].attached["adopted"], true);
        wait_for(
            "the restarted agent routes around the failure",
            Duration::from_secs(10),
            || lab.ping("hs", &dst, 1).is_ok_and(|n| n == 1),
        );
        lab.heal(&link).expect("heal");
        converge(&lab, &mesh, &agents);
    }
    stop_all(agents);
}
