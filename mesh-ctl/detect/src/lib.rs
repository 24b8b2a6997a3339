//! Anomaly detection, pure: a seeded scenario generator with ground truth, the trace format
//! a live agent can write too, per-element features with EWMA history, GraphSAGE in candle,
//! baselines on the same features, the evaluation protocol and the `Detector` interface the
//! agent's Analyze stage calls each cycle. No kernel, no sockets, no files: models and traces
//! travel as bytes and readers; no clock either: `eval` times inference with the caller's.

pub mod baseline;
pub mod calibrate;
pub mod detector;
pub mod eval;
pub mod features;
pub mod live;
pub mod sage;
pub mod scenario;
pub mod scores;
pub mod trace;
pub mod train;

pub use self::{
    detector::{Detector, Finding},
    trace::{Class, Element, LinkTelemetry, NodeTelemetry, Snapshot, Topology, Trace},
};

/// Errors of the detection library.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Reading or writing a trace or report stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A JSON document (trace line, feature spec) did not (de)serialise.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A trace line is malformed or does not match the header's topology.
    #[error("trace line {line}: {reason}")]
    Trace { line: usize, reason: String },
    /// A tensor operation failed (shapes, dtypes, safetensors).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A saved model does not fit the feature spec or configuration it is used with.
    #[error("model: {0}")]
    Model(String),
}

#[cfg(test)]
mod tests;
