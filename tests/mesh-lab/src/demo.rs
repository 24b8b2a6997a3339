//! `cargo xtask demo`: six routers in namespaces, every link through a wire namespace,
//! an agent per router; steady traffic across, then a silent failure on its path, healed
//! by the data plane's fast reroute and the agents' reconvergence.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, ensure};

use super::{
    Agent, Fault, Lab, mesh_agents,
    mesh6::{self, RoundOptions},
    observe::{self, Monitoring},
    plot,
};
use crate::api::Request;

const PLOT: &str = "target/demo/failover.svg";
const DASHBOARD: &str = "target/demo/dashboard.svg";

/// Named lines of (seconds, value) points, one per series of a range query.
type Lines = Vec<(String, Vec<(f64, f64)>)>;

pub fn run(meshctl: PathBuf, observe: bool) -> Result<()> {
    let mut lab = Lab::new("demo", meshctl)?;
    println!("x0tta6bl4 demo: hs - n1 - {{n2, n3}} - {{n4, n5}} - n6 - hd");
    println!("  every link passes through a wire namespace (a bridge) where faults are injected;");
    println!("  routers forward in XDP only (kernel IP forwarding off)\n");
    let mesh = mesh6::mesh6(&mut lab)?;
    let targets = match observe {
        true => observe::management_network(&mut lab, &mesh.routers)?,
        false => Vec::new(),
    };
    let mut agents: Vec<Agent> = Vec::new();
    // Authenticated, as agents run by default: every router holds an identity from one
    // mesh authority.
    let mut configs = mesh_agents::secure_configs(&lab, &mesh, "")?;
    for (c, (_, addr)) in configs.iter_mut().zip(&targets) {
        c.extra.push_str(&observe::metrics_table(*addr));
    }
    for c in configs {
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
    let monitoring = match observe {
        true => {
            let m = Monitoring::start(&mut lab, &targets, &observe::shipped_rules())?;
            println!(
                "\nmonitoring: Prometheus scrapes the {} agents every {} s over a management \
                 network and evaluates the shipped alert rules; Alertmanager delivers to a webhook",
                targets.len(),
                observe::SCRAPE.as_secs()
            );
            Some((m, std::time::Instant::now()))
        }
        false => None,
    };

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
    let mut observed = String::new();
    if let Some((mon, started)) = &monitoring {
        let link = mesh.link(a, b)?.clone();
        let picture = watch_alert(&mut lab, &mesh, mon, *started, &link, a, b)?;
        observed = format!(" dashboard={}", picture.display());
    }
    for agent in agents {
        agent.stop()?;
    }
    println!(
        "\ndemo: detect_ms={detect_ms:.1} restore_ms={:.1} lost={} plot={}{observed}",
        o.restore_ms,
        o.lost,
        plot_path.display()
    );
    Ok(())
}

/// `--observe`: the same silent failure held for longer than the neighbour-down alert's
/// `for:` under a stream, the alerts that fired and resolved, and the dashboard's key
/// panels over the whole run as one picture.
fn watch_alert(
    lab: &mut Lab,
    mesh: &mesh6::Mesh6,
    mon: &Monitoring,
    started: std::time::Instant,
    link: &super::Link,
    a: &str,
    b: &str,
) -> Result<PathBuf> {
    println!(
        "\nthe same failure of {a}-{b}, held until X0tta6bl4NeighborDown has been true for \
         its `for: 1m`, then healed:"
    );
    let stream = lab.stream(
        "hs",
        "hd",
        mesh.hd.host_v4.into(),
        1000,
        Duration::from_secs(240),
    )?;
    std::thread::sleep(Duration::from_secs(5));
    let at = std::time::Instant::now();
    let fault_s = at.duration_since(started).as_secs_f64();
    lab.fault_at(link, Fault::Silent)?;
    let fired = wait_notification(mon, "firing", at, Duration::from_secs(120))?;
    let healed = std::time::Instant::now();
    lab.heal(link)?;
    let resolved = wait_notification(mon, "resolved", healed, Duration::from_secs(90))?;
    std::thread::sleep(Duration::from_secs(10));
    stream.stop()?;
    for n in mon.notifications() {
        let when = if n.status == "firing" {
            format!(
                "{:.1} s after the fault",
                n.received.duration_since(at).as_secs_f64()
            )
        } else {
            format!(
                "{:.1} s after the heal",
                n.received.saturating_duration_since(healed).as_secs_f64()
            )
        };
        println!(
            "  {:<8} {:<24} instance={} neighbor={}  ({when})",
            n.status,
            n.alertname(),
            n.label("instance"),
            n.label("neighbor")
        );
    }
    ensure!(
        fired && resolved,
        "the neighbour-down alert did not fire and resolve"
    );

    // From 2 s before monitoring started: the panels' time 0.
    let lead = Duration::from_secs(2);
    let span = started.elapsed() + lead;
    let step = Duration::from_secs(1);
    let range = |q: &str, legend: &dyn Fn(&observe::RangeSeries) -> String| -> Result<Lines> {
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64()
            - span.as_secs_f64();
        Ok(mon
            .query_range(q, span, step)?
            .iter()
            .map(|s| {
                let points = s
                    .values
                    .iter()
                    .filter_map(|(t, v)| Some((t - t0, v.parse::<f64>().ok()?)))
                    .collect();
                (legend(s), points)
            })
            .collect())
    };
    let label = |k: &'static str| {
        move |s: &observe::RangeSeries| s.metric.get(k).cloned().unwrap_or_default()
    };
    let delivered = range(
        "sum by (instance) (rate(x0tta6bl4_packets_total{action=\"forward\"}[5s]))",
        &label("instance"),
    )?;
    let rtt = range(
        &format!("x0tta6bl4_neighbor_rtt_seconds{{instance=\"{a}\"}} * 1000"),
        &label("neighbor"),
    )?;
    let loss = range(
        &format!("x0tta6bl4_neighbor_loss_ratio{{instance=\"{a}\"}} * 100"),
        &label("neighbor"),
    )?;
    let actions = range(
        "sum by (kind) (increase(x0tta6bl4_actions_total[5s]))",
        &label("kind"),
    )?;
    fn series(v: &Lines) -> Vec<plot::Series<'_>> {
        v.iter()
            .map(|(n, p)| plot::Series {
                name: n.as_str(),
                points: p.clone(),
            })
            .collect()
    }
    let rtt_title = format!("link RTT from {a} (ms)");
    let loss_title = format!("link loss from {a} (%)");
    let panels = [
        plot::Panel {
            title: "delivered rate: packets forwarded per router",
            y_desc: "packets/s",
            series: series(&delivered),
        },
        plot::Panel {
            title: &rtt_title,
            y_desc: "ms",
            series: series(&rtt),
        },
        plot::Panel {
            title: &loss_title,
            y_desc: "%",
            series: series(&loss),
        },
        plot::Panel {
            title: "agent actions (per 5 s, by kind)",
            y_desc: "actions",
            series: series(&actions),
        },
    ];
    let path = PathBuf::from(DASHBOARD);
    plot::panels(&path, &panels, Some(fault_s + lead.as_secs_f64()))?;
    println!(
        "  the dashboard's key panels over the run: {}",
        path.display()
    );
    Ok(path)
}

/// Waits for any notification with `status` received after `since`.
fn wait_notification(
    mon: &Monitoring,
    status: &str,
    since: std::time::Instant,
    limit: Duration,
) -> Result<bool> {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if mon.notifications().iter().any(|n| {
            n.status == status && n.received >= since && n.alertname() == "X0tta6bl4NeighborDown"
        }) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(false)
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
