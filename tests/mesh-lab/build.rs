//! Builds the lab's own eBPF object (`mesh-lab-ebpf`) into OUT_DIR, the same way
//! `mesh-ctl`'s build script builds the shipped one.

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MESH_EBPF_TOOLCHAIN");
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = format!("{manifest}/../mesh-lab-ebpf");
    let toolchain = std::env::var("MESH_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        None | Some("" | "nightly") => aya_build::Toolchain::Nightly,
        Some(name) => {
            // Debian's stable rustc with a precompiled `core`: aya-ebpf enables one
            // unstable feature, so unlock exactly that crate.
            // SAFETY: the build script is single-threaded here.
            unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
            aya_build::Toolchain::Custom(name)
        }
    };
    // The shipped data plane's object built a second way, for upgrade tests: what a
    // different build of meshctl would run.
    let shipped = format!("{manifest}/../../mesh-ebpf");
    println!("cargo:rerun-if-changed={manifest}/../../mesh-common/src");
    aya_build::build_ebpf(
        [
            aya_build::Package {
                name: "mesh-lab-ebpf",
                root_dir: &root,
                ..Default::default()
            },
            aya_build::Package {
                name: "mesh-ebpf",
                root_dir: &shipped,
                features: &["upgrade-test"],
                ..Default::default()
            },
        ],
        toolchain,
    )
}
