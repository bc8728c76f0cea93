//! age's hybrid post-quantum recipient type, `mlkem768x25519` (C2SP age; age 1.3 and typage
//! implement it): the file key is sealed with HPKE (RFC 9180, base mode) over the X-Wing KEM
//! (ML-KEM-768 + X25519), HKDF-SHA256 and ChaCha20-Poly1305, info
//! `age-encryption.org/mlkem768x25519`.
//!
//! - Recipient: Bech32 `age1pq1…` of the 1,216-byte X-Wing encapsulation key.
//! - Identity: Bech32 `AGE-SECRET-KEY-PQ-1…` of the 32-byte X-Wing seed.
//! - Stanza: `-> mlkem768x25519 <base64 enc, 1,120 bytes>` and a 32-byte body (the wrapped file
//!   key and its tag). Its label `postquantum` keeps age from mixing it with classical
//!   recipients in one file, which would undo the protection.
//!
//! The cryptography is `hpke`'s X-Wing (on RustCrypto's `x-wing`); this module only encodes.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hpke::{Deserializable, Kem as _, Serializable};
use zeroize::Zeroizing;

use xwing::XWing;

/// The stanza type.
pub const STANZA_TAG: &str = "mlkem768x25519";
/// The HPKE info string.
const INFO: &[u8] = b"age-encryption.org/mlkem768x25519";
/// The label that keeps post-quantum and classical recipients apart.
const LABEL: &str = "postquantum";
const RECIPIENT_HRP: bech32::Hrp = bech32::Hrp::parse_unchecked("age1pq");
const IDENTITY_HRP: bech32::Hrp = bech32::Hrp::parse_unchecked("age-secret-key-pq-");
const SEED_BYTES: usize = x_wing::DECAPSULATION_KEY_SIZE;
const ENC_BYTES: usize = x_wing::CIPHERTEXT_SIZE;
const BODY_BYTES: usize = FILE_KEY_BYTES + 16;

type PublicKey = <XWing as hpke::Kem>::PublicKey;
type PrivateKey = <XWing as hpke::Kem>::PrivateKey;

/// A hybrid post-quantum recipient (`age1pq1…`). Boxed: an expanded ML-KEM key is kilobytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient(Box<PublicKey>);

/// A hybrid post-quantum identity (`AGE-SECRET-KEY-PQ-1…`). Its seed is wiped on drop and never
/// printed by `Debug`.
#[derive(Clone)]
pub struct Identity {
    seed: Zeroizing<[u8; SEED_BYTES]>,
    key: Box<PrivateKey>,
}

impl Identity {
    /// A new identity from the system's random source.
    pub fn generate() -> Identity {
        let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
        aws_lc_rs::rand::fill(&mut seed[..]).expect("the system random source works");
        Identity::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<[u8; SEED_BYTES]>) -> Identity {
        let key = Box::new(xwing::PrivateKey::from_seed(*seed));
        Identity { seed, key }
    }

    /// The recipient values for this identity are sealed to.
    pub fn to_public(&self) -> Recipient {
        Recipient(Box::new(XWing::sk_to_pk(&self.key)))
    }

    /// The identity as age writes it (`AGE-SECRET-KEY-PQ-1…`, upper case), in a zeroizing string.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(
            age_core::primitives::bech32_encode(IDENTITY_HRP, &self.seed[..]).to_uppercase(),
        )
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pq::Identity({})", self.to_public().short())
    }
}

/// Text that is not the post-quantum age key it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    /// Not Bech32 at all.
    #[error("not a Bech32 string ({0})")]
    Bech32(String),
    /// Bech32, of another kind (`what` names the expected one).
    #[error("not {0}")]
    WrongKind(&'static str),
    /// An identity whose seed is not 32 bytes.
    #[error("the identity is not 32 bytes")]
    IdentityLength,
    /// A recipient that is not an X-Wing encapsulation key.
    #[error("not an X-Wing encapsulation key (1,216 bytes)")]
    NotXWing,
}

/// The data of a Bech32 string whose HRP is `hrp` (`what` names the expected kind in errors).
/// Zeroizing: an identity's data is its seed.
fn bech32_data(
    s: &str,
    hrp: bech32::Hrp,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, ParseKeyError> {
    age_core::primitives::bech32_decode(
        s.trim(),
        |e| ParseKeyError::Bech32(e.to_string()),
        |found| {
            (found == hrp)
                .then_some(())
                .ok_or(ParseKeyError::WrongKind(what))
        },
        |_, bytes| Ok(Zeroizing::new(bytes.collect())),
    )
}

impl FromStr for Identity {
    type Err = ParseKeyError;

    /// Parses `AGE-SECRET-KEY-PQ-1…` (age writes identities in upper case; Bech32 refuses
    /// mixed case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let data = bech32_data(
            s,
            IDENTITY_HRP,
            "a post-quantum age identity (AGE-SECRET-KEY-PQ-1…)",
        )?;
        let seed: [u8; SEED_BYTES] = data[..]
            .try_into()
            .map_err(|_| ParseKeyError::IdentityLength)?;
        Ok(Identity::from_seed(Zeroizing::new(seed)))
    }
}

impl Recipient {
    /// The first characters after `age1pq1`, to tell recipients apart in messages.
    pub fn short(&self) -> String {
        let s = self.to_string();
        format!("{}…", &s[..s.len().min(20)])
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        age_core::primitives::bech32_encode_to_fmt(f, RECIPIENT_HRP, &self.0.to_bytes())
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pq::Recipient({})", self.short())
    }
}

impl FromStr for Recipient {
    type Err = ParseKeyError;

    /// Parses `age1pq1…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let data = bech32_data(s, RECIPIENT_HRP, "a post-quantum age recipient (age1pq1…)")?;
        PublicKey::from_bytes(&data)
            .map(|k| Recipient(Box::new(k)))
            .map_err(|_| ParseKeyError::NotXWing)
    }
}

impl age::Recipient for Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let (enc, body) = age_core::primitives::hpke_seal::<XWing, _>(
            &self.0,
            INFO,
            file_key.expose_secret(),
            &mut xwing::SystemRng,
        );
        let stanza = Stanza {
            tag: STANZA_TAG.into(),
            args: vec![STANZA_B64.encode(enc.to_bytes())],
            body,
        };
        Ok((vec![stanza], HashSet::from([LABEL.to_string()])))
    }
}

/// Stanza arguments are canonical base64 without padding (age's rule).
const STANZA_B64: base64::engine::GeneralPurpose = STANDARD_NO_PAD;

impl age::Identity for Identity {
    /// `None` when the stanza is not of this type or does not open with this identity (so the
    /// next identity is tried); an error when it is of this type but malformed.
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let [arg] = &stanza.args[..] else {
            return Some(Err(age::DecryptError::InvalidHeader));
        };
        let enc = match STANZA_B64.decode(arg) {
            Ok(enc) if enc.len() == ENC_BYTES => enc,
            _ => return Some(Err(age::DecryptError::InvalidHeader)),
        };
        if stanza.body.len() != BODY_BYTES {
            return Some(Err(age::DecryptError::InvalidHeader));
        }
        let enc = match <XWing as hpke::Kem>::EncappedKey::from_bytes(&enc) {
            Ok(enc) => enc,
            Err(_) => return Some(Err(age::DecryptError::InvalidHeader)),
        };
        // A stanza for another recipient fails the AEAD: not ours, as age's X25519 type says.
        // (The key ring bounds and counts this as one private-key operation around the whole
        // decryption.)
        let opened =
            match age_core::primitives::hpke_open::<XWing>(&enc, &self.key, INFO, &stanza.body) {
                Ok(opened) => opened,
                // A low-order X25519 share (all-zero shared secret): malformed, as Go's age says.
                Err(hpke::HpkeError::DecapError) => {
                    return Some(Err(age::DecryptError::InvalidHeader));
                }
                Err(_) => return None,
            };
        let opened = Zeroizing::new(opened);
        Some(FileKey::try_init_with_mut(|k| {
            if opened.len() != FILE_KEY_BYTES {
                return Err(age::DecryptError::InvalidHeader);
            }
            k.copy_from_slice(&opened);
            Ok(())
        }))
    }
}

/// X-Wing as an HPKE KEM (KEM id 0x647a, draft-ietf-hpke-pq) over RustCrypto's `x-wing`: the
/// glue the `hpke` crate needs, as the age crate's `tagpq` type has for its KEM. No primitive:
/// the KEM is x-wing's, the key schedule and AEAD are hpke's.
mod xwing {
    use hpke::generic_array::GenericArray;
    use hpke::generic_array::typenum::{Sum, U32, U96, U192, U1024};
    use hpke::kem::SharedSecret;
    use hpke::rand_core::{CryptoRng, RngCore};
    use hpke::{Deserializable, HpkeError, Serializable};
    use kem::{Decapsulate, Encapsulate};
    use sha3::digest::{ExtendableOutput, Update, XofReader};

    type U1216 = Sum<U1024, U192>;
    type U1120 = Sum<U1024, U96>;

    /// The decapsulation key (its 32-byte seed), the encapsulation key it expands to, and its
    /// X25519 secret, computed once.
    #[derive(Clone)]
    pub struct PrivateKey {
        dk: x_wing::DecapsulationKey,
        ek: PublicKey,
        /// To refuse low-order X25519 shares (below), which x-wing does not check.
        x25519: x25519_dalek::StaticSecret,
    }

    impl PrivateKey {
        pub fn from_seed(seed: [u8; x_wing::DECAPSULATION_KEY_SIZE]) -> PrivateKey {
            let dk = x_wing::DecapsulationKey::from(seed);
            let ek = PublicKey(dk.encapsulation_key());
            // X-Wing's key expansion (draft-connolly-cfrg-xwing-kem §5.2): SHAKE256(seed) gives
            // ML-KEM's d and z (64 bytes), then the X25519 secret (32 bytes).
            let mut expanded = sha3::Shake256::default().chain(seed).finalize_xof();
            let mut skip = zeroize::Zeroizing::new([0u8; 64]);
            expanded.read(&mut skip[..]);
            let mut sk_x = zeroize::Zeroizing::new([0u8; 32]);
            expanded.read(&mut sk_x[..]);
            let x25519 = x25519_dalek::StaticSecret::from(*sk_x);
            PrivateKey { dk, ek, x25519 }
        }
    }

    impl PartialEq for PrivateKey {
        fn eq(&self, other: &Self) -> bool {
            self.dk.as_bytes() == other.dk.as_bytes()
        }
    }
    impl Eq for PrivateKey {}

    impl Serializable for PrivateKey {
        type OutputSize = U32;
        fn write_exact(&self, buf: &mut [u8]) {
            buf.copy_from_slice(self.dk.as_bytes());
        }
    }

    impl Deserializable for PrivateKey {
        fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
            let seed = encoded
                .try_into()
                .map_err(|_| HpkeError::IncorrectInputLength(32, encoded.len()))?;
            Ok(PrivateKey::from_seed(seed))
        }
    }

    #[derive(Clone, PartialEq)]
    pub struct PublicKey(x_wing::EncapsulationKey);

    impl Eq for PublicKey {}

    impl std::fmt::Debug for PublicKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("XWingPublicKey")
        }
    }

    impl Serializable for PublicKey {
        type OutputSize = U1216;
        fn write_exact(&self, buf: &mut [u8]) {
            buf.copy_from_slice(&self.0.as_bytes());
        }
    }

    impl Deserializable for PublicKey {
        fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
            let bytes: &[u8; x_wing::ENCAPSULATION_KEY_SIZE] =
                encoded.try_into().map_err(|_| {
                    HpkeError::IncorrectInputLength(x_wing::ENCAPSULATION_KEY_SIZE, encoded.len())
                })?;
            Ok(PublicKey(x_wing::EncapsulationKey::from(bytes)))
        }
    }

    #[derive(Clone)]
    pub struct EncappedKey(x_wing::Ciphertext);

    impl Serializable for EncappedKey {
        type OutputSize = U1120;
        fn write_exact(&self, buf: &mut [u8]) {
            buf.copy_from_slice(&self.0.as_bytes());
        }
    }

    impl Deserializable for EncappedKey {
        fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
            let bytes: &[u8; x_wing::CIPHERTEXT_SIZE] = encoded.try_into().map_err(|_| {
                HpkeError::IncorrectInputLength(x_wing::CIPHERTEXT_SIZE, encoded.len())
            })?;
            Ok(EncappedKey(x_wing::Ciphertext::from(bytes)))
        }
    }

    pub struct XWing;

    impl hpke::Kem for XWing {
        type PublicKey = PublicKey;
        type PrivateKey = PrivateKey;
        type EncappedKey = EncappedKey;
        type NSecret = U32;
        const KEM_ID: u16 = 0x647a;

        fn sk_to_pk(sk: &PrivateKey) -> PublicKey {
            sk.ek.clone()
        }

        /// draft-ietf-hpke-pq §4.5: `seed = SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32)`.
        /// (age identities are seeds, so sealgate never derives keys this way.)
        fn derive_keypair(ikm: &[u8]) -> (PrivateKey, PublicKey) {
            let label = b"DeriveKeyPair";
            let mut seed = [0u8; 32];
            sha3::Shake256::default()
                .chain(ikm)
                .chain(b"HPKE-v1")
                .chain(b"KEM")
                .chain(Self::KEM_ID.to_be_bytes())
                .chain((label.len() as u16).to_be_bytes())
                .chain(label)
                .chain(32u16.to_be_bytes())
                .finalize_xof()
                .read(&mut seed);
            let sk = PrivateKey::from_seed(seed);
            let pk = sk.ek.clone();
            (sk, pk)
        }

        fn decap(
            sk: &PrivateKey,
            pk_sender_id: Option<&PublicKey>,
            enc: &EncappedKey,
        ) -> Result<SharedSecret<Self>, HpkeError> {
            if pk_sender_id.is_some() {
                return Err(HpkeError::DecapError); // X-Wing has no authenticated mode
            }
            // age (C2SP, and Go's crypto/ecdh) refuses an X25519 share whose shared secret is
            // all zeros (a low-order point); X-Wing itself would not.
            let ct = enc.0.as_bytes();
            let ct_x: [u8; 32] = ct[x_wing::CIPHERTEXT_SIZE - 32..]
                .try_into()
                .expect("32 bytes");
            if low_order(ct_x, &sk.x25519) {
                return Err(HpkeError::DecapError);
            }
            let ss = sk
                .dk
                .decapsulate(&enc.0)
                .map_err(|_| HpkeError::DecapError)?;
            Ok(SharedSecret(GenericArray::clone_from_slice(&ss)))
        }

        fn encap<R: CryptoRng + RngCore>(
            pk: &PublicKey,
            sender_id_keypair: Option<(&PrivateKey, &PublicKey)>,
            csprng: &mut R,
        ) -> Result<(SharedSecret<Self>, EncappedKey), HpkeError> {
            if sender_id_keypair.is_some() {
                return Err(HpkeError::EncapError);
            }
            let (ct, ss) =
                pk.0.encapsulate(csprng)
                    .map_err(|_| HpkeError::EncapError)?;
            Ok((
                SharedSecret(GenericArray::clone_from_slice(&ss)),
                EncappedKey(ct),
            ))
        }
    }

    /// Whether X25519 with `sk` and the share `u` gives the all-zero secret: `u` is of small order.
    /// Decided by curve25519-dalek on the curve's Edwards form (three doublings), and by the
    /// Diffie-Hellman itself for a `u` that is not on the curve (a twist point) or is -1: an
    /// honest share is on the curve, so the common case costs no second scalar multiplication.
    fn low_order(u: [u8; 32], sk: &x25519_dalek::StaticSecret) -> bool {
        match curve25519_dalek::montgomery::MontgomeryPoint(u).to_edwards(0) {
            Some(p) => p.is_small_order(),
            None => !sk
                .diffie_hellman(&x25519_dalek::PublicKey::from(u))
                .was_contributory(),
        }
    }

    /// The system's random source (aws-lc-rs) in the shape `hpke` takes.
    pub struct SystemRng;

    impl RngCore for SystemRng {
        fn next_u32(&mut self) -> u32 {
            hpke::rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            hpke::rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            aws_lc_rs::rand::fill(dest).expect("the system random source works");
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), hpke::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for SystemRng {}

    #[cfg(test)]
    mod tests {
        use super::low_order;

        /// The cheap check says what the Diffie-Hellman itself would: for the special points
        /// (0, 1, -1, p, p+1, the top bit set) and for random shares, half of them twist points.
        #[test]
        fn low_order_agrees_with_the_diffie_hellman() {
            let sk = x25519_dalek::StaticSecret::random_from_rng(super::SystemRng);
            let mut special: Vec<[u8; 32]> = Vec::new();
            for low in [0u8, 1, 0xec, 0xed, 0xee] {
                let mut u = [0u8; 32];
                u[0] = low;
                if low >= 0xec {
                    // p - 1, p and p + 1: 0x7fff…ff{ec,ed,ee}.
                    u[1..31].fill(0xff);
                    u[31] = 0x7f;
                }
                special.push(u);
                let mut top = u;
                top[31] |= 0x80; // X25519 ignores the top bit
                special.push(top);
            }
            let mut random = Vec::new();
            for i in 0..200u8 {
                let mut u = [0u8; 32];
                aws_lc_rs::rand::fill(&mut u).unwrap();
                u[0] ^= i;
                random.push(u);
            }
            let mut small = 0;
            for u in special.iter().chain(&random) {
                let dh_zero = !sk
                    .diffie_hellman(&x25519_dalek::PublicKey::from(*u))
                    .was_contributory();
                assert_eq!(low_order(*u, &sk), dh_zero, "{u:02x?}");
                small += usize::from(dh_zero);
            }
            assert!(
                small >= 6,
                "the special points include small-order ones: {small}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_recipients_round_trip_through_their_strings() {
        let id = Identity::generate();
        let s = id.to_secret_string();
        assert!(s.starts_with("AGE-SECRET-KEY-PQ-1"), "{}", &s[..20]);
        let back: Identity = s.parse().unwrap();
        assert_eq!(back.to_public(), id.to_public());
        let r = id.to_public().to_string();
        assert!(r.starts_with("age1pq1"), "{r}");
        assert_eq!(r.parse::<Recipient>().unwrap(), id.to_public());
        assert!(
            !format!("{id:?}").contains(&s[19..40]),
            "Debug never shows the seed"
        );
        assert!(
            "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"
                .parse::<Recipient>()
                .unwrap_err()
                .to_string()
                .contains("not a post-quantum age recipient")
        );
    }

    #[test]
    fn a_file_sealed_to_the_recipient_opens_with_the_identity_only() {
        use std::io::{Read, Write};
        let id = Identity::generate();
        let other = Identity::generate();
        let r = id.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(b"after the quantum computer").unwrap();
        w.finish().unwrap();
        let text = String::from_utf8_lossy(&out[..200]).to_string();
        assert!(text.contains("-> mlkem768x25519 "), "{text}");

        let d = age::Decryptor::new_buffered(&out[..]).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap();
        let mut plain = Vec::new();
        r.read_to_end(&mut plain).unwrap();
        assert_eq!(plain, b"after the quantum computer");

        let d = age::Decryptor::new_buffered(&out[..]).unwrap();
        assert!(matches!(
            d.decrypt(std::iter::once(&other as &dyn age::Identity)),
            Err(age::DecryptError::NoMatchingKeys)
        ));
    }

    #[test]
    fn age_refuses_to_mix_post_quantum_and_classical_recipients() {
        let pq = Identity::generate().to_public();
        let classical = age::x25519::Identity::generate().to_public();
        let recipients: [&dyn age::Recipient; 2] = [&pq, &classical];
        assert!(age::Encryptor::with_recipients(recipients.into_iter()).is_err());
    }
}
