//! The Helm chart installed by the real `helm` (Helm 4, `testenv/go/helm`) into a real API server,
//! then the tier's smoke test on that install: the controller, under the chart's service account
//! and RBAC, unseals a sealed Secret; the webhook, under the chart's, denies a human's privileged
//! Pod through the chart's webhook configuration. `helm uninstall` keeps the CRDs and with them
//! every SealedSecret.
//!
//! A control plane of its own: on the shared one, `deploy/` owns the cluster-wide objects (CRDs,
//! ClusterRoles, the webhook configuration), which Helm rightly refuses to adopt.

use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::controller::{seal, secret_yaml, wait_secret};
use crate::env::{Env, SYSTEM_NS, ensure, fail};
use crate::webhook::privileged_pod_is_denied;

pub const TESTS: &[(&str, Test)] = &[(
    "chart::helm_install_passes_the_smoke_test_and_uninstall_keeps_sealedsecrets",
    helm_install,
)];

const PASSWORD: &str = "chart-installed-password";

/// `helm ARGS` against `env`'s API server as the admin, with Helm's state in the control plane's
/// directory: stdout, or the error with stderr.
fn helm(env: &Env, args: &[&str]) -> Result<String, Failed> {
    let bin = sealgate_testenv::go::binaries(&sealgate_testenv::go::HELM)
        .map_err(|e| fail(format!("helm cannot be built: {e}")))?
        .join("helm");
    let out = sealgate_testenv::go::helm_command(&bin, &env.path("helm"))
        .args(args)
        .env("KUBECONFIG", env.cp.kubeconfig(&Identity::Admin))
        .output()
        .map_err(|e| fail(format!("cannot run helm: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(format!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn helm_install(_shared: &Env) -> Result<(), Failed> {
    let env = Env::start().map_err(|e| fail(format!("a second control plane: {e}")))?;
    let chart = env.file("charts/sealgate");
    let chart = chart.to_string_lossy();
    // As docs/install.md says: Helm creates the namespace.
    let notes = helm(
        &env,
        &[
            "install",
            "sealgate",
            &chart,
            "--namespace",
            SYSTEM_NS,
            "--create-namespace",
        ],
    )?;
    ensure(
        notes.contains("STATUS: deployed") && notes.contains("sealgate cert --controller"),
        || format!("helm install's output lacks the status or the notes:\n{notes}"),
    )?;
    // The API server reaches the local webhook by a loopback url (no kube-proxy here). A JSON
    // patch, not an apply: Helm's field manager owns `service`, which must go.
    env.install_with(|env| {
        let url =
            serde_json::json!({"url": format!("https://127.0.0.1:{}/validate", env.webhook_port)});
        let patch = serde_json::json!([
            {"op": "replace", "path": "/webhooks/0/clientConfig", "value": url},
            {"op": "replace", "path": "/webhooks/1/clientConfig", "value": url},
        ]);
        env.try_kubectl(
            &Identity::Admin,
            &[
                "patch",
                "validatingwebhookconfiguration",
                "sealgate-webhook",
                "--type=json",
                "-p",
                &patch.to_string(),
            ],
        )
        .map(drop)
    })?;
    let list = helm(&env, &["list", "-n", SYSTEM_NS, "-o", "json"])?;
    ensure(list.contains("\"status\":\"deployed\""), || list.clone())?;

    // The smoke test, with the chart's RBAC.
    env.webhook()?;
    let port = env.controller(|c| c.port)?;
    let ns = env.governed_namespace("chart");
    let sealed = seal(&env, port, &secret_yaml(&ns, "db", PASSWORD))?;
    env.cp
        .try_kubectl_stdin(
            &Identity::Agent,
            &["apply", "--server-side", "-f", "-"],
            &sealed,
        )
        .map_err(|e| fail(format!("the agent's SealedSecret was refused: {e}")))?;
    wait_secret(&env, &ns, "db", PASSWORD)?;
    privileged_pod_is_denied(&env, &ns)?;

    // Uninstall: the workloads and the webhook configuration go, the CRDs and SealedSecrets stay.
    env.stop_webhook();
    env.stop_controller();
    helm(&env, &["uninstall", "sealgate", "-n", SYSTEM_NS])?;
    env.wait(
        "helm uninstall to remove the webhook configuration",
        Duration::from_secs(30),
        || {
            env.try_kubectl(
                &Identity::Admin,
                &["get", "validatingwebhookconfiguration", "sealgate-webhook"],
            )
            .is_err()
        },
    )?;
    for kept in [
        vec!["get", "crd", "sealedsecrets.sealgate.dev"],
        vec!["get", "crd", "attestations.sealgate.dev"],
        vec!["-n", &ns, "get", "sealedsecret", "db"],
    ] {
        env.try_kubectl(&Identity::Admin, &kept)
            .map_err(|e| fail(format!("gone after helm uninstall: {e}")))?;
    }
    ensure(
        env.try_kubectl(
            &Identity::Admin,
            &["-n", SYSTEM_NS, "get", "deployment", "sealgate-webhook"],
        )
        .is_err(),
        || "the webhook Deployment survived helm uninstall".into(),
    )
}
