//! The `sealgate.dev/v1alpha1` SealedSecret resource. Its spec mirrors Bitnami's, so converting a
//! `bitnami.com` object is a rename (DESIGN §4). `deploy/crds/` is generated from these types by
//! `sealgate-controller crd`; a test fails when the committed file differs.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the unsealed Secret looks like, besides its values.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels and annotations for the Secret (its name and namespace are the SealedSecret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Bitnami's Go-template data. Accepted for compatibility; sealgate refuses to render it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
}

/// A Secret sealed for one cluster: safe to commit.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sealgate.dev",
    version = "v1alpha1",
    kind = "SealedSecret",
    namespaced,
    status = "SealedSecretStatus",
    shortname = "ss",
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// Item name → sealed value (kubeseal or age format, base64).
    pub encrypted_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Bitnami's `bitnami.com/v1alpha1` SealedSecret, reconciled in `--bitnami` mode for drop-in
/// migration. Same spec; its scope annotations are Bitnami's.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    root = "BitnamiSealedSecret",
    namespaced,
    status = "SealedSecretStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSealedSecretSpec {
    pub encrypted_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Which API group a SealedSecret comes from: it names the Secret's owner and how the scope
/// annotations are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Sealgate,
    Bitnami,
}

impl Source {
    pub fn group(self) -> &'static str {
        match self {
            Source::Sealgate => "sealgate.dev",
            Source::Bitnami => "bitnami.com",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Source::Sealgate => sealgate_core::objects::SEALGATE_API_VERSION,
            Source::Bitnami => sealgate_core::objects::BITNAMI_API_VERSION,
        }
    }
}

/// The two SealedSecret kinds the controller reconciles, seen as sealgate's.
pub trait SealedKind:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const SOURCE: Source;
    fn to_sealgate(&self) -> SealedSecret;
}

impl SealedKind for SealedSecret {
    const SOURCE: Source = Source::Sealgate;
    fn to_sealgate(&self) -> SealedSecret {
        self.clone()
    }
}

impl SealedKind for BitnamiSealedSecret {
    const SOURCE: Source = Source::Bitnami;
    fn to_sealgate(&self) -> SealedSecret {
        SealedSecret {
            metadata: self.metadata.clone(),
            spec: SealedSecretSpec {
                encrypted_data: self.spec.encrypted_data.clone(),
                template: self.spec.template.clone(),
            },
            status: self.status.clone(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A status condition; `Synced` is the one the controller sets.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it is not synced; never contains a secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The `Synced` condition's reason, which is also the Event reason and the
/// `sealgate_controller_unseal_errors_total` label: a fixed vocabulary, so alerts can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The Secret holds what the SealedSecret produces.
    Unsealed,
    /// A Secret of that name exists and is not the SealedSecret's: left unchanged.
    SecretNotOwned,
    /// The Secret is immutable and its data would change.
    ImmutableSecret,
    /// The SealedSecret is malformed (or not stored by the API server yet).
    InvalidSealedSecret,
    /// An item could not be opened with any of the controller's keys.
    UnsealFailed,
    /// The SealedSecret uses something sealgate does not implement (e.g. Go-template `data`).
    Unsupported,
    /// The template would make the Secret look like a sealing key.
    RefusedTemplate,
    /// A Kubernetes API call failed (retried).
    ApiError,
    /// There is no sealing key yet.
    NoKeys,
    /// The unsealing task itself failed.
    InternalError,
}

impl Reason {
    /// The reason as Kubernetes conditions and events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsealed => "Unsealed",
            Reason::SecretNotOwned => "SecretNotOwned",
            Reason::ImmutableSecret => "ImmutableSecret",
            Reason::InvalidSealedSecret => "InvalidSealedSecret",
            Reason::UnsealFailed => "UnsealFailed",
            Reason::Unsupported => "Unsupported",
            Reason::RefusedTemplate => "RefusedTemplate",
            Reason::ApiError => "ApiError",
            Reason::NoKeys => "NoKeys",
            Reason::InternalError => "InternalError",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The CRD as YAML, as committed in `deploy/crds/sealedsecrets.sealgate.dev.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(SealedSecret::crd()).expect("the CRD serializes");
    format!(
        "# Generated by `sealgate-controller crd`; do not edit.\n{}",
        sealgate_core::manifest::to_yaml(&crd)
    )
}
