//! `meshctl install`: puts the running binary, the systemd unit and an example
//! configuration in place, and says what to do next.
//!
//! The unit and the example live in `mesh-ctl/packaging/` and are embedded here, so the binary
//! carries everything it installs. An existing configuration is never touched; the unit
//! is ours and is replaced (local changes belong in a drop-in). Shell completions and man
//! pages are generated from the command tree and go to the standard places under the
//! prefix.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The unit's file name, and the name to `systemctl enable`.
pub const UNIT_NAME: &str = "x0tta6bl4.service";
/// The configuration's file name inside the config directory.
pub const CONFIG_NAME: &str = "mesh.toml";
/// The unit as shipped, with the default paths.
pub const UNIT_TEMPLATE: &str = include_str!("../packaging/x0tta6bl4.service");
/// The commented example configuration.
pub const EXAMPLE_CONFIG: &str = include_str!("../packaging/mesh.example.toml");

/// The paths the shipped unit names, replaced by the installed ones.
const TEMPLATE_BINARY: &str = "/usr/local/bin/meshctl";
const TEMPLATE_CONFIG: &str = "/etc/x0tta6bl4/mesh.toml";

pub const BINARY_MODE: u32 = 0o755;
pub const UNIT_MODE: u32 = 0o644;
/// Completions and man pages: anyone may read them.
pub const DOC_MODE: u32 = 0o644;
/// Root-only: the agent runs as root and later versions keep key material here.
pub const CONFIG_MODE: u32 = 0o600;
pub const CONFIG_DIR_MODE: u32 = 0o750;
const DIR_MODE: u32 = 0o755;

/// Directories systemd's system manager loads units from.
const SYSTEM_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Where `meshctl install` puts things.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The binary goes to PREFIX/bin/meshctl.
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// The configuration is CONFIG_DIR/mesh.toml; an existing one is kept.
    #[arg(long, value_name = "DIR", default_value = "/etc/x0tta6bl4")]
    pub config_dir: PathBuf,
    /// Where the systemd unit is written.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Print the plan only; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What an install does, worked out before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The binary being installed (normally the running one).
    pub source: PathBuf,
    pub binary: PathBuf,
    pub unit: PathBuf,
    /// The unit with this install's paths.
    pub unit_text: String,
    pub config: PathBuf,
    /// A configuration exists (or something else by that name): it is left alone.
    pub keep_config: bool,
    /// `source` already is `binary` (install run from the installed copy).
    pub binary_in_place: bool,
    /// systemd runs and reads `unit`'s directory: `systemctl daemon-reload` afterwards.
    pub reload: bool,
    /// systemd's system manager loads units from `unit`'s directory.
    pub unit_dir_is_systemd: bool,
    /// Completions and man pages under the prefix, as (path, contents).
    pub docs: Vec<(PathBuf, Vec<u8>)>,
    /// The drop-in that orders the unit after the mesh interfaces' devices, and its text;
    /// none when the configuration names no interface it can read.
    pub interfaces_dropin: Option<(PathBuf, String)>,
}

/// The drop-in's file name under `x0tta6bl4.service.d/`.
pub const INTERFACES_DROPIN: &str = "10-interfaces.conf";

/// The systemd device unit of network interface `name` (`systemd-escape --path`).
pub fn device_unit(name: &str) -> String {
    let mut out = String::from("sys-subsystem-net-devices-");
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | ':' | '_' | '.' => out.push(c),
            c => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out.push_str(".device");
    out
}

/// The drop-in for `interfaces`: the agent starts once their devices exist (a mesh
/// interface created late, by a network manager or a VPN, would fail the start).
pub fn render_interfaces_dropin(config: &Path, interfaces: &[String]) -> String {
    let mut text = format!(
        "# Written by `meshctl install` from {}: start after the mesh interfaces exist.\n\
         # Run `meshctl install` again after changing `interfaces`.\n[Unit]\n",
        config.display()
    );
    for name in interfaces {
        let unit = device_unit(name);
        text.push_str(&format!("Wants={unit}\nAfter={unit}\n"));
    }
    text
}

/// The interface names the configuration at `config` lists (the example's when there
/// is none yet), as far as it parses.
fn configured_interfaces(config: &Path, exists: bool) -> Vec<String> {
    let text = if exists {
        match crate::config::read_config_text(config) {
            Ok(t) => t,
            Err(_) => return Vec::new(),
        }
    } else {
        EXAMPLE_CONFIG.to_owned()
    };
    crate::config::Config::parse_unvalidated(&text, config)
        .map(|c| c.interfaces.into_iter().map(|i| i.name).collect())
        .unwrap_or_default()
}

/// Installs the running binary as `opts` says, with the completions and man pages of
/// `cli` (its command tree), printing what it does and what is next.
pub fn run(opts: &Options, cli: &clap::Command) -> anyhow::Result<()> {
    let source = std::env::current_exe().context("finding the running meshctl binary")?;
    let plan = Plan::new(opts, &source, cli)?;
    if opts.dry_run {
        println!("meshctl install --dry-run: nothing is written");
        for line in plan.describe() {
            println!("  {line}");
        }
        return Ok(());
    }
    for line in plan.apply()? {
        println!("{line}");
    }
    print!("{}", plan.next_steps());
    Ok(())
}

impl Plan {
    /// Resolves the paths and renders the unit; reads the file system, writes nothing.
    pub fn new(opts: &Options, source: &Path, cli: &clap::Command) -> anyhow::Result<Self> {
        let absolute =
            |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
        for (flag, dir) in [
            ("--prefix", &opts.prefix),
            ("--config-dir", &opts.config_dir),
            ("--unit-dir", &opts.unit_dir),
        ] {
            let dir = absolute(dir)?;
            // Kernel file systems hold no files of ours; a plan there is a typo.
            if ["/proc", "/sys", "/dev"].iter().any(|k| dir.starts_with(k)) {
                anyhow::bail!("{flag} {}: not a place to install files", dir.display());
            }
        }
        let binary = absolute(&opts.prefix)?.join("bin").join("meshctl");
        let config = absolute(&opts.config_dir)?.join(CONFIG_NAME);
        let unit_dir = absolute(&opts.unit_dir)?;
        let unit = unit_dir.join(UNIT_NAME);
        let unit_text = render_unit(&binary, &config)?;
        let keep_config = match fs::symlink_metadata(&config) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(e).with_context(|| format!("looking for {}", config.display()));
            }
        };
        let binary_in_place = match (fs::canonicalize(source), fs::canonicalize(&binary)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let unit_dir_is_systemd = is_system_unit_dir(&unit_dir);
        let docs = crate::cli_docs::install_files(cli, &absolute(&opts.prefix)?)
            .context("generating completions and man pages")?;
        let interfaces = configured_interfaces(&config, keep_config);
        let interfaces_dropin = (!interfaces.is_empty()).then(|| {
            (
                unit_dir
                    .join(format!("{UNIT_NAME}.d"))
                    .join(INTERFACES_DROPIN),
                render_interfaces_dropin(&config, &interfaces),
            )
        });
        Ok(Self {
            source: source.to_owned(),
            binary,
            unit,
            unit_text,
            config,
            keep_config,
            binary_in_place,
            reload: unit_dir_is_systemd && systemd_booted(),
            unit_dir_is_systemd,
            docs,
            interfaces_dropin,
        })
    }

    /// The plan in words, for `--dry-run`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.binary_in_place {
            lines.push(format!(
                "would keep {} (it is the running binary)",
                self.binary.display()
            ));
        } else {
            lines.push(format!(
                "would copy {} to {} ({BINARY_MODE:o})",
                self.source.display(),
                self.binary.display()
            ));
        }
        lines.push(format!(
            "would write {} ({UNIT_MODE:o}), running {} agent --config {}",
            self.unit.display(),
            self.binary.display(),
            self.config.display()
        ));
        if self.keep_config {
            lines.push(format!(
                "would keep {} (it exists; never overwritten)",
                self.config.display()
            ));
        } else {
            lines.push(format!(
                "would write the example configuration to {} ({CONFIG_MODE:o})",
                self.config.display()
            ));
        }
        for (path, _) in &self.docs {
            lines.push(format!("would write {} ({DOC_MODE:o})", path.display()));
        }
        if let Some((path, _)) = &self.interfaces_dropin {
            lines.push(format!(
                "would write {} ({UNIT_MODE:o}): start after the configured interfaces exist",
                path.display()
            ));
        }
        lines.push(self.reload_plan());
        lines
    }

    fn reload_plan(&self) -> String {
        if self.reload {
            "would run systemctl daemon-reload".to_owned()
        } else if self.unit_dir_is_systemd {
            "would not run systemctl: systemd is not running here".to_owned()
        } else {
            "would not run systemctl: systemd does not load units from the unit directory"
                .to_owned()
        }
    }

    /// Does it; returns one line per step. Every write is atomic or create-only.
    pub fn apply(&self) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        done.push(self.install_binary()?);
        done.push(self.write_unit()?);
        if let Some((path, text)) = &self.interfaces_dropin {
            make_dir(parent(path)?, DIR_MODE)?;
            replace_file(path, UNIT_MODE, |tmp| {
                fs::write(tmp, text).with_context(|| format!("writing {}", tmp.display()))
            })?;
            done.push(format!(
                "wrote {} ({UNIT_MODE:o}): the unit starts after the configured interfaces exist",
                path.display()
            ));
        }
        done.push(self.write_config()?);
        for (path, text) in &self.docs {
            make_dir(parent(path)?, DIR_MODE)?;
            replace_file(path, DOC_MODE, |tmp| {
                fs::write(tmp, text).with_context(|| format!("writing {}", tmp.display()))
            })?;
            done.push(format!("wrote {} ({DOC_MODE:o})", path.display()));
        }
        if self.reload {
            done.push(daemon_reload());
        }
        Ok(done)
    }

    fn install_binary(&self) -> anyhow::Result<String> {
        if self.binary_in_place {
            return Ok(format!(
                "kept {}: it is the running binary",
                self.binary.display()
            ));
        }
        make_dir(parent(&self.binary)?, DIR_MODE)?;
        replace_file(&self.binary, BINARY_MODE, |tmp| {
            fs::copy(&self.source, tmp)
                .map(drop)
                .with_context(|| format!("copying {}", self.source.display()))
        })?;
        Ok(format!(
            "installed {} ({BINARY_MODE:o}) from {}",
            self.binary.display(),
            self.source.display()
        ))
    }

    fn write_unit(&self) -> anyhow::Result<String> {
        let same = fs::read_to_string(&self.unit).is_ok_and(|t| t == self.unit_text)
            && fs::metadata(&self.unit).is_ok_and(|m| m.permissions().mode() & 0o7777 == UNIT_MODE);
        if same {
            return Ok(format!("unchanged {}", self.unit.display()));
        }
        make_dir(parent(&self.unit)?, DIR_MODE)?;
        replace_file(&self.unit, UNIT_MODE, |tmp| {
            fs::write(tmp, &self.unit_text).with_context(|| format!("writing {}", tmp.display()))
        })?;
        Ok(format!("wrote {} ({UNIT_MODE:o})", self.unit.display()))
    }

    fn write_config(&self) -> anyhow::Result<String> {
        let kept = || {
            format!(
                "kept {}: a configuration exists, it is never overwritten",
                self.config.display()
            )
        };
        if self.keep_config {
            return Ok(kept());
        }
        make_dir(parent(&self.config)?, CONFIG_DIR_MODE)?;
        // create_new: a configuration that appeared since the plan is still not overwritten.
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(CONFIG_MODE)
            .open(&self.config)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(kept()),
            Err(e) => {
                return Err(e).with_context(|| format!("creating {}", self.config.display()));
            }
        };
        let written = file
            .write_all(EXAMPLE_CONFIG.as_bytes())
            .and_then(|()| file.sync_all())
            // The umask may have taken bits away at creation; set exactly what we mean.
            .and_then(|()| file.set_permissions(fs::Permissions::from_mode(CONFIG_MODE)));
        if let Err(e) = written {
            // A half-written configuration would be kept by the next install.
            let _partial = fs::remove_file(&self.config);
            return Err(e).with_context(|| format!("writing {}", self.config.display()));
        }
        Ok(format!(
            "wrote the example configuration {} ({CONFIG_MODE:o}): edit it for this host",
            self.config.display()
        ))
    }

    /// What the administrator does next.
    pub fn next_steps(&self) -> String {
        let mut out = String::from("next steps:\n");
        let mut step = 1;
        if !self.keep_config {
            out.push_str(&format!(
                "  {step}. edit {} for this host (node, interfaces, groups, routes)\n",
                self.config.display()
            ));
            step += 1;
        }
        out.push_str(&format!(
            "  {step}. check it: {} agent --config {} --check-config\n",
            self.binary.display(),
            self.config.display()
        ));
        step += 1;
        if !self.unit_dir_is_systemd {
            out.push_str(&format!(
                "  {step}. systemd does not load units from {}: link or copy {UNIT_NAME} into \
                 /etc/systemd/system\n",
                parent(&self.unit).map_or_else(|_| self.unit.display(), |p| p.display())
            ));
            step += 1;
        }
        let unit = UNIT_NAME.trim_end_matches(".service");
        out.push_str(&format!(
            "  {step}. systemctl daemon-reload && systemctl enable --now {unit}\n"
        ));
        out.push_str(&format!(
            "     (a running agent keeps the old binary until `systemctl restart {unit}`)\n"
        ));
        out
    }
}

/// The shipped unit with this install's binary and configuration paths.
pub fn render_unit(binary: &Path, config: &Path) -> anyhow::Result<String> {
    let binary = unit_path(binary)?;
    let config = unit_path(config)?;
    Ok(UNIT_TEMPLATE
        .replace(TEMPLATE_BINARY, binary)
        .replace(TEMPLATE_CONFIG, config))
}

/// A path as it may stand unquoted on a unit's command line: absolute, and free of what
/// systemd would split, unquote or expand (spaces, quotes, `\`, `%` specifiers, `$`).
fn unit_path(path: &Path) -> anyhow::Result<&str> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+@:,=".contains(c);
    if !path.is_absolute() || !text.chars().all(plain) {
        bail!(
            "{text}: a unit file would need this path quoted or escaped; choose an absolute \
             path of letters, digits and /._-+@:,="
        );
    }
    Ok(text)
}

fn parent(path: &Path) -> anyhow::Result<&Path> {
    path.parent()
        .with_context(|| format!("{} has no parent directory", path.display()))
}

fn make_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

/// Writes `path` through a temporary file in the same directory and renames it into
/// place: readers never see half a file, and a running binary is replaced, not rewritten
/// (which would fail with ETXTBSY).
fn replace_file(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".install-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = fill(&tmp)
        .and_then(|()| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", tmp.display()))
        })
        .and_then(|()| {
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", tmp.display()))
        })
        .and_then(|()| {
            fs::rename(&tmp, path).with_context(|| format!("moving into place {}", path.display()))
        });
    if result.is_err() {
        let _leftover = fs::remove_file(&tmp);
    }
    result
}

/// `sd_booted()`: systemd is the init system of this host.
fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn is_system_unit_dir(dir: &Path) -> bool {
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let dir = real(dir);
    SYSTEM_UNIT_DIRS.iter().any(|d| real(Path::new(d)) == dir)
}

/// Reloads systemd; a failure is reported, not fatal: the files are in place.
fn daemon_reload() -> String {
    match Command::new("systemctl").arg("daemon-reload").output() {
        Ok(out) if out.status.success() => "ran systemctl daemon-reload".to_owned(),
        Ok(out) => format!(
            "warning: systemctl daemon-reload failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("warning: could not run systemctl daemon-reload: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_units_are_named_as_systemd_escapes_them() {
        for (name, want) in [
            ("eth0", "sys-subsystem-net-devices-eth0.device"),
            ("n1-n2", "sys-subsystem-net-devices-n1\\x2dn2.device"),
            ("br.100", "sys-subsystem-net-devices-br.100.device"),
            ("x@y", "sys-subsystem-net-devices-x\\x40y.device"),
        ] {
            assert_eq!(device_unit(name), want);
            // The real tool agrees, where it is installed.
            if let Ok(out) = std::process::Command::new("systemd-escape")
                .args(["--path", "--suffix=device"])
                .arg(format!("/sys/subsystem/net/devices/{name}"))
                .output()
                && out.status.success()
            {
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
            }
        }
        let text = render_interfaces_dropin(Path::new("/etc/m.toml"), &["a-b".into()]);
        assert!(
            text.contains("\nWants=sys-subsystem-net-devices-a\\x2db.device\n"),
            "{text}"
        );
        assert!(
            text.contains("\nAfter=sys-subsystem-net-devices-a\\x2db.device\n"),
            "{text}"
        );
    }

    #[test]
    fn unit_gets_the_install_paths() {
        let unit = render_unit(Path::new("/opt/mesh/bin/meshctl"), Path::new("/srv/m.toml"))
            .expect("plain paths render");
        assert!(
            unit.contains("\nExecStart=/opt/mesh/bin/meshctl agent --config /srv/m.toml\n"),
            "{unit}"
        );
        assert!(
            unit.contains(
                "\nExecStartPre=/opt/mesh/bin/meshctl agent --config /srv/m.toml --check-config\n"
            ),
            "{unit}"
        );
        assert!(
            !unit.contains(TEMPLATE_BINARY) && !unit.contains(TEMPLATE_CONFIG),
            "a default path survived: {unit}"
        );
    }

    #[test]
    fn template_names_the_default_paths() {
        // What render_unit replaces must be there, in both commands.
        let commands: Vec<&str> = UNIT_TEMPLATE
            .lines()
            .filter(|l| l.starts_with("ExecStart") && l.contains("meshctl"))
            .collect();
        assert_eq!(commands.len(), 2, "{commands:?}");
        for c in commands {
            assert!(
                c.contains(&format!(
                    "={TEMPLATE_BINARY} agent --config {TEMPLATE_CONFIG}"
                )),
                "{c}"
            );
        }
    }

    #[test]
    fn paths_a_unit_would_mangle_are_refused() {
        for bad in [
            "/opt/my mesh/bin/meshctl",
            "/opt/100%/bin/meshctl",
            "/opt/$HOME/bin/meshctl",
            "/opt/\"q\"/bin/meshctl",
            "relative/bin/meshctl",
        ] {
            let err = render_unit(Path::new(bad), Path::new("/etc/x/mesh.toml"))
                .expect_err("path should be refused");
            assert!(err.to_string().contains("quoted"), "{bad}: {err}");
        }
    }
}
