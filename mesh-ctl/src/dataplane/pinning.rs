//! Pins: a data plane that outlives the agent, adopted by the next one, removed on request.

use std::path::Path;

use aya::{
    EbpfLoader,
    maps::{Array, Map, MapData},
    programs::{
        Link as _,
        links::{FdLink, LinkError, PinnedLink},
        tc::{self, SchedClassifierLink, TcAttachType},
        xdp::XdpLink,
    },
};
use mesh_common::maps::{
    EVENTS, FLOWS, LAYOUT_VERSION, META, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};

use super::{
    ALL_MAPS, Dataplane, DataplaneError, MapStore, Result, classifier_mut, ingress_mut,
    pins::{LinkKind, PinDir},
    typed, xdp_mut,
};

/// The programs we pin.
const PROGRAMS: [&str; 3] = [PROG_XDP, PROG_TC_EGRESS, PROG_TC_INGRESS];

/// How [`Dataplane::open`] got its maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Loaded the object and pinned everything.
    Fresh,
    /// Found a running data plane's pins and took them over: its maps, with everything in
    /// them, now serve this build's programs, which replaced the running ones in place.
    Adopted(Takeover),
}

/// What taking over a running data plane changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// Attachments whose program was replaced atomically (`xdp-eth0`, `tcx-eth0`).
    pub replaced: Vec<String>,
    /// Netlink TC filters (kernels before 6.6) left running the previous program: a
    /// cls_bpf filter cannot be swapped in place without its handle.
    pub kept: Vec<String>,
    /// The flow table's capacity before and after, when the config changed it.
    pub flows_resized: Option<(u32, u32)>,
    /// Interfaces whose pinned links outlived their device (deleted, perhaps re-created
    /// under the same name): their pins were dropped, so they are attached afresh.
    pub stale: Vec<String>,
}
/// What [`detach_pinned`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Detached {
    /// Interfaces whose XDP or TC attachment of ours was removed.
    pub links: Vec<String>,
    /// Pins of maps and programs removed.
    pub pins: usize,
}

fn pin_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataplaneError {
    let path = path.to_owned();
    move |source| DataplaneError::Pin {
        action,
        path,
        source,
    }
}

impl Dataplane {
    /// Takes over the data plane pinned at `pins` if there is one (after checking its
    /// layout), else loads a fresh one from `object` and pins its maps and programs there.
    pub fn open(pins: &PinDir, flow_capacity: u32, object: &[u8]) -> Result<(Self, Start)> {
        if pins.map(META).exists() {
            let (dp, takeover) = Self::take_over(pins, flow_capacity, object)?;
            return Ok((dp, Start::Adopted(takeover)));
        }
        let mut dp = Self::load_object(object, flow_capacity)?;
        std::fs::create_dir_all(pins.maps()).map_err(pin_err("creating", &pins.maps()))?;
        std::fs::create_dir_all(pins.progs()).map_err(pin_err("creating", &pins.progs()))?;
        std::fs::create_dir_all(pins.links()).map_err(pin_err("creating", &pins.links()))?;
        // META last: its pin is what marks the set complete and adoptable.
        for &name in ALL_MAPS.iter().filter(|n| **n != META) {
            dp.pin_map(pins, name)?;
        }
        dp.pin_programs(pins)?;
        {
            let mut meta: Array<&mut MapData, u32> = typed(&mut dp.maps, META)?;
            meta.set(0, LAYOUT_VERSION, 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: META,
                    action: "writing the layout version".to_owned(),
                    source,
                })?;
        }
        dp.pin_map(pins, META)?;
        dp.pins = Some(pins.clone());
        Ok((dp, Start::Fresh))
    }

    /// Upgrade (or rollback, or plain restart) over a running data plane: `object` is
    /// loaded over the pinned maps themselves, so nothing in them is copied or lost, and
    /// its programs replace the running ones on every pinned link with `bpf_link_update`
    /// (the kernel swaps the program between two packets). Until the first swap nothing
    /// running has changed; each swap leaves a data plane that forwards.
    fn take_over(pins: &PinDir, flow_capacity: u32, object: &[u8]) -> Result<(Self, Takeover)> {
        // Checked against the kernel's view of every pinned map, before anything loads.
        let running = Self::adopt(pins)?;
        let pinned_capacity = running.flow_capacity;
        let resize = pinned_capacity != flow_capacity;
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(FLOWS, flow_capacity);
        let paths: Vec<(&'static str, std::path::PathBuf)> =
            ALL_MAPS.iter().map(|&n| (n, pins.map(n))).collect();
        for (name, path) in &paths {
            // A flow table of another size is a new map; its flows are copied below.
            if !(resize && *name == FLOWS) {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut dp = Self::load_from(&mut loader, object, flow_capacity)?;
        dp.pins = Some(pins.clone());
        let mut takeover = Takeover::default();
        if resize {
            let copied = dp.copy_flows_from(&running)?;
            crate::event!(
                INFO,
                "flow_table_resized",
                from = pinned_capacity,
                to = flow_capacity,
                flows_kept = copied
            );
            takeover.flows_resized = Some((pinned_capacity, flow_capacity));
        }
        drop(running);
        dp.replace_programs(pins, &mut takeover)?;
        if resize {
            // The programs now use the new table: its pin replaces the old one's.
            let path = pins.map(FLOWS);
            std::fs::remove_file(&path).map_err(pin_err("replacing", &path))?;
            dp.pin_map(pins, FLOWS)?;
        }
        dp.pin_programs(pins)?;
        Ok((dp, takeover))
    }

    /// Swaps this object's programs onto every pinned attachment.
    fn replace_programs(&mut self, pins: &PinDir, done: &mut Takeover) -> Result<()> {
        let (mut held, mut netlink) = (Vec::new(), Vec::new());
        let ebpf = self.programs()?;
        for (kind, iface, path) in pins.attachments() {
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match kind {
                LinkKind::Xdp => {
                    let link = pinned_link(&path)?;
                    let link = XdpLink::try_from(link)
                        .map_err(|e| pin_err("opening", &path)(std::io::Error::other(e)))?;
                    let prog = xdp_mut(ebpf, PROG_XDP)?;
                    let id = match prog.attach_to_link(link) {
                        Ok(id) => id,
                        Err(e) if device_gone(&e) => {
                            drop_stale(&path, &iface, &mut done.stale)?;
                            continue;
                        }
                        Err(source) => {
                            return Err(DataplaneError::Attach {
                                iface: iface.clone(),
                                source,
                            });
                        }
                    };
                    let link = prog
                        .take_link(id)
                        .map_err(|source| DataplaneError::Attach {
                            iface: iface.clone(),
                            source,
                        })?;
                    if let Ok(fd) = FdLink::try_from(link) {
                        held.push((LinkKind::Xdp, iface.clone(), fd));
                    }
                }
                LinkKind::Tcx | LinkKind::TcxIngress => {
                    let link = pinned_link(&path)?;
                    let link = SchedClassifierLink::try_from(link)
                        .map_err(|e| pin_err("opening", &path)(std::io::Error::other(e)))?;
                    let prog = if kind == LinkKind::Tcx {
                        classifier_mut(ebpf)?
                    } else {
                        ingress_mut(ebpf)?
                    };
                    let id = match prog.attach_to_link(link) {
                        Ok(id) => id,
                        Err(e) if device_gone(&e) => {
                            drop_stale(&path, &iface, &mut done.stale)?;
                            continue;
                        }
                        Err(source) => {
                            return Err(DataplaneError::AttachTc {
                                iface: iface.clone(),
                                source,
                            });
                        }
                    };
                    let link = prog
                        .take_link(id)
                        .map_err(|source| DataplaneError::AttachTc {
                            iface: iface.clone(),
                            source,
                        })?;
                    if let Ok(fd) = FdLink::try_from(link) {
                        held.push((kind, iface.clone(), fd));
                    }
                }
                LinkKind::TcNetlink | LinkKind::TcNetlinkIngress => {
                    netlink.push((kind, iface.clone(), path, label));
                    continue;
                }
            }
            done.replaced.push(label);
        }
        // A netlink filter went with its device: the marker of a stale interface goes
        // too (its XDP link told us), and the fresh attach adds a filter and a marker.
        for (kind, iface, path, label) in netlink {
            if done.stale.contains(&iface) {
                std::fs::remove_dir(&path).map_err(pin_err("removing", &path))?;
            } else {
                self.netlink.push((kind, iface));
                done.kept.push(label);
            }
        }
        self.held.extend(held);
        Ok(())
    }

    /// Puts back whatever of our pins went missing under the running agent (someone
    /// removed the directory): maps and programs from the descriptors this process holds,
    /// links from the ones it keeps open, the layout stamp last. Forwarding never stopped
    /// (the open links kept the programs attached); this only makes the data plane
    /// adoptable again. Returns what was restored.
    pub fn repin(&mut self) -> Result<Vec<String>> {
        let Some(pins) = self.pins.clone() else {
            return Ok(Vec::new());
        };
        if pins.map(META).exists()
            && self
                .held
                .iter()
                .all(|(kind, iface, _)| pins.link(*kind, iface).exists())
            && self
                .netlink
                .iter()
                .all(|(kind, iface)| pins.link(*kind, iface).exists())
        {
            return Ok(Vec::new());
        }
        if let Some(base) = pins.base_without_bpffs() {
            return Err(DataplaneError::BpffsGone {
                dir: base.to_owned(),
            });
        }
        let mut restored = Vec::new();
        for dir in [pins.maps(), pins.progs(), pins.links()] {
            std::fs::create_dir_all(&dir).map_err(pin_err("creating", &dir))?;
        }
        for &name in ALL_MAPS.iter().filter(|n| **n != META) {
            let path = pins.map(name);
            if path.exists() {
                continue;
            }
            if self.maps.0.contains_key(name) {
                self.pin_map(&pins, name)?;
            } else if let (EVENTS, Some(events)) = (name, &self.events_handle) {
                events
                    .pin(&path)
                    .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
            } else {
                continue;
            }
            restored.push(format!("maps/{name}"));
        }
        if PROGRAMS.iter().any(|p| !pins.prog(p).exists()) && self.ebpf.is_some() {
            self.pin_programs(&pins)?;
            restored.push("progs".to_owned());
        }
        let held = std::mem::take(&mut self.held);
        for (kind, iface, fd) in held {
            let path = pins.link(kind, &iface);
            if path.exists() {
                self.held.push((kind, iface, fd));
                continue;
            }
            let pinned = fd
                .pin(&path)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
            restored.push(format!(
                "links/{}",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            self.held.push((kind, iface, FdLink::from(pinned)));
        }
        for (kind, iface) in &self.netlink {
            let path = pins.link(*kind, iface);
            if !path.exists() {
                std::fs::create_dir_all(&path).map_err(pin_err("creating", &path))?;
                restored.push(format!(
                    "links/{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ));
            }
        }
        if !pins.map(META).exists() {
            self.pin_map(&pins, META)?;
            restored.push(format!("maps/{META}"));
        }
        Ok(restored)
    }

    /// Pins the programs, replacing pins of earlier ones (what `bpftool prog show pinned`
    /// finds is what runs).
    fn pin_programs(&mut self, pins: &PinDir) -> Result<()> {
        let ebpf = self.programs()?;
        for name in PROGRAMS {
            let path = pins.prog(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(pin_err("replacing", &path)(e)),
            }
            let pinned = match name {
                PROG_XDP => xdp_mut(ebpf, PROG_XDP)?.pin(&path),
                PROG_TC_INGRESS => ingress_mut(ebpf)?.pin(&path),
                _ => classifier_mut(ebpf)?.pin(&path),
            };
            pinned.map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
        }
        Ok(())
    }

    /// Attaches to `added` and hands the attachments to the pins, then removes our
    /// attachments from `removed`: make before break, and the interfaces in both
    /// lists' complement are not touched.
    pub fn change_interfaces(
        &mut self,
        added: &[String],
        removed: &[String],
        config: &crate::config::Dataplane,
    ) -> Result<Vec<(String, super::Forwarding)>> {
        let mut forwarding = Vec::new();
        if !added.is_empty() {
            forwarding = self.attach(added, config)?;
            if let Err(e) = self.attach_egress(added, config.tc_attach, config.tc_position) {
                self.detach_all();
                return Err(e);
            }
            self.persist()?;
        }
        if let Some(pins) = self.pins.clone() {
            for iface in removed {
                detach_interface(&pins, iface)?;
            }
        }
        Ok(forwarding)
    }

    /// Where each pinned interface forwards: `xdp`, `tcx` or `clsact` (TC ingress).
    pub fn forwarding(&self) -> Vec<(String, &'static str)> {
        let Some(pins) = &self.pins else {
            return Vec::new();
        };
        pins.attachments()
            .into_iter()
            .filter_map(|(kind, iface, _)| match kind {
                LinkKind::Xdp => Some((iface, "xdp")),
                LinkKind::TcxIngress => Some((iface, "tcx")),
                LinkKind::TcNetlinkIngress => Some((iface, "clsact")),
                LinkKind::Tcx | LinkKind::TcNetlink => None,
            })
            .collect()
    }

    fn pin_map(&self, pins: &PinDir, name: &'static str) -> Result<()> {
        let path = pins.map(name);
        let map = self
            .maps
            .0
            .get(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        map.pin(&path)
            .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))
    }

    /// The running data plane's maps, to read (`meshctl route get`): nothing is loaded
    /// or attached, and dropping it changes nothing.
    pub fn open_pinned(pins: &PinDir) -> Result<Self> {
        Self::adopt(pins)
    }

    /// Opens every pinned map and checks it: the layout stamp first, then each map's key
    /// and value sizes (aya would take a map of any shape).
    fn adopt(pins: &PinDir) -> Result<Self> {
        let mut maps = MapStore::default();
        for &name in ALL_MAPS {
            let path = pins.map(name);
            let data = MapData::from_pin(&path)
                .map_err(|source| DataplaneError::MapLayout { name, source })?;
            let map = Map::from_map_data(data)
                .map_err(|source| DataplaneError::MapLayout { name, source })?;
            maps.0.insert(name, map);
        }
        let found = {
            let meta: Array<&MapData, u32> = super::typed_ref(&maps, META)?;
            meta.get(&0, 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: META,
                    action: "reading the layout version".to_owned(),
                    source,
                })?
        };
        if found != LAYOUT_VERSION {
            return Err(DataplaneError::PinnedLayout {
                dir: pins.root().to_owned(),
                found,
                want: LAYOUT_VERSION,
            });
        }
        let flow_capacity = match maps.0.get(FLOWS) {
            Some(Map::PerCpuLruHashMap(m)) => {
                m.info()
                    .map(|i| i.max_entries())
                    .map_err(|source| DataplaneError::MapLayout {
                        name: FLOWS,
                        source,
                    })?
            }
            _ => {
                return Err(DataplaneError::MapLayout {
                    name: FLOWS,
                    source: aya::maps::MapError::InvalidName {
                        name: FLOWS.to_owned(),
                    },
                });
            }
        };
        Self::checked(None, maps, Some(pins.clone()), flow_capacity)
    }

    /// Whether this data plane's attachments are pinned (they outlive the process).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// Interfaces with a pinned XDP attachment of ours.
    pub fn pinned_interfaces(&self) -> Vec<String> {
        self.pins
            .as_ref()
            .map(|p| {
                p.attachments()
                    .into_iter()
                    .filter(|(k, _, _)| k.forwards())
                    .map(|(_, i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Hands what [`Self::attach`] and [`Self::attach_egress`] attached over to the pins,
    /// so it stays attached when this process exits.
    pub fn persist(&mut self) -> Result<()> {
        let Some(pins) = self.pins.clone() else {
            return Ok(());
        };
        let attached = std::mem::take(&mut self.attached);
        let egress = std::mem::take(&mut self.egress);
        let ingress = std::mem::take(&mut self.ingress_tc);
        let (mut held, mut netlink) = (Vec::new(), Vec::new());
        let ebpf = self.programs()?;
        for (iface, id) in attached {
            let link = xdp_mut(ebpf, PROG_XDP)?.take_link(id).map_err(|source| {
                DataplaneError::Attach {
                    iface: iface.clone(),
                    source,
                }
            })?;
            let path = pins.link(LinkKind::Xdp, &iface);
            let fd = FdLink::try_from(link)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
            let pinned = fd
                .pin(&path)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
            held.push((LinkKind::Xdp, iface, FdLink::from(pinned)));
        }
        let tc = egress
            .into_iter()
            .map(|(i, id)| (i, id, LinkKind::Tcx, LinkKind::TcNetlink))
            .chain(
                ingress
                    .into_iter()
                    .map(|(i, id)| (i, id, LinkKind::TcxIngress, LinkKind::TcNetlinkIngress)),
            );
        for (iface, id, link_kind, marker_kind) in tc {
            let prog = if link_kind == LinkKind::Tcx {
                classifier_mut(ebpf)?
            } else {
                ingress_mut(ebpf)?
            };
            let link = prog
                .take_link(id)
                .map_err(|source| DataplaneError::AttachTc {
                    iface: iface.clone(),
                    source,
                })?;
            match FdLink::try_from(link) {
                Ok(fd) => {
                    let path = pins.link(link_kind, &iface);
                    let pinned = fd
                        .pin(&path)
                        .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
                    held.push((link_kind, iface, FdLink::from(pinned)));
                }
                // A netlink filter is no link: it stays in the kernel until removed. The
                // marker tells `detach` where to look.
                Err(LinkError::InvalidLink) => {
                    let path = pins.link(marker_kind, &iface);
                    std::fs::create_dir_all(&path).map_err(pin_err("creating", &path))?;
                    netlink.push((marker_kind, iface));
                }
                Err(e) => {
                    let path = pins.link(link_kind, &iface);
                    return Err(pin_err("pinning", &path)(std::io::Error::other(e)));
                }
            }
        }
        self.held.extend(held);
        self.netlink.extend(netlink);
        Ok(())
    }
}

/// Removes everything pinned under `pins`: our XDP and TC attachments (only ours: they are
/// found through our pins and markers), then the program and map pins. Programs and maps
/// go away with their last reference. Safe to run twice.
pub fn detach_pinned(pins: &PinDir) -> Result<Detached> {
    if let Some(why) = pins.not_ours() {
        return Err(DataplaneError::NotOurs {
            dir: pins.root().to_owned(),
            why,
        });
    }
    let mut out = Detached::default();
    for (kind, iface, path) in pins.attachments() {
        detach_one(kind, &iface, &path)?;
        if !out.links.contains(&iface) {
            out.links.push(iface);
        }
    }
    for dir in [pins.maps(), pins.progs()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            std::fs::remove_file(e.path()).map_err(pin_err("removing", &e.path()))?;
            out.pins += 1;
        }
    }
    for dir in [
        pins.maps(),
        pins.progs(),
        pins.links(),
        pins.root().to_owned(),
    ] {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_err("removing", &dir)(e)),
        }
    }
    Ok(out)
}

/// Removes our attachments from one interface only.
fn detach_interface(pins: &PinDir, iface: &str) -> Result<()> {
    for (kind, name, path) in pins.attachments() {
        if name == iface {
            detach_one(kind, &name, &path)?;
        }
    }
    Ok(())
}

/// Undoes one pinned attachment of ours.
fn detach_one(kind: LinkKind, iface: &str, path: &Path) -> Result<()> {
    match kind {
        LinkKind::Xdp | LinkKind::Tcx | LinkKind::TcxIngress => {
            let link = PinnedLink::from_pin(path)
                .map_err(|e| pin_err("opening", path)(std::io::Error::other(e)))?;
            let fd = link.unpin().map_err(pin_err("unpinning", path))?;
            // Closing the last reference detaches the program from the interface.
            let _detached = fd.detach();
        }
        LinkKind::TcNetlink | LinkKind::TcNetlinkIngress => {
            let (at, program) = if kind == LinkKind::TcNetlink {
                (TcAttachType::Egress, PROG_TC_EGRESS)
            } else {
                (TcAttachType::Ingress, PROG_TC_INGRESS)
            };
            match tc::qdisc_detach_program(iface, at, program) {
                Ok(()) => {}
                // The interface or the filter is already gone: nothing left to undo.
                Err(tc::TcError::NetlinkError(_)) | Err(tc::TcError::IoError(_)) => {}
                Err(e) => {
                    return Err(pin_err("detaching from", path)(std::io::Error::other(e)));
                }
            }
            std::fs::remove_dir(path).map_err(pin_err("removing", path))?;
        }
    }
    Ok(())
}

/// `bpf_link_update` on a link whose device was deleted: the kernel answers ENOLINK.
fn device_gone(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s)
        if s.io_error.raw_os_error() == Some(nix::libc::ENOLINK))
}

/// Unpins a link that outlived its device, once per interface in `stale`.
fn drop_stale(path: &Path, iface: &str, stale: &mut Vec<String>) -> Result<()> {
    std::fs::remove_file(path).map_err(pin_err("removing", path))?;
    if !stale.iter().any(|s| s == iface) {
        stale.push(iface.to_owned());
    }
    Ok(())
}

/// Mounts a bpffs on `dir` again (as systemd does on /sys/fs/bpf at boot), so pins
/// removed with an unmounted one can be restored.
pub fn mount_bpffs(dir: &Path) -> std::io::Result<()> {
    nix::mount::mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

/// The link pinned at `path`, as a descriptor.
fn pinned_link(path: &Path) -> Result<FdLink> {
    PinnedLink::from_pin(path)
        .map(FdLink::from)
        .map_err(|e| pin_err("opening", path)(std::io::Error::other(e)))
}

/// What the kernel runs on every pinned XDP and TCX link under `pins`.
pub fn attached_programs(pins: &PinDir) -> Result<Vec<crate::api::AttachedProgram>> {
    let mut out = Vec::new();
    for (kind, _, path) in pins.attachments() {
        if kind.is_marker() {
            continue;
        }
        let id = pinned_link(&path)?
            .info()
            .map_err(|e| pin_err("reading", &path)(std::io::Error::other(e)))?
            .program_id();
        let tag = aya::programs::loaded_programs()
            .flatten()
            .find(|p| p.id() == id)
            .map(|p| format!("{:016x}", p.tag()))
            .unwrap_or_default();
        out.push(crate::api::AttachedProgram {
            attachment: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            program_id: id,
            tag,
        });
    }
    Ok(out)
}
