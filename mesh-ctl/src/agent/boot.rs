//! Start-up: opens the data plane (loading it, or adopting a running one from its pins),
//! attaches it or rolls back, and installs the static routes through Execute.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::execute::{self, Installed};
use crate::{
    config::Config,
    dataplane::{Dataplane, DataplaneError, pins::PinDir},
    routes::Tables,
};

/// What start-up writes to a fresh data plane, without attaching it: the base entries,
/// then the static routes through Execute. For tests, benches and tools that drive a data
/// plane of their own, so their routes reach the maps as the agent's do.
pub fn install(dp: &mut Dataplane, tables: &Tables) -> Result<Installed, DataplaneError> {
    dp.install_base(tables)?;
    execute::install_routes(dp, &tables.routes)
}

/// A data plane ready for the loop.
pub struct Booted {
    pub dp: Dataplane,
    pub pins: PinDir,
    /// It was running already: its routes and slots are continued from.
    pub adopted: bool,
    /// How TC egress is attached (`adopted` when it was already).
    pub tc_mode: &'static str,
    pub installed: Installed,
}

/// Opens, takes over or attaches the data plane for `config` on `names`, running
/// `object`. Taking over keeps the running hash seed in `tables` when the config leaves it
/// to us, and brings the attachments to `names` (make before break). A failed fresh attach
/// is undone entirely: a half-started data plane must not be adopted later.
pub fn start(
    config: &Config,
    tables: &mut Tables,
    names: &[String],
    object: &[u8],
) -> anyhow::Result<Booted> {
    let pins = PinDir::new(&config.dataplane.pin_dir);
    let (mut dp, start) = Dataplane::open(&pins, config.telemetry.flow_capacity, object)
        .context("opening the data plane (loading it, or taking over its pins)")?;
    let takeover = match start {
        crate::dataplane::Start::Adopted(t) => Some(t),
        crate::dataplane::Start::Fresh => None,
    };
    let adopted = takeover.is_some();
    let (installed, tc_mode) = if let Some(takeover) = &takeover {
        let pinned: BTreeSet<String> = dp.pinned_interfaces().into_iter().collect();
        let wanted: BTreeSet<String> = names.iter().cloned().collect();
        let added: Vec<String> = wanted.difference(&pinned).cloned().collect();
        let removed: Vec<String> = pinned.difference(&wanted).cloned().collect();
        crate::event!(
            INFO,
            "took_over",
            pin_dir = %pins.root().display(),
            replaced = %serde_json::json!(takeover.replaced),
            kept = %serde_json::json!(takeover.kept),
            stale = %serde_json::json!(takeover.stale),
            flows_resized = %serde_json::json!(takeover.flows_resized),
            interfaces_added = %serde_json::json!(added),
            interfaces_removed = %serde_json::json!(removed)
        );
        if config.dataplane.hash_seed == 0 {
            // Same seed as before: flows keep their paths across the restart.
            tables.config.hash_seed = dp
                .read_config()
                .context("reading the running config")?
                .hash_seed;
        }
        dp.install_base(tables)
            .context("updating interfaces and settings")?;
        let forwarding = dp
            .change_interfaces(&added, &removed, &config.dataplane)
            .context("attaching to added interfaces and detaching from removed ones")?;
        hook_fallbacks(config, &forwarding);
        dp.prune_ports(tables)
            .context("removing the ports of removed interfaces")?;
        let mut installed = Installed::adopt(&dp).context("reading the installed routes")?;
        // Only added: the restart hold keeps what the last run installed until relearned.
        installed
            .apply(&mut dp, &tables.routes, true)
            .context("installing static routes")?;
        (installed, "adopted")
    } else {
        let attached = (|| {
            dp.install_base(tables)
                .context("installing interfaces and settings")?;
            let forwarding = dp
                .attach(names, &config.dataplane)
                .context("attaching to the mesh interfaces")?;
            hook_fallbacks(config, &forwarding);
            let mode = dp
                .attach_egress(
                    names,
                    config.dataplane.tc_attach,
                    config.dataplane.tc_position,
                )
                .context("attaching TC egress telemetry to the mesh interfaces")?;
            dp.persist().context("pinning the attachments")?;
            anyhow::Ok(mode)
        })();
        let mode = match attached {
            Ok(mode) => mode.name(),
            Err(e) => {
                // All or nothing: a half-started data plane must not be adopted later.
                dp.detach_all();
                let _ = crate::dataplane::detach_pinned(&pins);
                return Err(e);
            }
        };
        let installed =
            execute::install_routes(&mut dp, &tables.routes).context("installing static routes")?;
        (installed, mode)
    };
    Ok(Booted {
        dp,
        pins,
        adopted,
        tc_mode,
        installed,
    })
}

/// Says where `auto` found the XDP hook taken and forwards at TC ingress instead.
fn hook_fallbacks(config: &Config, forwarding: &[(String, crate::dataplane::Forwarding)]) {
    if config.dataplane.hook != crate::config::Hook::Auto {
        return;
    }
    for (iface, f) in forwarding {
        if *f != crate::dataplane::Forwarding::Xdp {
            crate::event!(
                WARN,
                "xdp_hook_taken",
                iface = iface.as_str(),
                forwarding = f.name(),
                action = "another program holds the XDP hook: forwarding at TC ingress, first in the chain, and everything not forwarded goes on to the programs after ours"
            );
        }
    }
}
