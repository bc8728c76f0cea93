//! The alerts in `deploy/components/monitoring` name only metrics the binaries export: every
//! `sealgate_*` series in a rule's expression is declared (`# TYPE`) by the webhook's or the
//! controller's `/metrics`, as they encode it. A renamed metric fails here, not silently in
//! Prometheus.

use std::collections::BTreeSet;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `sealgate_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("sealgate_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// The base name a series belongs to: counters are exported with `_total`, histograms with
/// `_bucket`, `_count` and `_sum`.
fn family(series: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| series.strip_suffix(s))
        .unwrap_or(series)
}

/// The webhook's `/metrics`, through its router, after some activity: a review admitted by the
/// policies but refused by provenance, one a policy denies, and a policy reload that fails (a
/// family is exported from its first sample on).
async fn webhook_metrics() -> String {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use sealgate_core::policy::{BundleBuilder, EvalLimits, NamespaceLabels, Sources};
    use sealgate_webhook::namespaces::NamespaceCache;
    use sealgate_webhook::provenance::{Provenance, ProvenanceConfig};
    use sealgate_webhook::state::{AppState, EvalConfig};
    use tower::ServiceExt;

    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let mut ns = NamespaceLabels::new();
    ns.insert(
        "shop".into(),
        [("sealgate.dev/governed".to_string(), "true".to_string())].into(),
    );
    let provenance = std::sync::Arc::new(Provenance::new(ProvenanceConfig {
        required_everywhere: true,
        ..ProvenanceConfig::default()
    }));
    provenance.replace_all(&[], time::OffsetDateTime::now_utc());
    let state = AppState::build(
        b.build().unwrap(),
        NamespaceCache::fixed(ns),
        Some(provenance),
        EvalConfig::default(),
    )
    .unwrap();
    let config_map = |data: serde_json::Value| {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "m-1", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "namespace": "shop", "name": "settings", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "shop"}, "data": data},
            "oldObject": null}})
    };
    for review in [
        config_map(serde_json::json!({"LOG_LEVEL": "info"})),
        config_map(serde_json::json!({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"})),
    ] {
        let resp = sealgate_webhook::server::router(state.clone())
            .oneshot(
                axum::http::Request::post("/validate")
                    .header("content-type", "application/json")
                    .body(Body::from(review.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("t.yaml"),
        "kind: ConstraintTemplate\n: [\n",
    )
    .unwrap();
    let sources = Sources {
        policies: vec![broken.path().to_path_buf()],
        ..Sources::default()
    };
    assert!(!sealgate_webhook::reload::reload_policies(&state, &sources).await);
    let resp = sealgate_webhook::server::metrics_router(state)
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The controller's metrics after an unseal error, a reconcile and a condition.
fn controller_metrics() -> String {
    use sealgate_controller::metrics::{Metrics, OutcomeLabels, ReasonLabels};
    let m = Metrics::default();
    m.unseal_errors
        .get_or_create(&ReasonLabels {
            reason: "UnsealFailed".into(),
        })
        .inc();
    m.reconcile_duration
        .get_or_create(&OutcomeLabels {
            outcome: "failed".into(),
        })
        .observe(0.01);
    m.set_condition("sealgate.dev", "shop", "db", false);
    m.encode()
}

#[tokio::test]
async fn every_metric_the_alerts_use_is_exported() {
    let rules =
        std::fs::read_to_string(repo().join("deploy/components/monitoring/prometheusrule.yaml"))
            .unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&rules).unwrap();
    let exprs: Vec<&str> = doc["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 9, "{exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let exported = format!("{}{}", webhook_metrics().await, controller_metrics());
    let declared: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|s| !declared.contains(family(s)))
        .collect();
    assert!(
        missing.is_empty(),
        "the alerts use metrics no binary exports: {missing:?} (exported: {declared:?})"
    );
    // The check can fail: a name no binary exports is caught.
    assert_eq!(
        family("sealgate_webhook_requests_total"),
        "sealgate_webhook_requests"
    );
    assert!(!declared.contains(family("sealgate_webhook_no_such_metric_total")));
    // Both components are covered.
    for prefix in ["sealgate_webhook_", "sealgate_controller_"] {
        assert!(used.iter().any(|u| u.starts_with(prefix)), "{prefix}");
    }
}

/// promtool, built from its Go module (`testenv/go/promtool`), checks the rules and runs their
/// unit tests (`prometheusrule.test.yaml`): each alert fires on the series it is for, with its
/// labels and annotations, and not before its `for`.
#[test]
fn promtool_checks_and_tests_the_alerts() {
    let bin = match sealgate_testenv::go::binaries(&sealgate_testenv::go::PROMTOOL) {
        Ok(dir) => dir.join("promtool"),
        Err(e) => {
            sealgate_testkit::peer::missing(&format!(
                "promtool (Go 1.26 and the Go module proxy build it from testenv/go/promtool): {e}"
            ));
            return;
        }
    };
    let component = repo().join("deploy/components/monitoring");
    let rule: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(component.join("prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    // A PrometheusRule's spec is a Prometheus rule file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        component.join("prometheusrule.test.yaml"),
        dir.path().join("tests.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "tests.yaml"],
    ] {
        let out = std::process::Command::new(&bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
