//! The Secret a SealedSecret should produce, as a pure function: no API calls, so every case is a
//! unit test. The kube adapter (next) applies it with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sealgate_core::keys::KeyRing;
use sealgate_core::sealed::{self, ModelError, UnsealError};

use crate::crd::SealedSecret;

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
}

impl DesiredError {
    /// A short, bounded reason for the status condition and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DesiredError::Model(_) | DesiredError::Missing(_) => "InvalidSealedSecret",
            DesiredError::Unseal(UnsealError::Items { .. }) => "UnsealFailed",
            DesiredError::Unseal(_) => "Unsupported",
        }
    }
}

/// The core model of a SealedSecret resource (top-level metadata, spec) for sealing logic.
fn model(ss: &SealedSecret) -> Result<sealed::SealedSecret, DesiredError> {
    let v = serde_json::to_value(ss).map_err(|e| ModelError::Field {
        field: "spec".into(),
        problem: e.to_string(),
    })?;
    Ok(sealed::SealedSecret::from_value(&v)?)
}

/// SHA-256 (hex) over the parts of a SealedSecret that determine its Secret: name, namespace,
/// top-level annotations (scope), encryptedData and template. Status and other metadata do not count.
pub fn sealed_hash(ss: &SealedSecret) -> Result<String, DesiredError> {
    Ok(hash_of(&model(ss)?))
}

fn hash_of(m: &sealed::SealedSecret) -> String {
    let canonical = serde_json::json!({
        "name": m.name(), "namespace": m.namespace(), "annotations": m.meta.annotations,
        "encryptedData": m.encrypted_data, "template": m.to_value()["spec"]["template"],
    });
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether an existing Secret already holds what this SealedSecret produces.
pub fn up_to_date(existing: &Secret, ss: &SealedSecret) -> bool {
    let recorded = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SEALED_HASH_ANNOTATION));
    matches!((recorded, sealed_hash(ss)), (Some(r), Ok(h)) if *r == h)
}

/// The Secret to apply: template labels, annotations, type and immutability; the SealedSecret's
/// name and namespace; a controller ownerReference; the sealed-input hash; the unsealed values.
/// All or nothing: one item that does not open fails the whole object.
pub fn desired_secret(ss: &SealedSecret, ring: &KeyRing) -> Result<Secret, DesiredError> {
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
    let m = model(ss)?;
    let hash = hash_of(&m);
    let unsealed = sealed::unseal(&m, ring)?;
    let s = unsealed.secret;
    let mut annotations: BTreeMap<String, String> = s.meta.annotations.clone();
    annotations.insert(SEALED_HASH_ANNOTATION.into(), hash);
    let data = s
        .data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
        .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ss.metadata.namespace.clone(),
            labels: (!s.meta.labels.is_empty()).then(|| s.meta.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "sealgate.dev/v1alpha1".into(),
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_core::keys::{KeyGenOptions, SealingKey};
    use sealgate_core::seal::Scope;
    use sealgate_core::sealed::{SealOptions, Target};

    fn key() -> SealingKey {
        SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            ..KeyGenOptions::default()
        })
        .unwrap()
    }

    /// A SealedSecret resource as the API server returns it, sealed for real.
    fn sealed_resource(k: &SealingKey) -> SealedSecret {
        let plain = sealed::Secret::from_value(&serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "shop"}, "annotations": {"team": "payments"}},
            "type": "Opaque", "stringData": {"password": "hunter2", "user": "shop"}
        }))
        .unwrap();
        let ss = sealed::seal_secret(
            &plain,
            &Target::new(k.public(), &[]),
            &SealOptions {
                scope: Some(Scope::Strict),
                ..SealOptions::default()
            },
        )
        .unwrap();
        let mut v = ss.to_value();
        v["metadata"]["uid"] = "8d1c-uid".into();
        v["metadata"]["generation"] = 3.into();
        serde_json::from_value(v).unwrap()
    }

    fn ring(k: SealingKey) -> KeyRing {
        KeyRing::new([k])
    }

    #[test]
    fn the_desired_secret() {
        let k = key();
        let ss = sealed_resource(&k);
        let s = desired_secret(&ss, &ring(k)).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(s.metadata.labels.as_ref().unwrap()["app"], "shop");
        let ann = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["team"], "payments");
        assert_eq!(ann[SEALED_HASH_ANNOTATION], sealed_hash(&ss).unwrap());
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
        assert!(up_to_date(&s, &ss));
    }

    #[test]
    fn the_hash_follows_what_shapes_the_secret() {
        let k = key();
        let ss = sealed_resource(&k);
        let h = sealed_hash(&ss).unwrap();
        assert_eq!(h, sealed_hash(&ss.clone()).unwrap(), "stable");
        let mut status_only = ss.clone();
        status_only.status = Some(crate::crd::SealedSecretStatus {
            observed_generation: Some(3),
            conditions: vec![],
        });
        status_only.metadata.generation = Some(4);
        assert_eq!(
            h,
            sealed_hash(&status_only).unwrap(),
            "status and generation do not count"
        );
        let mut value = ss.clone();
        value
            .spec
            .encrypted_data
            .insert("user".into(), ss.spec.encrypted_data["password"].clone());
        assert_ne!(h, sealed_hash(&value).unwrap());
        let mut template = ss.clone();
        template.spec.template.as_mut().unwrap().type_ = Some("kubernetes.io/basic-auth".into());
        assert_ne!(h, sealed_hash(&template).unwrap());
        let mut scope = ss.clone();
        scope
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("sealgate.dev/scope".into(), "cluster-wide".into());
        assert_ne!(h, sealed_hash(&scope).unwrap());
    }

    #[test]
    fn failures_are_typed_and_carry_no_value() {
        let k = key();
        let mut ss = sealed_resource(&k);
        ss.spec
            .encrypted_data
            .insert("password".into(), "AgAAAA==".into());
        let e = desired_secret(&ss, &ring(key())).unwrap_err();
        assert_eq!(e.reason(), "UnsealFailed");
        let msg = e.to_string();
        assert!(
            msg.contains("2 of 2 item(s) could not be unsealed") && !msg.contains("hunter2"),
            "{msg}"
        );
        let mut no_uid = sealed_resource(&k);
        no_uid.metadata.uid = None;
        assert_eq!(
            desired_secret(&no_uid, &ring(k)).unwrap_err().reason(),
            "InvalidSealedSecret"
        );
    }
}
