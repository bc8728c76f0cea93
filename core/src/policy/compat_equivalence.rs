//! The compatibility layer cannot corrupt a valid policy: for every built-in and every library
//! template, the layer's output compiles, and where plain regorus compiles the template as it is,
//! both evaluate every sample of its suites to the same violations, except at the sites of the
//! OPA differences the layer exists to fix (listed below, each with its gap).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Action, Bundle, BundleBuilder, Enforcement, EvalLimits, Point, Review};

/// (suite directory, test/case) where the layer changes the result, and why.
const EXPECTED: &[(&str, &str, &str)] = &[
    // `input.parameters.minimumReplicaSpread⏎(hpa.spec.maxReplicas - …) >= …` is two expressions
    // in OPA; plain regorus reads a call and fails ("could not find function").
    (
        "horizontalpodautoscaler",
        "horizontal-pod-autoscaler/example-allowed-hpa",
        "newline before (",
    ),
    (
        "horizontalpodautoscaler",
        "horizontal-pod-autoscaler/example-disallowed-hpa-replicas",
        "newline before (",
    ),
    (
        "horizontalpodautoscaler",
        "horizontal-pod-autoscaler/example-disallowed-hpa-replicaspread",
        "newline before (",
    ),
    (
        "horizontalpodautoscaler",
        "horizontal-pod-autoscaler/example-disallowed-scaletarget",
        "newline before (",
    ),
    // `not accept_value(rule, v, params.ranges)` with no `ranges` (RunAsAny): OPA's body fails,
    // plain regorus reports a group violation gator does not expect.
    (
        "users",
        "users-and-groups-together/example-disallowed",
        "not f(<undefined>)",
    ),
    (
        "users",
        "users-and-groups-together/example-allowed",
        "not f(<undefined>)",
    ),
    (
        "users",
        "users-and-groups-together/disallowed-ephemeral",
        "not f(<undefined>)",
    ),
    // (`not startswith(image, allowed[_])` in image-policy was here: OPA 1.x refuses that module
    // outright, as gator showed, so the template no longer uses it; compat's unit tests keep the
    // gap's rewrite covered.)
];

fn docs(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap();
    crate::manifest::parse(&bytes, &Default::default())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn suites() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("../policies")];
    let lib = root.join("../../shared/corpora/gatekeeper-library/library");
    if lib.is_dir() {
        dirs.push(lib.join("general"));
        dirs.push(lib.join("pod-security-policy"));
    } else {
        eprintln!(
            "the Gatekeeper library corpus is absent ({}): only the built-in templates are checked",
            lib.display()
        );
    }
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
        .map(|e| e.path().join("suite.yaml"))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn build(
    template: &(String, String),
    constraint: &(String, String),
    inventory: &[Value],
    compat: bool,
) -> Result<Bundle, String> {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.compat = compat;
    b.add_text(&template.0, &template.1);
    b.add_text(&constraint.0, &constraint.1);
    b.add_inventory(inventory.iter().cloned());
    let mut bundle = b.build().map_err(|e| format!("{e:?}"))?;
    bundle.set_use_vm(false);
    for c in &mut bundle.constraints {
        c.enforcement = Enforcement::Action(Action::Deny);
    }
    Ok(bundle)
}

fn messages(bundle: &Bundle, object: &Value) -> Vec<String> {
    let review = Review::from_document(object.clone(), Point::Ci).unwrap();
    let mut m: Vec<String> = bundle
        .evaluate(&review, &Default::default())
        .into_iter()
        .map(|v| format!("{}: {}", v.constraint, v.message))
        .collect();
    m.sort();
    m
}

#[test]
fn the_layer_compiles_everything_and_changes_only_the_gap_sites() {
    let mut needs_layer = Vec::new();
    let mut diverged = Vec::new();
    let mut cases = 0;
    let mut compared = Vec::new();
    for suite in suites() {
        let base = suite.parent().unwrap();
        let dir = base.file_name().unwrap().to_string_lossy().to_string();
        compared.push(dir.clone());
        let read = |rel: &str| {
            let p = base.join(rel);
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        };
        for doc in docs(&suite) {
            for test in doc["tests"].as_array().into_iter().flatten() {
                if test["invalid"] == Value::Bool(true) {
                    continue;
                }
                let template = read(test["template"].as_str().unwrap());
                let constraint = read(test["constraint"].as_str().unwrap());
                let layered = build(&template, &constraint, &[], true)
                    .unwrap_or_else(|e| panic!("{dir}: the layer's output does not compile: {e}"));
                let Ok(plain) = build(&template, &constraint, &[], false) else {
                    needs_layer.push(dir.clone());
                    continue;
                };
                for case in test["cases"].as_array().into_iter().flatten() {
                    cases += 1;
                    let object = docs(&base.join(case["object"].as_str().unwrap())).remove(0);
                    let inventory: Vec<Value> = case["inventory"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|i| docs(&base.join(i.as_str().unwrap())))
                        .collect();
                    let (l, p) = if inventory.is_empty() {
                        (messages(&layered, &object), messages(&plain, &object))
                    } else {
                        (
                            messages(
                                &build(&template, &constraint, &inventory, true).unwrap(),
                                &object,
                            ),
                            messages(
                                &build(&template, &constraint, &inventory, false).unwrap(),
                                &object,
                            ),
                        )
                    };
                    if l != p {
                        let name = format!(
                            "{}/{}",
                            test["name"].as_str().unwrap_or(""),
                            case["name"].as_str().unwrap_or("")
                        );
                        diverged.push((dir.clone(), name, l, p));
                    }
                }
            }
        }
    }
    needs_layer.dedup();
    println!("{cases} cases compared; templates that compile only with the layer: {needs_layer:?}");
    let unexpected: Vec<String> = diverged
        .iter()
        .filter(|(d, n, _, _)| !EXPECTED.iter().any(|(ed, en, _)| ed == d && en == n))
        .map(|(d, n, l, p)| format!("{d} {n}:\n  with the layer: {l:?}\n  plain regorus:  {p:?}"))
        .collect();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    for (d, n, why) in EXPECTED
        .iter()
        .filter(|(d, _, _)| compared.iter().any(|c| c == d))
    {
        assert!(
            diverged.iter().any(|(dd, dn, _, _)| dd == d && dn == n),
            "{d} {n} no longer differs ({why}): remove it from EXPECTED"
        );
    }
}
