//! Micro-benchmarks of the secure layer, for `cargo xtask bench crypto`: handshake time,
//! advert signing and verification rates, and the session envelope's cost per message.
//! Reads the clock (it measures); everything it measures is the pure code.

use std::time::Instant;

use anyhow::Context as _;
use rand::{SeedableRng as _, rngs::StdRng};
use serde::Serialize;

use mesh_ctl::routing::{Lsa, LsaLink};
use mesh_ctl::secure::{
    advert::{AdvertVerifier, CertRef, SignedAdvert},
    cert::{Cert, CertKind, CertRequest, Identity, TrustStore},
    handshake::{Context, Initiator, Responder},
    keys::SigningKey,
    session::{self, OVERHEAD, RekeyPolicy},
    spiffe::SpiffeId,
};

/// The figures, as written to `target/bench/crypto.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CryptoBench {
    pub handshakes: usize,
    pub handshake_ms_median: f64,
    pub handshake_ms_min: f64,
    pub msg1_bytes: usize,
    pub msg2_bytes: usize,
    pub msg3_bytes: usize,
    pub adverts: usize,
    pub adverts_signed_per_s: f64,
    pub adverts_verified_per_s: f64,
    pub advert_bytes_with_cert: usize,
    pub advert_bytes_with_serial: usize,
    pub envelope_messages: usize,
    pub envelope_payload_bytes: usize,
    pub envelope_overhead_bytes: usize,
    pub envelope_seal_ns: f64,
    pub envelope_open_ns: f64,
}

const NOW: u64 = 1_800_000_000;

fn identity(
    authority: &SigningKey,
    id: &SpiffeId,
    kind: CertKind,
    serial: u64,
) -> anyhow::Result<Identity> {
    let key = SigningKey::generate()?;
    let signer = if kind == CertKind::Authority {
        &key
    } else {
        authority
    };
    let cert = Cert::issue(
        signer,
        &CertRequest {
            kind,
            serial,
            not_before: NOW - 10,
            not_after: NOW + 10_000,
            id,
            key: key.public(),
        },
    )?;
    Ok(Identity::new(cert, key)?)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `handshakes` handshakes, signs and verifies `adverts` adverts and seals and opens
/// `messages` envelopes of a typical 200-byte control frame.
pub fn run(handshakes: usize, adverts: usize, messages: usize) -> anyhow::Result<CryptoBench> {
    let td = "bench.mesh";
    let akey = SigningKey::generate()?;
    let aid = SpiffeId::trust_domain_id(td)?;
    let acert = Cert::issue(
        &akey,
        &CertRequest {
            kind: CertKind::Authority,
            serial: 1,
            not_before: 0,
            not_after: NOW * 2,
            id: &aid,
            key: akey.public(),
        },
    )?;
    let trust = TrustStore::new(acert, td)?;
    let i = identity(&akey, &SpiffeId::node(td, "r1")?, CertKind::Node, 2)?;
    let r = identity(&akey, &SpiffeId::node(td, "r2")?, CertKind::Node, 3)?;
    let ci = Context {
        identity: &i,
        trust: &trust,
        rekey: RekeyPolicy::default(),
    };
    let cr = Context {
        identity: &r,
        trust: &trust,
        rekey: RekeyPolicy::default(),
    };
    let mut rng = StdRng::from_os_rng();
    let responder = Responder::new(&mut rng);
    let now_ms = NOW * 1000;

    let mut times = Vec::with_capacity(handshakes);
    let mut sizes = (0, 0, 0);
    for _ in 0..handshakes.max(1) {
        let t = Instant::now();
        let (init, m1) = Initiator::start(&mut rng, None, now_ms)?;
        let m2 = responder.respond(&cr, &m1, now_ms, &mut rng)?;
        let (_, m3) = init.finish(&ci, &m2, now_ms)?;
        responder.accept(&cr, &m3, now_ms)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        sizes = (m1.len(), m2.len(), m3.len());
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);

    let lsa = |seq| Lsa {
        origin: "r1".into(),
        seq,
        age_ms: 0,
        links: (0..4)
            .map(|k| LsaLink {
                neighbor: format!("r{}", k + 2),
                cost: 10,
            })
            .collect(),
        prefixes: vec!["10.0.1.0/24".parse().expect("a prefix")],
    };
    let adverts = adverts.max(1);
    let t = Instant::now();
    let signed: Vec<Vec<u8>> = (1..=adverts as u64)
        .map(|s| SignedAdvert::sign(&i, &lsa(s), CertRef::Serial).map(|a| a.encode()))
        .collect::<Result<_, _>>()?;
    let sign_s = t.elapsed().as_secs_f64();
    let full = SignedAdvert::sign(&i, &lsa(0), CertRef::Full)?.encode();
    let mut verifier = AdvertVerifier::default();
    verifier.learn(&trust, &i.cert, NOW)?;
    let t = Instant::now();
    for b in &signed {
        verifier
            .verify(&trust, b, NOW)
            .context("a benchmark advert was refused")?;
    }
    let verify_s = t.elapsed().as_secs_f64();

    let (mut a, mut b) = session::pair(RekeyPolicy::default(), 0);
    let frame = vec![0x5au8; 200];
    let messages = messages.max(1);
    let t = Instant::now();
    let sealed: Vec<Vec<u8>> = (0..messages)
        .map(|_| a.seal(&frame, 0))
        .collect::<Result<_, _>>()?;
    let seal_ns = t.elapsed().as_secs_f64() * 1e9 / messages as f64;
    let t = Instant::now();
    for e in &sealed {
        b.open(e)?;
    }
    let open_ns = t.elapsed().as_secs_f64() * 1e9 / messages as f64;

    Ok(CryptoBench {
        handshakes: times.len(),
        handshake_ms_median: median(&mut times),
        handshake_ms_min: min,
        msg1_bytes: sizes.0,
        msg2_bytes: sizes.1,
        msg3_bytes: sizes.2,
        adverts,
        adverts_signed_per_s: adverts as f64 / sign_s,
        adverts_verified_per_s: adverts as f64 / verify_s,
        advert_bytes_with_cert: full.len(),
        advert_bytes_with_serial: signed[0].len(),
        envelope_messages: messages,
        envelope_payload_bytes: frame.len(),
        envelope_overhead_bytes: OVERHEAD,
        envelope_seal_ns: seal_ns,
        envelope_open_ns: open_ns,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_run_reports_consistent_figures() {
        let b = super::run(3, 5, 50).expect("bench runs");
        assert_eq!(b.handshakes, 3, "three handshakes timed");
        assert!(
            b.handshake_ms_median >= b.handshake_ms_min && b.handshake_ms_min > 0.0,
            "median {} min {}",
            b.handshake_ms_median,
            b.handshake_ms_min
        );
        assert!(
            b.adverts_verified_per_s > 0.0 && b.envelope_open_ns > 0.0,
            "positive rates"
        );
        assert!(
            b.advert_bytes_with_serial < b.advert_bytes_with_cert,
            "serial form smaller"
        );
    }
}
