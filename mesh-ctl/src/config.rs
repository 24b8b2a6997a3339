//! The agent's TOML configuration: parsing and validation, with errors that name the file,
//! the key and the reason.

use std::{
    collections::HashSet,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use ipnet::IpNet;
use mesh_common::maps::{
    FLOWS_DEFAULT_CAPACITY, FLOWS_MAX_CAPACITY, FLOWS_MIN_CAPACITY, IFACES_CAPACITY, MAX_NEXTHOPS,
    NEXTHOP_GROUPS_CAPACITY, ROUTES_V4_CAPACITY,
};

/// Most prefixes in `local` and in `routing.prefixes` (each is advertised or matched one
/// by one).
const MAX_LOCAL_PREFIXES: usize = 4_096;
use serde::{Deserialize, Deserializer};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML, or a key has the wrong type, is missing, or is unknown.
    #[error("config file {}: {}: {reason} (line {line}, column {column})", file.display(), key_label(key))]
    Syntax {
        file: PathBuf,
        key: String,
        reason: String,
        line: usize,
        column: usize,
    },
    /// A value is well-formed but not acceptable.
    #[error("config file {}: key `{key}`: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

fn key_label(key: &str) -> String {
    if key.is_empty() || key == "." {
        "document".to_owned()
    } else {
        format!("key `{key}`")
    }
}

/// A value problem found by validation, before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            key: self.key,
            reason: self.reason,
        }
    }
}

/// An Ethernet address written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"))?;
            if part.len() != 2 {
                return Err(format!(
                    "`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"
                ));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"))?;
        }
        if parts.next().is_some() {
            return Err(format!(
                "`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"
            ));
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the forwarding program runs on a mesh interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP where the interface's XDP hook is free; TCX ingress (clsact before Linux 6.6),
    /// first in the chain, where another program holds it (Cilium's, say).
    #[default]
    Auto,
    /// XDP only: attaching fails where another program holds the hook.
    Xdp,
    /// TCX ingress (clsact before Linux 6.6) only, first in the chain.
    Tcx,
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// The driver's native hook where it has one, else generic.
    #[default]
    Auto,
    /// The driver's native hook; attaching fails where the driver has none.
    Native,
    /// Generic (skb) XDP, slower, works on any interface.
    Skb,
}

/// How the TC egress program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcAttach {
    /// TCX where the kernel has it (6.6+), else a clsact qdisc with a cls_bpf filter.
    #[default]
    Auto,
    /// TCX links only.
    Tcx,
    /// clsact qdisc and a cls_bpf filter (netlink), on any kernel.
    Netlink,
}

/// Where our TC egress program goes among the interface's TCX programs. First by
/// default: a program that ends the chain (Cilium's `cil_to_netdev` returns `TC_ACT_OK`)
/// would otherwise hide the host's traffic from us, while ours always hands every frame on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcPosition {
    #[default]
    First,
    Last,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    #[serde(default)]
    pub hook: Hook,
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// ECMP hash seed; 0 picks a random one at start.
    #[serde(default)]
    pub hash_seed: u32,
    #[serde(default)]
    pub tc_attach: TcAttach,
    #[serde(default)]
    pub tc_position: TcPosition,
    /// bpffs directory holding our maps, programs and links; a restarted agent adopts
    /// what it finds there.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
}

impl Default for Dataplane {
    fn default() -> Self {
        Self {
            hook: Hook::default(),
            xdp_mode: XdpMode::default(),
            hash_seed: 0,
            tc_attach: TcAttach::default(),
            tc_position: TcPosition::default(),
            pin_dir: default_pin_dir(),
        }
    }
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from(crate::dataplane::pins::DEFAULT_PIN_DIR)
}

/// Link probing: the data plane answers and records probes; these are the timers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    /// One side of each link (the lower node name) probes it this often.
    pub interval_ms: u64,
    /// A link whose last reply or request is older than this is bypassed by the data
    /// plane itself (fast reroute) and reported down by the agent; 0 turns fast reroute off.
    pub dead_ms: u64,
    /// A link that came back is used for routing again only after replying this long.
    pub up_hold_ms: u64,
    /// Link quality (loss, RTT, jitter) is computed over windows this long.
    pub window_ms: u64,
    /// A link's advertised cost changes only when the new one differs by this much.
    pub cost_change_pct: u32,
    /// The probe sender thread asks for real-time priority (`SCHED_FIFO`), so that a busy
    /// CPU does not delay probes; without `CAP_SYS_NICE` it runs at normal priority.
    pub realtime: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            interval_ms: 5,
            dead_ms: 15,
            up_hold_ms: 2_000,
            window_ms: 100,
            cost_change_pct: 25,
            realtime: true,
        }
    }
}

/// The detector the Analyze stage runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Fixed levels (`detect.gray_loss` and the others): needs no training.
    #[default]
    Static,
    /// The GraphSAGE model `meshctl` carries, with the thresholds calibrated beside it.
    Graphsage,
    /// The MLP baseline `meshctl` carries (the same features, no message passing).
    Mlp,
    /// A model `meshctl model train` wrote (`detect.model`), with its own thresholds.
    Model,
}

/// What the agent does with what the detector confirms.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectMode {
    /// Act: avoid gray links and blackhole nodes, block attack sources (each as its
    /// switch allows).
    #[default]
    Act,
    /// Log, count and show findings (`meshctl anomalies`, `anomaly_*` metrics); change
    /// no route and block nothing.
    Observe,
}

/// Where the agent keeps the thresholds calibrated on site (systemd's `StateDirectory`).
pub const DEFAULT_CALIBRATION: &str = "/var/lib/x0tta6bl4/calibration.json";

/// Anomaly detection in the loop: every agent floods its counters once per window,
/// runs the detector over the whole mesh and keeps traffic off what it finds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Detect {
    /// Off: no reports are flooded and nothing is acted on.
    pub enabled: bool,
    /// `act` (default) or `observe`: findings only, no action.
    pub mode: DetectMode,
    /// With `mode = "act"`: route around gray, congested and flapping links.
    pub avoid_links: bool,
    /// With `mode = "act"`: route transit around blackhole nodes.
    pub avoid_transit: bool,
    /// With `mode = "act"`: block the sources of a DDoS or a scan at the mesh's edge.
    pub block_sources: bool,
    /// Length of one detection window. Every agent reads its counters at the multiples of
    /// it in wall-clock time, so their clocks should be synchronised (NTP) to well within it.
    pub window_ms: u64,
    pub detector: DetectorKind,
    /// The model file (`.safetensors`, with its `.json` beside it) for `detector = "model"`.
    pub model: Option<PathBuf>,
    /// Per-class thresholds fitted to this mesh (`meshctl model calibrate`, or the agent's
    /// own calibration): used when the file is there and is for this detector.
    pub calibration: PathBuf,
    /// Above 0 and without a calibration for this detector: the agent observes for this
    /// many minutes (acting on nothing), fits thresholds to what it saw as fault-free,
    /// saves them to `calibration` and then acts.
    pub calibrate_minutes: u32,
    /// The share of fault-free element-windows the agent's own calibration lets through.
    pub calibrate_fpr: f32,
    /// A finding is acted on once it is seen in this many consecutive windows.
    pub confirm_windows: u32,
    /// ... except a blackhole node, acted on once seen in this many: it costs its transit
    /// everything while it lasts, and its evidence is a balance of counters (frames taken
    /// in on clean links and never passed on), not a sample of probes.
    pub blackhole_confirm_windows: u32,
    /// An action is kept at least this long, doubled each time the same element is
    /// acted on again (up to 16 times); it is reverted once this has passed and the
    /// element has been clean for `confirm_windows`.
    pub hold_ms: u64,
    /// At most this share of the nodes may be avoided for transit, and of the links,
    /// at once (at least one of each).
    pub max_avoided_pct: u32,
    /// Static detector: data or probe loss from which a link is gray.
    pub gray_loss: f32,
    /// Static detector: share of a node's received packets unaccounted for (neither
    /// delivered, forwarded nor counted as dropped) from which it is a blackhole.
    pub blackhole_share: f32,
    /// Static detector: mean probe RTT (ms) from which a link is congested.
    pub congested_rtt_ms: f32,
    /// Static detector: distinct sources towards a node from which it is under DDoS.
    pub ddos_sources: u32,
    /// Static detector: distinct destinations of one source from which it is a scanner.
    pub scan_targets: u32,
    /// Most sources one DDoS or scan action blocks, on each router.
    pub max_blocked: u32,
    /// A DDoS's old sources (flows towards the victim from before the attack) are
    /// rate-limited to this many times their own rate from before it ...
    pub limit_factor: f32,
    /// ... and never below this many packets a second; the prefixes (/24, /64) of its new
    /// sources are limited to this for the sources that have no entry of their own.
    pub limit_floor_pps: u32,
}

impl Default for Detect {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: DetectMode::Act,
            avoid_links: true,
            avoid_transit: true,
            block_sources: true,
            window_ms: 1000,
            detector: DetectorKind::Static,
            model: None,
            calibration: PathBuf::from(DEFAULT_CALIBRATION),
            calibrate_minutes: 0,
            calibrate_fpr: 0.005,
            confirm_windows: 2,
            blackhole_confirm_windows: 1,
            hold_ms: 30_000,
            max_avoided_pct: 25,
            gray_loss: 0.05,
            blackhole_share: 0.2,
            congested_rtt_ms: 50.0,
            ddos_sources: 64,
            scan_targets: 64,
            max_blocked: 1024,
            limit_factor: 2.0,
            limit_floor_pps: 50,
        }
    }
}

/// Link-state routing between agents.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Discover neighbours, flood link-state adverts and install shortest paths.
    pub enabled: bool,
    /// Prefixes this node advertises to the mesh.
    pub prefixes: Vec<IpNet>,
    /// UDP port of the control messages (IPv6 link-local multicast on mesh interfaces).
    pub port: u16,
    pub hello_interval_ms: u64,
    /// A neighbour unheard this long is gone.
    pub hello_dead_ms: u64,
    /// Our advert is re-flooded this often even if nothing changed.
    pub refresh_s: u64,
    /// Adverts not refreshed for this long are dropped.
    pub max_age_s: u64,
    /// After a start, routes are only added or changed, never removed, for this long:
    /// a restarted agent must relearn the mesh before it may take anything away.
    pub restart_hold_ms: u64,
    /// A neighbour whose hellos stopped but whose data plane still answers probes is an
    /// agent restarting: it stays a neighbour this long (graceful restart), not
    /// `hello_dead_ms`, so its neighbours keep routing through it meanwhile.
    pub restart_grace_ms: u64,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            enabled: true,
            prefixes: Vec::new(),
            port: 6697,
            hello_interval_ms: 100,
            hello_dead_ms: 1_000,
            refresh_s: 30,
            max_age_s: 120,
            restart_hold_ms: 3_000,
            restart_grace_ms: 10_000,
        }
    }
}

/// Telemetry: what the data plane records and how the agent reads it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// Per-flow tracking and new-flow events (per-interface counters are always on).
    pub flows: bool,
    /// Per-neighbour-MAC counters of what is received and what the host sends (what is
    /// forwarded to each next hop is always counted).
    pub neighbors: bool,
    /// Flow-table entries; the least recently used flow is evicted when it is full.
    pub flow_capacity: u32,
    /// How often the agent reads the maps.
    pub interval_ms: u64,
    /// Flows idle this long are removed from the table.
    pub idle_timeout_s: u64,
    /// Flows kept per sort order for `meshctl flows`.
    pub top_k: usize,
    /// 1 in this many new flows is sent as an event; 0 sends none.
    pub sample_new_flows: u32,
    /// Drop events per CPU per second at most; 0 sends none.
    pub drop_events_per_s: u32,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            flows: true,
            neighbors: true,
            flow_capacity: FLOWS_DEFAULT_CAPACITY,
            interval_ms: 1000,
            idle_timeout_s: 60,
            top_k: 100,
            sample_new_flows: 64,
            drop_events_per_s: 100,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub enabled: bool,
    /// Loopback by default: metrics say a lot about the traffic.
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The local API `meshctl` talks to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Unix socket; its directory is created root-only.
    pub socket: PathBuf,
    /// A group whose members may read the views: the socket becomes `root:GROUP 0660`
    /// and a private directory the group's with `g+rx` (`0750`). Requests that change
    /// the agent stay root-only.
    pub group: Option<String>,
}

/// Where the agent listens and `meshctl` looks by default.
pub const DEFAULT_SOCKET: &str = "/run/x0tta6bl4/agent.sock";

impl Default for Api {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Egress interface, one of `interfaces`.
    pub interface: String,
    /// The neighbour's MAC address, written as the destination.
    pub neighbor: MacAddr,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub prefix: IpNet,
    pub group: String,
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's name in the mesh.
    pub node: String,
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub probe: Probe,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub detect: Detect,
    /// The authenticated control plane; without it (or with `enabled = false`) agents
    /// trust whatever arrives on their mesh interfaces.
    #[serde(default)]
    pub security: Option<crate::secure::SecureConfig>,
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub routes: Vec<StaticRoute>,
    /// Extra prefixes to treat as local, beyond the host's own addresses.
    #[serde(default)]
    pub local: Vec<IpNet>,
}

/// The largest configuration file read: far beyond any real one, and refused before
/// parsing what a mistake or an attack could make of it.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The longest duration any `*_ms` setting may name: one day. Bounded so that no
/// arithmetic on it (nanoseconds, multiples) can overflow.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// Reads a configuration file, refusing one larger than [`MAX_CONFIG_BYTES`].
pub fn read_config_text(file: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(text)
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = read_config_text(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Parses and validates configuration text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let config = Self::parse_unvalidated(text, file)?;
        config.validate().map_err(|p| p.in_file(file))?;
        Ok(config)
    }

    /// Parses configuration text into its types, without [`Self::validate`]: a check
    /// collects every problem ([`Self::problems`]) instead of the first.
    pub fn parse_unvalidated(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let syntax = |key: String, err: toml::de::Error| {
            let (line, column) = err
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((0, 0));
            ConfigError::Syntax {
                file: file.to_owned(),
                key,
                reason: err.message().trim().to_owned(),
                line,
                column,
            }
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| syntax(String::new(), e))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            syntax(key, e.into_inner())
        })?;
        Ok(config)
    }

    /// Checks what the types cannot: names, references, counts and address sanity. The
    /// first problem; [`Self::problems`] has them all.
    pub fn validate(&self) -> Result<(), Problem> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem [`Self::validate`] would refuse, in the order of the file's sections.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.node.is_empty()
            || self.node.len() > 63
            || !self
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            out.push(Problem::new(
                "node",
                "must be 1 to 63 characters of A-Z, a-z, 0-9, `.`, `-` and `_` (a SPIFFE \
                 path segment)",
            ));
        }
        for (key, n, most) in [
            (
                "interfaces",
                self.interfaces.len(),
                IFACES_CAPACITY as usize,
            ),
            (
                "groups",
                self.groups.len(),
                NEXTHOP_GROUPS_CAPACITY as usize,
            ),
            ("routes", self.routes.len(), ROUTES_V4_CAPACITY as usize),
            ("local", self.local.len(), MAX_LOCAL_PREFIXES),
            (
                "routing.prefixes",
                self.routing.prefixes.len(),
                MAX_LOCAL_PREFIXES,
            ),
        ] {
            if n > most {
                // Nothing else is looked at: a list this long is a mistake to stop early.
                return vec![Problem::new(key, format!("{n} entries; at most {most}"))];
            }
        }
        if self.interfaces.is_empty() {
            out.push(Problem::new(
                "interfaces",
                "at least one mesh interface is needed",
            ));
        }
        let mut ifaces = HashSet::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            let key = format!("interfaces[{i}].name");
            // Named even when invalid, so the members that use it are not refused too.
            let first = ifaces.insert(iface.name.as_str());
            if iface.name.is_empty() || iface.name.len() > 15 || iface.name.contains('/') {
                out.push(Problem::new(
                    key,
                    "not a valid interface name (1 to 15 characters, no `/`)",
                ));
            } else if !first {
                out.push(Problem::new(
                    key,
                    format!("interface `{}` is listed twice", iface.name),
                ));
            }
        }
        let mut groups = HashSet::new();
        for (g, group) in self.groups.iter().enumerate() {
            if group.name.is_empty() {
                out.push(Problem::new(
                    format!("groups[{g}].name"),
                    "must not be empty",
                ));
            } else if !groups.insert(group.name.as_str()) {
                out.push(Problem::new(
                    format!("groups[{g}].name"),
                    format!("group `{}` is defined twice", group.name),
                ));
            }
            if group.members.is_empty() || group.members.len() > MAX_NEXTHOPS {
                out.push(Problem::new(
                    format!("groups[{g}].members"),
                    format!(
                        "a group has 1 to {MAX_NEXTHOPS} members, this one has {}",
                        group.members.len()
                    ),
                ));
            }
            let mut seen = HashSet::new();
            for (m, member) in group.members.iter().enumerate() {
                if !ifaces.contains(member.interface.as_str()) {
                    out.push(Problem::new(
                        format!("groups[{g}].members[{m}].interface"),
                        format!("`{}` is not one of the mesh interfaces", member.interface),
                    ));
                }
                if !member.neighbor.is_unicast() {
                    out.push(Problem::new(
                        format!("groups[{g}].members[{m}].neighbor"),
                        format!("{} is not a unicast address", member.neighbor),
                    ));
                }
                if !seen.insert((member.interface.as_str(), member.neighbor)) {
                    out.push(Problem::new(
                        format!("groups[{g}].members[{m}]"),
                        "the same next hop is listed twice",
                    ));
                }
            }
        }
        let mut prefixes = HashSet::new();
        for (r, route) in self.routes.iter().enumerate() {
            check_prefix(&route.prefix, &format!("routes[{r}].prefix"), &mut out);
            if !groups.contains(route.group.as_str()) {
                out.push(Problem::new(
                    format!("routes[{r}].group"),
                    format!("no group named `{}`", route.group),
                ));
            }
            if !prefixes.insert(route.prefix) {
                out.push(Problem::new(
                    format!("routes[{r}].prefix"),
                    format!("{} has a route already", route.prefix),
                ));
            }
        }
        for (l, prefix) in self.local.iter().enumerate() {
            check_prefix(prefix, &format!("local[{l}]"), &mut out);
        }
        for (i, prefix) in self.routing.prefixes.iter().enumerate() {
            check_prefix(prefix, &format!("routing.prefixes[{i}]"), &mut out);
        }
        if !self.dataplane.pin_dir.is_absolute() {
            out.push(Problem::new(
                "dataplane.pin_dir",
                "must be an absolute path",
            ));
        }
        self.validate_probe(&mut out);
        self.validate_detect(&mut out);
        match &self.security {
            Some(s) if s.enabled => out.extend(
                s.problems()
                    .into_iter()
                    .map(|(key, e)| Problem::new(format!("security.{key}"), e.to_string())),
            ),
            Some(_) => {}
            // Secure by default: a mesh node must say how it authenticates, or that it
            // does not.
            None if self.routing.enabled => {
                out.push(Problem::new(
                    "security",
                    "routing needs a [security] table: the node's identity (see `meshctl identity`), \
                     or `enabled = false` to trust every neighbour",
                ));
            }
            None => {}
        }
        self.validate_telemetry(&mut out);
        out
    }

    fn validate_probe(&self, out: &mut Vec<Problem>) {
        let p = &self.probe;
        if !(1..=1_000).contains(&p.interval_ms) {
            out.push(Problem::new(
                "probe.interval_ms",
                format!("{} is outside 1..=1000", p.interval_ms),
            ));
        }
        if p.dead_ms != 0 && p.dead_ms < p.interval_ms.saturating_mul(2) {
            out.push(Problem::new(
                "probe.dead_ms",
                format!(
                    "{} would call a link dead before two probes could be answered; use 0 \
                     (off) or at least 2 x probe.interval_ms = {}",
                    p.dead_ms,
                    p.interval_ms.saturating_mul(2)
                ),
            ));
        }
        if p.dead_ms > u64::from(u32::MAX / 1000) {
            out.push(Problem::new("probe.dead_ms", "must be below 4294967 ms"));
        }
        if p.window_ms < p.interval_ms.saturating_mul(4) || p.window_ms > 60_000 {
            out.push(Problem::new(
                "probe.window_ms",
                "must hold at least 4 probe intervals and be at most 60000",
            ));
        }
        if !(1..=1_000).contains(&p.cost_change_pct) {
            out.push(Problem::new(
                "probe.cost_change_pct",
                format!("{} is outside 1..=1000", p.cost_change_pct),
            ));
        }
        let r = &self.routing;
        if r.port == 0 {
            out.push(Problem::new("routing.port", "must not be 0"));
        }
        if !(10..=60_000).contains(&r.hello_interval_ms) {
            out.push(Problem::new(
                "routing.hello_interval_ms",
                format!("{} is outside 10..=60000", r.hello_interval_ms),
            ));
        }
        if r.hello_dead_ms < r.hello_interval_ms.saturating_mul(3) {
            out.push(Problem::new(
                "routing.hello_dead_ms",
                format!(
                    "must be at least 3 hello intervals ({} ms)",
                    r.hello_interval_ms.saturating_mul(3)
                ),
            ));
        }
        for (key, v) in [
            ("routing.hello_dead_ms", r.hello_dead_ms),
            ("routing.restart_hold_ms", r.restart_hold_ms),
            ("routing.restart_grace_ms", r.restart_grace_ms),
            ("probe.up_hold_ms", p.up_hold_ms),
        ] {
            if v > MAX_DURATION_MS {
                out.push(Problem::new(
                    key,
                    format!("{v} is above {MAX_DURATION_MS} (one day)"),
                ));
            }
        }
        for (key, v) in [
            ("routing.refresh_s", r.refresh_s),
            ("routing.max_age_s", r.max_age_s),
        ] {
            if v > MAX_DURATION_MS / 1000 {
                out.push(Problem::new(
                    key,
                    format!("{v} is above {} (one day)", MAX_DURATION_MS / 1000),
                ));
            }
        }
        if r.restart_grace_ms < r.hello_dead_ms {
            out.push(Problem::new(
                "routing.restart_grace_ms",
                format!(
                    "must be at least routing.hello_dead_ms ({} ms)",
                    r.hello_dead_ms
                ),
            ));
        }
        if r.refresh_s == 0 || r.max_age_s < r.refresh_s.saturating_mul(2) {
            out.push(Problem::new(
                "routing.max_age_s",
                "must be at least twice routing.refresh_s (and refresh_s above 0)",
            ));
        }
    }

    fn validate_detect(&self, out: &mut Vec<Problem>) {
        let d = &self.detect;
        if !(100..=60_000).contains(&d.window_ms) {
            out.push(Problem::new(
                "detect.window_ms",
                format!("{} is outside 100..=60000", d.window_ms),
            ));
        }
        if d.detector == DetectorKind::Model && d.model.is_none() {
            out.push(Problem::new(
                "detect.model",
                "detector = \"model\" needs the model file",
            ));
        }
        if !(d.calibrate_fpr > 0.0 && d.calibrate_fpr < 0.5) {
            out.push(Problem::new(
                "detect.calibrate_fpr",
                format!("{} is outside (0, 0.5)", d.calibrate_fpr),
            ));
        }
        if d.calibrate_minutes > 24 * 60 {
            out.push(Problem::new(
                "detect.calibrate_minutes",
                "must be at most 1440 (a day)",
            ));
        }
        if !(1.0..=1000.0).contains(&d.limit_factor) {
            out.push(Problem::new(
                "detect.limit_factor",
                format!("{} is outside 1..=1000", d.limit_factor),
            ));
        }
        if !(1..=10_000_000).contains(&d.limit_floor_pps) {
            out.push(Problem::new(
                "detect.limit_floor_pps",
                "must be 1..=10000000",
            ));
        }
        if !(1..=100).contains(&d.confirm_windows) {
            out.push(Problem::new("detect.confirm_windows", "must be 1..=100"));
        }
        if !(1..=100).contains(&d.blackhole_confirm_windows) {
            out.push(Problem::new(
                "detect.blackhole_confirm_windows",
                "must be 1..=100",
            ));
        }
        if !(100..=86_400_000).contains(&d.hold_ms) {
            out.push(Problem::new("detect.hold_ms", "must be 100..=86400000"));
        }
        if !(1..=100).contains(&d.max_avoided_pct) {
            out.push(Problem::new("detect.max_avoided_pct", "must be 1..=100"));
        }
        for (key, v) in [
            ("detect.gray_loss", d.gray_loss),
            ("detect.blackhole_share", d.blackhole_share),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                out.push(Problem::new(key, format!("{v} is outside (0, 1]")));
            }
        }
        for (key, v) in [
            ("detect.ddos_sources", d.ddos_sources),
            ("detect.scan_targets", d.scan_targets),
        ] {
            if v < 2 {
                out.push(Problem::new(key, "must be at least 2"));
            }
        }
        if !(1..=mesh_common::maps::BLOCKLIST_CAPACITY).contains(&d.max_blocked) {
            out.push(Problem::new(
                "detect.max_blocked",
                format!(
                    "must be 1..={} (the blocklist's capacity)",
                    mesh_common::maps::BLOCKLIST_CAPACITY
                ),
            ));
        }
        if !(d.congested_rtt_ms.is_finite() && d.congested_rtt_ms > 0.0) {
            out.push(Problem::new(
                "detect.congested_rtt_ms",
                "must be a positive number",
            ));
        }
    }

    fn validate_telemetry(&self, out: &mut Vec<Problem>) {
        let t = &self.telemetry;
        if !(FLOWS_MIN_CAPACITY..=FLOWS_MAX_CAPACITY).contains(&t.flow_capacity) {
            out.push(Problem::new(
                "telemetry.flow_capacity",
                format!(
                    "{} is outside {FLOWS_MIN_CAPACITY}..={FLOWS_MAX_CAPACITY}",
                    t.flow_capacity
                ),
            ));
        }
        if !(100..=60_000).contains(&t.interval_ms) {
            out.push(Problem::new(
                "telemetry.interval_ms",
                format!("{} is outside 100..=60000", t.interval_ms),
            ));
        }
        if t.idle_timeout_s > MAX_DURATION_MS / 1000 {
            out.push(Problem::new(
                "telemetry.idle_timeout_s",
                format!(
                    "{} is above {} (one day)",
                    t.idle_timeout_s,
                    MAX_DURATION_MS / 1000
                ),
            ));
        }
        if t.idle_timeout_s == 0 || t.idle_timeout_s.saturating_mul(1000) < t.interval_ms {
            out.push(Problem::new(
                "telemetry.idle_timeout_s",
                "must be at least one interval",
            ));
        }
        if !(1..=100_000).contains(&t.top_k) {
            out.push(Problem::new(
                "telemetry.top_k",
                format!("{} is outside 1..=100000", t.top_k),
            ));
        }
        if !self.api.socket.is_absolute() {
            out.push(Problem::new("api.socket", "must be an absolute path"));
        }
    }
}

fn check_prefix(prefix: &IpNet, key: &str, out: &mut Vec<Problem>) {
    if prefix.trunc() != *prefix {
        out.push(Problem::new(
            key,
            format!(
                "{prefix} has host bits set; did you mean {}?",
                prefix.trunc()
            ),
        ));
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "r"

[security]
enabled = false

[dataplane]
xdp_mode = "native"
hash_seed = 7

[[interfaces]]
name = "r-eth0"
[[interfaces]]
name = "r-eth1"

[[groups]]
name = "to-b"
members = [{ interface = "r-eth1", neighbor = "02:00:00:00:02:01" }]

[[routes]]
prefix = "10.0.2.0/24"
group = "to-b"

[[routes]]
prefix = "fd00:2::/64"
group = "to-b"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("mesh.toml"))
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn good_config_parses() {
        let c = Config::parse(GOOD, Path::new("mesh.toml")).expect("valid config");
        assert_eq!(c.node, "r");
        assert_eq!(c.dataplane.xdp_mode, XdpMode::Native);
        assert_eq!(c.groups[0].members[0].neighbor.0, [2, 0, 0, 0, 2, 1]);
        assert_eq!(c.routes.len(), 2);
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("name = \"r-eth1\"\n", "name = 5\n", "interfaces[1].name"),
            (
                "neighbor = \"02:00:00:00:02:01\"",
                "neighbor = \"02:00:00:00:02\"",
                "groups[0].members[0].neighbor",
            ),
            (
                "neighbor = \"02:00:00:00:02:01\"",
                "neighbor = \"03:00:00:00:02:01\"",
                "groups[0].members[0].neighbor",
            ),
            (
                "interface = \"r-eth1\"",
                "interface = \"eth9\"",
                "groups[0].members[0].interface",
            ),
            (
                "prefix = \"10.0.2.0/24\"",
                "prefix = \"10.0.2.1/24\"",
                "routes[0].prefix",
            ),
            (
                "prefix = \"10.0.2.0/24\"",
                "prefix = \"10.0.2.0/33\"",
                "routes[0].prefix",
            ),
            (
                "group = \"to-b\"\n\n[[routes]]\nprefix = \"fd",
                "group = \"nope\"\n\n[[routes]]\nprefix = \"fd",
                "routes[0].group",
            ),
            (
                "xdp_mode = \"native\"",
                "xdp_mode = \"turbo\"",
                "dataplane.xdp_mode",
            ),
            ("hash_seed = 7", "hash_sed = 7", "dataplane"),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[telemetry]\nflow_capacity = 10",
                "telemetry.flow_capacity",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[telemetry]\ninterval_ms = 5",
                "telemetry.interval_ms",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[metrics]\nlisten = \"localhost\"",
                "metrics.listen",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[api]\nsocket = \"agent.sock\"",
                "api.socket",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\ntc_position = \"middle\"",
                "dataplane.tc_position",
            ),
            (
                "name = \"r-eth1\"\n",
                "name = \"r-eth0\"\n",
                "interfaces[1].name",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[detect]\ndetector = \"model\"",
                "detect.model",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[detect]\nwindow_ms = 50",
                "detect.window_ms",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[detect]\ngray_loss = 1.5",
                "detect.gray_loss",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[detect]\nmax_blocked = 0",
                "detect.max_blocked",
            ),
            (
                "hash_seed = 7",
                "hash_seed = 7\n[detect]\ndetector = \"gnn\"",
                "detect.detector",
            ),
            // Secure by default: routing without a [security] table is refused.
            ("[security]\nenabled = false\n", "", "security"),
            (
                "enabled = false\n",
                "trust_domain = \"mesh.test\"\n",
                "security",
            ),
        ];
        for (from, to, key) in cases {
            assert!(GOOD.contains(from), "test case does not apply: {from}");
            let msg = err(&GOOD.replacen(from, to, 1));
            assert!(msg.starts_with("config file mesh.toml: "), "{msg}");
            assert!(
                msg.contains(&format!("`{key}")),
                "expected key {key} in: {msg}"
            );
        }
    }

    #[test]
    fn durations_are_bounded_so_nothing_overflows() {
        for (table, key) in [
            ("routing", "hello_dead_ms"),
            ("routing", "restart_hold_ms"),
            ("routing", "restart_grace_ms"),
            ("routing", "refresh_s"),
            ("routing", "max_age_s"),
            ("probe", "up_hold_ms"),
            ("telemetry", "idle_timeout_s"),
        ] {
            let text = format!("{GOOD}\n[{table}]\n{key} = 18446744073710\n");
            let problems = Config::parse_unvalidated(&text, Path::new("mesh.toml"))
                .expect("parses")
                .problems();
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == format!("{table}.{key}") && p.reason.contains("one day")),
                "{table}.{key}: {problems:?}"
            );
        }
        // Values that overflowed in the checks' own arithmetic are refused, not panics.
        let text = format!("{GOOD}\n[probe]\ninterval_ms = 18446744073709551615\n");
        assert!(err(&text).contains("probe.interval_ms"));
    }

    #[test]
    fn sizes_are_bounded_before_anything_is_looked_at() {
        let prefixes: Vec<String> = (0..5000)
            .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
            .collect();
        let text = format!("local = [{}]\n{GOOD}", prefixes.join(", "));
        let problems = Config::parse_unvalidated(&text, Path::new("mesh.toml"))
            .expect("parses")
            .problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "local");
        let big = std::env::temp_dir().join(format!("x0-big-{}.toml", std::process::id()));
        std::fs::write(&big, " ".repeat(MAX_CONFIG_BYTES as usize + 1)).expect("write");
        let e = Config::load(&big).expect_err("too large");
        std::fs::remove_file(&big).expect("cleanup");
        assert!(
            matches!(&e, ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::FileTooLarge),
            "{e:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let msg = err("node = \"r\"\ninterfaces = [\n");
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn member_count_is_bounded() {
        let members: Vec<String> = (0..9)
            .map(|i| format!("{{ interface = \"r-eth1\", neighbor = \"02:00:00:00:03:{i:02x}\" }}"))
            .collect();
        let text = GOOD.replacen(
            "members = [{ interface = \"r-eth1\", neighbor = \"02:00:00:00:02:01\" }]",
            &format!("members = [{}]", members.join(", ")),
            1,
        );
        assert!(err(&text).contains("1 to 8 members"));
    }

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "0a:1b:2c:3d:4e:5f".parse().expect("mac");
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        for bad in [
            "",
            "0a:1b",
            "0a:1b:2c:3d:4e:5f:00",
            "zz:1b:2c:3d:4e:5f",
            "0a1b:2c:3d:4e:5f:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
