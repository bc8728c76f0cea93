//! `audit` against a mocked API server: discovery, paginated lists, evaluation at point `audit`.

use http::{Request, Response};
use kube::client::Body;
use sealgate_core::policy::{Action, BundleBuilder, Limits};
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
    let mut b = BundleBuilder::new(Limits::default());
    b.add_builtin();
    let bundle = b.build().unwrap();
    let report = sealgate_webhook::audit::run(client, &bundle).await.unwrap();
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
        .violations
        .iter()
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
}
