//! The built-in bundle (`policies/`): it compiles, every gator suite in it passes, and the copies
//! of the shared workloads lib are identical (Gatekeeper libs are per template, so each template
//! that needs it carries it).

use std::path::Path;

use sealgate_core::policy::suite::{self, Outcome};
use sealgate_core::policy::{BundleBuilder, EvalLimits};

fn policies() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"))
}

#[test]
fn builtin_bundle_compiles_with_a_constraint_per_template() {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let bundle = b.build().unwrap_or_else(|e| panic!("{e:#?}"));
    let kinds: std::collections::BTreeSet<_> = bundle.templates().map(|t| t.kind.clone()).collect();
    assert!(kinds.len() >= 8, "{kinds:?}");
    for k in &kinds {
        assert!(
            bundle.constraints().iter().any(|c| &c.kind == k),
            "no built-in constraint for {k}"
        );
    }
}

#[test]
fn every_builtin_suite_passes() {
    let suites = suite::find_suites(policies());
    let dirs = std::fs::read_dir(policies())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(
        suites.len(),
        dirs,
        "every policy directory has a suite.yaml"
    );
    let mut failures = Vec::new();
    let mut passed = 0;
    for s in &suites {
        for r in suite::run_suite(s, None, EvalLimits::default()) {
            match r.outcome {
                Outcome::Pass => passed += 1,
                Outcome::Fail(why) => {
                    failures.push(format!("{}: {}/{}: {why}", r.suite, r.test, r.case))
                }
                Outcome::Skip => {
                    failures.push(format!("{}: {}/{} skipped", r.suite, r.test, r.case))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 50, "{passed}");
}

#[test]
fn shared_lib_copies_are_identical() {
    let mut copies = Vec::new();
    for e in std::fs::read_dir(policies()).unwrap() {
        let t = e.unwrap().path().join("template.yaml");
        let text = std::fs::read_to_string(&t).unwrap_or_default();
        if let Some(i) = text.find("package lib.sealgate.workloads") {
            copies.push((t.display().to_string(), text[i..].to_string()));
        }
    }
    assert!(copies.len() >= 4, "{}", copies.len());
    for (path, lib) in &copies[1..] {
        assert_eq!(lib, &copies[0].1, "{path} differs from {}", copies[0].0);
    }
}

#[test]
fn a_failing_assertion_fails_the_case() {
    // The suite runner must be able to fail: a copy of a real suite with a wrong count.
    let dir = tempfile::tempdir().unwrap();
    let src = policies().join("container-resources");
    for f in ["template.yaml", "constraint.yaml"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("samples")).unwrap();
    std::fs::copy(
        src.join("samples/pod-privileged.yaml"),
        dir.path().join("samples/pod.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("suite.yaml"),
        "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: template.yaml\n  constraint: constraint.yaml\n  cases:\n  - name: wrong\n    object: samples/pod.yaml\n    assertions: [{violations: 3}]\n  - name: no-assertions\n    object: samples/pod.yaml\n  - name: missing-object\n    object: samples/nope.yaml\n    assertions: [{violations: no}]\n",
    )
    .unwrap();
    let results = suite::run_suite(&dir.path().join("suite.yaml"), None, EvalLimits::default());
    let why: Vec<String> = results
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Fail(w) => w.clone(),
            other => panic!("{}: {other:?}", r.case),
        })
        .collect();
    assert!(why[0].contains("expected 3 violation(s), got 2"), "{why:?}");
    assert!(why[1].contains("no assertions"), "{why:?}");
    assert!(why[2].contains("cannot read"), "{why:?}");
}

#[test]
fn native_containers_equal_the_rego_lib() {
    // sealgate passes input.sealgate.containers so templates need not each recompute them; it
    // must be exactly what the lib computes (which Gatekeeper would run).
    let t = std::fs::read_to_string(policies().join("image-policy/template.yaml")).unwrap();
    let lib = &t[t.find("              - |\n").unwrap()..];
    let template = format!(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {{name: equiv}}\nspec:\n  crd: {{spec: {{names: {{kind: Equiv}}}}}}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      code:\n        - engine: Rego\n          source:\n            version: v1\n            rego: |\n              package equiv\n              import data.lib.sealgate.workloads\n              violation contains {{\"msg\": \"differs\"}} if workloads.containers(input.review.object) != input.sealgate.containers\n            libs:\n{lib}"
    );
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_text("equiv.yaml", &template);
    b.add_text(
        "c.yaml",
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: Equiv\nmetadata: {name: equiv}\n",
    );
    let bundle = b.build().unwrap_or_else(|e| panic!("{e:#?}"));
    let mut workloads = 0;
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in [
        policies().to_path_buf(),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gitops")).to_path_buf(),
    ] {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml") {
                    files.push(p);
                }
            }
        }
    }
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let Ok(docs) = sealgate_core::manifest::parse(&bytes, &Default::default()) else {
            continue;
        };
        for d in docs {
            let kind = d.value["kind"].as_str().unwrap_or("");
            if !sealgate_core::policy::pod_spec_path(kind).is_empty() {
                workloads += 1;
            }
            let review = sealgate_core::policy::Review::for_object(
                d.value,
                sealgate_core::policy::Point::Ci,
            );
            let v = bundle.evaluate(&review, &Default::default());
            assert!(
                v.is_empty(),
                "{}: native and Rego containers differ",
                f.display()
            );
        }
    }
    assert!(workloads >= 8, "{workloads}");
}

/// `deploy/base/webhook/policies` (the webhook's ConfigMap, which kustomize can only read from
/// inside `deploy/`) holds exactly `policies/*/{template,constraint}.yaml`, and the kustomization
/// lists every file. `UPDATE_DEPLOY=1` rewrites the copy (and the Helm chart's).
#[test]
fn the_deploy_configmap_copy_equals_policies() {
    let deploy = policies().join("../deploy/base");
    let copy_dir = deploy.join("webhook/policies");
    let mut expected = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(policies()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        for part in ["template", "constraint"] {
            let text = std::fs::read_to_string(dir.join(format!("{part}.yaml"))).unwrap();
            expected.insert(format!("{name}.{part}.yaml"), text);
        }
    }
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        // The Helm chart's copy too (tests/tests/chart.rs keeps it equal to deploy/'s).
        for dir in [
            copy_dir.clone(),
            policies().join("../charts/sealgate/files/policies"),
        ] {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in &expected {
                std::fs::write(dir.join(file), text).unwrap();
            }
        }
    }
    let mut actual = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&copy_dir).unwrap() {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        actual.insert(file, std::fs::read_to_string(&p).unwrap());
    }
    assert!(
        actual == expected,
        "deploy/base/webhook/policies differs from policies/: run `UPDATE_DEPLOY=1 cargo test -p sealgate-core --test builtin_policies`"
    );
    let kustomization = std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap();
    for file in expected.keys() {
        assert!(
            kustomization.contains(&format!("- webhook/policies/{file}")),
            "deploy/base/kustomization.yaml does not list {file}"
        );
    }
}

/// Every sample object, example manifest and recorded AdmissionReview in the repository, at every
/// enforcement point, gives the same violations on regorus's register VM (the default) as on its
/// interpreter. The VM is ~3× faster; this is what lets it stand in.
#[test]
fn the_register_vm_agrees_with_the_interpreter_on_every_sample() {
    use sealgate_core::policy::{Point, Review};
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_builtin();
    let vm = b.build().unwrap();
    assert!(
        vm.templates().all(|t| t.on_vm()),
        "every built-in template runs on the VM"
    );
    let mut interpreter = vm.clone();
    interpreter.set_use_vm(false);
    let mut files = Vec::new();
    let mut stack = vec![policies().to_path_buf(), policies().join("../examples")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            ) {
                files.push(p);
            }
        }
    }
    let (mut reviews, mut violations) = (0, 0);
    for file in files {
        let text = std::fs::read(&file).unwrap();
        let Ok(docs) = sealgate_core::manifest::parse(&text, &Default::default()) else {
            continue;
        };
        for doc in docs {
            for point in [Point::Ci, Point::Admission, Point::Audit] {
                let Ok(review) = Review::from_document(doc.value.clone(), point) else {
                    continue;
                };
                let a = vm.evaluate(&review, &Default::default());
                let b = interpreter.evaluate(&review, &Default::default());
                assert_eq!(a, b, "{} ({point:?})", file.display());
                reviews += 1;
                violations += a.len();
            }
        }
    }
    assert!(
        reviews > 250 && violations > 300,
        "{reviews} reviews, {violations} violations"
    );
}

/// The gitops-identity suite judges the shipped constraints at every point (policy verify, as
/// gator, evaluates only at gator's point, where they are inert; and gator reads one constraint
/// per file): those samples must be the shipped file but for the points.
#[test]
fn the_suites_copies_of_the_shipped_identity_constraints_differ_only_in_points() {
    let dir = policies().join("gitops-identity");
    // Comments aside (the copies say why they exist).
    let code = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let shipped = std::fs::read_to_string(dir.join("constraint.yaml")).unwrap();
    let copies: Vec<String> = [
        "gitops-identity",
        "gitops-break-glass-audit",
        "attestation-writers",
    ]
    .iter()
    .map(|n| code(&std::fs::read_to_string(dir.join(format!("samples/shipped-{n}.yaml"))).unwrap()))
    .collect();
    for c in &copies {
        assert_eq!(c.matches(r#"{name: "*"}"#).count(), 1, "{c}");
    }
    assert_eq!(
        copies.join("---\n").replace(
            r#"enforcementPoints: [{name: "*"}]"#,
            "enforcementPoints: [{name: admission}]"
        ),
        code(&shipped),
        "samples/shipped-*.yaml must be constraint.yaml's documents with every point"
    );
}
