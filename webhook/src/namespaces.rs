//! The cluster's Namespace labels, for `namespaceSelector` (the governed-namespace identity policy
//! depends on it), kept current by a Kubernetes watch.
//!
//! A relist (`Init` … `InitDone`) builds a fresh map that replaces the old one whole, so a
//! Namespace deleted while the watch was down does not linger. Until the first list is complete
//! the webhook reports not ready: evaluating with no labels would let every governed namespace
//! through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{WatchStreamExt, watcher};
use sealgate_core::policy::NamespaceLabels;

use crate::state::AppState;

/// A Namespace's name and labels, as the label cache holds them.
pub(crate) fn labels(ns: &Namespace) -> Option<(String, BTreeMap<String, String>)> {
    let name = ns.metadata.name.clone()?;
    Some((name, ns.metadata.labels.clone().unwrap_or_default()))
}

/// Apply watcher events to the state's label map.
pub struct Tracker {
    state: Arc<AppState>,
    /// The map being built by a relist, swapped in at `InitDone`.
    pending: Option<NamespaceLabels>,
}

impl Tracker {
    pub fn new(state: Arc<AppState>) -> Tracker {
        Tracker {
            state,
            pending: None,
        }
    }

    pub fn apply(&mut self, event: watcher::Event<Namespace>) {
        let update = |f: &dyn Fn(&mut NamespaceLabels)| {
            let mut next = (**self.state.namespaces.load()).clone();
            f(&mut next);
            self.state.namespaces.store(Arc::new(next));
        };
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
                self.state.namespaces.store(Arc::new(fresh));
                self.state.namespaces_synced.store(true, Ordering::Release);
            }
            watcher::Event::Apply(ns) => {
                if let Some((name, l)) = labels(&ns) {
                    update(&|m| {
                        m.insert(name.clone(), l.clone());
                    });
                }
            }
            watcher::Event::Delete(ns) => {
                if let Some((name, _)) = labels(&ns) {
                    update(&|m| {
                        m.remove(&name);
                    });
                }
            }
        }
    }
}

/// Watch Namespaces for as long as the process runs (errors back off and retry).
pub async fn watch(client: kube::Client, state: Arc<AppState>) {
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let mut tracker = Tracker::new(state);
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
