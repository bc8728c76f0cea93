//! `sealgate-webhook audit`: the background scan Gatekeeper users rely on. Existing objects, read
//! from the cluster, are evaluated with the same bundle at the enforcement point `audit`.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiResource, Discovery, verbs};
use sealgate_core::policy::report::{ObjectResult, ReportApi, policy_reports, unix_now};
use sealgate_core::policy::{
    Action, ObjectRef, Point, Review, Sources, Violation, namespace_labels,
};

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

    /// Violations of deny constraints.
    pub fn denies(&self) -> usize {
        self.violations()
            .filter(|v| v.action == Action::Deny)
            .count()
    }
}

/// `audit -o`: how the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// One line per violation, then a count.
    Text,
    /// `{"objects", "violations", "errors"}`.
    Json,
    /// wgpolicyk8s.io/v1alpha2 PolicyReport and ClusterPolicyReport objects, as YAML, for
    /// `kubectl apply -f -` and Policy Reporter.
    Policyreport,
    /// openreports.io/v1alpha1 Report and ClusterReport objects, as YAML, as Kyverno 1.15+ writes
    /// them for Policy Reporter 3.
    Openreports,
}

/// The report as `format` prints it on stdout.
pub fn render_audit_report(report: &Report, format: AuditFormat) -> String {
    let violations: Vec<&Violation> = report.violations().collect();
    match format {
        AuditFormat::Policyreport | AuditFormat::Openreports => {
            let api = match format {
                AuditFormat::Openreports => ReportApi::OpenReports,
                _ => ReportApi::WgPolicy,
            };
            let docs = policy_reports(&report.results, Point::Audit, unix_now(), api);
            sealgate_core::manifest::to_yaml_stream(&docs)
        }
        AuditFormat::Json => {
            let doc = serde_json::json!({
                "objects": report.objects, "violations": violations, "errors": report.errors,
            });
            format!("{doc:#}\n")
        }
        AuditFormat::Text => {
            let mut out = String::new();
            for v in &violations {
                out += &format!(
                    "{:<6} {}/{}: {} ({})\n",
                    v.action.as_str(),
                    v.policy,
                    v.constraint,
                    v.message,
                    v.object
                );
            }
            out += &format!(
                "{} objects audited, {} violations ({} deny)\n",
                report.objects,
                violations.len(),
                report.denies()
            );
            out
        }
    }
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Bundle(#[from] sealgate_core::policy::BundleErrors),
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
            // Resolved as the webhook's watch resolves it (a kind the cluster does not serve has
            // no objects); a failed list is reported below.
            use crate::inventory::Resolved;
            let ar = match crate::inventory::resolve(&client, kind).await {
                Resolved::Served(ar) | Resolved::Guessed(ar, _) => ar,
                Resolved::NotServed(_) => continue,
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let object = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let violation = |constraint: &str, action| Violation {
            policy: sealgate_core::policy::PolicyRef::Template("K8sDisallowedTags".into()),
            constraint: constraint.into(),
            message: "container <app> uses a disallowed tag <nginx:latest>".into(),
            details: serde_json::Value::Null,
            action,
            object: object.clone(),
            path: None,
            evaluation_error: false,
            severity: None,
        };
        Report {
            objects: 3,
            results: vec![ObjectResult {
                object: object.clone(),
                uid: Some("0b3c".into()),
                applied: vec![(
                    sealgate_core::policy::PolicyRef::Template("K8sDisallowedTags".into()),
                    "no-latest".into(),
                )],
                violations: vec![
                    violation("no-latest", Action::Deny),
                    violation("no-latest-warn", Action::Warn),
                ],
                properties: Default::default(),
            }],
            errors: vec!["v1 Secret: forbidden".into()],
        }
    }

    #[test]
    fn text_lists_each_violation_then_the_counts() {
        let r = report();
        assert_eq!(r.denies(), 1);
        let text = render_audit_report(&r, AuditFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "deny   K8sDisallowedTags/no-latest: container <app> uses a disallowed tag <nginx:latest> (Deployment shop/web)"
        );
        assert!(lines[1].starts_with("warn   K8sDisallowedTags/no-latest-warn"));
        assert_eq!(lines[2], "3 objects audited, 2 violations (1 deny)");
    }

    #[test]
    fn json_and_policy_reports_carry_the_same_findings() {
        let r = report();
        let json: serde_json::Value =
            serde_json::from_str(&render_audit_report(&r, AuditFormat::Json)).unwrap();
        assert_eq!(json["objects"], 3);
        assert_eq!(json["violations"].as_array().unwrap().len(), 2);
        assert_eq!(json["errors"][0], "v1 Secret: forbidden");

        let yaml = render_audit_report(&r, AuditFormat::Policyreport);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        assert_eq!(docs.len(), 1, "one namespace, one PolicyReport: {yaml}");
        assert_eq!(docs[0]["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(docs[0]["kind"], "PolicyReport");
        assert_eq!(docs[0]["metadata"]["namespace"], "shop");
        assert_eq!(docs[0]["summary"]["fail"], 1);
        assert_eq!(docs[0]["summary"]["warn"], 1);
    }
}
