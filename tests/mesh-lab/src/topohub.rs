//! Real networks' graphs from the PyPI package `topohub` (the Internet Topology Zoo and
//! SNDlib as node-link JSON), for `bench detect`'s test families. `cargo xtask setup`
//! installs it.

use std::{ops::RangeInclusive, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use mesh_ctl::detect::eval::NamedGraph;

/// The families used, by topohub's directory names.
pub const FAMILIES: [&str; 2] = ["topozoo", "sndlib"];

/// Where topohub keeps its graphs.
fn data_dir() -> Result<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, topohub; print(os.path.join(os.path.dirname(topohub.__file__), 'data'))",
        ])
        .output()
        .context("python3")?;
    if !out.status.success() {
        bail!("topohub is not installed (`cargo xtask setup` installs it from PyPI)");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Every graph of `FAMILIES` whose largest connected part has a node count in `nodes`,
/// in file-name order.
pub fn graphs(nodes: RangeInclusive<usize>) -> Result<Vec<NamedGraph>> {
    let dir = data_dir()?;
    let mut out = Vec::new();
    for family in FAMILIES {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(family))
            .with_context(|| format!("listing {}", dir.join(family).display()))?
            .map(|e| Ok(e?.path()))
            .collect::<Result<_>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        for f in files {
            if let Some(g) = mesh_ctl::model::load_graph(&f)?
                && nodes.contains(&g.topology.nodes.len())
            {
                out.push(g);
            }
        }
    }
    Ok(out)
}
