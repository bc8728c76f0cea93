//! The webhook over real TLS on loopback: handshake, keep-alive, HTTP/2 by ALPN, and a rotated
//! certificate picked up without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sealgate_core::policy::{BundleBuilder, EvalLimits};
use sealgate_testkit::tls::pki;
use sealgate_webhook::reload;
use sealgate_webhook::{
    server,
    state::{AppState, EvalConfig},
};

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

/// The webhook as `main` serves it, its certificate (`tls.crt`, `tls.key` in the returned
/// directory, issued by the returned CA) watched for rotation.
async fn serve() -> (
    tempfile::TempDir,
    String,
    Arc<AppState>,
    axum_server::Handle<SocketAddr>,
    SocketAddr,
) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (ca, cert_pem, key_pem) = pki();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    // The review's namespace, as the Namespace watch would know it (without the governed label).
    let namespaces = [("shop".to_string(), Default::default())].into();
    let state = AppState::new(b.build().unwrap(), namespaces, EvalConfig::default()).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
        .await
        .unwrap();
    tokio::spawn(reload::watch_tls(
        state.clone(),
        tls.clone(),
        cert,
        key,
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
    (dir, ca, state, handle, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_keep_alive_and_certificate_rotation() {
    let (dir, ca1, state, handle, addr) = serve().await;
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));

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

/// An HTTP/2 connection to `addr`, negotiated by ALPN with a server whose CA is `ca`.
async fn http2(
    ca: &str,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pem::parse(ca).unwrap().into_contents(),
        ))
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::from(addr.ip()), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

async fn read_body(resp: http::Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_multiplexes_reviews_on_one_connection() {
    let (_dir, ca, _state, handle, addr) = serve().await;
    let sender = http2(&ca, addr).await;

    // Two reviews in flight at once on the one connection, each answered with its own uid.
    let ask = |uid: &str| {
        let mut sender = sender.clone();
        let body = REVIEW.replace("tls-1", uid);
        async move {
            let req = http::Request::post(format!("https://127.0.0.1:{}/validate", addr.port()))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            read_body(resp).await
        }
    };
    let (a, b) = tokio::join!(ask("h2-a"), ask("h2-b"));
    assert!(
        a.contains("\"uid\":\"h2-a\"") && a.contains("\"allowed\":true"),
        "{a}"
    );
    assert!(
        b.contains("\"uid\":\"h2-b\"") && b.contains("\"allowed\":true"),
        "{b}"
    );
    assert_eq!(handle.connection_count(), 1);
    handle.graceful_shutdown(Some(Duration::from_secs(1)));
}

/// A review over the size limit gets 413 on HTTP/2 as on HTTP/1.1, whether or not the client
/// declares its length (kube-apiserver streams with a length; a proxy may not): never a bare
/// stream reset, which a client reports as a transport failure rather than an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_review_over_http2_gets_413() {
    let (_dir, ca, _state, handle, addr) = serve().await;
    let big = REVIEW.replace(
        "\"a\":\"b\"",
        &format!("\"a\":\"{}\"", "x".repeat(20 << 20)),
    );
    for declared in [true, false] {
        let mut sender = http2(&ca, addr).await;
        let mut req = http::Request::post(format!("https://127.0.0.1:{}/validate", addr.port()))
            .header("content-type", "application/json");
        if declared {
            req = req.header("content-length", big.len());
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(big.clone())))
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("declared length {declared}: {e:?}"));
        assert_eq!(
            resp.status(),
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "declared length {declared}"
        );
        let body = read_body(resp).await;
        assert!(body.contains("limit"), "{body}");
    }
    handle.graceful_shutdown(Some(Duration::from_secs(1)));
}

/// The same with curl, which kube-apiserver is not but operators are (and which once reported
/// `(92) Stream error in the HTTP/2 framing layer` here, though hyper's client saw the 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_413_for_an_oversized_review_over_http2() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        sealgate_testkit::peer::missing("curl is not installed (apt-get install curl)");
        return;
    }
    let (dir, ca, _state, handle, addr) = serve().await;
    let body = dir.path().join("big.json");
    std::fs::write(
        &body,
        REVIEW.replace(
            "\"a\":\"b\"",
            &format!("\"a\":\"{}\"", "x".repeat(20 << 20)),
        ),
    )
    .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    for version in ["--http2", "--http1.1"] {
        let (body, ca_file) = (body.clone(), ca_file.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sS", version, "--cacert"])
                .arg(&ca_file)
                .args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                ])
                .arg(format!("@{}", body.display()))
                .arg(format!("https://127.0.0.1:{}/validate", addr.port()))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("413 "),
            "curl {version}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    handle.graceful_shutdown(Some(Duration::from_secs(1)));
}
