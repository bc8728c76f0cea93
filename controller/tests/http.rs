//! The controller's HTTP API in process (`tower::ServiceExt::oneshot`).

use sealgate_testkit::keys::{copy, key};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sealgate_controller::http::{ApiState, router};
use sealgate_core::envelope::Scope;
use sealgate_core::keys::{KeyRing, SealingKey};
use sealgate_core::sealing::{self, SealedSecret};
use serde_json::Value;
use tower::ServiceExt;

async fn call(
    state: &Arc<ApiState>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body))
        .unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn sealed_to(k: &SealingKey, scope: Scope) -> SealedSecret {
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": "hunter2", "user": "shop"}
    });
    sealgate_testkit::sealed::seal(k, secret, Some(scope))
}

#[tokio::test]
async fn no_key_yet() {
    let s = ApiState::new(KeyRing::default());
    assert_eq!(
        call(&s, "GET", "/v1/cert.pem", vec![]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&s, "GET", "/readyz", vec![]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&s, "GET", "/healthz", vec![]).await,
        (StatusCode::OK, "ok\n".into())
    );
}

#[tokio::test]
async fn public_keys() {
    let (old, new) = (key(40), key(1));
    let s = ApiState::new(KeyRing::new([copy(&old), copy(&new)]));
    let (st, pem) = call(&s, "GET", "/v1/cert.pem", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(pem, new.public().cert_pem(), "the newest key's certificate");
    let (st, body) = call(&s, "GET", "/v1/keys", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], new.id().to_string());
    assert_eq!(keys[0]["newest"], true);
    assert!(
        keys[1]["ageRecipient"]
            .as_str()
            .unwrap()
            .starts_with("age1")
    );
    assert!(!body.contains("PRIVATE"));
}

#[tokio::test]
async fn verify_opens_without_rendering_templates() {
    let (old, new) = (key(40), key(1));
    let s = ApiState::new(KeyRing::new([copy(&old), copy(&new)]));
    let ss = sealed_to(&old, Scope::Strict);
    let body = |ss: &SealedSecret| serde_json::to_vec(&ss.to_value()).unwrap();
    assert_eq!(
        call(&s, "POST", "/v1/verify", body(&ss)).await.0,
        StatusCode::OK
    );
    // Bitnami's Go templates are never rendered here (a rendering verify was a decryption oracle).
    let mut templated = ss.clone();
    templated
        .template
        .data
        .insert("conn".into(), "{{ .password }}".into());
    assert_eq!(
        call(&s, "POST", "/v1/verify", body(&templated)).await.0,
        StatusCode::OK
    );
    let mut moved = ss.clone();
    moved.meta.namespace = Some("elsewhere".into());
    let (st, msg) = call(&s, "POST", "/v1/verify", body(&moved)).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        msg.contains("could not be unsealed") && !msg.contains("hunter2"),
        "{msg}"
    );
    // YAML bodies work too; garbage is 400; oversized is 413.
    let yaml = sealgate_core::manifest::to_yaml(&ss.to_value());
    assert_eq!(
        call(&s, "POST", "/v1/verify", yaml.into_bytes()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "POST", "/v1/verify", b"kind: [".to_vec()).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&s, "POST", "/v1/verify", vec![b' '; 3 << 20]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn rotate_reseals_to_the_newest_key_and_never_widens_the_scope() {
    let (old, new) = (key(40), key(1));
    let s = ApiState::new(KeyRing::new([copy(&old), copy(&new)]));
    let mut ss = sealed_to(&old, Scope::Strict);
    // CVE-2026-22728: a template asking for cluster-wide must not widen anything.
    ss.template
        .meta
        .annotations
        .insert("sealgate.dev/scope".into(), "cluster-wide".into());
    let (st, body) = call(
        &s,
        "POST",
        "/v1/rotate",
        serde_json::to_vec(&ss.to_value()).unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let re = SealedSecret::from_value(&serde_json::from_str(&body).unwrap()).unwrap();
    assert_eq!(re.scope().unwrap(), Scope::Strict);
    let only_new = KeyRing::new([copy(&new)]);
    assert_eq!(
        sealing::unseal(&re, &only_new).unwrap().secret.data["password"].expose(),
        b"hunter2"
    );
    let mut moved = re.clone();
    moved.meta.namespace = Some("elsewhere".into());
    assert!(
        sealing::unseal(&moved, &only_new).is_err(),
        "still bound to shop/db"
    );
    // Another cluster's SealedSecret cannot be rotated.
    let foreign = sealed_to(&key(0), Scope::Strict);
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/rotate",
            serde_json::to_vec(&foreign.to_value()).unwrap()
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
}

// Paused time: the bucket refills by the clock, and a loaded machine would otherwise refill a
// token between the twelve requests (each one a private-key operation).
#[tokio::test(start_paused = true)]
async fn verify_and_rotate_are_rate_limited_per_client() {
    use axum::extract::ConnectInfo;
    let k = key(1);
    let s = ApiState::new(KeyRing::new([copy(&k)]));
    let body = serde_json::to_vec(&sealed_to(&k, Scope::Strict).to_value()).unwrap();
    let from = |ip: [u8; 4]| {
        let mut req = Request::post("/v1/verify")
            .body(Body::from(body.clone()))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((ip, 40000))));
        req
    };
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(
            router(s.clone())
                .oneshot(from([10, 0, 0, 1]))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::OK).count(),
        10,
        "a burst of 10: {codes:?}"
    );
    let limited = router(s.clone())
        .oneshot(from([10, 0, 0, 1]))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    // Another client is not affected.
    assert_eq!(
        router(s.clone())
            .oneshot(from([10, 0, 0, 2]))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
