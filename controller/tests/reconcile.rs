//! Reconcile scenarios against an in-memory API server, asserted at the HTTP level: verb, path,
//! field manager, body. No cluster.

use sealgate_testkit::keys::copy;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::runtime::controller::Action;
use sealgate_controller::crd::{BitnamiSealedSecret, SealedSecret};
use sealgate_controller::metrics::Metrics;
use sealgate_controller::reconcile::{
    Context, ReconcileConfig, ReconcileError, backoff, error_policy, reconcile,
};
use sealgate_core::envelope::Scope;
use sealgate_core::keys::{KeyGenOptions, KeyRing, SealingKey};
use sealgate_core::sealing::{self, SealOptions, Target};
use sealgate_testkit::{FakeApi, Recorded};
use serde_json::{Value, json};

const SS: &str = "/apis/sealgate.dev/v1alpha1/namespaces/shop/sealedsecrets";
const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const PLAINTEXT: &str = "hunter2-s3cr3t";

fn key() -> SealingKey {
    SealingKey::generate(&KeyGenOptions {
        rsa_bits: 2048,
        ..KeyGenOptions::default()
    })
    .unwrap()
}

/// A SealedSecret as a client would create it, sealed for real.
fn sealed_value(k: &SealingKey, api_version: &str) -> Value {
    sealed_named(k, api_version, "db")
}

fn sealed_named(k: &SealingKey, api_version: &str, name: &str) -> Value {
    sealed_with(k, api_version, name, PLAINTEXT)
}

fn sealed_with(k: &SealingKey, api_version: &str, name: &str, password: &str) -> Value {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "shop"}},
        "type": "Opaque", "stringData": {"password": password, "user": "shop"}
    });
    let mut v = sealgate_testkit::sealed::seal(k, secret, Some(Scope::Strict)).to_value();
    // Every value the controller unseals in these tests is post-quantum age (the default).
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["spec"]["encryptedData"]["password"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8_lossy(&raw[..200]).contains("-> mlkem768x25519 "));
    v["apiVersion"] = api_version.into();
    v["metadata"]["generation"] = 1.into();
    v
}

struct Harness {
    api: FakeApi,
    ring: Arc<ArcSwap<KeyRing>>,
    ctx: Arc<Context>,
}

impl Harness {
    fn new(ring: KeyRing) -> Harness {
        let api = FakeApi::new();
        let ring = Arc::new(ArcSwap::from_pointee(ring));
        let ctx = Harness::context(&api, &ring);
        Harness { api, ring, ctx }
    }

    /// A fresh controller process (new metrics, no memory) on the same API server and keys.
    fn restart(&mut self) {
        self.ctx = Harness::context(&self.api, &self.ring);
    }

    fn context(api: &FakeApi, ring: &Arc<ArcSwap<KeyRing>>) -> Arc<Context> {
        Context::new(
            api.client(),
            ring.clone(),
            Arc::new(Metrics::default()),
            ReconcileConfig::default(),
            Some("test-pod".into()),
        )
    }

    fn create(&self, v: Value) -> SealedSecret {
        serde_json::from_value(self.api.insert(SS, v)).unwrap()
    }

    /// The object as the API server holds it now (status included).
    fn current(&self) -> SealedSecret {
        serde_json::from_value(self.api.get(SS, "db").unwrap()).unwrap()
    }

    async fn reconcile(&self) -> (Result<Action, ReconcileError>, Vec<Recorded>) {
        let r = reconcile(Arc::new(self.current()), self.ctx.clone()).await;
        (r, self.api.take_requests())
    }

    fn secret(&self) -> Value {
        self.secret_named("db")
    }

    fn secret_named(&self, name: &str) -> Value {
        self.api.get(SECRETS, name).expect("the Secret exists")
    }
}

fn lines(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter().map(Recorded::line).collect()
}

fn decoded(secret: &Value, item: &str) -> String {
    String::from_utf8(
        STANDARD
            .decode(secret["data"][item].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// The reconcile failed and left the SealedSecret not synced, for `reason`.
fn assert_not_synced(r: &Result<Action, ReconcileError>, reason: &str) {
    assert!(
        matches!(r, Err(ReconcileError::NotSynced { reason: got }) if got.as_str() == reason),
        "expected NotSynced({reason}), got {r:?}"
    );
}

fn synced(ss: &SealedSecret) -> (String, String, String) {
    let c = &ss.status.as_ref().expect("a status").conditions[0];
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// The requests of a SealedSecret that is not unsealed: read the Secret, set the status, record
/// the event; the Secret is not written.
fn not_written(name: &str) -> [String; 3] {
    [
        format!("GET {SECRETS}/{name}"),
        format!("PATCH {SS}/{name}/status"),
        format!("POST {EVENTS}"),
    ]
}

/// The requests of a SealedSecret unsealed into its Secret: read the Secret, apply it, set the
/// status, record the event.
fn unsealed(name: &str) -> [String; 4] {
    [
        format!("GET {SECRETS}/{name}"),
        format!("PATCH {SECRETS}/{name}"),
        format!("PATCH {SS}/{name}/status"),
        format!("POST {EVENTS}"),
    ]
}

#[tokio::test]
async fn create_then_no_op_after_restart_then_update_after_a_spec_change() {
    let k = key();
    let mut h = Harness::new(KeyRing::new([copy(&k)]));
    h.create(sealed_value(&k, "sealgate.dev/v1alpha1"));

    // Create.
    let (r, reqs) = h.reconcile().await;
    assert_eq!(r.unwrap(), Action::requeue(Duration::from_secs(600)));
    assert_eq!(lines(&reqs), unsealed("db"));
    let apply = &reqs[1];
    assert!(
        apply
            .content_type
            .starts_with("application/apply-patch+yaml"),
        "{}",
        apply.content_type
    );
    assert!(
        apply.query.contains("fieldManager=sealgate") && apply.query.contains("force=true"),
        "{}",
        apply.query
    );
    let owner = &apply.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["apiVersion"],
            &owner["kind"],
            &owner["name"],
            &owner["controller"]
        ),
        (
            &json!("sealgate.dev/v1alpha1"),
            &json!("SealedSecret"),
            &json!("db"),
            &json!(true)
        )
    );
    assert_eq!(owner["uid"], h.current().metadata.uid.unwrap().as_str());
    let secret = h.secret();
    assert_eq!(decoded(&secret, "password"), PLAINTEXT);
    assert_eq!(secret["metadata"]["labels"]["app"], "shop");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        synced(&h.current()),
        ("True".into(), "Unsealed".into(), String::new())
    );
    assert_eq!(h.current().status.unwrap().observed_generation, Some(1));
    assert_eq!(reqs[3].body["reason"], "Unsealed");
    assert_eq!(reqs[3].body["type"], "Normal");
    assert_eq!(reqs[3].body["regarding"]["name"], "db");
    assert!(
        h.ctx
            .metrics
            .encode()
            .contains("sealgate_controller_private_key_operations_total 2")
    );

    // A restart with everything up to date: one GET, nothing unsealed, nothing written.
    h.restart();
    let (r, reqs) = h.reconcile().await;
    r.unwrap();
    assert_eq!(lines(&reqs), [format!("GET {SECRETS}/db")]);
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("sealgate_controller_private_key_operations_total 0"),
        "{metrics}"
    );

    // A spec change (new generation): applied again, status records the generation.
    let mut changed = serde_json::to_value(h.current()).unwrap();
    changed["spec"]["template"]["type"] = "kubernetes.io/basic-auth".into();
    changed["metadata"]["generation"] = 2.into();
    h.api.insert(SS, changed);
    let (r, reqs) = h.reconcile().await;
    r.unwrap();
    assert_eq!(lines(&reqs), unsealed("db"));
    assert_eq!(h.secret()["type"], "kubernetes.io/basic-auth");
    assert_eq!(h.current().status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn drift_is_repaired_edited_or_deleted() {
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    h.create(sealed_value(&k, "sealgate.dev/v1alpha1"));
    h.reconcile().await.0.unwrap();

    // Edited by hand: the data MAC no longer matches, so the next resync rewrites it.
    let mut edited = h.secret();
    edited["data"]["password"] = STANDARD.encode("changed-by-hand").into();
    h.api.insert(SECRETS, edited);
    let (r, reqs) = h.reconcile().await;
    r.unwrap();
    assert_eq!(
        lines(&reqs)[..2],
        [format!("GET {SECRETS}/db"), format!("PATCH {SECRETS}/db")],
        "repaired"
    );
    // The status did not change; the repeated Unsealed event is counted as a series.
    assert!(
        reqs[2].line().starts_with(&format!("PATCH {EVENTS}/db.")),
        "{:?}",
        lines(&reqs)
    );
    assert_eq!(reqs.len(), 3);
    assert_eq!(decoded(&h.secret(), "password"), PLAINTEXT);

    // Deleted by hand: recreated.
    h.api.remove(SECRETS, "db");
    let (r, reqs) = h.reconcile().await;
    r.unwrap();
    assert_eq!(reqs[1].line(), format!("PATCH {SECRETS}/db"));
    assert_eq!(decoded(&h.secret(), "password"), PLAINTEXT);

    // Deleting the SealedSecret is garbage collection's job: the Secret is owned, blocking.
    let owner = &h.secret()["metadata"]["ownerReferences"][0];
    assert_eq!(owner["blockOwnerDeletion"], true);
}

#[tokio::test]
async fn an_unowned_secret_is_refused_until_it_opts_in() {
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    h.create(sealed_value(&k, "sealgate.dev/v1alpha1"));
    h.api.insert(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
               "data": {"password": STANDARD.encode("theirs")}}),
    );
    let (r, reqs) = h.reconcile().await;
    assert_not_synced(&r, "SecretNotOwned");
    assert_eq!(lines(&reqs), not_written("db"), "the Secret is not written");
    assert_eq!(decoded(&h.secret(), "password"), "theirs");
    let (st, reason, message) = synced(&h.current());
    assert_eq!((st.as_str(), reason.as_str()), ("False", "SecretNotOwned"));
    assert!(message.contains("sealgate.dev/managed=true"), "{message}");
    assert_eq!(reqs[2].body["type"], "Warning");
    assert_eq!(reqs[2].body["reason"], "SecretNotOwned");

    // Opt in: taken over.
    let mut theirs = h.secret();
    theirs["metadata"]["annotations"] = json!({"sealgate.dev/managed": "true"});
    h.api.insert(SECRETS, theirs);
    let (r, _) = h.reconcile().await;
    r.unwrap();
    assert_eq!(decoded(&h.secret(), "password"), PLAINTEXT);
    assert_eq!(synced(&h.current()).0, "True");
}

#[tokio::test]
async fn bad_ciphertext_fails_with_a_message_and_no_value_anywhere() {
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    let mut v = sealed_value(&k, "sealgate.dev/v1alpha1");
    // Sealed for another cluster: no key here opens it.
    let other = key();
    v["spec"]["encryptedData"] =
        sealed_value(&other, "sealgate.dev/v1alpha1")["spec"]["encryptedData"].clone();
    h.create(v);
    let (r, reqs) = h.reconcile().await;
    assert_not_synced(&r, "UnsealFailed");
    assert_eq!(lines(&reqs), not_written("db"));
    assert!(h.api.get(SECRETS, "db").is_none(), "no partial Secret");
    let (st, reason, message) = synced(&h.current());
    assert_eq!((st.as_str(), reason.as_str()), ("False", "UnsealFailed"));
    assert!(
        message.contains("1 of 2 item(s) could not be unsealed"),
        "{message}"
    );
    for r in &reqs {
        assert!(!r.body.to_string().contains(PLAINTEXT), "{}", r.line());
    }
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("sealgate_controller_unseal_errors_total{reason=\"UnsealFailed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"False\"} 1"), "{metrics}");

    // Retried with capped exponential backoff, forever.
    let obj = Arc::new(h.current());
    let err = r.unwrap_err();
    let delays: Vec<Action> = (0..12)
        .map(|_| error_policy(obj.clone(), &err, h.ctx.clone()))
        .collect();
    assert_eq!(delays[0], Action::requeue(Duration::from_secs(1)));
    assert_eq!(delays[1], Action::requeue(Duration::from_secs(2)));
    assert_eq!(delays[2], Action::requeue(Duration::from_secs(4)));
    assert_eq!(
        delays[11],
        Action::requeue(Duration::from_secs(300)),
        "capped, never dropped"
    );
    // The right key arrives (imported): the next retry succeeds and the backoff resets.
    h.ring.store(Arc::new(KeyRing::new([copy(&k), other])));
    h.reconcile().await.0.unwrap();
    assert_eq!(
        error_policy(obj, &err, h.ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
}

#[test]
fn backoff_doubles_and_is_capped() {
    let (b, cap) = (Duration::from_millis(500), Duration::from_secs(60));
    let got: Vec<u128> = (1..=10).map(|n| backoff(n, b, cap).as_millis()).collect();
    assert_eq!(
        got,
        [
            500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
        ]
    );
    assert_eq!(backoff(u32::MAX, b, cap), cap, "no overflow");
}

#[tokio::test]
async fn an_immutable_secret_whose_data_would_change_is_not_written() {
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    let v = sealed_value(&k, "sealgate.dev/v1alpha1");
    h.create(v.clone());
    h.reconcile().await.0.unwrap();
    let mut s = h.secret();
    s["immutable"] = true.into();
    h.api.insert(SECRETS, s);
    // New values in Git.
    let mut changed = serde_json::to_value(h.current()).unwrap();
    changed["spec"]["encryptedData"] =
        sealed_with(&k, "sealgate.dev/v1alpha1", "db", "rotated")["spec"]["encryptedData"].clone();
    changed["metadata"]["generation"] = 2.into();
    h.api.insert(SS, changed);
    let (r, reqs) = h.reconcile().await;
    assert_not_synced(&r, "ImmutableSecret");
    assert!(
        !lines(&reqs).contains(&format!("PATCH {SECRETS}/db")),
        "{:?}",
        lines(&reqs)
    );
    let (_, _, message) = synced(&h.current());
    assert!(
        message.contains("immutable") && message.contains("delete it"),
        "{message}"
    );
}

#[tokio::test]
async fn api_errors_are_retried() {
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    h.create(sealed_value(&k, "sealgate.dev/v1alpha1"));
    h.api.fail_next("PATCH", "/secrets/db", 500);
    let (r, _) = h.reconcile().await;
    assert!(matches!(r, Err(ReconcileError::Api(_))), "{r:?}");
    h.reconcile().await.0.unwrap();
    assert_eq!(decoded(&h.secret(), "password"), PLAINTEXT);
}

#[tokio::test]
async fn bitnami_sealed_secrets_in_bitnami_mode() {
    const BITNAMI: &str = "/apis/bitnami.com/v1alpha1/namespaces/shop/sealedsecrets";
    let k = key();
    let h = Harness::new(KeyRing::new([copy(&k)]));
    // What kubeseal writes: kubeseal format, namespace-wide by Bitnami's own annotation.
    let plain = sealing::Secret::from_value(&json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": PLAINTEXT}
    }))
    .unwrap();
    let mut v = sealing::seal_secret(
        &plain,
        &Target::new(k.public(), &[]),
        &SealOptions {
            format: sealgate_core::envelope::Format::Kubeseal,
            scope: Some(Scope::NamespaceWide),
            api: sealgate_core::sealing::ApiGroup::Bitnami,
            ..SealOptions::default()
        },
    )
    .unwrap()
    .to_value();
    assert_eq!(
        v["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"],
        "true"
    );
    assert_eq!(v["apiVersion"], "bitnami.com/v1alpha1");
    v["metadata"]["generation"] = 1.into();
    let stored: BitnamiSealedSecret = serde_json::from_value(h.api.insert(BITNAMI, v)).unwrap();
    let r = reconcile(Arc::new(stored), h.ctx.clone()).await;
    r.unwrap();
    let reqs = h.api.take_requests();
    assert_eq!(
        lines(&reqs),
        [
            format!("GET {SECRETS}/db"),
            format!("PATCH {SECRETS}/db"),
            format!("PATCH {BITNAMI}/db/status"),
            format!("POST {EVENTS}"),
        ]
    );
    let owner = &h.secret()["metadata"]["ownerReferences"][0];
    assert_eq!(owner["apiVersion"], "bitnami.com/v1alpha1");
    assert_eq!(decoded(&h.secret(), "password"), PLAINTEXT);
}

/// Run a controller until `done` holds on its metrics, then stop it.
async fn run_until(h: &Harness, done: impl Fn(&str) -> bool) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(sealgate_controller::reconcile::run::<SealedSecret>(
        h.ctx.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    for _ in 0..500 {
        if done(&h.ctx.metrics.encode()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_controller_runs_and_a_restart_reads_nothing_per_object() {
    let k = key();
    let mut h = Harness::new(KeyRing::new([copy(&k)]));
    for name in ["a", "b", "c"] {
        h.api
            .insert(SS, sealed_named(&k, "sealgate.dev/v1alpha1", name));
    }
    run_until(&h, |m| m.contains("sealgate_controller_unseal_total 3")).await;
    let reqs = lines(&h.api.take_requests());
    assert!(
        reqs.contains(&"GET /apis/sealgate.dev/v1alpha1/sealedsecrets".to_string()),
        "{reqs:?}"
    );
    let secret_list = reqs.iter().any(|l| l == "GET /api/v1/secrets");
    assert!(secret_list, "Secrets watched: {reqs:?}");
    assert_eq!(h.api.count("/secrets"), 3);
    assert_eq!(
        h.secret_named("a")["metadata"]["labels"]["sealgate.dev/unsealed"],
        "true"
    );

    // A restart: one LIST of the controller's Secrets, then nothing per object. A SealedSecret
    // deleted while failing leaves no retry counter behind.
    h.restart();
    let mut gone_value = sealed_named(&k, "sealgate.dev/v1alpha1", "gone");
    gone_value["metadata"]["uid"] = "uid-gone".into();
    let gone: Arc<SealedSecret> = Arc::new(serde_json::from_value(gone_value).unwrap());
    let err = ReconcileError::NoKeys;
    error_policy(gone.clone(), &err, h.ctx.clone());
    assert_eq!(
        error_policy(gone.clone(), &err, h.ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    run_until(&h, |m| {
        m.contains(
            r#"sealgate_controller_reconcile_duration_seconds_count{outcome="up_to_date"} 3"#,
        )
    })
    .await;
    let reqs = h.api.take_requests();
    let per_object: Vec<String> = reqs
        .iter()
        .filter(|r| r.path.starts_with(SECRETS) || r.method != "GET")
        .map(Recorded::line)
        .collect();
    assert!(per_object.is_empty(), "{per_object:?}");
    assert_eq!(
        error_policy(gone, &err, h.ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "the deleted object's counter was pruned"
    );
    let list = reqs
        .iter()
        .find(|r| r.path == "/api/v1/secrets")
        .expect("a LIST of Secrets");
    assert!(
        list.query
            .contains("labelSelector=sealgate.dev%2Funsealed%3Dtrue"),
        "only the controller's own Secrets: {}",
        list.query
    );
    assert!(
        h.ctx
            .metrics
            .encode()
            .contains("sealgate_controller_private_key_operations_total 0")
    );
}
