//! The alerts and the Grafana dashboard in `deploy/components/monitoring` name only metrics the
//! binaries export: every `sealgate_*` series in a rule's or a panel's expression is declared (`# TYPE`) by the webhook's or the
//! controller's `/metrics`, as they encode it. A renamed metric fails here, not silently in
//! Prometheus.

use std::collections::BTreeSet;

use sealgate_testkit::admission::{GOVERNED, namespaces};
use sealgate_testkit::process::succeeded;

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

/// The label names of each exported family (from the sample lines).
fn exported_labels(text: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let set = out.entry(family(name).to_string()).or_default();
        for pair in rest.split(',') {
            if let Some((k, _)) = pair.split_once('=') {
                set.insert(k.trim().to_string());
            }
        }
    }
    out
}

/// The label names a PromQL expression groups by (`by (…)`) or selects on (`{k="v"}`).
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let list = part.split(')').next().unwrap_or_default();
        out.extend(list.split(',').map(|l| l.trim().to_string()));
    }
    for part in expr.split('{').skip(1) {
        let list = part.split('}').next().unwrap_or_default();
        for matcher in list.split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.retain(|l| !l.is_empty());
    out
}

/// The webhook's `/metrics`, through its router, after some activity: a review admitted by the
/// policies but refused by provenance, one a policy denies, and a policy reload that fails (a
/// family is exported from its first sample on).
async fn webhook_metrics() -> String {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use sealgate_core::policy::{BundleBuilder, EvalLimits, Sources};
    use sealgate_webhook::namespaces::NamespaceCache;
    use sealgate_webhook::provenance::{Provenance, ProvenanceConfig};
    use sealgate_webhook::state::{AppState, EvalConfig};
    use tower::ServiceExt;

    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let ns = namespaces(&[("shop", &[GOVERNED])]);
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
        sealgate_testkit::admission::review(
            "m-1",
            "CREATE",
            "system:serviceaccount:flux-system:kustomize-controller",
            &[],
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "shop"}, "data": data}),
            serde_json::Value::Null,
        )
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

/// The PromQL expressions of the alerts and of the dashboard's panels.
fn expressions() -> (Vec<String>, Vec<String>) {
    let component = repo().join("deploy/components/monitoring");
    let rules = std::fs::read_to_string(component.join("prometheusrule.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&rules).unwrap();
    let alerts: Vec<String> = doc["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(component.join("dashboard.json")).unwrap())
            .unwrap();
    let panels: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    (alerts, panels)
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let (alerts, panels) = expressions();
    assert!(alerts.len() >= 9, "{alerts:?}");
    assert!(panels.len() >= 20, "{panels:?}");
    let used: BTreeSet<String> = alerts
        .iter()
        .chain(&panels)
        .flat_map(|e| metric_names(e))
        .collect();
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
        "the alerts or the dashboard use metrics no binary exports: {missing:?} (exported: {declared:?})"
    );
    // The check can fail: a name no binary exports is caught.
    assert_eq!(
        family("sealgate_webhook_requests_total"),
        "sealgate_webhook_requests"
    );
    assert!(!declared.contains(family("sealgate_webhook_no_such_metric_total")));
    // And the labels they group or select by are the series' labels.
    let labels = exported_labels(&exported);
    for e in alerts.iter().chain(&panels) {
        let have: BTreeSet<&str> = metric_names(e)
            .iter()
            .filter_map(|m| labels.get(family(m)))
            .flatten()
            .map(String::as_str)
            .collect();
        for l in label_names(e) {
            assert!(
                l == "le" || have.contains(l.as_str()),
                "{e:?} uses the label {l:?}, which its metrics do not have ({have:?})"
            );
        }
    }
    assert_eq!(
        label_names(r#"sum by (reason, le) (x{status="False",b=~"y"}) and z{c!="d"}"#),
        ["b", "c", "le", "reason", "status"]
            .map(String::from)
            .into()
    );
    // Both components are covered, by the alerts and by the dashboard.
    for exprs in [&alerts, &panels] {
        let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        for prefix in ["sealgate_webhook_", "sealgate_controller_"] {
            assert!(names.iter().any(|u| u.starts_with(prefix)), "{prefix}");
        }
    }
    eprintln!(
        "  {} metrics used by {} alert and {} panel expressions, all exported: {}",
        used.len(),
        alerts.len(),
        panels.len(),
        used.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// promtool, built from its Go module (`testenv/go/promtool`), checks the rules and runs their
/// unit tests (`prometheusrule.test.yaml`): each alert fires on the series it is for, with its
/// labels and annotations, and not before its `for`.
#[test]
fn promtool_checks_and_tests_the_alerts() {
    let Some(bin) = sealgate_testenv::go::peer_binary(&sealgate_testenv::go::PROMTOOL, "promtool")
    else {
        return;
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
        succeeded(
            format!("promtool {}", args.join(" ")),
            std::process::Command::new(&bin)
                .args(args)
                .current_dir(dir.path())
                .output(),
        );
    }
}
