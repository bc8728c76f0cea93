//! Prometheus metrics, served on their own plain-HTTP port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sealgate_core::policy::Operation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// allowed, denied, exempt, timeout, bad_request
    pub decision: String,
    pub operation: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// allowed, denied, exempt, timeout, overloaded, bad_request
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProvenanceLabels {
    /// Why provenance refused an object (`Rejection::reason`): not_covered, changed, revoked, ….
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// policy or tls
    pub what: String,
    /// ok or error
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConstraintLabels {
    pub constraint: String,
    pub action: String,
}

/// The `operation` label: admission's four operations, else `other`. Label values come from
/// request bodies, so each is clamped to a known set: a flood of made-up kinds must not add a
/// series each (20,000 random kinds once made 20,011 series).
pub fn operation_label(operation: Operation) -> &'static str {
    match operation {
        Operation::Unspecified | Operation::Other => "other",
        known => known.as_str(),
    }
}

/// The `kind` label: Kubernetes' built-in kinds and the GitOps kinds sealgate's policies know,
/// else `other`.
pub fn kind_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        // core/v1
        "Binding",
        "ConfigMap",
        "Endpoints",
        "Event",
        "LimitRange",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "ResourceQuota",
        "Secret",
        "Service",
        "ServiceAccount",
        // apps, batch, autoscaling, policy, networking, storage, scheduling, coordination
        "ControllerRevision",
        "DaemonSet",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "CronJob",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
        "IngressClass",
        "NetworkPolicy",
        "CSIDriver",
        "CSINode",
        "StorageClass",
        "VolumeAttachment",
        "PriorityClass",
        "RuntimeClass",
        "Lease",
        "EndpointSlice",
        // RBAC, admission, API extension
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CustomResourceDefinition",
        "APIService",
        "CertificateSigningRequest",
        // sealgate, Flux, Argo CD, Gatekeeper
        "SealedSecret",
        "Attestation",
        "GitRepository",
        "OCIRepository",
        "HelmRepository",
        "Bucket",
        "Kustomization",
        "HelmRelease",
        "Application",
        "ApplicationSet",
        "AppProject",
        "ConstraintTemplate",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == kind)
        .unwrap_or("other")
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer, by outcome: a denial's latency apart from an admission's.
    pub duration: Family<OutcomeLabels, Histogram>,
    pub violations: Family<ConstraintLabels, Counter>,
    pub evaluation_errors: Counter,
    pub break_glass: Counter,
    /// Objects provenance refused (denied, or admitted under break-glass), by reason.
    pub provenance_denials: Family<ProvenanceLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub constraints: Gauge,
    pub in_flight: Gauge,
    /// Reviews waiting for an evaluation thread, as the last review found them: a saturation
    /// signal (raise --concurrency, or add replicas).
    pub queued: Gauge,
    /// 1 once the Namespace watch has listed (see `/readyz`), read at each scrape.
    pub namespaces_synced: Gauge,
    /// 1 once every synced kind is listed and a bundle was built with it.
    pub inventory_synced: Gauge,
    /// Objects replicated into `data.inventory`.
    pub inventory_objects: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sealgate_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        // Up to 10 s: webhook latency stories are about the slow tail (Gatekeeper #4036).
        let duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        let violations = Family::<ConstraintLabels, Counter>::default();
        let evaluation_errors = Counter::default();
        let break_glass = Counter::default();
        let provenance_denials = Family::<ProvenanceLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let constraints = Gauge::default();
        let in_flight = Gauge::default();
        let queued = Gauge::default();
        let namespaces_synced = Gauge::default();
        let inventory_synced = Gauge::default();
        let inventory_objects = Gauge::default();
        registry.register(
            "requests",
            "Admission reviews by decision, operation and kind",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer an admission review, by outcome",
            duration.clone(),
        );
        registry.register(
            "violations",
            "Violations by constraint and enforcement action",
            violations.clone(),
        );
        registry.register(
            "evaluation_errors",
            "Policy evaluations that failed (reported as violations)",
            evaluation_errors.clone(),
        );
        registry.register(
            "break_glass",
            "Admissions through the break-glass path",
            break_glass.clone(),
        );
        registry.register(
            "provenance_denials",
            "Objects no trusted attestation admits (denied, or admitted under break-glass), by reason",
            provenance_denials.clone(),
        );
        registry.register(
            "reloads",
            "Policy bundle and TLS certificate reloads",
            reloads.clone(),
        );
        registry.register(
            "constraints",
            "Constraints in the active policy bundle",
            constraints.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Admission reviews being evaluated",
            in_flight.clone(),
        );
        registry.register(
            "queued_requests",
            "Admission reviews waiting for an evaluation thread, when the last one arrived",
            queued.clone(),
        );
        registry.register(
            "namespaces_synced",
            "1 once the Namespace watch has listed the cluster's Namespaces",
            namespaces_synced.clone(),
        );
        registry.register(
            "inventory_synced",
            "1 once every kind the policies sync is listed and in the bundle",
            inventory_synced.clone(),
        );
        registry.register(
            "inventory_objects",
            "Objects replicated into data.inventory",
            inventory_objects.clone(),
        );
        Metrics {
            registry,
            namespaces_synced,
            inventory_synced,
            inventory_objects,
            requests,
            duration,
            violations,
            evaluation_errors,
            break_glass,
            provenance_denials,
            reloads,
            constraints,
            in_flight,
            queued,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reload(&self, what: &str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what: what.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }
}
