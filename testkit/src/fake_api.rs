//! An in-memory Kubernetes API server as a `tower::Service`, for `kube::Client::new` (kube's
//! tower-test pattern, with a handler that answers like the API server instead of a script).
//!
//! It stores objects by resource path and records every request (verb, path, query, content type,
//! body) so tests assert at the HTTP level. Supported: get, list (with `labelSelector` k=v and
//! `fieldSelector` on `metadata.name`/`metadata.namespace`), create (with `generateName`),
//! server-side apply, merge and strategic merge patches (also on `/status`), replace with a
//! resourceVersion check, delete, and discovery of a group version (`GET /apis/GROUP/VERSION`,
//! `/api/v1`), which, as the real API server, answers 404 for one it does not serve. Watches
//! stay open without events: tests drive reconciles directly, and a controller run sees the
//! initial list.
//!
//! Where it and the real API server disagree, it is wrong: the real-cluster tier
//! (`tests/real_cluster`) is the judge.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    /// `VERB path`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    /// collection path (e.g. `/api/v1/namespaces/shop/secrets`) → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    requests: Vec<Recorded>,
    resource_version: u64,
    /// Injected failures: (method, path suffix, status), each used once.
    failures: Vec<(String, String, u16)>,
}

impl State {
    fn object(&self, collection: &str, name: &str) -> Option<&Value> {
        self.objects.get(collection)?.get(name)
    }
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// Where a request points: the collection, the object name and subresource if any.
struct Target {
    /// The namespaced collection path, or the cluster-wide one (`/api/v1/secrets`) for lists.
    collection: String,
    /// For cluster-wide lists: the resource segment prefix to match namespaced collections.
    all_namespaces: Option<(String, String)>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource, tail @ ..] => Some(Target {
            collection: format!("{prefix}/namespaces/{ns}/{resource}"),
            all_namespaces: None,
            name: tail.first().map(|s| s.to_string()),
            subresource: tail.get(1).map(|s| s.to_string()),
        }),
        [resource] => Some(Target {
            collection: format!("{prefix}/{resource}"),
            all_namespaces: Some((format!("{prefix}/namespaces/"), format!("/{resource}"))),
            name: None,
            subresource: None,
        }),
        // A cluster-scoped object (a Namespace, a webhook configuration).
        [resource, name, tail @ ..] => Some(Target {
            collection: format!("{prefix}/{resource}"),
            all_namespaces: None,
            name: Some(name.to_string()),
            subresource: tail.first().map(|s| s.to_string()),
        }),
        _ => None,
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::from_u16(code).unwrap(),
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

/// A strategic merge patch, as far as tests need it: objects merge, and lists of objects with a
/// `name` merge by name (as `webhooks`, `containers` do); other lists are replaced.
fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if p.iter().all(|e| e["name"].is_string()) => {
            for e in p {
                match t.iter_mut().find(|x| x["name"] == e["name"]) {
                    Some(x) => strategic_merge(x, e),
                    None => t.push(e.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// The kinds a Kubernetes 1.37 API server with sealgate's CRDs serves, as far as tests meet them:
/// (group, version, resource, kind, namespaced). Kinds of stored objects are served too.
const SERVED: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "pods", "Pod", true),
    ("", "v1", "services", "Service", true),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "events", "Event", true),
    ("", "v1", "namespaces", "Namespace", false),
    ("apps", "v1", "deployments", "Deployment", true),
    ("apps", "v1", "replicasets", "ReplicaSet", true),
    ("apps", "v1", "statefulsets", "StatefulSet", true),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
    ("batch", "v1", "jobs", "Job", true),
    ("batch", "v1", "cronjobs", "CronJob", true),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true),
    (
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
    ),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
    ),
    ("coordination.k8s.io", "v1", "leases", "Lease", true),
    ("events.k8s.io", "v1", "events", "Event", true),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
    ),
    (
        "sealgate.dev",
        "v1alpha1",
        "sealedsecrets",
        "SealedSecret",
        true,
    ),
    (
        "sealgate.dev",
        "v1alpha1",
        "attestations",
        "Attestation",
        false,
    ),
    (
        "bitnami.com",
        "v1alpha1",
        "sealedsecrets",
        "SealedSecret",
        true,
    ),
];

/// `GET /api/v1` or `/apis/GROUP/VERSION`: the group version, if the path is discovery.
fn discovery_path(path: &str) -> Option<(String, String)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", v] => Some((String::new(), v.to_string())),
        ["apis", g, v] => Some((g.to_string(), v.to_string())),
        _ => None,
    }
}

/// `fieldSelector` terms on `metadata.name` and `metadata.namespace` (what the real server
/// supports for every kind).
fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let term = term.replace("%3D", "=").replace("%2F", "/");
        match term.split_once('=') {
            Some(("metadata.name", v)) => obj["metadata"]["name"].as_str() == Some(v),
            Some(("metadata.namespace", v)) => obj["metadata"]["namespace"].as_str() == Some(v),
            _ => true,
        }
    })
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let term = term.replace("%3D", "=").replace("%2F", "/");
        match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
            None => !obj["metadata"]["labels"][term.as_str()].is_null(),
        }
    })
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Store an object as if created through the API (uid, resourceVersion, creationTimestamp).
    pub fn insert(&self, collection: &str, mut obj: Value) -> Value {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        let rv = s.resource_version;
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let meta = &mut obj["metadata"];
        if meta["uid"].is_null() {
            meta["uid"] = format!("uid-{rv}").into();
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = "2026-11-01T00:00:00Z".into();
        }
        meta["resourceVersion"] = rv.to_string().into();
        s.objects
            .entry(collection.to_string())
            .or_default()
            .insert(name, obj.clone());
        obj
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().object(collection, name).cloned()
    }

    pub fn remove(&self, collection: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get_mut(collection)?
            .remove(name)
    }

    pub fn count(&self, collection_suffix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.objects
            .iter()
            .filter(|(c, _)| c.ends_with(collection_suffix))
            .map(|(_, m)| m.len())
            .sum()
    }

    /// Every recorded request, then forget them.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }

    /// The next `method` request whose path ends with `path_suffix` fails with `status`.
    pub fn fail_next(&self, method: &str, path_suffix: &str, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.failures.push((method.into(), path_suffix.into(), status));
    }

    /// Serve over loopback HTTP (for tests that run the binary with a kubeconfig).
    pub async fn serve_http(&self) -> std::net::SocketAddr {
        let api = self.clone();
        let app = axum::Router::new().fallback(move |req: Request<axum::body::Body>| {
            let api = api.clone();
            async move { api.handle(req).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // Server-side apply bodies are YAML; kube sends JSON, which is YAML too.
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        let watch = query_param(&query, "watch") == Some("true");
        if !watch {
            let mut s = self.state.lock().unwrap();
            s.requests.push(Recorded {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                content_type: content_type.clone(),
                body: body.clone(),
            });
            if let Some(i) = s
                .failures
                .iter()
                .position(|(m, p, _)| *m == method && path.ends_with(p.as_str()))
            {
                let (_, _, code) = s.failures.remove(i);
                return status_error(code, "InternalError", "injected failure");
            }
        } else {
            // A watch with nothing to report: stays open until the client goes away.
            std::future::pending::<()>().await;
        }
        if method == "GET"
            && let Some((group, version)) = discovery_path(&path)
        {
            return self.discovery(&group, &version);
        }
        let Some(t) = parse_path(&path) else {
            return status_error(404, "NotFound", "unknown path");
        };
        // A list of a kind the server does not serve is a 404, as on the real server.
        if method == "GET" && t.name.is_none() && !self.serves(&path) {
            return status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        self.serve(&method, &query, &content_type, t, body)
    }

    /// Whether a collection path (`/apis/G/V/[namespaces/NS/]RESOURCE`) names a served resource.
    fn serves(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return false,
        };
        let resource = match rest {
            ["namespaces", _, r, ..] | [r, ..] => *r,
            _ => return false,
        };
        SERVED
            .iter()
            .any(|(g, v, r, ..)| *g == group && *v == version && *r == resource)
            || self.state.lock().unwrap().objects.keys().any(|c| {
                c.starts_with(&format!("/{}", segs[..segs.len() - rest.len()].join("/")))
                    && c.ends_with(&format!("/{resource}"))
            })
    }

    /// An APIResourceList of the group version: the built-in table and the kinds of stored
    /// objects; 404 when neither has it.
    fn discovery(&self, group: &str, version: &str) -> Response<Full<Bytes>> {
        let prefix = if group.is_empty() {
            format!("/api/{version}/")
        } else {
            format!("/apis/{group}/{version}/")
        };
        let mut resources: BTreeMap<String, (String, bool)> = SERVED
            .iter()
            .filter(|(g, v, ..)| *g == group && *v == version)
            .map(|(_, _, r, k, ns)| (r.to_string(), (k.to_string(), *ns)))
            .collect();
        let s = self.state.lock().unwrap();
        for (collection, objects) in &s.objects {
            let Some(rest) = collection.strip_prefix(&prefix) else {
                continue;
            };
            let (resource, namespaced) = match rest.split('/').collect::<Vec<_>>().as_slice() {
                ["namespaces", _, r] => (r.to_string(), true),
                [r] => (r.to_string(), false),
                _ => continue,
            };
            if let Some(kind) = objects.values().find_map(|o| o["kind"].as_str()) {
                resources
                    .entry(resource)
                    .or_insert((kind.to_string(), namespaced));
            }
        }
        if resources.is_empty() {
            return status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let list: Vec<Value> = resources
            .into_iter()
            .map(|(name, (kind, namespaced))| {
                json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                       "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            })
            .collect();
        respond(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
        )
    }

    fn serve(
        &self,
        method: &str,
        query: &str,
        content_type: &str,
        t: Target,
        body: Value,
    ) -> Response<Full<Bytes>> {
        let mut s = self.state.lock().unwrap();
        match (method, t.name.as_deref()) {
            ("GET", None) => {
                let selector = query_param(query, "labelSelector").unwrap_or("");
                let fields = query_param(query, "fieldSelector").unwrap_or("");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(c, _)| match &t.all_namespaces {
                        Some((pre, suf)) => {
                            **c == t.collection
                                || (c.starts_with(pre.as_str()) && c.ends_with(suf.as_str()))
                        }
                        None => **c == t.collection,
                    })
                    .flat_map(|(_, m)| m.values())
                    .filter(|o| labels_match(o, selector) && fields_match(o, fields))
                    .cloned()
                    .collect();
                let rv = s.resource_version.to_string();
                respond(
                    StatusCode::OK,
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("GET", Some(name)) => match s.object(&t.collection, name) {
                Some(o) => respond(StatusCode::OK, o),
                None => status_error(404, "NotFound", &format!("\"{name}\" not found")),
            },
            ("POST", None) => {
                let mut obj = body;
                if obj["metadata"]["name"].is_null() {
                    let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("x-");
                    obj["metadata"]["name"] = format!("{prefix}{}", s.resource_version + 1).into();
                }
                let name = obj["metadata"]["name"].as_str().unwrap().to_string();
                if s.object(&t.collection, &name).is_some() {
                    return status_error(
                        409,
                        "AlreadyExists",
                        &format!("\"{name}\" already exists"),
                    );
                }
                drop(s);
                let stored = self.insert(&t.collection, obj);
                respond(StatusCode::CREATED, &stored)
            }
            ("PATCH", Some(name)) => {
                let existing = s.object(&t.collection, name).cloned();
                let apply = content_type.starts_with("application/apply-patch");
                let updated = match (existing, t.subresource.as_deref(), apply) {
                    (None, _, false) | (None, Some(_), true) => {
                        return status_error(404, "NotFound", &format!("\"{name}\" not found"));
                    }
                    // Server-side apply: the applied fields replace ours (one manager here).
                    (None, None, true) => body,
                    (Some(mut o), None, true) => {
                        for field in ["data", "type", "immutable", "spec"] {
                            if let Some(v) = body.get(field) {
                                o[field] = v.clone();
                            }
                        }
                        for field in ["labels", "annotations", "ownerReferences"] {
                            if let Some(v) = body["metadata"].get(field) {
                                merge(&mut o["metadata"][field], v);
                            }
                        }
                        o
                    }
                    (Some(mut o), _, false) => {
                        if let Value::String(_) = body {
                            return status_error(415, "UnsupportedMediaType", "not JSON");
                        }
                        if content_type.starts_with("application/strategic-merge-patch") {
                            strategic_merge(&mut o, &body);
                        } else {
                            merge(&mut o, &body);
                        }
                        o
                    }
                    (Some(mut o), Some(_), true) => {
                        merge(&mut o, &body);
                        o
                    }
                };
                drop(s);
                let stored = self.insert(&t.collection, updated);
                respond(StatusCode::OK, &stored)
            }
            ("PUT", Some(name)) => {
                let existing = s.object(&t.collection, name).cloned();
                let Some(existing) = existing else {
                    return status_error(404, "NotFound", &format!("\"{name}\" not found"));
                };
                let sent = &body["metadata"]["resourceVersion"];
                if !sent.is_null() && *sent != existing["metadata"]["resourceVersion"] {
                    return status_error(409, "Conflict", "the object has been modified");
                }
                drop(s);
                let stored = self.insert(&t.collection, body);
                respond(StatusCode::OK, &stored)
            }
            ("DELETE", Some(name)) => match s
                .objects
                .get_mut(&t.collection)
                .and_then(|m| m.remove(name))
            {
                Some(o) => respond(StatusCode::OK, &o),
                None => status_error(404, "NotFound", &format!("\"{name}\" not found")),
            },
            _ => status_error(405, "MethodNotAllowed", "not supported by the fake API"),
        }
    }
}
