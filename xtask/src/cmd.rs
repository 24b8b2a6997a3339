//! Running cargo and the workspace's own binaries with the environment setup settled.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::setup::Env;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set (relative to the
/// workspace root, as cargo reads it), else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root().join(d),
        _ => root().join("target"),
    }
}

/// A cargo command in the workspace root with the eBPF toolchain chosen by setup.
pub fn cargo(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).args(args);
    env.apply(&mut c);
    c
}

pub fn status(mut c: Command) -> Result<()> {
    let what = format!("{c:?}");
    let s = c.status().with_context(|| format!("running {what}"))?;
    if !s.success() {
        bail!("{what} failed ({s})");
    }
    Ok(())
}

pub fn build(env: &Env, release: bool) -> Result<()> {
    let mut args = vec![
        "build",
        "--workspace",
        "--exclude",
        "mesh-ebpf",
        "--exclude",
        "mesh-lab-ebpf",
    ];
    if release {
        args.push("--release");
    }
    status(cargo(env, &args))
}

pub fn lint(env: &Env) -> Result<()> {
    crate::purity::check(env)?;
    status(cargo(env, &["fmt", "--all", "--check"]))?;
    let host = [
        "clippy",
        "--workspace",
        "--exclude",
        "mesh-ebpf",
        "--exclude",
        "mesh-lab-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ];
    status(cargo(env, &host))?;
    // The eBPF crates on their own target, as the build scripts compile them.
    for package in ["mesh-ebpf", "mesh-lab-ebpf"] {
        let mut c = env.ebpf_cargo(&["clippy", "--package", package, "--release"]);
        c.arg("--target-dir")
            .arg(root().join("target/ebpf-lint"))
            .args(["--", "-D", "warnings"])
            .current_dir(root());
        status(c)?;
    }
    deny(env)
}

/// The RustSec snapshot beside the checkout: the public database's files at one commit.
const ADVISORY_SNAPSHOT: &str = "../shared/advisory-db";
/// Where cargo-deny looks for its default database under `[advisories] db-path`.
const ADVISORY_DB: &str = "target/advisory-dbs/advisory-db-3157b0e258782691";

/// Dependency policy (`deny.toml`): licences, bans and sources, then advisories from the
/// snapshot without fetching anything.
fn deny(env: &Env) -> Result<()> {
    status(cargo(
        env,
        &["deny", "check", "licenses", "bans", "sources"],
    ))?;
    let snapshot = root().join(ADVISORY_SNAPSHOT);
    if !snapshot.join("crates").is_dir() {
        eprintln!(
            "xtask lint: skipped: advisories: no RustSec snapshot at {}",
            snapshot.display()
        );
        return Ok(());
    }
    let db = root().join(ADVISORY_DB);
    if !db.join(".git").is_dir() {
        // cargo-deny reads a git checkout: the snapshot's files become one commit.
        let _stale = std::fs::remove_dir_all(&db);
        std::fs::create_dir_all(&db).with_context(|| format!("creating {}", db.display()))?;
        let mut cp = Command::new("cp");
        cp.arg("-r").arg(snapshot.join(".")).arg(&db);
        status(cp)?;
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.arg("-C")
                .arg(&db)
                .args([
                    "-c",
                    "user.name=snapshot",
                    "-c",
                    "user.email=snapshot@localhost",
                ])
                .args(args)
                .env("GIT_COMMITTER_DATE", "2026-08-21T00:00:00Z");
            status(c)
        };
        git(&["init", "-q"])?;
        git(&["add", "-A"])?;
        git(&[
            "commit",
            "-q",
            "-m",
            "RustSec advisory database snapshot",
            "--date=2026-08-21T00:00:00Z",
        ])?;
    }
    status(cargo(env, &["deny", "--offline", "check", "advisories"]))
}

/// `cargo xtask train-model`: the shipped models, retrained in place with the release
/// `meshctl` (a few seconds each; training is deterministic, so the files only change when
/// the features, the protocol or the trainer do).
pub fn train_models(env: &Env) -> Result<()> {
    status(cargo(env, &["build", "--release", "--bin", "meshctl"]))?;
    for kind in ["graphsage", "mlp"] {
        let out = root().join(format!("mesh-ctl/models/{kind}.safetensors"));
        let mut c = Command::new(target_dir().join("release/meshctl"));
        c.args(["model", "train", "--seed", "1", "--kind", kind, "--out"])
            .arg(&out)
            .current_dir(root());
        status(c)?;
    }
    Ok(())
}

/// Runs the lab binary (demo, benchmarks) built in release mode.
pub fn lab(env: &Env, args: &[&str]) -> Result<()> {
    status(cargo(
        env,
        &[
            "build",
            "--release",
            "--bin",
            "mesh-lab",
            "--bin",
            "meshctl",
        ],
    ))?;
    let mut c = Command::new(target_dir().join("release/mesh-lab"));
    c.args(args).current_dir(root());
    status(c)
}
