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
    metrics::describe_counter!("x0tta6bl4_actions_total", "Agent actions by kind");
    metrics::describe_gauge!("x0tta6bl4_neighbors_adjacent", "Neighbours routing may use");
    metrics::describe_gauge!(
        "x0tta6bl4_ready",
        "1 when the agent is ready (as /readyz answers 200), 0 when degraded"
    );
    metrics::describe_gauge!("x0tta6bl4_lsdb_adverts", "Link-state adverts held");
    metrics::describe_gauge!("x0tta6bl4_routes_installed", "Routes in the data plane");
    metrics::describe_counter!("x0tta6bl4_spf_runs_total", "Shortest-path computations");
    metrics::describe_counter!(
        "x0tta6bl4_control_malformed_total",
        "Control datagrams that were not a message"
    );
    Ok(Some(handle))
}
