//! The agent's state between events: the routing side ([`Mesh`]) and what it reaches the
//! outside through ([`Io`]).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{detection::Detection, knowledge::Knowledge, secured::Secured};
use crate::{
    config::{Config, MacAddr},
    control::Control,
    dataplane::Dataplane,
    probe::{Sender, quality::Settings},
    routes::Tables,
};

pub(super) fn ms(now_ns: u64) -> u64 {
    now_ns / 1_000_000
}

/// The data plane, the control socket and the probe sender (the last two only with
/// routing on).
pub(super) struct Io<D = Dataplane> {
    pub(super) dp: D,
    pub(super) control: Option<Control>,
    pub(super) sender: Option<Sender>,
}

impl Io {
    /// Takes the control socket (bound before the data plane was touched) and starts the
    /// probe sender, when `routing` is on.
    pub(super) fn open(
        dp: Dataplane,
        control: Option<Control>,
        config: &Config,
        routing: bool,
    ) -> anyhow::Result<Self> {
        let sender = if routing {
            Some(
                Sender::start(
                    Duration::from_millis(config.probe.interval_ms),
                    mesh_common::maps::PROBE_CAPACITY as usize,
                    config.probe.realtime,
                )
                .context("starting the probe sender")?,
            )
        } else {
            None
        };
        Ok(Self {
            dp,
            control,
            sender,
        })
    }
}

/// The link-quality settings the config's `[probe]` gives.
pub(super) fn settings(config: &Config) -> Settings {
    Settings {
        window_ns: config.probe.window_ms * 1_000_000,
        // With fast reroute off the agent still needs a silence threshold.
        dead_ns: if config.probe.dead_ms == 0 {
            4 * config.probe.interval_ms
        } else {
            config.probe.dead_ms
        } * 1_000_000,
        up_hold_ns: config.probe.up_hold_ms * 1_000_000,
        cost_change_pct: config.probe.cost_change_pct,
    }
}

/// The routing side of the agent's state.
pub(super) struct Mesh {
    pub(super) routing: bool,
    /// What the kernel runs on our pinned links, read back at start.
    pub(super) programs: Vec<crate::api::AttachedProgram>,
    /// (interface, neighbour) pairs with per-neighbour gauges: a neighbour that is gone
    /// keeps its series, at `up` 0 (bounded by the topology, like a node's devices).
    pub(super) gauged: std::collections::BTreeSet<(String, String)>,
    pub(super) config: Config,
    /// The config's base entries and its static routes, which learned routes join.
    pub(super) tables: Tables,
    pub(super) names: Vec<String>,
    /// While non-zero (after adopting a running data plane), routes are only added.
    pub(super) hold_until_ns: u64,
    pub(super) spf_due: Option<Instant>,
    pub(super) last_refresh_ns: u64,
    pub(super) settings: Settings,
    pub(super) frozen_logged: bool,
    pub(super) detection: Option<Detection>,
    pub(super) secure: Option<Secured>,
    /// Why the last read of the telemetry maps failed (None: it succeeded).
    pub(super) map_error: Option<String>,
    /// Our place in the TCX chains, as last seen.
    pub(super) hooks: super::hookwatch::HookWatch,
}

impl Mesh {
    /// The state of a starting agent; `adopted` holds back route removals and our advert
    /// for the restart hold.
    pub(super) fn new(
        config: &Config,
        tables: &Tables,
        names: &[String],
        adopted: bool,
        now: u64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            routing: config.routing.enabled,
            programs: Vec::new(),
            gauged: std::collections::BTreeSet::new(),
            config: config.clone(),
            tables: tables.clone(),
            names: names.to_vec(),
            hold_until_ns: if adopted {
                now + config.routing.restart_hold_ms * 1_000_000
            } else {
                0
            },
            spf_due: None,
            last_refresh_ns: now,
            settings: settings(config),
            frozen_logged: false,
            secure: None,
            map_error: None,
            hooks: super::hookwatch::HookWatch::default(),
            detection: if config.detect.enabled && config.routing.enabled {
                Some(
                    Detection::new(&config.detect, (super::unix_now() * 1000.0) as u64)
                        .context("setting up anomaly detection")?,
                )
            } else {
                None
            },
        })
    }

    /// Per-neighbour gauges: up, RTT, loss and cost, labelled by interface and node.
    pub(super) fn neighbor_gauges(&mut self, k: &Knowledge) {
        let mut now = std::collections::BTreeSet::new();
        for n in &k.neighbors {
            let labels = [("interface", n.iface.clone()), ("neighbor", n.node.clone())];
            let q = &n.quality;
            metrics::gauge!("x0tta6bl4_neighbor_up", &labels)
                .set(f64::from(u8::from(n.adjacent())));
            metrics::gauge!("x0tta6bl4_neighbor_rtt_seconds", &labels).set(q.rtt_ms / 1000.0);
            metrics::gauge!("x0tta6bl4_neighbor_loss_ratio", &labels).set(q.loss);
            if let Some(cost) = q.cost {
                metrics::gauge!("x0tta6bl4_neighbor_cost", &labels).set(f64::from(cost));
            }
            now.insert((n.iface.clone(), n.node.clone()));
        }
        for (iface, node) in self.gauged.difference(&now) {
            let labels = [("interface", iface.clone()), ("neighbor", node.clone())];
            metrics::gauge!("x0tta6bl4_neighbor_up", &labels).set(0.0);
        }
        self.gauged.extend(now);
    }

    pub(super) fn spf_soon(&mut self) {
        // A short delay batches the adverts of one event (both ends of a link report it).
        self.spf_due
            .get_or_insert(Instant::now() + Duration::from_millis(2));
    }

    pub(super) fn iface_mac(&self, ifindex: u32) -> MacAddr {
        self.tables
            .ifaces
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map(|(_, f)| MacAddr(f.mac))
            .unwrap_or_default()
    }

    pub(super) fn name_of(&self, ifindex: u32) -> String {
        self.tables
            .ifaces
            .iter()
            .position(|(i, _)| *i == ifindex)
            .and_then(|p| self.names.get(p).cloned())
            .unwrap_or_else(|| ifindex.to_string())
    }

    /// Flows seen within the last two windows are live.
    pub(super) fn live_since(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(2 * self.config.detect.window_ms * 1_000_000)
    }

    /// Our interfaces with no mesh neighbour on them: where hosts, and attacks, enter.
    pub(super) fn edge(&self, k: &Knowledge) -> BTreeSet<u32> {
        self.tables
            .ifaces
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !k.neighbors.iter().any(|n| n.ifindex == *i))
            .collect()
    }
}
