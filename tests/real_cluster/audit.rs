//! `sealgate-webhook audit` against the cluster: objects that predate the webhook are found, and
//! its `-o policyreport` output is accepted by the API server with the wg-policy CRDs as Kyverno
//! ships them; `-o openreports` from audit and from `sealgate lint` is accepted with OpenReports'
//! own CRDs (reports-api v0.2.1), field validation strict.

use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[("audit::policy_reports_are_accepted", policy_reports)];

fn policy_reports(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    env.install_crds(&[
        sealgate_testenv::crds::POLICY_REPORT,
        sealgate_testenv::crds::CLUSTER_POLICY_REPORT,
    ])?;

    // A privileged Pod from before the webhook was installed: the configuration is removed, the
    // Pod created, the configuration restored.
    let ns = env.cp.namespace("audit", &[]);
    env.kubectl_ok(
        &Identity::Admin,
        &[
            "delete",
            "validatingwebhookconfiguration",
            "sealgate-webhook",
        ],
    );
    let created = env.cp.try_kubectl_stdin(
        &Identity::Admin,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: legacy\n  namespace: {ns}\nspec:\n  containers:\n    - name: app\n      image: nginx:latest\n      securityContext:\n        privileged: true\n"
        ),
    );
    let restored = env.point_webhook_at_loopback();
    created.map_err(fail)?;
    restored.map_err(fail)?;
    env.wait_webhook_serving()?;

    // `sealgate-webhook audit -o FORMAT` with deploy/'s policies, as the admin: its stdout.
    let audit = |format: &str| -> Result<Vec<u8>, Failed> {
        let out = std::process::Command::new(env.bin.join("sealgate-webhook"))
            .args(["audit", "-o", format, "--no-builtin", "--policy"])
            .arg(env.file("deploy/base/webhook/policies"))
            .env("KUBECONFIG", env.cp.kubeconfig(&Identity::Admin))
            .output()
            .map_err(|e| fail(e.to_string()))?;
        ensure(out.status.success(), || {
            format!("audit failed: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        Ok(out.stdout)
    };
    let reports = String::from_utf8_lossy(&audit("policyreport")?).into_owned();
    ensure(reports.contains("kind: PolicyReport"), || {
        format!("no PolicyReport in the audit output:\n{reports}")
    })?;
    env.cp
        .try_kubectl_stdin(
            &Identity::Admin,
            &["apply", "--server-side", "-f", "-"],
            &reports,
        )
        .map_err(|e| fail(format!("the API server refused the reports: {e}")))?;
    let mut report = serde_json::Value::Null;
    env.wait(
        "the namespace's PolicyReport",
        Duration::from_secs(10),
        || {
            report = env
                .get_json(&["-n", &ns, "policyreports.wgpolicyk8s.io"])
                .unwrap_or_default();
            report["items"].as_array().is_some_and(|i| !i.is_empty())
        },
    )?;
    let results = report["items"][0]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let privileged_fails = |results: &[serde_json::Value]| {
        results.iter().any(|r| {
            r["result"] == "fail"
                && r["rule"]
                    .as_str()
                    .is_some_and(|p| p.contains("pod-security"))
                && r["resources"][0]["name"] == "legacy"
        })
    };
    ensure(privileged_fails(&results), || {
        format!("the report has no failure for the privileged Pod: {results:?}")
    })?;

    // OpenReports, from audit and from lint, applied with strict field validation.
    env.install_crds(&[
        sealgate_testenv::crds::OPENREPORTS_REPORT,
        sealgate_testenv::crds::OPENREPORTS_CLUSTER_REPORT,
    ])?;
    let audited = audit("openreports")?;
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-git\n  namespace: {ns}\nspec:\n  containers:\n    - name: app\n      image: nginx:latest\n"
        ),
    )
    .map_err(|e| fail(e.to_string()))?;
    let lint = std::process::Command::new(env.bin.join("sealgate"))
        .args(["lint", "-o", "openreports"])
        .arg(&pod)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    ensure(lint.status.code() == Some(1), || {
        format!(
            "lint should fail the Pod: {}",
            String::from_utf8_lossy(&lint.stderr)
        )
    })?;
    for (what, out) in [("audit", &audited), ("lint", &lint.stdout)] {
        let reports = String::from_utf8_lossy(out).into_owned();
        ensure(
            reports.contains("apiVersion: openreports.io/v1alpha1"),
            || format!("no OpenReports report from {what}:\n{reports}"),
        )?;
        env.cp
            .try_kubectl_stdin(
                &Identity::Admin,
                &["apply", "--server-side", "--validate=strict", "-f", "-"],
                &reports,
            )
            .map_err(|e| fail(format!("the API server refused {what}'s OpenReports: {e}")))?;
    }
    let reports = env
        .get_json(&["-n", &ns, "reports.openreports.io"])
        .unwrap_or_default();
    let items = reports["items"].as_array().cloned().unwrap_or_default();
    let by_name = |name: &str| {
        items
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .map(|r| r["results"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    ensure(privileged_fails(&by_name("sealgate-audit")), || {
        format!("audit's Report has no failure for the privileged Pod: {items:?}")
    })?;
    let from_lint = by_name("sealgate-ci");
    ensure(
        from_lint.iter().any(|r| {
            (r["result"] == "fail" || r["result"] == "error")
                && r["resources"][0]["name"] == "from-git"
                && r["properties"]["file"].as_str().is_some()
        }),
        || format!("lint's Report has no failure for the Pod, with its file: {from_lint:?}"),
    )
}
