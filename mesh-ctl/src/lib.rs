//! x0tta6bl4 userspace: the `meshctl` agent and tool: configuration, route building, the data
//! plane, telemetry, the control plane and the views.

pub mod agent;
pub mod api;
pub mod build_info;
pub mod check;
pub mod cli_docs;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod install;
pub mod logging;
pub mod model;
pub mod probe;
pub mod record;
pub mod route_get;
pub mod routes;
pub mod secure;
pub mod telemetry;
pub mod veth_peer;
pub mod views;

pub use mesh_detect as detect;
pub use mesh_routing as routing;
