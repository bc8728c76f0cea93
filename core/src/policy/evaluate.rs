//! Evaluating a review against a compiled bundle: match each constraint, evaluate its template,
//! turn the results into violations.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regorus::Value as RValue;
use serde_json::{Value, json};

use super::bundle::{Constraint, SyncKind};
use super::cel::CelInput;
use super::compile::{Conftest, Template};
use super::expansion::{self, ExpansionTemplate};
use super::matching::ObjectInfo;
use super::review::{RequestInfo, to_rvalue, workload_containers};
use super::scope::KindScopes;
use super::vap::Admission;
use super::{Action, ObjectRef, PolicyRef, Review, Violation, builtins};

/// Labels of known Namespaces, for `namespaceSelector`.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A compiled policy bundle.
#[derive(Clone, Default)]
pub struct Bundle {
    /// SHA-256 of the policies' content (see `BundleBuilder`).
    pub(super) digest: String,
    pub(super) templates: HashMap<String, Arc<Template>>,
    pub(super) constraints: Vec<Constraint>,
    pub(super) conftest: Option<Arc<Conftest>>,
    pub(super) namespaces: NamespaceLabels,
    /// Which kinds are namespaced, for `match`.
    pub(super) scopes: KindScopes,
    /// Evaluate templates on the register VM where they compiled, or on the interpreter.
    pub(super) use_vm: bool,
    /// The kinds the bundle's sync configuration replicates into `data.inventory`.
    pub(super) sync: Vec<SyncKind>,
    /// Directories of the policy paths that were skipped (`samples/`, `testdata/`, `tests/`).
    pub(super) skipped_dirs: Vec<std::path::PathBuf>,
    /// Constraints left out because they do not fit their kind's schema (`build_reporting`).
    pub(super) invalid_constraints: Vec<super::bundle::InvalidConstraint>,
    /// Gatekeeper ExpansionTemplates: workloads are also judged as the objects they create.
    pub(super) expansions: Vec<ExpansionTemplate>,
    /// Kubernetes ValidatingAdmissionPolicies (lint and `policy verify` only).
    pub(super) admission: Arc<Admission>,
    /// Objects of the ValidatingAdmissionPolicies' `paramKind`s (--inventory, linted files).
    pub(super) params: Vec<Value>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .field("constraints", &self.constraints.len())
            .field("expansions", &self.expansions.len())
            .finish()
    }
}

impl Bundle {
    /// The compiled templates.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values().map(|t| t.as_ref())
    }

    /// SHA-256 (hex) of the policies' content: what an attestation records as the bundle it
    /// passed. The same files give the same digest wherever they are loaded.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The constraints, in load order.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// The conftest rules (`deny`, `warn`, `violation`, suffixed or not) that will run.
    pub fn conftest_rules(&self) -> usize {
        self.conftest.as_ref().map_or(0, |c| c.rules.len())
    }

    /// Packages whose `deny`/`warn`/`violation` rules do not run: not selected by the conftest
    /// namespaces (`main` by default), as conftest skips them. Worth a warning.
    pub fn skipped_conftest_packages(&self) -> &[String] {
        self.conftest.as_ref().map_or(&[], |c| &c.skipped)
    }

    /// Directories under the policy paths that were not read: `samples/`, `testdata/` and
    /// `tests/` hold examples and suites in the Gatekeeper library's layout.
    pub fn skipped_dirs(&self) -> &[std::path::PathBuf] {
        &self.skipped_dirs
    }

    /// Constraints left out because they do not fit their kind's schema: only a bundle from
    /// `build_reporting` has any (`build` refuses them).
    pub fn invalid_constraints(&self) -> &[super::bundle::InvalidConstraint] {
        &self.invalid_constraints
    }

    /// `(constraint, namespace)` for each name in a user constraint's `match.namespaces` (globs
    /// aside) that no Namespace defines, in `tree` or the inventory: such a constraint checks
    /// nothing there, often because of a typo.
    pub fn undefined_match_namespaces<'a>(
        &'a self,
        tree: &NamespaceLabels,
    ) -> Vec<(&'a Constraint, &'a str)> {
        self.constraints
            .iter()
            .filter(|c| !c.source.is_builtin())
            .flat_map(|c| c.matcher.literal_namespaces().map(move |n| (c, n)))
            .filter(|(_, n)| !tree.contains_key(*n) && !self.namespaces.contains_key(*n))
            .collect()
    }

    /// Whether nothing would be checked: no constraint, no bound ValidatingAdmissionPolicy and no conftest rule.
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
            && self.conftest_rules() == 0
            && self
                .admission
                .policies
                .iter()
                .all(|p| p.bindings.is_empty())
    }

    /// The kinds to replicate into `data.inventory` (Gatekeeper `Config` / `SyncSet` documents
    /// among the policies), for the webhook's watch and audit.
    pub fn sync_kinds(&self) -> &[SyncKind] {
        &self.sync
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

    /// A Namespace's labels: the caller's (e.g. the linted files'), else the inventory's.
    fn namespace_labels(
        &self,
        extra: &NamespaceLabels,
        ns: &str,
    ) -> Option<BTreeMap<String, String>> {
        extra.get(ns).or_else(|| self.namespaces.get(ns)).cloned()
    }

    /// What `match` sees of an object under review: its kind's scope as this bundle knows it,
    /// and the request's namespace (the API server's word at admission).
    fn object_info(&self, object: &Value, request: &RequestInfo) -> ObjectInfo {
        ObjectInfo::of(object, &self.scopes, Some(&request.namespace))
    }

    /// Evaluate every constraint that applies to the review at its point. `extra_namespaces`
    /// adds Namespace labels known to the caller (e.g. Namespaces in the linted files).
    pub fn evaluate(&self, review: &Review, extra_namespaces: &NamespaceLabels) -> Vec<Violation> {
        self.run(review, extra_namespaces, None)
    }

    /// [`Bundle::evaluate`], also saying which constraints applied (for pass results in policy
    /// reports).
    pub fn evaluate_with_matches(
        &self,
        review: &Review,
        extra_namespaces: &NamespaceLabels,
    ) -> Evaluation {
        let mut applied = Vec::new();
        let violations = self.run(review, extra_namespaces, Some(&mut applied));
        Evaluation {
            violations,
            applied,
        }
    }

    /// The ExpansionTemplates.
    pub fn expansions(&self) -> &[ExpansionTemplate] {
        &self.expansions
    }

    /// The ValidatingAdmissionPolicies, with their bindings.
    pub fn admission_policies(&self) -> &Admission {
        &self.admission
    }

    /// Take the objects among `objects` that are of a ValidatingAdmissionPolicy's `paramKind`
    /// as parameters (e.g. from the linted files).
    pub fn add_params<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        let admission = &self.admission;
        self.params.extend(
            objects
                .into_iter()
                .filter(|o| admission.is_param(o))
                .cloned(),
        );
    }

    /// The evaluation; the names of the constraints that applied are collected only when asked
    /// for (the webhook's hot path does not). With ExpansionTemplates, the object's resultants
    /// are judged too, as Gatekeeper's webhook and gator judge them: their violations are the
    /// object's, prefixed `[Implied by TEMPLATE]`, with the template's enforcementAction.
    fn run(
        &self,
        review: &Review,
        extra_namespaces: &NamespaceLabels,
        mut applied: Option<&mut Vec<(PolicyRef, String)>>,
    ) -> Vec<Violation> {
        let mut out = self.run_one(review, extra_namespaces, applied.as_deref_mut(), false);
        if !self.admission.is_empty() {
            // The API server judges the object as written, never an expansion's resultant.
            let ns_labels = |ns: &str| self.namespace_labels(extra_namespaces, ns);
            out.extend(self.admission.judge(
                review,
                &self.params,
                &self.scopes,
                &ns_labels,
                applied.as_deref_mut(),
            ));
        }
        if self.expansions.is_empty() {
            return out;
        }
        let parent = ObjectRef::of(review.object());
        let namespace = Some(review.info.namespace.as_str()).filter(|n| !n.is_empty());
        match expansion::expand(&self.expansions, review.object(), namespace) {
            Ok(resultants) => {
                for r in resultants {
                    let child = review.resultant(r.object);
                    for mut v in
                        self.run_one(&child, extra_namespaces, applied.as_deref_mut(), true)
                    {
                        v.message = expansion::implied_by(&r.template, &v.message);
                        if let Some(a) = r.enforcement_action {
                            v.action = a;
                        }
                        v.object = parent.clone();
                        if let Some(p) = v.path.as_mut() {
                            p.splice(0..0, r.path.iter().cloned());
                        }
                        out.push(v);
                    }
                }
            }
            // Gatekeeper fails the request when a workload cannot be expanded: so does this.
            Err(e) => out.push(Violation::evaluation_error(
                PolicyRef::Sealgate,
                "expansion",
                format!("cannot expand {} {}: {e}", parent.kind, parent.name),
                Action::Deny,
                &parent,
            )),
        }
        out
    }

    /// One review's evaluation; `generated` marks an ExpansionTemplate's resultant.
    fn run_one(
        &self,
        review: &Review,
        extra_namespaces: &NamespaceLabels,
        mut applied: Option<&mut Vec<(PolicyRef, String)>>,
        generated: bool,
    ) -> Vec<Violation> {
        let object = review.object();
        let mut info = self.object_info(object, &review.info);
        info.generated = generated;
        // Gatekeeper's matchAny: an UPDATE is reviewed if its new or its old object matches (a
        // change that takes an object out of a constraint's match is still checked).
        let old_info = Some(review.old_object())
            .filter(|o| o.is_object())
            .map(|o| {
                let mut i = self.object_info(o, &review.info);
                i.generated = generated;
                i
            });
        let object_ref = ObjectRef::of(object);
        let ns_labels = |ns: &str| self.namespace_labels(extra_namespaces, ns);
        // Built on first use: a document no constraint matches is never converted.
        let mut shared: Option<(RValue, RValue)> = None;
        let mut cel_input: Option<CelInput> = None;
        let mut out = Vec::new();
        for c in &self.constraints {
            let Some(action) = c.enforcement.at(review.point) else {
                continue;
            };
            let first = out.len();
            let matched = c
                .matcher
                .matches(&info, review.point, &ns_labels)
                .and_then(|m| match &old_info {
                    Some(old) if !m => c.matcher.matches(old, review.point, &ns_labels),
                    _ => Ok(m),
                });
            match matched {
                Ok(true) => {
                    if let Some(a) = applied.as_deref_mut() {
                        a.push((PolicyRef::Template(c.kind.clone()), c.name.clone()));
                    }
                }
                Ok(false) => continue,
                Err(e) => {
                    out.push(Violation::evaluation_error(
                        PolicyRef::Template(c.kind.clone()),
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
            if let Some(cel) = t.cel() {
                // Converted for CEL at the first CEL template, once per review.
                let input = cel_input.get_or_insert_with(|| {
                    // The Namespace as CEL's namespaceObject, when its labels are known.
                    let namespace = info.namespace.as_deref().and_then(|ns| {
                        ns_labels(ns).map(|labels| {
                            json!({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns, "labels": labels}})
                        })
                    });
                    CelInput::new(&review.request, namespace.as_ref())
                });
                let parameters = serde_json::to_value(&c.parameters).unwrap_or(Value::Null);
                match cel.eval(input, &parameters) {
                    Ok(messages) => {
                        for m in messages {
                            out.push(violation(
                                PolicyRef::Template(t.kind.clone()),
                                &c.name,
                                RValue::from(json!({ "msg": m })),
                                action,
                                &object_ref,
                            ));
                        }
                    }
                    Err(e) => out.push(Violation::evaluation_error(
                        PolicyRef::Template(t.kind.clone()),
                        &c.name,
                        format!("template {} failed to evaluate: {e}", t.kind),
                        action,
                        &object_ref,
                    )),
                }
                for v in &mut out[first..] {
                    v.severity = c.severity;
                }
                continue;
            }
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
                        out.push(violation(
                            PolicyRef::Template(t.kind.clone()),
                            &c.name,
                            r,
                            action,
                            &object_ref,
                        ));
                    }
                }
                Err(e) => out.push(Violation::evaluation_error(
                    PolicyRef::Template(t.kind.clone()),
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
            for v in &mut out[first..] {
                v.severity = c.severity;
            }
        }
        // conftest rules judge the documents as written; resultants are Gatekeeper's.
        if let Some(ct) = self.conftest.as_ref().filter(|_| !generated) {
            for ((_, rule, action), result) in ct.eval(to_rvalue(object)) {
                if let Some(a) = applied.as_deref_mut() {
                    a.push((PolicyRef::Conftest, rule.clone()));
                }
                match result {
                    Ok(result) => {
                        for r in results(&result) {
                            out.push(violation(
                                PolicyRef::Conftest,
                                rule,
                                r,
                                *action,
                                &object_ref,
                            ));
                        }
                    }
                    Err(e) => out.push(Violation::evaluation_error(
                        PolicyRef::Conftest,
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

/// What evaluating one review found.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Every violation, in constraint order.
    pub violations: Vec<Violation>,
    /// (policy, constraint) of every constraint (and conftest rule) that applied to the review,
    /// violated or not, in bundle order.
    pub applied: Vec<(PolicyRef, String)>,
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
    policy: PolicyRef,
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
        policy,
        constraint: constraint.to_string(),
        message,
        details,
        action,
        object: object.clone(),
        path,
        evaluation_error: false,
        severity: None,
    }
}
