//! Reload without restart (SIGHUP, `meshctl reload`, the unit's `ExecReload`): the config
//! is read and checked whole, as at start. When it passes and every difference is one the
//! running agent can take in place, all of them are applied; otherwise nothing is, and the
//! agent keeps running on the config it has, saying which keys need a restart.

use std::path::Path;

use super::{
    detection::Detection,
    knowledge::Knowledge,
    mesh::{Mesh, settings},
};
use crate::{config::Config, dataplane::Datapath, routes::Tables};

impl Mesh {
    /// Reads `file` and applies it in place: all of it, or (when the check fails or a
    /// difference needs a restart) none of it, saying why.
    pub(super) fn reload(
        &mut self,
        file: &Path,
        dp: &mut impl Datapath,
        k: &mut Knowledge,
    ) -> Result<Changes, String> {
        let (new, mut new_tables) = super::prepare(file).map_err(|e| e.to_string())?;
        let mut changes =
            classify(&self.config, &self.tables, &new, &mut new_tables).map_err(|keys| {
                format!(
                    "nothing was applied: {} cannot change while the agent runs; restart it \
                 (`systemctl restart x0tta6bl4`: forwarding continues across the restart)",
                    keys.join(", ")
                )
            })?;
        // Everything that can fail comes before the first change.
        let detection = match (changes.detect, new.detect.enabled && new.routing.enabled) {
            (true, true) => Some(Some(
                Detection::new(&new.detect, (super::unix_now() * 1000.0) as u64)
                    .map_err(|e| format!("nothing was applied: the detector: {e:#}"))?,
            )),
            (true, false) => Some(None),
            (false, _) => None,
        };
        // The revocation list is read again on every reload: a revocation must not wait
        // for a restart. Its signature and age are checked before anything changes.
        let trust = match (
            self.secure.as_ref(),
            new.security.as_ref().filter(|s| s.enabled),
        ) {
            (Some(s), Some(sc)) => {
                let loaded = sc
                    .load(super::unix_now() as u64)
                    .map_err(|e| format!("nothing was applied: [security]: {e}"))?;
                if loaded.trust.crl_issued_at() < s.crl_issued_at() {
                    // A replayed old list must not un-revoke anyone.
                    return Err(format!(
                        "nothing was applied: the revocation list was issued at {}, before \
                         the one in force ({})",
                        loaded.trust.crl_issued_at(),
                        s.crl_issued_at()
                    ));
                }
                (*loaded.trust.revoked() != s.revoked()).then_some(loaded.trust)
            }
            _ => None,
        };
        if let Some(d) = detection {
            self.detection = d;
        }
        if let (Some(trust), Some(s)) = (trust, self.secure.as_mut()) {
            changes.revocations = true;
            for (addr, node) in s.replace_trust(trust) {
                // Its sealed hellos no longer open: it is no neighbour from now on.
                k.neighbors.retain(|n| n.node != node);
                k.act(
                    "execute",
                    "revoked",
                    format!("{node} at {}", addr.1),
                    "its certificate is on the new revocation list: session ended".into(),
                );
            }
        }
        self.settings = settings(&new);
        self.config = new;
        if changes.static_routes {
            self.tables = new_tables;
            // Execute writes make-before-break: a failure leaves the old routes whole and
            // the next recomputation finishes the job.
            if let Err(e) = self.reconverge(dp, k) {
                return Err(format!("the new routes are not all written yet: {e:#}"));
            }
        }
        Ok(changes)
    }
}

/// What a new config changes that the running agent applies in place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// `[[routes]]` or `local`: the static routes, through Execute (make-before-break).
    pub static_routes: bool,
    /// `[routing]` timers (`hello_interval_ms`, `hello_dead_ms`, `refresh_s`,
    /// `restart_hold_ms`, `restart_grace_ms`) and the advertised `prefixes`.
    pub routing: bool,
    /// `[probe]` link-quality settings (`window_ms`, `up_hold_ms`, `cost_change_pct`).
    pub probe: bool,
    /// `telemetry.interval_ms`.
    pub telemetry_interval: bool,
    /// `[detect]`: the detector is rebuilt with the new settings and model.
    pub detect: bool,
    /// The revocation list names serials it did not: their sessions end.
    pub revocations: bool,
}

impl Changes {
    /// The changed parts by name, for logs and `meshctl reload`.
    pub fn names(&self) -> Vec<String> {
        [
            (self.static_routes, "routes"),
            (self.routing, "routing"),
            (self.probe, "probe"),
            (self.telemetry_interval, "telemetry.interval_ms"),
            (self.detect, "detect"),
            (self.revocations, "security.revocation_list"),
        ]
        .into_iter()
        .filter(|(changed, _)| *changed)
        .map(|(_, name)| name.to_owned())
        .collect()
    }
}

/// Sorts the differences between the running config (`old`, with the tables built from
/// it) and a checked new one: the changes to apply, or the keys only a restart can
/// change. `new_tables` is built with a fresh hash seed when the config leaves it 0; the
/// running seed is kept.
pub fn classify(
    old: &Config,
    old_tables: &Tables,
    new: &Config,
    new_tables: &mut Tables,
) -> Result<Changes, Vec<String>> {
    if old.dataplane.hash_seed == new.dataplane.hash_seed {
        new_tables.config.hash_seed = old_tables.config.hash_seed;
    }
    let changes = Changes {
        static_routes: old.routes != new.routes
            || old.local != new.local
            || old_tables.routes != new_tables.routes,
        routing: old.routing != new.routing,
        probe: old.probe != new.probe,
        telemetry_interval: old.telemetry.interval_ms != new.telemetry.interval_ms,
        detect: old.detect != new.detect,
        // Known once the list is read (`Mesh::reload`).
        revocations: false,
    };
    // The new config with every part a reload applies taken back to the running one's:
    // whatever still differs needs a restart.
    let mut rest = new.clone();
    rest.routes.clone_from(&old.routes);
    rest.local.clone_from(&old.local);
    rest.detect = old.detect.clone();
    rest.telemetry.interval_ms = old.telemetry.interval_ms;
    for (r, o) in [
        (
            &mut rest.routing.hello_interval_ms,
            old.routing.hello_interval_ms,
        ),
        (&mut rest.routing.hello_dead_ms, old.routing.hello_dead_ms),
        (&mut rest.routing.refresh_s, old.routing.refresh_s),
        (
            &mut rest.routing.restart_hold_ms,
            old.routing.restart_hold_ms,
        ),
        (
            &mut rest.routing.restart_grace_ms,
            old.routing.restart_grace_ms,
        ),
        (&mut rest.probe.window_ms, old.probe.window_ms),
        (&mut rest.probe.up_hold_ms, old.probe.up_hold_ms),
    ] {
        *r = o;
    }
    rest.routing.prefixes.clone_from(&old.routing.prefixes);
    rest.probe.cost_change_pct = old.probe.cost_change_pct;

    let mut fixed = Vec::new();
    let mut differs = |same: bool, what: &str| {
        if !same {
            fixed.push(what.to_owned());
        }
    };
    differs(rest.node == old.node, "node");
    differs(rest.interfaces == old.interfaces, "interfaces");
    differs(rest.groups == old.groups, "groups");
    differs(rest.dataplane == old.dataplane, "dataplane");
    differs(
        rest.telemetry == old.telemetry,
        "telemetry (other than interval_ms)",
    );
    differs(rest.metrics == old.metrics, "metrics");
    differs(rest.api == old.api, "api");
    differs(
        rest.probe == old.probe,
        "probe (interval_ms, dead_ms, realtime)",
    );
    differs(
        rest.routing == old.routing,
        "routing (enabled, port, max_age_s)",
    );
    differs(rest.security == old.security, "security");
    // The same config can still build other tables: an interface's address or MAC
    // changed on the host since the start.
    differs(
        new_tables.ifaces == old_tables.ifaces
            && new_tables.neighbors == old_tables.neighbors
            && new_tables.config == old_tables.config,
        "the interfaces' addresses or the data plane settings on this host",
    );
    if fixed.is_empty() {
        Ok(changes)
    } else {
        Err(fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticRoute;

    fn config(extra: &str) -> Config {
        let text = format!(
            "node = \"r1\"\n{extra}\n[[interfaces]]\nname = \"m0\"\n[[interfaces]]\nname = \"m1\"\n"
        );
        toml::from_str(&text).expect("a config")
    }

    fn tables(seed: u32) -> Tables {
        let mut t = Tables {
            config: Default::default(),
            ifaces: Vec::new(),
            routes: Default::default(),
            neighbors: Vec::new(),
        };
        t.config.hash_seed = seed;
        t
    }

    #[test]
    fn the_same_config_changes_nothing_and_keeps_the_running_seed() {
        let (old, new) = (config(""), config(""));
        let mut new_tables = tables(99);
        let c = classify(&old, &tables(7), &new, &mut new_tables).expect("reloadable");
        assert!(c.names().is_empty(), "{c:?}");
        assert_eq!(new_tables.config.hash_seed, 7);
    }

    #[test]
    fn timers_routes_probe_and_detection_change_in_place() {
        let old = config("");
        let mut new = config(
            "[routing]\nhello_interval_ms = 500\nprefixes = [\"10.9.0.0/24\"]\n\
             [probe]\nup_hold_ms = 900\n[telemetry]\ninterval_ms = 2000\n\
             [detect]\ngray_loss = 0.3\n",
        );
        new.routes.push(StaticRoute {
            prefix: "10.1.0.0/24".parse().expect("prefix"),
            group: "g".into(),
        });
        let c = classify(&old, &tables(1), &new, &mut tables(1)).expect("reloadable");
        assert_eq!(
            c.names(),
            [
                "routes",
                "routing",
                "probe",
                "telemetry.interval_ms",
                "detect"
            ]
        );
    }

    #[test]
    fn what_needs_a_restart_is_named_and_nothing_is_applied() {
        let old = config("");
        let new = config(
            "[telemetry]\nflow_capacity = 4096\n[probe]\ninterval_ms = 20\n\
             [routing]\nhello_dead_ms = 9000\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
        );
        let fixed = classify(&old, &tables(1), &new, &mut tables(1)).expect_err("a restart");
        assert_eq!(
            fixed,
            [
                "telemetry (other than interval_ms)",
                "metrics",
                "probe (interval_ms, dead_ms, realtime)"
            ]
        );
        let renamed = config("").clone();
        let mut other = renamed.clone();
        other.node = "r2".into();
        other.interfaces.pop();
        let fixed = classify(&renamed, &tables(1), &other, &mut tables(1)).expect_err("restart");
        assert_eq!(fixed, ["node", "interfaces"]);
        let fixed = classify(
            &renamed,
            &tables(1),
            &renamed,
            &mut tables_with_other_iface(),
        )
        .expect_err("host");
        assert_eq!(
            fixed,
            ["the interfaces' addresses or the data plane settings on this host"]
        );
    }

    fn tables_with_other_iface() -> Tables {
        let mut t = tables(1);
        t.config.flow_sample_n = 3;
        t
    }
}
