//! Sealing keys as Kubernetes Secrets: the shape the controller stores them in, the local key
//! store writes, and Bitnami's controller uses (`kubernetes.io/tls`, `tls.key` + `tls.crt`).
//!
//! sealgate writes `tls.key` as PKCS#8 (`PRIVATE KEY`), which Bitnami's controller also reads, so a
//! sealgate key can be handed to a Bitnami controller and vice versa. Bitnami writes PKCS#1
//! (`RSA PRIVATE KEY`); it is re-wrapped as PKCS#8 on import because aws-lc-rs's decrypting key
//! takes PKCS#8 only.

use std::collections::BTreeMap;

use age::secrecy::ExposeSecret;
use age::x25519;
use aws_lc_rs::encoding::AsDer;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{AgeIdentities, KeyError, KeyOrigin, SealingKey, cert};
use crate::SecretBytes;
use crate::envelope::pq;
use crate::objects::{ObjectMeta, Secret};

/// Label on sealgate key Secrets; value `active` while the key is in use.
pub const KEY_LABEL: &str = "sealgate.dev/sealing-key";
/// Bitnami's label on its key Secrets.
pub const BITNAMI_KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// Name of Bitnami's pre-0.9 key Secret, loaded even without the label.
pub const BITNAMI_LEGACY_NAME: &str = "sealed-secrets-key";
/// Annotation carrying a key Secret's id, so a reader can tell keys apart without parsing them.
pub const KEY_ID_ANNOTATION: &str = "sealgate.dev/key-id";
/// Annotation carrying a key's creation time (RFC 3339): the newest key seals.
pub const CREATED_ANNOTATION: &str = "sealgate.dev/created-at";
/// Annotation recording where a key came from (sealgate, bitnami, pem): a stored key Secret
/// carries sealgate's label whatever its origin, so the label alone cannot say.
pub const ORIGIN_ANNOTATION: &str = "sealgate.dev/key-origin";
/// Item holding the age (X25519) identity next to `tls.key`/`tls.crt`.
pub const AGE_KEY_ITEM: &str = "age.key";
/// Item holding the hybrid post-quantum age identity (`AGE-SECRET-KEY-PQ-1…`).
pub const AGE_PQ_KEY_ITEM: &str = "age-pq.key";

/// The Secret name of a key: `sealgate-key-<short id>`.
pub fn secret_name(key: &SealingKey) -> String {
    format!("sealgate-key-{}", key.id().short())
}

/// The key as a `kubernetes.io/tls` Secret. The result holds the private key.
pub fn to_secret(key: &SealingKey, namespace: Option<&str>) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        "tls.crt".to_string(),
        SecretBytes::from(key.public().cert_pem().into_bytes()),
    );
    let key_pem = Zeroizing::new(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        key.pkcs8().to_vec(),
    )));
    data.insert("tls.key".to_string(), SecretBytes::from(key_pem.as_bytes()));
    if let Some(id) = key.age_identity() {
        let s = id.to_string();
        data.insert(
            AGE_KEY_ITEM.to_string(),
            SecretBytes::from(s.expose_secret().as_bytes()),
        );
    }
    if let Some(id) = key.pq_identity() {
        data.insert(
            AGE_PQ_KEY_ITEM.to_string(),
            SecretBytes::from(id.to_secret_string().as_bytes()),
        );
    }
    let mut meta = ObjectMeta {
        name: Some(secret_name(key)),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    };
    meta.labels.insert(KEY_LABEL.into(), "active".into());
    meta.annotations
        .insert(KEY_ID_ANNOTATION.into(), key.id().to_string());
    meta.annotations
        .insert(CREATED_ANNOTATION.into(), cert::fmt_time(key.created()));
    meta.annotations
        .insert(ORIGIN_ANNOTATION.into(), key.origin().as_str().into());
    Secret {
        meta,
        type_: Some("kubernetes.io/tls".into()),
        immutable: None,
        data,
    }
}

/// Whether a Secret is a sealing key, and if so whether it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySecretKind {
    /// Labelled active (sealgate or Bitnami), or Bitnami's legacy unlabelled key.
    Active(KeyOrigin),
    /// Labelled as a key but not `active` (e.g. `compromised`): not loaded.
    Inactive(String),
    /// Any other Secret.
    NotAKey,
}

/// Whether `secret` is a sealing key, by its labels (sealgate's or Bitnami's) or Bitnami's legacy
/// key name.
pub fn classify(secret: &Secret) -> KeySecretKind {
    let labels = &secret.meta.labels;
    for (label, origin) in [
        (KEY_LABEL, KeyOrigin::Generated),
        (BITNAMI_KEY_LABEL, KeyOrigin::Bitnami),
    ] {
        match labels.get(label).map(String::as_str) {
            Some("active") => return KeySecretKind::Active(origin),
            Some(other) => return KeySecretKind::Inactive(other.to_string()),
            None => {}
        }
    }
    if secret.meta.name.as_deref() == Some(BITNAMI_LEGACY_NAME) {
        return KeySecretKind::Active(KeyOrigin::Bitnami);
    }
    KeySecretKind::NotAKey
}

/// Read a key from its Secret (sealgate's or Bitnami's).
pub fn from_secret(secret: &Secret) -> Result<SealingKey, KeyError> {
    let origin = match classify(secret) {
        // A sealgate key Secret records the origin of what it stores.
        KeySecretKind::Active(KeyOrigin::Generated) => secret
            .meta
            .annotations
            .get(ORIGIN_ANNOTATION)
            .and_then(|o| KeyOrigin::parse(o))
            .unwrap_or(KeyOrigin::Generated),
        KeySecretKind::Active(o) => o,
        _ => KeyOrigin::Pem,
    };
    let item = |k: &str| {
        secret.data.get(k).ok_or_else(|| {
            KeyError::Secret(format!(
                "the Secret has no {k:?} item; a sealing key Secret needs tls.key and tls.crt"
            ))
        })
    };
    let pkcs8 = private_key_from_pem(item("tls.key")?.expose())?;
    let cert_der = first_cert(item("tls.crt")?.expose())?;
    let age = AgeIdentities {
        x25519: match secret.data.get(AGE_KEY_ITEM) {
            Some(v) => Some(parse_identity(v.expose())?),
            None => None,
        },
        pq: match secret.data.get(AGE_PQ_KEY_ITEM) {
            Some(v) => Some(parse_pq_identity(v.expose())?),
            None => None,
        },
    };
    let created = match secret.meta.annotations.get(CREATED_ANNOTATION) {
        Some(t) => OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                KeyError::Secret(format!(
                    "annotation {CREATED_ANNOTATION} is not an RFC 3339 time"
                ))
            })?,
        None => cert::parse(&cert_der)?.not_before,
    };
    SealingKey::from_parts(pkcs8, &cert_der, age, created, origin)
}

/// The Secrets in a parsed document: a Secret, or the Secrets of a `v1 List` (what
/// `kubectl get secret -l … -o yaml` prints). Other kinds are skipped.
pub fn secrets_in(value: &Value) -> Vec<Result<Secret, crate::objects::ModelError>> {
    match value.get("kind").and_then(Value::as_str) {
        Some("Secret") => vec![Secret::from_value(value)],
        Some(k) if k.ends_with("List") => value
            .get("items")
            .and_then(Value::as_array)
            .map(|items| items.iter().flat_map(secrets_in).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A key from a PEM file: a private key (PKCS#8 or PKCS#1), optionally its certificate (else a
/// self-signed one is made) and optionally an `AGE-SECRET-KEY-1…` line.
pub fn from_pem(text: &[u8], now: OffsetDateTime) -> Result<SealingKey, KeyError> {
    from_pem_with(text, &[], now).map(|(key, _)| key)
}

/// Where the certificate of a key read from PEM came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// The key's own file.
    File,
    /// `certs[i]` of [`from_pem_with`]: the one whose public key is the key's.
    Paired(usize),
    /// None was given: a self-signed one was made (CN=sealgate, 10 years). No cluster has it.
    Generated,
}

/// [`from_pem`], with certificates from other files to pair the key with: the key's own file
/// first, then the one of `certs` whose public key is the key's, else a new self-signed one.
pub fn from_pem_with(
    text: &[u8],
    certs: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(SealingKey, CertSource), KeyError> {
    let pkcs8 = private_key_from_pem(text)?;
    let line = |prefix: &str| {
        String::from_utf8_lossy(text)
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| Zeroizing::new(l.to_string()))
    };
    let age = line("AGE-SECRET-KEY-1")
        .map(|l| parse_identity(l.as_bytes()))
        .transpose()?;
    let pq = line("AGE-SECRET-KEY-PQ-1")
        .map(|l| parse_pq_identity(l.as_bytes()))
        .transpose()?;
    let with_cert = |der: &[u8]| {
        let created = cert::parse(der)?.not_before;
        let identities = AgeIdentities {
            x25519: age.clone(),
            pq: pq.clone(),
        };
        SealingKey::from_parts(pkcs8.clone(), der, identities, created, KeyOrigin::Pem)
    };
    if let Ok(der) = first_cert(text) {
        return Ok((with_cert(&der)?, CertSource::File));
    }
    for (i, der) in certs.iter().enumerate() {
        match with_cert(der) {
            Ok(key) => return Ok((key, CertSource::Paired(i))),
            // Another key's certificate (or not an RSA one): not this key's pair.
            Err(KeyError::Mismatch | KeyError::Certificate(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let der = cert::self_signed(
        &pkcs8,
        "sealgate",
        now,
        now + time::Duration::days(3650),
        age.as_ref().map(|i| i.to_public()).as_ref(),
        pq.as_ref().map(|i| i.to_public()).as_ref(),
    )?;
    Ok((with_cert(&der)?, CertSource::Generated))
}

/// Whether PEM text holds a private key block (of any kind, encrypted included).
pub fn pem_has_private_key(text: &[u8]) -> bool {
    pem::parse_many(text)
        .is_ok_and(|blocks| blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")))
}

/// The certificates (DER) in PEM text.
pub fn pem_certificates(text: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .map(|blocks| {
            blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(pem::Pem::into_contents)
                .collect()
        })
        .unwrap_or_default()
}

fn private_key_from_pem(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let blocks =
        pem::parse_many(text).map_err(|e| KeyError::PrivateKey(format!("not PEM ({e})")))?;
    for b in blocks {
        match b.tag() {
            "PRIVATE KEY" => return Ok(Zeroizing::new(b.into_contents())),
            "RSA PRIVATE KEY" => {
                let pkcs1 = Zeroizing::new(b.into_contents());
                let pair = aws_lc_rs::rsa::KeyPair::from_der(&pkcs1).map_err(|e| {
                    KeyError::PrivateKey(format!("not a PKCS#1 RSA private key ({e})"))
                })?;
                let pkcs8 = pair
                    .as_der()
                    .map_err(|_| KeyError::PrivateKey("cannot re-encode as PKCS#8".into()))?;
                return Ok(Zeroizing::new(pkcs8.as_ref().to_vec()));
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::PrivateKey(
                    "the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)".into(),
                ));
            }
            _ => {}
        }
    }
    Err(KeyError::PrivateKey(
        "no PEM 'PRIVATE KEY' or 'RSA PRIVATE KEY' block found".into(),
    ))
}

fn first_cert(text: &[u8]) -> Result<Vec<u8>, KeyError> {
    pem::parse_many(text)
        .map_err(|e| KeyError::Certificate(format!("not PEM ({e})")))?
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| KeyError::Certificate("no PEM CERTIFICATE block found".into()))
}

fn parse_pq_identity(bytes: &[u8]) -> Result<pq::Identity, KeyError> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| KeyError::Secret("age-pq.key is not UTF-8".into()))?;
    s.parse::<pq::Identity>().map_err(|_| {
        KeyError::Secret(
            "age-pq.key is not a post-quantum age identity (AGE-SECRET-KEY-PQ-1…)".into(),
        )
    })
}

fn parse_identity(bytes: &[u8]) -> Result<x25519::Identity, KeyError> {
    let s =
        std::str::from_utf8(bytes).map_err(|_| KeyError::Secret("age.key is not UTF-8".into()))?;
    s.trim().parse::<x25519::Identity>().map_err(|_| {
        KeyError::Secret("age.key is not an age X25519 identity (AGE-SECRET-KEY-1…)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testkeys::k2048;

    #[test]
    fn key_secret_round_trip_keeps_everything() {
        let k = k2048();
        let s = to_secret(k, Some("sealgate-system"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(classify(&s), KeySecretKind::Active(KeyOrigin::Generated));
        // Through JSON and back, as the store and the controller do.
        let s2 = Secret::from_value(&s.to_value()).unwrap();
        let back = from_secret(&s2).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.created(), k.created());
        assert!(back.age_identity().is_some());
        assert_eq!(back.origin(), KeyOrigin::Generated);
    }

    #[test]
    fn inactive_and_missing_items() {
        let mut s = to_secret(k2048(), None);
        s.meta.labels.insert(KEY_LABEL.into(), "compromised".into());
        assert_eq!(classify(&s), KeySecretKind::Inactive("compromised".into()));
        s.data.remove("tls.crt");
        let e = from_secret(&s).unwrap_err().to_string();
        assert!(e.contains("tls.crt"), "{e}");
    }

    #[test]
    fn pem_without_certificate_gets_one() {
        let k = k2048();
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", k.pkcs8().to_vec()));
        let back = from_pem(pem_text.as_bytes(), OffsetDateTime::now_utc()).unwrap();
        assert_eq!(back.id(), k.id());
        assert!(back.age_identity().is_none());
        let e = from_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
    }
}
