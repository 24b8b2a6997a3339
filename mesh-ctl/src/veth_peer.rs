//! `meshctl veth-peer IFACE`: the far end of a veth that a mesh router redirects frames
//! into (a host or namespace attached to an edge router) receives them only when an XDP
//! program runs on it. This attaches the object's pass-everything program there, pinned
//! under bpffs so that it stays attached after meshctl exits, and `--detach` removes it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::programs::{
    XdpMode,
    links::{FdLink, Link as _, PinnedLink},
};
use mesh_common::maps::PROG_VETH_PEER;

use crate::dataplane::{OBJECT, xdp_mut};

/// Where the attachments are pinned: beside the agent's pin directory, not in it, so that
/// `meshctl detach` of an agent leaves a peer's program alone.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/x0tta6bl4-veth-peer";

/// `meshctl veth-peer` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The veth end that receives the mesh's redirected frames (in this namespace).
    #[arg(value_name = "IFACE")]
    pub iface: String,
    /// Remove the program from IFACE instead of attaching it.
    #[arg(long)]
    pub detach: bool,
    /// The bpffs directory the attachment is pinned in (one pin per interface).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

/// Attaches or detaches as `opts` says, and says what it did.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    if opts.detach {
        detach(&opts.pin_dir, &opts.iface)?;
        println!("detached {PROG_VETH_PEER} from {}", opts.iface);
    } else {
        let pin = attach(&opts.pin_dir, &opts.iface)?;
        println!(
            "attached {PROG_VETH_PEER} to {} (pinned at {}; remove with `meshctl veth-peer {} --detach`)",
            opts.iface,
            pin.display(),
            opts.iface
        );
    }
    Ok(())
}

/// The pin of `iface`'s attachment under `pin_dir`.
pub fn pin_path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(iface)
}

/// Attaches the pass program to `iface` in driver mode and pins the link under `pin_dir`;
/// returns the pin. An interface that already has it is refused, not attached twice.
pub fn attach(pin_dir: &Path, iface: &str) -> anyhow::Result<PathBuf> {
    let pin = pin_path(pin_dir, iface);
    if pin.exists() {
        bail!(
            "{iface} already has {PROG_VETH_PEER} (pinned at {}); `--detach` removes it",
            pin.display()
        );
    }
    ensure_bpffs(pin_dir)?;
    let mut ebpf = aya::Ebpf::load(OBJECT).context("loading the embedded eBPF object")?;
    let prog = xdp_mut(&mut ebpf, PROG_VETH_PEER)?;
    prog.load()
        .with_context(|| format!("loading {PROG_VETH_PEER} into the kernel"))?;
    let id = prog
        .attach(iface, XdpMode::Driver)
        .with_context(|| format!("attaching {PROG_VETH_PEER} to {iface} (driver mode)"))?;
    let link = prog
        .take_link(id)
        .with_context(|| format!("taking {iface}'s XDP link"))?;
    let fd = FdLink::try_from(link).with_context(|| {
        format!("{iface}: the kernel attached XDP without a bpf_link, which cannot be pinned")
    })?;
    fd.pin(&pin)
        .with_context(|| format!("pinning {iface}'s XDP link at {}", pin.display()))?;
    Ok(pin)
}

/// Removes what [`attach`] attached to `iface`: unpinning the link closes its last
/// reference, which detaches the program.
pub fn detach(pin_dir: &Path, iface: &str) -> anyhow::Result<()> {
    let pin = pin_path(pin_dir, iface);
    if !pin.exists() {
        bail!(
            "{iface}: nothing of ours is attached (no pin at {})",
            pin.display()
        );
    }
    let link = PinnedLink::from_pin(&pin).with_context(|| format!("opening {}", pin.display()))?;
    let fd = link
        .unpin()
        .with_context(|| format!("unpinning {}", pin.display()))?;
    // Closing the last reference detaches the program from the interface.
    let _detached = fd.detach();
    Ok(())
}

/// Creates `dir`, which must lie on a bpffs. `ip netns exec` mounts a fresh /sys, without
/// the host's bpffs: say so rather than fail on the pin.
fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    let base = dir.parent().unwrap_or(dir);
    let on_bpffs = nix::sys::statfs::statfs(base)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC);
    if !on_bpffs {
        bail!(
            "{} is not on a bpffs: pass --pin-dir DIR below a bpffs mount (the host's is \
             /sys/fs/bpf; `ip netns exec` mounts /sys afresh without it, so there use a bpffs \
             mounted outside /sys: one mounted inside would go, with the pin, when the \
             command exits)",
            base.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
