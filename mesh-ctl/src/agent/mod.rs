//! `meshctl agent`: the MAPE-K loop. Monitor (probes, hellos, telemetry), Analyze
//! (findings with reasons), Plan (routes to map entries), Execute (make-before-break
//! writes), Knowledge (neighbours, LSDB, what is installed, the history of actions). This
//! module only wires the stages together.

mod analyze;
mod anomaly;
mod boot;
mod control_plane;
mod converge;
mod detection;
pub use detection::static_thresholds;
mod execute;
pub mod exporter;
mod fan;
pub mod health;
mod hookwatch;
mod http;
mod ifwatch;
mod knowledge;
mod mesh;
mod monitor;
mod notify;
mod operate;
mod plan;
mod rates;
mod reload;
mod runtime;
mod secured;
#[cfg(test)]
mod testkit;

pub use boot::install;
pub use execute::{Applied, Installed, install_routes};

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use mesh_common::Reason;
use serde_json::json;
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    api::Shared,
    check::{self, Refused},
    config::Config,
    dataplane::{Dataplane, FlowRecord, SystemHost},
    routes::Tables,
    telemetry::{
        LinkName, Reading, Tracker,
        events::{self},
        link_name, metrics as tmetrics,
    },
};

/// Everything that can be checked before the kernel is touched ([`crate::check`]): the
/// file, every file it names, and the interfaces it names on this host.
pub fn prepare(file: &Path) -> Result<(Config, Tables), Refused> {
    check::on_host(file, &SystemHost, unix_now() as u64, random_seed())
}

/// How `meshctl agent` was started, beyond its config file.
pub struct Options {
    /// Who may ask what of the API.
    pub access: crate::api::Access,
    /// Run this eBPF object instead of the embedded one (a test knob: upgrade tests run
    /// a second build's object).
    pub ebpf_object: Option<std::path::PathBuf>,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM.
    Signal,
    /// A mesh interface was re-created: the caller runs [`reexec`] once the runtime is
    /// gone, and the new image takes over the data plane.
    Reexec,
}

/// Runs the agent until SIGINT or SIGTERM, its API answering as `access` allows.
/// Forwarding keeps running after it exits.
pub async fn run(file: &Path, options: Options) -> anyhow::Result<Stopped> {
    runtime::run(file, options).await
}

/// Replaces this process with a fresh agent (same binary, arguments, environment and
/// PID, so systemd's notify and watchdog go on), which takes over the pins as an upgrade
/// does. Returns only if the exec failed.
pub fn reexec() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "meshctl".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .exec();
    Err(error).context("re-executing the agent (/proc/self/exe)")
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Recent events kept for `meshctl drops`.
const RECENT_EVENTS: usize = 256;

/// Reads the ring buffer whenever the kernel says it has data, without blocking the loop.
async fn read_events(ring: RingBuf<MapData>, shared: Arc<Shared>, links: Vec<LinkName>) {
    // SAFETY: the ring buffer owns its fd and keeps it open, unchanged, for as long as the
    // AsyncFd owns the ring buffer.
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let Ok(mut fd) = registered else {
        crate::event!(
            ERROR,
            "telemetry_error",
            error = "cannot poll the event ring buffer"
        );
        return;
    };
    let name_of = |ifindex: u32| link_name(&links, ifindex);
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        let ring = guard.get_inner_mut();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut batch = Vec::new();
        let mut malformed = 0;
        while let Some(item) = ring.next() {
            match events::decode(&item) {
                Ok(e) => batch.push(events::view(&e, at, &name_of)),
                Err(_) => malformed += 1,
            }
        }
        for e in &batch {
            // No client following is no error.
            let _none = shared
                .monitor
                .send(crate::api::Monitored::Dataplane(e.clone()));
        }
        if let Ok(mut recent) = shared.recent.lock() {
            recent.malformed += malformed;
            for e in batch {
                recent.push(e);
            }
        }
        guard.clear_ready();
    }
}

/// The Monitor side of telemetry: reads the maps each interval and publishes.
struct Collector {
    tracker: Tracker,
    pub(super) flows: Vec<FlowRecord>,
}

impl Collector {
    fn new(config: &Config, links: Vec<LinkName>) -> Self {
        Self {
            tracker: Tracker::new(
                links,
                config.telemetry.idle_timeout_s * 1_000_000_000,
                config.telemetry.top_k,
            ),
            flows: Vec::new(),
        }
    }

    fn collect(&mut self, dp: &Dataplane, shared: &Shared, publish: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        dp.read_flows(&mut self.flows)
            .context("reading the flow table")?;
        let links = dp
            .read_links(self.tracker.links().len() as u32)
            .context("reading the link counters")?;
        let neighbors = dp
            .read_neighbors()
            .context("reading the neighbour counters")?;
        let reasons = dp.reasons().context("reading the reason counters")?;
        let counters = dp
            .telemetry_counters()
            .context("reading the telemetry counters")?;
        let read_ns = started.elapsed().as_nanos() as u64;
        let now_ns = monotonic_ns().context("reading CLOCK_MONOTONIC")?;
        let (snapshot, decision) = self.tracker.update(&Reading {
            now_ns,
            flows: &self.flows,
            flow_capacity: dp.flow_capacity(),
            links: &links,
            neighbors: &neighbors,
            reasons: &reasons,
            counters,
            read_ns,
        });
        if !decision.expire.is_empty() {
            let n = dp
                .remove_flows(&decision.expire)
                .context("removing idle flows")?;
            self.tracker.expired(n);
        }
        if publish {
            let recent = shared.recent.lock().ok();
            tmetrics::publish(&snapshot, recent.as_deref());
        }
        if let Ok(mut s) = shared.snapshot.write() {
            *s = snapshot;
        }
        Ok(())
    }
}

/// The clock `bpf_ktime_get_ns` reads, so flow times compare with ours.
fn monotonic_ns() -> nix::Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

fn reason_object(reasons: &[(Reason, u64)]) -> serde_json::Value {
    reasons
        .iter()
        .map(|(r, n)| (r.name().to_owned(), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn random_seed() -> u32 {
    use std::io::Read as _;
    let mut b = [0u8; 4];
    // Without /dev/urandom a clock-derived seed still avoids polarization between nodes.
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() | 1)
            .unwrap_or(1),
    }
}
