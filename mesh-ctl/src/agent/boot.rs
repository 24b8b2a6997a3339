//! Start-up: opens the data plane (loading it, or adopting a running one from its pins),
//! attaches it or rolls back, and installs the static routes through Execute.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};

use super::{execute::Installed, plan};
use crate::{
    config::Config,
    dataplane::{Dataplane, pins::PinDir},
    routes::Tables,
};

/// A data plane ready for the loop.
pub struct Booted {
    pub dp: Dataplane,
    pub pins: PinDir,
    /// It was running already: its routes and slots are continued from.
    pub adopted: bool,
    /// How TC egress is attached (`adopted` when it was already).
    pub tc_mode: &'static str,
    pub installed: Installed,
    pub statics: plan::Desired,
}

/// Opens, adopts or attaches the data plane for `config` on `names`. Adopting keeps the
/// running hash seed in `tables` when the config leaves it to us. A failed attach is
/// undone entirely: a half-started data plane must not be adopted later.
pub fn start(config: &Config, tables: &mut Tables, names: &[String]) -> anyhow::Result<Booted> {
    let pins = PinDir::new(&config.dataplane.pin_dir);
    let (mut dp, start) = Dataplane::open(&pins, config.telemetry.flow_capacity)
        .context("opening the data plane (loading it, or adopting its pins)")?;
    let adopted = start == crate::dataplane::Start::Adopted;
    let mut installed = Installed::default();
    let tc_mode = if adopted {
        let pinned: BTreeSet<String> = dp.pinned_interfaces().into_iter().collect();
        let wanted: BTreeSet<String> = names.iter().cloned().collect();
        if pinned != wanted {
            bail!(
                "the data plane pinned at {} runs on {:?} but the config names {:?}; run \
                 `meshctl detach --pin-dir {}` first (forwarding stops until the agent is back)",
                pins.root().display(),
                pinned,
                wanted,
                pins.root().display()
            );
        }
        if config.dataplane.hash_seed == 0 {
            // Same seed as before: flows keep their paths across the restart.
            tables.config.hash_seed = dp
                .read_config()
                .context("reading the running config")?
                .hash_seed;
        }
        dp.install_base(tables)
            .context("updating interfaces and settings")?;
        installed = Installed::adopt(&dp).context("reading the installed routes")?;
        "adopted"
    } else {
        let attached = (|| {
            dp.install_base(tables)
                .context("installing interfaces and settings")?;
            dp.attach(names, config.dataplane.xdp_mode)
                .context("attaching to the mesh interfaces")?;
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
        match attached {
            Ok(mode) => mode.name(),
            Err(e) => {
                // All or nothing: a half-started data plane must not be adopted later.
                dp.detach_all();
                let _ = crate::dataplane::detach_pinned(&pins);
                return Err(e);
            }
        }
    };
    let statics = plan::static_routes(tables);
    installed
        .apply(&mut dp, &statics, adopted)
        .context("installing static routes")?;
    Ok(Booted {
        dp,
        pins,
        adopted,
        tc_mode,
        installed,
        statics,
    })
}
