//! x0tta6bl4 userspace: configuration, route building, the data plane and the lab.

pub mod agent;
pub mod api;
pub mod cases;
pub mod config;
pub mod dataplane;
pub mod frames;
pub mod lab;
pub mod netns;
pub mod routes;
pub mod telemetry;
pub mod views;
