//! The neighbour handshake: a pure state machine over byte messages (run over TCP by
//! [`super::tcp`], since message 2 and 3 are far beyond the MTU).
//!
//! Three messages, initiator I and responder R, each `"X06H" | version u8 = 1 | type u8`
//! then (integers big-endian, variable fields behind a u16 length):
//!
//! ```text
//! 1 I->R  offered suites (u8 count, u16 each) | timestamp ms u64 | I's X25519 share [32]
//!         | I's ephemeral ML-KEM-768 encapsulation key (1184)              = 1235 bytes
//! 2 R->I  chosen suite u16 | R's X25519 share [32] | ML-KEM ciphertext (1088)
//!         | R's certificate (~5.4 kB) | token (104) | R's signature over th2 (3309)
//!         | R's confirmation MAC [32]                                      ~ 9.9 kB
//! 3 I->R  token echoed (104) | I's certificate | I's signature over th3 (3309)
//!         | I's confirmation MAC [32]                                       ~ 8.8 kB
//! ```
//!
//! Keys: the hybrid secret combines both shares the way X-Wing / X25519MLKEM768 do,
//! `ss = SHA-256(label | ss_mlkem | ss_x25519 | ct_mlkem | x25519_R | x25519_I)`, so it is
//! safe while either X25519 or ML-KEM is. `th2 = SHA-256(label | msg1 | msg2 up to the
//! token)` covers both offers, the chosen suite and R's certificate, so a rewritten suite
//! list (a downgrade) breaks R's signature; `prk = HKDF-Extract(th2, ss)`. R signs th2
//! (ML-DSA-65, context "x0tta6bl4/hs/v1/responder") and MACs `th2 | sig` with a key from
//! prk; I checks both, then signs `th3 = SHA-256(label | th2 | I's certificate)` (context
//! ".../initiator") and MACs `th3 | sig`. The MACs confirm that both hold prk: a
//! signature alone proves identity, not that the peer derived the same keys. Session
//! keys, one per direction, are `HKDF-Expand(prk, "i2r"/"r2i" | th3)`.
//!
//! Denial of service: R keeps no state for a peer until that peer is authenticated.
//! Answering message 1 needs R's ephemeral X25519 secret no longer (it is used at once)
//! and prk, th2 and the time later: R seals those 72 bytes into the token with
//! ChaCha20-Poly1305 under a cookie key derived from a random master secret and the
//! current minute (keys rotate every minute; a token is good for [`TOKEN_LIFETIME_MS`]),
//! and I echoes it in message 3. A flood of bogus first messages therefore costs R CPU
//! (one encapsulation and one signature each, which the caller rate-limits per source)
//! and no memory at all. After a complete, authenticated message 3 R remembers its th2
//! until the token expires, so a replayed message 3 is refused; that table grows only
//! with authenticated handshakes and is capped.

use std::{collections::HashMap, sync::Mutex};

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use super::{
    cert::{Cert, CertError, Identity, MAX_CERT, TrustStore},
    keys::{self, KemSecret, KeyError, MLDSA65_SIGNATURE, MLKEM768_CIPHERTEXT, MLKEM768_PUBLIC},
    refusal::Refusal,
    session::{RekeyPolicy, Role, Session},
    spiffe::SpiffeId,
    wire::{Reader, WireError, put_var},
};

const MAGIC: [u8; 4] = *b"X06H";
const VERSION: u8 = 1;
const TYPE_INIT: u8 = 1;
const TYPE_RESPONSE: u8 = 2;
const TYPE_FINISH: u8 = 3;

/// X25519 + ML-KEM-768, ML-DSA-65, HKDF-SHA-256, ChaCha20-Poly1305: the one suite we run.
pub const SUITE_HYBRID_V1: u16 = 0x0001;
/// X25519 alone: known so that an offer of it is named a downgrade, never accepted.
pub const SUITE_CLASSIC: u16 = 0x00ff;
const MAX_SUITES: usize = 8;

/// How far a message-1 timestamp may be from the responder's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// How long a responder token is good for.
pub const TOKEN_LIFETIME_MS: u64 = 10_000;
const COOKIE_EPOCH_MS: u64 = 60_000;
/// The most completed handshakes a responder remembers (for replay) at once.
pub const MAX_REMEMBERED: usize = 65_536;
const TOKEN_PLAIN: usize = 8 + 32 + 32;
/// The token's size: epoch u64, nonce, the sealed time, th2 and prk, the tag.
pub const TOKEN_LEN: usize = 8 + 12 + TOKEN_PLAIN + 16;
/// The largest handshake message either side sends or accepts.
pub const MAX_MESSAGE: usize = 6
    + 2
    + 32
    + 2
    + MLKEM768_CIPHERTEXT
    + 2
    + MAX_CERT
    + 2
    + TOKEN_LEN
    + 2
    + MLDSA65_SIGNATURE
    + 32;

const CTX_RESPONDER: &[u8] = b"x0tta6bl4/hs/v1/responder";
const CTX_INITIATOR: &[u8] = b"x0tta6bl4/hs/v1/initiator";

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a well-formed handshake message.
    #[error("malformed: {0}")]
    Wire(#[from] WireError),
    /// A message of another type than this step expects (reordered or reflected).
    #[error("message type {got}, expected {want}")]
    Unexpected { got: u8, want: u8 },
    /// No suite we know was offered or chosen.
    #[error("unsupported suite {0:#06x}")]
    UnsupportedSuite(u16),
    /// A weaker suite than ours was offered alone or chosen.
    #[error("downgrade to suite {0:#06x} refused")]
    Downgrade(u16),
    /// Message 1's timestamp is too far from our clock (an old message replayed).
    #[error("timestamp {skew_ms} ms off")]
    Stale { skew_ms: u64 },
    /// The peer's certificate was refused.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// The peer presents our own identity: our message sent back to us.
    #[error("peer presents our own identity")]
    Reflected,
    /// The responder is not the node we dialled.
    #[error("peer is {got}, expected {want}")]
    WrongPeer { got: String, want: String },
    /// The transcript signature does not verify.
    #[error("transcript signature does not verify")]
    BadSignature,
    /// The key-confirmation MAC does not verify.
    #[error("key confirmation failed")]
    BadMac,
    /// The token is not one of ours, or has expired.
    #[error("invalid or expired token")]
    BadToken,
    /// This message 3 was already accepted.
    #[error("replayed handshake")]
    Replay,
    /// An X25519 share of low order (no contribution to the secret).
    #[error("non-contributory X25519 share")]
    WeakShare,
    /// Too many handshakes completed within a token lifetime.
    #[error("too many recent handshakes")]
    Busy,
    /// A local failure in the PQ library.
    #[error("{0}")]
    Key(#[from] KeyError),
}

impl HandshakeError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Wire(e) => e.refusal(),
            Self::Unexpected { .. } => Refusal::UnexpectedMessage,
            Self::UnsupportedSuite(_) => Refusal::UnsupportedSuite,
            Self::Downgrade(_) => Refusal::Downgrade,
            Self::Stale { .. } => Refusal::Stale,
            Self::Cert(e) => e.refusal(),
            Self::Reflected => Refusal::Reflected,
            Self::WrongPeer { .. } => Refusal::WrongPeer,
            Self::BadSignature => Refusal::BadSignature,
            Self::BadMac => Refusal::BadMac,
            Self::BadToken => Refusal::BadToken,
            Self::Replay => Refusal::Replay,
            Self::WeakShare => Refusal::Malformed,
            Self::Busy | Self::Key(_) => Refusal::Internal,
        }
    }
}

/// What both sides need: who we are and whom we trust.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub identity: &'a Identity,
    pub trust: &'a TrustStore,
    pub rekey: RekeyPolicy,
}

/// A completed handshake: the authenticated peer and the session keys.
#[derive(Debug)]
pub struct Established {
    pub peer: Cert,
    pub session: Session,
}

fn reader<'a>(b: &'a [u8], want: u8) -> Result<Reader<'a>, HandshakeError> {
    if b.len() > MAX_MESSAGE {
        return Err(WireError::Oversized {
            field: "message",
            len: b.len(),
            max: MAX_MESSAGE,
        }
        .into());
    }
    let mut r = Reader::new(b);
    r.header("handshake", &MAGIC, VERSION)?;
    let got = r.u8("type")?;
    if got != want {
        return Err(HandshakeError::Unexpected { got, want });
    }
    Ok(r)
}

fn header(kind: u8, cap: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out
}

fn combine(
    ss_kem: &[u8; 32],
    ss_x: &[u8; 32],
    ct: &[u8],
    x_r: &[u8; 32],
    x_i: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"x0tta6bl4/hybrid/x25519-mlkem768");
    h.update(ss_kem);
    h.update(ss_x);
    h.update(ct);
    h.update(x_r);
    h.update(x_i);
    Zeroizing::new(h.finalize().into())
}

/// The keys both sides derive from the hybrid secret and the transcript.
struct Schedule {
    prk: Zeroizing<[u8; 32]>,
}

impl Schedule {
    fn new(th2: &[u8; 32], ss: &[u8; 32]) -> Self {
        let (prk, _) = Hkdf::<Sha256>::extract(Some(th2), ss);
        Self {
            prk: Zeroizing::new(prk.into()),
        }
    }

    fn expand(&self, label: &[u8], th: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::from_prk(&self.prk[..]).expect("a 32-byte PRK");
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand_multi_info(&[b"x0tta6bl4/hs/v1 ", label, th], &mut out[..])
            .expect("32 bytes is a valid HKDF length");
        out
    }

    fn mac(&self, label: &[u8], th: &[u8; 32], sig: &[u8]) -> [u8; 32] {
        let key = self.expand(label, th);
        let mut m = <HmacSha256 as Mac>::new_from_slice(&key[..]).expect("HMAC takes any key");
        m.update(th);
        m.update(sig);
        m.finalize().into_bytes().into()
    }

    fn check_mac(
        &self,
        label: &[u8],
        th: &[u8; 32],
        sig: &[u8],
        got: &[u8],
    ) -> Result<(), HandshakeError> {
        let want = self.mac(label, th, sig);
        if bool::from(want.ct_eq(got)) {
            Ok(())
        } else {
            Err(HandshakeError::BadMac)
        }
    }

    fn session(&self, role: Role, th3: &[u8; 32], policy: RekeyPolicy, now_ms: u64) -> Session {
        let i2r = self.expand(b"i2r", th3);
        let r2i = self.expand(b"r2i", th3);
        match role {
            Role::Initiator => Session::new(i2r, r2i, policy, now_ms),
            Role::Responder => Session::new(r2i, i2r, policy, now_ms),
        }
    }
}

fn th2_of(msg1: &[u8], msg2_prefix: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"x0tta6bl4/hs/v1/th2")
        .chain_update((msg1.len() as u64).to_be_bytes())
        .chain_update(msg1)
        .chain_update(msg2_prefix)
        .finalize()
        .into()
}

fn th3_of(th2: &[u8; 32], initiator_cert: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"x0tta6bl4/hs/v1/th3")
        .chain_update(th2)
        .chain_update(initiator_cert)
        .finalize()
        .into()
}

fn check_peer(ctx: &Context<'_>, cert: &Cert, now_ms: u64) -> Result<(), HandshakeError> {
    ctx.trust.verify(cert, now_ms / 1000)?;
    if cert.id == ctx.identity.cert.id {
        return Err(HandshakeError::Reflected);
    }
    Ok(())
}

fn x25519(secret: &StaticSecret, public: [u8; 32]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    let shared = secret.diffie_hellman(&XPublic::from(public));
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakShare);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The initiator between sending message 1 and receiving message 2.
#[cfg_attr(test, derive(Clone))]
pub struct Initiator {
    x: StaticSecret,
    kem: KemSecret,
    msg1: Vec<u8>,
    expected: Option<SpiffeId>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake to `expected` (or to any node of our trust domain): the
    /// initiator and message 1.
    pub fn start(
        rng: &mut impl CryptoRng,
        expected: Option<SpiffeId>,
        now_ms: u64,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::start_offering(rng, expected, now_ms, &[SUITE_HYBRID_V1])
    }

    fn start_offering(
        rng: &mut impl CryptoRng,
        expected: Option<SpiffeId>,
        now_ms: u64,
        suites: &[u16],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        let x = StaticSecret::from(*seed);
        let (kem_pk, kem) = keys::kem_keypair()?;
        let mut msg1 = header(
            TYPE_INIT,
            1 + 2 * suites.len() + 8 + 32 + 2 + MLKEM768_PUBLIC + 6,
        );
        msg1.push(u8::try_from(suites.len()).expect("a handful of suites"));
        for s in suites {
            msg1.extend_from_slice(&s.to_be_bytes());
        }
        msg1.extend_from_slice(&now_ms.to_be_bytes());
        msg1.extend_from_slice(XPublic::from(&x).as_bytes());
        put_var(&mut msg1, &kem_pk);
        Ok((
            Self {
                x,
                kem,
                msg1: msg1.clone(),
                expected,
            },
            msg1,
        ))
    }

    /// Takes message 2: the session and message 3, or why the responder was refused.
    pub fn finish(
        self,
        ctx: &Context<'_>,
        msg2: &[u8],
        now_ms: u64,
    ) -> Result<(Established, Vec<u8>), HandshakeError> {
        let mut r = reader(msg2, TYPE_RESPONSE)?;
        let suite = r.u16("suite")?;
        match suite {
            SUITE_HYBRID_V1 => {}
            SUITE_CLASSIC => return Err(HandshakeError::Downgrade(suite)),
            other => return Err(HandshakeError::UnsupportedSuite(other)),
        }
        let x_r: [u8; 32] = r.array("x25519 share")?;
        let ct = r.exact("ml-kem ciphertext", MLKEM768_CIPHERTEXT)?;
        let cert_bytes = r.var("certificate", MAX_CERT)?;
        let prefix = r.consumed();
        let token = r.exact("token", TOKEN_LEN)?.to_vec();
        let sig = r.exact("signature", MLDSA65_SIGNATURE)?;
        let mac = r.take(32, "mac")?;
        r.finish()?;

        let cert = Cert::decode(cert_bytes)?;
        check_peer(ctx, &cert, now_ms)?;
        if let Some(want) = &self.expected
            && *want != cert.id
        {
            return Err(HandshakeError::WrongPeer {
                got: cert.id.to_string(),
                want: want.to_string(),
            });
        }
        let th2 = th2_of(&self.msg1, prefix);
        if !cert.key.verify(CTX_RESPONDER, &th2, sig) {
            return Err(HandshakeError::BadSignature);
        }
        let ss_x = x25519(&self.x, x_r)?;
        let ss_kem = self.kem.decapsulate(ct)?;
        let x_i = XPublic::from(&self.x).to_bytes();
        let ss = combine(&ss_kem, &ss_x, ct, &x_r, &x_i);
        let sched = Schedule::new(&th2, &ss);
        sched.check_mac(b"r confirm", &th2, sig, mac)?;

        let own = ctx.identity.cert.encode();
        let th3 = th3_of(&th2, own);
        let my_sig = ctx.identity.key.sign(CTX_INITIATOR, &th3)?;
        let mut msg3 = header(
            TYPE_FINISH,
            6 + 2 + TOKEN_LEN + 2 + own.len() + 2 + MLDSA65_SIGNATURE + 32,
        );
        put_var(&mut msg3, &token);
        put_var(&mut msg3, own);
        put_var(&mut msg3, &my_sig);
        msg3.extend_from_slice(&sched.mac(b"i confirm", &th3, &my_sig));
        let session = sched.session(Role::Initiator, &th3, ctx.rekey, now_ms);
        Ok((
            Established {
                peer: cert,
                session,
            },
            msg3,
        ))
    }
}

/// The responder: a master secret for its cookie keys and the th2 of recently completed
/// handshakes. Shared between connections (`&self` throughout).
pub struct Responder {
    master: Zeroizing<[u8; 32]>,
    /// th2 -> when its token expires (ms); only authenticated handshakes land here.
    completed: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("remembered", &self.state_size())
            .finish_non_exhaustive()
    }
}

impl Responder {
    pub fn new(rng: &mut impl CryptoRng) -> Self {
        let mut master = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut master[..]);
        Self {
            master,
            completed: Mutex::new(HashMap::new()),
        }
    }

    /// How many handshakes the responder remembers: the only per-peer state it has.
    pub fn state_size(&self) -> usize {
        self.table().len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], u64>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.completed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cookie(&self, epoch: u64) -> ChaCha20Poly1305 {
        let hk = Hkdf::<Sha256>::new(None, &self.master[..]);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand_multi_info(&[b"x0tta6bl4/cookie ", &epoch.to_be_bytes()], &mut key[..])
            .expect("32 bytes is a valid HKDF length");
        ChaCha20Poly1305::new((&*key).into())
    }

    /// Answers message 1 with message 2. Keeps nothing.
    pub fn respond(
        &self,
        ctx: &Context<'_>,
        msg1: &[u8],
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, HandshakeError> {
        let mut r = reader(msg1, TYPE_INIT)?;
        let n = usize::from(r.u8("suite count")?);
        if n == 0 || n > MAX_SUITES {
            return Err(WireError::Invalid("suite count").into());
        }
        let mut offered = Vec::with_capacity(n);
        for _ in 0..n {
            offered.push(r.u16("suite")?);
        }
        let ts = r.u64("timestamp")?;
        let x_i: [u8; 32] = r.array("x25519 share")?;
        let kem_pk = r.exact("ml-kem key", MLKEM768_PUBLIC)?;
        r.finish()?;
        if !offered.contains(&SUITE_HYBRID_V1) {
            return Err(match offered.iter().find(|&&s| s == SUITE_CLASSIC) {
                Some(&s) => HandshakeError::Downgrade(s),
                None => HandshakeError::UnsupportedSuite(offered[0]),
            });
        }
        let skew_ms = now_ms.abs_diff(ts);
        if skew_ms > MAX_SKEW_MS {
            return Err(HandshakeError::Stale { skew_ms });
        }

        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        let x = StaticSecret::from(*seed);
        let x_r = XPublic::from(&x).to_bytes();
        let ss_x = x25519(&x, x_i)?;
        // The length is checked; liboqs refusing the key means it is not a valid one.
        let (ct, ss_kem) =
            keys::kem_encapsulate(kem_pk).map_err(|_| WireError::Invalid("ml-kem key"))?;
        let ss = combine(&ss_kem, &ss_x, &ct, &x_r, &x_i);

        let own = ctx.identity.cert.encode();
        let mut msg2 = header(
            TYPE_RESPONSE,
            MAX_MESSAGE.min(
                6 + 2
                    + 32
                    + 2
                    + ct.len()
                    + 2
                    + own.len()
                    + 2
                    + TOKEN_LEN
                    + 2
                    + MLDSA65_SIGNATURE
                    + 32,
            ),
        );
        msg2.extend_from_slice(&SUITE_HYBRID_V1.to_be_bytes());
        msg2.extend_from_slice(&x_r);
        put_var(&mut msg2, &ct);
        put_var(&mut msg2, own);
        let th2 = th2_of(msg1, &msg2);
        let sched = Schedule::new(&th2, &ss);

        let mut plain = Zeroizing::new([0u8; TOKEN_PLAIN]);
        plain[..8].copy_from_slice(&now_ms.to_be_bytes());
        plain[8..40].copy_from_slice(&th2);
        plain[40..].copy_from_slice(&sched.prk[..]);
        let epoch = now_ms / COOKIE_EPOCH_MS;
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let sealed = self
            .cookie(epoch)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain[..],
                    aad: &epoch.to_be_bytes(),
                },
            )
            .map_err(|_| KeyError::Oqs("token sealing failed".into()))?;
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.extend_from_slice(&epoch.to_be_bytes());
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        put_var(&mut msg2, &token);

        let sig = ctx.identity.key.sign(CTX_RESPONDER, &th2)?;
        put_var(&mut msg2, &sig);
        msg2.extend_from_slice(&sched.mac(b"r confirm", &th2, &sig));
        Ok(msg2)
    }

    /// Takes message 3: the session with the now authenticated initiator.
    pub fn accept(
        &self,
        ctx: &Context<'_>,
        msg3: &[u8],
        now_ms: u64,
    ) -> Result<Established, HandshakeError> {
        let mut r = reader(msg3, TYPE_FINISH)?;
        let token = r.exact("token", TOKEN_LEN)?;
        let cert_bytes = r.var("certificate", MAX_CERT)?;
        let sig = r.exact("signature", MLDSA65_SIGNATURE)?;
        let mac = r.take(32, "mac")?;
        r.finish()?;

        let epoch = u64::from_be_bytes(token[..8].try_into().expect("8 bytes"));
        let current = now_ms / COOKIE_EPOCH_MS;
        if epoch != current && epoch.checked_add(1) != Some(current) {
            return Err(HandshakeError::BadToken);
        }
        let plain = Zeroizing::new(
            self.cookie(epoch)
                .decrypt(
                    Nonce::from_slice(&token[8..20]),
                    Payload {
                        msg: &token[20..],
                        aad: &token[..8],
                    },
                )
                .map_err(|_| HandshakeError::BadToken)?,
        );
        let issued = u64::from_be_bytes(plain[..8].try_into().expect("8 bytes"));
        let expires = issued.saturating_add(TOKEN_LIFETIME_MS);
        if now_ms > expires || issued > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(HandshakeError::BadToken);
        }
        let th2: [u8; 32] = plain[8..40].try_into().expect("32 bytes");
        let mut prk = Zeroizing::new([0u8; 32]);
        prk.copy_from_slice(&plain[40..72]);
        let sched = Schedule { prk };
        if self.table().contains_key(&th2) {
            return Err(HandshakeError::Replay);
        }

        let cert = Cert::decode(cert_bytes)?;
        check_peer(ctx, &cert, now_ms)?;
        let th3 = th3_of(&th2, cert_bytes);
        if !cert.key.verify(CTX_INITIATOR, &th3, sig) {
            return Err(HandshakeError::BadSignature);
        }
        sched.check_mac(b"i confirm", &th3, sig, mac)?;

        let mut table = self.table();
        table.retain(|_, &mut exp| exp >= now_ms);
        if table.len() >= MAX_REMEMBERED {
            return Err(HandshakeError::Busy);
        }
        // Checked again under the lock: two connections may race with the same message.
        if table.insert(th2, expires).is_some() {
            return Err(HandshakeError::Replay);
        }
        drop(table);
        let session = sched.session(Role::Responder, &th3, ctx.rekey, now_ms);
        Ok(Established {
            peer: cert,
            session,
        })
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
