//! The kubeseal (Bitnami Sealed Secrets) value format, byte for byte:
//!
//! `u16_be(len(C_rsa)) ‖ C_rsa ‖ AES-256-GCM(K, nonce = 0¹², aad = ∅, plaintext) ‖ tag16`
//! with `C_rsa = RSA-OAEP(SHA-256, MGF1-SHA-256, K, label)` and a fresh 32-byte `K` per value.
//! The all-zero nonce is safe only because every `K` encrypts exactly one message.

use aws_lc_rs::aead::{AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey};
use zeroize::Zeroizing;

use super::SealError;
use crate::SecretBytes;

const SESSION_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Seal `plaintext` to `key` under the scope `label`. Returns the raw (not base64) value.
pub fn seal(
    key: &OaepPublicEncryptingKey,
    label: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    aws_lc_rs::rand::fill(&mut session_key[..])
        .map_err(|_| SealError::Encrypt("the system RNG failed".into()))?;

    let rsa_len = key.ciphertext_size();
    let rsa_len_u16 = u16::try_from(rsa_len)
        .map_err(|_| SealError::Encrypt(format!("RSA key too large ({rsa_len} bytes)")))?;
    let mut out = Vec::with_capacity(2 + rsa_len + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&rsa_len_u16.to_be_bytes());
    out.resize(2 + rsa_len, 0);
    let written = key
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            &session_key[..],
            &mut out[2..],
            Some(label),
        )
        .map_err(|_| SealError::Encrypt("RSA-OAEP encryption failed".into()))?
        .len();
    debug_assert_eq!(written, rsa_len);

    let aead = aead_key(&session_key[..])?;
    // Encrypted in place, so this buffer holds plaintext only until the call returns.
    let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
    body.extend_from_slice(plaintext);
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::empty(),
        &mut body,
    )
    .map_err(|_| SealError::Encrypt("AES-GCM encryption failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The two parts of a kubeseal value, checked for length but not decrypted.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The RSA-OAEP-wrapped AES session key.
    pub rsa: &'a [u8],
    /// The AES-256-GCM ciphertext and tag of the value.
    pub aead: &'a [u8],
}

/// Split a raw value into its RSA and AES-GCM parts (upstream `HybridDecrypt`'s length checks).
pub fn parse(value: &[u8]) -> Result<Parts<'_>, SealError> {
    if value.len() < 2 {
        return Err(SealError::Malformed(format!(
            "{} byte(s) is too short for a sealed value",
            value.len()
        )));
    }
    let n = u16::from_be_bytes([value[0], value[1]]) as usize;
    if n == 0 {
        return Err(SealError::Malformed(
            "the RSA part has length 0 (is this a sealed value?)".into(),
        ));
    }
    if value.len() < 2 + n + TAG_LEN {
        return Err(SealError::Malformed(format!(
            "the value is {} bytes but its header announces a {n}-byte RSA part plus a 16-byte tag (truncated?)",
            value.len()
        )));
    }
    Ok(Parts {
        rsa: &value[2..2 + n],
        aead: &value[2 + n..],
    })
}

/// Why one key failed to open a value.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenFailure {
    /// OAEP failed: another key, or another label (scope/namespace/name). Try the next key.
    WrongKeyOrLabel,
    /// OAEP succeeded but GCM did not: the ciphertext was altered. No other key will do better.
    Tampered,
}

/// Open `parts` with one private key. Both the OAEP decryption and the GCM tag check run in
/// aws-lc, in constant time with respect to the key.
pub fn open(
    key: &OaepPrivateDecryptingKey,
    label: &[u8],
    parts: Parts<'_>,
) -> Result<SecretBytes, OpenFailure> {
    if parts.rsa.len() != key.key_size_bytes() {
        return Err(OpenFailure::WrongKeyOrLabel);
    }
    let mut buf = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let session_key = key
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            parts.rsa,
            &mut buf[..],
            Some(label),
        )
        .map_err(|_| OpenFailure::WrongKeyOrLabel)?;
    // Upstream hands whatever OAEP returns to aes.NewCipher, so AES-128/192 session keys open too.
    let aead = aead_key(session_key).map_err(|_| OpenFailure::Tampered)?;
    let mut body = Zeroizing::new(parts.aead.to_vec());
    let plain_len = aead
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut body[..],
        )
        .map_err(|_| OpenFailure::Tampered)?
        .len();
    Ok(SecretBytes::from(&body[..plain_len]))
}

fn aead_key(session_key: &[u8]) -> Result<LessSafeKey, SealError> {
    let alg = match session_key.len() {
        32 => &AES_256_GCM,
        24 => &AES_192_GCM,
        16 => &AES_128_GCM,
        n => return Err(SealError::Malformed(format!("{n}-byte session key"))),
    };
    let unbound = UnboundKey::new(alg, session_key)
        .map_err(|_| SealError::Malformed("invalid session key".into()))?;
    Ok(LessSafeKey::new(unbound))
}
