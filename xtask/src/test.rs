//! `cargo xtask test`: every tier, one closing summary line.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use anyhow::{Context as _, Result};

use crate::{Summary, cmd, setup::Env, vm};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    /// Tests that need no root: parsing, checksums, config, route tables.
    Unit,
    /// The real XDP program through BPF_PROG_TEST_RUN with crafted frames.
    Program,
    /// Namespace labs with real traffic.
    Lab,
    /// The demo mesh under traffic and random faults for a few minutes (`cargo xtask soak`
    /// runs longer ones).
    Soak,
    /// Program tests and labs inside VMs on other kernels.
    Vm,
}

const ALL: [Tier; 5] = [Tier::Unit, Tier::Program, Tier::Lab, Tier::Soak, Tier::Vm];

/// How long the test command's soak runs.
const SOAK_MINUTES: &str = "5";

pub fn run(env: &Env, tiers: &[Tier]) -> Result<()> {
    let tiers = if tiers.is_empty() { &ALL[..] } else { tiers };
    let mut total = Summary::default();
    for tier in tiers {
        eprintln!("xtask test: tier {tier:?}");
        let s = match tier {
            Tier::Unit => cargo_test(
                env,
                &[
                    "--workspace",
                    "--exclude",
                    "mesh-ebpf",
                    "--exclude",
                    "mesh-lab-ebpf",
                    "--lib",
                    "--bins",
                    "--test",
                    "parse_cases",
                    "--test",
                    "config_check",
                    "--test",
                    "deploy",
                    "--test",
                    "model_shipped",
                ],
                &format!("{tier:?}"),
                // The unit tier's ignored tests are run by hand, never by a tier.
                Ignored::Skip,
            )?,
            Tier::Program => cargo_test(
                env,
                &[
                    "-p",
                    "mesh-ctl",
                    "--test",
                    "xdp_verdicts",
                    "--test",
                    "telemetry",
                ],
                "program",
                Ignored::Include,
            )?,
            Tier::Lab => {
                build_lab_binaries(env)?;
                cargo_test(
                    env,
                    &[
                        "-p",
                        "mesh-ctl",
                        "--test",
                        "lab",
                        "--test",
                        "mesh_routing",
                        "--test",
                        "mesh_restart",
                        "--test",
                        "mesh_upgrade",
                        "--test",
                        "mesh_detection",
                        "--test",
                        "mesh_security",
                        "--test",
                        "failure_lab",
                        "--test",
                        "packaging",
                        "--test",
                        "operator_cli",
                        "--test",
                        "service",
                        "--test",
                        "config_check",
                        "--test",
                        "observe",
                        "--test",
                        "coexist",
                        "--test",
                        "deploy",
                    ],
                    "lab",
                    Ignored::Include,
                )?
            }
            Tier::Soak => {
                // The lab tier's debug build: a release build only for this would cost
                // CI more than the soak itself.
                build_lab_binaries(env)?;
                let mut c = std::process::Command::new(cmd::target_dir().join("debug/mesh-lab"));
                c.args(["soak", "--minutes", SOAK_MINUTES])
                    .current_dir(cmd::root());
                match cmd::status(c) {
                    Ok(()) => Summary {
                        passed: 1,
                        ..Summary::default()
                    },
                    Err(e) => {
                        eprintln!("xtask test: soak: {e:#}");
                        Summary {
                            failed: vec!["soak".into()],
                            ..Summary::default()
                        }
                    }
                }
            }
            Tier::Vm => vm::run(env, &[])?,
        };
        total.absorb(s);
    }
    total.finish()
}

/// Whether a tier runs the tests marked `#[ignore]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ignored {
    /// Root-only tests are `#[ignore = "needs root"]`; xtask runs these tiers as root.
    Include,
    Skip,
}

/// Runs `cargo test ARGS`, echoing its output and counting libtest's results.
/// The debug `mesh-lab` (stream ends) and `meshctl` the labs start: cargo builds only the
/// package under test's binaries for its tests, and the labs start `mesh-lab` from beside
/// the test's `meshctl`.
pub fn build_lab_binaries(env: &Env) -> Result<()> {
    cmd::status(cmd::cargo(
        env,
        &["build", "--bin", "mesh-lab", "--bin", "meshctl"],
    ))
}

fn cargo_test(env: &Env, args: &[&str], label: &str, ignored: Ignored) -> Result<Summary> {
    // Every test binary runs, whatever an earlier one did: the summary counts them all.
    let mut full = vec!["test", "--no-fail-fast"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--", "--test-threads=2"]);
    if ignored == Ignored::Include {
        full.push("--include-ignored");
    }
    let mut c = cmd::cargo(env, &full);
    c.stdout(Stdio::piped());
    let mut child = c.spawn().context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut summary = Summary::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        count_libtest_line(&line, label, &mut summary);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && summary.failed.is_empty() {
        summary
            .failed
            .push(format!("{label}: cargo test exited with {status}"));
    }
    Ok(summary)
}

/// Counts one libtest line (`test NAME ... ok|FAILED|ignored`) into `summary`.
pub fn count_libtest_line(line: &str, label: &str, summary: &mut Summary) {
    let Some(rest) = line.trim().strip_prefix("test ") else {
        return;
    };
    let Some((name, result)) = rest.rsplit_once(" ... ") else {
        return;
    };
    match result.trim() {
        "ok" => summary.passed += 1,
        r if r.starts_with("ignored") => summary.skipped += 1,
        "FAILED" => summary.failed.push(format!("{label}: {name}")),
        _ => {}
    }
}
