//! Provenance at admission, through the webhook's router: AdmissionReviews shaped as
//! kube-apiserver sends them after defaulting, against Attestations made by `lint --attest`'s
//! code with a trusted key (and one with a stranger's).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sealgate_core::attest::keys::{Algorithm, SigningKey};
use sealgate_core::attest::resource;
use sealgate_core::attest::statement::{PredicateInfo, Verdict};
use sealgate_core::attest::verify::{Rules, TrustedKey};
use sealgate_core::policy::{BundleBuilder, EvalLimits, NamespaceLabels};
use sealgate_testkit::admission::{GOVERNED, PROVENANCE_REQUIRED, namespaces};
use sealgate_webhook::namespaces::NamespaceCache;
use sealgate_webhook::provenance::{Provenance, ProvenanceConfig};
use sealgate_webhook::{
    server,
    state::{AppState, EvalConfig},
};
use serde_json::{Value, json};
use tower::ServiceExt;

const FLUX: &str = "system:serviceaccount:flux-system:kustomize-controller";

/// The manifest as it is in Git.
fn manifest(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "web", "image": image,
                    "resources": {"requests": {"cpu": 0.1}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}
    })
}

/// What kube-apiserver puts in the review: the manifest after defaulting, with server fields
/// and Flux's labels.
fn as_sent(manifest: &Value) -> Value {
    let mut o = manifest.clone();
    let m = &mut o["metadata"];
    m["uid"] = "b1e6".into();
    m["generation"] = 1.into();
    m["creationTimestamp"] = "2026-12-03T08:00:00Z".into();
    m["labels"]["kustomize.toolkit.fluxcd.io/name"] = "apps".into();
    m["labels"]["kustomize.toolkit.fluxcd.io/namespace"] = "flux-system".into();
    m["managedFields"] = json!([{"manager": "kustomize-controller", "operation": "Apply"}]);
    let spec = &mut o["spec"];
    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    spec["revisionHistoryLimit"] = 10.into();
    spec["progressDeadlineSeconds"] = 600.into();
    let pod = &mut spec["template"]["spec"];
    pod["restartPolicy"] = "Always".into();
    pod["dnsPolicy"] = "ClusterFirst".into();
    pod["schedulerName"] = "default-scheduler".into();
    pod["terminationGracePeriodSeconds"] = 30.into();
    let c = &mut pod["containers"][0];
    c["imagePullPolicy"] = "IfNotPresent".into();
    c["terminationMessagePath"] = "/dev/termination-log".into();
    c["resources"]["requests"]["cpu"] = "100m".into();
    o
}

/// A CREATE of `object`.
fn review(uid: &str, user: &str, groups: &[&str], object: Value) -> Value {
    sealgate_testkit::admission::review(uid, "CREATE", user, groups, object, Value::Null)
}

fn attestation(key: &SigningKey, manifests: Vec<Value>, revision: &str) -> Vec<(String, Value)> {
    attestation_with(
        key,
        manifests,
        revision,
        Verdict::Pass,
        "2026-12-03T07:00:00Z",
    )
}

fn attestation_with(
    key: &SigningKey,
    manifests: Vec<Value>,
    revision: &str,
    verdict: Verdict,
    linted_at: &str,
) -> Vec<(String, Value)> {
    let info = PredicateInfo {
        repository: "https://git.example.com/apps".into(),
        revision: revision.into(),
        linted_at: linted_at.into(),
        bundle_digest: "00".repeat(32),
        verdict,
    };
    resource::sign(manifests, &info, key)
        .unwrap()
        .into_iter()
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_string(), d))
        .collect()
}

struct Cluster {
    state: Arc<AppState>,
    provenance: Arc<Provenance>,
}

fn cluster(ci: &SigningKey) -> Cluster {
    cluster_with(ci, |_| {})
}

fn cluster_with(ci: &SigningKey, tweak: impl FnOnce(&mut ProvenanceConfig)) -> Cluster {
    let ns = namespaces(&[
        ("shop", &[GOVERNED, PROVENANCE_REQUIRED]),
        ("sandbox", &[]),
        // Provenance without the identity policy: only provenance decides there.
        ("builds", &[PROVENANCE_REQUIRED]),
    ]);
    let mut config = ProvenanceConfig {
        keys: vec![TrustedKey {
            name: "ci".into(),
            key: ci.verifying_key(),
            not_after: None,
            revoked: false,
        }],
        rules: Rules::default(),
        required_everywhere: false,
        exempt_users: vec!["system:serviceaccount:cert-manager:cert-manager".into()],
    };
    tweak(&mut config);
    let provenance = Arc::new(Provenance::new(config));
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    Cluster {
        state: AppState::build(
            b.build().unwrap(),
            NamespaceCache::fixed(ns),
            Some(provenance.clone()),
            EvalConfig::default(),
        )
        .unwrap(),
        provenance,
    }
}

async fn decide(state: &Arc<AppState>, review: &Value) -> Value {
    let resp = server::router(state.clone())
        .oneshot(
            Request::post("/validate")
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(review).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
}

async fn metrics(state: &Arc<AppState>) -> String {
    let resp = server::metrics_router(state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[tokio::test]
async fn an_attested_deployment_is_admitted_as_the_api_server_sends_it() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    let good = manifest("registry.example.com/shop/web:1.4.2");
    c.provenance
        .replace_all(&attestation(&ci, vec![good.clone()], "4f2c9e1"), now());
    assert_eq!(c.provenance.trusted(), 1);
    let r = decide(&c.state, &review("u1", FLUX, &[], as_sent(&good))).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn a_changed_declared_field_is_denied_naming_it() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    let good = manifest("registry.example.com/shop/web:1.4.2");
    c.provenance
        .replace_all(&attestation(&ci, vec![good.clone()], "4f2c9e1"), now());
    let tampered = as_sent(&manifest("registry.example.com/shop/web:6.6.6"));
    let r = decide(&c.state, &review("u2", FLUX, &[], tampered)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[sealgate-provenance] apps/Deployment/shop/web: spec.template.spec.containers.web.image is changed from what was attested at revision 4f2c9e1"),
        "{msg}"
    );
    assert!(!msg.contains("6.6.6"), "values are not quoted: {msg}");
    // Counted by reason: a dashboard tells "changed after review" from "never attested".
    let m = metrics(&c.state).await;
    assert!(
        m.contains(r#"sealgate_webhook_provenance_denials_total{reason="changed"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_unattested_object_is_denied_and_other_namespaces_are_not_governed() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    c.provenance.replace_all(&[], now());
    let d = as_sent(&manifest("registry.example.com/shop/web:1.4.2"));
    let r = decide(&c.state, &review("u3", FLUX, &[], d.clone())).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no attestation covers apps/Deployment/shop/web"),
        "{r}"
    );
    // `sandbox` has no provenance label: not required there.
    let mut elsewhere = review("u4", FLUX, &[], d);
    elsewhere["request"]["namespace"] = "sandbox".into();
    elsewhere["request"]["object"]["metadata"]["namespace"] = "sandbox".into();
    let r = decide(&c.state, &elsewhere).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn an_attestation_by_an_untrusted_key_covers_nothing() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let stranger = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    let good = manifest("registry.example.com/shop/web:1.4.2");
    let forged = attestation(&stranger, vec![good.clone()], "4f2c9e1");
    c.provenance.replace_all(&forged, now());
    assert_eq!(c.provenance.trusted(), 0);
    let why = c.provenance.rejection(&forged[0].0).unwrap();
    assert!(why.to_string().contains("no trusted key"), "{why}");
    let r = decide(&c.state, &review("u5", FLUX, &[], as_sent(&good))).await;
    assert_eq!(r["allowed"], false, "{r}");
}

#[tokio::test]
async fn break_glass_is_admitted_without_provenance_and_reported() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    c.provenance.replace_all(&[], now());
    let mut d = as_sent(&manifest("registry.example.com/shop/web:1.4.3-hotfix"));
    d["metadata"]["annotations"] =
        json!({"sealgate.dev/break-glass": "INC-4711: roll forward the fix"});
    let r = decide(
        &c.state,
        &review("u6", "bob@example.com", &["sealgate:break-glass"], d),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("no attestation covers apps/Deployment/shop/web")
            && warnings.contains("(admitted: break-glass)"),
        "{warnings}"
    );
    assert!(
        metrics(&c.state)
            .await
            .contains("sealgate_webhook_break_glass_total 1"),
        "break-glass is counted"
    );
    assert!(
        metrics(&c.state)
            .await
            .contains(r#"sealgate_webhook_provenance_denials_total{reason="not_covered"} 1"#),
        "what break-glass let through is counted by reason too"
    );
}

#[tokio::test]
async fn what_controllers_derive_needs_no_attestation() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    c.provenance.replace_all(&[], now());
    // In a namespace where only provenance decides.
    let mut d = as_sent(&manifest("registry.example.com/shop/web:1.4.2"));
    d["metadata"]["namespace"] = "builds".into();
    let in_builds = |user: &str| {
        let mut r = review("u7", user, &["system:serviceaccounts"], d.clone());
        r["request"]["namespace"] = "builds".into();
        r
    };
    let agent = decide(&c.state, &in_builds(FLUX)).await;
    assert_eq!(agent["allowed"], false, "provenance applies here: {agent}");
    for user in [
        "system:serviceaccount:kube-system:replicaset-controller",
        "system:serviceaccount:cert-manager:cert-manager",
    ] {
        let r = decide(&c.state, &in_builds(user)).await;
        assert_eq!(r["allowed"], true, "{user}: {r}");
    }
    // Only the controllers that derive objects: any other kube-system account (an add-on, a
    // stolen token) needs an attestation like everyone else (issue 25, item 8).
    let r = decide(
        &c.state,
        &in_builds("system:serviceaccount:kube-system:coredns"),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
}

/// A namespace whose labels are unknown (not in the watch's cache, and not readable) closes:
/// provenance is required there, and the denial says why. A Namespace is judged by its own
/// labels, so removing `sealgate.dev/provenance` is itself a change that needs an attestation
/// (issue 25, item 8).
#[tokio::test]
async fn unknown_namespaces_close_and_relabelling_needs_provenance() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let c = cluster(&ci);
    c.provenance.replace_all(&[], now());
    let mut d = as_sent(&manifest("registry.example.com/shop/web:1.4.2"));
    d["metadata"]["namespace"] = "nowhere".into();
    let mut r = review("u9", FLUX, &[], d);
    r["request"]["namespace"] = "nowhere".into();
    // The built-in policies' namespaceSelector refuses it too; provenance on its own:
    let parsed = sealgate_webhook::admission::parse(r.to_string().as_bytes()).unwrap();
    let e = c
        .provenance
        .denial(&parsed, &NamespaceLabels::new())
        .expect("a denial");
    assert_eq!(e.rejection.reason(), "not_covered");
    assert_eq!(e.unreadable_namespace.as_deref(), Some("nowhere"));
    assert!(
        e.to_string()
            .contains("namespace nowhere's labels could not be read, so provenance is required"),
        "{e}"
    );
    let resp = decide(&c.state, &r).await;
    assert_eq!(resp["allowed"], false, "{resp}");

    let ns = |labels: Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "builds", "labels": labels, "uid": "n1"}})
    };
    let mut relabel = review(
        "u10",
        FLUX,
        &[],
        ns(json!({"kubernetes.io/metadata.name": "builds"})),
    );
    relabel["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Namespace"});
    relabel["request"]["namespace"] = "builds".into();
    relabel["request"]["operation"] = "UPDATE".into();
    relabel["request"]["oldObject"] = ns(json!({"kubernetes.io/metadata.name": "builds",
        "sealgate.dev/provenance": "required"}));
    let resp = decide(&c.state, &relabel).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[sealgate-provenance] no attestation covers core/Namespace//builds"),
        "{resp}"
    );
}

/// The hand-written CRD in deploy/crds is the resource the webhook watches, and what `lint
/// --attest` writes fits its schema's required fields.
#[test]
fn the_attestation_crd_is_what_the_webhook_reads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/crds/attestations.sealgate.dev.yaml"
    );
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ar = sealgate_webhook::provenance::api_resource();
    assert_eq!(crd["spec"]["group"], ar.group);
    assert_eq!(crd["spec"]["names"]["kind"], ar.kind);
    assert_eq!(crd["spec"]["names"]["plural"], ar.plural);
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], ar.version);
    let ci = SigningKey::generate(Algorithm::Ed25519).unwrap();
    let (_, doc) = attestation(&ci, vec![manifest("a:1")], "r").remove(0);
    assert_eq!(doc["apiVersion"], format!("{}/{}", ar.group, ar.version));
    let schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for field in schema["required"].as_array().unwrap() {
        assert!(
            doc["spec"].get(field.as_str().unwrap()).is_some(),
            "{field}"
        );
    }
    let envelope = &schema["properties"]["envelope"];
    for field in envelope["required"].as_array().unwrap() {
        assert!(
            doc["spec"]["envelope"]
                .get(field.as_str().unwrap())
                .is_some(),
            "{field}"
        );
    }
}

/// A denial says which attestation named the object and why it is refused: a revoked key, an
/// expired key, a failing verdict, a revision too old.
#[tokio::test]
async fn a_refused_attestation_is_named_with_its_reason() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let good = manifest("registry.example.com/shop/web:1.4.2");
    type Tweak = Box<dyn FnOnce(&mut ProvenanceConfig)>;
    let cases: [(&str, Tweak, Verdict, &str); 4] = [
        (
            "which is revoked",
            Box::new(|c: &mut ProvenanceConfig| c.keys[0].revoked = true),
            Verdict::Pass,
            "2026-12-03T07:00:00Z",
        ),
        (
            "which expired at 2026-01-01T00:00:00Z",
            Box::new(|c: &mut ProvenanceConfig| {
                c.keys[0].not_after = Some(time::macros::datetime!(2026-01-01 0:00 UTC))
            }),
            Verdict::Pass,
            "2026-12-03T07:00:00Z",
        ),
        (
            "failed its policy check (verdict: fail)",
            Box::new(|_: &mut ProvenanceConfig| {}),
            Verdict::Fail,
            "2026-12-03T07:00:00Z",
        ),
        (
            "was linted at 2020-01-01T00:00:00Z, more than 30d ago",
            Box::new(|c: &mut ProvenanceConfig| c.rules.max_age = Some(time::Duration::days(30))),
            Verdict::Pass,
            "2020-01-01T00:00:00Z",
        ),
    ];
    for (reason, tweak, verdict, at) in cases {
        let c = cluster_with(&ci, tweak);
        let docs = attestation_with(&ci, vec![good.clone()], "4f2c9e1", verdict, at);
        c.provenance.replace_all(&docs, now());
        let r = decide(&c.state, &review("u8", FLUX, &[], as_sent(&good))).await;
        assert_eq!(r["allowed"], false, "{reason}: {r}");
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!(
                "Attestation {} covers it but is refused",
                docs[0].0
            )) && msg.contains(reason),
            "{reason}: {msg}"
        );
    }
}

/// `sealgate-webhook`'s flags, parsed as the binary parses them.
fn try_flags(args: &[&str]) -> Result<sealgate_webhook::run::Config, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: sealgate_webhook::run::Config,
    }
    use clap::Parser as _;
    // Plain HTTP: the serving certificate's files are checked too, and there are none here.
    Cli::try_parse_from(
        ["sealgate-webhook", "--insecure-http"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .map(|c| c.config)
}

fn flags(args: &[&str]) -> sealgate_webhook::run::Config {
    try_flags(args).unwrap()
}

/// Flags become typed settings before anything starts (issue 28, item 2): a key's `@TIME`, the
/// Rego engine and the namespace-label source are checked when the flags are parsed, not in
/// the middle of `run`.
#[test]
fn flags_are_checked_before_anything_starts() {
    let e = try_flags(&["--attestation-key", "ci.pub@yesterday"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"yesterday\" is not an RFC 3339 time"), "{e}");
    let spec = &flags(&["--attestation-key", "ci.pub@2027-01-01T00:00:00Z"]).attestation_keys[0];
    assert_eq!(spec.file, std::path::PathBuf::from("ci.pub"));
    assert!(spec.not_after.is_some());
    assert!(try_flags(&["--rego-engine", "jit"]).is_err());
    use sealgate_webhook::run::NamespaceSource;
    assert_eq!(
        flags(&[]).validate().unwrap().namespaces,
        NamespaceSource::Cluster
    );
    assert_eq!(
        flags(&["--namespace-labels", "a.yaml,b.yaml"])
            .validate()
            .unwrap()
            .namespaces,
        NamespaceSource::Files(vec!["a.yaml".into(), "b.yaml".into()])
    );
    let e = flags(&["--namespace-labels", "cluster,ns.yaml"])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be combined with files"), "{e}");
}

/// A key given both as trusted and as revoked is refused at startup, naming it (issue 25,
/// item 4); the rollback window has a default (item 5).
#[test]
fn a_key_both_trusted_and_revoked_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let pem = dir.path().join("ci.pub");
    std::fs::write(&pem, ci.verifying_key().to_pem()).unwrap();
    let pem = pem.to_str().unwrap();
    for args in [
        ["--attestation-key", pem, "--attestation-revoked-key", pem],
        ["--attestation-revoked-key", pem, "--attestation-key", pem],
    ] {
        let e = flags(&args).validate().unwrap_err().to_string();
        assert!(
            e.contains("is also given as --attestation-revoked-key") && e.contains("ci.pub"),
            "{e}"
        );
    }
    let config = flags(&[
        "--attestation-key",
        pem,
        "--attestation-repository",
        "https://git.example.com/apps",
    ])
    .validate()
    .unwrap()
    .provenance
    .unwrap();
    assert_eq!(config.rules.max_age, Some(time::Duration::days(90)));
    assert_eq!(config.rules.repositories, ["https://git.example.com/apps"]);
}

/// An attestation admits only until its key's expiry, checked at each admission: no restart
/// needed (issue 25, item 3). And one from another repository is refused (item 5).
#[tokio::test]
async fn expiry_and_repository_are_checked_at_admission() {
    let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
    let good = manifest("registry.example.com/shop/web:1.4.2");
    let c = cluster_with(&ci, |c| {
        c.keys[0].not_after = Some(now() + time::Duration::milliseconds(1500));
    });
    c.provenance
        .replace_all(&attestation(&ci, vec![good.clone()], "4f2c9e1"), now());
    let r = decide(&c.state, &review("u1", FLUX, &[], as_sent(&good))).await;
    assert_eq!(r["allowed"], true, "{r}");
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let r = decide(&c.state, &review("u2", FLUX, &[], as_sent(&good))).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("it is signed by key ci, which expired at"),
        "{msg}"
    );

    let c = cluster_with(&ci, |c| {
        c.rules.repositories = vec!["https://git.example.com/platform".into()];
    });
    let docs = attestation(&ci, vec![good.clone()], "4f2c9e1");
    c.provenance.replace_all(&docs, now());
    let r = decide(&c.state, &review("u3", FLUX, &[], as_sent(&good))).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("linted in repository https://git.example.com/apps, which is not one attestations may come from"),
        "{msg}"
    );
}
