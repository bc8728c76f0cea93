//! Provenance at admission: in a namespace labelled `sealgate.dev/provenance=required` (or
//! everywhere, with `--provenance-required`), an object is admitted only if a trusted
//! `Attestation` covers it (same kind, namespace and name) and it is exactly what the attested
//! manifest declared, up to the API server's defaults (`sealgate_core::attest::compare`). Attestations are watched (cluster-scoped `sealgate.dev/v1alpha1`
//! `Attestation`); each is verified once, when it arrives or changes, so a review costs a lookup
//! and an exact comparison with the attested manifest, never a signature check.
//!
//! Break-glass (the identity policy's group and annotation) is admitted without provenance and
//! reported, as it is for identity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use sealgate_core::attest::resource;
use sealgate_core::attest::statement::{Statement, subject_name};
use sealgate_core::attest::verify::{self, Rejection, Rules, TrustedKey, Verified};
use sealgate_core::policy::{NamespaceLabels, Operation, Review};
use serde_json::Value;

/// The Namespace label that requires provenance in that namespace.
pub const REQUIRED_LABEL: &str = "sealgate.dev/provenance";

/// Per Attestation name: the envelope's content, what verifying it gave, and (for one a known key
/// signed but that is refused: revoked, expired, failed, too old) the subjects it names, so a
/// denial can say which attestation and why.
type Seen = HashMap<String, (String, Result<Verified, Rejection>, Vec<String>)>;

/// The trusted attestations, and where each subject's manifests are in them.
#[derive(Debug, Default)]
struct Trusted {
    list: Vec<Verified>,
    /// Subject name → (attestation, manifest) indexes.
    by_subject: HashMap<String, Vec<(usize, usize)>>,
    /// Subject name → a refused attestation that names it, and why.
    refused: HashMap<String, (String, Rejection)>,
}

impl Trusted {
    fn new(seen: &Seen) -> Trusted {
        let list: Vec<Verified> = seen
            .values()
            .filter_map(|(_, r, _)| r.as_ref().ok().cloned())
            .collect();
        let mut by_subject: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            for (j, s) in v.statement.subject.iter().enumerate() {
                by_subject.entry(s.name.clone()).or_default().push((i, j));
            }
        }
        let mut refused = HashMap::new();
        for (name, (_, r, subjects)) in seen {
            if let Err(why) = r {
                for s in subjects {
                    refused.insert(s.clone(), (name.clone(), why.clone()));
                }
            }
        }
        Trusted {
            list,
            by_subject,
            refused,
        }
    }
}

/// How provenance is checked.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceConfig {
    /// Keys attestations may be signed with (revoked ones included, to say so).
    pub keys: Vec<TrustedKey>,
    /// Age window and ignored fields.
    pub rules: Rules,
    /// Require provenance in every namespace (and for cluster-scoped objects), not only in
    /// labelled namespaces.
    pub required_everywhere: bool,
    /// Users whose changes are not manifests from Git (operators that create objects, e.g.
    /// cert-manager's service account), besides Kubernetes' own controllers.
    pub exempt_users: Vec<String>,
}

/// Kubernetes' own controllers that derive objects from manifests: the Pods of a ReplicaSet, the
/// ReplicaSets of a Deployment, the Jobs of a CronJob, and the garbage collector's and namespace
/// controller's cleanup. Each has its own service account under
/// `--use-service-account-credentials` (kubeadm's default); any other kube-system account (an
/// add-on, a stolen token) is not exempt.
fn is_cluster_controller(user: &str) -> bool {
    const DERIVING: &[&str] = &[
        "replicaset-controller",
        "deployment-controller",
        "statefulset-controller",
        "daemon-set-controller",
        "job-controller",
        "cronjob-controller",
        "replication-controller",
        "generic-garbage-collector",
        "namespace-controller",
        "ttl-after-finished-controller",
        "horizontal-pod-autoscaler",
        "disruption-controller",
    ];
    matches!(
        user,
        "system:kube-controller-manager" | "system:kube-scheduler"
    ) || user
        .strip_prefix("system:serviceaccount:kube-system:")
        .is_some_and(|sa| DERIVING.contains(&sa))
}

/// The attestations in the cluster, verified, and the decision for one review.
#[derive(Debug)]
pub struct Provenance {
    config: ProvenanceConfig,
    /// Every trusted attestation and an index by subject, rebuilt when one changes.
    verified: ArcSwap<Trusted>,
    seen: Mutex<Seen>,
    /// False until the watch's first list is in: until then nothing is attested yet, and
    /// admitting nothing would be right but alarming, so `/readyz` says not ready.
    synced: AtomicBool,
}

impl Provenance {
    /// Provenance with no attestation seen yet.
    pub fn new(config: ProvenanceConfig) -> Provenance {
        Provenance {
            config,
            verified: ArcSwap::from_pointee(Trusted::default()),
            seen: Mutex::default(),
            synced: AtomicBool::new(false),
        }
    }

    /// Whether the first list of Attestations is in.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many trusted attestations there are.
    pub fn trusted(&self) -> usize {
        self.verified.load().list.len()
    }

    /// Take in an Attestation (added or changed). Verified once per content.
    pub fn upsert(&self, name: &str, doc: &Value, now: time::OffsetDateTime) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if self.take_in(&mut seen, name, doc, now) {
            self.rebuild(&seen);
        }
    }

    /// Verify `doc` into `seen` unless its envelope is unchanged; whether `seen` changed.
    fn take_in(&self, seen: &mut Seen, name: &str, doc: &Value, now: time::OffsetDateTime) -> bool {
        let content = doc
            .pointer("/spec/envelope")
            .map(Value::to_string)
            .unwrap_or_default();
        if seen.get(name).is_some_and(|(c, _, _)| *c == content) {
            return false;
        }
        let envelope = resource::envelope_of(doc).map_err(|e| Rejection::Malformed(e.to_string()));
        let result = envelope
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|env| verify::verify(env, &self.config.keys, &self.config.rules, now));
        let mut subjects = Vec::new();
        if let Err(e) = &result {
            tracing::warn!(target: "sealgate::provenance", attestation = name, reason = %e, "attestation not trusted");
            // Signed by a known key (the signature held): what it names can be said in denials.
            let signed = e.signed();
            if let (true, Ok(env)) = (signed, &envelope) {
                subjects = env
                    .payload_unverified()
                    .ok()
                    .and_then(|b| Statement::parse(&b).ok())
                    .map(|st| st.subject.into_iter().map(|s| s.name).collect())
                    .unwrap_or_default();
            }
        }
        seen.insert(name.to_string(), (content, result, subjects));
        true
    }

    /// Forget a deleted Attestation.
    pub fn remove(&self, name: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(name);
        self.rebuild(&seen);
    }

    /// A fresh list (a relist): replaces everything seen before; the index is built once.
    pub fn replace_all(&self, docs: &[(String, Value)], now: time::OffsetDateTime) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = Seen::new();
        for (name, doc) in docs {
            // An unchanged envelope keeps its verdict: a relist costs no signature check.
            if let Some(known) = seen.remove(name) {
                fresh.insert(name.clone(), known);
            }
            self.take_in(&mut fresh, name, doc, now);
        }
        *seen = fresh;
        self.rebuild(&seen);
        self.synced.store(true, Ordering::Release);
    }

    fn rebuild(&self, seen: &Seen) {
        self.verified.store(Arc::new(Trusted::new(seen)));
    }

    /// Why an Attestation is not trusted, if it is not.
    pub fn rejection(&self, name: &str) -> Option<Rejection> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(|(_, r, _)| r.as_ref().err().cloned())
    }

    /// The provenance decision for an admission request: `None` when it is not required here or
    /// a trusted attestation covers the object as it is, else why not.
    pub fn denial(&self, review: &Review, namespaces: &NamespaceLabels) -> Option<Denial> {
        let r = &review.info;
        let labelled =
            |labels: &Value| labels.get(REQUIRED_LABEL).and_then(Value::as_str) == Some("required");
        // A Namespace is judged by its own labels before the change: removing the label is a
        // change to an object that required provenance; adding it (turning protection on) is not.
        let namespace_object = r.is_namespace();
        let unknown =
            !namespace_object && !r.namespace.is_empty() && !namespaces.contains_key(&r.namespace);
        let required = self.config.required_everywhere
            || if namespace_object {
                labelled(&review.old_object()["metadata"]["labels"])
            } else {
                // A namespace whose labels could not be read (the watch has not delivered it and
                // reading it failed) closes: provenance is required there.
                unknown
                    || namespaces
                        .get(&r.namespace)
                        .and_then(|l| l.get(REQUIRED_LABEL))
                        .is_some_and(|v| v == "required")
            };
        // Deletes leave nothing to prove; subresources (status, scale) are not manifests; nor
        // is what controllers derive from manifests.
        if !required
            || !matches!(r.operation, Operation::Create | Operation::Update)
            || !r.sub_resource.is_empty()
            || is_cluster_controller(&r.user)
            || self.config.exempt_users.contains(&r.user)
        {
            return None;
        }
        let object = review.object();
        if !object.is_object() {
            return None;
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&r.name);
        // A Namespace is cluster-scoped, though the review names it as its own namespace.
        let subject_namespace = if namespace_object { "" } else { &r.namespace };
        let subject = subject_name(&r.group, &r.kind, subject_namespace, name);
        let trusted = self.verified.load();
        let covering = trusted
            .by_subject
            .get(&subject)
            .into_iter()
            .flatten()
            .map(|&(i, j)| {
                let v = &trusted.list[i];
                (v, &v.statement.predicate.manifests[j])
            });
        let rejection = match verify::admit_among(
            covering,
            &subject,
            object,
            &self.config.rules,
            time::OffsetDateTime::now_utc(),
        ) {
            Ok(_) => return None,
            Err(rejection) => rejection,
        };
        // Say which attestation named it and why it is refused.
        let refused = match &rejection {
            Rejection::NotCovered(_) => trusted.refused.get(&subject),
            _ => None,
        };
        Some(match refused {
            Some((attestation, why)) => Denial {
                subject,
                attestation: Some(attestation.clone()),
                rejection: why.clone(),
                unreadable_namespace: None,
            },
            None => Denial {
                subject,
                attestation: None,
                rejection,
                unreadable_namespace: unknown.then(|| r.namespace.clone()),
            },
        })
    }
}

/// Why provenance refuses an object: typed, so logs and metrics can name the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The object (`group/kind/namespace/name` as attestations name subjects).
    pub subject: String,
    /// The Attestation that names the object but is refused, when one does.
    pub attestation: Option<String>,
    /// Why: the attestation's refusal, or why no trusted one admits the object.
    pub rejection: Rejection,
    /// The object's namespace, when its labels could not be read (so provenance was required).
    pub unreadable_namespace: Option<String>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[sealgate-provenance] ")?;
        match (&self.attestation, &self.unreadable_namespace) {
            (Some(name), _) => write!(
                f,
                "{}: Attestation {name} covers it but is refused: {}",
                self.subject, self.rejection
            ),
            (None, Some(ns)) => write!(
                f,
                "{} (namespace {ns}'s labels could not be read, so provenance is required there)",
                self.rejection
            ),
            (None, None) => write!(f, "{}", self.rejection),
        }
    }
}

/// The Attestation resource, for the dynamic API.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sealgate.dev", "v1alpha1", resource::KIND),
        "attestations",
    )
}

/// Watch Attestations for as long as the process runs (errors back off and retry).
pub async fn watch(client: kube::Client, provenance: Arc<Provenance>) {
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client, &api_resource());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut pending: Option<Vec<(String, Value)>> = None;
    while let Some(event) = stream.next().await {
        let now = time::OffsetDateTime::now_utc();
        let named = |o: &DynamicObject| {
            let name = o.metadata.name.clone().unwrap_or_default();
            (name, serde_json::to_value(o).unwrap_or_default())
        };
        match event {
            Ok(watcher::Event::Init) => pending = Some(Vec::new()),
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(p) = pending.as_mut() {
                    p.push(named(&o));
                }
            }
            // Signature checks are CPU work: off the async reactor, which serves reviews and
            // /healthz (on a small node it has one thread).
            Ok(watcher::Event::InitDone) => {
                let docs = pending.take().unwrap_or_default();
                let count = docs.len();
                let p = provenance.clone();
                let _ = tokio::task::spawn_blocking(move || p.replace_all(&docs, now)).await;
                tracing::info!(target: "sealgate::provenance", attestations = count, trusted = provenance.trusted(), "attestations synced");
            }
            Ok(watcher::Event::Apply(o)) => {
                let (name, doc) = named(&o);
                let p = provenance.clone();
                let _ = tokio::task::spawn_blocking(move || p.upsert(&name, &doc, now)).await;
            }
            Ok(watcher::Event::Delete(o)) => provenance.remove(&named(&o).0),
            Err(e) => {
                tracing::warn!(target: "sealgate::provenance", error = %e, "attestation watch failed; retrying")
            }
        }
    }
}
