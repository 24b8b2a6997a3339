//! Plan for anomalies: which findings become actions, within safety limits. A finding is
//! acted on once it is confirmed over consecutive windows; an action holds at least its
//! hold time (doubled for an element acted on again soon), stays while the element is
//! still flagged, and is reverted once the hold is over and the element has been clean
//! for as many windows as confirmation takes. A cap bounds how much of the mesh may be
//! avoided at once. Avoiding makes an element a last resort for routing ([`Avoid`]),
//! never cuts it off; for a DDoS victim or a scanner the action is blocking the attack's
//! sources where they enter the mesh (the runtime picks them from its flow table).

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Keep transit off a node.
    AvoidTransit,
    /// Keep traffic off a link.
    AvoidLink,
    /// Block the sources of an attack on, or by, a node.
    BlockSources,
}

impl Remedy {
    pub fn name(self) -> &'static str {
        match self {
            Remedy::AvoidTransit => "avoid_transit",
            Remedy::AvoidLink => "avoid_link",
            Remedy::BlockSources => "block_sources",
        }
    }
}

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{config, detect::Class, routing::Avoid};

/// Most doublings of the hold time.
const MAX_DOUBLINGS: u32 = 4;

pub use crate::api::Target;

/// The limits, from `[detect]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub confirm: u32,
    /// Windows that confirm a blackhole node.
    pub confirm_blackhole: u32,
    pub hold_ms: u64,
    pub cap_pct: u32,
    /// Findings only: no action at all (`detect.mode = "observe"`).
    pub observe: bool,
    /// Remedies switched on (`detect.avoid_links`, `avoid_transit`, `block_sources`).
    pub avoid_links: bool,
    pub avoid_transit: bool,
    pub block_sources: bool,
}

impl Policy {
    /// Whether `fix` may be taken, or why not.
    fn allows(&self, fix: Remedy) -> Result<(), &'static str> {
        let (on, switch) = match fix {
            Remedy::AvoidLink => (self.avoid_links, "detect.avoid_links is off"),
            Remedy::AvoidTransit => (self.avoid_transit, "detect.avoid_transit is off"),
            Remedy::BlockSources => (self.block_sources, "detect.block_sources is off"),
        };
        match (self.observe, on) {
            (true, _) => Err("detect.mode is observe"),
            (false, false) => Err(switch),
            (false, true) => Ok(()),
        }
    }
}

impl From<&config::Detect> for Policy {
    fn from(d: &config::Detect) -> Self {
        Self {
            confirm: d.confirm_windows,
            confirm_blackhole: d.blackhole_confirm_windows,
            hold_ms: d.hold_ms,
            cap_pct: d.max_avoided_pct,
            observe: d.mode == config::DetectMode::Observe,
            avoid_links: d.avoid_links,
            avoid_transit: d.avoid_transit,
            block_sources: d.block_sources,
        }
    }
}

/// An action in force.
#[derive(Debug, Clone, Serialize)]
pub struct Active {
    pub target: Target,
    #[serde(serialize_with = "class_name")]
    pub class: Class,
    /// Our clock, ms.
    pub since_ms: u64,
    /// When the hold ends, on our clock.
    pub until_ms: u64,
    /// Not reverted before the window slot (wall clock, ms, the same instant at every
    /// agent) reaches this: agents that acted in one window revert in one window.
    #[serde(skip)]
    until_slot: u64,
    /// How many times this element was acted on recently (the hold doubles with each).
    pub strikes: u32,
    /// Consecutive windows without a finding on it.
    #[serde(skip)]
    clean: u32,
}

fn class_name<S: serde::Serializer>(c: &Class, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

/// What [`Anomalies::observe`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Apply `remedy` to `target` for at least `hold_ms`.
    Act {
        target: Target,
        class: Class,
        remedy: Remedy,
        hold_ms: u64,
        reason: String,
    },
    /// Take the action on `target` back: its hold is over and it has been clean.
    Revert {
        target: Target,
        class: Class,
        held_ms: u64,
    },
    /// Confirmed, but the cap on avoided elements is reached.
    Capped { target: Target, class: Class },
    /// Confirmed, but this class has no action here.
    Ignored {
        target: Target,
        class: Class,
        why: &'static str,
    },
}

impl Decision {
    /// Short name for logs and the actions metric.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Act { remedy, .. } => remedy.name(),
            Decision::Revert { .. } => "revert",
            Decision::Capped { .. } => "capped",
            Decision::Ignored { .. } => "ignored",
        }
    }

    /// Whether routes must be recomputed.
    pub fn changes_routes(&self) -> bool {
        match self {
            Decision::Act { remedy, .. } => *remedy != Remedy::BlockSources,
            Decision::Revert { class, .. } => remedy(*class) != Ok(Remedy::BlockSources),
            _ => false,
        }
    }
}

/// Whether a class is about a link's quality: what a link going down and back can fake.
fn lossy(class: Class) -> bool {
    remedy(class) == Ok(Remedy::AvoidLink)
}

/// What to do about a class, or why nothing.
pub fn remedy(class: Class) -> Result<Remedy, &'static str> {
    match class {
        Class::GrayLink | Class::Congested | Class::Flapping => Ok(Remedy::AvoidLink),
        Class::Blackhole => Ok(Remedy::AvoidTransit),
        Class::DdosVictim | Class::Scanner => Ok(Remedy::BlockSources),
        Class::LinkDown => Err("a down link is withdrawn by routing already"),
        Class::Normal => Err("not an anomaly"),
    }
}

/// The Plan stage's memory of findings and actions.
#[derive(Debug)]
pub struct Anomalies {
    policy: Policy,
    /// Consecutive windows each element has been flagged, with its latest class.
    pending: BTreeMap<Target, (Class, u32)>,
    /// Links seen down, with the window (of our count) they last were: a link going down
    /// or coming back loses some probes in the window of the change, which is not gray.
    down: BTreeMap<Target, u64>,
    windows: u64,
    active: BTreeMap<Target, Active>,
    /// Per element: strikes, and when its last action ended.
    strikes: BTreeMap<Target, (u32, u64)>,
    /// Confirmed findings already reported as capped or ignored (reported once while
    /// they last).
    told: BTreeSet<Target>,
    /// Acting on nothing for now, whatever the policy says (calibration).
    held_back: bool,
}

impl Anomalies {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            pending: BTreeMap::new(),
            down: BTreeMap::new(),
            windows: 0,
            active: BTreeMap::new(),
            strikes: BTreeMap::new(),
            told: BTreeSet::new(),
            held_back: false,
        }
    }

    /// Acts on nothing while `on` (calibration), as the policy says otherwise.
    pub fn hold_back(&mut self, on: bool) {
        self.held_back = on;
    }

    /// One window's findings (strongest first) over a mesh of `nodes` nodes and `links`
    /// links, for the window ending at `slot_ms` (wall clock, aligned to windows), looked at
    /// `now_ms` (our clock).
    #[cfg(test)]
    pub fn observe(
        &mut self,
        found: &[(Target, Class, String)],
        nodes: usize,
        links: usize,
        slot_ms: u64,
        now_ms: u64,
    ) -> Vec<Decision> {
        self.observe_holding(found, &BTreeSet::new(), nodes, links, slot_ms, now_ms)
    }

    /// [`Self::observe`], with the actions on `held` kept as if still flagged: blocks whose
    /// sources this router is still dropping (the attack goes on behind them, out of the
    /// victim's sight), which only this router's edge is concerned with.
    pub fn observe_holding(
        &mut self,
        found: &[(Target, Class, String)],
        held: &BTreeSet<Target>,
        nodes: usize,
        links: usize,
        slot_ms: u64,
        now_ms: u64,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        let flagged: BTreeSet<&Target> = found.iter().map(|(t, _, _)| t).collect();
        self.pending.retain(|t, _| flagged.contains(t));
        self.told.retain(|t| flagged.contains(t));
        for a in self.active.values_mut() {
            let blocks = remedy(a.class) == Ok(Remedy::BlockSources);
            if flagged.contains(&a.target) || (blocks && held.contains(&a.target)) {
                a.clean = 0;
            } else {
                a.clean += 1;
            }
        }
        let (policy, strikes) = (self.policy, &mut self.strikes);
        self.active.retain(|t, a| {
            let done = slot_ms >= a.until_slot && a.clean >= policy.confirm;
            if done {
                strikes.insert(t.clone(), (a.strikes, slot_ms));
                out.push(Decision::Revert {
                    target: t.clone(),
                    class: a.class,
                    held_ms: now_ms.saturating_sub(a.since_ms),
                });
            }
            !done
        });
        let cap = |total: usize| (total * self.policy.cap_pct as usize / 100).max(1);
        self.windows += 1;
        let settle = u64::from(self.policy.confirm) + 1;
        let now_w = self.windows;
        self.down.retain(|_, w| now_w - *w <= settle);
        for (target, class, _) in found {
            if *class == Class::LinkDown {
                self.down.insert(target.clone(), now_w);
            }
        }
        for (target, class, reason) in found {
            // A link found lossy that then goes down goes on being lossy: random loss
            // can starve its probes long enough to take it down for a moment, and that
            // is no reason to start its confirmation over (a 5 % gray link took 7 s to
            // avoid when it did). A down window counts towards its run, which stays in
            // `pending` under its lossy class.
            let run = self.pending.get(target).map(|p| p.0).filter(|c| lossy(*c));
            let class = &match run {
                Some(was) if *class == Class::LinkDown => was,
                _ => *class,
            };
            if lossy(*class) && self.down.contains_key(target) && run.is_none() {
                // Routing handles a link that goes down and comes back (hold-down, then
                // its measured cost); its loss around the change is not a gray link.
                self.pending.remove(target);
                continue;
            }
            // Confirmation is of one class: windows of different classes start over.
            let seen = self
                .pending
                .entry(target.clone())
                .and_modify(|p| {
                    *p = if p.0 == *class {
                        (p.0, p.1 + 1)
                    } else {
                        (*class, 1)
                    }
                })
                .or_insert((*class, 1))
                .1;
            let needed = match class {
                Class::Blackhole => self.policy.confirm_blackhole,
                _ => self.policy.confirm,
            };
            if seen < needed || self.active.contains_key(target) {
                continue;
            }
            let policy = Policy {
                observe: self.policy.observe || self.held_back,
                ..self.policy
            };
            let fix = match remedy(*class).and_then(|r| policy.allows(r).map(|()| r)) {
                Ok(r) => r,
                Err(why) => {
                    if self.told.insert(target.clone()) {
                        out.push(Decision::Ignored {
                            target: target.clone(),
                            class: *class,
                            why,
                        });
                    }
                    continue;
                }
            };
            // Blocking an attack's sources takes nothing out of the mesh: no cap.
            let held = self
                .active
                .values()
                .filter(|a| remedy(a.class) == Ok(fix))
                .count();
            let total = match fix {
                Remedy::AvoidTransit => Some(nodes),
                Remedy::AvoidLink => Some(links),
                Remedy::BlockSources => None,
            };
            if total.is_some_and(|t| held >= cap(t)) {
                if self.told.insert(target.clone()) {
                    out.push(Decision::Capped {
                        target: target.clone(),
                        class: *class,
                    });
                }
                continue;
            }
            // Acted on again soon after the last action ended: hold twice as long.
            let forget = self.policy.hold_ms << (MAX_DOUBLINGS + 1);
            let strikes = match self.strikes.get(target) {
                Some(&(n, ended)) if slot_ms.saturating_sub(ended) < forget => {
                    (n + 1).min(MAX_DOUBLINGS)
                }
                _ => 0,
            };
            let hold_ms = self.policy.hold_ms << strikes;
            self.active.insert(
                target.clone(),
                Active {
                    target: target.clone(),
                    class: *class,
                    since_ms: now_ms,
                    until_ms: now_ms + hold_ms,
                    until_slot: slot_ms + hold_ms,
                    strikes,
                    clean: 0,
                },
            );
            out.push(Decision::Act {
                target: target.clone(),
                class: *class,
                remedy: fix,
                hold_ms,
                reason: reason.clone(),
            });
        }
        out
    }

    /// What routing should keep traffic off now.
    pub fn avoid(&self) -> Avoid {
        let mut avoid = Avoid::default();
        for (t, a) in &self.active {
            match (t, remedy(a.class)) {
                (Target::Node { node }, Ok(Remedy::AvoidTransit)) => {
                    avoid.transit.insert(node.clone());
                }
                (Target::Link { a, b }, Ok(Remedy::AvoidLink)) => {
                    avoid.links.insert((a.clone(), b.clone()));
                }
                _ => {}
            }
        }
        avoid
    }

    /// Ends the action on `target` now, on an operator's word: reverted as if its hold
    /// had run out and it were clean, its strikes forgotten, and a new finding on it needs
    /// its confirming windows again.
    pub fn clear(&mut self, target: &Target, now_ms: u64) -> Option<Decision> {
        let a = self.active.remove(target)?;
        self.pending.remove(target);
        self.strikes.remove(target);
        Some(Decision::Revert {
            target: target.clone(),
            class: a.class,
            held_ms: now_ms.saturating_sub(a.since_ms),
        })
    }

    pub fn active(&self) -> impl Iterator<Item = &Active> {
        self.active.values()
    }

    /// Elements flagged in the last window but not (yet) acted on, with their class and
    /// how many consecutive windows they have been flagged.
    pub fn pending(&self) -> impl Iterator<Item = (&Target, Class, u32)> {
        self.pending
            .iter()
            .filter(|(t, _)| !self.active.contains_key(*t))
            .map(|(t, (c, n))| (t, *c, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        confirm: 2,
        confirm_blackhole: 2,
        hold_ms: 1000,
        cap_pct: 25,
        observe: false,
        avoid_links: true,
        avoid_transit: true,
        block_sources: true,
    };

    fn node(n: &str) -> Target {
        Target::Node { node: n.into() }
    }

    fn seen(t: &Target, class: Class) -> Vec<(Target, Class, String)> {
        vec![(t.clone(), class, "test".into())]
    }

    #[test]
    fn a_finding_is_acted_on_once_confirmed_and_reverted_after_its_hold_once_clean() {
        let mut a = Anomalies::new(POLICY);
        let b = node("b");
        assert!(
            a.observe(&seen(&b, Class::Blackhole), 6, 8, 0, 0)
                .is_empty()
        );
        let d = a.observe(&seen(&b, Class::Blackhole), 6, 8, 100, 100);
        assert!(
            matches!(&d[..], [Decision::Act { hold_ms: 1000, .. }]),
            "{d:?}"
        );
        assert!(a.avoid().transit.contains("b"));
        // Routed around, b looks clean at once; the hold keeps the action.
        assert!(a.observe(&[], 6, 8, 200, 200).is_empty());
        assert!(a.observe(&[], 6, 8, 900, 900).is_empty());
        let d = a.observe(&[], 6, 8, 1100, 1100);
        assert!(matches!(&d[..], [Decision::Revert { .. }]), "{d:?}");
        assert!(a.avoid().is_empty());
        // Still broken: acted on again, holding twice as long.
        a.observe(&seen(&b, Class::Blackhole), 6, 8, 1200, 1200);
        let d = a.observe(&seen(&b, Class::Blackhole), 6, 8, 1300, 1300);
        assert!(
            matches!(&d[..], [Decision::Act { hold_ms: 2000, .. }]),
            "{d:?}"
        );
    }

    #[test]
    fn a_blackhole_can_be_confirmed_by_one_window_while_other_classes_still_need_theirs() {
        let mut a = Anomalies::new(Policy {
            confirm_blackhole: 1,
            ..POLICY
        });
        let (b, l) = (node("b"), Target::link("x", "y"));
        let both = [seen(&b, Class::Blackhole), seen(&l, Class::GrayLink)].concat();
        let d = a.observe(&both, 6, 8, 0, 0);
        assert!(
            matches!(&d[..], [Decision::Act { target, remedy: Remedy::AvoidTransit, .. }] if *target == b),
            "{d:?}"
        );
        let d = a.observe(&both, 6, 8, 100, 100);
        assert!(
            matches!(&d[..], [Decision::Act { target, remedy: Remedy::AvoidLink, .. }] if *target == l),
            "{d:?}"
        );
        // Reverting still takes `confirm` clean windows after the hold.
        assert!(a.observe(&[], 6, 8, 1100, 1100).is_empty());
        let d = a.observe(&[], 6, 8, 1200, 1200);
        assert!(
            d.iter()
                .any(|d| matches!(d, Decision::Revert { target, .. } if *target == b)),
            "{d:?}"
        );
    }

    #[test]
    fn one_window_is_not_enough_and_a_gap_starts_over() {
        let mut a = Anomalies::new(POLICY);
        let l = Target::link("x", "y");
        assert_eq!(l, Target::link("y", "x"));
        for t in 0..10 {
            let found = if t % 2 == 0 {
                seen(&l, Class::GrayLink)
            } else {
                vec![]
            };
            assert!(
                a.observe(&found, 6, 8, t * 100, t * 100).is_empty(),
                "window {t}"
            );
        }
    }

    #[test]
    fn loss_around_a_link_going_down_and_back_is_not_gray() {
        let mut a = Anomalies::new(POLICY);
        let l = Target::link("x", "y");
        let mut t = 0;
        let mut step = |a: &mut Anomalies, class: Option<Class>| {
            t += 100;
            let found = class.map(|c| seen(&l, c)).unwrap_or_default();
            a.observe(&found, 6, 8, t, t)
        };
        assert!(step(&mut a, None).is_empty());
        for class in [Class::LinkDown, Class::LinkDown, Class::GrayLink] {
            let d = step(&mut a, Some(class));
            assert!(
                d.iter().all(|d| matches!(d, Decision::Ignored { .. })),
                "{class:?}: {d:?}"
            );
        }
        assert!(
            step(&mut a, Some(Class::GrayLink)).is_empty(),
            "still settling"
        );
        assert_eq!(a.active().count(), 0);
        // Long after, gray is gray again.
        for _ in 0..4 {
            step(&mut a, None);
        }
        step(&mut a, Some(Class::GrayLink));
        let d = step(&mut a, Some(Class::GrayLink));
        assert!(matches!(&d[..], [Decision::Act { .. }]), "{d:?}");
    }

    #[test]
    fn a_gray_link_its_probes_take_down_for_a_window_stays_gray() {
        let mut a = Anomalies::new(POLICY);
        let l = Target::link("x", "y");
        assert!(a.observe(&seen(&l, Class::GrayLink), 6, 8, 0, 0).is_empty());
        let d = a.observe(&seen(&l, Class::LinkDown), 6, 8, 100, 100);
        assert!(
            matches!(
                &d[..],
                [Decision::Act {
                    class: Class::GrayLink,
                    remedy: Remedy::AvoidLink,
                    ..
                }]
            ),
            "{d:?}"
        );
        // Gray after its down window is still the same gray link: held, not settled away.
        for t in 2..20 {
            let d = a.observe(&seen(&l, Class::GrayLink), 6, 8, t * 100, t * 100);
            assert!(d.is_empty(), "{d:?}");
        }
        assert_eq!(a.active().count(), 1);
        // A clean window ends the run: a later down-and-back is routing's again.
        assert!(a.observe(&[], 6, 8, 2000, 2000).is_empty());
        let mut b = Anomalies::new(POLICY);
        b.observe(&seen(&l, Class::GrayLink), 6, 8, 0, 0);
        b.observe(&[], 6, 8, 100, 100);
        for (t, class) in [
            (2, Class::LinkDown),
            (3, Class::GrayLink),
            (4, Class::GrayLink),
        ] {
            let d = b.observe(&seen(&l, class), 6, 8, t * 100, t * 100);
            assert!(
                d.iter().all(|d| matches!(d, Decision::Ignored { .. })),
                "{class:?}: {d:?}"
            );
        }
        assert_eq!(b.active().count(), 0);
    }

    #[test]
    fn an_element_still_flagged_is_not_reverted() {
        let mut a = Anomalies::new(POLICY);
        let l = Target::link("x", "y");
        for t in 0..30 {
            let d = a.observe(&seen(&l, Class::GrayLink), 6, 8, t * 100, t * 100);
            assert!(
                !d.iter().any(|d| matches!(d, Decision::Revert { .. })),
                "{d:?}"
            );
        }
        assert_eq!(a.active().count(), 1);
    }

    #[test]
    fn the_cap_bounds_what_is_avoided_and_other_classes_are_only_reported() {
        let mut a = Anomalies::new(POLICY);
        let found = vec![
            (node("a"), Class::Blackhole, String::new()),
            (node("b"), Class::Blackhole, String::new()),
            (Target::link("a", "b"), Class::LinkDown, String::new()),
            (node("c"), Class::DdosVictim, String::new()),
        ];
        a.observe(&found, 6, 8, 0, 0);
        let d = a.observe(&found, 6, 8, 100, 100);
        let names: Vec<&str> = d.iter().map(Decision::name).collect();
        assert_eq!(
            names,
            ["avoid_transit", "capped", "ignored", "block_sources"]
        );
        // Said once while it lasts.
        let d = a.observe(&found, 6, 8, 200, 200);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(a.avoid().transit.len(), 1, "one of six nodes at 25 %");
        assert!(
            a.avoid().links.is_empty(),
            "a DDoS victim is not avoided: its attackers are blocked"
        );
    }

    /// Each window's findings for a blackhole, a gray link and a DDoS victim.
    fn three_classes() -> Vec<(Target, Class, String)> {
        vec![
            (node("b"), Class::Blackhole, "unaccounted".into()),
            (Target::link("a", "c"), Class::GrayLink, "loss".into()),
            (node("d"), Class::DdosVictim, "sources".into()),
        ]
    }

    /// What a policy makes of two windows of the same findings.
    fn decide(policy: Policy) -> (Vec<Decision>, Anomalies) {
        let mut a = Anomalies::new(policy);
        a.observe(&three_classes(), 6, 8, 0, 0);
        let d = a.observe(&three_classes(), 6, 8, 100, 100);
        (d, a)
    }

    #[test]
    fn observe_mode_reports_every_confirmed_finding_and_acts_on_none() {
        let (d, a) = decide(Policy {
            observe: true,
            ..POLICY
        });
        assert_eq!(d.len(), 3, "{d:?}");
        for x in &d {
            assert!(
                matches!(
                    x,
                    Decision::Ignored {
                        why: "detect.mode is observe",
                        ..
                    }
                ),
                "{x:?}"
            );
        }
        assert!(a.avoid().is_empty());
        assert_eq!(a.active().count(), 0);
    }

    #[test]
    fn a_switched_off_remedy_is_reported_and_the_others_act() {
        let (d, a) = decide(Policy {
            block_sources: false,
            ..POLICY
        });
        let names: Vec<&str> = d.iter().map(Decision::name).collect();
        assert_eq!(names, ["avoid_transit", "avoid_link", "ignored"]);
        assert!(
            matches!(
                &d[2],
                Decision::Ignored {
                    why: "detect.block_sources is off",
                    ..
                }
            ),
            "{:?}",
            d[2]
        );
        assert_eq!(a.active().count(), 2);
        let (d, _) = decide(Policy {
            avoid_links: false,
            avoid_transit: false,
            ..POLICY
        });
        let names: Vec<&str> = d.iter().map(Decision::name).collect();
        assert_eq!(names, ["ignored", "ignored", "block_sources"]);
    }

    #[test]
    fn a_block_whose_sources_are_still_dropped_is_held_and_a_route_action_is_not() {
        let mut a = Anomalies::new(POLICY);
        let (victim, hole) = (node("v"), node("b"));
        let found = vec![
            (victim.clone(), Class::DdosVictim, String::new()),
            (hole.clone(), Class::Blackhole, String::new()),
        ];
        a.observe(&found, 6, 8, 0, 0);
        a.observe(&found, 6, 8, 100, 100);
        assert_eq!(a.active().count(), 2);
        // Both look clean from then on (blocked, routed around); the victim's sources are
        // still being dropped here.
        let held: BTreeSet<Target> = [victim.clone(), hole.clone()].into();
        let mut reverted = Vec::new();
        for t in 2..40 {
            for d in a.observe_holding(&[], &held, 6, 8, t * 100, t * 100) {
                if let Decision::Revert { target, .. } = d {
                    reverted.push(target);
                }
            }
        }
        assert_eq!(reverted, [hole], "only the blackhole's action ends");
        // The attack stops: the block ends after its clean windows.
        let d = a.observe_holding(&[], &BTreeSet::new(), 6, 8, 4000, 4000);
        assert!(d.is_empty(), "one clean window is not enough: {d:?}");
        let d = a.observe_holding(&[], &BTreeSet::new(), 6, 8, 4100, 4100);
        assert!(matches!(&d[..], [Decision::Revert { .. }]), "{d:?}");
    }

    #[test]
    fn agents_that_acted_in_one_window_revert_in_one_window() {
        // Two agents see the same windows (the same slots) a few ms apart on their own
        // clocks; the one that looked later must not revert a window later.
        let b = node("b");
        let mut reverted = Vec::new();
        // Each agent's analysis runs a little after the slot, by a lag that varies.
        let lags: [fn(u64) -> u64; 3] = [|_| 3, |w| if w == 2 { 4 } else { 1 }, |w| w % 7];
        for lag in lags {
            let mut a = Anomalies::new(POLICY);
            let mut at = None;
            for w in 0..40u64 {
                let slot = w * 100;
                let found = if w < 3 {
                    seen(&b, Class::Blackhole)
                } else {
                    vec![]
                };
                let d = a.observe(&found, 6, 8, slot, slot + lag(w));
                if d.iter().any(|d| matches!(d, Decision::Revert { .. })) {
                    at = Some(slot);
                }
            }
            reverted.push(at.expect("reverted"));
        }
        assert!(reverted.windows(2).all(|w| w[0] == w[1]), "{reverted:?}");
    }
}
