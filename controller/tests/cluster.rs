//! Against a real cluster. `#[ignore]`d, and guarded by `SEALGATE_IT=1` as well, because it
//! writes to whatever cluster the current kubeconfig context points at. Run with kind or k3d:
//!
//! ```sh
//! kind create cluster --name sealgate          # or: k3d cluster create sealgate
//! kubectl apply -f deploy/crds/
//! SEALGATE_IT=1 cargo test -p sealgate-controller --test cluster -- --ignored
//! ```
//!
//! It runs the library in process against the API server (no image needed) in a fresh namespace
//! that it deletes afterwards: key generation into a Secret, the leader Lease, unsealing, drift
//! repair, and garbage collection of the Secret with its SealedSecret.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sealgate_controller::crd::SealedSecret;
use sealgate_controller::keys::KeyManager;
use sealgate_controller::keys::plan::RenewalPolicy;
use sealgate_controller::leader::{Elector, LeaseConfig};
use sealgate_controller::metrics::Metrics;
use sealgate_controller::reconcile::{Context, ReconcileConfig, run};
use sealgate_core::keys::{KeyGenOptions, KeyRing};
use sealgate_core::sealing::{self, SealOptions, Target};
use serde_json::json;

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..120 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
#[ignore = "needs a cluster: SEALGATE_IT=1, a kubeconfig, and deploy/crds applied"]
async fn unseals_repairs_and_collects_in_a_real_cluster() {
    if std::env::var_os("SEALGATE_IT").is_none() {
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let ns = format!(
        "sealgate-it-{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    // Leader election and the first key, stored as a Secret in the namespace.
    let (elector, _leading) = Elector::new(
        client.clone(),
        LeaseConfig::new("sealgate-controller", &ns, "it-pod"),
    );
    assert!(elector.try_acquire_or_renew().await.unwrap());
    let ring = Arc::new(ArcSwap::from_pointee(KeyRing::default()));
    let metrics = Arc::new(Metrics::default());
    let keys = KeyManager::new(
        client.clone(),
        ns.clone(),
        RenewalPolicy::default(),
        KeyGenOptions {
            rsa_bits: 2048,
            ..KeyGenOptions::default()
        },
        ring.clone(),
        metrics.clone(),
    );
    keys.sync(true, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let key = ring.load().newest().expect("a key").public().clone();

    let ctx = Context::new(
        client.clone(),
        ring.clone(),
        metrics,
        ReconcileConfig {
            resync: Duration::from_secs(2),
            ..ReconcileConfig::default()
        },
        Some("it-pod".into()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run::<SealedSecret>(ctx, async move {
        let _ = stopped.await;
    }));

    let plain = sealing::Secret::from_value(&json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns},
        "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    let ss =
        sealing::seal_secret(&plain, &Target::new(&key, &[]), &SealOptions::default()).unwrap();
    let sealed_api: Api<SealedSecret> = Api::namespaced(client.clone(), &ns);
    sealed_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(ss.to_value()).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let password = |s: &Secret| s.data.as_ref()?.get("password").map(|v| v.0.clone());
    eventually("the Secret", || async {
        let s = secrets.get_opt("db").await.ok()??;
        (password(&s)? == b"hunter2").then_some(())
    })
    .await;
    eventually("status Synced=True", || async {
        let s = sealed_api.get("db").await.ok()?;
        (s.status?.conditions.first()?.status == "True").then_some(())
    })
    .await;

    // A hand edit is repaired.
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": "Y2hhbmdlZA=="}})),
        )
        .await
        .unwrap();
    eventually("the repair", || async {
        let s = secrets.get_opt("db").await.ok()??;
        (password(&s)? == b"hunter2").then_some(())
    })
    .await;

    // Deleting the SealedSecret lets garbage collection delete the Secret.
    sealed_api
        .delete("db", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("garbage collection", || async {
        secrets.get_opt("db").await.ok()?.is_none().then_some(())
    })
    .await;

    let _ = stop.send(());
    controller.await.unwrap();
    elector.release().await.unwrap();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
