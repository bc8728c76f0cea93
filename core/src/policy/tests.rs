use super::*;
use serde_json::{Value, json};
use std::time::Duration;

fn template(kind: &str, rego: &str) -> String {
    let pkg = kind.to_lowercase();
    let indented: String = rego.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: {pkg}\nspec:\n  crd:\n    spec:\n      names:\n        kind: {kind}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n        package {pkg}\n{indented}"
    )
}

fn constraint(kind: &str, name: &str, spec: Value) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": kind,
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn bundle(parts: &[String]) -> Bundle {
    try_bundle(parts).unwrap_or_else(|e| panic!("{e:?}"))
}

fn try_bundle(parts: &[String]) -> Result<Bundle, BundleErrors> {
    let mut b = BundleBuilder::new(EvalLimits::default());
    for (i, p) in parts.iter().enumerate() {
        b.add_text(&format!("part{i}.yaml"), p);
    }
    b.build()
}

fn pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": image}]}})
}

/// Evaluate on the register VM, and check that regorus's interpreter agrees: every test here is
/// also a differential test of the two engines.
fn eval(b: &Bundle, obj: Value) -> Vec<Violation> {
    let review = Review::for_object(obj, Point::Ci).at("apps/pod.yaml", 3);
    let on_vm = b.evaluate(&review, &Default::default());
    let mut interpreter = b.clone();
    interpreter.set_use_vm(false);
    let on_interpreter = interpreter.evaluate(&review, &Default::default());
    // Evaluation errors are compared by kind: their texts (timings, engine wording) differ.
    let comparable = |v: &[Violation]| -> Vec<String> {
        v.iter()
            .map(|v| match v.evaluation_error {
                true => format!("{} {} evaluation error", v.policy, v.constraint),
                false => format!("{v:?}"),
            })
            .collect()
    };
    assert_eq!(
        comparable(&on_vm),
        comparable(&on_interpreter),
        "the register VM and the interpreter disagree"
    );
    on_vm
}

const REPOS: &str = r#"violation[{"msg": msg, "details": {"path": ["spec", "containers", "0", "image"]}}] {
  c := input.review.object.spec.containers[_]
  count([1 | startswith(c.image, input.parameters.repos[_])]) == 0
  msg := sprintf("container <%v> has an invalid image repo <%v>, allowed repos are %v", [c.name, c.image, input.parameters.repos])
}"#;

#[test]
fn gatekeeper_template_and_constraint() {
    let b = bundle(&[
        template("K8sAllowedRepos", REPOS),
        constraint(
            "K8sAllowedRepos",
            "repo-is-ours",
            json!({"parameters": {"repos": ["registry.example.com/"]}}),
        ),
    ]);
    assert!(eval(&b, pod("ok", "registry.example.com/web:1")).is_empty());
    let v = eval(&b, pod("bad", "docker.io/nginx:1"));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].policy, "K8sAllowedRepos");
    assert_eq!(v[0].constraint, "repo-is-ours");
    assert_eq!(v[0].action, Action::Deny);
    assert_eq!(
        v[0].message,
        "container <c> has an invalid image repo <docker.io/nginx:1>, allowed repos are [\"registry.example.com/\"]"
    );
    assert_eq!(
        v[0].path.as_deref(),
        Some(
            &[
                "spec".to_string(),
                "containers".into(),
                "0".into(),
                "image".into()
            ][..]
        )
    );
    assert_eq!(v[0].object.to_string(), "Pod shop/bad");
}

#[test]
fn input_shape_matches_gator() {
    let echo = r#"violation[{"msg": msg}] {
  r := input.review
  msg := sprintf("%v|%v|%v|%v|%v|%v|%v|%v|%v|%v", [r.kind.group, r.kind.version, r.kind.kind, r.name, r.namespace, r.operation, r.oldObject, count(r.userInfo), input.parameters.p, input.sealgate.point])
}
violation[{"msg": "file"}] { input.sealgate.file == "apps/pod.yaml"; input.sealgate.line == 3 }"#;
    let b = bundle(&[
        template("Echo", echo),
        constraint("Echo", "e", json!({"parameters": {"p": 7}})),
    ]);
    let mut msgs: Vec<String> = eval(&b, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}))
        .into_iter()
        .map(|v| v.message)
        .collect();
    msgs.sort();
    assert_eq!(msgs, vec!["apps|v1|Deployment|d|n||null|0|7|ci", "file"]);
    // No parameters: input.parameters is {} (so `input.parameters.p` is undefined, not an error).
    let b = bundle(&[template("Echo", echo), constraint("Echo", "e", json!({}))]);
    assert_eq!(eval(&b, pod("p", "x")).len(), 1);
}

#[test]
fn enforcement_actions_and_points() {
    let deny_all = r#"violation[{"msg": "no"}] { true }"#;
    let spec = |e: Value| {
        let mut s = json!({"match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}});
        s.as_object_mut()
            .unwrap()
            .extend(e.as_object().unwrap().clone());
        s
    };
    let b = bundle(&[
        template("DenyAll", deny_all),
        constraint("DenyAll", "default", spec(json!({}))),
        constraint(
            "DenyAll",
            "warned",
            spec(json!({"enforcementAction": "warn"})),
        ),
        constraint(
            "DenyAll",
            "dry",
            spec(json!({"enforcementAction": "dryrun"})),
        ),
        constraint(
            "DenyAll",
            "ci-deny-admission-warn",
            spec(
                json!({"enforcementAction": "scoped", "scopedEnforcementActions": [
            {"action": "deny", "enforcementPoints": [{"name": "gator.gatekeeper.sh"}]},
            {"action": "warn", "enforcementPoints": [{"name": "validation.gatekeeper.sh"}]}]}),
            ),
        ),
        constraint(
            "DenyAll",
            "admission-only",
            spec(
                json!({"enforcementAction": "scoped", "scopedEnforcementActions": [
            {"action": "deny", "enforcementPoints": [{"name": "admission"}]}]}),
            ),
        ),
    ]);
    let at = |point| {
        let mut v: Vec<(String, Action)> = b
            .evaluate(
                &Review::for_object(pod("p", "x"), point),
                &Default::default(),
            )
            .into_iter()
            .map(|v| (v.constraint, v.action))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        at(Point::Ci),
        vec![
            ("ci-deny-admission-warn".into(), Action::Deny),
            ("default".into(), Action::Deny),
            ("dry".into(), Action::Dryrun),
            ("warned".into(), Action::Warn),
        ]
    );
    assert_eq!(
        at(Point::Admission),
        vec![
            ("admission-only".into(), Action::Deny),
            ("ci-deny-admission-warn".into(), Action::Warn),
            ("default".into(), Action::Deny),
            ("dry".into(), Action::Dryrun),
            ("warned".into(), Action::Warn),
        ]
    );
    // Not a Pod: nothing matches.
    assert!(
        eval(
            &b,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        )
        .is_empty()
    );
    let e = try_bundle(&[
        template("DenyAll", deny_all),
        constraint("DenyAll", "x", json!({"enforcementAction": "block"})),
    ])
    .unwrap_err();
    assert!(
        e[0].to_string()
            .contains("\"block\" is not deny, warn, dryrun or scoped"),
        "{e:?}"
    );
}

#[test]
fn gap_newline_before_paren() {
    // horizontalpodautoscaler: `input.parameters.minimumReplicaSpread⏎(hpa.spec.maxReplicas - …)`.
    let rego = r#"violation[{"msg": msg}] {
  hpa := input.review.object
  input.parameters.minimumReplicaSpread
  (hpa.spec.maxReplicas - hpa.spec.minReplicas) < input.parameters.minimumReplicaSpread
  msg := "spread too small"
}"#;
    let b = bundle(&[
        template("Spread", rego),
        constraint(
            "Spread",
            "s",
            json!({"parameters": {"minimumReplicaSpread": 2}}),
        ),
    ]);
    let hpa = |min: i64, max: i64| json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {"minReplicas": min, "maxReplicas": max}});
    assert_eq!(eval(&b, hpa(2, 3)).len(), 1);
    assert!(eval(&b, hpa(2, 10)).is_empty());
}

#[test]
fn gap_chained_bodies_on_set_rules() {
    // noupdateserviceaccount: v0 `violation[...] { a } { b }` is two rules.
    let rego = r#"violation[{"msg": msg}] {
  input.review.object.spec.a
  msg := "a"
} {
  input.review.object.spec.b
  msg := "b"
}"#;
    let b = bundle(&[
        template("Chained", rego),
        constraint("Chained", "c", json!({})),
    ]);
    let obj = |a: bool, bb: bool| json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"a": a, "b": bb}});
    assert_eq!(
        eval(&b, obj(true, false))
            .iter()
            .map(|v| v.message.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    assert_eq!(eval(&b, obj(true, true)).len(), 2);
    assert!(eval(&b, obj(false, false)).is_empty());
}

#[test]
fn gap_sprintf_with_missing_arguments_keeps_the_violation() {
    let rego = r#"violation[{"msg": msg}] { msg := sprintf("%v has %v of %v", ["a", 1]) }"#;
    let b = bundle(&[template("Fmt", rego), constraint("Fmt", "f", json!({}))]);
    let v = eval(&b, pod("p", "x"));
    assert_eq!(v.len(), 1, "regorus alone drops this violation");
    assert_eq!(v[0].message, "a has 1 of %!v(MISSING)");
}

#[test]
fn gap_not_of_a_call_with_an_undefined_argument() {
    // users.yaml: `not accept_value(rule, v, params.ranges)` with no `ranges` must not fire.
    let rego = r#"accept_value(rule, v, ranges) { rule == "RunAsAny" }
accept_value(rule, v, ranges) { r := ranges[_]; v >= r.min; v <= r.max }
violation[{"msg": "out of range"}] {
  params := input.parameters
  v := input.review.object.spec.uid
  not accept_value(params.rule, v, params.ranges)
}"#;
    let b = bundle(&[
        template("Users", rego),
        constraint("Users", "u", json!({"parameters": {"rule": "MustRunAs"}})),
    ]);
    let obj =
        json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"uid": 5}});
    assert!(
        eval(&b, obj.clone()).is_empty(),
        "OPA: an undefined argument makes the body fail"
    );
    let b = bundle(&[
        template("Users", rego),
        constraint(
            "Users",
            "u",
            json!({"parameters": {"rule": "MustRunAs", "ranges": [{"min": 10, "max": 20}]}}),
        ),
    ]);
    assert_eq!(eval(&b, obj).len(), 1);
}

#[test]
fn a_wildcard_under_not_is_refused_as_opa_refuses_it() {
    // gator 3.23 (OPA): "rego_unsafe_var_error: var _ is unsafe"; regorus would let the
    // wildcard escape the negation ("some repo does not match").
    let rego = r#"violation[{"msg": "not allowed"}] {
  not startswith(input.review.object.spec.image, input.parameters.repos[_])
}"#;
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_text("repos.yaml", &template("Repos", rego));
    let e = b.build().unwrap_err().to_string();
    assert!(
        e.contains("line 3, column 3 of spec.targets[0].rego")
            && e.contains("var _ is unsafe")
            && e.contains("count([1 | EXPR]) == 0"),
        "{e}"
    );
    // What it meant, written as OPA takes it.
    let rego = r#"violation[{"msg": "not allowed"}] {
  count([1 | startswith(input.review.object.spec.image, input.parameters.repos[_])]) == 0
}"#;
    let b = bundle(&[
        template("Repos", rego),
        constraint("Repos", "r", json!({"parameters": {"repos": ["a/", "b/"]}})),
    ]);
    let obj = |img: &str| json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"image": img}});
    assert!(
        eval(&b, obj("b/web:1")).is_empty(),
        "matches the second repo: allowed"
    );
    assert_eq!(eval(&b, obj("c/web:1")).len(), 1);
    // conftest modules too.
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_module(
        "policy/deny.rego",
        "package main\nimport rego.v1\ndeny contains \"x\" if { not input.blocked[_] }\n",
    );
    let e = b.build().unwrap_err().to_string();
    assert!(
        e.contains("policy/deny.rego:3:") && e.contains("var _ is unsafe"),
        "{e}"
    );
}

#[test]
fn gap_builtin_errors_are_undefined_and_deprecated_builtins_exist() {
    let rego = r#"violation[{"msg": "bad number"}] { to_number(input.review.object.metadata.name) > 1 }
violation[{"msg": "re_match"}] { re_match("^we", input.review.object.metadata.name) }"#;
    let b = bundle(&[
        template("Builtins", rego),
        constraint("Builtins", "b", json!({})),
    ]);
    let msgs: Vec<String> = eval(&b, pod("web", "x"))
        .into_iter()
        .map(|v| v.message)
        .collect();
    assert_eq!(msgs, vec!["re_match"]);
}

#[test]
fn rego_v1_templates_and_libs() {
    let t = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: v1style}
spec:
  crd: {spec: {names: {kind: V1Style}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: K8sNativeValidation
          source: {validations: [{expression: "true"}]}
        - engine: Rego
          source:
            version: v1
            rego: |
              package v1style
              import data.lib.names
              violation contains {"msg": msg} if {
                names.bad(input.review.object.metadata.name)
                msg := "bad name"
              }
            libs:
              - |
                package lib.names
                bad(n) if startswith(n, "tmp-")
"#;
    let parts = [t.to_string(), constraint("V1Style", "v", json!({}))];
    let b = code_bundle(&parts, TemplateCode::Rego).unwrap();
    assert_eq!(eval(&b, pod("tmp-1", "x")).len(), 1);
    assert!(eval(&b, pod("web", "x")).is_empty());
    // As Gatekeeper chooses: the CEL beside it (always true here).
    let b = bundle(&parts);
    assert!(eval(&b, pod("tmp-1", "x")).is_empty());
}

#[test]
fn bundle_errors_name_the_template_and_the_rego_line() {
    let e = try_bundle(&[template("Broken", "violation[{\"msg\": m}] {\n  m := \n}")]).unwrap_err();
    let msg = e[0].to_string();
    // The file's line (the Rego's line 2 is line 14 of the template document), and the field.
    assert_eq!(
        msg,
        "part0.yaml:14: ConstraintTemplate Broken: Rego error: line 2, column 23 of spec.targets[0].rego: expecting }"
    );
    let e = try_bundle(&[constraint("Missing", "m", json!({}))]).unwrap_err();
    assert!(
        e[0].to_string()
            .contains("no ConstraintTemplate defines kind Missing"),
        "{e:?}"
    );
    let cel_only = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: c}\nspec:\n  crd: {spec: {names: {kind: CelOnly}}}\n  targets: [{target: admission.k8s.gatekeeper.sh, code: [{engine: K8sNativeValidation, source: {}}]}]\n";
    let e = try_bundle(&[cel_only.to_string()]).unwrap_err();
    assert!(
        e[0].to_string()
            .contains("spec.targets.0.code.0.source (K8sNativeValidation): has no validations"),
        "{e:?}"
    );
    // Parameters checked against the template's schema.
    let typed = template("Typed", "violation[{\"msg\": \"x\"}] { false }").replace(
        "        kind: Typed\n",
        "        kind: Typed\n      validation:\n        openAPIV3Schema:\n          type: object\n          properties:\n            repos: {type: array, items: {type: string}}\n",
    );
    let e = try_bundle(&[
        typed,
        constraint("Typed", "t", json!({"parameters": {"repos": "one"}})),
    ])
    .unwrap_err();
    assert!(
        e[0].to_string()
            .contains("spec.parameters.repos: expected array, found string"),
        "{e:?}"
    );
}

#[test]
fn evaluation_errors_become_violations() {
    // 25 million iterations: far beyond the 50 ms limit, which both engines check as they loop.
    let slow = r#"violation[{"msg": "never"}] { count([x | a := numbers.range(1, 5000)[_]; b := numbers.range(1, 5000)[_]; x := a * b; x < 0]) > 0 }"#;
    let mut b = BundleBuilder::new(EvalLimits {
        eval_timeout: Duration::from_millis(50),
    });
    b.add_text("t.yaml", &template("Slow", slow));
    b.add_text("c.yaml", &constraint("Slow", "s", json!({})));
    let b = b.build().unwrap();
    let v = eval(&b, pod("p", "x"));
    assert_eq!(v.len(), 1);
    assert!(
        v[0].message.starts_with("template Slow failed to evaluate"),
        "{}",
        v[0].message
    );
    assert_eq!(v[0].constraint, "s");
}

#[test]
fn inventory_for_referential_templates() {
    let rego = r#"violation[{"msg": msg}] {
  host := input.review.object.spec.host
  other := data.inventory.namespace[ns]["networking.k8s.io/v1"]["Ingress"][name]
  other.spec.host == host
  name != input.review.object.metadata.name
  msg := sprintf("host %v is used by %v/%v", [host, ns, name])
}"#;
    let ing = |name: &str, ns: &str, host: &str| json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": ns}, "spec": {"host": host}});
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_text("t.yaml", &template("UniqueHost", rego));
    b.add_text("c.yaml", &constraint("UniqueHost", "u", json!({})));
    b.add_inventory([ing("old", "other", "shop.example.com")]);
    let b = b.build().unwrap();
    let v = eval(&b, ing("new", "shop", "shop.example.com"));
    assert_eq!(
        v.iter().map(|v| v.message.as_str()).collect::<Vec<_>>(),
        vec!["host shop.example.com is used by other/old"]
    );
    assert!(eval(&b, ing("new", "shop", "free.example.com")).is_empty());
}

#[test]
fn conftest_modules() {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_module("policy/main.rego", "package main\n\ndeny contains msg if {\n  input.kind == \"Deployment\"\n  not input.spec.template.spec.securityContext.runAsNonRoot\n  msg := \"containers must not run as root\"\n}\n\nwarn_replicas contains {\"msg\": \"one replica\"} if input.spec.replicas == 1\n");
    b.add_module("policy/legacy.rego", "package main\n\nviolation_latest[msg] {\n  endswith(input.spec.template.spec.containers[_].image, \":latest\")\n  msg := \"latest tag\"\n}\n");
    b.add_module("policy/main_test.rego", "package main\ntest_x { false }\n");
    let b = b.build().unwrap();
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "x:latest"}]}}}});
    let mut v: Vec<(String, String, Action)> = eval(&b, d)
        .into_iter()
        .map(|v| (v.constraint, v.message, v.action))
        .collect();
    v.sort();
    assert_eq!(
        v,
        vec![
            (
                "deny".into(),
                "containers must not run as root".into(),
                Action::Deny
            ),
            ("violation_latest".into(), "latest tag".into(), Action::Deny),
            ("warn_replicas".into(), "one replica".into(), Action::Warn),
        ]
    );
}

#[test]
fn admission_review_requests() {
    let rego = r#"violation[{"msg": msg}] { msg := sprintf("%v %v %v", [input.review.operation, input.review.userInfo.username, input.review.object.metadata.name]) }"#;
    let b = bundle(&[template("Who", rego), constraint("Who", "w", json!({}))]);
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "operation": "DELETE", "userInfo": {"username": "alice"}, "object": null,
        "oldObject": pod("gone", "x")}});
    assert!(Review::is_admission_review(&review));
    let r = Review::from_admission_review(review, Point::Admission).unwrap();
    let v = b.evaluate(&r, &Default::default());
    assert_eq!(v[0].message, "DELETE alice gone");
    let bad = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "DELETE"}});
    assert!(
        Review::from_admission_review(bad, Point::Admission)
            .unwrap_err()
            .to_string()
            .contains("oldObject")
    );
}

#[test]
fn an_unbraced_v1_body_with_an_undefined_assignment_does_not_fire() {
    let t = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: unbraced}
spec:
  crd: {spec: {names: {kind: Unbraced}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: v1
            rego: |
              package unbraced
              violation contains {"msg": "m"} if x := input.parameters.nope
"#;
    let b = bundle(&[t.to_string(), constraint("Unbraced", "u", json!({}))]);
    // `eval` also checks that the VM agrees with the interpreter.
    assert!(eval(&b, pod("web", "x")).is_empty());
}

/// A battery of Rego constructs Gatekeeper templates use, each on objects where it holds, does
/// not hold and meets undefined values: the register VM and the interpreter must agree (`eval`
/// asserts it), and so must OPA's expected counts.
#[test]
fn the_vm_agrees_with_the_interpreter_on_common_rego() {
    let with_labels = |labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop", "labels": labels},
               "spec": {"containers": [{"name": "a", "image": "r.io/a:1", "ports": [{"containerPort": 80}]},
                                       {"name": "b", "image": "b:latest", "env": [{"name": "K", "value": "v"}]}],
                        "hostNetwork": false}})
    };
    let objects = [
        with_labels(json!({"app": "web", "team": "x"})),
        with_labels(json!({})),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "1"}}),
    ];
    let cases: &[(&str, &str)] = &[
        (
            "missing label",
            r#"violation[{"msg": msg}] {
  required := {"app", "team"}
  provided := {k | input.review.object.metadata.labels[k]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("missing %v", [missing])
}"#,
        ),
        (
            "some in with index",
            r#"import future.keywords.in
violation[{"msg": msg}] {
  some i, c in input.review.object.spec.containers
  endswith(c.image, ":latest")
  msg := sprintf("%v %v", [i, c.name])
}"#,
        ),
        (
            "every",
            r#"import future.keywords
violation[{"msg": "not all pinned"}] {
  cs := input.review.object.spec.containers
  not every_pinned(cs)
}
every_pinned(cs) {
  every c in cs { not endswith(c.image, ":latest") }
}"#,
        ),
        (
            "with",
            r#"violation[{"msg": "x"}] {
  allowed with input.review.object.metadata.name as "admin"
}
allowed { input.review.object.metadata.name == "admin" }"#,
        ),
        (
            "default and else",
            r#"default tier = "none"
tier = "gold" { input.review.object.metadata.labels.team == "x" } else = "silver" { input.review.object.metadata.labels.app }
violation[{"msg": tier}] { tier != "none" }"#,
        ),
        (
            "object comprehension and union",
            r#"violation[{"msg": msg}] {
  ports := {c.name: count(object.get(c, "ports", [])) | c := input.review.object.spec.containers[_]}
  merged := object.union(ports, {"extra": 0})
  msg := json.marshal(merged)
}"#,
        ),
        (
            "negated partial set",
            r#"bad[name] { c := input.review.object.spec.containers[_]; not startswith(c.image, "r.io/"); name := c.name }
violation[{"msg": "none bad"}] { not bad["a"]; input.review.object.kind == "Pod" }
violation[{"msg": sprintf("bad %v", [n])}] { bad[n] }"#,
        ),
        (
            "undefined in function args",
            r#"f(x) = y { y := x.missing }
violation[{"msg": "u"}] { not f(input.review.object.metadata) }"#,
        ),
        (
            "string builtins",
            r#"violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  parts := split(c.image, ":")
  msg := concat("/", [upper(c.name), trim_suffix(parts[0], ".io"), format_int(count(parts), 10)])
}"#,
        ),
        (
            "regex and glob",
            r#"violation[{"msg": c.name}] {
  c := input.review.object.spec.containers[_]
  regex.match("^[a-z]+:latest$", c.image)
}
violation[{"msg": "glob"}] { glob.match("r.io/*", ["/"], input.review.object.spec.containers[0].image) }"#,
        ),
        (
            "sprintf verbs",
            r#"violation[{"msg": sprintf("%v|%q|%d|%s|%v", ["a", "b", 3, "s", {"k": [1, true, null]}])}] { true }"#,
        ),
        (
            "env values",
            r#"violation[{"msg": e.name}] {
  e := input.review.object.spec.containers[_].env[_]
  e.value
}"#,
        ),
        (
            "walk",
            r#"violation[{"msg": "walked"}] {
  walk(input.review.object.spec, [path, v])
  v == 80
  count(path) > 0
}"#,
        ),
        (
            "data.inventory absent",
            r#"violation[{"msg": "inv"}] { data.inventory.namespace[_] }"#,
        ),
    ];
    let mut fired = Vec::new();
    for (name, rego) in cases {
        let b = bundle(&[
            template("Battery", rego),
            constraint("Battery", "b", json!({})),
        ]);
        let per_object: Vec<usize> = objects
            .iter()
            // `eval` asserts that both engines agree.
            .map(|obj| eval(&b, obj.clone()).len())
            .collect();
        fired.push(format!("{name}: {per_object:?}"));
    }
    // What OPA gives for each case on the three objects.
    assert_eq!(
        fired,
        [
            "missing label: [0, 1, 1]",
            "some in with index: [1, 1, 0]",
            "every: [1, 1, 0]",
            "with: [1, 1, 1]",
            "default and else: [1, 0, 0]",
            // A comprehension over an undefined collection is empty, never undefined.
            "object comprehension and union: [1, 1, 1]",
            "negated partial set: [2, 2, 0]",
            "undefined in function args: [1, 1, 1]",
            "string builtins: [2, 2, 0]",
            "regex and glob: [2, 2, 0]",
            "sprintf verbs: [1, 1, 1]",
            "env values: [1, 1, 0]",
            "walk: [1, 1, 0]",
            "data.inventory absent: [0, 0, 0]",
        ]
    );
}

/// A build's errors, one per line.
fn errors_of(built: Result<Bundle, BundleErrors>) -> String {
    let errors = built.expect_err("the bundle should not build");
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// An input `cargo fuzz` found, kept in tests/data/fuzz.
fn fuzz_input(name: &str) -> String {
    let path = format!("{}/tests/data/fuzz/{name}", env!("CARGO_MANIFEST_DIR"));
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}

/// Found by `cargo fuzz` (compat target): regorus's parser doubles its time with each level of
/// `{`/`[` nesting. Deeper than `MAX_NESTING` is refused before it is parsed, with a message,
/// for templates and conftest modules alike; the compat layer leaves such text alone.
#[test]
fn deeply_nested_rego_is_refused_before_it_is_parsed() {
    use super::compat::{MAX_NESTING, nesting_depth, normalize};
    let deep = format!(
        "package k8sdeep\nx := {}1{}\nviolation[{{\"msg\": \"m\"}}] {{ false }}\n",
        "{[".repeat(20),
        "]}".repeat(20)
    );
    assert_eq!(nesting_depth(&deep), 40);
    assert_eq!(
        normalize(&deep, true),
        deep,
        "not parsed, returned as it came"
    );

    let all = errors_of(try_bundle(&[template("Deep", &deep)]));
    assert!(
        all.contains("brackets nest 40 levels deep; sealgate reads at most 12"),
        "{all}"
    );
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_module(
        "deep.rego",
        &deep.replace("package k8sdeep", "package main"),
    );
    let all = errors_of(b.build());
    assert!(
        all.contains("deep.rego: brackets nest 40 levels deep"),
        "{all}"
    );

    // Strings, raw strings and comments do not count; real policies nest a few levels.
    assert_eq!(
        nesting_depth("x := \"{{{{[[[[\" # {{{{\ny := `[[[[`\nz := {\"a\": [1]}"),
        2
    );
    assert!(nesting_depth(&deep[..deep.len() / 2]) > MAX_NESTING);
}

/// Found by `cargo fuzz` (compat target, an out-of-memory): regorus expands a number literal's
/// exponent. A literal past `MAX_EXPONENT` is refused before it is parsed.
#[test]
fn huge_exponents_are_refused_before_they_are_parsed() {
    use super::compat::{check_limits, normalize};
    let fuzzed = fuzz_input("compat-oom-exponent");
    assert!(check_limits(&fuzzed).unwrap_err() == super::compat::LimitError::Exponent(20_000_000));
    assert_eq!(normalize(&fuzzed, true), fuzzed);
    let big = "package k8sbig\nx := 1e4000\nviolation[{\"msg\": \"m\"}] { false }\n";
    let all = errors_of(try_bundle(&[template("Big", big)]));
    assert!(
        all.contains("a number literal has exponent 4000; sealgate reads at most 1000"),
        "{all}"
    );
    // The fuzzer's third find: a run of unary minus signs overflowed the parser's stack.
    let minus = fuzz_input("compat-stack-overflow-minus");
    assert!(
        check_limits(&minus)
            .unwrap_err()
            .to_string()
            .contains("minus signs in a row")
    );
    assert_eq!(normalize(&minus, true), minus);
    assert_eq!(
        check_limits("x := -1\ny := 2 - -3 # -------------------\nz := \"-----------------\""),
        Ok(())
    );
    // Ordinary numbers, names with digits and strings pass.
    assert_eq!(
        check_limits("x := 2.5e-3\ny := 1E10\nz := \"1e99999\"\nk8s1e99999 := 1"),
        Ok(())
    );
}

/// The same template loaded twice (deploy/'s copy of a built-in among lint's inputs, or a -p of
/// it) is one template; a different template under the same kind is still a conflict.
#[test]
fn a_template_loaded_twice_is_one_template() {
    let t = template("K8sTwice", "violation[{\"msg\": \"x\"}] { false }");
    let b = bundle(&[t.clone(), t.clone()]);
    assert_eq!(b.templates().count(), 1);
    let other = template("K8sTwice", "violation[{\"msg\": \"y\"}] { false }");
    let errors = try_bundle(&[t, other]).unwrap_err();
    assert!(
        errors.iter().any(|e| e
            .to_string()
            .contains("kind K8sTwice is already defined by part0.yaml")),
        "{errors:?}"
    );
}

/// A constraint's severity annotation reaches its violations (for reports); a value outside
/// PolicyReport's enum refuses the constraint, naming the annotation.
#[test]
fn constraint_severity_reaches_violations() {
    let with = |annotations: Value| {
        serde_json::to_string(&json!({
            "apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sAllowedRepos",
            "metadata": {"name": "repos", "annotations": annotations},
            "spec": {"parameters": {"repos": ["registry.example.com/"]}}
        }))
        .unwrap()
    };
    let severity_of = |annotations: Value| {
        let b = bundle(&[template("K8sAllowedRepos", REPOS), with(annotations)]);
        let v = eval(&b, pod("web", "docker.io/nginx"));
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].severity
    };
    assert_eq!(
        severity_of(json!({"sealgate.dev/severity": "high"})),
        Some(Severity::High)
    );
    // Kyverno's annotation, case-insensitive as Kyverno reads it; sealgate's wins when both are set.
    assert_eq!(
        severity_of(json!({"policies.kyverno.io/severity": "Medium"})),
        Some(Severity::Medium)
    );
    assert_eq!(
        severity_of(
            json!({"policies.kyverno.io/severity": "low", "sealgate.dev/severity": "critical"})
        ),
        Some(Severity::Critical)
    );
    assert_eq!(severity_of(json!({})), None);
    let err = try_bundle(&[
        template("K8sAllowedRepos", REPOS),
        with(json!({"sealgate.dev/severity": "urgent"})),
    ])
    .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("sealgate.dev/severity")
            && text.contains("urgent")
            && text.contains("is not one of"),
        "{text}"
    );
}

/// OPA's deprecated built-ins, in a v0 template (Gatekeeper's `rego:`), as OPA documents them:
/// every check holds (a failing one is a violation naming it), wrong operand types are undefined
/// (not a crash, not true), and both engines agree (`eval`).
#[test]
fn deprecated_builtins_in_rego_v0() {
    const CHECKS: &str = r#"# Each check is its own rule: an undefined result (an error) fails it too.
failed[name] {
  name := "any: one true"
  not any([false, true]) == true
}

failed[name] {
  name := "any: a set"
  not any({false, true}) == true
}

failed[name] {
  name := "any: none true"
  not any([false, "true", 1]) == false
}

failed[name] {
  name := "any: empty"
  not any([]) == false
}

failed[name] {
  name := "all: all true"
  not all([true, true]) == true
}

failed[name] {
  name := "all: one not true"
  not all([true, 1]) == false
}

failed[name] {
  name := "all: a set"
  not all({true}) == true
}

failed[name] {
  name := "all: empty"
  not all(set()) == true
}

failed[name] {
  name := "set_diff"
  not set_diff({1, 2, 3}, {2, 4}) == {1, 3}
}

failed[name] {
  name := "net.cidr_overlap: inside"
  not net.cidr_overlap("10.0.0.0/8", "10.1.2.3") == true
}

failed[name] {
  name := "net.cidr_overlap: outside"
  not net.cidr_overlap("10.0.0.0/8", "192.168.0.1") == false
}

failed[name] {
  name := "net.cidr_overlap: IPv6"
  not net.cidr_overlap("fd00::/64", "fd00::1") == true
}

failed[name] {
  name := "cast_array: a set"
  not cast_array({3, 1}) == [1, 3]
}

failed[name] {
  name := "cast_array: an array"
  not cast_array([2, 1]) == [2, 1]
}

failed[name] {
  name := "cast_set"
  not cast_set([1, 1, 2]) == {1, 2}
}

failed[name] {
  name := "cast_string"
  not cast_string("s") == "s"
}

failed[name] {
  name := "cast_boolean"
  not cast_boolean(false) == false
}

failed[name] {
  name := "cast_null"
  not cast_null(null) == null
}

failed[name] {
  name := "cast_object"
  not cast_object({"a": 1}) == {"a": 1}
}

violation[{"msg": msg}] {
  failed[name]
  msg := sprintf("%v does not hold", [name])
}

# Wrong operand types are errors: undefined, never a result.
gave[name] {
  name := "any on a string"
  _ = any("x")
}

gave[name] {
  name := "all on an object"
  _ = all({"a": true})
}

gave[name] {
  name := "set_diff on arrays"
  _ = set_diff([1], [1])
}

gave[name] {
  name := "net.cidr_overlap on a CIDR"
  _ = net.cidr_overlap("10.0.0.0/8", "10.1.0.0/16")
}

gave[name] {
  name := "cast_string on a number"
  _ = cast_string(1)
}

gave[name] {
  name := "cast_object on an array"
  _ = cast_object([])
}

violation[{"msg": msg}] {
  gave[name]
  msg := sprintf("%v gave a result", [name])
}

violation[{"msg": "ran"}] { true }"#;
    let b = bundle(&[
        template("K8sDeprecated", CHECKS),
        constraint("K8sDeprecated", "deprecated", json!({})),
    ]);
    let v = eval(&b, pod("web", "nginx"));
    let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(messages, ["ran"], "{v:?}");
}

/// In Rego v1 the deprecated built-ins are gone, as in OPA 1.x: the template does not compile.
#[test]
fn deprecated_builtins_are_not_in_rego_v1() {
    let v1 = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: k8sanyv1\nspec:\n  crd:\n    spec:\n      names:\n        kind: K8sAnyV1\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      code:\n        - engine: Rego\n          source:\n            version: v1\n            rego: |\n              package k8sanyv1\n              violation contains {\"msg\": \"x\"} if any([true])\n".to_string();
    let err = try_bundle(&[v1]).unwrap_err();
    assert!(
        format!("{err:?}").contains("could not find function any"),
        "{err:?}"
    );
}

use super::expansion::tests::WORKLOADS as EXPAND_WORKLOADS;

const PRIVILEGED: &str = r#"violation[{"msg": msg, "details": {"path": ["spec", "containers", "0", "securityContext", "privileged"]}}] {
  input.review.object.kind == "Pod"
  c := input.review.object.spec.containers[_]
  c.securityContext.privileged
  msg := sprintf("Privileged container is not allowed: %v", [c.name])
}"#;

fn privileged_deployment(privileged: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx",
                             "securityContext": {"privileged": privileged}}]}}}})
}

/// A Pod constraint judges the Pod a Deployment will create, through an ExpansionTemplate, as
/// gator and Gatekeeper's webhook do: the violation is the Deployment's, prefixed with the
/// template's name, its path pointing into the Deployment.
#[test]
fn expansion_judges_a_deployment_by_its_pod() {
    let pod_constraint = |extra: Value| {
        let mut m = json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        constraint("K8sPrivileged", "no-privileged", json!({"match": m}))
    };
    let b = bundle(&[
        template("K8sPrivileged", PRIVILEGED),
        pod_constraint(json!({})),
        EXPAND_WORKLOADS.to_string(),
    ]);
    assert_eq!(b.expansions().len(), 1);
    let v = eval(&b, privileged_deployment(true));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        v[0].message,
        "[Implied by expand-deployments] Privileged container is not allowed: nginx"
    );
    assert_eq!(
        (v[0].object.kind.as_str(), v[0].object.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(
        v[0].path.as_deref().unwrap(),
        [
            "spec",
            "template",
            "spec",
            "containers",
            "0",
            "securityContext",
            "privileged"
        ]
    );
    assert_eq!(v[0].action, Action::Deny);
    assert!(eval(&b, privileged_deployment(false)).is_empty());

    // Without the ExpansionTemplate the Deployment passes: the Pod constraint never sees it.
    let without = bundle(&[
        template("K8sPrivileged", PRIVILEGED),
        pod_constraint(json!({})),
    ]);
    assert!(eval(&without, privileged_deployment(true)).is_empty());

    // match.source: Original leaves resultants alone; Generated judges only them.
    let original = bundle(&[
        template("K8sPrivileged", PRIVILEGED),
        pod_constraint(json!({"source": "Original"})),
        EXPAND_WORKLOADS.to_string(),
    ]);
    assert!(eval(&original, privileged_deployment(true)).is_empty());
    let generated = bundle(&[
        template("K8sPrivileged", PRIVILEGED),
        pod_constraint(json!({"source": "Generated"})),
        EXPAND_WORKLOADS.to_string(),
    ]);
    assert_eq!(eval(&generated, privileged_deployment(true)).len(), 1);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "image": "nginx", "securityContext": {"privileged": true}}]}});
    assert!(eval(&generated, pod.clone()).is_empty());
    assert_eq!(eval(&b, pod).len(), 1);

    // The template's enforcementAction replaces the constraint's.
    let warn = bundle(&[
        template("K8sPrivileged", PRIVILEGED),
        pod_constraint(json!({})),
        EXPAND_WORKLOADS.replace(
            "templateSource: spec.template",
            "templateSource: spec.template\n  enforcementAction: warn",
        ),
    ]);
    assert_eq!(
        eval(&warn, privileged_deployment(true))[0].action,
        Action::Warn
    );

    // A Deployment without spec.template cannot be expanded: a deny, saying why.
    let v = eval(
        &b,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bare", "namespace": "shop"}, "spec": {}}),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].evaluation_error && v[0].message.contains("could not find source field"),
        "{v:?}"
    );

    // Two different ExpansionTemplates of one name refuse the bundle.
    let err = try_bundle(&[
        EXPAND_WORKLOADS.to_string(),
        EXPAND_WORKLOADS.replace(
            "kinds: [DaemonSet, Deployment, ReplicaSet, StatefulSet]",
            "kinds: [StatefulSet]",
        ),
    ])
    .unwrap_err();
    assert!(
        format!("{err:?}").contains("ExpansionTemplate expand-deployments"),
        "{err:?}"
    );
}

/// A template with Rego and CEL that say different things, and a CEL-only one.
fn dual_template(kind: &str, with_rego: bool) -> String {
    let pkg = kind.to_lowercase();
    let rego = if with_rego {
        format!(
            "        - engine: Rego\n          source:\n            rego: |\n              package {pkg}\n              violation[{{\"msg\": \"rego: no latest\"}}] {{\n                endswith(input.review.object.spec.containers[_].image, \":latest\")\n              }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: {pkg}\nspec:\n  crd:\n    spec:\n      names:\n        kind: {kind}\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      code:\n        - engine: K8sNativeValidation\n          source:\n            variables:\n              - name: latest\n                expression: \"variables.anyObject.spec.containers.filter(c, c.image.endsWith(':latest'))\"\n            validations:\n              - expression: \"size(variables.latest) == 0\"\n                messageExpression: \"'cel: ' + variables.latest.map(c, c.name).join(', ') + ' use :latest' + (variables.params == null ? '' : ' (' + variables.params.why + ')')\"\n{rego}"
    )
}

fn code_bundle(parts: &[String], code: TemplateCode) -> Result<Bundle, BundleErrors> {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.template_code(code);
    for (i, p) in parts.iter().enumerate() {
        b.add_text(&format!("part{i}.yaml"), p);
    }
    b.build()
}

/// Gatekeeper's engine choice: a template's CEL when it has some; `--template-code` forces one
/// and refuses a template without it. A CEL-only template denies as its Rego twin would.
#[test]
fn cel_templates_and_the_engine_choice() {
    let dual = || {
        vec![
            dual_template("K8sNoLatest", true),
            constraint(
                "K8sNoLatest",
                "no-latest",
                json!({"parameters": {"why": "pin your images"}}),
            ),
        ]
    };
    let messages = |b: &Bundle| -> Vec<String> {
        eval(b, pod("web", "nginx:latest"))
            .into_iter()
            .map(|v| v.message)
            .collect()
    };
    let auto = code_bundle(&dual(), TemplateCode::Auto).unwrap();
    assert!(auto.templates().all(|t| t.is_cel()));
    assert_eq!(messages(&auto), ["cel: c use :latest (pin your images)"]);
    assert!(eval(&auto, pod("web", "nginx:1.27")).is_empty());
    let rego = code_bundle(&dual(), TemplateCode::Rego).unwrap();
    assert_eq!(messages(&rego), ["rego: no latest"]);
    assert_eq!(
        messages(&code_bundle(&dual(), TemplateCode::Cel).unwrap()),
        messages(&auto)
    );

    // CEL only: evaluated (it used to refuse the whole bundle); no parameters: params is null.
    let cel_only = vec![
        dual_template("K8sNoLatestCel", false),
        constraint("K8sNoLatestCel", "no-latest-cel", json!({})),
    ];
    let b = code_bundle(&cel_only, TemplateCode::Auto).unwrap();
    assert_eq!(messages(&b), ["cel: c use :latest"]);
    let err = code_bundle(&cel_only, TemplateCode::Rego).unwrap_err();
    assert!(format!("{err:?}").contains("has only CEL"), "{err:?}");
    let err = code_bundle(
        &[
            template("K8sAllowedRepos", REPOS),
            constraint("K8sAllowedRepos", "r", json!({})),
        ],
        TemplateCode::Cel,
    )
    .unwrap_err();
    assert!(format!("{err:?}").contains("has only Rego"), "{err:?}");

    // A CEL expression that does not parse names the template and the field.
    let broken = dual_template("K8sBroken", false).replace("size(variables.latest) == 0", "size(");
    let err = code_bundle(&[broken], TemplateCode::Auto).unwrap_err();
    assert!(
        format!("{err:?}")
            .contains("spec.targets.0.code.0.source (K8sNativeValidation): validations[0]"),
        "{err:?}"
    );
}
