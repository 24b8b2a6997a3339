//! ML-DSA-65 signing keys and ML-KEM-768 ephemeral keys, over liboqs. Secret bytes live in
//! zeroizing buffers from the moment liboqs hands them over.

use std::{fmt, sync::OnceLock};

use oqs::{kem, sig};
use zeroize::Zeroizing;

use super::refusal::Refusal;

/// ML-DSA-65 verify key (FIPS 204).
pub const MLDSA65_PUBLIC: usize = 1952;
/// ML-DSA-65 secret key as liboqs stores it.
pub const MLDSA65_SECRET: usize = 4032;
/// ML-DSA-65 signature.
pub const MLDSA65_SIGNATURE: usize = 3309;
/// ML-KEM-768 encapsulation key (FIPS 203).
pub const MLKEM768_PUBLIC: usize = 1184;
/// ML-KEM-768 ciphertext.
pub const MLKEM768_CIPHERTEXT: usize = 1088;
/// ML-KEM-768 shared secret.
pub const MLKEM768_SHARED: usize = 32;

/// A failure inside the PQ library (never the peer's input: lengths are checked first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// liboqs refused an operation it should not refuse.
    #[error("liboqs: {0}")]
    Oqs(String),
    /// Key bytes of the wrong length.
    #[error("{what} key is {len} bytes, must be {want}")]
    Length {
        what: &'static str,
        len: usize,
        want: usize,
    },
}

impl KeyError {
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Oqs(_) => Refusal::Internal,
            Self::Length { .. } => Refusal::Malformed,
        }
    }
}

fn oqs_err(e: oqs::Error) -> KeyError {
    KeyError::Oqs(e.to_string())
}

fn mldsa() -> &'static sig::Sig {
    static SIG: OnceLock<sig::Sig> = OnceLock::new();
    SIG.get_or_init(|| {
        oqs::init();
        sig::Sig::new(sig::Algorithm::MlDsa65).expect("liboqs built with ML-DSA-65")
    })
}

fn mlkem() -> &'static kem::Kem {
    static KEM: OnceLock<kem::Kem> = OnceLock::new();
    KEM.get_or_init(|| {
        oqs::init();
        kem::Kem::new(kem::Algorithm::MlKem768).expect("liboqs built with ML-KEM-768")
    })
}

/// The sizes liboqs reports, to check our constants against.
pub fn oqs_sizes() -> [(&'static str, usize, usize); 6] {
    let (s, k) = (mldsa(), mlkem());
    [
        (
            "ML-DSA-65 public key",
            s.length_public_key(),
            MLDSA65_PUBLIC,
        ),
        (
            "ML-DSA-65 secret key",
            s.length_secret_key(),
            MLDSA65_SECRET,
        ),
        (
            "ML-DSA-65 signature",
            s.length_signature(),
            MLDSA65_SIGNATURE,
        ),
        (
            "ML-KEM-768 public key",
            k.length_public_key(),
            MLKEM768_PUBLIC,
        ),
        (
            "ML-KEM-768 ciphertext",
            k.length_ciphertext(),
            MLKEM768_CIPHERTEXT,
        ),
        (
            "ML-KEM-768 shared secret",
            k.length_shared_secret(),
            MLKEM768_SHARED,
        ),
    ]
}

/// An ML-DSA-65 verify key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifyKey(Box<[u8; MLDSA65_PUBLIC]>);

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({:02x?}..)", &self.0[..8])
    }
}

impl VerifyKey {
    pub fn from_bytes(b: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; MLDSA65_PUBLIC] = b.try_into().map_err(|_| KeyError::Length {
            what: "ML-DSA-65 verify",
            len: b.len(),
            want: MLDSA65_PUBLIC,
        })?;
        Ok(Self(Box::new(arr)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }

    /// Whether `signature` is this key's over `msg` under the context string `ctx`
    /// (domain separation: a signature made for one purpose never verifies for another).
    pub fn verify(&self, ctx: &[u8], msg: &[u8], signature: &[u8]) -> bool {
        let s = mldsa();
        match (
            s.signature_from_bytes(signature),
            s.public_key_from_bytes(&self.0[..]),
        ) {
            (Some(sg), Some(pk)) if signature.len() == MLDSA65_SIGNATURE => {
                s.verify_with_ctx_str(msg, sg, ctx, pk).is_ok()
            }
            _ => false,
        }
    }
}

/// An ML-DSA-65 key pair. Never printed: `Debug` shows the verify key only.
pub struct SigningKey {
    secret: Zeroizing<Vec<u8>>,
    public: VerifyKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey {{ public: {:?}, secret: <redacted> }}",
            self.public
        )
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let (pk, sk) = mldsa().keypair().map_err(oqs_err)?;
        let secret = Zeroizing::new(sk.into_vec());
        Ok(Self {
            secret,
            public: VerifyKey::from_bytes(pk.as_ref())?,
        })
    }

    /// Rebuilds a key pair from its stored halves.
    pub fn from_parts(secret: Zeroizing<Vec<u8>>, public: &[u8]) -> Result<Self, KeyError> {
        if secret.len() != MLDSA65_SECRET {
            return Err(KeyError::Length {
                what: "ML-DSA-65 secret",
                len: secret.len(),
                want: MLDSA65_SECRET,
            });
        }
        Ok(Self {
            secret,
            public: VerifyKey::from_bytes(public)?,
        })
    }

    pub fn public(&self) -> &VerifyKey {
        &self.public
    }

    /// The secret half, for writing the key file only.
    pub fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }

    pub fn sign(&self, ctx: &[u8], msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let s = mldsa();
        let sk = s
            .secret_key_from_bytes(&self.secret)
            .ok_or(KeyError::Length {
                what: "ML-DSA-65 secret",
                len: self.secret.len(),
                want: MLDSA65_SECRET,
            })?;
        let signature = s.sign_with_ctx_str(msg, ctx, sk).map_err(oqs_err)?;
        Ok(signature.into_vec())
    }
}

const KEY_MAGIC: [u8; 4] = *b"X06K";
const KEY_VERSION: u8 = 1;

impl SigningKey {
    /// The key file: `"X06K" | version 1 | secret (u16 length, 4032) | public (u16 length,
    /// 1952)`, in a zeroizing buffer.
    pub fn to_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(5 + 4 + MLDSA65_SECRET + MLDSA65_PUBLIC));
        out.extend_from_slice(&KEY_MAGIC);
        out.push(KEY_VERSION);
        super::wire::put_var(&mut out, &self.secret);
        super::wire::put_var(&mut out, self.public.as_bytes());
        out
    }

    pub fn from_file_bytes(b: &[u8]) -> Result<Self, super::wire::WireError> {
        let mut r = super::wire::Reader::new(b);
        r.header("key file", &KEY_MAGIC, KEY_VERSION)?;
        let secret = Zeroizing::new(r.exact("secret key", MLDSA65_SECRET)?.to_vec());
        let public = r.exact("public key", MLDSA65_PUBLIC)?;
        r.finish()?;
        Self::from_parts(secret, public).map_err(|_| super::wire::WireError::Invalid("key"))
    }
}

/// An ephemeral ML-KEM-768 decapsulation key, dropped (and wiped) after one use.
#[cfg_attr(test, derive(Clone))]
pub struct KemSecret(Zeroizing<Vec<u8>>);

/// Generates an ephemeral ML-KEM-768 key pair: (encapsulation key, decapsulation key).
pub fn kem_keypair() -> Result<(Vec<u8>, KemSecret), KeyError> {
    let (pk, sk) = mlkem().keypair().map_err(oqs_err)?;
    Ok((pk.into_vec(), KemSecret(Zeroizing::new(sk.into_vec()))))
}

/// Encapsulates to `public`: (ciphertext, shared secret). `None` if `public` is not an
/// ML-KEM-768 key.
pub fn kem_encapsulate(public: &[u8]) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), KeyError> {
    let k = mlkem();
    let pk = k.public_key_from_bytes(public).ok_or(KeyError::Length {
        what: "ML-KEM-768 encapsulation",
        len: public.len(),
        want: MLKEM768_PUBLIC,
    })?;
    let (ct, ss) = k.encapsulate(pk).map_err(oqs_err)?;
    Ok((ct.into_vec(), shared(ss)))
}

impl KemSecret {
    /// Decapsulates; ML-KEM's implicit rejection turns a tampered ciphertext into an
    /// unrelated secret, which the key confirmation then refuses.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let k = mlkem();
        let ct = k
            .ciphertext_from_bytes(ciphertext)
            .ok_or(KeyError::Length {
                what: "ML-KEM-768 ciphertext",
                len: ciphertext.len(),
                want: MLKEM768_CIPHERTEXT,
            })?;
        let sk = k.secret_key_from_bytes(&self.0).ok_or(KeyError::Length {
            what: "ML-KEM-768 decapsulation",
            len: self.0.len(),
            want: k.length_secret_key(),
        })?;
        k.decapsulate(sk, ct).map(shared).map_err(oqs_err)
    }
}

fn shared(ss: kem::SharedSecret) -> Zeroizing<[u8; 32]> {
    let v = Zeroizing::new(ss.into_vec());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&v[..32]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_liboqs() {
        for (what, oqs, ours) in oqs_sizes() {
            assert_eq!(oqs, ours, "{what}: liboqs says {oqs}, we say {ours}");
        }
    }

    #[test]
    fn sign_verify_with_context() {
        let k = SigningKey::generate().expect("key pair");
        let s = k.sign(b"ctx-a", b"message").expect("signs");
        assert_eq!(s.len(), MLDSA65_SIGNATURE, "signature size");
        assert!(
            k.public().verify(b"ctx-a", b"message", &s),
            "own signature verifies"
        );
        assert!(
            !k.public().verify(b"ctx-b", b"message", &s),
            "other context refused"
        );
        assert!(
            !k.public().verify(b"ctx-a", b"messagE", &s),
            "other message refused"
        );
        assert!(
            !k.public().verify(b"ctx-a", b"message", &s[..100]),
            "short signature refused"
        );
        let other = SigningKey::generate().expect("key pair");
        assert!(
            !other.public().verify(b"ctx-a", b"message", &s),
            "other key refused"
        );
        assert!(
            format!("{k:?}").contains("redacted"),
            "Debug redacts the secret"
        );
    }

    #[test]
    fn key_file_round_trip() {
        let k = SigningKey::generate().expect("key pair");
        let bytes = k.to_file_bytes();
        let back = SigningKey::from_file_bytes(&bytes).expect("parses");
        assert_eq!(back.public(), k.public(), "same public half");
        assert_eq!(back.secret_bytes(), k.secret_bytes(), "same secret half");
        for n in [0, 4, 5, 100, bytes.len() - 1] {
            assert!(
                SigningKey::from_file_bytes(&bytes[..n]).is_err(),
                "{n}-byte prefix accepted"
            );
        }
    }

    #[test]
    fn kem_round_trip() {
        let (pk, sk) = kem_keypair().expect("key pair");
        assert_eq!(pk.len(), MLKEM768_PUBLIC, "encapsulation key size");
        let (ct, ss) = kem_encapsulate(&pk).expect("encapsulates");
        assert_eq!(ct.len(), MLKEM768_CIPHERTEXT, "ciphertext size");
        assert_eq!(
            *sk.decapsulate(&ct).expect("decapsulates"),
            *ss,
            "same secret"
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_ne!(
            *sk.decapsulate(&bad).expect("implicit rejection"),
            *ss,
            "tampered ct"
        );
        assert!(kem_encapsulate(&pk[1..]).is_err(), "short key refused");
    }
}
