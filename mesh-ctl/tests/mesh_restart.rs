//! The mesh's agents restarting: a restart under traffic adopts the pinned data plane, and
//! an invalid configuration is refused with forwarding left running.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::time::Duration;

use mesh_ctl::api::{self, Request};
use mesh_lab::mesh6;
use support::mesh::{
    actions, both_ways, converge, one_mesh, pins, secure_configs, start_with, stop_all,
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
    assert!(same, "n1 routes as before: {routes:?} vs {now:?}");
    agents.insert(0, good);
    stop_all(agents);
}
