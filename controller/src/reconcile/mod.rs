//! Reconciling SealedSecrets into Secrets: the kube adapter. Its decisions are pure functions:
//! [`desired`] (the Secret a SealedSecret should produce) and [`plan`] (what to do given the
//! Secret that exists, and the status condition).
//!
//! One GET of the Secret per reconcile (live, as Bitnami does, so an unowned Secret is always
//! seen), then at most a server-side apply, a status merge patch and an event. Errors are retried
//! with capped exponential backoff that never gives up; synced objects are resynced periodically
//! so a hand edit of their Secret is repaired (detected by the data MAC, without unsealing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use sealgate_core::keys::KeyRing;
use tracing::Instrument;

pub mod desired;
pub mod plan;

use crate::crd::{Reason, SealedKind};
use crate::metrics::{Metrics, OutcomeLabels, ReasonLabels};
use desired::{UNSEALED_LABEL, for_cache};
use plan::{Plan, cached_current, plan, status};

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "sealgate";

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// `--resync-period`: how often a synced SealedSecret is checked again (drift repair).
    pub resync: Duration,
    /// First retry delay after a failure; doubles per consecutive failure up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// `--workers`: SealedSecrets reconciled at once. Reconciles mostly wait on the API server;
    /// 8 keeps two cores busy with RSA (the cold-start bench: 0.56× raw OAEP with 4, 0.70× with 8).
    pub workers: u16,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            resync: Duration::from_secs(600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            workers: 8,
        }
    }
}

/// The retry delay after `failures` consecutive failures: base·2^(n-1), capped. Never gives up.
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    base.saturating_mul(factor).min(cap)
}

pub struct Context {
    pub client: kube::Client,
    pub ring: Arc<ArcSwap<KeyRing>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub config: ReconcileConfig,
    /// The Secrets this controller wrote (label [`UNSEALED_LABEL`]), kept by [`run`]'s watch. Only
    /// trusted to say "up to date"; anything else is decided on a live read.
    cache: std::sync::OnceLock<Store<Secret>>,
    /// Consecutive failures per object (API version, namespace, name), for the backoff.
    failures: Mutex<HashMap<(&'static str, String, String), u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        ring: Arc<ArcSwap<KeyRing>>,
        metrics: Arc<Metrics>,
        config: ReconcileConfig,
        instance: Option<String>,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "sealgate-controller".into(),
                instance,
            },
        );
        Arc::new(Context {
            client,
            ring,
            metrics,
            recorder,
            config,
            cache: std::sync::OnceLock::new(),
            failures: Mutex::default(),
        })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String, String), u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reconcile that left the SealedSecret synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    /// The Secret already held what it produces.
    UpToDate,
    /// The Secret was written.
    Applied,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// Recorded in status and as an event; retried with backoff.
    #[error("not synced: {reason}")]
    NotSynced { reason: Reason },
    #[error("there is no sealing key yet")]
    NoKeys,
    #[error("the SealedSecret has no namespace")]
    NoNamespace,
    #[error("unsealing task failed: {0}")]
    Task(String),
}

impl ReconcileError {
    fn reason(&self) -> Reason {
        match self {
            ReconcileError::Api(_) => Reason::ApiError,
            ReconcileError::NotSynced { reason } => *reason,
            ReconcileError::NoKeys => Reason::NoKeys,
            ReconcileError::NoNamespace => Reason::InvalidSealedSecret,
            ReconcileError::Task(_) => Reason::InternalError,
        }
    }
}

fn key_of<K: SealedKind>(obj: &K) -> (&'static str, String, String) {
    (
        K::SOURCE.api_version(),
        obj.namespace().unwrap_or_default(),
        obj.name_any(),
    )
}

/// The span of one reconcile: every event about the object carries its group, namespace, name
/// and uid once, instead of each repeating them.
fn reconcile_span<K: SealedKind>(obj: &K) -> tracing::Span {
    let meta = obj.meta();
    tracing::info_span!(
        "reconcile",
        group = K::SOURCE.group(),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        object = meta.name.as_deref().unwrap_or_default(),
        uid = meta.uid.as_deref().unwrap_or_default(),
    )
}

/// Reconcile one SealedSecret (sealgate's or, in `--bitnami` mode, Bitnami's).
pub async fn reconcile<K: SealedKind>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let result = reconcile_inner(&*obj, &ctx)
        .instrument(reconcile_span(&*obj))
        .await;
    let outcome = match &result {
        Ok(Synced::UpToDate) => "up_to_date",
        Ok(Synced::Applied) => "applied",
        Err(ReconcileError::NotSynced {
            reason: Reason::SecretNotOwned,
        }) => "refused",
        Err(ReconcileError::NotSynced { .. }) => "failed",
        Err(_) => "error",
    };
    ctx.metrics
        .reconcile_duration
        .get_or_create(&OutcomeLabels {
            outcome: outcome.into(),
        })
        .observe(start.elapsed().as_secs_f64());
    if let Err(e) = result {
        ctx.metrics
            .unseal_errors
            .get_or_create(&ReasonLabels {
                reason: e.reason().to_string(),
            })
            .inc();
        return Err(e);
    }
    ctx.failures().remove(&key_of(&*obj));
    Ok(Action::requeue(ctx.config.resync))
}

async fn reconcile_inner<K: SealedKind>(obj: &K, ctx: &Context) -> Result<Synced, ReconcileError> {
    let ss = obj.to_sealgate();
    let ns = ss
        .metadata
        .namespace
        .clone()
        .ok_or(ReconcileError::NoNamespace)?;
    let name = ss.name_any();
    let ring = ctx.ring.load_full();
    if ring.is_empty() {
        return Err(ReconcileError::NoKeys);
    }
    // The common case after a restart or a resync: the cached Secret is ours and current, so
    // there is nothing to read, decrypt or write.
    let cached = ctx
        .cache
        .get()
        .and_then(|store| store.get(&ObjectRef::new(&name).within(&ns)));
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let the_plan = if cached.is_some_and(|c| cached_current(&c, &ss, K::SOURCE, &ring)) {
        Plan::UpToDate
    } else {
        let existing = secrets.get_opt(&name).await?;
        // RSA private-key work: off the async reactor.
        let input = ss.clone();
        tokio::task::spawn_blocking(move || plan(&input, K::SOURCE, existing.as_ref(), &ring))
            .await
            .map_err(|e| ReconcileError::Task(e.to_string()))?
    };
    if let Plan::Apply {
        secret,
        private_key_ops,
    } = &the_plan
    {
        ctx.metrics
            .private_key_operations
            .inc_by(*private_key_ops as u64);
        secrets
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&**secret),
            )
            .await?;
        ctx.metrics.unseals.inc();
    }
    let now = now_rfc3339();
    if let Some(st) = status(&ss, &the_plan, &now) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(serde_json::json!({ "status": st })),
        )
        .await?;
    }
    ctx.metrics.set_condition(
        K::SOURCE.group(),
        &ns,
        &name,
        !matches!(the_plan, Plan::Refuse { .. } | Plan::Fail { .. }),
    );
    let event = match &the_plan {
        Plan::UpToDate => None,
        Plan::Apply { .. } => Some(Event {
            type_: EventType::Normal,
            reason: Reason::Unsealed.to_string(),
            note: Some("SealedSecret unsealed into its Secret".into()),
            action: "Unseal".into(),
            secondary: None,
        }),
        Plan::Refuse { reason, message } | Plan::Fail { reason, message } => Some(Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(message.clone()),
            action: "Unseal".into(),
            secondary: None,
        }),
    };
    if let Some(event) = event {
        // An event that cannot be written must not fail the reconcile: it is a courtesy.
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish an event");
        }
    }
    match the_plan {
        Plan::UpToDate => Ok(Synced::UpToDate),
        Plan::Apply { .. } => Ok(Synced::Applied),
        Plan::Refuse { reason, .. } | Plan::Fail { reason, .. } => {
            Err(ReconcileError::NotSynced { reason })
        }
    }
}

/// RFC 3339 UTC, second precision (what Kubernetes puts in conditions).
fn now_rfc3339() -> String {
    sealgate_core::keys::cert::fmt_time(time::OffsetDateTime::now_utc())
}

/// What to do after a failure: retry with capped exponential backoff, forever.
pub fn error_policy<K: SealedKind>(obj: Arc<K>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let n = {
        let mut f = ctx.failures();
        let n = f.entry(key_of(&*obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(n, ctx.config.backoff_base, ctx.config.backoff_cap);
    let _span = reconcile_span(&*obj).entered();
    tracing::warn!(
        error = %err,
        retry_in_seconds = delay.as_secs_f64(),
        failures = n,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Run the controller for one SealedSecret kind until `shutdown` resolves. The Secrets it wrote
/// (label [`UNSEALED_LABEL`]) are watched into a cache, so the owner is reconciled when its
/// Secret is edited, deleted or unlabelled, and an unchanged one needs no read at all.
pub async fn run<K: SealedKind>(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // The Secrets this controller wrote, cached: an edit or deletion reconciles the owner at
    // once, and an up-to-date one needs no read. One cache serves both kinds (--bitnami).
    let selector = format!("{UNSEALED_LABEL}=true");
    // The cache keeps no data (see `for_cache`): the MAC is checked as each Secret arrives.
    let ring = ctx.ring.clone();
    let watch = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .map(move |ev| ev.map(|ev| ev.modify(|s| *s = for_cache(s, &ring.load()))));
    let (reader, writer) = reflector::store();
    let secrets = if ctx.cache.set(reader).is_ok() {
        reflector::reflector(writer, watch)
            .touched_objects()
            .boxed()
    } else {
        // With --bitnami the first kind's run fills the cache; this one only needs the triggers.
        watch.touched_objects().boxed()
    };
    let config = kube::runtime::controller::Config::default().concurrency(ctx.config.workers);
    let controller = Controller::new(
        Api::<K>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config)
    .owns_stream(secrets)
    .graceful_shutdown_on(shutdown);
    // Deleted SealedSecrets are not reconciled again: every minute, once the cache has its first
    // list, forget their condition series and retry counters.
    let store = controller.store();
    let metrics = ctx.metrics.clone();
    let pruned = ctx.clone();
    let prune = async move {
        if store.wait_until_ready().await.is_err() {
            return std::future::pending().await;
        }
        loop {
            let live: std::collections::BTreeSet<(String, String)> = store
                .state()
                .iter()
                .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
                .collect();
            metrics.retain_conditions(K::SOURCE.group(), &live);
            pruned.failures().retain(|(api, ns, name), _| {
                *api != K::SOURCE.api_version() || live.contains(&(ns.clone(), name.clone()))
            });
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    };
    let work = controller
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                // Object errors are logged by error_policy; these are watch/queue errors.
                if !matches!(e, kube::runtime::controller::Error::ReconcilerFailed(..)) {
                    tracing::warn!(error = %e, "controller stream error");
                }
            }
        });
    tokio::select! {
        _ = work => {}
        _ = prune => {}
    }
}
