//! Gatekeeper documents the tests share.

/// Gatekeeper's documented ExpansionTemplate for workloads: DaemonSets, Deployments, ReplicaSets
/// and StatefulSets are also judged as the Pod of their `spec.template`.
pub const EXPAND_WORKLOADS: &str = include_str!("../data/expand-workloads.yaml");

/// CronJobs are also judged as the Job of their `spec.jobTemplate`, as warnings.
pub const EXPAND_CRONJOBS: &str = include_str!("../data/expand-cronjobs.yaml");

/// Jobs are also judged as the Pod of their `spec.template` (with the two above: CronJob → Job
/// → Pod).
pub const EXPAND_JOBS: &str = include_str!("../data/expand-jobs.yaml");

/// The Gatekeeper library corpus's `library/` folder (canonical: gator's `DIR/...` does not take
/// `..`), or where it should be and how to get it.
pub fn library_dir() -> Result<std::path::PathBuf, String> {
    let root = crate::process::repo().join("../shared/corpora/gatekeeper-library");
    match root.join("library").canonicalize() {
        Ok(dir) if dir.is_dir() => Ok(dir),
        _ => Err(format!(
            "the Gatekeeper library corpus is not at {}: git clone https://github.com/open-policy-agent/gatekeeper-library there and check out 5c441fb645f257b2c428fe9aea22da24a94b5bab (see SOURCE.md)",
            root.display()
        )),
    }
}

/// The library's `library/` folder, or `None` after saying it is missing (a skip, which
/// `.ci/run` makes a failure).
pub fn library() -> Option<std::path::PathBuf> {
    library_dir().map_err(|why| crate::peer::missing(&why)).ok()
}
