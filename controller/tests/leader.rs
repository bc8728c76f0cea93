//! Leader election against an in-memory API server: one leader at a time, takeover of an expired
//! lease, release on shutdown, stepping down when the lease is lost.

use std::time::Duration;

use sealgate_controller::leader::{Elector, LeaderError, LeaseConfig};
use sealgate_testkit::FakeApi;
use serde_json::json;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/sealgate-system/leases";

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        retry: Duration::from_millis(10),
        renew_deadline: Duration::from_millis(100),
        ..LeaseConfig::new("sealgate-controller", "sealgate-system", identity)
    }
}

fn holder(api: &FakeApi) -> serde_json::Value {
    api.get(LEASES, "sealgate-controller").unwrap()["spec"]["holderIdentity"].clone()
}

/// The lease's holder and how many times it changed hands.
fn holder_and_transitions(api: &FakeApi) -> (serde_json::Value, serde_json::Value) {
    let spec = &api.get(LEASES, "sealgate-controller").unwrap()["spec"];
    (
        spec["holderIdentity"].clone(),
        spec["leaseTransitions"].clone(),
    )
}

#[tokio::test]
async fn one_leader_then_release_hands_over() {
    let api = FakeApi::new();
    let (a, _) = Elector::new(api.client(), cfg("pod-a"));
    let (b, _) = Elector::new(api.client(), cfg("pod-b"));
    assert!(a.try_acquire_or_renew().await.unwrap(), "creates the lease");
    assert!(!b.try_acquire_or_renew().await.unwrap(), "held by pod-a");
    assert!(a.try_acquire_or_renew().await.unwrap(), "renews");
    let lines: Vec<String> = api.take_requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            format!("GET {LEASES}/sealgate-controller"),
            format!("POST {LEASES}"),
            format!("GET {LEASES}/sealgate-controller"),
            format!("GET {LEASES}/sealgate-controller"),
            format!("PUT {LEASES}/sealgate-controller"),
        ]
    );
    assert_eq!(holder(&api), "pod-a");
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "released: pod-b takes it"
    );
    assert_eq!(holder_and_transitions(&api), (json!("pod-b"), json!(1)));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let api = FakeApi::new();
    api.insert(
        LEASES,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "sealgate-controller", "namespace": "sealgate-system"},
               "spec": {"holderIdentity": "crashed-pod", "leaseDurationSeconds": 1,
                        "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 4}}),
    );
    let (a, _) = Elector::new(api.client(), cfg("pod-a"));
    // An old renewTime proves nothing (the holder's clock may differ from ours): the record
    // must stay unchanged for the lease duration by our clock, as in client-go.
    assert!(!a.try_acquire_or_renew().await.unwrap(), "just observed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder_and_transitions(&api), (json!("pod-a"), json!(5)));
}

#[tokio::test]
async fn run_leads_releases_on_shutdown_and_steps_down_when_lost() {
    let api = FakeApi::new();
    let (a, mut leading) = Elector::new(api.client(), cfg("pod-a"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(a.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(holder(&api), serde_json::Value::Null, "released");
    assert!(!*leading.borrow());

    // Leading, then another replica (wrongly) holds a fresh lease: step down after the deadline.
    let (a, mut leading) = Elector::new(api.client(), cfg("pod-a"));
    let run = tokio::spawn(a.run(std::future::pending()));
    leading.wait_for(|l| *l).await.unwrap();
    let mut lease = api.get(LEASES, "sealgate-controller").unwrap();
    lease["spec"]["holderIdentity"] = "pod-b".into();
    lease["spec"]["renewTime"] = "2099-01-01T00:00:00.000000Z".into();
    api.insert(LEASES, lease);
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(result, Err(LeaderError::Lost(_))), "{result:?}");
    assert!(!*leading.borrow());
}
