//! Conformance with code we did not write: the public Gatekeeper library
//! (`../shared/corpora/gatekeeper-library`, see its SOURCE.md), unchanged, through
//! `sealgate policy verify` (all 270 gator cases) and through `sealgate lint` end to end (every
//! case it can express: one object, its template and constraint, its inventory).
//!
//! Where the corpus is absent (a user's clone), the tests say how to get it and pass, unless
//! `SEALGATE_REQUIRE_PEERS` is set (`.ci/run`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use assert_cmd::Command;
use sealgate_testkit::gatekeeper::library;
use serde_json::Value;

const CASES: usize = 270;

fn sealgate() -> Command {
    let mut c = Command::cargo_bin("sealgate").unwrap();
    c.env_remove("SEALGATE_POLICY");
    c
}

fn docs(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sealgate_core::manifest::parse(&bytes, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|d| d.value)
        .collect()
}

#[test]
fn every_library_case_passes_policy_verify() {
    let Some(lib) = library() else { return };
    let out = sealgate()
        .args(["policy", "verify"])
        .arg(format!("{}/...", lib.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary = stdout.lines().last().unwrap_or("").to_string();
    println!("gatekeeper-library through policy verify: {summary}");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        summary,
        format!("{CASES} passed, 0 failed"),
        "failing cases:\n{}",
        failures.join("\n")
    );
    assert!(out.status.success());
}

/// The library's templates with CEL (K8sNativeValidation) beside their Rego: every case of their
/// suites with each engine forced. With `auto` (above) their CEL runs, as in Gatekeeper.
#[test]
fn the_dual_templates_pass_with_either_engine_forced() {
    let Some(lib) = library() else { return };
    let mut suites = Vec::new();
    for dir in ["general", "pod-security-policy"] {
        for e in std::fs::read_dir(lib.join(dir)).unwrap().flatten() {
            let template =
                std::fs::read_to_string(e.path().join("template.yaml")).unwrap_or_default();
            if template.contains("engine: K8sNativeValidation")
                && e.path().join("suite.yaml").is_file()
            {
                suites.push(e.path().join("suite.yaml"));
            }
        }
    }
    assert!(suites.len() >= 15, "{} suites with CEL", suites.len());
    for code in ["cel", "rego"] {
        let out = sealgate()
            .args(["policy", "verify", "--template-code", code])
            .args(&suites)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let summary = stdout.lines().last().unwrap_or("").to_string();
        println!(
            "gatekeeper-library, {} templates with CEL, --template-code {code}: {summary}",
            suites.len()
        );
        let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(
            out.status.success() && summary.ends_with(" passed, 0 failed"),
            "--template-code {code}: {summary}\n{}",
            failures.join("\n")
        );
    }
}

/// One gator case as `sealgate lint` runs it.
struct Case {
    name: String,
    args: Vec<PathBuf>,
    inventory: Vec<PathBuf>,
    assertions: Vec<Value>,
}

fn lint_cases(lib: &Path) -> Vec<Case> {
    let mut suites = Vec::new();
    for dir in ["general", "pod-security-policy"] {
        for e in std::fs::read_dir(lib.join(dir)).unwrap().flatten() {
            let s = e.path().join("suite.yaml");
            if s.is_file() {
                suites.push(s);
            }
        }
    }
    suites.sort();
    let mut out = Vec::new();
    for suite in suites {
        let base = suite.parent().unwrap();
        for doc in docs(&suite) {
            for test in doc["tests"].as_array().into_iter().flatten() {
                // A constraint expected to be refused has no cases to lint.
                if test["invalid"] == Value::Bool(true) {
                    continue;
                }
                let template = base.join(test["template"].as_str().unwrap());
                let constraint = base.join(test["constraint"].as_str().unwrap());
                for case in test["cases"].as_array().into_iter().flatten() {
                    out.push(Case {
                        name: format!(
                            "{}: {}/{}",
                            base.file_name().unwrap().to_string_lossy(),
                            test["name"].as_str().unwrap_or(""),
                            case["name"].as_str().unwrap_or("")
                        ),
                        args: vec![
                            "-p".into(),
                            template.clone(),
                            "-p".into(),
                            constraint.clone(),
                            base.join(case["object"].as_str().unwrap()),
                        ],
                        inventory: case["inventory"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|i| base.join(i.as_str().unwrap()))
                            .collect(),
                        assertions: case["assertions"].as_array().cloned().unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

/// Check gator's assertions against lint's JSON findings; `None` when they hold.
fn check(case: &Case, report: &Value) -> Option<String> {
    let messages: Vec<&str> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["message"].as_str().unwrap_or(""))
        .collect();
    for a in &case.assertions {
        let re = a["message"].as_str().map(|m| regex::Regex::new(m).unwrap());
        let n = messages
            .iter()
            .filter(|m| re.as_ref().is_none_or(|re| re.is_match(m)))
            .count();
        let ok = match &a["violations"] {
            Value::Null => n > 0,
            Value::String(s) if s == "yes" => n > 0,
            Value::String(s) if s == "no" => n == 0,
            Value::Number(k) => k.as_u64() == Some(n as u64),
            other => return Some(format!("unknown assertion {other}")),
        };
        if !ok {
            return Some(format!("assertion {a} failed: {messages:?}"));
        }
    }
    None
}

#[test]
fn library_cases_pass_through_lint_end_to_end() {
    let Some(lib) = library() else { return };
    let cases = lint_cases(&lib);
    let failures = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let mut cmd = sealgate();
                    cmd.args(["lint", "--no-builtin", "-o", "json"]);
                    for inv in &case.inventory {
                        cmd.arg("--inventory").arg(inv);
                    }
                    let out = cmd.args(&case.args).output().unwrap();
                    let verdict = match serde_json::from_slice::<Value>(&out.stdout) {
                        // Exit 1 exactly when a (deny) violation was found.
                        Ok(report) => check(case, &report).or_else(|| {
                            let found = report["summary"]["failed"].as_u64().unwrap_or(0) > 0;
                            (out.status.code() != Some(if found { 1 } else { 0 }))
                                .then(|| format!("exit code {:?}", out.status.code()))
                        }),
                        Err(_) => Some(format!(
                            "exit {:?}: {}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        )),
                    };
                    if let Some(why) = verdict {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {why}", case.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "gatekeeper-library through sealgate lint: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(cases.len() >= 250, "only {} cases found", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
