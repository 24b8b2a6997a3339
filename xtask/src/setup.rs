//! `cargo xtask setup`: everything the build and tests need, on a fresh Debian bookworm
//! machine, with no hand steps. Idempotent; a second run only checks.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Debian packages and why we need each.
const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc 1.96 for the eBPF crate"),
    ("cargo-web", "cargo for the eBPF crate"),
    (
        "rust-web-clippy",
        "clippy for the eBPF crate on its own target",
    ),
    (
        "libstd-rust-web-dev-bpf",
        "precompiled `core` for bpfel-unknown-none",
    ),
    ("llvm-22-dev", "bpf-linker links against LLVM 22"),
    ("libpolly-22-dev", "bpf-linker's static LLVM link"),
    ("libzstd-dev", "bpf-linker's static LLVM link"),
    ("zlib1g-dev", "bpf-linker's static LLVM link"),
    ("iproute2", "namespace labs: ip netns, veth"),
    ("iputils-ping", "namespace labs: ping"),
    ("iperf3", "namespace labs: TCP and UDP traffic"),
    (
        "cmake",
        "oqs (liboqs, vendored): the post-quantum control plane",
    ),
    (
        "libclang-dev",
        "oqs's bindgen: libclang 14 (bindgen breaks with libclang 22)",
    ),
    ("nftables", "failure labs: faults injected in the wires"),
    ("babeld", "bench failover: the baseline routing daemon"),
    (
        "ethtool",
        "forward benchmark: GRO for the kernel-forwarding baseline",
    ),
    ("procps", "namespace labs: sysctl"),
    (
        "qemu-system-x86",
        "VM tier: virtme-ng boots kernels under qemu",
    ),
    ("kmod", "VM tier: depmod for the guest kernels"),
    ("busybox-static", "VM tier: virtme-ng's guest init"),
    (
        "prometheus",
        "telemetry lab: promtool checks the metrics scrape; the live monitoring lab",
    ),
    (
        "xdp-tools",
        "coexistence lab: a real libxdp user (xdp-filter) holding the XDP hook",
    ),
    (
        "prometheus-alertmanager",
        "live monitoring lab: alerts delivered to a webhook",
    ),
];

/// Where bindgen (oqs-sys) finds Debian's libclang 14: with LLVM 22 also installed it
/// would otherwise pick libclang 22, which it cannot parse liboqs's headers with.
pub const LIBCLANG_PATH: &str = "/usr/lib/llvm-14/lib";

/// The name under which Debian's rustc is linked into rustup.
pub const DEBIAN_TOOLCHAIN: &str = "mesh-bpf-debian";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What later steps need to know about the toolchain setup chose.
#[derive(Debug, Clone)]
pub struct Env {
    /// rustup toolchain that builds the eBPF crate.
    pub toolchain: String,
    cargo_bin: PathBuf,
}

impl Env {
    /// Puts the toolchain choice, cargo's bin directory (bpf-linker) and libclang's
    /// directory (oqs's bindgen) in a command's env.
    pub fn apply(&self, c: &mut Command) {
        c.env("MESH_EBPF_TOOLCHAIN", &self.toolchain);
        c.env("PATH", path_with(&self.cargo_bin));
        c.env("LIBCLANG_PATH", LIBCLANG_PATH);
    }
}

impl Env {
    /// cargo of the eBPF toolchain, for the bpfel target (the way aya-build invokes it).
    pub fn ebpf_cargo(&self, args: &[&str]) -> Command {
        let mut c = Command::new("rustup");
        c.args(["run", &self.toolchain, "cargo"])
            .args(args)
            .args(["--target", "bpfel-unknown-none"]);
        if self.toolchain.starts_with("nightly") {
            c.args(["-Z", "build-std=core"]);
        } else {
            // Debian's stable rustc: aya-ebpf enables one unstable feature.
            c.env("RUSTC_BOOTSTRAP", "aya_ebpf");
        }
        for var in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO",
            "RUSTUP_TOOLCHAIN",
        ] {
            c.env_remove(var);
        }
        c.env("PATH", path_with(&self.cargo_bin));
        c.env("LIBCLANG_PATH", LIBCLANG_PATH);
        c
    }
}

fn path_with(dir: &Path) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == dir) {
        path
    } else {
        format!("{}:{path}", dir.display())
    }
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ok(c: &mut Command) -> bool {
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(c: &mut Command) -> Option<String> {
    let o = c.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Settles the environment, installing what is missing unless `check_only`.
pub fn run(check_only: bool) -> Result<Env> {
    let mut missing = Vec::new();
    let root = is_root();

    let absent: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !absent.is_empty() {
        if check_only || !root {
            for p in &absent {
                let why = PACKAGES
                    .iter()
                    .find(|(n, _)| n == p)
                    .map_or("", |(_, w)| *w);
                missing.push(format!("Debian package {p} ({why})"));
            }
        } else {
            apt_install(&absent)?;
        }
    }

    // Checked after the install: the package's layout is what LIBCLANG_PATH assumes.
    if absent.is_empty() || (root && !check_only) {
        let lib = Path::new(LIBCLANG_PATH).join("libclang.so");
        if !lib.exists() {
            missing.push(format!(
                "{} (from libclang-dev; oqs's bindgen needs it)",
                lib.display()
            ));
        }
    }

    let (toolchain, build_std) = choose_toolchain(check_only, &mut missing)?;
    let cargo_bin = cargo_bin();
    ensure_bpf_linker(&cargo_bin, check_only, &mut missing)?;
    ensure_pip(
        check_only,
        &mut missing,
        Installed::Command("vng"),
        "virtme-ng",
        "the VM tier: the tests under other kernels",
    )?;
    ensure_pip(
        check_only,
        &mut missing,
        Installed::Command("kubernetes-validate"),
        "kubernetes-validate",
        "deploy checks: the Kubernetes manifests against the API schemas",
    )?;
    ensure_pip(
        check_only,
        &mut missing,
        Installed::Module("topohub"),
        "topohub",
        "bench detect: the Internet Topology Zoo and SNDlib graphs",
    )?;
    ensure_cargo_deny(&cargo_bin, check_only, &mut missing)?;
    if !bpffs_mounted() {
        if check_only || !root {
            missing.push("bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)".to_owned());
        } else {
            crate::cmd::status({
                let mut c = Command::new("mount");
                c.args(["-t", "bpf", "bpf", "/sys/fs/bpf"]);
                c
            })
            .context("mounting bpffs")?;
        }
    }

    if !missing.is_empty() {
        let who = if root {
            ""
        } else {
            " (not root, so nothing was installed)"
        };
        bail!("setup: missing{who}:\n  - {}", missing.join("\n  - "));
    }
    eprintln!(
        "setup: ok (eBPF toolchain `{toolchain}`{}, bpf-linker, virtme-ng, cargo-deny)",
        if build_std {
            " with build-std"
        } else {
            ", precompiled core"
        }
    );
    Ok(Env {
        toolchain,
        cargo_bin,
    })
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    })
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    eprintln!("setup: installing {}", pkgs.join(" "));
    let quiet = |c: &mut Command| {
        c.env("DEBIAN_FRONTEND", "noninteractive");
    };
    let mut update = Command::new("apt-get");
    update.args(["-q", "update"]);
    quiet(&mut update);
    let out = update.output().context("running apt-get update")?;
    if !out.status.success() {
        bail!(
            "apt-get update failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut install = Command::new("apt-get");
    install
        .args(["-q", "-y", "--no-install-recommends", "install"])
        .args(pkgs);
    quiet(&mut install);
    let out = install.output().context("running apt-get install")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let unknown: Vec<&str> = err
            .lines()
            .filter_map(|l| l.strip_prefix("E: Unable to locate package "))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "Debian has no package {} here (is this Debian bookworm with bookworm-security?)",
                unknown.join(", ")
            );
        }
        bail!("apt-get install {} failed: {}", pkgs.join(" "), err.trim());
    }
    Ok(())
}

/// Upstream route (a nightly with rust-src) where the machine has it, else Debian's rustc
/// with its precompiled `core`, linked into rustup so aya-build can select it.
fn choose_toolchain(check_only: bool, missing: &mut Vec<String>) -> Result<(String, bool)> {
    if let Ok(t) = std::env::var("MESH_EBPF_TOOLCHAIN")
        && !t.is_empty()
    {
        return Ok((t.clone(), t.starts_with("nightly")));
    }
    if let Some(sysroot) =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
        && Path::new(sysroot.trim())
            .join("lib/rustlib/src/rust/library/core")
            .exists()
    {
        return Ok(("nightly".to_owned(), true));
    }
    let linked = output(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|l| l.lines().any(|t| t.starts_with(DEBIAN_TOOLCHAIN)));
    if !Path::new("/usr/lib/rustlib/bpfel-unknown-none").exists() {
        missing.push("a nightly with rust-src, or Debian's libstd-rust-web-dev-bpf".to_owned());
    } else if !linked {
        if check_only {
            missing.push(format!("rustup toolchain link {DEBIAN_TOOLCHAIN} /usr"));
        } else if !ok(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]))
        {
            bail!("rustup toolchain link {DEBIAN_TOOLCHAIN} /usr failed");
        }
    }
    Ok((DEBIAN_TOOLCHAIN.to_owned(), false))
}

fn ensure_bpf_linker(cargo_bin: &Path, check_only: bool, missing: &mut Vec<String>) -> Result<()> {
    let linker = cargo_bin.join("bpf-linker");
    if ok(Command::new(&linker).arg("--version")) || ok(Command::new("bpf-linker").arg("--version"))
    {
        return Ok(());
    }
    if check_only {
        missing.push(format!(
            "bpf-linker {BPF_LINKER_VERSION} (cargo install, against LLVM 22)"
        ));
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
    );
    let mut c = Command::new("cargo");
    c.args([
        "install",
        "bpf-linker",
        "--locked",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        "llvm-22",
    ])
    .env("PATH", path_with(Path::new("/usr/lib/llvm-22/bin")))
    .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22");
    crate::cmd::status(c).context("installing bpf-linker")
}

/// cargo-deny, for the dependency policy `cargo xtask lint` checks.
const CARGO_DENY_VERSION: &str = "0.20.2";

fn ensure_cargo_deny(cargo_bin: &Path, check_only: bool, missing: &mut Vec<String>) -> Result<()> {
    if ok(Command::new(cargo_bin.join("cargo-deny")).arg("--version")) {
        return Ok(());
    }
    if check_only {
        missing.push(format!("cargo-deny {CARGO_DENY_VERSION} (cargo install)"));
        return Ok(());
    }
    eprintln!("setup: building cargo-deny {CARGO_DENY_VERSION} (a few minutes, once)");
    let mut c = Command::new("cargo");
    c.args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]);
    crate::cmd::status(c).context("installing cargo-deny")
}

/// How setup tells that a PyPI package is installed.
enum Installed<'a> {
    /// It puts this command on PATH (`command --version` works).
    Command(&'a str),
    /// Python imports it under this name.
    Module(&'a str),
}

impl Installed<'_> {
    fn present(&self) -> bool {
        match self {
            Installed::Command(c) => ok(Command::new(c).arg("--version")),
            Installed::Module(m) => {
                ok(Command::new("python3").args(["-c", &format!("import {m}")]))
            }
        }
    }

    fn absent(&self) -> String {
        match self {
            Installed::Command(c) => format!("`{c}` is not on PATH"),
            Installed::Module(m) => format!("python3 cannot import {m}"),
        }
    }
}

/// A PyPI package, installed with pip unless `installed` says it is there.
fn ensure_pip(
    check_only: bool,
    missing: &mut Vec<String>,
    installed: Installed<'_>,
    package: &str,
    why: &str,
) -> Result<()> {
    if installed.present() {
        return Ok(());
    }
    if check_only {
        missing.push(format!("{package} (pip install {package}): {why}"));
        return Ok(());
    }
    eprintln!("setup: installing {package} from PyPI ({why})");
    let mut c = Command::new("python3");
    c.args(["-m", "pip", "install", "--quiet", package]);
    crate::cmd::status(c).with_context(|| format!("installing {package}"))?;
    if !installed.present() {
        bail!("{package} installed but {}", installed.absent());
    }
    Ok(())
}
