//! An agent for unit tests: its state built from a config on a made-up host, no sockets,
//! over the in-memory data plane.

use std::{net::IpAddr, path::Path};

use super::{
    execute::Installed,
    knowledge::Knowledge,
    mesh::{Io, Mesh},
    monotonic_ns,
};
use crate::{
    config::{Config, MacAddr},
    dataplane::fake::FakeDatapath,
    routes::{HostIface, HostView, Tables},
    routing::Lsdb,
};

/// A host with one interface, `a-eth0` (ifindex 4), and no addresses.
struct Host;

impl HostView for Host {
    fn iface(&self, name: &str) -> Option<HostIface> {
        (name == "a-eth0").then_some(HostIface {
            ifindex: 4,
            mac: MacAddr([2, 0, 0, 0, 0, 0x0a]),
        })
    }

    fn addresses(&self) -> Vec<IpAddr> {
        Vec::new()
    }
}

/// Node `a` on `a-eth0`, unauthenticated, with `extra` TOML after its tables.
pub fn agent(extra: &str) -> (Mesh, Knowledge, Io<FakeDatapath>) {
    let text = format!(
        "node = \"a\"\n[security]\nenabled = false\n{extra}\n[[interfaces]]\nname = \"a-eth0\"\n"
    );
    let config = Config::parse(&text, Path::new("a.toml")).expect("a valid config");
    let tables = Tables::build(&config, &Host, 1).expect("tables");
    let mesh = Mesh::new(
        &config,
        &tables,
        &["a-eth0".to_owned()],
        false,
        monotonic_ns().expect("a clock"),
    )
    .expect("the agent's state");
    let k = Knowledge::new(
        Lsdb::new("a", 60_000),
        Installed::default(),
        tables.neighbors.len() as u32,
    );
    let io = Io {
        dp: FakeDatapath::default(),
        control: None,
        sender: None,
    };
    (mesh, k, io)
}
