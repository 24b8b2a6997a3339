//! The views the agent serves, as the types both ends use: the agent fills them, the
//! socket carries them as JSON, `meshctl` renders them and the tests read them.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::detect;
pub use crate::probe::quality::LinkState;
pub use crate::routing::{LsaLink, PrefixRoute};
pub use crate::telemetry::{DropView, EventView, FlowTableView, FlowView, LinkView, NeighborView};

/// `meshctl status`: the agent at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    /// Why the agent is not ready (empty: healthy): maps unreadable, or routing on and no
    /// neighbour adjacent. `meshctl status` exits 1 when there is any.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// This agent's build: version, git revision, the hash of the eBPF object it embeds,
    /// and the map layout version (`meshctl --version` says the same).
    #[serde(default)]
    pub build: String,
    /// The agent runs the control plane (without it, it only forwards by its static
    /// tables).
    pub routing: bool,
    /// Route recomputation is stopped by the test knob.
    pub frozen: bool,
    /// The agent adopted a running data plane and keeps its routes until the hold ends.
    pub restart_hold: bool,
    /// Neighbours heard, adjacent or not.
    pub neighbors: usize,
    /// Neighbours routing may use.
    pub adjacent: usize,
    /// Adverts in the LSDB.
    pub adverts: usize,
    /// Installed routes and next-hop groups.
    pub routes_v4: usize,
    pub routes_v6: usize,
    pub groups: usize,
    pub spf_runs: u64,
    /// Actions remembered for `meshctl events`.
    pub actions: usize,
    pub probe_interval_ms: u64,
    /// How often hellos go out (`routing.hello_interval_ms`, reloadable).
    #[serde(default)]
    pub hello_interval_ms: u64,
    /// The data plane's fast-reroute silence threshold (0: off).
    pub probe_dead_ms: u64,
    /// What the kernel runs on each pinned attachment, read back from the links when
    /// the agent started.
    #[serde(default)]
    pub programs: Vec<AttachedProgram>,
}

/// One pinned attachment and the program the kernel runs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedProgram {
    /// `xdp-<interface>` or `tcx-<interface>`.
    pub attachment: String,
    /// The kernel's program id.
    pub program_id: u32,
    /// The program's tag (`bpftool prog` shows the same): a hash of its instructions,
    /// so two builds' programs differ in it.
    pub tag: String,
}

/// `meshctl neighbors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbors {
    pub neighbors: Vec<Neighbor>,
}

/// A neighbour heard on one of our interfaces, and the quality of the link to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    pub node: String,
    pub interface: String,
    pub mac: String,
    /// Its probe and neighbour-counter slot in the data plane.
    pub slot: u32,
    /// It lists us in its hellos.
    pub two_way: bool,
    pub state: LinkState,
    /// Routing may use the link: two-way, answering probes, past any hold-down.
    pub adjacent: bool,
    /// What we advertise for the link, once known.
    pub cost: Option<u32>,
    /// Smoothed round-trip probe loss, 0..1.
    pub loss: f64,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    pub probes_sent: u64,
    pub probe_replies: u64,
    /// The neighbour's probe requests we answered.
    pub probe_requests: u64,
    /// The longest silence between two replies or requests.
    pub max_gap_ms: f64,
    /// Silences longer than the dead time.
    pub dead_gaps: u32,
}

/// `meshctl routes`: the computed routes and how much is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub routes: Vec<PrefixRoute>,
    /// Installed routes, static and local ones included.
    pub installed_v4: usize,
    pub installed_v6: usize,
    /// Installed next-hop groups.
    pub groups: usize,
}

/// `meshctl lsdb`: every node's advert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lsdb {
    pub adverts: Vec<Advert>,
}

/// One node's advert as the LSDB holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub origin: String,
    pub seq: u64,
    /// Its age now.
    pub age_ms: u64,
    pub links: Vec<LsaLink>,
    /// The prefixes the origin delivers locally.
    pub prefixes: Vec<IpNet>,
}

/// `meshctl events`: the agent's actions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub events: Vec<Action>,
}

/// One thing the agent did, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Wall-clock seconds.
    pub at: f64,
    /// CLOCK_MONOTONIC ns, comparable with the data plane's and the lab's clocks.
    pub mono_ns: u64,
    /// The MAPE-K stage that acted.
    pub stage: String,
    pub kind: String,
    pub detail: String,
    pub reason: String,
}

/// What a finding is about, by name (indices change with the topology).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Node {
        node: String,
    },
    /// Names sorted.
    Link {
        a: String,
        b: String,
    },
}

impl Target {
    pub fn link(x: &str, y: &str) -> Self {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Target::Link {
            a: a.to_owned(),
            b: b.to_owned(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Node { node } => write!(f, "node {node}"),
            Target::Link { a, b } => write!(f, "link {a}-{b}"),
        }
    }
}

/// `meshctl anomalies`: the last detection window and what is done about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomalies {
    pub detector: String,
    /// Windows analysed so far.
    pub window: u32,
    pub window_ms: u64,
    /// Nodes whose reports the window holds.
    pub reporting: usize,
    /// None before the first window.
    pub findings: Option<Vec<Finding>>,
    pub pending: Vec<Pending>,
    pub active: Vec<Avoided>,
    /// The thresholds the detector runs with, per anomaly class.
    #[serde(default)]
    pub thresholds: Vec<ClassThreshold>,
    #[serde(default)]
    pub calibration: Calibration,
    /// Rate limits in force on this node.
    #[serde(default)]
    pub limits: Vec<RateLimit>,
}

/// A rate limit in force here: a source or a source prefix held to a rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// An address, or a prefix (`10.0.1.0/24`) for its sources without a limit of their own.
    pub source: String,
    pub rate_pps: u32,
    /// The action it belongs to.
    pub target: Target,
}

/// One class's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassThreshold {
    pub class: String,
    pub threshold: f32,
}

/// Where the thresholds come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Calibration {
    /// The detector's own (the model's spec, or the static levels of the config).
    #[default]
    None,
    /// The agent is observing fault-free windows to calibrate on, and acts on nothing
    /// until it has them.
    Calibrating { windows: u64, needed: u64, fpr: f32 },
    /// Fitted to this mesh.
    Calibrated {
        /// The file they are kept in.
        file: String,
        /// The target share of fault-free element-windows flagged.
        fpr: f32,
        /// Fault-free windows they were fitted on.
        windows: u64,
        /// The share of those element-windows they flag.
        flagged: f32,
    },
}

/// One finding of the last window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub target: Target,
    pub class: String,
    pub score: f32,
    pub reason: String,
}

/// An element flagged but not (yet) acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub target: Target,
    pub class: String,
    /// Consecutive windows it has been flagged.
    pub windows: u32,
}

/// An action in force: an element avoided by routing, or whose sources are blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avoided {
    pub target: Target,
    pub class: String,
    pub for_ms: u64,
    /// Not reverted before this much longer.
    pub hold_left_ms: u64,
    /// Times the element was acted on recently (the hold doubles with each).
    pub strikes: u32,
    /// Sources blocked on this node for it.
    pub blocked_here: usize,
    /// Sources and source prefixes rate-limited on this node for it.
    #[serde(default)]
    pub limited_here: usize,
}

/// `meshctl record`: the last detection window with its graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub window_ms: u64,
    /// None before the first window.
    pub topology: Option<detect::Topology>,
    pub snapshot: Option<detect::Snapshot>,
}

/// `meshctl peers`: who we are and whom we have sessions with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peers {
    /// Our SPIFFE ID.
    pub spiffe_id: String,
    /// Seconds our certificate stays valid.
    pub cert_expires_in_s: u64,
    pub peers: Vec<Peer>,
    /// Refused handshakes and messages by reason; reasons never seen are left out.
    pub refused: BTreeMap<String, u64>,
}

/// An authenticated neighbour and its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub node: String,
    pub spiffe_id: String,
    pub ifindex: u32,
    /// Its link-local control address.
    pub address: String,
    pub cert_serial: u64,
    pub cert_expires_in_s: u64,
    pub session_age_s: f64,
    pub rekeys: u32,
    /// The session's key epochs, each way.
    pub send_epoch: u32,
    pub recv_epoch: u32,
}

/// `meshctl flows`: the flow table and its largest flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flows {
    pub flow_table: FlowTableView,
    /// Seconds the rates are over.
    pub interval_s: f64,
    /// At most the requested number, in the requested order.
    pub flows: Vec<FlowView>,
}

/// `meshctl links`: per-interface and per-neighbour counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    pub links: Vec<LinkView>,
    pub neighbors: Vec<NeighborView>,
}

/// `meshctl drops`: frames by verdict reason, and recent drop events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    pub reasons: Vec<DropView>,
    /// The data plane's bookkeeping counters by name.
    pub counters: Vec<(String, u64)>,
    /// Oldest first.
    pub recent_drops: Vec<EventView>,
}

/// The answer to the freeze knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frozen {
    pub frozen: bool,
}

/// The answer to `meshctl reload`: the config was read, checked and applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// What changed in place (`routes`, `routing`, `probe`, `telemetry.interval_ms`,
    /// `detect`); empty when the file says what the agent already runs.
    pub changed: Vec<String>,
}

/// What `meshctl monitor` shows, one line as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "monitor", rename_all = "snake_case")]
pub enum Monitored {
    /// A data plane event: a drop or a sampled new flow.
    Dataplane(EventView),
    /// An action of the agent's (route change, detection, block, operator command).
    Action(Action),
    /// The client read too slowly: this many lines were skipped.
    Lost { count: u64 },
}

/// Which lines `meshctl monitor` wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(clap::ValueEnum)]
pub enum MonitorKind {
    /// Frames the data plane dropped (rate-limited per CPU in the data plane).
    Drop,
    /// New flows the data plane sampled.
    NewFlow,
    /// The agent's actions.
    Action,
}

/// A monitor's filter: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorFilter {
    /// Only these kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<MonitorKind>,
    /// Only lines whose reason (drop reason, action kind or reason) contains this.
    #[serde(default)]
    pub reason: Option<String>,
    /// Only data plane events on this interface.
    #[serde(default)]
    pub link: Option<String>,
}

impl MonitorFilter {
    pub fn wants(&self, m: &Monitored) -> bool {
        let (kind, reason, link) = match m {
            Monitored::Lost { .. } => return true,
            Monitored::Dataplane(e) => (
                if e.kind == "drop" {
                    MonitorKind::Drop
                } else {
                    MonitorKind::NewFlow
                },
                vec![e.reason.as_str()],
                Some(e.link.as_str()),
            ),
            Monitored::Action(a) => (
                MonitorKind::Action,
                vec![a.kind.as_str(), a.reason.as_str()],
                None,
            ),
        };
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| reason.iter().any(|x| x.contains(r.as_str())))
            && self
                .link
                .as_ref()
                .is_none_or(|l| link.is_some_and(|x| x == l))
    }
}

/// The answer to `meshctl unblock` and `meshctl anomalies clear`: what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub done: String,
}

/// The routing, detection and peers views, as the agent last published them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshViews {
    pub status: Status,
    pub neighbors: Neighbors,
    pub routes: RouteTable,
    pub lsdb: Lsdb,
    pub events: Events,
    /// None when detection is off.
    pub anomalies: Option<Anomalies>,
    pub window: Option<Window>,
    /// None when the control plane is not authenticated.
    pub peers: Option<Peers>,
}

/// The `data` of a successful answer: one view per request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Status(Status),
    Neighbors(Neighbors),
    Routes(RouteTable),
    Lsdb(Lsdb),
    Events(Events),
    Anomalies(Option<Anomalies>),
    Window(Option<Window>),
    Peers(Option<Peers>),
    Flows(Flows),
    Links(Links),
    Drops(Drops),
    Frozen(Frozen),
    Reloaded(Reloaded),
    Done(Done),
    Monitored(Monitored),
    /// The agent has not published its routing views yet (`null` on the wire).
    Unpublished,
}
