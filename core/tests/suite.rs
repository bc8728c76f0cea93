//! `policy verify`'s suite semantics, as gator's: every case at gator's point (a constraint scoped
//! to other points judges nothing, an AdmissionReview case too), every action counts, and a test
//! takes one Constraint per file (gator reads only the first document: refused, not judged
//! differently). tests/tests/gator.rs compares with gator itself.

use sealgate_core::policy::EvalLimits;
use sealgate_core::policy::suite::{Outcome, run_suite};

const TEMPLATE: &str = r#"apiVersion: templates.gatekeeper.sh/v1
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
        violation[{"msg": "latest"}] {
          endswith(input.review.object.spec.containers[_].image, ":latest")
        }
"#;

fn constraint(name: &str, enforcement: &str) -> String {
    format!(
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sNoLatest\nmetadata:\n  name: {name}\nspec:\n{enforcement}"
    )
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: c, image: 'nginx:latest'}]\n";

fn verify(constraint: &str, violations: &str) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("template.yaml"), TEMPLATE).unwrap();
    std::fs::write(d.join("constraint.yaml"), constraint).unwrap();
    std::fs::write(d.join("pod.yaml"), POD).unwrap();
    std::fs::write(
        d.join("suite.yaml"),
        format!("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: template.yaml\n  constraint: constraint.yaml\n  cases:\n  - name: c\n    object: pod.yaml\n    assertions:\n    - violations: {violations}\n"),
    )
    .unwrap();
    run_suite(&d.join("suite.yaml"), None, EvalLimits::default())
        .into_iter()
        .map(|r| r.outcome)
        .collect()
}

#[test]
fn cases_are_judged_at_gators_point_with_every_action() {
    // Every action counts.
    for action in ["deny", "warn", "dryrun"] {
        let c = constraint("c", &format!("  enforcementAction: {action}\n"));
        assert_eq!(verify(&c, "1"), [Outcome::Pass], "{action}");
    }
    // Scoped to gator's point (sealgate's name or Gatekeeper's), or to every point: judged.
    for point in ["ci", "gator.gatekeeper.sh", "\"*\""] {
        let c = constraint(
            "c",
            &format!(
                "  enforcementAction: scoped\n  scopedEnforcementActions:\n  - action: deny\n    enforcementPoints: [{{name: {point}}}]\n"
            ),
        );
        assert_eq!(verify(&c, "1"), [Outcome::Pass], "{point}");
    }
    // Scoped to admission only: nothing at gator's point.
    let admission = constraint(
        "c",
        "  enforcementAction: scoped\n  scopedEnforcementActions:\n  - action: deny\n    enforcementPoints: [{name: validation.gatekeeper.sh}]\n",
    );
    assert_eq!(verify(&admission, "no"), [Outcome::Pass]);
    assert!(matches!(verify(&admission, "1")[..], [Outcome::Fail(_)]));
}

#[test]
fn a_test_takes_one_constraint_per_file() {
    let two = format!(
        "{}---\n{}",
        constraint("a", "  enforcementAction: deny\n"),
        constraint("b", "  enforcementAction: deny\n")
    );
    match &verify(&two, "2")[..] {
        [Outcome::Fail(why)] => assert!(
            why.contains("holds 2 Constraints") && why.contains("gator reads only the first"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}
