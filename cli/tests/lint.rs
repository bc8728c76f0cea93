//! `sealgate lint` and `sealgate policy verify`, through the real binary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sealgate() -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.current_dir(repo()).env_remove("SEALGATE_POLICY");
    c
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

/// Golden files under cli/tests/golden; `UPDATE_GOLDEN=1 cargo test` rewrites them.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual, want,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn example_repo_in_every_format() {
    for (format, ext) in [
        ("text", "txt"),
        ("json", "json"),
        ("sarif", "sarif"),
        ("junit", "xml"),
        ("github", "github"),
    ] {
        let a = sealgate()
            .args(["lint", "examples/gitops", "--format", format])
            .assert()
            .code(1);
        golden(&format!("lint-examples.{ext}"), &stdout(&a));
    }
}

/// The issue's command: the whole examples tree, where the Namespaces in the GitOps repo also
/// govern the recorded admission requests.
#[test]
fn all_examples() {
    let a = sealgate().args(["lint", "examples/"]).assert().code(1);
    let out = stdout(&a);
    golden("lint-examples-all.txt", &out);
    assert!(out.contains("examples/admission/kubectl-edit-review.json:1: deny   SealgateGitOpsIdentity/gitops-identity:"), "{out}");
    assert!(
        out.contains("examples/secret.yaml:15: deny   SealgateNoPlaintextSecrets"),
        "{out}"
    );
}

/// As docs/ci.md runs it: the cluster's policy overrides given with -p while also among the
/// linted files are loaded once, not refused as duplicates of themselves.
#[test]
fn policies_given_with_p_and_among_the_inputs_load_once() {
    sealgate()
        .current_dir(repo().join("examples/gitops"))
        .args(["lint", ".", "-p", "infrastructure/sealgate"])
        .assert()
        .code(1)
        .stdout(contains("14 passed, 4 failed"));
}

#[test]
fn example_findings_and_lines() {
    let a = sealgate()
        .args(["lint", "examples/gitops"])
        .assert()
        .code(1);
    let out = stdout(&a);
    for want in [
        "examples/gitops/apps/legacy/secret.yaml:7: deny   SealgateNoPlaintextSecrets/no-plaintext-secrets:",
        "examples/gitops/apps/legacy/configmap.yaml:8: deny   SealgateNoSecretValues/no-secret-values: data key \"AWS_ACCESS_KEY_ID\"",
        "examples/gitops/apps/legacy/deployment.yaml:18: deny   SealgateImagePolicy/image-policy: container \"api\" uses image \"nginx:latest\"",
        "examples/gitops/apps/legacy/deployment.yaml:20: deny   SealgatePodSecurityRestricted/pod-security-restricted: container \"api\" is privileged",
        "examples/gitops/apps/legacy/application.yaml:11: deny   SealgateGitOpsSources/gitops-sources: targetRevision \"HEAD\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // The repository's own gitops-sources constraint (infrastructure/) is a policy, as in gator
    // test: it replaces the built-in one (its refs leave out `master`) and is not an object.
    assert!(
        out.contains(
            "targetRevision \"HEAD\" is not an allowed ref (allowed: main, release-*, v*)"
        ),
        "{out}"
    );
    assert!(out.ends_with("14 passed, 4 failed\n"), "{out}");
    assert!(
        !out.contains("apps/shop"),
        "the compliant app has findings:\n{out}"
    );
    assert!(
        !out.contains("AKIAIOSFODNN7EXAMPLE") && !out.contains("Summer2026"),
        "values must not be reported"
    );
    // Everything but the legacy app is clean.
    sealgate()
        .args([
            "lint",
            "examples/gitops/apps/shop",
            "examples/gitops/clusters",
            "examples/gitops/infrastructure",
        ])
        .assert()
        .success()
        .stdout(contains("12 passed, 0 failed"));
}

#[test]
fn sarif_is_valid_for_code_scanning() {
    let a = sealgate()
        .args(["lint", "examples/gitops", "-o", "sarif"])
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for r in run["results"].as_array().unwrap() {
        assert!(
            rules.contains(&r["ruleId"].as_str().unwrap()),
            "result with an undeclared rule: {r}"
        );
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(
            loc["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("examples/gitops/")
        );
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
    }
}

#[test]
fn admission_reviews_are_replayed_as_requests() {
    sealgate()
        .args(["lint", "--inventory", "examples/gitops/apps/shop/namespace.yaml", "examples/admission"])
        .assert()
        .code(1)
        .stdout(contains("kubectl-edit-review.json:1: deny   SealgateGitOpsIdentity/gitops-identity: UPDATE of Deployment shop/web by \"alice@example.com\" denied"))
        .stdout(contains("break-glass-review.json:1: warn   SealgateGitOpsIdentity/gitops-break-glass-audit: break-glass:"));
    // Without the Namespace its labels are unknown: as in Gatekeeper, the namespaceSelector
    // cannot be decided, which is reported, never taken for "not governed".
    sealgate()
        .args(["lint", "examples/admission"])
        .assert()
        .code(1)
        .stdout(contains("kubectl-edit-review.json:1: deny   SealgateGitOpsIdentity/gitops-identity: constraint gitops-identity could not be matched: spec.match.namespaceSelector needs the labels of Namespace \"shop\""));
}

fn tmp_repo(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

const CLEAN_CM: &[u8] =
    b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: a}\ndata: {LEVEL: info}\n";

#[test]
fn bad_files_are_findings_and_the_rest_is_still_linted() {
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    let dir = tmp_repo(&[
        ("ok.yaml", CLEAN_CM),
        ("broken.yaml", b"apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n"),
        ("binary.yaml", &[0xff, 0xfe, 0x00, 0x01]),
        ("bomb.yaml", bomb.as_bytes()),
        ("secret.yaml", b"apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\nstringData: {k: v}\n"),
        ("notes.txt", b"not yaml at all"),
        ("ci.yaml", b"on: push\njobs: {}\n"),
    ]);
    std::fs::write(
        dir.path().join("review.json"),
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
    )
    .unwrap();
    let a = sealgate().arg("lint").arg(dir.path()).assert().code(2);
    let out = stdout(&a);
    assert!(
        out.contains("review.json:1: deny   sealgate/invalid-object: the AdmissionReview has no request (AdmissionReview (unnamed))"),
        "{out}"
    );
    assert!(
        out.contains("broken.yaml:3:7: deny   sealgate/parse-error:"),
        "{out}"
    );
    assert!(
        out.contains("binary.yaml:0: deny   sealgate/parse-error: not UTF-8"),
        "{out}"
    );
    assert!(
        out.contains("bomb.yaml:0: deny   sealgate/parse-error: its aliases (*ref) expand beyond"),
        "{out}"
    );
    assert!(
        out.contains("secret.yaml:4: deny   SealgateNoPlaintextSecrets"),
        "{out}"
    );
    assert!(out.contains("3 file(s) could not be parsed"), "{out}");
    assert!(out.ends_with("1 passed, 5 failed\n"), "{out}");
}

#[test]
fn ignore_files_hidden_dirs_and_helm_templates_are_skipped() {
    let secret =
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\nstringData: {k: v}\n";
    let dir = tmp_repo(&[
        ("apps/ok.yaml", CLEAN_CM),
        ("drafts/secret.yaml", secret),
        (".sealgateignore", b"drafts/\n"),
        (".github/workflows/secret.yaml", secret),
        (
            "charts/web/Chart.yaml",
            b"apiVersion: v2\nname: web\nversion: 1.0.0\n",
        ),
        (
            "charts/web/templates/deploy.yaml",
            b"{{- if .Values.enabled }}\nkind: Deployment\n{{- end }}\n",
        ),
    ]);
    sealgate()
        .arg("lint")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("1 passed, 0 failed"));
    // Named files (pre-commit names each changed one) are skipped by the same rules, saying so;
    // stdin is the way to lint one anyway.
    sealgate()
        .current_dir(dir.path())
        .args([
            "lint",
            "drafts/secret.yaml",
            "charts/web/templates/deploy.yaml",
            ".github/workflows/secret.yaml",
            "apps/ok.yaml",
        ])
        .assert()
        .success()
        .stdout("1 passed, 0 failed\n")
        .stderr(
            contains("note: skipped drafts/secret.yaml (matched by")
                .and(contains(
                    "skipped charts/web/templates/deploy.yaml (a Helm chart's templates",
                ))
                .and(contains(
                    "skipped .github/workflows/secret.yaml (a hidden file",
                )),
        );
    sealgate()
        .current_dir(dir.path())
        .args(["lint", "-"])
        .write_stdin(secret.to_vec())
        .assert()
        .code(1);
}

#[test]
fn policy_bundle_errors_exit_2_with_the_template_and_rego_line() {
    let dir = tmp_repo(&[
        ("policy/template.yaml", b"apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: broken}\nspec:\n  crd: {spec: {names: {kind: Broken}}}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n        package broken\n        violation[{\"msg\": m}] {\n          m := \n        }\n"),
        ("policy/orphan.yaml", b"apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: NoSuchTemplate\nmetadata: {name: orphan}\n"),
        ("policy/broken-constraint.yaml", b"apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: Broken\nmetadata: {name: b}\n"),
        ("ok.yaml", CLEAN_CM),
    ]);
    // The Rego error names the template file's line (the Rego starts after `rego: |` on line
    // 8), without regorus's excerpt, and the constraint of the broken template is not reported
    // again as one without a template.
    let a = sealgate()
        .current_dir(dir.path())
        .args(["lint", "--policy", "policy", "ok.yaml"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("the policy bundle has 2 problem(s)"), "{err}");
    let rego_line: usize = err
        .split("Rego error: line ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Rego line: {err}"));
    assert!(
        err.contains(&format!(
            "policy/template.yaml:{}: ConstraintTemplate Broken: Rego error: line {rego_line}, column ",
            8 + rego_line
        )) && err.contains(" of spec.targets[0].rego: expecting"),
        "{err}"
    );
    assert!(
        !err.contains("Broken.rego") && !err.contains("kind Broken"),
        "{err}"
    );
    assert!(
        err.contains("no ConstraintTemplate defines kind NoSuchTemplate"),
        "{err}"
    );
}

/// A duplicate key is said in words, without the YAML library's option name (issue 24,
/// item 14).
#[test]
fn a_duplicate_key_is_said_in_words() {
    sealgate()
        .args(["lint", "-"])
        .write_stdin("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\ndata:\n  x: '1'\n  x: '2'\n")
        .assert()
        .code(2)
        .stdout(
            contains("<stdin>:6:3: deny   sealgate/parse-error: the key \"x\" appears twice in the same mapping")
                .and(contains("DuplicateKeyPolicy").not()),
        );
}

#[test]
fn own_policies_conftest_and_overriding_a_builtin_constraint() {
    let dir = tmp_repo(&[
        ("policy/replicas.rego", b"package main\n\nwarn_single contains msg if {\n  input.kind == \"Deployment\"\n  input.spec.replicas == 1\n  msg := \"a single replica\"\n}\n"),
        // Same name as the built-in: replaces its parameters.
        ("policy/images.yaml", b"apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: SealgateImagePolicy\nmetadata: {name: image-policy}\nspec:\n  parameters:\n    allowLatest: true\n"),
        ("deploy.yaml", b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: a}\nspec:\n  replicas: 1\n  template:\n    spec:\n      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n      containers:\n        - name: c\n          image: nginx:latest\n          resources: {limits: {cpu: 1, memory: 1Gi}}\n          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n"),
    ]);
    let policy = dir.path().join("policy");
    let file = dir.path().join("deploy.yaml");
    let a = sealgate()
        .arg("lint")
        .arg("-p")
        .arg(&policy)
        .arg(&file)
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.contains("warn   conftest/warn_single: a single replica"),
        "{out}"
    );
    assert!(
        !out.contains("latest"),
        "the overriding constraint allows :latest: {out}"
    );
    sealgate()
        .arg("lint")
        .arg("-p")
        .arg(&policy)
        .arg("--fail-on-warn")
        .arg(&file)
        .assert()
        .code(1);
    // No policies at all is no check: an error (exit 2), as conftest's "no policies found",
    // unless asked for (it passed with "1 passed" before).
    sealgate()
        .arg("lint")
        .arg("--no-builtin")
        .arg(&file)
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains(
            "no policies: the bundle has no constraint, no bound ValidatingAdmissionPolicy and no conftest rule",
        ));
    // A -p that points at manifests, not policies, is no check either.
    sealgate()
        .args(["lint", "--no-builtin", "-p"])
        .arg(&file)
        .arg(&file)
        .assert()
        .code(2)
        .stderr(contains("loaded from -p"));
    sealgate()
        .args(["lint", "--no-builtin", "--allow-empty-bundle"])
        .arg(&file)
        .assert()
        .success()
        .stdout(contains("1 passed, 0 failed"));
    // Without the override, the built-in image policy fails it.
    sealgate()
        .arg("lint")
        .arg(&file)
        .assert()
        .code(1)
        .stdout(contains(":latest is not allowed"));
}

#[test]
fn report_to_a_file_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.sarif");
    sealgate()
        .args(["lint", "examples/gitops/apps/shop", "-o", "sarif", "-w"])
        .arg(&out)
        .assert()
        .success()
        .stdout("");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("\"version\": \"2.1.0\"")
    );
    sealgate()
        .args(["lint", "no/such/dir"])
        .assert()
        .code(2)
        .stderr(contains("no/such/dir: no such file or directory"));
}

#[test]
fn policy_verify_runs_the_builtin_suites() {
    // As gator verify: a line per suite, and with -v every case.
    let a = sealgate()
        .args(["policy", "verify", "policies/..."])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.lines().any(
            |l| l.starts_with("ok    policies/gitops-identity/suite.yaml\t")
                && l.contains(" case(s)\t")
        ),
        "{out}"
    );
    assert!(!out.contains("audit-break-glass/reported"), "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
    let a = sealgate()
        .args(["policy", "verify", "-v", "policies/..."])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.contains("ok    policies/gitops-identity/suite.yaml: audit-break-glass/reported"),
        "{out}"
    );
    sealgate()
        .args(["policy", "verify", "-v", "policies", "--run", "^no-latest$"])
        .assert()
        .success()
        .stdout(contains("image-policy/suite.yaml: no-latest/untagged"));
    let empty = tempfile::tempdir().unwrap();
    sealgate()
        .args(["policy", "verify"])
        .arg(empty.path())
        .assert()
        .code(1)
        .stdout(contains("no Suite files"));
}

#[test]
fn stdin_is_linted_as_one_file() {
    sealgate()
        .args(["lint", "-"])
        .write_stdin(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\nstringData: {a: b}\n",
        )
        .assert()
        .code(1)
        .stdout(contains(
            "<stdin>:4: deny   SealgateNoPlaintextSecrets/no-plaintext-secrets:",
        ));
}

#[test]
fn both_rego_engines_give_the_same_findings() {
    let vm = sealgate().args(["lint", "examples/"]).output().unwrap();
    let interpreter = sealgate()
        .args(["lint", "--rego-engine", "interpreter", "examples/"])
        .output()
        .unwrap();
    assert_eq!(vm.status.code(), Some(1));
    assert_eq!(interpreter.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&vm.stdout),
        String::from_utf8_lossy(&interpreter.stdout)
    );
}

/// A custom kind's scope comes from its CRD in the linted tree, or from a flag: a Widget without
/// a namespace (kustomize sets it later) is namespaced, so `scope: Namespaced` selects it.
#[test]
fn a_crd_in_the_tree_or_a_flag_decides_whether_a_kind_is_namespaced() {
    const POLICY: &[u8] = b"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: nowidgets}
spec:
  crd: {spec: {names: {kind: NoWidgets}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package nowidgets
      violation[{\"msg\": \"no namespaced widgets\"}] { true }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: NoWidgets
metadata: {name: no-widgets}
spec:
  match:
    scope: Namespaced
    kinds: [{apiGroups: [example.com], kinds: [Widget]}]
";
    const CRD: &[u8] = b"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true}]
";
    const WIDGET: &[u8] = b"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n";
    let without_crd = tmp_repo(&[("policy/p.yaml", POLICY), ("apps/widget.yaml", WIDGET)]);
    let with_crd = tmp_repo(&[
        ("policy/p.yaml", POLICY),
        ("apps/widget.yaml", WIDGET),
        ("crds/widget.yaml", CRD),
    ]);
    let lint = |dir: &tempfile::TempDir, extra: &[&str]| {
        let mut c = sealgate();
        c.current_dir(dir.path())
            .args(["lint", "--no-builtin", "-p", "policy", "apps", "crds"]);
        c.args(extra);
        c
    };
    let crds = without_crd.path().join("crds");
    std::fs::create_dir_all(&crds).unwrap();
    // Unknown kind, no namespace: judged as gator judges it, cluster-scoped.
    lint(&without_crd, &[]).assert().success();
    lint(&with_crd, &[]).assert().code(1).stdout(contains(
        "deny   NoWidgets/no-widgets: no namespaced widgets",
    ));
    lint(&without_crd, &["--namespaced-kinds", "example.com/Widget"])
        .assert()
        .code(1);
    // A flag wins over the CRD.
    lint(&with_crd, &["--cluster-kinds", "Widget"])
        .assert()
        .success();
    lint(&without_crd, &["--namespaced-kinds", "example.com/"])
        .assert()
        .code(2)
        .stderr(contains("group/Kind"));
}

/// Namespaces are known before any object is judged, whichever file defines them and however
/// their kind is spelt (a JSON escape here).
#[test]
fn namespaces_anywhere_in_the_tree_select_objects() {
    const POLICY: &[u8] = b"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: noprod}
spec:
  crd: {spec: {names: {kind: NoProd}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package noprod
      violation[{\"msg\": \"nothing in prod\"}] { true }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: NoProd
metadata: {name: no-prod}
spec:
  match:
    kinds: [{apiGroups: [\"\"], kinds: [ConfigMap]}]
    namespaceSelector: {matchLabels: {env: prod}}
";
    let dir = tmp_repo(&[
        ("policy/p.yaml", POLICY),
        (
            "a/cm.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n",
        ),
        (
            "z/ns.json",
            br#"{"apiVersion": "v1", "kind": "Name\u0073pace", "metadata": {"name": "shop", "labels": {"env": "prod"}}}"#,
        ),
    ]);
    sealgate()
        .current_dir(dir.path())
        .args(["lint", "--no-builtin", "-p", "policy", "a", "z"])
        .assert()
        .code(1)
        .stdout(contains("deny   NoProd/no-prod: nothing in prod"));
}

/// `-o policyreport`: Kyverno's report objects, one per namespace plus a cluster one, with fail
/// and pass results that name the file and line.
#[test]
fn policy_reports_for_policy_reporter() {
    let dir = tmp_repo(&[
        ("ok.yaml", CLEAN_CM),
        (
            "leaky.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leaky, namespace: a}\ndata: {AWS_ACCESS_KEY_ID: AKIAIOSFODNN7EXAMPLE}\n",
        ),
        (
            "ns.yaml",
            b"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        ),
    ]);
    let out = sealgate()
        .current_dir(dir.path())
        .args(["lint", "-o", "policyreport", "."])
        .assert()
        .code(1);
    let text = stdout(&out);
    let docs: Vec<serde_json::Value> =
        sealgate_core::manifest::parse(text.as_bytes(), &Default::default())
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ClusterPolicyReport", "PolicyReport"], "{text}");
    let ns = &docs[1];
    assert_eq!(ns["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(ns["metadata"]["namespace"], "a");
    assert_eq!(ns["metadata"]["name"], "sealgate-ci");
    let results = ns["results"].as_array().unwrap();
    let fail = results
        .iter()
        .find(|r| r["result"] == "fail")
        .expect("a fail result");
    assert_eq!(fail["policy"], "SealgateNoSecretValues");
    assert_eq!(fail["resources"][0]["name"], "leaky");
    assert_eq!(fail["properties"]["file"], "leaky.yaml");
    assert_eq!(fail["properties"]["line"], "1");
    assert!(
        !fail["message"].as_str().unwrap().contains("AKIA"),
        "no secret value in a report"
    );
    assert!(
        results
            .iter()
            .any(|r| r["result"] == "pass" && r["resources"][0]["name"] == "ok")
    );
    assert_eq!(ns["summary"]["fail"], 1, "{}", ns["summary"]);
}

/// Budgets stop bombs, not large repositories: a 1,500-document stream (`helm template` of a big
/// chart) is linted; past --max-documents the error names the limit and the flag.
#[test]
fn large_streams_are_linted_and_the_document_limit_is_a_flag() {
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: a}}\ndata: {{k: v}}\n"
        ));
    }
    let dir = tmp_repo(&[("rendered.yaml", text.as_bytes())]);
    sealgate()
        .current_dir(dir.path())
        .args(["lint", "rendered.yaml"])
        .assert()
        .success()
        .stdout(contains("1500 passed, 0 failed"));
    sealgate()
        .current_dir(dir.path())
        .args(["lint", "--max-documents", "100", "rendered.yaml"])
        .assert()
        .code(2)
        .stdout(contains(
            "more than 100 documents in one stream (`sealgate lint --max-documents N` raises the limit)",
        ));
}

/// `sealgate lint … | head -c 1`: once the reader has gone, lint stops quietly with 0, as ripgrep
/// does, instead of reporting an input error.
#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: a}}\ndata: {{k: v}}\n"
        ));
    }
    let dir = tmp_repo(&[("rendered.yaml", text.as_bytes())]);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("sealgate"));
    cmd.current_dir(dir.path())
        .args(["lint", "-o", "json", "rendered.yaml"]);
    // The rest of the report (far more than a pipe holds) then fails to write.
    let out = sealgate_testkit::process::with_stdout_closed_after_one_byte(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `v1 List` (what `kubectl get secret -o yaml` writes, e.g. a key backup) and a `SecretList`
/// are linted as their items, each at its own line: a plain Secret or a privileged Deployment in
/// one fails as it does on its own (both passed as one unknown object before).
#[test]
fn lists_are_linted_as_their_items() {
    let list = b"apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Secret\n    metadata:\n      name: db\n      namespace: shop\n    data:\n      password: aHVudGVyMg==\n  - apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n      namespace: shop\n    spec:\n      template:\n        spec:\n          containers:\n            - name: web\n              image: registry.example.com/web:1.0\n              securityContext:\n                privileged: true\nmetadata:\n  resourceVersion: \"\"\n";
    let json = br#"{"apiVersion": "v1", "kind": "SecretList", "metadata": {},
  "items": [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": "shop"},
     "stringData": {"token": "x"}}
  ]}
"#;
    let dir = tmp_repo(&[("backup.yaml", list), ("secrets.json", json)]);
    let a = sealgate().arg("lint").arg(dir.path()).assert().code(1);
    let out = stdout(&a);
    // At the offending field's line, inside the list.
    assert!(
        out.contains("backup.yaml:9: deny   SealgateNoPlaintextSecrets/no-plaintext-secrets"),
        "{out}"
    );
    assert!(out.contains("backup.yaml:23: deny   SealgatePodSecurityRestricted/pod-security-restricted: container \"web\" is privileged (Deployment shop/web)"), "{out}");
    assert!(
        out.contains("secrets.json:") && out.contains("(Secret shop/api)"),
        "{out}"
    );
    assert!(out.ends_with("0 passed, 3 failed\n"), "{out}");
    // The same through stdin.
    let a = sealgate()
        .args(["lint", "-"])
        .write_stdin(&list[..])
        .assert()
        .code(1);
    assert!(stdout(&a).ends_with("0 passed, 2 failed\n"));
}

/// Forgetting the `-`: `kubectl kustomize apps | sealgate lint` reads the pipe, as ripgrep does
/// (it linted `.` before); with nothing piped in (stdin /dev/null, as CI runners give), it lints
/// the current directory.
#[test]
fn no_path_reads_piped_stdin_else_the_current_directory() {
    let bad = b"apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: x}\n";
    let dir = tmp_repo(&[("ok.yaml", CLEAN_CM)]);
    let piped = sealgate()
        .arg("lint")
        .current_dir(dir.path())
        .write_stdin(&bad[..])
        .assert()
        .code(1);
    let out = stdout(&piped);
    assert!(
        out.contains("<stdin>:4: deny") && out.ends_with("0 passed, 1 failed\n"),
        "{out}"
    );
    let cwd = std::process::Command::new(assert_cmd::cargo::cargo_bin("sealgate"))
        .arg("lint")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(cwd.status.success());
    assert_eq!(String::from_utf8_lossy(&cwd.stdout), "1 passed, 0 failed\n");
    // A pipe with nothing in it (`cat missing.yaml | sealgate lint`) is an error, not a clean
    // lint of nothing; `-` asks for stdin on purpose.
    sealgate()
        .arg("lint")
        .current_dir(dir.path())
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(contains("stdin is empty: nothing to lint"));
    sealgate()
        .args(["lint", "-"])
        .current_dir(dir.path())
        .write_stdin("")
        .assert()
        .success()
        .stdout("0 passed, 0 failed\n");
}

/// conftest's namespaces: a module in `package kubernetes.deployments` runs with `--namespace
/// kubernetes.deployments` or `--all-namespaces`; by default (package `main`, as conftest) it
/// does not, and a warning names it (it was ignored silently before).
#[test]
fn conftest_namespaces() {
    let dir = tmp_repo(&[
        (
            "policy/deployments.rego",
            b"package kubernetes.deployments\n\nimport rego.v1\n\ndeny contains msg if {\n  input.kind == \"Deployment\"\n  not input.spec.replicas\n  msg := \"replicas must be set\"\n}\n",
        ),
        (
            "deploy.yaml",
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {}\n",
        ),
    ]);
    let lint = |extra: &[&str]| {
        let mut c = sealgate();
        c.current_dir(dir.path())
            .args(["lint", "--no-builtin", "-p", "policy", "deploy.yaml"])
            .args(extra);
        c
    };
    // Default: package main only; the module's rules are skipped, saying so. Nothing else is in
    // the bundle, so it is empty: an error.
    lint(&[])
        .assert()
        .code(2)
        .stderr(contains("the Rego package(s) kubernetes.deployments define deny/warn/violation rules that will not run"));
    for flags in [
        &["--namespace", "kubernetes.deployments"][..],
        &["--all-namespaces"],
    ] {
        let a = lint(flags).assert().code(1);
        let out = stdout(&a);
        assert!(
            out.contains("deny   conftest/kubernetes.deployments.deny: replicas must be set"),
            "{flags:?}: {out}"
        );
    }
    // --namespace and --all-namespaces together make no sense.
    lint(&["--namespace", "main", "--all-namespaces"])
        .assert()
        .code(2);
}

/// `-p DIR` skips `samples/`, `testdata/` and `tests/` (the Gatekeeper library's examples and
/// suites): `-v` says so, and what the bundle holds; naming the folder loads it.
#[test]
fn verbose_names_the_skipped_policy_folders() {
    let template = std::fs::read(repo().join("policies/image-policy/template.yaml")).unwrap();
    let constraint = std::fs::read(repo().join("policies/image-policy/constraint.yaml")).unwrap();
    let dir = tmp_repo(&[
        ("policy/template.yaml", &template),
        ("policy/samples/constraint.yaml", &constraint),
        ("app.yaml", CLEAN_CM),
    ]);
    let a = sealgate()
        .current_dir(dir.path())
        .args([
            "lint",
            "-v",
            "--no-builtin",
            "-p",
            "policy",
            "-p",
            "policy/samples",
            "app.yaml",
        ])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("policies: 1 template(s), 1 constraint(s), 0 conftest rule(s)"),
        "{err}"
    );
    assert!(
        err.contains("policies: skipped policy/samples (samples/, testdata/ and tests/"),
        "{err}"
    );
    // Without -v, nothing on stderr.
    sealgate()
        .current_dir(dir.path())
        .args([
            "lint",
            "--no-builtin",
            "-p",
            "policy",
            "-p",
            "policy/samples",
            "app.yaml",
        ])
        .assert()
        .success()
        .stderr("");
}

/// gator test's habit: templates, constraints and objects in one folder, no `-p`. The template
/// and constraint join the bundle (with a notice) instead of being linted as objects ("3
/// passed" before); `--no-policies-from-inputs` keeps the old reading.
#[test]
fn templates_and_constraints_among_the_inputs_are_policies() {
    let template = std::fs::read(repo().join("policies/image-policy/template.yaml")).unwrap();
    let constraint = b"apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: SealgateImagePolicy\nmetadata: {name: no-latest}\nspec:\n  match:\n    kinds: [{apiGroups: [\"\"], kinds: [Pod]}]\n";
    let pod = b"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n    - name: web\n      image: nginx:latest\n";
    let dir = tmp_repo(&[
        ("suite/template.yaml", &template),
        ("suite/constraint.yaml", constraint),
        ("suite/pod.yaml", pod),
    ]);
    let a = sealgate()
        .current_dir(dir.path())
        .args(["lint", "--no-builtin", "suite"])
        .assert()
        .code(1);
    let out = stdout(&a);
    assert!(
        out.contains("suite/pod.yaml:7: deny   SealgateImagePolicy/no-latest"),
        "{out}"
    );
    assert!(out.ends_with("0 passed, 1 failed\n"), "{out}");
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("note: took the ConstraintTemplates, Constraints and ExpansionTemplates in suite/constraint.yaml, suite/template.yaml as policies"), "{err}");
    sealgate()
        .current_dir(dir.path())
        .args([
            "lint",
            "--no-builtin",
            "--no-policies-from-inputs",
            "--allow-empty-bundle",
            "suite",
        ])
        .assert()
        .success()
        .stdout("3 passed, 0 failed\n");
}

/// A misspelt Constraint field must not widen or disable it silently (issue 24, item 6):
/// `match.namespace`, `parameters.allowLatset` and an `enforcementaction` key are refused as
/// `kubectl apply` refuses them, each a finding at the Constraint's file and line (exit 1),
/// while the well-formed constraint beside them still runs. A namespace that nothing defines is
/// a warning.
#[test]
fn constraint_typos_are_findings() {
    let template = std::fs::read(repo().join("policies/image-policy/template.yaml")).unwrap();
    let constraints = b"apiVersion: constraints.gatekeeper.sh/v1beta1
kind: SealgateImagePolicy
metadata: {name: typo-match}
spec:
  match:
    namespace: [shop]
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: SealgateImagePolicy
metadata: {name: typo-parameters}
spec:
  enforcementaction: warn
  parameters: {allowLatset: true}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: SealgateImagePolicy
metadata: {name: good}
spec:
  match:
    namespaces: [shop, shpo]
    kinds: [{apiGroups: [\"\"], kinds: [Pod]}]
";
    let pod = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n    - name: web\n      image: nginx:latest\n";
    let dir = tmp_repo(&[
        ("policy/template.yaml", &template),
        ("policy/constraints.yaml", constraints),
        ("apps/pod.yaml", pod),
    ]);
    let a = sealgate()
        .current_dir(dir.path())
        .args(["lint", "--no-builtin", "-p", "policy", "apps"])
        .assert()
        .code(1);
    let out = stdout(&a);
    for want in [
        "policy/constraints.yaml:1: deny   sealgate/constraint-schema: spec.match.namespace: unknown field (did you mean \"namespaces\"?)",
        "policy/constraints.yaml:8: deny   sealgate/constraint-schema: spec.enforcementaction: unknown field (did you mean \"enforcementAction\"?)",
        "policy/constraints.yaml:8: deny   sealgate/constraint-schema: spec.parameters.allowLatset: unknown field (did you mean \"allowLatest\"?)",
        "apps/pod.yaml:11: deny   SealgateImagePolicy/good",
    ] {
        assert!(out.contains(want), "{want}\n---\n{out}");
    }
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(
            "SealgateImagePolicy good: match.namespaces names \"shpo\", which no Namespace"
        ) && !err.contains("\"shop\", which"),
        "{err}"
    );
    // `policy verify` (as the webhook) refuses such a constraint outright: fail closed.
    let one = b"apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: SealgateImagePolicy\nmetadata: {name: typo}\nspec:\n  match:\n    namespace: [shop]\n";
    std::fs::write(dir.path().join("policy/typo.yaml"), one).unwrap();
    let suite = b"apiVersion: test.gatekeeper.sh/v1alpha1\nkind: Suite\ntests:\n  - name: t\n    template: template.yaml\n    constraint: typo.yaml\n    cases: []\n";
    std::fs::write(dir.path().join("policy/suite.yaml"), suite).unwrap();
    let a = sealgate()
        .current_dir(dir.path())
        .args(["policy", "verify", "policy/suite.yaml"])
        .assert()
        .failure();
    let all = format!(
        "{}{}",
        stdout(&a),
        String::from_utf8_lossy(&a.get_output().stderr)
    );
    assert!(all.contains("spec.match.namespace: unknown field"), "{all}");
}

/// One stream (`kustomize build | sealgate lint -`) is judged by every worker: the report is the
/// same, in input order at the same lines, whatever `-j`, from stdin and from a file, read whole
/// or a few documents at a time past a head (as a stream over 64 MiB is).
#[test]
fn one_stream_is_judged_in_parallel_with_the_same_report() {
    let mut stream = String::new();
    for i in 0..700 {
        let image = if i % 9 == 0 {
            "nginx:latest"
        } else {
            "registry.example.com/web:1.2.3"
        };
        let privileged = i % 13 == 0;
        stream.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{i}\n  namespace: team-{}\nspec:\n  containers:\n    - name: web\n      image: {image}\n      securityContext:\n        privileged: {privileged}\n",
            i % 5
        ));
        if i % 50 == 0 {
            stream.push_str("---\n# a comment-only document\n");
        }
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("all.yaml"), &stream).unwrap();
    let streamed = |jobs: &str, format: &str, stdin: bool, head: &str| {
        let mut c = sealgate();
        c.current_dir(d.path())
            .args(["lint", "-j", jobs, "-o", format, "--stream-head", head]);
        if stdin {
            c.arg("-").write_stdin(stream.clone());
        } else {
            c.arg("all.yaml");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stdout).unwrap()
    };
    let run = |jobs: &str, format: &str, stdin: bool| streamed(jobs, format, stdin, "67108864");
    // Reports of stdin name it `<stdin>` (`&lt;stdin&gt;` in XML).
    let as_file = |s: String| {
        s.replace("<stdin>", "all.yaml")
            .replace("&lt;stdin&gt;", "all.yaml")
    };
    for format in ["text", "json", "junit"] {
        let one = run("1", format, false);
        assert!(one.contains("all.yaml"), "{one}");
        for jobs in ["2", "4"] {
            assert_eq!(run(jobs, format, false), one, "-j {jobs} -o {format}");
        }
        let from_stdin = run("2", format, true);
        assert!(as_file(from_stdin) == one, "stdin -o {format}");
        // Past a 4 KiB head the stream is read in pieces of about 1 KiB: about 170 of them.
        for jobs in ["1", "2"] {
            assert!(
                streamed(jobs, format, false, "4096") == one,
                "streamed -j {jobs} -o {format}"
            );
        }
        assert!(
            as_file(streamed("2", format, true, "4096")) == one,
            "streamed stdin -o {format}"
        );
    }
    // In input order: the findings' lines only grow.
    let text = run("4", "text", false);
    let lines: Vec<usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix("all.yaml:")?.split(':').next()?.parse().ok())
        .collect();
    assert!(lines.len() > 100, "{}", lines.len());
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "out of order");
}

/// Past its head, a stream is judged as it is read: a Namespace (or a CRD, a policy) there cannot
/// count for the objects before it, so it fails at its line saying where it must go; a syntax
/// error is reported at its line in the stream, with the findings before it; a document larger
/// than the head is refused, not read whole.
#[test]
fn past_its_head_a_stream_is_judged_as_it_is_read() {
    let pod = |i: usize| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{i}\nspec:\n  containers:\n    - name: web\n      image: registry.example.com/web:1.2.3\n      securityContext:\n        privileged: {}\n",
            i.is_multiple_of(10)
        )
    };
    let mut stream: String = (0..100).map(pod).collect();
    let late = stream.lines().count() + 2;
    stream.push_str("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: late\n");
    stream.extend((100..200).map(pod));
    let lint = |stream: &str, head: &str| {
        let out = sealgate()
            .args(["lint", "-", "--stream-head", head])
            .write_stdin(stream.to_string())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    // Read whole, the Namespace is an object like any other.
    let (code, whole) = lint(&stream, "1048576");
    assert_eq!(code, Some(1));
    assert!(!whole.contains("Namespace"), "{whole}");
    let (code, text) = lint(&stream, "4096");
    assert_eq!(code, Some(1));
    assert!(
        text.contains(&format!("<stdin>:{late}: deny   sealgate/invalid-object: a Namespace more than 4096 bytes into a stream")),
        "{text}"
    );
    assert!(text.contains("or in a file of their own"), "{text}");
    // Every other finding is the same.
    let others = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("privileged"))
            .map(String::from)
            .collect()
    };
    assert_eq!(others(&text), others(&whole));
    assert_eq!(others(&text).len(), 20);

    // A syntax error after 150 Pods: the error at its line in the stream, the findings of the
    // pieces before it (not of the documents that share its piece: a piece parses or not, as a
    // file does) and nothing after it.
    let mut broken: String = (0..150).map(pod).collect();
    let bad = broken.lines().count() + 4;
    broken.push_str("---\napiVersion: v1\nkind: [Pod\nmetadata: {}\n"); // the error is at `metadata`
    broken.extend((150..300).map(pod));
    let (code, text) = lint(&broken, "4096");
    assert_eq!(code, Some(2), "{text}");
    let privileged: Vec<usize> = text
        .lines()
        .filter(|l| l.contains("is privileged"))
        .filter_map(|l| l.strip_prefix("<stdin>:")?.split(':').next()?.parse().ok())
        .collect();
    assert!((10..=15).contains(&privileged.len()), "{text}");
    assert!(privileged.iter().all(|l| *l < bad), "{text}");
    let error = text
        .lines()
        .find(|l| l.contains("parse-error"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(error.starts_with(&format!("<stdin>:{bad}:")), "{error}");

    // A document larger than the head, past it.
    let mut large: String = (0..50).map(pod).collect();
    large.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  k: {}\n",
        "x".repeat(10_000)
    ));
    let (code, text) = lint(&large, "4096");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("a document larger than 4096 bytes"), "{text}");
}
