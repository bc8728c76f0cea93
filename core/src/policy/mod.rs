//! The policy engine shared by `sealgate lint` and the admission webhook: Gatekeeper
//! ConstraintTemplates and Constraints, plus conftest-style modules, evaluated with regorus.
//!
//! - [`matching`]: the Constraint `match` block.
//! - [`builtins`] and `compat`: what makes regorus behave like OPA on Gatekeeper templates.
//! - [`suite`]: `gator verify` Suite files.
//! - [`builtin_bundle`]: the policies shipped in the binary (`policies/`).
//!
//! Everything is compiled once into a [`Bundle`]; evaluation clones a prepared engine per
//! (document, constraint), which shares the parsed modules and data.

pub mod builtin_bundle;
pub mod builtins;
mod compat;
pub mod matching;
mod schema;
pub mod scope;
pub mod suite;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use regorus::Value as RValue;
use serde_json::{Value, json};

use matching::{Match, ObjectInfo};
use scope::KindScopes;

/// Where a policy is being enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// `sealgate lint` (Gatekeeper's `gator.gatekeeper.sh`).
    Ci,
    /// The admission webhook (`validation.gatekeeper.sh`).
    Admission,
    /// Background audit (`audit.gatekeeper.sh`).
    Audit,
}

impl Point {
    pub fn as_str(self) -> &'static str {
        match self {
            Point::Ci => "ci",
            Point::Admission => "admission",
            Point::Audit => "audit",
        }
    }

    /// Whether an enforcement point name (sealgate's or Gatekeeper's) names this point.
    fn is_named(self, name: &str) -> bool {
        name == "*"
            || name == self.as_str()
            || name
                == match self {
                    Point::Ci => "gator.gatekeeper.sh",
                    Point::Admission => "validation.gatekeeper.sh",
                    Point::Audit => "audit.gatekeeper.sh",
                }
    }
}

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Reported only (audit, `--format json`); never fails anything.
    Dryrun,
    /// Reported as a warning; fails lint only with `--fail-on-warn`.
    Warn,
    /// Fails lint and denies admission.
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Dryrun => "dryrun",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "deny" => Some(Action::Deny),
            "warn" => Some(Action::Warn),
            "dryrun" => Some(Action::Dryrun),
            _ => None,
        }
    }
}

/// Errors that make a bundle unusable. Each names the file and the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{file}: ConstraintTemplate {template}: Rego error: {message}")]
    Rego {
        file: String,
        template: String,
        message: String,
    },
    #[error("{file}: {what}: {problem}")]
    At {
        file: String,
        what: String,
        problem: String,
    },
}

fn at(source: &str, what: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError::At {
        file: source.to_string(),
        what: what.into(),
        problem: problem.into(),
    }
}

/// How a constraint is enforced.
#[derive(Debug, Clone, PartialEq)]
pub enum Enforcement {
    Action(Action),
    /// `enforcementAction: scoped`: actions per enforcement point.
    Scoped(Vec<(Action, Vec<String>)>),
}

impl Enforcement {
    fn parse(spec: Option<&Value>) -> Result<Enforcement, String> {
        let action = spec
            .and_then(|s| s.get("enforcementAction"))
            .and_then(Value::as_str)
            .unwrap_or("deny");
        if action != "scoped" {
            return Action::parse(action)
                .map(Enforcement::Action)
                .ok_or_else(|| {
                    format!("spec.enforcementAction {action:?} is not deny, warn, dryrun or scoped")
                });
        }
        let mut scoped = Vec::new();
        for e in spec
            .and_then(|s| s.get("scopedEnforcementActions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let a = e.get("action").and_then(Value::as_str).unwrap_or("");
            let a = Action::parse(a).ok_or_else(|| {
                format!("spec.scopedEnforcementActions: action {a:?} is not deny, warn or dryrun")
            })?;
            let points = e
                .get("enforcementPoints")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            scoped.push((a, points));
        }
        if scoped.is_empty() {
            return Err("enforcementAction: scoped needs spec.scopedEnforcementActions".into());
        }
        Ok(Enforcement::Scoped(scoped))
    }

    /// The action at `point`, or `None` if the constraint is not enforced there. With several
    /// scoped actions for one point, the strongest wins.
    pub fn at(&self, point: Point) -> Option<Action> {
        match self {
            Enforcement::Action(a) => Some(*a),
            Enforcement::Scoped(list) => list
                .iter()
                .filter(|(_, points)| points.iter().any(|p| point.is_named(p)))
                .map(|(a, _)| *a)
                .max(),
        }
    }
}

/// A compiled ConstraintTemplate.
#[derive(Clone)]
pub struct Template {
    pub kind: String,
    pub source: String,
    entry: String,
    engine: regorus::Engine,
    /// The same policy compiled for regorus's register VM; `None` when the VM cannot compile it
    /// (the interpreter is used).
    vm: Option<VmProgram>,
    /// `spec.crd.spec.validation.openAPIV3Schema`, checked against constraint parameters.
    schema: Option<Value>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// A Constraint: an instance of a template with its match, parameters and enforcement.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub kind: String,
    pub name: String,
    pub source: String,
    pub matcher: Match,
    pub parameters: RValue,
    pub enforcement: Enforcement,
}

/// conftest-style modules: `package main` with `deny`/`warn`/`violation` rules on the raw object.
#[derive(Clone)]
struct Conftest {
    engine: regorus::Engine,
    /// (rule path, rule name, action)
    rules: Vec<(String, String, Action)>,
}

/// What is evaluated: an AdmissionRequest-shaped review, as Gatekeeper builds it.
#[derive(Debug, Clone)]
pub struct Review {
    pub request: Value,
    pub point: Point,
    pub file: Option<String>,
    pub line: Option<usize>,
}

impl Review {
    /// A bare object, as gator and audit review it: no operation or user, `oldObject: null`.
    pub fn for_object(object: Value, point: Point) -> Review {
        let info = ObjectInfo::of(&object, None, None);
        let version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let request = json!({
            "kind": {"group": info.group, "version": version, "kind": info.kind},
            "name": info.name,
            "namespace": info.namespace.clone().unwrap_or_default(),
            "operation": "",
            "userInfo": {},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        });
        Review {
            request,
            point,
            file: None,
            line: None,
        }
    }

    /// An `admission.k8s.io/v1` AdmissionReview: its request is evaluated as is (a recorded
    /// request can be replayed offline). For DELETE, `object` is `oldObject`, as in Gatekeeper.
    pub fn from_admission_review(mut review: Value, point: Point) -> Result<Review, String> {
        // Taken, not cloned: the webhook hands over the review it parsed.
        let mut request = review
            .get_mut("request")
            .filter(|r| r.is_object())
            .map(Value::take)
            .ok_or("the AdmissionReview has no request")?;
        let is_delete = request.get("operation").and_then(Value::as_str) == Some("DELETE");
        if is_delete && request.get("object").is_none_or(Value::is_null) {
            let old = request
                .get("oldObject")
                .filter(|o| !o.is_null())
                .cloned()
                .ok_or("a DELETE AdmissionReview needs request.oldObject")?;
            request["object"] = old;
        }
        if request.get("object").is_none_or(Value::is_null) {
            return Err("the AdmissionReview has no request.object".into());
        }
        for (k, default) in [
            ("oldObject", Value::Null),
            ("userInfo", json!({})),
            ("operation", json!("")),
        ] {
            if request.get(k).is_none() {
                request[k] = default;
            }
        }
        Ok(Review {
            request,
            point,
            file: None,
            line: None,
        })
    }

    /// A document as `lint` and `policy verify` read it: an AdmissionReview is that request (at
    /// the point `admission`), anything else a bare object at `point`.
    pub fn from_document(doc: Value, point: Point) -> Result<Review, String> {
        if Review::is_admission_review(&doc) {
            Review::from_admission_review(doc, Point::Admission)
        } else {
            Ok(Review::for_object(doc, point))
        }
    }

    pub fn is_admission_review(v: &Value) -> bool {
        v.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
            && v.get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("admission.k8s.io/"))
    }

    pub fn at(mut self, file: impl Into<String>, line: usize) -> Review {
        self.file = Some(file.into());
        self.line = Some(line);
        self
    }

    pub fn object(&self) -> &Value {
        &self.request["object"]
    }
}

/// The object a violation is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of(object: &Value) -> ObjectRef {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let meta = object.get("metadata");
        ObjectRef {
            api_version: s(object.get("apiVersion")),
            kind: s(object.get("kind")),
            namespace: s(meta.and_then(|m| m.get("namespace"))),
            name: s(meta
                .and_then(|m| m.get("name"))
                .or_else(|| meta.and_then(|m| m.get("generateName")))),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (false, _) => write!(f, "{} {}/{}", self.kind, self.namespace, self.name),
            (true, false) => write!(f, "{} {}", self.kind, self.name),
            (true, true) => write!(f, "{} (unnamed)", self.kind),
        }
    }
}

/// One violation of one constraint by one object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// The template kind (or `conftest`).
    pub policy: String,
    /// The constraint name (or the conftest rule).
    pub constraint: String,
    pub message: String,
    pub details: Value,
    pub action: Action,
    pub object: ObjectRef,
    /// The offending field, when the policy reports one (`path` in the violation or its details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
    /// The policy failed to evaluate (timeout, runtime error): the message says why.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub evaluation_error: bool,
}

impl Violation {
    /// A constraint (or conftest rule) that could not be decided for an object: Gatekeeper
    /// reports it as a violation of that constraint whose message is the error.
    fn evaluation_error(
        policy: &str,
        constraint: &str,
        message: String,
        action: Action,
        object: &ObjectRef,
    ) -> Violation {
        Violation {
            policy: policy.to_string(),
            constraint: constraint.to_string(),
            message,
            details: json!({}),
            action,
            object: object.clone(),
            path: None,
            evaluation_error: true,
        }
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Labels of known Namespaces, for `namespaceSelector`.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A compiled policy bundle.
#[derive(Clone, Default)]
pub struct Bundle {
    templates: HashMap<String, Arc<Template>>,
    constraints: Vec<Constraint>,
    conftest: Option<Arc<Conftest>>,
    namespaces: NamespaceLabels,
    /// Which kinds are namespaced, for `match`.
    scopes: KindScopes,
    /// Evaluate templates on the register VM where they compiled, or on the interpreter.
    use_vm: bool,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .field("constraints", &self.constraints.len())
            .finish()
    }
}

/// Evaluation settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock limit for one evaluation of one constraint.
    pub eval_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            eval_timeout: Duration::from_secs(2),
        }
    }
}

/// Collects policy sources, then compiles them into a [`Bundle`].
#[derive(Default)]
pub struct BundleBuilder {
    templates: Vec<(String, Value)>,
    constraints: Vec<(String, Value)>,
    modules: Vec<(String, String)>,
    inventory: Vec<Value>,
    /// CustomResourceDefinitions found among the policies and the inventory.
    crds: Vec<Value>,
    scopes: KindScopes,
    errors: Vec<PolicyError>,
    limits: Limits,
    use_vm: bool,
    /// Apply the OPA-compatibility edits (`compat`); off only to test the edits themselves.
    compat: bool,
}

/// Directories under a policy directory that hold examples, not policy.
const SKIPPED_DIRS: &[&str] = &["samples", "testdata", "tests"];

impl BundleBuilder {
    pub fn new(limits: Limits) -> BundleBuilder {
        BundleBuilder {
            limits,
            use_vm: true,
            compat: true,
            ..BundleBuilder::default()
        }
    }

    /// Evaluate on regorus's register VM (the default; ~1.9× faster) or only on its interpreter
    /// (`--rego-engine interpreter`, an escape hatch should a policy meet a VM gap).
    pub fn use_vm(&mut self, use_vm: bool) {
        self.use_vm = use_vm;
    }

    /// The policies compiled into sealgate (`policies/`).
    pub fn add_builtin(&mut self) {
        for (path, text) in builtin_bundle::FILES {
            self.add_text(&format!("builtin:{path}"), text);
        }
    }

    /// A file or a directory tree: ConstraintTemplates and Constraints from YAML/JSON files, conftest
    /// modules from `.rego` files (not `*_test.rego`). Hidden directories and `samples/`,
    /// `testdata/`, `tests/` are skipped; suites and other kinds are ignored.
    pub fn add_path(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(PolicyError::Invalid(format!(
                    "cannot read policy path {}: {e}",
                    path.display()
                )));
                return;
            }
        };
        if meta.is_dir() {
            let mut entries: Vec<_> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    self.errors.push(PolicyError::Invalid(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                    return;
                }
            };
            entries.sort();
            for p in entries {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with('.') || (p.is_dir() && SKIPPED_DIRS.contains(&name)) {
                    continue;
                }
                if p.is_dir() || is_policy_file(&p) {
                    self.add_path(&p);
                }
            }
            return;
        }
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) if source.ends_with(".rego") => self.add_module(&source, &text),
            Ok(text) => self.add_text(&source, &text),
            Err(e) => self
                .errors
                .push(PolicyError::Invalid(format!("cannot read {source}: {e}"))),
        }
    }

    /// YAML/JSON text with templates and constraints.
    pub fn add_text(&mut self, source: &str, text: &str) {
        let docs = match crate::manifest::parse(text.as_bytes(), &Default::default()) {
            Ok(d) => d,
            Err(e) => {
                self.errors
                    .push(PolicyError::Invalid(format!("{source}:{e}")));
                return;
            }
        };
        for doc in docs {
            let api = doc
                .value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let where_ = format!("{source}:{}", doc.line);
            if api.starts_with("templates.gatekeeper.sh/") {
                self.templates.push((where_, doc.value));
            } else if api.starts_with("constraints.gatekeeper.sh/") {
                self.constraints.push((where_, doc.value));
            } else if api.starts_with("apiextensions.k8s.io/") {
                self.crds.push(doc.value);
            }
        }
    }

    /// A conftest-style Rego module.
    pub fn add_module(&mut self, source: &str, text: &str) {
        if !source.ends_with("_test.rego") {
            self.modules.push((source.to_string(), text.to_string()));
        }
    }

    /// Objects for `data.inventory` (and Namespace labels for `namespaceSelector`, and the
    /// scope of the kinds their CustomResourceDefinitions define).
    pub fn add_inventory(&mut self, objects: impl IntoIterator<Item = Value>) {
        self.inventory.extend(objects);
    }

    /// Kinds declared namespaced or cluster-scoped (`--namespaced-kinds`, `--cluster-kinds`):
    /// `Kind` or `group/Kind`, comma-separated. They win over CRDs.
    pub fn declare_kinds(&mut self, list: &str, scope: scope::Scope) {
        if let Err(e) = self.scopes.declare(list, scope) {
            self.errors.push(PolicyError::Invalid(e.to_string()));
        }
    }

    /// Compile everything. Every problem is reported, not only the first.
    pub fn build(self) -> Result<Bundle, Vec<PolicyError>> {
        let mut errors = self.errors;
        let mut scopes = self.scopes;
        scopes.add_crds(self.crds.iter().chain(&self.inventory));
        // Converted once: every template's engine (and VM program) holds the same data.
        let data = RValue::from(inventory_data(&self.inventory, &scopes));
        let mut templates: HashMap<String, Arc<Template>> = HashMap::new();
        for (source, v) in &self.templates {
            match compile_template(source, v, &data, self.limits, self.use_vm, self.compat) {
                Ok(t) => {
                    if let Some(prev) = templates.get(&t.kind) {
                        errors.push(at(
                            source,
                            format!("ConstraintTemplate {}", t.kind),
                            format!("kind {} is already defined by {}", t.kind, prev.source),
                        ));
                    } else {
                        templates.insert(t.kind.clone(), Arc::new(t));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let mut constraints: Vec<Constraint> = Vec::new();
        for (source, v) in &self.constraints {
            match parse_constraint(source, v) {
                Ok(c) if !templates.contains_key(&c.kind) => errors.push(at(
                    source,
                    format!("{} {}", c.kind, c.name),
                    format!(
                        "no ConstraintTemplate defines kind {} (add its template to the bundle)",
                        c.kind
                    ),
                )),
                Ok(c) => {
                    let mut problems = Vec::new();
                    if let Some(schema) = &templates[&c.kind].schema {
                        let params: Value =
                            serde_json::to_value(&c.parameters).unwrap_or(Value::Null);
                        schema::check(schema, &params, "spec.parameters", &mut problems);
                    }
                    if !problems.is_empty() {
                        errors.push(at(
                            source,
                            format!("{} {}", c.kind, c.name),
                            problems.join("; "),
                        ));
                    } else if let Some(i) = constraints
                        .iter()
                        .position(|p| p.kind == c.kind && p.name == c.name)
                    {
                        // A user's constraint replaces the built-in one of the same name: that is
                        // how built-in policies are configured.
                        if constraints[i].source.starts_with("builtin:") {
                            constraints[i] = c;
                        } else {
                            errors.push(at(
                                source,
                                format!("{} {}", c.kind, c.name),
                                format!("duplicate of {}", constraints[i].source),
                            ));
                        }
                    } else {
                        constraints.push(c);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let conftest = match compile_conftest(&self.modules, &data, self.limits) {
            Ok(c) => c.map(Arc::new),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Bundle {
            templates,
            constraints,
            conftest,
            namespaces: namespace_labels(&self.inventory),
            scopes,
            use_vm: self.use_vm,
        })
    }
}

fn is_policy_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json" | "rego")
    )
}

/// `data.inventory` as Gatekeeper replicates it: `cluster[apiVersion][kind][name]` and
/// `namespace[ns][apiVersion][kind][name]`. An object without a namespace goes under `cluster`,
/// as gator files it.
pub fn inventory_data(objects: &[Value], scopes: &KindScopes) -> Value {
    let mut cluster = serde_json::Map::new();
    let mut namespace = serde_json::Map::new();
    for o in objects {
        let r = ObjectRef::of(o);
        if r.kind.is_empty() || r.name.is_empty() {
            continue;
        }
        let info = ObjectInfo::of(o, scopes.scope(&api_group(&r.api_version), &r.kind), None);
        let root = match &info.namespace {
            Some(ns) => namespace
                .entry(ns.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object"),
            _ => &mut cluster,
        };
        let by_kind = root
            .entry(r.api_version.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .entry(r.kind.clone())
            .or_insert_with(|| json!({}));
        by_kind[r.name.clone()] = o.clone();
    }
    json!({"inventory": {"cluster": cluster, "namespace": namespace}})
}

/// The labels of the Namespace objects among `objects` (other kinds are ignored), for
/// `namespaceSelector`. Lint, the webhook and audit all build their view with this.
pub fn namespace_labels<'a>(objects: impl IntoIterator<Item = &'a Value>) -> NamespaceLabels {
    objects
        .into_iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .map(|o| {
            let i = ObjectInfo::of(o, None, None);
            (i.name, i.labels)
        })
        .collect()
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group, ``).
fn api_group(api_version: &str) -> String {
    api_version
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_string())
}

fn new_engine(v0: bool, data: &RValue, limits: Limits) -> Result<regorus::Engine, String> {
    let mut e = regorus::Engine::new();
    e.set_rego_v0(v0);
    e.set_strict_builtin_errors(false);
    builtins::register(&mut e)?;
    e.add_data(data.clone()).map_err(|err| err.to_string())?;
    e.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: limits.eval_timeout,
        check_interval: NonZeroU32::new(256).expect("non-zero"),
    });
    Ok(e)
}

fn compile_template(
    source: &str,
    v: &Value,
    data: &RValue,
    limits: Limits,
    use_vm: bool,
    compat: bool,
) -> Result<Template, PolicyError> {
    let kind = v
        .pointer("/spec/crd/spec/names/kind")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            at(
                source,
                "ConstraintTemplate",
                "spec.crd.spec.names.kind is missing",
            )
        })?
        .to_string();
    let what = format!("ConstraintTemplate {kind}");
    let targets = v
        .pointer("/spec/targets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let target = targets
        .iter()
        .find(|t| t.get("target").and_then(Value::as_str) == Some("admission.k8s.gatekeeper.sh"))
        .or(targets.first())
        .ok_or_else(|| at(source, &what, "spec.targets is empty"))?;
    // The legacy `rego` field wins over `code`; in `code`, only the Rego engine is evaluated.
    let (rego, libs, v1) = match target
        .get("rego")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
    {
        Some(r) => (r.to_string(), matching::strings(target.get("libs")), false),
        None => {
            let code = target
                .get("code")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rego = code
                .iter()
                .find(|c| c.get("engine").and_then(Value::as_str) == Some("Rego"));
            match rego {
                Some(c) => {
                    let src = c.get("source").cloned().unwrap_or(Value::Null);
                    let r = src
                        .get("rego")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    (
                        r,
                        matching::strings(src.get("libs")),
                        src.get("version").and_then(Value::as_str) == Some("v1"),
                    )
                }
                None if !code.is_empty() => {
                    return Err(at(
                        source,
                        &what,
                        "has only CEL (K8sNativeValidation) code, which sealgate does not evaluate; add a Rego entry to spec.targets[].code",
                    ));
                }
                None => {
                    return Err(at(
                        source,
                        &what,
                        "has no Rego (spec.targets[].rego or code[].source.rego)",
                    ));
                }
            }
        }
    };
    let rego_err = |message: String| PolicyError::Rego {
        file: source.to_string(),
        template: kind.clone(),
        message,
    };
    let mut engine = new_engine(!v1, data, limits).map_err(rego_err)?;
    let file = format!("{kind}.rego");
    let edit = |text: &str| match compat {
        true => compat::normalize(text, !v1),
        false => text.to_string(),
    };
    let package = engine
        .add_policy(file, edit(&rego))
        .map_err(|e| rego_err(e.to_string()))?;
    for (i, lib) in libs.iter().enumerate() {
        engine
            .add_policy(format!("{kind}.lib{i}.rego"), edit(lib))
            .map_err(|e| rego_err(format!("in libs[{i}]: {e}")))?;
    }
    let entry = format!("{package}.violation");
    // Prepare once (regorus compiles lazily) so that every clone starts prepared.
    engine.set_input(RValue::new_object());
    if let Err(e) = engine.eval_rule(entry.clone()) {
        // Static errors surface at preparation; runtime errors on an empty input do not count.
        let msg = e.to_string();
        if ["is unsafe", "could not find function", "recursion"]
            .iter()
            .any(|m| msg.contains(m))
        {
            return Err(rego_err(msg));
        }
    }
    let vm = use_vm
        .then(|| VmProgram::compile(&engine, &entry, data, limits))
        .flatten();
    Ok(Template {
        kind,
        source: source.to_string(),
        entry,
        vm,
        engine,
        schema: v
            .pointer("/spec/crd/spec/validation/openAPIV3Schema")
            .filter(|s| s.is_object())
            .cloned(),
    })
}

/// A template compiled for regorus's register VM (RVM). sealgate's extensions (the OPA-compatible
/// `sprintf`, `re_match`, `sealgate.*`) are registered as host-await builtins: the VM suspends at
/// each call and [`builtins::call`] answers, so both engines run the same extension code.
#[derive(Clone)]
struct VmProgram {
    policy: regorus::CompiledPolicy,
    program: Arc<regorus::rvm::Program>,
    data: RValue,
    timer: regorus::utils::limits::ExecutionTimerConfig,
}

impl VmProgram {
    fn compile(
        engine: &regorus::Engine,
        entry: &str,
        data: &RValue,
        limits: Limits,
    ) -> Option<VmProgram> {
        let host: Vec<(&str, usize)> = builtins::EXTENSIONS
            .iter()
            .map(|(name, n, _)| (*name, *n as usize))
            .collect();
        let policy = engine.clone().compile_with_entrypoint(&entry.into()).ok()?;
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy_with_host_await(
                &policy,
                &[entry],
                &host,
            )
            .ok()?;
        Some(VmProgram {
            policy,
            program,
            data: data.clone(),
            timer: regorus::utils::limits::ExecutionTimerConfig {
                limit: limits.eval_timeout,
                check_interval: NonZeroU32::new(256).expect("non-zero"),
            },
        })
    }

    fn eval(&self, entry: &str, input: RValue) -> anyhow::Result<RValue> {
        use regorus::rvm::vm::{ExecutionMode, RegoVM};
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone())?;
        vm.set_input(input);
        vm.set_strict_builtin_errors(false);
        // No instruction budget (its default, 25,000, stops ordinary policies): the time limit,
        // as for the interpreter, bounds evaluation.
        vm.set_max_instructions(usize::MAX);
        vm.set_execution_timer_config(Some(self.timer));
        vm.set_execution_mode(ExecutionMode::Suspendable);
        let mut result = vm.execute_entry_point_by_name(entry)?;
        while let Some(name) = vm.get_host_await_identifier() {
            let name = name.as_string()?.to_string();
            let args = vm
                .get_host_await_argument()
                .cloned()
                .unwrap_or(RValue::Undefined);
            // A failing extension is undefined, as in the interpreter without strict errors.
            let answer = builtins::call(&name, &args).unwrap_or(RValue::Undefined);
            result = vm.resume(Some(answer))?;
        }
        Ok(result)
    }
}

impl Template {
    /// Evaluate the violation rule: on the VM when it compiled there and `use_vm`, else on the
    /// interpreter.
    fn eval(&self, input: RValue, use_vm: bool) -> anyhow::Result<RValue> {
        match &self.vm {
            Some(vm) if use_vm => vm.eval(&self.entry, input),
            _ => {
                let mut engine = self.engine.clone();
                engine.set_input(input);
                engine.eval_rule(self.entry.clone())
            }
        }
    }

    /// Whether evaluation can run on the register VM.
    pub fn on_vm(&self) -> bool {
        self.vm.is_some()
    }
}

fn parse_constraint(source: &str, v: &Value) -> Result<Constraint, PolicyError> {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind.is_empty() || name.is_empty() {
        return Err(at(
            source,
            format!("constraint {kind} {name}"),
            "needs kind and metadata.name",
        ));
    }
    let what = format!("{kind} {name}");
    let spec = v.get("spec");
    let matcher = Match::parse(spec.and_then(|s| s.get("match")))
        .map_err(|e| at(source, &what, e.to_string()))?;
    let enforcement = Enforcement::parse(spec).map_err(|e| at(source, &what, e))?;
    let parameters = spec
        .and_then(|s| s.get("parameters"))
        .filter(|p| !p.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    Ok(Constraint {
        kind,
        name,
        source: source.to_string(),
        matcher,
        parameters: RValue::from(parameters),
        enforcement,
    })
}

/// conftest rule heads: `deny`, `warn`, `violation`, optionally with a `_suffix`.
fn conftest_rules(text: &str) -> Vec<(String, Action)> {
    let re = regex::Regex::new(r"(?m)^\s*((deny|warn|violation)(_[A-Za-z0-9_]+)?)\b")
        .expect("valid regex");
    let mut rules: Vec<(String, Action)> = Vec::new();
    for c in re.captures_iter(text) {
        let name = c[1].to_string();
        let action = if &c[2] == "warn" {
            Action::Warn
        } else {
            Action::Deny
        };
        if !rules.iter().any(|(n, _)| *n == name) {
            rules.push((name, action));
        }
    }
    rules
}

fn compile_conftest(
    modules: &[(String, String)],
    data: &RValue,
    limits: Limits,
) -> Result<Option<Conftest>, Vec<PolicyError>> {
    if modules.is_empty() {
        return Ok(None);
    }
    let mut engine = new_engine(false, data, limits).map_err(|e| vec![PolicyError::Invalid(e)])?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    for (source, text) in modules {
        // conftest reads Rego v1 by default (v0.60+); older modules are v0: accept both.
        engine.set_rego_v0(false);
        let package = engine
            .add_policy(source.clone(), compat::normalize(text, false))
            .or_else(|v1_err| {
                engine.set_rego_v0(true);
                engine
                    .add_policy(source.clone(), compat::normalize(text, true))
                    .map_err(|_| v1_err)
            });
        match package {
            Ok(p) if p == "data.main" => {
                for (rule, action) in conftest_rules(text) {
                    rules.push((format!("data.main.{rule}"), rule, action));
                }
            }
            Ok(_) => {} // a helper package
            Err(e) => errors.push(PolicyError::Invalid(format!("{source}: Rego error: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    rules.dedup_by(|a, b| a.0 == b.0);
    Ok(Some(Conftest { engine, rules }))
}

impl Bundle {
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values().map(|t| t.as_ref())
    }

    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Evaluate on the register VM (the default) or on regorus's interpreter.
    pub fn set_use_vm(&mut self, use_vm: bool) {
        self.use_vm = use_vm;
    }

    /// Keep only some constraints (e.g. to measure or debug one policy).
    pub fn retain_constraints(&mut self, keep: impl Fn(&Constraint) -> bool) {
        self.constraints.retain(keep);
    }

    /// Learn the scope of the kinds defined by CustomResourceDefinitions among `objects` (e.g.
    /// the linted files).
    pub fn add_crds<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        self.scopes.add_crds(objects);
    }

    /// What `match` sees of an object under review: its kind's scope as this bundle knows it,
    /// and the request's namespace (the API server's word at admission).
    fn object_info(&self, object: &Value, request: &Value) -> ObjectInfo {
        let group = api_group(
            object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        ObjectInfo::of(
            object,
            self.scopes.scope(&group, kind),
            request.get("namespace").and_then(Value::as_str),
        )
    }

    /// Evaluate every constraint that applies to the review at its point. `extra_namespaces`
    /// adds Namespace labels known to the caller (e.g. Namespaces in the linted files).
    pub fn evaluate(&self, review: &Review, extra_namespaces: &NamespaceLabels) -> Vec<Violation> {
        let object = review.object();
        let info = self.object_info(object, &review.request);
        // Gatekeeper's matchAny: an UPDATE is reviewed if its new or its old object matches (a
        // change that takes an object out of a constraint's match is still checked).
        let old_info = review
            .request
            .get("oldObject")
            .filter(|o| o.is_object())
            .map(|o| self.object_info(o, &review.request));
        let object_ref = ObjectRef::of(object);
        let ns_labels = |ns: &str| {
            extra_namespaces
                .get(ns)
                .or_else(|| self.namespaces.get(ns))
                .cloned()
        };
        // Built on first use: a document no constraint matches is never converted.
        let mut shared: Option<(RValue, RValue)> = None;
        let mut out = Vec::new();
        for c in &self.constraints {
            let Some(action) = c.enforcement.at(review.point) else {
                continue;
            };
            let matched = c
                .matcher
                .matches(&info, review.point, &ns_labels)
                .and_then(|m| match &old_info {
                    Some(old) if !m => c.matcher.matches(old, review.point, &ns_labels),
                    _ => Ok(m),
                });
            match matched {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    out.push(Violation::evaluation_error(
                        &c.kind,
                        &c.name,
                        format!("constraint {} could not be matched: {e}", c.name),
                        action,
                        &object_ref,
                    ));
                    continue;
                }
            }
            let Some(t) = self.templates.get(&c.kind) else {
                continue;
            };
            let (review_value, sealgate) = shared.get_or_insert_with(|| {
                let request = to_rvalue(&review.request);
                let sealgate = BTreeMap::from([
                    (RValue::from("point"), RValue::from(review.point.as_str())),
                    (
                        RValue::from("file"),
                        RValue::from(review.file.as_deref().unwrap_or_default()),
                    ),
                    (
                        RValue::from("line"),
                        RValue::from(review.line.unwrap_or(0) as u64),
                    ),
                    (
                        RValue::from("containers"),
                        workload_containers(&request["object"]),
                    ),
                ]);
                (request, RValue::from(sealgate))
            });
            let mut input = BTreeMap::new();
            input.insert(RValue::from("review"), review_value.clone());
            input.insert(RValue::from("parameters"), c.parameters.clone());
            input.insert(RValue::from("sealgate"), sealgate.clone());
            match t.eval(RValue::from(input), self.use_vm) {
                Ok(result) => {
                    for r in results(&result) {
                        out.push(violation(&t.kind, &c.name, r, action, &object_ref));
                    }
                }
                Err(e) => out.push(Violation::evaluation_error(
                    &t.kind,
                    &c.name,
                    format!(
                        "template {} failed to evaluate: {}",
                        t.kind,
                        first_line(&e.to_string())
                    ),
                    action,
                    &object_ref,
                )),
            }
        }
        if let Some(ct) = &self.conftest {
            let input = to_rvalue(object);
            for (path, rule, action) in &ct.rules {
                let mut engine = ct.engine.clone();
                engine.set_input(input.clone());
                match engine.eval_rule(path.clone()) {
                    Ok(result) => {
                        for r in results(&result) {
                            out.push(violation("conftest", rule, r, *action, &object_ref));
                        }
                    }
                    Err(e) => out.push(Violation::evaluation_error(
                        "conftest",
                        rule,
                        format!(
                            "rule {rule} failed to evaluate: {}",
                            first_line(&e.to_string())
                        ),
                        *action,
                        &object_ref,
                    )),
                }
            }
        }
        out
    }
}

/// Where a workload kind keeps its pod spec (`lib.sealgate.workloads.pod_spec` in Rego); empty
/// for kinds without one.
pub fn pod_spec_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &[],
    }
}

/// The containers of a workload object, as the built-in `lib.sealgate.workloads.containers`
/// computes them in Rego: `{container, field, path}` for containers, initContainers and
/// ephemeralContainers of the pod spec. Computed once per review and passed to every template as
/// `input.sealgate.containers`, instead of once per template (each in its own engine). Built from
/// the already converted object, so each container is shared, not copied.
fn workload_containers(object: &RValue) -> RValue {
    let kind = object["kind"].as_string().map_or("", |k| k.as_ref());
    let path = pod_spec_path(kind);
    let mut out = Vec::new();
    if !path.is_empty() {
        let spec = path.iter().fold(object, |v, k| &v[*k]);
        for field in ["containers", "initContainers", "ephemeralContainers"] {
            let Ok(containers) = spec[field].as_array() else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                let p: Vec<RValue> = path
                    .iter()
                    .map(|s| RValue::from(*s))
                    .chain([RValue::from(field), RValue::from(i as u64)])
                    .collect();
                let entry = BTreeMap::from([
                    (RValue::from("container"), c.clone()),
                    (RValue::from("field"), RValue::from(field)),
                    (RValue::from("path"), RValue::from(p)),
                ]);
                out.push(RValue::from(entry));
            }
        }
    }
    RValue::from(out)
}

/// JSON to a regorus value without cloning the JSON first (`From<serde_json::Value>` takes it
/// by value): this runs once per linted document.
fn to_rvalue(v: &Value) -> RValue {
    match v {
        Value::Null => RValue::Null,
        Value::Bool(b) => RValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => RValue::from(i),
            (_, Some(u)) => RValue::from(u),
            _ => RValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => RValue::from(s.as_str()),
        Value::Array(a) => RValue::from(a.iter().map(to_rvalue).collect::<Vec<_>>()),
        Value::Object(o) => RValue::from(
            o.iter()
                .map(|(k, v)| (RValue::from(k.as_str()), to_rvalue(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // regorus errors end with "error: <reason>" after a source snippet.
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| lines.join(" "))
}

/// The members of a rule's value: a set or array of results, or a single one.
fn results(v: &RValue) -> Vec<RValue> {
    match v {
        RValue::Set(s) => s.iter().cloned().collect(),
        RValue::Array(a) => a.iter().cloned().collect(),
        RValue::Undefined | RValue::Null | RValue::Bool(false) => Vec::new(),
        other => vec![other.clone()],
    }
}

fn violation(
    policy: &str,
    constraint: &str,
    r: RValue,
    action: Action,
    object: &ObjectRef,
) -> Violation {
    let json: Value = serde_json::to_value(&r).unwrap_or(Value::Null);
    let (message, details) = match &json {
        Value::String(s) => (s.clone(), json!({})),
        Value::Object(o) => (
            o.get("msg")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| builtins::display(&r, false)),
            o.get("details").cloned().unwrap_or_else(|| json!({})),
        ),
        Value::Bool(true) => (constraint.to_string(), json!({})),
        _ => (builtins::display(&r, false), json!({})),
    };
    let path = json
        .get("path")
        .or_else(|| details.get("path"))
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| s.to_string())
                })
                .collect()
        });
    Violation {
        policy: policy.to_string(),
        constraint: constraint.to_string(),
        message,
        details,
        action,
        object: object.clone(),
        path,
        evaluation_error: false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compat_equivalence;

#[cfg(test)]
mod conversion_tests {
    use super::*;

    #[test]
    fn to_rvalue_matches_regorus_conversion() {
        let v = json!({"a": [1, -2, 3.5, 18446744073709551615u64, "x", null, true, {"b": {}}], "c": ""});
        assert_eq!(to_rvalue(&v), RValue::from(v.clone()));
    }
}
