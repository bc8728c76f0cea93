//! The local key store: a directory of key Secrets (`sealgate-key-<id>.yaml`, mode 0600), the
//! same shape the controller keeps in the cluster, so `kubectl apply -f <store>` restores a
//! cluster's keys and a cluster backup can be imported here.

use std::path::{Path, PathBuf};

use super::secret::{self, KeySecretKind};
use super::{KeyError, KeyRing, SealingKey};
use crate::manifest::{self, ParseLimits};
use crate::objects::Secret;

/// The local key store: one key Secret per file in a directory (the shape the controller keeps
/// in the cluster), for `sealgate keys` and offline `unseal`.
pub struct KeyStore {
    dir: PathBuf,
}

/// A loaded store: the ring and what was skipped (with the reason).
pub struct Loaded {
    /// The keys that loaded.
    pub ring: KeyRing,
    /// Files that are not keys or could not be read, each with why.
    pub skipped: Vec<String>,
}

impl KeyStore {
    /// The store in `dir` (not read until used).
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, problem: impl Into<String>) -> KeyError {
        KeyError::Store {
            path: self.dir.display().to_string(),
            problem: problem.into(),
        }
    }

    /// Every active key in the store. A missing directory is an empty store.
    pub fn load(&self) -> Result<Loaded, KeyError> {
        let mut ring = KeyRing::default();
        let mut skipped = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded { ring, skipped });
            }
            Err(e) => return Err(self.err(e.to_string())),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        paths.sort();
        for path in paths {
            let name = path.display().to_string();
            let bytes = std::fs::read(&path).map_err(|e| self.err(format!("{name}: {e}")))?;
            let docs = manifest::parse(&bytes, &ParseLimits::default())
                .map_err(|e| self.err(format!("{name}:{e}")))?;
            for doc in docs {
                let secret = Secret::from_value(&doc.value)
                    .map_err(|e| self.err(format!("{name}:{}: {e}", doc.line)))?;
                match secret::classify(&secret) {
                    KeySecretKind::Active(_) => {}
                    KeySecretKind::Inactive(state) => {
                        skipped.push(format!("{name}: key labelled {state:?}, not active"));
                        continue;
                    }
                    KeySecretKind::NotAKey => {
                        skipped.push(format!("{name}: not a sealing key Secret"));
                        continue;
                    }
                }
                let key = secret::from_secret(&secret)
                    .map_err(|e| self.err(format!("{name}:{}: {e}", doc.line)))?;
                ring.insert(key);
            }
        }
        Ok(Loaded { ring, skipped })
    }

    /// Write a key into the store (directory 0700, file 0600, atomically). Returns its path.
    pub fn add(&self, key: &SealingKey) -> Result<PathBuf, KeyError> {
        create_private_dir(&self.dir).map_err(|e| self.err(e.to_string()))?;
        let path = self.dir.join(format!("{}.yaml", secret::secret_name(key)));
        let value = secret::to_secret(key, None).to_value();
        let text = zeroize::Zeroizing::new(manifest::to_yaml_stream([&value]));
        crate::fsutil::write_atomic(&path, text.as_bytes(), Some(0o600))
            .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
        Ok(path)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testkeys::{k2048, k2048_b};

    #[test]
    fn add_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys"));
        assert!(store.load().unwrap().ring.is_empty());
        let p = store.add(k2048()).unwrap();
        store.add(k2048_b()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let loaded = store.load().unwrap();
        assert_eq!(loaded.ring.len(), 2);
        // k2048_b was created a day later: it is the newest.
        assert_eq!(loaded.ring.newest().unwrap().id(), k2048_b().id());
    }

    /// `keys init` then `keys rotate` within one second: the second key is the newest, whatever
    /// the order of the files (key ids are random; the tie went to the lower id before, and
    /// reseal then re-sealed to the old key). Sub-second creation times survive the store.
    #[test]
    fn keys_made_in_one_second_keep_their_order() {
        use crate::keys::{KeyGenOptions, SealingKey};
        let second = time::macros::datetime!(2026-12-01 10:00:00 UTC);
        for round in 0..8 {
            let make = |ms: i64| {
                SealingKey::generate(&KeyGenOptions {
                    rsa_bits: 2048,
                    now: second + time::Duration::milliseconds(ms),
                    ..KeyGenOptions::default()
                })
                .unwrap()
            };
            let (first, then) = (make(100 + round), make(900 - round));
            let dir = tempfile::tempdir().unwrap();
            let store = KeyStore::new(dir.path().join("keys"));
            store.add(&first).unwrap();
            store.add(&then).unwrap();
            let ring = store.load().unwrap().ring;
            assert_eq!(ring.newest().unwrap().id(), then.id(), "round {round}");
            assert_eq!(ring.iter().nth(1).unwrap().id(), first.id());
            // Both certificates start in the same second: only the Secret's annotation tells.
            assert_eq!(ring.newest().unwrap().created(), then.created());
        }
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let e = KeyStore::new(dir.path()).load().err().unwrap().to_string();
        assert!(e.contains("bad.yaml:"), "{e}");
    }
}
