//! Network namespace plumbing for tests, labs and benchmarks.

use std::{fs::File, os::fd::AsFd, process::Command};

use anyhow::{Context as _, bail};
use nix::sched::{CloneFlags, setns, unshare};

/// Moves the calling thread into a new, empty network namespace with loopback up.
///
/// The namespace lives as long as the thread (and its children) use it, so everything
/// created inside it disappears with it, also when a test panics.
pub fn unshare_thread() -> anyhow::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    ip(&["link", "set", "lo", "up"])
}

/// Runs `ip ARGS` in the calling thread's namespace.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// While alive, the calling thread is inside the named namespace (`/run/netns/NAME`).
pub struct Entered {
    original: File,
}

/// Enters `/run/netns/NAME` on the calling thread until the guard drops.
pub fn enter(name: &str) -> anyhow::Result<Entered> {
    let original = File::open("/proc/thread-self/ns/net").context("opening our netns")?;
    let target = File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening netns {name}"))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering netns {name}"))?;
    Ok(Entered { original })
}

impl Drop for Entered {
    fn drop(&mut self) {
        // Failing to return would leave the thread in a lab namespace; nothing sane follows.
        if let Err(e) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            panic!("returning to the original network namespace: {e}");
        }
    }
}
