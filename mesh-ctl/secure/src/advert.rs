//! Link-state adverts signed by their origin, so every node can check an advert it did
//! not receive from the origin itself.
//!
//! The signature (ML-DSA-65, context "x0tta6bl4/lsa/v1") covers a canonical binary
//! encoding of what the advert says and the signer's certificate serial:
//!
//! ```text
//! "X06L" | version u8 = 1 | origin (u16 length) | seq u64 | links u16 count
//! | per link: neighbour (u16 length), cost u32 | prefixes u16 count
//! | per prefix: family u8 (4|6), address (4|16), length u8 | signer serial u64
//! ```
//!
//! On the wire: `"X06A" | version u8 = 1 | age ms u64 | body (u32 length) | certificate
//! reference (u8 1 + certificate with u16 length, or u8 2 + serial u64) | signature (u16
//! length = 3309)`. The age is not signed: it grows as the advert travels (as an OSPF LS
//! age does). Sending the serial only (8 bytes instead of ~5.4 kB) works once receivers
//! hold the certificate, from an earlier advert or the handshake.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;

use super::{
    cert::{Cert, CertError, Identity, MAX_CERT, TrustStore},
    keys::{KeyError, MLDSA65_SIGNATURE},
    refusal::Refusal,
    replay::{OriginTracker, SeqError},
    wire::{Reader, WireError, put_var},
};
use mesh_routing::{Lsa, LsaLink};

const BODY_MAGIC: [u8; 4] = *b"X06L";
const WIRE_MAGIC: [u8; 4] = *b"X06A";
const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"x0tta6bl4/lsa/v1";
/// The largest signed advert: it must fit a control datagram, whose largest frame is
/// this size too (`control::MAX_FRAME` is defined from it).
pub const MAX_ADVERT: usize = 65_000;
const MAX_NAME: usize = 63;
const MAX_ITEMS: usize = 4096;

/// How an advert names its signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRef {
    /// The whole certificate travels with the advert.
    Full,
    /// Only the serial: the receiver must know the certificate already.
    Serial,
}

/// Why an advert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// Not a well-formed signed advert.
    #[error("malformed: {0}")]
    Wire(#[from] WireError),
    /// The signer's certificate was refused.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// A serial we hold no certificate for.
    #[error("unknown certificate serial {0}")]
    UnknownCert(u64),
    /// The certificate is not the origin's.
    #[error("advert from `{origin}` signed by {signer}")]
    OriginMismatch { origin: String, signer: String },
    /// The signature does not verify.
    #[error("advert signature does not verify")]
    BadSignature,
    /// Not newer than what we hold from this origin.
    #[error("{0}")]
    Seq(#[from] SeqError),
    /// Signing failed locally.
    #[error("{0}")]
    Key(#[from] KeyError),
}

impl AdvertError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Wire(e) => e.refusal(),
            Self::Cert(e) => e.refusal(),
            Self::UnknownCert(_) => Refusal::UnknownCert,
            Self::OriginMismatch { .. } => Refusal::OriginMismatch,
            Self::BadSignature => Refusal::BadSignature,
            Self::Seq(e) => e.refusal(),
            Self::Key(e) => e.refusal(),
        }
    }
}

/// The canonical, signed encoding of an advert's content.
pub fn canonical(lsa: &Lsa, serial: u64) -> Result<Vec<u8>, WireError> {
    let bound = |field, len, max| {
        if len > max {
            Err(WireError::Oversized { field, len, max })
        } else {
            Ok(())
        }
    };
    bound("origin", lsa.origin.len(), MAX_NAME)?;
    bound("links", lsa.links.len(), MAX_ITEMS)?;
    bound("prefixes", lsa.prefixes.len(), MAX_ITEMS)?;
    let mut out = Vec::with_capacity(64 + lsa.links.len() * 24 + lsa.prefixes.len() * 18);
    out.extend_from_slice(&BODY_MAGIC);
    out.push(VERSION);
    put_var(&mut out, lsa.origin.as_bytes());
    out.extend_from_slice(&lsa.seq.to_be_bytes());
    out.extend_from_slice(&(lsa.links.len() as u16).to_be_bytes());
    for l in &lsa.links {
        bound("neighbor", l.neighbor.len(), MAX_NAME)?;
        put_var(&mut out, l.neighbor.as_bytes());
        out.extend_from_slice(&l.cost.to_be_bytes());
    }
    out.extend_from_slice(&(lsa.prefixes.len() as u16).to_be_bytes());
    for p in &lsa.prefixes {
        match p.addr() {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                out.extend_from_slice(&a.octets());
            }
        }
        out.push(p.prefix_len());
    }
    out.extend_from_slice(&serial.to_be_bytes());
    Ok(out)
}

fn name(r: &mut Reader<'_>, field: &'static str) -> Result<String, WireError> {
    let b = r.var(field, MAX_NAME)?;
    String::from_utf8(b.to_vec()).map_err(|_| WireError::Invalid(field))
}

/// Parses a canonical body: the advert (age 0) and the signer's serial.
fn parse_canonical(b: &[u8]) -> Result<(Lsa, u64), WireError> {
    let mut r = Reader::new(b);
    r.header("advert body", &BODY_MAGIC, VERSION)?;
    let origin = name(&mut r, "origin")?;
    let seq = r.u64("seq")?;
    let n = usize::from(r.u16("links")?);
    if n > MAX_ITEMS {
        return Err(WireError::Oversized {
            field: "links",
            len: n,
            max: MAX_ITEMS,
        });
    }
    let mut links = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let neighbor = name(&mut r, "neighbor")?;
        let cost = r.u32("cost")?;
        links.push(LsaLink { neighbor, cost });
    }
    let n = usize::from(r.u16("prefixes")?);
    if n > MAX_ITEMS {
        return Err(WireError::Oversized {
            field: "prefixes",
            len: n,
            max: MAX_ITEMS,
        });
    }
    let mut prefixes = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let addr = match r.u8("family")? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("address")?)),
            _ => return Err(WireError::Invalid("family")),
        };
        let len = r.u8("prefix length")?;
        let net = IpNet::new(addr, len).map_err(|_| WireError::Invalid("prefix length"))?;
        // Host bits set would give two encodings of one prefix.
        if net.trunc() != net {
            return Err(WireError::Invalid("prefix host bits"));
        }
        prefixes.push(net);
    }
    let serial = r.u64("serial")?;
    r.finish()?;
    Ok((
        Lsa {
            origin,
            seq,
            age_ms: 0,
            links,
            prefixes,
        },
        serial,
    ))
}

/// A parsed signed advert, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAdvert {
    pub lsa: Lsa,
    pub serial: u64,
    pub cert: Option<Cert>,
    body: Vec<u8>,
    signature: Vec<u8>,
}

impl SignedAdvert {
    /// Signs `lsa` as `identity`, whose certificate must name `lsa.origin`.
    pub fn sign(identity: &Identity, lsa: &Lsa, cert_ref: CertRef) -> Result<Self, AdvertError> {
        let body = canonical(lsa, identity.cert.serial)?;
        let signature = identity.key.sign(CONTEXT, &body)?;
        Ok(Self {
            lsa: lsa.clone(),
            serial: identity.cert.serial,
            cert: (cert_ref == CertRef::Full).then(|| identity.cert.clone()),
            body,
            signature,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + MAX_CERT + MLDSA65_SIGNATURE + 32);
        out.extend_from_slice(&WIRE_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.lsa.age_ms.to_be_bytes());
        let len = u32::try_from(self.body.len()).expect("bounded by MAX_ITEMS");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.body);
        match &self.cert {
            Some(c) => {
                out.push(1);
                put_var(&mut out, c.encode());
            }
            None => {
                out.push(2);
                out.extend_from_slice(&self.serial.to_be_bytes());
            }
        }
        put_var(&mut out, &self.signature);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, AdvertError> {
        if b.len() > MAX_ADVERT {
            return Err(WireError::Oversized {
                field: "advert",
                len: b.len(),
                max: MAX_ADVERT,
            }
            .into());
        }
        let mut r = Reader::new(b);
        r.header("advert", &WIRE_MAGIC, VERSION)?;
        let age_ms = r.u64("age")?;
        let len = usize::try_from(r.u32("body")?).unwrap_or(usize::MAX);
        if len > MAX_ADVERT {
            return Err(WireError::Oversized {
                field: "body",
                len,
                max: MAX_ADVERT,
            }
            .into());
        }
        let body = r.take(len, "body")?.to_vec();
        let (mut lsa, serial) = parse_canonical(&body)?;
        lsa.age_ms = age_ms;
        let cert = match r.u8("certificate reference")? {
            1 => {
                let c = Cert::decode(r.var("certificate", MAX_CERT)?)?;
                if c.serial != serial {
                    return Err(WireError::Invalid("certificate serial").into());
                }
                Some(c)
            }
            2 => {
                if r.u64("serial")? != serial {
                    return Err(WireError::Invalid("certificate serial").into());
                }
                None
            }
            _ => return Err(WireError::Invalid("certificate reference").into()),
        };
        let signature = r.exact("signature", MLDSA65_SIGNATURE)?.to_vec();
        r.finish()?;
        Ok(Self {
            lsa,
            serial,
            cert,
            body,
            signature,
        })
    }

    /// Sets the (unsigned) age before forwarding.
    pub fn set_age(&mut self, age_ms: u64) {
        self.lsa.age_ms = age_ms;
    }
}

/// The checks an advert goes through, with what they need across adverts: the trust
/// store, certificates learned (by serial) and the newest sequence per origin.
#[derive(Debug, Default)]
pub struct AdvertVerifier {
    certs: HashMap<u64, Cert>,
    seen: OriginTracker,
}

/// The most certificates an advert verifier caches.
pub const MAX_CACHED_CERTS: usize = 16_384;

impl AdvertVerifier {
    /// Remembers a certificate that passed the trust store (from a handshake).
    pub fn learn(&mut self, trust: &TrustStore, cert: &Cert, now_s: u64) -> Result<(), CertError> {
        trust.verify(cert, now_s)?;
        if self.certs.len() < MAX_CACHED_CERTS || self.certs.contains_key(&cert.serial) {
            self.certs.insert(cert.serial, cert.clone());
        }
        Ok(())
    }

    /// Checks certificate, origin and signature, without the sequence check.
    pub fn authenticate(
        &mut self,
        trust: &TrustStore,
        advert: &SignedAdvert,
        now_s: u64,
    ) -> Result<(), AdvertError> {
        let cert = match &advert.cert {
            Some(c) => {
                self.learn(trust, c, now_s)?;
                c
            }
            None => {
                let c = self
                    .certs
                    .get(&advert.serial)
                    .ok_or(AdvertError::UnknownCert(advert.serial))?;
                // Cached certificates passed `verify` when learned; they still expire
                // and get revoked.
                trust.check_validity(c, now_s)?;
                c
            }
        };
        if cert.id.node_name().ok() != Some(advert.lsa.origin.as_str()) {
            return Err(AdvertError::OriginMismatch {
                origin: advert.lsa.origin.clone(),
                signer: cert.id.to_string(),
            });
        }
        if !cert.key.verify(CONTEXT, &advert.body, &advert.signature) {
            return Err(AdvertError::BadSignature);
        }
        Ok(())
    }

    /// The full check for an advert as received: authentic and newer than any accepted
    /// from its origin. Returns the advert for the LSDB.
    pub fn verify(
        &mut self,
        trust: &TrustStore,
        bytes: &[u8],
        now_s: u64,
    ) -> Result<Lsa, AdvertError> {
        let advert = SignedAdvert::decode(bytes)?;
        self.seen.check(&advert.lsa.origin, advert.lsa.seq)?;
        self.authenticate(trust, &advert, now_s)?;
        self.seen.accept(&advert.lsa.origin, advert.lsa.seq)?;
        Ok(advert.lsa)
    }

    pub fn tracker(&mut self) -> &mut OriginTracker {
        &mut self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::cert::fixture::{Authority, NOW, TD},
        *,
    };

    pub fn lsa(origin: &str, seq: u64) -> Lsa {
        Lsa {
            origin: origin.into(),
            seq,
            age_ms: 5,
            links: vec![
                LsaLink {
                    neighbor: "r2".into(),
                    cost: 10,
                },
                LsaLink {
                    neighbor: "r3".into(),
                    cost: 7,
                },
            ],
            prefixes: vec![
                "10.0.1.0/24".parse().expect("prefix"),
                "fd00::/64".parse().expect("prefix"),
            ],
        }
    }

    #[test]
    fn sign_verify_round_trip_and_relay() {
        let a = Authority::new(TD);
        let store = a.store();
        let r1 = a.node("r1", 11);
        let full = SignedAdvert::sign(&r1, &lsa("r1", 1), CertRef::Full).expect("signs");
        let bytes = full.encode();
        assert_eq!(
            SignedAdvert::decode(&bytes).expect("decodes"),
            full,
            "round trip"
        );
        // A node two hops away, that never met r1, verifies it.
        let mut far = AdvertVerifier::default();
        assert_eq!(
            far.verify(&store, &bytes, NOW).expect("verifies"),
            lsa("r1", 1),
            "content"
        );
        // Then the short form, by serial.
        let short = SignedAdvert::sign(&r1, &lsa("r1", 2), CertRef::Serial)
            .expect("signs")
            .encode();
        assert!(
            short.len() + 5000 < bytes.len(),
            "serial form is small: {} vs {}",
            short.len(),
            bytes.len()
        );
        assert_eq!(
            far.verify(&store, &short, NOW).map(|l| l.seq),
            Ok(2),
            "by serial"
        );
        let mut fresh = AdvertVerifier::default();
        assert_eq!(
            fresh.verify(&store, &short, NOW).map_err(|e| e.refusal()),
            Err(Refusal::UnknownCert),
            "unknown serial"
        );
        // Age changes in flight without breaking the signature.
        let mut aged = SignedAdvert::decode(&bytes).expect("decodes");
        aged.set_age(999);
        let mut other = AdvertVerifier::default();
        assert_eq!(
            other.verify(&store, &aged.encode(), NOW).map(|l| l.age_ms),
            Ok(999),
            "aged copy"
        );
    }

    #[test]
    fn refusals_each_with_its_reason() {
        let a = Authority::new(TD);
        let mut store = a.store();
        let r1 = a.node("r1", 11);
        let mut v = AdvertVerifier::default();
        let mut counts = super::super::refusal::RefusalCounts::default();
        let mut refuse = |v: &mut AdvertVerifier,
                          store: &TrustStore,
                          b: &[u8],
                          now: u64,
                          want: Refusal,
                          what: &str| {
            let got = v.verify(store, b, now).expect_err(what).refusal();
            counts.record(got);
            assert_eq!(got, want, "{what}");
        };
        let ad5 = SignedAdvert::sign(&r1, &lsa("r1", 5), CertRef::Full)
            .expect("signs")
            .encode();
        v.verify(&store, &ad5, NOW).expect("first copy");
        refuse(
            &mut v,
            &store,
            &ad5,
            NOW,
            Refusal::Replay,
            "replayed advert",
        );
        let ad4 = SignedAdvert::sign(&r1, &lsa("r1", 4), CertRef::Full)
            .expect("signs")
            .encode();
        refuse(&mut v, &store, &ad4, NOW, Refusal::Stale, "stale advert");
        // r1 signing r2's advert.
        let forged = SignedAdvert::sign(&r1, &lsa("r2", 9), CertRef::Full)
            .expect("signs")
            .encode();
        refuse(
            &mut v,
            &store,
            &forged,
            NOW,
            Refusal::OriginMismatch,
            "advert for another origin",
        );
        // A changed cost under the original signature.
        let mut tampered = SignedAdvert::decode(
            &SignedAdvert::sign(&r1, &lsa("r1", 6), CertRef::Full)
                .expect("signs")
                .encode(),
        )
        .expect("decodes");
        let at = tampered.body.len() - 60;
        tampered.body[at] ^= 1;
        refuse(
            &mut v,
            &store,
            &tampered.encode(),
            NOW,
            Refusal::BadSignature,
            "tampered body",
        );
        let foreign = Authority::new(TD).node("r1", 12);
        let ad7 = SignedAdvert::sign(&foreign, &lsa("r1", 7), CertRef::Full)
            .expect("signs")
            .encode();
        refuse(
            &mut v,
            &store,
            &ad7,
            NOW,
            Refusal::ForeignAuthority,
            "foreign authority",
        );
        let ad8 = SignedAdvert::sign(&r1, &lsa("r1", 8), CertRef::Full)
            .expect("signs")
            .encode();
        refuse(
            &mut v,
            &store,
            &ad8,
            NOW + 20_000,
            Refusal::Expired,
            "expired signer",
        );
        store
            .set_revocations(
                &super::super::cert::RevocationList::sign(&a.key, NOW, [11].into()).expect("crl"),
            )
            .expect("crl");
        refuse(
            &mut v,
            &store,
            &ad8,
            NOW,
            Refusal::Revoked,
            "revoked signer",
        );
        let short = SignedAdvert::sign(&r1, &lsa("r1", 9), CertRef::Serial)
            .expect("signs")
            .encode();
        refuse(
            &mut v,
            &store,
            &short,
            NOW,
            Refusal::Revoked,
            "revoked cached signer",
        );
        let mut long = ad8.clone();
        long.push(0);
        refuse(
            &mut v,
            &store,
            &long,
            NOW,
            Refusal::Malformed,
            "trailing byte",
        );
        refuse(
            &mut v,
            &store,
            &ad8[..ad8.len() / 2],
            NOW,
            Refusal::Malformed,
            "truncated",
        );
        assert_eq!(counts.total(), 10, "every refusal counted");
    }

    #[test]
    fn canonical_encoding_is_unique() {
        let mut bad = canonical(&lsa("r1", 1), 3).expect("encodes");
        // The /24 prefix's last address byte: a host bit.
        let at = bad.len() - 8 - 18 - 2;
        bad[at] |= 1;
        assert_eq!(
            parse_canonical(&bad),
            Err(WireError::Invalid("prefix host bits")),
            "host bits"
        );
        let good = canonical(&lsa("r1", 1), 3).expect("encodes");
        assert_eq!(
            parse_canonical(&good).map(|(l, s)| (l.links.len(), s)),
            Ok((2, 3)),
            "round trip"
        );
    }
}
