//! ValidatingAdmissionPolicies through the CLI, with the Kubernetes documentation's examples
//! (tests/real_cluster/testdata/vap, which the real-cluster tier also installs in kube-apiserver):
//! `sealgate lint -p` with parameters from the linted files or `--inventory`, findings naming the
//! policy and binding at file:line in every format, and `sealgate policy verify` with a policy and
//! its binding as a test's template and constraint.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn sealgate() -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.env_remove("SEALGATE_POLICY");
    c
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/real_cluster/testdata/vap")
        .join(name)
}

/// The documentation's file split as a repository holds it: `policies/` (the VAPs and bindings),
/// `cluster/` (CRD, Namespaces, parameters) and `apps/` (the objects).
fn fixture(dir: &Path) {
    let text = std::fs::read_to_string(corpus("kubernetes-docs.yaml")).unwrap();
    let (mut policies, mut cluster) = (Vec::new(), Vec::new());
    for doc in text.split("\n---\n") {
        if doc.contains("kind: ValidatingAdmissionPolicy") {
            policies.push(doc);
        } else {
            cluster.push(doc);
        }
    }
    for (d, docs) in [("policies", policies), ("cluster", cluster)] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::write(dir.join(d).join("all.yaml"), docs.join("\n---\n")).unwrap();
    }
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::copy(
        corpus("kubernetes-docs-cases.yaml"),
        dir.join("apps/objects.yaml"),
    )
    .unwrap();
}

fn lint(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = sealgate()
        .current_dir(dir)
        .args(["lint", "--no-builtin", "-p", "policies"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The 1-based line of the document holding `name` in the objects file.
fn line_of(dir: &Path, name: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("apps/objects.yaml")).unwrap();
    text.lines()
        .position(|l| l.contains(&format!("\"name\": \"{name}\"")))
        .unwrap()
        + 1
}

#[test]
fn lint_judges_objects_as_the_api_server_with_parameters_from_the_repository() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let (code, text) = lint(d.path(), &["cluster", "apps"]);
    assert_eq!(code, 1, "{text}");
    let expect = |name: &str, action: &str, rule: &str, message: &str| {
        let line = format!(
            "apps/objects.yaml:{}: {action:<6} {rule}: {message}",
            line_of(d.path(), name)
        );
        assert!(text.contains(&line), "wants {line}\n{text}");
    };
    expect(
        "demo-too-many",
        "deny",
        "demo-policy.example.com/demo-binding-test.example.com",
        "failed expression: object.spec.replicas <= 5",
    );
    // A CRD parameter (namespace given) and a ConfigMap one (by selector), from cluster/.
    expect(
        "limited-too-many",
        "deny",
        "replicalimit-policy.example.com/replicalimit-binding-test.example.com",
        "object.spec.replicas must be no greater than 3",
    );
    expect(
        "cm-too-many",
        "deny",
        "configmap-limit.example.com/configmap-limit-binding.example.com",
        "at most 4 replicas, not 7",
    );
    expect(
        "limit-missing",
        "deny",
        "replicalimit-policy.example.com/replicalimit-binding-missing.example.com",
        "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction",
    );
    // The documentation's policy fails on an object without labels, in the API server too,
    // unless the other side of its `||` holds (CEL's commutative or).
    expect(
        "images-prod",
        "deny",
        "image-matches-namespace-environment.policy.example.com/image-matches-namespace-environment.binding.example.com",
        "expression 'variables.exempt || variables.containersToCheck.all(c, c.image.startsWith(variables.environment + '.'))' resulted in error: composited variable \"exempt\" fails to evaluate: no such key: labels",
    );
    // Warn: lint's warning; lint judges a bare object as a CREATE by no one.
    expect(
        "warned-twice",
        "warn",
        "people-are-warned.example.com/people-are-warned-binding.example.com",
        "the owner label must be lowercase letters",
    );
    for passes in [
        "demo-ok",
        "limited-ok",
        "images-staging",
        "images-exempt",
        "cm-ok",
        "plain-settings",
        "demo-exempt",
    ] {
        let at = format!("apps/objects.yaml:{}:", line_of(d.path(), passes));
        assert!(!text.contains(&at), "{passes} passes\n{text}");
    }

    // The same parameters from --inventory instead of the linted files.
    let (code, inventory) = lint(d.path(), &["--inventory", "cluster", "apps"]);
    assert_eq!(code, 1);
    // The same findings (cluster/ is no longer linted: fewer objects pass).
    let findings = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("apps/"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(findings(&inventory), findings(&text));

    // Without the Namespaces the selectors cannot be decided: said, with what to do.
    let (_, blind) = lint(d.path(), &["apps"]);
    assert!(
        blind.contains(
            "failed to configure binding: namespaceSelector needs the labels of Namespace \"vap-docs-demo\""
        ),
        "{blind}"
    );

    // JSON and SARIF name the policy and the binding.
    let (_, json) = lint(d.path(), &["-o", "json", "cluster", "apps"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"]["name"] == "cm-no-tier")
        .unwrap();
    assert_eq!(finding["policy"], "configmap-limit.example.com");
    assert_eq!(finding["constraint"], "configmap-limit-binding.example.com");
    assert_eq!(
        finding["message"],
        "expression 'object.spec.template.metadata.labels.tier != ''' resulted in error: no such key: tier"
    );
    assert_eq!(finding["line"], line_of(d.path(), "cm-no-tier"));
    let (_, sarif) = lint(d.path(), &["-o", "sarif", "cluster", "apps"]);
    assert!(
        sarif.contains("\"ruleId\": \"demo-policy.example.com/demo-binding-test.example.com\""),
        "{sarif}"
    );
}

#[test]
fn policy_verify_takes_a_policy_and_its_binding() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fixture(dir);
    let text = std::fs::read_to_string(dir.join("policies/all.yaml")).unwrap();
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(name))
            .unwrap()
            .to_string()
    };
    std::fs::write(
        dir.join("policy.yaml"),
        find(
            "ValidatingAdmissionPolicy",
            "name: \"configmap-limit.example.com\"",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("binding.yaml"),
        find(
            "ValidatingAdmissionPolicyBinding",
            "name: \"configmap-limit-binding.example.com\"",
        ),
    )
    .unwrap();
    let deployment = |replicas: u32| {
        format!(
            "{{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {{\"name\": \"web\", \"namespace\": \"vap-docs-configmap\"}}, \"spec\": {{\"replicas\": {replicas}, \"template\": {{\"metadata\": {{\"labels\": {{\"tier\": \"web\"}}}}}}}}}}"
        )
    };
    std::fs::write(dir.join("small.json"), deployment(2)).unwrap();
    std::fs::write(dir.join("large.json"), deployment(9)).unwrap();
    std::fs::write(
        dir.join("params.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits, namespace: vap-docs-configmap, labels: {tier: web}}\ndata: {maxReplicas: \"4\"}\n",
    )
    .unwrap();
    // The binding selects namespaces by label: a case's inventory says what they are.
    std::fs::write(
        dir.join("namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: vap-docs-configmap, labels: {vap-corpus: configmap}}\n",
    )
    .unwrap();
    let suite = |large_violates: &str| {
        format!(
            "apiVersion: test.gatekeeper.sh/v1alpha1
kind: Suite
tests:
- name: configmap-limit
  template: policy.yaml
  constraint: binding.yaml
  cases:
  - name: small
    object: small.json
    inventory: [namespace.yaml, params.yaml]
    assertions: [{{violations: no}}]
  - name: large
    object: large.json
    inventory: [namespace.yaml, params.yaml]
    assertions: [{{violations: {large_violates}, message: 'at most 4 replicas, not 9'}}]
  - name: no-parameter-allows
    object: large.json
    inventory: [namespace.yaml]
    assertions: [{{violations: no}}]
"
        )
    };
    let verify = |suite: String| {
        std::fs::write(dir.join("suite.yaml"), suite).unwrap();
        sealgate()
            .current_dir(dir)
            .args(["policy", "verify", "suite.yaml"])
            .output()
            .unwrap()
    };
    let out = verify(suite("1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    let out = verify(suite("no"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 failed"), "{stdout}");
}
