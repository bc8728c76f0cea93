//! Hot reload of the policy bundle and the TLS certificate, by polling content fingerprints.
//!
//! Kubernetes updates ConfigMap and Secret volumes by swapping a `..data` symlink, which file
//! watchers see unreliably; reading the files every few seconds and comparing a hash is simple
//! and always right. A bundle that fails to compile is rejected and the previous one keeps
//! serving (logged, counted, shown by `/readyz`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealgate_core::policy::{Bundle, BundleErrors, NamespaceLabels, Sources};

use crate::state::AppState;

/// Build the bundle from its sources with the current inventory (empty unless a sync
/// configuration is watched), the one way the webhook and audit assemble it.
pub fn build(sources: &Sources, inventory: Vec<serde_json::Value>) -> Result<Bundle, BundleErrors> {
    sources.build(inventory)
}

/// SHA-256 over the paths and contents of every file under `paths` (symlinks followed).
pub fn fingerprint(paths: &[PathBuf]) -> Vec<u8> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files);
    }
    files.sort();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for f in files {
        ctx.update(f.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(&std::fs::read(&f).unwrap_or_default());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref().to_vec()
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let name = e.file_name();
            // `..data` and friends are the volume's internals; the visible names point into them.
            if !name.to_string_lossy().starts_with("..") {
                collect(&e.path(), out);
            }
        }
    } else if p.exists() {
        out.push(p.to_path_buf());
    }
}

/// Poll the policy directories; rebuild and swap the bundle when they change.
pub async fn watch_policies(state: Arc<AppState>, sources: Sources, every: Duration) {
    let mut last = fingerprint(&sources.policies);
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&sources.policies);
        if now == last {
            continue;
        }
        last = now;
        reload_policies(&state, &sources).await;
    }
}

/// The reloader as the inventory sees it: the kinds the bundle in force syncs, and a rebuild.
pub struct Rebuilder {
    state: Arc<AppState>,
    sources: Sources,
}

impl Rebuilder {
    pub fn new(state: Arc<AppState>, sources: Sources) -> Rebuilder {
        Rebuilder { state, sources }
    }
}

impl crate::inventory::Consumer for Rebuilder {
    fn wanted(&self) -> std::collections::BTreeSet<sealgate_core::policy::SyncKind> {
        self.state
            .bundle
            .load()
            .sync_kinds()
            .iter()
            .cloned()
            .collect()
    }

    fn rebuild(&self) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(reload_policies(&self.state, &self.sources))
    }
}

/// Rebuild the bundle now, with the current inventory (also used by tests).
pub async fn reload_policies(state: &AppState, sources: &Sources) -> bool {
    let s = sources.clone();
    let inventory = state.inventory.snapshot();
    let built =
        tokio::task::spawn_blocking(move || build(&s, inventory).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    match built {
        Ok(bundle) => {
            tracing::info!(target: "sealgate::reload", constraints = bundle.constraints().len(), "policy bundle reloaded");
            state.set_bundle(bundle);
            state.metrics.reload("policy", true);
            true
        }
        Err(e) => {
            tracing::error!(target: "sealgate::reload", error = %e, "policy bundle rejected; the previous bundle keeps serving");
            state.reload_failed(e);
            state.metrics.reload("policy", false);
            false
        }
    }
}

/// Poll the certificate and key; reload the TLS configuration when both are valid.
pub async fn watch_tls(
    state: Arc<AppState>,
    tls: axum_server::tls_rustls::RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
) {
    let paths = [cert.clone(), key.clone()];
    let mut last = fingerprint(&paths);
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&paths);
        if now == last {
            continue;
        }
        match tls.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                last = now;
                tracing::info!(target: "sealgate::reload", "TLS certificate reloaded");
                state.metrics.reload("tls", true);
            }
            // Half-written files (the key updated before the certificate): try again next time.
            Err(e) => {
                tracing::warn!(target: "sealgate::reload", error = %e, "TLS certificate not reloaded; keeping the current one");
                state.metrics.reload("tls", false);
            }
        }
    }
}

/// Namespace labels from Namespace objects in files (until the in-cluster Namespace cache lands).
pub fn namespace_labels_from(paths: &[PathBuf]) -> Result<NamespaceLabels, String> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files);
    }
    let mut objects = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let docs = sealgate_core::manifest::parse(&bytes, &Default::default())
            .map_err(|e| format!("{}:{e}", f.display()))?;
        objects.extend(docs.into_iter().map(|d| d.value));
    }
    Ok(sealgate_core::policy::namespace_labels(&objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polling watchers see a change exactly when content changes, through a ConfigMap-style
    /// `..data` symlink swap too.
    #[cfg(unix)]
    #[test]
    fn fingerprints_follow_content_and_configmap_symlink_swaps() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The layout kubelet writes: ..v1/policy.rego, ..data -> ..v1, policy.rego -> ..data/policy.rego
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/policy.rego"), "package main\n").unwrap();
        symlink("..v1", root.join("..data")).unwrap();
        symlink("..data/policy.rego", root.join("policy.rego")).unwrap();
        let paths = [root.to_path_buf()];
        let first = fingerprint(&paths);
        assert_eq!(
            first,
            fingerprint(&paths),
            "unchanged content, same fingerprint"
        );
        // An update: a new ..v2, then an atomic swap of ..data.
        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(
            root.join("..v2/policy.rego"),
            "package main\n\ndeny contains \"x\" if false\n",
        )
        .unwrap();
        symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let second = fingerprint(&paths);
        assert_ne!(first, second, "the swap is seen");
        // Only the visible file counts: the old ..v1 going away changes nothing.
        std::fs::remove_dir_all(root.join("..v1")).unwrap();
        assert_eq!(second, fingerprint(&paths));
    }
}
