//! The bpffs layout: everything of ours lives under one directory, so a restarted agent
//! finds it and `meshctl detach` knows exactly what to remove.
//!
//! ```text
//! <pin_dir>/maps/<MAP NAME>          every map, META holding the layout version
//! <pin_dir>/progs/<PROGRAM NAME>     the XDP and TC programs
//! <pin_dir>/links/xdp-<ifname>       XDP link per mesh interface
//! <pin_dir>/links/tcx-<ifname>       TCX egress link (6.6+)
//! <pin_dir>/links/tcnl-<ifname>/     marker: a netlink (cls_bpf) egress filter of ours
//! <pin_dir>/links/tcxin-<ifname>     TCX ingress link that forwards (XDP hook taken)
//! <pin_dir>/links/tcnlin-<ifname>/   marker: the same as a netlink ingress filter (< 6.6)
//! ```

use std::path::{Path, PathBuf};

/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/x0tta6bl4";

const MAPS: &str = "maps";
const PROGS: &str = "progs";
const LINKS: &str = "links";
const XDP_LINK: &str = "xdp-";
const TCX_LINK: &str = "tcx-";
const TC_NETLINK: &str = "tcnl-";
const TCX_INGRESS_LINK: &str = "tcxin-";
const TC_NETLINK_INGRESS: &str = "tcnlin-";

/// Paths under one pin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir(PathBuf);

/// How an interface's pinned attachment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Xdp,
    /// TC egress telemetry, a TCX link.
    Tcx,
    /// Not a link: a netlink egress filter, marked by an empty directory.
    TcNetlink,
    /// Forwarding at TCX ingress (the XDP hook is someone else's).
    TcxIngress,
    /// Not a link: a netlink ingress filter that forwards, marked by an empty directory.
    TcNetlinkIngress,
}

impl LinkKind {
    /// Whether this attachment is the interface's forwarding (XDP, or TC ingress).
    pub fn forwards(self) -> bool {
        matches!(
            self,
            LinkKind::Xdp | LinkKind::TcxIngress | LinkKind::TcNetlinkIngress
        )
    }

    /// A marker directory rather than a pinned link.
    pub fn is_marker(self) -> bool {
        matches!(self, LinkKind::TcNetlink | LinkKind::TcNetlinkIngress)
    }
}

impl PinDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    pub fn maps(&self) -> PathBuf {
        self.0.join(MAPS)
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    pub fn progs(&self) -> PathBuf {
        self.0.join(PROGS)
    }

    pub fn prog(&self, name: &str) -> PathBuf {
        self.progs().join(name)
    }

    pub fn links(&self) -> PathBuf {
        self.0.join(LINKS)
    }

    pub fn link(&self, kind: LinkKind, iface: &str) -> PathBuf {
        let prefix = match kind {
            LinkKind::Xdp => XDP_LINK,
            LinkKind::Tcx => TCX_LINK,
            LinkKind::TcNetlink => TC_NETLINK,
            LinkKind::TcxIngress => TCX_INGRESS_LINK,
            LinkKind::TcNetlinkIngress => TC_NETLINK_INGRESS,
        };
        self.links().join(format!("{prefix}{iface}"))
    }

    /// The directory the pin directory lives in, when that is not a bpffs (any more): the
    /// mount point to put a bpffs back on. None while it is one, or cannot be told.
    pub fn base_without_bpffs(&self) -> Option<&Path> {
        let base = self.0.parent()?;
        let fs = nix::sys::statfs::statfs(base).ok()?;
        (fs.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC).then_some(base)
    }

    /// Why this directory is not ours to remove, if it is not: it must live on a bpffs
    /// and hold only our three subdirectories. A directory that does not exist is ours
    /// (there is nothing to remove).
    pub fn not_ours(&self) -> Option<String> {
        if !self.0.exists() {
            return None;
        }
        match nix::sys::statfs::statfs(&self.0) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC => {}
            Ok(_) => return Some("it is not on a bpffs".to_owned()),
            Err(e) => return Some(format!("cannot tell its file system: {e}")),
        }
        let entries = match std::fs::read_dir(&self.0) {
            Ok(e) => e,
            Err(e) => return Some(format!("cannot list it: {e}")),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ![MAPS, PROGS, LINKS].contains(&name.as_str()) {
                return Some(format!("it holds `{name}`, which is not ours"));
            }
        }
        None
    }

    /// Every pinned attachment: (kind, interface name, path).
    pub fn attachments(&self) -> Vec<(LinkKind, String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.links()) else {
            return Vec::new();
        };
        let mut out: Vec<_> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (kind, iface) = if let Some(i) = name.strip_prefix(XDP_LINK) {
                    (LinkKind::Xdp, i)
                } else if let Some(i) = name.strip_prefix(TCX_LINK) {
                    (LinkKind::Tcx, i)
                } else if let Some(i) = name.strip_prefix(TC_NETLINK) {
                    (LinkKind::TcNetlink, i)
                } else if let Some(i) = name.strip_prefix(TCX_INGRESS_LINK) {
                    (LinkKind::TcxIngress, i)
                } else if let Some(i) = name.strip_prefix(TC_NETLINK_INGRESS) {
                    (LinkKind::TcNetlinkIngress, i)
                } else {
                    return None;
                };
                Some((kind, iface.to_owned(), e.path()))
            })
            .collect();
        out.sort_by(|a, b| a.2.cmp(&b.2));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_directory_is_not_ours() {
        let dir = std::env::temp_dir().join(format!("pins-ours-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("maps")).expect("dir");
        std::fs::write(dir.join("maps/ROUTES_V4"), b"data").expect("file");
        let pins = PinDir::new(&dir);
        let why = pins.not_ours().expect("a tmp directory is not a bpffs");
        assert!(why.contains("bpffs"), "{why}");
        let err = crate::dataplane::detach_pinned(&pins).expect_err("refused");
        assert!(
            matches!(err, crate::dataplane::DataplaneError::NotOurs { .. }),
            "{err:?}"
        );
        assert!(dir.join("maps/ROUTES_V4").exists(), "nothing was removed");
        std::fs::remove_dir_all(&dir).expect("cleaning up");
        assert_eq!(PinDir::new(&dir).not_ours(), None, "nothing there is ours");
    }

    #[test]
    fn attachments_are_recognized_by_prefix_only() {
        let dir = std::env::temp_dir().join(format!("pins-test-{}", std::process::id()));
        let pins = PinDir::new(&dir);
        std::fs::create_dir_all(pins.link(LinkKind::TcNetlink, "eth1")).expect("creating a marker");
        std::fs::create_dir_all(pins.link(LinkKind::TcNetlinkIngress, "eth3"))
            .expect("creating a marker");
        std::fs::write(pins.link(LinkKind::Xdp, "eth0"), b"").expect("creating a file");
        std::fs::write(pins.link(LinkKind::TcxIngress, "eth2"), b"").expect("creating a file");
        std::fs::write(pins.links().join("other"), b"").expect("creating a file");
        let found = pins.attachments();
        std::fs::remove_dir_all(&dir).expect("cleaning up");
        let names: Vec<_> = found.iter().map(|(k, i, _)| (*k, i.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (LinkKind::TcNetlink, "eth1"),
                (LinkKind::TcNetlinkIngress, "eth3"),
                (LinkKind::TcxIngress, "eth2"),
                (LinkKind::Xdp, "eth0")
            ],
            "only our prefixes count"
        );
    }
}
