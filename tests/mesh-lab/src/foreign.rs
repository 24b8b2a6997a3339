//! Another datapath's programs on the lab's interfaces, attached the way Cilium attaches
//! its own: `cil_xdp_entry` at XDP through netlink in native mode, `cil_from_netdev` and
//! `cil_to_netdev` at TCX ingress and egress (netlink clsact filters before Linux 6.6),
//! each counting the frames it sees. Attached before our agent starts, as on a node
//! where Cilium was there first.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
    util::KernelVersion,
};
use mesh_ctl::dataplane::{DataplaneError, sum_over_cpus, xdp_mut};
use mesh_lab_ebpf::{
    FOREIGN_SEEN, PROG_CIL_FROM_HOST, PROG_CIL_FROM_NETDEV, PROG_CIL_TO_NETDEV, PROG_CIL_XDP,
    SEEN_FROM_NETDEV, SEEN_TO_NETDEV, SEEN_XDP,
};

use super::{Lab, labtools::LAB_OBJECT};

/// The foreign programs, loaded once; their TC links live as long as this does.
pub struct Foreign {
    ebpf: Ebpf,
    dir: PathBuf,
}

/// What each foreign program counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    pub xdp: u64,
    pub from_netdev: u64,
    pub to_netdev: u64,
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?)
}

impl Foreign {
    /// Loads the three programs; `dir` (on a bpffs) receives the XDP program's pin.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut ebpf = Ebpf::load(LAB_OBJECT).map_err(DataplaneError::Object)?;
        xdp_mut(&mut ebpf, PROG_CIL_XDP)?.load()?;
        for name in [PROG_CIL_FROM_NETDEV, PROG_CIL_TO_NETDEV, PROG_CIL_FROM_HOST] {
            classifier(&mut ebpf, name)?.load()?;
        }
        std::fs::create_dir_all(dir)?;
        let pin = dir.join(PROG_CIL_XDP);
        let _stale = std::fs::remove_file(&pin);
        xdp_mut(&mut ebpf, PROG_CIL_XDP)?.pin(&pin)?;
        Ok(Self {
            ebpf,
            dir: dir.to_owned(),
        })
    }

    /// `cil_xdp_entry` on `iface` of `node`, as a legacy (netlink) native-mode attach.
    pub fn attach_xdp(&self, lab: &Lab, node: &str, iface: &str) -> Result<()> {
        let pin = self.dir.join(PROG_CIL_XDP).display().to_string();
        lab.exec_ok(
            node,
            &["ip", "link", "set", "dev", iface, "xdpdrv", "pinned", &pin],
        )
        .map(drop)
    }

    /// `cil_from_netdev` and `cil_to_netdev` on `iface` of `node`: TCX links (at the end
    /// of the chains) on 6.6+, else clsact filters at priority 1 (through `tc`, from pins:
    /// aya tells netlink filters apart by ifindex, which repeats across namespaces).
    pub fn attach_tc(&mut self, lab: &Lab, node: &str, iface: &str) -> Result<()> {
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        if !tcx {
            let _exists = lab.exec(node, &["tc", "qdisc", "add", "dev", iface, "clsact"]);
            for (name, dir) in [
                (PROG_CIL_FROM_NETDEV, "ingress"),
                (PROG_CIL_TO_NETDEV, "egress"),
            ] {
                let pin = self.dir.join(name);
                if !pin.exists() {
                    classifier(&mut self.ebpf, name)?.pin(&pin)?;
                }
                let pin = pin.display().to_string();
                lab.exec_ok(
                    node,
                    &[
                        "tc", "filter", "add", "dev", iface, dir, "pref", "1", "bpf", "da",
                        "pinned", &pin,
                    ],
                )?;
            }
            return Ok(());
        }
        let ns = lab.ns(node);
        let ebpf = &mut self.ebpf;
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                let _inside = crate::netns::enter(&ns)?;
                for (name, at) in [
                    (PROG_CIL_FROM_NETDEV, TcAttachType::Ingress),
                    (PROG_CIL_TO_NETDEV, TcAttachType::Egress),
                ] {
                    classifier(ebpf, name)?.attach_with_options(
                        iface,
                        at,
                        TcAttachOptions::TcxOrder(LinkOrder::last()),
                    )?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the attaching thread panicked"))?
        })
    }

    /// `cil_from_host` at the head of `iface`'s TCX ingress chain in `node`, ahead of
    /// everything (ours included), as a foreign agent attaching with `BPF_F_BEFORE` does.
    pub fn jump_ahead(&mut self, lab: &Lab, node: &str, iface: &str) -> Result<()> {
        let ns = lab.ns(node);
        let ebpf = &mut self.ebpf;
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                let _inside = crate::netns::enter(&ns)?;
                classifier(ebpf, PROG_CIL_FROM_HOST)?.attach_with_options(
                    iface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )?;
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the attaching thread panicked"))?
        })
    }

    /// Takes `cil_from_host` off every interface again.
    pub fn step_back(&mut self) -> Result<()> {
        let prog = classifier(&mut self.ebpf, PROG_CIL_FROM_HOST)?;
        prog.unload()?;
        prog.load()?;
        Ok(())
    }

    /// What each program has counted so far (over every interface it is on).
    pub fn seen(&self) -> Result<Seen> {
        Ok(Seen {
            xdp: sum_over_cpus(&self.ebpf, FOREIGN_SEEN, SEEN_XDP)?,
            from_netdev: sum_over_cpus(&self.ebpf, FOREIGN_SEEN, SEEN_FROM_NETDEV)?,
            to_netdev: sum_over_cpus(&self.ebpf, FOREIGN_SEEN, SEEN_TO_NETDEV)?,
        })
    }
}

/// The programs at `iface`'s TC hook `at` in `node`, in the order they run: (id, name).
/// TCX links on 6.6+; before, the clsact filters as `tc filter show` lists them.
pub fn tcx_chain(
    lab: &Lab,
    node: &str,
    iface: &str,
    at: TcAttachType,
) -> Result<Vec<(u32, String)>> {
    if !KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)) {
        let dir = match at {
            TcAttachType::Ingress => "ingress",
            _ => "egress",
        };
        let out = lab.exec_ok(node, &["tc", "filter", "show", "dev", iface, dir])?;
        return Ok(out.lines().filter_map(filter_entry).collect());
    }
    let ns = lab.ns(node);
    let iface = iface.to_owned();
    std::thread::spawn(move || -> Result<Vec<(u32, String)>> {
        let _inside = crate::netns::enter(&ns)?;
        let (_, programs) = SchedClassifier::query_tcx(&iface, at)?;
        Ok(programs
            .iter()
            .map(|p| {
                (
                    p.id(),
                    p.name_as_str().map(str::to_owned).unwrap_or_default(),
                )
            })
            .collect())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the query thread panicked"))?
}

/// One cls_bpf filter line of `tc filter show`: `... handle 0x1 NAME direct-action ...
/// id N tag ...`.
fn filter_entry(line: &str) -> Option<(u32, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let handle = words.iter().position(|w| *w == "handle")?;
    let name = words.get(handle + 2)?;
    let id = words.iter().position(|w| *w == "id")?;
    let id = words.get(id + 1)?.parse().ok()?;
    // `NAME:[ID]` in some iproute2 versions.
    let name = name.split(':').next().unwrap_or(name);
    Some((id, name.to_owned()))
}
