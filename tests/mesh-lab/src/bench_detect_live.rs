//! `cargo xtask bench detect-live`: the detectors on traces recorded from live lab meshes
//! that no training step ever saw: the six-router double diamond, and seven routers that no
//! calibration saw either. Routers run real agents in observe mode (they find but do not
//! act, so each fault stays what it is); a stream crosses the mesh while faults are injected
//! for real: gray links (nftables random drop in the wire), silent and hard link failures,
//! flapping, congestion (a tbf shaper under the stream's rate), a blackhole node (transit
//! dropped on its wires, probes and hellos kept), a flood of new sources and a scan. n1's
//! detection windows are recorded through its API, labelled from the injection times, and
//! every detector is scored on them with the same figures as `bench detect`.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::json;

use super::{
    Agent, Fault, Lab, mesh_agents,
    mesh6::{self, Mesh6},
    wire,
};
use mesh_ctl::{
    api::{self, Request},
    detect::{
        baseline::Rule,
        calibrate::Calibrator,
        detector::{Detector as _, FeatureDetector, Scorer},
        eval::{
            Interval, SeedMetrics, interval, metrics,
            scoring::{score_trace, score_traces},
        },
        sage::Aggregation,
        trace::{self, Class, Element, Snapshot, Topology, Trace, TraceHeader},
        train::WARMUP_WINDOWS,
    },
};

/// Sources of the flood.
const FLOOD_SOURCES: u32 = 80;
/// Loss of the gray links injected, per mille.
const GRAY_PERMILLE: [u32; 6] = [10, 20, 50, 100, 200, 300];
/// The congested link's rate: under the stream's (500 frames of 142 bytes a second).
const CONGEST_KBIT: u32 = 520;
/// Destinations one scanning source pings.
const SCAN_TARGETS: u32 = 100;

/// One window as n1 published it, and when we read it (Unix ms).
struct Recorded {
    at_ms: f64,
    topology: Topology,
    snapshot: Snapshot,
}

/// One injected fault: its class, the element's name, and when (Unix ms).
struct Injected {
    class: Class,
    what: String,
    element: Element,
    from_ms: f64,
    to_ms: f64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Reads n1's windows until `stop`, as `meshctl record` does.
fn recorder(socket: &Path, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Recorded>>>) {
    let mut last = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Some(api::Window {
            topology: Some(topology),
            snapshot: Some(snapshot),
            ..
        })) = api::query_as::<Option<api::Window>>(socket, &Request::Window)
            && last != Some(snapshot.window)
        {
            last = Some(snapshot.window);
            out.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Recorded {
                    at_ms: now_ms(),
                    topology,
                    snapshot,
                });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The element of `topology` named by `what` (`n2` or `n2-n4`).
fn element(topology: &Topology, what: &str) -> Option<Element> {
    let index = |n: &str| topology.nodes.iter().position(|x| x == n);
    match what.split_once('-') {
        None => index(what).map(|i| Element::Node(i as u32)),
        Some((a, b)) => {
            let (a, b) = (index(a)? as u32, index(b)? as u32);
            let pair = (a.min(b), a.max(b));
            topology
                .links
                .iter()
                .position(|l| *l == pair)
                .map(|i| Element::Link(i as u32))
        }
    }
}

/// A window read at `at_ms` counted the second before its slot, which ended about half a
/// window before we read it: the instant it stands for.
const WINDOW_LAG_MS: f64 = 1000.0;

/// The live topologies: the six-router double diamond the other labs use, and seven routers
/// that no other test, no training and no calibration uses (every detector scored on it is
/// calibrated, if at all, on the double diamond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Diamond,
    Seven,
}

/// Seven routers: three disjoint-ish routes of three hops from n1 (hs) to n7 (hd), with
/// cross links that make routers of degree 2 to 4.
const SEVEN: [&str; 7] = ["n1", "n2", "n3", "n4", "n5", "n6", "n7"];
const SEVEN_CORE: [(&str, &str); 10] = [
    ("n1", "n2"),
    ("n1", "n4"),
    ("n2", "n3"),
    ("n2", "n5"),
    ("n3", "n5"),
    ("n3", "n7"),
    ("n4", "n5"),
    ("n4", "n6"),
    ("n5", "n7"),
    ("n6", "n7"),
];

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Diamond => "six-router double diamond",
            Shape::Seven => "seven routers, unseen",
        }
    }

    fn build(self, lab: &mut Lab) -> Result<Mesh6> {
        match self {
            Shape::Diamond => mesh6::mesh6(lab),
            Shape::Seven => mesh6::wired(lab, &SEVEN, &SEVEN_CORE, "n7"),
        }
    }
}

/// Until hs reaches hd through the mesh.
fn wait_reachable(lab: &Lab, mesh: &Mesh6) -> Result<()> {
    let hd = mesh.hd.host_v4.to_string();
    let reached = wire::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(lab.ping("hs", &hd, 1)? == 1)
    })?;
    anyhow::ensure!(reached, "hs did not reach hd within 20 s");
    Ok(())
}

/// Seconds each fault lasts, and the quiet after it.
const FAULT_S: u64 = 12;
const QUIET_S: u64 = 15;

/// One run on a fresh mesh: the recorded windows cut into traces (the fault-free start,
/// then one per fault with the windows around it), each with its ground truth.
fn run(meshctl: &Path, shape: Shape, rep: usize) -> Result<Vec<(String, Trace)>> {
    let tag = match shape {
        Shape::Diamond => "d",
        Shape::Seven => "s",
    };
    let mut lab = Lab::new(&format!("dlive{tag}{rep}"), meshctl.to_path_buf())?;
    let mesh = shape.build(&mut lab)?;
    let extra = "[detect]\nmode = \"observe\"\n";
    let agents: Vec<Agent> = mesh_agents::secure_configs(&lab, &mesh, extra)?
        .iter()
        .map(|c| lab.agent(c))
        .collect::<Result<_>>()?;
    wait_reachable(&lab, &mesh)?;
    let stream = lab.stream(
        "hs",
        "hd",
        mesh.hd.host_v4.into(),
        500,
        Duration::from_secs(900),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let path = mesh6::active_path(&lab, &mesh, Duration::from_millis(200), 100)?
        .context("the stream takes no path")?;
    let stop = Arc::new(AtomicBool::new(false));
    let windows = Arc::new(Mutex::new(Vec::new()));
    let mut injected = Vec::new();
    let who = format!("run {} {rep}", shape.name());
    std::thread::scope(|s| -> Result<()> {
        let (stop2, windows2, n1) = (stop.clone(), windows.clone(), agents[0].socket.clone());
        s.spawn(move || recorder(&n1, stop2, windows2));
        let quiet = |secs: u64| std::thread::sleep(Duration::from_secs(secs));
        let mut done = |class: Class, what: String, from_ms: f64, to_ms: f64, note: &str| {
            eprintln!("  {who}: {note}");
            injected.push(Injected {
                class,
                what,
                element: Element::Link(0),
                from_ms,
                to_ms,
            });
        };
        // Fault-free: warm-up, then windows to count false alarms on.
        quiet(40);
        let link = mesh.link(&path[1], &path[2])?.clone();
        let name = format!("{}-{}", path[1], path[2]);
        for permille in GRAY_PERMILLE {
            let from_ms = now_ms();
            lab.fault_at(&link, Fault::Gray { permille })?;
            quiet(FAULT_S);
            lab.heal(&link)?;
            let note = format!("gray link {:.0} % on {name}", permille as f64 / 10.0);
            done(Class::GrayLink, name.clone(), from_ms, now_ms(), &note);
            quiet(QUIET_S);
        }
        for (fault, note) in [
            (Fault::Silent, "silent failure"),
            (Fault::Down, "hard failure (carrier lost)"),
        ] {
            let from_ms = now_ms();
            lab.fault_at(&link, fault)?;
            quiet(FAULT_S);
            lab.heal(&link)?;
            done(
                Class::LinkDown,
                name.clone(),
                from_ms,
                now_ms(),
                &format!("{note} of {name}"),
            );
            quiet(QUIET_S);
        }
        let from_ms = now_ms();
        let mut rng = StdRng::seed_from_u64(rep as u64);
        while now_ms() - from_ms < (FAULT_S * 1000) as f64 {
            lab.fault_at(&link, Fault::Down)?;
            std::thread::sleep(Duration::from_millis(rng.random_range(1000..=3000)));
            lab.heal(&link)?;
            std::thread::sleep(Duration::from_millis(rng.random_range(1000..=3000)));
        }
        done(
            Class::Flapping,
            name.clone(),
            from_ms,
            now_ms(),
            &format!("{name} flapping at 1-3 s"),
        );
        quiet(QUIET_S);
        // Failures may have moved the stream: congest and blackhole where it runs now.
        let path =
            mesh6::active_path(&lab, &mesh, Duration::from_millis(500), 100)?.unwrap_or(path);
        let link = mesh.link(&path[1], &path[2])?.clone();
        let name = format!("{}-{}", path[1], path[2]);
        let from_ms = now_ms();
        lab.congest(&link, &path[2], CONGEST_KBIT, 80)?;
        quiet(FAULT_S);
        lab.uncongest(&link, &path[2])?;
        let note = format!("{name} congested (tbf {CONGEST_KBIT} kbit/s under the stream's ~570)");
        done(Class::Congested, name.clone(), from_ms, now_ms(), &note);
        quiet(QUIET_S);
        let hole = path[1].clone();
        let from_ms = now_ms();
        let faulty = lab.blackhole(&hole)?;
        quiet(FAULT_S);
        for l in &faulty {
            lab.heal(l)?;
        }
        done(
            Class::Blackhole,
            hole.clone(),
            from_ms,
            now_ms(),
            &format!("blackhole {hole}"),
        );
        quiet(QUIET_S);
        let from_ms = flood(&mut lab, &mesh, FAULT_S as u32)?;
        let note = format!(
            "flood of {FLOOD_SOURCES} new sources towards hd ({})",
            mesh.hd.router
        );
        done(
            Class::DdosVictim,
            mesh.hd.router.clone(),
            from_ms,
            from_ms + (FAULT_S * 1000) as f64,
            &note,
        );
        quiet(FAULT_S + 6);
        let from_ms = scan(&mut lab, &mesh, FAULT_S as u32)?;
        let note = format!(
            "a scan of {SCAN_TARGETS} addresses entering at {}",
            mesh.hs.router
        );
        done(
            Class::Scanner,
            mesh.hs.router.clone(),
            from_ms,
            from_ms + (FAULT_S * 1000) as f64,
            &note,
        );
        quiet(QUIET_S);
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    stream.stop()?;
    for a in agents {
        a.stop()?;
    }
    let windows = std::mem::take(&mut *windows.lock().unwrap_or_else(PoisonError::into_inner));
    cut(&windows, &mut injected)
}

/// New sources in hs ping hd for `secs`, more of them than the static rule's default level
/// (64); returns when it began (Unix ms).
fn flood(lab: &mut Lab, mesh: &Mesh6, secs: u32) -> Result<f64> {
    let ifname = mesh.hs.link.end("hs").ifname.clone();
    let o = mesh.hs.host_v4.octets();
    let sources: Vec<String> = (0..FLOOD_SOURCES)
        .map(|i| format!("{}.{}.{}.{}", o[0], o[1], o[2], 100 + i))
        .collect();
    for s in &sources {
        lab.exec_ok(
            "hs",
            &["ip", "addr", "add", &format!("{s}/24"), "dev", &ifname],
        )?;
    }
    let hd = mesh.hd.host_v4.to_string();
    let script = format!(
        "for s in {}; do ping -q -n -I $s -i 0.2 -w {secs} {hd} >/dev/null 2>&1 & done; wait",
        sources.join(" ")
    );
    let at = now_ms();
    lab.spawn("hs", &["sh", "-c", &script])?;
    Ok(at)
}

/// One new source in hs pings `SCAN_TARGETS` addresses of hd's /24 for `secs` (the mesh
/// routes only hd's own: the rest end at n1, where the scan enters, as probes of unused
/// addresses would); returns when it began (Unix ms).
fn scan(lab: &mut Lab, mesh: &Mesh6, secs: u32) -> Result<f64> {
    let ifname = mesh.hs.link.end("hs").ifname.clone();
    let o = mesh.hs.host_v4.octets();
    let scanner = format!("{}.{}.{}.250", o[0], o[1], o[2]);
    lab.exec_ok(
        "hs",
        &[
            "ip",
            "addr",
            "add",
            &format!("{scanner}/24"),
            "dev",
            &ifname,
        ],
    )?;
    let d = mesh.hd.host_v4.octets();
    let targets: Vec<String> = (0..SCAN_TARGETS)
        .map(|i| format!("{}.{}.{}.{}", d[0], d[1], d[2], 100 + i))
        .collect();
    let script = format!(
        "for t in {}; do ping -q -n -I {scanner} -i 1 -w {secs} $t >/dev/null 2>&1 & done; wait",
        targets.join(" ")
    );
    let at = now_ms();
    lab.spawn("hs", &["sh", "-c", &script])?;
    Ok(at)
}

/// The fault-free start as one trace, and each fault with the windows around it as one
/// trace (each on one graph), labelled from the injection times.
fn cut(windows: &[Recorded], injected: &mut [Injected]) -> Result<Vec<(String, Trace)>> {
    let Some(first) = windows.first() else {
        bail!("no window was recorded");
    };
    let mut out = Vec::new();
    let header = |topology: &Topology, faults| TraceHeader {
        version: trace::TRACE_VERSION,
        seed: 0,
        window_ms: 1000,
        topology: topology.clone(),
        faults,
    };
    let start = injected.first().map_or(f64::MAX, |f| f.from_ms);
    let quiet: Vec<Snapshot> = windows
        .iter()
        .filter(|w| w.at_ms - WINDOW_LAG_MS < start && w.topology == first.topology)
        .map(|w| w.snapshot.clone())
        .collect();
    out.push((
        "fault-free".to_owned(),
        Trace {
            header: header(&first.topology, Vec::new()),
            windows: renumber(quiet),
        },
    ));
    for f in injected.iter_mut() {
        let lead = (WARMUP_WINDOWS as f64 + 4.0) * 1000.0;
        let span: Vec<&Recorded> = windows
            .iter()
            .filter(|w| {
                let t = w.at_ms - WINDOW_LAG_MS;
                t >= f.from_ms - lead && t < f.to_ms + 4000.0
            })
            .collect();
        let Some(topology) = span.first().map(|w| w.topology.clone()) else {
            continue;
        };
        let Some(el) = element(&topology, &f.what) else {
            bail!("no element {} in the recorded graph", f.what);
        };
        f.element = el;
        let mut snaps = Vec::new();
        let (mut fs, mut fe) = (None, None);
        for w in span.iter().filter(|w| w.topology == topology) {
            let t = w.at_ms - WINDOW_LAG_MS;
            let mut s = w.snapshot.clone();
            s.labels.clear();
            if t >= f.from_ms && t < f.to_ms {
                s.labels.push((el, f.class));
                fs.get_or_insert(snaps.len() as u32);
                fe = Some(snaps.len() as u32 + 1);
            }
            snaps.push(s);
        }
        let (Some(start), Some(end)) = (fs, fe) else {
            continue;
        };
        out.push((
            format!("{} {}", f.class.name(), f.what),
            Trace {
                header: header(
                    &topology,
                    vec![trace::Fault {
                        class: f.class,
                        element: el,
                        start,
                        end,
                        intensity: 0.0,
                        magnitude: 0.0,
                    }],
                ),
                windows: renumber(snaps),
            },
        ));
    }
    Ok(out)
}

fn renumber(mut snaps: Vec<Snapshot>) -> Vec<Snapshot> {
    for (i, s) in snaps.iter_mut().enumerate() {
        s.window = i as u32;
    }
    snaps
}

/// Every detector as the agent runs it: the static levels of the default config, and the
/// shipped models with their own thresholds; then each calibrated on site (`-cal`: fitted
/// to `site`, a fault-free recording of another run on the same mesh, at a 0.5 % target,
/// as `meshctl model calibrate` does).
fn detectors(site: &Trace) -> Result<Vec<FeatureDetector>> {
    let th = mesh_ctl::agent::static_thresholds(&mesh_ctl::config::Detect::default());
    let shipped = |m| -> Result<_> { Ok(mesh_ctl::model::shipped::load(m)?) };
    let mut out = vec![
        FeatureDetector::from_model(shipped(mesh_ctl::model::shipped::GRAPHSAGE)?),
        FeatureDetector::from_model(shipped(mesh_ctl::model::shipped::MLP)?),
        FeatureDetector::new("static", Scorer::Rule(Rule::Static), th),
    ];
    let own = [
        Scorer::Model(
            Box::new(shipped(mesh_ctl::model::shipped::GRAPHSAGE)?),
            Aggregation::Auto,
        ),
        Scorer::Model(
            Box::new(shipped(mesh_ctl::model::shipped::MLP)?),
            Aggregation::Auto,
        ),
        Scorer::Rule(Rule::Static),
    ];
    let mut calibrated = Vec::new();
    for (det, scorer) in out.iter_mut().zip(own) {
        let base = *det.thresholds();
        let mut cal = Calibrator::new();
        for sc in score_trace(det, site)? {
            cal.add(&sc, &|_, _| false);
        }
        let fitted = cal.finish(det.name(), 0.005, &base)?;
        calibrated.push(FeatureDetector::new(
            &format!("{}-cal", det.name()),
            scorer,
            fitted.apply(&base),
        ));
    }
    out.extend(calibrated);
    Ok(out)
}

/// The fault-free start of run `i` (cyclically) of `runs`.
fn fault_free(runs: &[Vec<(String, Trace)>], i: usize) -> Result<&Trace> {
    Ok(&runs[i % runs.len()]
        .first()
        .context("a fault-free trace")?
        .1)
}

/// Per detector (in the order first seen), its figures on each run of one topology.
struct Scored {
    names: Vec<String>,
    per: BTreeMap<String, Vec<SeedMetrics>>,
}

/// Scores every detector on each run's traces; `site(i)` is the fault-free recording run
/// `i`'s calibrated detectors are fitted to.
fn score_runs<'a>(
    runs: &'a [Vec<(String, Trace)>],
    site: &dyn Fn(usize) -> Result<&'a Trace>,
) -> Result<Scored> {
    let mut out = Scored {
        names: Vec::new(),
        per: BTreeMap::new(),
    };
    for (i, traces) in runs.iter().enumerate() {
        for mut det in detectors(site(i)?)? {
            let name = det.name().to_owned();
            if !out.names.contains(&name) {
                out.names.push(name.clone());
            }
            let th = *det.thresholds();
            let scored = score_traces(&mut det, traces.iter().map(|(_, t)| t))?;
            out.per.entry(name).or_default().push(metrics(&scored, &th));
        }
    }
    Ok(out)
}

fn class_recall(m: &SeedMetrics, c: Class) -> f64 {
    m.per_class
        .iter()
        .find(|(k, _)| *k == c)
        .map_or(0.0, |(_, x)| x.recall)
}

/// The worst seed's gray-link detection latency p95 (windows), NaN if never finite.
fn gray_p95(runs: &[SeedMetrics]) -> f64 {
    runs.iter()
        .filter_map(|m| m.gray_latency_p95)
        .fold(f64::NAN, f64::max)
}

impl Scored {
    fn stat(&self, name: &str, f: &dyn Fn(&SeedMetrics) -> f64) -> Interval {
        interval(&self.per[name].iter().map(f).collect::<Vec<_>>())
    }

    /// Prints the table; its rows as JSON.
    fn table(&self, title: &str) -> Vec<serde_json::Value> {
        println!("{title}:");
        println!(
            "{:<14} {:>13} {:>13} {:>13} {:>13} {:>13} {:>13} {:>12} {:>9}",
            "detector",
            "macro-F1",
            "gray R",
            "down R",
            "congested R",
            "blackhole R",
            "ddos R",
            "alarms/h",
            "gray p95"
        );
        let mut rows = Vec::new();
        for n in &self.names {
            let f1 = self.stat(n, &|m| m.macro_f1);
            let r = |c: Class| self.stat(n, &move |m| class_recall(m, c));
            let (gray, down, cong) = (r(Class::GrayLink), r(Class::LinkDown), r(Class::Congested));
            let (bh, dd) = (r(Class::Blackhole), r(Class::DdosVictim));
            let alarms = self.stat(n, &|m| m.false_alarms_per_hour);
            let gp95 = gray_p95(&self.per[n]);
            let pm = |i: &Interval| format!("{:.3}±{:.3}", i.mean, i.ci95);
            println!(
                "{n:<14} {:>13} {:>13} {:>13} {:>13} {:>13} {:>13} {:>6.1}±{:<5.1} {gp95:>9.1}",
                pm(&f1),
                pm(&gray),
                pm(&down),
                pm(&cong),
                pm(&bh),
                pm(&dd),
                alarms.mean,
                alarms.ci95
            );
            rows.push(
                json!({"detector": n, "macro_f1": f1.mean, "macro_f1_ci95": f1.ci95,
                "gray_recall": gray.mean, "link_down_recall": down.mean,
                "congested_recall": cong.mean, "blackhole_recall": bh.mean,
                "ddos_recall": dd.mean, "alarms_per_h": alarms.mean,
                "gray_p95_windows": gp95, "runs": self.per[n]}),
            );
        }
        rows
    }

    /// `gnn`'s macro-F1 lead over the best of the detectors `others` keeps, per run: the
    /// best's name and the lead's interval.
    fn lead_over(&self, gnn: &str, others: &dyn Fn(&str) -> bool) -> (String, Interval) {
        let best = self
            .names
            .iter()
            .filter(|n| others(n))
            .max_by(|a, b| {
                self.stat(a, &|m| m.macro_f1)
                    .mean
                    .total_cmp(&self.stat(b, &|m| m.macro_f1).mean)
            })
            .cloned()
            .unwrap_or_default();
        let lead: Vec<f64> = self.per[gnn]
            .iter()
            .zip(&self.per[&best])
            .map(|(a, b)| a.macro_f1 - b.macro_f1)
            .collect();
        (best, interval(&lead))
    }
}

pub fn detect_live(meshctl: std::path::PathBuf, out: &Path) -> Result<()> {
    let reps = std::env::var("DETECT_LIVE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let gray: Vec<String> = GRAY_PERMILLE
        .iter()
        .map(|p| format!("{}", *p as f64 / 10.0))
        .collect();
    let faults = format!(
        "gray {} %, silent and hard link failure, flapping, congestion (tbf), a blackhole, a flood of {FLOOD_SOURCES} sources, a scan of {SCAN_TARGETS} addresses",
        gray.join("/")
    );
    eprintln!(
        "bench detect-live: {reps} runs on each of two lab meshes (agents in observe mode), each run 40 s fault-free, then {faults}"
    );
    let mut diamond = Vec::new();
    let mut seven = Vec::new();
    for rep in 0..reps {
        for (shape, runs) in [(Shape::Diamond, &mut diamond), (Shape::Seven, &mut seven)] {
            runs.push(
                run(&meshctl, shape, rep)
                    .with_context(|| format!("run {rep} on the {}", shape.name()))?,
            );
        }
    }
    // On the double diamond, calibrated on the next run's fault-free start: a recording of
    // the same mesh that is not scored here (the same run's only when there is one run).
    let seen = score_runs(&diamond, &|i| fault_free(&diamond, i + 1))?;
    // On the seven routers, calibrated on the double diamond: no step ever saw this mesh.
    let unseen = score_runs(&seven, &|i| fault_free(&diamond, i))?;
    let seen_rows = seen.table(&format!("{} ({reps} runs)", Shape::Diamond.name()));
    println!();
    let unseen_rows = unseen.table(&format!("{} ({reps} runs)", Shape::Seven.name()));

    let gnn = "graphsage";
    let (best, lead) = unseen.lead_over(gnn, &|n| n != gnn);
    // Calibrated GraphSAGE against the best of every other detector, calibrated or not.
    let gnn_cal = "graphsage-cal";
    let (best_cal, cal_lead) = unseen.lead_over(gnn_cal, &|n| !n.starts_with(gnn));
    let (seen_best, seen_lead) = seen.lead_over(gnn, &|n| n != gnn);
    let g = |f: &dyn Fn(&SeedMetrics) -> f64| unseen.stat(gnn, f).mean;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        out,
        serde_json::to_string_pretty(&json!({
            "benchmark": "detect-live",
            "runs_per_topology": reps,
            "faults": faults,
            "calibration": "fpr 0.005 on a fault-free start: on the double diamond, the next run's; on the seven routers, a double-diamond run's",
            "topologies": {
                "double_diamond": {"detectors": seen_rows, "best_baseline": seen_best,
                    "lead": {"mean": seen_lead.mean, "ci95": seen_lead.ci95}},
                "seven_unseen": {"detectors": unseen_rows, "best_baseline": best,
                    "lead": {"mean": lead.mean, "ci95": lead.ci95},
                    "best_baseline_of_calibrated": best_cal,
                    "calibrated_lead": {"mean": cal_lead.mean, "ci95": cal_lead.ci95}},
            },
        }))?,
    )?;
    eprintln!("  wrote {}", out.display());
    println!(
        "bench detect-live: gnn_macro_f1={:.3} best_baseline_macro_f1={:.3} lead_ci_low={:.3} alarms_per_h={:.1} gray_p95_windows={:.1} blackhole_recall={:.3} ddos_recall={:.3} gnn_cal_macro_f1={:.3} best_other_cal_macro_f1={:.3} ({best_cal}) cal_lead_ci_low={:.3} (seven routers, unseen; best baseline {best})",
        g(&|m| m.macro_f1),
        unseen.stat(&best, &|m| m.macro_f1).mean,
        lead.mean - lead.ci95,
        g(&|m| m.false_alarms_per_hour),
        gray_p95(&unseen.per[gnn]),
        g(&|m| class_recall(m, Class::Blackhole)),
        g(&|m| class_recall(m, Class::DdosVictim)),
        unseen.stat(gnn_cal, &|m| m.macro_f1).mean,
        unseen.stat(&best_cal, &|m| m.macro_f1).mean,
        cal_lead.mean - cal_lead.ci95,
    );
    Ok(())
}
