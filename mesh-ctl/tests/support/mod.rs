//! Support shared by the integration tests: the namespace lab, the test router loaded
//! through `BPF_PROG_TEST_RUN`, and (in [`mesh`]) the six-router mesh's helpers. Each test
//! file uses part of it.

pub mod mesh;

use std::path::PathBuf;

use mesh_common::{maps::FLOWS_DEFAULT_CAPACITY, types::DataplaneConfig};
use mesh_ctl::dataplane::Dataplane;
use mesh_lab::{Lab, cases, netns};

/// `test_run` without a context delivers on the namespace's loopback.
pub const LOOPBACK: u32 = 1;

/// Egress ports of the test router: ifindex and MAC.
pub type Ports = Vec<(u32, [u8; 6])>;

/// A namespace lab whose agents run the `meshctl` built for these tests.
pub fn lab(tag: &str) -> Lab {
    Lab::new(tag, PathBuf::from(env!("CARGO_BIN_EXE_meshctl"))).expect("lab")
}

/// A loaded data plane with the test router's tables, in a fresh namespace.
pub fn router() -> (Dataplane, Ports) {
    router_with(FLOWS_DEFAULT_CAPACITY, |_| {})
}

/// A loaded data plane with the test router's tables (telemetry config adjusted by
/// `configure`), in a fresh namespace.
pub fn router_with(
    flow_capacity: u32,
    configure: impl FnOnce(&mut DataplaneConfig),
) -> (Dataplane, Ports) {
    netns::unshare_thread().expect("new network namespace");
    let egress = cases::egress_ports().expect("veths for egress");
    let mut dp = Dataplane::load_with(flow_capacity).expect("the verifier accepts the program");
    let mut t = cases::tables(LOOPBACK, &egress);
    configure(&mut t.config);
    mesh_ctl::agent::install(&mut dp, &t).expect("tables install");
    (dp, egress)
}
