//! Beside another datapath on the same interfaces, as on a Kubernetes node with Cilium:
//! forwarding at TC ingress when the XDP hook is someone else's, from the same forwarding
//! core; the other side's programs keep running, keep their place and see what they would
//! see without us.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::collections::BTreeMap;

use mesh_ctl::api::{self, Request};
use mesh_lab::{Agent, Lab, topology};
use support::lab;

fn reasons(agent: &Agent) -> BTreeMap<String, u64> {
    let d: api::Drops = agent.view(&Request::Drops).expect("drops");
    d.reasons
        .into_iter()
        .map(|r| (r.reason.to_string(), r.packets))
        .collect()
}

fn with_hook(t: &topology::Topology, node: &str, hook: &str) -> mesh_lab::AgentConfig {
    let mut c = t
        .configs
        .iter()
        .find(|c| c.node == node)
        .expect("config")
        .clone();
    c.extra
        .push_str(&format!("\n[dataplane]\nhook = \"{hook}\"\n"));
    c
}

fn start_line(lab: &mut Lab, t: &topology::Topology, r: mesh_lab::AgentConfig) -> Vec<Agent> {
    t.configs
        .iter()
        .map(|c| {
            let c = if c.node == r.node {
                r.clone()
            } else {
                c.clone()
            };
            lab.agent(&c).expect("agent attaches")
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn the_router_forwards_at_tcx_ingress_when_told_to() {
    let mut lab = lab("tcx-line");
    let t = topology::line(&mut lab).expect("line");
    let r = with_hook(&t, "r", "tcx");
    let agents = start_line(&mut lab, &t, r);
    let router = agents.iter().find(|a| a.node == "r").expect("r");
    assert_eq!(
        router.attached["forwarding"],
        serde_json::json!({"r-a": "tcx", "r-b": "tcx"}),
        "{}",
        router.attached
    );
    for ifname in ["r-a", "r-b"] {
        assert_eq!(
            lab.xdp_program("r", ifname).expect("ip link"),
            None,
            "no XDP on {ifname}"
        );
    }
    let before = reasons(router);
    assert_eq!(
        lab.ping(&t.src, &t.dst_v4.to_string(), 20).expect("ping"),
        20
    );
    assert_eq!(
        lab.ping(&t.src, &t.dst_v6.to_string(), 20).expect("ping"),
        20
    );
    let one = lab
        .exec_ok(&t.src, &["ping", "-n", "-c", "1", &t.dst_v4.to_string()])
        .expect("ping");
    assert!(one.contains("ttl=63"), "one hop: {one}");
    router.settle(1, std::time::Duration::from_secs(1));
    let after = reasons(router);
    let d = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert!(d("forwarded_v4") >= 42, "forwarded at TC: {after:?}");
    assert!(d("forwarded_v6") >= 40, "forwarded at TC: {after:?}");
}
