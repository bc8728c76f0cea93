//! The age value format (DESIGN §3.2): `age(recipients, binding_line ‖ value)`.
//!
//! The binding line is inside the authenticated plaintext, so a value cannot be moved to another
//! object or item: unsealing compares it with the place the value is found in.

use std::io::{Read, Write};

use age::x25519;
use zeroize::Zeroizing;

use super::{AGE_LINE_PREFIX, Binding, Scope, SealError};
use crate::SecretBytes;

const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// `age -a` output: PEM-style armor around the binary file.
const ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Whether decoded bytes are an age file (by its header), binary or armored (`age -a`).
pub fn is_age(decoded: &[u8]) -> bool {
    decoded.starts_with(MAGIC) || decoded.trim_ascii_start().starts_with(ARMOR)
}

/// Seal `value` for every recipient, bound to `binding`. Returns the raw age file.
pub fn seal(
    recipients: &[x25519::Recipient],
    binding: &Binding<'_>,
    value: &[u8],
) -> Result<Vec<u8>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipient(
            "the age format needs at least one X25519 recipient".into(),
        ));
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let line = binding.age_line();
    let mut out = Vec::with_capacity(200 * recipients.len() + line.len() + value.len() + 64);
    let io = |e: std::io::Error| SealError::Encrypt(e.to_string());
    let mut w = encryptor.wrap_output(&mut out).map_err(io)?;
    w.write_all(line.as_bytes()).map_err(io)?;
    w.write_all(value).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(out)
}

/// Why one identity failed to open a value.
#[derive(Debug)]
pub enum OpenFailure {
    /// None of the file's stanzas is for this identity: try the next one.
    NotARecipient,
    /// The file is not a well-formed age file.
    Malformed(String),
    /// The header MAC or a payload chunk does not verify.
    Tampered,
}

/// Decrypt an age value with one identity. Returns the whole plaintext (binding line included).
pub fn decrypt(identity: &x25519::Identity, raw: &[u8]) -> Result<SecretBytes, OpenFailure> {
    use age::DecryptError as E;
    // ArmoredReader passes binary files through unchanged and strips `age -a` armor.
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(raw)).map_err(|e| match e {
            E::InvalidMac | E::DecryptionFailed => OpenFailure::Tampered,
            other => OpenFailure::Malformed(other.to_string()),
        })?;
    if decryptor.is_scrypt() {
        return Err(OpenFailure::Malformed(
            "passphrase-encrypted age files are not sealed values".into(),
        ));
    }
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            E::NoMatchingKeys => OpenFailure::NotARecipient,
            E::InvalidMac | E::DecryptionFailed | E::KeyDecryptionFailed => OpenFailure::Tampered,
            other => OpenFailure::Malformed(other.to_string()),
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(raw.len()));
    reader
        .read_to_end(&mut plain)
        .map_err(|_| OpenFailure::Tampered)?;
    Ok(SecretBytes::from(&plain[..]))
}

/// Check the binding line of a decrypted age plaintext against where the value was found and
/// return the value without it.
pub fn check_binding(
    plaintext: &SecretBytes,
    expected: &Binding<'_>,
) -> Result<SecretBytes, SealError> {
    let bytes = plaintext.expose();
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(SealError::MalformedAge(
            "the plaintext has no sealgate binding line".into(),
        ));
    };
    let line = &bytes[..=nl];
    let want = expected.age_line();
    if line != want.as_bytes() {
        return Err(match SealedFor::parse(&line[..nl]) {
            Some(sealed) => SealError::BindingMismatch {
                sealed: sealed.describe(),
                expected: expected.describe(),
            },
            None => SealError::MalformedAge("the plaintext has no sealgate binding line".into()),
        });
    }
    Ok(SecretBytes::from(&bytes[nl + 1..]))
}

/// A parsed binding line, for error messages only. It comes from authenticated plaintext and holds
/// names, never values.
struct SealedFor {
    scope: Scope,
    ns: String,
    name: String,
    key: String,
}

impl SealedFor {
    fn parse(line: &[u8]) -> Option<SealedFor> {
        let line = std::str::from_utf8(line).ok()?;
        let mut parts = line.split(' ');
        if parts.next()? != AGE_LINE_PREFIX {
            return None;
        }
        let mut field = |k: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(k))
                .and_then(|p| p.strip_prefix('='))
                .map(str::to_string)
        };
        let scope = field("scope")?.parse().ok()?;
        Some(SealedFor {
            scope,
            ns: field("ns")?,
            name: field("name")?,
            key: field("key")?,
        })
    }

    fn describe(&self) -> String {
        Binding {
            scope: self.scope,
            namespace: &self.ns,
            name: &self.name,
            item: &self.key,
        }
        .describe()
    }
}

/// Parse an age recipient (`age1…`). Only X25519 recipients are supported.
pub fn parse_recipient(s: &str) -> Result<x25519::Recipient, SealError> {
    s.trim().parse::<x25519::Recipient>().map_err(|e| {
        SealError::NoRecipient(format!(
            "{:?} is not an age X25519 recipient (age1…): {e}",
            s.trim()
        ))
    })
}
