//! Gatekeeper documents the tests share.

/// Gatekeeper's documented ExpansionTemplate for workloads: DaemonSets, Deployments, ReplicaSets
/// and StatefulSets are also judged as the Pod of their `spec.template`.
pub const EXPAND_WORKLOADS: &str = "apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata:
  name: expand-deployments
spec:
  applyTo:
    - groups: [apps]
      kinds: [DaemonSet, Deployment, ReplicaSet, StatefulSet]
      versions: [v1]
  templateSource: spec.template
  generatedGVK:
    kind: Pod
    group: ''
    version: v1
";
