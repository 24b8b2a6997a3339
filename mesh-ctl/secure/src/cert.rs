//! Node and authority certificates, revocation lists and the trust store that checks them.
//!
//! Certificate, version 1 (all integers big-endian; times in Unix seconds):
//!
//! ```text
//! "X06R" | version u8 = 1 | kind u8 (1 authority, 2 node) | serial u64
//! | not_before u64 | not_after u64 | issuer key id [32] (SHA-256 of the authority's key)
//! | SPIFFE ID (u16 length, <= 2048) | ML-DSA-65 verify key (u16 length = 1952)
//! | signature (u16 length = 3309): the authority's ML-DSA-65 signature over every byte
//!   before it, context "x0tta6bl4/cert/v1"
//! ```
//!
//! The authority's own certificate is the same format, self-signed, with the trust
//! domain's ID (`spiffe://<td>`): it is the trust bundle. A node certificate is about 5.4 kB.
//!
//! Revocation list, version 1: `"X06V" | version u8 = 1 | issuer key id [32] | issued_at u64
//! | count u32 | serials u64 x count (ascending) | signature (u16 length = 3309)`, context
//! "x0tta6bl4/crl/v1". Signed, so it can be copied around the mesh like the bundle.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{
    keys::{KeyError, MLDSA65_PUBLIC, MLDSA65_SIGNATURE, SigningKey, VerifyKey},
    refusal::Refusal,
    spiffe::{self, SpiffeError, SpiffeId},
    wire::{Reader, WireError, put_var},
};

const CERT_MAGIC: [u8; 4] = *b"X06R";
const CERT_VERSION: u8 = 1;
const CERT_CONTEXT: &[u8] = b"x0tta6bl4/cert/v1";
const CRL_MAGIC: [u8; 4] = *b"X06V";
const CRL_VERSION: u8 = 1;
const CRL_CONTEXT: &[u8] = b"x0tta6bl4/crl/v1";
/// The most serials a revocation list may hold (800 kB).
pub const MAX_REVOKED: usize = 100_000;
/// The largest encoded certificate.
pub const MAX_CERT: usize =
    4 + 1 + 1 + 8 * 3 + 32 + 2 + spiffe::MAX_ID + 2 + MLDSA65_PUBLIC + 2 + MLDSA65_SIGNATURE;

/// A key's identifier: what a certificate names its issuer by.
pub type KeyId = [u8; 32];

pub fn key_id(key: &VerifyKey) -> KeyId {
    Sha256::new()
        .chain_update(b"x0tta6bl4/key-id")
        .chain_update(key.as_bytes())
        .finalize()
        .into()
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    Authority = 1,
    Node = 2,
}

/// Why a certificate or revocation list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The bytes are not a certificate or revocation list.
    #[error("malformed: {0}")]
    Wire(#[from] WireError),
    /// The SPIFFE ID in it is invalid, or not a node ID in a node certificate.
    #[error("SPIFFE ID: {0}")]
    Spiffe(#[from] SpiffeError),
    /// Issued by an authority other than ours.
    #[error("issued by a foreign authority")]
    ForeignAuthority,
    /// The authority's signature does not verify.
    #[error("the authority's signature does not verify")]
    BadSignature,
    /// Of another trust domain than ours.
    #[error("trust domain `{got}`, expected `{want}`")]
    WrongTrustDomain { got: String, want: String },
    /// Now is after its not-after.
    #[error("expired at {not_after} (now {now})")]
    Expired { not_after: u64, now: u64 },
    /// Now is before its not-before.
    #[error("not valid before {not_before} (now {now})")]
    NotYetValid { not_before: u64, now: u64 },
    /// Its serial is on the revocation list.
    #[error("serial {0} is revoked")]
    Revoked(u64),
    /// An authority certificate where a node one belongs, or the reverse.
    #[error("a {got:?} certificate where a {want:?} one is needed")]
    WrongKind { got: CertKind, want: CertKind },
    /// A private key that is not the certificate's.
    #[error("the key does not match the certificate")]
    KeyMismatch,
    /// Signing failed locally.
    #[error("signing: {0}")]
    Key(#[from] KeyError),
}

impl CertError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Wire(e) => e.refusal(),
            Self::Spiffe(_) => Refusal::BadSpiffeId,
            Self::ForeignAuthority => Refusal::ForeignAuthority,
            Self::BadSignature => Refusal::BadCertSignature,
            Self::WrongTrustDomain { .. } => Refusal::WrongTrustDomain,
            Self::Expired { .. } => Refusal::Expired,
            Self::NotYetValid { .. } => Refusal::NotYetValid,
            Self::Revoked(_) => Refusal::Revoked,
            Self::WrongKind { .. } => Refusal::BadSpiffeId,
            Self::KeyMismatch => Refusal::Internal,
            Self::Key(e) => e.refusal(),
        }
    }
}

/// A parsed certificate. Whether to trust it is the [`TrustStore`]'s call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub kind: CertKind,
    pub serial: u64,
    pub not_before: u64,
    pub not_after: u64,
    pub issuer: KeyId,
    pub id: SpiffeId,
    pub key: VerifyKey,
    /// The whole encoding; the signature covers all of it but the last field.
    raw: Vec<u8>,
    signed_len: usize,
}

/// The fields a new certificate states.
#[derive(Debug, Clone)]
pub struct CertRequest<'a> {
    pub kind: CertKind,
    pub serial: u64,
    pub not_before: u64,
    pub not_after: u64,
    pub id: &'a SpiffeId,
    pub key: &'a VerifyKey,
}

impl Cert {
    /// Issues a certificate signed by `authority` (itself, for the authority certificate).
    pub fn issue(authority: &SigningKey, req: &CertRequest<'_>) -> Result<Self, CertError> {
        let mut out = Vec::with_capacity(MAX_CERT);
        out.extend_from_slice(&CERT_MAGIC);
        out.push(CERT_VERSION);
        out.push(req.kind as u8);
        out.extend_from_slice(&req.serial.to_be_bytes());
        out.extend_from_slice(&req.not_before.to_be_bytes());
        out.extend_from_slice(&req.not_after.to_be_bytes());
        out.extend_from_slice(&key_id(authority.public()));
        put_var(&mut out, req.id.as_str().as_bytes());
        put_var(&mut out, req.key.as_bytes());
        let signed_len = out.len();
        let signature = authority.sign(CERT_CONTEXT, &out)?;
        put_var(&mut out, &signature);
        debug_assert_eq!(signed_len + 2 + MLDSA65_SIGNATURE, out.len());
        Self::decode(&out)
    }

    pub fn decode(b: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(b);
        r.header("certificate", &CERT_MAGIC, CERT_VERSION)?;
        let kind = match r.u8("kind")? {
            1 => CertKind::Authority,
            2 => CertKind::Node,
            _ => return Err(WireError::Invalid("kind").into()),
        };
        let serial = r.u64("serial")?;
        let not_before = r.u64("not_before")?;
        let not_after = r.u64("not_after")?;
        let issuer = r.array("issuer")?;
        let id = r.var("spiffe id", spiffe::MAX_ID)?;
        let id = std::str::from_utf8(id).map_err(|_| WireError::Invalid("spiffe id"))?;
        let id = SpiffeId::parse(id)?;
        let key = VerifyKey::from_bytes(r.exact("verify key", MLDSA65_PUBLIC)?)
            .map_err(|_| WireError::Invalid("verify key"))?;
        let signed_len = r.pos();
        r.exact("signature", MLDSA65_SIGNATURE)?;
        r.finish()?;
        Ok(Self {
            kind,
            serial,
            not_before,
            not_after,
            issuer,
            id,
            key,
            raw: b.to_vec(),
            signed_len,
        })
    }

    pub fn encode(&self) -> &[u8] {
        &self.raw
    }

    fn signature(&self) -> &[u8] {
        &self.raw[self.signed_len + 2..]
    }

    /// Whether `key` signed this certificate.
    fn signed_by(&self, key: &VerifyKey) -> bool {
        key.verify(CERT_CONTEXT, &self.raw[..self.signed_len], self.signature())
    }
}

/// A signed list of revoked serials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    pub issuer: KeyId,
    pub issued_at: u64,
    pub serials: BTreeSet<u64>,
    signature: Vec<u8>,
}

impl RevocationList {
    pub fn sign(
        authority: &SigningKey,
        issued_at: u64,
        serials: BTreeSet<u64>,
    ) -> Result<Self, CertError> {
        if serials.len() > MAX_REVOKED {
            return Err(WireError::Oversized {
                field: "serials",
                len: serials.len(),
                max: MAX_REVOKED,
            }
            .into());
        }
        let issuer = key_id(authority.public());
        let signature = authority.sign(
            CRL_CONTEXT,
            &Self::signed_part(&issuer, issued_at, &serials),
        )?;
        Ok(Self {
            issuer,
            issued_at,
            serials,
            signature,
        })
    }

    fn signed_part(issuer: &KeyId, issued_at: u64, serials: &BTreeSet<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 1 + 32 + 8 + 4 + 8 * serials.len());
        out.extend_from_slice(&CRL_MAGIC);
        out.push(CRL_VERSION);
        out.extend_from_slice(issuer);
        out.extend_from_slice(&issued_at.to_be_bytes());
        let n = u32::try_from(serials.len()).expect("bounded by MAX_REVOKED");
        out.extend_from_slice(&n.to_be_bytes());
        for s in serials {
            out.extend_from_slice(&s.to_be_bytes());
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::signed_part(&self.issuer, self.issued_at, &self.serials);
        put_var(&mut out, &self.signature);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(b);
        r.header("revocation list", &CRL_MAGIC, CRL_VERSION)?;
        let issuer = r.array("issuer")?;
        let issued_at = r.u64("issued_at")?;
        let n = usize::try_from(r.u32("count")?).unwrap_or(usize::MAX);
        if n > MAX_REVOKED {
            return Err(WireError::Oversized {
                field: "serials",
                len: n,
                max: MAX_REVOKED,
            }
            .into());
        }
        let mut serials = BTreeSet::new();
        let mut last = None;
        for _ in 0..n {
            let s = r.u64("serial")?;
            // Ascending and unique: one encoding per list.
            if last.is_some_and(|l| l >= s) {
                return Err(WireError::Invalid("serial order").into());
            }
            last = Some(s);
            serials.insert(s);
        }
        let signature = r.exact("signature", MLDSA65_SIGNATURE)?.to_vec();
        r.finish()?;
        Ok(Self {
            issuer,
            issued_at,
            serials,
            signature,
        })
    }
}

/// The authority we trust, our trust domain and what is revoked.
#[derive(Debug, Clone)]
pub struct TrustStore {
    authority: Cert,
    authority_id: KeyId,
    revoked: BTreeSet<u64>,
    crl_issued_at: u64,
}

impl TrustStore {
    /// Trusts `authority`, which must be a self-signed authority certificate of
    /// `trust_domain`.
    pub fn new(authority: Cert, trust_domain: &str) -> Result<Self, CertError> {
        if authority.kind != CertKind::Authority {
            return Err(CertError::WrongKind {
                got: authority.kind,
                want: CertKind::Authority,
            });
        }
        if authority.id.trust_domain() != trust_domain || !authority.id.path().is_empty() {
            return Err(CertError::WrongTrustDomain {
                got: authority.id.to_string(),
                want: trust_domain.to_owned(),
            });
        }
        let authority_id = key_id(&authority.key);
        if authority.issuer != authority_id {
            return Err(CertError::ForeignAuthority);
        }
        if !authority.signed_by(&authority.key) {
            return Err(CertError::BadSignature);
        }
        Ok(Self {
            authority,
            authority_id,
            revoked: BTreeSet::new(),
            crl_issued_at: 0,
        })
    }

    pub fn trust_domain(&self) -> &str {
        self.authority.id.trust_domain()
    }

    pub fn authority(&self) -> &Cert {
        &self.authority
    }

    /// Takes a revocation list signed by our authority. An older list than the one held
    /// is refused, so a replayed old list cannot un-revoke a serial.
    pub fn set_revocations(&mut self, crl: &RevocationList) -> Result<(), CertError> {
        if crl.issuer != self.authority_id {
            return Err(CertError::ForeignAuthority);
        }
        let signed = RevocationList::signed_part(&crl.issuer, crl.issued_at, &crl.serials);
        if !self
            .authority
            .key
            .verify(CRL_CONTEXT, &signed, &crl.signature)
        {
            return Err(CertError::BadSignature);
        }
        if crl.issued_at < self.crl_issued_at {
            return Err(CertError::Expired {
                not_after: self.crl_issued_at,
                now: crl.issued_at,
            });
        }
        self.revoked.clone_from(&crl.serials);
        self.crl_issued_at = crl.issued_at;
        Ok(())
    }

    /// When the revocation list in force was issued (Unix seconds); 0: none.
    pub fn crl_issued_at(&self) -> u64 {
        self.crl_issued_at
    }

    /// The serials the current revocation list names.
    pub fn revoked(&self) -> &BTreeSet<u64> {
        &self.revoked
    }

    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revoked.contains(&serial)
    }

    /// Checks a node certificate at `now` (Unix seconds).
    pub fn verify(&self, cert: &Cert, now: u64) -> Result<(), CertError> {
        if cert.kind != CertKind::Node {
            return Err(CertError::WrongKind {
                got: cert.kind,
                want: CertKind::Node,
            });
        }
        if cert.issuer != self.authority_id {
            return Err(CertError::ForeignAuthority);
        }
        if !cert.signed_by(&self.authority.key) {
            return Err(CertError::BadSignature);
        }
        if cert.id.trust_domain() != self.trust_domain() {
            return Err(CertError::WrongTrustDomain {
                got: cert.id.trust_domain().to_owned(),
                want: self.trust_domain().to_owned(),
            });
        }
        cert.id.node_name()?;
        self.check_validity(cert, now)
    }

    /// The checks that change with time, for a certificate that already passed
    /// [`Self::verify`]: its validity window and the revocation list.
    pub fn check_validity(&self, cert: &Cert, now: u64) -> Result<(), CertError> {
        if now < cert.not_before {
            return Err(CertError::NotYetValid {
                not_before: cert.not_before,
                now,
            });
        }
        if now > cert.not_after {
            return Err(CertError::Expired {
                not_after: cert.not_after,
                now,
            });
        }
        if self.is_revoked(cert.serial) {
            return Err(CertError::Revoked(cert.serial));
        }
        Ok(())
    }
}

/// A node's certificate with its key.
#[derive(Debug)]
pub struct Identity {
    pub cert: Cert,
    pub key: SigningKey,
}

impl Identity {
    pub fn new(cert: Cert, key: SigningKey) -> Result<Self, CertError> {
        if cert.key != *key.public() {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self { cert, key })
    }
}

/// Test fixtures (feature `fixture`): an authority and node identities.
#[cfg(any(test, feature = "fixture"))]
pub mod fixture {
    use super::*;

    pub const TD: &str = "mesh.test";
    /// "Now" in the fixtures, Unix seconds.
    pub const NOW: u64 = 1_800_000_000;

    pub struct Authority {
        pub key: SigningKey,
        pub cert: Cert,
    }

    impl Authority {
        pub fn new(td: &str) -> Self {
            let key = SigningKey::generate().expect("authority key");
            let id = SpiffeId::trust_domain_id(td).expect("trust domain");
            let cert = Cert::issue(
                &key,
                &CertRequest {
                    kind: CertKind::Authority,
                    serial: 1,
                    not_before: NOW - 1000,
                    not_after: NOW + 100_000,
                    id: &id,
                    key: key.public(),
                },
            )
            .expect("authority cert");
            Self { key, cert }
        }

        pub fn store(&self) -> TrustStore {
            TrustStore::new(self.cert.clone(), self.cert.id.trust_domain()).expect("trust store")
        }

        /// A node identity valid from NOW-100 to NOW+10000 unless told otherwise.
        pub fn node_with(
            &self,
            id: &SpiffeId,
            serial: u64,
            not_before: u64,
            not_after: u64,
        ) -> Identity {
            let key = SigningKey::generate().expect("node key");
            let cert = Cert::issue(
                &self.key,
                &CertRequest {
                    kind: CertKind::Node,
                    serial,
                    not_before,
                    not_after,
                    id,
                    key: key.public(),
                },
            )
            .expect("node cert");
            Identity::new(cert, key).expect("matching key")
        }

        pub fn node(&self, name: &str, serial: u64) -> Identity {
            let id = SpiffeId::node(self.cert.id.trust_domain(), name).expect("node id");
            self.node_with(&id, serial, NOW - 100, NOW + 10_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fixture::*, *};

    #[test]
    fn round_trip_and_size() {
        let a = Authority::new(TD);
        let n = a.node("r1", 7);
        let back = Cert::decode(n.cert.encode()).expect("decodes");
        assert_eq!(back, n.cert, "round trip");
        assert!(n.cert.encode().len() < MAX_CERT, "within the bound");
        assert_eq!(
            a.store().verify(&n.cert, NOW),
            Ok(()),
            "a good cert verifies"
        );
    }

    #[test]
    fn refusals_each_with_its_reason() {
        let a = Authority::new(TD);
        let mut store = a.store();
        let id = SpiffeId::node(TD, "r2").expect("id");
        let expired = a.node_with(&id, 2, NOW - 100, NOW - 1);
        let early = a.node_with(&id, 3, NOW + 1, NOW + 100);
        let other_id = SpiffeId::node("other.test", "r2").expect("id");
        let wrong_domain = a.node_with(&other_id, 4, NOW - 1, NOW + 100);
        let not_node = a.node_with(
            &SpiffeId::parse("spiffe://mesh.test/svc/x").expect("id"),
            5,
            0,
            NOW + 100,
        );
        let foreign = Authority::new(TD).node("r2", 6);
        let revoked = a.node("r3", 99);
        let crl = RevocationList::sign(&a.key, NOW, [99, 1000].into()).expect("crl");
        store
            .set_revocations(&RevocationList::decode(&crl.encode()).expect("crl decodes"))
            .expect("our crl");
        let cases = [
            (&expired.cert, Refusal::Expired),
            (&early.cert, Refusal::NotYetValid),
            (&wrong_domain.cert, Refusal::WrongTrustDomain),
            (&not_node.cert, Refusal::BadSpiffeId),
            (&foreign.cert, Refusal::ForeignAuthority),
            (&revoked.cert, Refusal::Revoked),
            (&a.cert, Refusal::BadSpiffeId),
        ];
        let mut counts = super::super::refusal::RefusalCounts::default();
        for (cert, want) in cases {
            let got = store.verify(cert, NOW).expect_err("refused").refusal();
            counts.record(got);
            assert_eq!(got, want, "{} serial {}", cert.id, cert.serial);
        }
        assert_eq!(counts.total(), 7, "every case counted");
        // A foreign certificate relabelled with our issuer id fails its signature.
        let mut raw = foreign.cert.encode().to_vec();
        raw[30..62].copy_from_slice(&key_id(&a.cert.key));
        let forged = Cert::decode(&raw).expect("still parses");
        assert_eq!(
            store.verify(&forged, NOW).map_err(|e| e.refusal()),
            Err(Refusal::BadCertSignature),
            "forged issuer"
        );
        // An older revocation list does not replace a newer one.
        let old = RevocationList::sign(&a.key, NOW - 10, BTreeSet::new()).expect("crl");
        assert!(store.set_revocations(&old).is_err(), "older list accepted");
        assert!(store.is_revoked(99), "old list un-revoked a serial");
        let foreign_crl = RevocationList::sign(
            &SigningKey::generate().expect("key"),
            NOW + 1,
            BTreeSet::new(),
        )
        .expect("crl");
        assert_eq!(
            store.set_revocations(&foreign_crl),
            Err(CertError::ForeignAuthority),
            "foreign crl"
        );
    }

    #[test]
    fn every_field_tampered_is_refused() {
        let a = Authority::new(TD);
        let store = a.store();
        let n = a.node("r1", 7);
        let raw = n.cert.encode();
        // One byte per field and a spread through the long ones; each must either fail
        // to parse or fail verification, never pass.
        let step = 97;
        for i in (0..raw.len()).filter(|i| *i < 80 || i % step == 0) {
            let mut b = raw.to_vec();
            b[i] ^= 0x10;
            if let Ok(c) = Cert::decode(&b) {
                assert!(store.verify(&c, NOW).is_err(), "flip at byte {i} accepted");
            }
        }
        for len in [0, 5, 30, 100, raw.len() - 1] {
            assert!(
                Cert::decode(&raw[..len]).is_err(),
                "{len}-byte prefix parsed"
            );
        }
        let mut long = raw.to_vec();
        long.push(0);
        assert_eq!(
            Cert::decode(&long).map_err(|e| e.refusal()),
            Err(Refusal::Malformed),
            "trailing byte"
        );
    }
}
