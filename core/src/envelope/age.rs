//! The age value format (DESIGN §3.2): `age(recipients, binding_line ‖ value)`.
//!
//! The binding line is inside the authenticated plaintext, so a value cannot be moved to another
//! object or item: unsealing compares it with the place the value is found in.

use std::io::{Read, Write};

use age::x25519;
use zeroize::Zeroizing;

use super::{AGE_LINE_PREFIX, Binding, Scope, SealError, pq};
use crate::SecretBytes;

/// The stanza type of age's X25519 recipients.
pub const X25519_STANZA_TAG: &str = "X25519";
const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// `age -a` output: PEM-style armor around the binary file.
const ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Whether decoded bytes are an age file (by its header), binary or armored (`age -a`).
pub fn is_age(decoded: &[u8]) -> bool {
    decoded.starts_with(MAGIC) || decoded.trim_ascii_start().starts_with(ARMOR)
}

/// An age recipient sealgate seals to.
#[derive(Clone, Debug)]
pub enum AgeRecipient {
    /// Classical X25519 (`age1…`).
    X25519(x25519::Recipient),
    /// Hybrid post-quantum, ML-KEM-768 + X25519 (`age1pq1…`).
    Pq(pq::Recipient),
}

impl AgeRecipient {
    /// Whether it is the hybrid post-quantum type.
    pub fn is_pq(&self) -> bool {
        matches!(self, AgeRecipient::Pq(_))
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match self {
            AgeRecipient::X25519(r) => r,
            AgeRecipient::Pq(r) => r,
        }
    }
}

impl PartialEq for AgeRecipient {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl std::fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgeRecipient::X25519(r) => write!(f, "{r}"),
            AgeRecipient::Pq(r) => write!(f, "{r}"),
        }
    }
}

/// Seal `value` for every recipient, bound to `binding`. Returns the raw age file.
pub fn seal(
    recipients: &[AgeRecipient],
    binding: &Binding<'_>,
    value: &[u8],
) -> Result<Vec<u8>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipient(
            "the age format needs at least one age recipient".into(),
        ));
    }
    // Never write what `header` refuses: age may add one grease stanza.
    if recipients.len() >= MAX_STANZAS {
        return Err(SealError::NoRecipient(format!(
            "{} age recipients: a sealed value has at most {} (the cluster's key and extra recipients)",
            recipients.len(),
            MAX_STANZAS - 1
        )));
    }
    if recipients.iter().any(AgeRecipient::is_pq) && !recipients.iter().all(AgeRecipient::is_pq) {
        return Err(SealError::NoRecipient(
            "age does not mix post-quantum (age1pq1…) and classical (age1…) recipients in one value: a classical one would undo the post-quantum protection. Give the other recipients' post-quantum form (age1pq1…), or seal classically (`--pq=false`)".into(),
        ));
    }
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(AgeRecipient::as_dyn))
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

/// Most recipient stanzas a sealed value may have, age's random grease stanza included. sealgate
/// seals to a cluster's key and a few extra recipients; each stanza costs every key an unwrap,
/// and the age crate's header parser is quadratic in the header's length.
pub const MAX_STANZAS: usize = 32;
/// Largest age header accepted (a post-quantum stanza is about 1.6 KB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// An age header, scanned (linearly, bounded) before the age crate parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Each stanza's type, in order, age's `*-grease` stanzas included.
    pub stanzas: Vec<String>,
}

impl Header {
    /// The recipient stanza types (`X25519`, `mlkem768x25519`, …) without age's grease: a stanza
    /// names its type, never its recipient, so this is all a holder of public keys can learn
    /// about who can open a value.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.stanzas
            .iter()
            .map(String::as_str)
            .filter(|t| !t.ends_with("-grease"))
    }

    /// How many stanzas of `tag` there are: the unwraps an identity of that type may cost.
    pub fn count(&self, tag: &str) -> usize {
        self.stanzas.iter().filter(|t| *t == tag).count()
    }
}

/// Why an age header is refused unread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not an age file (armor or line structure).
    #[error("malformed age value ({0})")]
    Malformed(String),
    /// No MAC line ends the header.
    #[error("malformed age value (the header has no MAC line)")]
    NoMac,
    /// Over [`MAX_HEADER_BYTES`].
    #[error(
        "its age header is over {} KiB, more than a sealed value needs (a few recipients): refused unread",
        MAX_HEADER_BYTES / 1024
    )]
    TooLarge,
    /// Over [`MAX_STANZAS`] recipient stanzas.
    #[error(
        "it has more than {MAX_STANZAS} age recipient stanzas; a sealed value has a few (the cluster and extra recipients): refused unread"
    )]
    TooManyStanzas,
}

/// Scan the header of an age file (binary or armored) within [`MAX_STANZAS`] and
/// [`MAX_HEADER_BYTES`]: what those bounds refuse never reaches the age crate.
pub fn header(raw: &[u8]) -> Result<Header, HeaderError> {
    use std::io::BufRead;
    let trimmed = raw.trim_ascii_start();
    let raw = if trimmed.starts_with(ARMOR) {
        trimmed
    } else {
        raw
    };
    let mut reader = std::io::BufReader::new(
        age::armor::ArmoredReader::new(raw).take(MAX_HEADER_BYTES as u64 + 1),
    );
    let (mut line, mut read, mut stanzas) = (Vec::new(), 0usize, Vec::new());
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| HeaderError::Malformed(e.to_string()))?;
        read += n;
        if read > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge);
        }
        if n == 0 {
            return Err(HeaderError::NoMac);
        }
        if line.starts_with(b"--- ") {
            return Ok(Header { stanzas });
        }
        if let Some(stanza) = line.strip_prefix(b"-> ") {
            if stanzas.len() == MAX_STANZAS {
                return Err(HeaderError::TooManyStanzas);
            }
            let tag = stanza
                .split(|&b| b == b' ' || b == b'\n')
                .next()
                .unwrap_or_default();
            stanzas.push(String::from_utf8_lossy(tag).into_owned());
        }
    }
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

/// Decrypt an age value with one key's identities (X25519, post-quantum, or both). Returns the
/// whole plaintext (binding line included).
pub fn decrypt(identities: &[&dyn age::Identity], raw: &[u8]) -> Result<SecretBytes, OpenFailure> {
    use age::DecryptError as E;
    // ArmoredReader passes binary files through unchanged and strips `age -a` armor, which may
    // have whitespace before it (age's rule).
    let trimmed = raw.trim_ascii_start();
    let raw = if trimmed.starts_with(ARMOR) {
        trimmed
    } else {
        raw
    };
    header(raw).map_err(|e| OpenFailure::Malformed(e.to_string()))?;
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(raw)).map_err(|e| match e {
            E::InvalidMac | E::DecryptionFailed => OpenFailure::Tampered,
            // The header is read whole here: any read error means it is malformed.
            other => OpenFailure::Malformed(other.to_string()),
        })?;
    if decryptor.is_scrypt() {
        return Err(OpenFailure::Malformed(
            "passphrase-encrypted age files are not sealed values".into(),
        ));
    }
    let mut reader = decryptor
        .decrypt(identities.iter().copied())
        .map_err(|e| match e {
            E::NoMatchingKeys => OpenFailure::NotARecipient,
            E::InvalidMac | E::DecryptionFailed | E::KeyDecryptionFailed => OpenFailure::Tampered,
            other => OpenFailure::Malformed(other.to_string()),
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(raw.len()));
    reader.read_to_end(&mut plain).map_err(read_failure)?;
    Ok(SecretBytes::from(&plain[..]))
}

/// A payload read error: malformed armor, a truncated file, or a chunk that does not decrypt.
fn read_failure(e: std::io::Error) -> OpenFailure {
    if let Some(armor) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<age::armor::ArmoredReadError>())
    {
        return OpenFailure::Malformed(format!("bad armor: {armor}"));
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            OpenFailure::Malformed("the value is truncated".into())
        }
        _ => OpenFailure::Tampered,
    }
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

/// Parse an age recipient: X25519 (`age1…`) or hybrid post-quantum (`age1pq1…`).
pub fn parse_recipient(s: &str) -> Result<AgeRecipient, SealError> {
    let s = s.trim();
    let bad = |e: String| {
        SealError::NoRecipient(format!(
            "{s:?} is not an age recipient (age1… or age1pq1…): {e}"
        ))
    };
    if s.starts_with("age1pq1") {
        s.parse::<pq::Recipient>()
            .map(AgeRecipient::Pq)
            .map_err(|e| bad(e.to_string()))
    } else {
        s.parse::<x25519::Recipient>()
            .map(AgeRecipient::X25519)
            .map_err(|e| bad(e.to_string()))
    }
}
