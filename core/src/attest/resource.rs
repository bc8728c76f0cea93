//! The `sealgate.dev/v1alpha1` `Attestation` resource that carries a signed envelope into the
//! cluster, applied by the GitOps agent with the manifests it covers (docs/decisions.md).
//!
//! One statement per shard: a monorepo's manifests do not fit one Kubernetes object (etcd's
//! limit is 1.5 MiB, and kubectl's client-side apply copies an object into a 256 KiB
//! annotation), so manifests are packed into statements of at most [`SHARD_BYTES`] each, every
//! one signed on its own.

use serde_json::{Value, json};

use super::AttestError;
use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::keys::SigningKey;
use super::statement::{PredicateInfo, Statement};
use crate::manifest::canonical_json;

/// The resource's apiVersion.
pub const API_VERSION: &str = "sealgate.dev/v1alpha1";
/// The resource's kind.
pub const KIND: &str = "Attestation";
/// Label naming the revision an Attestation was made for.
pub const REVISION_LABEL: &str = "sealgate.dev/revision";
/// Manifest bytes per statement: base64 makes the envelope a third larger, and the whole object
/// stays well under both limits above.
pub const SHARD_BYTES: usize = 160 * 1024;

/// Sign `manifests` into Attestation documents, each covering a shard of them.
pub fn sign(
    manifests: Vec<Value>,
    info: &PredicateInfo,
    key: &SigningKey,
) -> Result<Vec<Value>, AttestError> {
    let mut shards: Vec<Vec<Value>> = vec![Vec::new()];
    let mut size = 0;
    for m in manifests {
        let len = canonical_json(&m).len();
        if size + len > SHARD_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += len;
        shards.last_mut().expect("one shard at least").push(m);
    }
    let short: String = info
        .revision
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let revision_label: String = info
        .revision
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect();
    let mut docs = Vec::with_capacity(shards.len());
    for (i, shard) in shards.into_iter().enumerate() {
        let statement = Statement::new(shard, info.clone())?;
        let body = serde_json::to_vec(&statement).expect("a statement serializes");
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &body, key)?;
        docs.push(json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": format!("sealgate-{}-{i:03}", short.to_lowercase()),
                "labels": {REVISION_LABEL: revision_label},
                // Argo CD: before the objects it covers.
                "annotations": {"argocd.argoproj.io/sync-wave": "-1"},
            },
            "spec": {"envelope": envelope},
        }));
    }
    Ok(docs)
}

/// The envelope of an Attestation document, or of a bare DSSE envelope (what `cosign attest
/// --no-upload` and in-toto tools write).
pub fn envelope_of(doc: &Value) -> Result<Envelope, AttestError> {
    let env = if doc.get("kind").and_then(Value::as_str) == Some(KIND) {
        doc.pointer("/spec/envelope")
            .ok_or_else(|| AttestError::Malformed("an Attestation without spec.envelope".into()))?
    } else {
        doc
    };
    serde_json::from_value(env.clone())
        .map_err(|e| AttestError::Malformed(format!("not a DSSE envelope: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::keys::Algorithm;
    use crate::attest::statement::Verdict;

    #[test]
    fn a_large_repository_is_sharded_into_separately_signed_attestations() {
        let key = SigningKey::generate(Algorithm::Ed25519).unwrap();
        let info = PredicateInfo {
            repository: "r".into(),
            revision: "0123456789abcdef0123".into(),
            linted_at: "2026-12-03T00:00:00Z".into(),
            bundle_digest: "00".repeat(32),
            verdict: Verdict::Pass,
        };
        let manifests: Vec<Value> = (0..5000)
            .map(|i| {
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}"), "namespace": "shop"},
                    "data": {"k": "v".repeat(100)}})
            })
            .collect();
        let docs = sign(manifests, &info, &key).unwrap();
        assert!(docs.len() > 1 && docs.len() < 20, "{}", docs.len());
        let mut covered = 0;
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(
                d["metadata"]["name"],
                format!("sealgate-0123456789ab-{i:03}")
            );
            assert!(serde_json::to_vec(d).unwrap().len() < 1024 * 1024);
            assert_eq!(
                d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
                "-1"
            );
            let env = envelope_of(d).unwrap();
            let (body, _) = env.verify(&[key.verifying_key()]).unwrap();
            covered += Statement::parse(&body).unwrap().subject.len();
        }
        assert_eq!(covered, 5000);
    }
}
