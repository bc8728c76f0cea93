//! `gator verify` Suite files (`test.gatekeeper.sh/v1alpha1`): each test pairs a template with a
//! constraint; each case evaluates one object (or AdmissionReview) and asserts on the violations.
//! A test may instead pair a ValidatingAdmissionPolicy (`template`) with one binding
//! (`constraint`); a case's `inventory` then holds its parameters too, and every finding counts,
//! whatever the binding's `validationActions` (as every violation does in gator).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Action, BundleBuilder, Enforcement, EvalLimits, Point, Review, TemplateCode};
use crate::manifest;

/// The outcome of one case (or of a test that failed before its cases ran).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The suite file.
    pub suite: String,
    /// The test's name.
    pub test: String,
    /// The case's name.
    pub case: String,
    /// What happened.
    pub outcome: Outcome,
}

/// A case's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The case's assertions hold.
    Pass,
    /// They do not; why.
    Fail(String),
    /// The test is marked `skip`.
    Skip,
}

/// Suite files under `path` (a file, or a directory searched recursively; `dir/...` as in gator).
pub fn find_suites(path: &Path) -> Vec<PathBuf> {
    let p = path.to_string_lossy();
    let path = Path::new(
        p.strip_suffix("/...")
            .or_else(|| p.strip_suffix("..."))
            .unwrap_or(&p),
    );
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut out = Vec::new();
    walk(path, &mut out);
    out.sort();
    out
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                walk(&p, out);
            }
        }
    } else if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) && std::fs::read_to_string(path).is_ok_and(|t| t.contains("test.gatekeeper.sh/"))
    {
        out.push(path.to_path_buf());
    }
}

fn read_docs(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    manifest::parse(&bytes, &Default::default())
        .map(|d| d.into_iter().map(|d| d.value).collect())
        .map_err(|e| format!("{}:{e}", path.display()))
}

/// Suite paths are relative to the suite file; absolute paths are refused, as gator does.
fn resolve(base: &Path, rel: &str) -> Result<PathBuf, String> {
    if Path::new(rel).is_absolute() {
        return Err(format!("{rel}: absolute paths are not allowed in a Suite"));
    }
    Ok(base.join(rel))
}

/// Run every test of one suite file. Tests whose name does not match `filter` are skipped.
pub fn run_suite(
    path: &Path,
    filter: Option<&regex::Regex>,
    limits: EvalLimits,
) -> Vec<CaseResult> {
    run_suite_with(path, filter, limits, TemplateCode::Auto)
}

/// [`run_suite`], evaluating templates' `code` as `code` chooses (`--template-code`).
pub fn run_suite_with(
    path: &Path,
    filter: Option<&regex::Regex>,
    limits: EvalLimits,
    code: TemplateCode,
) -> Vec<CaseResult> {
    let suite = path.display().to_string();
    let fail = |test: &str, case: &str, why: String| CaseResult {
        suite: suite.clone(),
        test: test.to_string(),
        case: case.to_string(),
        outcome: Outcome::Fail(why),
    };
    let docs = match read_docs(path) {
        Ok(d) => d,
        Err(e) => return vec![fail("", "", e)],
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for doc in docs {
        let is_suite = doc.get("kind").and_then(Value::as_str) == Some("Suite")
            && doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("test.gatekeeper.sh/"));
        if !is_suite || doc.get("skip") == Some(&Value::Bool(true)) {
            continue;
        }
        for test in doc
            .get("tests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = test
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string();
            if test.get("skip") == Some(&Value::Bool(true))
                || filter.is_some_and(|f| !f.is_match(&name))
            {
                out.push(CaseResult {
                    suite: suite.clone(),
                    test: name,
                    case: String::new(),
                    outcome: Outcome::Skip,
                });
                continue;
            }
            out.extend(run_test(&suite, base, &name, test, limits, code));
        }
    }
    out
}

fn run_test(
    suite: &str,
    base: &Path,
    name: &str,
    test: &Value,
    limits: EvalLimits,
    code: TemplateCode,
) -> Vec<CaseResult> {
    let result = |case: &str, outcome| CaseResult {
        suite: suite.to_string(),
        test: name.to_string(),
        case: case.to_string(),
        outcome,
    };
    let file = |key: &str| -> Result<(String, String), String> {
        let rel = test
            .get(key)
            .and_then(Value::as_str)
            .ok_or(format!("test has no {key}"))?;
        let p = resolve(base, rel)?;
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        Ok((p.display().to_string(), text))
    };
    let (template, constraint) = match (file("template"), file("constraint")) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => return vec![result("", Outcome::Fail(e))],
    };
    // gator's `expansion`: a file or directory of ExpansionTemplates for the test's cases.
    let expansion = match test.get("expansion").and_then(Value::as_str) {
        None => None,
        Some(rel) => match resolve(base, rel) {
            Ok(p) => Some(p),
            Err(e) => return vec![result("", Outcome::Fail(e))],
        },
    };
    let build = |inventory: Vec<Value>| {
        let mut b = BundleBuilder::new(limits);
        b.template_code(code);
        // A test may be a ValidatingAdmissionPolicy (`template`) and its binding (`constraint`).
        b.admission_policies(true);
        b.add_text(&template.0, &template.1);
        b.add_text(&constraint.0, &constraint.1);
        if let Some(p) = &expansion {
            b.add_path(p);
        }
        b.add_inventory(inventory);
        b.build().map(|mut bundle| {
            // As gator: constraints are evaluated at gator's point (a scoped constraint without
            // an action there is not), and every violation counts, whatever its action.
            for c in &mut bundle.constraints {
                if c.enforcement.at(Point::Ci).is_some() {
                    c.enforcement = Enforcement::Action(Action::Deny);
                }
            }
            bundle
        })
    };
    let expect_invalid = test.get("invalid") == Some(&Value::Bool(true));
    let base_bundle = build(Vec::new());
    if expect_invalid {
        return vec![result(
            "",
            match base_bundle {
                Err(_) => Outcome::Pass,
                Ok(_) => {
                    Outcome::Fail("expected the constraint to be invalid, but it loaded".into())
                }
            },
        )];
    }
    let base_bundle = match base_bundle {
        Ok(b) => b,
        Err(e) => {
            return vec![result("", Outcome::Fail(e.to_string()))];
        }
    };
    let bindings: usize = base_bundle
        .admission
        .policies
        .iter()
        .map(|p| p.bindings.len())
        .sum();
    if base_bundle.constraints.is_empty() && bindings == 0 {
        return vec![result(
            "",
            Outcome::Fail(format!(
                "{} holds no Constraint (nor a ValidatingAdmissionPolicyBinding)",
                constraint.0
            )),
        )];
    }
    // gator reads the first document of the file only: refused rather than judged differently.
    if base_bundle.constraints.len() + bindings > 1 {
        return vec![result(
            "",
            Outcome::Fail(format!(
                "{} holds {} Constraints or bindings; a suite's test takes one (gator reads only the first): split the file",
                constraint.0,
                base_bundle.constraints.len() + bindings
            )),
        )];
    }
    let mut out = Vec::new();
    for case in test
        .get("cases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cname = case
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        if case.get("skip") == Some(&Value::Bool(true)) {
            out.push(result(cname, Outcome::Skip));
            continue;
        }
        out.push(result(cname, run_case(base, case, &base_bundle, &build)));
    }
    out
}

fn run_case(
    base: &Path,
    case: &Value,
    base_bundle: &super::Bundle,
    build: &dyn Fn(Vec<Value>) -> Result<super::Bundle, super::BundleErrors>,
) -> Outcome {
    let load = |rel: &str| resolve(base, rel).and_then(|p| read_docs(&p));
    let Some(obj_rel) = case.get("object").and_then(Value::as_str) else {
        return Outcome::Fail("case has no object".into());
    };
    let object = match load(obj_rel) {
        Ok(mut d) if d.len() == 1 => d.remove(0),
        Ok(d) => {
            return Outcome::Fail(format!(
                "{obj_rel}: expected exactly 1 object, found {}",
                d.len()
            ));
        }
        Err(e) => return Outcome::Fail(e),
    };
    let mut inventory = Vec::new();
    for inv in case
        .get("inventory")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match inv.as_str().map(load) {
            Some(Ok(d)) => inventory.extend(d),
            Some(Err(e)) => return Outcome::Fail(e),
            None => return Outcome::Fail("inventory entries are file paths".into()),
        }
    }
    let owned;
    let bundle = if inventory.is_empty() {
        base_bundle
    } else {
        match build(inventory) {
            Ok(b) => {
                owned = b;
                &owned
            }
            Err(e) => {
                return Outcome::Fail(
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
        }
    };
    // gator expands objects, not AdmissionReviews.
    let unexpanded;
    let bundle = if Review::is_admission_review(&object) && !bundle.expansions.is_empty() {
        unexpanded = super::Bundle {
            expansions: Vec::new(),
            ..bundle.clone()
        };
        &unexpanded
    } else {
        bundle
    };
    // Every case at gator's point, an AdmissionReview's too (lint replays those at admission).
    let review = match Review::from_document(object, Point::Ci) {
        Ok(r) => Review {
            point: Point::Ci,
            ..r
        },
        Err(e) => return Outcome::Fail(format!("{obj_rel}: {e}")),
    };
    let violations = bundle.evaluate(&review, &Default::default());
    let assertions = case
        .get("assertions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if assertions.is_empty() {
        return Outcome::Fail("case has no assertions".into());
    }
    let mut failures = Vec::new();
    for a in &assertions {
        let re = match a
            .get("message")
            .and_then(Value::as_str)
            .map(regex::Regex::new)
        {
            Some(Ok(re)) => Some(re),
            Some(Err(e)) => {
                return Outcome::Fail(format!("assertion message is not a valid regex: {e}"));
            }
            None => None,
        };
        let n = violations
            .iter()
            .filter(|v| re.as_ref().is_none_or(|re| re.is_match(&v.message)))
            .count();
        let want = a
            .get("violations")
            .cloned()
            .unwrap_or(Value::String("yes".into()));
        let ok = match &want {
            Value::String(s) if s == "yes" => n > 0,
            Value::String(s) if s == "no" => n == 0,
            Value::Number(k) => k.as_u64() == Some(n as u64),
            other => {
                return Outcome::Fail(format!(
                    "assertion violations: {other} is not yes, no or a count"
                ));
            }
        };
        if !ok {
            let filter = re
                .map(|r| format!(" matching /{}/", r.as_str()))
                .unwrap_or_default();
            let got: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
            failures.push(format!(
                "expected {want} violation(s){filter}, got {n}: {got:?}"
            ));
        }
    }
    if failures.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(failures.join("; "))
    }
}
