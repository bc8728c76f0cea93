//! `data.inventory` at admission: a referential template (one host per Ingress, cluster-wide)
//! denies at admission from the watched inventory, against the in-memory API server; the webhook
//! is not ready until the synced kinds are listed; watch events keep the inventory current.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use sealgate_core::policy::{Sources, SyncKind};
use sealgate_testkit::fake_api::FakeApi;
use sealgate_webhook::inventory::{self, Tracker};
use sealgate_webhook::reload;
use sealgate_webhook::{
    server,
    state::{AppState, EvalConfig},
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A Gatekeeper sync configuration and a referential template of our own (the library's
/// uniqueingresshost has the same shape).
const POLICY: &str = r#"apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata: {name: config, namespace: gatekeeper-system}
spec:
  sync:
    syncOnly:
      - {group: networking.k8s.io, version: v1, kind: Ingress}
---
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: uniquehost
  annotations: {metadata.gatekeeper.sh/requires-sync-data: '"[[{\"groups\":[\"networking.k8s.io\"],\"versions\":[\"v1\"],\"kinds\":[\"Ingress\"]}]]"'}
spec:
  crd: {spec: {names: {kind: UniqueHost}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package uniquehost
        violation[{"msg": msg}] {
          host := input.review.object.spec.rules[_].host
          other := data.inventory.namespace[ns]["networking.k8s.io/v1"]["Ingress"][name]
          not same(ns, name)
          other.spec.rules[_].host == host
          msg := sprintf("host %v is already served by Ingress %v/%v", [host, ns, name])
        }
        same(ns, name) {
          ns == input.review.object.metadata.namespace
          name == input.review.object.metadata.name
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: UniqueHost
metadata: {name: unique-host}
spec:
  match:
    kinds: [{apiGroups: [networking.k8s.io], kinds: [Ingress]}]
"#;

fn ingress(ns: &str, name: &str, host: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}})
}

/// Flux creating `object`.
fn review(uid: &str, object: Value) -> Value {
    sealgate_testkit::admission::review(
        uid,
        "CREATE",
        "system:serviceaccount:flux-system:kustomize-controller",
        &[],
        object,
        Value::Null,
    )
}

async fn call(state: &Arc<AppState>, req: axum::http::Request<Body>) -> (u16, Value) {
    let resp = server::router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn readyz(state: &Arc<AppState>) -> (u16, Value) {
    call(
        state,
        axum::http::Request::get("/readyz")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn decide(state: &Arc<AppState>, review: &Value) -> Value {
    let req = axum::http::Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    call(state, req).await.1["response"].clone()
}

fn setup() -> (tempfile::TempDir, Sources, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let sources = Sources {
        builtin: false,
        policies: vec![dir.path().to_path_buf()],
        ..Sources::default()
    };
    let bundle = reload::build(&sources, Vec::new()).unwrap();
    assert_eq!(
        bundle.sync_kinds(),
        [SyncKind {
            group: "networking.k8s.io".into(),
            version: "v1".into(),
            kind: "Ingress".into()
        }]
    );
    let namespaces = [
        ("shop".to_string(), Default::default()),
        ("blog".to_string(), Default::default()),
    ]
    .into();
    let state = AppState::new(bundle, namespaces, EvalConfig::default()).unwrap();
    (dir, sources, state)
}

#[tokio::test]
async fn a_referential_template_denies_at_admission_from_the_watched_inventory() {
    let (_dir, sources, state) = setup();
    let api = FakeApi::new();
    api.insert(
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
        ingress("shop", "web", "shop.example.com"),
    );
    // The first list fails: the webhook must stay unready until one succeeds.
    api.fail_next("GET", "/ingresses", 500);
    let task = tokio::spawn(inventory::run(
        api.client(),
        state.inventory.clone(),
        reload::Rebuilder::new(state.clone(), sources),
        Duration::from_millis(10),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, body) = readyz(&state).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["inventorySynced"], false);

    let mut ready = false;
    for _ in 0..500 {
        if readyz(&state).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ready,
        "not ready after the list succeeded: {}",
        readyz(&state).await.1
    );
    let (_, body) = readyz(&state).await;
    assert_eq!(body["inventoryObjects"], 1, "{body}");
    assert_eq!(body["syncedKinds"], json!(["networking.k8s.io/v1/Ingress"]));

    // The same host in another namespace is denied; another host, or the object itself, is not.
    let dup = decide(
        &state,
        &review("dup", ingress("blog", "blog", "shop.example.com")),
    )
    .await;
    assert_eq!(dup["allowed"], false, "{dup}");
    assert!(
        dup["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[unique-host] host shop.example.com is already served by Ingress shop/web"),
        "{dup}"
    );
    let other = decide(
        &state,
        &review("other", ingress("blog", "blog", "blog.example.com")),
    )
    .await;
    assert_eq!(other["allowed"], true, "{other}");
    let itself = decide(
        &state,
        &review("self", ingress("shop", "web", "shop.example.com")),
    )
    .await;
    assert_eq!(itself["allowed"], true, "{itself}");
    task.abort();
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn watch_events_keep_the_inventory_current() {
    let (_dir, _sources, state) = setup();
    let kind = state.bundle.load().sync_kinds()[0].clone();
    let mut t = Tracker::new(state.inventory.clone(), kind);
    assert!(!state.inventory.is_ready(), "waiting for the first list");
    t.apply(watcher::Event::Init);
    t.apply(watcher::Event::InitApply(dynamic(ingress(
        "shop",
        "web",
        "a.example.com",
    ))));
    t.apply(watcher::Event::InitApply(dynamic(ingress(
        "shop",
        "old",
        "b.example.com",
    ))));
    assert!(
        state.inventory.is_empty(),
        "a relist is applied whole, at InitDone"
    );
    t.apply(watcher::Event::InitDone);
    assert_eq!(state.inventory.len(), 2);
    t.apply(watcher::Event::Apply(dynamic(ingress(
        "blog",
        "blog",
        "c.example.com",
    ))));
    t.apply(watcher::Event::Delete(dynamic(ingress(
        "shop",
        "old",
        "b.example.com",
    ))));
    let mut names: Vec<String> = state
        .inventory
        .snapshot()
        .iter()
        .map(|o| {
            assert_eq!(o["apiVersion"], "networking.k8s.io/v1");
            assert_eq!(o["kind"], "Ingress");
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["blog/blog", "shop/web"]);
    // A relist after a watch gap drops what was deleted meanwhile.
    t.apply(watcher::Event::Init);
    t.apply(watcher::Event::InitApply(dynamic(ingress(
        "shop",
        "web",
        "a.example.com",
    ))));
    t.apply(watcher::Event::InitDone);
    assert_eq!(state.inventory.len(), 1);
}

/// A sync configuration that names a kind the cluster does not serve (the library's names
/// Ingress in extensions/v1beta1, gone since Kubernetes 1.22): it is not waited for, so the
/// webhook becomes ready once the served kinds are listed. Found by the real-cluster tier, where
/// /readyz answered 503 forever.
#[tokio::test]
async fn a_kind_the_cluster_does_not_serve_is_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let policy = POLICY.replace(
        "      - {group: networking.k8s.io, version: v1, kind: Ingress}",
        "      - {group: extensions, version: v1beta1, kind: Ingress}\n      - {group: networking.k8s.io, version: v1, kind: Ingress}",
    );
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let sources = Sources {
        builtin: false,
        policies: vec![dir.path().to_path_buf()],
        ..Sources::default()
    };
    let bundle = reload::build(&sources, Vec::new()).unwrap();
    assert_eq!(bundle.sync_kinds().len(), 2);
    let state = AppState::new(bundle, Default::default(), EvalConfig::default()).unwrap();
    let api = FakeApi::new();
    api.insert(
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
        ingress("shop", "web", "shop.example.com"),
    );
    let task = tokio::spawn(inventory::run(
        api.client(),
        state.inventory.clone(),
        reload::Rebuilder::new(state.clone(), sources),
        Duration::from_millis(10),
    ));
    // Ready with the served kind's objects (the inventory starts out ready, before any watch).
    let mut ready = false;
    for _ in 0..500 {
        let (code, body) = readyz(&state).await;
        if code == 200 && body["inventoryObjects"] == 1 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = readyz(&state).await;
    assert!(ready, "never ready: {body}");
    assert_eq!(body["inventoryObjects"], 1, "{body}");
    // The unserved kind was looked up (discovery), never listed.
    let requests = api.take_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.line() == "GET /apis/extensions/v1beta1"),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.path.starts_with("/apis/extensions/v1beta1/")),
        "{requests:?}"
    );
    task.abort();
}
