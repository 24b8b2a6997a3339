//! mesh-lab: the namespace lab for the demo and benchmarks (run by `cargo xtask`).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use mesh_lab as lab;

#[derive(Parser)]
#[command(
    name = "mesh-lab",
    about = "x0tta6bl4 namespace lab: demo and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The mesh demo: six XDP routers under traffic, a silent failure healed.
    Demo {
        /// Also run Prometheus and Alertmanager beside the mesh: print the alerts the
        /// failure fired and resolved, and draw the dashboard's key panels.
        #[arg(long)]
        observe: bool,
    },
    /// A benchmark against its baseline: forward, telemetry, maps.
    Bench { name: String },
    /// Every byte parser fed seeded mutations for a bounded time; crashes kept.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The mutation seed (default: the time).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// The demo mesh under traffic and random faults for a while, checking that nothing
    /// leaks, loops or stays broken.
    Soak {
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
    },
    /// Sends the timestamped UDP stream at a fixed rate (run inside a lab node); prints a
    /// JSON summary at the end. SIGINT/SIGTERM end it early, with the summary.
    StreamSend {
        #[arg(long)]
        dst: IpAddr,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        pps: u32,
        #[arg(long)]
        duration_ms: u64,
    },
    /// Receives the stream (run inside a lab node): prints `ready` once listening, then
    /// every arrival as JSON when the duration ends or on SIGINT/SIGTERM.
    StreamRecv {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        duration_ms: u64,
    },
}

fn meshctl() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating mesh-lab")?;
    let path = exe.with_file_name("meshctl");
    if !path.exists() {
        bail!("meshctl is not built next to mesh-lab ({})", path.display());
    }
    Ok(path)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // The stream ends own no namespaces: signals only end them early, with a report.
        Command::StreamSend {
            dst,
            port,
            pps,
            duration_ms,
        } => {
            lab::stream::stop_on_signals()?;
            let summary = lab::stream::send(
                SocketAddr::new(dst, port),
                pps,
                Duration::from_millis(duration_ms),
            )?;
            println!(
                "{}",
                serde_json::to_string(&summary).context("encoding the summary")?
            );
            return Ok(());
        }
        Command::StreamRecv { port, duration_ms } => {
            lab::stream::stop_on_signals()?;
            let arrivals = lab::stream::recv(port, Duration::from_millis(duration_ms), || {
                println!("ready");
            })?;
            println!(
                "{}",
                serde_json::to_string(&arrivals).context("encoding the arrivals")?
            );
            return Ok(());
        }
        _ => {}
    }
    lab::cleanup_on_signals()?;
    match cli.command {
        Command::Demo { observe } => lab::demo::run(meshctl()?, observe),
        Command::Soak { minutes } => lab::soak::run(meshctl()?, minutes),
        Command::Fuzz { seconds, seed } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs())
            });
            println!("fuzz: {seconds} s per target, seed {seed}");
            let out = PathBuf::from("target/fuzz");
            let done = lab::fuzz::run(Duration::from_secs(seconds), seed, &out)?;
            let total: u64 = done.iter().map(|o| o.execs).sum();
            println!(
                "fuzz: {} targets, {total} inputs, no crash (seed {seed})",
                done.len()
            );
            Ok(())
        }
        Command::Bench { name } => match name.as_str() {
            one_core @ ("detect" | "scale") if std::env::var_os("RAYON_NUM_THREADS").is_none() => {
                // Inference is measured on one core: candle's CPU pool sizes itself from
                // this variable, so run again with it set.
                let s = std::process::Command::new(std::env::current_exe()?)
                    .args(["bench", one_core])
                    .env("RAYON_NUM_THREADS", "1")
                    .status()?;
                if !s.success() {
                    bail!("bench {one_core}: {s}");
                }
                Ok(())
            }
            "forward" => {
                lab::bench::forward(meshctl()?, &PathBuf::from("target/bench/forward.json"))
            }
            "telemetry" => lab::bench_telemetry::telemetry(
                meshctl()?,
                &PathBuf::from("target/bench/telemetry.json"),
            ),
            "maps" => lab::bench_maps::maps(&PathBuf::from("target/bench/maps.json")),
            "failover" => lab::bench_failover::failover(
                meshctl()?,
                &PathBuf::from("target/bench/failover.json"),
            ),
            "scale" => lab::bench_scale::scale(&PathBuf::from("target/bench/scale.json")),
            "crypto" => lab::bench_reconverge::crypto(
                meshctl()?,
                &PathBuf::from("target/bench/crypto.json"),
            ),
            "detect-live" => lab::bench_detect_live::detect_live(
                meshctl()?,
                &PathBuf::from("target/bench/detect-live.json"),
            ),
            "detect" => {
                let mut cfg = mesh_ctl::detect::eval::EvalConfig::bench();
                cfg.graphs = lab::topohub::graphs(10..=200)?;
                eprintln!(
                    "detect: {} real graphs ({}) besides the generated families",
                    cfg.graphs.len(),
                    cfg.graph_families().join(", ")
                );
                mesh_ctl::model::evaluate_to(&cfg, &PathBuf::from("target/bench/detect.json"))
                    .map(|_| ())
                    .map_err(Into::into)
            }
            other => {
                bail!(
                    "no benchmark `{other}` (have: forward, telemetry, maps, failover, scale, crypto, detect, detect-live)"
                )
            }
        },
        Command::StreamSend { .. } | Command::StreamRecv { .. } => Ok(()),
    }
}
