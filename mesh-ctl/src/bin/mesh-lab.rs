//! mesh-lab: the namespace lab for the demo and benchmarks (run by `cargo xtask`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use mesh_ctl::lab;

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
    /// The mesh demo: a diamond of XDP routers, traffic across it, counters per node.
    Demo,
    /// A benchmark against its baseline: forward, telemetry, maps.
    Bench { name: String },
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
    lab::cleanup_on_signals()?;
    match cli.command {
        Command::Demo => lab::demo::run(meshctl()?),
        Command::Bench { name } => match name.as_str() {
            "forward" => {
                lab::bench::forward(meshctl()?, &PathBuf::from("target/bench/forward.json"))
            }
            "telemetry" => lab::bench_telemetry::telemetry(
                meshctl()?,
                &PathBuf::from("target/bench/telemetry.json"),
            ),
            "maps" => lab::bench_maps::maps(&PathBuf::from("target/bench/maps.json")),
            other => bail!("no benchmark `{other}` (have: forward, telemetry, maps)"),
        },
    }
}
