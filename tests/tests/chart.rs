//! `charts/sealgate` with the real `helm` (Helm 4, built from `testenv/go/helm`) and `kubectl`
//! (`testenv/go/kubernetes`): lint, schema, what it renders, and that it renders what `deploy/`
//! holds. Installing it into a real API server is the real-cluster tier's `chart::` test.
//!
//! One source of truth: the chart and `deploy/` must not drift. Each configuration of the chart
//! that has a kustomize twin renders object for object what `kubectl kustomize` builds, up to the
//! labels Helm adds (chart, release, managed-by, version) and the annotation that keeps the CRDs
//! on `helm uninstall`. The files both read (CRDs, policies, alerts, dashboard) are copies, kept
//! equal here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sealgate_testenv::go::{helm_command, peer_binary};
use sealgate_testkit::process::succeeded;
use serde_json::Value;

fn repo() -> PathBuf {
    sealgate_testkit::process::repo()
}

fn chart() -> PathBuf {
    repo().join("charts/sealgate")
}

/// `helm`, with its cache, config and data in a directory of its own (not the user's).
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Option<Helm> {
        Some(Helm {
            bin: peer_binary(&sealgate_testenv::go::HELM, "helm")?,
            home: tempfile::tempdir().unwrap(),
        })
    }

    /// `helm ARGS`: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = helm_command(&self.bin, self.home.path())
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("helm runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `helm template sealgate charts/sealgate -n sealgate-system VALUES…`, which must succeed.
    fn template(&self, values: &[&str]) -> String {
        let chart = chart();
        let mut args = vec![
            "template",
            "sealgate",
            chart.to_str().unwrap(),
            "-n",
            "sealgate-system",
        ];
        args.extend(values);
        let (ok, out, err) = self.run(&args);
        assert!(ok, "helm {}: {err}", args.join(" "));
        out
    }
}

/// `kubectl kustomize DIR`, which must succeed.
fn kustomize(kubectl: &Path, dir: &str) -> String {
    let out = succeeded(
        format!("kubectl kustomize {dir}"),
        Command::new(kubectl)
            .args(["kustomize", &repo().join(dir).to_string_lossy()])
            .output(),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The labels Helm's conventions add, and the annotation that keeps the CRDs on uninstall: the
/// only differences allowed between the chart and `deploy/`.
const HELM_LABELS: &[&str] = &[
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];
const HELM_ANNOTATIONS: &[&str] = &["helm.sh/resource-policy"];

/// The objects of a multi-document YAML stream by apiVersion, kind, namespace and name, with
/// Helm's own labels and annotations taken out.
fn objects(text: &str) -> BTreeMap<String, Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("rendered YAML parses");
    let mut out = BTreeMap::new();
    for mut doc in docs.into_iter().filter(|d| d.is_object()) {
        let meta = doc["metadata"].as_object_mut().expect("metadata");
        for (field, names) in [("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)] {
            if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                for n in names {
                    map.remove(*n);
                }
                if map.is_empty() {
                    meta.remove(field);
                }
            }
        }
        let key = format!(
            "{} {} {}/{}",
            doc["apiVersion"].as_str().unwrap_or_default(),
            doc["kind"].as_str().unwrap_or_default(),
            doc["metadata"]["namespace"].as_str().unwrap_or("-"),
            doc["metadata"]["name"].as_str().unwrap_or_default(),
        );
        assert!(out.insert(key.clone(), doc).is_none(), "{key} twice");
    }
    out
}

/// What differs between two renderings, object by object ("" when nothing does).
fn differences(left: (&str, &str), right: (&str, &str)) -> String {
    let (a, b) = (objects(left.1), objects(right.1));
    let mut out = String::new();
    for key in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                out += &format!(
                    "{key} differs:\n--- {}\n{}\n--- {}\n{}\n",
                    left.0,
                    serde_json::to_string_pretty(x).unwrap(),
                    right.0,
                    serde_json::to_string_pretty(y).unwrap()
                );
            }
            (Some(_), None) => out += &format!("{key} only in {}\n", left.0),
            (None, _) => out += &format!("{key} only in {}\n", right.0),
        }
    }
    out
}

#[test]
fn the_chart_files_are_copies_of_deploys() {
    let pairs = [
        ("files/crds", "deploy/crds"),
        ("files/policies", "deploy/base/webhook/policies"),
    ];
    let yaml_files = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    };
    let mut drift = Vec::new();
    for (ours, theirs) in pairs {
        let (a, b) = (
            yaml_files(&chart().join(ours)),
            yaml_files(&repo().join(theirs)),
        );
        assert!(!b.is_empty(), "{theirs} is empty");
        if a != b {
            drift.push(format!("charts/sealgate/{ours} differs from {theirs}"));
        }
    }
    for (ours, theirs) in [
        (
            "files/prometheusrule.yaml",
            "deploy/components/monitoring/prometheusrule.yaml",
        ),
        (
            "files/dashboard.json",
            "deploy/components/monitoring/dashboard.json",
        ),
    ] {
        if std::fs::read(chart().join(ours)).unwrap() != std::fs::read(repo().join(theirs)).unwrap()
        {
            drift.push(format!("charts/sealgate/{ours} differs from {theirs}"));
        }
    }
    assert!(
        drift.is_empty(),
        "{}\ncopy deploy/'s files over the chart's (deploy/ is the source; see docs/decisions.md)",
        drift.join("\n")
    );
}

/// Each chart configuration with a kustomize twin renders the same objects.
#[test]
fn the_chart_renders_what_deploy_holds() {
    let (Some(helm), Some(kubectl)) = (
        Helm::new(),
        peer_binary(&sealgate_testenv::go::KUBERNETES, "kubectl"),
    ) else {
        return;
    };
    // The chart leaves the release namespace to `helm install --create-namespace` by default;
    // deploy/ holds it.
    let ns = "namespace.create=true";
    let twins: &[(&str, &[&str])] = &[
        ("deploy", &["--set", ns]),
        (
            "deploy/overlays/cert-manager",
            &["--set", ns, "--set", "tls.mode=cert-manager"],
        ),
        (
            "deploy/overlays/network-policy",
            &["--set", ns, "--set", "networkPolicy.enabled=true"],
        ),
        (
            "deploy/overlays/monitoring",
            &[
                "--set",
                ns,
                "--set",
                "monitoring.prometheusRule.enabled=true",
                "--set",
                "monitoring.dashboard.enabled=true",
            ],
        ),
    ];
    let mut report = String::new();
    for (dir, values) in twins {
        let kustomized = kustomize(&kubectl, dir);
        let rendered = helm.template(values);
        let n = objects(&kustomized).len();
        assert!(n >= 20, "{dir}: only {n} objects");
        let diff = differences(
            (&format!("kubectl kustomize {dir}"), &kustomized),
            (&format!("helm template {}", values.join(" ")), &rendered),
        );
        if !diff.is_empty() {
            report += &diff;
        }
        eprintln!("  {dir}: {n} objects, the same as the chart renders them");
    }
    assert!(report.is_empty(), "the chart and deploy/ differ:\n{report}");
    // The comparison sees a difference: the chart with another failure policy is not deploy/.
    let other = helm.template(&["--set", ns, "--set", "webhook.failurePolicy=Ignore"]);
    let diff = differences(
        ("deploy", &kustomize(&kubectl, "deploy")),
        ("chart", &other),
    );
    assert!(
        diff.contains("ValidatingWebhookConfiguration -/sealgate-webhook differs"),
        "{diff}"
    );
}

#[test]
fn helm_lint_strict_passes_with_default_and_every_option() {
    let Some(helm) = Helm::new() else { return };
    let chart = chart();
    let every = chart.join("ci/every-option-values.yaml");
    for extra in [vec![], vec!["-f", every.to_str().unwrap()]] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend(&extra);
        let (ok, out, err) = helm.run(&args);
        assert!(ok, "helm {}:\n{out}{err}", args.join(" "));
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }
}

/// The chart as installed (defaults) and with every option set passes sealgate's own policies
/// (`sealgate lint`, the webhook's built-in bundle) and the Kubernetes 1.33 schemas.
#[test]
fn the_rendered_chart_passes_sealgate_lint_and_the_schema_check() {
    let Some(helm) = Helm::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let every = chart().join("ci/every-option-values.yaml");
    let renderings = [
        (
            "default.yaml",
            helm.template(&["--set", "namespace.create=true"]),
        ),
        (
            "every-option.yaml",
            helm.template(&["-f", every.to_str().unwrap()]),
        ),
    ];
    let mut files = Vec::new();
    for (name, text) in &renderings {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    // Every value reaches the objects.
    let every_option = &renderings[1].1;
    for want in [
        "registry.example.com/platform/sealgate@sha256:0123456789abcdef",
        "--provenance-required",
        "--attestation-key=/etc/sealgate/attestation-keys/ci-previous.pem@2026-06-30T00:00:00Z",
        "--exempt-namespace=monitoring",
        "failurePolicy: Ignore",
        "timeoutSeconds: 10",
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "name: sealgate-dashboard",
        "cidr: fd00::/64",
        "cert-manager.io/inject-ca-from: sealgate-system/sealgate-webhook",
        "kind: ClusterIssuer",
        "secretName: sealgate-webhook-tls",
        "/etc/sealgate/policies-team-policies",
        "enforcementAction: warn",
        "minAvailable: 50%",
        "priorityClassName: system-cluster-critical",
    ] {
        assert!(
            every_option.contains(want),
            "every-option rendering lacks {want:?}"
        );
    }
    // cert-manager mode: no self-signed TLS and none of the rights it needs.
    let objs = objects(every_option);
    assert!(!every_option.contains("--self-signed-tls"));
    assert!(
        !objs.contains_key("rbac.authorization.k8s.io/v1 Role sealgate-system/sealgate-webhook")
    );
    assert!(objs.contains_key("v1 ConfigMap monitoring/sealgate-dashboard"));

    succeeded(
        "sealgate lint on the rendered chart",
        Command::new(sealgate_testkit::process::bin_dir().join("sealgate"))
            .arg("lint")
            .args(&files)
            .output(),
    );

    let Some(python) = validator_python() else {
        sealgate_testkit::peer::missing(
            "kubernetes-validate (pip install kubernetes-validate==1.33.0; or set SEALGATE_PYTHON to a python that has it)",
        );
        return;
    };
    succeeded(
        "the Kubernetes 1.33 schemas' check of the rendered chart",
        Command::new(python)
            .arg(repo().join(".ci/validate-manifests.py"))
            .arg("--crd")
            .arg(repo().join("deploy/crds/sealedsecrets.sealgate.dev.yaml"))
            .args(&files)
            .output(),
    );
}

/// A python with kubernetes-validate: `SEALGATE_PYTHON`, else the venv `.ci/run` makes.
fn validator_python() -> Option<PathBuf> {
    let candidates = std::env::var_os("SEALGATE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/sealgate/venv/bin/python")),
        );
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import kubernetes_validate"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Bad values are refused before anything renders, naming the value.
#[test]
fn bad_values_are_refused_naming_the_value() {
    let Some(helm) = Helm::new() else { return };
    let chart = chart();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "webhook.failurePolicy=Sometimes"],
            "/webhook/failurePolicy",
        ),
        (&["--set", "webhok.replicas=3"], "'webhok' not allowed"),
        (
            &["--set", "webhook.timeoutSeconds=31"],
            "/webhook/timeoutSeconds",
        ),
        (&["--set", "webhook.deadline=2.5"], "/webhook/deadline"),
        (
            &["--set", "webhook.deadline=6s"],
            "webhook.deadline (6s) must be below webhook.timeoutSeconds (5 s)",
        ),
        (&["--set", "tls.mode=vault"], "/tls/mode"),
        (
            &[
                "--set",
                "provenance.attestationKeys[0].name=ci,provenance.attestationKeys[0].key=not-a-key",
            ],
            "/provenance/attestationKeys/0/key",
        ),
        (
            &["--set", "networkPolicy.apiServerCIDRs[0]=10.0.0.1"],
            "/networkPolicy/apiServerCIDRs/0",
        ),
        (
            // (Helm 4.3 puts this error at another value's path; the name is right.)
            &["--set", "policies.extra.run\\.sh=x"],
            "'run.sh' does not match pattern",
        ),
    ];
    for (values, want) in cases {
        let mut args = vec!["template", "sealgate", chart.to_str().unwrap()];
        args.extend(values.iter());
        let (ok, _, err) = helm.run(&args);
        assert!(!ok, "helm {} was accepted", args.join(" "));
        assert!(err.contains(want), "helm {}: {err}", args.join(" "));
    }
    // Two keys of one name would overwrite each other's file: refused by the template.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twice.yaml");
    let key = "      -----BEGIN PUBLIC KEY-----\n      MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+J29BoksK89SoUF19mIr9kSkpTdv\n      Kl4DN0gtQNknF6icXQgqUb7s56KHnvw7J26XtNEl5lFe42u4x81H92Q4ew==\n      -----END PUBLIC KEY-----\n";
    std::fs::write(
        &file,
        format!("provenance:\n  attestationKeys:\n  - name: ci\n    key: |\n{key}  - name: ci\n    key: |\n{key}"),
    )
    .unwrap();
    let (ok, _, err) = helm.run(&[
        "template",
        "sealgate",
        chart.to_str().unwrap(),
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("the name \"ci\" is used twice"),
        "{err}"
    );
}
