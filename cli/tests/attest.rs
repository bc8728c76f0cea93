//! `sealgate attest keygen`, `sealgate lint --attest` and `sealgate verify-attestation`, end to
//! end with the real binary: a passing lint is attested and verifies, a failing one writes
//! nothing, an untrusted key or a changed object is refused, and messages name what differs.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;

fn sealgate(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.current_dir(dir)
        .env("COSIGN_PASSWORD", "correct horse")
        .env_remove("SEALGATE_ATTEST_KEY");
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `sealgate lint FILE --attest OUT --attest-key cosign.key` for revision 4f2c9e1 of `repo`.
fn lint_attest(dir: &Path, file: &str, out: &str, repo: &str) -> Command {
    let mut c = sealgate(dir);
    c.args(["lint", file, "--attest", out, "--attest-key", "cosign.key"])
        .args(["--revision", "4f2c9e1", "--repository", repo]);
    c
}

/// `sealgate verify-attestation att.yaml --key KEY --object OBJECT…`.
fn verify(dir: &Path, key: &str, objects: &[&str]) -> Command {
    let mut c = sealgate(dir);
    c.args(["verify-attestation", "att.yaml", "--key", key]);
    for o in objects {
        c.args(["--object", o]);
    }
    c
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: app
          image: registry.example.com/shop/web:1.4.2
          resources: {requests: {cpu: 0.1, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
";

#[test]
fn a_passing_lint_is_attested_and_the_attestation_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealgate(d)
        .args(["attest", "keygen"])
        .assert()
        .success()
        .stdout(contains("wrote cosign.key"));
    let key = std::fs::read_to_string(d.join("cosign.key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    sealgate(d)
        .args(["attest", "keygen"])
        .assert()
        .code(2)
        .stderr(contains("refusing to overwrite"));

    write(d, "app.yaml", DEPLOYMENT);
    lint_attest(d, "app.yaml", "att.yaml", "https://git.example.com/apps")
        .assert()
        .success()
        .stderr(contains("attested 1 object(s) of revision 4f2c9e1"));
    verify(d, "cosign.pub", &["app.yaml"])
        .args(["--max-age", "1d"])
        .assert()
        .success()
        .stdout(contains("revision 4f2c9e1 of https://git.example.com/apps"))
        .stdout(contains(
            "ok     apps/Deployment/shop/web: as attested at revision 4f2c9e1",
        ));

    // What the API server stores: defaults added, a quantity rewritten. Still as attested.
    write(
        d,
        "live.yaml",
        &DEPLOYMENT
            .replace("replicas: 2", "replicas: 2\n  revisionHistoryLimit: 10")
            .replace("cpu: 0.1", "cpu: 100m"),
    );
    verify(d, "cosign.pub", &["live.yaml"]).assert().success();
    // A declared field changed after review: refused, naming the field.
    write(
        d,
        "tampered.yaml",
        &DEPLOYMENT.replace("web:1.4.2", "web:6.6.6"),
    );
    verify(d, "cosign.pub", &["tampered.yaml"])
        .assert()
        .code(1)
        .stdout(contains(
            "denied apps/Deployment/shop/web: spec.template.spec.containers.app.image is changed from what was attested at revision 4f2c9e1",
        ));
    // Another key does not vouch for it.
    sealgate(d)
        .args([
            "attest",
            "keygen",
            "--output-key-prefix",
            "other",
            "--algorithm",
            "ed25519",
        ])
        .assert()
        .success();
    verify(d, "other.pub", &[])
        .assert()
        .code(1)
        .stdout(contains("its signature is by no trusted key"));
    // The wrong password opens nothing.
    lint_attest(d, "app.yaml", "again.yaml", "r")
        .env("COSIGN_PASSWORD", "wrong")
        .assert()
        .code(2)
        .stderr(contains("wrong password"));
    assert!(!d.join("again.yaml").exists());
}

#[test]
fn a_failing_lint_is_not_attested() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealgate(d).args(["attest", "keygen"]).assert().success();
    write(
        d,
        "bad.yaml",
        &DEPLOYMENT.replace("registry.example.com/shop/web:1.4.2", "nginx:latest"),
    );
    lint_attest(d, "bad.yaml", "att.yaml", "r")
        .assert()
        .code(1)
        .stderr(contains("not attested: the lint did not pass"));
    assert!(!d.join("att.yaml").exists());
    // Without COSIGN_PASSWORD the key is not guessed at.
    write(d, "app.yaml", DEPLOYMENT);
    lint_attest(d, "app.yaml", "att.yaml", "r")
        .env_remove("COSIGN_PASSWORD")
        .assert()
        .code(2)
        .stderr(contains("set COSIGN_PASSWORD"));
}

/// `--attest attestations/apps.yaml` and `-w reports/lint.sarif` into folders that do not exist
/// yet: they are made (exit 2, "No such file or directory", after the lint passed, before).
#[test]
fn output_folders_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealgate(d).args(["attest", "keygen"]).assert().success();
    write(d, "deploy.yaml", DEPLOYMENT);
    lint_attest(
        d,
        "deploy.yaml",
        "attestations/apps.yaml",
        "https://git.example.com/apps",
    )
    .args(["-o", "sarif", "-w", "reports/ci/lint.sarif"])
    .assert()
    .success();
    assert!(d.join("attestations/apps.yaml").is_file());
    assert!(d.join("reports/ci/lint.sarif").is_file());
    // Private output gets a private folder.
    write(
        d,
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: x}\n",
    );
    let keys = d.join("keys");
    sealgate(d)
        .args(["keys", "init", "--key-size", "2048", "--keys"])
        .arg(&keys)
        .assert()
        .success();
    sealgate(d)
        .args([
            "seal",
            "-f",
            "secret.yaml",
            "-w",
            "sealed/db.yaml",
            "--keys",
        ])
        .arg(&keys)
        .assert()
        .success();
    sealgate(d)
        .args([
            "unseal",
            "-f",
            "sealed/db.yaml",
            "-w",
            "plain/db.yaml",
            "--keys",
        ])
        .arg(&keys)
        .assert()
        .success();
    assert_eq!(
        sealgate_testkit::files::mode(d.join("plain")),
        0o700,
        "a folder made for plaintext is private"
    );
}

/// The attestation covers exactly what the lint judged: a rendered stream on stdin (`kustomize
/// build | sealgate lint - --attest …`), each item of a List as its own object, kustomize's own
/// configuration left out, and a ConstraintTemplate taken as a policy attested as the object the
/// agent applies. Each file is read once, so stdin needs no second read.
#[test]
fn what_the_lint_judged_is_what_is_attested_stdin_included() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealgate(d).args(["attest", "keygen"]).assert().success();
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
    let indent = |doc: &str| {
        doc.lines()
            .enumerate()
            .map(|(i, l)| format!("{}{l}\n", if i == 0 { "  - " } else { "    " }))
            .collect::<String>()
    };
    let template = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: k8snolabel}\nspec:\n  crd: {spec: {names: {kind: K8sNoLabel}}}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n        package k8snolabel\n        violation[{\"msg\": \"never\"}] { false }\n";
    let stream = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}---\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [app.yaml]\n---\n{template}",
        indent(DEPLOYMENT),
        indent(service)
    );
    lint_attest(d, "-", "att.yaml", "r")
        .write_stdin(stream)
        .assert()
        .success()
        .stderr(contains("attested 3 object(s) of revision 4f2c9e1"));
    write(d, "service.yaml", service);
    write(d, "template.yaml", template);
    verify(d, "cosign.pub", &["service.yaml", "template.yaml"])
        .assert()
        .success()
        .stdout(contains("ok     core/Service/shop/web"))
        .stdout(contains(
            "ok     templates.gatekeeper.sh/ConstraintTemplate//k8snolabel",
        ));
    let attestations = std::fs::read_to_string(d.join("att.yaml")).unwrap();
    assert!(
        !attestations.contains("kustomize.config.k8s.io"),
        "kustomize's configuration is not applied, so not attested"
    );
}
