//! The real binary refuses a flag it cannot use before anything starts (issue 28, item 2): exit
//! 2, as a usage error, naming the flag, and no log of a start, no listener, no call to the API
//! server (there is none to call here).

use sealgate_testkit::process::{free_port, refused_at_start};

#[test]
fn each_unusable_flag_exits_2_before_a_socket_opens() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("ci.pub");
    std::fs::write(&not_a_key, "not a PEM key\n").unwrap();
    let not_a_key = not_a_key.to_str().unwrap();
    let key = dir.path().join("trusted.pub");
    let signer = sealgate_core::attest::keys::SigningKey::generate(
        sealgate_core::attest::keys::Algorithm::EcdsaP256,
    )
    .unwrap();
    std::fs::write(&key, signer.verifying_key().to_pem()).unwrap();
    let key = key.to_str().unwrap();
    let missing = dir.path().join("missing.pub");
    let missing = missing.to_str().unwrap();
    let port = free_port();
    let same = format!("127.0.0.1:{port}");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--concurrency", "0"],
            "--concurrency 0: must be at least 1",
        ),
        (&["--io-threads", "0"], "--io-threads 0: must be at least 1"),
        (
            &["--max-body-bytes", "100"],
            "--max-body-bytes 100: must be at least 1024",
        ),
        (
            &["--deadline", "0s"],
            "--deadline (ms) 0: must be at least 1",
        ),
        (
            &["--listen", &same, "--metrics-listen", &same],
            "--listen and --metrics-listen are both",
        ),
        (
            &["--namespace-labels", "cluster,ns.yaml"],
            "`cluster` watches the cluster's Namespaces and cannot be combined with files",
        ),
        (&["--attestation-key", missing], "--attestation-key"),
        (&["--attestation-key", not_a_key], "ci.pub"),
        (
            &[
                "--attestation-key",
                key,
                "--attestation-max-age",
                "200000000000000d",
            ],
            "--attestation-max-age is too long",
        ),
        (
            &[
                "--attestation-key",
                not_a_key,
                "--attestation-revoked-key",
                missing,
            ],
            "ci.pub",
        ),
        // Provenance flags without a trusted key would do nothing: a usage error.
        (
            &["--attestation-revoked-key", missing],
            "the following required arguments were not provided",
        ),
        (
            &["--attestation-repository", "https://git.example.com/apps"],
            "--attestation-key",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = ["--insecure-http", "--log-format", "text"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let err = refused_at_start(env!("CARGO_BIN_EXE_sealgate-webhook"), &args, want);
        assert!(
            !err.contains("starting sealgate-webhook"),
            "{args:?} started before refusing: {err}"
        );
    }
    // The serving certificate is checked too, unless plain HTTP or self-signed TLS is asked for.
    let err = refused_at_start(
        env!("CARGO_BIN_EXE_sealgate-webhook"),
        &["--tls-cert", "/nonexistent/tls.crt", "--log-format", "text"],
        "--tls-cert /nonexistent/tls.crt: No such file or directory",
    );
    assert!(err.contains("or use --self-signed-tls"), "{err}");
    // `audit` serves nothing: no certificate is needed, and it gets as far as the cluster (none
    // here); its other flags are checked as the server's are.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate-webhook"))
        .args(["--tls-cert", "/nonexistent/tls.crt", "audit"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(2) && err.contains("cannot reach the Kubernetes API"),
        "{err}"
    );
    refused_at_start(
        env!("CARGO_BIN_EXE_sealgate-webhook"),
        &["--concurrency", "0", "audit"],
        "--concurrency 0: must be at least 1",
    );
}
