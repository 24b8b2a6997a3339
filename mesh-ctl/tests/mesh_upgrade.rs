//! Upgrades in place: a new build over a running data plane replaces its programs on the
//! pinned links while every packet keeps flowing and every map keeps its contents; the
//! previous build comes back the same way; a data plane of another map layout is refused
//! untouched; a changed flow table size or interface list is applied on the same path.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{collections::BTreeMap, time::Duration};

use mesh_ctl::{
    api::{self, Request},
    telemetry::SortKey,
};
use mesh_lab::{Agent, AgentConfig, Lab, labtools::UPGRADE_OBJECT, mesh6};
use support::mesh::{
    both_ways, converge, one_mesh, pins, secure_configs, start_with, stop_all, wait_explained,
};

/// Attachment → program tag, as the kernel reports it through the agent.
fn tags(agent: &Agent) -> BTreeMap<String, String> {
    let status: api::Status = agent.view(&Request::Status).expect("status");
    status
        .programs
        .into_iter()
        .map(|p| (p.attachment, p.tag))
        .collect()
}

/// Every packet the data plane has counted, by any reason.
fn counted(agent: &Agent) -> u64 {
    let drops: api::Drops = agent.view(&Request::Drops).expect("drops");
    drops.reasons.iter().map(|r| r.packets).sum()
}

fn flows(agent: &Agent) -> api::Flows {
    agent
        .view(&Request::Flows {
            top: 100,
            sort: SortKey::Bytes,
        })
        .expect("flows")
}

fn flow_id(f: &api::FlowView) -> (&str, &str, &str, &str, &str) {
    (&f.direction, &f.link, &f.protocol, &f.src, &f.dst)
}

fn upgraded(config: &AgentConfig) -> AgentConfig {
    let mut c = config.clone();
    c.args = vec!["--ebpf-object".into(), UPGRADE_OBJECT.into()];
    c
}

/// Replaces the agent `agents[i]` by one started from `config`; returns the counters the
/// old one had and the new one's.
fn replace(lab: &mut Lab, agents: &mut [Agent], i: usize, config: &AgentConfig) -> (u64, u64) {
    let before = counted(&agents[i]);
    agents[i].exit().expect("agent exits, forwarding kept");
    std::thread::sleep(Duration::from_millis(300));
    let again = lab.agent(config).expect("the agent starts over the pins");
    assert_eq!(
        again.attached["adopted"], true,
        "it takes over the running data plane: {}",
        again.attached
    );
    agents[i] = again;
    (before, counted(&agents[i]))
}

#[test]
#[ignore = "needs root"]
fn upgrade_and_rollback_under_traffic_lose_nothing() {
    let (_one, mut lab) = one_mesh("mesh-upgrade");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let first: Vec<BTreeMap<String, String>> = agents.iter().map(tags).collect();
    for (a, t) in agents.iter().zip(&first) {
        // Two attachments (XDP and TC egress) per interface, each with its tag.
        assert!(
            !t.is_empty() && t.values().all(|v| v.len() == 16),
            "{}: {t:?}",
            a.node
        );
    }
    let routes: Vec<api::RouteTable> = agents
        .iter()
        .map(|a| a.view(&Request::Routes).expect("routes"))
        .collect();
    let streams = both_ways(&mut lab, &mesh, 2000, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(1));
    // Every router, so whichever path the streams take runs through upgraded ones.
    for (i, config) in configs.iter().enumerate() {
        let (before, after) = replace(&mut lab, &mut agents, i, &upgraded(config));
        assert!(
            after >= before,
            "{}: the counters carried over ({before} before, {after} after)",
            config.node
        );
        let now = tags(&agents[i]);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            first[i].keys().collect::<Vec<_>>(),
            "{}: the same attachments",
            config.node
        );
        for (link, tag) in &now {
            assert_ne!(
                tag, &first[i][link],
                "{}: {link} runs the new build's program",
                config.node
            );
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let second: Vec<BTreeMap<String, String>> = agents.iter().map(tags).collect();
    for (a, r) in agents.iter().zip(&routes) {
        wait_explained(
            "the routes are as before",
            Duration::from_secs(10),
            || {
                a.view::<api::RouteTable>(&Request::Routes)
                    .is_ok_and(|now| now.routes == r.routes)
            },
            || {
                format!(
                    "{}: {:?} then {:?}",
                    a.node,
                    r.routes,
                    a.query(&Request::Routes)
                )
            },
        );
    }
    // And back to the first build.
    for (i, config) in configs.iter().enumerate() {
        let (before, after) = replace(&mut lab, &mut agents, i, config);
        assert!(after >= before, "{}: counters carried over", config.node);
        assert_eq!(
            tags(&agents[i]),
            first[i],
            "{}: the first build runs again",
            config.node
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut lost = Vec::new();
    for (what, run) in streams {
        let (sent, arrivals) = run.stop().expect("stream");
        let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
        assert!(sent > 20_000, "{what}: the stream ran ({sent} sent)");
        println!(
            "upgrade and rollback under traffic, {what}: {sent} sent, {} lost",
            outage.lost
        );
        lost.push((what, outage.lost));
    }
    assert!(
        lost.iter().all(|(_, n)| *n == 0),
        "packets lost across upgrades: {lost:?} (tags {first:?} then {second:?})"
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_data_plane_of_another_layout_is_refused_and_left_running() {
    let (_one, mut lab) = one_mesh("mesh-layout");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let n1 = agents.remove(0);
    let running = tags(&n1);
    n1.exit().expect("n1's agent exits, forwarding kept");
    let pin_dir = n1.pin_dir.clone();
    let listing = pins(&pin_dir);
    // The pins now claim a layout this build does not have, as a newer build's would.
    let meta = pin_dir.join("maps").join(mesh_common::maps::META);
    let set_layout = |v: u32| {
        let data = aya::maps::MapData::from_pin(&meta).expect("META pin");
        let mut map: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("META");
        map.set(0, v, 0).expect("writing META");
    };
    set_layout(mesh_common::maps::LAYOUT_VERSION + 1);
    let err = lab
        .agent(&configs[0])
        .err()
        .expect("the agent refuses another layout");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("layout") && msg.contains("meshctl detach"),
        "the refusal says what to do: {msg}"
    );
    assert_eq!(pins(&pin_dir), listing, "nothing under the pins changed");
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 10)
            .expect("ping"),
        10,
        "the running data plane forwards on"
    );
    set_layout(mesh_common::maps::LAYOUT_VERSION);
    let again = lab
        .agent(&configs[0])
        .expect("the same layout is taken over");
    assert_eq!(again.attached["adopted"], true, "{}", again.attached);
    assert_eq!(
        tags(&again).keys().collect::<Vec<_>>(),
        running.keys().collect::<Vec<_>>(),
        "the same attachments"
    );
    agents.insert(0, again);
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn flow_table_size_and_interfaces_change_on_a_restart() {
    let (_one, mut lab) = one_mesh("mesh-reshape");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = secure_configs(&lab, &mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let dst = mesh.hd.host_v4.to_string();
    assert_eq!(lab.ping("hs", &dst, 5).expect("ping"), 5);
    let flows_before = flows(&agents[0]);
    assert!(!flows_before.flows.is_empty(), "n1 tracks the ping's flows");

    // A bigger flow table: a new map, the flows copied into it.
    let mut bigger = configs[0].clone();
    bigger
        .extra
        .push_str("\n[telemetry]\nflow_capacity = 70000\n");
    agents[0].exit().expect("exit");
    let n1 = lab.agent(&bigger).expect("n1 with a bigger flow table");
    assert_eq!(n1.attached["flow_capacity"], 70000, "{}", n1.attached);
    let flows_after = flows(&n1);
    assert_eq!(flows_after.flow_table.capacity, 70000);
    for f in &flows_before.flows {
        assert!(
            flows_after
                .flows
                .iter()
                .any(|g| flow_id(g) == flow_id(f) && g.packets >= f.packets),
            "flow {:?} kept its counters in the new table: {flows_after:?}",
            flow_id(f)
        );
    }
    agents[0] = n1;

    // One interface fewer: only its attachments go; then it comes back.
    let all = tags(&agents[0]);
    let mut fewer = bigger.clone();
    let dropped = fewer.interfaces.pop().expect("an interface");
    agents[0].exit().expect("exit");
    let n1 = lab.agent(&fewer).expect("n1 on fewer interfaces");
    let now = tags(&n1);
    let gone: Vec<&String> = all.keys().filter(|k| !now.contains_key(*k)).collect();
    assert_eq!(
        gone,
        [&format!("tcx-{dropped}"), &format!("xdp-{dropped}")],
        "only {dropped}'s attachments went"
    );
    for (k, t) in &now {
        assert_ne!(t, "", "{k} still runs");
    }
    agents[0] = n1;
    agents[0].exit().expect("exit");
    let n1 = lab.agent(&bigger).expect("n1 on all its interfaces again");
    assert_eq!(
        tags(&n1).keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>(),
        "{dropped} is attached again"
    );
    agents[0] = n1;
    converge(&lab, &mesh, &agents);
    assert_eq!(lab.ping("hs", &dst, 5).expect("ping"), 5);
    stop_all(agents);
}
