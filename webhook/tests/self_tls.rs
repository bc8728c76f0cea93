//! Self-contained TLS against an in-memory API server: the first replica creates the CA and
//! serving certificate, a second one reuses them, the caBundle follows (also after a GitOps
//! re-apply resets it), an ageing serving certificate is renewed under the same CA, and the
//! result passes a real TLS handshake for the Service's DNS name.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use sealgate_testkit::FakeApi;
use sealgate_testkit::files::mode;
use sealgate_webhook::self_tls::{self, SelfTlsConfig};
use serde_json::Value;

const SECRETS: &str = "/api/v1/namespaces/sealgate-system/secrets";
const VWCS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

fn cfg(dir: &Path) -> SelfTlsConfig {
    SelfTlsConfig {
        namespace: "sealgate-system".into(),
        secret: "sealgate-webhook-tls".into(),
        webhook_config: "sealgate-webhook".into(),
        service: "sealgate-webhook".into(),
        extra_names: Vec::new(),
        cert_path: dir.join("tls.crt"),
        key_path: dir.join("tls.key"),
    }
}

/// The webhook configuration exactly as `deploy/` ships it (no caBundle).
fn shipped_vwc() -> Value {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/webhook/validatingwebhookconfiguration.yaml"
    ))
    .unwrap();
    sealgate_core::manifest::parse(&text, &Default::default()).unwrap()[0]
        .value
        .clone()
}

fn ca_bundle(api: &FakeApi) -> Option<String> {
    let vwc = api.get(VWCS, "sealgate-webhook").unwrap();
    let b64 = vwc["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
    Some(
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
    )
}

fn secret_item(api: &FakeApi, item: &str) -> String {
    let s = api.get(SECRETS, "sealgate-webhook-tls").unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s["data"][item].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// A TLS handshake as the API server makes it: trust only the CA, check the Service's name.
fn handshake(addr: SocketAddr, ca_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("sealgate-webhook.sealgate-system.svc").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: sealgate-webhook\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_contained_tls() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = FakeApi::new();
    api.insert(VWCS, shipped_vwc());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let client = api.client();

    // Replica A: creates the Secret, writes the files, sets the caBundle.
    let m = self_tls::ensure(&client, &cfg(dir_a.path())).await.unwrap();
    let lines: Vec<String> = api.take_requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            format!("GET {SECRETS}/sealgate-webhook-tls"),
            format!("POST {SECRETS}"),
            format!("GET {VWCS}/sealgate-webhook"),
            format!("PATCH {VWCS}/sealgate-webhook"),
        ]
    );
    assert_eq!(ca_bundle(&api).as_deref(), Some(m.ca_cert.as_str()));
    let vwc = api.get(VWCS, "sealgate-webhook").unwrap();
    assert_eq!(
        vwc["webhooks"][0]["failurePolicy"], "Fail",
        "only caBundle changed"
    );
    let cert_a = std::fs::read_to_string(dir_a.path().join("tls.crt")).unwrap();
    assert_eq!(cert_a, secret_item(&api, "tls.crt"));
    assert_eq!(mode(dir_a.path().join("tls.key")), 0o600);

    // Replica B: reuses it; nothing is written to the API.
    self_tls::ensure(&client, &cfg(dir_b.path())).await.unwrap();
    let writes: Vec<String> = api
        .take_requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.line())
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(
        std::fs::read_to_string(dir_b.path().join("tls.crt")).unwrap(),
        cert_a
    );

    // A GitOps agent re-applies the shipped configuration: the caBundle comes back.
    api.insert(VWCS, shipped_vwc());
    assert_eq!(ca_bundle(&api), None);
    self_tls::ensure(&client, &cfg(dir_a.path())).await.unwrap();
    assert_eq!(ca_bundle(&api).as_deref(), Some(m.ca_cert.as_str()));

    // The serving certificate passes a real handshake for the Service's name.
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
        dir_a.path().join("tls.crt"),
        dir_a.path().join("tls.key"),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(
        axum_server::from_tcp_rustls(listener, tls)
            .unwrap()
            .serve(app.into_make_service()),
    );
    let ca = m.ca_cert.clone();
    let reply = tokio::task::spawn_blocking(move || handshake(addr, &ca))
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // An ageing serving certificate is renewed under the same CA.
    let names = self_tls::dns_names("sealgate-webhook", "sealgate-system");
    let old = self_tls::generate(
        names,
        time::OffsetDateTime::now_utc() - time::Duration::days(300),
    )
    .unwrap();
    let mut s = api.get(SECRETS, "sealgate-webhook-tls").unwrap();
    s["data"]["tls.crt"] = base64::engine::general_purpose::STANDARD
        .encode(&old.cert)
        .into();
    api.insert(SECRETS, s);
    self_tls::ensure(&client, &cfg(dir_a.path())).await.unwrap();
    let renewed = secret_item(&api, "tls.crt");
    assert_ne!(renewed, old.cert);
    assert_eq!(
        secret_item(&api, "ca.crt"),
        m.ca_cert,
        "same CA: the caBundle stays valid"
    );
    assert_eq!(
        std::fs::read_to_string(dir_a.path().join("tls.crt")).unwrap(),
        renewed
    );
}
