//! Gatekeeper documents the tests share.

/// Gatekeeper's documented ExpansionTemplate for workloads: DaemonSets, Deployments, ReplicaSets
/// and StatefulSets are also judged as the Pod of their `spec.template`.
pub const EXPAND_WORKLOADS: &str = include_str!("../data/expand-workloads.yaml");

/// CronJobs are also judged as the Job of their `spec.jobTemplate`, as warnings.
pub const EXPAND_CRONJOBS: &str = include_str!("../data/expand-cronjobs.yaml");

/// Jobs are also judged as the Pod of their `spec.template` (with the two above: CronJob → Job
/// → Pod).
pub const EXPAND_JOBS: &str = include_str!("../data/expand-jobs.yaml");
