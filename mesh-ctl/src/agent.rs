//! `meshctl agent`: load, attach, install static routes, run until told to stop.

use std::path::Path;

use anyhow::Context as _;
use mesh_common::Reason;
use serde_json::json;

use crate::{
    config::Config,
    dataplane::{Dataplane, SystemHost},
    routes::Tables,
};

/// Everything that can be checked before the kernel is touched: the file, and the
/// interfaces it names on this host.
pub fn prepare(file: &Path) -> anyhow::Result<(Config, Tables)> {
    let config = Config::load(file)?;
    let seed = random_seed();
    let tables = Tables::build(&config, &SystemHost, seed).map_err(|p| p.in_file(file))?;
    Ok((config, tables))
}

/// Runs the agent until SIGINT or SIGTERM, then detaches and prints the final counters.
pub async fn run(file: &Path) -> anyhow::Result<()> {
    let (config, tables) = prepare(file)?;
    let mut dp = Dataplane::load().context("loading the data plane")?;
    dp.install(&tables).context("installing routes")?;
    let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
    dp.attach(&names, config.dataplane.xdp_mode)
        .context("attaching to the mesh interfaces")?;
    event(json!({
        "event": "attached",
        "node": config.node,
        "interfaces": names,
        "routes_v4": tables.v4.len(),
        "routes_v6": tables.v6.len(),
        "groups": tables.groups.len(),
    }));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }

    let reasons = dp.reasons().context("reading the reason counters")?;
    dp.detach_all();
    event(json!({
        "event": "detached",
        "node": config.node,
        "reasons": reason_object(&reasons),
    }));
    Ok(())
}

fn reason_object(reasons: &[(Reason, u64)]) -> serde_json::Value {
    reasons
        .iter()
        .map(|(r, n)| (r.name().to_owned(), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One machine-readable line on stdout per lifecycle event.
fn event(v: serde_json::Value) {
    println!("{v}");
}

fn random_seed() -> u32 {
    use std::io::Read as _;
    let mut b = [0u8; 4];
    // Without /dev/urandom a clock-derived seed still avoids polarization between nodes.
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() | 1)
            .unwrap_or(1),
    }
}
