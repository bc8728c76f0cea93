//! The Secret and SealedSecret objects, parsed by hand from `serde_json::Value` so that every
//! error names the field (`data.password`) and none quotes a value (serde's "invalid type" errors
//! would).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::SecretBytes;
use crate::envelope::Scope;

/// The apiVersion of sealgate's SealedSecrets.
pub const SEALGATE_API_VERSION: &str = "sealgate.dev/v1alpha1";
/// The apiVersion of Bitnami's SealedSecrets.
pub const BITNAMI_API_VERSION: &str = "bitnami.com/v1alpha1";
/// Scope annotation of sealgate SealedSecrets (DESIGN §3.3).
pub const SCOPE_ANNOTATION: &str = "sealgate.dev/scope";
/// Short id of the key a SealedSecret was sealed with. Unauthenticated: only a hint for which key
/// to try first (the kubeseal format carries no key id) and for `validate`.
pub const KEY_ID_ANNOTATION: &str = "sealgate.dev/key-id";
/// Bitnami's annotation for the namespace-wide scope (`"true"`).
pub const BITNAMI_NAMESPACE_WIDE: &str = "sealedsecrets.bitnami.com/namespace-wide";
/// Bitnami's annotation for the cluster-wide scope (`"true"`).
pub const BITNAMI_CLUSTER_WIDE: &str = "sealedsecrets.bitnami.com/cluster-wide";
/// Annotations that carry a copy of the whole object, plaintext included (sealed-secrets #227).
pub const LAST_APPLIED_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
];
/// Fields the API server sets; they must not travel into Git.
const SERVER_FIELDS: [&str; 9] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
];
/// Upper bound on items in one Secret or SealedSecret.
pub const MAX_ITEMS: usize = 4096;

/// A problem with an object's shape. The message names the field; it never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The object is not of the expected kind.
    #[error("expected {expected}, found {found}")]
    WrongKind {
        /// The kind that was expected.
        expected: &'static str,
        /// The kind found (`apiVersion kind`).
        found: String,
    },
    /// A field is missing or malformed; `field` is its path (`data.password`).
    #[error("{field}: {problem}")]
    Field {
        /// The field's path.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn field_err(field: impl Into<String>, problem: impl std::fmt::Display) -> ModelError {
    ModelError::Field {
        field: field.into(),
        problem: problem.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn as_object<'v>(v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, ModelError> {
    v.as_object()
        .ok_or_else(|| field_err(field, format!("expected a mapping, found {}", type_name(v))))
}

fn opt_object<'v>(
    parent: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v Map<String, Value>>, ModelError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_object(v, field).map(Some),
    }
}

fn opt_string(
    parent: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, ModelError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(field_err(
            field,
            format!("expected a string, found {}", type_name(v)),
        )),
    }
}

fn opt_bool(
    parent: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<bool>, ModelError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(field_err(
            field,
            format!("expected true or false, found {}", type_name(v)),
        )),
    }
}

fn string_map(
    parent: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, ModelError> {
    let mut out = BTreeMap::new();
    if let Some(m) = opt_object(parent, key, field)? {
        if m.len() > MAX_ITEMS {
            return Err(field_err(field, format!("more than {MAX_ITEMS} entries")));
        }
        for (k, v) in m {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                other => {
                    return Err(field_err(
                        format!("{field}.{k}"),
                        format!("expected a string, found {}", type_name(other)),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Why a Secret item key is not one Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ItemKeyError {
    /// Empty, or over 253 characters.
    #[error("an item key must be 1 to 253 characters")]
    Length,
    /// `.` or `..`.
    #[error("an item key cannot be '.' or '..'")]
    Dots,
    /// Other characters than letters, digits, `-`, `_` and `.`.
    #[error("an item key may contain only letters, digits, '-', '_' and '.'")]
    Characters,
}

/// Kubernetes' rule for Secret item keys (`IsConfigMapKey`).
pub fn check_item_key(key: &str) -> Result<(), ItemKeyError> {
    if key.is_empty() || key.len() > 253 {
        return Err(ItemKeyError::Length);
    }
    if key == "." || key == ".." {
        return Err(ItemKeyError::Dots);
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ItemKeyError::Characters);
    }
    Ok(())
}

/// `metadata` of an object. Unknown fields are kept in `extra`.
#[derive(Clone, Default, PartialEq)]
pub struct ObjectMeta {
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Every other metadata field, kept as it was.
    pub extra: Map<String, Value>,
}

impl ObjectMeta {
    /// Reads `metadata` (at `field`, for messages); absent or null is empty.
    pub fn parse(v: Option<&Value>, field: &str) -> Result<ObjectMeta, ModelError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(ObjectMeta::default());
        };
        let m = as_object(v, field)?;
        let mut extra = m.clone();
        for k in ["name", "namespace", "labels", "annotations"] {
            extra.remove(k);
        }
        Ok(ObjectMeta {
            name: opt_string(m, "name", &format!("{field}.name"))?,
            namespace: opt_string(m, "namespace", &format!("{field}.namespace"))?,
            labels: string_map(m, "labels", &format!("{field}.labels"))?,
            annotations: string_map(m, "annotations", &format!("{field}.annotations"))?,
            extra,
        })
    }

    /// `metadata` as JSON, empty maps left out.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(n) = &self.name {
            m.insert("name".into(), n.clone().into());
        }
        if let Some(n) = &self.namespace {
            m.insert("namespace".into(), n.clone().into());
        }
        if !self.labels.is_empty() {
            m.insert("labels".into(), string_map_value(&self.labels));
        }
        if !self.annotations.is_empty() {
            m.insert("annotations".into(), string_map_value(&self.annotations));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Remove what the API server sets and what copies plaintext (`last-applied-configuration`).
    pub fn strip_server_fields(&mut self) {
        for f in SERVER_FIELDS {
            self.extra.remove(f);
        }
        for a in LAST_APPLIED_ANNOTATIONS {
            self.annotations.remove(a);
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.to_value().as_object().is_none_or(Map::is_empty)
    }
}

fn string_map_value(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Annotation *values* and unknown fields are not shown: `last-applied-configuration` holds a
/// plaintext copy of a Secret.
impl fmt::Debug for ObjectMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectMeta")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations.keys().collect::<Vec<_>>())
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn check_kind(
    obj: &Map<String, Value>,
    api_versions: &[&str],
    kind: &str,
) -> Result<String, ModelError> {
    let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if k == kind && api_versions.contains(&api) {
        return Ok(api.to_string());
    }
    let found = match (api, k) {
        ("", "") => "an object without apiVersion and kind".to_string(),
        (api, k) => format!("{api} {k}"),
    };
    Err(ModelError::WrongKind {
        expected: if kind == "Secret" {
            "a v1 Secret"
        } else {
            "a SealedSecret (sealgate.dev/v1alpha1 or bitnami.com/v1alpha1)"
        },
        found,
    })
}

/// A Kubernetes `v1 Secret` with decoded values.
#[derive(Clone, Default, PartialEq)]
pub struct Secret {
    /// `metadata`.
    pub meta: ObjectMeta,
    /// `type`.
    pub type_: Option<String>,
    /// `immutable`.
    pub immutable: Option<bool>,
    /// `data` and `stringData` merged, decoded; wiped on drop.
    pub data: BTreeMap<String, SecretBytes>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("meta", &self.meta)
            .field("type", &self.type_)
            .field("immutable", &self.immutable)
            .field("data", &self.data)
            .finish()
    }
}

impl Secret {
    /// Parse a `v1 Secret`; `data` is base64-decoded and `stringData` merged in (it wins on
    /// duplicate keys, as the API server does).
    pub fn from_value(v: &Value) -> Result<Secret, ModelError> {
        let obj = v.as_object().ok_or_else(|| ModelError::WrongKind {
            expected: "a v1 Secret",
            found: type_name(v).to_string(),
        })?;
        check_kind(obj, &["v1"], "Secret")?;
        let meta = ObjectMeta::parse(obj.get("metadata"), "metadata")?;
        let mut data = BTreeMap::new();
        if let Some(m) = opt_object(obj, "data", "data")? {
            for (k, v) in m {
                let field = format!("data.{k}");
                check_item_key(k).map_err(|p| field_err(&field, p))?;
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => "",
                    other => {
                        return Err(field_err(
                            field,
                            format!("expected a base64 string, found {}", type_name(other)),
                        ));
                    }
                };
                let bytes = decode_b64_lenient(s).map_err(|_| {
                    field_err(
                        &field,
                        "not valid base64 (put plain text under stringData instead)",
                    )
                })?;
                data.insert(k.clone(), SecretBytes::new(bytes));
            }
        }
        if let Some(m) = opt_object(obj, "stringData", "stringData")? {
            for (k, v) in m {
                let field = format!("stringData.{k}");
                check_item_key(k).map_err(|p| field_err(&field, p))?;
                match v {
                    Value::String(s) => {
                        data.insert(k.clone(), SecretBytes::from(s.as_bytes()));
                    }
                    other => {
                        return Err(field_err(
                            field,
                            format!("expected a string, found {} (quote it)", type_name(other)),
                        ));
                    }
                }
            }
        }
        if data.len() > MAX_ITEMS {
            return Err(field_err("data", format!("more than {MAX_ITEMS} items")));
        }
        Ok(Secret {
            meta,
            type_: opt_string(obj, "type", "type")?,
            immutable: opt_bool(obj, "immutable", "immutable")?,
            data,
        })
    }

    /// The Secret as it would be applied (`data` base64-encoded). The result holds plaintext.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("apiVersion".into(), "v1".into());
        m.insert("kind".into(), "Secret".into());
        m.insert("metadata".into(), self.meta.to_value());
        if let Some(t) = &self.type_ {
            m.insert("type".into(), t.clone().into());
        }
        if let Some(i) = self.immutable {
            m.insert("immutable".into(), i.into());
        }
        m.insert(
            "data".into(),
            Value::Object(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), B64.encode(v.expose()).into()))
                    .collect(),
            ),
        );
        Value::Object(m)
    }
}

/// Base64 as Go's decoder accepts it in Secrets: standard alphabet, padding, and line breaks skipped.
pub(crate) fn decode_b64_lenient(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if s.contains(['\n', '\r']) {
        let joined: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        B64.decode(joined.trim())
    } else {
        B64.decode(s.trim())
    }
}

/// Go's `base64.StdEncoding` (what Bitnami's controller decodes values with): standard alphabet,
/// padding required, non-zero trailing bits accepted.
const GO_STD_ENCODING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// A sealed value (`spec.encryptedData.*`) decoded exactly as Go's `base64.StdEncoding` decodes
/// it: line breaks are skipped anywhere, anything else outside the alphabet (a space around the
/// value) is refused. `validate` then passes only what the controller will accept.
pub(crate) fn decode_sealed_value(s: &str) -> Result<Vec<u8>, crate::envelope::SealError> {
    if let Some(at) = s.find([' ', '\t']) {
        return Err(crate::envelope::SealError::Whitespace { at });
    }
    Ok(if s.contains(['\n', '\r']) {
        let joined: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        GO_STD_ENCODING.decode(joined)?
    } else {
        GO_STD_ENCODING.decode(s)?
    })
}

/// Which API group a SealedSecret belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiGroup {
    /// `sealgate.dev/v1alpha1`.
    #[default]
    Sealgate,
    /// `bitnami.com/v1alpha1` (Bitnami Sealed Secrets).
    Bitnami,
}

impl ApiGroup {
    /// The group's SealedSecret apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            ApiGroup::Sealgate => SEALGATE_API_VERSION,
            ApiGroup::Bitnami => BITNAMI_API_VERSION,
        }
    }
}

/// `spec.template` of a SealedSecret: what the unsealed Secret looks like besides its values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretTemplate {
    /// The Secret's metadata.
    pub meta: ObjectMeta,
    /// The Secret's `type`.
    pub type_: Option<String>,
    /// The Secret's `immutable`.
    pub immutable: Option<bool>,
    /// Bitnami's Go-template `data`. Not rendered by sealgate (see `sealing::unseal`).
    pub data: BTreeMap<String, String>,
}

/// A SealedSecret of either API group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SealedSecret {
    /// Which SealedSecret API the object is.
    pub api: ApiGroup,
    /// The SealedSecret's metadata.
    pub meta: ObjectMeta,
    /// `spec.encryptedData`: item key to sealed value (base64).
    pub encrypted_data: BTreeMap<String, String>,
    /// `spec.template`: what the Secret gets besides its data.
    pub template: SecretTemplate,
    /// Bitnami's deprecated v1 `spec.data` blob is present.
    pub has_legacy_data: bool,
}

impl SealedSecret {
    /// Reads a SealedSecret of either API group; errors name the field.
    pub fn from_value(v: &Value) -> Result<SealedSecret, ModelError> {
        let obj = v.as_object().ok_or_else(|| ModelError::WrongKind {
            expected: "a SealedSecret",
            found: type_name(v).to_string(),
        })?;
        let api = check_kind(
            obj,
            &[SEALGATE_API_VERSION, BITNAMI_API_VERSION],
            "SealedSecret",
        )?;
        let api = if api == BITNAMI_API_VERSION {
            ApiGroup::Bitnami
        } else {
            ApiGroup::Sealgate
        };
        let meta = ObjectMeta::parse(obj.get("metadata"), "metadata")?;
        let spec = opt_object(obj, "spec", "spec")?
            .ok_or_else(|| field_err("spec", "missing: a SealedSecret needs spec.encryptedData"))?;
        let encrypted_data = string_map(spec, "encryptedData", "spec.encryptedData")?;
        for k in encrypted_data.keys() {
            check_item_key(k).map_err(|p| field_err(format!("spec.encryptedData.{k}"), p))?;
        }
        let template = match opt_object(spec, "template", "spec.template")? {
            None => SecretTemplate::default(),
            Some(t) => SecretTemplate {
                meta: ObjectMeta::parse(t.get("metadata"), "spec.template.metadata")?,
                type_: opt_string(t, "type", "spec.template.type")?,
                immutable: opt_bool(t, "immutable", "spec.template.immutable")?,
                data: string_map(t, "data", "spec.template.data")?,
            },
        };
        let has_legacy_data = spec.get("data").is_some_and(|d| !d.is_null());
        Ok(SealedSecret {
            api,
            meta,
            encrypted_data,
            template,
            has_legacy_data,
        })
    }

    /// The SealedSecret as JSON, in its API group's shape.
    pub fn to_value(&self) -> Value {
        let mut template = Map::new();
        if !self.template.meta.is_empty() {
            template.insert("metadata".into(), self.template.meta.to_value());
        }
        if let Some(t) = &self.template.type_ {
            template.insert("type".into(), t.clone().into());
        }
        if let Some(i) = self.template.immutable {
            template.insert("immutable".into(), i.into());
        }
        if !self.template.data.is_empty() {
            template.insert("data".into(), string_map_value(&self.template.data));
        }
        let mut spec = Map::new();
        spec.insert(
            "encryptedData".into(),
            string_map_value(&self.encrypted_data),
        );
        if !template.is_empty() {
            spec.insert("template".into(), Value::Object(template));
        }
        let mut m = Map::new();
        m.insert("apiVersion".into(), self.api.api_version().into());
        m.insert("kind".into(), "SealedSecret".into());
        m.insert("metadata".into(), self.meta.to_value());
        m.insert("spec".into(), Value::Object(spec));
        Value::Object(m)
    }

    /// `metadata.name`, or empty.
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, or empty.
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    /// The scope, from the **top-level** annotations only (never the template's: that is how
    /// CVE-2026-22728 widened scopes).
    pub fn scope(&self) -> Result<Scope, ModelError> {
        scope_from_annotations(self.api, &self.meta.annotations)
    }

    /// Write the scope annotations of this object's API group.
    pub fn set_scope(&mut self, scope: Scope) {
        let a = &mut self.meta.annotations;
        match self.api {
            ApiGroup::Sealgate => {
                a.insert(SCOPE_ANNOTATION.into(), scope.as_str().into());
            }
            ApiGroup::Bitnami => {
                a.remove(BITNAMI_NAMESPACE_WIDE);
                a.remove(BITNAMI_CLUSTER_WIDE);
                match scope {
                    Scope::Strict => {}
                    Scope::NamespaceWide => {
                        a.insert(BITNAMI_NAMESPACE_WIDE.into(), "true".into());
                    }
                    Scope::ClusterWide => {
                        a.insert(BITNAMI_CLUSTER_WIDE.into(), "true".into());
                    }
                }
            }
        }
    }

    /// The same object in another API group (migration between Bitnami's and sealgate's): the
    /// scope moves to that group's annotations. Values are untouched: neither format binds the
    /// API group, so they open as before.
    pub fn with_api(&self, api: ApiGroup) -> Result<SealedSecret, ModelError> {
        let scope = self.scope()?;
        let mut out = self.clone();
        for a in [
            SCOPE_ANNOTATION,
            BITNAMI_NAMESPACE_WIDE,
            BITNAMI_CLUSTER_WIDE,
        ] {
            out.meta.annotations.remove(a);
        }
        out.api = api;
        out.set_scope(scope);
        Ok(out)
    }

    /// "SealedSecret ns/name", for messages.
    pub fn describe(&self) -> String {
        describe_object("SealedSecret", &self.meta)
    }
}

/// The scope an object's annotations ask for. sealgate objects use `sealgate.dev/scope`; Bitnami's
/// use its two boolean annotations, cluster-wide winning (upstream `SecretScope`).
pub fn scope_from_annotations(
    api: ApiGroup,
    annotations: &BTreeMap<String, String>,
) -> Result<Scope, ModelError> {
    match api {
        ApiGroup::Sealgate => match annotations.get(SCOPE_ANNOTATION) {
            None => Ok(Scope::Strict),
            Some(v) => v
                .parse::<Scope>()
                .map_err(|e| field_err(format!("metadata.annotations.{SCOPE_ANNOTATION}"), e)),
        },
        ApiGroup::Bitnami => {
            let on = |k| annotations.get(k).is_some_and(|v| v == "true");
            Ok(if on(BITNAMI_CLUSTER_WIDE) {
                Scope::ClusterWide
            } else if on(BITNAMI_NAMESPACE_WIDE) {
                Scope::NamespaceWide
            } else {
                Scope::Strict
            })
        }
    }
}

/// "Kind ns/name" (or "Kind name", "Kind (unnamed)").
pub fn describe_object(kind: &str, meta: &ObjectMeta) -> String {
    match (meta.namespace.as_deref(), meta.name.as_deref()) {
        (Some(ns), Some(n)) if !ns.is_empty() => format!("{kind} {ns}/{n}"),
        (_, Some(n)) => format!("{kind} {n}"),
        _ => format!("{kind} (unnamed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_parse_merges_string_data_and_strips_nothing_yet() {
        let v = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod", "uid": "x",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "type": "Opaque",
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
            "stringData": {"user": "root"}
        });
        let s = Secret::from_value(&v).unwrap();
        assert_eq!(s.data["password"].expose(), b"hunter2");
        assert_eq!(s.data["user"].expose(), b"root");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let mut meta = s.meta.clone();
        meta.strip_server_fields();
        assert!(meta.annotations.is_empty());
        assert!(!meta.extra.contains_key("uid"));
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let bad = [
            (
                json!({"apiVersion":"v1","kind":"Secret","data":{"pw":"not base64 hunter2!"}}),
                "data.pw",
            ),
            (
                json!({"apiVersion":"v1","kind":"Secret","stringData":{"port": 5432}}),
                "stringData.port",
            ),
            (
                json!({"apiVersion":"v1","kind":"Secret","metadata":{"name": ["hunter2"]}}),
                "metadata.name",
            ),
            (
                json!({"apiVersion":"v1","kind":"Secret","data":{"bad/key":"YQ=="}}),
                "data.bad/key",
            ),
        ];
        for (v, field) in bad {
            let e = Secret::from_value(&v).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("5432"), "{e}");
        }
        let e = Secret::from_value(&json!({"apiVersion":"v1","kind":"ConfigMap"})).unwrap_err();
        assert_eq!(e.to_string(), "expected a v1 Secret, found v1 ConfigMap");
    }

    #[test]
    fn debug_hides_values_and_annotation_values() {
        let v = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "hunter2"}},
            "stringData": {"password": "hunter2"}
        });
        let s = Secret::from_value(&v).unwrap();
        let dbg = format!("{s:?} {s:#?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("password"), "{dbg}");
    }

    #[test]
    fn scope_comes_from_top_level_annotations_only() {
        let v = json!({
            "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
            "metadata": {"name": "a", "namespace": "n",
                "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true",
                                "sealedsecrets.bitnami.com/cluster-wide": "true"}},
            "spec": {"encryptedData": {"k": "AgA="},
                     "template": {"metadata": {"annotations": {"sealedsecrets.bitnami.com/cluster-wide": "true"}}}}
        });
        let ss = SealedSecret::from_value(&v).unwrap();
        assert_eq!(ss.scope().unwrap(), Scope::ClusterWide, "cluster-wide wins");
        let mut v2 = v.clone();
        v2["metadata"]["annotations"] = json!({});
        assert_eq!(
            SealedSecret::from_value(&v2).unwrap().scope().unwrap(),
            Scope::Strict,
            "the template's annotation is ignored"
        );
        let sg = json!({"apiVersion": SEALGATE_API_VERSION, "kind": "SealedSecret",
            "metadata": {"name": "a", "annotations": {SCOPE_ANNOTATION: "galaxy-wide"}},
            "spec": {"encryptedData": {}}});
        let e = SealedSecret::from_value(&sg)
            .unwrap()
            .scope()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sealgate.dev/scope") && e.contains("galaxy-wide"),
            "{e}"
        );
    }

    #[test]
    fn sealed_secret_round_trips_through_value() {
        let v = json!({
            "apiVersion": SEALGATE_API_VERSION, "kind": "SealedSecret",
            "metadata": {"name": "a", "namespace": "n", "annotations": {SCOPE_ANNOTATION: "strict"}},
            "spec": {"encryptedData": {"k": "YWdl"},
                     "template": {"metadata": {"labels": {"app": "x"}}, "type": "Opaque", "immutable": true}}
        });
        let ss = SealedSecret::from_value(&v).unwrap();
        assert_eq!(ss.to_value(), v);
        let missing = json!({"apiVersion": SEALGATE_API_VERSION, "kind": "SealedSecret", "metadata": {"name": "a"}});
        assert!(
            SealedSecret::from_value(&missing)
                .unwrap_err()
                .to_string()
                .starts_with("spec: missing")
        );
    }
}
