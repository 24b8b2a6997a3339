//! Pins: a data plane that outlives the agent, adopted by the next one, removed on request.

use std::path::Path;

use aya::{
    maps::{Array, Map, MapData},
    programs::{
        Link as _,
        links::{FdLink, LinkError, PinnedLink},
        tc::{self, TcAttachType},
    },
};
use mesh_common::maps::{FLOWS, LAYOUT_VERSION, META, PROG_TC_EGRESS, PROG_XDP};

use super::{
    ALL_MAPS, Dataplane, DataplaneError, MapStore, Result, classifier_mut,
    pins::{LinkKind, PinDir},
    typed, xdp_mut,
};

/// How [`Dataplane::open`] got its maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Loaded the object and pinned everything.
    Fresh,
    /// Found a running data plane's pins and took them over; nothing was reloaded.
    Adopted,
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
    /// Adopts the data plane pinned at `pins` if there is one (after checking its
    /// layout), else loads a fresh one and pins its maps and programs there.
    pub fn open(pins: &PinDir, flow_capacity: u32) -> Result<(Self, Start)> {
        if pins.map(META).exists() {
            return Ok((Self::adopt(pins)?, Start::Adopted));
        }
        let mut dp = Self::load_with(flow_capacity)?;
        std::fs::create_dir_all(pins.maps()).map_err(pin_err("creating", &pins.maps()))?;
        std::fs::create_dir_all(pins.progs()).map_err(pin_err("creating", &pins.progs()))?;
        std::fs::create_dir_all(pins.links()).map_err(pin_err("creating", &pins.links()))?;
        // META last: its pin is what marks the set complete and adoptable.
        for &name in ALL_MAPS.iter().filter(|n| **n != META) {
            dp.pin_map(pins, name)?;
        }
        {
            let ebpf = dp.programs()?;
            let path = pins.prog(PROG_XDP);
            xdp_mut(ebpf, PROG_XDP)?
                .pin(&path)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
            let path = pins.prog(PROG_TC_EGRESS);
            classifier_mut(ebpf)?
                .pin(&path)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
        }
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
                    .filter(|(k, _, _)| *k == LinkKind::Xdp)
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
            fd.pin(&path)
                .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
        }
        for (iface, id) in egress {
            let link =
                classifier_mut(ebpf)?
                    .take_link(id)
                    .map_err(|source| DataplaneError::AttachTc {
                        iface: iface.clone(),
                        source,
                    })?;
            match FdLink::try_from(link) {
                Ok(fd) => {
                    let path = pins.link(LinkKind::Tcx, &iface);
                    fd.pin(&path)
                        .map_err(|e| pin_err("pinning", &path)(std::io::Error::other(e)))?;
                }
                // A netlink filter is no link: it stays in the kernel until removed. The
                // marker tells `detach` where to look.
                Err(LinkError::InvalidLink) => {
                    let path = pins.link(LinkKind::TcNetlink, &iface);
                    std::fs::create_dir_all(&path).map_err(pin_err("creating", &path))?;
                }
                Err(e) => {
                    let path = pins.link(LinkKind::Tcx, &iface);
                    return Err(pin_err("pinning", &path)(std::io::Error::other(e)));
                }
            }
        }
        Ok(())
    }
}

/// Removes everything pinned under `pins`: our XDP and TC attachments (only ours: they are
/// found through our pins and markers), then the program and map pins. Programs and maps
/// go away with their last reference. Safe to run twice.
pub fn detach_pinned(pins: &PinDir) -> Result<Detached> {
    let mut out = Detached::default();
    for (kind, iface, path) in pins.attachments() {
        match kind {
            LinkKind::Xdp | LinkKind::Tcx => {
                let link = PinnedLink::from_pin(&path)
                    .map_err(|e| pin_err("opening", &path)(std::io::Error::other(e)))?;
                let fd = link.unpin().map_err(pin_err("unpinning", &path))?;
                // Closing the last reference detaches the program from the interface.
                let _detached = fd.detach();
            }
            LinkKind::TcNetlink => {
                match tc::qdisc_detach_program(&iface, TcAttachType::Egress, PROG_TC_EGRESS) {
                    Ok(()) => {}
                    // The interface or the filter is already gone: nothing left to undo.
                    Err(tc::TcError::NetlinkError(_)) | Err(tc::TcError::IoError(_)) => {}
                    Err(e) => {
                        return Err(pin_err("detaching from", &path)(std::io::Error::other(e)));
                    }
                }
                std::fs::remove_dir(&path).map_err(pin_err("removing", &path))?;
            }
        }
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
