//! Results as policy report objects in either API Kyverno writes and Policy Reporter reads
//! ([`ReportApi`]): `wgpolicyk8s.io/v1alpha2` PolicyReport and ClusterPolicyReport, or
//! `openreports.io/v1alpha1` Report and ClusterReport (Policy Reporter 3, Kyverno 1.15+). One
//! namespaced report per namespace and one cluster report for cluster-scoped (and namespace-less)
//! objects, each result naming the template (`policy`), the constraint (`rule`) and the object.
//! The two APIs have the same result fields; OpenReports also names the `source` of the report.
//!
//! Report names are fixed per enforcement point (`sealgate-audit`, `sealgate-ci`), so applying a
//! new report replaces the last one. A report holds at most [`MAX_RESULTS`] results (etcd keeps
//! objects under 1.5 MB); more go into `sealgate-audit-2`, `-3`, ….

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Action, ObjectRef, Point, PolicyRef, Violation};

/// Results per report object.
pub const MAX_RESULTS: usize = 1000;

/// Which report API to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportApi {
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport / ClusterPolicyReport.
    WgPolicy,
    /// `openreports.io/v1alpha1` Report / ClusterReport.
    OpenReports,
}

impl ReportApi {
    fn api_version(self) -> &'static str {
        match self {
            ReportApi::WgPolicy => "wgpolicyk8s.io/v1alpha2",
            ReportApi::OpenReports => "openreports.io/v1alpha1",
        }
    }

    /// (namespaced kind, cluster kind).
    fn kinds(self) -> (&'static str, &'static str) {
        match self {
            ReportApi::WgPolicy => ("PolicyReport", "ClusterPolicyReport"),
            ReportApi::OpenReports => ("Report", "ClusterReport"),
        }
    }
}

/// What was found for one object.
#[derive(Debug, Clone, Default)]
pub struct ObjectResult {
    /// The object.
    pub object: ObjectRef,
    /// `metadata.uid`, when the object came from a cluster.
    pub uid: Option<String>,
    /// (policy, constraint) of every constraint that applied ([`super::evaluate::Evaluation`]).
    pub applied: Vec<(PolicyRef, String)>,
    /// What it violated.
    pub violations: Vec<Violation>,
    /// Added to every result's `properties` (lint: `file`, `line`).
    pub properties: BTreeMap<String, String>,
}

/// The PolicyReport result for a violation: `fail` (deny and dryrun: the object does not
/// comply, whether or not that is enforced), `warn`, or `error` when the constraint could not
/// be evaluated.
fn status(v: &Violation) -> &'static str {
    match (v.evaluation_error, v.action) {
        (true, _) => "error",
        (false, Action::Warn) => "warn",
        (false, Action::Deny | Action::Dryrun) => "fail",
    }
}

fn resource(r: &ObjectResult) -> Value {
    let mut o = json!({
        "apiVersion": r.object.api_version,
        "kind": r.object.kind,
        "name": r.object.name,
    });
    if !r.object.namespace.is_empty() {
        o["namespace"] = r.object.namespace.clone().into();
    }
    if let Some(uid) = &r.uid {
        o["uid"] = uid.clone().into();
    }
    o
}

/// One result: of a violation, or `pass` for a constraint that applied and found nothing.
fn entry(
    r: &ObjectResult,
    (policy, rule): (&PolicyRef, &str),
    violation: Option<&Violation>,
    point: Point,
    timestamp: u64,
) -> Value {
    let mut properties: BTreeMap<String, String> = r.properties.clone();
    properties.insert("enforcementPoint".into(), point.as_str().into());
    if let Some(v) = violation {
        properties.insert("enforcementAction".into(), v.action.as_str().into());
    }
    let result = violation.map_or("pass", status);
    let mut e = json!({
        "source": "sealgate",
        "policy": policy,
        "rule": rule,
        "result": result,
        "scored": true,
        "timestamp": {"seconds": timestamp, "nanos": 0},
        "resources": [resource(r)],
        "properties": properties,
    });
    if let Some(v) = violation {
        e["message"] = v.message.clone().into();
        // Only when the constraint declares it, as Kyverno reports a policy's annotation.
        if let Some(s) = v.severity {
            e["severity"] = s.as_str().into();
        }
    }
    e
}

/// Seconds since the epoch, for result timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The report objects for `results` found at `point`, at `timestamp` (seconds since the epoch).
pub fn policy_reports(
    results: &[ObjectResult],
    point: Point,
    timestamp: u64,
    api: ReportApi,
) -> Vec<Value> {
    // namespace ("" = cluster) → results
    let mut by_ns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for r in results {
        let out = by_ns.entry(r.object.namespace.as_str()).or_default();
        for v in &r.violations {
            out.push(entry(
                r,
                (&v.policy, &v.constraint),
                Some(v),
                point,
                timestamp,
            ));
        }
        for (policy, rule) in &r.applied {
            if !r
                .violations
                .iter()
                .any(|v| v.policy == *policy && v.constraint == *rule)
            {
                out.push(entry(r, (policy, rule), None, point, timestamp));
            }
        }
    }
    let mut reports = Vec::new();
    for (ns, entries) in by_ns {
        for (i, chunk) in entries.chunks(MAX_RESULTS).enumerate() {
            let mut summary = BTreeMap::from([
                ("pass", 0),
                ("fail", 0),
                ("warn", 0),
                ("error", 0),
                ("skip", 0),
            ]);
            for e in chunk {
                if let Some(n) = e["result"].as_str().and_then(|s| summary.get_mut(s)) {
                    *n += 1;
                }
            }
            let name = match i {
                0 => format!("sealgate-{}", point.as_str()),
                n => format!("sealgate-{}-{}", point.as_str(), n + 1),
            };
            let mut metadata = json!({
                "name": name,
                "labels": {"app.kubernetes.io/managed-by": "sealgate"},
            });
            let (namespaced, cluster) = api.kinds();
            let kind = if ns.is_empty() {
                cluster
            } else {
                metadata["namespace"] = ns.into();
                namespaced
            };
            let mut report = json!({
                "apiVersion": api.api_version(),
                "kind": kind,
                "metadata": metadata,
                "summary": summary,
                "results": chunk,
            });
            if api == ReportApi::OpenReports {
                report["source"] = "sealgate".into();
            }
            reports.push(report);
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(policy: &str, constraint: &str, action: Action, ns: &str) -> Violation {
        Violation {
            policy: PolicyRef::Template(policy.into()),
            constraint: constraint.into(),
            message: format!("{constraint} says no"),
            details: json!({}),
            action,
            object: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: ns.into(),
                name: "web".into(),
            },
            path: None,
            evaluation_error: false,
            severity: None,
        }
    }

    #[test]
    fn one_report_per_namespace_and_one_for_the_cluster() {
        let web = ObjectResult {
            object: violation("P", "c", Action::Deny, "shop").object,
            uid: Some("u-1".into()),
            applied: vec![
                (
                    PolicyRef::Template("K8sAllowedRepos".into()),
                    "repos".into(),
                ),
                (
                    PolicyRef::Template("K8sRequiredLabels".into()),
                    "labels".into(),
                ),
                (PolicyRef::Template("Probes".into()), "probes".into()),
            ],
            violations: vec![
                Violation {
                    severity: Some(crate::policy::Severity::High),
                    ..violation("K8sAllowedRepos", "repos", Action::Deny, "shop")
                },
                violation("K8sRequiredLabels", "labels", Action::Warn, "shop"),
            ],
            properties: BTreeMap::from([("file".into(), "apps/web.yaml".into())]),
        };
        let role = ObjectResult {
            object: ObjectRef {
                api_version: "rbac.authorization.k8s.io/v1".into(),
                kind: "ClusterRole".into(),
                namespace: String::new(),
                name: "admin".into(),
            },
            applied: vec![(
                PolicyRef::Template("NoWildcards".into()),
                "no-wildcards".into(),
            )],
            violations: vec![Violation {
                evaluation_error: true,
                ..violation("NoWildcards", "no-wildcards", Action::Dryrun, "")
            }],
            ..ObjectResult::default()
        };
        let reports = policy_reports(
            &[web.clone(), role.clone()],
            Point::Audit,
            1_800_000_000,
            ReportApi::WgPolicy,
        );
        assert_eq!(reports.len(), 2);
        // OpenReports: the same results under openreports.io's kinds, with the report's source.
        let open = policy_reports(
            &[web, role],
            Point::Audit,
            1_800_000_000,
            ReportApi::OpenReports,
        );
        assert_eq!(
            (&open[0]["apiVersion"], &open[0]["kind"], &open[1]["kind"]),
            (
                &json!("openreports.io/v1alpha1"),
                &json!("ClusterReport"),
                &json!("Report")
            )
        );
        assert_eq!(open[1]["source"], "sealgate");
        assert_eq!(open[1]["results"], reports[1]["results"]);
        assert_eq!(open[1]["summary"], reports[1]["summary"]);
        let cluster = &reports[0];
        assert_eq!(cluster["kind"], "ClusterPolicyReport");
        assert_eq!(cluster["metadata"]["name"], "sealgate-audit");
        assert!(cluster["metadata"].get("namespace").is_none());
        assert_eq!(cluster["summary"]["error"], 1);
        let shop = &reports[1];
        assert_eq!(shop["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(shop["kind"], "PolicyReport");
        assert_eq!(shop["metadata"]["namespace"], "shop");
        assert_eq!(
            shop["summary"],
            json!({"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 0})
        );
        let results = shop["results"].as_array().unwrap();
        let fail = &results[0];
        assert_eq!(fail["policy"], "K8sAllowedRepos");
        assert_eq!(fail["rule"], "repos");
        assert_eq!(fail["result"], "fail");
        assert_eq!(fail["message"], "repos says no");
        assert_eq!(fail["timestamp"]["seconds"], 1_800_000_000u64);
        assert_eq!(
            fail["resources"][0],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop", "uid": "u-1"})
        );
        assert_eq!(
            fail["properties"],
            json!({"enforcementAction": "deny", "enforcementPoint": "audit", "file": "apps/web.yaml"})
        );
        // Severity only where the constraint declares one.
        assert_eq!(fail["severity"], "high");
        assert_eq!(open[1]["results"][0]["severity"], "high");
        assert_eq!(results[1]["result"], "warn");
        assert!(results[1].get("severity").is_none());
        assert_eq!(results[2]["result"], "pass");
        assert_eq!(results[2]["policy"], "Probes");
        assert!(results[2].get("message").is_none());
    }

    #[test]
    fn large_namespaces_are_split_under_the_etcd_object_limit() {
        let r = ObjectResult {
            object: violation("P", "c", Action::Deny, "big").object,
            violations: (0..MAX_RESULTS + 5)
                .map(|i| violation("P", &format!("c{i}"), Action::Deny, "big"))
                .collect(),
            ..ObjectResult::default()
        };
        let reports = policy_reports(&[r], Point::Ci, 0, ReportApi::WgPolicy);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1]["metadata"]["name"], "sealgate-ci-2");
        assert_eq!(reports[0]["summary"]["fail"], MAX_RESULTS);
        assert_eq!(reports[1]["summary"]["fail"], 5);
    }
}
