//! Agent configurations for [`super::mesh6`]: every router runs link-state routing; n1 and
//! n6 also deliver to their host through a static group and advertise its addresses.

use std::fmt::Write as _;

use super::{AgentConfig, Group, mesh6::Mesh6};

/// One config per router, in n1..n6 order. `extra` is appended to each (TOML tables
/// other than `[routing]`, which this writes).
pub fn configs(mesh: &Mesh6, extra: &str) -> Vec<AgentConfig> {
    mesh.routers
        .iter()
        .map(|r| {
            let interfaces: Vec<String> = mesh
                .links
                .iter()
                .filter(|l| l.a.node == *r || l.b.node == *r)
                .map(|l| l.end(r).ifname.clone())
                .collect();
            let mut config = AgentConfig {
                node: r.clone(),
                interfaces,
                ..Default::default()
            };
            let mut prefixes = Vec::new();
            for host in [&mesh.hs, &mesh.hd] {
                if host.router != *r {
                    continue;
                }
                config.groups.push(Group {
                    name: host.host.clone(),
                    members: vec![(host.ifname.clone(), host.host_mac)],
                });
                for p in [
                    format!("{}/32", host.host_v4),
                    format!("{}/128", host.host_v6),
                ] {
                    config.routes.push((p.clone(), host.host.clone()));
                    prefixes.push(format!("\"{p}\""));
                }
            }
            let mut t = String::new();
            let _ = write!(
                t,
                "[routing]\nenabled = true\nprefixes = [{}]\n\n{extra}",
                prefixes.join(", ")
            );
            config.extra = t;
            config
        })
        .collect()
}
