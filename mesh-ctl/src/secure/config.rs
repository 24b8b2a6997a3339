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
}

/// What the agent needs from the files `[security]` names.
#[derive(Debug)]
pub struct Loaded {
    pub identity: Identity,
    pub trust: TrustStore,
    pub rekey: RekeyPolicy,
}

impl SecureConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            ("authority_cert", &self.authority_cert),
            ("node_cert", &self.node_cert),
            ("node_key", &self.node_key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::Missing(key));
            }
        }
        spiffe::validate_trust_domain(&self.trust_domain)?;
        if self.rekey_interval_s == 0 {
            return Err(ConfigError::Zero("rekey_interval_s"));
        }
        if self.rekey_bytes == 0 {
            return Err(ConfigError::Zero("rekey_bytes"));
        }
        Ok(())
    }

    pub fn rekey(&self) -> RekeyPolicy {
        RekeyPolicy {
            interval_ms: self.rekey_interval_s.saturating_mul(1000),
            bytes: self.rekey_bytes,
        }
    }

    /// Reads and checks every file: our certificate must pass our own trust store at
    /// `now_s`, so a node never starts with an identity its neighbours would refuse.
    pub fn load(&self, now_s: u64) -> Result<Loaded, ConfigError> {
        self.validate()?;
        let read = |p: &Path| {
            fs::read(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let authority = Cert::decode(&read(&self.authority_cert)?)
            .map_err(cert_err_at(&self.authority_cert))?;
        let mut trust = TrustStore::new(authority, &self.trust_domain)
            .map_err(cert_err_at(&self.authority_cert))?;
        if let Some(p) = &self.revocation_list {
            let crl = RevocationList::decode(&read(p)?).map_err(cert_err_at(p))?;
            trust.set_revocations(&crl).map_err(cert_err_at(p))?;
        }
        let cert = Cert::decode(&read(&self.node_cert)?).map_err(cert_err_at(&self.node_cert))?;
        trust
            .verify(&cert, now_s)
            .map_err(cert_err_at(&self.node_cert))?;
        let key = read_key(&self.node_key)?;
        let identity = Identity::new(cert, key).map_err(cert_err_at(&self.node_key))?;
        Ok(Loaded {
            identity,
            trust,
            rekey: self.rekey(),
        })
    }
}

fn cert_err_at(path: &Path) -> impl FnOnce(CertError) -> ConfigError + '_ {
    move |source| ConfigError::Cert {
        path: path.to_owned(),
        source,
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
