//! `meshctl identity`: the mesh authority, node certificates and revocations, as files.
//! Key files are created with mode 0600 (never widened and chmodded back) and refuse to
//! overwrite; no key byte is ever printed.

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use super::{
    cert::{Cert, CertKind, CertRequest, RevocationList, TrustStore, key_id},
    config::read_key,
    keys::SigningKey,
    spiffe::SpiffeId,
};

const AUTHORITY_KEY: &str = "authority.key";
const AUTHORITY_CERT: &str = "authority.cert";
const CRL: &str = "revoked.crl";
const DAY: u64 = 86_400;
/// Allowance for clocks a little behind the authority's.
const BACKDATE: u64 = 300;

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create the mesh authority: an ML-DSA-65 key (authority.key, mode 0600) and its
    /// self-signed certificate (authority.cert, the trust bundle every node is given).
    InitAuthority {
        /// The SPIFFE trust domain, e.g. `mesh.example.org`.
        #[arg(long)]
        trust_domain: String,
        /// Directory to create the files in.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// How long the authority's certificate is valid, in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue a node identity: `<name>.key` (mode 0600) and `<name>.cert` for
    /// `spiffe://<trust domain>/node/<name>`.
    Issue {
        /// The authority's directory (authority.key, authority.cert).
        #[arg(long, value_name = "DIR")]
        authority: PathBuf,
        /// The node's name, as in the agent's `node =`.
        #[arg(long)]
        name: String,
        /// Directory to write the node's files in.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How long the node's certificate is valid, in days (never past the authority's).
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Serial number (default: random).
        #[arg(long)]
        serial: Option<u64>,
    },
    /// Print a certificate or a revocation list (never a key).
    Show {
        /// A certificate (`.cert`) or a revocation list (`.crl`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Add a serial to the authority's revocation list (`<authority>/revoked.crl` unless
    /// `--crl`) and re-sign it; copy the list to every node's `revocation_list`.
    Revoke {
        /// The authority's directory (authority.key, authority.cert, revoked.crl).
        #[arg(long, value_name = "DIR")]
        authority: PathBuf,
        /// The serial of the certificate to revoke (`meshctl identity show` prints it).
        #[arg(long)]
        serial: u64,
        /// The revocation list to update instead of `<authority>/revoked.crl`.
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
    },
}

fn now() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs())
}

/// Creates `path` with `mode` from the start; refuses to replace an existing file.
fn create(path: &Path, mode: u32, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn load_authority(dir: &Path) -> Result<(SigningKey, Cert, TrustStore)> {
    let key = read_key(&dir.join(AUTHORITY_KEY)).context("reading the authority key")?;
    let path = dir.join(AUTHORITY_CERT);
    let cert =
        Cert::decode(&fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    if cert.key != *key.public() {
        bail!("{} does not belong to {}", AUTHORITY_KEY, path.display());
    }
    let td = cert.id.trust_domain().to_owned();
    let trust = TrustStore::new(cert.clone(), &td).context("checking the authority certificate")?;
    Ok((key, cert, trust))
}

pub fn run(cmd: &IdentityCommand) -> Result<()> {
    match cmd {
        IdentityCommand::InitAuthority {
            trust_domain,
            dir,
            days,
        } => {
            let id = SpiffeId::trust_domain_id(trust_domain).context("trust domain")?;
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = SigningKey::generate().context("generating the authority key")?;
            let now = now()?;
            let cert = Cert::issue(
                &key,
                &CertRequest {
                    kind: CertKind::Authority,
                    serial: 1,
                    not_before: now - BACKDATE,
                    not_after: now + days * DAY,
                    id: &id,
                    key: key.public(),
                },
            )
            .context("signing the authority certificate")?;
            create(&dir.join(AUTHORITY_KEY), 0o600, &key.to_file_bytes())?;
            create(&dir.join(AUTHORITY_CERT), 0o644, cert.encode())?;
            println!("authority {id}: key id {}", hex(&key_id(key.public())));
            println!(
                "wrote {} (mode 0600) and {}",
                dir.join(AUTHORITY_KEY).display(),
                dir.join(AUTHORITY_CERT).display()
            );
            Ok(())
        }
        IdentityCommand::Issue {
            authority,
            name,
            out,
            days,
            serial,
        } => {
            let (akey, acert, _) = load_authority(authority)?;
            let id = SpiffeId::node(acert.id.trust_domain(), name).context("node name")?;
            let now = now()?;
            let not_after = (now + days * DAY).min(acert.not_after);
            let key = SigningKey::generate().context("generating the node key")?;
            let serial = serial.unwrap_or_else(|| rand::random::<u64>().max(2));
            let cert = Cert::issue(
                &akey,
                &CertRequest {
                    kind: CertKind::Node,
                    serial,
                    not_before: now - BACKDATE,
                    not_after,
                    id: &id,
                    key: key.public(),
                },
            )
            .context("signing the node certificate")?;
            fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            let (kp, cp) = (
                out.join(format!("{name}.key")),
                out.join(format!("{name}.cert")),
            );
            create(&kp, 0o600, &key.to_file_bytes())?;
            create(&cp, 0o644, cert.encode())?;
            println!(
                "issued {id} serial {serial}, valid until {}",
                crate::views::rfc3339(not_after as f64)
            );
            println!("wrote {} (mode 0600) and {}", kp.display(), cp.display());
            Ok(())
        }
        IdentityCommand::Show { file } => {
            let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            if bytes.starts_with(b"X06K") {
                bail!("{} is a private key: not shown", file.display());
            }
            if bytes.starts_with(b"X06V") {
                let crl = RevocationList::decode(&bytes).context("parsing the revocation list")?;
                println!(
                    "revocation list issued at {} by key {}",
                    crate::views::rfc3339(crl.issued_at as f64),
                    hex(&crl.issuer)
                );
                println!("revoked serials ({}): {:?}", crl.serials.len(), crl.serials);
                return Ok(());
            }
            let cert =
                Cert::decode(&bytes).with_context(|| format!("parsing {}", file.display()))?;
            let now = now()?;
            let state = if now < cert.not_before {
                "not yet valid"
            } else if now > cert.not_after {
                "expired"
            } else {
                "valid"
            };
            println!(
                "{} certificate {}",
                if cert.kind == CertKind::Authority {
                    "authority"
                } else {
                    "node"
                },
                cert.id
            );
            println!("serial      {}", cert.serial);
            println!(
                "not before  {}",
                crate::views::rfc3339(cert.not_before as f64)
            );
            println!(
                "not after   {} ({state} now, {} days left)",
                crate::views::rfc3339(cert.not_after as f64),
                cert.not_after.saturating_sub(now) / DAY
            );
            println!("issuer key  {}", hex(&cert.issuer));
            println!("subject key {} (ML-DSA-65)", hex(&key_id(&cert.key)));
            Ok(())
        }
        IdentityCommand::Revoke {
            authority,
            serial,
            crl,
        } => {
            let (akey, _, mut trust) = load_authority(authority)?;
            let path = crl.clone().unwrap_or_else(|| authority.join(CRL));
            let mut serials = BTreeSet::new();
            let mut issued = 0;
            match fs::read(&path) {
                Ok(b) => {
                    let old = RevocationList::decode(&b)
                        .with_context(|| format!("parsing {}", path.display()))?;
                    trust
                        .set_revocations(&old)
                        .with_context(|| format!("checking {}", path.display()))?;
                    issued = old.issued_at;
                    serials = old.serials;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
            if !serials.insert(*serial) {
                println!("serial {serial} was already revoked");
                return Ok(());
            }
            // Strictly newer than the list it replaces, so nodes take it.
            let list = RevocationList::sign(&akey, now()?.max(issued + 1), serials)
                .context("signing the list")?;
            let tmp = path.with_extension("crl.tmp");
            let _ = fs::remove_file(&tmp);
            create(&tmp, 0o644, &list.encode())?;
            fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
            println!(
                "revoked serial {serial}; {} now lists {} serial(s)",
                path.display(),
                list.serials.len()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn authority_issue_revoke_in_files() {
        let dir = std::env::temp_dir().join(format!("x06-cli-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let auth = dir.join("auth");
        run(&IdentityCommand::InitAuthority {
            trust_domain: "mesh.test".into(),
            dir: auth.clone(),
            days: 10,
        })
        .expect("init");
        let mode = fs::metadata(auth.join(AUTHORITY_KEY))
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "authority key mode");
        assert!(
            run(&IdentityCommand::InitAuthority {
                trust_domain: "mesh.test".into(),
                dir: auth.clone(),
                days: 10
            })
            .is_err(),
            "a second init overwrote the authority"
        );
        let nodes = dir.join("nodes");
        run(&IdentityCommand::Issue {
            authority: auth.clone(),
            name: "r1".into(),
            out: nodes.clone(),
            days: 5,
            serial: Some(77),
        })
        .expect("issue");
        let mode = fs::metadata(nodes.join("r1.key"))
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "node key mode");
        run(&IdentityCommand::Show {
            file: nodes.join("r1.cert"),
        })
        .expect("show");
        assert!(
            run(&IdentityCommand::Show {
                file: nodes.join("r1.key")
            })
            .is_err(),
            "showed a key"
        );
        run(&IdentityCommand::Revoke {
            authority: auth.clone(),
            serial: 77,
            crl: None,
        })
        .expect("revoke");
        run(&IdentityCommand::Revoke {
            authority: auth.clone(),
            serial: 78,
            crl: None,
        })
        .expect("revoke again");
        let cfg = super::super::config::SecureConfig {
            enabled: true,
            trust_domain: "mesh.test".into(),
            authority_cert: auth.join(AUTHORITY_CERT),
            node_cert: nodes.join("r1.cert"),
            node_key: nodes.join("r1.key"),
            revocation_list: Some(auth.join(CRL)),
            revocation_max_age_s: None,
            rekey_interval_s: 60,
            rekey_bytes: 1 << 20,
            handshake_port: 7946,
        };
        let err = cfg
            .load(now().expect("clock"))
            .expect_err("a revoked node loaded");
        assert!(
            matches!(&err, super::super::config::ConfigError::Cert { source, .. } if source.refusal() == super::super::Refusal::Revoked),
            "{err}"
        );
        let loaded = super::super::config::SecureConfig {
            revocation_list: None,
            ..cfg.clone()
        }
        .load(now().expect("clock"))
        .expect("loads");
        assert_eq!(loaded.identity.cert.serial, 77, "our identity");
        fs::set_permissions(nodes.join("r1.key"), fs::Permissions::from_mode(0o644))
            .expect("chmod for the test");
        let no_crl = super::super::config::SecureConfig {
            revocation_list: None,
            ..cfg
        };
        assert!(
            matches!(
                no_crl.load(now().expect("clock")),
                Err(super::super::config::ConfigError::KeyMode(_))
            ),
            "a world-readable key loaded"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
