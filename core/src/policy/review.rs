//! What is evaluated: the review (an AdmissionRequest, as Gatekeeper builds it) and the input
//! every template sees; the violations that come out.

use std::collections::BTreeMap;

use regorus::Value as RValue;
use serde_json::{Value, json};

use super::matching::ObjectInfo;
use super::scope::KindScopes;
use super::{Action, Point};

/// What is evaluated: an AdmissionRequest-shaped review, as Gatekeeper builds it.
#[derive(Debug, Clone)]
pub struct Review {
    /// The AdmissionRequest: `object`, `oldObject`, `operation`, `userInfo`, `namespace`, ….
    /// Templates see it whole as `input.review`.
    pub request: Value,
    /// The request's identifying fields, read once when the review is built: matching, the
    /// webhook's decision, provenance, logs and metrics read these, never the JSON again.
    pub info: RequestInfo,
    /// Where it is evaluated: decides which constraints' actions apply.
    pub point: Point,
    /// The file it came from (lint), for reports.
    pub file: Option<String>,
    /// The line its document starts on (lint).
    pub line: Option<usize>,
}

/// An AdmissionRequest's `operation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// None given: a bare object (lint, audit, gator).
    #[default]
    Unspecified,
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT` (exec, attach, port-forward, proxy).
    Connect,
    /// A value Kubernetes does not send.
    Other,
}

impl Operation {
    fn parse(s: &str) -> Operation {
        match s {
            "" => Operation::Unspecified,
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            _ => Operation::Other,
        }
    }

    /// As Kubernetes writes it (`other` for an unknown value, empty when unspecified).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Unspecified => "",
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other => "other",
        }
    }
}

/// The identifying fields of an AdmissionRequest, exactly as sent (never object data). Logs and
/// metric labels bound them; decisions compare them whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `uid`: the answer must carry it.
    pub uid: String,
    /// `kind.group` (empty for the core group).
    pub group: String,
    /// `kind.version`.
    pub version: String,
    /// `kind.kind`.
    pub kind: String,
    /// `namespace` (empty for cluster-scoped objects; a Namespace's own name for a Namespace).
    pub namespace: String,
    /// `name` (empty on a CREATE with `generateName`).
    pub name: String,
    /// `operation`.
    pub operation: Operation,
    /// `subResource` (`status`, `scale`, …), or empty.
    pub sub_resource: String,
    /// `userInfo.username`.
    pub user: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
    /// `dryRun`.
    pub dry_run: bool,
}

impl RequestInfo {
    /// Read from an AdmissionRequest (its fields of the wrong type count as absent).
    pub fn of_request(request: &Value) -> RequestInfo {
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let kind = &request["kind"];
        let user = &request["userInfo"];
        RequestInfo {
            uid: s(&request["uid"]),
            group: s(&kind["group"]),
            version: s(&kind["version"]),
            kind: s(&kind["kind"]),
            namespace: s(&request["namespace"]),
            name: s(&request["name"]),
            operation: Operation::parse(request["operation"].as_str().unwrap_or("")),
            sub_resource: s(&request["subResource"]),
            user: s(&user["username"]),
            groups: user["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            dry_run: request["dryRun"].as_bool().unwrap_or(false),
        }
    }

    /// Whether the request is about a Namespace (core group).
    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }
}

/// An AdmissionReview that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// `request` is missing or not an object.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// A DELETE with neither `object` nor `oldObject`.
    #[error("a DELETE AdmissionReview needs request.oldObject")]
    DeleteWithoutOldObject,
    /// No `object` to evaluate.
    #[error("the AdmissionReview has no request.object")]
    NoObject,
}

impl Review {
    /// A bare object, as gator and audit review it: no operation or user, `oldObject: null`.
    pub fn for_object(object: Value, point: Point) -> Review {
        let info = ObjectInfo::of(&object, &KindScopes::default(), None);
        let version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let info = RequestInfo {
            group: info.group,
            version,
            kind: info.kind,
            namespace: info.namespace.unwrap_or_default(),
            name: info.name,
            ..RequestInfo::default()
        };
        let mut request = json!({
            "kind": {"group": info.group, "version": info.version, "kind": info.kind},
            "name": info.name,
            "namespace": info.namespace,
            "operation": "",
            "userInfo": {},
            "oldObject": null,
            "dryRun": false,
        });
        // Moved in, not through `json!`: that serializes the object into a copy (a tenth of
        // lint's time went there).
        request["object"] = object;
        Review {
            info,
            request,
            point,
            file: None,
            line: None,
        }
    }

    /// An `admission.k8s.io/v1` AdmissionReview: its request is evaluated as is (a recorded
    /// request can be replayed offline). For DELETE, `object` is `oldObject`, as in Gatekeeper.
    pub fn from_admission_review(mut review: Value, point: Point) -> Result<Review, ReviewError> {
        // Taken, not cloned: the webhook hands over the review it parsed.
        let mut request = review
            .get_mut("request")
            .filter(|r| r.is_object())
            .map(Value::take)
            .ok_or(ReviewError::NoRequest)?;
        let info = RequestInfo::of_request(&request);
        if info.operation == Operation::Delete && request.get("object").is_none_or(Value::is_null) {
            let old = request
                .get("oldObject")
                .filter(|o| !o.is_null())
                .cloned()
                .ok_or(ReviewError::DeleteWithoutOldObject)?;
            request["object"] = old;
        }
        if request.get("object").is_none_or(Value::is_null) {
            return Err(ReviewError::NoObject);
        }
        for (k, default) in [
            ("oldObject", Value::Null),
            ("userInfo", json!({})),
            ("operation", json!("")),
        ] {
            if request.get(k).is_none() {
                request[k] = default;
            }
        }
        Ok(Review {
            request,
            info,
            point,
            file: None,
            line: None,
        })
    }

    /// A document as `lint` and `policy verify` read it: an AdmissionReview is that request (at
    /// the point `admission`), anything else a bare object at `point`.
    pub fn from_document(doc: Value, point: Point) -> Result<Review, ReviewError> {
        if Review::is_admission_review(&doc) {
            Review::from_admission_review(doc, Point::Admission)
        } else {
            Ok(Review::for_object(doc, point))
        }
    }

    /// Whether `v` is an AdmissionReview (`admission.k8s.io/*`), not an object.
    pub fn is_admission_review(v: &Value) -> bool {
        v.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
            && v.get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("admission.k8s.io/"))
    }

    /// The review with the file and line its document came from.
    pub fn at(mut self, file: impl Into<String>, line: usize) -> Review {
        self.file = Some(file.into());
        self.line = Some(line);
        self
    }

    /// The review of an ExpansionTemplate's resultant, as Gatekeeper builds it: the object with
    /// its own kind, name and namespace, the parent's operation (for DELETE, also the old
    /// object), no user; the parent's point, file and line.
    pub(crate) fn resultant(&self, object: Value) -> Review {
        let mut r = Review::for_object(object, self.point);
        r.info.operation = self.info.operation;
        r.request["operation"] = self.request["operation"].clone();
        if self.info.operation == Operation::Delete {
            r.request["oldObject"] = r.request["object"].clone();
        }
        r.file = self.file.clone();
        r.line = self.line;
        r
    }

    /// `request.object`.
    pub fn object(&self) -> &Value {
        &self.request["object"]
    }

    /// `request.oldObject` (null when there is none).
    pub fn old_object(&self) -> &Value {
        &self.request["oldObject"]
    }
}

/// The object a violation is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`, or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `metadata.name` (or `generateName`), or empty.
    pub name: String,
}

impl ObjectRef {
    /// The reference of an object (JSON).
    pub fn of(object: &Value) -> ObjectRef {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let meta = object.get("metadata");
        ObjectRef {
            api_version: s(object.get("apiVersion")),
            kind: s(object.get("kind")),
            namespace: s(meta.and_then(|m| m.get("namespace"))),
            name: s(meta
                .and_then(|m| m.get("name"))
                .or_else(|| meta.and_then(|m| m.get("generateName")))),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (false, _) => write!(f, "{} {}/{}", self.kind, self.namespace, self.name),
            (true, false) => write!(f, "{} {}", self.kind, self.name),
            (true, true) => write!(f, "{} (unnamed)", self.kind),
        }
    }
}

/// Which policy a violation, or a check that applied, comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    /// A ConstraintTemplate, by the kind it defines.
    Template(String),
    /// A Kubernetes ValidatingAdmissionPolicy, by name (the constraint is its binding).
    AdmissionPolicy(String),
    /// A conftest module's rules (`deny`, `warn`, `violation`).
    Conftest,
    /// sealgate's own checks of the inputs (an object or a Constraint it cannot take).
    Sealgate,
}

impl PolicyRef {
    /// As reports and logs write it: the template kind, `conftest` or `sealgate`.
    pub fn as_str(&self) -> &str {
        match self {
            PolicyRef::Template(kind) | PolicyRef::AdmissionPolicy(kind) => kind,
            PolicyRef::Conftest => "conftest",
            PolicyRef::Sealgate => "sealgate",
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for PolicyRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for PolicyRef {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The key a policy sets in a violation's `details` to report a break-glass change: the
/// webhook admits it and counts it (`sealgate_webhook_break_glass_total`), whichever policy it
/// comes from. The built-in identity policy sets it in mode `audit-break-glass`.
pub const BREAK_GLASS_DETAIL: &str = "breakGlass";

/// How severe a constraint's violations are, when the constraint says so (annotation
/// `sealgate.dev/severity`, or Kyverno's `policies.kyverno.io/severity`): the `severity` of
/// PolicyReport and OpenReports results, which take exactly these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `high`.
    High,
    /// `medium`.
    Medium,
    /// `low`.
    Low,
    /// `info`.
    Info,
}

impl Severity {
    /// The annotations a constraint declares its severity with, in order of precedence.
    pub const ANNOTATIONS: [&str; 2] = ["sealgate.dev/severity", "policies.kyverno.io/severity"];

    /// The value reports carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    /// Case-insensitive, as Kyverno reads its annotation.
    fn from_str(s: &str) -> Result<Severity, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            "info" => Severity::Info,
            _ => {
                return Err(format!(
                    "severity {s:?} is not one of critical, high, medium, low, info"
                ));
            }
        })
    }
}

/// One violation of one constraint by one object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// The policy it comes from.
    pub policy: PolicyRef,
    /// The constraint name (or the conftest rule).
    pub constraint: String,
    /// The policy's message.
    pub message: String,
    /// The violation's `details`, as the policy returned them.
    pub details: Value,
    /// The constraint's action at the review's point.
    pub action: Action,
    /// The object that violates it.
    pub object: ObjectRef,
    /// The offending field, when the policy reports one (`path` in the violation or its details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
    /// The policy failed to evaluate (timeout, runtime error): the message says why.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub evaluation_error: bool,
    /// The constraint's declared severity (none unless it declares one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

impl Violation {
    /// Whether the policy reports a break-glass change ([`BREAK_GLASS_DETAIL`] is `true` in its
    /// details): a typed marker, not a policy's name.
    pub fn is_break_glass(&self) -> bool {
        self.details.get(BREAK_GLASS_DETAIL) == Some(&Value::Bool(true))
    }
}

impl Violation {
    /// A constraint (or conftest rule) that could not be decided for an object: Gatekeeper
    /// reports it as a violation of that constraint whose message is the error.
    pub(super) fn evaluation_error(
        policy: PolicyRef,
        constraint: &str,
        message: String,
        action: Action,
        object: &ObjectRef,
    ) -> Violation {
        Violation {
            policy,
            constraint: constraint.to_string(),
            message,
            details: json!({}),
            action,
            object: object.clone(),
            path: None,
            evaluation_error: true,
            severity: None,
        }
    }
}

/// Where a workload kind keeps its pod spec (`lib.sealgate.workloads.pod_spec` in Rego); empty
/// for kinds without one.
pub fn pod_spec_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &[],
    }
}

/// The containers of a workload object, as the built-in `lib.sealgate.workloads.containers`
/// computes them in Rego: `{container, field, path}` for containers, initContainers and
/// ephemeralContainers of the pod spec. Computed once per review and passed to every template as
/// `input.sealgate.containers`, instead of once per template (each in its own engine). Built from
/// the already converted object, so each container is shared, not copied.
pub(super) fn workload_containers(object: &RValue) -> RValue {
    // Matched, not `as_string`/`as_array`: those build an error (and, with RUST_BACKTRACE set, a
    // backtrace) for every absent field.
    let kind = match &object["kind"] {
        RValue::String(k) => k.as_ref(),
        _ => "",
    };
    let path = pod_spec_path(kind);
    let mut out = Vec::new();
    if !path.is_empty() {
        let spec = path.iter().fold(object, |v, k| &v[*k]);
        for field in ["containers", "initContainers", "ephemeralContainers"] {
            let RValue::Array(containers) = &spec[field] else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                let p: Vec<RValue> = path
                    .iter()
                    .map(|s| RValue::from(*s))
                    .chain([RValue::from(field), RValue::from(i as u64)])
                    .collect();
                let entry = BTreeMap::from([
                    (RValue::from("container"), c.clone()),
                    (RValue::from("field"), RValue::from(field)),
                    (RValue::from("path"), RValue::from(p)),
                ]);
                out.push(RValue::from(entry));
            }
        }
    }
    RValue::from(out)
}

/// JSON to a regorus value without cloning the JSON first (`From<serde_json::Value>` takes it
/// by value): this runs once per linted document.
pub(super) fn to_rvalue(v: &Value) -> RValue {
    match v {
        Value::Null => RValue::Null,
        Value::Bool(b) => RValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => RValue::from(i),
            (_, Some(u)) => RValue::from(u),
            _ => RValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => RValue::from(s.as_str()),
        Value::Array(a) => RValue::from(a.iter().map(to_rvalue).collect::<Vec<_>>()),
        Value::Object(o) => RValue::from(
            o.iter()
                .map(|(k, v)| (RValue::from(k.as_str()), to_rvalue(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_rvalue_matches_regorus_conversion() {
        let v = json!({"a": [1, -2, 3.5, 18446744073709551615u64, "x", null, true, {"b": {}}], "c": ""});
        assert_eq!(to_rvalue(&v), RValue::from(v.clone()));
    }
}
