//! Metric registration: the Prometheus exporter, its histogram buckets and what each
//! metric the agent records means.

use std::time::Instant;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{config::Config, telemetry::metrics as tmetrics};

const STAGE: &str = "x0tta6bl4_mapek_stage_duration_seconds";
const STAGE_BUCKETS: &[f64] = &[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1];

/// Records how long a MAPE-K stage run took.
pub fn record_stage(stage: &'static str, started: Instant) {
    metrics::histogram!(STAGE, "stage" => stage).record(started.elapsed().as_secs_f64());
}

/// Installs the Prometheus recorder and describes the metrics, when the config enables
/// them; the handle renders the exposition for the metrics listener.
pub fn register(config: &Config) -> anyhow::Result<Option<PrometheusHandle>> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tmetrics::MAP_READ.to_owned()),
            tmetrics::MAP_READ_BUCKETS,
        )
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(STAGE.to_owned()), STAGE_BUCKETS))
        .context("configuring the Prometheus exporter")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    tmetrics::describe();
    crate::build_info::record_metric();
    metrics::describe_histogram!(STAGE, metrics::Unit::Seconds, "Time per MAPE-K stage run");
    for m in AGENT_METRICS {
        describe(m);
    }
    // Counters exist from the start, so a rule can tell zero from absent.
    for m in AGENT_METRICS.iter().filter(|m| m.kind == Kind::Counter) {
        match m.zero {
            Zero::Plain => metrics::counter!(m.name).absolute(0),
            Zero::Labels(key, values) => {
                for v in values() {
                    metrics::counter!(m.name, key => v).absolute(0);
                }
            }
            Zero::Not => {}
        }
    }
    Ok(Some(handle))
}

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// How a counter is registered at zero when the agent starts.
#[derive(Clone, Copy)]
pub enum Zero {
    /// One series without labels.
    Plain,
    /// One series per value of the label (the values are known up front).
    Labels(&'static str, fn() -> Vec<String>),
    /// Its labels are known only when it counts (gauges, and counters by open sets).
    Not,
}

/// One metric the agent records (besides the per-interface telemetry and the stage
/// histogram): what the README's metric list and the exposition's HELP come from.
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Labels, in the order they are documented.
    pub labels: &'static [&'static str],
    pub help: &'static str,
    pub zero: Zero,
}

/// The catalogue as the README's table: one row per metric.
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
    for m in AGENT_METRICS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            },
            if m.labels.is_empty() {
                "-".to_owned()
            } else {
                m.labels.join(", ")
            },
            m.help
        ));
    }
    out
}

fn describe(m: &Metric) {
    match m.kind {
        Kind::Counter => metrics::describe_counter!(m.name, m.help),
        Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
    }
}

fn refusal_reasons() -> Vec<String> {
    crate::secure::Refusal::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect()
}

fn anomaly_actions() -> Vec<String> {
    ["act", "revert", "capped", "ignored"]
        .map(str::to_owned)
        .to_vec()
}

/// Every agent metric, in the order the README lists them.
pub const AGENT_METRICS: &[Metric] = &[
    Metric {
        name: "x0tta6bl4_build_info",
        kind: Kind::Gauge,
        labels: &["version", "revision", "object", "layout"],
        help: "Always 1; the labels name this agent's build and its eBPF object",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_ready",
        kind: Kind::Gauge,
        labels: &[],
        help: "1 when the agent is ready (as /readyz answers 200), 0 when degraded",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbors_adjacent",
        kind: Kind::Gauge,
        labels: &[],
        help: "Neighbours routing may use",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbor_up",
        kind: Kind::Gauge,
        labels: &["interface", "neighbor"],
        help: "1 while routing may use the link to this neighbour, 0 once it may not (or the neighbour is gone)",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbor_rtt_seconds",
        kind: Kind::Gauge,
        labels: &["interface", "neighbor"],
        help: "Smoothed probe round-trip time to the neighbour",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbor_loss_ratio",
        kind: Kind::Gauge,
        labels: &["interface", "neighbor"],
        help: "Smoothed probe loss to the neighbour, 0 to 1",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbor_cost",
        kind: Kind::Gauge,
        labels: &["interface", "neighbor"],
        help: "The link cost advertised and routed with (absent until measured)",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_neighbors_refused_total",
        kind: Kind::Counter,
        labels: &[],
        help: "New neighbours not taken: their interface had as many as allowed (64)",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_hook_changes_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Changes to our place in a TCX chain (another program ahead of ours, ours gone, or back to normal)",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_map_read_errors_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Telemetry map reads that failed (retried next interval; forwarding does not depend on them)",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_probe_realtime",
        kind: Kind::Gauge,
        labels: &[],
        help: "1 when the probe sender runs at real-time priority, 0 when it could not (absent with routing off)",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_lsdb_adverts",
        kind: Kind::Gauge,
        labels: &[],
        help: "Link-state adverts held",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_routes_installed",
        kind: Kind::Gauge,
        labels: &[],
        help: "Routes in the data plane",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_spf_runs_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Shortest-path computations",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_actions_total",
        kind: Kind::Counter,
        labels: &["kind"],
        help: "Agent actions by kind (route changes, detections, blocks, operator commands)",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_control_malformed_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Control datagrams that were not a message",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_control_foreign_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Control datagrams from no neighbour (not link-local on a mesh interface), dropped",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_control_refused_total",
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Handshakes and sealed control messages refused, by reason",
        zero: Zero::Labels("reason", refusal_reasons),
    },
    Metric {
        name: "x0tta6bl4_sessions_established_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Authenticated sessions established with neighbours",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_handshake_dials_deferred_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Handshakes not dialled yet because as many as allowed were under way",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_certificate_expiry_timestamp_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "When this node's certificate expires (Unix seconds); absent without [security]",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_anomaly_findings",
        kind: Kind::Gauge,
        labels: &[],
        help: "Findings of the detector in the last window",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_anomaly_actions_total",
        kind: Kind::Counter,
        labels: &["action"],
        help: "What the Plan stage decided about confirmed findings, by decision",
        zero: Zero::Labels("action", anomaly_actions),
    },
    Metric {
        name: "x0tta6bl4_anomalies_avoided",
        kind: Kind::Gauge,
        labels: &["kind"],
        help: "Nodes (kind=node) and links (kind=link) traffic is kept off now",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_avoided",
        kind: Kind::Gauge,
        labels: &["kind", "element", "class"],
        help: "1 while traffic is kept off this node or link (element) for the class found, 0 once taken back",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_sources_blocked",
        kind: Kind::Gauge,
        labels: &[],
        help: "Attack sources blocked at this router now (until their block is reverted)",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_blocked_sources_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Attack sources blocked at this router",
        zero: Zero::Plain,
    },
    Metric {
        name: "x0tta6bl4_sources_limited",
        kind: Kind::Gauge,
        labels: &[],
        help: "Attack sources and source prefixes rate-limited at this router now",
        zero: Zero::Not,
    },
    Metric {
        name: "x0tta6bl4_limited_sources_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Attack sources and source prefixes rate-limited at this router",
        zero: Zero::Plain,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `x0tta6bl4_*` name the agent's code records is in the catalogue (or is
    /// per-interface telemetry, described in `telemetry::metrics`), and every catalogue
    /// entry is recorded somewhere.
    #[test]
    fn the_catalogue_is_what_the_code_records() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut used = std::collections::BTreeSet::new();
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("src").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.ends_with("exporter.rs") || p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("source");
                for (i, _) in text.match_indices("\"x0tta6bl4_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // The bare prefix is what the telemetry names are built on.
                    if name != tmetrics::PREFIX {
                        used.insert(name);
                    }
                }
            }
        }
        let listed: std::collections::BTreeSet<String> =
            AGENT_METRICS.iter().map(|m| m.name.to_owned()).collect();
        let telemetry = [tmetrics::MAP_READ, STAGE];
        for name in &used {
            assert!(
                listed.contains(name) || telemetry.contains(&name.as_str()),
                "{name} is recorded but not in AGENT_METRICS"
            );
        }
        for name in &listed {
            assert!(used.contains(name), "{name} is listed but never recorded");
        }
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        )
        .expect("README");
        assert!(
            readme.contains(&markdown_table()),
            "the README's agent metric table is not the catalogue's; put this in it:\n{}",
            markdown_table()
        );
        let mut seen = std::collections::BTreeSet::new();
        for m in AGENT_METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
        }
    }
}
