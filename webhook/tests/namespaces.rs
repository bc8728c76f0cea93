//! The Namespace watch against a mocked API server (kube's tower-test pattern): the initial list
//! makes the webhook ready, watch events keep the labels current, and decisions follow them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use sealgate_core::policy::{BundleBuilder, Limits};
use sealgate_webhook::server::{AppState, Config};
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
        .load()
        .get(name)
        .map(|l| l.get("sealgate.dev/governed").map(String::as_str) == Some("true"))
}

#[tokio::test]
async fn namespace_labels_follow_the_cluster() {
    let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut b = BundleBuilder::new(Limits::default());
    b.add_builtin();
    let state = AppState::new(b.build().unwrap(), Default::default(), Config::default()).unwrap();
    state.namespaces_synced.store(false, Ordering::Release);
    let watch = tokio::spawn(sealgate_webhook::namespaces::watch(client, state.clone()));

    // The initial list.
    let (req, send) = api.next_request().await.expect("a list request");
    assert_eq!(req.method(), "GET");
    assert!(
        req.uri().path() == "/api/v1/namespaces" && !req.uri().to_string().contains("watch=true"),
        "{}",
        req.uri()
    );
    assert!(
        !state.namespaces_synced.load(Ordering::Acquire),
        "not ready before the list completes"
    );
    let list = json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "10"}, "items": [ns("shop", true), ns("dev", false)]});
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&list).unwrap()))
            .unwrap(),
    );
    eventually("the initial sync", || {
        state.namespaces_synced.load(Ordering::Acquire)
    })
    .await;
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
    let mut b = BundleBuilder::new(Limits::default());
    b.add_builtin();
    let state: Arc<AppState> =
        AppState::new(b.build().unwrap(), Default::default(), Config::default()).unwrap();
    state.namespaces_synced.store(false, Ordering::Release);
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
    assert_eq!(get(state.clone()).await, 503);
    state.namespaces_synced.store(true, Ordering::Release);
    assert_eq!(get(state).await, 200);
}
