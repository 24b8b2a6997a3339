//! The six-router mesh of `meshctl agent`s: starting it, waiting for it to converge, and
//! reading the agents' views.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use mesh_ctl::api::{self, PrefixRoute, Request};
use mesh_lab::{Agent, Lab, mesh_agents, mesh6, stream::StreamRun};

/// One mesh at a time: six agents probing every 5 ms share the machine's cores, and two
/// meshes at once would test the scheduler rather than the agents.
static ONE_MESH: Mutex<()> = Mutex::new(());

/// A lab for a mesh, held alone while the guard lives.
pub fn one_mesh(tag: &str) -> (MutexGuard<'static, ()>, Lab) {
    let guard = ONE_MESH.lock().unwrap_or_else(PoisonError::into_inner);
    (guard, super::lab(tag))
}

pub fn secure_configs(lab: &Lab, mesh: &mesh6::Mesh6, extra: &str) -> Vec<mesh_lab::AgentConfig> {
    mesh_agents::secure_configs(lab, mesh, extra).expect("identities")
}

pub fn start_with(lab: &mut Lab, configs: &[mesh_lab::AgentConfig]) -> Vec<Agent> {
    configs
        .iter()
        .map(|c| lab.agent(c).expect("agent attaches"))
        .collect()
}

/// Starts an authenticated agent per router with `extra` in each configuration.
pub fn start(lab: &mut Lab, mesh: &mesh6::Mesh6, extra: &str) -> Vec<Agent> {
    let configs = secure_configs(lab, mesh, extra);
    start_with(lab, &configs)
}

/// n1's route to hd, if it has one.
pub fn route_to_hd(n1: &Agent, mesh: &mesh6::Mesh6) -> Option<PrefixRoute> {
    route_to(n1, mesh.hd.host_v4)
}

/// An agent's installed route to one host address, if it has one.
pub fn route_to(agent: &Agent, host: std::net::Ipv4Addr) -> Option<PrefixRoute> {
    let routes: api::RouteTable = agent.view(&Request::Routes).expect("routes");
    routes
        .routes
        .into_iter()
        .find(|r| r.prefix.to_string() == format!("{host}/32"))
}

/// Waits (bounded) until hs reaches hd and n1 uses both its equal-cost next hops; panics
/// with every agent's view if that never happens.
pub fn converge(lab: &Lab, mesh: &mesh6::Mesh6, agents: &[Agent]) {
    let dst = mesh.hd.host_v4.to_string();
    for _ in 0..120 {
        let both = route_to_hd(&agents[0], mesh).is_some_and(|r| r.next_hops.len() == 2);
        if both && lab.ping("hs", &dst, 1).expect("ping") == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let views: Vec<String> = agents
        .iter()
        .map(|a| {
            format!(
                "{}: {}\n{}",
                a.node,
                a.query(&Request::Neighbors)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                a.query(&Request::Routes)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    panic!("the mesh never converged:\n{}", views.join("\n"));
}

/// Polls `done` every 50 ms for at most `limit`; panics naming `what` if it never holds.
pub fn wait_for(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_explained(what, limit, done, String::new);
}

/// As [`wait_for`], and the panic adds what `explain` says about the state it ended in.
pub fn wait_explained(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}\n{}", explain());
}

/// Starts 1,000 packets/s from hs to hd for up to 30 s; returns it with the path it took.
pub fn stream_on_a_path(lab: &mut Lab, mesh: &mesh6::Mesh6) -> (StreamRun, Vec<String>) {
    let stream = lab
        .stream(
            "hs",
            "hd",
            mesh.hd.host_v4.into(),
            1000,
            Duration::from_secs(30),
        )
        .expect("stream");
    let mut path = None;
    wait_for("the stream takes a path", Duration::from_secs(5), || {
        path = mesh6::active_path(lab, mesh, Duration::from_millis(200), 100).expect("path");
        path.is_some()
    });
    (stream, path.expect("a path"))
}

/// The (kind, detail) of every action an agent logged.
pub fn actions(agent: &Agent) -> Vec<(String, String)> {
    let ev: api::Events = agent.view(&Request::Events).expect("events");
    ev.events.into_iter().map(|e| (e.kind, e.detail)).collect()
}

/// How many `kind` actions an agent logged about its neighbour `node`.
pub fn link_events(agent: &Agent, kind: &str, node: &str) -> usize {
    actions(agent)
        .iter()
        .filter(|(k, d)| k == kind && d.starts_with(&format!("{node} ")))
        .count()
}

/// Packets a router's data plane counted under `reason`.
pub fn reason_count(agent: &Agent, reason: &str) -> u64 {
    let d: api::Drops = agent.view(&Request::Drops).expect("reason counters");
    d.reasons
        .iter()
        .filter(|r| r.reason == reason)
        .map(|r| r.packets)
        .sum()
}

pub fn stop_all(agents: Vec<Agent>) {
    for a in agents {
        a.stop().expect("agent stops");
    }
}

/// Asserts that every agent has `count` actions in force: `what` says why.
pub fn assert_actions_in_force(agents: &[Agent], count: usize, what: &str) {
    for a in agents {
        let v = anomalies(a);
        assert_eq!(v.active.len(), count, "{}: {what}: {v:?}", a.node);
    }
}

/// An agent's anomalies view.
pub fn anomalies(agent: &Agent) -> api::Anomalies {
    agent
        .view::<Option<api::Anomalies>>(&Request::Anomalies)
        .expect("anomalies")
        .expect("detection is on")
}

/// Streams both ways across the mesh at `pps` for up to `limit`: hs to hd over IPv4 and
/// hd to hs over IPv6.
pub fn both_ways(
    lab: &mut Lab,
    mesh: &mesh6::Mesh6,
    pps: u32,
    limit: Duration,
) -> [(&'static str, mesh_lab::stream::StreamRun); 2] {
    let there = lab
        .stream("hs", "hd", mesh.hd.host_v4.into(), pps, limit)
        .expect("stream hs -> hd");
    let back = lab
        .stream("hd", "hs", mesh.hs.host_v6.into(), pps, limit)
        .expect("stream hd -> hs");
    [("hs -> hd", there), ("hd -> hs", back)]
}

/// Every file and directory under `dir` (a pin directory), sorted.
pub fn pins(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("pin dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.display().to_string());
        }
    }
    out.sort();
    out
}
