//! The Secret a SealedSecret should produce, as a pure function: no API calls, so every case is a
//! unit test. The kube adapter (next) applies it with server-side apply.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use sealgate_core::keys::secret::{self, KeySecretKind};
use sealgate_core::keys::{KeyRing, SealingKey};
use sealgate_core::sealing::{self, ModelError, UnsealError};

use crate::crd::{Reason, SealedSecret, Source};

/// Annotation on the Secret: SHA-256 of everything in the SealedSecret that shapes the Secret.
/// When it matches, a restart does not unseal again (zero private-key operations).
pub const SEALED_HASH_ANNOTATION: &str = "sealgate.dev/sealed-hash";

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Unseal(#[from] UnsealError),
    #[error("the SealedSecret has no {0} (it has not been stored by the API server)")]
    Missing(&'static str),
    /// The Secret would look like a sealing key to the key manager (its labels or Bitnami's
    /// legacy key name): a SealedSecret must never plant a key.
    #[error(
        "the unsealed Secret would be taken for a sealing key ({0}): sealing keys are not delivered through SealedSecrets; remove that from the template or rename the object"
    )]
    KeyShaped(String),
}

impl DesiredError {
    /// A short, bounded reason for the status condition and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            DesiredError::Model(_) | DesiredError::Missing(_) => Reason::InvalidSealedSecret,
            DesiredError::Unseal(UnsealError::Items { .. }) => Reason::UnsealFailed,
            DesiredError::Unseal(_) => Reason::Unsupported,
            DesiredError::KeyShaped(_) => Reason::RefusedTemplate,
        }
    }
}

/// The core model of a SealedSecret resource (top-level metadata, spec) for sealing logic.
fn model(ss: &SealedSecret, source: Source) -> Result<sealing::SealedSecret, DesiredError> {
    let mut v = serde_json::to_value(ss).map_err(|e| ModelError::Field {
        field: "spec".into(),
        problem: e.to_string(),
    })?;
    v["apiVersion"] = source.api_version().into();
    Ok(sealing::SealedSecret::from_value(&v)?)
}

/// SHA-256 (hex) over the parts of a SealedSecret that determine its Secret: name, namespace,
/// top-level annotations (scope), encryptedData and template. Status and other metadata do not count.
pub fn sealed_hash(ss: &SealedSecret, source: Source) -> Result<String, DesiredError> {
    Ok(hash_of(&model(ss, source)?))
}

fn hash_of(m: &sealing::SealedSecret) -> String {
    let canonical = serde_json::json!({
        "name": m.name(), "namespace": m.namespace(), "annotations": m.meta.annotations,
        "encryptedData": m.encrypted_data, "template": m.to_value()["spec"]["template"],
    });
    sealgate_core::manifest::sha256_hex(canonical.to_string().as_bytes())
}

/// Label on every Secret the controller writes: the controller caches (watches) exactly these,
/// so a restart confirms that unchanged Secrets are current from one LIST, with no GET each.
pub const UNSEALED_LABEL: &str = "sealgate.dev/unsealed";

/// Annotation on the Secret: `<key id>:<HMAC-SHA256 of its data>`, keyed by a secret derived from
/// that sealing key. A hand edit of the data breaks it, so the next resync repairs the Secret
/// without unsealing unchanged ones; without the sealing key nobody can forge it, and unlike a
/// plain hash it gives no offline guessing oracle to readers of the Secret's metadata.
pub const DATA_MAC_ANNOTATION: &str = "sealgate.dev/data-mac";

const DATA_MAC_PURPOSE: &str = "sealgate/v1 secret-data-mac";

fn data_key(key: &SealingKey) -> aws_lc_rs::hmac::Key {
    aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        key.derive_secret(DATA_MAC_PURPOSE).as_ref(),
    )
}

/// Length-prefixed item names and values, so no two different maps encode alike.
fn data_encoding(data: &BTreeMap<String, ByteString>) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::new());
    for (k, v) in data {
        for part in [k.as_bytes(), &v.0] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The data MAC annotation value, with the newest key (`None` without keys).
pub fn data_mac(ring: &KeyRing, data: &BTreeMap<String, ByteString>) -> Option<String> {
    let key = ring.newest()?;
    let tag = aws_lc_rs::hmac::sign(&data_key(key), &data_encoding(data));
    Some(format!(
        "{}:{}",
        key.id().short(),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Whether the Secret's data is what the controller wrote (checked in constant time).
fn data_mac_valid(secret: &Secret, ring: &KeyRing) -> bool {
    data_mac_key(secret, ring).is_some()
}

/// The id (as written in the annotation) of the key whose data MAC verifies the Secret's data.
fn data_mac_key<'a>(secret: &'a Secret, ring: &KeyRing) -> Option<&'a str> {
    let (id, tag) = secret
        .annotations()
        .get(DATA_MAC_ANNOTATION)?
        .split_once(':')?;
    let key = ring.find(id).and_then(|id| ring.get(id))?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    aws_lc_rs::hmac::verify(&data_key(key), &data_encoding(data), &tag)
        .is_ok()
        .then_some(id)
}

/// Whether an existing Secret already holds what this SealedSecret produces: the sealed input is
/// unchanged (hash), the data was not edited since (MAC) and it still carries the controller's
/// label. No private-key operation.
pub fn up_to_date(existing: &Secret, ss: &SealedSecret, source: Source, ring: &KeyRing) -> bool {
    labelled_for(existing, ss, source) && data_mac_valid(existing, ring)
}

/// The controller's label, and the hash of this SealedSecret's current sealed input.
fn labelled_for(s: &Secret, ss: &SealedSecret, source: Source) -> bool {
    let recorded = s.annotations().get(SEALED_HASH_ANNOTATION);
    let labelled = s.labels().get(UNSEALED_LABEL).is_some_and(|v| v == "true");
    labelled && matches!((recorded, sealed_hash(ss, source)), (Some(r), Ok(h)) if *r == h)
}

/// Set only by [`for_cache`] on the cache's copy (which keeps no other annotation but the
/// sealed hash): the id of the key whose data MAC was verified when the Secret was cached.
const CACHE_VERIFIED_MAC: &str = "sealgate.dev/cache-verified-mac-key";

/// What the Secret cache keeps of a Secret labelled as the controller's: its identity, labels,
/// owner references and sealed hash, never its data (anyone who may create Secrets can add the
/// label, and the cache must not hold their plaintext or grow with it). The data MAC is checked
/// here, once per change of the Secret, and the key that verified it kept.
pub fn for_cache(s: &Secret, ring: &KeyRing) -> Secret {
    let mut annotations = BTreeMap::new();
    if let Some(h) = s.annotations().get(SEALED_HASH_ANNOTATION) {
        annotations.insert(SEALED_HASH_ANNOTATION.to_string(), h.clone());
    }
    if let Some(id) = data_mac_key(s, ring) {
        annotations.insert(CACHE_VERIFIED_MAC.to_string(), id.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: s.metadata.name.clone(),
            namespace: s.metadata.namespace.clone(),
            uid: s.metadata.uid.clone(),
            resource_version: s.metadata.resource_version.clone(),
            labels: s.metadata.labels.clone(),
            owner_references: s.metadata.owner_references.clone(),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    }
}

/// [`up_to_date`] for the cache's copy (from [`for_cache`]): the MAC was verified when cached,
/// by a key still in the ring.
pub fn cached_up_to_date(
    cached: &Secret,
    ss: &SealedSecret,
    source: Source,
    ring: &KeyRing,
) -> bool {
    let verified = cached
        .annotations()
        .get(CACHE_VERIFIED_MAC)
        .is_some_and(|id| ring.find(id).is_some());
    verified && cached.data.is_none() && labelled_for(cached, ss, source)
}

/// Checked before any private-key work, with the key manager's own test
/// ([`secret::classify`]) on the Secret this would create. In every namespace, not only the
/// controller's: the labels mean nothing elsewhere, and a namespace can become the controller's.
fn refuse_key_shaped(name: &str, m: &sealing::SealedSecret) -> Result<(), DesiredError> {
    let mut would_be = sealing::Secret::default();
    would_be.meta.name = Some(name.to_string());
    would_be.meta.labels = m.template.meta.labels.clone();
    if secret::classify(&would_be) == KeySecretKind::NotAKey {
        return Ok(());
    }
    // Said for a person: the label that makes it a key, else the name.
    let why = [secret::KEY_LABEL, secret::BITNAMI_KEY_LABEL]
        .into_iter()
        .find(|l| would_be.meta.labels.contains_key(*l))
        .map_or_else(
            || {
                format!(
                    "the name {}, Bitnami's legacy key",
                    secret::BITNAMI_LEGACY_NAME
                )
            },
            |l| format!("template label {l}"),
        );
    Err(DesiredError::KeyShaped(why))
}

/// The Secret to apply: template labels, annotations, type and immutability; the SealedSecret's
/// name and namespace; a controller ownerReference; the sealed-input hash; the unsealed values.
/// All or nothing: one item that does not open fails the whole object. Also returns the
/// private-key operations spent.
pub fn desired_secret(
    ss: &SealedSecret,
    source: Source,
    ring: &KeyRing,
) -> Result<(Secret, usize), DesiredError> {
    let name = ss
        .metadata
        .name
        .clone()
        .ok_or(DesiredError::Missing("metadata.name"))?;
    let uid = ss
        .metadata
        .uid
        .clone()
        .ok_or(DesiredError::Missing("metadata.uid"))?;
    let m = model(ss, source)?;
    refuse_key_shaped(&name, &m)?;
    let hash = hash_of(&m);
    let unsealed = sealing::unseal(&m, ring)?;
    let (s, ops) = (unsealed.secret, unsealed.attempts);
    let mut annotations: BTreeMap<String, String> = s.meta.annotations.clone();
    annotations.insert(SEALED_HASH_ANNOTATION.into(), hash);
    let data = s
        .data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
        .collect();
    if let Some(mac) = data_mac(ring, &data) {
        annotations.insert(DATA_MAC_ANNOTATION.into(), mac);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ss.metadata.namespace.clone(),
            labels: Some({
                let mut labels = s.meta.labels.clone();
                labels.insert(UNSEALED_LABEL.into(), "true".into());
                labels
            }),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: source.api_version().into(),
                kind: "SealedSecret".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: s.type_.clone(),
        immutable: s.immutable,
        data: Some(data),
        ..Secret::default()
    };
    Ok((secret, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: Source = Source::Sealgate;
    use sealgate_core::envelope::Scope;
    use sealgate_core::keys::{KeyGenOptions, SealingKey};

    fn key() -> SealingKey {
        SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            ..KeyGenOptions::default()
        })
        .unwrap()
    }

    /// A SealedSecret resource as the API server returns it, sealed for real.
    fn sealed_resource(k: &SealingKey) -> SealedSecret {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "shop"}, "annotations": {"team": "payments"}},
            "type": "Opaque", "stringData": {"password": "hunter2", "user": "shop"}
        });
        let mut v = sealgate_testkit::sealed::seal(k, secret, Some(Scope::Strict)).to_value();
        v["metadata"]["uid"] = "8d1c-uid".into();
        v["metadata"]["generation"] = 3.into();
        serde_json::from_value(v).unwrap()
    }

    fn ring(k: SealingKey) -> KeyRing {
        KeyRing::new([k])
    }

    /// A SealedSecret in the controller's namespace whose Secret would be a sealing key (an
    /// attacker's key pair, sealed with the cluster's public key) is refused before any
    /// private-key work, and nothing is created.
    #[test]
    fn key_shaped_templates_are_refused() {
        let k = key();
        let ring = ring(key_like(&k));
        let plant = |name: &str, labels: serde_json::Value| {
            let secret = serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": "sealgate-system", "labels": labels},
                "type": "kubernetes.io/tls", "stringData": {"tls.key": "attacker's", "tls.crt": "attacker's"}
            });
            let mut v = sealgate_testkit::sealed::seal(&k, secret, Some(Scope::Strict)).to_value();
            v["metadata"]["uid"] = "uid".into();
            let ss: SealedSecret = serde_json::from_value(v).unwrap();
            desired_secret(&ss, S, &ring).unwrap_err()
        };
        for (name, labels, what) in [
            (
                "k1",
                serde_json::json!({"sealgate.dev/sealing-key": "active"}),
                "sealgate.dev/sealing-key",
            ),
            (
                "k2",
                serde_json::json!({"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}),
                "sealedsecrets.bitnami.com/sealed-secrets-key",
            ),
            (
                "sealed-secrets-key",
                serde_json::json!({}),
                "Bitnami's legacy key",
            ),
        ] {
            let e = plant(name, labels);
            assert_eq!(e.reason(), Reason::RefusedTemplate);
            let msg = e.to_string();
            assert!(msg.contains(what) && !msg.contains("attacker"), "{msg}");
        }
    }

    fn key_like(k: &SealingKey) -> SealingKey {
        sealgate_core::keys::secret::from_secret(&sealgate_core::keys::secret::to_secret(k, None))
            .unwrap()
    }

    #[test]
    fn the_desired_secret() {
        let k = key();
        let ss = sealed_resource(&k);
        let ring = ring(k);
        let s = desired_secret(&ss, S, &ring).unwrap().0;
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(s.metadata.labels.as_ref().unwrap()["app"], "shop");
        let ann = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["team"], "payments");
        assert_eq!(ann[SEALED_HASH_ANNOTATION], sealed_hash(&ss, S).unwrap());
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("SealedSecret", "db", "8d1c-uid", Some(true))
        );
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(s.data.as_ref().unwrap()["password"].0, b"hunter2");
        assert!(up_to_date(&s, &ss, S, &ring));
    }

    #[test]
    fn a_hand_edit_of_the_data_is_detected_without_unsealing() {
        let k = key();
        let ss = sealed_resource(&k);
        let ring = ring(k);
        let s = desired_secret(&ss, S, &ring).unwrap().0;
        assert!(up_to_date(&s, &ss, S, &ring));
        let mut edited = s.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"changed".to_vec()));
        assert!(!up_to_date(&edited, &ss, S, &ring), "edited value");
        let mut added = s.clone();
        added
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), ByteString(b"x".to_vec()));
        assert!(!up_to_date(&added, &ss, S, &ring), "added item");
        let mut forged = s.clone();
        forged
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DATA_MAC_ANNOTATION.into(), "abc:AAAA".into());
        assert!(!up_to_date(&forged, &ss, S, &ring), "MAC by an unknown key");
        assert!(
            !up_to_date(&s, &ss, S, &KeyRing::new([key()])),
            "the MAC key is gone from the ring"
        );
    }

    #[test]
    fn the_hash_follows_what_shapes_the_secret() {
        let k = key();
        let ss = sealed_resource(&k);
        let h = sealed_hash(&ss, S).unwrap();
        assert_eq!(h, sealed_hash(&ss.clone(), S).unwrap(), "stable");
        let mut status_only = ss.clone();
        status_only.status = Some(crate::crd::SealedSecretStatus {
            observed_generation: Some(3),
            conditions: vec![],
        });
        status_only.metadata.generation = Some(4);
        assert_eq!(
            h,
            sealed_hash(&status_only, S).unwrap(),
            "status and generation do not count"
        );
        let mut value = ss.clone();
        value
            .spec
            .encrypted_data
            .insert("user".into(), ss.spec.encrypted_data["password"].clone());
        assert_ne!(h, sealed_hash(&value, S).unwrap());
        let mut template = ss.clone();
        template.spec.template.as_mut().unwrap().type_ = Some("kubernetes.io/basic-auth".into());
        assert_ne!(h, sealed_hash(&template, S).unwrap());
        let mut scope = ss.clone();
        scope
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("sealgate.dev/scope".into(), "cluster-wide".into());
        assert_ne!(h, sealed_hash(&scope, S).unwrap());
    }

    #[test]
    fn failures_are_typed_and_carry_no_value() {
        let k = key();
        let mut ss = sealed_resource(&k);
        ss.spec
            .encrypted_data
            .insert("password".into(), "AgAAAA==".into());
        let e = desired_secret(&ss, S, &ring(key())).unwrap_err();
        assert_eq!(e.reason(), Reason::UnsealFailed);
        let msg = e.to_string();
        assert!(
            msg.contains("1 of 2 item(s) could not be unsealed") && !msg.contains("hunter2"),
            "{msg}"
        );
        let mut no_uid = sealed_resource(&k);
        no_uid.metadata.uid = None;
        assert_eq!(
            desired_secret(&no_uid, S, &ring(k)).unwrap_err().reason(),
            Reason::InvalidSealedSecret
        );
    }
}
