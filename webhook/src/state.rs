//! The webhook's shared state: the bundle in force, and beside it each watched thing with its own
//! owner (Namespace labels, the inventory, attestations), metrics, the evaluation pool and how
//! reviews are evaluated. The server and the reloaders hold an `Arc<AppState>`; each watch holds
//! only what it keeps current.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sealgate_core::policy::{Bundle, NamespaceLabels, Review};

use crate::admission::{self, Decision, Exemptions};
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::namespaces::NamespaceCache;
use crate::pool::Pool;
use crate::provenance::Provenance;

/// How the webhook evaluates.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub settings: Exemptions,
    /// The whole evaluation of one request, below the ValidatingWebhookConfiguration's timeout.
    pub deadline: Duration,
    /// Admit (with a warning) instead of deny when the deadline passes.
    pub allow_on_timeout: bool,
    pub max_body_bytes: usize,
    /// Evaluation threads: evaluations running at once (the rest wait, within the deadline).
    pub concurrency: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            settings: Exemptions::default(),
            deadline: Duration::from_millis(2500),
            allow_on_timeout: false,
            max_body_bytes: 7 << 20,
            // Evaluation is CPU-bound: more threads than cores would only take turns.
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The last policy reload that failed, shown by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub loaded_at: Option<String>,
    pub last_error: Option<String>,
}

pub struct AppState {
    pub bundle: ArcSwap<Bundle>,
    /// Labels of the cluster's Namespaces, for namespaceSelector and provenance.
    pub namespaces: Arc<NamespaceCache>,
    /// `data.inventory`: the kinds the sync configuration names.
    pub inventory: Arc<Inventory>,
    /// Provenance checks (trusted keys and the watched Attestations), when configured.
    pub provenance: Option<Arc<Provenance>>,
    pub config: EvalConfig,
    pub metrics: Metrics,
    pub status: Mutex<ReloadStatus>,
    /// The API, to read a Namespace the watch has not delivered yet (set when watching).
    pub api: std::sync::OnceLock<kube::Client>,
    pub(crate) pool: Pool,
}

impl AppState {
    /// With fixed Namespace labels and no provenance. Fails only if the evaluation threads cannot
    /// be started.
    pub fn new(
        bundle: Bundle,
        namespaces: NamespaceLabels,
        config: EvalConfig,
    ) -> std::io::Result<Arc<AppState>> {
        AppState::build(bundle, NamespaceCache::fixed(namespaces), None, config)
    }

    /// With every part given.
    pub fn build(
        bundle: Bundle,
        namespaces: NamespaceCache,
        provenance: Option<Arc<Provenance>>,
        config: EvalConfig,
    ) -> std::io::Result<Arc<AppState>> {
        let metrics = Metrics::default();
        metrics.constraints.set(bundle.constraints().len() as i64);
        Ok(Arc::new(AppState {
            bundle: ArcSwap::from_pointee(bundle),
            namespaces: Arc::new(namespaces),
            inventory: Arc::new(Inventory::new()),
            provenance,
            pool: Pool::new(config.concurrency)?,
            config,
            metrics,
            status: Mutex::new(ReloadStatus {
                loaded_at: Some(now()),
                last_error: None,
            }),
            api: std::sync::OnceLock::new(),
        }))
    }

    /// Swap in a new bundle; in-flight requests finish with the one they started with.
    pub fn set_bundle(&self, bundle: Bundle) {
        self.metrics
            .constraints
            .set(bundle.constraints().len() as i64);
        self.bundle.store(Arc::new(bundle));
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.loaded_at = Some(now());
        st.last_error = None;
    }

    /// Whether `namespace` is one whose labels a decision needs but the cache lacks: read it
    /// from the API first.
    pub(crate) fn namespace_unknown(&self, namespace: &str) -> bool {
        !namespace.is_empty()
            && !self.namespaces.contains(namespace)
            && !self
                .config
                .settings
                .exempt_namespaces
                .iter()
                .any(|n| n == namespace)
    }

    /// Decide a parsed review with the bundle and Namespace labels in force now.
    pub(crate) fn decide(&self, review: Review) -> Decision {
        admission::decide(
            &self.bundle.load(),
            review,
            &self.namespaces.snapshot(),
            self.provenance.as_deref(),
            &self.config.settings,
        )
    }

    pub fn reload_failed(&self, error: String) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(format!("{}: {error}", now()));
    }
}

/// RFC 3339, as Kubernetes writes times.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
