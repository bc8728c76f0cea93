//! Sealing keys in the cluster: the key manager. It loads the sealing keys from the controller
//! namespace's Secrets, generates the first one and renews on schedule (leader only), and picks up
//! keys created elsewhere (another replica, an import, a restore) on the next poll, without a
//! restart. It never deletes a key. Its decisions are pure functions in [`plan`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use sealgate_core::keys::{KeyGenOptions, KeyRing, SealingKey};
use time::OffsetDateTime;

pub mod plan;

use crate::metrics::Metrics;
use plan::{Renewal, RenewalPolicy, key_secret, renewal, ring_from_secrets};

#[derive(Debug, thiserror::Error)]
pub enum KeyManagerError {
    #[error("cannot list the key Secrets in namespace {namespace}: {source}")]
    List {
        namespace: String,
        source: kube::Error,
    },
    #[error("cannot store the new key Secret {name}: {source}")]
    Create { name: String, source: kube::Error },
    #[error("cannot generate a sealing key: {0}")]
    Generate(String),
}

pub struct KeyManager {
    pub client: kube::Client,
    pub namespace: String,
    pub policy: RenewalPolicy,
    /// RSA size, common name and validity of generated keys (`now` is set at generation).
    pub keygen: KeyGenOptions,
    pub ring: Arc<ArcSwap<KeyRing>>,
    pub metrics: Arc<Metrics>,
    /// Problems already logged, so a broken key Secret is reported once, not every poll.
    reported: Mutex<BTreeSet<String>>,
}

impl KeyManager {
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        policy: RenewalPolicy,
        keygen: KeyGenOptions,
        ring: Arc<ArcSwap<KeyRing>>,
        metrics: Arc<Metrics>,
    ) -> KeyManager {
        KeyManager {
            client,
            namespace: namespace.into(),
            policy,
            keygen,
            ring,
            metrics,
            reported: Mutex::default(),
        }
    }

    /// Load the keys; when `may_generate` (this replica leads), generate and store a key if one
    /// is due. Returns the next renewal decision.
    pub async fn sync(
        &self,
        may_generate: bool,
        now: OffsetDateTime,
    ) -> Result<Renewal, KeyManagerError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        // All Secrets of the namespace: key Secrets carry one of two labels, and Bitnami's legacy
        // key none, which one label selector cannot express. The namespace holds few Secrets.
        let list =
            api.list(&ListParams::default())
                .await
                .map_err(|source| KeyManagerError::List {
                    namespace: self.namespace.clone(),
                    source,
                })?;
        let (mut ring, problems) = ring_from_secrets(&list.items, now);
        self.report(problems);
        let mut next = renewal(ring.newest().map(SealingKey::created), self.policy, now);
        if let (true, Renewal::Now(reason)) = (may_generate, &next) {
            let key = self.generate(now).await?;
            let name = sealgate_core::keys::secret::secret_name(&key);
            let secret = key_secret(&key, &self.namespace)
                .map_err(|e| KeyManagerError::Generate(e.to_string()))?;
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                // Same id: the key is already stored (it cannot happen by chance).
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(source) => return Err(KeyManagerError::Create { name, source }),
            }
            tracing::info!(key = %key.id().short(), secret = %name, reason, "generated a new sealing key");
            self.metrics.key_renewals.inc();
            ring.insert(key);
            next = renewal(ring.newest().map(SealingKey::created), self.policy, now);
        }
        self.publish(ring);
        Ok(next)
    }

    async fn generate(&self, now: OffsetDateTime) -> Result<SealingKey, KeyManagerError> {
        let opts = KeyGenOptions {
            now,
            ..self.keygen.clone()
        };
        // RSA-4096 generation takes a second or more: off the reactor.
        tokio::task::spawn_blocking(move || SealingKey::generate(&opts))
            .await
            .map_err(|e| KeyManagerError::Generate(e.to_string()))?
            .map_err(|e| KeyManagerError::Generate(e.to_string()))
    }

    fn report(&self, problems: Vec<String>) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        for p in problems {
            if reported.insert(p.clone()) {
                tracing::error!(namespace = %self.namespace, problem = %p, "a key Secret is not usable");
            }
        }
    }

    /// Replace the shared ring when its keys changed.
    fn publish(&self, ring: KeyRing) {
        let ids = |r: &KeyRing| r.iter().map(SealingKey::id).collect::<Vec<_>>();
        if ids(&self.ring.load()) != ids(&ring) {
            tracing::info!(
                keys = ring.len(),
                newest = %ring.newest().map(|k| k.id().short()).unwrap_or_default(),
                "sealing keys loaded"
            );
            self.metrics.keys.set(ring.len() as i64);
            if let Some(newest) = ring.newest() {
                self.metrics
                    .newest_key_created
                    .set(newest.created().unix_timestamp());
            }
            self.ring.store(Arc::new(ring));
        }
    }

    /// Sync every `poll` (sooner when a renewal falls due, at once on becoming leader) until
    /// `shutdown`. Errors are logged and retried; they never stop the loop.
    pub async fn run(
        self,
        poll: Duration,
        mut leader: tokio::sync::watch::Receiver<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let now = OffsetDateTime::now_utc();
            let leading = *leader.borrow_and_update();
            let wait = match self.sync(leading, now).await {
                Ok(Renewal::At(t)) => poll.min((t - now).try_into().unwrap_or(Duration::ZERO)),
                Ok(_) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "key sync failed; retrying");
                    poll.min(Duration::from_secs(5))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = leader.changed() => {
                    if changed.is_err() {
                        // No election any more (the elector ends at shutdown too): poll on the
                        // clock alone, still listening for the shutdown. Sleeping without it
                        // held the exit for a whole poll period when the elector ended first.
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = &mut shutdown => return,
                        }
                    }
                }
                _ = &mut shutdown => return,
            }
        }
    }
}
