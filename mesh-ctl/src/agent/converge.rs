//! Plan and Execute driven by the loop: route recomputation, detection's decisions
//! (blocks and unblocks) and the neighbours the probe maps name.

use std::time::Instant;

use anyhow::Context as _;
use mesh_common::types::NextHop;

use super::{
    anomaly::{Decision, Remedy, Target},
    detection, execute,
    exporter::record_stage,
    fan,
    knowledge::Knowledge,
    mesh::{Mesh, ms},
    monotonic_ns, plan,
};
use crate::{
    dataplane::{Datapath, FlowRecord},
    detect::Class,
    probe::Sender,
    routing,
};

impl Mesh {
    /// The detector over everyone's reports for the window ending at `slot_ms`, then the
    /// Plan stage's decisions.
    pub(super) fn analyze_window(
        &mut self,
        dp: &mut impl Datapath,
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
            Err(e) => crate::event!(ERROR, "execute_error", error = format!("{e:#}")),
        }
        match execute::expire_limits(dp, now_ns) {
            Ok(gone) if !gone.is_empty() => k.act(
                "execute",
                "unlimited",
                format!("{} sources", gone.len()),
                "their rate limit expired".into(),
            ),
            Ok(_) => {}
            Err(e) => crate::event!(ERROR, "execute_error", error = format!("{e:#}")),
        }
        let edge = self.edge(k);
        let Some(d) = self.detection.as_mut() else {
            return;
        };
        d.rates.update(flows, &edge);
        let started = Instant::now();
        let decisions = match d.analyze(slot_ms, now) {
            Ok(decisions) => decisions,
            Err(e) => {
                crate::event!(ERROR, "detect_error", error = format!("{e:#}"));
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
        let live = if blocking {
            fan::live(flows, self.live_since(now_ns))
        } else {
            Vec::new()
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
                    let until = now_ns + hold_ms * 1_000_000;
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
                        // Flows that began before the attack was first seen are not
                        // blocked: their sources are held to their own earlier rate.
                        let ago = dc.confirm_windows as usize + 2;
                        let onset = now_ns.saturating_sub(ago as u64 * dc.window_ms * 1_000_000);
                        if let Some(d) = self.detection.as_mut() {
                            let before = d.rates.before(&victim, ago, dc.window_ms);
                            let limits = fan::FloodLimits {
                                victim: &victim,
                                edge: &edge,
                                onset_ns: onset,
                                before: &before,
                                factor: dc.limit_factor,
                                floor: dc.limit_floor_pps,
                                limit,
                            }
                            .of(&live);
                            let done = execute::limit(dp, limits, until);
                            if !done.is_empty() {
                                let shown: Vec<String> =
                                    done.iter().map(|(s, r)| format!("{s} at {r}/s")).collect();
                                k.act(
                                    "execute",
                                    "limited",
                                    entering(&shown),
                                    format!("the {} at {target}", class.name()),
                                );
                            }
                            metrics::counter!("x0tta6bl4_limited_sources_total")
                                .increment(done.len() as u64);
                            d.limits.insert(target.clone(), done);
                        }
                        fan::flood_sources(&live, &victim, &edge, onset, limit)
                    };
                    let done = execute::block(dp, sources, until);
                    if !done.is_empty() {
                        let shown: Vec<String> = done.iter().map(ToString::to_string).collect();
                        k.act(
                            "execute",
                            "blocked",
                            entering(&shown),
                            format!("the {} at {target}", class.name()),
                        );
                    }
                    metrics::counter!("x0tta6bl4_blocked_sources_total")
                        .increment(done.len() as u64);
                    if let Some(d) = self.detection.as_mut() {
                        d.blocks.insert(target.clone(), done);
                        d.renew_at
                            .insert(target.clone(), now_ns + hold_ms * 1_000_000 / 2);
                    }
                }
                Decision::Revert { target, .. } => {
                    if let Some(d) = self.detection.as_mut() {
                        d.end_sources(dp, target);
                    }
                }
                _ => {}
            }
        }
        self.renew_sources(dp, now_ns);
        if decisions.iter().any(|d| d.changes_routes()) {
            self.spf_soon();
        }
    }

    /// Blocks and limits carry an expiry (a safety net should the agent be gone), which
    /// is pushed on while their action holds: halfway to it, they are written again.
    fn renew_sources(&mut self, dp: &mut impl Datapath, now_ns: u64) {
        let hold_ns = self.config.detect.hold_ms * 1_000_000;
        let Some(d) = self.detection.as_mut() else {
            return;
        };
        let due: Vec<Target> = d
            .renew_at
            .iter()
            .filter(|(_, at)| **at <= now_ns)
            .map(|(t, _)| t.clone())
            .collect();
        for t in due {
            if !d.anomalies.active().any(|a| a.target == t) {
                d.renew_at.remove(&t);
                continue;
            }
            let until = now_ns + hold_ns;
            execute::block(dp, d.blocks.get(&t).cloned().unwrap_or_default(), until);
            execute::limit(dp, d.limits.get(&t).cloned().unwrap_or_default(), until);
            d.renew_at.insert(t, now_ns + hold_ns / 2);
        }
    }

    /// Tells the data plane and the probe sender who the neighbours are now.
    pub(super) fn peers_changed(
        &self,
        dp: &mut impl Datapath,
        k: &Knowledge,
        sender: Option<&Sender>,
    ) {
        let peers = execute::peers(dp, k, &self.tables.neighbors);
        if let Some(s) = sender {
            s.set_peers(peers);
        }
    }

    /// SPF, Plan and Execute: recomputes routes and writes what changed.
    pub(super) fn reconverge(
        &mut self,
        dp: &mut impl Datapath,
        k: &mut Knowledge,
    ) -> anyhow::Result<()> {
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
        let want = plan::desired(&self.tables.routes, &routes, &hop);
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
}

/// "N sources entering here (the first eight, ...)" for the action log.
fn entering(shown: &[String]) -> String {
    format!(
        "{} sources entering here ({}{})",
        shown.len(),
        shown[..shown.len().min(8)].join(", "),
        if shown.len() > 8 { ", ..." } else { "" }
    )
}
