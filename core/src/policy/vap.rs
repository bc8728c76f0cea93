//! Kubernetes' own ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`), evaluated
//! in CI as the API server evaluates them (`k8s.io/apiserver`,
//! `pkg/admission/plugin/policy/validating`): a policy's `matchConstraints` and each binding's
//! `matchResources` (resourceRules, excludeResourceRules, namespaceSelector, objectSelector,
//! matchPolicy), the binding's parameters (`paramKind` / `paramRef`), then the CEL
//! (`matchConditions`, `variables`, `validations`, `auditAnnotations`) under `failurePolicy`.
//!
//! A failed validation does what the binding's `validationActions` say: `Deny` is lint's deny,
//! `Warn` its warning, `Audit` alone a finding that is only reported (dryrun). A policy or
//! binding that cannot be applied (no parameter under `parameterNotFoundAction: Deny`, an
//! unknown Namespace) denies under `failurePolicy: Fail` whatever the actions, as the API server
//! does.
//!
//! Lint differs from the API server only where it cannot know: objects are judged as CREATEs by
//! no one (`request.userInfo` is empty) unless they are AdmissionReviews; the `authorizer`
//! variable is not available (an expression using it fails, and follows `failurePolicy`);
//! `matchPolicy: Equivalent` matches the rule's group and resource in any version (the API
//! server would convert the object); an object without a namespace yet is matched as the
//! API server matches a cluster-scoped one.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::cel::{CelCode, CelInput, Decision, Dialect, FailurePolicy};
use super::matching::{LabelSelector, ObjectInfo, strings};
use super::scope::{KindScopes, Scope};
use super::{Action, ObjectRef, PolicyError, PolicyRef, Review, SourceRef, Violation, at};

/// The API group of ValidatingAdmissionPolicies and their bindings.
pub const GROUP: &str = "admissionregistration.k8s.io";

/// A ValidatingAdmissionPolicy with its bindings.
#[derive(Debug)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    param_kind: Option<ParamKind>,
    constraints: Resources,
    code: CelCode,
    /// Its bindings, in load order.
    pub bindings: Vec<Binding>,
}

/// A ValidatingAdmissionPolicyBinding.
#[derive(Debug)]
pub struct Binding {
    /// `metadata.name`.
    pub name: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    param_ref: Option<ParamRef>,
    resources: Option<Resources>,
    actions: Actions,
}

#[derive(Debug)]
struct ParamKind {
    group: String,
    kind: String,
}

#[derive(Debug)]
struct ParamRef {
    name: Option<String>,
    namespace: Option<String>,
    selector: Option<LabelSelector>,
    deny_not_found: bool,
}

/// `validationActions`.
#[derive(Debug, Clone, Copy, Default)]
struct Actions {
    deny: bool,
    warn: bool,
    audit: bool,
}

impl Actions {
    /// What a failed validation does in lint.
    fn action(self) -> Action {
        if self.deny {
            Action::Deny
        } else if self.warn {
            Action::Warn
        } else {
            Action::Dryrun
        }
    }
}

/// `matchConstraints` / `matchResources`.
#[derive(Debug, Default)]
struct Resources {
    namespace_selector: LabelSelector,
    object_selector: LabelSelector,
    rules: Vec<Rule>,
    exclude: Vec<Rule>,
    /// `matchPolicy: Equivalent` (the default).
    equivalent: bool,
}

/// A `NamedRuleWithOperations`.
#[derive(Debug)]
struct Rule {
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    operations: Vec<String>,
    names: Vec<String>,
    scope: Option<Scope>,
}

/// What a review is, as the API server's matchers see it.
struct Attributes<'a> {
    operation: &'a str,
    group: &'a str,
    version: &'a str,
    resource: String,
    sub_resource: &'a str,
    name: &'a str,
    /// The request's namespace (a Namespace's own name for a Namespace); `None` when there is
    /// none yet.
    namespace: Option<&'a str>,
    /// Served in a namespace (Gatekeeper's `hasNamespace`; a Namespace is not).
    namespaced: bool,
    is_namespace: bool,
}

impl Rule {
    fn parse(v: &Value, field: &str) -> Result<Rule, String> {
        let scope = match v.get("scope").and_then(Value::as_str) {
            None | Some("*") => None,
            Some("Cluster") => Some(Scope::Cluster),
            Some("Namespaced") => Some(Scope::Namespaced),
            Some(other) => {
                return Err(format!(
                    "{field}.scope: {other:?} is not Cluster, Namespaced or *"
                ));
            }
        };
        let rule = Rule {
            groups: strings(v.get("apiGroups")),
            versions: strings(v.get("apiVersions")),
            resources: strings(v.get("resources")),
            operations: strings(v.get("operations")),
            names: strings(v.get("resourceNames")),
            scope,
        };
        if let Some(op) = rule
            .operations
            .iter()
            .find(|o| !matches!(o.as_str(), "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT"))
        {
            return Err(format!(
                "{field}.operations: {op:?} is not CREATE, UPDATE, DELETE, CONNECT or *"
            ));
        }
        Ok(rule)
    }

    /// Kubernetes' `rules.Matcher` (group, version, resource and subresource, operation,
    /// scope), and `resourceNames`; `any_version` for matchPolicy Equivalent.
    fn matches(&self, a: &Attributes, any_version: bool) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        has(&self.operations, a.operation)
            && has(&self.groups, a.group)
            && (any_version || has(&self.versions, a.version))
            && self.resources.iter().any(|r| {
                let (res, sub) = r.split_once('/').unwrap_or((r, ""));
                (res == "*" || res == a.resource) && (sub == "*" || sub == a.sub_resource)
            })
            && match self.scope {
                None => true,
                Some(Scope::Namespaced) => !a.is_namespace && a.namespaced,
                Some(Scope::Cluster) => a.is_namespace || !a.namespaced,
            }
            && (self.names.is_empty() || self.names.iter().any(|n| n == a.name))
    }
}

impl Resources {
    fn parse(v: &Value, field: &str, rules_required: bool) -> Result<Resources, String> {
        let selector = |key: &str| match v.get(key).filter(|s| !s.is_null()) {
            Some(s) => {
                LabelSelector::parse(s, &format!("{field}.{key}")).map_err(|e| e.to_string())
            }
            None => Ok(LabelSelector::default()),
        };
        let rules = |key: &str| -> Result<Vec<Rule>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| Rule::parse(r, &format!("{field}.{key}[{i}]")))
                .collect()
        };
        let r = Resources {
            namespace_selector: selector("namespaceSelector")?,
            object_selector: selector("objectSelector")?,
            rules: rules("resourceRules")?,
            exclude: rules("excludeResourceRules")?,
            equivalent: match v.get("matchPolicy").and_then(Value::as_str) {
                None | Some("Equivalent") => true,
                Some("Exact") => false,
                Some(other) => {
                    return Err(format!(
                        "{field}.matchPolicy: {other:?} is not Exact or Equivalent"
                    ));
                }
            },
        };
        if rules_required && r.rules.is_empty() {
            return Err(format!(
                "{field}.resourceRules is required (the API server refuses a policy without it)"
            ));
        }
        Ok(r)
    }

    /// Kubernetes' `matching.Matcher.Matches`: the selectors, then the exclusions, then the
    /// rules (none: every resource). `Err` when a Namespace's labels are needed but unknown.
    fn matches(
        &self,
        a: &Attributes,
        info: &ObjectInfo,
        old: Option<&ObjectInfo>,
        ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, String> {
        let namespace = self.namespace_matches(a, info, ns_labels);
        if namespace == Ok(false) {
            return Ok(false);
        }
        let object = self.object_selector.matches(&info.labels)
            || old.is_some_and(|o| self.object_selector.matches(&o.labels));
        if !object {
            return Ok(false);
        }
        let rule = |r: &Rule| r.matches(a, false) || (self.equivalent && r.matches(a, true));
        if self.exclude.iter().any(rule) {
            return Ok(false);
        }
        let matched = self.rules.is_empty() || self.rules.iter().any(rule);
        namespace.map(|_| matched)
    }

    /// `MatchNamespaceSelector`: a cluster-scoped object other than a Namespace is never
    /// exempted; a Namespace is judged by its own labels.
    fn namespace_matches(
        &self,
        a: &Attributes,
        info: &ObjectInfo,
        ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, String> {
        if self.namespace_selector == LabelSelector::default() {
            return Ok(true);
        }
        if a.is_namespace {
            return Ok(self.namespace_selector.matches(&info.labels));
        }
        let Some(ns) = a.namespace.filter(|_| a.namespaced) else {
            return Ok(true);
        };
        match ns_labels(ns) {
            Some(labels) => Ok(self.namespace_selector.matches(&labels)),
            None => Err(format!(
                "namespaceSelector needs the labels of Namespace {ns:?}, which is not known: add its Namespace manifest to the linted paths or to --inventory"
            )),
        }
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

impl Policy {
    fn parse(source: &SourceRef, v: &Value) -> Result<Policy, PolicyError> {
        let name = text(v, "/metadata/name").unwrap_or_default().to_string();
        let what = format!("ValidatingAdmissionPolicy {name}");
        let bad = |problem: String| at(source, &what, problem);
        if name.is_empty() {
            return Err(bad("has no metadata.name".into()));
        }
        let spec = v
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| bad("has no spec".into()))?;
        let param_kind = match spec.get("paramKind").filter(|p| !p.is_null()) {
            None => None,
            Some(p) => {
                let (Some(api_version), Some(kind)) = (text(p, "/apiVersion"), text(p, "/kind"))
                else {
                    return Err(bad("spec.paramKind needs apiVersion and kind".into()));
                };
                Some(ParamKind {
                    group: api_version
                        .rsplit_once('/')
                        .map_or(String::new(), |(g, _)| g.to_string()),
                    kind: kind.to_string(),
                })
            }
        };
        let constraints = Resources::parse(
            spec.get("matchConstraints").unwrap_or(&Value::Null),
            "spec.matchConstraints",
            true,
        )
        .map_err(bad)?;
        let code =
            CelCode::compile(spec, Dialect::Kubernetes).map_err(|e| bad(format!("spec: {e}")))?;
        Ok(Policy {
            name,
            source: source.clone(),
            param_kind,
            constraints,
            code,
            bindings: Vec::new(),
        })
    }
}

impl Binding {
    /// The binding and the name of its policy.
    fn parse(source: &SourceRef, v: &Value) -> Result<(String, Binding), PolicyError> {
        let name = text(v, "/metadata/name").unwrap_or_default().to_string();
        let what = format!("ValidatingAdmissionPolicyBinding {name}");
        let bad = |problem: &str| at(source, &what, problem);
        if name.is_empty() {
            return Err(bad("has no metadata.name"));
        }
        let policy = text(v, "/spec/policyName")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("spec.policyName is required"))?;
        let mut actions = Actions::default();
        for a in strings(v.pointer("/spec/validationActions")) {
            let seen = match a.as_str() {
                "Deny" => std::mem::replace(&mut actions.deny, true),
                "Warn" => std::mem::replace(&mut actions.warn, true),
                "Audit" => std::mem::replace(&mut actions.audit, true),
                other => {
                    return Err(bad(&format!(
                        "spec.validationActions: {other:?} is not Deny, Warn or Audit"
                    )));
                }
            };
            if seen {
                return Err(bad(&format!("spec.validationActions: {a} is listed twice")));
            }
        }
        if !(actions.deny || actions.warn || actions.audit) {
            return Err(bad(
                "spec.validationActions is required: Deny, Warn and/or Audit",
            ));
        }
        if actions.deny && actions.warn {
            return Err(bad(
                "spec.validationActions: Deny and Warn may not be used together (the API server refuses it)",
            ));
        }
        let param_ref = match v.pointer("/spec/paramRef").filter(|p| !p.is_null()) {
            None => None,
            Some(p) => {
                let selector = match p.get("selector").filter(|s| !s.is_null()) {
                    Some(s) => Some(
                        LabelSelector::parse(s, "spec.paramRef.selector")
                            .map_err(|e| bad(&e.to_string()))?,
                    ),
                    None => None,
                };
                let name = text(p, "/name")
                    .filter(|n| !n.is_empty())
                    .map(str::to_string);
                if name.is_some() == selector.is_some() {
                    return Err(bad("spec.paramRef needs exactly one of name and selector"));
                }
                let deny_not_found = match text(p, "/parameterNotFoundAction") {
                    Some("Deny") => true,
                    Some("Allow") => false,
                    _ => {
                        return Err(bad(
                            "spec.paramRef.parameterNotFoundAction is required: Allow or Deny",
                        ));
                    }
                };
                Some(ParamRef {
                    name,
                    namespace: text(p, "/namespace")
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                    selector,
                    deny_not_found,
                })
            }
        };
        let resources = match v.pointer("/spec/matchResources").filter(|m| !m.is_null()) {
            None => None,
            Some(m) => {
                Some(Resources::parse(m, "spec.matchResources", false).map_err(|e| bad(&e))?)
            }
        };
        Ok((
            policy.to_string(),
            Binding {
                name,
                source: source.clone(),
                param_ref,
                resources,
                actions,
            },
        ))
    }
}

/// A bundle's ValidatingAdmissionPolicies.
#[derive(Debug, Default)]
pub struct Admission {
    /// The policies, each with its bindings, in load order.
    pub policies: Vec<Policy>,
}

/// Whether a document is a ValidatingAdmissionPolicy or a binding of one.
pub fn is_admission_policy(v: &Value) -> bool {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("admissionregistration.k8s.io/"))
        && matches!(
            v.get("kind").and_then(Value::as_str),
            Some("ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding")
        )
}

impl Admission {
    /// Parse the policies and bindings (each document once: the same one loaded twice is
    /// one). A binding of a policy that is not loaded is an error, as a Constraint without its
    /// template is.
    pub fn parse(documents: &[(SourceRef, Value)]) -> Result<Admission, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut policies: Vec<Policy> = Vec::new();
        let mut seen: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        let mut bindings = Vec::new();
        for (source, v) in documents {
            let kind = text(v, "/kind").unwrap_or_default().to_string();
            let name = text(v, "/metadata/name").unwrap_or_default().to_string();
            let content = crate::manifest::canonical_json(v);
            match seen.get(&(kind.clone(), name.clone())) {
                Some(prev) if *prev == content => continue,
                Some(_) => {
                    errors.push(at(
                        source,
                        format!("{kind} {name}"),
                        "another one of this name is loaded already",
                    ));
                    continue;
                }
                None => {
                    seen.insert((kind.clone(), name), content);
                }
            }
            if kind == "ValidatingAdmissionPolicy" {
                match Policy::parse(source, v) {
                    Ok(p) => policies.push(p),
                    Err(e) => errors.push(e),
                }
            } else {
                match Binding::parse(source, v) {
                    Ok(b) => bindings.push(b),
                    Err(e) => errors.push(e),
                }
            }
        }
        for (policy, b) in bindings {
            match policies.iter_mut().find(|p| p.name == policy) {
                Some(p) => p.bindings.push(b),
                None => errors.push(at(
                    &b.source,
                    format!("ValidatingAdmissionPolicyBinding {}", b.name),
                    format!(
                        "no ValidatingAdmissionPolicy named {policy:?} is loaded (add it to the policies)"
                    ),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Admission { policies })
        } else {
            Err(errors)
        }
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The (group, kind) of every `paramKind`.
    pub fn param_kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.policies
            .iter()
            .filter_map(|p| p.param_kind.as_ref())
            .map(|k| (k.group.as_str(), k.kind.as_str()))
    }

    /// Whether `object` is of a `paramKind` (a parameter some binding may take).
    pub fn is_param(&self, object: &Value) -> bool {
        let group = text(object, "/apiVersion")
            .and_then(|a| a.rsplit_once('/'))
            .map_or("", |(g, _)| g);
        let kind = text(object, "/kind").unwrap_or_default();
        self.param_kinds().any(|k| k == (group, kind))
    }

    /// The parameter objects of a binding for a review in `namespace`, as the API server's
    /// `CollectParams` finds them; `[None]` without parameters.
    fn params<'p>(
        params: &'p [Value],
        kind: Option<&ParamKind>,
        reference: Option<&ParamRef>,
        namespace: Option<&str>,
        scopes: &KindScopes,
    ) -> Result<Vec<Option<&'p Value>>, String> {
        let (Some(kind), Some(r)) = (kind, reference) else {
            return Ok(vec![None]);
        };
        let namespaced = scopes.scope(&kind.group, &kind.kind) != Some(Scope::Cluster);
        let in_namespace = match (namespaced, &r.namespace) {
            (true, Some(ns)) => Some(ns.as_str()),
            (true, None) => Some(namespace.ok_or(
                "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources",
            )?),
            (false, Some(_)) => {
                return Err(
                    "paramRef.namespace must not be provided for a cluster-scoped `paramKind`"
                        .into(),
                );
            }
            (false, None) => None,
        };
        let found: Vec<Option<&Value>> = params
            .iter()
            .filter(|o| {
                let group = text(o, "/apiVersion")
                    .and_then(|a| a.rsplit_once('/'))
                    .map_or("", |(g, _)| g);
                let object_ns = text(o, "/metadata/namespace").filter(|n| !n.is_empty());
                group == kind.group
                    && text(o, "/kind") == Some(kind.kind.as_str())
                    // A parameter in Git without a namespace yet is taken to be in any.
                    && in_namespace.is_none_or(|ns| object_ns.is_none_or(|o| o == ns))
                    && match (&r.name, &r.selector) {
                        (Some(n), _) => text(o, "/metadata/name") == Some(n.as_str()),
                        (None, Some(s)) => s.matches(&ObjectInfo::of(o, scopes, None).labels),
                        (None, None) => false,
                    }
            })
            .map(Some)
            .collect();
        if found.is_empty() && r.deny_not_found {
            return Err(
                "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            );
        }
        Ok(found)
    }

    /// Judge a review: the violations of every binding that applies, in policy and binding
    /// order; `applied` gets (policy, binding) of each binding that applied.
    pub(super) fn judge(
        &self,
        review: &Review,
        params: &[Value],
        scopes: &KindScopes,
        ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
        mut applied: Option<&mut Vec<(PolicyRef, String)>>,
    ) -> Vec<Violation> {
        let object = review.object();
        let r = &review.info;
        let info = ObjectInfo::of(object, scopes, Some(&r.namespace));
        let old = Some(review.old_object())
            .filter(|o| o.is_object())
            .map(|o| ObjectInfo::of(o, scopes, Some(&r.namespace)));
        let resource = review
            .request
            .pointer("/resource/resource")
            .and_then(Value::as_str)
            .map_or_else(|| scopes.resource(&info.group, &info.kind), str::to_string);
        let version = match r.version.as_str() {
            "" => {
                text(object, "/apiVersion").map_or("", |a| a.rsplit_once('/').map_or(a, |(_, v)| v))
            }
            v => v,
        };
        let group = match r.kind.as_str() {
            "" => info.group.as_str(),
            _ => r.group.as_str(),
        };
        let is_namespace = group.is_empty() && info.kind == "Namespace";
        let a = Attributes {
            // A bare object is judged as its creation.
            operation: match r.operation.as_str() {
                "" => "CREATE",
                op => op,
            },
            group,
            version,
            resource,
            sub_resource: &r.sub_resource,
            name: &info.name,
            namespace: if is_namespace {
                Some(info.name.as_str())
            } else {
                info.namespace.as_deref()
            },
            namespaced: info.namespaced,
            is_namespace,
        };
        let object_ref = ObjectRef::of(object);
        let mut input: Option<CelInput> = None;
        let mut out = Vec::new();
        for p in &self.policies {
            let config_error = |binding: Option<&Binding>, e: String| {
                (p.code.failure_policy == FailurePolicy::Fail).then(|| {
                    let (constraint, what) = match binding {
                        Some(b) => (b.name.as_str(), "binding"),
                        None => ("", "policy"),
                    };
                    Violation::evaluation_error(
                        PolicyRef::AdmissionPolicy(p.name.clone()),
                        constraint,
                        format!("failed to configure {what}: {e}"),
                        Action::Deny,
                        &object_ref,
                    )
                })
            };
            match p.constraints.matches(&a, &info, old.as_ref(), ns_labels) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    out.extend(config_error(None, e));
                    continue;
                }
            }
            for b in &p.bindings {
                let matched = b
                    .resources
                    .as_ref()
                    .map_or(Ok(true), |m| m.matches(&a, &info, old.as_ref(), ns_labels));
                match matched {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        out.extend(config_error(Some(b), e));
                        continue;
                    }
                }
                if let Some(applied) = applied.as_deref_mut() {
                    applied.push((PolicyRef::AdmissionPolicy(p.name.clone()), b.name.clone()));
                }
                let params = match Self::params(
                    params,
                    p.param_kind.as_ref(),
                    b.param_ref.as_ref(),
                    a.namespace.filter(|_| !a.is_namespace),
                    scopes,
                ) {
                    Ok(params) => params,
                    Err(e) => {
                        out.extend(config_error(Some(b), e));
                        continue;
                    }
                };
                let input = input.get_or_insert_with(|| cel_input(review, &a, &info, ns_labels));
                for param in params {
                    for d in p.code.decide(input, param).decisions {
                        let (message, error) = match d {
                            Decision::Deny(m) => (m, false),
                            Decision::Error(e) => (e, true),
                        };
                        out.push(Violation {
                            policy: PolicyRef::AdmissionPolicy(p.name.clone()),
                            constraint: b.name.clone(),
                            message,
                            details: json!({}),
                            action: b.actions.action(),
                            object: object_ref.clone(),
                            path: None,
                            evaluation_error: error,
                            severity: None,
                        });
                    }
                }
            }
        }
        out
    }
}

/// CEL's view of the review: the AdmissionRequest with the fields a bare object lacks
/// (`resource`, the operation), and the Namespace object when its labels are known.
fn cel_input(
    review: &Review,
    a: &Attributes,
    info: &ObjectInfo,
    ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> CelInput {
    let namespace = a
        .namespace
        .filter(|_| !a.is_namespace && info.namespaced)
        .and_then(|ns| {
            ns_labels(ns).map(|labels| {
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": labels}})
            })
        });
    let gvr = json!({"group": a.group, "version": a.version, "resource": a.resource});
    let mut fields = serde_json::Map::new();
    fields.insert("operation".into(), json!(a.operation));
    fields.insert("resource".into(), gvr.clone());
    fields.insert("subResource".into(), json!(a.sub_resource));
    // CEL's AdmissionRequest is typed: a field the review lacks has its zero value (a bare
    // object in Git has no user, yet `request.userInfo.groups` is an empty list).
    let request = &review.request;
    let or = |key: &str, default: Value| request.get(key).cloned().unwrap_or(default);
    fields.insert("requestResource".into(), or("requestResource", gvr));
    fields.insert(
        "requestKind".into(),
        or("requestKind", request["kind"].clone()),
    );
    fields.insert(
        "requestSubResource".into(),
        or("requestSubResource", json!("")),
    );
    fields.insert("uid".into(), or("uid", json!("")));
    fields.insert("name".into(), json!(a.name));
    fields.insert("dryRun".into(), or("dryRun", json!(false)));
    let mut user = json!({"username": "", "uid": "", "groups": [], "extra": {}});
    if let Some(given) = request.get("userInfo").and_then(Value::as_object) {
        for (k, v) in given {
            user[k] = v.clone();
        }
    }
    fields.insert("userInfo".into(), user);
    fields.insert(
        "namespace".into(),
        json!(a.namespace.filter(|_| !a.is_namespace).unwrap_or_default()),
    );
    CelInput::with_request_fields(&review.request, namespace.as_ref(), &fields)
}

/// How the API server words a violation of a ValidatingAdmissionPolicy: the denial
/// (`ValidatingAdmissionPolicy 'P' with binding 'B' denied request: MSG`) or the warning
/// (`Validation failed for ValidatingAdmissionPolicy 'P' with binding 'B': MSG`); `None` for
/// other policies and Audit-only findings.
pub fn api_server_message(v: &Violation) -> Option<String> {
    let PolicyRef::AdmissionPolicy(policy) = &v.policy else {
        return None;
    };
    api_server_wording(policy, &v.constraint, v.action, &v.message)
}

/// The API server's words for a finding of `policy` under `binding` (empty: the policy itself
/// could not be applied) with `action`; `None` for Audit-only findings.
pub fn api_server_wording(
    policy: &str,
    binding: &str,
    action: Action,
    message: &str,
) -> Option<String> {
    match action {
        Action::Deny if binding.is_empty() => Some(format!(
            "ValidatingAdmissionPolicy '{policy}' denied request: {message}"
        )),
        Action::Deny => Some(format!(
            "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
        )),
        Action::Warn => Some(format!(
            "Validation failed for ValidatingAdmissionPolicy '{policy}' with binding '{binding}': {message}"
        )),
        Action::Dryrun => None,
    }
}
