//! The Namespace watch against a mocked API server (kube's tower-test pattern): the initial list
//! makes the webhook ready, watch events keep the labels current, and decisions follow them.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use sealgate_core::policy::{BundleBuilder, EvalLimits};
use sealgate_webhook::namespaces::NamespaceCache;
use sealgate_webhook::state::{AppState, EvalConfig};
use serde_json::{Value, json};

fn ns(name: &str, governed: bool) -> Value {
    let labels = if governed {
        json!({"sealgate.dev/governed": "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": "7", "labels": labels}})
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn governed(state: &AppState, name: &str) -> Option<bool> {
    state
        .namespaces
        .snapshot()
        .get(name)
        .map(|l| l.get("sealgate.dev/governed").map(String::as_str) == Some("true"))
}

#[tokio::test]
async fn namespace_labels_follow_the_cluster() {
    let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let state = AppState::build(
        b.build().unwrap(),
        NamespaceCache::watched(),
        None,
        EvalConfig::default(),
    )
    .unwrap();
    let watch = tokio::spawn(state.namespaces.clone().watch(client));

    // The initial list.
    let (req, send) = api.next_request().await.expect("a list request");
    assert_eq!(req.method(), "GET");
    assert!(
        req.uri().path() == "/api/v1/namespaces" && !req.uri().to_string().contains("watch=true"),
        "{}",
        req.uri()
    );
    assert!(
        !state.namespaces.is_synced(),
        "not ready before the list completes"
    );
    let list = json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "10"}, "items": [ns("shop", true), ns("dev", false)]});
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&list).unwrap()))
            .unwrap(),
    );
    eventually("the initial sync", || state.namespaces.is_synced()).await;
    assert_eq!(governed(&state, "shop"), Some(true));
    assert_eq!(governed(&state, "dev"), Some(false));

    // The watch: a new governed namespace, shop relabelled, dev deleted.
    let (req, send) = api.next_request().await.expect("a watch request");
    assert!(
        req.uri().to_string().contains("watch=true")
            && req.uri().to_string().contains("resourceVersion=10"),
        "{}",
        req.uri()
    );
    let events: String = [
        json!({"type": "ADDED", "object": ns("payments", true)}),
        json!({"type": "MODIFIED", "object": ns("shop", false)}),
        json!({"type": "DELETED", "object": ns("dev", false)}),
    ]
    .iter()
    .map(|e| format!("{e}\n"))
    .collect();
    send.send_response(
        Response::builder()
            .body(Body::from(events.into_bytes()))
            .unwrap(),
    );
    eventually("the watch events", || {
        governed(&state, "payments") == Some(true)
            && governed(&state, "shop") == Some(false)
            && governed(&state, "dev").is_none()
    })
    .await;
    watch.abort();
}

#[tokio::test]
async fn readyz_is_503_until_the_namespaces_are_synced() {
    use axum::body::Body as AxumBody;
    use tower::ServiceExt;
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let bundle = b.build().unwrap();
    let watched = AppState::build(
        bundle.clone(),
        NamespaceCache::watched(),
        None,
        EvalConfig::default(),
    )
    .unwrap();
    let fixed = AppState::new(bundle, Default::default(), EvalConfig::default()).unwrap();
    let get = |s: Arc<AppState>| async move {
        sealgate_webhook::server::router(s)
            .oneshot(
                axum::http::Request::get("/readyz")
                    .body(AxumBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get(watched).await, 503, "a watch that has not listed yet");
    assert_eq!(get(fixed).await, 200, "labels from files are complete");
}

/// A Namespace the watch has not delivered yet (created a moment before its objects) is read
/// from the API on a cache miss, as Gatekeeper falls back to its uncached reader: the review is
/// decided with its labels, not refused as "unknown Namespace".
#[tokio::test]
async fn a_namespace_missing_from_the_cache_is_read_from_the_api() {
    use axum::body::Body as AxumBody;
    use tower::ServiceExt;
    let api = sealgate_testkit::fake_api::FakeApi::new();
    api.insert("/api/v1/namespaces", ns("new-team", true));
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let state = AppState::new(
        b.build().unwrap(),
        Default::default(),
        EvalConfig::default(),
    )
    .unwrap();
    let _ = state.api.set(api.client());
    let review = |ns: &str| {
        let web = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns}});
        sealgate_testkit::admission::review(
            &format!("u-{ns}"),
            "UPDATE",
            "alice@example.com",
            &[],
            web.clone(),
            web,
        )
    };
    let decide = |r: Value| {
        let state = state.clone();
        async move {
            let resp = sealgate_webhook::server::router(state)
                .oneshot(
                    axum::http::Request::post("/validate")
                        .header("content-type", "application/json")
                        .body(AxumBody::from(serde_json::to_vec(&r).unwrap()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
        }
    };
    let answer = decide(review("new-team")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("[gitops-identity]") && !message.contains("needs the labels"),
        "decided with the labels read from the API: {message}"
    );
    assert_eq!(governed(&state, "new-team"), Some(true), "and cached");
    // A namespace the API does not have either stays unknown, and says so.
    let answer = decide(review("nowhere")).await;
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the labels of Namespace \"nowhere\""),
        "{answer}"
    );
}
