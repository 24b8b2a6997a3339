//! The only module that touches aya: loads the XDP object, attaches it, writes the maps.

mod batch;
pub mod blocklist;
mod datapath;
mod error;
#[cfg(test)]
pub mod fake;
mod host;
mod pinning;
pub mod pins;
mod probes;
mod telemetry;
mod update;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
    util::KernelVersion,
};
use mesh_common::{
    Reason,
    maps::{
        BLOCKLIST, CONFIG, EGRESS, EVENT_BUDGET, EVENTS, FLOWS, FLOWS_DEFAULT_CAPACITY, IFACES,
        LINKS, META, NEIGHBOR_TX, NEIGHBORS, NEXTHOP_GROUPS, PROBE_PEERS, PROBE_SLOTS, PROBE_STATE,
        PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, REASONS, ROUTES_V4, ROUTES_V6, TELEMETRY,
    },
    probe::ProbeState,
    telemetry::{
        BlockEntry, BlockKey, EventBudget, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, NeighborTx,
    },
    types::{
        CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY, DataplaneConfig, Iface, NextHopGroup, Route,
    },
};

pub use self::{
    datapath::{Datapath, expire_blocks, expire_limits},
    error::{DataplaneError, explain},
    host::SystemHost,
    pinning::{Detached, Start, Takeover, attached_programs, detach_pinned, mount_bpffs},
    probes::ProbeReading,
    telemetry::FlowRecord,
};
use crate::{config, routes::Tables};

/// Where an interface forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// The XDP hook.
    Xdp,
    /// TC ingress, first in the chain (the XDP hook is someone else's).
    Tc(TcMode),
}

impl Forwarding {
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Xdp => "xdp",
            Forwarding::Tc(TcMode::Tcx) => "tcx",
            Forwarding::Tc(TcMode::Netlink) => "clsact",
        }
    }
}

/// How the TC egress program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    /// A TCX link (kernel 6.6+): programs of others keep their place in the chain.
    Tcx,
    /// A cls_bpf filter on a clsact qdisc (netlink), for older kernels.
    Netlink,
}

impl TcMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Netlink => "netlink",
        }
    }
}

/// The data plane object, built from `mesh-ebpf` by the build script.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mesh"));

/// What every data plane operation returns.
pub type Result<T> = std::result::Result<T, DataplaneError>;

/// Every map of the object: what is pinned, adopted and layout-checked.
pub const ALL_MAPS: &[&str] = &[
    ROUTES_V4,
    ROUTES_V6,
    NEXTHOP_GROUPS,
    EGRESS,
    IFACES,
    CONFIG,
    REASONS,
    FLOWS,
    LINKS,
    NEIGHBORS,
    NEIGHBOR_TX,
    TELEMETRY,
    EVENTS,
    EVENT_BUDGET,
    PROBE_PEERS,
    PROBE_STATE,
    PROBE_SLOTS,
    BLOCKLIST,
    META,
];

/// Where typed map handles come from: a loaded object, or maps adopted from pins.
pub trait MapSource {
    fn map(&self, name: &str) -> Option<&aya::maps::Map>;
    fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map>;
}

impl MapSource for Ebpf {
    fn map(&self, name: &str) -> Option<&aya::maps::Map> {
        Ebpf::map(self, name)
    }

    fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        Ebpf::map_mut(self, name)
    }
}

/// The data plane's maps, owned apart from the programs.
#[derive(Default)]
pub(crate) struct MapStore(std::collections::HashMap<&'static str, aya::maps::Map>);

impl MapSource for MapStore {
    fn map(&self, name: &str) -> Option<&aya::maps::Map> {
        self.0.get(name)
    }

    fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        self.0.get_mut(name)
    }
}

/// A loaded data plane. Without pins, dropping it detaches from every interface; with
/// pins, what it attached stays attached until [`detach_pinned`].
pub struct Dataplane {
    /// The programs, when this process loaded them (not when it adopted pins).
    ebpf: Option<Ebpf>,
    maps: MapStore,
    pins: Option<pins::PinDir>,
    attached: Vec<(String, XdpLinkId)>,
    egress: Vec<(String, SchedClassifierLinkId)>,
    /// Our pinned links, also held open here: pins removed under the running agent do
    /// not detach anything, and [`Self::repin`] puts them back.
    held: Vec<(pins::LinkKind, String, aya::programs::links::FdLink)>,
    /// The event ring buffer's own handle, once [`Self::take_events`] gave the map away.
    events_handle: Option<MapData>,
    /// Interfaces with a netlink filter of ours (a marker pin, no link): egress
    /// telemetry, or ingress forwarding.
    netlink: Vec<(pins::LinkKind, String)>,
    /// TC ingress attachments that forward (the XDP hook was someone else's), before
    /// [`Self::persist`] pins them.
    ingress_tc: Vec<(String, SchedClassifierLinkId)>,
    /// Possible CPUs: the number of values in a per-CPU map entry.
    ncpus: usize,
    flow_capacity: u32,
    /// Next-hop neighbours as installed: `NEIGHBOR_TX` index → (ifindex, MAC).
    neighbors: Vec<NeighborKey>,
}

impl Dataplane {
    /// Loads the object and its programs into the kernel (nothing is attached yet), with
    /// the default flow-table capacity.
    pub fn load() -> Result<Self> {
        Self::load_with(FLOWS_DEFAULT_CAPACITY)
    }

    /// [`Self::load`] with a flow table of `flow_capacity` entries.
    pub fn load_with(flow_capacity: u32) -> Result<Self> {
        Self::load_object(OBJECT, flow_capacity)
    }

    /// [`Self::load_with`] for another build's object (`meshctl agent --ebpf-object`).
    pub fn load_object(object: &[u8], flow_capacity: u32) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(FLOWS, flow_capacity);
        Self::load_from(&mut loader, object, flow_capacity)
    }

    /// Loads `object` with `loader`'s settings: its maps created, or opened from their
    /// pins where the loader names them, its programs through the verifier.
    fn load_from(loader: &mut EbpfLoader<'_>, object: &[u8], flow_capacity: u32) -> Result<Self> {
        let mut ebpf = loader.load(object).map_err(DataplaneError::Object)?;
        xdp_mut(&mut ebpf, PROG_XDP)?
            .load()
            .map_err(|source| DataplaneError::ProgramLoad {
                program: PROG_XDP,
                source,
            })?;
        classifier_mut(&mut ebpf)?
            .load()
            .map_err(|source| DataplaneError::ProgramLoad {
                program: PROG_TC_EGRESS,
                source,
            })?;
        ingress_mut(&mut ebpf)?
            .load()
            .map_err(|source| DataplaneError::ProgramLoad {
                program: PROG_TC_INGRESS,
                source,
            })?;
        let mut maps = MapStore::default();
        for &name in ALL_MAPS {
            let map = ebpf
                .take_map(name)
                .ok_or(DataplaneError::MissingMap(name))?;
            maps.0.insert(name, map);
        }
        Self::checked(Some(ebpf), maps, None, flow_capacity)
    }

    /// A data plane over `maps`, once every map is checked against our layout.
    fn checked(
        ebpf: Option<Ebpf>,
        maps: MapStore,
        pins: Option<pins::PinDir>,
        flow_capacity: u32,
    ) -> Result<Self> {
        let ncpus = aya::util::nr_cpus().map_err(|(_, source)| DataplaneError::Cpus(source))?;
        let mut dp = Self {
            ebpf,
            maps,
            pins,
            attached: Vec::new(),
            egress: Vec::new(),
            held: Vec::new(),
            events_handle: None,
            netlink: Vec::new(),
            ingress_tc: Vec::new(),
            ncpus,
            flow_capacity,
            neighbors: Vec::new(),
        };
        dp.check_layout()?;
        Ok(dp)
    }

    /// Fails unless every map exists with the key and value sizes this build expects.
    fn check_layout(&mut self) -> Result<()> {
        self.routes_v4()?;
        self.routes_v6()?;
        self.groups()?;
        self.egress()?;
        self.ifaces()?;
        self.config_map()?;
        self.reason_map()?;
        typed::<PerCpuHashMap<_, FlowKey, FlowStats>>(&mut self.maps, FLOWS)?;
        typed::<PerCpuArray<_, LinkStats>>(&mut self.maps, LINKS)?;
        typed::<PerCpuHashMap<_, NeighborKey, NeighborStats>>(&mut self.maps, NEIGHBORS)?;
        typed::<PerCpuArray<_, u64>>(&mut self.maps, TELEMETRY)?;
        typed::<PerCpuArray<_, NeighborTx>>(&mut self.maps, NEIGHBOR_TX)?;
        typed::<PerCpuArray<_, EventBudget>>(&mut self.maps, EVENT_BUDGET)?;
        typed::<RingBuf<_>>(&mut self.maps, EVENTS)?;
        typed::<Array<_, NeighborKey>>(&mut self.maps, PROBE_PEERS)?;
        typed::<Array<_, ProbeState>>(&mut self.maps, PROBE_STATE)?;
        typed::<HashMap<_, NeighborKey, u32>>(&mut self.maps, PROBE_SLOTS)?;
        typed::<HashMap<_, BlockKey, BlockEntry>>(&mut self.maps, BLOCKLIST)?;
        typed::<Array<_, u32>>(&mut self.maps, META)?;
        Ok(())
    }

    /// Turns per-flow telemetry on or off in the running data plane (the config's other
    /// fields are kept).
    pub fn set_flow_telemetry(&mut self, on: bool) -> Result<()> {
        self.set_flag(CFG_F_FLOW_TELEMETRY, on)
    }

    /// Turns per-neighbour-MAC counting on or off in the running data plane.
    pub fn set_neighbor_telemetry(&mut self, on: bool) -> Result<()> {
        self.set_flag(CFG_F_NEIGHBOR_TELEMETRY, on)
    }

    fn set_flag(&mut self, flag: u32, on: bool) -> Result<()> {
        let mut map = self.config_map()?;
        let mut config = map.get(&0, 0).map_err(|source| DataplaneError::MapAccess {
            map: CONFIG,
            action: "reading the data plane config".to_owned(),
            source,
        })?;
        if on {
            config.flags |= flag;
        } else {
            config.flags &= !flag;
        }
        map.set(0, config, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: CONFIG,
                action: "writing the data plane config".to_owned(),
                source,
            })
    }

    /// Writes the interfaces, egress ports, next-hop neighbours and data plane settings, no
    /// routes: what the agent writes before its routes, static and learned, go in through
    /// Execute (`agent::install_routes` for a data plane driven by hand). The settings go
    /// last: they are what tells the program it may forward.
    pub fn install_base(&mut self, t: &Tables) -> Result<()> {
        self.write_ports(t)?;
        self.neighbors = t.neighbors.clone();
        self.write_config(t)
    }

    /// The mesh interfaces and their egress ports.
    fn write_ports(&mut self, t: &Tables) -> Result<()> {
        {
            let mut ifaces = self.ifaces()?;
            for (ifindex, iface) in &t.ifaces {
                ifaces
                    .insert(ifindex, iface, 0)
                    .map_err(|source| DataplaneError::MapAccess {
                        map: IFACES,
                        action: format!("writing interface {ifindex}"),
                        source,
                    })?;
            }
        }
        let mut egress = self.egress()?;
        for (ifindex, _) in &t.ifaces {
            egress
                .insert(*ifindex, *ifindex, None, 0)
                .map_err(|e| match e {
                    aya::maps::xdp::XdpMapError::MapError(source) => DataplaneError::MapAccess {
                        map: EGRESS,
                        action: format!("writing egress port {ifindex}"),
                        source,
                    },
                    aya::maps::xdp::XdpMapError::ChainedProgramNotSupported => {
                        unreachable!("no chained program is passed")
                    }
                })?;
        }
        Ok(())
    }

    /// Removes the interface and egress entries of interfaces that are no longer mesh
    /// interfaces (after a takeover with a shorter interface list).
    pub fn prune_ports(&mut self, t: &Tables) -> Result<()> {
        let keep = |ifindex: &u32| t.ifaces.iter().any(|(i, _)| i == ifindex);
        let stale: Vec<u32> = {
            let ifaces = self.ifaces()?;
            ifaces
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| !keep(k))
                .collect()
        };
        for ifindex in stale {
            let _gone = self.ifaces()?.remove(&ifindex);
            let _gone = self.egress()?.remove(ifindex);
        }
        Ok(())
    }

    /// The settings entry: what tells the program it may forward.
    fn write_config(&mut self, t: &Tables) -> Result<()> {
        self.config_map()?
            .set(0, t.config, 0)
            .map_err(|source| DataplaneError::MapAccess {
                map: CONFIG,
                action: "writing the data plane config".to_owned(),
                source,
            })
    }

    /// Attaches forwarding to every named interface, or to none: on a failure the ones
    /// already attached are detached again before the error is returned. Each interface
    /// gets XDP, or, where `config.hook` says so or (`auto`) another program holds its XDP
    /// hook, the same forwarding at TC ingress, first in the chain. Returns where each
    /// interface forwards.
    pub fn attach(
        &mut self,
        ifaces: &[String],
        config: &config::Dataplane,
    ) -> Result<Vec<(String, Forwarding)>> {
        let mode = match config.xdp_mode {
            config::XdpMode::Auto => XdpMode::Default,
            config::XdpMode::Native => XdpMode::Driver,
            config::XdpMode::Skb => XdpMode::Skb,
        };
        let tc = if tcx_supported() {
            TcMode::Tcx
        } else {
            TcMode::Netlink
        };
        let mut out = Vec::new();
        for name in ifaces {
            let xdp = match config.hook {
                config::Hook::Tcx => None,
                config::Hook::Auto | config::Hook::Xdp => {
                    Some(xdp_mut(self.programs()?, PROG_XDP)?.attach(name, mode))
                }
            };
            let result = match xdp {
                Some(Ok(id)) => {
                    self.attached.push((name.clone(), id));
                    Ok(Forwarding::Xdp)
                }
                Some(Err(e)) if config.hook == config::Hook::Auto && hook_taken(&e) => {
                    self.attach_ingress_tc(name, tc).map(Forwarding::Tc)
                }
                Some(Err(source)) => Err(DataplaneError::Attach {
                    iface: name.clone(),
                    source,
                }),
                None => self.attach_ingress_tc(name, tc).map(Forwarding::Tc),
            };
            match result {
                Ok(f) => out.push((name.clone(), f)),
                Err(e) => {
                    self.detach_all();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Forwarding at TC ingress on one interface, first in the chain: TCX, or a netlink
    /// filter at priority 1 on a clsact qdisc (ours, or one already there).
    fn attach_ingress_tc(&mut self, name: &str, mode: TcMode) -> Result<TcMode> {
        if mode == TcMode::Netlink {
            match tc::qdisc_add_clsact(name) {
                Ok(()) => {}
                Err(tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
                Err(source) => {
                    return Err(DataplaneError::Clsact {
                        iface: name.to_owned(),
                        source,
                    });
                }
            }
        }
        let options = match mode {
            TcMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::first()),
            TcMode::Netlink => TcAttachOptions::Netlink(NlOptions {
                priority: 1,
                ..NlOptions::default()
            }),
        };
        let id = ingress_mut(self.programs()?)?
            .attach_with_options(name, TcAttachType::Ingress, options)
            .map_err(|source| DataplaneError::AttachTc {
                iface: name.to_owned(),
                source,
            })?;
        self.ingress_tc.push((name.to_owned(), id));
        Ok(mode)
    }

    /// Attaches the TC egress program to every named interface, or to none. With TCX,
    /// `position` places it first or last among the programs already there, which keep
    /// their order; with netlink it is added as a filter of its own. Returns the mode used.
    pub fn attach_egress(
        &mut self,
        ifaces: &[String],
        how: config::TcAttach,
        position: config::TcPosition,
    ) -> Result<TcMode> {
        let mode = match how {
            config::TcAttach::Tcx => TcMode::Tcx,
            config::TcAttach::Netlink => TcMode::Netlink,
            config::TcAttach::Auto if tcx_supported() => TcMode::Tcx,
            config::TcAttach::Auto => TcMode::Netlink,
        };
        for name in ifaces {
            if mode == TcMode::Netlink {
                match tc::qdisc_add_clsact(name) {
                    Ok(()) => {}
                    // Someone's clsact is already there: we add our filter beside theirs.
                    Err(tc::TcError::NetlinkError(e))
                        if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
                    Err(source) => {
                        self.detach_all();
                        return Err(DataplaneError::Clsact {
                            iface: name.clone(),
                            source,
                        });
                    }
                }
            }
            let options = match (mode, position) {
                (TcMode::Tcx, config::TcPosition::First) => {
                    TcAttachOptions::TcxOrder(LinkOrder::first())
                }
                (TcMode::Tcx, config::TcPosition::Last) => {
                    TcAttachOptions::TcxOrder(LinkOrder::last())
                }
                // Priority 1 runs first (a filter added at an existing priority goes
                // before the ones there); otherwise the kernel picks one after them.
                (TcMode::Netlink, config::TcPosition::First) => {
                    TcAttachOptions::Netlink(NlOptions {
                        priority: 1,
                        ..NlOptions::default()
                    })
                }
                (TcMode::Netlink, config::TcPosition::Last) => {
                    TcAttachOptions::Netlink(NlOptions::default())
                }
            };
            let prog = classifier_mut(self.programs()?)?;
            match prog.attach_with_options(name, TcAttachType::Egress, options) {
                Ok(id) => self.egress.push((name.clone(), id)),
                Err(source) => {
                    self.detach_all();
                    return Err(DataplaneError::AttachTc {
                        iface: name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(mode)
    }

    /// The kernel's id of our TC egress program.
    pub fn egress_program_id(&self) -> Result<u32> {
        let prog: &SchedClassifier = self
            .ebpf
            .as_ref()
            .ok_or(DataplaneError::Adopted)?
            .program(PROG_TC_EGRESS)
            .ok_or(DataplaneError::MissingProgram(PROG_TC_EGRESS))?
            .try_into()
            .map_err(|_| DataplaneError::MissingProgram(PROG_TC_EGRESS))?;
        prog.info()
            .map(|i| i.id())
            .map_err(|source| DataplaneError::AttachTc {
                iface: String::new(),
                source,
            })
    }

    /// The programs of `iface`'s TCX chain `at` (in the calling thread's namespace), in
    /// the order they run, ours and everyone else's: (id, name).
    pub fn tcx_chain(iface: &str, at: TcAttachType) -> Result<Vec<(u32, String)>> {
        let (_, programs) =
            SchedClassifier::query_tcx(iface, at).map_err(|source| DataplaneError::AttachTc {
                iface: iface.to_owned(),
                source,
            })?;
        Ok(programs
            .iter()
            .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_owned()))
            .collect())
    }

    /// Ids of the TCX egress programs on `iface` (in the calling thread's namespace), in
    /// the order they run: ours and everyone else's.
    pub fn tcx_egress_programs(iface: &str) -> Result<Vec<u32>> {
        let (_, programs) =
            SchedClassifier::query_tcx(iface, TcAttachType::Egress).map_err(|source| {
                DataplaneError::AttachTc {
                    iface: iface.to_owned(),
                    source,
                }
            })?;
        Ok(programs.iter().map(|p| p.id()).collect())
    }

    /// Detaches from every interface (dropping the data plane does the same). A clsact
    /// qdisc we added stays: other filters may have joined it since.
    pub fn detach_all(&mut self) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        let attached = std::mem::take(&mut self.attached);
        if let Ok(prog) = xdp_mut(ebpf, PROG_XDP) {
            for (_, id) in attached {
                // A link that is already gone (interface deleted) has nothing left to undo.
                let _gone = prog.detach(id);
            }
        }
        let egress = std::mem::take(&mut self.egress);
        if let Ok(prog) = classifier_mut(ebpf) {
            for (_, id) in egress {
                let _gone = prog.detach(id);
            }
        }
        let ingress = std::mem::take(&mut self.ingress_tc);
        if let Ok(prog) = ingress_mut(ebpf) {
            for (_, id) in ingress {
                let _gone = prog.detach(id);
            }
        }
    }

    /// Interfaces the program is attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(n, _)| n.as_str())
    }

    /// Every reason counter, summed over CPUs, in [`Reason::ALL`] order.
    pub fn reasons(&self) -> Result<Vec<(Reason, u64)>> {
        Reason::ALL
            .iter()
            .map(|&r| Ok((r, sum_over_cpus(&self.maps, REASONS, r as u32)?)))
            .collect()
    }

    /// Runs the XDP program once over `frame` with BPF_PROG_TEST_RUN; returns the verdict
    /// and the frame as the program left it. `repeat` > 1 measures (duration is per run).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRunOutput> {
        self.test_run_on(None, frame, repeat)
    }

    /// [`Self::test_run`] as if the frame arrived on `ingress` (an ifindex in the calling
    /// thread's namespace) rather than on loopback.
    pub fn test_run_on(
        &self,
        ingress: Option<u32>,
        frame: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput> {
        let prog = xdp(self.ebpf.as_ref().ok_or(DataplaneError::Adopted)?, PROG_XDP)?;
        let mut out = vec![0u8; frame.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex; the kernel wants data_end to be the frame length.
        let ctx: Vec<u8> = [0, frame.len() as u32, 0, ingress.unwrap_or(0), 0, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: ingress.map(|_| ctx.as_slice()),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(|source| DataplaneError::TestRun {
                program: PROG_XDP,
                source,
            })?;
        out.truncate(res.data_size_out as usize);
        Ok(TestRunOutput {
            action: res.return_value,
            frame: out,
            duration: res.duration,
        })
    }

    /// The loaded programs; an adopted data plane has none (they run from the pins).
    fn programs(&mut self) -> Result<&mut Ebpf> {
        self.ebpf.as_mut().ok_or(DataplaneError::Adopted)
    }

    fn routes_v4(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 4], Route>> {
        typed(&mut self.maps, ROUTES_V4)
    }

    fn routes_v6(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 16], Route>> {
        typed(&mut self.maps, ROUTES_V6)
    }

    fn groups(&mut self) -> Result<Array<&mut MapData, NextHopGroup>> {
        typed(&mut self.maps, NEXTHOP_GROUPS)
    }

    fn egress(&mut self) -> Result<DevMapHash<&mut MapData>> {
        typed(&mut self.maps, EGRESS)
    }

    fn ifaces(&mut self) -> Result<HashMap<&mut MapData, u32, Iface>> {
        typed(&mut self.maps, IFACES)
    }

    fn config_map(&mut self) -> Result<Array<&mut MapData, DataplaneConfig>> {
        typed(&mut self.maps, CONFIG)
    }

    fn reason_map(&mut self) -> Result<PerCpuArray<&mut MapData, u64>> {
        typed(&mut self.maps, REASONS)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // Pinned attachments outlive us by design; only unpinned ones are undone.
        self.detach_all();
    }
}

/// What one BPF_PROG_TEST_RUN returned.
#[derive(Debug, Clone)]
pub struct TestRunOutput {
    pub action: u32,
    pub frame: Vec<u8>,
    pub duration: std::time::Duration,
}

/// The XDP program `name` of an object.
pub fn xdp<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp> {
    ebpf.program(name)
        .ok_or(DataplaneError::MissingProgram(name))?
        .try_into()
        .map_err(|_| DataplaneError::MissingProgram(name))
}

/// TCX links arrived in Linux 6.6.
fn tcx_supported() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// Another program holds the interface's XDP hook (attached by netlink, or in the other
/// mode): a BPF link cannot replace it.
fn hook_taken(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s)
        if matches!(s.io_error.raw_os_error(), Some(nix::libc::EBUSY | nix::libc::EEXIST)))
}

/// The TC ingress forwarding program.
fn ingress_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    ebpf.program_mut(PROG_TC_INGRESS)
        .ok_or(DataplaneError::MissingProgram(PROG_TC_INGRESS))?
        .try_into()
        .map_err(|_| DataplaneError::MissingProgram(PROG_TC_INGRESS))
}

fn classifier_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    ebpf.program_mut(PROG_TC_EGRESS)
        .ok_or(DataplaneError::MissingProgram(PROG_TC_EGRESS))?
        .try_into()
        .map_err(|_| DataplaneError::MissingProgram(PROG_TC_EGRESS))
}

pub fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?
        .try_into()
        .map_err(|_| DataplaneError::MissingProgram(name))
}

/// Entry `index` of the per-CPU `u64` array map `name`, summed over CPUs.
pub fn sum_over_cpus(ebpf: &impl MapSource, name: &'static str, index: u32) -> Result<u64> {
    let map: PerCpuArray<&MapData, u64> = typed_ref(ebpf, name)?;
    let per_cpu = map
        .get(&index, 0)
        .map_err(|source| DataplaneError::MapAccess {
            map: name,
            action: format!("reading entry {index}"),
            source,
        })?;
    Ok(per_cpu.iter().sum())
}

/// [`typed`] for reading: the map `name` as `M`, checked against our layout.
pub fn typed_ref<'a, M>(ebpf: &'a impl MapSource, name: &'static str) -> Result<M>
where
    M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
    M::try_from(map).map_err(|source| DataplaneError::MapLayout { name, source })
}

pub fn typed<'a, M>(ebpf: &'a mut impl MapSource, name: &'static str) -> Result<M>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    M::try_from(map).map_err(|source| DataplaneError::MapLayout { name, source })
}
