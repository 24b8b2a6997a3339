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
    )
}
