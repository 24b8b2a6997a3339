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
