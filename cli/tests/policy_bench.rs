//! `sealgate policy bench`, as gator bench users use it: the report's counts and violations, a
//! saved baseline, and `--compare` failing on a deliberately slowed template (and not on the
//! same template, under a minimum absolute threshold).

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn sealgate() -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.env_remove("SEALGATE_POLICY");
    c
}

/// A template that denies `:latest` images; `slow` adds work worth milliseconds per review.
fn template(slow: bool) -> String {
    let extra = if slow {
        "\n          count([i | some i in numbers.range(1, 200000)]) > 0"
    } else {
        ""
    };
    format!(
        r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8snolatest
spec:
  crd:
    spec:
      names:
        kind: K8sNoLatest
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8snolatest
        import future.keywords.in
        violation[{{"msg": msg}}] {{
          c := input.review.object.spec.containers[_]
          endswith(c.image, ":latest"){extra}
          msg := sprintf("container %v uses :latest", [c.name])
        }}
"#
    )
}

const CONSTRAINT: &str = "apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sNoLatest
metadata:
  name: no-latest
";

fn fixture(dir: &Path, slow: bool) {
    std::fs::write(dir.join("template.yaml"), template(slow)).unwrap();
    std::fs::write(dir.join("constraint.yaml"), CONSTRAINT).unwrap();
    let pods: Vec<String> = (0..4)
        .map(|i| {
            let image = if i % 2 == 0 { "nginx:latest" } else { "nginx:1.27" };
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: shop}}\nspec:\n  containers: [{{name: c, image: '{image}'}}]\n"
            )
        })
        .collect();
    std::fs::write(dir.join("pods.yaml"), pods.join("---\n")).unwrap();
}

fn bench(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = sealgate()
        .current_dir(dir)
        .args(["policy", "bench", "."])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_report_counts_what_gator_counts() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), false);
    let (code, json, _) = bench(
        d.path(),
        &["-n", "50", "--warmup", "2", "-o", "json", "--stats"],
    );
    assert_eq!(code, 0, "{json}");
    let r: Value = serde_json::from_str(&json).unwrap();
    let r = &r[0];
    assert_eq!(r["engine"], "auto");
    assert_eq!(r["templateCount"], 1);
    assert_eq!(r["constraintCount"], 1);
    assert_eq!(r["objectCount"], 4);
    assert_eq!(r["totalReviews"], 200);
    // Two of the four Pods use :latest, 50 times each.
    assert_eq!(r["violationCount"], 100);
    for k in ["min", "mean", "p50", "p95", "p99", "max"] {
        assert!(
            r["latencies"][k].as_str().is_some_and(|s| s.ends_with('s')),
            "{k}: {r}"
        );
    }
    assert_eq!(r["constraints"][0]["constraint"], "K8sNoLatest/no-latest");
    let (code, table, stderr) = bench(d.path(), &["-n", "20", "-c", "2"]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("20 iterations may not give meaningful p99"),
        "{stderr}"
    );
    for want in [
        "=== Benchmark Results: AUTO ===",
        "Concurrency:    2",
        "Throughput:",
        "P99:",
        "Violations Found:  40",
    ] {
        assert!(table.contains(want), "{want}\n{table}");
    }
    // As gator bench, an engine runs the templates that have its code: this one has only Rego,
    // so CEL has nothing to run.
    let (code, _, stderr) = bench(d.path(), &["-n", "10", "--engine", "cel"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no constraints whose template has CEL code"),
        "{stderr}"
    );
    let (code, json, _) = bench(d.path(), &["-n", "10", "--engine", "rego", "-o", "json"]);
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r[0]["templateCount"], 1);
    // Nothing to review is said, not measured.
    std::fs::remove_file(d.path().join("pods.yaml")).unwrap();
    let (code, _, stderr) = bench(d.path(), &["-n", "10"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no objects to review"), "{stderr}");
}

#[test]
fn compare_fails_on_a_slowed_template_and_not_on_the_same_one() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), false);
    let baseline = d.path().join("baseline.json");
    let (code, _, stderr) = bench(
        d.path(),
        &[
            "-n",
            "200",
            "-o",
            "json",
            "--save",
            baseline.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // The same template: any noise stays under a 50 ms minimum.
    let (code, out, _) = bench(
        d.path(),
        &[
            "-n",
            "200",
            "--compare",
            baseline.to_str().unwrap(),
            "--min-threshold",
            "50ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no regression against the baseline"), "{out}");
    // Slowed by milliseconds per review: past 10 % and 1 ms.
    fixture(d.path(), true);
    let (code, out, _) = bench(
        d.path(),
        &[
            "-n",
            "20",
            "--warmup",
            "1",
            "--compare",
            baseline.to_str().unwrap(),
            "--threshold",
            "10",
            "--min-threshold",
            "1ms",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REGRESSION auto p50:"), "{out}");
    assert!(out.contains("regression(s) past 10% and 1ms"), "{out}");
    // A baseline that is not one is refused before anything runs.
    std::fs::write(&baseline, "{\"not\": \"a baseline\"}").unwrap();
    let (code, _, stderr) = bench(
        d.path(),
        &["-n", "5", "--compare", baseline.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a baseline"), "{stderr}");
}
