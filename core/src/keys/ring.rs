//! The key ring: every sealing key a cluster (or a local store) has ever had, newest first.
//!
//! Opening a value costs one RSA private-key operation per key tried, so the ring avoids trying
//! every key where it can:
//! - only keys whose modulus matches the value's RSA part are tried;
//! - a caller-held hint (the key that opened the previous item of the same object, since
//!   `seal` uses one key per object) is tried first;
//! - age values cost one X25519 operation per key, a small fraction of one RSA decryption.

use std::sync::Arc;

use super::{KeyId, PublicKey, SealingKey};
use crate::SecretBytes;
use crate::seal::{AGE_NOKEY_HINT, Binding, Format, KUBESEAL_NOKEY_HINT, SealError, age, kubeseal};

/// A value opened by the ring.
#[derive(Debug)]
pub struct Opened {
    pub value: SecretBytes,
    pub key: KeyId,
    pub format: Format,
    /// Private-key operations spent (RSA decryptions or X25519 agreements).
    pub attempts: usize,
}

#[derive(Clone, Default)]
pub struct KeyRing {
    /// Newest first (by creation time).
    keys: Vec<Arc<SealingKey>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

impl KeyRing {
    pub fn new(keys: impl IntoIterator<Item = SealingKey>) -> KeyRing {
        let mut ring = KeyRing::default();
        for k in keys {
            ring.insert(k);
        }
        ring
    }

    /// Add a key, keeping newest-first order. A key already in the ring is not added twice.
    pub fn insert(&mut self, key: SealingKey) -> bool {
        if self.get(key.id()).is_some() {
            return false;
        }
        let pos = self
            .keys
            .iter()
            .position(|k| k.created() < key.created())
            .unwrap_or(self.keys.len());
        self.keys.insert(pos, Arc::new(key));
        true
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SealingKey> {
        self.keys.iter().map(|k| k.as_ref())
    }

    pub fn get(&self, id: KeyId) -> Option<&SealingKey> {
        self.iter().find(|k| k.id() == id)
    }

    /// The key a (full or at least 8-digit) hex id names, if it is in the ring.
    pub fn find(&self, id_prefix: &str) -> Option<KeyId> {
        self.iter().map(|k| k.id()).find(|id| id.matches(id_prefix))
    }

    /// The key new values are sealed with.
    pub fn newest(&self) -> Option<&SealingKey> {
        self.keys.first().map(|k| k.as_ref())
    }

    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.iter().map(|k| k.public().clone()).collect()
    }

    /// Open one base64 value found at `binding`. On success `hint` names the key that opened it,
    /// to be passed back for the next item of the same object.
    pub fn open(
        &self,
        value_b64: &str,
        binding: &Binding<'_>,
        hint: &mut Option<KeyId>,
    ) -> Result<Opened, SealError> {
        let raw = crate::sealed::model::decode_b64_lenient(value_b64)?;
        match Format::detect(&raw) {
            Format::Kubeseal => self.open_kubeseal(&raw, binding, hint),
            Format::Age => self.open_age(&raw, binding, hint),
        }
    }

    fn candidates(&self, hint: Option<KeyId>) -> impl Iterator<Item = &SealingKey> {
        let first = hint.and_then(|h| self.get(h));
        first
            .into_iter()
            .chain(self.iter().filter(move |k| Some(k.id()) != hint))
    }

    fn open_kubeseal(
        &self,
        raw: &[u8],
        binding: &Binding<'_>,
        hint: &mut Option<KeyId>,
    ) -> Result<Opened, SealError> {
        let parts = kubeseal::parse(raw)?;
        let label = binding.oaep_label();
        let mut attempts = 0;
        for key in self
            .candidates(*hint)
            .filter(|k| k.rsa().key_size_bytes() == parts.rsa.len())
        {
            attempts += 1;
            match kubeseal::open(key.rsa(), &label, parts) {
                Ok(value) => {
                    *hint = Some(key.id());
                    return Ok(Opened {
                        value,
                        key: key.id(),
                        format: Format::Kubeseal,
                        attempts,
                    });
                }
                Err(kubeseal::OpenFailure::WrongKeyOrLabel) => continue,
                Err(kubeseal::OpenFailure::Tampered) => return Err(SealError::Tampered),
            }
        }
        if attempts == 0 && !self.is_empty() {
            return Err(SealError::Malformed(format!(
                "its RSA part is {} bytes, which matches none of the {}-key ring's key sizes",
                parts.rsa.len(),
                self.len()
            )));
        }
        Err(SealError::NoKey {
            tried: attempts,
            hint: KUBESEAL_NOKEY_HINT,
        })
    }

    fn open_age(
        &self,
        raw: &[u8],
        binding: &Binding<'_>,
        hint: &mut Option<KeyId>,
    ) -> Result<Opened, SealError> {
        let mut attempts = 0;
        for key in self.candidates(*hint) {
            let Some(identity) = key.age_identity() else {
                continue;
            };
            attempts += 1;
            match age::decrypt(identity, raw) {
                Ok(plain) => {
                    *hint = Some(key.id());
                    let value = age::check_binding(&plain, binding)?;
                    return Ok(Opened {
                        value,
                        key: key.id(),
                        format: Format::Age,
                        attempts,
                    });
                }
                Err(age::OpenFailure::NotARecipient) => continue,
                Err(age::OpenFailure::Tampered) => return Err(SealError::Tampered),
                Err(age::OpenFailure::Malformed(m)) => return Err(SealError::MalformedAge(m)),
            }
        }
        Err(SealError::NoKey {
            tried: attempts,
            hint: AGE_NOKEY_HINT,
        })
    }
}
