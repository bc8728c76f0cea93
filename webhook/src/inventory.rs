//! `data.inventory` at admission, as Gatekeeper replicates it: a watch of every kind the bundle's
//! sync configuration names (Gatekeeper `Config` `spec.sync.syncOnly`, or `SyncSet`), kept
//! current, and the bundle rebuilt with it. Referential templates (unique ingress host, unique
//! service selector, …) then see at admission what `sealgate lint --inventory` gives them in CI.
//!
//! Until every watched kind has completed its first list and a bundle was built with it, the
//! webhook is not ready: a referential policy evaluated on an empty inventory would let every
//! duplicate through. Changes are batched (`debounce`) because each rebuild recompiles the bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use sealgate_core::policy::SyncKind;
use serde_json::Value;

/// One kind's objects by (namespace, name).
type Objects = BTreeMap<(String, String), Value>;

/// The replicated objects, by kind.
pub struct Inventory {
    /// kind → (namespace, name) → object.
    objects: Mutex<BTreeMap<SyncKind, Objects>>,
    /// Kinds being watched whose first list has not completed.
    pending: Mutex<BTreeSet<SyncKind>>,
    /// Bumped on every change; the rebuild loop compares it with what it last built.
    version: AtomicU64,
    /// Every watched kind listed, and a bundle built with that inventory.
    ready: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory::new()
    }
}

impl Inventory {
    /// An inventory with nothing to wait for: ready until a watch starts.
    pub fn new() -> Inventory {
        Inventory {
            objects: Mutex::default(),
            pending: Mutex::default(),
            version: AtomicU64::new(0),
            ready: AtomicBool::new(true),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Every replicated object, for a bundle build.
    pub fn snapshot(&self) -> Vec<Value> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Whether admission may rely on the inventory.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The number of replicated objects (for `/readyz`).
    pub fn len(&self) -> usize {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn touch(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Not ready until `kind`'s first list is in.
    fn await_first_list(&self, kind: &SyncKind) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.clone());
        self.ready.store(false, Ordering::Release);
    }

    /// A kind the cluster does not serve: nothing to wait for.
    fn not_served(&self, kind: &SyncKind) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(kind);
        self.touch();
    }

    /// Stop replicating a kind (no longer in the sync configuration).
    fn forget(&self, kind: &SyncKind) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(kind);
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(kind);
        self.touch();
    }
}

/// Applies one kind's watcher events to the inventory. A relist (`Init` … `InitDone`) replaces
/// the kind's objects whole, so an object deleted while the watch was down does not linger.
pub struct Tracker {
    inventory: Arc<Inventory>,
    kind: SyncKind,
    pending: Option<Objects>,
}

impl Tracker {
    pub fn new(inventory: Arc<Inventory>, kind: SyncKind) -> Tracker {
        inventory.await_first_list(&kind);
        Tracker {
            inventory,
            kind,
            pending: None,
        }
    }

    /// The object as `data.inventory` holds it: with its apiVersion and kind (list items and
    /// watch events may omit them), without `managedFields`.
    fn entry(&self, o: DynamicObject) -> Option<((String, String), Value)> {
        let mut v = serde_json::to_value(&o).ok()?;
        v["apiVersion"] = self.kind.api_version().into();
        v["kind"] = self.kind.kind.clone().into();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        Some(((ns, o.metadata.name.clone()?), v))
    }

    pub fn apply(&mut self, event: watcher::Event<DynamicObject>) {
        let inv = &self.inventory;
        let update = |f: &mut dyn FnMut(&mut Objects)| {
            let mut objects = inv.objects.lock().unwrap_or_else(|e| e.into_inner());
            f(objects.entry(self.kind.clone()).or_default());
            drop(objects);
            inv.touch();
        };
        match event {
            watcher::Event::Init => self.pending = Some(BTreeMap::new()),
            watcher::Event::InitApply(o) => {
                if let Some((k, v)) = self.entry(o)
                    && let Some(p) = self.pending.as_mut()
                {
                    p.insert(k, v);
                }
            }
            watcher::Event::InitDone => {
                let mut fresh = self.pending.take().unwrap_or_default();
                tracing::info!(target: "sealgate::inventory", kind = %self.kind.kind, objects = fresh.len(), "inventory synced");
                update(&mut |m| std::mem::swap(m, &mut fresh));
                inv.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.kind);
                // `ready` is set by the rebuild that includes this list.
                inv.touch();
            }
            watcher::Event::Apply(o) => {
                if let Some((k, v)) = self.entry(o) {
                    update(&mut |m| {
                        m.insert(k.clone(), v.clone());
                    });
                }
            }
            watcher::Event::Delete(o) => {
                if let Some((k, _)) = self.entry(o) {
                    update(&mut |m| {
                        m.remove(&k);
                    });
                }
            }
        }
    }
}

/// What discovery says of a synced kind.
pub(crate) enum Resolved {
    /// Served: its resource.
    Served(ApiResource),
    /// This cluster does not serve that group, version or kind (the library's sync
    /// configurations name Ingress in `extensions/v1beta1`, gone since Kubernetes 1.22).
    NotServed(String),
    /// Discovery failed otherwise: the resource guessed from the kind's name, as kube does.
    Guessed(ApiResource, String),
}

/// The API resource of a synced kind, from discovery.
pub(crate) async fn resolve(client: &kube::Client, kind: &SyncKind) -> Resolved {
    let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((ar, _)) => Resolved::Served(ar),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Resolved::NotServed(format!("{} is not served", gvk.api_version()))
        }
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_))) => {
            Resolved::NotServed(format!("{} has no kind {}", gvk.api_version(), gvk.kind))
        }
        Err(e) => Resolved::Guessed(ApiResource::from_gvk(&gvk), e.to_string()),
    }
}

/// How often a kind this cluster does not serve is looked up again (a CRD may add it).
const NOT_SERVED_RECHECK: Duration = Duration::from_secs(60);

/// The resource to watch for `kind`. A kind the cluster does not serve is not waited for (as
/// Gatekeeper skips it): readiness would otherwise never come, and with it no admission at all,
/// for a sync configuration copied from the library. It is looked up again now and then.
async fn served_resource(
    client: &kube::Client,
    inventory: &Inventory,
    kind: &SyncKind,
) -> ApiResource {
    let mut warned = false;
    loop {
        match resolve(client, kind).await {
            Resolved::Served(ar) => {
                if warned {
                    tracing::info!(target: "sealgate::inventory", kind = %kind.kind, group = %kind.group, version = %kind.version, "the synced kind is served now; replicating it");
                    inventory.await_first_list(kind);
                }
                return ar;
            }
            Resolved::Guessed(ar, error) => {
                tracing::debug!(target: "sealgate::inventory", kind = %kind.kind, %error, "discovery failed; guessing the resource name");
                return ar;
            }
            Resolved::NotServed(why) => {
                if !warned {
                    tracing::warn!(target: "sealgate::inventory", kind = %kind.kind, group = %kind.group, version = %kind.version, reason = %why, "a synced kind is not served by this cluster; not replicated, looked up again every minute");
                    inventory.not_served(kind);
                    warned = true;
                }
                tokio::time::sleep(NOT_SERVED_RECHECK).await;
            }
        }
    }
}

/// Watch one kind for as long as it is synced (errors back off and retry).
async fn watch_kind(client: kube::Client, inventory: Arc<Inventory>, kind: SyncKind) {
    let ar = served_resource(&client, &inventory, &kind).await;
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut tracker = Tracker::new(inventory, kind.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => tracker.apply(e),
            Err(e) => {
                tracing::warn!(target: "sealgate::inventory", kind = %kind.kind, error = %e, "inventory watch failed; retrying")
            }
        }
    }
}

/// What the inventory serves: the bundle that names the kinds to replicate and is rebuilt with
/// them. The webhook's reloader is one ([`crate::reload::Rebuilder`]); the inventory does not
/// know how a bundle is built.
pub trait Consumer: Send + Sync + 'static {
    /// The kinds the bundle in force syncs.
    fn wanted(&self) -> BTreeSet<SyncKind>;
    /// Rebuild the bundle with the inventory as it is now; whether that succeeded.
    fn rebuild(&self) -> futures::future::BoxFuture<'_, bool>;
}

/// Keep one watch per kind `consumer` wants, and have it rebuild its bundle when the inventory
/// changes (at most once per `debounce`).
pub async fn run(
    client: kube::Client,
    inventory: Arc<Inventory>,
    consumer: impl Consumer,
    debounce: Duration,
) {
    let mut watches: BTreeMap<SyncKind, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut built = 0;
    loop {
        let wanted = consumer.wanted();
        watches.retain(|kind, task| {
            let keep = wanted.contains(kind);
            if !keep {
                task.abort();
                inventory.forget(kind);
            }
            keep
        });
        for kind in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = watches.entry(kind) {
                // Not ready until this kind is listed.
                inventory.await_first_list(e.key());
                let task = tokio::spawn(watch_kind(
                    client.clone(),
                    inventory.clone(),
                    e.key().clone(),
                ));
                e.insert(task);
            }
        }
        let version = inventory.version.load(Ordering::Acquire);
        if version != built {
            tokio::time::sleep(debounce).await;
            built = inventory.version.load(Ordering::Acquire);
            let complete = inventory
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if consumer.rebuild().await && complete {
                inventory.ready.store(true, Ordering::Release);
            }
            continue;
        }
        // Woken by a change, or now and then to follow a reloaded sync configuration.
        let _ = tokio::time::timeout(Duration::from_secs(5), inventory.changed.notified()).await;
    }
}
