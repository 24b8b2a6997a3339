//! The self-healing mesh: six routers running `meshctl agent` with link-state routing,
//! probes and fast reroute, faults injected in the wires between them.

use std::{path::PathBuf, time::Duration};

use mesh_ctl::{
    api::Request,
    lab::{Agent, Fault, Lab, mesh_agents, mesh6},
    netns,
};

fn lab(tag: &str) -> Option<Lab> {
    if !netns::privileged(tag) {
        return None;
    }
    Some(Lab::new(tag, PathBuf::from(env!("CARGO_BIN_EXE_meshctl"))).expect("lab"))
}

fn start(lab: &mut Lab, mesh: &mesh6::Mesh6, extra: &str) -> Vec<Agent> {
    mesh_agents::configs(mesh, extra)
        .iter()
        .map(|c| lab.agent(c).expect("agent attaches"))
        .collect()
}

/// n1's route to hd, if it has one.
fn route_to_hd(n1: &Agent, mesh: &mesh6::Mesh6) -> Option<serde_json::Value> {
    let routes = n1.query(&Request::Routes).expect("routes");
    routes["routes"].as_array().and_then(|r| {
        r.iter()
            .find(|r| r["prefix"] == format!("{}/32", mesh.hd.host_v4))
            .cloned()
    })
}

/// Waits (bounded) until hs reaches hd and n1 uses both its equal-cost next hops; panics
/// with every agent's view if that never happens.
fn converge(lab: &Lab, mesh: &mesh6::Mesh6, agents: &[Agent]) {
    let dst = mesh.hd.host_v4.to_string();
    for _ in 0..120 {
        let both = route_to_hd(&agents[0], mesh)
            .is_some_and(|r| r["next_hops"].as_array().is_some_and(|h| h.len() == 2));
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

#[test]
fn mesh_converges_and_routes_around_a_silent_failure() {
    let Some(mut lab) = lab("mesh-silent") else {
        return;
    };
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
    let lsdb = n1.query(&Request::Lsdb).expect("lsdb");
    assert_eq!(
        lsdb["adverts"].as_array().map(Vec::len),
        Some(6),
        "n1 holds every router's advert: {lsdb}"
    );
    let hd = route_to_hd(n1, &mesh).expect("n1 routes to hd");
    assert_eq!(
        hd["next_hops"],
        serde_json::json!(["n2", "n3"]),
        "two equal-cost next hops: {hd}"
    );
    assert_eq!(
        hd["backups"],
        serde_json::json!(["n3", "n2"]),
        "each protects the other: {hd}"
    );

    let link = mesh.link("n1", "n2").expect("link").clone();
    lab.fault(&link, Fault::Silent).expect("fault");
    // The agents reconverge around it (bounded wait).
    let mut rerouted = false;
    for _ in 0..60 {
        if route_to_hd(&agents[0], &mesh)
            .is_some_and(|r| r["next_hops"] == serde_json::json!(["n3"]))
        {
            rerouted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rerouted, "n1 stopped routing via n2");
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
                a.query(&Request::Drops)
                    .map(|v| v["reasons"].to_string())
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
    let events = n1.query(&Request::Events).expect("events");
    let kinds: Vec<String> = events["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        kinds.iter().any(|k| k == "link_down"),
        "n1 saw the link go down: {kinds:?}"
    );
    for a in agents {
        a.stop().expect("agent stops");
    }
}
