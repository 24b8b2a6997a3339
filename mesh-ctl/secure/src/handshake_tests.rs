//! The handshake's tests: round trips, sizes, the tampering matrix, replays,
//! reflections, certificates, downgrades and the stateless responder.

use rand::{RngCore as _, SeedableRng as _, rngs::StdRng};

use super::*;
use crate::{
    cert::{
        RevocationList,
        fixture::{Authority, NOW, TD},
    },
    refusal::RefusalCounts,
};

const T: u64 = NOW * 1000;

struct Mesh {
    auth: Authority,
    store: TrustStore,
    i: Identity,
    r: Identity,
    responder: Responder,
    rng: StdRng,
}

impl Mesh {
    fn new() -> Self {
        let auth = Authority::new(TD);
        let store = auth.store();
        let i = auth.node("r1", 10);
        let r = auth.node("r2", 20);
        let mut rng = StdRng::seed_from_u64(6);
        let responder = Responder::new(&mut rng);
        Self {
            auth,
            store,
            i,
            r,
            responder,
            rng,
        }
    }

    fn ctx<'a>(&'a self, id: &'a Identity) -> Context<'a> {
        Context {
            identity: id,
            trust: &self.store,
            rekey: RekeyPolicy::default(),
        }
    }

    fn start(&mut self) -> (Initiator, Vec<u8>) {
        Initiator::start(&mut self.rng, Some(self.r.cert.id.clone()), T).expect("message 1")
    }

    fn respond(&mut self, msg1: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let mut rng = StdRng::seed_from_u64(self.rng.next_u64());
        self.responder
            .respond(&self.ctx(&self.r), msg1, T + 5, &mut rng)
    }

    /// A whole handshake with each message passed through `tamper`: the first refusal.
    fn run(
        &mut self,
        t1: impl Fn(&mut Vec<u8>),
        t2: impl Fn(&mut Vec<u8>),
        t3: impl Fn(&mut Vec<u8>),
    ) -> Result<(Established, Established), HandshakeError> {
        let (init, mut m1) = self.start();
        t1(&mut m1);
        let mut m2 = self.respond(&m1)?;
        t2(&mut m2);
        let (ei, mut m3) = init.finish(&self.ctx(&self.i), &m2, T + 10)?;
        t3(&mut m3);
        let er = self.responder.accept(&self.ctx(&self.r), &m3, T + 15)?;
        Ok((ei, er))
    }
}

fn same(_: &mut Vec<u8>) {}

#[test]
fn round_trip_sizes_and_working_sessions() {
    let mut m = Mesh::new();
    let (init, m1) = m.start();
    let m2 = m.respond(&m1).expect("message 2");
    let (mut ei, m3) = init.finish(&m.ctx(&m.i), &m2, T + 10).expect("message 3");
    let mut er = m
        .responder
        .accept(&m.ctx(&m.r), &m3, T + 15)
        .expect("accepted");
    let cert = m.i.cert.encode().len();
    assert_eq!(m1.len(), 1235, "message 1 size");
    assert_eq!(
        m2.len(),
        6 + 2 + 32 + 2 + 1088 + 2 + cert + 2 + TOKEN_LEN + 2 + 3309 + 32,
        "message 2 size"
    );
    assert_eq!(
        m3.len(),
        6 + 2 + TOKEN_LEN + 2 + cert + 2 + 3309 + 32,
        "message 3 size"
    );
    assert!(
        m2.len() <= MAX_MESSAGE && m3.len() <= MAX_MESSAGE,
        "within the limit"
    );
    assert_eq!(ei.peer.id, m.r.cert.id, "initiator sees r2");
    assert_eq!(er.peer.id, m.i.cert.id, "responder sees r1");
    let env = ei.session.seal(b"hello", T).expect("seals");
    assert_eq!(er.session.open(&env).expect("opens"), b"hello", "i->r");
    let env = er.session.seal(b"back", T).expect("seals");
    assert_eq!(ei.session.open(&env).expect("opens"), b"back", "r->i");
    // Each direction has its own key: a message does not open on its own side.
    let env = ei.session.seal(b"x", T).expect("seals");
    assert!(ei.session.open(&env).is_err(), "own message opened");
    assert_eq!(
        m.responder.state_size(),
        1,
        "one completed handshake remembered"
    );
    println!(
        "handshake sizes: msg1 {} msg2 {} msg3 {} bytes",
        m1.len(),
        m2.len(),
        m3.len()
    );
}

#[test]
fn each_half_of_the_hybrid_secret_matters() {
    let (kem, x, ct, xr, xi) = (
        [1u8; 32],
        [2u8; 32],
        vec![3u8; MLKEM768_CIPHERTEXT],
        [4u8; 32],
        [5u8; 32],
    );
    let th = [9u8; 32];
    let keys = |kem: &[u8; 32], x: &[u8; 32], ct: &[u8], xr: &[u8; 32], xi: &[u8; 32]| {
        let s = Schedule::new(&th, &combine(kem, x, ct, xr, xi));
        *s.expand(b"i2r", &th)
    };
    let base = keys(&kem, &x, &ct, &xr, &xi);
    let mut kem2 = kem;
    kem2[31] ^= 1;
    assert_ne!(keys(&kem2, &x, &ct, &xr, &xi), base, "ML-KEM half ignored");
    let mut x2 = x;
    x2[0] ^= 1;
    assert_ne!(keys(&kem, &x2, &ct, &xr, &xi), base, "X25519 half ignored");
    let mut ct2 = ct.clone();
    ct2[500] ^= 1;
    assert_ne!(keys(&kem, &x, &ct2, &xr, &xi), base, "ciphertext ignored");
    assert_ne!(keys(&kem, &x, &ct, &xi, &xr), base, "shares' order ignored");
    assert_eq!(keys(&kem, &x, &ct, &xr, &xi), base, "deterministic");
}

/// One field of a message: its byte range and the refusal a flipped bit in it must get.
struct Field {
    name: &'static str,
    range: std::ops::Range<usize>,
    /// Given the flipped message and the field's start.
    want: fn(&[u8], usize) -> Vec<Refusal>,
}

fn r(x: Refusal) -> Vec<Refusal> {
    vec![x]
}

/// A flipped u16 length at `start`: above the field's bound, or merely wrong.
fn len_field(b: &[u8], start: usize, max: usize) -> Vec<Refusal> {
    let len = usize::from(u16::from_be_bytes([b[start], b[start + 1]]));
    // Too short or too long shifts every later field: their lengths turn to garbage too.
    if len > max {
        r(Refusal::Oversized)
    } else {
        vec![Refusal::Malformed, Refusal::Oversized]
    }
}

/// A certificate starting at `c` (after its u16 length) in a message.
fn cert_fields(c: usize, cert_len: usize) -> Vec<Field> {
    macro_rules! f {
        ($name:literal, $a:expr, $b:expr, $want:expr) => {
            Field {
                name: $name,
                range: c + $a..c + $b,
                want: $want,
            }
        };
    }
    let id_len = cert_len - (62 + 2 + 2 + 1952 + 2 + 3309);
    let id = 64;
    let vk = id + id_len;
    vec![
        f!("cert magic", 0, 4, |_, _| r(Refusal::Malformed)),
        f!("cert version", 4, 5, |_, _| r(Refusal::Version)),
        f!("cert kind", 5, 6, |_, _| r(Refusal::Malformed)),
        f!("cert serial and validity", 6, 30, |_, _| r(
            Refusal::BadCertSignature
        )),
        f!("cert issuer", 30, 62, |_, _| r(Refusal::ForeignAuthority)),
        // A wrong length reads into the next field: a bad ID or bad bytes.
        f!("cert id length", 62, 64, |_, _| vec![
            Refusal::Malformed,
            Refusal::Oversized,
            Refusal::BadSpiffeId
        ]),
        f!("cert id", id, vk, |_, _| vec![
            Refusal::BadSpiffeId,
            Refusal::BadCertSignature,
            Refusal::Malformed
        ]),
        f!("cert key length", vk, vk + 2, |_, _| vec![
            Refusal::Malformed,
            Refusal::Oversized
        ]),
        f!("cert key", vk + 2, vk + 2 + 1952, |_, _| r(
            Refusal::BadCertSignature
        )),
        f!("cert signature length", vk + 1954, vk + 1956, |_, _| vec![
            Refusal::Malformed,
            Refusal::Oversized
        ]),
        f!("cert signature", vk + 1956, vk + 1956 + 3309, |_, _| r(
            Refusal::BadCertSignature
        )),
    ]
}

/// Positions to flip in a field: its ends, and a spread through long ones.
fn positions(range: &std::ops::Range<usize>) -> Vec<usize> {
    let n = range.len();
    let mut v: Vec<usize> = if n <= 10 {
        range.clone().collect()
    } else {
        (0..8).map(|k| range.start + k * (n - 1) / 7).collect()
    };
    v.dedup();
    v
}

fn check_matrix(
    m: &mut Mesh,
    which: usize,
    fields: &[Field],
    reference: &[u8],
    counts: &mut RefusalCounts,
) -> usize {
    let covered: usize = fields.iter().map(|f| f.range.len()).sum();
    assert_eq!(
        covered,
        reference.len(),
        "message {which}: the fields cover every byte"
    );
    let mut cases = 0;
    for f in fields {
        for at in positions(&f.range) {
            for bit in [0u8, 7] {
                let flip = move |b: &mut Vec<u8>| b[at] ^= 1 << bit;
                let mut flipped = reference.to_vec();
                flip(&mut flipped);
                let want = (f.want)(&flipped, f.range.start);
                let got = match which {
                    1 => m.run(flip, same, same),
                    2 => m.run(same, flip, same),
                    _ => m.run(same, same, flip),
                };
                let got = got
                    .map(|_| ())
                    .expect_err(&format!(
                        "message {which} {} byte {at} bit {bit}: accepted",
                        f.name
                    ))
                    .refusal();
                counts.record(got);
                cases += 1;
                assert!(
                    want.contains(&got),
                    "message {which} {} byte {at} bit {bit}: {got:?}, want one of {want:?}",
                    f.name
                );
            }
        }
    }
    cases
}

#[test]
fn every_field_of_every_message_tampered_is_refused() {
    let mut m = Mesh::new();
    let (init, m1) = m.start();
    let m2 = m.respond(&m1).expect("message 2");
    let (_, m3) = init.finish(&m.ctx(&m.i), &m2, T + 10).expect("message 3");
    let cert = m.r.cert.encode().len();
    let mut counts = RefusalCounts::default();
    let mut cases = 0;

    let header = || {
        vec![
            Field {
                name: "magic",
                range: 0..4,
                want: |_, _| r(Refusal::Malformed),
            },
            Field {
                name: "version",
                range: 4..5,
                want: |_, _| r(Refusal::Version),
            },
            Field {
                name: "type",
                range: 5..6,
                want: |_, _| r(Refusal::UnexpectedMessage),
            },
        ]
    };
    let mut f1 = header();
    f1.extend([
        Field {
            name: "suite count",
            range: 6..7,
            want: |_, _| r(Refusal::Malformed),
        },
        Field {
            name: "suite",
            range: 7..9,
            want: |_, _| r(Refusal::UnsupportedSuite),
        },
        Field {
            name: "timestamp",
            range: 9..17,
            want: |b, _| {
                let ts = u64::from_be_bytes(b[9..17].try_into().expect("8 bytes"));
                if (T + 5).abs_diff(ts) > MAX_SKEW_MS {
                    r(Refusal::Stale)
                } else {
                    r(Refusal::BadSignature)
                }
            },
        },
        Field {
            name: "x25519 share",
            range: 17..49,
            want: |_, _| vec![Refusal::BadSignature, Refusal::Malformed],
        },
        Field {
            name: "ml-kem key length",
            range: 49..51,
            want: |b, s| len_field(b, s, MLKEM768_PUBLIC),
        },
        Field {
            name: "ml-kem key",
            range: 51..1235,
            want: |_, _| vec![Refusal::BadSignature, Refusal::Malformed],
        },
    ]);
    cases += check_matrix(&mut m, 1, &f1, &m1, &mut counts);

    let c2 = 1132;
    let t2 = c2 + cert;
    let s2 = t2 + 2 + TOKEN_LEN;
    let mut f2 = header();
    f2.extend([
        Field {
            name: "suite",
            range: 6..8,
            want: |_, _| r(Refusal::UnsupportedSuite),
        },
        Field {
            name: "x25519 share",
            range: 8..40,
            want: |_, _| vec![Refusal::BadSignature, Refusal::Malformed],
        },
        Field {
            name: "ciphertext length",
            range: 40..42,
            want: |b, s| len_field(b, s, MLKEM768_CIPHERTEXT),
        },
        Field {
            name: "ciphertext",
            range: 42..1130,
            want: |_, _| r(Refusal::BadSignature),
        },
        Field {
            name: "cert length",
            range: 1130..1132,
            want: |b, s| len_field(b, s, MAX_CERT),
        },
    ]);
    f2.extend(cert_fields(c2, cert));
    f2.extend([
        Field {
            name: "token length",
            range: t2..t2 + 2,
            want: |b, s| len_field(b, s, TOKEN_LEN),
        },
        Field {
            name: "token",
            range: t2 + 2..s2,
            want: |_, _| r(Refusal::BadToken),
        },
        Field {
            name: "signature length",
            range: s2..s2 + 2,
            want: |_, _| vec![Refusal::Malformed, Refusal::Oversized],
        },
        Field {
            name: "signature",
            range: s2 + 2..s2 + 2 + 3309,
            want: |_, _| r(Refusal::BadSignature),
        },
        Field {
            name: "mac",
            range: s2 + 3311..s2 + 3311 + 32,
            want: |_, _| r(Refusal::BadMac),
        },
    ]);
    cases += check_matrix(&mut m, 2, &f2, &m2, &mut counts);

    let c3 = 6 + 2 + TOKEN_LEN + 2;
    let s3 = c3 + cert;
    let mut f3 = header();
    f3.extend([
        Field {
            name: "token length",
            range: 6..8,
            want: |b, s| len_field(b, s, TOKEN_LEN),
        },
        Field {
            name: "token",
            range: 8..8 + TOKEN_LEN,
            want: |_, _| r(Refusal::BadToken),
        },
        Field {
            name: "cert length",
            range: c3 - 2..c3,
            want: |b, s| len_field(b, s, MAX_CERT),
        },
    ]);
    f3.extend(cert_fields(c3, cert));
    f3.extend([
        Field {
            name: "signature length",
            range: s3..s3 + 2,
            want: |_, _| vec![Refusal::Malformed, Refusal::Oversized],
        },
        Field {
            name: "signature",
            range: s3 + 2..s3 + 3311,
            want: |_, _| r(Refusal::BadSignature),
        },
        Field {
            name: "mac",
            range: s3 + 3311..s3 + 3343,
            want: |_, _| r(Refusal::BadMac),
        },
    ]);
    cases += check_matrix(&mut m, 3, &f3, &m3, &mut counts);
    assert_eq!(counts.total(), cases as u64, "every case counted");
    assert!(
        counts.get(Refusal::BadMac) > 0 && counts.get(Refusal::BadToken) > 0,
        "matrix reached the MACs and tokens"
    );
    assert_eq!(
        m.responder.state_size(),
        0,
        "no tampered handshake was remembered"
    );
}

#[test]
fn truncated_extended_and_oversized_messages_are_refused() {
    let mut m = Mesh::new();
    let (init, m1) = m.start();
    let m2 = m.respond(&m1).expect("message 2");
    let (_, m3) = init
        .clone()
        .finish(&m.ctx(&m.i), &m2, T + 10)
        .expect("message 3");
    let ctx_r = m.ctx(&m.r);
    let ctx_i = m.ctx(&m.i);
    let mut rng = StdRng::seed_from_u64(1);
    for (name, msg) in [("message 1", &m1), ("message 2", &m2), ("message 3", &m3)] {
        let check = |b: &[u8]| -> Refusal {
            let mut rng = StdRng::seed_from_u64(2);
            match name {
                "message 1" => m.responder.respond(&ctx_r, b, T, &mut rng).map(|_| ()),
                "message 2" => init.clone().finish(&ctx_i, b, T).map(|_| ()),
                _ => m.responder.accept(&ctx_r, b, T).map(|_| ()),
            }
            .expect_err(name)
            .refusal()
        };
        for n in (0..msg.len())
            .step_by(msg.len() / 40 + 1)
            .chain([msg.len() - 1])
        {
            assert_eq!(
                check(&msg[..n]),
                Refusal::Malformed,
                "{name} cut to {n} bytes"
            );
        }
        let mut long = msg.clone();
        long.push(0);
        assert_eq!(
            check(&long),
            Refusal::Malformed,
            "{name} with a trailing byte"
        );
        let mut huge = msg.clone();
        huge.resize(MAX_MESSAGE + 1, 0);
        assert_eq!(check(&huge), Refusal::Oversized, "{name} beyond the limit");
    }
    // A suite list longer than allowed.
    let (_, many) =
        Initiator::start_offering(&mut rng, None, T, &[SUITE_HYBRID_V1; 9]).expect("message 1");
    assert_eq!(
        m.respond(&many).map_err(|e| e.refusal()),
        Err(Refusal::Malformed),
        "nine suites"
    );
}

#[test]
fn replays_and_reflections_are_refused() {
    let mut m = Mesh::new();
    let (init, m1) = m.start();
    let m2 = m.respond(&m1).expect("message 2");
    let (_, m3) = init
        .clone()
        .finish(&m.ctx(&m.i), &m2, T + 10)
        .expect("message 3");
    m.responder
        .accept(&m.ctx(&m.r), &m3, T + 15)
        .expect("first message 3");
    let mut counts = RefusalCounts::default();
    let mut refuse = |got: Result<(), HandshakeError>, want: Refusal, what: &str| {
        let got = got.expect_err(what).refusal();
        counts.record(got);
        assert_eq!(got, want, "{what}");
    };
    let ctx_r = m.ctx(&m.r);
    let ctx_i = m.ctx(&m.i);
    refuse(
        m.responder.accept(&ctx_r, &m3, T + 20).map(|_| ()),
        Refusal::Replay,
        "replayed message 3",
    );
    refuse(
        m.responder
            .accept(&ctx_r, &m3, T + TOKEN_LIFETIME_MS + 100)
            .map(|_| ()),
        Refusal::BadToken,
        "message 3 after the token expired",
    );
    let mut rng = StdRng::seed_from_u64(3);
    refuse(
        m.responder
            .respond(&ctx_r, &m1, T + MAX_SKEW_MS + 1, &mut rng)
            .map(|_| ()),
        Refusal::Stale,
        "replayed message 1, later",
    );
    // Replayed soon, message 1 gets an answer (the responder keeps nothing to compare
    // with), but the answer is useless: only the real initiator can finish, and its
    // message 3 is refused as a replay.
    let m2b = m
        .responder
        .respond(&ctx_r, &m1, T + 6, &mut rng)
        .expect("stateless answer");
    let (_, m3b) = init
        .clone()
        .finish(&ctx_i, &m2b, T + 10)
        .expect("the initiator's key");
    m.responder
        .accept(&ctx_r, &m3b, T + 16)
        .expect("a fresh answer completes once");
    refuse(
        m.responder.accept(&ctx_r, &m3b, T + 17).map(|_| ()),
        Refusal::Replay,
        "and only once",
    );
    // Reflections: each message fed to the side that sent it, or out of order.
    refuse(
        init.clone().finish(&ctx_i, &m1, T).map(|_| ()),
        Refusal::UnexpectedMessage,
        "message 1 back to the initiator",
    );
    refuse(
        init.clone().finish(&ctx_i, &m3, T).map(|_| ()),
        Refusal::UnexpectedMessage,
        "message 3 to the initiator",
    );
    refuse(
        m.responder.accept(&ctx_r, &m2, T).map(|_| ()),
        Refusal::UnexpectedMessage,
        "message 2 back to the responder",
    );
    refuse(
        m.responder.respond(&ctx_r, &m3, T, &mut rng).map(|_| ()),
        Refusal::UnexpectedMessage,
        "message 3 as a first message",
    );
    refuse(
        m.responder.accept(&ctx_r, &m1, T).map(|_| ()),
        Refusal::UnexpectedMessage,
        "message 1 as a third",
    );
    // Our message 1 routed to our own responder: its certificate is ours.
    let (selfinit, s1) = Initiator::start(&mut rng, None, T).expect("message 1");
    let s2 = m
        .responder
        .respond(&ctx_i, &s1, T, &mut rng)
        .expect("our own responder answers");
    refuse(
        selfinit.finish(&ctx_i, &s2, T).map(|_| ()),
        Refusal::Reflected,
        "talking to ourselves",
    );
    // We dialled r3; r2 answered.
    let r3 = SpiffeId::node(TD, "r3").expect("id");
    let (wrong, w1) = Initiator::start(&mut rng, Some(r3), T).expect("message 1");
    let w2 = m
        .responder
        .respond(&ctx_r, &w1, T, &mut rng)
        .expect("message 2");
    refuse(
        wrong.finish(&ctx_i, &w2, T).map(|_| ()),
        Refusal::WrongPeer,
        "wrong peer",
    );
    assert_eq!(counts.total(), 11, "every case counted");
}

#[test]
fn refused_certificates_on_either_side() {
    let m = Mesh::new();
    let id = |n: &str| SpiffeId::node(TD, n).expect("id");
    let expired = m.auth.node_with(&id("old"), 31, NOW - 100, NOW - 1);
    let early = m.auth.node_with(&id("new"), 32, NOW + 100, NOW + 1000);
    let revoked = m.auth.node("gone", 33);
    let foreign = Authority::new(TD).node("alien", 34);
    let other_domain = m.auth.node_with(
        &SpiffeId::node("other.test", "x").expect("id"),
        35,
        NOW - 1,
        NOW + 100,
    );
    let not_node = m.auth.node_with(
        &SpiffeId::parse("spiffe://mesh.test/svc/x").expect("id"),
        36,
        NOW - 1,
        NOW + 100,
    );
    let mut store = m.auth.store();
    store
        .set_revocations(&RevocationList::sign(&m.auth.key, NOW, [33].into()).expect("crl"))
        .expect("crl");
    let mut rng = StdRng::seed_from_u64(4);
    let responder = Responder::new(&mut rng);
    let mut counts = RefusalCounts::default();
    for (bad, want) in [
        (&expired, Refusal::Expired),
        (&early, Refusal::NotYetValid),
        (&revoked, Refusal::Revoked),
        (&foreign, Refusal::ForeignAuthority),
        (&other_domain, Refusal::WrongTrustDomain),
        (&not_node, Refusal::BadSpiffeId),
    ] {
        let good = Context {
            identity: &m.i,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        let badc = Context {
            identity: bad,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        // A bad responder, refused by the initiator.
        let (init, m1) = Initiator::start(&mut rng, None, T).expect("message 1");
        let m2 = responder
            .respond(&badc, &m1, T, &mut rng)
            .expect("message 2");
        let got = init
            .finish(&good, &m2, T)
            .map(|_| ())
            .expect_err("bad responder accepted")
            .refusal();
        counts.record(got);
        assert_eq!(got, want, "responder {}", bad.cert.id);
        // A bad initiator, refused by the responder.
        let (init, m1) = Initiator::start(&mut rng, None, T).expect("message 1");
        let m2 = responder
            .respond(&good, &m1, T, &mut rng)
            .expect("message 2");
        let (_, m3) = init
            .finish(&badc, &m2, T)
            .expect("the bad side does not check itself");
        let got = responder
            .accept(&good, &m3, T)
            .map(|_| ())
            .expect_err("bad initiator accepted")
            .refusal();
        counts.record(got);
        assert_eq!(got, want, "initiator {}", bad.cert.id);
    }
    assert_eq!(counts.total(), 12, "every case counted");
    assert_eq!(
        responder.state_size(),
        0,
        "nothing remembered from refused initiators"
    );
}

#[test]
fn suite_downgrades_are_refused() {
    let mut m = Mesh::new();
    let mut rng = StdRng::seed_from_u64(5);
    let (_, classic) =
        Initiator::start_offering(&mut rng, None, T, &[SUITE_CLASSIC]).expect("message 1");
    assert_eq!(
        m.respond(&classic).map_err(|e| e.refusal()),
        Err(Refusal::Downgrade),
        "classic-only offer"
    );
    let (_, unknown) = Initiator::start_offering(&mut rng, None, T, &[0x7777]).expect("message 1");
    assert_eq!(
        m.respond(&unknown).map_err(|e| e.refusal()),
        Err(Refusal::UnsupportedSuite),
        "unknown suite"
    );
    let to_classic = |b: &mut Vec<u8>| b[6..8].copy_from_slice(&SUITE_CLASSIC.to_be_bytes());
    assert_eq!(
        m.run(same, to_classic, same)
            .map(|_| ())
            .map_err(|e| e.refusal()),
        Err(Refusal::Downgrade),
        "chosen suite rewritten"
    );
    // An offer of both, rewritten in flight to classic only: refused.
    let (_, both) = Initiator::start_offering(&mut rng, None, T, &[SUITE_HYBRID_V1, SUITE_CLASSIC])
        .expect("message 1");
    let mut stripped = both.clone();
    stripped[7..9].copy_from_slice(&SUITE_CLASSIC.to_be_bytes());
    assert_eq!(
        m.respond(&stripped).map_err(|e| e.refusal()),
        Err(Refusal::Downgrade),
        "offer stripped of the hybrid"
    );
    // Any rewrite of the offer that still gets an answer breaks the responder's signature.
    let (init, both) =
        Initiator::start_offering(&mut rng, None, T, &[SUITE_CLASSIC, SUITE_HYBRID_V1])
            .expect("message 1");
    let mut reordered = both.clone();
    reordered[7..9].copy_from_slice(&SUITE_HYBRID_V1.to_be_bytes());
    reordered[9..11].copy_from_slice(&SUITE_CLASSIC.to_be_bytes());
    let m2 = m.respond(&reordered).expect("answered");
    assert_eq!(
        init.finish(&m.ctx(&m.i), &m2, T)
            .map(|_| ())
            .map_err(|e| e.refusal()),
        Err(Refusal::BadSignature),
        "rewritten offer"
    );
}

#[test]
fn bogus_first_messages_leave_no_state() {
    let mut m = Mesh::new();
    let ctx = m.ctx(&m.r);
    let before = m.responder.state_size();
    let mut rng = StdRng::seed_from_u64(7);
    let mut answered = 0;
    for k in 0..300 {
        let msg: Vec<u8> = if k % 3 == 0 {
            // Well-formed first messages nobody will finish: the expensive kind.
            Initiator::start(&mut rng, None, T).expect("message 1").1
        } else {
            let mut b = vec![0u8; 1 + (rng.next_u32() as usize % 2000)];
            rng.fill_bytes(&mut b);
            b
        };
        if m.responder.respond(&ctx, &msg, T, &mut rng).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 100, "the well-formed ones were answered");
    assert_eq!(
        m.responder.state_size(),
        before,
        "state grew with unauthenticated messages"
    );
    // Completed handshakes are remembered only for a token lifetime.
    m.run(same, same, same).expect("handshake");
    assert_eq!(m.responder.state_size(), 1, "one remembered");
    let (init, m1) = m.start();
    let mut rng2 = StdRng::seed_from_u64(8);
    let later = T + TOKEN_LIFETIME_MS * 3;
    let m2 = m
        .responder
        .respond(&m.ctx(&m.r), &m1, later, &mut rng2)
        .expect("message 2");
    let (_, m3) = init.finish(&m.ctx(&m.i), &m2, later).expect("message 3");
    m.responder
        .accept(&m.ctx(&m.r), &m3, later)
        .expect("accepted");
    assert_eq!(m.responder.state_size(), 1, "the expired entry was pruned");
}

#[test]
fn tokens_from_another_responder_or_epoch_are_refused() {
    let mut m = Mesh::new();
    let (init, m1) = m.start();
    let m2 = m.respond(&m1).expect("message 2");
    let (_, m3) = init.finish(&m.ctx(&m.i), &m2, T + 10).expect("message 3");
    let other = Responder::new(&mut StdRng::seed_from_u64(99));
    assert_eq!(
        other
            .accept(&m.ctx(&m.r), &m3, T + 15)
            .map(|_| ())
            .map_err(|e| e.refusal()),
        Err(Refusal::BadToken),
        "another responder's token"
    );
    assert_eq!(
        m.responder
            .accept(&m.ctx(&m.r), &m3, T + 3 * COOKIE_EPOCH_MS)
            .map(|_| ())
            .map_err(|e| e.refusal()),
        Err(Refusal::BadToken),
        "two epochs later"
    );
}
