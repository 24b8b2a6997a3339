//! The single entry point for building, testing, VM runs, the demo and benchmarks.

mod cmd;
mod purity;
mod setup;
mod test;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "x0tta6bl4 developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the build and tests need (idempotent; quick when all is there).
    Setup {
        /// Only report what is missing; install nothing.
        #[arg(long)]
        check: bool,
    },
    /// Build meshctl (with the eBPF object embedded).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// rustfmt --check and clippy -D warnings.
    Lint,
    /// Every test tier: unit, program (test_run), namespace labs, a short soak, then the
    /// VM kernels.
    Test {
        /// Run only these tiers.
        #[arg(long, value_enum, value_delimiter = ',')]
        tier: Vec<test::Tier>,
    },
    /// Run the program tests and labs inside virtme-ng VMs on other kernels.
    VmTest {
        /// Kernel series to boot (default: all of them).
        #[arg(long, value_delimiter = ',')]
        kernel: Vec<String>,
    },
    /// Six XDP routers in network namespaces under traffic: a silent link failure healed,
    /// what the agents did, and a plot of the delivered rate.
    Demo {
        /// Also run Prometheus and Alertmanager beside the mesh (Debian's): print the
        /// alerts the failure fired and resolved, and draw the dashboard's key panels.
        #[arg(long)]
        observe: bool,
    },
    /// Benchmarks, each against its baseline in the same run.
    Bench {
        /// Which benchmark: forward (XDP vs kernel forwarding), telemetry (forwarding with
        /// per-flow telemetry on vs off), maps (reading 100,000 flows, batched vs per key),
        /// failover (silent failures, ours vs babeld), scale (routing core, 100 to 10,000
        /// nodes), crypto (handshake time, advert signing and verification, envelope cost),
        /// detect (GraphSAGE anomaly detection vs baselines).
        name: String,
    },
    /// Every parser of outside bytes (control frames, envelopes, handshakes, certificates,
    /// adverts, the config loader, the API) fed seeded mutations; crashes kept under
    /// target/fuzz/crashes.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Retrains the models meshctl carries (GraphSAGE and the MLP baseline, seed 1, on the
    /// protocol's generated meshes) into mesh-ctl/models/: the same bytes every time.
    TrainModel,
    /// The demo mesh under traffic and random faults (link failures, agent kills, reloads,
    /// upgrades) for N minutes: every fault healed, no loop, memory and open files flat.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup { check } => setup::run(check).map(|_| ()),
        Task::Build { release } => setup::run(false).and_then(|env| cmd::build(&env, release)),
        Task::Lint => setup::run(false).and_then(|env| cmd::lint(&env)),
        Task::Test { tier } => setup::run(false).and_then(|env| test::run(&env, &tier)),
        Task::VmTest { kernel } => setup::run(false).and_then(|env| {
            let summary = vm::run(&env, &kernel)?;
            summary.finish()
        }),
        Task::Demo { observe } => setup::run(false).and_then(|env| {
            let args: &[&str] = if observe {
                &["demo", "--observe"]
            } else {
                &["demo"]
            };
            cmd::lab(&env, args)
        }),
        Task::Bench { name } => setup::run(false).and_then(|env| cmd::lab(&env, &["bench", &name])),
        Task::Fuzz { seconds } => setup::run(false)
            .and_then(|env| cmd::lab(&env, &["fuzz", "--seconds", &seconds.to_string()])),
        Task::TrainModel => setup::run(false).and_then(|env| cmd::train_models(&env)),
        Task::Soak { minutes } => setup::run(false)
            .and_then(|env| cmd::lab(&env, &["soak", "--minutes", &minutes.to_string()])),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Results shared by test tiers and printed as one closing line.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: Vec<String>,
    pub skipped: usize,
}

impl Summary {
    pub fn absorb(&mut self, other: Summary) {
        self.passed += other.passed;
        self.failed.extend(other.failed);
        self.skipped += other.skipped;
    }

    /// Prints the closing line and fails if anything failed.
    pub fn finish(&self) -> Result<()> {
        for f in &self.failed {
            eprintln!("FAILED: {f}");
        }
        println!(
            "summary: {} passed, {} failed, {} skipped",
            self.passed,
            self.failed.len(),
            self.skipped
        );
        anyhow::ensure!(
            self.failed.is_empty(),
            "{} test(s) failed",
            self.failed.len()
        );
        Ok(())
    }
}
