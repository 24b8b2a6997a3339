//! `cargo xtask soak --minutes N`: the demo mesh under traffic for N minutes while faults
//! come one after another in a random order (silent, hard and gray link failures, an agent
//! killed with SIGKILL and restarted, reloads, an upgrade to another build and back),
//! checking all the while: every fault healed within its bound, no forwarding loop (the
//! TTL-expiry counters stay flat), and the agents' memory and open files flat (their
//! slopes reported). Writes `target/soak/soak.json` and plots of memory and restore times.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde::Serialize;

use super::{
    Agent, AgentConfig, Fault, Lab,
    demo::wait_converged,
    labtools::UPGRADE_OBJECT,
    mesh_agents,
    mesh6::{self, RoundOptions},
    plot,
};
use crate::api::{self, Request};

const OUT: &str = "target/soak";
/// TTL-expired packets one round may see: about 0.2 s of the 1,000 packets/s stream. A
/// loop that outlives reconvergence expires far more.
const LOOP_LIMIT: u64 = 200;
/// The router whose agent is upgraded and rolled back (n2, a transit router).
const UPGRADED: usize = 1;

/// What happened in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Minutes since the start.
    pub at_min: f64,
    pub what: String,
    /// Time to restore the stream after a link failure, ms (link faults only).
    pub restore_ms: Option<f64>,
    /// Packets lost across an agent action (restart, reload, upgrade).
    pub lost: Option<u64>,
    /// Packets whose TTL ran out in the mesh during the round: looping traffic.
    pub ttl_expired: u64,
}

/// One sample of an agent.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_min: f64,
    pub node: String,
    pub rss_kib: u64,
    pub open_files: usize,
    pub flows: u64,
    pub ttl_expired: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub minutes: f64,
    pub seed: u64,
    pub rounds: Vec<Round>,
    pub samples: Vec<Sample>,
    /// Per node, KiB per minute and open files per minute (least squares over the run).
    pub rss_slope_kib_per_min: Vec<(String, f64)>,
    pub fd_slope_per_min: Vec<(String, f64)>,
}

pub fn run(meshctl: PathBuf, minutes: f64) -> Result<()> {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut rng = StdRng::seed_from_u64(seed);
    println!("soak: {minutes} min on the demo mesh, fault order seed {seed}");
    let mut lab = Lab::new("soak", meshctl)?;
    // The other build, copied: a rebuild while the soak runs must not change it.
    let object = lab.dir().join("upgrade.o");
    std::fs::copy(UPGRADE_OBJECT, &object).context("copying the other build's object")?;
    let mesh = mesh6::mesh6(&mut lab)?;
    let configs = mesh_agents::secure_configs(&lab, &mesh, "")?;
    let mut agents: Vec<Agent> = Vec::new();
    for c in &configs {
        agents.push(lab.agent(c)?);
    }
    wait_converged(&lab, &mesh, &agents[0])?;
    let started = Instant::now();
    let since = |t: Instant| t.duration_since(started).as_secs_f64() / 60.0;
    let mut report = Report {
        minutes,
        seed,
        rounds: Vec::new(),
        samples: Vec::new(),
        rss_slope_kib_per_min: Vec::new(),
        fd_slope_per_min: Vec::new(),
    };
    sample(&agents, since(Instant::now()), &mut report.samples)?;
    let ttl0 = ttl_expired(&agents)?;
    let mut upgraded = false;
    // Packets lost across SIGKILL restarts: reported, as the data plane's own
    // figure; reloads and upgrades must lose none.
    let mut killed_lost = 0u64;
    let mut n = 0usize;
    while since(Instant::now()) < minutes {
        let at_min = since(Instant::now());
        let ttl_before = ttl_expired(&agents)?;
        let mut round = match rng.random_range(0..6u32) {
            k @ 0..=2 => {
                let (fault, name, limit) = match k {
                    0 => (Fault::Silent, "silent link failure", 5),
                    1 => (Fault::Down, "hard link failure", 5),
                    _ => (Fault::Gray { permille: 200 }, "gray link (20 % loss)", 20),
                };
                let r = mesh6::failure_round(
                    &mut lab,
                    &mesh,
                    n,
                    &RoundOptions {
                        pps: 1000,
                        fault,
                        restore_limit: Duration::from_secs(limit),
                        series_bucket_ms: 100,
                    },
                )?;
                ensure!(
                    r.outage.restored,
                    "round {n}: {name} on {} was not healed within {limit} s: {:?}",
                    r.link,
                    r.outage
                );
                Round {
                    at_min,
                    what: format!("{name} on {}", r.link),
                    restore_ms: Some(r.outage.settled_ms),
                    lost: None,
                    ttl_expired: 0,
                }
            }
            3 => {
                let i = rng.random_range(1..5usize);
                let config = if i == UPGRADED && upgraded {
                    with_object(&configs[i], &object)
                } else {
                    configs[i].clone()
                };
                let lost = under_stream(&mut lab, &mesh, |lab| {
                    agents[i].kill()?;
                    std::thread::sleep(Duration::from_millis(500));
                    agents[i] = lab.agent(&config)?;
                    Ok(())
                })?;
                killed_lost += lost;
                Round {
                    at_min,
                    what: format!("{} killed (SIGKILL) and restarted", configs[i].node),
                    restore_ms: None,
                    lost: Some(lost),
                    ttl_expired: 0,
                }
            }
            4 => {
                let lost = under_stream(&mut lab, &mesh, |_| {
                    for a in &agents {
                        let _: api::Reloaded = a
                            .view(&Request::Reload)
                            .with_context(|| format!("reloading {}", a.node))?;
                    }
                    Ok(())
                })?;
                Round {
                    at_min,
                    what: "every agent reloaded".into(),
                    restore_ms: None,
                    lost: Some(lost),
                    ttl_expired: 0,
                }
            }
            _ => {
                let i = UPGRADED;
                upgraded = !upgraded;
                let config = if upgraded {
                    with_object(&configs[i], &object)
                } else {
                    configs[i].clone()
                };
                let lost = under_stream(&mut lab, &mesh, |lab| {
                    agents[i].exit()?;
                    agents[i] = lab.agent(&config)?;
                    Ok(())
                })?;
                Round {
                    at_min,
                    what: format!(
                        "{} {}",
                        configs[i].node,
                        if upgraded {
                            "upgraded to another build"
                        } else {
                            "back to the first build"
                        }
                    ),
                    restore_ms: None,
                    lost: Some(lost),
                    ttl_expired: 0,
                }
            }
        };
        // The mesh takes the healed link back, or the restarted agent catches up.
        if let Err(e) = settle(&lab, &mesh, &agents[0]) {
            bail!(
                "after round {n} ({}): {e:#}\n{}",
                round.what,
                state(&agents)
            );
        }
        sample(&agents, since(Instant::now()), &mut report.samples)?;
        round.ttl_expired = ttl_expired(&agents)?.saturating_sub(ttl_before);
        println!(
            "  {:6.2} min  round {n:3}: {}{}{}",
            round.at_min,
            round.what,
            match (round.restore_ms, round.lost) {
                (Some(ms), _) => format!(", restored in {ms:.1} ms"),
                (_, Some(l)) => format!(", {l} packets lost"),
                _ => String::new(),
            },
            match round.ttl_expired {
                0 => String::new(),
                t => format!(", {t} TTL-expired (a transient loop)"),
            }
        );
        report.rounds.push(round);
        n += 1;
    }
    let ttl = ttl_expired(&agents)? - ttl0;
    for (node, _) in configs.iter().map(|c| (c.node.clone(), ())) {
        let of = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            report
                .samples
                .iter()
                .filter(|s| s.node == node)
                .map(|s| (s.at_min, f(s)))
                .collect()
        };
        report
            .rss_slope_kib_per_min
            .push((node.clone(), slope(&of(|s| s.rss_kib as f64))));
        report
            .fd_slope_per_min
            .push((node.clone(), slope(&of(|s| s.open_files as f64))));
    }
    for a in agents {
        a.stop()?;
    }
    let pins = lab.bpffs()?;
    let left: Vec<_> = std::fs::read_dir(&pins)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    drop(lab);
    write(&report)?;
    let max = |v: &[(String, f64)]| v.iter().map(|x| x.1).fold(f64::MIN, f64::max);
    let restore_max = report
        .rounds
        .iter()
        .filter_map(|r| r.restore_ms)
        .fold(0.0, f64::max);
    let lost: u64 = report.rounds.iter().filter_map(|r| r.lost).sum::<u64>() - killed_lost;
    // Link-state reconvergence can loop a few packets while routers update one after
    // another (micro-loops, RFC 5715): reported. A loop that lasts is a failure.
    let worst = report
        .rounds
        .iter()
        .max_by_key(|r| r.ttl_expired)
        .map(|r| (r.ttl_expired, r.what.clone()))
        .unwrap_or_default();
    println!(
        "soak: {} rounds in {:.1} min: every link failure healed (slowest {restore_max:.1} ms), \
         {killed_lost} packets lost across SIGKILL restarts, {lost} across reloads and \
         upgrades, {ttl} TTL-expired packets (transient loops, at most {} in a round), RSS slope at most {:.1} KiB/min, open-file slope at most {:.2}/min; {OUT}/soak.json",
        report.rounds.len(),
        since(Instant::now()),
        worst.0,
        max(&report.rss_slope_kib_per_min),
        max(&report.fd_slope_per_min),
    );
    ensure!(
        worst.0 <= LOOP_LIMIT,
        "{} packets expired in flight in one round ({}): a forwarding loop that lasted",
        worst.0,
        worst.1
    );
    let ours: Vec<_> = left
        .iter()
        .filter(|n| configs.iter().any(|c| n.to_str() == Some(c.node.as_str())))
        .collect();
    ensure!(ours.is_empty(), "agents' pins left behind: {ours:?}");
    if lost > 0 {
        bail!("{lost} packets lost across reloads or upgrades");
    }
    Ok(())
}

/// After a round: hs reaches hd again. Both of n1's next hops are waited for a while,
/// but a link the detector still avoids (its hold outlasts the round) may keep one away.
fn settle(lab: &Lab, mesh: &mesh6::Mesh6, n1: &Agent) -> Result<()> {
    if wait_converged(lab, mesh, n1).is_ok() {
        return Ok(());
    }
    let anomalies: Option<api::Anomalies> = n1.view(&Request::Anomalies)?;
    let avoided = anomalies.is_some_and(|a| !a.active.is_empty());
    ensure!(
        avoided,
        "both next hops did not come back and nothing is avoided"
    );
    ensure!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 3)? == 3,
        "hs does not reach hd"
    );
    Ok(())
}

/// A config that runs the other build's object.
fn with_object(c: &AgentConfig, object: &Path) -> AgentConfig {
    let mut c = c.clone();
    c.args = vec!["--ebpf-object".into(), object.display().to_string()];
    c
}

/// Runs `action` under a 1,000 packets/s stream hs to hd; returns the packets lost.
fn under_stream(
    lab: &mut Lab,
    mesh: &mesh6::Mesh6,
    action: impl FnOnce(&mut Lab) -> Result<()>,
) -> Result<u64> {
    let run = lab.stream(
        "hs",
        "hd",
        mesh.hd.host_v4.into(),
        1000,
        Duration::from_secs(30),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let done = action(lab);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, arrivals) = run.stop()?;
    done?;
    Ok(crate::stream::analyze(sent, &arrivals, 0).lost)
}

fn sample(agents: &[Agent], at_min: f64, out: &mut Vec<Sample>) -> Result<()> {
    for a in agents {
        let flows: api::Flows = a.view(&Request::Flows {
            top: 1,
            sort: mesh_ctl::telemetry::SortKey::Bytes,
        })?;
        out.push(Sample {
            at_min,
            node: a.node.clone(),
            rss_kib: rss_kib(a.pid()),
            open_files: std::fs::read_dir(format!("/proc/{}/fd", a.pid())).map_or(0, |d| d.count()),
            flows: flows.flow_table.active,
            ttl_expired: reason(a, "pass_ttl_exceeded")?,
        });
    }
    Ok(())
}

/// What each agent says of its neighbours and its route to hd, for a failure report.
fn state(agents: &[Agent]) -> String {
    agents
        .iter()
        .map(|a| {
            let neighbors = a
                .view::<api::Neighbors>(&Request::Neighbors)
                .map(|v| {
                    v.neighbors
                        .iter()
                        .map(|n| {
                            format!(
                                "{}:{:?}{}",
                                n.node,
                                n.state,
                                if n.adjacent { "+" } else { "" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|e| format!("{e:#}"));
            let routes = a
                .view::<api::RouteTable>(&Request::Routes)
                .map(|r| {
                    r.routes
                        .iter()
                        .map(|x| format!("{}->{:?}", x.prefix, x.next_hops))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|e| format!("{e:#}"));
            let actions = a
                .view::<api::Events>(&Request::Events)
                .map(|v| {
                    v.events
                        .iter()
                        .take(6)
                        .map(|x| format!("{} {} ({})", x.kind, x.detail, x.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            format!(
                "  {}: neighbours {neighbors}\n    routes {routes}\n    recent {actions}",
                a.node
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ttl_expired(agents: &[Agent]) -> Result<u64> {
    agents.iter().map(|a| reason(a, "pass_ttl_exceeded")).sum()
}

fn reason(a: &Agent, name: &str) -> Result<u64> {
    let drops: api::Drops = a.view(&Request::Drops)?;
    Ok(drops
        .reasons
        .iter()
        .filter(|r| r.reason == name)
        .map(|r| r.packets)
        .sum())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Least-squares slope of `points` (0 with fewer than two).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), p| {
        (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx) * (p.0 - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn write(report: &Report) -> Result<()> {
    let dir = Path::new(OUT);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {OUT}"))?;
    std::fs::write(
        dir.join("soak.json"),
        serde_json::to_string_pretty(report).context("encoding the report")?,
    )
    .context("writing soak.json")?;
    let nodes: Vec<String> = {
        let mut v: Vec<String> = report.samples.iter().map(|s| s.node.clone()).collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    };
    let rss: Vec<plot::Series<'_>> = nodes
        .iter()
        .map(|n| plot::Series {
            name: n,
            points: report
                .samples
                .iter()
                .filter(|s| &s.node == n)
                .map(|s| (s.at_min, s.rss_kib as f64 / 1024.0))
                .collect(),
        })
        .collect();
    plot::over_time(
        &dir.join("rss.svg"),
        "agent resident memory over the soak",
        "RSS (MiB)",
        &rss,
    )?;
    let restore = [plot::Series {
        name: "link failure healed",
        points: report
            .rounds
            .iter()
            .filter_map(|r| r.restore_ms.map(|ms| (r.at_min, ms)))
            .collect(),
    }];
    plot::over_time(
        &dir.join("restore.svg"),
        "time to restore the stream after each link failure",
        "restore (ms)",
        &restore,
    )
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_is_least_squares() {
        assert_eq!(slope(&[]), 0.0);
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-9);
        assert!(slope(&[(0.0, 4.0), (1.0, 4.0), (2.0, 4.0)]).abs() < 1e-9);
    }
}
