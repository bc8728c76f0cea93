//! The webhook over real TLS on loopback: handshake, keep-alive, and a rotated certificate picked
//! up without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sealgate_core::policy::{BundleBuilder, Limits};
use sealgate_testkit::tls::pki;
use sealgate_webhook::reload;
use sealgate_webhook::server::{self, AppState, Config};

fn agent(ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(ca_pem.as_bytes()).unwrap().to_owned();
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"tls-1","kind":{"group":"","version":"v1","kind":"ConfigMap"},"namespace":"shop","name":"c","operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"},"data":{"a":"b"}},"oldObject":null}}"#;

fn validate(agent: &ureq::Agent, addr: SocketAddr) -> Result<String, ureq::Error> {
    let mut resp = agent
        .post(&format!("https://127.0.0.1:{}/validate", addr.port()))
        .header("content-type", "application/json")
        .send(REVIEW)?;
    resp.body_mut().read_to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_keep_alive_and_certificate_rotation() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (ca1, cert1, key1) = pki();
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();

    let mut b = BundleBuilder::new(Limits::default());
    b.add_builtin();
    let state = AppState::new(b.build().unwrap(), Default::default(), Config::default()).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert_path, &key_path)
        .await
        .unwrap();
    tokio::spawn(reload::watch_tls(
        state.clone(),
        tls.clone(),
        cert_path.clone(),
        key_path.clone(),
        Duration::from_millis(100),
    ));
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .acceptor(acceptor)
        .handle(handle.clone())
        .serve(server::router(state.clone()).into_make_service());
    tokio::spawn(server);
    let addr = handle.listening().await.expect("listening");

    // Handshake and two requests on one keep-alive connection.
    let (h, c1) = (handle.clone(), ca1.clone());
    let conns = tokio::task::spawn_blocking(move || {
        let a = agent(&c1);
        let first = validate(&a, addr).unwrap();
        assert!(
            first.contains("\"uid\":\"tls-1\"") && first.contains("\"allowed\":true"),
            "{first}"
        );
        validate(&a, addr).unwrap();
        h.connection_count()
    })
    .await
    .unwrap();
    assert_eq!(conns, 1, "the second request reused the connection");

    // Rotate to a certificate from another CA, as cert-manager or the self-signed mode would.
    let (ca2, cert2, key2) = pki();
    std::fs::write(&key_path, &key2).unwrap();
    std::fs::write(&cert_path, &cert2).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c2 = ca2.clone();
        if tokio::task::spawn_blocking(move || validate(&agent(&c2), addr).is_ok())
            .await
            .unwrap()
        {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the new certificate was not served within 5 s");
    let c1 = ca1.clone();
    let old = tokio::task::spawn_blocking(move || validate(&agent(&c1), addr))
        .await
        .unwrap();
    assert!(
        old.is_err(),
        "a new connection must not get the old certificate"
    );
    assert!(
        state
            .metrics
            .encode()
            .contains("what=\"tls\",result=\"ok\"")
    );
    handle.graceful_shutdown(Some(Duration::from_secs(1)));
}
