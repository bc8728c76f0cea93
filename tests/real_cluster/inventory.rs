//! A referential template from the public Gatekeeper library (unique Ingress host) at the
//! cluster's door: the webhook watches the kinds the library's own sync configuration names and
//! denies from that inventory.

use std::time::Duration;

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, denied_by, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[(
    "inventory::unique_ingress_host_from_the_watched_inventory",
    unique_ingress_host,
)];

fn ingress(ns: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  rules:\n    - host: {host}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    )
}

fn unique_ingress_host(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let library = match sealgate_testkit::gatekeeper::library_dir() {
        Ok(dir) => dir.join("general/uniqueingresshost"),
        Err(why) if sealgate_testenv::required() => return Err(fail(why)),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return Ok(());
        }
    };
    // The library's files as they are: template, constraint, and its sync configuration (which
    // also names Ingress versions this API server no longer serves).
    let dir = env.path("unique-ingress-host");
    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
    for (from, to) in [
        ("template.yaml", "template.yaml"),
        ("sync.yaml", "sync.yaml"),
        (
            "samples/unique-ingress-host/constraint.yaml",
            "constraint.yaml",
        ),
    ] {
        std::fs::copy(library.join(from), dir.join(to))
            .map_err(|e| fail(format!("{from}: {e}")))?;
    }
    // What docs/policies.md tells users to add to the webhook's ClusterRole.
    env.cp.apply(
        &Identity::Admin,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: sealgate-webhook-inventory\nrules:\n  - apiGroups: [\"networking.k8s.io\"]\n    resources: [\"ingresses\"]\n    verbs: [\"list\", \"watch\"]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: sealgate-webhook-inventory\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sealgate-webhook-inventory}\nsubjects:\n  - {kind: ServiceAccount, name: sealgate-webhook, namespace: sealgate-system}\n",
    );
    let a = env.cp.namespace("ingress-a", &[]);
    let b = env.cp.namespace("ingress-b", &[]);
    env.cp
        .apply(&Identity::Human, &ingress(&a, "web", "shop.example.com"));

    env.replace_webhook(&[&format!("--policy={}", dir.display())])?;
    let result = (|| {
        let mut last = String::new();
        env.wait(
            "a duplicate host to be denied",
            Duration::from_secs(20),
            || {
                let answer = env.cp.try_kubectl_stdin(
                    &Identity::Human,
                    &["apply", "--dry-run=server", "-f", "-"],
                    &ingress(&b, "web", "shop.example.com"),
                );
                denied_by(answer, "unique-ingress-host")
                    .map_err(|e| last = e)
                    .is_ok()
            },
        )
        .map_err(|f| {
            fail(format!(
                "{}\nlast answer: {last}",
                f.message().unwrap_or_default()
            ))
        })?;
        // Another host is fine, and a new Ingress joins the inventory.
        env.cp
            .apply(&Identity::Human, &ingress(&b, "api", "api.example.com"));
        env.wait(
            "the new Ingress to join the inventory",
            Duration::from_secs(20),
            || {
                env.cp
                    .try_kubectl_stdin(
                        &Identity::Human,
                        &["apply", "--dry-run=server", "-f", "-"],
                        &ingress(&a, "api2", "api.example.com"),
                    )
                    .is_err_and(|e| e.contains("unique-ingress-host"))
            },
        )?;
        // Readiness, which gates the webhook's Pods in a cluster, came although the library's
        // sync configuration names Ingress versions this API server does not serve.
        let (status, body) = https_readyz(env.webhook_port);
        ensure(status == 200, || {
            format!("/readyz answered {status}: {body}")
        })
    })();
    env.stop_webhook();
    result
}

/// GET /readyz from the webhook's HTTPS port (its certificate is not checked: only the answer
/// matters here).
fn https_readyz(port: u16) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/readyz"))
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
