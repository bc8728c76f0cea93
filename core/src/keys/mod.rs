//! Sealing keys (DESIGN §5): an RSA key with its self-signed certificate (the kubeseal format) and
//! an X25519 identity (the age format), identified by the SHA-256 of the RSA public key.
//!
//! - [`cert`]: certificate generation and parsing; the age recipient travels inside the
//!   certificate as a URI SAN, so one `cert.pem` serves both formats and stays kubeseal-compatible.
//! - [`ring`]: the [`KeyRing`] that opens values with the right key.
//! - [`secret`]: keys as Kubernetes Secrets (ours and Bitnami's), and PEM import.
//! - [`store`]: the local key store directory.

pub mod cert;
pub mod ring;
pub mod secret;
pub mod store;

use std::fmt;

use age::x25519;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use time::OffsetDateTime;

use crate::envelope::pq;
use zeroize::Zeroizing;

pub use ring::KeyRing;

/// SHA-256 of the RSA public key (SubjectPublicKeyInfo DER).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// The id of the key whose SubjectPublicKeyInfo (DER) is given.
    pub fn of_spki(spki_der: &[u8]) -> KeyId {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        KeyId(id)
    }

    /// The first 16 hex digits: what `keys list` shows and what Secret names use.
    pub fn short(&self) -> String {
        self.to_string()[..16].to_string()
    }

    /// Whether `s` names this key: its full hex id or a prefix of at least 8 digits.
    pub fn matches(&self, s: &str) -> bool {
        if s.len() < 8 || s.len() > 64 {
            return false;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let nibbles = self
            .0
            .iter()
            .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        s.bytes()
            .zip(nibbles)
            .all(|(c, h)| c.to_ascii_lowercase() == h)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

/// Text that is not a key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 64 hex digits")]
pub struct NotAKeyId;

impl std::str::FromStr for KeyId {
    type Err = NotAKeyId;
    fn from_str(s: &str) -> Result<Self, NotAKeyId> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotAKeyId);
        }
        let mut id = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            // ASCII hex digits, checked above: each pair is a byte.
            let hex = std::str::from_utf8(chunk).map_err(|_| NotAKeyId)?;
            id[i] = u8::from_str_radix(hex, 16).map_err(|_| NotAKeyId)?;
        }
        Ok(KeyId(id))
    }
}

/// Errors about keys and certificates. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generating a key or its certificate failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// A certificate could not be read, or is not an RSA certificate.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// A private key could not be read, or is not RSA.
    #[error("invalid private key: {0}")]
    PrivateKey(String),
    /// The key and the certificate are not a pair.
    #[error("the private key does not belong to the certificate (their public keys differ)")]
    Mismatch,
    /// A key Secret is malformed (the message names the field).
    #[error("{0}")]
    Secret(String),
    /// The local key store could not be read or written.
    #[error("key store {path}: {problem}")]
    Store {
        /// The file or directory.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The public half of a sealing key: what `seal` needs.
#[derive(Clone)]
pub struct PublicKey {
    id: KeyId,
    rsa: PublicEncryptingKey,
    cert_der: Vec<u8>,
    age: Option<x25519::Recipient>,
    pq: Option<pq::Recipient>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl PublicKey {
    /// Read a certificate: its RSA public key, validity and (if present) the age recipient.
    pub fn from_cert_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let info = cert::parse(der)?;
        let rsa = PublicEncryptingKey::from_der(&info.spki_der).map_err(|_| {
            KeyError::Certificate("its public key is not an RSA key usable for RSA-OAEP".into())
        })?;
        Ok(PublicKey {
            id: KeyId::of_spki(&info.spki_der),
            rsa,
            cert_der: der.to_vec(),
            age: info.age_recipient,
            pq: info.pq_recipient,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// Every certificate in a PEM bundle, in order.
    pub fn from_pem_bundle(pem_text: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
        let blocks = pem::parse_many(pem_text)
            .map_err(|e| KeyError::Certificate(format!("not PEM: {e}")))?;
        let certs: Vec<_> = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| PublicKey::from_cert_der(b.contents()))
            .collect::<Result<_, _>>()?;
        if certs.is_empty() {
            return Err(KeyError::Certificate(
                "no PEM CERTIFICATE block found".into(),
            ));
        }
        Ok(certs)
    }

    /// The key's id (a hash of its SubjectPublicKeyInfo).
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The RSA-OAEP encryption key, for the kubeseal format.
    pub fn oaep(&self) -> OaepPublicEncryptingKey {
        // Cannot fail for a key that parsed as RSA.
        OaepPublicEncryptingKey::new(self.rsa.clone()).expect("RSA public key")
    }

    /// The RSA modulus size in bits.
    pub fn rsa_bits(&self) -> usize {
        self.rsa.key_size_bits()
    }

    /// The age recipient that travels with the certificate, if the key has one.
    pub fn age_recipient(&self) -> Option<&x25519::Recipient> {
        self.age.as_ref()
    }

    /// The hybrid post-quantum age recipient that travels with the certificate, if the key has
    /// one (keys made before sealgate sealed post-quantum have none).
    pub fn pq_recipient(&self) -> Option<&pq::Recipient> {
        self.pq.as_ref()
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM (what `sealgate cert` and `/v1/cert.pem` serve).
    pub fn cert_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.clone()))
    }

    /// Start of the certificate's validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the certificate's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// kubeseal refuses to seal with an expired certificate, and so do we.
    pub fn check_valid_at(&self, now: OffsetDateTime) -> Result<(), KeyError> {
        if now > self.not_after {
            return Err(KeyError::Certificate(format!(
                "the certificate of key {} expired on {}; fetch the current certificate or renew the key (sealgate keys rotate)",
                self.id.short(),
                cert::fmt_time(self.not_after)
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("id", &self.id)
            .field("rsa_bits", &self.rsa_bits())
            .field("age", &self.age.as_ref().map(|r| r.to_string()))
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Generated by sealgate (controller or `keys init`/`rotate`).
    Generated,
    /// A Bitnami Sealed Secrets key Secret (RSA only, no age identity).
    Bitnami,
    /// A PEM file.
    Pem,
}

impl KeyOrigin {
    /// How `keys list` and the key Secret's `sealgate.dev/key-origin` annotation spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Generated => "sealgate",
            KeyOrigin::Bitnami => "bitnami",
            KeyOrigin::Pem => "pem",
        }
    }

    /// The origin an annotation names, if it names one.
    pub fn parse(s: &str) -> Option<KeyOrigin> {
        [KeyOrigin::Generated, KeyOrigin::Bitnami, KeyOrigin::Pem]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A complete sealing key: private RSA key, certificate and optional X25519 identity.
pub struct SealingKey {
    public: PublicKey,
    rsa: OaepPrivateDecryptingKey,
    /// The private key as PKCS#8 DER, kept for serialisation; wiped on drop.
    pkcs8: Zeroizing<Vec<u8>>,
    age: Option<x25519::Identity>,
    pq: Option<pq::Identity>,
    created: OffsetDateTime,
    origin: KeyOrigin,
}

/// A key's age identities, as [`SealingKey::from_parts`] takes them.
#[derive(Default)]
pub struct AgeIdentities {
    /// The X25519 identity (`AGE-SECRET-KEY-1…`).
    pub x25519: Option<x25519::Identity>,
    /// The hybrid post-quantum identity (`AGE-SECRET-KEY-PQ-1…`).
    pub pq: Option<pq::Identity>,
}

/// Options for [`SealingKey::generate`].
#[derive(Debug, Clone)]
pub struct KeyGenOptions {
    /// RSA modulus size (4096 by default, as Bitnami's).
    pub rsa_bits: usize,
    /// How long the certificate is valid.
    pub validity: time::Duration,
    /// The certificate's common name.
    pub common_name: String,
    /// The creation time (the certificate starts then).
    pub now: OffsetDateTime,
}

impl Default for KeyGenOptions {
    fn default() -> Self {
        KeyGenOptions {
            rsa_bits: 4096,
            // Bitnami's default --key-ttl: 10 years. Keys are renewed far more often than that;
            // the validity only stops sealing with a very stale certificate.
            validity: time::Duration::days(3650),
            common_name: "sealgate".into(),
            now: OffsetDateTime::now_utc(),
        }
    }
}

impl SealingKey {
    /// Generate a new RSA key, its self-signed certificate and an X25519 identity.
    pub fn generate(opts: &KeyGenOptions) -> Result<SealingKey, KeyError> {
        let size = match opts.rsa_bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            n => {
                return Err(KeyError::Generate(format!(
                    "unsupported RSA key size {n}: use 2048, 3072, 4096 or 8192"
                )));
            }
        };
        let private = PrivateDecryptingKey::generate(size)
            .map_err(|_| KeyError::Generate("RSA key generation failed".into()))?;
        let pkcs8 = Zeroizing::new(
            private
                .as_der()
                .map_err(|_| KeyError::Generate("cannot encode the RSA key".into()))?
                .as_ref()
                .to_vec(),
        );
        let identity = x25519::Identity::generate();
        let pq_identity = pq::Identity::generate();
        // The certificate holds seconds; the key's creation time keeps its sub-second part (its
        // Secret's annotation carries it), so two keys made in one second (`keys init` then
        // `rotate`) are still ordered by when they were made.
        let not_before = opts.now.replace_nanosecond(0).unwrap_or(opts.now);
        let cert_der = cert::self_signed(
            &pkcs8,
            &opts.common_name,
            not_before,
            not_before + opts.validity,
            Some(&identity.to_public()),
            Some(&pq_identity.to_public()),
        )?;
        SealingKey::from_parts(
            pkcs8,
            &cert_der,
            AgeIdentities {
                x25519: Some(identity),
                pq: Some(pq_identity),
            },
            opts.now,
            KeyOrigin::Generated,
        )
    }

    /// Assemble a key from a PKCS#8 RSA key and its certificate, checking that they match.
    pub fn from_parts(
        pkcs8: Zeroizing<Vec<u8>>,
        cert_der: &[u8],
        identities: AgeIdentities,
        created: OffsetDateTime,
        origin: KeyOrigin,
    ) -> Result<SealingKey, KeyError> {
        let private = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .map_err(|e| KeyError::PrivateKey(format!("not a PKCS#8 RSA key ({e})")))?;
        let public = PublicKey::from_cert_der(cert_der)?;
        let own_spki = private
            .public_key()
            .as_der()
            .map_err(|_| KeyError::PrivateKey("cannot encode its public key".into()))?;
        if KeyId::of_spki(own_spki.as_ref()) != public.id {
            return Err(KeyError::Mismatch);
        }
        let AgeIdentities { x25519: age, pq } = identities;
        if let (Some(id), Some(r)) = (&age, public.age_recipient())
            && id.to_public().to_string() != r.to_string()
        {
            return Err(KeyError::Secret(
                "the age identity does not match the age recipient in the certificate".into(),
            ));
        }
        if let (Some(id), Some(r)) = (&pq, public.pq_recipient())
            && id.to_public() != *r
        {
            return Err(KeyError::Secret(
                "the post-quantum age identity does not match the recipient in the certificate"
                    .into(),
            ));
        }
        let rsa = OaepPrivateDecryptingKey::new(private)
            .map_err(|_| KeyError::PrivateKey("not usable for RSA-OAEP".into()))?;
        Ok(SealingKey {
            public,
            rsa,
            pkcs8,
            age,
            pq,
            created,
            origin,
        })
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// The public parts: certificate, RSA public key, age recipient.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The RSA private key, for opening kubeseal values.
    pub fn rsa(&self) -> &OaepPrivateDecryptingKey {
        &self.rsa
    }

    /// The X25519 identity, for opening age values (keys imported from Bitnami have none).
    pub fn age_identity(&self) -> Option<&x25519::Identity> {
        self.age.as_ref()
    }

    /// The hybrid post-quantum identity (keys made before sealgate sealed post-quantum, and
    /// Bitnami's, have none).
    pub fn pq_identity(&self) -> Option<&pq::Identity> {
        self.pq.as_ref()
    }

    /// Every age identity of the key, to open a value with whichever it was sealed to.
    pub fn age_identities(&self) -> Vec<&dyn age::Identity> {
        let mut out: Vec<&dyn age::Identity> = Vec::with_capacity(2);
        if let Some(id) = &self.age {
            out.push(id);
        }
        if let Some(id) = &self.pq {
            out.push(id);
        }
        out
    }

    /// Bring a creation time from the future back to `latest`: the time comes from a writable
    /// annotation and orders the ring, so a future one would make a key "newest" for years.
    /// Returns whether it was clamped.
    pub fn clamp_created(&mut self, latest: OffsetDateTime) -> bool {
        let clamped = self.created > latest;
        if clamped {
            self.created = latest;
        }
        clamped
    }

    /// When the key was created: the newest key seals.
    pub fn created(&self) -> OffsetDateTime {
        self.created
    }

    /// Where the key came from.
    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// A 32-byte secret for `purpose`, derived from the private key (HMAC-SHA256 keyed with its
    /// PKCS#8 DER), so a controller can authenticate what it wrote without storing another secret.
    /// Distinct purposes give independent keys.
    pub fn derive_secret(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use aws_lc_rs::hmac;
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.pkcs8),
            purpose.as_bytes(),
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.public.id)
            .field("rsa_bits", &self.public.rsa_bits())
            .field("has_age_identity", &self.age.is_some())
            .field("created", &self.created)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod testkeys {
    //! Keys shared by the tests of this crate: generated once per test process.
    use super::*;
    use std::sync::OnceLock;

    pub fn generate(bits: usize, days_ago: i64) -> SealingKey {
        SealingKey::generate(&KeyGenOptions {
            rsa_bits: bits,
            now: OffsetDateTime::now_utc() - time::Duration::days(days_ago),
            ..KeyGenOptions::default()
        })
        .unwrap()
    }

    /// A 2048-bit key: the format is the same at every size and tests run 4× faster.
    pub fn k2048() -> &'static SealingKey {
        static K: OnceLock<SealingKey> = OnceLock::new();
        K.get_or_init(|| generate(2048, 1))
    }

    pub fn k2048_b() -> &'static SealingKey {
        static K: OnceLock<SealingKey> = OnceLock::new();
        K.get_or_init(|| generate(2048, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::testkeys::*;
    use super::*;

    #[test]
    fn generated_key_is_consistent() {
        let k = k2048();
        assert_eq!(k.public().rsa_bits(), 2048);
        let r = k
            .public()
            .age_recipient()
            .expect("recipient in the certificate");
        assert_eq!(
            r.to_string(),
            k.age_identity().unwrap().to_public().to_string()
        );
        // The certificate starts in the second the key was made; the key keeps the sub-second.
        assert_eq!(
            k.public().not_before(),
            k.created().replace_nanosecond(0).unwrap()
        );
        let pem = k.public().cert_pem();
        let back = PublicKey::from_pem_bundle(pem.as_bytes()).unwrap();
        assert_eq!(back[0].id(), k.id());
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let k = k2048();
        let dbg = format!("{k:?} {:?}", k.public());
        assert!(dbg.contains(&k.id().short()));
        let age_secret = {
            use age::secrecy::ExposeSecret;
            k.age_identity()
                .unwrap()
                .to_string()
                .expose_secret()
                .to_string()
        };
        assert!(!dbg.contains(&age_secret));
        assert!(!dbg.contains("PRIVATE"));
    }

    #[test]
    fn mismatched_key_and_cert_are_refused() {
        let a = k2048();
        let b = k2048_b();
        let e = SealingKey::from_parts(
            Zeroizing::new(a.pkcs8().to_vec()),
            b.public().cert_der(),
            AgeIdentities::default(),
            a.created(),
            KeyOrigin::Pem,
        )
        .unwrap_err();
        assert!(matches!(e, KeyError::Mismatch), "{e}");
    }

    #[test]
    fn key_id_parse_and_match() {
        let id = k2048().id();
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        assert!(id.matches(&id.short()));
        assert!(id.matches(&id.to_string().to_uppercase()));
        assert!(!id.matches("abc"));
        assert!(!id.matches(&format!("{}0", id)));
        let mut other = id.short();
        other.replace_range(15..16, if other.ends_with('0') { "1" } else { "0" });
        assert!(!id.matches(&other));
        assert!("xyz".parse::<KeyId>().is_err());
    }

    #[test]
    fn expired_certificate_is_refused_for_sealing() {
        let k = SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            validity: time::Duration::days(1),
            now: OffsetDateTime::now_utc() - time::Duration::days(3),
            ..KeyGenOptions::default()
        })
        .unwrap();
        let e = k
            .public()
            .check_valid_at(OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }
}
