//! Graceful shutdown of the real binary: on SIGTERM it stops accepting connections, finishes the
//! review in flight (here, one whose body is still arriving), answers it, and exits 0.

use sealgate_testkit::process::{KillOnDrop, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"in-flight-1","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"namespace":"shop","name":"c","operation":"CREATE","userInfo":{"username":"system:serviceaccount:flux-system:kustomize-controller"},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"},"data":{"a":"b"}},"oldObject":null}}"#;

#[test]
fn sigterm_finishes_the_review_in_flight_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let namespaces = dir.path().join("namespaces.yaml");
    std::fs::write(
        &namespaces,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {sealgate.dev/governed: \"true\"}\n",
    )
    .unwrap();
    let (port, metrics) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_sealgate-webhook"))
        .args([
            "--insecure-http",
            "--log-format",
            "text",
            "--namespace-labels",
        ])
        .arg(&namespaces)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env("RUST_LIB_BACKTRACE", "0")
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let start = Instant::now();
    let mut conn = loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never listened");
        std::thread::sleep(Duration::from_millis(50));
    };

    // Half a request: the review is in flight.
    let (head, tail) = REVIEW.split_at(REVIEW.len() / 2);
    write!(
        conn,
        "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        REVIEW.len()
    )
    .unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    child.terminate();
    std::thread::sleep(Duration::from_millis(500));

    // No new connections are accepted while it drains.
    let refused = TcpStream::connect(("127.0.0.1", port)).map_or(true, |mut c| {
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 16];
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        !matches!(c.read(&mut buf), Ok(n) if n > 0)
    });
    assert!(refused, "a new connection was served after SIGTERM");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "exited with a review in flight"
    );

    // The rest of the body: the review is answered.
    conn.write_all(tail.as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    let mut buf = [0u8; 4096];
    while !reply.contains("\"uid\"") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("\"uid\":\"in-flight-1\"") && reply.contains("\"allowed\":true"),
        "{reply}"
    );
    drop(conn);

    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
