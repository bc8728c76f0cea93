//! The cluster's Namespace labels, for `namespaceSelector` (the governed-namespace identity policy
//! depends on it) and provenance, kept current by a Kubernetes watch.
//!
//! [`NamespaceCache`] owns the labels, whether the first list is in, the watch that keeps them and
//! the read of one Namespace the watch has not delivered yet. A relist (`Init` … `InitDone`)
//! builds a fresh map that replaces the old one whole, so a Namespace deleted while the watch was
//! down does not linger. Until the first list is complete the webhook reports not ready:
//! evaluating with no labels would let every governed namespace through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{WatchStreamExt, watcher};
use sealgate_core::policy::NamespaceLabels;

/// The Namespace labels decisions read.
#[derive(Debug)]
pub struct NamespaceCache {
    labels: ArcSwap<NamespaceLabels>,
    /// False while a watch has not completed its first list.
    synced: AtomicBool,
}

impl NamespaceCache {
    /// Labels given once (`--namespace-labels FILE`): complete from the start.
    pub fn fixed(labels: NamespaceLabels) -> NamespaceCache {
        NamespaceCache {
            labels: ArcSwap::from_pointee(labels),
            synced: AtomicBool::new(true),
        }
    }

    /// Labels a [`watch`](Self::watch) will fill: not synced until its first list is in.
    pub fn watched() -> NamespaceCache {
        NamespaceCache {
            labels: ArcSwap::default(),
            synced: AtomicBool::new(false),
        }
    }

    /// The labels now (a snapshot: later changes do not show in it).
    pub fn snapshot(&self) -> Arc<NamespaceLabels> {
        self.labels.load_full()
    }

    /// Whether the first list is in.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether the cache knows `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.labels.load().contains_key(name)
    }

    fn update(&self, f: impl Fn(&mut NamespaceLabels)) {
        self.labels.rcu(|m| {
            let mut next = (**m).clone();
            f(&mut next);
            next
        });
    }

    /// Read one Namespace from the API into the cache: one the watch has not delivered yet
    /// (created a moment ago), as Gatekeeper falls back to its uncached reader. Not found, or
    /// unreachable: the cache stays as it is, and a namespaceSelector reports the Namespace as
    /// unknown.
    pub async fn read_missing(&self, client: &kube::Client, name: &str) {
        let api: kube::Api<Namespace> = kube::Api::all(client.clone());
        match api.get_opt(name).await {
            Ok(Some(ns)) => {
                if let Some((name, labels)) = labels(&ns) {
                    self.update(|m| {
                        m.insert(name.clone(), labels.clone());
                    });
                    tracing::debug!(target: "sealgate::namespaces", namespace = %name, "namespace read on a cache miss");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "sealgate::namespaces", namespace = %name, error = %e, "cannot read a namespace missing from the cache")
            }
        }
    }

    /// Watch Namespaces for as long as the process runs (errors back off and retry).
    pub async fn watch(self: Arc<Self>, client: kube::Client) {
        let api: kube::Api<Namespace> = kube::Api::all(client);
        let mut tracker = Tracker {
            cache: self,
            pending: None,
        };
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) => tracker.apply(e),
                Err(e) => {
                    tracing::warn!(target: "sealgate::namespaces", error = %e, "namespace watch failed; retrying")
                }
            }
        }
    }
}

/// A Namespace's name and labels, as the cache holds them.
fn labels(ns: &Namespace) -> Option<(String, BTreeMap<String, String>)> {
    let name = ns.metadata.name.clone()?;
    Some((name, ns.metadata.labels.clone().unwrap_or_default()))
}

/// Applies watcher events to the cache.
struct Tracker {
    cache: Arc<NamespaceCache>,
    /// The map being built by a relist, swapped in at `InitDone`.
    pending: Option<NamespaceLabels>,
}

impl Tracker {
    fn apply(&mut self, event: watcher::Event<Namespace>) {
        let cache = &self.cache;
        match event {
            watcher::Event::Init => self.pending = Some(NamespaceLabels::new()),
            watcher::Event::InitApply(ns) => {
                if let (Some(p), Some((name, l))) = (self.pending.as_mut(), labels(&ns)) {
                    p.insert(name, l);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.pending.take().unwrap_or_default();
                tracing::info!(target: "sealgate::namespaces", namespaces = fresh.len(), "namespace labels synced");
                cache.labels.store(Arc::new(fresh));
                cache.synced.store(true, Ordering::Release);
            }
            watcher::Event::Apply(ns) => {
                if let Some((name, l)) = labels(&ns) {
                    cache.update(|m| {
                        m.insert(name.clone(), l.clone());
                    });
                }
            }
            watcher::Event::Delete(ns) => {
                if let Some((name, _)) = labels(&ns) {
                    cache.update(|m| {
                        m.remove(&name);
                    });
                }
            }
        }
    }
}
