//! The key manager against an in-memory API server: first key, renewal timing across restarts,
//! cutoff, pick-up of keys created elsewhere, Bitnami key import, broken key Secrets.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sealgate_controller::keys::KeyManager;
use sealgate_controller::keys::plan::{Renewal, RenewalPolicy, key_secret};
use sealgate_controller::metrics::Metrics;
use sealgate_core::keys::{KeyGenOptions, KeyRing, SealingKey};
use sealgate_testkit::FakeApi;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const NS: &str = "sealgate-system";
const SECRETS: &str = "/api/v1/namespaces/sealgate-system/secrets";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn keygen() -> KeyGenOptions {
    KeyGenOptions {
        rsa_bits: 2048,
        ..KeyGenOptions::default()
    }
}

fn manager(api: &FakeApi, policy: RenewalPolicy) -> KeyManager {
    KeyManager::new(
        api.client(),
        NS,
        policy,
        keygen(),
        Arc::new(ArcSwap::from_pointee(KeyRing::default())),
        Arc::new(Metrics::default()),
    )
}

/// Store a key Secret created at `created`, as another replica or an admin would.
fn store_key(api: &FakeApi, created: OffsetDateTime) -> SealingKey {
    let key = SealingKey::generate(&KeyGenOptions {
        now: created,
        ..keygen()
    })
    .unwrap();
    api.insert(
        SECRETS,
        serde_json::to_value(key_secret(&key, NS).unwrap()).unwrap(),
    );
    key
}

fn posts(api: &FakeApi) -> Vec<Value> {
    api.take_requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn the_first_key_is_generated_by_the_leader_only() {
    let api = FakeApi::new();
    let follower = manager(&api, RenewalPolicy::default());
    assert_eq!(
        follower.sync(false, now()).await.unwrap(),
        Renewal::Now("there is no sealing key yet")
    );
    assert!(posts(&api).is_empty(), "a follower never generates");
    assert!(follower.ring.load().is_empty());

    let leader = manager(&api, RenewalPolicy::default());
    let next = leader.sync(true, now()).await.unwrap();
    let created = posts(&api);
    assert_eq!(created.len(), 1);
    let s = &created[0];
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(
        s["metadata"]["labels"]["sealgate.dev/sealing-key"],
        "active"
    );
    assert!(s["data"]["tls.key"].is_string() && s["data"]["age.key"].is_string());
    let ring = leader.ring.load();
    assert_eq!(ring.len(), 1);
    assert_eq!(
        next,
        Renewal::At(ring.newest().unwrap().created() + Duration::days(30))
    );
    assert!(
        leader
            .metrics
            .encode()
            .contains("sealgate_controller_keys 1")
    );

    // The follower picks the new key up on its next poll.
    follower.sync(false, now()).await.unwrap();
    assert_eq!(
        follower.ring.load().newest().unwrap().id(),
        ring.newest().unwrap().id()
    );
}

#[tokio::test]
async fn renewal_counts_from_the_newest_key_across_restarts() {
    let api = FakeApi::new();
    let old = store_key(&api, now() - Duration::days(10));
    // A restart ten days after the newest key: nothing generated, due in twenty days.
    let m = manager(&api, RenewalPolicy::default());
    assert_eq!(
        m.sync(true, now()).await.unwrap(),
        Renewal::At(old.created() + Duration::days(30))
    );
    assert!(posts(&api).is_empty());
    // Another restart, 21 days later: due, so a new key; the old one is kept.
    let later = now() + Duration::days(21);
    let m = manager(&api, RenewalPolicy::default());
    let next = m.sync(true, later).await.unwrap();
    assert_eq!(posts(&api).len(), 1);
    let ring = m.ring.load();
    assert_eq!(ring.len(), 2, "old keys are never deleted");
    assert_ne!(ring.newest().unwrap().id(), old.id());
    assert_eq!(next, Renewal::At(later + Duration::days(30)));
    assert_eq!(api.count("/secrets"), 2);
    // Renewal disabled (period 0): never.
    let m = manager(
        &api,
        RenewalPolicy {
            period: None,
            cutoff: None,
        },
    );
    assert_eq!(
        m.sync(true, later + Duration::days(400)).await.unwrap(),
        Renewal::Never
    );
    assert!(posts(&api).is_empty());
}

#[tokio::test]
async fn a_cutoff_time_renews_an_older_newest_key_once() {
    let api = FakeApi::new();
    store_key(&api, now() - Duration::days(2));
    let policy = RenewalPolicy {
        period: None,
        cutoff: Some(now() - Duration::hours(1)),
    };
    let m = manager(&api, policy);
    m.sync(true, now()).await.unwrap();
    assert_eq!(
        posts(&api).len(),
        1,
        "renewed: the newest key predates the cutoff"
    );
    // Restarting with the same flag does not renew again.
    manager(&api, policy).sync(true, now()).await.unwrap();
    assert!(posts(&api).is_empty());
}

#[tokio::test]
async fn bitnami_keys_are_imported_and_broken_ones_reported() {
    let api = FakeApi::new();
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/data/bitnami/key-secret.yaml"
    ))
    .unwrap();
    let list = &sealgate_core::manifest::parse(&text, &Default::default()).unwrap()[0].value;
    let mut bitnami = list["items"][0].clone();
    bitnami["metadata"]["namespace"] = NS.into();
    api.insert(SECRETS, bitnami);
    let ours = store_key(&api, now());
    let mut broken = serde_json::to_value(key_secret(&ours, NS).unwrap()).unwrap();
    broken["metadata"]["name"] = "sealgate-key-broken".into();
    broken["data"].as_object_mut().unwrap().remove("tls.crt");
    api.insert(SECRETS, broken);
    let m = manager(&api, RenewalPolicy::default());
    m.sync(true, now()).await.unwrap();
    let ring = m.ring.load();
    assert_eq!(
        ring.len(),
        2,
        "ours and Bitnami's; the broken one is skipped"
    );
    assert_eq!(ring.newest().unwrap().id(), ours.id());
    assert!(
        posts(&api).is_empty(),
        "a recent key exists: nothing generated"
    );
}

#[tokio::test]
async fn api_errors_are_reported_not_fatal() {
    let api = FakeApi::new();
    api.fail_next("GET", "/secrets", 503);
    let m = manager(&api, RenewalPolicy::default());
    let e = m.sync(true, now()).await.unwrap_err().to_string();
    assert!(
        e.contains("cannot list the key Secrets in namespace sealgate-system"),
        "{e}"
    );
    assert!(m.ring.load().is_empty());
    m.sync(true, now()).await.unwrap();
    assert_eq!(m.ring.load().len(), 1);
}

#[tokio::test]
async fn a_relabelled_key_is_retired_at_the_next_poll() {
    let api = FakeApi::new();
    let old = store_key(&api, now() - Duration::days(40));
    let new = store_key(&api, now() - Duration::days(1));
    let m = manager(&api, RenewalPolicy::default());
    m.sync(false, now()).await.unwrap();
    assert_eq!(m.ring.load().len(), 2);
    // operations.md: after a compromise, relabel the old key; no restart.
    let name = sealgate_core::keys::secret::secret_name(&old);
    let mut s = api.get(SECRETS, &name).unwrap();
    s["metadata"]["labels"]["sealgate.dev/sealing-key"] = "compromised".into();
    api.insert(SECRETS, s);
    m.sync(false, now()).await.unwrap();
    let ring = m.ring.load();
    assert_eq!(ring.len(), 1);
    assert_eq!(ring.newest().unwrap().id(), new.id());
    assert!(m.metrics.encode().contains("sealgate_controller_keys 1"));
}
