//! Analyze for anomalies: our own report from the telemetry we read, everyone's reports
//! laid over the mesh (`detect::live`), the configured detector on that, and the Plan
//! stage's limits (`anomaly`) on what it finds.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use anyhow::Context as _;

use super::{
    anomaly::{Anomalies, Decision, Policy, Remedy, Target},
    knowledge::Neighbor,
};
use crate::{
    api::{self, Finding},
    config::{Detect, DetectorKind},
    dataplane::blocklist::Source,
    detect::{
        Class, DetectError, Detector as _, Element, Snapshot, Topology,
        baseline::Rule,
        calibrate::{Calibration, Calibrator},
        detector::{CLASSES, FeatureDetector, Scorer},
        live::{Insert, LinkCounters, LiveView, NodeCounters, Report, ReportError},
    },
    telemetry,
};

/// The detector and what it has seen.
pub struct Detection {
    window_ms: u64,
    view: LiveView,
    detector: FeatureDetector,
    topology: Option<Topology>,
    pub anomalies: Anomalies,
    window: u32,
    seq: u64,
    /// The last window assembled and what was found in it.
    last: Option<(Snapshot, Vec<Finding>)>,
    /// Sources blocked here, per action.
    pub blocks: BTreeMap<Target, Vec<IpAddr>>,
    /// Sources and prefixes rate-limited here, per action.
    pub limits: BTreeMap<Target, Vec<(Source, u32)>>,
    /// Per-source rates of the flows entering here, for the limits.
    pub rates: super::rates::Rates,
    /// When the blocks and limits of each action are written again (CLOCK_MONOTONIC ns).
    pub renew_at: BTreeMap<Target, u64>,
    /// (kind, element, class) with an `x0tta6bl4_avoided` series: one taken back stays
    /// at 0 (bounded by the topology, like the per-neighbour gauges).
    avoided_gauged: std::collections::BTreeSet<(&'static str, String, &'static str)>,
    /// The detector's own thresholds, which calibration only raises.
    base: [f32; CLASSES],
    calibration: Calibrating,
    /// Links our last report listed, and those we still report down.
    lost: LostLinks,
    /// A report came in since [`Self::complete`] last looked: only then can its answer
    /// have changed.
    unchecked: bool,
}

/// Windows a lost neighbour's link is still reported, down, unless it is heard again.
/// Routing withdraws the link as soon as the neighbour is lost; without these the link
/// would vanish from the reports at once and the window that shows it down would be the
/// only one (the detector, and the Plan stage's "down, not gray" memory, need more).
const LOST_WINDOWS: u32 = 30;

/// The links of our previous report, and the ones kept down after their neighbour went.
#[derive(Debug, Default)]
struct LostLinks {
    previous: Vec<LinkCounters>,
    down: BTreeMap<String, (LinkCounters, u32)>,
}

impl LostLinks {
    /// Adds to `links` (this report's, sorted) a down entry for every neighbour listed
    /// before and missing now, for [`LOST_WINDOWS`] reports.
    fn carry(&mut self, links: &mut Vec<LinkCounters>) {
        let heard: std::collections::BTreeSet<String> =
            links.iter().map(|l| l.neighbor.clone()).collect();
        for l in self.previous.drain(..) {
            if !l.down && !heard.contains(&l.neighbor) {
                self.down.insert(l.neighbor.clone(), (l, LOST_WINDOWS));
            }
        }
        self.down.retain(|n, (last, left)| {
            if heard.contains(n) || *left == 0 {
                return false;
            }
            *left -= 1;
            links.push(LinkCounters {
                down: true,
                ..last.clone()
            });
            true
        });
        links.sort_by(|a, b| a.neighbor.cmp(&b.neighbor));
        self.previous.clone_from(links);
    }
}

/// Where the thresholds stand.
enum Calibrating {
    /// The detector's own.
    Off,
    /// Observing fault-free windows, acting on nothing.
    Collecting {
        cal: Box<Calibrator>,
        needed: u64,
        fpr: f32,
        file: PathBuf,
    },
    /// Fitted to this mesh, kept in `file`.
    Done { cal: Calibration, file: PathBuf },
}

/// The static detector's per-class levels.
pub fn static_thresholds(d: &Detect) -> [f32; CLASSES] {
    let mut th = [f32::MAX; CLASSES];
    th[Class::LinkDown as usize] = 0.5;
    th[Class::GrayLink as usize] = d.gray_loss;
    th[Class::Congested as usize] = d.congested_rtt_ms;
    th[Class::Blackhole as usize] = d.blackhole_share;
    th[Class::DdosVictim as usize] = d.ddos_sources as f32;
    th[Class::Scanner as usize] = d.scan_targets as f32;
    th
}

impl Detection {
    /// `seq_floor` makes our report numbers keep increasing across restarts.
    pub fn new(d: &Detect, seq_floor: u64) -> anyhow::Result<Self> {
        let mut detector = match d.detector {
            DetectorKind::Static => {
                FeatureDetector::new("static", Scorer::Rule(Rule::Static), static_thresholds(d))
            }
            DetectorKind::Graphsage => FeatureDetector::from_model(
                crate::model::shipped::load(crate::model::shipped::GRAPHSAGE)
                    .context("loading the shipped GraphSAGE model")?,
            ),
            DetectorKind::Mlp => FeatureDetector::from_model(
                crate::model::shipped::load(crate::model::shipped::MLP)
                    .context("loading the shipped MLP model")?,
            ),
            DetectorKind::Model => {
                let path = d.model.as_ref().context("detect.model is not set")?;
                let model = crate::model::load(path)
                    .with_context(|| format!("loading the detection model {}", path.display()))?;
                FeatureDetector::from_model(model)
            }
        };
        let base = *detector.thresholds();
        let mut anomalies = Anomalies::new(Policy::from(d));
        let calibration = match crate::model::read_calibration(&d.calibration)
            .context("reading detect.calibration")?
        {
            Some(cal) => match cal.check(detector.name()) {
                Ok(()) => {
                    detector.set_thresholds(cal.apply(&base));
                    Calibrating::Done {
                        cal,
                        file: d.calibration.clone(),
                    }
                }
                Err(e) => {
                    crate::event!(
                        WARN,
                        "calibration_ignored",
                        file = %d.calibration.display(),
                        error = %e
                    );
                    Calibrating::Off
                }
            },
            None => Calibrating::Off,
        };
        let calibration = match calibration {
            Calibrating::Off if d.calibrate_minutes > 0 => {
                anomalies.hold_back(true);
                Calibrating::Collecting {
                    cal: Box::new(Calibrator::new()),
                    needed: (u64::from(d.calibrate_minutes) * 60_000 / d.window_ms).max(1),
                    fpr: d.calibrate_fpr,
                    file: d.calibration.clone(),
                }
            }
            c => c,
        };
        Ok(Self {
            base,
            calibration,
            window_ms: d.window_ms,
            view: LiveView::new(d.window_ms),
            detector,
            topology: None,
            anomalies,
            window: 0,
            seq: seq_floor,
            last: None,
            blocks: BTreeMap::new(),
            limits: BTreeMap::new(),
            rates: super::rates::Rates::default(),
            renew_at: BTreeMap::new(),
            avoided_gauged: std::collections::BTreeSet::new(),
            lost: LostLinks::default(),
            unchecked: false,
        })
    }

    /// Our report from the counters read at `at_ms` (the data plane keeps probe frames out
    /// of its link counters: they are link maintenance, not traffic).
    pub fn own_report(
        &mut self,
        node: &str,
        slot_ms: u64,
        at_ms: u64,
        snap: &telemetry::Snapshot,
        neighbors: &[Neighbor],
        (flows_in, flows_out): (u32, u32),
    ) -> Report {
        self.seq += 1;
        let mut n = NodeCounters {
            flows_in,
            flows_out,
            ..NodeCounters::default()
        };
        let mut links = Vec::new();
        for l in &snap.links {
            n.rx += l.rx_packets;
            n.rx_bytes += l.rx_bytes;
            n.tx += l.tx_packets;
            n.tx_bytes += l.tx_bytes;
            n.forwarded += l.forwarded;
            n.local += l.passed;
            n.dropped += l.dropped;
            let on: Vec<&Neighbor> = neighbors
                .iter()
                .filter(|x| x.ifindex == l.ifindex)
                .collect();
            for x in &on {
                // The interface's counters are one neighbour's only on a point-to-point link.
                let only = on.len() == 1;
                links.push(LinkCounters {
                    neighbor: x.node.clone(),
                    tx: if only { l.tx_packets } else { 0 },
                    rx: if only { l.forwarded + l.passed } else { 0 },
                    rx_bytes: if only { l.rx_bytes } else { 0 },
                    probes_sent: x.quality.sent,
                    probe_replies: x.quality.replies,
                    rtt_ms: x.quality.rtt_ms as f32,
                    jitter_ms: x.quality.jitter_ms as f32,
                    downs: x.quality.downs,
                    down: false,
                });
            }
        }
        links.sort_by(|a, b| a.neighbor.cmp(&b.neighbor));
        links.dedup_by(|a, b| a.neighbor == b.neighbor);
        self.lost.carry(&mut links);
        Report {
            origin: node.to_owned(),
            seq: self.seq,
            slot_ms,
            at_ms,
            node: n,
            links,
        }
    }

    /// A report, ours or a peer's.
    pub fn receive(&mut self, r: Report, now_ms: u64) -> Result<Insert, ReportError> {
        let inserted = self.view.insert(r, now_ms);
        self.unchecked |= matches!(inserted, Ok(Insert::New));
        inserted
    }

    /// Whether every report the window ending at `slot_ms` waits for is in: those of
    /// the origins of the window before, and of every node in `known`. The main loop
    /// asks on every turn while a window waits, and only a new report can turn the
    /// answer to yes (a node `known` adds only holds the window back), so the reports
    /// and the database are walked only when one came in since the last time.
    pub fn complete<'a>(&mut self, slot_ms: u64, known: impl IntoIterator<Item = &'a str>) -> bool {
        std::mem::take(&mut self.unchecked) && self.view.complete(slot_ms, known)
    }

    /// The window ending at `slot_ms`: the mesh as the reports show it, the detector's
    /// findings, and what the Plan stage does about them.
    pub fn analyze(&mut self, slot_ms: u64, now_ms: u64) -> Result<Vec<Decision>, DetectError> {
        self.view.expire(now_ms);
        let topo = self.view.topology();
        if self.topology.as_ref() != Some(&topo) {
            // Element histories are by index: a new graph starts them again.
            self.detector.reset();
            self.topology = Some(topo.clone());
        }
        let snap = self.view.snapshot(&topo, self.window, slot_ms);
        self.window += 1;
        let scores = self.detector.scores(&topo, &snap)?;
        self.calibrate(&scores);
        let found = self.detector.findings(&scores);
        let named: Vec<Finding> = found
            .iter()
            .filter_map(|f| {
                let target = match f.element {
                    Element::Node(i) => Target::Node {
                        node: topo.nodes.get(i as usize)?.clone(),
                    },
                    Element::Link(i) => {
                        let &(a, b) = topo.links.get(i as usize)?;
                        Target::link(&topo.nodes[a as usize], &topo.nodes[b as usize])
                    }
                };
                Some(Finding {
                    target,
                    class: f.class.name().to_owned(),
                    score: f.score,
                    reason: f.reason.clone(),
                })
            })
            .collect();
        let input: Vec<(Target, Class, String)> = found
            .iter()
            .zip(&named)
            .map(|(f, n)| (n.target.clone(), f.class, n.reason.clone()))
            .collect();
        let held = self.still_dropping();
        let decisions = self.anomalies.observe_holding(
            &input,
            &held,
            topo.nodes.len(),
            topo.links.len(),
            slot_ms,
            now_ms,
        );
        metrics::gauge!("x0tta6bl4_anomaly_findings").set(named.len() as f64);
        for d in &decisions {
            metrics::counter!("x0tta6bl4_anomaly_actions_total", "action" => d.name()).increment(1);
        }
        let (nodes, links) = self
            .anomalies
            .active()
            .fold((0, 0), |(n, l), a| match a.target {
                Target::Node { .. } => (n + 1, l),
                Target::Link { .. } => (n, l + 1),
            });
        metrics::gauge!("x0tta6bl4_anomalies_avoided", "kind" => "node").set(nodes as f64);
        metrics::gauge!("x0tta6bl4_anomalies_avoided", "kind" => "link").set(links as f64);
        self.avoided_gauges();
        self.last = Some((snap, named));
        Ok(decisions)
    }

    /// The actions whose blocked or limited sources this router dropped frames of in the
    /// last window.
    fn still_dropping(&self) -> std::collections::BTreeSet<Target> {
        let dropping = self.rates.dropping();
        if dropping.is_empty() {
            return std::collections::BTreeSet::new();
        }
        let blocked = self
            .blocks
            .iter()
            .filter(|(_, s)| s.iter().any(|a| dropping.contains(a)))
            .map(|(t, _)| t.clone());
        let limited = self
            .limits
            .iter()
            .filter(|(_, l)| {
                l.iter().any(|(s, _)| match s {
                    Source::Addr(a) => dropping.contains(a),
                    Source::Prefix(p) => dropping.iter().any(|a| p.contains(a)),
                })
            })
            .map(|(t, _)| t.clone());
        blocked.chain(limited).collect()
    }

    /// Takes back the blocks and limits of the action on `target`.
    pub fn end_sources(&mut self, dp: &mut impl crate::dataplane::Datapath, target: &Target) {
        super::execute::unblock(dp, self.blocks.remove(target).unwrap_or_default());
        let limited = self.limits.remove(target).unwrap_or_default();
        super::execute::unlimit(dp, limited.into_iter().map(|l| l.0).collect());
        self.renew_at.remove(target);
    }

    /// While calibrating: one more fault-free window; once there are enough, the
    /// thresholds are fitted, saved and used, and the agent acts from the next window.
    fn calibrate(&mut self, scores: &crate::detect::detector::Scores) {
        let Calibrating::Collecting {
            cal,
            needed,
            fpr,
            file,
        } = &mut self.calibration
        else {
            return;
        };
        cal.add(scores, &|_, _| false);
        if cal.windows() < *needed && !cal.full() {
            return;
        }
        let fitted = match cal.finish(self.detector.name(), *fpr, &self.base) {
            Ok(c) => c,
            Err(e) => {
                crate::event!(WARN, "calibration_failed", error = %e);
                return;
            }
        };
        let file = file.clone();
        self.detector.set_thresholds(fitted.apply(&self.base));
        self.anomalies.hold_back(false);
        let shown: Vec<String> = fitted
            .thresholds
            .iter()
            .map(|(c, t)| format!("{} {t:.3}", c.name()))
            .collect();
        match crate::model::write_calibration(&file, &fitted) {
            Ok(()) => crate::event!(
                INFO,
                "calibrated",
                file = %file.display(),
                windows = fitted.windows,
                flagged = fitted.flagged,
                thresholds = shown.join(", ")
            ),
            // Used all the same; the next start calibrates again.
            Err(e) => crate::event!(
                WARN,
                "calibrated",
                windows = fitted.windows,
                flagged = fitted.flagged,
                thresholds = shown.join(", "),
                error = format!("not saved: {e:#}")
            ),
        }
        self.calibration = Calibrating::Done { cal: fitted, file };
    }

    /// One `x0tta6bl4_avoided` series per element acted on: 1 while the action holds.
    fn avoided_gauges(&mut self) {
        let now: std::collections::BTreeSet<(&'static str, String, &'static str)> = self
            .anomalies
            .active()
            .map(|a| match &a.target {
                Target::Node { node } => ("node", node.clone(), a.class.name()),
                Target::Link { a: x, b: y } => ("link", format!("{x}-{y}"), a.class.name()),
            })
            .collect();
        for (kind, element, class) in self.avoided_gauged.iter().chain(&now) {
            let on = now.contains(&(*kind, element.clone(), *class));
            metrics::gauge!(
                "x0tta6bl4_avoided",
                "kind" => *kind,
                "element" => element.clone(),
                "class" => *class
            )
            .set(if on { 1.0 } else { 0.0 });
        }
        self.avoided_gauged.extend(now);
    }

    /// What `meshctl anomalies` shows.
    pub fn view(&self, now_ms: u64) -> api::Anomalies {
        let active = self
            .anomalies
            .active()
            .map(|a| api::Avoided {
                target: a.target.clone(),
                class: a.class.name().to_owned(),
                for_ms: now_ms.saturating_sub(a.since_ms),
                hold_left_ms: a.until_ms.saturating_sub(now_ms),
                strikes: a.strikes,
                blocked_here: self.blocks.get(&a.target).map_or(0, Vec::len),
                limited_here: self.limits.get(&a.target).map_or(0, Vec::len),
            })
            .collect();
        let pending = self
            .anomalies
            .pending()
            .map(|(t, c, n)| api::Pending {
                target: t.clone(),
                class: c.name().to_owned(),
                windows: n,
            })
            .collect();
        api::Anomalies {
            detector: self.detector_name(),
            window: self.window,
            window_ms: self.window_ms,
            reporting: self.view.len(),
            findings: self.last.as_ref().map(|l| l.1.clone()),
            pending,
            active,
            limits: self
                .limits
                .iter()
                .flat_map(|(t, l)| {
                    l.iter().map(|(s, rate)| api::RateLimit {
                        source: s.to_string(),
                        rate_pps: *rate,
                        target: t.clone(),
                    })
                })
                .collect(),
            thresholds: crate::detect::Class::ANOMALIES
                .iter()
                .map(|c| api::ClassThreshold {
                    class: c.name().to_owned(),
                    threshold: self.detector.thresholds()[*c as usize],
                })
                .collect(),
            calibration: match &self.calibration {
                Calibrating::Off => api::Calibration::None,
                Calibrating::Collecting {
                    cal, needed, fpr, ..
                } => api::Calibration::Calibrating {
                    windows: cal.windows(),
                    needed: *needed,
                    fpr: *fpr,
                },
                Calibrating::Done { cal, file } => api::Calibration::Calibrated {
                    file: file.display().to_string(),
                    fpr: cal.fpr,
                    windows: cal.windows,
                    flagged: cal.flagged,
                },
            },
        }
    }

    /// What `meshctl record` writes: the graph and the last window.
    pub fn window_view(&self) -> api::Window {
        api::Window {
            window_ms: self.window_ms,
            topology: self.topology.clone(),
            snapshot: self.last.as_ref().map(|l| l.0.clone()),
        }
    }

    fn detector_name(&self) -> String {
        self.detector.name().to_owned()
    }
}

/// Messages for the agent's log.
pub fn describe(d: &Decision) -> (String, String) {
    match d {
        Decision::Act {
            target,
            class,
            remedy,
            hold_ms,
            reason,
        } => (
            match remedy {
                Remedy::BlockSources => {
                    format!(
                        "the sources of the {} at {target} are blocked for {hold_ms} ms",
                        class.name()
                    )
                }
                _ => format!("{target} is a last resort for routing for at least {hold_ms} ms"),
            },
            format!("{} confirmed: {reason}", class.name()),
        ),
        Decision::Revert {
            target, held_ms, ..
        } => (
            format!("{target} is treated normally again after {held_ms} ms"),
            "its hold is over and it has been clean since".into(),
        ),
        Decision::Capped { target, class } => (
            format!("{target} not avoided"),
            format!(
                "{} confirmed, but the cap on avoided elements is reached",
                class.name()
            ),
        ),
        Decision::Ignored { target, class, why } => (
            format!("{target}: {} confirmed, no action", class.name()),
            (*why).to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_neighbour_is_reported_down_for_a_while_and_the_window_shows_its_link_lost() {
        let link = |n: &str, probes: u64| LinkCounters {
            neighbor: n.into(),
            tx: 10 * probes,
            probes_sent: probes,
            probe_replies: probes,
            ..LinkCounters::default()
        };
        let mut lost = LostLinks::default();
        let mut view = LiveView::new(1000);
        let report =
            |seq: u64, mut links: Vec<LinkCounters>, lost: &mut LostLinks, view: &mut LiveView| {
                lost.carry(&mut links);
                let r = Report {
                    origin: "a".into(),
                    seq,
                    slot_ms: seq * 1000,
                    at_ms: seq * 1000,
                    node: NodeCounters::default(),
                    links: links.clone(),
                };
                view.insert(r, seq * 1000).expect("valid");
                // The neighbours report too (their own links do not matter here).
                for origin in ["b", "c"] {
                    let r = Report {
                        origin: origin.into(),
                        seq,
                        slot_ms: seq * 1000,
                        at_ms: seq * 1000,
                        ..Report::default()
                    };
                    view.insert(r, seq * 1000).expect("valid");
                }
                links
            };
        report(
            1,
            vec![link("b", 100), link("c", 100)],
            &mut lost,
            &mut view,
        );
        report(
            2,
            vec![link("b", 200), link("c", 200)],
            &mut lost,
            &mut view,
        );
        // c's hellos stop: it is still listed, down, with the counters it last had.
        let third = report(3, vec![link("b", 300)], &mut lost, &mut view);
        assert_eq!(third.len(), 2, "{third:?}");
        let c = third.iter().find(|l| l.neighbor == "c").expect("c kept");
        assert!(c.down && c.probes_sent == 200, "{c:?}");
        for seq in 4..6 {
            report(seq, vec![link("b", seq * 100)], &mut lost, &mut view);
            let topo = view.topology();
            let snap = view.snapshot(&topo, 0, seq * 1000);
            let ends = |i: usize| {
                let (x, y) = topo.links[i];
                (
                    topo.nodes[x as usize].as_str(),
                    topo.nodes[y as usize].as_str(),
                )
            };
            let ac = (0..topo.links.len())
                .find(|&i| ends(i) == ("a", "c"))
                .expect("a-c");
            let ab = (0..topo.links.len())
                .find(|&i| ends(i) == ("a", "b"))
                .expect("a-b");
            let (down, up) = (&snap.links[ac], &snap.links[ab]);
            assert!(
                down.probes_sent > 0 && down.probes_lost == down.probes_sent,
                "window {seq}: {down:?}"
            );
            assert_eq!(up.probes_lost, 0, "window {seq}: {up:?}");
        }
        // Heard again: listed as it is, no longer down.
        let back = report(
            6,
            vec![link("b", 600), link("c", 300)],
            &mut lost,
            &mut view,
        );
        assert!(back.iter().all(|l| !l.down), "{back:?}");
        // Gone for good: reported down for LOST_WINDOWS reports, then not at all.
        let mut listed = 0;
        for seq in 7..7 + u64::from(LOST_WINDOWS) + 3 {
            let r = report(seq, vec![link("b", seq * 100)], &mut lost, &mut view);
            listed += usize::from(r.iter().any(|l| l.neighbor == "c"));
        }
        assert_eq!(listed, LOST_WINDOWS as usize);
    }

    #[test]
    fn a_missing_model_is_a_clear_error_and_the_static_levels_come_from_the_config() {
        let d = Detect {
            detector: DetectorKind::Model,
            model: Some("/nonexistent/m.safetensors".into()),
            ..Detect::default()
        };
        let Err(e) = Detection::new(&d, 0) else {
            panic!("a missing model loads");
        };
        let msg = format!("{e:#}");
        assert!(
            msg.contains("loading the detection model /nonexistent/m.safetensors"),
            "{msg}"
        );
        let d = Detect {
            gray_loss: 0.07,
            ddos_sources: 9,
            ..Detect::default()
        };
        let th = static_thresholds(&d);
        assert_eq!(th[Class::GrayLink as usize], 0.07);
        assert_eq!(th[Class::DdosVictim as usize], 9.0);
        let det = Detection::new(&d, 0).expect("static");
        assert_eq!(det.detector_name(), "static");
    }

    #[test]
    fn the_agent_calibrates_itself_saves_it_and_the_next_start_uses_it() {
        let dir = std::env::temp_dir().join(format!("x0-cal-{}", std::process::id()));
        let file = dir.join("state/calibration.json");
        let _ = std::fs::remove_dir_all(&dir);
        let d = Detect {
            detector: DetectorKind::Graphsage,
            calibration: file.clone(),
            calibrate_minutes: 1,
            window_ms: 1000,
            ..Detect::default()
        };
        let mut det = Detection::new(&d, 0).expect("graphsage");
        let api::Calibration::Calibrating { needed: 60, .. } = det.view(0).calibration else {
            panic!("{:?}", det.view(0).calibration);
        };
        // Nothing is acted on while calibrating.
        let found = [(Target::link("a", "b"), Class::GrayLink, String::new())];
        for t in 0..4 {
            let out = det.anomalies.observe(&found, 6, 8, t * 1000, t * 1000);
            assert!(
                out.iter().all(|d| matches!(d, Decision::Ignored { .. })),
                "{out:?}"
            );
        }
        // A noisy site: gray-link scores up to 0.9 on fault-free links.
        let base = *det.detector.thresholds();
        for w in 0..60 {
            let mut row = [0f32; CLASSES];
            row[Class::GrayLink as usize] = (w % 10) as f32 / 10.0;
            det.calibrate(&crate::detect::detector::Scores {
                node: vec![[0.0; CLASSES]; 3],
                link: vec![row; 4],
                probabilities: true,
            });
        }
        let v = det.view(0);
        let api::Calibration::Calibrated { windows: 60, .. } = v.calibration else {
            panic!("{:?}", v.calibration);
        };
        let gray = det.detector.thresholds()[Class::GrayLink as usize];
        assert!(
            gray > 0.9 && gray > base[Class::GrayLink as usize],
            "{gray}"
        );
        assert_eq!(
            det.detector.thresholds()[Class::Blackhole as usize],
            base[Class::Blackhole as usize],
            "a quiet class keeps the model's threshold"
        );
        // Acting now.
        let out = det.anomalies.observe(&found, 6, 8, 9000, 9000);
        assert!(matches!(&out[..], [Decision::Act { .. }]), "{out:?}");
        // Saved, and used by the next start without calibrating again.
        let again = Detection::new(&d, 0).expect("restart");
        assert_eq!(again.detector.thresholds(), det.detector.thresholds());
        assert!(matches!(
            again.view(0).calibration,
            api::Calibration::Calibrated { .. }
        ));
        // Another detector does not take it: the MLP calibrates afresh.
        let mlp = Detection::new(
            &Detect {
                detector: DetectorKind::Mlp,
                ..d.clone()
            },
            0,
        )
        .expect("mlp");
        assert!(matches!(
            mlp.view(0).calibration,
            api::Calibration::Calibrating { .. }
        ));
        // A damaged file is a clear error, not a silent default.
        std::fs::write(&file, b"{").expect("write");
        let Err(e) = Detection::new(&d, 0) else {
            panic!("a damaged calibration loads");
        };
        assert!(format!("{e:#}").contains("is not a calibration"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
