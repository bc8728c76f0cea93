//! The `sealgate-controller` binary end to end against the in-memory API server over loopback
//! HTTP (through a kubeconfig): it takes the lease, loads the keys, serves them, unseals a
//! SealedSecret into its Secret, exposes metrics, and on SIGTERM shuts down cleanly, releasing
//! the lease.

use sealgate_testkit::process::{KillOnDrop, free_port};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use sealgate_controller::keys::plan::key_secret;
use sealgate_core::keys::{KeyGenOptions, SealingKey};
use sealgate_testkit::FakeApi;
use serde_json::json;

const NS: &str = "sealgate-system";

fn get(url: &str) -> Option<(u16, String)> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent.get(url).call().ok()?;
    Some((
        resp.status().as_u16(),
        resp.body_mut().read_to_string().ok()?,
    ))
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_serves_unseals_and_shuts_down_cleanly() {
    let api = FakeApi::new();
    let key = SealingKey::generate(&KeyGenOptions {
        rsa_bits: 2048,
        ..KeyGenOptions::default()
    })
    .unwrap();
    api.insert(
        &format!("/api/v1/namespaces/{NS}/secrets"),
        serde_json::to_value(key_secret(&key, NS).unwrap()).unwrap(),
    );
    let ss = sealgate_testkit::sealed::seal(
        &key,
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
            "stringData": {"password": "hunter2"}
        }),
        None,
    );
    api.insert(
        "/apis/sealgate.dev/v1alpha1/namespaces/shop/sealedsecrets",
        ss.to_value(),
    );
    let addr = api.serve_http().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_sealgate-controller"))
        .args([
            "--namespace",
            NS,
            "--pod-name",
            "controller-0",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    // The keys are served.
    let cert = eventually("the certificate", || {
        get(&format!("http://127.0.0.1:{port}/v1/cert.pem")).filter(|(s, _)| *s == 200)
    })
    .await
    .1;
    assert_eq!(cert, key.public().cert_pem());
    // The SealedSecret is unsealed into its Secret.
    let secret = eventually("the Secret", || {
        api.get("/api/v1/namespaces/shop/secrets", "db")
    })
    .await;
    let password = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(password, b"hunter2");
    let lease = api
        .get(
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"),
            "sealgate-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "controller-0");
    // The counter and the condition gauge are updated one after the other: wait for all.
    let expected = [
        "sealgate_controller_unseal_total 1",
        "sealgate_controller_keys 1",
        "sealgate_controller_leader 1",
        "sealgate_controller_condition_info{group=\"sealgate.dev\",namespace=\"shop\",name=\"db\",condition=\"Synced\",status=\"True\"} 1",
    ];
    let metrics = eventually("metrics", || {
        get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .filter(|(_, m)| expected.iter().all(|line| m.contains(line)))
    })
    .await
    .1;
    assert!(!metrics.contains("hunter2"));

    // SIGTERM: a clean exit that releases the lease.
    child.terminate();
    let status = eventually("the exit", || child.0.try_wait().unwrap()).await;
    assert!(status.success(), "{status:?}");
    let lease = api
        .get(
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"),
            "sealgate-controller",
        )
        .unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
}

/// A flag that cannot be used is refused before anything starts (issue 28, item 2): the error
/// names the flag, and comes before any attempt to reach the API server (there is none here).
#[test]
fn unusable_key_flags_are_refused_before_anything_starts() {
    let cases: &[(&[&str], &str)] = &[
        (&["--key-ttl", "200000000000000d"], "--key-ttl is too long"),
        (
            &["--key-renew-period", "200000000000000d"],
            "--key-renew-period is too long",
        ),
        (
            &["--key-size", "1024"],
            "--key-size 1024: use 2048, 3072, 4096 or 8192",
        ),
        (&["--workers", "0"], "--workers 0: must be more than zero"),
        (
            &["--kube-api-qps", "0"],
            "--kube-api-qps 0: must be more than zero",
        ),
        (
            &["--kube-api-burst", "0"],
            "--kube-api-burst 0: must be more than zero",
        ),
        (
            &["--key-poll-period", "0s"],
            "--key-poll-period 0ns: must be more than zero",
        ),
        (&["--lease-name", " "], "--lease-name is empty"),
        (
            &[
                "--metrics-listen",
                "127.0.0.1:8080",
                "--listen",
                "127.0.0.1:8080",
            ],
            "--listen and --metrics-listen are both 127.0.0.1:8080",
        ),
    ];
    for (args, want) in cases {
        sealgate_testkit::process::refused_at_start(
            env!("CARGO_BIN_EXE_sealgate-controller"),
            args,
            want,
        );
    }
}
