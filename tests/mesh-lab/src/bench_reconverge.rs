//! Global reconvergence on the demo mesh, with the control plane authenticated or not:
//! a core link fails silently, and the time until every agent has recomputed its routes
//! without it (its published LSDB no longer holds the link: the view is republished right
//! after each route computation). With authentication the withdrawal travels as adverts
//! signed by their origins (ML-DSA-65) and verified at every hop, inside sealed sessions.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{Agent, Fault, Lab, demo::wait_converged, mesh_agents, mesh6, wire::monotonic_ns};
use crate::api::Request;

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Reconverge {
    pub authenticated: bool,
    pub rounds: usize,
    pub samples_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// Whether the LSDB of the agent behind `socket` still holds the link `a`–`b` in both
/// directions.
fn holds_link(socket: &std::path::Path, a: &str, b: &str) -> Result<bool> {
    let lsdb: crate::api::Lsdb = crate::api::query_as(socket, &Request::Lsdb)?;
    let lists = |origin: &str, other: &str| {
        lsdb.adverts
            .iter()
            .any(|ad| ad.origin == origin && ad.links.iter().any(|l| l.neighbor == other))
    };
    Ok(lists(a, b) && lists(b, a))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `rounds` silent failures of core links, one at a time, each healed before the next.
pub fn run(meshctl: std::path::PathBuf, authenticated: bool, rounds: usize) -> Result<Reconverge> {
    let mut lab = Lab::new(if authenticated { "brec-on" } else { "brec-off" }, meshctl)?;
    let mesh = mesh6::mesh6(&mut lab)?;
    let configs = if authenticated {
        mesh_agents::secure_configs(&lab, &mesh, "")?
    } else {
        mesh_agents::configs(&mesh, "[security]\nenabled = false\n")
    };
    let agents: Vec<Agent> = configs
        .iter()
        .map(|c| lab.agent(c))
        .collect::<Result<_>>()?;
    wait_converged(&lab, &mesh, &agents[0])?;
    std::thread::sleep(Duration::from_secs(2));
    let mut samples = Vec::new();
    for round in 0..rounds {
        let (a, b) = mesh6::CORE[round % mesh6::CORE.len()];
        let link = mesh.link(a, b)?.clone();
        let fault_ns = lab.fault_at(&link, Fault::Silent)?;
        // Every agent watched by its own thread: the slowest one ends the round.
        let done: Vec<Result<u64>> = std::thread::scope(|s| {
            let watchers: Vec<_> = agents
                .iter()
                .map(|agent| {
                    let (node, socket) = (agent.node.clone(), agent.socket.clone());
                    s.spawn(move || -> Result<u64> {
                        let end = Instant::now() + Duration::from_secs(5);
                        while Instant::now() < end {
                            if !holds_link(&socket, a, b)? {
                                return monotonic_ns();
                            }
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        bail!("{node} still routes over {a}-{b} after 5 s")
                    })
                })
                .collect();
            watchers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a watcher panicked")))
                })
                .collect()
        });
        let last = done
            .into_iter()
            .collect::<Result<Vec<u64>>>()
            .with_context(|| format!("round {round}, link {a}-{b}"))?
            .into_iter()
            .max()
            .unwrap_or(fault_ns);
        let ms = last.saturating_sub(fault_ns) as f64 / 1e6;
        eprintln!(
            "  {} round {round}: {a}-{b} withdrawn everywhere after {ms:.1} ms",
            if authenticated {
                "auth on "
            } else {
                "auth off"
            }
        );
        samples.push(ms);
        lab.heal(&link)?;
        let end = Instant::now() + Duration::from_secs(20);
        while !agents
            .iter()
            .map(|x| holds_link(&x.socket, a, b))
            .collect::<Result<Vec<bool>>>()?
            .iter()
            .all(|&h| h)
        {
            if Instant::now() > end {
                bail!("{a}-{b} did not come back within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for agent in agents {
        agent.stop()?;
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Reconverge {
        authenticated,
        rounds,
        p50_ms: percentile(&sorted, 0.5),
        p95_ms: percentile(&sorted, 0.95),
        samples_ms: samples,
    })
}

/// `cargo xtask bench crypto`: the secure layer's micro-benchmarks, then global
/// reconvergence with authentication off and on in the same run.
pub fn crypto(meshctl: std::path::PathBuf, out: &std::path::Path) -> Result<()> {
    let rounds: usize = std::env::var("RECONVERGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    eprintln!("bench crypto: micro-benchmarks (handshakes, adverts, envelopes)");
    let micro = crate::crypto_bench::run(50, 500, 20_000)?;
    eprintln!("bench crypto: {rounds} silent link failures, authentication off, then on");
    let off = run(meshctl.clone(), false, rounds)?;
    let on = run(meshctl, true, rounds)?;
    let overhead_pct = (on.p95_ms - off.p95_ms) / off.p95_ms * 100.0;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::json!({
        "micro": micro,
        "reconverge_off": off,
        "reconverge_on": on,
        "auth_reconverge_overhead_pct": overhead_pct,
    });
    std::fs::write(out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "bench crypto: handshake bytes {}/{}/{}; adverts signed/s {:.0}; advert bytes {} (cert) / {} (serial); envelope +{} B, seal {:.0} ns, open {:.0} ns per {}-byte frame",
        micro.msg1_bytes,
        micro.msg2_bytes,
        micro.msg3_bytes,
        micro.adverts_signed_per_s,
        micro.advert_bytes_with_cert,
        micro.advert_bytes_with_serial,
        micro.envelope_overhead_bytes,
        micro.envelope_seal_ns,
        micro.envelope_open_ns,
        micro.envelope_payload_bytes
    );
    println!(
        "bench crypto: global reconvergence over {rounds} silent failures: auth off p50 {:.1} ms p95 {:.1} ms; auth on p50 {:.1} ms p95 {:.1} ms",
        off.p50_ms, off.p95_ms, on.p50_ms, on.p95_ms
    );
    println!("wrote {}", out.display());
    println!(
        "bench crypto: auth_reconverge_overhead_pct={overhead_pct:.1} reconverge_p95_ms={:.1} handshake_ms={:.2} adverts_verified_per_s={:.0}",
        on.p95_ms, micro.handshake_ms_median, micro.adverts_verified_per_s
    );
    Ok(())
}
