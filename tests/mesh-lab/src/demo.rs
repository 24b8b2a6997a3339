//! `cargo xtask demo`: six routers in namespaces, every link through a wire namespace,
//! an agent per router; steady traffic across, then a silent failure on its path, healed
//! by the data plane's fast reroute and the agents' reconvergence.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, ensure};

use super::{
    Agent, Fault, Lab, mesh_agents,
    mesh6::{self, RoundOptions},
    plot,
};
use crate::api::Request;

const PLOT: &str = "target/demo/failover.svg";

pub fn run(meshctl: PathBuf) -> Result<()> {
    let mut lab = Lab::new("demo", meshctl)?;
    println!("x0tta6bl4 demo: hs - n1 - {{n2, n3}} - {{n4, n5}} - n6 - hd");
    println!("  every link passes through a wire namespace (a bridge) where faults are injected;");
    println!("  routers forward in XDP only (kernel IP forwarding off)\n");
    let mesh = mesh6::mesh6(&mut lab)?;
    let mut agents: Vec<Agent> = Vec::new();
    // Authenticated, as agents run by default: every router holds an identity from one
    // mesh authority.
    for c in mesh_agents::secure_configs(&lab, &mesh, "")? {
        agents.push(lab.agent(&c)?);
        eprintln!(
            "  agent on {} attached to {}",
            c.node,
            c.interfaces.join(", ")
        );
    }
    let n1 = agents.first().context("no agents")?;
    wait_converged(&lab, &mesh, n1)?;
    println!(
        "mesh converged: n1 reaches hd over two equal-cost next hops, each the other's backup"
    );
    show(&lab, n1, &["routes"])?;

    println!(
        "\nsteady stream hs -> hd, 2000 packets/s; silent failure (nftables drop in the wire,"
    );
    println!("carrier stays up) on the first hop of its path");
    let opts = RoundOptions {
        pps: 2000,
        fault: Fault::Silent,
        restore_limit: Duration::from_secs(10),
        series_bucket_ms: 5,
    };
    let round = mesh6::failure_round(&mut lab, &mesh, 0, &opts)?;
    let (a, b) = round.link.split_once('-').context("a link name is a-b")?;
    let head = agents
        .iter()
        .find(|x| x.node == a)
        .context("the head's agent")?;
    let detect_ms = detection_ms(head, b, round.fault_at_ns)?;
    let o = &round.outage;
    println!("  failed link        {}", round.link);
    println!("  path before        {}", round.path_before.join(" -> "));
    println!(
        "  path after         {}",
        round
            .path_after
            .as_ref()
            .map_or("(not restored)".to_owned(), |p| p.join(" -> "))
    );
    println!("  detected by {a:<6} {detect_ms:.1} ms after the fault (probe silence)");
    println!(
        "  traffic restored   {:.1} ms after the fault",
        o.restore_ms
    );
    println!("  packets lost       {} of {} sent", o.lost, o.sent);
    ensure!(o.restored, "traffic did not come back after the failure");

    println!("\nwhat {a}'s agent did (meshctl events):");
    show(&lab, head, &["events"])?;
    println!("\nneighbours of {a} (meshctl neighbors):");
    show(&lab, head, &["neighbors"])?;
    println!("\nauthenticated sessions of {a} (meshctl peers):");
    show(&lab, head, &["peers"])?;

    let plot_path = PathBuf::from(PLOT);
    if let Some(dir) = plot_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    plot::rate_over_time(
        &plot_path,
        &format!(
            "hs -> hd, silent failure of {} (restored in {:.1} ms)",
            round.link, o.restore_ms
        ),
        &round.series,
        round.fault_s,
    )?;
    for agent in agents {
        agent.stop()?;
    }
    println!(
        "\ndemo: detect_ms={detect_ms:.1} restore_ms={:.1} lost={} plot={}",
        o.restore_ms,
        o.lost,
        plot_path.display()
    );
    Ok(())
}

/// Waits (bounded) until n1 routes to hd over both next hops.
pub fn wait_converged(lab: &Lab, mesh: &mesh6::Mesh6, n1: &Agent) -> Result<()> {
    let prefix = format!("{}/32", mesh.hd.host_v4);
    for _ in 0..200 {
        let routes: crate::api::RouteTable = n1.view(&Request::Routes)?;
        let both = routes
            .routes
            .iter()
            .any(|r| r.prefix.to_string() == prefix && r.next_hops.len() == 2);
        if both && lab.ping("hs", &mesh.hd.host_v4.to_string(), 1)? == 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the mesh did not converge within 20 s")
}

/// When the agent at the failed link's head declared it down, after the fault.
pub fn detection_ms(head: &Agent, neighbor: &str, fault_at_ns: u64) -> Result<f64> {
    // The API's view is refreshed every telemetry interval.
    std::thread::sleep(Duration::from_millis(1100));
    let events: crate::api::Events = head.view(&Request::Events)?;
    let at = events
        .events
        .iter()
        .filter(|x| {
            x.kind == "link_down"
                && x.detail.starts_with(&format!("{neighbor} "))
                && x.mono_ns >= fault_at_ns
        })
        .map(|x| x.mono_ns)
        .min()
        .with_context(|| format!("{} never declared the link to {neighbor} down", head.node))?;
    Ok((at - fault_at_ns) as f64 / 1e6)
}

fn show(lab: &Lab, agent: &Agent, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(&lab.meshctl)
        .args(args)
        .arg("--socket")
        .arg(&agent.socket)
        .output()
        .context("running meshctl")?;
    ensure!(
        out.status.success(),
        "meshctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines().take(16) {
        println!("  {line}");
    }
    Ok(())
}
