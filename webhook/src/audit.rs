//! `sealgate-webhook audit`: the background scan Gatekeeper users rely on. Existing objects, read
//! from the cluster, are evaluated with the same bundle at the enforcement point `audit`.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiResource, Discovery, verbs};
use sealgate_core::policy::report::ObjectResult;
use sealgate_core::policy::{ObjectRef, Point, Review, Sources, Violation, namespace_labels};

/// What an audit found.
#[derive(Debug, Default)]
pub struct Report {
    pub objects: usize,
    /// Per object that some constraint applied to: what applied and what it found (for
    /// PolicyReports, pass results included).
    pub results: Vec<ObjectResult>,
    /// Kinds that could not be listed (e.g. forbidden), with the reason.
    pub errors: Vec<String>,
}

/// High-churn kinds that no GitOps repository holds: never listed (the webhook's configuration
/// leaves them out too).
const SKIPPED_KINDS: &[&str] = &[
    "Event",
    "Lease",
    "EndpointSlice",
    "Endpoints",
    "ComponentStatus",
];

impl Report {
    /// Every violation found, object by object.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.results.iter().flat_map(|r| &r.violations)
    }
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the policy bundle does not compile: {0}")]
    Bundle(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Build the bundle as the webhook does, with `data.inventory` listed from the cluster (the
/// kinds its sync configuration names); then discover the listable kinds some constraint can
/// match, list them (500 per page) and evaluate every object at the point `audit`.
pub async fn run(client: kube::Client, sources: &Sources) -> Result<Report, AuditError> {
    let mut report = Report::default();
    let first = crate::reload::build(sources, Vec::new()).map_err(AuditError::Bundle)?;
    let bundle = if first.sync_kinds().is_empty() {
        first
    } else {
        let mut inventory = Vec::new();
        for kind in first.sync_kinds() {
            // Resolved as the webhook's watch resolves it; a failed list is reported below.
            let ar = crate::inventory::resource(&client, kind).await;
            inventory.extend(list_all(&client, &ar, &mut report.errors).await);
        }
        crate::reload::build(sources, inventory).map_err(AuditError::Bundle)?
    };
    let bundle = &bundle;
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut wanted: Vec<ApiResource> = Vec::new();
    let mut namespaces_ar = None;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) {
                continue;
            }
            if ar.group.is_empty() && ar.kind == "Namespace" {
                namespaces_ar = Some(ar.clone());
            }
            if !SKIPPED_KINDS.contains(&ar.kind.as_str())
                && bundle
                    .constraints()
                    .iter()
                    .any(|c| c.matcher.may_select_kind(&ar.group, &ar.kind))
            {
                wanted.push(ar);
            }
        }
    }
    // Namespace labels first, for namespaceSelector.
    let listed = match &namespaces_ar {
        Some(ar) => list_all(&client, ar, &mut report.errors).await,
        None => Vec::new(),
    };
    let namespaces = namespace_labels(&listed);
    let mut seen = BTreeSet::new();
    for ar in &wanted {
        if !seen.insert((ar.group.clone(), ar.kind.clone())) {
            continue;
        }
        for object in list_all(&client, ar, &mut report.errors).await {
            report.objects += 1;
            let uid = object
                .pointer("/metadata/uid")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string);
            let review = Review::for_object(object, Point::Audit);
            let found = bundle.evaluate_with_matches(&review, &namespaces);
            // A constraint that could not be matched reports a violation without applying.
            if !found.applied.is_empty() || !found.violations.is_empty() {
                report.results.push(ObjectResult {
                    object: ObjectRef::of(review.object()),
                    uid,
                    applied: found.applied,
                    violations: found.violations,
                    properties: Default::default(),
                });
            }
        }
    }
    Ok(report)
}

/// Every object of one kind, as JSON with its apiVersion and kind (list items omit them).
async fn list_all(
    client: &kube::Client,
    ar: &ApiResource,
    errors: &mut Vec<String>,
) -> Vec<serde_json::Value> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut params = ListParams::default().limit(500);
    let mut out = Vec::new();
    loop {
        let page = match api.list(&params).await {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{} {}: {e}", ar.api_version, ar.kind));
                return out;
            }
        };
        for item in page.items {
            let mut v = serde_json::to_value(&item).unwrap_or_default();
            v["apiVersion"] = ar.api_version.clone().into();
            v["kind"] = ar.kind.clone().into();
            out.push(v);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return out,
        }
    }
}
