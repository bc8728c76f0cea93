//! What kube-apiserver adds when it stores an object, and what it and the GitOps agent own: the
//! fields an attested manifest need not declare ([`super::compare`]). The table is proven in the
//! real-cluster tier (`tests/real_cluster/provenance.rs`): every manifest of the example
//! repository and of a table of real-world ones is dry-run through a real API server, and the
//! stored object must match its manifest exactly, with these defaults and nothing else.
//!
//! Patterns are path segments separated by spaces (label keys hold dots and slashes); `*`
//! matches any key or list item. Pod spec defaults are written once, relative to the pod spec,
//! and apply under every workload's pod template.

use serde_json::Value;

/// What a defaulted field may hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Default {
    /// This string.
    Str(&'static str),
    /// This integer.
    Int(i64),
    /// This boolean.
    Bool(bool),
    /// One of these strings (`imagePullPolicy` depends on the image's tag).
    OneOf(&'static [&'static str]),
    /// Whatever the server allocated (a Service's cluster IP, a Job's selector).
    Allocated,
    /// The declared value of this sibling field (a Service port's `targetPort` is its `port`).
    SameAs(&'static str),
}

impl Default {
    /// Whether `value` is what the server would have added; `declared` is the declared object
    /// holding the field.
    pub(super) fn allows(&self, value: &Value, declared: Option<&Value>) -> bool {
        match *self {
            Default::Str(want) => value.as_str() == Some(want),
            Default::Int(want) => value.as_i64() == Some(want),
            Default::Bool(want) => value.as_bool() == Some(want),
            Default::OneOf(options) => value.as_str().is_some_and(|s| options.contains(&s)),
            Default::Allocated => true,
            Default::SameAs(sibling) => declared.and_then(|d| d.get(sibling)) == Some(value),
        }
    }
}

/// `(kinds, pattern, default)`; kind `Pod*` entries are relative to a pod spec.
type Entry = (&'static [&'static str], &'static str, Default);

const POD: &[&str] = &["Pod*"];
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// Pod spec defaults (`SetDefaults_PodSpec`, `SetDefaults_Container`, volumes and probes).
const POD_SPEC: &[Entry] = &[
    (POD, "restartPolicy", Default::Str("Always")),
    (POD, "terminationGracePeriodSeconds", Default::Int(30)),
    (POD, "dnsPolicy", Default::Str("ClusterFirst")),
    (POD, "schedulerName", Default::Str("default-scheduler")),
    (POD, "enableServiceLinks", Default::Bool(true)),
    (POD, "serviceAccountName", Default::Str("default")),
    (POD, "serviceAccount", Default::SameAs("serviceAccountName")),
    (POD, "priority", Default::Int(0)),
    (
        POD,
        "preemptionPolicy",
        Default::Str("PreemptLowerPriority"),
    ),
    (
        POD,
        "CONTAINERS * terminationMessagePath",
        Default::Str("/dev/termination-log"),
    ),
    (
        POD,
        "CONTAINERS * terminationMessagePolicy",
        Default::Str("File"),
    ),
    (
        POD,
        "CONTAINERS * imagePullPolicy",
        Default::OneOf(&["Always", "IfNotPresent"]),
    ),
    (POD, "CONTAINERS * ports * protocol", Default::Str("TCP")),
    (
        POD,
        "CONTAINERS * env * valueFrom fieldRef apiVersion",
        Default::Str("v1"),
    ),
    (POD, "CONTAINERS * PROBE timeoutSeconds", Default::Int(1)),
    (POD, "CONTAINERS * PROBE periodSeconds", Default::Int(10)),
    (POD, "CONTAINERS * PROBE successThreshold", Default::Int(1)),
    (POD, "CONTAINERS * PROBE failureThreshold", Default::Int(3)),
    (
        POD,
        "CONTAINERS * PROBE httpGet scheme",
        Default::Str("HTTP"),
    ),
    (POD, "volumes * configMap defaultMode", Default::Int(420)),
    (POD, "volumes * secret defaultMode", Default::Int(420)),
    (POD, "volumes * projected defaultMode", Default::Int(420)),
    (POD, "volumes * downwardAPI defaultMode", Default::Int(420)),
    (
        POD,
        "volumes * downwardAPI items * fieldRef apiVersion",
        Default::Str("v1"),
    ),
    (POD, "volumes * hostPath type", Default::Str("")),
];

const BY_KIND: &[Entry] = &[
    // apps/v1
    (
        &["Deployment", "StatefulSet", "ReplicaSet"],
        "spec replicas",
        Default::Int(1),
    ),
    (
        &["Deployment", "StatefulSet", "DaemonSet"],
        "spec revisionHistoryLimit",
        Default::Int(10),
    ),
    (
        &["Deployment"],
        "spec progressDeadlineSeconds",
        Default::Int(600),
    ),
    (
        &["Deployment"],
        "spec strategy type",
        Default::Str("RollingUpdate"),
    ),
    (
        &["Deployment"],
        "spec strategy rollingUpdate maxSurge",
        Default::Str("25%"),
    ),
    (
        &["Deployment"],
        "spec strategy rollingUpdate maxUnavailable",
        Default::Str("25%"),
    ),
    (
        &["StatefulSet"],
        "spec podManagementPolicy",
        Default::Str("OrderedReady"),
    ),
    (
        &["StatefulSet", "DaemonSet"],
        "spec updateStrategy type",
        Default::Str("RollingUpdate"),
    ),
    (
        &["StatefulSet"],
        "spec updateStrategy rollingUpdate partition",
        Default::Int(0),
    ),
    (
        &["StatefulSet"],
        "spec persistentVolumeClaimRetentionPolicy whenDeleted",
        Default::Str("Retain"),
    ),
    (
        &["StatefulSet"],
        "spec persistentVolumeClaimRetentionPolicy whenScaled",
        Default::Str("Retain"),
    ),
    (
        &["StatefulSet"],
        "spec volumeClaimTemplates * apiVersion",
        Default::Str("v1"),
    ),
    (
        &["StatefulSet"],
        "spec volumeClaimTemplates * kind",
        Default::Str("PersistentVolumeClaim"),
    ),
    (
        &["StatefulSet"],
        "spec volumeClaimTemplates * spec volumeMode",
        Default::Str("Filesystem"),
    ),
    (
        &["StatefulSet"],
        "spec volumeClaimTemplates * status phase",
        Default::Str("Pending"),
    ),
    (
        &["StatefulSet"],
        "spec updateStrategy rollingUpdate maxUnavailable",
        Default::Int(1),
    ),
    (
        &["DaemonSet"],
        "spec updateStrategy rollingUpdate maxUnavailable",
        Default::Int(1),
    ),
    (
        &["DaemonSet"],
        "metadata annotations deprecated.daemonset.template.generation",
        Default::Allocated,
    ),
    (
        &["DaemonSet"],
        "spec updateStrategy rollingUpdate maxSurge",
        Default::Int(0),
    ),
    // batch/v1
    (&["Job"], "spec backoffLimit", Default::Int(6)),
    (&["Job"], "spec completions", Default::Int(1)),
    (&["Job"], "spec parallelism", Default::Int(1)),
    (&["Job"], "spec completionMode", Default::Str("NonIndexed")),
    (&["Job"], "spec suspend", Default::Bool(false)),
    (&["Job"], "spec manualSelector", Default::Bool(false)),
    (
        &["Job"],
        "spec podReplacementPolicy",
        Default::Str("TerminatingOrFailed"),
    ),
    (&["Job"], "spec selector", Default::Allocated),
    (
        &["Job"],
        "metadata labels controller-uid",
        Default::Allocated,
    ),
    (
        &["Job"],
        "metadata labels batch.kubernetes.io/controller-uid",
        Default::Allocated,
    ),
    (&["Job"], "metadata labels job-name", Default::Allocated),
    (
        &["Job"],
        "metadata labels batch.kubernetes.io/job-name",
        Default::Allocated,
    ),
    (
        &["Job"],
        "spec template metadata labels controller-uid",
        Default::Allocated,
    ),
    (
        &["Job"],
        "spec template metadata labels batch.kubernetes.io/controller-uid",
        Default::Allocated,
    ),
    (
        &["Job"],
        "spec template metadata labels job-name",
        Default::Allocated,
    ),
    (
        &["Job"],
        "spec template metadata labels batch.kubernetes.io/job-name",
        Default::Allocated,
    ),
    (
        &["CronJob"],
        "spec concurrencyPolicy",
        Default::Str("Allow"),
    ),
    (&["CronJob"], "spec suspend", Default::Bool(false)),
    (
        &["CronJob"],
        "spec successfulJobsHistoryLimit",
        Default::Int(3),
    ),
    (&["CronJob"], "spec failedJobsHistoryLimit", Default::Int(1)),
    // v1 Service
    (&["Service"], "spec type", Default::Str("ClusterIP")),
    (&["Service"], "spec sessionAffinity", Default::Str("None")),
    (&["Service"], "spec clusterIP", Default::Allocated),
    (&["Service"], "spec clusterIPs", Default::Allocated),
    (&["Service"], "spec ipFamilies", Default::Allocated),
    (
        &["Service"],
        "spec ipFamilyPolicy",
        Default::Str("SingleStack"),
    ),
    (
        &["Service"],
        "spec internalTrafficPolicy",
        Default::Str("Cluster"),
    ),
    (&["Service"], "spec ports * protocol", Default::Str("TCP")),
    (
        &["Service"],
        "spec ports * targetPort",
        Default::SameAs("port"),
    ),
    (&["Service"], "spec ports * nodePort", Default::Allocated),
    (
        &["Service"],
        "spec externalTrafficPolicy",
        Default::Str("Cluster"),
    ),
    (
        &["Service"],
        "spec allocateLoadBalancerNodePorts",
        Default::Bool(true),
    ),
    // v1 others
    (
        &["Namespace"],
        "spec finalizers *",
        Default::Str("kubernetes"),
    ),
    (
        &["Namespace"],
        "metadata labels kubernetes.io/metadata.name",
        Default::Allocated,
    ),
    (&["Secret"], "type", Default::Str("Opaque")),
    (
        &["PersistentVolumeClaim"],
        "spec volumeMode",
        Default::Str("Filesystem"),
    ),
    (&["NetworkPolicy"], "spec policyTypes", Default::Allocated),
    (
        &["NetworkPolicy"],
        "spec ingress * ports * protocol",
        Default::Str("TCP"),
    ),
    (
        &["NetworkPolicy"],
        "spec egress * ports * protocol",
        Default::Str("TCP"),
    ),
    (
        &["RoleBinding", "ClusterRoleBinding"],
        "subjects * apiGroup",
        Default::OneOf(&["rbac.authorization.k8s.io", ""]),
    ),
];

/// Where each kind keeps its pod spec.
fn pod_spec_prefix(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

/// `path` relative to the kind's pod spec, if it is under it.
pub(super) fn pod_spec_relative<'p>(kind: &str, path: &'p [String]) -> Option<&'p [String]> {
    let prefix = pod_spec_prefix(kind)?;
    (path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b))
        .then(|| &path[prefix.len()..])
}

/// Called for every undeclared field of every admitted object: no allocation.
fn pattern_matches(pattern: &str, path: &[String]) -> bool {
    pattern.split(' ').count() == path.len()
        && pattern.split(' ').zip(path).all(|(s, p)| match s {
            "*" => true,
            "CONTAINERS" => matches!(
                p.as_str(),
                "containers" | "initContainers" | "ephemeralContainers"
            ),
            "PROBE" => PROBES.contains(&p.as_str()),
            s => s == p,
        })
}

/// The default the API server gives `path` in an object of `kind`, if it gives one.
pub(super) fn lookup(kind: &str, path: &[String]) -> Option<Default> {
    if let Some(rel) = pod_spec_relative(kind, path)
        && let Some((_, _, d)) = POD_SPEC.iter().find(|(_, p, _)| pattern_matches(p, rel))
    {
        return Some(*d);
    }
    // A pod template's metadata: older servers wrote `creationTimestamp: null`.
    if path.len() >= 2
        && path[path.len() - 1] == "creationTimestamp"
        && path[path.len() - 2] == "metadata"
    {
        return Some(Default::Allocated);
    }
    BY_KIND
        .iter()
        .find(|(kinds, p, _)| kinds.contains(&kind) && pattern_matches(p, path))
        .map(|(_, _, d)| *d)
}

/// Metadata the API server writes.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
];

/// Label and annotation keys the GitOps agents, Helm and Kubernetes' controllers write.
const OWNED_KEY_PREFIXES: &[&str] = &[
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "source.toolkit.fluxcd.io/",
    "argocd.argoproj.io/",
    "meta.helm.sh/",
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// Whether `path` is owned by the server, a controller or the agent, whatever the manifest
/// says: `status`, server-written metadata, the agents' labels and annotations.
pub(super) fn owned(path: &[String]) -> bool {
    match path {
        [first, ..] if first == "status" => true,
        [m, field] if m == "metadata" => SERVER_METADATA.contains(&field.as_str()),
        [m, map, key, ..] if m == "metadata" && (map == "labels" || map == "annotations") => {
            OWNED_KEY_PREFIXES.iter().any(|p| key.starts_with(p))
                // Argo CD's default tracking label, and Helm's.
                || (map == "labels"
                    && (key == "app.kubernetes.io/instance" || key == "app.kubernetes.io/managed-by"))
        }
        _ => false,
    }
}

/// Whether values at `path` are resource quantities (compared by value: `0.5` is `500m`).
pub(super) fn is_quantity(path: &[String]) -> bool {
    let has = |s: &str| path.iter().any(|p| p == s);
    has("resources") && (has("limits") || has("requests"))
        || has("hard")
        || path
            .last()
            .is_some_and(|l| l == "sizeLimit" || l == "capacity")
        || (path.first().is_some_and(|p| p == "spec") && has("limits") && !has("containers"))
}
