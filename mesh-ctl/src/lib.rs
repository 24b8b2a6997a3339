//! x0tta6bl4 userspace: configuration, route building, the data plane and the lab.

pub mod agent;
pub mod api;
pub mod cases;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod detect;
pub mod frames;
pub mod install;
pub mod lab;
pub mod netns;
pub mod probe;
pub mod record;
pub mod routes;
pub mod routing;
pub mod secure;
pub mod telemetry;
pub mod views;
