//! `cargo xtask demo`: a diamond of XDP routers in namespaces, real traffic across it,
//! and what every router's data plane counted.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context as _, Result, ensure};

use super::{Lab, topology};

pub fn run(meshctl: PathBuf) -> Result<()> {
    let mut lab = Lab::new("demo", meshctl)?;
    println!(
        "x0tta6bl4 demo: s - a - {{b, c}} - d, routers a, b, c forward in XDP (kernel IP forwarding off)"
    );
    let t = topology::diamond(&mut lab)?;
    let mut agents = BTreeMap::new();
    for c in &t.configs {
        let agent = lab.agent(c)?;
        println!(
            "  agent on {:<2} attached to {}",
            c.node,
            c.interfaces.join(", ")
        );
        agents.insert(c.node.clone(), agent);
    }
    let (v4, v6) = (t.dst_v4.to_string(), t.dst_v6.to_string());
    println!("\nforwarding");
    for addr in [&v4, &v6] {
        let got = lab.ping(&t.src, addr, 20)?;
        println!("  ping s -> d {addr:<14} {got}/20 answered");
        ensure!(got == 20, "ping to {addr} lost packets");
    }
    lab.iperf3_server(&t.dst)?;
    let tcp = lab.iperf3(&t.src, &v4, &["-P", "16", "-t", "3"])?;
    let bps = tcp["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    println!("  iperf3 TCP, 16 flows, 3 s: {:.0} Mbit/s", bps / 1e6);
    let udp = lab.iperf3(&t.src, &v6, &["-u", "-b", "50M", "-t", "2", "-P", "4"])?;
    let (sent, lost) = (
        udp["end"]["sum"]["packets"].as_u64().unwrap_or(0),
        udp["end"]["sum"]["lost_packets"].as_u64().unwrap_or(0),
    );
    println!("  iperf3 UDP over IPv6, 4 flows, 50 Mbit/s, 2 s: {sent} datagrams, {lost} lost");

    if let Some(a) = agents.get("a") {
        // Let the agent take one more reading, then show what an operator would run.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        for args in [
            &["links"][..],
            &["flows", "--top", "8", "--sort", "bytes"][..],
            &["drops"][..],
        ] {
            println!("\ntelemetry on a: meshctl {}", args.join(" "));
            let out = std::process::Command::new(&lab.meshctl)
                .args(args)
                .arg("--socket")
                .arg(&a.socket)
                .output()
                .context("running meshctl")?;
            ensure!(
                out.status.success(),
                "meshctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("  {line}");
            }
        }
        let scrape = a.scrape("127.0.0.1:9464")?;
        let series = scrape
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        println!(
            "\nPrometheus on a (127.0.0.1:9464 in its namespace): {series} series, none per flow"
        );
    }

    println!("\ndata plane counters (per reason, from each router's XDP program)");
    println!(
        "  {:<4} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "node", "forwarded_v4", "forwarded_v6", "passed", "dropped", "ecmp"
    );
    for node in &t.routers {
        let Some(agent) = agents.remove(node) else {
            continue;
        };
        let r = agent.stop()?;
        let sum = |p: &str| {
            r.iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(_, v)| v)
                .sum::<u64>()
        };
        println!(
            "  {:<4} {:>12} {:>12} {:>10} {:>10} {:>8}",
            node,
            r["forwarded_v4"],
            r["forwarded_v6"],
            sum("pass_"),
            sum("drop_"),
            if node == "a" { "b+c" } else { "" }
        );
    }
    println!(
        "\nb and c both carry a's s -> d flows: the per-flow hash spreads them, one path per flow."
    );
    println!("Next in the roadmap: probing and self-healing reroute (issue 4).");
    Ok(())
}
