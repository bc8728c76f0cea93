//! Attestation keys: ECDSA P-256 (SHA-256, ASN.1 signatures) or Ed25519, as cosign makes them.
//!
//! Private keys are read from cosign's encrypted format (`cosign generate-key-pair`: PEM
//! `ENCRYPTED SIGSTORE PRIVATE KEY`, a JSON box of scrypt + NaCl secretbox around PKCS#8) or from
//! plain PKCS#8 PEM; `sealgate attest keygen` writes cosign's format, so either tool's keys work
//! with the other. Public keys are PEM `PUBLIC KEY` (SubjectPublicKeyInfo).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AttestError;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";
/// cosign's PEM labels for its encrypted private keys (current, then before cosign 2).
const COSIGN_PEM_TAGS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl Algorithm {
    /// As `--algorithm` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs attestations. Its PKCS#8 form is wiped on drop; `Debug` shows only
/// the key id.
pub struct SigningKey {
    pair: Pair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.verifying_key().key_id())
    }
}

impl SigningKey {
    /// A new key.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, AttestError> {
        let err = |_| AttestError::Key("key generation failed".into());
        let pkcs8 = match alg {
            Algorithm::EcdsaP256 => {
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                    .and_then(|k| k.to_pkcs8v1())
                    .map_err(err)?
            }
            Algorithm::Ed25519 => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map_err(err)?,
        };
        SigningKey::from_pkcs8(Zeroizing::new(pkcs8.as_ref().to_vec()))
    }

    /// A key from PKCS#8 DER (P-256 or Ed25519).
    pub fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<SigningKey, AttestError> {
        let pair = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
        {
            Pair::Ecdsa(k)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8) {
            Pair::Ed25519(k)
        } else {
            return Err(AttestError::Key(
                "not an ECDSA P-256 or Ed25519 private key (PKCS#8); cosign's default keys are P-256".into(),
            ));
        };
        Ok(SigningKey { pair, pkcs8 })
    }

    /// A key from PEM: cosign's encrypted format (opened with `password`, which may be empty
    /// as cosign allows), or plain PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(text: &[u8], password: &[u8]) -> Result<SigningKey, AttestError> {
        let block = pem::parse(text)
            .map_err(|e| AttestError::Key(format!("not a PEM private key ({e})")))?;
        if COSIGN_PEM_TAGS.contains(&block.tag()) {
            let pkcs8 = cosign_decrypt(block.contents(), password)?;
            return SigningKey::from_pkcs8(pkcs8);
        }
        match block.tag() {
            "PRIVATE KEY" => SigningKey::from_pkcs8(Zeroizing::new(block.into_contents())),
            other => Err(AttestError::Key(format!(
                "a PEM {other:?} block is not a key sealgate signs with: use `cosign generate-key-pair` or `sealgate attest keygen` (P-256 or Ed25519)"
            ))),
        }
    }

    /// The key in cosign's encrypted PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`), for `cosign
    /// sign-blob --key` too.
    pub fn to_cosign_pem(&self, password: &[u8]) -> Result<Zeroizing<String>, AttestError> {
        let sealed = cosign_encrypt(&self.pkcs8, password)?;
        Ok(Zeroizing::new(pem::encode(&pem::Pem::new(
            COSIGN_PEM_TAGS[0],
            sealed,
        ))))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Ecdsa(_) => Algorithm::EcdsaP256,
            Pair::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let spki = match &self.pair {
            Pair::Ecdsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
            Pair::Ed25519(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        }
        .expect("a key pair's public key encodes");
        VerifyingKey::from_spki(&spki).expect("a key pair's public key parses")
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AttestError> {
        match &self.pair {
            Pair::Ecdsa(k) => k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| AttestError::Sign("ECDSA signing failed".into())),
            Pair::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// A public key attestations are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    spki: Vec<u8>,
    /// The key itself: the uncompressed point (P-256) or the 32 bytes (Ed25519).
    raw: Vec<u8>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VerifyingKey({} {})",
            self.algorithm.as_str(),
            self.key_id()
        )
    }
}

impl VerifyingKey {
    /// A key from SubjectPublicKeyInfo DER.
    pub fn from_spki(der: &[u8]) -> Result<VerifyingKey, AttestError> {
        use x509_parser::prelude::FromDer;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| AttestError::Key(format!("not a public key ({e})")))?;
        if !rest.is_empty() {
            return Err(AttestError::Key(
                "trailing bytes after the public key".into(),
            ));
        }
        let oid = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let algorithm = match (oid.as_str(), curve.as_deref()) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => Algorithm::EcdsaP256,
            (OID_ED25519, _) => Algorithm::Ed25519,
            _ => {
                return Err(AttestError::Key(format!(
                    "a public key of type {oid} is not one sealgate verifies with (ECDSA P-256 or Ed25519)"
                )));
            }
        };
        Ok(VerifyingKey {
            algorithm,
            spki: der.to_vec(),
            raw: spki.subject_public_key.data.to_vec(),
        })
    }

    /// A key from PEM `PUBLIC KEY` (what `cosign generate-key-pair` writes to `cosign.pub`).
    pub fn from_pem(text: &[u8]) -> Result<VerifyingKey, AttestError> {
        let block = pem::parse(text)
            .map_err(|e| AttestError::Key(format!("not a PEM public key ({e})")))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(AttestError::Key(format!(
                "expected a PEM PUBLIC KEY block, found {:?}",
                block.tag()
            )));
        }
        VerifyingKey::from_spki(block.contents())
    }

    /// The key as PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki.clone()))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key's id: SHA-256 of its SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> String {
        crate::manifest::sha256_hex(&self.spki)
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            Algorithm::Ed25519 => &signature::ED25519,
        };
        signature::UnparsedPublicKey::new(alg, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

/// cosign's (go-tuf's `encrypted`) box around a private key.
#[derive(Serialize, Deserialize)]
struct CosignBox {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u32,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The scrypt work cosign uses today (N = 2^16; before, 2^15), r = 8, p = 1. Other parameters
/// are refused: a key file must not make its reader do unbounded work.
const SCRYPT_LOG_N: [u8; 2] = [16, 15];

fn secretbox_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, AttestError> {
    let params = scrypt::Params::new(log_n, 8, 1, 32)
        .map_err(|e| AttestError::Key(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, &mut key[..])
        .map_err(|e| AttestError::Key(format!("scrypt: {e}")))?;
    Ok(key)
}

fn cosign_decrypt(json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, AttestError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let bad = |what: &str| AttestError::Key(format!("not a cosign private key: {what}"));
    let b: CosignBox =
        serde_json::from_slice(json).map_err(|_| bad("its content is not cosign's JSON box"))?;
    if b.kdf.name != "scrypt" || b.cipher.name != "nacl/secretbox" {
        return Err(bad("only scrypt with nacl/secretbox is supported"));
    }
    let log_n = SCRYPT_LOG_N
        .into_iter()
        .find(|l| 1u32 << l == b.kdf.params.n)
        .filter(|_| b.kdf.params.r == 8 && b.kdf.params.p == 1)
        .ok_or_else(|| bad("unexpected scrypt parameters"))?;
    let salt = B64
        .decode(&b.kdf.salt)
        .map_err(|_| bad("its salt is not base64"))?;
    let nonce = B64
        .decode(&b.cipher.nonce)
        .map_err(|_| bad("its nonce is not base64"))?;
    let ct = B64
        .decode(&b.ciphertext)
        .map_err(|_| bad("its ciphertext is not base64"))?;
    if nonce.len() != 24 {
        return Err(bad("its nonce is not 24 bytes"));
    }
    let key = secretbox_key(password, &salt, log_n)?;
    let cipher =
        crypto_secretbox::XSalsa20Poly1305::new(crypto_secretbox::Key::from_slice(&key[..]));
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), &ct[..])
        .map(Zeroizing::new)
        .map_err(|_| {
            AttestError::Key(
                "cannot open the private key: wrong password (COSIGN_PASSWORD), or the file was changed".into(),
            )
        })
}

fn cosign_encrypt(pkcs8: &[u8], password: &[u8]) -> Result<Vec<u8>, AttestError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| AttestError::Key("the RNG failed".into()))?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| AttestError::Key("the RNG failed".into()))?;
    let key = secretbox_key(password, &salt, SCRYPT_LOG_N[0])?;
    let cipher =
        crypto_secretbox::XSalsa20Poly1305::new(crypto_secretbox::Key::from_slice(&key[..]));
    let ct = cipher
        .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), pkcs8)
        .map_err(|_| AttestError::Key("encrypting the private key failed".into()))?;
    let b = CosignBox {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N[0],
                r: 8,
                p: 1,
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(ct),
    };
    Ok(serde_json::to_vec(&b).expect("serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key written by `cosign generate-key-pair` with an empty password (sigstore-rs's test
    /// data, tests/data/keys/cosign_generated_encrypted_empty_private.key).
    const COSIGN_EMPTY_PASSWORD: &str = include_str!("testdata/cosign-empty-password.key");

    #[test]
    fn a_key_cosign_wrote_opens_and_signs() {
        let key = SigningKey::from_pem(COSIGN_EMPTY_PASSWORD.as_bytes(), b"").unwrap();
        assert_eq!(key.algorithm(), Algorithm::EcdsaP256);
        let sig = key.sign(b"m").unwrap();
        assert!(key.verifying_key().verify(b"m", &sig));
        assert!(!key.verifying_key().verify(b"n", &sig));
        let e = SigningKey::from_pem(COSIGN_EMPTY_PASSWORD.as_bytes(), b"wrong").unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
    }

    #[test]
    fn keys_round_trip_through_cosigns_format_and_pem() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let key = SigningKey::generate(alg).unwrap();
            let pem = key.to_cosign_pem(b"hunter2").unwrap();
            assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
            let back = SigningKey::from_pem(pem.as_bytes(), b"hunter2").unwrap();
            assert_eq!(back.verifying_key(), key.verifying_key());
            let public = VerifyingKey::from_pem(key.verifying_key().to_pem().as_bytes()).unwrap();
            assert_eq!(public, key.verifying_key());
            assert!(public.verify(b"x", &back.sign(b"x").unwrap()));
            assert!(!format!("{key:?}").contains("PRIVATE"));
        }
    }

    #[test]
    fn other_keys_are_refused_with_a_reason() {
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let e = SigningKey::from_pem(rsa.as_bytes(), b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a key sealgate signs with"), "{e}");
        let e = VerifyingKey::from_pem(b"not pem").unwrap_err().to_string();
        assert!(e.contains("not a PEM public key"), "{e}");
    }
}
