//! The whole configuration check, run before anything touches the kernel: the file, every
//! value in it, every file it names (certificates, key, revocation list, model) loaded by
//! the loaders the agent starts with, and the interfaces on this host. `meshctl agent
//! --check-config` and the agent's start both run it, so the two cannot disagree, and
//! every problem is reported, not only the first.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::{
    config::{Config, ConfigError, DetectorKind},
    routes::{HostView, Tables},
};

/// One problem: the configuration file, the key it is about, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// Dotted key (`security.node_key`, `interfaces[0].name`); empty for the file itself.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// Why a configuration was refused: every problem found, one `FILE: KEY: REASON` line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct Refused {
    /// Never empty.
    pub problems: Vec<Finding>,
}

fn render(problems: &[Finding]) -> String {
    let mut out = match problems.len() {
        1 => "the configuration is refused:".to_owned(),
        n => format!("the configuration is refused, {n} problems:"),
    };
    for p in problems {
        out.push('\n');
        out.push_str(&p.to_string());
    }
    out
}

/// Checks `file` for this host at `now_s` (Unix seconds: certificates and revocation
/// lists are dated): every interface it names must exist here, and the route tables are
/// built with `hash_seed` where the config leaves the seed 0.
pub fn on_host(
    file: &Path,
    host: &dyn HostView,
    now_s: u64,
    hash_seed: u32,
) -> Result<(Config, Tables), Refused> {
    let config = check(file, Some(host), now_s)?;
    let tables = Tables::build(&config, host, hash_seed).map_err(|p| Refused {
        problems: vec![Finding {
            file: file.to_owned(),
            key: p.key,
            reason: p.reason,
        }],
    })?;
    Ok((config, tables))
}

/// Checks `file` written for another host: everything but the host's interfaces.
pub fn offline(file: &Path, now_s: u64) -> Result<Config, Refused> {
    check(file, None, now_s)
}

fn check(file: &Path, host: Option<&dyn HostView>, now_s: u64) -> Result<Config, Refused> {
    let finding = |key: &str, reason: String| Finding {
        file: file.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let refuse = |problems| Err(Refused { problems });
    let text = match crate::config::read_config_text(file) {
        Ok(t) => t,
        Err(e) => {
            return refuse(vec![finding(
                "",
                format!("cannot read the configuration file: {e}"),
            )]);
        }
    };
    let config = match Config::parse_unvalidated(&text, file) {
        Ok(c) => c,
        Err(ConfigError::Syntax {
            key,
            reason,
            line,
            column,
            ..
        }) => {
            let key = if key.is_empty() || key == "." {
                "document"
            } else {
                &key
            };
            return refuse(vec![finding(
                key,
                format!("{reason} (line {line}, column {column})"),
            )]);
        }
        Err(e) => return refuse(vec![finding("", e.to_string())]),
    };
    let mut problems: Vec<Finding> = config
        .problems()
        .into_iter()
        .map(|p| finding(&p.key, p.reason))
        .collect();
    for (key, reason) in named_files(&config, now_s) {
        problems.push(finding(&key, reason));
    }
    if let Some(host) = host {
        for (i, iface) in config.interfaces.iter().enumerate() {
            if host.iface(&iface.name).is_none() {
                problems.push(finding(
                    &format!("interfaces[{i}].name"),
                    format!("no interface named `{}` on this host", iface.name),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        refuse(problems)
    }
}

/// Loads what the agent's start loads, under the same conditions, with the same loaders:
/// the `[security]` files when authentication runs, the model when the detector uses one.
fn named_files(config: &Config, now_s: u64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(s) = config.security.as_ref().filter(|s| s.enabled)
        && config.routing.enabled
        // Value problems are already reported by `Config::problems`.
        && s.problems().is_empty()
    {
        match s.inspect(now_s) {
            Err(all) => out.extend(
                all.into_iter()
                    .map(|(key, e)| (format!("security.{key}"), e.to_string())),
            ),
            // Neighbours know this node by its certificate: its name must be the same.
            Ok(loaded) => match loaded.identity.cert.id.node_name() {
                Ok(name) if name == config.node => {}
                Ok(name) => out.push((
                    "node".to_owned(),
                    format!(
                        "`{}` is not the node the certificate {} names (`{name}`)",
                        config.node,
                        s.node_cert.display()
                    ),
                )),
                Err(e) => out.push((
                    "security.node_cert".to_owned(),
                    format!("{}: {e}", s.node_cert.display()),
                )),
            },
        }
    }
    let d = &config.detect;
    if d.enabled
        && config.routing.enabled
        && d.detector == DetectorKind::Model
        && let Some(path) = &d.model
        && let Err(reason) = check_model(path)
    {
        out.push(("detect.model".to_owned(), reason));
    }
    out
}

/// The model and its feature spec beside it, read by the agent's own loader.
fn check_model(path: &Path) -> Result<(), String> {
    let spec = crate::model::meta_path(path);
    for p in [path, spec.as_path()] {
        std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    }
    crate::model::load(path)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}
