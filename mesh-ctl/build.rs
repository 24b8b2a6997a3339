//! Builds the eBPF object (`mesh-ebpf`) and leaves it in OUT_DIR for `include_bytes_aligned!`.
//!
//! The toolchain comes from `MESH_EBPF_TOOLCHAIN`, which `cargo xtask setup` settles: a
//! nightly with rust-src, or Debian's rustc with precompiled `core` for bpfel linked into
//! rustup. Unset means `nightly`, the upstream route.

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MESH_EBPF_TOOLCHAIN");
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = format!("{manifest}/../mesh-ebpf");
    println!("cargo:rerun-if-changed={manifest}/../mesh-common/src");
    let toolchain = std::env::var("MESH_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        None | Some("" | "nightly") => aya_build::Toolchain::Nightly,
        Some(name) => {
            // Debian ships a stable rustc with a precompiled `core`: no build-std, but
            // aya-ebpf enables one unstable feature, so unlock exactly that crate.
            // SAFETY: the build script is single-threaded here.
            unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
            aya_build::Toolchain::Custom(name)
        }
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "mesh-ebpf",
            root_dir: &root,
            ..Default::default()
        }],
        toolchain,
    )?;
    identify(&manifest)
}

/// The build's identity for `--version`, `meshctl status` and `build_info`: a hash of the
/// eBPF object (what the kernel runs) and the git revision it was built from.
fn identify(manifest: &str) -> anyhow::Result<()> {
    use sha2::Digest as _;
    let out = std::env::var("OUT_DIR")?;
    let object = std::fs::read(format!("{out}/mesh"))?;
    let hash = sha2::Sha256::digest(&object);
    let id: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=MESH_OBJECT_ID={id}");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(manifest)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MESH_GIT_REV={rev}");
    // A new commit is a new revision to report (and the object is rebuilt with it).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    Ok(())
}
