//! The webhook's router in process (`tower::ServiceExt::oneshot`), with AdmissionReviews shaped as
//! kube-apiserver sends them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sealgate_core::policy::Sources;
use sealgate_core::policy::{BundleBuilder, EvalLimits, NamespaceLabels};
use sealgate_testkit::admission::{GOVERNED, namespaces, review};
use sealgate_webhook::admission::Exemptions;
use sealgate_webhook::reload;
use sealgate_webhook::{
    server,
    state::{AppState, EvalConfig},
};
use serde_json::{Value, json};
use tower::ServiceExt;

fn governed() -> NamespaceLabels {
    // "sandbox": a namespace the cluster has, without the governed label.
    namespaces(&[("shop", &[GOVERNED]), ("sandbox", &[])])
}

fn state_with(config: EvalConfig) -> Arc<AppState> {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    AppState::new(b.build().unwrap(), governed(), config).unwrap()
}

fn state() -> Arc<AppState> {
    state_with(EvalConfig::default())
}

const FLUX: &str = "system:serviceaccount:flux-system:kustomize-controller";

fn deployment(name: &str, image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "uid": "b1e6", "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "web", "image": image,
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}
    })
}

async fn post(state: &Arc<AppState>, body: impl Into<Body>) -> (StatusCode, String) {
    let resp = server::router(state.clone())
        .oneshot(
            Request::post("/validate")
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn decide(state: &Arc<AppState>, review: &Value) -> Value {
    let (status, body) = post(state, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(
        v["response"]["uid"], review["request"]["uid"],
        "the response carries the request's uid"
    );
    v["response"].clone()
}

#[tokio::test]
async fn flux_may_change_a_governed_namespace() {
    let s = state();
    let d = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    let r = decide(
        &s,
        &review(
            "uid-flux",
            "UPDATE",
            FLUX,
            &["system:serviceaccounts"],
            d.clone(),
            d,
        ),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
}

#[tokio::test]
async fn a_human_is_denied_with_every_violation_listed() {
    let s = state();
    let d = deployment("web", "nginx:latest", json!({}));
    let r = decide(
        &s,
        &review(
            "uid-human",
            "UPDATE",
            "alice@example.com",
            &["developers"],
            d.clone(),
            d,
        ),
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "[gitops-identity] UPDATE of Deployment shop/web by \"alice@example.com\" denied"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("[image-policy] container \"web\" uses image \"nginx:latest\""),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 2, "{msg}");
}

#[tokio::test]
async fn break_glass_needs_the_group_and_a_reason_and_is_reported() {
    let s = state();
    let with_reason = deployment(
        "web",
        "registry.example.com/web:1.2.3",
        json!({"sealgate.dev/break-glass": "INC-4711 rollback"}),
    );
    let plain = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    let groups = ["sre", "sealgate:break-glass"];
    let r = decide(
        &s,
        &review(
            "uid-bg",
            "UPDATE",
            "bob@example.com",
            &groups,
            with_reason.clone(),
            plain.clone(),
        ),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    let w = r["warnings"][0].as_str().unwrap();
    assert!(w.starts_with("[gitops-break-glass-audit] break-glass: UPDATE of Deployment shop/web by \"bob@example.com\", reason: INC-4711 rollback"), "{w}");
    // The group without a reason, and a reason without the group: denied.
    let r = decide(
        &s,
        &review(
            "uid-bg2",
            "UPDATE",
            "bob@example.com",
            &groups,
            plain.clone(),
            plain,
        ),
    )
    .await;
    assert_eq!(r["allowed"], false);
    let r = decide(
        &s,
        &review(
            "uid-bg3",
            "UPDATE",
            "eve@example.com",
            &["developers"],
            with_reason.clone(),
            with_reason,
        ),
    )
    .await;
    assert_eq!(r["allowed"], false);
    let metrics = s.metrics.encode();
    assert!(
        metrics.contains("sealgate_webhook_break_glass_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn delete_uses_the_old_object_and_dry_run_is_evaluated_too() {
    let s = state();
    let d = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    let r = decide(
        &s,
        &review(
            "uid-del",
            "DELETE",
            "alice@example.com",
            &[],
            Value::Null,
            d.clone(),
        ),
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE of Deployment shop/web"),
        "{r}"
    );
    let mut dry = review(
        "uid-dry",
        "CREATE",
        "alice@example.com",
        &[],
        d,
        Value::Null,
    );
    dry["request"]["dryRun"] = json!(true);
    assert_eq!(
        decide(&s, &dry).await["allowed"],
        false,
        "a dry run gets the real answer"
    );
}

#[tokio::test]
async fn subresources_ungoverned_and_exempt_namespaces() {
    let s = state();
    let d = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    // kubectl scale: UPDATE on the scale subresource, object is a Scale.
    let mut scale = review(
        "uid-scale",
        "UPDATE",
        "alice@example.com",
        &[],
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 5}}),
        Value::Null,
    );
    scale["request"]["subResource"] = json!("scale");
    scale["request"]["kind"] = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    assert_eq!(
        decide(&s, &scale).await["allowed"],
        true,
        "Scale is not a governed kind"
    );
    // A namespace without the governed label.
    let mut other = d.clone();
    other["metadata"]["namespace"] = json!("sandbox");
    assert_eq!(
        decide(
            &s,
            &review(
                "uid-sb",
                "UPDATE",
                "alice@example.com",
                &[],
                other.clone(),
                other
            )
        )
        .await["allowed"],
        true
    );
    // A namespace the Namespace cache does not know (yet): Gatekeeper fails the review
    // ("namespace selector for namespace-scoped object but missing Namespace"), and so do we.
    let mut unknown = d.clone();
    unknown["metadata"]["namespace"] = json!("new-team");
    let answer = decide(
        &s,
        &review(
            "uid-new",
            "UPDATE",
            "alice@example.com",
            &[],
            unknown.clone(),
            unknown,
        ),
    )
    .await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the labels of Namespace \"new-team\""),
        "{answer}"
    );
    // Exempt namespaces are admitted whatever the object.
    let mut sys = deployment("x", "nginx:latest", json!({}));
    sys["metadata"]["namespace"] = json!("kube-system");
    assert_eq!(
        decide(
            &s,
            &review(
                "uid-sys",
                "CREATE",
                "alice@example.com",
                &[],
                sys,
                Value::Null
            )
        )
        .await["allowed"],
        true
    );
    assert!(s.metrics.encode().contains("decision=\"exempt\""));
}

/// `kubectl debug` adds an ephemeral container through the pods/ephemeralcontainers subresource:
/// the review carries the whole Pod, and pod-security-restricted judges it as a Pod. The
/// deployed webhook configuration sends that subresource (and pods/resize) to the webhook.
#[tokio::test]
async fn ephemeral_containers_are_judged_and_routed_to_the_webhook() {
    let s = state();
    let pod = |ephemeral: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "app", "image": "registry.example.com/web:1.2.3",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
                "ephemeralContainers": ephemeral}})
    };
    let debug = |ephemeral: Value| {
        let old = pod(json!([]));
        let mut r = review(
            "uid-debug",
            "UPDATE",
            "alice@example.com",
            &[],
            pod(ephemeral),
            old,
        );
        r["request"]["subResource"] = json!("ephemeralcontainers");
        r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        r
    };
    let privileged = json!([{"name": "debugger", "image": "registry.example.com/busybox:1.36",
        "securityContext": {"privileged": true}}]);
    let answer = decide(&s, &debug(privileged)).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let msg = answer["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("pod-security-restricted") && msg.contains("debugger"),
        "{msg}"
    );
    let restricted = json!([{"name": "debugger", "image": "registry.example.com/busybox:1.36",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
    let answer = decide(&s, &debug(restricted)).await;
    assert_eq!(answer["allowed"], true, "{answer}");

    let vwc: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/base/webhook/validatingwebhookconfiguration.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let routed = |resource: &str, op: &str| {
        vwc["webhooks"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["apiGroups"] == json!([""])
                    && r["resources"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(resource))
                    && r["operations"].as_array().unwrap().contains(&json!(op))
            })
    };
    for sub in ["pods", "pods/ephemeralcontainers", "pods/resize"] {
        assert!(routed(sub, "UPDATE"), "{sub} is not sent to the webhook");
    }
}

#[tokio::test]
async fn bad_requests_are_400_with_a_clear_body() {
    let s = state();
    let (st, body) = post(&s, "{not json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("malformed JSON: key must be a string at line 1 column 2"),
        "{body}"
    );
    let (st, body) = post(&s, r#"{"apiVersion": "v1", "kind": "Pod"}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("expected an admission.k8s.io/v1 AdmissionReview, got v1 Pod"),
        "{body}"
    );
    let (st, body) = post(
        &s,
        r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
    )
    .await;
    assert_eq!(
        (st, body.trim()),
        (
            StatusCode::BAD_REQUEST,
            "the AdmissionReview has no request"
        )
    );
    let (st, body) = post(&s, r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "operation": "DELETE"}}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("oldObject"), "{body}");
    let (st, body) = post(&s, r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE", "object": {"kind": "Pod"}}}"#).await;
    assert_eq!(
        (st, body.trim()),
        (
            StatusCode::BAD_REQUEST,
            "invalid AdmissionReview request: request.uid is missing"
        )
    );
    // Counted once each, with no operation or kind: a bad body has none to speak of.
    assert!(
        s.metrics.encode().contains(
            r#"sealgate_webhook_requests_total{decision="bad_request",operation="",kind=""} 5"#
        ),
        "{}",
        s.metrics.encode()
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = state_with(EvalConfig {
        max_body_bytes: 64 << 10,
        ..EvalConfig::default()
    });
    let big = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "object": {"data": "x".repeat(100 << 10)}}});
    let (st, _) = post(&s, serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}

fn slow_bundle(dir: &std::path::Path) -> Sources {
    std::fs::write(
        dir.join("slow.yaml"),
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: slow}\nspec:\n  crd: {spec: {names: {kind: Slow}}}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n        package slow\n        violation[{\"msg\": \"never\"}] { count([x | a := numbers.range(1, 20000)[_]; b := numbers.range(1, 20000)[_]; x := a * b; x < 0]) > 0 }\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: Slow\nmetadata: {name: slow}\n",
    )
    .unwrap();
    // The engine timer ends the orphaned evaluation soon after the 200 ms deadline answers.
    Sources {
        builtin: false,
        policies: vec![dir.to_path_buf()],
        limits: EvalLimits {
            eval_timeout: Duration::from_millis(500),
        },
        ..Sources::default()
    }
}

#[tokio::test]
async fn a_policy_past_the_deadline_gets_the_configured_answer_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let sources = slow_bundle(dir.path());
    let d = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    let rv = review("uid-slow", "CREATE", FLUX, &[], d, Value::Null);
    for allow in [false, true] {
        let cfg = EvalConfig {
            deadline: Duration::from_millis(200),
            allow_on_timeout: allow,
            ..EvalConfig::default()
        };
        let s = AppState::new(sources.build([]).unwrap(), governed(), cfg).unwrap();
        let start = std::time::Instant::now();
        let r = decide(&s, &rv).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "answered after the deadline, not when evaluation ended"
        );
        assert_eq!(r["allowed"], allow);
        let text = r.to_string();
        assert!(
            text.contains("policy evaluation did not finish within 200ms"),
            "{text}"
        );
        assert!(s.metrics.encode().contains("decision=\"timeout\""));
    }
}

/// Polls `/metrics` until the gauge line `name` reads `value`.
async fn gauge_reaches(s: &Arc<AppState>, name: &str, value: &str) {
    let line = format!("sealgate_webhook_{name} {value}\n");
    for _ in 0..500 {
        if s.metrics.encode().contains(&line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {value}");
}

#[tokio::test]
async fn an_overloaded_webhook_answers_at_once_not_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = deployment("web", "registry.example.com/web:1.2.3", json!({}));
    let rv = |uid: &str| review(uid, "CREATE", FLUX, &[], d.clone(), Value::Null);
    let cfg = EvalConfig {
        deadline: Duration::from_millis(200),
        concurrency: 1,
        ..EvalConfig::default()
    };
    let s = AppState::new(slow_bundle(dir.path()).build([]).unwrap(), governed(), cfg).unwrap();
    // One evaluation teaches the pool what this policy costs: ~500 ms, until the engine's timer.
    assert_eq!(decide(&s, &rv("uid-1")).await["allowed"], false);
    gauge_reaches(&s, "in_flight_requests", "0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The only thread is busy with one review and another waits: ~500 ms of work > 200 ms.
    let running = tokio::spawn({
        let (s, r) = (s.clone(), rv("uid-2"));
        async move { decide(&s, &r).await }
    });
    gauge_reaches(&s, "in_flight_requests", "1").await;
    let waiting = tokio::spawn({
        let (s, r) = (s.clone(), rv("uid-3"));
        async move { decide(&s, &r).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;

    let start = std::time::Instant::now();
    let r = decide(&s, &rv("uid-4")).await;
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "answered before the deadline: {:?}",
        start.elapsed()
    );
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("[sealgate-webhook] the webhook is overloaded (1 reviews queued, about "),
        "{message}"
    );
    assert!(s.metrics.encode().contains("decision=\"overloaded\""));
    // The queued review was accepted before the overload and ends as any slow review does.
    for t in [running, waiting] {
        let r = t.await.unwrap();
        assert!(r.to_string().contains("did not finish within 200ms"), "{r}");
    }
}

#[tokio::test]
async fn a_broken_bundle_on_reload_keeps_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.rego");
    std::fs::write(
        &policy,
        "package main\n\ndeny contains \"no replicas field\" if not input.spec.replicas\n",
    )
    .unwrap();
    let sources = Sources {
        builtin: false,
        policies: vec![dir.path().to_path_buf()],
        // The interpreter, as `--rego-engine interpreter` selects: it serves the same decisions.
        use_vm: false,
        ..Sources::default()
    };
    let s = AppState::new(
        reload::build(&sources, Vec::new()).unwrap(),
        governed(),
        EvalConfig {
            settings: Exemptions {
                exempt_namespaces: vec![],
            },
            ..EvalConfig::default()
        },
    )
    .unwrap();
    let mut d = deployment("web", "x:1", json!({}));
    d["spec"].as_object_mut().unwrap().remove("replicas");
    let rv = review("uid-r", "CREATE", FLUX, &[], d, Value::Null);
    assert_eq!(decide(&s, &rv).await["allowed"], false);

    std::fs::write(&policy, "package main\n\ndeny contains msg if {\n").unwrap();
    assert!(!reload::reload_policies(&s, &sources).await);
    assert_eq!(
        decide(&s, &rv).await["allowed"],
        false,
        "the old bundle still serves"
    );
    let (_, ready) = get(&s, "/readyz").await;
    assert!(
        ready.contains("\"lastReloadError\":") && ready.contains("Rego error"),
        "{ready}"
    );
    assert!(
        s.metrics
            .encode()
            .contains("what=\"policy\",result=\"error\"")
    );

    std::fs::write(&policy, "package main\n").unwrap();
    assert!(reload::reload_policies(&s, &sources).await);
    assert_eq!(
        decide(&s, &rv).await["allowed"],
        true,
        "the fixed bundle is live"
    );
    let (_, ready) = get(&s, "/readyz").await;
    assert!(ready.contains("\"lastReloadError\":null"), "{ready}");
}

async fn get(state: &Arc<AppState>, path: &str) -> (StatusCode, String) {
    let app = if path == "/metrics" {
        server::metrics_router(state.clone())
    } else {
        server::router(state.clone())
    };
    let resp = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = state();
    assert_eq!(get(&s, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (st, ready) = get(&s, "/readyz").await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(v["ready"], true);
    assert!(v["constraints"].as_u64().unwrap() >= 9);
    let d = deployment("web", "nginx:latest", json!({}));
    decide(&s, &review("uid-m", "CREATE", FLUX, &[], d, Value::Null)).await;
    let (st, m) = get(&s, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    for want in [
        "sealgate_webhook_requests_total{decision=\"denied\",operation=\"CREATE\",kind=\"Deployment\"} 1",
        "sealgate_webhook_violations_total{constraint=\"image-policy\",action=\"deny\"} 1",
        "sealgate_webhook_request_duration_seconds_bucket{le=\"10.0\",outcome=\"denied\"} 1",
        "sealgate_webhook_constraints ",
        "sealgate_webhook_queued_requests 0",
        // The watches' state, read at the scrape (no watch here: labels from files, no sync).
        "sealgate_webhook_namespaces_synced 1",
        "sealgate_webhook_inventory_synced 1",
        "sealgate_webhook_inventory_objects 0",
    ] {
        assert!(m.contains(want), "missing {want}\n{m}");
    }
}

/// Metric labels come from request bodies: made-up kinds and operations, and a 1 MB kind, add
/// no series and leave `/metrics` small (issue 25, item 6: 20,000 random kinds made 20,011
/// series, and twenty 4 MB kinds an 85 MB page).
#[tokio::test]
async fn metric_labels_from_request_bodies_are_clamped() {
    let s = state();
    let d = deployment("web", "registry.example.com/web:1.0", json!({}));
    for i in 0..300 {
        let mut r = review(
            &format!("uid-{i}"),
            "CREATE",
            FLUX,
            &[],
            d.clone(),
            Value::Null,
        );
        r["request"]["kind"]["kind"] = json!(format!("Kind{i}"));
        r["request"]["operation"] = json!(format!("OP{i}"));
        r["request"]["namespace"] = json!("kube-system"); // exempt ones are counted too
        decide(&s, &r).await;
    }
    let mut huge = review("uid-huge", "CREATE", FLUX, &[], d, Value::Null);
    huge["request"]["kind"]["kind"] = json!("K".repeat(1 << 20));
    decide(&s, &huge).await;
    let (_, m) = get(&s, "/metrics").await;
    let series = m
        .lines()
        .filter(|l| l.starts_with("sealgate_webhook_requests_total{"))
        .count();
    assert!(series <= 2, "{series} series:\n{m}");
    assert!(m.contains("operation=\"other\",kind=\"other\"} 300"), "{m}");
    assert!(m.len() < 16 * 1024, "/metrics is {} bytes", m.len());
}

/// A writer for the captured decision log.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn decision_logs_name_the_request_never_object_data() {
    // The process-wide subscriber, as in production: decisions are logged on the evaluation
    // threads. Only this test sets one; it finds its own line by uid.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    let s = state();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leaky", "namespace": "shop"},
                    "data": {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "url": "postgres://u:hunter2@db/x"}});
    let mut rv = review(
        "uid-log",
        "CREATE",
        "alice@example.com",
        &[],
        cm,
        Value::Null,
    );
    rv["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    let r = decide(&s, &rv).await;
    assert_eq!(r["allowed"], false);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("admission decision") && l.contains("uid-log"))
        .expect("a decision log line");
    let v: Value = serde_json::from_str(line).unwrap();
    let f = &v["fields"];
    assert_eq!(
        (
            f["uid"].as_str(),
            f["decision"].as_str(),
            f["user"].as_str()
        ),
        (Some("uid-log"), Some("denied"), Some("alice@example.com"))
    );
    assert_eq!(
        (
            f["kind"].as_str(),
            f["namespace"].as_str(),
            f["name"].as_str()
        ),
        (Some("ConfigMap"), Some("shop"), Some("leaky"))
    );
    assert!(
        f["constraints"]
            .as_str()
            .unwrap()
            .contains("no-secret-values"),
        "{line}"
    );
    assert!(
        !log.contains("AKIAIOSFODNN7EXAMPLE") && !log.contains("hunter2"),
        "object data in the log: {log}"
    );
}

/// A Deployment CREATE is judged by Pod constraints through an ExpansionTemplate, as Gatekeeper's
/// webhook judges it: the denial names the template (`[Implied by …]`), and the agent's compliant
/// Deployment is still admitted (the built-in constraints do not judge the resultant Pod twice).
#[tokio::test]
async fn a_deployment_is_judged_by_pod_constraints_through_an_expansion_template() {
    const POD_ONLY: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: podnoprivileged
spec:
  crd:
    spec:
      names:
        kind: PodNoPrivileged
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package podnoprivileged
        violation[{"msg": msg}] {
          input.review.object.kind == "Pod"
          c := input.review.object.spec.containers[_]
          c.securityContext.privileged
          msg := sprintf("Privileged container is not allowed: %v", [c.name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PodNoPrivileged
metadata:
  name: pods-not-privileged
spec:
  match:
    kinds:
      - apiGroups: [""]
        kinds: ["Pod"]
"#;
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    b.add_text("pod-only.yaml", POD_ONLY);
    b.add_text(
        "expansion.yaml",
        sealgate_testkit::gatekeeper::EXPAND_WORKLOADS,
    );
    let s = AppState::new(b.build().unwrap(), governed(), EvalConfig::default()).unwrap();

    let compliant = deployment("shop", "ghcr.io/acme/shop:1.4.2", json!({}));
    let r = decide(
        &s,
        &review("x-1", "CREATE", FLUX, &[], compliant.clone(), Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");

    let mut privileged = compliant;
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        json!(true);
    let r = decide(
        &s,
        &review("x-2", "CREATE", FLUX, &[], privileged, Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("[Implied by expand-deployments] Privileged container is not allowed: web"),
        "{message}"
    );
}

/// A CEL-only ConstraintTemplate (K8sNativeValidation, as teams write them for Gatekeeper's VAP
/// generation) denies at admission, with its messageExpression; the agent's compliant change
/// passes.
#[tokio::test]
async fn a_cel_only_template_denies_at_admission() {
    const CEL_ONLY: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sreplicalimits
spec:
  crd:
    spec:
      names:
        kind: K8sReplicaLimits
      validation:
        openAPIV3Schema:
          type: object
          properties:
            max: {type: integer}
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: K8sNativeValidation
          source:
            validations:
              - expression: "!has(variables.anyObject.spec.replicas) || variables.anyObject.spec.replicas <= variables.params.max"
                messageExpression: "'replicas ' + string(variables.anyObject.spec.replicas) + ' is above ' + string(variables.params.max) + ' for ' + request.userInfo.username"
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sReplicaLimits
metadata:
  name: at-most-five
spec:
  match:
    kinds:
      - apiGroups: ["apps"]
        kinds: ["Deployment"]
  parameters:
    max: 5
"#;
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    b.add_text("cel.yaml", CEL_ONLY);
    let s = AppState::new(b.build().unwrap(), governed(), EvalConfig::default()).unwrap();
    let ok = deployment("shop", "ghcr.io/acme/shop:1.4.2", json!({}));
    let r = decide(
        &s,
        &review("c-1", "CREATE", FLUX, &[], ok.clone(), Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    let mut many = ok;
    many["spec"]["replicas"] = json!(12);
    let r = decide(&s, &review("c-2", "CREATE", FLUX, &[], many, Value::Null)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "replicas 12 is above 5 for system:serviceaccount:flux-system:kustomize-controller"
        ),
        "{message}"
    );
}
