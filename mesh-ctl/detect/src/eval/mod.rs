//! The evaluation: which scenarios each split holds (`protocol`), a detector's scores over
//! them (`scoring`), thresholds picked on validation only (`calibration`), test figures per
//! seed (`metrics`) and over seeds (`statistics`), inference timing on the caller's clock
//! (`timing`), the run of it all (`evaluate`) and its table (`report`).

mod calibration;
mod evaluate;
mod metrics;
mod protocol;
mod report;
pub mod scoring;
pub(crate) mod statistics;
mod timing;

pub use self::{
    calibration::{MAX_VAL_FPR, calibrate_model},
    evaluate::evaluate,
    metrics::{ClassMetrics, SeedMetrics, metrics},
    protocol::{EvalConfig, HELD_OUT, NamedGraph, SEEN, Split, graph_scenarios, scenarios},
    report::{ClassRow, FamilyRows, Row, Table, render, summary},
    statistics::{Interval, interval},
    timing::{Clock, Cycle, Timing},
};
