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

/// The lab's trust domain.
pub const TRUST_DOMAIN: &str = "mesh.lab";

/// Creates a mesh authority named `authority` under the lab directory (once) and issues
/// each of `nodes` an identity from it with `meshctl identity`; returns each node's
/// `[security]` table.
pub fn identities(
    lab: &super::Lab,
    authority: &str,
    nodes: &[&str],
) -> anyhow::Result<Vec<(String, String)>> {
    let dir = lab.dir().join("pki").join(authority);
    let meshctl = lab.meshctl.to_string_lossy();
    let run = |args: &[&str]| crate::netns::run(&meshctl, args);
    let ca = dir.join("authority");
    let ca_s = ca.to_string_lossy().into_owned();
    if !ca.join("authority.cert").exists() {
        run(&[
            "identity",
            "init-authority",
            "--trust-domain",
            TRUST_DOMAIN,
            "--dir",
            &ca_s,
        ])?;
    }
    let out = dir.join("nodes");
    let out_s = out.to_string_lossy().into_owned();
    let mut tables = Vec::new();
    for n in nodes {
        run(&[
            "identity",
            "issue",
            "--authority",
            &ca_s,
            "--name",
            n,
            "--out",
            &out_s,
        ])?;
        tables.push((
            (*n).to_owned(),
            format!(
                "\n[security]\ntrust_domain = \"{TRUST_DOMAIN}\"\nauthority_cert = \"{}\"\nnode_cert = \"{}\"\nnode_key = \"{}\"\n",
                ca.join("authority.cert").display(),
                out.join(format!("{n}.cert")).display(),
                out.join(format!("{n}.key")).display(),
            ),
        ));
    }
    Ok(tables)
}

/// [`configs`] with an identity for every router from one lab authority: the mesh
/// authenticated, as it runs by default.
pub fn secure_configs(
    lab: &super::Lab,
    mesh: &Mesh6,
    extra: &str,
) -> anyhow::Result<Vec<AgentConfig>> {
    let names: Vec<&str> = mesh.routers.iter().map(String::as_str).collect();
    let ids = identities(lab, "ca", &names)?;
    Ok(configs(mesh, extra)
        .into_iter()
        .zip(ids)
        .map(|(mut c, (_, table))| {
            c.extra.push_str(&table);
            c
        })
        .collect())
}
