//! The in-toto Statement v1 `sealgate lint --attest` signs: one subject per linted object, named
//! `GROUP/KIND/NAMESPACE/NAME` (`core` for the core group, an empty namespace for cluster-scoped
//! kinds) with the SHA-256 of the object's canonical JSON, and a predicate that records the Git
//! revision, the repository, the policy bundle's digest, the verdict and the manifests themselves
//! (admission checks an object against what its manifest declared, so the digest alone is not
//! enough).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AttestError;
use crate::manifest::{canonical_json, sha256_hex};

/// in-toto's statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// sealgate's predicate type.
pub const PREDICATE_TYPE: &str = "https://sealgate.dev/attestation/lint/v1";

/// An in-toto Statement v1 with sealgate's predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// The objects it covers.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What was checked, where, and the result.
    pub predicate: Predicate,
}

/// One object (an in-toto ResourceDescriptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `GROUP/KIND/NAMESPACE/NAME`.
    pub name: String,
    /// `{"sha256": hex}` of the manifest's canonical JSON.
    pub digest: std::collections::BTreeMap<String, String>,
}

/// The lint verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation failed the run.
    Pass,
    /// Some did.
    Fail,
}

/// sealgate's predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// The repository the manifests come from (e.g. its clone URL).
    pub repository: String,
    /// The Git revision (commit) they were rendered from.
    pub revision: String,
    /// When lint ran (RFC 3339).
    pub linted_at: String,
    /// `{"sha256": hex}` of the policy bundle (`Bundle::digest`).
    pub policy_bundle: std::collections::BTreeMap<String, String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The tool and version.
    pub linter: String,
    /// The manifests, in subject order.
    pub manifests: Vec<Value>,
}

/// An object's subject name: `GROUP/KIND/NAMESPACE/NAME` (`core` for the core group).
pub fn subject_name(group: &str, kind: &str, namespace: &str, name: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{kind}/{namespace}/{name}")
}

/// Whether a rendered document is an object the GitOps agent applies to the cluster, and so one
/// an attestation covers: a Kubernetes object with a kind, not kustomize's own configuration
/// (instructions to kustomize, never applied) nor an AdmissionReview (a recorded request).
pub fn is_applied_object(doc: &Value) -> bool {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    let api = s("apiVersion");
    !s("kind").is_empty()
        && !api.starts_with("kustomize.config.k8s.io/")
        && !api.starts_with("admission.k8s.io/")
}

/// The subject name of a manifest, from its apiVersion, kind and metadata.
pub fn subject_of(manifest: &Value) -> Result<String, AttestError> {
    let s = |p: &str| manifest.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (kind, name) = (s("/kind"), s("/metadata/name"));
    if kind.is_empty() || name.is_empty() {
        return Err(AttestError::Malformed(
            "an object without a kind or metadata.name cannot be attested".into(),
        ));
    }
    let group = s("/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
    Ok(subject_name(group, kind, s("/metadata/namespace"), name))
}

impl Statement {
    /// The statement for `manifests` (plain Secrets are refused: their values would be copied
    /// into the attestation).
    pub fn new(manifests: Vec<Value>, predicate: PredicateInfo) -> Result<Statement, AttestError> {
        let mut subject = Vec::with_capacity(manifests.len());
        for m in &manifests {
            if m.get("kind").and_then(Value::as_str) == Some("Secret")
                && m.get("apiVersion").and_then(Value::as_str) == Some("v1")
            {
                return Err(AttestError::Malformed(format!(
                    "{} is a plain Secret: attesting it would copy its values into the attestation; seal it (`sealgate seal`)",
                    subject_of(m)?
                )));
            }
            subject.push(Subject {
                name: subject_of(m)?,
                digest: [("sha256".to_string(), sha256_hex(&canonical_json(m)))].into(),
            });
        }
        Ok(Statement {
            type_: STATEMENT_TYPE.into(),
            subject,
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Predicate {
                repository: predicate.repository,
                revision: predicate.revision,
                linted_at: predicate.linted_at,
                policy_bundle: [("sha256".to_string(), predicate.bundle_digest)].into(),
                verdict: predicate.verdict,
                linter: format!("sealgate {}", env!("CARGO_PKG_VERSION")),
                manifests,
            },
        })
    }

    /// Read a statement and check it is whole: sealgate's types, and each manifest has the
    /// subject name and digest at its index.
    pub fn parse(json: &[u8]) -> Result<Statement, AttestError> {
        let st: Statement = serde_json::from_slice(json)
            .map_err(|e| AttestError::Malformed(format!("the statement: {e}")))?;
        if st.type_ != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
            return Err(AttestError::Malformed(format!(
                "a {} statement with predicate {} is not a sealgate attestation",
                st.type_, st.predicate_type
            )));
        }
        if st.subject.len() != st.predicate.manifests.len() {
            return Err(AttestError::Malformed(
                "subjects and manifests differ in number".into(),
            ));
        }
        for (s, m) in st.subject.iter().zip(&st.predicate.manifests) {
            let digest = sha256_hex(&canonical_json(m));
            if s.name != subject_of(m)? || s.digest.get("sha256") != Some(&digest) {
                return Err(AttestError::Malformed(format!(
                    "subject {} does not match its manifest",
                    s.name
                )));
            }
        }
        Ok(st)
    }

    /// The manifest attested for `subject`, if this statement covers it.
    pub fn manifest_for(&self, subject: &str) -> Option<&Value> {
        self.subject
            .iter()
            .position(|s| s.name == subject)
            .map(|i| &self.predicate.manifests[i])
    }
}

/// What the predicate records besides the manifests.
#[derive(Debug, Clone)]
pub struct PredicateInfo {
    /// The repository.
    pub repository: String,
    /// The Git revision.
    pub revision: String,
    /// When lint ran (RFC 3339).
    pub linted_at: String,
    /// The policy bundle's SHA-256 (hex).
    pub bundle_digest: String,
    /// The verdict.
    pub verdict: Verdict,
}

#[cfg(test)]
mod tests {
    #[test]
    fn applied_objects_are_kubernetes_objects_not_kustomize_or_admission_documents() {
        use super::is_applied_object as applied;
        use serde_json::json;
        assert!(applied(
            &json!({"apiVersion": "apps/v1", "kind": "Deployment"})
        ));
        assert!(applied(
            &json!({"apiVersion": "sealgate.dev/v1alpha1", "kind": "SealedSecret"})
        ));
        assert!(!applied(
            &json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"})
        ));
        assert!(!applied(
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
        ));
        assert!(
            !applied(&json!({"image": {"tag": "1.0"}})),
            "Helm values have no kind"
        );
        assert!(!applied(&json!({"apiVersion": "v1", "kind": ""})));
    }

    use super::*;
    use serde_json::json;

    fn info() -> PredicateInfo {
        PredicateInfo {
            repository: "https://git.example.com/platform/apps".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            linted_at: "2026-12-03T08:00:00Z".into(),
            bundle_digest: "ab".repeat(32),
            verdict: Verdict::Pass,
        }
    }

    #[test]
    fn subjects_name_and_digest_their_manifests_whatever_the_key_order() {
        let a = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 2}});
        let b = json!({"spec": {"replicas": 2}, "metadata": {"namespace": "shop", "name": "web"},
            "kind": "Deployment", "apiVersion": "apps/v1"});
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        let st = Statement::new(vec![a, ns], info()).unwrap();
        assert_eq!(st.subject[0].name, "apps/Deployment/shop/web");
        assert_eq!(st.subject[1].name, "core/Namespace//shop");
        let again = Statement::new(vec![b], info()).unwrap();
        assert_eq!(st.subject[0].digest, again.subject[0].digest);

        let bytes = serde_json::to_vec(&st).unwrap();
        let back = Statement::parse(&bytes).unwrap();
        assert_eq!(back, st);
        assert!(back.manifest_for("apps/Deployment/shop/web").is_some());
        assert!(back.manifest_for("apps/Deployment/shop/api").is_none());
    }

    #[test]
    fn a_manifest_changed_after_signing_or_a_plain_secret_is_refused() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 2}});
        let mut st = Statement::new(vec![d], info()).unwrap();
        st.predicate.manifests[0]["spec"]["replicas"] = 3.into();
        let e = Statement::parse(&serde_json::to_vec(&st).unwrap()).unwrap_err();
        assert!(e.to_string().contains("does not match its manifest"), "{e}");

        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop"}, "stringData": {"password": "x"}});
        let e = Statement::new(vec![secret], info())
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain Secret") && !e.contains("\"x\""), "{e}");
    }
}
