//! gator, Gatekeeper's own CLI (built from `github.com/open-policy-agent/gatekeeper/v3`,
//! `testenv/go/gator`), as the peer of `sealgate policy verify`: the same suite files, case by
//! case. The corpus: the public Gatekeeper library (270 cases), sealgate's built-in policies
//! (`policies/`, those that use no sealgate extension), and suites with ExpansionTemplates.
//!
//! gator prefers a template's CEL where it has both (Gatekeeper 3.2x); sealgate evaluates the
//! Rego. Agreement on every case is the claim; the test prints `N agree, M differ`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sealgate_core::policy::EvalLimits;
use sealgate_core::policy::suite::{Outcome, find_suites, run_suite};
use sealgate_testkit::gatekeeper::{EXPAND_CRONJOBS, EXPAND_JOBS, EXPAND_WORKLOADS, library};

fn repo() -> PathBuf {
    sealgate_testkit::process::repo()
}

fn gator() -> Option<PathBuf> {
    sealgate_testenv::go::peer_binary(&sealgate_testenv::go::GATOR, "gator")
}

/// A case's outcome, as both tools can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

/// `gator verify -v SUITE`: the verdict of each (test, case). gator prints a test's
/// `=== RUN   TEST`, then its cases indented (`    --- PASS: CASE`), then the test's result.
fn gator_verdicts(gator: &Path, suite: &Path) -> BTreeMap<Key, Verdict> {
    let out = Command::new(gator)
        .args(["verify", "-v"])
        .arg(suite)
        .output()
        .expect("gator runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut test = String::new();
    let mut cases = 0;
    let mut verdicts = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("=== RUN   ") {
            test = t.trim().to_string();
            cases = 0;
        } else if let Some(rest) = line.strip_prefix("--- ") {
            // A test without cases (`invalid: true`): its own verdict, as sealgate reports it.
            if cases == 0 {
                let verdict = if rest.starts_with("PASS") {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                };
                verdicts.push((test.clone(), String::new(), verdict));
            }
        } else if let Some(t) = line.strip_prefix("=== SKIP  ") {
            verdicts.push((t.trim().to_string(), String::new(), Verdict::Skip));
        } else if let Some(rest) = line.strip_prefix("    --- ") {
            let (verdict, name) = match rest.split_once(": ") {
                Some(("PASS", n)) => (Verdict::Pass, n),
                Some(("FAIL", n)) => (Verdict::Fail, n),
                _ => continue,
            };
            let name = name.split('\t').next().unwrap_or(name).trim();
            cases += 1;
            verdicts.push((test.clone(), name.to_string(), verdict));
        } else if let Some(c) = line.strip_prefix("    === SKIP  ") {
            verdicts.push((test.clone(), c.trim().to_string(), Verdict::Skip));
        }
    }
    keyed(verdicts)
}

/// (test, case, n): the n-th case of that name in the test (the library repeats some names).
type Key = (String, String, usize);

fn keyed(verdicts: Vec<(String, String, Verdict)>) -> BTreeMap<Key, Verdict> {
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    verdicts
        .into_iter()
        .map(|(test, case, v)| {
            let n = seen.entry((test.clone(), case.clone())).or_default();
            *n += 1;
            ((test, case, *n), v)
        })
        .collect()
}

/// `sealgate policy verify`'s verdict of each (test, case) of one suite.
fn sealgate_verdicts(suite: &Path) -> BTreeMap<Key, Verdict> {
    keyed(
        run_suite(suite, None, EvalLimits::default())
            .into_iter()
            .map(|r| {
                let v = match r.outcome {
                    Outcome::Pass => Verdict::Pass,
                    Outcome::Fail(_) => Verdict::Fail,
                    Outcome::Skip => Verdict::Skip,
                };
                (r.test, r.case, v)
            })
            .collect(),
    )
}

/// Both tools on every suite under `root`: (agree, differences described).
fn compare(gator: &Path, suites: &[PathBuf]) -> (usize, Vec<String>) {
    let mut agree = 0;
    let mut differ = Vec::new();
    for suite in suites {
        // gator reads through an fs.FS, which refuses `..` in a path.
        let suite = &std::fs::canonicalize(suite).unwrap();
        let ours = sealgate_verdicts(suite);
        let theirs = gator_verdicts(gator, suite);
        assert!(
            !theirs.is_empty(),
            "gator printed no case for {}",
            suite.display()
        );
        for key in ours
            .keys()
            .chain(theirs.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (ours.get(key), theirs.get(key)) {
                (Some(a), Some(b)) if a == b => agree += 1,
                (a, b) => differ.push(format!(
                    "{} {}/{}: sealgate {a:?}, gator {b:?}",
                    suite.display(),
                    key.0,
                    key.1
                )),
            }
        }
    }
    (agree, differ)
}

#[test]
fn gator_and_sealgate_agree_on_the_gatekeeper_library() {
    let (Some(gator), Some(lib)) = (gator(), library()) else {
        return;
    };
    let suites = find_suites(&lib);
    assert!(suites.len() >= 45, "{} suites", suites.len());
    let (agree, differ) = compare(&gator, &suites);
    eprintln!(
        "  gatekeeper-library: {agree} agree, {} differ ({} suites)",
        differ.len(),
        suites.len()
    );
    assert!(agree >= 270, "{agree}");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn gator_and_sealgate_agree_on_the_builtin_policies() {
    let Some(gator) = gator() else { return };
    // A policy calling sealgate's own extensions (sealgate.secret_reasons) cannot run on gator.
    let (portable, own): (Vec<PathBuf>, Vec<PathBuf>) = find_suites(&repo().join("policies"))
        .into_iter()
        .partition(|s| {
            let template = s.with_file_name("template.yaml");
            !std::fs::read_to_string(template)
                .unwrap_or_default()
                .contains("sealgate.secret_reasons(")
        });
    assert!(portable.len() >= 7, "{portable:?}");
    let (agree, differ) = compare(&gator, &portable);
    eprintln!(
        "  policies/: {agree} agree, {} differ ({} suites; {} use sealgate's extensions: {})",
        differ.len(),
        portable.len(),
        own.len(),
        own.iter()
            .map(|s| s.parent().unwrap().file_name().unwrap().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Suites with ExpansionTemplates: the library's pod-security templates judging workloads.
#[test]
fn gator_and_sealgate_agree_on_expansion_suites() {
    let (Some(gator), Some(lib)) = (gator(), library()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let psp = lib.join("pod-security-policy");
    for (name, sub, sample) in [
        (
            "privileged",
            "privileged-containers",
            "psp-privileged-container",
        ),
        ("host-namespaces", "host-namespaces", "psp-host-namespace"),
        ("capabilities", "capabilities", "psp-capabilities-baseline"),
    ] {
        std::fs::copy(
            psp.join(sub).join("template.yaml"),
            d.join(format!("{name}.template.yaml")),
        )
        .unwrap();
        std::fs::copy(
            psp.join(sub)
                .join("samples")
                .join(sample)
                .join("constraint.yaml"),
            d.join(format!("{name}.constraint.yaml")),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("expansion.yaml"),
        format!("{EXPAND_WORKLOADS}---\n{EXPAND_CRONJOBS}---\n{EXPAND_JOBS}"),
    )
    .unwrap();
    for (file, text) in OBJECTS {
        std::fs::write(d.join(file), text).unwrap();
    }
    std::fs::write(d.join("suite.yaml"), SUITE).unwrap();
    let (agree, differ) = compare(&gator, &[d.join("suite.yaml")]);
    eprintln!("  expansion suites: {agree} agree, {} differ", differ.len());
    assert!(agree >= 8, "{agree}");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// A Deployment of nginx, privileged or not (a macro: `concat!` takes only literals).
macro_rules! deployment {
    () => {
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: nginx
          image: nginx:1.27
"
    };
}
const PLAIN_DEPLOYMENT: &str = deployment!();
const PRIVILEGED_DEPLOYMENT: &str = concat!(
    deployment!(),
    "          securityContext: {privileged: true}\n"
);

const OBJECTS: &[(&str, &str)] = &[
    ("privileged-deployment.yaml", PRIVILEGED_DEPLOYMENT),
    ("plain-deployment.yaml", PLAIN_DEPLOYMENT),
    (
        "host-pid-statefulset.yaml",
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  serviceName: db
  template:
    metadata: {labels: {app: db}}
    spec:
      hostPID: true
      containers:
        - name: db
          image: postgres:17
",
    ),
    (
        "privileged-cronjob.yaml",
        "apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ops}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: backup
              image: busybox:1.37
              securityContext:
                privileged: true
                capabilities: {add: [SYS_ADMIN]}
",
    ),
    (
        "privileged-pod.yaml",
        "apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: shop}
spec:
  containers:
    - name: shell
      image: busybox:1.37
      securityContext: {privileged: true}
",
    ),
];

const SUITE: &str = "kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
metadata:
  name: expansion
tests:
- name: privileged
  template: privileged.template.yaml
  constraint: privileged.constraint.yaml
  expansion: expansion.yaml
  cases:
  - name: privileged-deployment
    object: privileged-deployment.yaml
    assertions:
    - violations: 1
      message: 'Implied by expand-deployments'
  - name: plain-deployment
    object: plain-deployment.yaml
    assertions:
    - violations: no
  - name: privileged-cronjob-through-its-job
    object: privileged-cronjob.yaml
    assertions:
    - violations: 1
      message: 'Implied by expand-jobs'
  - name: privileged-pod
    object: privileged-pod.yaml
    assertions:
    - violations: 1
- name: host-namespaces
  template: host-namespaces.template.yaml
  constraint: host-namespaces.constraint.yaml
  expansion: expansion.yaml
  cases:
  - name: host-pid-statefulset
    object: host-pid-statefulset.yaml
    assertions:
    - violations: yes
  - name: plain-deployment
    object: plain-deployment.yaml
    assertions:
    - violations: no
- name: capabilities
  template: capabilities.template.yaml
  constraint: capabilities.constraint.yaml
  expansion: expansion.yaml
  cases:
  - name: cronjob-adds-sys-admin
    object: privileged-cronjob.yaml
    assertions:
    - violations: yes
  - name: plain-deployment
    object: plain-deployment.yaml
    assertions:
    - violations: no
- name: no-expansion
  template: privileged.template.yaml
  constraint: privileged.constraint.yaml
  cases:
  - name: privileged-deployment-is-not-seen
    object: privileged-deployment.yaml
    assertions:
    - violations: no
";
