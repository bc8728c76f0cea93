//! `audit` against a mocked API server: discovery, paginated lists, evaluation at point `audit`.

use http::{Request, Response};
use kube::client::Body;
use sealgate_core::policy::{Action, Point, Sources};
use serde_json::{Value, json};

fn resources(group_version: &str, list: &[(&str, &str, bool)]) -> Value {
    let rs: Vec<Value> = list
        .iter()
        .map(|(name, kind, namespaced)| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list", "watch"]}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": rs})
}

/// The API server: discovery documents and lists, answered by path.
fn answer(path: &str, query: &str) -> Value {
    let list = |items: Vec<Value>, cont: &str| json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5", "continue": cont}, "items": items});
    match path {
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
            {"name": "coordination.k8s.io", "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}}]}),
        "/apis/apps/v1" => resources(
            "apps/v1",
            &[
                ("deployments", "Deployment", true),
                ("deployments/scale", "Scale", true),
            ],
        ),
        "/apis/coordination.k8s.io/v1" => {
            resources("coordination.k8s.io/v1", &[("leases", "Lease", true)])
        }
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/api/v1" => resources(
            "v1",
            &[
                ("namespaces", "Namespace", false),
                ("configmaps", "ConfigMap", true),
                ("secrets", "Secret", true),
            ],
        ),
        "/api/v1/namespaces" => list(
            vec![
                json!({"metadata": {"name": "shop", "labels": {"sealgate.dev/governed": "true"}}}),
            ],
            "",
        ),
        // Two pages: the continue token must be followed.
        "/api/v1/configmaps" if !query.contains("continue=") => list(
            vec![
                json!({"metadata": {"name": "ok", "namespace": "shop"}, "data": {"LEVEL": "info"}}),
            ],
            "page2",
        ),
        "/api/v1/configmaps" => list(
            vec![
                json!({"metadata": {"name": "leaky", "namespace": "shop"}, "data": {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"}}),
            ],
            "",
        ),
        "/api/v1/secrets" => list(
            vec![
                json!({"metadata": {"name": "s", "namespace": "shop"}, "type": "Opaque", "data": {"k": "dg=="}}),
            ],
            "",
        ),
        "/apis/apps/v1/deployments" => list(
            vec![
                json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:latest"}]}}}}),
            ],
            "",
        ),
        other => panic!("unexpected request to {other}"),
    }
}

#[tokio::test]
async fn audit_lists_what_constraints_match_and_evaluates_it() {
    let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut paths = Vec::new();
        while let Some((req, send)) = api.next_request().await {
            let (path, query) = (
                req.uri().path().to_string(),
                req.uri().query().unwrap_or("").to_string(),
            );
            paths.push(path.clone());
            send.send_response(
                Response::builder()
                    .body(Body::from(
                        serde_json::to_vec(&answer(&path, &query)).unwrap(),
                    ))
                    .unwrap(),
            );
        }
        paths
    });
    let report = sealgate_webhook::audit::run(client, &Sources::default())
        .await
        .unwrap();
    let paths = server.await.unwrap();
    assert!(
        !paths.iter().any(|p| p.contains("leases")),
        "high-churn kinds are skipped: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "/api/v1/configmaps").count(),
        2,
        "both pages: {paths:?}"
    );
    assert_eq!(
        report.objects, 5,
        "2 ConfigMaps, 1 Secret, 1 Deployment, 1 Namespace"
    );
    let found: Vec<(String, Action, String)> = report
        .violations()
        .map(|v| (v.constraint.clone(), v.action, v.object.to_string()))
        .collect();
    assert!(
        found.contains(&(
            "no-secret-values".into(),
            Action::Deny,
            "ConfigMap shop/leaky".into()
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(c, _, o)| c == "image-policy" && o == "Deployment shop/web"),
        "{found:?}"
    );
    // Scoped to CI only: a plain Secret in the cluster is the controller's doing, not a finding.
    assert!(
        !found.iter().any(|(c, _, _)| c == "no-plaintext-secrets"),
        "{found:?}"
    );
    // Admission-only identity rules have no request user in an audit.
    assert!(
        !found.iter().any(|(c, _, _)| c.starts_with("gitops-")),
        "{found:?}"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // As PolicyReports: one for namespace shop, with the failing ConfigMap and passes.
    let reports = sealgate_core::policy::report::policy_reports(
        &report.results,
        Point::Audit,
        7,
        sealgate_core::policy::report::ReportApi::WgPolicy,
    );
    let shop = reports
        .iter()
        .find(|r| r["kind"] == "PolicyReport" && r["metadata"]["namespace"] == "shop")
        .expect("a PolicyReport for shop");
    assert_eq!(shop["metadata"]["name"], "sealgate-audit");
    let results = shop["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["result"] == "fail"
        && r["rule"] == "no-secret-values"
        && r["resources"][0]["name"] == "leaky"
        && r["properties"]["enforcementPoint"] == "audit"));
    assert!(results.iter().any(|r| r["result"] == "pass"
        && r["rule"] == "no-secret-values"
        && r["resources"][0]["name"] == "ok"));
    assert!(
        shop["summary"]["fail"].as_u64().unwrap() >= 2,
        "{}",
        shop["summary"]
    );
}

/// Audit builds its bundle as the webhook does: the kinds the sync configuration names are
/// listed into `data.inventory` first, so a referential template sees the cluster.
#[tokio::test]
async fn audit_sees_the_synced_inventory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        r#"apiVersion: syncset.gatekeeper.sh/v1alpha1
kind: SyncSet
metadata: {name: services}
spec:
  gvks: [{group: "", version: v1, kind: Service}]
---
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: uniqueselector}
spec:
  crd: {spec: {names: {kind: UniqueSelector}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package uniqueselector
        violation[{"msg": msg}] {
          other := data.inventory.namespace[ns]["v1"]["Service"][name]
          name != input.review.object.metadata.name
          other.spec.selector == input.review.object.spec.selector
          msg := sprintf("same selector as Service %v/%v", [ns, name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: UniqueSelector
metadata: {name: unique-selector}
spec:
  match:
    kinds: [{apiGroups: [""], kinds: [Service]}]
"#,
    )
    .unwrap();
    let services = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"}, "items": [
        {"metadata": {"name": "a", "namespace": "shop"}, "spec": {"selector": {"app": "web"}}},
        {"metadata": {"name": "b", "namespace": "shop"}, "spec": {"selector": {"app": "web"}}},
        {"metadata": {"name": "c", "namespace": "shop"}, "spec": {"selector": {"app": "db"}}}]});
    let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        while let Some((req, send)) = api.next_request().await {
            let body = match req.uri().path() {
                "/api/v1/services" => services.clone(),
                "/api/v1" => resources(
                    "v1",
                    &[
                        ("services", "Service", true),
                        ("namespaces", "Namespace", false),
                    ],
                ),
                "/api" => {
                    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                }
                "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
                "/api/v1/namespaces" => {
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [{"metadata": {"name": "shop"}}]})
                }
                other => panic!("unexpected request to {other}"),
            };
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let sources = Sources {
        builtin: false,
        policies: vec![dir.path().to_path_buf()],
        ..Sources::default()
    };
    let report = sealgate_webhook::audit::run(client, &sources)
        .await
        .unwrap();
    server.abort();
    let mut found: Vec<String> = report
        .violations()
        .map(|v| format!("{}: {}", v.object, v.message))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "Service shop/a: same selector as Service shop/b",
            "Service shop/b: same selector as Service shop/a"
        ],
        "{:?}",
        report.errors
    );
}
