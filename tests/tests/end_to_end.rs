//! sealgate end to end, every component in one process tree and no cluster:
//!
//! keys (`sealgate keys init`) → `sealgate seal` → the keys restored into the controller's
//! namespace and loaded by the key manager → controller reconcile against the in-memory API server
//! → the resulting Secret holds the original values → the webhook, configured as `deploy/` ships it,
//! judges the same objects for the GitOps agent, a human, and a human through break-glass →
//! `sealgate lint examples/` gives exactly the expected findings; and provenance: `lint --attest`,
//! the Attestations applied and watched, the agent's apply admitted and a tampered object denied.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use base64::Engine;
use http_body_util::BodyExt;
use sealgate_controller::crd::SealedSecret;
use sealgate_controller::keys::KeyManager;
use sealgate_controller::keys::plan::RenewalPolicy;
use sealgate_controller::metrics::Metrics;
use sealgate_controller::reconcile::{Context, ReconcileConfig, reconcile};
use sealgate_core::keys::{KeyGenOptions, KeyRing};
use sealgate_core::policy::{BundleBuilder, EvalLimits};
use sealgate_testkit::FakeApi;
use sealgate_testkit::admission::{GOVERNED, PROVENANCE_REQUIRED, namespaces};
use sealgate_testkit::process::succeeded;
use sealgate_testkit::process::{bin_dir, repo};
use sealgate_webhook::{
    server::router,
    state::{AppState, EvalConfig},
};
use serde_json::Value;
use tower::ServiceExt;

const FLUX: &str = "system:serviceaccount:flux-system:kustomize-controller";
const CONTROLLER: &str = "system:serviceaccount:sealgate-system:sealgate-controller";
const KEYS: &str = "/api/v1/namespaces/sealgate-system/secrets";

/// The workspace's `sealgate` binary, freshly built.
fn sealgate() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(bin_dir().join("sealgate"));
    c.current_dir(repo())
        .env_remove("SEALGATE_CERT")
        .env_remove("SEALGATE_CONTROLLER");
    c
}

fn yaml_docs(text: &[u8]) -> Vec<Value> {
    sealgate_core::manifest::parse(text, &Default::default())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn review(op: &str, user: &str, groups: &[&str], object: &Value) -> Value {
    sealgate_testkit::admission::review("e2e", op, user, groups, object.clone(), Value::Null)
}

async fn admit(state: &Arc<AppState>, review: &Value) -> Value {
    let req = axum::http::Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_seal_unseal_admit_and_lint() {
    // 1. Keys, and a SealedSecret made by the CLI from the example Secret.
    let store = tempfile::tempdir().unwrap();
    sealgate()
        .env("SEALGATE_KEYS_DIR", store.path())
        .args(["keys", "init", "--key-size", "2048"])
        .assert()
        .success();
    let sealed = succeeded(
        "sealgate seal",
        sealgate()
            .env("SEALGATE_KEYS_DIR", store.path())
            .args(["seal", "-f", "examples/secret.yaml"])
            .output(),
    );
    let mut ss = yaml_docs(&sealed.stdout).remove(0);
    assert_eq!(ss["kind"], "SealedSecret");
    let input = yaml_docs(&std::fs::read(repo().join("examples/secret.yaml")).unwrap()).remove(0);

    // 2. The key store restored into the controller's namespace; the key manager loads it.
    let api = FakeApi::new();
    for entry in std::fs::read_dir(store.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut key = yaml_docs(&std::fs::read(&path).unwrap()).remove(0);
            key["metadata"]["namespace"] = "sealgate-system".into();
            api.insert(KEYS, key);
        }
    }
    let ring = Arc::new(ArcSwap::from_pointee(KeyRing::default()));
    let metrics = Arc::new(Metrics::default());
    let keys = KeyManager::new(
        api.client(),
        "sealgate-system",
        RenewalPolicy::default(),
        KeyGenOptions::default(),
        ring.clone(),
        metrics.clone(),
    );
    keys.sync(true, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(ring.load().len(), 1, "the restored key, no new one");

    // 3. The controller unseals it into a Secret with the original values.
    ss["metadata"]["generation"] = 1.into();
    let stored: SealedSecret = serde_json::from_value(api.insert(
        "/apis/sealgate.dev/v1alpha1/namespaces/shop/sealedsecrets",
        ss.clone(),
    ))
    .unwrap();
    let ctx = Context::new(
        api.client(),
        ring,
        metrics,
        ReconcileConfig::default(),
        None,
    );
    reconcile(Arc::new(stored), ctx).await.unwrap();
    let secret = api
        .get("/api/v1/namespaces/shop/secrets", "db-credentials")
        .expect("the Secret");
    let b64 = base64::engine::general_purpose::STANDARD;
    let value = |k: &str| b64.decode(secret["data"][k].as_str().unwrap()).unwrap();
    assert_eq!(value("password"), b"correct-horse-battery-staple");
    assert_eq!(value("username"), b"shop");
    assert_eq!(
        secret["data"]["tls-ca.der"], input["data"]["tls-ca.der"],
        "binary values unchanged"
    );
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/name"],
        "shop-db"
    );
    assert!(
        !secret.to_string().contains("last-applied-configuration"),
        "the plaintext copy kubectl leaves in an annotation is gone"
    );

    // 4. The webhook as deploy/ configures it: --no-builtin --policy <the ConfigMap's files>.
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_path(&repo().join("deploy/base/webhook/policies"));
    let governed = namespaces(&[("shop", &[GOVERNED])]);
    let state = AppState::new(b.build().unwrap(), governed, EvalConfig::default()).unwrap();

    let flux = admit(&state, &review("CREATE", FLUX, &[], &ss)).await;
    assert_eq!(flux["allowed"], true, "{flux}");
    let human = admit(
        &state,
        &review("CREATE", "alice@example.com", &["dev"], &ss),
    )
    .await;
    assert_eq!(human["allowed"], false, "{human}");
    let msg = human["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[gitops-identity]") && msg.contains("alice@example.com"),
        "{msg}"
    );
    let mut secret_obj = secret.clone();
    secret_obj["apiVersion"] = "v1".into();
    secret_obj["kind"] = "Secret".into();
    let by_controller = admit(&state, &review("CREATE", CONTROLLER, &[], &secret_obj)).await;
    assert_eq!(by_controller["allowed"], true, "{by_controller}");
    assert!(
        !by_controller.to_string().contains("correct-horse"),
        "no value in the answer"
    );
    let mut emergency = ss.clone();
    emergency["metadata"]["annotations"]["sealgate.dev/break-glass"] =
        "INC-4711: rotate the leaked password".into();
    let glass = admit(
        &state,
        &review(
            "CREATE",
            "bob@example.com",
            &["sealgate:break-glass"],
            &emergency,
        ),
    )
    .await;
    assert_eq!(glass["allowed"], true, "{glass}");
    assert!(
        glass["warnings"].to_string().contains("break-glass"),
        "audited: {glass}"
    );

    // 5. The linter over the examples: exactly the expected findings.
    let lint = sealgate().args(["lint", "examples/"]).output().unwrap();
    assert_eq!(lint.status.code(), Some(1));
    let expected =
        std::fs::read_to_string(repo().join("cli/tests/golden/lint-examples-all.txt")).unwrap();
    assert_eq!(String::from_utf8(lint.stdout).unwrap(), expected);
}

/// Provenance end to end: `sealgate lint --attest` on the example repository's `shop` app (with
/// a key made by `sealgate attest keygen`), the Attestations applied to the in-memory API
/// server, the webhook watching them: the agent's apply of the reviewed Deployment (as the API
/// server sends it, defaulted and labelled by Flux) is admitted, and the same Deployment with a
/// changed image is denied.
#[tokio::test]
async fn lint_attest_then_admit_only_what_was_attested() {
    use sealgate_core::attest::keys::VerifyingKey;
    use sealgate_core::attest::verify::{Rules, TrustedKey};
    use sealgate_webhook::namespaces::NamespaceCache;
    use sealgate_webhook::provenance::{self, Provenance, ProvenanceConfig};

    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ci");
    sealgate()
        .env("COSIGN_PASSWORD", "ci-secret")
        .args(["attest", "keygen", "--output-key-prefix"])
        .arg(&prefix)
        .assert()
        .success();
    let attestations = dir.path().join("attestations.yaml");
    sealgate()
        .env("COSIGN_PASSWORD", "ci-secret")
        .args(["lint", "examples/gitops/apps/shop", "--attest"])
        .arg(&attestations)
        .arg("--attest-key")
        .arg(dir.path().join("ci.key"))
        .args([
            "--revision",
            "9b1d4e2",
            "--repository",
            "https://git.example.com/platform/apps",
        ])
        .assert()
        .success();

    // The agent applies the Attestations with the manifests.
    let api = FakeApi::new();
    for doc in yaml_docs(&std::fs::read(&attestations).unwrap()) {
        assert_eq!(doc["kind"], "Attestation");
        api.insert("/apis/sealgate.dev/v1alpha1/attestations", doc);
    }
    let ci = VerifyingKey::from_pem(&std::fs::read(dir.path().join("ci.pub")).unwrap()).unwrap();
    let prov = Arc::new(Provenance::new(ProvenanceConfig {
        keys: vec![TrustedKey {
            name: "ci".into(),
            key: ci,
            not_after: None,
            revoked: false,
        }],
        rules: Rules::default(),
        required_everywhere: false,
        exempt_users: Vec::new(),
    }));
    tokio::spawn(provenance::watch(api.client(), prov.clone()));
    for _ in 0..200 {
        if prov.is_synced() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        prov.is_synced() && prov.trusted() == 1,
        "the watch lists and verifies them"
    );

    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_path(&repo().join("deploy/base/webhook/policies"));
    let labels = namespaces(&[("shop", &[GOVERNED, PROVENANCE_REQUIRED])]);
    let state = AppState::build(
        b.build().unwrap(),
        NamespaceCache::fixed(labels),
        Some(prov),
        EvalConfig::default(),
    )
    .unwrap();

    let manifest = yaml_docs(
        &std::fs::read(repo().join("examples/gitops/apps/shop/deployment.yaml")).unwrap(),
    )
    .remove(0);
    let mut applied = manifest.clone();
    applied["metadata"]["uid"] = "0d1f".into();
    applied["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = "apps".into();
    applied["spec"]["revisionHistoryLimit"] = 10.into();
    applied["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst".into();
    let ok = admit(&state, &review("CREATE", FLUX, &[], &applied)).await;
    assert_eq!(ok["allowed"], true, "{ok}");

    let mut tampered = applied.clone();
    tampered["spec"]["template"]["spec"]["containers"][0]["image"] =
        "registry.example.com/shop/web:9.9.9".into();
    let denied = admit(&state, &review("UPDATE", FLUX, &[], &tampered)).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    let msg = denied["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[sealgate-provenance]")
            && msg.contains("is changed from what was attested at revision 9b1d4e2"),
        "{msg}"
    );
}
