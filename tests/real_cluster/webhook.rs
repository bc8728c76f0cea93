//! The webhook, dispatched by the real API server: denials and warnings as `kubectl` shows them,
//! the identities Kubernetes' own controllers use, subresources, failing closed without
//! deadlocking the cluster, namespace labels, and certificate and configuration changes.

use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sealgate_testenv::Identity;

use crate::Test;
use crate::env::{Env, denied_by, ensure, fail};

pub const TESTS: &[(&str, Test)] = &[
    (
        "webhook::human_privileged_pod_is_denied",
        human_privileged_pod,
    ),
    (
        "webhook::agent_deployment_and_replicaset_pods",
        agent_deployment,
    ),
    ("webhook::warnings_and_dry_run", warnings_and_dry_run),
    (
        "webhook::privileged_debug_container_is_denied",
        debug_container,
    ),
    ("webhook::namespace_relabel_takes_effect", namespace_relabel),
    (
        "webhook::stopped_fails_closed_without_deadlock",
        stopped_fails_closed,
    ),
    ("webhook::slow_webhook_meets_the_timeout", slow_webhook),
    (
        "webhook::oversized_review_is_413_to_the_api_server",
        oversized_review,
    ),
    (
        "webhook::certificate_rotation_and_configuration_recreate",
        cert_rotation_and_recreate,
    ),
];

fn pod(ns: &str, name: &str, privileged: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
  containers:
    - name: app
      image: registry.example.com/app:1.0
      securityContext:
        privileged: {privileged}
"#
    )
}

/// A Deployment that passes every built-in policy.
pub fn compliant_deployment(ns: &str, name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: app
          image: {image}
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits: {{cpu: 100m, memory: 64Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities: {{drop: [ALL]}}
"#
    )
}

const IMAGE: &str =
    "ghcr.io/example/shop@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn denied_by_us(e: &str) -> bool {
    e.contains("admission webhook \"validate.sealgate.dev\" denied the request")
}

fn human_privileged_pod(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("human");
    privileged_pod_is_denied(env, &ns)
}

/// A human's privileged Pod in `ns` is denied by the webhook, the constraint named in kubectl's
/// error (the tier's smoke test, for `deploy/` and for the Helm chart).
pub fn privileged_pod_is_denied(env: &Env, ns: &str) -> Result<(), Failed> {
    let e = env
        .cp
        .try_kubectl_stdin(
            &Identity::Human,
            &["apply", "-f", "-"],
            &pod(ns, "shell", true),
        )
        .err()
        .ok_or_else(|| fail("a human's privileged Pod was admitted"))?;
    ensure(denied_by_us(&e), || {
        format!("not denied by the webhook: {e}")
    })?;
    // The constraint names reach kubectl's error.
    ensure(e.contains("pod-security-restricted"), || {
        format!("no constraint name in: {e}")
    })
}

fn agent_deployment(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("agent");
    env.cp
        .try_kubectl_stdin(
            &Identity::Agent,
            &["apply", "--server-side", "-f", "-"],
            &compliant_deployment(&ns, "shop", IMAGE),
        )
        .map_err(|e| fail(format!("the agent's compliant Deployment was denied: {e}")))?;
    // The deployment controller makes a ReplicaSet and the ReplicaSet controller the Pods, each
    // under its own service account: the webhook judges them as such.
    env.wait(
        "the ReplicaSet controller's Pods",
        Duration::from_secs(60),
        || {
            env.get_json(&["-n", &ns, "pods", "-l", "app=shop"])
                .and_then(|l| l["items"].as_array().map(Vec::len))
                == Some(2)
        },
    )?;
    env.wait(
        "the webhook's decisions on them",
        Duration::from_secs(10),
        || {
            env.with_webhook(|w| {
                w.proc.log().lines().any(|l| {
                    l.contains("system:serviceaccount:kube-system:replicaset-controller")
                        && l.contains(&format!("\"namespace\":\"{ns}\""))
                        && l.contains("\"kind\":\"Pod\"")
                })
            })
            .unwrap_or(false)
        },
    )?;
    // A human may not make the same change.
    let e = env
        .cp
        .try_kubectl_stdin(
            &Identity::Human,
            &["apply", "--server-side", "-f", "-"],
            &compliant_deployment(&ns, "shop2", IMAGE),
        )
        .err()
        .ok_or_else(|| fail("a human's Deployment was admitted"))?;
    ensure(denied_by_us(&e) && e.contains("gitops-identity"), || {
        e.clone()
    })
}

fn warnings_and_dry_run(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("breakglass");
    // Break-glass: a member of sealgate:break-glass with the annotation is admitted, and the
    // audit constraint's `warn` reaches kubectl as a warning.
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hotfix\n  namespace: {ns}\n  annotations:\n    sealgate.dev/break-glass: \"INC-1234: payment outage\"\ndata:\n  mode: safe\n"
    );
    let out = env
        .cp
        .kubectl(&Identity::Admin)
        .args([
            "--as",
            "alice@example.com",
            "--as-group",
            "sealgate:break-glass",
            "--as-group",
            "system:authenticated",
        ])
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(cm.as_bytes())?;
            c.wait_with_output()
        })
        .map_err(|e| fail(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.success(), || {
        format!("break-glass was denied: {stderr}")
    })?;
    ensure(
        stderr.contains("Warning:") && stderr.contains("gitops-break-glass-audit"),
        || format!("no warning reached kubectl: {stderr}"),
    )?;
    // --dry-run=server is judged as the real request.
    let e = env
        .cp
        .try_kubectl(
            &Identity::Human,
            &["-n", &ns, "create", "configmap", "x", "--dry-run=server"],
        )
        .err()
        .ok_or_else(|| fail("a human's dry-run was admitted"))?;
    ensure(denied_by_us(&e), || e.clone())?;
    env.wait(
        "the dry-run decision in the webhook's log",
        Duration::from_secs(5),
        || {
            env.with_webhook(|w| {
                w.proc.log().lines().any(|l| {
                    l.contains(&format!("\"namespace\":\"{ns}\"")) && l.contains("\"dry_run\":true")
                })
            })
            .unwrap_or(false)
        },
    )
}

/// `kubectl debug` adds an ephemeral container through `pods/ephemeralcontainers`; a
/// privileged one is denied even for the agent.
fn debug_container(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("debug");
    env.cp.apply(&Identity::Agent, &format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: {ns}\nspec:\n  automountServiceAccountToken: false\n  securityContext:\n    runAsNonRoot: true\n    seccompProfile: {{type: RuntimeDefault}}\n  containers:\n    - name: app\n      image: {IMAGE}\n      resources:\n        requests: {{cpu: 10m, memory: 16Mi}}\n        limits: {{cpu: 100m, memory: 64Mi}}\n      securityContext:\n        allowPrivilegeEscalation: false\n        readOnlyRootFilesystem: true\n        capabilities: {{drop: [ALL]}}\n"
    ));
    let e = env
        .try_kubectl(
            &Identity::Human,
            &[
                "-n",
                &ns,
                "debug",
                "app",
                "--image=busybox:1.36",
                "--profile=sysadmin",
                "--",
                "sleep",
                "1",
            ],
        )
        .err()
        .ok_or_else(|| fail("a privileged debug container was admitted"))?;
    ensure(denied_by_us(&e), || {
        format!("not denied by the webhook: {e}")
    })?;
    let pod = env.get_json(&["-n", &ns, "pod", "app"]).unwrap_or_default();
    ensure(pod["spec"]["ephemeralContainers"].is_null(), || {
        "the ephemeral container was added".into()
    })
}

fn namespace_relabel(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.cp.namespace("relabel", &[]);
    let create =
        |name: &str| env.try_kubectl(&Identity::Human, &["-n", &ns, "create", "configmap", name]);
    create("before").map_err(|e| fail(format!("ungoverned namespace: {e}")))?;
    env.kubectl_ok(
        &Identity::Admin,
        &["label", "namespace", &ns, "sealgate.dev/governed=true"],
    );
    let mut n = 0;
    env.wait(
        "the label to govern the namespace",
        Duration::from_secs(10),
        || {
            n += 1;
            create(&format!("after-{n}")).is_err_and(|e| e.contains("gitops-identity"))
        },
    )?;
    env.kubectl_ok(
        &Identity::Admin,
        &["label", "namespace", &ns, "sealgate.dev/governed-"],
    );
    env.wait(
        "the label's removal to take effect",
        Duration::from_secs(10),
        || {
            n += 1;
            create(&format!("again-{n}")).is_ok()
        },
    )
}

/// With no webhook answering, changes in governed namespaces are refused (failurePolicy Fail),
/// while kube-system, sealgate's own namespace, Leases and Events still work.
fn stopped_fails_closed(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("closed");
    env.stop_webhook();
    let result = (|| {
        let e = env
            .try_kubectl(&Identity::Agent, &["-n", &ns, "create", "configmap", "x"])
            .err()
            .ok_or_else(|| fail("a change was admitted with the webhook down"))?;
        ensure(e.contains("failed calling webhook"), || {
            format!("not refused by failing closed: {e}")
        })?;
        for (ns, what) in [
            ("kube-system", "kube-system"),
            ("sealgate-system", "sealgate's namespace"),
        ] {
            env.try_kubectl(
                &Identity::Admin,
                &[
                    "-n",
                    ns,
                    "create",
                    "configmap",
                    &format!("fc-{}", std::process::id()),
                ],
            )
            .map_err(|e| fail(format!("{what} is blocked with the webhook down: {e}")))?;
            env.try_kubectl(
                &Identity::Admin,
                &[
                    "-n",
                    ns,
                    "delete",
                    "configmap",
                    &format!("fc-{}", std::process::id()),
                ],
            )
            .map_err(fail)?;
        }
        // Leases and Events are not in the webhook's rules.
        env.cp
            .try_kubectl_stdin(
                &Identity::Admin,
                &["apply", "-f", "-"],
                &format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: fc\n  namespace: {ns}\nspec:\n  holderIdentity: x\n"),
            )
            .map_err(|e| fail(format!("a Lease is blocked with the webhook down: {e}")))?;
        env.cp
            .try_kubectl_stdin(
                &Identity::Admin,
                &["create", "-f", "-"],
                &format!("apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: fc\n  namespace: {ns}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: testenv\nreportingInstance: testenv\naction: Test\nreason: Test\nregarding: {{kind: ConfigMap, name: x, namespace: {ns}}}\ntype: Normal\n"),
            )
            .map_err(|e| fail(format!("an Event is blocked with the webhook down: {e}")))?;
        Ok(())
    })();
    // The webhook comes back for the next tests either way.
    env.webhook()?;
    result
}

/// A webhook slower than the configuration's timeoutSeconds (5 s): the API server gives up at
/// its timeout and fails closed, and the request takes no longer than that.
fn slow_webhook(env: &Env) -> Result<(), Failed> {
    env.installed()?;
    let ns = env.governed_namespace("slow");
    env.stop_webhook();
    // Accepts TLS connections and never answers.
    let listener = std::net::TcpListener::bind(("127.0.0.1", env.webhook_port))
        .map_err(|e| fail(e.to_string()))?;
    let hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).ok();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let started = Instant::now();
    let r = env.try_kubectl(&Identity::Agent, &["-n", &ns, "create", "configmap", "x"]);
    let took = started.elapsed();
    let _ = hold.join();
    env.webhook()?;
    let e = r
        .err()
        .ok_or_else(|| fail("admitted with an unresponsive webhook"))?;
    eprintln!(
        "  unresponsive webhook: refused after {:.1} s",
        took.as_secs_f64()
    );
    ensure(e.contains("failed calling webhook"), || e.clone())?;
    ensure(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        || format!("refused after {took:?}, not at the 5 s timeout"),
    )
}

fn ca_bundle(env: &Env) -> String {
    env.get_json(&["validatingwebhookconfiguration", "sealgate-webhook"])
        .and_then(|v| {
            v["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The serving certificate renewed by `--self-signed-tls` (the Secret's certificate dropped, as
/// a renewal replaces it), and the webhook configuration deleted and re-created (a `kubectl
/// replace`, a Helm reinstall): admissions keep working, with no `x509` failure, at once.
fn cert_rotation_and_recreate(env: &Env) -> Result<(), Failed> {
    env.webhook()?;
    let ns = env.governed_namespace("rotation");
    let judged = |name: &str| {
        denied_by(
            env.try_kubectl(
                &Identity::Human,
                &["-n", &ns, "create", "configmap", name, "--dry-run=server"],
            ),
            "gitops-identity",
        )
    };
    judged("first").map_err(fail)?;

    // Delete and re-create the configuration: the caBundle must come back at once, not at the
    // next poll.
    env.kubectl_ok(
        &Identity::Admin,
        &[
            "delete",
            "validatingwebhookconfiguration",
            "sealgate-webhook",
        ],
    );
    let recreated = Instant::now();
    env.point_webhook_at_loopback().map_err(fail)?;
    // Within 2 s: well before the next 5 s pass, so only the watch can have done it.
    env.wait(
        "the caBundle to be restored",
        Duration::from_secs(2),
        || !ca_bundle(env).is_empty(),
    )?;
    let restored = recreated.elapsed();
    eprintln!(
        "  webhook configuration re-created: caBundle restored after {:.2} s",
        restored.as_secs_f64()
    );
    // The API server picks the new configuration up within a moment; from then on, every
    // admission is judged.
    let mut failures = Vec::new();
    env.wait(
        "admissions after the re-create",
        Duration::from_secs(10),
        || {
            let r = judged("after-recreate");
            if let Err(e) = &r {
                failures.push(e.clone());
            }
            r.is_ok()
        },
    )?;
    ensure(failures.iter().all(|e| !e.contains("x509")), || {
        format!("admissions failed on the certificate after the re-create: {failures:?}")
    })?;

    // Rotation: the Secret's serving certificate replaced by one for no names (the CA's own),
    // as if it had aged: the webhook reissues under the same CA at its next pass
    // (--reload-interval, 1 s here), writes the files and serves the new certificate, while
    // admissions go on.
    let tls_crt = || {
        env.get_json(&["-n", "sealgate-system", "secret", "sealgate-webhook-tls"])
            .and_then(|s| s["data"]["tls.crt"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let before_cert = tls_crt();
    let before_ca = ca_bundle(env);
    let sec = env
        .get_json(&["-n", "sealgate-system", "secret", "sealgate-webhook-tls"])
        .ok_or_else(|| fail("no sealgate-webhook-tls Secret"))?;
    let ca_crt = sec["data"]["ca.crt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    env.kubectl_ok(
        &Identity::Admin,
        &[
            "-n",
            "sealgate-system",
            "patch",
            "secret",
            "sealgate-webhook-tls",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{"tls.crt":"{ca_crt}"}}}}"#),
        ],
    );
    let started = Instant::now();
    let mut judged_n = 0;
    let mut after_cert = tls_crt();
    // Until the new certificate is served, and 2 s more.
    let mut served = None;
    while started.elapsed() < Duration::from_secs(20) {
        judged(&format!("rot-{judged_n}"))
            .map_err(|e| fail(format!("an admission failed across the rotation: {e}")))?;
        judged_n += 1;
        if served.is_none() {
            after_cert = tls_crt();
            if after_cert != before_cert && after_cert != ca_crt {
                served = Some(Instant::now());
            }
        }
        if served.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
    }
    ensure(after_cert != before_cert && after_cert != ca_crt, || {
        format!(
            "the serving certificate was not reissued\n{}",
            env.component_logs()
        )
    })?;
    ensure(ca_bundle(env) == before_ca, || "the CA changed".into())?;
    let renewed = env
        .with_webhook(|w| {
            w.proc
                .log()
                .contains("renewed the webhook serving certificate")
        })
        .unwrap_or(false);
    ensure(renewed, || "the webhook did not log a renewal".into())?;
    eprintln!("  serving certificate reissued; {judged_n} admissions across it, none failed");
    Ok(())
}

/// kube-apiserver is a Go `net/http` client on HTTP/2: a review over the webhook's
/// `--max-body-bytes` must reach it as a 413 answer, not as a reset stream (which Go reports as
/// a transport error, and curl as `(92) Stream error`; issue 25, item 10). The object is a
/// ConfigMap of 700 KB, within the API server's limits and over the webhook's 512 KiB.
fn oversized_review(env: &Env) -> Result<(), Failed> {
    env.replace_webhook(&["--max-body-bytes=524288"])?;
    let result = (|| {
        let ns = env.governed_namespace("big");
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": ns},
            "data": {"blob": "x".repeat(700_000)},
        });
        let e = env
            .cp
            .try_kubectl_stdin(&Identity::Agent, &["create", "-f", "-"], &cm.to_string())
            .err()
            .ok_or_else(|| fail("a review over --max-body-bytes was admitted"))?;
        ensure(
            e.contains("failed calling webhook")
                && (e.contains("413") || e.contains("too large"))
                && !e.contains("stream error")
                && !e.contains("EOF"),
            || format!("the API server did not get the 413: {e}"),
        )
    })();
    env.stop_webhook();
    result
}
