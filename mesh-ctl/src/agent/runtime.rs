//! The agent's event loop: starts (or adopts) the data plane, then runs the MAPE-K stages
//! on their timers and on control messages until SIGINT or SIGTERM.

use std::{
    collections::BTreeSet,
    net::SocketAddrV6,
    path::Path,
    sync::{Arc, Mutex, RwLock, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use mesh_common::types::NextHop;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::json;

use super::{
    Collector, RECENT_EVENTS, analyze,
    anomaly::{Decision, Remedy, Target},
    detection::{self, Detection},
    event,
    execute::{self, Installed},
    fan,
    knowledge::Knowledge,
    monitor::{self, HelloOutcome},
    monotonic_ns, plan, prepare, read_events, reason_object,
    secured::{Outcome, Secured},
};
use crate::{
    api::{self, Shared},
    config::{Config, MacAddr},
    control::{Control, Message, Received},
    dataplane::{Dataplane, FlowRecord, pins::PinDir},
    detect::{Class, live::Insert},
    probe::{Sender, quality::Settings},
    routes::Tables,
    routing::{self, Lsa, LsaLink, Lsdb, Receive},
    secure::Refusal,
    telemetry::{LinkName, Snapshot, events::Recent, metrics as tmetrics},
};

const STAGE: &str = "x0tta6bl4_mapek_stage_duration_seconds";
const STAGE_BUCKETS: &[f64] = &[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1];

fn ms(now_ns: u64) -> u64 {
    now_ns / 1_000_000
}

fn record_stage(stage: &'static str, started: Instant) {
    metrics::histogram!(STAGE, "stage" => stage).record(started.elapsed().as_secs_f64());
}

pub async fn run(file: &Path) -> anyhow::Result<()> {
    let (config, mut tables) = prepare(file)?;
    let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
    let pins = PinDir::new(&config.dataplane.pin_dir);
    let (mut dp, start) = Dataplane::open(&pins, config.telemetry.flow_capacity)
        .context("opening the data plane (loading it, or adopting its pins)")?;
    let adopted = start == crate::dataplane::Start::Adopted;
    let mut installed = Installed::default();
    let tc_mode = if adopted {
        let pinned: BTreeSet<String> = dp.pinned_interfaces().into_iter().collect();
        let wanted: BTreeSet<String> = names.iter().cloned().collect();
        if pinned != wanted {
            bail!(
                "the data plane pinned at {} runs on {:?} but the config names {:?}; run \
                 `meshctl detach --pin-dir {}` first (forwarding stops until the agent is back)",
                pins.root().display(),
                pinned,
                wanted,
                pins.root().display()
            );
        }
        if config.dataplane.hash_seed == 0 {
            // Same seed as before: flows keep their paths across the restart.
            tables.config.hash_seed = dp
                .read_config()
                .context("reading the running config")?
                .hash_seed;
        }
        dp.install_base(&tables)
            .context("updating interfaces and settings")?;
        installed = Installed::adopt(&dp).context("reading the installed routes")?;
        "adopted"
    } else {
        let attached = (|| {
            dp.install_base(&tables)
                .context("installing interfaces and settings")?;
            dp.attach(&names, config.dataplane.xdp_mode)
                .context("attaching to the mesh interfaces")?;
            let mode = dp
                .attach_egress(
                    &names,
                    config.dataplane.tc_attach,
                    config.dataplane.tc_position,
                )
                .context("attaching TC egress telemetry to the mesh interfaces")?;
            dp.persist().context("pinning the attachments")?;
            anyhow::Ok(mode)
        })();
        match attached {
            Ok(mode) => mode.name(),
            Err(e) => {
                // All or nothing: a half-started data plane must not be adopted later.
                dp.detach_all();
                let _ = crate::dataplane::detach_pinned(&pins);
                return Err(e);
            }
        }
    };
    let statics = plan::static_routes(&tables);
    installed
        .apply(&mut dp, &statics, adopted)
        .context("installing static routes")?;
    let events = dp.take_events().context("opening the event ring buffer")?;

    if config.metrics.enabled {
        PrometheusBuilder::new()
            .with_http_listener(config.metrics.listen)
            .set_buckets_for_metric(
                Matcher::Full(tmetrics::MAP_READ.to_owned()),
                tmetrics::MAP_READ_BUCKETS,
            )
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(STAGE.to_owned()), STAGE_BUCKETS))
            .context("configuring the Prometheus exporter")?
            .install()
            .with_context(|| {
                format!(
                    "starting the Prometheus listener on {}",
                    config.metrics.listen
                )
            })?;
        tmetrics::describe();
        metrics::describe_histogram!(STAGE, metrics::Unit::Seconds, "Time per MAPE-K stage run");
        metrics::describe_counter!("x0tta6bl4_actions_total", "Agent actions by kind");
        metrics::describe_gauge!("x0tta6bl4_neighbors_adjacent", "Neighbours routing may use");
        metrics::describe_gauge!("x0tta6bl4_lsdb_adverts", "Link-state adverts held");
        metrics::describe_gauge!("x0tta6bl4_routes_installed", "Routes in the data plane");
        metrics::describe_counter!("x0tta6bl4_spf_runs_total", "Shortest-path computations");
        metrics::describe_counter!(
            "x0tta6bl4_control_malformed_total",
            "Control datagrams that were not a message"
        );
    }
    let shared = Arc::new(Shared {
        node: config.node.clone(),
        snapshot: RwLock::new(Snapshot::default()),
        recent: Mutex::new(Recent::new(RECENT_EVENTS)),
        mesh: RwLock::new(json!({})),
        frozen: std::sync::atomic::AtomicBool::new(false),
    });
    let listener = api::bind(&config.api.socket).context("opening the API socket")?;
    let api_task = tokio::spawn(api::serve(listener, shared.clone()));
    let links: Vec<LinkName> = tables
        .ifaces
        .iter()
        .zip(&names)
        .map(|((ifindex, _), name)| LinkName {
            name: name.clone(),
            ifindex: *ifindex,
        })
        .collect();
    let events_task = tokio::spawn(read_events(events, shared.clone(), links.clone()));
    let mut collector = Collector::new(&config, links);

    let now = monotonic_ns()?;
    let mut lsdb = Lsdb::new(&config.node, config.routing.max_age_s * 1000);
    lsdb.set_seq_floor((super::unix_now() * 1000.0) as u64);
    let mut k = Knowledge::new(lsdb, installed, tables.neighbors.len() as u32);
    if adopted {
        for (slot, peer) in dp.probe_peers().context("reading the probe slots")? {
            k.slots.push(((peer.ifindex, peer.mac), slot));
            k.next_slot = k.next_slot.max(slot + 1);
        }
    }
    let mut mesh = Mesh {
        routing: config.routing.enabled,
        config: config.clone(),
        tables: tables.clone(),
        names: names.clone(),
        statics,
        hold_until_ns: if adopted {
            now + config.routing.restart_hold_ms * 1_000_000
        } else {
            0
        },
        spf_due: None,
        last_refresh_ns: now,
        settings: Settings {
            window_ns: config.probe.window_ms * 1_000_000,
            // With fast reroute off the agent still needs a silence threshold.
            dead_ns: if config.probe.dead_ms == 0 {
                4 * config.probe.interval_ms
            } else {
                config.probe.dead_ms
            } * 1_000_000,
            up_hold_ns: config.probe.up_hold_ms * 1_000_000,
            cost_change_pct: config.probe.cost_change_pct,
        },
        frozen_logged: false,
        secure: None,
        detection: if config.detect.enabled && config.routing.enabled {
            Some(
                Detection::new(&config.detect, (super::unix_now() * 1000.0) as u64)
                    .context("setting up anomaly detection")?,
            )
        } else {
            None
        },
    };
    let (mut outcomes, mut listener_refusals) = (None, None);
    if let Some(sc) = config
        .security
        .as_ref()
        .filter(|s| s.enabled && mesh.routing)
    {
        let (s, o, r) = Secured::start(sc)?;
        mesh.secure = Some(s);
        (outcomes, listener_refusals) = (Some(o), Some(r));
    }
    let control = if mesh.routing {
        let ifindexes: Vec<u32> = tables.ifaces.iter().map(|(i, _)| *i).collect();
        Some(Control::bind(config.routing.port, &ifindexes).context("opening the control socket")?)
    } else {
        None
    };
    let sender = if mesh.routing {
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
    if mesh.routing {
        mesh.originate(&mut k, control.as_ref(), None).await;
    }

    collector
        .collect(&dp, &shared, config.metrics.enabled)
        .context("reading the telemetry maps")?;
    mesh.publish(&k, &shared);
    event(json!({
        "event": "attached",
        "node": config.node,
        "interfaces": names,
        "tc_egress": tc_mode,
        "adopted": adopted,
        "pin_dir": pins.root(),
        "routes_v4": k.installed.v4.len(),
        "routes_v6": k.installed.v6.len(),
        "groups": k.installed.groups.len(),
        "flow_capacity": dp.flow_capacity(),
        "routing": mesh.routing,
        "probe_realtime": sender.as_ref().map(|s| match s.realtime() {
            Ok(()) => json!(true),
            Err(why) => json!(why),
        }),
        "metrics": config.metrics.enabled.then(|| config.metrics.listen.to_string()),
        "socket": config.api.socket,
    }));

    let mut telemetry_tick =
        tokio::time::interval(Duration::from_millis(config.telemetry.interval_ms));
    telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut probe_tick = tokio::time::interval(Duration::from_millis(config.probe.interval_ms));
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut hello_tick =
        tokio::time::interval(Duration::from_millis(config.routing.hello_interval_ms));
    hello_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut buf = Control::buffer();
    let mut scratch = Vec::new();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let window = Duration::from_millis(config.detect.window_ms);
    let (mut report_at, mut slot) = aligned(config.detect.window_ms);
    // The window just reported on, analysed half a window later: by then every agent's
    // report for the same instant has arrived.
    let mut analysis: Option<(tokio::time::Instant, u64)> = None;
    loop {
        let spf_at = mesh.spf_due.map_or(far, tokio::time::Instant::from_std);
        let analyze_at = analysis.map_or(far, |a| a.0);
        tokio::select! {
            _ = tokio::time::sleep_until(report_at), if mesh.detection.is_some() => {
                let this = slot;
                (report_at, slot) = aligned(config.detect.window_ms);
                if let Err(e) = collector.collect(&dp, &shared, config.metrics.enabled) {
                    event(json!({"event": "telemetry_error", "error": format!("{e:#}")}));
                    continue;
                }
                mesh.report(&k, control.as_ref(), &shared, &collector.flows, this).await;
                analysis = Some((tokio::time::Instant::now() + window / 2, this));
            }
            _ = tokio::time::sleep_until(analyze_at), if analysis.is_some() => {
                if let Some((_, this)) = analysis.take() {
                    mesh.analyze_window(&mut dp, &mut k, &collector.flows, this);
                }
            }
            _ = telemetry_tick.tick() => {
                if let Err(e) = collector.collect(&dp, &shared, config.metrics.enabled) {
                    // A failed read is reported and retried next interval; forwarding
                    // does not depend on it.
                    event(json!({"event": "telemetry_error", "error": format!("{e:#}")}));
                }
                mesh.publish(&k, &shared);
            }
            _ = probe_tick.tick(), if mesh.routing => {
                let (Some(sender), Ok(now)) = (sender.as_ref(), monotonic_ns()) else { continue };
                let started = Instant::now();
                match monitor::probes(&dp, sender, &mut k, &config.node, &mesh.settings, now, &mut scratch) {
                    Ok(changes) if !changes.is_empty() => {
                        record_stage("monitor", started);
                        let started = Instant::now();
                        let findings = analyze::links(&changes);
                        record_stage("analyze", started);
                        for f in findings {
                            k.act("analyze", f.kind, f.detail, f.reason);
                        }
                        mesh.originate(&mut k, control.as_ref(), None).await;
                    }
                    Ok(_) => record_stage("monitor", started),
                    Err(e) => event(json!({"event": "probe_error", "error": format!("{e:#}")})),
                }
            }
            _ = hello_tick.tick(), if mesh.routing => {
                let Ok(now) = monotonic_ns() else { continue };
                mesh.hellos(&k, control.as_ref()).await;
                let lost = analyze::hello_timeouts(
                    &mut k,
                    now,
                    config.routing.hello_dead_ms * 1_000_000,
                    config.routing.restart_grace_ms * 1_000_000,
                );
                if !lost.is_empty() {
                    for f in lost {
                        k.act("analyze", f.kind, f.detail, f.reason);
                    }
                    mesh.peers_changed(&mut dp, &k, sender.as_ref());
                    mesh.originate(&mut k, control.as_ref(), None).await;
                }
                if let Some(s) = mesh.secure.as_mut() {
                    let grace = config.routing.hello_dead_ms;
                    s.retain(ms(now), grace, |node| k.neighbors.iter().any(|n| n.node == node));
                }
                if !k.lsdb.expire(ms(now)).is_empty() {
                    mesh.spf_soon();
                }
                if now.saturating_sub(mesh.last_refresh_ns) >= config.routing.refresh_s * 1_000_000_000 {
                    mesh.last_refresh_ns = now;
                    mesh.originate(&mut k, control.as_ref(), Some(true)).await;
                }
                if mesh.hold_until_ns != 0 && now >= mesh.hold_until_ns {
                    mesh.hold_until_ns = 0;
                    // Adjacencies are back: now our advert may replace the one from our
                    // previous life, which the mesh routed on meanwhile.
                    mesh.originate(&mut k, control.as_ref(), Some(true)).await;
                }
            }
            r = async { match control.as_ref() { Some(c) => c.recv(&mut buf).await, None => std::future::pending().await } } => {
                match r {
                    Ok(Received::Message { msg, ifindex, from }) => {
                        mesh.on_message(&mut dp, &mut k, control.as_ref(), sender.as_ref(), msg, ifindex, from, None).await;
                    }
                    Ok(Received::Sealed { bytes, ifindex, from }) => {
                        let now = monotonic_ns().map(ms).unwrap_or(0);
                        let opened = mesh.secure.as_mut().and_then(|s| s.open((ifindex, *from.ip()), &bytes, now));
                        if let Some((msg, node)) = opened {
                            mesh.on_message(&mut dp, &mut k, control.as_ref(), sender.as_ref(), msg, ifindex, from, Some(node)).await;
                        } else if mesh.secure.is_none() {
                            metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
                        }
                    }
                    Ok(Received::Malformed { ifindex, error }) => {
                        metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
                        event(json!({"event": "control_malformed", "ifindex": ifindex, "error": error.to_string()}));
                    }
                    Err(e) => event(json!({"event": "control_error", "error": format!("{e:#}")})),
                }
            }
            o = async { match outcomes.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                if let Some(o) = o {
                    mesh.handshake_done(&k, control.as_ref(), o).await;
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
                if let Err(e) = mesh.reconverge(&mut dp, &mut k) {
                    event(json!({"event": "execute_error", "error": format!("{e:#}")}));
                }
                mesh.publish(&k, &shared);
            }
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for SIGINT")?;
                break;
            }
            _ = term.recv() => break,
        }
    }

    drop(sender);
    api_task.abort();
    events_task.abort();
    // The socket is ours; a later agent would replace it anyway.
    let _gone = std::fs::remove_file(&config.api.socket);
    let reasons = dp.reasons().context("reading the reason counters")?;
    event(json!({
        "event": "stopped",
        "node": config.node,
        "forwarding": if dp.pinned() { "kept" } else { "detached" },
        "reasons": reason_object(&reasons),
    }));
    Ok(())
}

/// The form an advert travels in with security on: signed by its origin (ours signed
/// now, others' as their origin signed them); other messages as they are. `None` for an
/// advert we hold no signature of: it is never passed on unsigned.
fn signed_form(s: &mut Secured, me: &str, msg: &Message) -> Option<Message> {
    match msg {
        Message::Lsa(l) => s
            .signed_of(&l.origin, l.seq)
            .map(<[u8]>::to_vec)
            .or_else(|| (l.origin == me).then(|| s.sign(l)).flatten())
            .map(Message::SignedLsa),
        m => Some(m.clone()),
    }
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

/// The routing side of the agent's state.
struct Mesh {
    routing: bool,
    config: Config,
    tables: Tables,
    names: Vec<String>,
    statics: plan::Desired,
    /// While non-zero (after adopting a running data plane), routes are only added.
    hold_until_ns: u64,
    spf_due: Option<Instant>,
    last_refresh_ns: u64,
    settings: Settings,
    frozen_logged: bool,
    detection: Option<Detection>,
    secure: Option<Secured>,
}

impl Mesh {
    fn spf_soon(&mut self) {
        // A short delay batches the adverts of one event (both ends of a link report it).
        self.spf_due
            .get_or_insert(Instant::now() + Duration::from_millis(2));
    }

    fn iface_mac(&self, ifindex: u32) -> MacAddr {
        self.tables
            .ifaces
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map(|(_, f)| MacAddr(f.mac))
            .unwrap_or_default()
    }

    async fn hellos(&mut self, k: &Knowledge, control: Option<&Control>) {
        let Some(c) = control else { return };
        let now = monotonic_ns().map(ms).unwrap_or(0);
        for (ifindex, _) in &self.tables.ifaces {
            let hello = Message::Hello(monitor::our_hello(
                k,
                &self.config.node,
                *ifindex,
                self.iface_mac(*ifindex),
                self.config.routing.hello_interval_ms,
                self.hold_until_ns != 0,
            ));
            // With security on, the multicast hello only announces us; the sealed copies
            // to each neighbour we have a session with are what it believes.
            if let Err(e) = c.multicast(*ifindex, &hello).await {
                event(json!({"event": "control_error", "error": format!("{e:#}")}));
            }
            if let Some(s) = self.secure.as_mut() {
                for addr in s.addrs_on(*ifindex) {
                    if let Some(bytes) = s.seal(addr, &hello, now) {
                        let to = SocketAddrV6::new(addr.1, self.config.routing.port, 0, addr.0);
                        if let Err(e) = c.send_bytes(to, &bytes).await {
                            event(json!({"event": "control_error", "error": format!("{e:#}")}));
                        }
                    }
                }
            }
        }
    }

    /// A handshake ended: on success, greet the peer at once (a sealed hello) and send
    /// it our database.
    async fn handshake_done(&mut self, k: &Knowledge, control: Option<&Control>, o: Outcome) {
        let now = monotonic_ns().map(ms).unwrap_or(0);
        let addr = o.addr;
        let Some(node) = self.secure.as_mut().and_then(|s| s.finished(o, now)) else {
            return;
        };
        event(
            json!({"event": "session", "peer": node, "ifindex": addr.0, "address": addr.1.to_string()}),
        );
        self.hellos(k, control).await;
        let to = SocketAddrV6::new(addr.1, self.config.routing.port, 0, addr.0);
        self.exchange(k, control, to).await;
    }

    /// Sends one message to one neighbour: sealed for its session with security on (an
    /// advert as its origin signed it), as it is otherwise.
    async fn send_one(&mut self, control: Option<&Control>, to: SocketAddrV6, msg: &Message) {
        let Some(c) = control else { return };
        let Some(s) = self.secure.as_mut() else {
            let _ = c.send(to, msg).await;
            return;
        };
        let now = monotonic_ns().map(ms).unwrap_or(0);
        let Some(msg) = signed_form(s, &self.config.node, msg) else {
            return;
        };
        if let Some(bytes) = s.seal((to.scope_id(), *to.ip()), &msg, now) {
            let _ = c.send_bytes(to, &bytes).await;
        }
    }

    /// Originates our advert if its content changed (or `force`), floods it, plans SPF.
    async fn originate(
        &mut self,
        k: &mut Knowledge,
        control: Option<&Control>,
        force: Option<bool>,
    ) {
        let Ok(now) = monotonic_ns() else { return };
        if self.hold_until_ns != 0 {
            // Restarting: an advert now would list only the adjacencies relearnt so far.
            return;
        }
        let mut links: Vec<LsaLink> = Vec::new();
        for n in k.neighbors.iter().filter(|n| n.adjacent()) {
            let cost = n.quality.cost.unwrap_or(u32::MAX);
            match links.iter_mut().find(|l| l.neighbor == n.node) {
                Some(l) => l.cost = l.cost.min(cost),
                None => links.push(LsaLink {
                    neighbor: n.node.clone(),
                    cost,
                }),
            }
        }
        links.sort();
        let mut prefixes = self.config.routing.prefixes.clone();
        prefixes.sort();
        let same = k
            .lsdb
            .own()
            .is_some_and(|own| own.links == links && own.prefixes == prefixes);
        if same && force.is_none() {
            return;
        }
        let lsa = k.lsdb.originate(links, prefixes, ms(now));
        if !same {
            k.act(
                "plan",
                "advert",
                format!("seq {} with {} links", lsa.seq, lsa.links.len()),
                "our links changed".to_owned(),
            );
        }
        self.flood(k, control, &Message::Lsa(lsa), None).await;
        self.spf_soon();
    }

    /// Once per detection window, right after a telemetry read: our report for the
    /// instant `slot_ms`, to every agent and to ourselves.
    async fn report(
        &mut self,
        k: &Knowledge,
        control: Option<&Control>,
        shared: &Shared,
        flows: &[FlowRecord],
        slot_ms: u64,
    ) {
        let Ok(now_ns) = monotonic_ns() else {
            return;
        };
        let now = ms(now_ns);
        let live = fan::live(flows, self.live_since(now_ns));
        let edge = self.edge(k);
        let fans = (
            fan::fan_in(&live, &self.config.routing.prefixes),
            fan::fan_out(&live, &edge),
        );
        let Some(d) = self.detection.as_mut() else {
            return;
        };
        let report = match shared.snapshot.read() {
            Ok(snap) => d.own_report(&self.config.node, slot_ms, now, &snap, &k.neighbors, fans),
            Err(_) => return,
        };
        if let Err(e) = d.receive(report.clone(), now) {
            event(json!({"event": "detect_error", "error": e.to_string()}));
            return;
        }
        self.flood(k, control, &Message::Report(report), None).await;
    }

    /// The detector over everyone's reports for the window ending at `slot_ms`, then the
    /// Plan stage's decisions.
    fn analyze_window(
        &mut self,
        dp: &mut Dataplane,
        k: &mut Knowledge,
        flows: &[FlowRecord],
        slot_ms: u64,
    ) {
        let Ok(now_ns) = monotonic_ns() else {
            return;
        };
        let now = ms(now_ns);
        match execute::expire_blocks(dp, now_ns) {
            Ok(gone) if !gone.is_empty() => k.act(
                "execute",
                "unblocked",
                format!("{} sources", gone.len()),
                "their block expired".into(),
            ),
            Ok(_) => {}
            Err(e) => event(json!({"event": "execute_error", "error": format!("{e:#}")})),
        }
        let Some(d) = self.detection.as_mut() else {
            return;
        };
        let started = Instant::now();
        let decisions = match d.analyze(slot_ms, now) {
            Ok(decisions) => decisions,
            Err(e) => {
                event(json!({"event": "detect_error", "error": format!("{e:#}")}));
                return;
            }
        };
        record_stage("analyze", started);
        for dec in &decisions {
            let (detail, reason) = detection::describe(dec);
            k.act("plan", dec.name(), detail, reason);
        }
        // The flow table is read again only when an attack's sources are to be blocked.
        let blocking = decisions.iter().any(|d| {
            matches!(
                d,
                Decision::Act {
                    remedy: Remedy::BlockSources,
                    ..
                }
            )
        });
        let (live, edge) = if blocking {
            (fan::live(flows, self.live_since(now_ns)), self.edge(k))
        } else {
            (Vec::new(), BTreeSet::new())
        };
        let dc = &self.config.detect;
        for dec in &decisions {
            match dec {
                Decision::Act {
                    target: target @ Target::Node { node },
                    class,
                    remedy: Remedy::BlockSources,
                    hold_ms,
                    ..
                } => {
                    let limit = dc.max_blocked as usize;
                    let sources = if *class == Class::Scanner {
                        fan::scanners(&live, &edge, dc.scan_targets, limit)
                    } else {
                        let victim = if *node == self.config.node {
                            self.config.routing.prefixes.clone()
                        } else {
                            k.lsdb
                                .advert(node, now)
                                .map(|l| l.prefixes)
                                .unwrap_or_default()
                        };
                        // Flows that began before the attack was first seen are spared.
                        let onset = now_ns.saturating_sub(
                            u64::from(dc.confirm_windows + 2) * dc.window_ms * 1_000_000,
                        );
                        fan::flood_sources(&live, &victim, &edge, onset, limit)
                    };
                    let until = now_ns + hold_ms * 1_000_000;
                    let done = execute::block(dp, sources, until);
                    if !done.is_empty() {
                        let shown: Vec<String> =
                            done.iter().take(8).map(ToString::to_string).collect();
                        k.act(
                            "execute",
                            "blocked",
                            format!(
                                "{} sources entering here ({}{})",
                                done.len(),
                                shown.join(", "),
                                if done.len() > 8 { ", ..." } else { "" }
                            ),
                            format!("the {} at {target}", class.name()),
                        );
                    }
                    metrics::counter!("x0tta6bl4_blocked_sources_total")
                        .increment(done.len() as u64);
                    if let Some(d) = self.detection.as_mut() {
                        d.blocks.insert(target.clone(), done);
                    }
                }
                Decision::Revert { target, .. } => {
                    let gone = self
                        .detection
                        .as_mut()
                        .and_then(|d| d.blocks.remove(target))
                        .unwrap_or_default();
                    execute::unblock(dp, gone);
                }
                _ => {}
            }
        }
        if decisions.iter().any(|d| d.changes_routes()) {
            self.spf_soon();
        }
    }

    /// Flows seen within the last two windows are live.
    fn live_since(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(2 * self.config.detect.window_ms * 1_000_000)
    }

    /// Our interfaces with no mesh neighbour on them: where hosts, and attacks, enter.
    fn edge(&self, k: &Knowledge) -> BTreeSet<u32> {
        self.tables
            .ifaces
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !k.neighbors.iter().any(|n| n.ifindex == *i))
            .collect()
    }

    async fn flood(
        &mut self,
        k: &Knowledge,
        control: Option<&Control>,
        msg: &Message,
        except: Option<u32>,
    ) {
        let Some(c) = control else { return };
        if self.secure.is_some() {
            let to: Vec<SocketAddrV6> = k
                .neighbors
                .iter()
                .filter(|n| n.two_way && Some(n.ifindex) != except)
                .map(|n| n.addr)
                .collect();
            for addr in to {
                self.send_one(control, addr, msg).await;
            }
            return;
        }
        let ifaces: BTreeSet<u32> = k
            .neighbors
            .iter()
            .filter(|n| n.two_way && Some(n.ifindex) != except)
            .map(|n| n.ifindex)
            .collect();
        for ifindex in ifaces {
            if let Err(e) = c.multicast(ifindex, msg).await {
                event(json!({"event": "control_error", "error": format!("{e:#}")}));
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the loop's state, borrowed apart"
    )]
    async fn on_message(
        &mut self,
        dp: &mut Dataplane,
        k: &mut Knowledge,
        control: Option<&Control>,
        sender: Option<&Sender>,
        msg: Message,
        ifindex: u32,
        from: SocketAddrV6,
        sealed_by: Option<String>,
    ) {
        let Ok(now) = monotonic_ns() else { return };
        if let Some(s) = self.secure.as_mut() {
            match (&msg, &sealed_by) {
                // In the clear, a hello only announces a node: dial it.
                (Message::Hello(h), None) => {
                    // Dial a node we have no working session with, or one that says it
                    // restarted (its keys are gone); the old session stays until the new
                    // one replaces it.
                    let quiet = self.config.routing.hello_dead_ms;
                    let addr = (ifindex, *from.ip());
                    if h.restarting || s.live_peer_at(addr, ms(now), quiet) != Some(h.node.as_str())
                    {
                        s.dial(&self.config.node, &h.node, addr, ms(now));
                    }
                    return;
                }
                (Message::Hello(h), Some(node)) if h.node != *node => {
                    s.refuse(node, Refusal::WrongPeer, ms(now));
                    return;
                }
                (Message::Lsa(_), _) | (_, None) => {
                    let who = sealed_by.clone().unwrap_or_else(|| from.ip().to_string());
                    s.refuse(&who, Refusal::Unauthenticated, ms(now));
                    return;
                }
                _ => {}
            }
        } else if matches!(msg, Message::SignedLsa(_)) {
            // Signed adverts need the trust bundle to be checked: not configured here.
            metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
            return;
        }
        match msg {
            Message::SignedLsa(bytes) => {
                let from_node = sealed_by.unwrap_or_default();
                let Some(s) = self.secure.as_mut() else {
                    return;
                };
                let Some(lsa) = s.check_advert(&bytes, &from_node, ms(now)) else {
                    return;
                };
                self.take_advert(k, control, lsa, Some(bytes), ifindex, from, now)
                    .await;
            }
            Message::Hello(h) => {
                let started = Instant::now();
                let outcome = monitor::hello(
                    k,
                    &self.tables,
                    &self.names,
                    &self.config.node,
                    &h,
                    ifindex,
                    from,
                    now,
                );
                record_stage("monitor", started);
                let iface = self.name_of(ifindex);
                if let Some(f) = analyze::hello(&h.node, &iface, &outcome) {
                    k.act("analyze", f.kind, f.detail, f.reason);
                }
                match outcome {
                    HelloOutcome::New { two_way } => {
                        self.peers_changed(dp, k, sender);
                        // Answer at once: the far side learns of us a hello interval sooner.
                        self.hellos(k, control).await;
                        if two_way {
                            self.exchange(k, control, from).await;
                            self.originate(k, control, None).await;
                        }
                    }
                    HelloOutcome::TwoWay(true) => {
                        self.exchange(k, control, from).await;
                        self.originate(k, control, None).await;
                    }
                    HelloOutcome::Restarted => self.exchange(k, control, from).await,
                    HelloOutcome::TwoWay(false) => self.originate(k, control, None).await,
                    HelloOutcome::Nothing => {}
                }
            }
            Message::Report(r) => {
                let Some(d) = self.detection.as_mut() else {
                    return;
                };
                match d.receive(r.clone(), ms(now)) {
                    Ok(Insert::New) => {
                        self.flood(k, control, &Message::Report(r), Some(ifindex))
                            .await;
                    }
                    Ok(Insert::Old) => {}
                    Err(e) => {
                        metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
                        event(
                            json!({"event": "report_refused", "from": from.to_string(), "error": e.to_string()}),
                        );
                    }
                }
            }
            Message::Lsa(lsa) => {
                self.take_advert(k, control, lsa, None, ifindex, from, now)
                    .await;
            }
        }
    }

    /// An advert for the LSDB (with the origin's signed encoding when authenticated):
    /// a newer one is passed on and routes recomputed, an older one answered with ours.
    #[expect(
        clippy::too_many_arguments,
        reason = "the loop's state, borrowed apart"
    )]
    async fn take_advert(
        &mut self,
        k: &mut Knowledge,
        control: Option<&Control>,
        lsa: Lsa,
        signed: Option<Vec<u8>>,
        ifindex: u32,
        from: SocketAddrV6,
        now: u64,
    ) {
        match k.lsdb.receive(lsa.clone(), ms(now)) {
            Receive::New | Receive::Newer => {
                if let (Some(s), Some(bytes)) = (self.secure.as_mut(), signed) {
                    s.keep(&lsa, bytes);
                }
                self.flood(k, control, &Message::Lsa(lsa), Some(ifindex))
                    .await;
                self.spf_soon();
            }
            Receive::Older => {
                if let Some(ours) = k.lsdb.advert(&lsa.origin, ms(now)) {
                    self.send_one(control, from, &Message::Lsa(ours)).await;
                }
            }
            Receive::OwnNewer => self.originate(k, control, Some(true)).await,
            Receive::Duplicate | Receive::Expired => {}
        }
    }

    /// Database exchange: everything we hold, to a neighbour that just became two-way
    /// or restarted.
    async fn exchange(&mut self, k: &Knowledge, control: Option<&Control>, to: SocketAddrV6) {
        for lsa in k.lsdb.adverts().cloned().collect::<Vec<_>>() {
            self.send_one(control, to, &Message::Lsa(lsa)).await;
        }
    }

    fn name_of(&self, ifindex: u32) -> String {
        self.tables
            .ifaces
            .iter()
            .position(|(i, _)| *i == ifindex)
            .and_then(|p| self.names.get(p).cloned())
            .unwrap_or_else(|| ifindex.to_string())
    }

    /// Tells the data plane and the probe sender who the neighbours are now.
    fn peers_changed(&self, dp: &mut Dataplane, k: &Knowledge, sender: Option<&Sender>) {
        let peers = execute::peers(dp, k, &self.tables.neighbors);
        if let Some(s) = sender {
            s.set_peers(peers);
        }
    }

    /// SPF, Plan and Execute: recomputes routes and writes what changed.
    fn reconverge(&mut self, dp: &mut Dataplane, k: &mut Knowledge) -> anyhow::Result<()> {
        let started = Instant::now();
        let avoid = self
            .detection
            .as_ref()
            .map(|d| d.anomalies.avoid())
            .unwrap_or_default();
        let routes = routing::compute_avoiding(&k.lsdb, &self.config.node, &avoid);
        k.spf_runs += 1;
        let hop = |name: &str| -> Option<NextHop> {
            k.neighbors
                .iter()
                .filter(|n| n.node == name && n.adjacent())
                .min_by_key(|n| n.quality.cost)
                .map(|n| NextHop {
                    ifindex: n.ifindex,
                    slot: n.iface_slot,
                    neighbor: n.slot,
                    src_mac: n.local_mac,
                    dst_mac: n.mac.0,
                })
        };
        let want = plan::desired(&self.statics, &routes, &hop);
        let diff = routing::changed(&k.routes, &routes);
        record_stage("plan", started);
        let started = Instant::now();
        let now = monotonic_ns()?;
        let keep = self.hold_until_ns != 0 && now < self.hold_until_ns;
        let applied = k
            .installed
            .apply(dp, &want, keep)
            .context("writing routes to the data plane")?;
        record_stage("execute", started);
        if applied.changed() || !diff.is_empty() {
            let paths: Vec<String> = diff
                .added
                .iter()
                .map(|r| format!("+{} via {}", r.prefix, r.next_hops.join(",")))
                .chain(
                    diff.changed
                        .iter()
                        .filter(|c| c.forwarding_changed())
                        .map(|c| {
                            format!(
                                "{} via {} (was {})",
                                c.new.prefix,
                                c.new.next_hops.join(","),
                                c.old.next_hops.join(",")
                            )
                        }),
                )
                .chain(diff.removed.iter().map(|r| format!("-{}", r.prefix)))
                .collect();
            k.act(
                "execute",
                "routes",
                format!(
                    "{} set, {} removed, {} groups written, {} freed{}: {}",
                    applied.routes_set,
                    applied.routes_removed,
                    applied.groups_written,
                    applied.groups_freed,
                    if keep {
                        " (restart hold: nothing removed)"
                    } else {
                        ""
                    },
                    paths.join("; ")
                ),
                "the LSDB changed".to_owned(),
            );
        }
        k.routes = routes;
        Ok(())
    }

    fn publish(&self, k: &Knowledge, shared: &Shared) {
        let now_ms = monotonic_ns().map(ms).unwrap_or(0);
        let up = k.neighbors.iter().filter(|n| n.adjacent()).count();
        metrics::gauge!("x0tta6bl4_neighbors_adjacent").set(up as f64);
        metrics::gauge!("x0tta6bl4_lsdb_adverts").set(k.lsdb.len() as f64);
        metrics::gauge!("x0tta6bl4_routes_installed")
            .set((k.installed.v4.len() + k.installed.v6.len()) as f64);
        metrics::counter!("x0tta6bl4_spf_runs_total").absolute(k.spf_runs);
        let status = json!({
            "node": self.config.node,
            "routing": self.routing,
            "frozen": shared.frozen.load(Ordering::Relaxed),
            "restart_hold": self.hold_until_ns != 0,
            "neighbors": k.neighbors.len(),
            "adjacent": up,
            "adverts": k.lsdb.len(),
            "routes_v4": k.installed.v4.len(),
            "routes_v6": k.installed.v6.len(),
            "groups": k.installed.groups.len(),
            "spf_runs": k.spf_runs,
            "actions": k.history.len(),
            "probe_interval_ms": self.config.probe.interval_ms,
            "probe_dead_ms": self.config.probe.dead_ms,
        });
        if let Ok(mut m) = shared.mesh.write() {
            *m = json!({
                "status": status,
                "neighbors": k.neighbors_view(),
                "routes": k.routes_view(),
                "lsdb": k.lsdb_view(now_ms),
                "events": k.events_view(),
                "anomalies": self.detection.as_ref().map(|d| d.view(now_ms)),
                "window": self.detection.as_ref().map(Detection::window_view),
                "peers": self.secure.as_ref().map(|s| s.view(now_ms)),
            });
        }
    }
}
