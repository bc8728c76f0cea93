//! Gatekeeper ExpansionTemplates through the CLI, with the public library's own pod-security
//! templates (unchanged, from `../shared/corpora/gatekeeper-library`): a privileged Deployment is
//! judged by the Pod template through an ExpansionTemplate in `sealgate lint` (the finding at the
//! Deployment's container line, prefixed `[Implied by …]`) and in `sealgate policy verify` (a gator
//! suite with `expansion:`), as gator judges it.

use std::path::PathBuf;

use assert_cmd::Command;

/// The library's privileged-containers template.
fn library() -> Option<PathBuf> {
    sealgate_testkit::gatekeeper::library()
        .map(|l| l.join("pod-security-policy/privileged-containers"))
}

fn sealgate() -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.env_remove("SEALGATE_POLICY");
    c
}

use sealgate_testkit::gatekeeper::EXPAND_WORKLOADS as EXPANSION;

fn deployment(privileged: bool) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: nginx
          image: nginx:1.27
          securityContext:
            privileged: {privileged}
"
    )
}

/// A folder with the library's template and constraint, the ExpansionTemplate and two
/// Deployments (`None` when the library is missing).
fn fixture() -> Option<tempfile::TempDir> {
    let lib = library()?;
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    std::fs::copy(lib.join("template.yaml"), dir.join("template.yaml")).unwrap();
    std::fs::copy(
        lib.join("samples/psp-privileged-container/constraint.yaml"),
        dir.join("constraint.yaml"),
    )
    .unwrap();
    std::fs::write(dir.join("expansion.yaml"), EXPANSION).unwrap();
    std::fs::write(dir.join("privileged.yaml"), deployment(true)).unwrap();
    std::fs::write(dir.join("unprivileged.yaml"), deployment(false)).unwrap();
    Some(folder)
}

#[test]
fn lint_judges_a_deployment_by_its_pod() {
    let Some(dir) = fixture() else { return };
    let d = dir.path();
    let policies = |with_expansion: bool| {
        let p = d.join(if with_expansion { "with" } else { "without" });
        std::fs::create_dir_all(&p).unwrap();
        for f in ["template.yaml", "constraint.yaml"] {
            std::fs::copy(d.join(f), p.join(f)).unwrap();
        }
        if with_expansion {
            std::fs::copy(d.join("expansion.yaml"), p.join("expansion.yaml")).unwrap();
        }
        p
    };
    let lint = |with_expansion: bool, file: &str| {
        sealgate()
            .args(["lint", "--no-builtin", "-p"])
            .arg(policies(with_expansion))
            .arg(d.join(file))
            .assert()
    };
    // Without the ExpansionTemplate the Pod template never sees the Deployment.
    lint(false, "privileged.yaml").success();
    let out = lint(true, "privileged.yaml")
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    // The finding is the Deployment's (the library's template reports no path, so it is at the
    // document's line; a path is prefixed with spec.template: core's expansion tests).
    assert!(
        text.contains("[Implied by expand-deployments] Privileged container is not allowed: nginx"),
        "{text}"
    );
    assert!(text.contains("privileged.yaml:1:"), "{text}");
    assert!(text.contains("Deployment shop/web"), "{text}");
    lint(true, "unprivileged.yaml").success();
    // ExpansionTemplates among the inputs are policies, as templates and constraints are.
    let out = sealgate()
        .args(["lint", "--no-builtin"])
        .arg(d.join("template.yaml"))
        .arg(d.join("constraint.yaml"))
        .arg(d.join("expansion.yaml"))
        .arg(d.join("privileged.yaml"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("[Implied by expand-deployments]"),
        "the ExpansionTemplate among the inputs was not taken as a policy"
    );
}

#[test]
fn policy_verify_runs_gator_suites_with_expansion() {
    let Some(dir) = fixture() else { return };
    let d = dir.path();
    // An AdmissionReview of the privileged Deployment: gator does not expand those.
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "1", "operation": "CREATE", "namespace": "shop", "name": "web",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "userInfo": {"username": "dev"},
            "object": serde_saphyr::from_str::<serde_json::Value>(&deployment(true)).unwrap()}
    });
    std::fs::write(d.join("review.json"), review.to_string()).unwrap();
    std::fs::write(
        d.join("suite.yaml"),
        "kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
metadata:
  name: expansion
tests:
- name: privileged-deployments
  template: template.yaml
  constraint: constraint.yaml
  expansion: expansion.yaml
  cases:
  - name: privileged-deployment
    object: privileged.yaml
    assertions:
    - violations: 1
      message: \"Implied by expand-deployments\"
  - name: unprivileged-deployment
    object: unprivileged.yaml
    assertions:
    - violations: no
  - name: admission-review-is-not-expanded
    object: review.json
    assertions:
    - violations: no
- name: without-expansion
  template: template.yaml
  constraint: constraint.yaml
  cases:
  - name: privileged-deployment-passes
    object: privileged.yaml
    assertions:
    - violations: no
",
    )
    .unwrap();
    let out = sealgate()
        .args(["policy", "verify"])
        .arg(d.join("suite.yaml"))
        .assert()
        .success()
        .get_output()
        .clone();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("4 passed"), "{text}");
    // A wrong assertion fails: the suite is really evaluated.
    let suite = std::fs::read_to_string(d.join("suite.yaml")).unwrap();
    std::fs::write(
        d.join("suite.yaml"),
        suite.replacen("    - violations: no\n", "    - violations: 1\n", 1),
    )
    .unwrap();
    sealgate()
        .args(["policy", "verify"])
        .arg(d.join("suite.yaml"))
        .assert()
        .code(1);
}
