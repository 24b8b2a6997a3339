//! `cargo xtask fuzz [--seconds N]`: every parser that takes bytes from outside — control
//! frames, sealed envelopes, handshake messages, certificates and revocation lists,
//! signed adverts, the config loader and the API request parser — fed seeded mutations of
//! its corpus for a bounded time, on the stable toolchain (the cargo-fuzz targets in
//! `mesh-ctl/fuzz` need a nightly one). A panic is a crash: its input is kept under
//! `target/fuzz/crashes/<target>/`, to be moved into `tests/fuzz/regressions/<target>/`,
//! which the unit tier replays.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use mesh_secure::{
    Cert, Context, Identity, Initiator, RekeyPolicy, Responder, SignedAdvert, SpiffeId, TrustStore,
    cert::{CertKind, CertRequest, RevocationList},
    keys::SigningKey,
    session::{self, Session},
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

/// One fuzz target: a name, its seeds, and the call that must never panic.
pub struct Target {
    pub name: &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
    pub run: fn(&[u8]),
}

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "control",
            seeds: control_seeds,
            run: |data| {
                if let Ok(mesh_ctl::control::Message::Report(r)) = mesh_ctl::control::decode(data) {
                    let _ = r.validate();
                }
            },
        },
        Target {
            name: "envelope",
            seeds: || corpus("envelope"),
            run: |data| {
                static RX: std::sync::Mutex<Option<Session>> = std::sync::Mutex::new(None);
                let mut rx = RX.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let rx = rx.get_or_insert_with(|| session::pair(RekeyPolicy::default(), 0).1);
                let _ = rx.open(data);
            },
        },
        Target {
            name: "handshake",
            seeds: || {
                let mut v = corpus("hs1");
                v.extend(corpus("hs2"));
                v.extend(corpus("hs3"));
                v
            },
            run: handshake,
        },
        Target {
            name: "cert",
            seeds: || {
                let mut v = corpus("cert");
                v.extend(corpus("crl"));
                v
            },
            run: |data| {
                let _ = Cert::decode(data);
                let _ = RevocationList::decode(data);
            },
        },
        Target {
            name: "advert",
            seeds: || corpus("advert"),
            run: |data| {
                let _ = SignedAdvert::decode(data);
            },
        },
        Target {
            name: "config",
            seeds: || {
                vec![
                    mesh_ctl::install::EXAMPLE_CONFIG.as_bytes().to_vec(),
                    b"node = \"r\"\n[[interfaces]]\nname = \"eth0\"\n[security]\nenabled = false\n"
                        .to_vec(),
                ]
            },
            run: |data| {
                if let Ok(text) = std::str::from_utf8(data)
                    && let Ok(c) =
                        mesh_ctl::config::Config::parse_unvalidated(text, Path::new("fuzz.toml"))
                {
                    let _ = c.problems();
                }
            },
        },
        Target {
            name: "api",
            seeds: || {
                [
                    r#"{"query":"status"}"#,
                    r#"{"query":"flows","top":5,"sort":"rate"}"#,
                    r#"{"query":"unblock","source":"10.0.0.1"}"#,
                    r#"{"query":"clear","target":{"kind":"link","a":"n1","b":"n2"}}"#,
                    r#"{"query":"monitor","filter":{"kinds":["drop"],"reason":"x"}}"#,
                ]
                .map(|s| s.as_bytes().to_vec())
                .to_vec()
            },
            run: |data| {
                if let Ok(line) = std::str::from_utf8(data) {
                    let _ = mesh_ctl::api::parse_request(line);
                }
            },
        },
    ]
}

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../mesh-ctl/secure/tests/corpus")
        .join(dir);
    read_dir_files(&path)
}

fn read_dir_files(path: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn control_seeds() -> Vec<Vec<u8>> {
    use mesh_ctl::{
        config::MacAddr,
        control::{Hello, Message, encode},
    };
    let hello = Message::Hello(Hello {
        node: "n2".into(),
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        heard: vec!["n1".into()],
        hello_interval_ms: 100,
        restarting: false,
    });
    vec![encode(&hello).unwrap_or_default()]
}

const NOW: u64 = 1_800_000_000;

struct Handshake {
    trust: TrustStore,
    node: Identity,
    responder: Responder,
}

fn handshake(data: &[u8]) {
    static S: OnceLock<Option<Handshake>> = OnceLock::new();
    let Some(s) = S.get_or_init(|| {
        let akey = SigningKey::generate().ok()?;
        let aid = SpiffeId::trust_domain_id("fuzz.mesh").ok()?;
        let req = |kind, id, key| CertRequest {
            kind,
            serial: 1,
            not_before: 0,
            not_after: NOW * 2,
            id,
            key,
        };
        let acert = Cert::issue(&akey, &req(CertKind::Authority, &aid, akey.public())).ok()?;
        let trust = TrustStore::new(acert, "fuzz.mesh").ok()?;
        let nkey = SigningKey::generate().ok()?;
        let nid = SpiffeId::node("fuzz.mesh", "n").ok()?;
        let ncert = Cert::issue(&akey, &req(CertKind::Node, &nid, nkey.public())).ok()?;
        let node = Identity::new(ncert, nkey).ok()?;
        let responder = Responder::new(&mut StdRng::seed_from_u64(1));
        Some(Handshake {
            trust,
            node,
            responder,
        })
    }) else {
        return;
    };
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    let ctx = Context {
        identity: &s.node,
        trust: &s.trust,
        rekey: RekeyPolicy::default(),
    };
    let mut rng = StdRng::seed_from_u64(2);
    match which % 3 {
        0 => drop(s.responder.respond(&ctx, msg, NOW * 1000, &mut rng)),
        1 => {
            if let Ok((init, _)) = Initiator::start(&mut rng, None, NOW * 1000) {
                drop(init.finish(&ctx, msg, NOW * 1000));
            }
        }
        _ => drop(s.responder.accept(&ctx, msg, NOW * 1000)),
    }
}

/// One mutation of `input`, drawing on `seeds` for splices.
fn mutate(rng: &mut StdRng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..7) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'\n'][rng.random_range(0..7)];
            }
            2 if !out.is_empty() => {
                let cut = rng.random_range(0..out.len());
                out.truncate(cut);
            }
            3 => {
                let at = rng.random_range(0..=out.len());
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            4 if out.len() > 1 => {
                let a = rng.random_range(0..out.len());
                let b = rng.random_range(a..out.len());
                out.drain(a..b);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let at = rng.random_range(0..=out.len());
                    out.splice(at..at, other[from..].iter().copied().take(64));
                }
            }
            _ => {
                // A length or count field blown up: four bytes of all ones somewhere.
                if out.len() >= 4 {
                    let i = rng.random_range(0..out.len() - 3);
                    out[i..i + 4].copy_from_slice(&[0xff; 4]);
                }
            }
        }
    }
    out
}

/// What one target's run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub target: &'static str,
    pub execs: u64,
    pub crashes: usize,
}

/// Fuzzes every target for `per_target`; returns what each did, crashes kept under `out`.
pub fn run(per_target: Duration, seed: u64, out: &Path) -> Result<Vec<Outcome>> {
    // A crash is reported here, with its input; the default hook would print each one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut outcomes = Vec::new();
    for t in targets() {
        let seeds = (t.seeds)();
        let mut pool = if seeds.is_empty() {
            vec![Vec::new()]
        } else {
            seeds.clone()
        };
        let mut rng = StdRng::seed_from_u64(seed ^ fnv(t.name.as_bytes()));
        let (end, mut execs, mut crashes) = (Instant::now() + per_target, 0u64, 0usize);
        while Instant::now() < end {
            let base = &pool[rng.random_range(0..pool.len())];
            let input = mutate(&mut rng, base, &seeds);
            execs += 1;
            if std::panic::catch_unwind(|| (t.run)(&input)).is_err() {
                crashes += 1;
                let dir = out.join("crashes").join(t.name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let file = dir.join(format!("{:016x}.bin", fnv(&input)));
                std::fs::write(&file, &input)
                    .with_context(|| format!("writing {}", file.display()))?;
                eprintln!("fuzz {}: crash kept as {}", t.name, file.display());
            } else if pool.len() < 256 && rng.random_range(0..64) == 0 {
                // Inputs that passed may seed further mutations (a crude corpus growth).
                pool.push(input);
            }
        }
        println!("  {:<10} {execs:>9} inputs, {crashes} crashes", t.name);
        outcomes.push(Outcome {
            target: t.name,
            execs,
            crashes,
        });
    }
    let _default = std::panic::take_hook();
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashes > 0)
        .map(|o| o.target)
        .collect();
    if !crashed.is_empty() {
        bail!(
            "crashes in {crashed:?}: inputs under {}",
            out.join("crashes").display()
        );
    }
    Ok(outcomes)
}

/// FNV-1a, for file names and per-target seeds.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The kept crashing inputs, by target: `tests/fuzz/regressions/<target>/*`.
pub fn regressions() -> Vec<(&'static str, PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut out = Vec::new();
    for t in targets() {
        let dir = root.join(t.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((t.name, e.path(), bytes));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kept input runs through its target without a panic.
    #[test]
    fn regressions_replay_without_a_panic() {
        let cases = regressions();
        assert!(!cases.is_empty(), "tests/fuzz/regressions holds no case");
        for (name, path, bytes) in cases {
            let t = targets()
                .into_iter()
                .find(|t| t.name == name)
                .expect("a target");
            let ok = std::panic::catch_unwind(|| (t.run)(&bytes));
            assert!(ok.is_ok(), "{name}: {} panics", path.display());
        }
    }

    #[test]
    fn mutations_stay_near_their_input_and_vary() {
        let mut rng = StdRng::seed_from_u64(7);
        let input = b"{\"query\":\"status\"}".to_vec();
        let outs: std::collections::BTreeSet<Vec<u8>> =
            (0..200).map(|_| mutate(&mut rng, &input, &[])).collect();
        assert!(outs.len() > 150, "{} distinct of 200", outs.len());
        assert!(outs.iter().all(|o| o.len() < input.len() + 80));
    }

    #[test]
    fn a_short_run_covers_every_target() {
        let out = std::env::temp_dir().join(format!("x0-fuzz-{}", std::process::id()));
        let got = run(Duration::from_millis(150), 1, &out).expect("no crash");
        assert_eq!(got.len(), targets().len());
        assert!(got.iter().all(|o| o.execs > 0), "{got:?}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
