//! Every parser of the secure layer against the stored corpus
//! (`mesh-ctl/secure/tests/corpus/<parser>/`: `ok-*` seeds that must parse, `bad-*`
//! nasty cases that must be refused), then against thousands of seeded random mutations
//! of the seeds: refused or accepted, never a panic. `cargo fuzz` targets in
//! `mesh-ctl/fuzz/` run the same feeds without a bound.

use std::{fs, path::PathBuf};

use rand::{Rng as _, RngCore as _, SeedableRng as _, rngs::StdRng};

use super::{
    advert::{AdvertVerifier, CertRef, SignedAdvert},
    cert::{
        Cert, RevocationList,
        fixture::{Authority, NOW, TD},
    },
    handshake::{Context, Initiator, Responder},
    keys::SigningKey,
    refusal::Refusal,
    session::{self, RekeyPolicy},
    spiffe::SpiffeId,
};
use mesh_routing::{Lsa, LsaLink};

/// The parsers, by corpus directory.
pub const TARGETS: &[&str] = &[
    "cert", "crl", "key", "spiffe", "hs1", "hs2", "hs3", "envelope", "advert",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// What the feeds need: a small mesh, a responder, an initiator waiting for message 2.
struct Harness {
    auth: Authority,
    node: super::cert::Identity,
    peer: super::cert::Identity,
    responder: Responder,
    initiator: Initiator,
}

/// Whether a refusal is the parser's (as opposed to a later, cryptographic check).
fn parse_level(r: Refusal) -> bool {
    matches!(
        r,
        Refusal::Malformed
            | Refusal::Oversized
            | Refusal::Version
            | Refusal::UnexpectedMessage
            | Refusal::BadSpiffeId
    )
}

impl Harness {
    fn new() -> Self {
        let auth = Authority::new(TD);
        let node = auth.node("r1", 10);
        let peer = auth.node("r2", 20);
        let mut rng = StdRng::seed_from_u64(60);
        let responder = Responder::new(&mut rng);
        let initiator = Initiator::start(&mut rng, None, NOW * 1000)
            .expect("message 1")
            .0;
        Self {
            auth,
            node,
            peer,
            responder,
            initiator,
        }
    }

    /// Feeds `b` to `target`'s parser: `Ok` if it parsed, else the refusal.
    fn feed(&self, target: &str, b: &[u8]) -> Result<(), Refusal> {
        let store = self.auth.store();
        let ctx = Context {
            identity: &self.node,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        let t = NOW * 1000;
        let mut rng = StdRng::seed_from_u64(61);
        match target {
            "cert" => Cert::decode(b).map(|_| ()).map_err(|e| e.refusal()),
            "crl" => RevocationList::decode(b)
                .map(|_| ())
                .map_err(|e| e.refusal()),
            "key" => SigningKey::from_file_bytes(b)
                .map(|_| ())
                .map_err(|e| e.refusal()),
            "spiffe" => std::str::from_utf8(b)
                .map_err(|_| Refusal::Malformed)
                .and_then(|s| {
                    SpiffeId::parse(s.trim_end())
                        .map(|_| ())
                        .map_err(|e| e.refusal())
                }),
            "hs1" => self
                .responder
                .respond(&ctx, b, t, &mut rng)
                .map(|_| ())
                .map_err(|e| e.refusal()),
            "hs2" => self
                .initiator
                .clone()
                .finish(&ctx, b, t)
                .map(|_| ())
                .map_err(|e| e.refusal()),
            "hs3" => self
                .responder
                .accept(&ctx, b, t)
                .map(|_| ())
                .map_err(|e| e.refusal()),
            "envelope" => {
                let (_, mut rx) = session::pair(RekeyPolicy::default(), 0);
                rx.open(b).map(|_| ()).map_err(|e| e.refusal())
            }
            "advert" => {
                let mut v = AdvertVerifier::default();
                SignedAdvert::decode(b).map_err(|e| e.refusal())?;
                v.verify(&store, b, NOW)
                    .map(|_| ())
                    .map_err(|e| e.refusal())
            }
            other => panic!("no parser {other}"),
        }
    }

    /// Valid instances of each target's input, to seed the corpus.
    fn seeds(&self, target: &str) -> Vec<Vec<u8>> {
        let store = self.auth.store();
        let pctx = Context {
            identity: &self.peer,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        let nctx = Context {
            identity: &self.node,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        let mut rng = StdRng::seed_from_u64(62);
        let t = NOW * 1000;
        let lsa = Lsa {
            origin: "r1".into(),
            seq: 3,
            age_ms: 0,
            links: vec![LsaLink {
                neighbor: "r2".into(),
                cost: 10,
            }],
            prefixes: vec![
                "10.0.0.0/8".parse().expect("prefix"),
                "fd00::/8".parse().expect("prefix"),
            ],
        };
        match target {
            "cert" => vec![
                self.node.cert.encode().to_vec(),
                self.auth.cert.encode().to_vec(),
            ],
            "crl" => vec![
                RevocationList::sign(&self.auth.key, NOW, [1, 2, 3].into())
                    .expect("crl")
                    .encode(),
                RevocationList::sign(&self.auth.key, NOW, Default::default())
                    .expect("crl")
                    .encode(),
            ],
            "key" => vec![self.node.key.to_file_bytes().to_vec()],
            "spiffe" => vec![
                b"spiffe://mesh.test/node/r1".to_vec(),
                b"spiffe://a-b.c_d/x/y.z".to_vec(),
            ],
            "hs1" => vec![Initiator::start(&mut rng, None, t).expect("message 1").1],
            "hs2" | "hs3" => {
                let (init, m1) = Initiator::start(&mut rng, None, t).expect("message 1");
                let m2 = self
                    .responder
                    .respond(&pctx, &m1, t, &mut rng)
                    .expect("message 2");
                if target == "hs2" {
                    vec![m2]
                } else {
                    vec![init.finish(&nctx, &m2, t).expect("message 3").1]
                }
            }
            "envelope" => {
                let (mut tx, _) = session::pair(RekeyPolicy::default(), 0);
                vec![
                    tx.seal(b"X06C frame", 0).expect("seals"),
                    tx.seal(&[], 0).expect("seals"),
                ]
            }
            "advert" => vec![
                SignedAdvert::sign(&self.node, &lsa, CertRef::Full)
                    .expect("signs")
                    .encode(),
                SignedAdvert::sign(&self.node, &lsa, CertRef::Serial)
                    .expect("signs")
                    .encode(),
            ],
            other => panic!("no parser {other}"),
        }
    }
}

/// Nasty variants of a valid input: cut, extended, lengths maxed, version bumped.
fn nasty(seed: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("empty".to_owned(), vec![]),
        ("magic-only".to_owned(), seed[..seed.len().min(4)].to_vec()),
        ("header-only".to_owned(), seed[..seed.len().min(6)].to_vec()),
        ("cut-by-one".to_owned(), seed[..seed.len() - 1].to_vec()),
        ("trailing-byte".to_owned(), [seed, &[0]].concat()),
        ("all-ff".to_owned(), vec![0xff; seed.len()]),
    ];
    if seed.len() > 5 && !seed.starts_with(b"spiffe") {
        let mut v = seed.to_vec();
        v[4] = v[4].wrapping_add(1);
        out.push(("next-version".to_owned(), v));
    }
    // 16-bit fields set to 0xffff, one at a time: a spread after the header, the
    // certificate's ID length, and the signature length most formats end with.
    let tail = [
        seed.len().checked_sub(3311),
        seed.len().checked_sub(3343),
        Some(62),
    ];
    for at in (6..seed.len().saturating_sub(1))
        .step_by(7)
        .take(6)
        .chain(tail.into_iter().flatten())
    {
        if at + 1 >= seed.len() {
            continue;
        }
        let mut v = seed.to_vec();
        v[at] = 0xff;
        v[at + 1] = 0xff;
        out.push((format!("ffff-at-{at}"), v));
    }
    out
}

/// Writes the seed corpus: `cargo test -p mesh-secure --lib write_seed_corpus -- --ignored`.
#[test]
#[ignore = "regenerates tests/corpus; run by hand when a format changes"]
fn write_seed_corpus() {
    let h = Harness::new();
    for target in TARGETS {
        let d = dir().join(target);
        fs::create_dir_all(&d).expect("corpus dir");
        for (k, seed) in h.seeds(target).iter().enumerate() {
            fs::write(d.join(format!("ok-{k}")), seed).expect("write seed");
            for (name, v) in nasty(seed) {
                if h.feed(target, &v).is_err() {
                    fs::write(d.join(format!("bad-{k}-{name}")), v).expect("write case");
                }
            }
        }
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let d = dir().join(target);
    let mut v: Vec<_> = fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", d.display()))
        .map(|e| {
            let e = e.expect("corpus entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("corpus file"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn stored_corpus_through_every_parser() {
    let h = Harness::new();
    for target in TARGETS {
        let files = corpus(target);
        assert!(
            files.iter().any(|(n, _)| n.starts_with("ok-")),
            "{target}: no seeds"
        );
        assert!(
            files.iter().filter(|(n, _)| n.starts_with("bad-")).count() >= 3,
            "{target}: too few nasty cases"
        );
        for (name, bytes) in files {
            let got = h.feed(target, &bytes);
            if name.starts_with("ok-") {
                // Seeds were made under another authority and other ephemeral keys: they
                // must get past the parser, and may fail a later, cryptographic check.
                if let Err(r) = got {
                    assert!(
                        !parse_level(r) || *target == "spiffe",
                        "{target}/{name}: refused by the parser ({r:?})"
                    );
                }
            } else {
                assert!(got.is_err(), "{target}/{name}: a nasty case was accepted");
            }
        }
    }
}

/// Applies one random mutation.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    let n = v.len().max(1);
    match rng.random_range(0..7) {
        0 => {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..n);
                if let Some(b) = v.get_mut(at) {
                    *b ^= 1 << rng.random_range(0..8);
                }
            }
        }
        1 => v.truncate(rng.random_range(0..n)),
        2 => {
            let extra = rng.random_range(1..64);
            let mut tail = vec![0u8; extra];
            rng.fill_bytes(&mut tail);
            v.extend(tail);
        }
        3 => {
            let at = rng.random_range(0..n);
            if at + 1 < v.len() {
                let val: u16 = [0, 1, 0x7fff, 0xffff, rng.random()][rng.random_range(0..5)];
                v[at..at + 2].copy_from_slice(&val.to_be_bytes());
            }
        }
        4 => {
            let at = rng.random_range(0..n);
            if at + 4 < v.len() {
                v[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
            }
        }
        5 => {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            let (a, b) = (a.min(b), a.max(b));
            if b <= v.len() {
                let chunk = v[a..b].to_vec();
                v.splice(a..a, chunk);
            }
        }
        _ => {
            let at = rng.random_range(0..n);
            if at < v.len() {
                v.remove(at);
            }
        }
    }
    v
}

#[test]
fn seeded_mutations_never_panic() {
    let h = Harness::new();
    let mut rng = StdRng::seed_from_u64(0x06);
    let mut fed = 0;
    for target in TARGETS {
        let mut refused = 0;
        let seeds = h.seeds(target);
        // Handshake feeds may run a KEM and signatures: fewer of those.
        let per = if target.starts_with("hs") { 300 } else { 800 };
        for k in 0..per {
            let m = mutate(&mut rng, &seeds[k % seeds.len()]);
            if h.feed(target, &m).is_err() {
                refused += 1;
            }
            fed += 1;
        }
        // Some mutations are still valid (an unsigned age, a key's secret bytes); most
        // must not be.
        assert!(
            refused * 2 > per,
            "{target}: only {refused} of {per} mutations refused"
        );
    }
    assert!(fed >= 5000, "only {fed} mutated inputs");
}
