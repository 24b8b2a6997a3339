//! The `[security]` table of the agent's configuration, and loading what it names.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    cert::{Cert, CertError, Identity, RevocationList, TrustStore},
    keys::SigningKey,
    session::RekeyPolicy,
    spiffe::{self, SpiffeError},
    wire::WireError,
};

/// `[security]`: whether control traffic is authenticated, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureConfig {
    /// Authenticate neighbours and adverts; off only for labs and the benchmark baseline.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The SPIFFE trust domain every node certificate must be in.
    #[serde(default)]
    pub trust_domain: String,
    /// The authority's self-signed certificate: the trust bundle.
    #[serde(default)]
    pub authority_cert: PathBuf,
    /// This node's certificate.
    #[serde(default)]
    pub node_cert: PathBuf,
    /// This node's ML-DSA-65 key (mode 0600).
    #[serde(default)]
    pub node_key: PathBuf,
    /// The authority-signed revocation list, if any.
    #[serde(default)]
    pub revocation_list: Option<PathBuf>,
    /// A revocation list issued longer ago than this (seconds) is refused as stale, so a
    /// node cut off from new revocations does not start on an old list. Unset: any age.
    #[serde(default)]
    pub revocation_max_age_s: Option<u64>,
    /// Move to a new session key after this many seconds.
    #[serde(default = "default_rekey_interval")]
    pub rekey_interval_s: u64,
    /// ... or after this many bytes sealed under one key.
    #[serde(default = "default_rekey_bytes")]
    pub rekey_bytes: u64,
    /// TCP port of the handshake listener.
    #[serde(default = "default_port")]
    pub handshake_port: u16,
}

fn yes() -> bool {
    true
}
fn default_rekey_interval() -> u64 {
    120
}
fn default_rekey_bytes() -> u64 {
    1 << 30
}
/// The default handshake port.
pub const DEFAULT_PORT: u16 = 7946;
fn default_port() -> u16 {
    DEFAULT_PORT
}

/// Why the security configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The trust domain name is not valid.
    #[error("trust_domain: {0}")]
    TrustDomain(#[from] SpiffeError),
    /// A rekey bound of zero would rekey on every message.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// Authentication is on but a file it needs is not named.
    #[error("{0} is needed (or `enabled = false`)")]
    Missing(&'static str),
    /// A named file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is readable by others than its owner.
    #[error("{0} is readable by group or others (must be mode 0600)")]
    KeyMode(PathBuf),
    /// The key file is not a key.
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: WireError },
    /// A certificate, the bundle or the revocation list was refused.
    #[error("{path}: {source}")]
    Cert { path: PathBuf, source: CertError },
    /// The revocation list is older than `revocation_max_age_s`, or dated ahead of our
    /// clock by more than the allowed skew.
    #[error("{path}: issued at {issued_at}, now {now}: {why}")]
    RevocationAge {
        path: PathBuf,
        issued_at: u64,
        now: u64,
        why: String,
    },
}

/// How far ahead of our clock a revocation list's date may be (the authority's clock).
pub const CLOCK_SKEW_S: u64 = 300;

/// A problem and the `[security]` key it is about.
pub type Problem = (&'static str, ConfigError);

/// What the agent needs from the files `[security]` names.
#[derive(Debug)]
pub struct Loaded {
    pub identity: Identity,
    pub trust: TrustStore,
    pub rekey: RekeyPolicy,
}

impl SecureConfig {
    /// The first of [`Self::problems`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems()
            .into_iter()
            .next()
            .map_or(Ok(()), |(_, e)| Err(e))
    }

    /// Every value problem, without reading a file.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (key, path) in [
            ("authority_cert", &self.authority_cert),
            ("node_cert", &self.node_cert),
            ("node_key", &self.node_key),
        ] {
            if path.as_os_str().is_empty() {
                out.push((key, ConfigError::Missing(key)));
            }
        }
        if let Err(e) = spiffe::validate_trust_domain(&self.trust_domain) {
            out.push(("trust_domain", e.into()));
        }
        if self.rekey_interval_s == 0 {
            out.push(("rekey_interval_s", ConfigError::Zero("rekey_interval_s")));
        }
        if self.rekey_bytes == 0 {
            out.push(("rekey_bytes", ConfigError::Zero("rekey_bytes")));
        }
        out
    }

    pub fn rekey(&self) -> RekeyPolicy {
        RekeyPolicy {
            interval_ms: self.rekey_interval_s.saturating_mul(1000),
            bytes: self.rekey_bytes,
        }
    }

    /// Reads and checks every file: our certificate must pass our own trust store at
    /// `now_s`, so a node never starts with an identity its neighbours would refuse. The
    /// first problem of [`Self::inspect`].
    pub fn load(&self, now_s: u64) -> Result<Loaded, ConfigError> {
        self.inspect(now_s).map_err(|mut all| all.remove(0).1)
    }

    /// What [`Self::load`] does, going on past a refusal to check every file: each
    /// problem with the key naming the file. Never an empty list.
    pub fn inspect(&self, now_s: u64) -> Result<Loaded, Vec<Problem>> {
        let mut out = self.problems();
        if !out.is_empty() {
            return Err(out);
        }
        let read = |p: &Path| {
            fs::read(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let at = |p: &Path| {
            let p = p.to_owned();
            move |source| ConfigError::Cert { path: p, source }
        };
        let a = &self.authority_cert;
        let mut trust = read(a)
            .and_then(|b| Cert::decode(&b).map_err(at(a)))
            .and_then(|c| TrustStore::new(c, &self.trust_domain).map_err(at(a)))
            .map_err(|e| out.push(("authority_cert", e)))
            .ok();
        if let Some(p) = &self.revocation_list {
            let checked = read(p)
                .and_then(|b| RevocationList::decode(&b).map_err(at(p)))
                .and_then(|crl| match trust.as_mut() {
                    Some(t) => t.set_revocations(&crl).map_err(at(p)).map(|()| Some(crl)),
                    None => Ok(None),
                })
                .and_then(|crl| match crl {
                    Some(crl) => self.check_age(p, &crl, now_s),
                    None => Ok(()),
                });
            if let Err(e) = checked {
                out.push(("revocation_list", e));
            }
        }
        let n = &self.node_cert;
        let cert = read(n)
            .and_then(|b| Cert::decode(&b).map_err(at(n)))
            .map_err(|e| out.push(("node_cert", e)))
            .ok();
        if let (Some(t), Some(c)) = (&trust, &cert)
            && let Err(e) = t.verify(c, now_s)
        {
            out.push(("node_cert", at(n)(e)));
        }
        let key = read_key(&self.node_key)
            .map_err(|e| out.push(("node_key", e)))
            .ok();
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Identity::new(c, k)
                .map_err(|e| out.push(("node_key", at(&self.node_key)(e))))
                .ok(),
            _ => None,
        };
        match (identity, trust) {
            (Some(identity), Some(trust)) if out.is_empty() => Ok(Loaded {
                identity,
                trust,
                rekey: self.rekey(),
            }),
            _ => Err(out),
        }
    }

    /// A list dated ahead of our clock is a forgery or a broken clock; one older than the
    /// configured bound may be missing revocations.
    fn check_age(&self, path: &Path, crl: &RevocationList, now: u64) -> Result<(), ConfigError> {
        let refuse = |why: String| ConfigError::RevocationAge {
            path: path.to_owned(),
            issued_at: crl.issued_at,
            now,
            why,
        };
        if crl.issued_at > now.saturating_add(CLOCK_SKEW_S) {
            return Err(refuse(format!(
                "dated more than {CLOCK_SKEW_S} s ahead of this host's clock"
            )));
        }
        match self.revocation_max_age_s {
            Some(max) if now.saturating_sub(crl.issued_at) > max => Err(refuse(format!(
                "stale: older than revocation_max_age_s = {max}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Reads a key file, refusing one that others may read.
pub fn read_key(path: &Path) -> Result<SigningKey, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ConfigError::KeyMode(path.to_owned()));
    }
    let bytes = zeroize::Zeroizing::new(fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?);
    SigningKey::from_file_bytes(&bytes).map_err(|source| ConfigError::Key {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_refuses_unknown_keys() {
        let c: SecureConfig = toml::from_str(
            r#"
            trust_domain = "mesh.test"
            authority_cert = "/etc/x0tta6bl4/authority.cert"
            node_cert = "/etc/x0tta6bl4/node.cert"
            node_key = "/etc/x0tta6bl4/node.key"
            "#,
        )
        .expect("parses");
        assert!(c.enabled, "enabled by default");
        assert_eq!(c.handshake_port, DEFAULT_PORT, "default port");
        assert_eq!(c.rekey().interval_ms, 120_000, "default interval");
        assert!(c.validate().is_ok(), "valid");
        assert!(
            toml::from_str::<SecureConfig>("trust_domain = \"m\"\nbogus = 1").is_err(),
            "unknown key accepted"
        );
        let bad = SecureConfig {
            trust_domain: "Mesh".into(),
            ..c.clone()
        };
        assert!(
            matches!(bad.validate(), Err(ConfigError::TrustDomain(_))),
            "upper-case domain"
        );
        let zero = SecureConfig {
            rekey_bytes: 0,
            ..c
        };
        assert!(
            matches!(zero.validate(), Err(ConfigError::Zero("rekey_bytes"))),
            "zero bytes"
        );
    }
}
