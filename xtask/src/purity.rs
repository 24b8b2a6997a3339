//! The crate boundaries `cargo xtask lint` holds: the pure cores reach no kernel, socket,
//! clock or filesystem, and meshctl links none of the lab's crates.

use std::{fs, path::Path, process::Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup::Env};

/// The pure cores, by package name and source directory.
const CORES: [(&str, &str); 3] = [
    ("mesh-routing", "mesh-ctl/routing/src"),
    ("mesh-secure", "mesh-ctl/secure/src"),
    ("mesh-detect", "mesh-ctl/detect/src"),
];

/// Crates that would give a core I/O or the kernel.
const IO_CRATES: [&str; 7] = [
    "tokio",
    "aya",
    "aya-obj",
    "nix",
    "mio",
    "socket2",
    "libbpf-sys",
];

/// What only the lab and its benchmarks may link.
const LAB_CRATES: [&str; 3] = ["plotters", "etherparse", "ctrlc"];

/// Source text a core may not contain outside its tests.
const IO_PATTERNS: [&str; 12] = [
    "std::fs",
    "fs::",
    "File::",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "Instant",
    "SystemTime",
    "tokio",
    "aya",
    "std::process",
];

pub fn check(env: &Env) -> Result<()> {
    let mut problems = Vec::new();
    for (package, src) in CORES {
        for dep in normal_deps(env, package)? {
            if IO_CRATES.contains(&dep.as_str()) {
                problems.push(format!("{package} depends on {dep}"));
            }
        }
        scan(&cmd::root().join(src), package, &mut problems)?;
    }
    for dep in normal_deps(env, "mesh-ctl")? {
        if LAB_CRATES.contains(&dep.as_str()) {
            problems.push(format!("mesh-ctl links {dep}, which only the lab may"));
        }
    }
    if !problems.is_empty() {
        bail!("crate boundaries broken:\n  {}", problems.join("\n  "));
    }
    eprintln!("xtask lint: cores pure, meshctl free of lab crates");
    Ok(())
}

/// Every package in `package`'s normal (non-dev, non-build) dependency tree.
fn normal_deps(env: &Env, package: &str) -> Result<Vec<String>> {
    let mut c = cmd::cargo(
        env,
        &[
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ],
    );
    c.stderr(Stdio::inherit());
    let out = c
        .output()
        .with_context(|| format!("cargo tree -p {package}"))?;
    if !out.status.success() {
        bail!("cargo tree -p {package} failed ({})", out.status);
    }
    let text = String::from_utf8(out.stdout).context("cargo tree output")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Flags I/O in a core's sources; test files and `#[cfg(test)]` tails are the tests' own.
fn scan(dir: &Path, package: &str, problems: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            scan(&path, package, problems)?;
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            for pattern in IO_PATTERNS {
                if code.contains(pattern) {
                    problems.push(format!(
                        "{package}: {}:{}: `{pattern}` in a pure core",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    Ok(())
}
