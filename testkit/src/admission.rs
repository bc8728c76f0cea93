//! AdmissionReviews as the API server sends them to a validating webhook.

use sealgate_core::policy::NamespaceLabels;
use sealgate_core::policy::scope::KindScopes;
use serde_json::{Value, json};

/// The label that puts a namespace under the GitOps identity policy.
pub const GOVERNED: (&str, &str) = ("sealgate.dev/governed", "true");

/// The label that requires provenance for every object of a namespace.
pub const PROVENANCE_REQUIRED: (&str, &str) = ("sealgate.dev/provenance", "required");

/// The labels of each Namespace, as the webhook's cache holds them:
/// `namespaces(&[("shop", &[GOVERNED]), ("sandbox", &[])])`.
pub fn namespaces(list: &[(&str, &[(&str, &str)])]) -> NamespaceLabels {
    list.iter()
        .map(|(name, labels)| {
            let labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (name.to_string(), labels)
        })
        .collect()
}

/// The AdmissionReview for `operation` (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`) by `user` in
/// `groups` of `object` (null for a DELETE) over `old` (null for a CREATE). Kind, resource,
/// name and namespace are the object's, as the API server fills them in.
pub fn review(
    uid: &str,
    operation: &str,
    user: &str,
    groups: &[&str],
    object: Value,
    old: Value,
) -> Value {
    let shown = if object.is_null() { &old } else { &object };
    let api = shown["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let kind_name = shown["kind"].as_str().unwrap_or_default();
    let kind = json!({"group": group, "version": version, "kind": kind_name});
    // Named as sealgate names a kind's resource for ValidatingAdmissionPolicies.
    let plural = KindScopes::default().resource(group, kind_name);
    let resource = json!({"group": group, "version": version, "resource": plural});
    let meta = &shown["metadata"];
    let options = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        "DELETE" => "DeleteOptions",
        _ => "ConnectOptions",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind, "resource": resource,
            "requestKind": kind, "requestResource": resource,
            "name": meta["name"], "namespace": meta["namespace"], "operation": operation,
            "userInfo": {"username": user, "uid": "u-1", "groups": groups},
            "object": object, "oldObject": old, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options}
        }
    })
}
