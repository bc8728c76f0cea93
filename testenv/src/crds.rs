//! CustomResourceDefinitions from the projects' own modules (`testenv/go/crds`: go.sum pins each
//! module's zip; nothing is built): `go mod download` puts the module in Go's module cache and
//! the files are read from there.

use std::path::PathBuf;
use std::process::Command;

use crate::go::{self, Unavailable};

/// One CRD file: (the module under `testenv/go/` whose go.sum pins it, module path, file inside
/// the module).
pub type CrdFile = (&'static str, &'static str, &'static str);

/// wg-policy's PolicyReport (what `sealgate-webhook audit -o policyreport` writes), as Kyverno
/// ships it.
pub const POLICY_REPORT: CrdFile = (
    "crds",
    "github.com/kyverno/kyverno",
    "config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml",
);
pub const CLUSTER_POLICY_REPORT: CrdFile = (
    "crds",
    "github.com/kyverno/kyverno",
    "config/crds/policyreport/wgpolicyk8s.io_clusterpolicyreports.yaml",
);
/// OpenReports' Report and ClusterReport.
pub const OPENREPORTS_REPORT: CrdFile = (
    "crds",
    "github.com/openreports/reports-api",
    "config/crd/openreports.io_reports.yaml",
);
pub const OPENREPORTS_CLUSTER_REPORT: CrdFile = (
    "crds",
    "github.com/openreports/reports-api",
    "config/crd/openreports.io_clusterreports.yaml",
);
/// Flux's GitRepository and Kustomization, Argo CD's Application (the example repository's
/// GitOps objects).
pub const FLUX_GIT_REPOSITORY: CrdFile = (
    "crds",
    "github.com/fluxcd/source-controller",
    "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
);
pub const FLUX_KUSTOMIZATION: CrdFile = (
    "crds",
    "github.com/fluxcd/kustomize-controller",
    "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
);
pub const ARGO_APPLICATION: CrdFile = (
    "crds",
    "github.com/argoproj/argo-cd/v3",
    "manifests/crds/application-crd.yaml",
);

/// Bitnami Sealed Secrets' CRD, from the module its controller is built from.
pub const BITNAMI_SEALED_SECRETS: CrdFile = (
    "bitnami",
    "github.com/bitnami-labs/sealed-secrets",
    "helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml",
);

/// The text of a CRD file, downloading its module (as go.sum pins it) when needed.
pub fn read(file: CrdFile) -> Result<String, Unavailable> {
    let (dir, module, path) = file;
    go::go_version()?;
    let src = go::module_dir(dir);
    let out = Command::new("go")
        .args(["mod", "download", "-json", module])
        .current_dir(&src)
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|e| Unavailable(format!("cannot run go mod download: {e}")))?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        Unavailable(format!(
            "go mod download {module} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    if let Some(e) = info["Error"].as_str() {
        return Err(Unavailable(format!("go mod download {module}: {e}")));
    }
    let dir = PathBuf::from(info["Dir"].as_str().unwrap_or_default());
    std::fs::read_to_string(dir.join(path))
        .map_err(|e| Unavailable(format!("{module}: cannot read {path}: {e}")))
}
