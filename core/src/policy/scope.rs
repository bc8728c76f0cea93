//! Whether a kind is namespaced, as Kubernetes knows it.
//!
//! At admission the API server says so (`request.namespace` is set exactly for namespaced
//! objects). Offline, in Git, a namespaced object often has no namespace yet (kustomize, Helm and
//! Flux set it at build or apply time), so the kind decides: the built-in kinds of Kubernetes, the
//! CustomResourceDefinitions found among the manifests, policies and inventory, and what the user
//! declares (`--namespaced-kinds`, `--cluster-kinds`). A kind none of these know is judged as
//! gator judges every object: namespaced exactly when it has a namespace.

use std::collections::HashMap;

use serde_json::Value;

/// A kind's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Objects live in a namespace (Deployment, Secret, …).
    Namespaced,
    /// Objects live outside namespaces (Namespace, ClusterRole, …).
    Cluster,
}

use Scope::{Cluster, Namespaced};

/// The built-in kinds of Kubernetes 1.37 as k8s-openapi 0.29 describes them (group, kind, scope);
/// subresources (`Scale`, `Eviction` of policy/v1, `TokenRequest`) and discovery documents are
/// left out. `webhook/tests/kind_scopes.rs` checks every entry against k8s-openapi's types.
pub const BUILTIN: &[(&str, &str, Scope)] = &[
    ("", "Binding", Namespaced),
    ("", "ComponentStatus", Cluster),
    ("", "ConfigMap", Namespaced),
    ("", "Endpoints", Namespaced),
    ("", "Event", Namespaced),
    ("", "LimitRange", Namespaced),
    ("", "Namespace", Cluster),
    ("", "Node", Cluster),
    ("", "PersistentVolume", Cluster),
    ("", "PersistentVolumeClaim", Namespaced),
    ("", "Pod", Namespaced),
    ("", "PodTemplate", Namespaced),
    ("", "ReplicationController", Namespaced),
    ("", "ResourceQuota", Namespaced),
    ("", "Secret", Namespaced),
    ("", "Service", Namespaced),
    ("", "ServiceAccount", Namespaced),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicy",
        Cluster,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
        Cluster,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        Cluster,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        Cluster,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        Cluster,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        Cluster,
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition", Cluster),
    ("apiregistration.k8s.io", "APIService", Cluster),
    ("apps", "ControllerRevision", Namespaced),
    ("apps", "DaemonSet", Namespaced),
    ("apps", "Deployment", Namespaced),
    ("apps", "ReplicaSet", Namespaced),
    ("apps", "StatefulSet", Namespaced),
    ("authentication.k8s.io", "SelfSubjectReview", Cluster),
    ("authentication.k8s.io", "TokenReview", Cluster),
    (
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        Namespaced,
    ),
    ("authorization.k8s.io", "SelfSubjectAccessReview", Cluster),
    ("authorization.k8s.io", "SelfSubjectRulesReview", Cluster),
    ("authorization.k8s.io", "SubjectAccessReview", Cluster),
    ("autoscaling", "HorizontalPodAutoscaler", Namespaced),
    ("batch", "CronJob", Namespaced),
    ("batch", "Job", Namespaced),
    ("certificates.k8s.io", "CertificateSigningRequest", Cluster),
    ("certificates.k8s.io", "ClusterTrustBundle", Cluster),
    ("certificates.k8s.io", "PodCertificateRequest", Namespaced),
    ("coordination.k8s.io", "Lease", Namespaced),
    ("coordination.k8s.io", "LeaseCandidate", Namespaced),
    ("discovery.k8s.io", "EndpointSlice", Namespaced),
    ("events.k8s.io", "Event", Namespaced),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema", Cluster),
    (
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        Cluster,
    ),
    ("internal.apiserver.k8s.io", "StorageVersion", Cluster),
    ("lifecycle.k8s.io", "Eviction", Namespaced),
    ("lifecycle.k8s.io", "EvictionRequest", Namespaced),
    ("networking.k8s.io", "IPAddress", Cluster),
    ("networking.k8s.io", "Ingress", Namespaced),
    ("networking.k8s.io", "IngressClass", Cluster),
    ("networking.k8s.io", "NetworkPolicy", Namespaced),
    ("networking.k8s.io", "ServiceCIDR", Cluster),
    ("node.k8s.io", "RuntimeClass", Cluster),
    ("policy", "PodDisruptionBudget", Namespaced),
    ("rbac.authorization.k8s.io", "ClusterRole", Cluster),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", Cluster),
    ("rbac.authorization.k8s.io", "Role", Namespaced),
    ("rbac.authorization.k8s.io", "RoleBinding", Namespaced),
    ("resource.k8s.io", "DeviceClass", Cluster),
    ("resource.k8s.io", "DeviceTaintRule", Cluster),
    ("resource.k8s.io", "ResourceClaim", Namespaced),
    ("resource.k8s.io", "ResourceClaimTemplate", Namespaced),
    ("resource.k8s.io", "ResourcePoolStatusRequest", Cluster),
    ("resource.k8s.io", "ResourceSlice", Cluster),
    ("scheduling.k8s.io", "CompositePodGroup", Namespaced),
    ("scheduling.k8s.io", "PodGroup", Namespaced),
    ("scheduling.k8s.io", "PriorityClass", Cluster),
    ("scheduling.k8s.io", "Workload", Namespaced),
    ("storage.k8s.io", "CSIDriver", Cluster),
    ("storage.k8s.io", "CSINode", Cluster),
    ("storage.k8s.io", "CSIStorageCapacity", Namespaced),
    ("storage.k8s.io", "StorageClass", Cluster),
    ("storage.k8s.io", "VolumeAttachment", Cluster),
    ("storage.k8s.io", "VolumeAttributesClass", Cluster),
    (
        "storagemigration.k8s.io",
        "StorageVersionMigration",
        Cluster,
    ),
];

/// Custom resources common in GitOps repositories, so that a repository linted without their
/// CRDs is still judged right. A CRD in the tree or a flag overrides them.
pub const WELL_KNOWN: &[(&str, &str, Scope)] = &[
    ("argoproj.io", "AppProject", Namespaced),
    ("argoproj.io", "Application", Namespaced),
    ("argoproj.io", "ApplicationSet", Namespaced),
    ("bitnami.com", "SealedSecret", Namespaced),
    ("cert-manager.io", "Certificate", Namespaced),
    ("cert-manager.io", "ClusterIssuer", Cluster),
    ("cert-manager.io", "Issuer", Namespaced),
    ("helm.toolkit.fluxcd.io", "HelmRelease", Namespaced),
    ("kustomize.toolkit.fluxcd.io", "Kustomization", Namespaced),
    ("kyverno.io", "ClusterPolicy", Cluster),
    ("kyverno.io", "Policy", Namespaced),
    ("monitoring.coreos.com", "PodMonitor", Namespaced),
    ("monitoring.coreos.com", "PrometheusRule", Namespaced),
    ("monitoring.coreos.com", "ServiceMonitor", Namespaced),
    ("notification.toolkit.fluxcd.io", "Alert", Namespaced),
    ("notification.toolkit.fluxcd.io", "Provider", Namespaced),
    ("notification.toolkit.fluxcd.io", "Receiver", Namespaced),
    ("sealgate.dev", "SealedSecret", Namespaced),
    ("snapshot.storage.k8s.io", "VolumeSnapshot", Namespaced),
    ("snapshot.storage.k8s.io", "VolumeSnapshotClass", Cluster),
    ("snapshot.storage.k8s.io", "VolumeSnapshotContent", Cluster),
    ("source.toolkit.fluxcd.io", "Bucket", Namespaced),
    ("source.toolkit.fluxcd.io", "GitRepository", Namespaced),
    ("source.toolkit.fluxcd.io", "HelmChart", Namespaced),
    ("source.toolkit.fluxcd.io", "HelmRepository", Namespaced),
    ("source.toolkit.fluxcd.io", "OCIRepository", Namespaced),
    ("templates.gatekeeper.sh", "ConstraintTemplate", Cluster),
];

/// The scopes known beyond the built-in tables: declarations, then CRDs.
#[derive(Debug, Clone, Default)]
pub struct KindScopes {
    /// (group, kind) → scope, by flag; group `*` for a declaration without a group.
    declared: HashMap<(String, String), Scope>,
    /// (group, kind) → scope, from CustomResourceDefinitions.
    crds: HashMap<(String, String), Scope>,
    /// (group, kind) → resource (`spec.names.plural`), from CustomResourceDefinitions.
    plurals: HashMap<(String, String), String>,
}

/// A `--namespaced-kinds` / `--cluster-kinds` entry that is not `[group/]Kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a kind: write Kind (any group) or group/Kind, e.g. Widget or example.com/Widget"
)]
pub struct BadKind(pub String);

impl KindScopes {
    /// The scope of `group`/`kind`, or `None` when nothing says.
    /// Runs once per review: allocates only when kinds were declared or learnt from CRDs.
    pub fn scope(&self, group: &str, kind: &str) -> Option<Scope> {
        if !(self.declared.is_empty() && self.crds.is_empty()) {
            let key = (group.to_string(), kind.to_string());
            let any_group = ("*".to_string(), kind.to_string());
            if let Some(s) = self
                .declared
                .get(&key)
                .or_else(|| self.declared.get(&any_group))
                .or_else(|| self.crds.get(&key))
            {
                return Some(*s);
            }
        }
        [BUILTIN, WELL_KNOWN].iter().find_map(|table| {
            table
                .binary_search_by(|(g, k, _)| (*g, *k).cmp(&(group, kind)))
                .ok()
                .map(|i| table[i].2)
        })
    }

    /// The resource (plural) a kind is served as, for a ValidatingAdmissionPolicy's
    /// `resourceRules`: a CRD's `spec.names.plural`, else as Kubernetes' own kinds are named
    /// (apimachinery's `UnsafeGuessKindToResource`, which names every built-in kind right but
    /// Endpoints).
    pub fn resource(&self, group: &str, kind: &str) -> String {
        if let Some(p) = self.plurals.get(&(group.to_string(), kind.to_string())) {
            return p.clone();
        }
        let lower = kind.to_ascii_lowercase();
        if lower.ends_with("endpoints") {
            return lower;
        }
        if let Some(stem) = lower.strip_suffix('y') {
            return format!("{stem}ies");
        }
        if lower.ends_with('s') {
            return format!("{lower}es");
        }
        format!("{lower}s")
    }

    /// Declare kinds from a flag: `Kind` (any group) or `group/Kind`; a comma-separated list.
    pub fn declare(&mut self, list: &str, scope: Scope) -> Result<(), BadKind> {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (group, kind) = match entry.rsplit_once('/') {
                Some((g, k)) => (g, k),
                None => ("*", entry),
            };
            let valid_kind = kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && kind.chars().all(|c| c.is_ascii_alphanumeric());
            if !valid_kind || group.is_empty() || group.contains('/') {
                return Err(BadKind(entry.to_string()));
            }
            self.declared
                .insert((group.to_string(), kind.to_string()), scope);
        }
        Ok(())
    }

    /// Learn the scope of every kind a CustomResourceDefinition among `objects` defines (a
    /// declaration by flag still wins).
    pub fn add_crds<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        for o in objects {
            let is_crd = o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
                && o.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.starts_with("apiextensions.k8s.io/"));
            if !is_crd {
                continue;
            }
            let s = |p: &str| o.pointer(p).and_then(Value::as_str);
            let (Some(group), Some(kind), Some(scope)) =
                (s("/spec/group"), s("/spec/names/kind"), s("/spec/scope"))
            else {
                continue;
            };
            if let Some(plural) = s("/spec/names/plural") {
                self.plurals
                    .insert((group.to_string(), kind.to_string()), plural.to_string());
            }
            let scope = match scope {
                "Namespaced" => Namespaced,
                "Cluster" => Cluster,
                _ => continue,
            };
            self.crds
                .insert((group.to_string(), kind.to_string()), scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_well_known_crd_and_declared_kinds() {
        let mut s = KindScopes::default();
        assert_eq!(s.scope("apps", "Deployment"), Some(Namespaced));
        assert_eq!(s.scope("", "Namespace"), Some(Cluster));
        assert_eq!(
            s.scope("rbac.authorization.k8s.io", "ClusterRole"),
            Some(Cluster)
        );
        assert_eq!(
            s.scope("kustomize.toolkit.fluxcd.io", "Kustomization"),
            Some(Namespaced)
        );
        assert_eq!(s.scope("example.com", "Widget"), None);
        assert_eq!(
            s.scope("apps", "Pod"),
            None,
            "the group is part of the kind"
        );

        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"}}});
        let cluster_crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Gadget"}}});
        s.add_crds([&crd, &cluster_crd]);
        assert_eq!(s.scope("example.com", "Widget"), Some(Namespaced));
        assert_eq!(s.scope("example.com", "Gadget"), Some(Cluster));

        s.declare("Gizmo, other.io/Widget", Cluster).unwrap();
        assert_eq!(s.scope("any.group", "Gizmo"), Some(Cluster));
        assert_eq!(s.scope("other.io", "Widget"), Some(Cluster));
        // A flag wins over a CRD, whichever comes first.
        s.declare("example.com/Gadget", Namespaced).unwrap();
        s.add_crds([&cluster_crd]);
        assert_eq!(s.scope("example.com", "Gadget"), Some(Namespaced));

        for bad in ["example.com/", "/Widget", "a/b/Widget", "wid get", "9Lives"] {
            let e = s.declare(bad, Namespaced).unwrap_err();
            assert!(e.to_string().contains("group/Kind"), "{e}");
        }
    }
}

#[cfg(test)]
mod sorted {
    use super::*;

    /// `KindScopes::scope` binary-searches the tables.
    #[test]
    fn the_tables_are_sorted_by_group_and_kind() {
        for table in [BUILTIN, WELL_KNOWN] {
            assert!(
                table
                    .windows(2)
                    .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
            );
        }
    }
}
