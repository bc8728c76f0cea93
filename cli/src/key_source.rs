//! Loading keys: the local key store, key files and manifests, the controller, and the sealing
//! target they make.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sealgate_core::envelope::age::AgeRecipient;
use sealgate_core::keys::store::KeyStore;
use sealgate_core::keys::{KeyRing, PublicKey, SealingKey, secret};
use sealgate_core::sealing::Target;

use crate::args::{PrivateKeySource, PublicKeySource};
use crate::fetch::fetch_certs;
use crate::input::{Input, at, manifest_docs, read_file};

pub fn key_store(dir: Option<&Path>) -> Result<KeyStore> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => dirs::config_dir()
            .map(|d| d.join("sealgate").join("keys"))
            .ok_or_else(|| anyhow!("no configuration directory on this system: pass --keys DIR"))?,
    };
    Ok(KeyStore::new(dir))
}

/// Every key in the store; reports skipped files on stderr.
pub fn load_store(store: &KeyStore) -> Result<KeyRing> {
    let loaded = store.load()?;
    for s in &loaded.skipped {
        eprintln!("note: skipped {s}");
    }
    Ok(loaded.ring)
}

/// Keys from a file: PEM (a private key, optionally with its certificate) or key Secrets.
pub fn keys_from_file(path: &Path) -> Result<Vec<SealingKey>> {
    keys_from_input(&read_file(path)?)
}

/// [`keys_from_file`] of an input already read.
pub fn keys_from_input(input: &Input) -> Result<Vec<SealingKey>> {
    let Some(docs) = manifest_docs(input) else {
        let key = secret::from_pem(&input.bytes, time::OffsetDateTime::now_utc())
            .with_context(|| input.name.clone())?;
        return Ok(vec![key]);
    };
    let mut keys = Vec::new();
    for doc in docs {
        for s in secret::secrets_in(&doc.value) {
            let s = s.map_err(|e| anyhow!("{}: {e}", at(input, &doc)))?;
            match secret::classify(&s) {
                secret::KeySecretKind::Inactive(state) => {
                    eprintln!(
                        "note: {}: skipped key Secret {} labelled {state:?}",
                        input.name,
                        s.meta.name.as_deref().unwrap_or("?")
                    );
                    continue;
                }
                secret::KeySecretKind::NotAKey if !s.data.contains_key("tls.key") => continue,
                _ => {}
            }
            let key = secret::from_secret(&s).map_err(|e| {
                anyhow!(
                    "{}: Secret {}: {e}",
                    at(input, &doc),
                    s.meta.name.as_deref().unwrap_or("?")
                )
            })?;
            keys.push(key);
        }
    }
    if keys.is_empty() {
        bail!(
            "{}: no sealing key found (expected key Secrets with tls.key and tls.crt, or a PEM private key)",
            input.name
        );
    }
    Ok(keys)
}

/// The private keys to open values with: `--private-key` files if given, else the key store.
pub fn load_ring(store_dir: Option<&Path>, src: &PrivateKeySource) -> Result<KeyRing> {
    if !src.private_keys.is_empty() {
        let mut ring = KeyRing::default();
        for p in &src.private_keys {
            for k in keys_from_file(p)? {
                ring.insert(k);
            }
        }
        return Ok(ring);
    }
    let store = key_store(store_dir)?;
    let ring = load_store(&store)?;
    if ring.is_empty() {
        // Only the keys that sealed the values can open them: a new key (`keys init`) never can.
        bail!(
            "no private keys: the key store {} is empty. Only the keys the values were sealed with can open them: import the cluster's (`kubectl get secret -n sealgate-system -l sealgate.dev/sealing-key -o yaml > keys.yaml`, then `sealgate keys import keys.yaml`), or pass --private-key FILE",
            store.dir().display()
        );
    }
    Ok(ring)
}

/// Extra age recipients from `--recipient` and `--recipients-file`.
pub fn extra_recipients(values: &[String], files: &[PathBuf]) -> Result<Vec<AgeRecipient>> {
    let mut out = Vec::new();
    for v in values {
        out.push(sealgate_core::envelope::age::parse_recipient(v).context("--recipient")?);
    }
    for f in files {
        let input = read_file(f)?;
        let text = String::from_utf8_lossy(&input.bytes);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                sealgate_core::envelope::age::parse_recipient(line)
                    .with_context(|| format!("{}:{}", input.name, i + 1))?,
            );
        }
    }
    Ok(out)
}

/// The public keys to seal to: `--cert`, else the key store's newest key.
pub fn target(
    store_dir: Option<&Path>,
    cert: Option<&str>,
    extra: Vec<AgeRecipient>,
    pq: bool,
) -> Result<Target> {
    let key = match cert {
        Some(src) => {
            // kubeseal uses the first certificate of a bundle, and so do we.
            fetch_certs(src)?.swap_remove(0)
        }
        None => {
            let store = key_store(store_dir)?;
            let ring = load_store(&store)?;
            let newest = ring.newest().ok_or_else(|| {
                anyhow!(
                    "no sealing key: the key store {} is empty; run `sealgate keys init`, or pass --cert FILE|URL",
                    store.dir().display()
                )
            })?;
            newest.public().clone()
        }
    };
    key.check_valid_at(time::OffsetDateTime::now_utc())?;
    Ok(Target::with(&key, &extra, pq))
}

pub fn public_target(store_dir: Option<&Path>, src: &PublicKeySource) -> Result<Target> {
    let target = public_target_unpinned(store_dir, src)?;
    if let Some(want) = &src.expect_key_id {
        let Some(got) = target.rsa.as_ref().map(PublicKey::id) else {
            bail!("--expect-key-id: there is no cluster key to check");
        };
        if !got.matches(want) {
            bail!(
                "the key to seal with is {got}, not the expected {want} (--expect-key-id): nothing was sealed. If the cluster's key was renewed, check the new id with `sealgate cert` over a trusted channel"
            );
        }
    }
    Ok(target)
}

fn public_target_unpinned(store_dir: Option<&Path>, src: &PublicKeySource) -> Result<Target> {
    let extra = extra_recipients(&src.recipients, &src.recipients_files)?;
    if let Some(controller) = crate::controller_client::connect(&src.controller)? {
        if src.cert.is_some() {
            bail!("--cert and --controller both name the key to seal with: use one of them");
        }
        let pem = controller.get("/v1/cert.pem")?;
        let key = PublicKey::from_pem_bundle(&pem)
            .with_context(|| {
                format!(
                    "{}: /v1/cert.pem is not a usable certificate",
                    controller.describe()
                )
            })?
            .swap_remove(0);
        key.check_valid_at(time::OffsetDateTime::now_utc())?;
        return Ok(Target::with(&key, &extra, src.pq));
    }
    target(store_dir, src.cert.as_deref(), extra, src.pq)
}
