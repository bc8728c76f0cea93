//! The key ring: every sealing key a cluster (or a local store) has ever had, newest first.
//!
//! Opening a value costs one RSA private-key operation per key tried, so the ring avoids trying
//! every key where it can:
//! - only keys whose modulus matches the value's RSA part are tried;
//! - a caller-held hint (the key that opened the previous item of the same object, since
//!   `seal` uses one key per object) is tried first;
//! - age values cost one X25519 operation per key and stanza, a small fraction of one RSA
//!   decryption; their headers are bounded (`age::MAX_STANZAS`) before anything is parsed.
//!
//! And it bounds what an attacker-supplied object can cost: a [`KeyBudget`] per object (linear
//! in its items, not items × keys), and at most one private-key operation per core at a time in
//! the whole process, whoever asks (reconciles, the HTTP API), so a flood queues instead of
//! starving everything else.

use std::sync::{Arc, Condvar, LazyLock, Mutex};

use super::{KeyId, PublicKey, SealingKey};
use crate::SecretBytes;
use crate::envelope::{
    AGE_NOKEY_HINT, Binding, Format, KUBESEAL_NOKEY_HINT, SealError, age, kubeseal,
};

/// A value opened by the ring.
#[derive(Debug)]
pub struct Opened {
    /// The plaintext.
    pub value: SecretBytes,
    /// The key that opened it.
    pub key: KeyId,
    /// The envelope it was in.
    pub format: Format,
    /// Private-key operations spent (RSA decryptions or X25519 agreements).
    pub attempts: usize,
}

/// Every sealing key a process holds, newest first. The newest seals; any opens, so values sealed
/// before a rotation stay readable.
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
    /// A ring of `keys`, sorted newest first.
    pub fn new(keys: impl IntoIterator<Item = SealingKey>) -> KeyRing {
        let mut ring = KeyRing::default();
        for k in keys {
            ring.insert(k);
        }
        ring
    }

    /// Add a key, keeping newest-first order: by creation time (to the nanosecond where the key
    /// Secret says so), then by key id, so the order never depends on the order keys were found
    /// in (a directory listing, an API list). A key already in the ring is not added twice.
    pub fn insert(&mut self, key: SealingKey) -> bool {
        if self.get(key.id()).is_some() {
            return false;
        }
        let rank = |k: &SealingKey| (k.created(), k.id());
        let pos = self
            .keys
            .iter()
            .position(|k| rank(k) < rank(&key))
            .unwrap_or(self.keys.len());
        self.keys.insert(pos, Arc::new(key));
        true
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &SealingKey> {
        self.keys.iter().map(|k| k.as_ref())
    }

    /// The key with this id.
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

    /// Every key's public parts, newest first.
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
        budget: &mut KeyBudget,
    ) -> Result<Opened, SealError> {
        let raw = crate::objects::decode_sealed_value(value_b64)?;
        match Format::detect(&raw) {
            Format::Kubeseal => self.open_kubeseal(&raw, binding, hint, budget),
            Format::Age => self.open_age(&raw, binding, hint, budget),
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
        budget: &mut KeyBudget,
    ) -> Result<Opened, SealError> {
        let parts = kubeseal::parse(raw)?;
        let label = binding.oaep_label();
        let mut attempts = 0;
        for key in self
            .candidates(*hint)
            .filter(|k| k.rsa().key_size_bytes() == parts.rsa.len())
        {
            budget.spend(RSA_UNITS)?;
            attempts += 1;
            match private_key_work(|| kubeseal::open(key.rsa(), &label, parts)) {
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

    /// The header is scanned within bounds first, then parsed by the age crate at most twice
    /// per value however many keys the ring has: once for the hint key, once for all the others
    /// together (each identity tagged with its key, to know which one opened it).
    fn open_age(
        &self,
        raw: &[u8],
        binding: &Binding<'_>,
        hint: &mut Option<KeyId>,
        budget: &mut KeyBudget,
    ) -> Result<Opened, SealError> {
        let header = age::header(raw).map_err(|e| SealError::MalformedAge(e.to_string()))?;
        let keys: Vec<&SealingKey> = self
            .candidates(*hint)
            .filter(|k| !k.age_identities().is_empty())
            .collect();
        // The unwraps a key may cost: one per stanza of a type it has an identity for.
        let cost = |k: &SealingKey| {
            let x = k
                .age_identity()
                .map_or(0, |_| header.count(age::X25519_STANZA_TAG));
            let pq = k
                .pq_identity()
                .map_or(0, |_| header.count(crate::envelope::pq::STANZA_TAG));
            (x + pq).max(1)
        };
        let split = usize::from(hint.is_some_and(|h| keys.first().is_some_and(|k| k.id() == h)));
        let phases: [&[&SealingKey]; 2] = if split == 1 {
            [&keys[..1], &keys[1..]]
        } else {
            [&keys[..], &[]]
        };
        let mut tried = 0;
        for phase in phases.into_iter().filter(|p| !p.is_empty()) {
            budget.spend(phase.iter().map(|k| cost(k)).sum())?;
            let opened_by = std::sync::atomic::AtomicUsize::new(usize::MAX);
            let tagged: Vec<Tagged<'_>> = phase
                .iter()
                .enumerate()
                .flat_map(|(i, k)| {
                    k.age_identities().into_iter().map({
                        let opened_by = &opened_by;
                        move |inner| Tagged {
                            inner,
                            key: i,
                            opened_by,
                        }
                    })
                })
                .collect();
            let identities: Vec<&dyn ::age::Identity> =
                tagged.iter().map(|t| t as &dyn ::age::Identity).collect();
            match private_key_work(|| age::decrypt(&identities, raw)) {
                Ok(plain) => {
                    let i = opened_by
                        .load(std::sync::atomic::Ordering::Relaxed)
                        .min(phase.len() - 1);
                    let key = phase[i];
                    *hint = Some(key.id());
                    let value = age::check_binding(&plain, binding)?;
                    return Ok(Opened {
                        value,
                        key: key.id(),
                        format: Format::Age,
                        attempts: tried + i + 1,
                    });
                }
                Err(age::OpenFailure::NotARecipient) => tried += phase.len(),
                Err(age::OpenFailure::Tampered) => return Err(SealError::Tampered),
                Err(age::OpenFailure::Malformed(m)) => return Err(SealError::MalformedAge(m)),
            }
        }
        Err(SealError::NoKey {
            tried,
            hint: AGE_NOKEY_HINT,
        })
    }
}

/// The private-key work one object may still cost, in units of one age stanza unwrap (an X25519
/// or ML-KEM-768 + X25519 decapsulation). An RSA decryption counts [`RSA_UNITS`]: an RSA-4096
/// private operation takes as long as about a hundred X25519 ones, so that is generous to RSA.
#[derive(Debug)]
pub struct KeyBudget {
    limit: usize,
    remaining: usize,
}

/// What one RSA private-key operation costs from a [`KeyBudget`]; also the unwraps one age value
/// may cost a key (one per stanza of the key's types, at most [`age::MAX_STANZAS`]).
pub const RSA_UNITS: usize = age::MAX_STANZAS;

impl KeyBudget {
    /// One key attempt per item, plus two searches of the whole ring (values of one object sealed
    /// to different keys around a rotation); an age attempt may unwrap every stanza of the
    /// value's header. Items that open spend one attempt each thanks to the hint; an object of
    /// garbage stops at its first item (see `sealing::open_items`), so this bounds the rest:
    /// linear in the object, never items × keys.
    pub fn for_object(items: usize, ring: &KeyRing) -> KeyBudget {
        KeyBudget::new((items + 2 * ring.len()) * RSA_UNITS)
    }

    /// A budget of `limit` units.
    pub fn new(limit: usize) -> KeyBudget {
        KeyBudget {
            limit,
            remaining: limit,
        }
    }

    fn spend(&mut self, units: usize) -> Result<(), SealError> {
        self.remaining = self
            .remaining
            .checked_sub(units)
            .ok_or(SealError::Budget { limit: self.limit })?;
        Ok(())
    }
}

/// An age identity that records which key (by index) opened the file, so one header parse can
/// try several keys.
struct Tagged<'a> {
    inner: &'a dyn ::age::Identity,
    key: usize,
    opened_by: &'a std::sync::atomic::AtomicUsize,
}

impl ::age::Identity for Tagged<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, ::age::DecryptError>> {
        let r = self.inner.unwrap_stanza(stanza);
        if matches!(r, Some(Ok(_))) {
            self.opened_by
                .store(self.key, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

/// A counting semaphore: private-key operations in flight in this process.
struct Permits {
    free: Mutex<usize>,
    released: Condvar,
    #[cfg(test)]
    in_flight: std::sync::atomic::AtomicUsize,
    #[cfg(test)]
    peak: std::sync::atomic::AtomicUsize,
}

/// About one per core: more in flight only adds queueing inside the CPU.
static PRIVATE_KEY_PERMITS: LazyLock<Permits> = LazyLock::new(|| Permits {
    free: Mutex::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
    released: Condvar::new(),
    #[cfg(test)]
    in_flight: Default::default(),
    #[cfg(test)]
    peak: Default::default(),
});

fn private_key_work<R>(f: impl FnOnce() -> R) -> R {
    let p = &*PRIVATE_KEY_PERMITS;
    {
        let mut free = p.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = p.released.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }
    // Released even if `f` panics, so one bad value cannot wedge the process.
    struct Release<'a>(&'a Permits);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.0.released.notify_one();
        }
    }
    let _release = Release(p);
    #[cfg(test)]
    let _in_flight = InFlight::enter(p);
    f()
}

/// Test instrumentation: operations actually running at once, and their peak.
#[cfg(test)]
struct InFlight<'a>(&'a Permits);

#[cfg(test)]
impl<'a> InFlight<'a> {
    fn enter(p: &'a Permits) -> InFlight<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = p.in_flight.fetch_add(1, SeqCst) + 1;
        p.peak.fetch_max(now, SeqCst);
        InFlight(p)
    }
}

#[cfg(test)]
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
pub(crate) fn private_key_work_peak() -> usize {
    PRIVATE_KEY_PERMITS
        .peak
        .load(std::sync::atomic::Ordering::Relaxed)
}
