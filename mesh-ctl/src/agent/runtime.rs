//! The agent's event loop: starts (or adopts) the data plane, then runs the MAPE-K stages
//! on their timers and on control messages until SIGINT or SIGTERM.

use std::{
    path::Path,
    sync::{Arc, Mutex, RwLock, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;

use super::{
    Collector, RECENT_EVENTS, analyze, boot,
    detection::Detection,
    exporter,
    exporter::record_stage,
    health, hookwatch, http,
    ifwatch::{self, IfWatch},
    knowledge::Knowledge,
    mesh::{Io, Mesh, ms},
    monitor::{self, Heard},
    monotonic_ns, notify, prepare, read_events, reason_object,
    secured::Secured,
};
use crate::{
    api::{self, Shared},
    control::{Control, Received},
    routing::Lsdb,
    telemetry::{LinkName, Snapshot, events::Recent},
};

pub async fn run(file: &Path, options: super::Options) -> anyhow::Result<super::Stopped> {
    let super::Options {
        access,
        ebpf_object,
    } = options;
    // Before anything else: a SIGTERM or SIGHUP that arrives while the agent starts (the
    // `attached` event and systemd's READY come before the main loop) is held for the
    // loop, which stops or reloads cleanly, instead of killing a half-started agent.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let (config, mut tables) = prepare(file)?;
    let object: std::borrow::Cow<'static, [u8]> = match &ebpf_object {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the eBPF object {}", path.display()))?;
            crate::build_info::set_running_object(&bytes);
            bytes.into()
        }
        None => crate::dataplane::OBJECT.into(),
    };
    let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
    // Taken before anything is attached: a port in use refuses the start, not half of it.
    let metrics_listener = match config.metrics.enabled {
        true => Some(http::bind(config.metrics.listen).await?),
        false => None,
    };
    // The control socket and the handshake listener too, and the identity loaded.
    let routing = config.routing.enabled;
    let control = match routing {
        true => {
            let ifindexes: Vec<u32> = tables.ifaces.iter().map(|(i, _)| *i).collect();
            Some(
                Control::bind(config.routing.port, &ifindexes).with_context(|| {
                    format!(
                        "opening the control socket (UDP port {})",
                        config.routing.port
                    )
                })?,
            )
        }
        false => None,
    };
    let secured = match config.security.as_ref().filter(|s| s.enabled && routing) {
        Some(sc) => Some(Secured::start(sc)?),
        None => None,
    };
    let boot::Booted {
        mut dp,
        pins,
        adopted,
        tc_mode,
        installed,
    } = boot::start(&config, &mut tables, &names, &object)?;
    drop(object);
    let events = dp.take_events().context("opening the event ring buffer")?;

    let prometheus = exporter::register(&config)?;
    // Recorded once the recorder is in place (the identity was loaded before it).
    if let Some((s, _, _)) = secured.as_ref() {
        metrics::gauge!("x0tta6bl4_certificate_expiry_timestamp_seconds")
            .set(s.cert_not_after() as f64);
    }
    let (command_tx, mut commands) = tokio::sync::mpsc::channel::<api::Command>(4);
    let shared = Arc::new(Shared {
        node: config.node.clone(),
        snapshot: RwLock::new(Snapshot::default()),
        recent: Mutex::new(Recent::new(RECENT_EVENTS)),
        mesh: RwLock::new(None),
        frozen: std::sync::atomic::AtomicBool::new(false),
        liveness: health::Liveness::default(),
        commands: Some(command_tx),
        monitor: api::monitor_channel(),
    });
    let http_task = match (metrics_listener, prometheus) {
        (Some(listener), Some(handle)) => Some(tokio::spawn(http::serve(
            listener,
            handle,
            shared.clone(),
            health::stall_after_ms(config.telemetry.interval_ms),
        ))),
        _ => None,
    };
    let listener = api::bind(&config.api.socket).context("opening the API socket")?;
    api::access::share_with_group(&config.api.socket, config.api.group.as_deref())
        .context("opening the API socket to api.group")?;
    let api_task = tokio::spawn(api::serve(listener, shared.clone(), access));
    let links: Vec<LinkName> = tables
        .ifaces
        .iter()
        .zip(&names)
        .map(|((ifindex, _), name)| LinkName {
            name: name.clone(),
            ifindex: *ifindex,
        })
        .collect();
    let mut hook_tick: u64 = 0;
    let mut ifwatch = IfWatch::new(links.iter().map(|l| (l.name.clone(), l.ifindex)).collect());
    let mut stopped = super::Stopped::Signal;
    let events_task = tokio::spawn(read_events(events, shared.clone(), links.clone()));
    let mut collector = Collector::new(&config, links);

    let now = monotonic_ns()?;
    let mut lsdb = Lsdb::new(&config.node, config.routing.max_age_s * 1000);
    lsdb.set_seq_floor((super::unix_now() * 1000.0) as u64);
    let mut k = Knowledge::new(lsdb, installed, tables.neighbors.len() as u32);
    k.monitor = Some(shared.monitor.clone());
    if adopted {
        for (slot, peer) in dp.probe_peers().context("reading the probe slots")? {
            k.slots.push(((peer.ifindex, peer.mac), slot));
            k.next_slot = k.next_slot.max(slot + 1);
        }
    }
    let mut mesh = Mesh::new(&config, &tables, &names, adopted, now)?;
    mesh.programs =
        crate::dataplane::attached_programs(&pins).context("reading back the attached programs")?;
    let (mut outcomes, mut listener_refusals) = (None, None);
    if let Some((s, o, r)) = secured {
        mesh.secure = Some(s);
        (outcomes, listener_refusals) = (Some(o), Some(r));
    }
    let mut io = Io::open(dp, control, &config, mesh.routing)?;
    if mesh.routing {
        mesh.originate(&mut k, io.control.as_ref(), None).await;
    }

    collector
        .collect(&io.dp, &shared, config.metrics.enabled)
        .context("reading the telemetry maps")?;
    mesh.publish(&k, &shared);
    shared.liveness.turned(monotonic_ns().map(ms)?);
    let io_forwarding: std::collections::BTreeMap<String, &str> =
        io.dp.forwarding().into_iter().collect();
    let (dp, sender) = (&io.dp, &io.sender);
    if let Some(s) = sender.as_ref() {
        metrics::gauge!("x0tta6bl4_probe_realtime").set(f64::from(u8::from(s.realtime().is_ok())));
    }
    crate::event!(
        INFO,
        "attached",
        node = config.node.as_str(),
        interfaces = %json!(names),
        tc_egress = tc_mode,
        forwarding = %json!(io_forwarding),
        adopted = adopted,
        pin_dir = %pins.root().display(),
        routes_v4 = k.installed.v4.len(),
        routes_v6 = k.installed.v6.len(),
        groups = k.installed.groups.len(),
        flow_capacity = dp.flow_capacity(),
        routing = mesh.routing,
        probe_realtime = %json!(sender.as_ref().map(|s| match s.realtime() {
            Ok(()) => json!(true),
            Err(why) => json!(why),
        })),
        metrics = config.metrics.enabled.then(|| config.metrics.listen.to_string()),
        socket = %config.api.socket.display()
    );
    notify::ready(&config.node, adopted);
    let mut watchdog = notify::watchdog_interval().map(tokio::time::interval);

    let mut telemetry_tick = every(config.telemetry.interval_ms);
    let mut probe_tick = every(config.probe.interval_ms);
    let mut hello_tick = every(config.routing.hello_interval_ms);
    let mut buf = Control::buffer();
    // Malformed datagrams are counted each; logged at most once per interface per 10 s
    // (with how many were not), so a flood of garbage cannot flood the log.
    let mut malformed_log = crate::secure::LogLimiter::new(10_000, 256);
    // A pin directory that cannot be restored (bpffs unmounted) is said once a minute.
    let mut pin_log = crate::secure::LogLimiter::new(60_000, 1);
    let mut scratch = Vec::new();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let (mut report_at, mut slot) = aligned(config.detect.window_ms);
    // The window just reported on, analysed once every agent that reported the window
    // before, and every node routing knows, has reported this one too (a few
    // milliseconds after the instant on a healthy mesh), or half a window later, when a
    // quiet agent's report will not come.
    let mut analysis: Option<(tokio::time::Instant, u64)> = None;
    loop {
        if let Ok(now) = monotonic_ns() {
            shared.liveness.turned(ms(now));
        }
        if let Some((at, this)) = analysis.as_mut()
            && mesh.detection.as_mut().is_some_and(|d| {
                d.complete(*this, k.lsdb.adverts_unordered().map(|l| l.origin.as_str()))
            })
        {
            *at = tokio::time::Instant::now();
        }
        let spf_at = mesh.spf_due.map_or(far, tokio::time::Instant::from_std);
        let analyze_at = analysis.map_or(far, |a| a.0);
        tokio::select! {
            _ = tokio::time::sleep_until(report_at), if mesh.detection.is_some() => {
                let this = slot;
                (report_at, slot) = aligned(mesh.config.detect.window_ms);
                if let Err(e) = collector.collect(&io.dp, &shared, mesh.config.metrics.enabled) {
                    crate::event!(ERROR, "telemetry_error", error = format!("{e:#}"));
                    continue;
                }
                mesh.report(&k, io.control.as_ref(), &shared, &collector.flows, this).await;
                let half = Duration::from_millis(mesh.config.detect.window_ms) / 2;
                analysis = Some((tokio::time::Instant::now() + half, this));
            }
            _ = tokio::time::sleep_until(analyze_at), if analysis.is_some() => {
                if let Some((_, this)) = analysis.take() {
                    mesh.analyze_window(&mut io.dp, &mut k, &collector.flows, this);
                }
            }
            _ = telemetry_tick.tick() => {
                mesh.map_error = match collector.collect(&io.dp, &shared, mesh.config.metrics.enabled) {
                    Ok(()) => None,
                    Err(e) => {
                        // A failed read is reported and retried next interval; forwarding
                        // does not depend on it.
                        crate::event!(ERROR, "telemetry_error", error = format!("{e:#}"));
                        metrics::counter!("x0tta6bl4_map_read_errors_total").increment(1);
                        Some(format!("{e:#}"))
                    }
                };
                hook_tick += 1;
                if hook_tick.is_multiple_of(HOOK_CHECK_TICKS) {
                    mesh.check_hooks();
                }
                let changes = ifwatch.check(|name| nix::net::if_::if_nametoindex(name).ok());
                if ifwatch::report(&changes) {
                    stopped = super::Stopped::Reexec;
                    break;
                }
                // Pins removed under us: forwarding goes on (we hold the links), but a
                // restart could not adopt the data plane until they are back.
                match io.dp.repin() {
                    Ok(restored) if !restored.is_empty() => {
                        crate::event!(WARN, "pins_restored", restored = %json!(restored));
                    }
                    Ok(_) => {}
                    Err(crate::dataplane::DataplaneError::BpffsGone { dir }) => {
                        // Unmounted under us: a bpffs goes back (the next tick repins).
                        match crate::dataplane::mount_bpffs(&dir) {
                            Ok(()) => crate::event!(WARN, "bpffs_remounted", dir = %dir.display()),
                            Err(e) => {
                                if pin_log.check("pins", monotonic_ns().map(ms).unwrap_or(0)).is_some() {
                                    crate::event!(ERROR, "pins_error", error = format!("{} is no bpffs and mounting one failed: {e}", dir.display()));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if pin_log.check("pins", monotonic_ns().map(ms).unwrap_or(0)).is_some() {
                            crate::event!(ERROR, "pins_error", error = format!("{e:#}"));
                        }
                    }
                }
                mesh.publish(&k, &shared);
            }
            _ = async { match watchdog.as_mut() { Some(w) => w.tick().await, None => std::future::pending().await } } => {
                // From the loop itself: a loop that stops turning stops the pings.
                notify::watchdog();
            }
            _ = probe_tick.tick(), if mesh.routing => {
                let (Some(sender), Ok(now)) = (io.sender.as_ref(), monotonic_ns()) else { continue };
                let started = Instant::now();
                match monitor::probes(&io.dp, sender, &mut k, &mesh.config.node, &mesh.settings, now, &mut scratch) {
                    Ok(changes) if !changes.is_empty() => {
                        record_stage("monitor", started);
                        let started = Instant::now();
                        let findings = analyze::links(&changes);
                        record_stage("analyze", started);
                        for f in findings {
                            k.act("analyze", f.kind, f.detail, f.reason);
                        }
                        mesh.originate(&mut k, io.control.as_ref(), None).await;
                    }
                    Ok(_) => record_stage("monitor", started),
                    Err(e) => crate::event!(ERROR, "probe_error", error = format!("{e:#}")),
                }
            }
            _ = hello_tick.tick(), if mesh.routing => {
                let Ok(now) = monotonic_ns() else { continue };
                mesh.hellos(&k, io.control.as_ref()).await;
                let lost = analyze::hello_timeouts(
                    &mut k,
                    now,
                    mesh.config.routing.hello_dead_ms * 1_000_000,
                    mesh.config.routing.restart_grace_ms * 1_000_000,
                );
                if !lost.is_empty() {
                    for f in lost {
                        k.act("analyze", f.kind, f.detail, f.reason);
                    }
                    mesh.peers_changed(&mut io.dp, &k, io.sender.as_ref());
                    mesh.originate(&mut k, io.control.as_ref(), None).await;
                }
                if let Some(s) = mesh.secure.as_mut() {
                    let grace = mesh.config.routing.hello_dead_ms;
                    s.retain(ms(now), grace, |node| k.neighbors.iter().any(|n| n.node == node));
                }
                if !k.lsdb.expire(ms(now)).is_empty() {
                    mesh.spf_soon();
                }
                if now.saturating_sub(mesh.last_refresh_ns) >= mesh.config.routing.refresh_s * 1_000_000_000 {
                    mesh.last_refresh_ns = now;
                    mesh.originate(&mut k, io.control.as_ref(), Some(true)).await;
                }
                if mesh.hold_until_ns != 0 && now >= mesh.hold_until_ns {
                    mesh.hold_until_ns = 0;
                    // Adjacencies are back: now our advert may replace the one from our
                    // previous life, which the mesh routed on meanwhile.
                    mesh.originate(&mut k, io.control.as_ref(), Some(true)).await;
                }
            }
            r = async { match io.control.as_ref() { Some(c) => c.recv(&mut buf).await, None => std::future::pending().await } } => {
                match r {
                    Ok(Received::Message { msg, ifindex, from }) => {
                        mesh.on_message(&mut io, &mut k, msg, Heard { ifindex, from }, None).await;
                    }
                    Ok(Received::Sealed { bytes, ifindex, from }) => {
                        mesh.on_sealed(&mut io, &mut k, &bytes, Heard { ifindex, from }, outcomes.as_mut()).await;
                    }
                    Ok(Received::Malformed { ifindex, error }) => {
                        metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
                        let now = monotonic_ns().map(ms).unwrap_or(0);
                        if let Some(suppressed) = malformed_log.check(&ifindex.to_string(), now) {
                            crate::event!(WARN, "control_malformed", ifindex = ifindex, error = error.to_string(), suppressed = suppressed);
                        }
                    }
                    Err(e) => crate::event!(ERROR, "control_error", error = format!("{e:#}")),
                }
            }
            o = async { match outcomes.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                if let Some(o) = o {
                    mesh.handshake_done(&k, io.control.as_ref(), o).await;
                }
            }
            r = async { match listener_refusals.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                if let (Some(r), Some(s)) = (r, mesh.secure.as_mut()) {
                    s.refuse(&r.from.to_string(), r.reason, monotonic_ns().map(ms).unwrap_or(0));
                }
            }
            _ = tokio::time::sleep_until(spf_at), if mesh.spf_due.is_some() => {
                mesh.spf_due = None;
                if shared.frozen.load(Ordering::Relaxed) {
                    if !mesh.frozen_logged {
                        mesh.frozen_logged = true;
                        k.act("plan", "frozen", "route recomputation is switched off".into(), "test knob".into());
                    }
                    continue;
                }
                mesh.frozen_logged = false;
                if let Err(e) = mesh.reconverge(&mut io.dp, &mut k) {
                    crate::event!(ERROR, "execute_error", error = format!("{e:#}"));
                }
                mesh.publish(&k, &shared);
            }
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for SIGINT")?;
                break;
            }
            _ = term.recv() => break,
            command = async {
                tokio::select! {
                    _ = hangup.recv() => None,
                    Some(c) = commands.recv() => Some(c),
                }
            } => {
                // SIGHUP is a reload nobody waits for.
                let (request, reply) = match command {
                    Some(api::Command { request, reply }) => (request, Some(reply)),
                    None => (api::Request::Reload, None),
                };
                if request != api::Request::Reload {
                    let outcome = mesh.operate(&request, &mut io.dp, &mut k);
                    if let Err(why) = &outcome {
                        crate::event!(WARN, "command_refused", error = why.as_str());
                    }
                    mesh.publish(&k, &shared);
                    if let Some(reply) = reply {
                        let _gone = reply.send(outcome);
                    }
                    continue;
                }
                notify::reloading();
                let outcome = mesh.reload(file, &mut io.dp, &mut k);
                match &outcome {
                    Ok(changes) => {
                        if changes.routing {
                            hello_tick = every(mesh.config.routing.hello_interval_ms);
                            mesh.originate(&mut k, io.control.as_ref(), Some(true)).await;
                        }
                        if changes.revocations {
                            // Revoked neighbours are gone: probes stop, the advert drops them.
                            mesh.peers_changed(&mut io.dp, &k, io.sender.as_ref());
                            mesh.originate(&mut k, io.control.as_ref(), Some(true)).await;
                        }
                        if changes.telemetry_interval {
                            telemetry_tick = every(mesh.config.telemetry.interval_ms);
                        }
                        if changes.detect {
                            (report_at, slot) = aligned(mesh.config.detect.window_ms);
                            analysis = None;
                        }
                        crate::event!(INFO, "reloaded", changed = %json!(changes.names()));
                        notify::reloaded(&format!("{}: reloaded ({})", mesh.config.node, changes.names().join(", ")));
                    }
                    Err(why) => {
                        crate::event!(WARN, "reload_refused", error = why.as_str());
                        notify::reloaded(&format!("{}: reload refused, running on the previous config", mesh.config.node));
                    }
                }
                mesh.publish(&k, &shared);
                if let Some(reply) = reply {
                    let _gone = reply.send(outcome.map(|c| {
                        api::Response::Reloaded(api::Reloaded { changed: c.names() })
                    }));
                }
            }
        }
    }

    notify::stopping();
    drop(io.sender.take());
    api_task.abort();
    if let Some(t) = http_task {
        t.abort();
    }
    events_task.abort();
    // The socket is ours; a later agent would replace it anyway.
    let _gone = std::fs::remove_file(&config.api.socket);
    let dp = &io.dp;
    let reasons = dp.reasons().context("reading the reason counters")?;
    crate::event!(
        INFO,
        "stopped",
        node = config.node.as_str(),
        forwarding = if dp.pinned() { "kept" } else { "detached" },
        reasons = %reason_object(&reasons),
        reexec = stopped == super::Stopped::Reexec
    );
    Ok(stopped)
}

/// TCX chains are looked at every this many telemetry intervals.
const HOOK_CHECK_TICKS: u64 = 5;

/// A timer every `ms` that skips the ticks a busy loop missed.
fn every(ms: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_millis(ms));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// The next multiple of `window_ms` in wall-clock time (when, and which, in ms). Every agent reads its counters
/// for detection at these instants, so the two ends of a link count over the same
/// interval (to within clock sync and timer lateness) even while traffic shifts; reads at
/// each agent's own phase turned every reroute into apparent loss.
fn aligned(window_ms: u64) -> (tokio::time::Instant, u64) {
    let now_ms = (super::unix_now() * 1000.0) as u64;
    let w = window_ms.max(1);
    let next = (now_ms / w + 1) * w;
    (
        tokio::time::Instant::now() + Duration::from_millis(next - now_ms),
        next,
    )
}

impl Mesh {
    /// Looks at the TCX chains our programs are in: ours where it should be (first at an
    /// ingress we forward from; first at egress when `tc_position` says so), everyone
    /// else's in any order. Reports what changed.
    fn check_hooks(&mut self) {
        use aya::programs::TcAttachType;
        let mut chains = Vec::new();
        for p in &self.programs {
            let (iface, direction, at, first) = if let Some(i) = p.attachment.strip_prefix("tcxin-")
            {
                (i, "ingress", TcAttachType::Ingress, true)
            } else if let Some(i) = p.attachment.strip_prefix("tcx-") {
                let first = self.config.dataplane.tc_position == crate::config::TcPosition::First;
                (i, "egress", TcAttachType::Egress, first)
            } else {
                continue;
            };
            // An interface that is gone is the interface watch's to report.
            let Ok(programs) = crate::dataplane::Dataplane::tcx_chain(iface, at) else {
                continue;
            };
            let chain = hookwatch::Chain {
                iface: iface.to_owned(),
                direction,
            };
            chains.push(hookwatch::Found {
                chain,
                programs,
                ours: p.program_id,
                first,
            });
        }
        for (chain, trouble) in self.hooks.check(chains) {
            metrics::counter!("x0tta6bl4_hook_changes_total").increment(1);
            match trouble {
                Some(t) => crate::event!(
                    WARN,
                    "hooks_changed",
                    iface = chain.iface.as_str(),
                    hook = chain.direction,
                    trouble = %t
                ),
                None => crate::event!(
                    INFO,
                    "hooks_restored",
                    iface = chain.iface.as_str(),
                    hook = chain.direction
                ),
            }
        }
    }

    fn publish(&mut self, k: &Knowledge, shared: &Shared) {
        let now_ms = monotonic_ns().map(ms).unwrap_or(0);
        let up = k.neighbors.iter().filter(|n| n.adjacent()).count();
        metrics::gauge!("x0tta6bl4_neighbors_adjacent").set(up as f64);
        self.neighbor_gauges(k);
        metrics::gauge!("x0tta6bl4_lsdb_adverts").set(k.lsdb.len() as f64);
        let blocked: usize = self
            .detection
            .as_ref()
            .map_or(0, |d| d.blocks.values().map(Vec::len).sum());
        metrics::gauge!("x0tta6bl4_sources_blocked").set(blocked as f64);
        let limited: usize = self
            .detection
            .as_ref()
            .map_or(0, |d| d.limits.values().map(Vec::len).sum());
        metrics::gauge!("x0tta6bl4_sources_limited").set(limited as f64);
        metrics::gauge!("x0tta6bl4_routes_installed")
            .set((k.installed.v4.len() + k.installed.v6.len()) as f64);
        metrics::counter!("x0tta6bl4_spf_runs_total").absolute(k.spf_runs);
        let degraded = health::degraded(&health::Inputs {
            routing: self.routing,
            adjacent: up,
            map_error: self.map_error.as_deref(),
            hooks: &self.hooks.troubles(),
        });
        metrics::gauge!("x0tta6bl4_ready").set(if degraded.is_empty() { 1.0 } else { 0.0 });
        let status = api::Status {
            node: self.config.node.clone(),
            degraded,
            build: crate::build_info::running_version(),
            routing: self.routing,
            frozen: shared.frozen.load(Ordering::Relaxed),
            restart_hold: self.hold_until_ns != 0,
            neighbors: k.neighbors.len(),
            adjacent: up,
            adverts: k.lsdb.len(),
            routes_v4: k.installed.v4.len(),
            routes_v6: k.installed.v6.len(),
            groups: k.installed.groups.len(),
            spf_runs: k.spf_runs,
            actions: k.history.len(),
            probe_interval_ms: self.config.probe.interval_ms,
            hello_interval_ms: self.config.routing.hello_interval_ms,
            probe_dead_ms: self.config.probe.dead_ms,
            programs: self.programs.clone(),
        };
        if let Ok(mut m) = shared.mesh.write() {
            *m = Some(api::MeshViews {
                status,
                neighbors: k.neighbors_view(),
                routes: k.routes_view(),
                lsdb: k.lsdb_view(now_ms),
                events: k.events_view(),
                anomalies: self.detection.as_ref().map(|d| d.view(now_ms)),
                window: self.detection.as_ref().map(Detection::window_view),
                peers: self.secure.as_ref().map(|s| s.view(now_ms)),
            });
        }
    }
}
