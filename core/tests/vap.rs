//! Kubernetes ValidatingAdmissionPolicies in lint's bundle, rule for rule as the API server's
//! `validating` plugin decides (tests/real_cluster/vap.rs compares with the API server itself):
//! matching, parameters, validation actions, failure policy, and what a bundle refuses.

use sealgate_core::policy::vap::api_server_message;
use sealgate_core::policy::{
    Action, Bundle, BundleBuilder, EvalLimits, NamespaceLabels, Point, Review, Violation,
};
use serde_json::{Value, json};

/// The Kubernetes documentation's first example, bound to namespaces labelled
/// `environment: test`.
const DEMO: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups:   ["apps"]
      apiVersions: ["v1"]
      operations:  ["CREATE", "UPDATE"]
      resources:   ["deployments"]
  validations:
    - expression: "object.spec.replicas <= 5"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
"#;

/// A policy with a ConfigMap parameter, variables, a messageExpression and an audit annotation;
/// `BINDING` is replaced by the binding's spec.
const REPLICA_LIMIT: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  variables:
  - name: max
    expression: "int(params.data.maxReplicas)"
  validations:
  - expression: "object.spec.replicas <= variables.max"
    messageExpression: "'replicas must be no greater than ' + string(variables.max)"
  auditAnnotations:
  - key: high-replica-count
    valueExpression: "object.spec.replicas > 3 ? 'replicas: ' + string(object.spec.replicas) : null"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-binding
spec:
  policyName: replica-limit
BINDING
"#;

fn deployment(ns: &str, replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": ns, "labels": labels},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
}

fn config_map(ns: &str, name: &str, max: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "data": {"maxReplicas": max}})
}

fn bundle(text: &str) -> Bundle {
    bundle_with(text, Vec::new())
}

fn bundle_with(text: &str, inventory: Vec<Value>) -> Bundle {
    try_bundle_with(text, inventory).unwrap_or_else(|e| panic!("{e}"))
}

fn try_bundle(text: &str) -> Result<Bundle, String> {
    try_bundle_with(text, Vec::new())
}

fn try_bundle_with(text: &str, inventory: Vec<Value>) -> Result<Bundle, String> {
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.admission_policies(true);
    b.add_text("policies.yaml", text);
    b.add_inventory(inventory);
    b.build().map_err(|e| e.to_string())
}

fn namespaces() -> NamespaceLabels {
    [
        ("shop", json!({"environment": "test"})),
        ("prod", json!({"environment": "prod"})),
    ]
    .into_iter()
    .map(|(n, l)| (n.to_string(), serde_json::from_value(l).unwrap()))
    .collect()
}

fn judge(b: &Bundle, object: Value) -> Vec<Violation> {
    b.evaluate(&Review::for_object(object, Point::Ci), &namespaces())
}

fn brief(v: &[Violation]) -> Vec<(String, String, Action, String)> {
    v.iter()
        .map(|v| {
            (
                v.policy.to_string(),
                v.constraint.clone(),
                v.action,
                v.message.clone(),
            )
        })
        .collect()
}

#[test]
fn the_documentation_example_denies_as_the_api_server_words_it() {
    let b = bundle(DEMO);
    let v = judge(&b, deployment("shop", 7, json!({})));
    assert_eq!(
        brief(&v),
        [(
            "demo-policy.example.com".into(),
            "demo-binding-test.example.com".into(),
            Action::Deny,
            "failed expression: object.spec.replicas <= 5".into()
        )]
    );
    assert_eq!(
        api_server_message(&v[0]).unwrap(),
        "ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
    );
    // Within the limit; another namespace; another kind; not a VAP's resource version.
    assert!(judge(&b, deployment("shop", 5, json!({}))).is_empty());
    assert!(judge(&b, deployment("prod", 7, json!({}))).is_empty());
    let mut rs = deployment("shop", 7, json!({}));
    rs["kind"] = json!("ReplicaSet");
    assert!(judge(&b, rs).is_empty());
    // matchPolicy Equivalent (the default) matches the group's other versions; Exact does not.
    let mut beta = deployment("shop", 7, json!({}));
    beta["apiVersion"] = json!("apps/v1beta2");
    assert_eq!(judge(&b, beta.clone()).len(), 1);
    let exact = bundle(&DEMO.replace(
        "    resourceRules:",
        "    matchPolicy: Exact\n    resourceRules:",
    ));
    assert!(judge(&exact, beta).is_empty());
    // The namespace's labels are needed and unknown: the binding cannot be applied, which
    // fails the request under failurePolicy Fail, and says what to do.
    let v = judge(&b, deployment("unknown", 7, json!({})));
    assert_eq!(v.len(), 1);
    assert!(v[0].evaluation_error);
    assert!(
        v[0].message.starts_with("failed to configure binding: namespaceSelector needs the labels of Namespace \"unknown\"")
            && v[0].message.contains("--inventory"),
        "{}",
        v[0].message
    );
    let ignore = bundle(&DEMO.replace("failurePolicy: Fail", "failurePolicy: Ignore"));
    assert!(judge(&ignore, deployment("unknown", 7, json!({}))).is_empty());
}

#[test]
fn parameters_by_name_and_selector_and_when_none_is_found() {
    let by_name = |action: &str| {
        REPLICA_LIMIT.replace(
            "BINDING",
            &format!(
                "  validationActions: [Deny]\n  paramRef:\n    name: limit\n    parameterNotFoundAction: {action}"
            ),
        )
    };
    let params = vec![
        config_map("shop", "limit", "3", json!({})),
        config_map("prod", "limit", "10", json!({})),
    ];
    let b = bundle_with(&by_name("Deny"), params.clone());
    // The parameter of the object's namespace.
    assert_eq!(
        brief(&judge(&b, deployment("shop", 4, json!({})))),
        [(
            "replica-limit".into(),
            "replica-limit-binding".into(),
            Action::Deny,
            "replicas must be no greater than 3".into()
        )]
    );
    assert!(judge(&b, deployment("prod", 4, json!({}))).is_empty());
    // None in its namespace: Deny denies (whatever the validations say), Allow admits.
    let v = judge(&b, deployment("other", 1, json!({})));
    assert_eq!(
        v[0].message,
        "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    );
    assert_eq!(v[0].action, Action::Deny);
    let allow = bundle_with(&by_name("Allow"), params.clone());
    assert!(judge(&allow, deployment("other", 100, json!({}))).is_empty());
    // A namespace given in paramRef; a cluster-scoped object has no namespace to look in.
    let pinned = bundle_with(
        &by_name("Deny").replace("name: limit\n", "name: limit\n    namespace: prod\n"),
        params.clone(),
    );
    assert!(judge(&pinned, deployment("shop", 7, json!({}))).is_empty());
    assert_eq!(judge(&pinned, deployment("shop", 11, json!({}))).len(), 1);
    // A selector: the policy is evaluated once per parameter found.
    let selected = bundle_with(&REPLICA_LIMIT.replace(
            "BINDING",
            "  validationActions: [Deny]\n  paramRef:\n    selector: {matchLabels: {tier: web}}\n    parameterNotFoundAction: Allow",
        ), vec![
            config_map("shop", "a", "3", json!({"tier": "web"})),
            config_map("shop", "b", "5", json!({"tier": "web"})),
            config_map("shop", "c", "1", json!({"tier": "db"})),
        ]);
    let messages: Vec<String> = judge(&selected, deployment("shop", 6, json!({})))
        .into_iter()
        .map(|v| v.message)
        .collect();
    assert_eq!(
        messages,
        [
            "replicas must be no greater than 3",
            "replicas must be no greater than 5"
        ]
    );
    // Parameters from the linted files join the inventory's.
    let mut b = bundle(&by_name("Deny"));
    b.add_params(&[config_map("shop", "limit", "2", json!({}))]);
    assert_eq!(
        judge(&b, deployment("shop", 3, json!({})))[0].message,
        "replicas must be no greater than 2"
    );
}

#[test]
fn validation_actions_map_onto_lint_actions_and_the_api_server_wording() {
    let with = |actions: &str| {
        bundle_with(&REPLICA_LIMIT.replace(
                "BINDING",
                &format!(
                    "  validationActions: {actions}\n  paramRef:\n    name: limit\n    parameterNotFoundAction: Deny"
                ),
            ), vec![config_map("shop", "limit", "3", json!({}))])
    };
    let action = |actions: &str| judge(&with(actions), deployment("shop", 4, json!({})))[0].action;
    assert_eq!(action("[Deny]"), Action::Deny);
    assert_eq!(action("[Deny, Audit]"), Action::Deny);
    assert_eq!(action("[Warn]"), Action::Warn);
    assert_eq!(action("[Warn, Audit]"), Action::Warn);
    assert_eq!(action("[Audit]"), Action::Dryrun);
    let warn = judge(&with("[Warn]"), deployment("shop", 4, json!({})));
    assert_eq!(
        api_server_message(&warn[0]).unwrap(),
        "Validation failed for ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding': replicas must be no greater than 3"
    );
    assert_eq!(
        api_server_message(&judge(&with("[Audit]"), deployment("shop", 4, json!({})))[0]),
        None
    );
    // A parameter that cannot be had denies whatever the actions, as the API server does.
    let v = judge(&with("[Warn]"), deployment("other", 4, json!({})));
    assert_eq!(v[0].action, Action::Deny);
}

#[test]
fn match_rules_selectors_conditions_and_failure_policy() {
    let policy = |extra_match: &str, extra_spec: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: no-latest}}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["*"]
      resources: ["pods", "configmaps"]
{extra_match}
{extra_spec}
  validations:
  - expression: "!has(object.spec) || object.spec.containers.all(c, !c.image.endsWith(':latest'))"
    message: "no :latest images"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: no-latest}}
spec:
  policyName: no-latest
  validationActions: [Deny]
"#
        )
    };
    let pod = |name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "shop", "labels": labels},
               "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}})
    };
    let denied = |b: &Bundle, o: Value| !judge(b, o).is_empty();
    let plain = bundle(&policy("", ""));
    assert!(denied(&plain, pod("p", json!({}))));
    let excluded = bundle(&policy(
        "    excludeResourceRules:\n    - {apiGroups: [\"\"], apiVersions: [\"*\"], operations: [\"*\"], resources: [\"pods\"], resourceNames: [\"exempt\"]}",
        "",
    ));
    assert!(!denied(&excluded, pod("exempt", json!({}))));
    assert!(denied(&excluded, pod("other", json!({}))));
    let selected = bundle(&policy(
        "    objectSelector: {matchExpressions: [{key: skip, operator: DoesNotExist}]}",
        "",
    ));
    assert!(!denied(&selected, pod("p", json!({"skip": "yes"}))));
    let cluster = bundle(&policy("", "").replace(
        "resources: [\"pods\", \"configmaps\"]",
        "resources: [\"pods\"]\n      scope: Cluster",
    ));
    assert!(!denied(&cluster, pod("p", json!({}))));
    // matchConditions: a false one skips the policy; one that fails follows failurePolicy.
    let conditions = |failure: &str| {
        bundle(&policy(
            "",
            &format!(
                "  failurePolicy: {failure}\n  matchConditions:\n  - name: not-exempt\n    expression: \"!('exempt' in object.metadata.labels)\"\n  - name: broken\n    expression: \"object.metadata.labels.missing == 'x'\""
            ),
        ))
    };
    let exempt = pod("p", json!({"exempt": "true", "missing": "y"}));
    assert!(!denied(&conditions("Fail"), exempt));
    let v = judge(&conditions("Fail"), pod("p", json!({})));
    assert_eq!(v.len(), 1);
    assert!(v[0].evaluation_error);
    assert_eq!(
        v[0].message,
        "expression 'object.metadata.labels.missing == 'x'' resulted in error: no such key: missing"
    );
    assert!(judge(&conditions("Ignore"), pod("p", json!({}))).is_empty());
    // An AdmissionReview is judged with its operation: a DELETE is not a CREATE.
    let delete_only =
        bundle(&policy("", "").replace("operations: [\"*\"]", "operations: [\"DELETE\"]"));
    assert!(!denied(&delete_only, pod("p", json!({}))));
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "1", "operation": "DELETE", "namespace": "shop", "name": "p",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "userInfo": {"username": "alice"}, "object": null,
                    "oldObject": pod("p", json!({}))}});
    let review = Review::from_admission_review(review, Point::Ci).unwrap();
    assert!(delete_only.evaluate(&review, &namespaces()).is_empty());
}

#[test]
fn request_variables_and_errors_that_never_show_a_value() {
    let text = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: secret-shape}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["secrets"]}
  validations:
  - expression: "request.resource.resource == 'secrets' && request.operation == 'CREATE' && namespaceObject.metadata.labels.environment == 'test'"
    message: "request fields"
  - expression: "object.data.password + 1 == 2"
  auditAnnotations:
  - key: bad
    valueExpression: "1"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: secret-shape}
spec:
  policyName: secret-shape
  validationActions: [Deny]
"#;
    let b = bundle(text);
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s", "namespace": "shop"},
                        "data": {"password": "aHVudGVyMg=="}});
    let v = judge(&b, secret);
    let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "expression 'object.data.password + 1 == 2' resulted in error: no such overload",
            "valueExpression of audit annotation bad resulted in unsupported return type: an integer. Return type must be either string or null."
        ],
        "the request's resource, operation and namespace are CEL's (no 'request fields' denial)"
    );
    for v in &v {
        assert!(!format!("{v:?}").contains("aHVudGVyMg"), "{v:?}");
    }
}

#[test]
fn a_bundle_refuses_what_the_api_server_refuses_and_names_it() {
    let binding = |spec: &str| {
        format!(
            "{DEMO}---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {{name: extra}}\nspec:\n{spec}\n"
        )
    };
    let refused = |text: &str, want: &str| {
        let e = try_bundle(text).expect_err(text);
        assert!(e.contains(want), "{e}\nwants {want:?}");
    };
    refused(
        &binding("  policyName: missing\n  validationActions: [Deny]"),
        "policies.yaml:29: ValidatingAdmissionPolicyBinding extra: no ValidatingAdmissionPolicy named \"missing\" is loaded",
    );
    refused(
        &binding("  policyName: demo-policy.example.com\n  validationActions: [Deny, Warn]"),
        "Deny and Warn may not be used together",
    );
    refused(
        &binding("  policyName: demo-policy.example.com"),
        "spec.validationActions is required",
    );
    refused(
        &binding(
            "  policyName: demo-policy.example.com\n  validationActions: [Deny]\n  paramRef: {name: a, selector: {}, parameterNotFoundAction: Deny}",
        ),
        "exactly one of name and selector",
    );
    refused(
        &binding(
            "  policyName: demo-policy.example.com\n  validationActions: [Deny]\n  paramRef: {name: a}",
        ),
        "parameterNotFoundAction is required",
    );
    refused(
        &DEMO.replace("object.spec.replicas <= 5", "object.spec.replicas <="),
        "policies.yaml:2: ValidatingAdmissionPolicy demo-policy.example.com: spec: validations[0]",
    );
    refused(
        &DEMO.replace("    resourceRules:", "    resources:"),
        "spec.matchConstraints.resourceRules is required",
    );
    // The webhook and audit do not read them: the API server evaluates them at admission.
    let mut b = BundleBuilder::new(EvalLimits::default());
    b.add_text("policies.yaml", DEMO);
    let b = b.build().unwrap();
    assert!(b.admission_policies().is_empty());
    assert!(judge(&b, deployment("shop", 7, json!({}))).is_empty());
}

#[test]
fn an_evaluation_that_could_exceed_the_cost_budget_is_not_started() {
    let policy = |failure: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: quadratic}}
spec:
  failurePolicy: {failure}
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}}
  validations:
  - expression: "object.data.all(k, object.data.all(j, k == j || object.data[k] != object.data[j]))"
    message: "values are unique"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: quadratic}}
spec:
  policyName: quadratic
  validationActions: [Deny]
"#
        )
    };
    let config_map = |keys: usize| {
        let data: serde_json::Map<String, Value> = (0..keys)
            .map(|i| (format!("key-{i}"), json!(format!("value-{i}"))))
            .collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "big", "namespace": "shop"}, "data": data})
    };
    let fail = bundle(&policy("Fail"));
    // A small object is evaluated (and passes); one whose size puts the bound over the budget
    // is not: an error under failurePolicy Fail, nothing under Ignore.
    assert!(judge(&fail, config_map(20)).is_empty());
    let v = judge(&fail, config_map(3000));
    assert_eq!(v.len(), 1);
    assert!(v[0].evaluation_error);
    assert!(
        v[0].message
            .starts_with("operation cancelled: evaluating it on this object could cost ")
            && v[0].message.contains("over the budget of 10000000"),
        "{}",
        v[0].message
    );
    let ignore = bundle(&policy("Ignore"));
    assert!(judge(&ignore, config_map(3000)).is_empty());
}
