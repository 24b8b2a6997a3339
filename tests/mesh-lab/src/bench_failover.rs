//! `cargo xtask bench failover`: silent failures on the demo mesh, our agents (data plane
//! fast reroute, then reconvergence) against babeld on the same mesh with its defaults,
//! 50 ms and 10 ms hellos; control traffic and CPU beside each; a fault-free run under
//! load counting spurious switches.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{
    Agent, Fault, Lab,
    babel::{BabelSetting, babeld_failover},
    demo::wait_converged,
    mesh_agents,
    mesh6::{self, RoundOptions},
    stream::Percentiles,
};
use crate::api::Request;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Every agent's link-downs and cost changes so far, as "node: event".
fn switch_events(agents: &[Agent]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in agents {
        let ev: crate::api::Events = a.view(&Request::Events)?;
        for x in ev.events {
            if x.kind == "link_down" || x.kind == "link_cost" {
                out.push(format!("{}: {}", a.node, serde_json::to_value(&x)?));
            }
        }
    }
    Ok(out)
}

/// Frames each data plane forwarded on a loop-free alternate, by node: on a healthy
/// mesh, each one is a fast-reroute switch nobody asked for.
fn backup_frames(agents: &[Agent]) -> Result<Vec<u64>> {
    agents
        .iter()
        .map(|a| {
            let d: crate::api::Drops = a.view(&Request::Drops)?;
            Ok(d.reasons
                .iter()
                .filter(|x| x.reason == "forwarded_backup_v4" || x.reason == "forwarded_backup_v6")
                .map(|x| x.packets)
                .sum::<u64>())
        })
        .collect()
}

/// `now - then`, by node, and its sum.
fn since(now: &[u64], then: &[u64]) -> (Vec<u64>, u64) {
    let d: Vec<u64> = now.iter().zip(then).map(|(a, b)| a - b).collect();
    let sum = d.iter().sum();
    (d, sum)
}

/// One run of our agents on the demo mesh.
struct OursRun {
    restore: Percentiles,
    lost: Percentiles,
    rounds: Vec<mesh6::FailureRound>,
    control_pps: f64,
    cpu_per_min: f64,
    /// Link-downs and cost changes in the fault-free run.
    spurious: usize,
    /// Frames forwarded on a backup in the fault-free run, in all and by node.
    spurious_backup_frames: u64,
    spurious_backup_by_node: Vec<(String, u64)>,
    /// The link-downs and cost changes of the fault-free run.
    spurious_events: Vec<String>,
    /// Every agent's neighbours after the fault-free run, with their probe gaps.
    probe_gaps: Vec<serde_json::Value>,
    quiet_lost: u64,
}

impl OursRun {
    fn json(&self, probe: &str, quiet_s: usize) -> serde_json::Value {
        json!({
            "probe_settings": probe,
            "restore_ms": self.restore,
            "lost": self.lost,
            "rounds": self.rounds.iter().map(|r| json!({
                "link": r.link, "position": r.position, "restore_ms": r.outage.restore_ms,
                "lost": r.outage.lost, "path_before": r.path_before, "path_after": r.path_after,
            })).collect::<Vec<_>>(),
            "control_pps_per_link": self.control_pps,
            "cpu_s_per_min": self.cpu_per_min,
            "spurious": self.spurious,
            "spurious_backup_frames": self.spurious_backup_frames,
            "spurious_backup_by_node": self.spurious_backup_by_node,
            "spurious_events": self.spurious_events,
            "probe_gaps_after_spurious_run": self.probe_gaps,
            "spurious_run_s": quiet_s,
            "spurious_run_lost": self.quiet_lost,
        })
    }
}

/// Our agents with `probe` (a `[probe]` table, or nothing for the defaults): control
/// traffic and CPU while quiet, `quiet_s` fault-free seconds under load, `failures`
/// silent failures.
fn run_ours(
    meshctl: &Path,
    name: &str,
    probe: &str,
    failures: usize,
    quiet_s: usize,
) -> Result<OursRun> {
    let mut lab = Lab::new(name, meshctl.to_path_buf())?;
    let mesh = mesh6::mesh6(&mut lab)?;
    // Unauthenticated, like babeld here (no HMAC): the data plane's failover does not
    // involve the control plane, and its control traffic is compared with babeld's.
    let extra = format!("[security]\nenabled = false\n{probe}");
    let agents: Vec<Agent> = mesh_agents::configs(&mesh, &extra)
        .iter()
        .map(|c| lab.agent(c))
        .collect::<Result<_>>()?;
    wait_converged(&lab, &mesh, &agents[0])?;
    std::thread::sleep(Duration::from_secs(3));

    // Control traffic and CPU with no stream: what probing and hellos cost.
    let links = mesh.core_links()?;
    let before: Vec<_> = links
        .iter()
        .map(|l| lab.wire_counters(l))
        .collect::<Result<_>>()?;
    let cpu0: Vec<f64> = agents.iter().map(|a| cpu_seconds(a.pid())).collect();
    let quiet = Duration::from_secs(10);
    std::thread::sleep(quiet);
    let after: Vec<_> = links
        .iter()
        .map(|l| lab.wire_counters(l))
        .collect::<Result<_>>()?;
    let cpu1: Vec<f64> = agents.iter().map(|a| cpu_seconds(a.pid())).collect();
    let pps: Vec<f64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.since(b).frames.packets as f64 / quiet.as_secs_f64())
        .collect();
    let control_pps = pps.iter().sum::<f64>() / pps.len() as f64;
    let cpu_per_min = cpu1.iter().zip(&cpu0).map(|(a, b)| a - b).sum::<f64>() / agents.len() as f64
        * 60.0
        / quiet.as_secs_f64();
    eprintln!(
        "{name}: {control_pps:.0} control packets/s per link, {cpu_per_min:.2} CPU s/min per agent"
    );

    // A fault-free run under load: any link declared down or re-costed is spurious, and
    // so is any frame the data plane forwards on a backup.
    let (mut spurious, mut spurious_backup_frames, mut quiet_lost) = (0, 0, 0);
    let (mut spurious_backup_by_node, mut spurious_events) = (Vec::new(), Vec::new());
    let mut probe_gaps = Vec::new();
    if quiet_s > 0 {
        eprintln!("{name}: {quiet_s} s fault-free under a 2000 packets/s stream");
        let (s0, b0) = (switch_events(&agents)?, backup_frames(&agents)?);
        let new_events = || -> Result<Vec<String>> {
            Ok(switch_events(&agents)?
                .into_iter()
                .filter(|e| !s0.contains(e))
                .collect())
        };
        let stream = lab.stream(
            "hs",
            "hd",
            mesh.hd.host_v4.into(),
            2000,
            Duration::from_secs(quiet_s as u64 + 5),
        )?;
        for i in 0..quiet_s {
            std::thread::sleep(Duration::from_secs(1));
            if i % 60 == 59 {
                let (by_node, all) = since(&backup_frames(&agents)?, &b0);
                eprintln!(
                    "  {}/{quiet_s} s, spurious so far {} (frames on a backup {all}: {by_node:?})",
                    i + 1,
                    new_events()?.len(),
                );
            }
        }
        let (sent, arrivals) = stream.stop()?;
        spurious_events = new_events()?;
        spurious = spurious_events.len();
        let (by_node, all) = since(&backup_frames(&agents)?, &b0);
        spurious_backup_frames = all;
        spurious_backup_by_node = agents.iter().map(|a| a.node.clone()).zip(by_node).collect();
        quiet_lost = sent.saturating_sub(arrivals.len() as u64);
        for a in &agents {
            let v: crate::api::Neighbors = a.view(&Request::Neighbors)?;
            let gaps: Vec<String> = v
                .neighbors
                .iter()
                .map(|n| {
                    format!(
                        "{} max gap {:.1} ms, {} past the dead time",
                        n.node, n.max_gap_ms, n.dead_gaps
                    )
                })
                .collect();
            eprintln!("  {}: {}", a.node, gaps.join("; "));
            probe_gaps.push(json!({"node": a.node, "neighbors": v.neighbors}));
        }
    }

    let opts = RoundOptions {
        pps: 2000,
        fault: Fault::Silent,
        restore_limit: Duration::from_secs(10),
        series_bucket_ms: 5,
    };
    let mut rounds = Vec::new();
    for i in 0..failures {
        let r = mesh6::failure_round(&mut lab, &mesh, i, &opts)?;
        eprintln!(
            "{name}: round {}/{failures} {} restore {:.1} ms, lost {}",
            i + 1,
            r.link,
            r.outage.restore_ms,
            r.outage.lost
        );
        rounds.push(r);
        // The healed link comes back after its hold-down; let the mesh settle.
        std::thread::sleep(Duration::from_secs(4));
    }
    let restore: Vec<f64> = rounds.iter().map(|r| r.outage.restore_ms).collect();
    let lost: Vec<f64> = rounds.iter().map(|r| r.outage.lost as f64).collect();
    for a in agents {
        a.stop()?;
    }
    Ok(OursRun {
        restore: Percentiles::of(&restore),
        lost: Percentiles::of(&lost),
        rounds,
        control_pps,
        cpu_per_min,
        spurious,
        spurious_backup_frames,
        spurious_backup_by_node,
        spurious_events,
        probe_gaps,
        quiet_lost,
    })
}

/// One line of the summary table.
fn row(name: &str, restore: &Percentiles, lost: &Percentiles, control_pps: f64, cpu: f64) {
    println!(
        "{name:<18} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {control_pps:>12.0} {cpu:>10.2}",
        restore.p50, restore.p95, restore.p99, lost.p95
    );
}

/// Restore times as plot points.
fn restore_points(rounds: &[mesh6::FailureRound]) -> Vec<(f64, f64)> {
    rounds.iter().map(|r| (r.outage.restore_ms, 0.0)).collect()
}

/// Probe timers that spend no more control frames per link than babeld's best (10 ms
/// hellos), with the same margin as our defaults: three intervals of silence.
const BUDGET_PROBE: &str = "[probe]\ninterval_ms = 11\ndead_ms = 33\n";

/// The same agents forwarding at TCX ingress, as where another program holds XDP.
const TCX_HOOK: &str = "\n[dataplane]\nhook = \"tcx\"\n";

pub fn failover(meshctl: std::path::PathBuf, out: &Path) -> Result<()> {
    let failures = env_usize("FAILOVER_ROUNDS", 20);
    let quiet_s = env_usize("FAILOVER_SPURIOUS_S", 600);
    let ours = run_ours(&meshctl, "bfail", "", failures, quiet_s)?;
    let budget_rounds = env_usize("FAILOVER_BUDGET_ROUNDS", failures);
    let budget = run_ours(&meshctl, "bbudg", BUDGET_PROBE, budget_rounds, 0)
        .context("measuring our agents at babeld's control budget")?;
    let tcx_rounds = env_usize("FAILOVER_TCX_ROUNDS", failures);
    let tcx = run_ours(&meshctl, "btcx", TCX_HOOK, tcx_rounds, 0)
        .context("measuring our agents forwarding at TCX ingress")?;
    let (ours_restore, ours_lost, rounds) = (&ours.restore, &ours.lost, &ours.rounds);
    let (control_pps, cpu_per_min, spurious) = (ours.control_pps, ours.cpu_per_min, ours.spurious);

    let babel_rounds = env_usize("FAILOVER_BABEL_ROUNDS", failures);
    let babel = babeld_failover(&meshctl, &BabelSetting::standard(), babel_rounds)
        .context("measuring babeld")?;
    let best = babel
        .iter()
        .map(|b| b.restore_ms.p95)
        .fold(f64::INFINITY, f64::min);
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "", "p50_ms", "p95_ms", "p99_ms", "lost_p95", "ctl_pps/link", "cpu_s/min"
    );
    row(
        "x0tta6bl4",
        ours_restore,
        ours_lost,
        control_pps,
        cpu_per_min,
    );
    row(
        "x0tta6bl4 -i 11ms",
        &budget.restore,
        &budget.lost,
        budget.control_pps,
        budget.cpu_per_min,
    );
    row(
        "x0tta6bl4 at TCX",
        &tcx.restore,
        &tcx.lost,
        tcx.control_pps,
        tcx.cpu_per_min,
    );
    for b in &babel {
        row(
            &b.setting,
            &b.restore_ms,
            &b.lost,
            b.control_pps_mean,
            b.cpu_s_per_min_mean,
        );
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        out,
        serde_json::to_string_pretty(&json!({
            "ours": ours.json("defaults", quiet_s),
            "ours_at_babeld_budget": budget.json(BUDGET_PROBE, 0),
            "ours_at_tcx": tcx.json("hook = tcx", 0),
            "babeld": babel,
        }))?,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    let plot = out.with_extension("svg");
    let mut series = vec![
        super::plot::Series {
            name: "x0tta6bl4",
            points: restore_points(rounds),
        },
        super::plot::Series {
            name: "x0tta6bl4 -i 11ms",
            points: restore_points(&budget.rounds),
        },
        super::plot::Series {
            name: "x0tta6bl4 at TCX",
            points: restore_points(&tcx.rounds),
        },
    ];
    for b in &babel {
        series.push(super::plot::Series {
            name: &b.setting,
            points: restore_points(&b.rounds),
        });
    }
    super::plot::restore_cdf(
        &plot,
        "Silent link failures: time until traffic flows again",
        &series,
    )?;
    println!("plot: {}", plot.display());
    println!(
        "fault-free run: {spurious} link-downs or cost changes, {} frames forwarded on a backup, {} of the stream's packets lost in {quiet_s} s",
        ours.spurious_backup_frames, ours.quiet_lost
    );
    println!(
        "at babeld's best control budget ({:.0} against {:.0} frames/s per link): p95_restore_ms={:.1}, speedup {:.1}",
        budget.control_pps,
        babel
            .iter()
            .filter(|b| b.restore_ms.p95 == best)
            .map(|b| b.control_pps_mean)
            .fold(0.0, f64::max),
        budget.restore.p95,
        best / budget.restore.p95
    );
    println!(
        "bench failover: p95_restore_ms={:.1} tcx_p95_restore_ms={:.1} babeld_best_p95_ms={best:.1} speedup={:.1} p50_restore_ms={:.1} p99_restore_ms={:.1} lost_p95={:.0} spurious={spurious}",
        ours_restore.p95,
        tcx.restore.p95,
        best / ours_restore.p95,
        ours_restore.p50,
        ours_restore.p99,
        ours_lost.p95
    );
    Ok(())
}
