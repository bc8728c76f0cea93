//! Gatekeeper's `match` block, rule for rule as `pkg/mutation/match/match.go` (v3.18+) decides
//! it: every top-level matcher must match (kinds, scope, namespaces, excludedNamespaces,
//! labelSelector, namespaceSelector, name, source); within `kinds` the entries are alternatives;
//! an absent or empty `match` matches everything. `pkg/target/matcher.go` `matchAny` then
//! matches a review when its object *or* its oldObject matches.
//!
//! One rule runs through the namespace matchers: "if we don't have a namespace, we can't
//! disqualify the match". An object in Git often has no namespace yet (kustomize, Helm and Flux
//! set it later): it is matched by `namespaces`, `excludedNamespaces` and `namespaceSelector`,
//! as gator matches it. Whether it is namespaced comes from its kind ([`super::scope`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::scope::{KindScopes, Scope};
use super::{Point, PolicyError};

/// What a constraint's `match` needs to know about an object.
#[derive(Debug, Clone, Default)]
pub struct ObjectInfo {
    /// API group (empty for the core group).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// The namespace the object is (or will be) in, when known. Never set for cluster-scoped
    /// kinds: the API server drops their `metadata.namespace` before admission.
    pub namespace: Option<String>,
    /// `metadata.name` (empty when only `generateName` is set).
    pub name: String,
    /// `metadata.generateName`.
    pub generate_name: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Gatekeeper's `hasNamespace`: namespaced, with or without a namespace yet.
    pub namespaced: bool,
    /// Produced by an ExpansionTemplate (`match.source: Generated`), not the object under review.
    pub generated: bool,
}

impl ObjectInfo {
    /// The kind's scope comes from `scopes`; `request_namespace` is the AdmissionRequest's
    /// `namespace` (the API server's word) when there is one.
    pub fn of(object: &Value, scopes: &KindScopes, request_namespace: Option<&str>) -> ObjectInfo {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let meta = object.get("metadata");
        let api_version = s(object.get("apiVersion")).unwrap_or_default();
        let group = match api_version.rsplit_once('/') {
            Some((g, _)) => g.to_string(),
            None => String::new(),
        };
        let kind = s(object.get("kind")).unwrap_or_default();
        let scope = scopes.scope(&group, &kind);
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let namespace = request_namespace
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| s(meta.and_then(|m| m.get("namespace"))))
            .filter(|n| !n.is_empty() && scope != Some(Scope::Cluster));
        let namespaced = match scope {
            Some(Scope::Namespaced) => true,
            Some(Scope::Cluster) => false,
            None => namespace.is_some(),
        };
        ObjectInfo {
            group,
            kind,
            namespace,
            name: s(meta.and_then(|m| m.get("name"))).unwrap_or_default(),
            generate_name: s(meta.and_then(|m| m.get("generateName"))),
            labels,
            namespaced,
            generated: false,
        }
    }

    /// Gatekeeper's `IsNamespace`: kind Namespace of the core group.
    fn is_namespace(&self) -> bool {
        self.kind == "Namespace" && self.group.is_empty()
    }

    /// The namespace the namespace matchers look at: a Namespace's own name, else the object's
    /// namespace; `None` when it is not known (cluster-scoped, or not set yet).
    fn effective_namespace(&self) -> Option<&str> {
        if self.is_namespace() {
            Some(&self.name)
        } else {
            self.namespace.as_deref()
        }
    }
}

/// A `match` that cannot be decided: Gatekeeper fails the review with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.match.namespaceSelector needs the labels of Namespace {0:?}, which is not known (Gatekeeper: \"namespace selector for namespace-scoped object but missing Namespace\"): add its Namespace manifest to the linted paths or to --inventory"
)]
pub struct UnknownNamespace(pub String);

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    match_labels: BTreeMap<String, String>,
    expressions: Vec<(String, Op, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Reads a selector at `field` (for messages); operators with missing or extra values are
    /// refused here, where Gatekeeper would fail every review.
    pub fn parse(v: &Value, field: &str) -> Result<LabelSelector, PolicyError> {
        let bad = |m: &str| PolicyError::Invalid(format!("{field}: {m}"));
        let mut sel = LabelSelector::default();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad("matchLabels values must be strings"))?;
                sel.match_labels.insert(k.clone(), v.to_string());
            }
        }
        for e in v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("matchExpressions entry without key"))?;
            let op = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In,
                Some("NotIn") => Op::NotIn,
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                other => {
                    return Err(bad(&format!(
                        "unknown operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                    )));
                }
            };
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            // metav1.LabelSelectorAsSelector refuses these (Gatekeeper fails every review of a
            // constraint that has one); refused here when the constraint is loaded.
            match (op, values.is_empty()) {
                (Op::In | Op::NotIn, true) => {
                    return Err(bad(&format!(
                        "matchExpressions key {key:?}: operator {op:?} needs values"
                    )));
                }
                (Op::Exists | Op::DoesNotExist, false) => {
                    return Err(bad(&format!(
                        "matchExpressions key {key:?}: operator {op:?} takes no values"
                    )));
                }
                _ => {}
            }
            sel.expressions.push((key.to_string(), op, values));
        }
        Ok(sel)
    }

    /// Whether `labels` satisfy the selector (all terms; an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, values)| {
                let got = labels.get(k);
                match op {
                    Op::In => got.is_some_and(|g| values.contains(g)),
                    Op::NotIn => got.is_none_or(|g| !values.contains(g)),
                    Op::Exists => got.is_some(),
                    Op::DoesNotExist => got.is_none(),
                }
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum ScopeMatch {
    #[default]
    Any,
    Cluster,
    Namespaced,
}

/// `spec.match.source`: the object under review (`Original`), an ExpansionTemplate's resultant
/// (`Generated`), or both (`All`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Source {
    #[default]
    All,
    Original,
    Generated,
}

/// Gatekeeper's `Wildcard` (`pkg/wildcard`): `x*` is a prefix, `*x` a suffix, `*x*` an infix;
/// anything else matches only itself. The Constraint CRD allows `^\*?[-:a-z0-9]*\*?$`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard(String);

impl Wildcard {
    /// Reads a pattern at `field`, refusing what the Constraint CRD refuses.
    pub fn parse(s: &str, field: &str) -> Result<Wildcard, PolicyError> {
        let inner = s.strip_prefix('*').unwrap_or(s);
        let inner = inner.strip_suffix('*').unwrap_or(inner);
        if inner
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b':')
        {
            Ok(Wildcard(s.to_string()))
        } else {
            Err(PolicyError::Invalid(format!(
                "{field}: {s:?} is not a Gatekeeper wildcard (lower-case letters, digits, '-' and ':', with '*' only at the start and/or the end)"
            )))
        }
    }

    /// `Wildcard.Matches`.
    pub fn matches(&self, candidate: &str) -> bool {
        let w = self.0.as_str();
        match (w.strip_prefix('*'), w.strip_suffix('*')) {
            (Some(rest), Some(_)) => candidate.contains(rest.strip_suffix('*').unwrap_or(rest)),
            (Some(suffix), None) => candidate.ends_with(suffix),
            (None, Some(prefix)) => candidate.starts_with(prefix),
            (None, None) => w == candidate,
        }
    }

    /// `Wildcard.MatchesGenerateName`: a generateName is only a prefix of the name to come, so
    /// only a prefix or infix glob can match it.
    pub fn matches_generate_name(&self, candidate: &str) -> bool {
        let w = self.0.as_str();
        match (w.strip_prefix('*'), w.strip_suffix('*')) {
            (Some(rest), Some(_)) => candidate.contains(rest.strip_suffix('*').unwrap_or(rest)),
            (None, Some(prefix)) => candidate.starts_with(prefix),
            _ => false,
        }
    }
}

/// A constraint's `spec.match`.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// `(apiGroups, kinds)` alternatives; empty = every kind.
    kinds: Vec<(Vec<String>, Vec<String>)>,
    scope: ScopeMatch,
    namespaces: Vec<Wildcard>,
    excluded_namespaces: Vec<Wildcard>,
    /// `processes`: where `excludedNamespaces` applies (`audit`, `webhook`, `*`); empty = all.
    processes: Vec<String>,
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    name: Option<Wildcard>,
    source: Source,
}

/// The strings of a JSON array (other members are ignored); empty if absent.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn wildcards(v: Option<&Value>, field: &str) -> Result<Vec<Wildcard>, PolicyError> {
    strings(v)
        .iter()
        .map(|s| Wildcard::parse(s, field))
        .collect()
}

impl Match {
    /// The names in `namespaces` that are not globs: each names one Namespace.
    pub fn literal_namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces
            .iter()
            .map(|w| w.0.as_str())
            .filter(|n| !n.contains('*'))
    }

    /// Reads a constraint's `spec.match` (absent: matches everything).
    pub fn parse(v: Option<&Value>) -> Result<Match, PolicyError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Match::default());
        };
        let mut m = Match::default();
        for k in v
            .get("kinds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.kinds
                .push((strings(k.get("apiGroups")), strings(k.get("kinds"))));
        }
        // Gatekeeper: "this includes invalid scopes, such as typos like `cluster`": anything but
        // Cluster and Namespaced matches every scope.
        m.scope = match v.get("scope").and_then(Value::as_str) {
            Some("Cluster") => ScopeMatch::Cluster,
            Some("Namespaced") => ScopeMatch::Namespaced,
            _ => ScopeMatch::Any,
        };
        m.namespaces = wildcards(v.get("namespaces"), "spec.match.namespaces")?;
        m.excluded_namespaces =
            wildcards(v.get("excludedNamespaces"), "spec.match.excludedNamespaces")?;
        m.processes = strings(v.get("processes"));
        if let Some(bad) = m.processes.iter().find(|p| {
            !matches!(
                p.as_str(),
                "audit" | "webhook" | "sync" | "mutation-webhook" | "*"
            )
        }) {
            return Err(PolicyError::Invalid(format!(
                "spec.match.processes: {bad:?} is not audit, webhook, sync, mutation-webhook or *"
            )));
        }
        if let Some(s) = v.get("labelSelector").filter(|s| !s.is_null()) {
            m.label_selector = Some(LabelSelector::parse(s, "spec.match.labelSelector")?);
        }
        if let Some(s) = v.get("namespaceSelector").filter(|s| !s.is_null()) {
            m.namespace_selector = Some(LabelSelector::parse(s, "spec.match.namespaceSelector")?);
        }
        // A blank name means "any name", as in Gatekeeper.
        m.name = match v.get("name").and_then(Value::as_str) {
            None | Some("") => None,
            Some(n) => Some(Wildcard::parse(n, "spec.match.name")?),
        };
        m.source = match v.get("source").and_then(Value::as_str) {
            None | Some("" | "All") => Source::All,
            Some("Original") => Source::Original,
            Some("Generated") => Source::Generated,
            Some(other) => {
                return Err(PolicyError::Invalid(format!(
                    "spec.match.source: {other:?} is not All, Original or Generated"
                )));
            }
        };
        Ok(m)
    }

    /// Whether this `match` can select objects of this group and kind at all (audit lists only
    /// such kinds, like Gatekeeper's `--audit-match-kind-only`).
    pub fn may_select_kind(&self, group: &str, kind: &str) -> bool {
        self.kinds.is_empty()
            || self.kinds.iter().any(|(groups, kinds)| {
                (groups.is_empty() || groups.iter().any(|g| g == "*" || g == group))
                    && (kinds.is_empty() || kinds.iter().any(|k| k == "*" || k == kind))
            })
    }

    /// Whether this `match` selects `obj` at `point`. `namespace_labels` gives the labels of
    /// known Namespace objects; a namespaceSelector on an object in an unknown namespace is an
    /// error, as in Gatekeeper.
    pub fn matches(
        &self,
        obj: &ObjectInfo,
        point: Point,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, UnknownNamespace> {
        Ok(self.may_select_kind(&obj.group, &obj.kind)
            && self.scope_matches(obj)
            && self.namespaces_match(obj)
            && self.excluded_namespaces_match(obj, point)
            && self
                .label_selector
                .as_ref()
                .is_none_or(|s| s.matches(&obj.labels))
            && self.namespace_selector_matches(obj, namespace_labels)?
            && self.names_match(obj)
            && match self.source {
                Source::All => true,
                Source::Original => !obj.generated,
                Source::Generated => obj.generated,
            })
    }

    /// `scopeMatch`: a Namespace counts as cluster-scoped.
    fn scope_matches(&self, obj: &ObjectInfo) -> bool {
        match self.scope {
            ScopeMatch::Any => true,
            ScopeMatch::Cluster => obj.is_namespace() || !obj.namespaced,
            ScopeMatch::Namespaced => !obj.is_namespace() && obj.namespaced,
        }
    }

    /// `namespacesMatch`: without a namespace, nothing disqualifies.
    fn namespaces_match(&self, obj: &ObjectInfo) -> bool {
        match obj.effective_namespace() {
            _ if self.namespaces.is_empty() => true,
            Some(ns) => self.namespaces.iter().any(|w| w.matches(ns)),
            None => true,
        }
    }

    /// `excludedNamespacesMatch`, for the processes it is scoped to (gator and the webhook are
    /// Gatekeeper's `webhook` process, `processFromEnforcementPoint`).
    fn excluded_namespaces_match(&self, obj: &ObjectInfo, point: Point) -> bool {
        let process = if point == Point::Audit {
            "audit"
        } else {
            "webhook"
        };
        let applies =
            self.processes.is_empty() || self.processes.iter().any(|p| p == "*" || p == process);
        match obj.effective_namespace() {
            Some(ns) if applies => !self.excluded_namespaces.iter().any(|w| w.matches(ns)),
            _ => true,
        }
    }

    /// `namespaceSelectorMatch`: a Namespace is selected by its own labels; an object without a
    /// namespace (cluster-scoped, or not set yet) matches.
    fn namespace_selector_matches(
        &self,
        obj: &ObjectInfo,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, UnknownNamespace> {
        let Some(sel) = &self.namespace_selector else {
            return Ok(true);
        };
        if obj.is_namespace() {
            return Ok(sel.matches(&obj.labels));
        }
        match &obj.namespace {
            None => Ok(true),
            Some(ns) => namespace_labels(ns)
                .map(|labels| sel.matches(&labels))
                .ok_or_else(|| UnknownNamespace(ns.clone())),
        }
    }

    /// `namesMatch`: the name, or the generateName a name will be made from.
    fn names_match(&self, obj: &ObjectInfo) -> bool {
        self.name.as_ref().is_none_or(|w| {
            w.matches(&obj.name)
                || obj
                    .generate_name
                    .as_deref()
                    .is_some_and(|g| w.matches_generate_name(g))
        })
    }
}

#[cfg(test)]
mod tests {
    //! One table per Gatekeeper matcher. Each row cites the rule of `pkg/mutation/match/match.go`
    //! it checks; "sealgate:" marks where the kind's scope decides what gator guesses from the
    //! presence of `metadata.namespace`.
    use super::*;
    use crate::policy::scope::KindScopes;
    use serde_json::json;

    /// An object as lint sees it: its kind's scope from the built-in table.
    fn obj(v: Value) -> ObjectInfo {
        ObjectInfo::of(&v, &KindScopes::default(), None)
    }

    fn m(v: Value) -> Match {
        Match::parse(Some(&v)).unwrap()
    }

    fn pod(ns: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": ns}})
    }

    fn deployment_without_namespace() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
    }

    fn namespace(name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    }

    fn cluster_role() -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}})
    }

    fn widget(ns: Option<&str>) -> Value {
        let mut w =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        if let Some(ns) = ns {
            w["metadata"]["namespace"] = json!(ns);
        }
        w
    }

    /// Labels of the Namespaces this test cluster knows: `prod` (governed) and `dev` (none).
    fn known(ns: &str) -> Option<BTreeMap<String, String>> {
        match ns {
            "prod" => Some(BTreeMap::from([(
                "governed".to_string(),
                "true".to_string(),
            )])),
            "dev" => Some(BTreeMap::new()),
            _ => None,
        }
    }

    /// (why, match, object, expected) at the CI point.
    fn table(rows: &[(&str, Value, Value, bool)]) {
        for (why, mv, ov, want) in rows {
            let got = m(mv.clone()).matches(&obj(ov.clone()), Point::Ci, &known);
            assert_eq!(got, Ok(*want), "{why}: match {mv} on {ov}");
        }
    }

    #[test]
    fn kinds_match() {
        let pods = json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]});
        table(&[
            (
                "no kinds: every kind",
                json!({}),
                deployment_without_namespace(),
                true,
            ),
            ("group and kind both match", pods.clone(), pod("a"), true),
            (
                "kind differs",
                pods.clone(),
                deployment_without_namespace(),
                false,
            ),
            (
                "group differs: Deployment is in apps",
                json!({"kinds": [{"apiGroups": [""], "kinds": ["Deployment"]}]}),
                deployment_without_namespace(),
                false,
            ),
            (
                "entries are alternatives",
                json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}, {"apiGroups": ["apps"], "kinds": ["Deployment"]}]}),
                deployment_without_namespace(),
                true,
            ),
            (
                "* is every group and every kind",
                json!({"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}]}),
                widget(None),
                true,
            ),
            (
                "an entry without kinds is every kind of its groups",
                json!({"kinds": [{"apiGroups": ["apps"]}]}),
                deployment_without_namespace(),
                true,
            ),
        ]);
    }

    #[test]
    fn scope_match() {
        let cluster = json!({"scope": "Cluster"});
        let namespaced = json!({"scope": "Namespaced"});
        table(&[
            (
                "Cluster: a cluster-scoped kind",
                cluster.clone(),
                cluster_role(),
                true,
            ),
            (
                "Cluster: a Namespace is cluster-scoped",
                cluster.clone(),
                namespace("x", json!({})),
                true,
            ),
            (
                "Cluster: a Pod with a namespace",
                cluster.clone(),
                pod("a"),
                false,
            ),
            (
                "sealgate: Cluster does not take a Deployment whose namespace is set later",
                cluster.clone(),
                deployment_without_namespace(),
                false,
            ),
            (
                "Cluster: an unknown kind without a namespace, as gator",
                cluster.clone(),
                widget(None),
                true,
            ),
            (
                "Cluster: an unknown kind with a namespace",
                cluster.clone(),
                widget(Some("a")),
                false,
            ),
            (
                "Namespaced: a Pod with a namespace",
                namespaced.clone(),
                pod("a"),
                true,
            ),
            (
                "sealgate: Namespaced takes a Deployment whose namespace is set later",
                namespaced.clone(),
                deployment_without_namespace(),
                true,
            ),
            (
                "Namespaced: not a cluster-scoped kind",
                namespaced.clone(),
                cluster_role(),
                false,
            ),
            (
                "Namespaced: not a Namespace",
                namespaced.clone(),
                namespace("x", json!({})),
                false,
            ),
            (
                "Namespaced: an unknown kind without a namespace, as gator",
                namespaced.clone(),
                widget(None),
                false,
            ),
            (
                "Namespaced: an unknown kind with a namespace",
                namespaced,
                widget(Some("a")),
                true,
            ),
            (
                "invalid scopes (a typo) match everything",
                json!({"scope": "cluster"}),
                pod("a"),
                true,
            ),
        ]);
    }

    #[test]
    fn namespaces_match() {
        let prod = json!({"namespaces": ["prod-*"]});
        table(&[
            (
                "in a listed namespace (prefix glob)",
                prod.clone(),
                pod("prod-eu"),
                true,
            ),
            ("in another namespace", prod.clone(), pod("dev"), false),
            (
                "without a namespace nothing disqualifies: a Deployment kustomize will place",
                prod.clone(),
                deployment_without_namespace(),
                true,
            ),
            (
                "a Namespace by its own name",
                prod.clone(),
                namespace("prod-eu", json!({})),
                true,
            ),
            (
                "a Namespace of another name",
                prod.clone(),
                namespace("dev", json!({})),
                false,
            ),
            (
                "a cluster-scoped object is not disqualified",
                prod.clone(),
                cluster_role(),
                true,
            ),
            (
                "a cluster-scoped object's stray metadata.namespace is ignored (the API server drops it)",
                prod.clone(),
                {
                    let mut c = cluster_role();
                    c["metadata"]["namespace"] = json!("dev");
                    c
                },
                true,
            ),
            (
                "suffix glob",
                json!({"namespaces": ["*-system"]}),
                pod("kube-system"),
                true,
            ),
            (
                "infix glob",
                json!({"namespaces": ["*mon*"]}),
                pod("x-monitoring"),
                true,
            ),
            (
                "exact name",
                json!({"namespaces": ["prod"]}),
                pod("prod-eu"),
                false,
            ),
        ]);
        // At admission the request's namespace is the API server's word, even if the object's
        // metadata does not carry it.
        let info = ObjectInfo::of(
            &deployment_without_namespace(),
            &KindScopes::default(),
            Some("dev"),
        );
        assert_eq!(m(prod).matches(&info, Point::Admission, &known), Ok(false));
    }

    #[test]
    fn excluded_namespaces_match() {
        let excl = json!({"excludedNamespaces": ["kube-*", "*-system"]});
        table(&[
            (
                "in an excluded namespace",
                excl.clone(),
                pod("kube-public"),
                false,
            ),
            ("suffix glob", excl.clone(), pod("sealgate-system"), false),
            ("in another namespace", excl.clone(), pod("prod"), true),
            (
                "without a namespace nothing disqualifies",
                excl.clone(),
                deployment_without_namespace(),
                true,
            ),
            (
                "a Namespace by its own name",
                excl.clone(),
                namespace("kube-system", json!({})),
                false,
            ),
            ("a cluster-scoped object", excl, cluster_role(), true),
        ]);
        // `processes` scopes the exclusion: here only audit honours it.
        let audit_only = m(json!({"excludedNamespaces": ["kube-system"], "processes": ["audit"]}));
        let p = obj(pod("kube-system"));
        assert_eq!(audit_only.matches(&p, Point::Ci, &known), Ok(true));
        assert_eq!(audit_only.matches(&p, Point::Admission, &known), Ok(true));
        assert_eq!(audit_only.matches(&p, Point::Audit, &known), Ok(false));
        let webhook = m(json!({"excludedNamespaces": ["kube-system"], "processes": ["webhook"]}));
        assert_eq!(
            webhook.matches(&p, Point::Ci, &known),
            Ok(false),
            "gator is the webhook process"
        );
        assert!(Match::parse(Some(&json!({"processes": ["gator"]}))).is_err());
    }

    #[test]
    fn label_selector_match() {
        let labelled = |labels: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a", "labels": labels}});
        let sel = json!({"labelSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]}]}});
        let exists =
            json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}});
        table(&[
            (
                "every requirement holds",
                sel.clone(),
                labelled(json!({"app": "web", "tier": "fe"})),
                true,
            ),
            (
                "In: another value",
                sel.clone(),
                labelled(json!({"app": "web", "tier": "db"})),
                false,
            ),
            (
                "DoesNotExist: present",
                sel.clone(),
                labelled(json!({"app": "web", "tier": "fe", "legacy": "1"})),
                false,
            ),
            (
                "NotIn: a listed value",
                sel.clone(),
                labelled(json!({"app": "web", "tier": "fe", "env": "dev"})),
                false,
            ),
            (
                "matchLabels: absent",
                sel,
                labelled(json!({"tier": "fe"})),
                false,
            ),
            ("Exists: absent", exists.clone(), labelled(json!({})), false),
            (
                "Exists: present",
                exists,
                labelled(json!({"app": ""})),
                true,
            ),
        ]);
        for bad in [
            json!({"key": "a", "operator": "Near"}),
            json!({"key": "a", "operator": "In"}),
            json!({"key": "a", "operator": "Exists", "values": ["x"]}),
        ] {
            let e = Match::parse(Some(&json!({"labelSelector": {"matchExpressions": [bad]}})));
            assert!(e.is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn namespace_selector_match() {
        let governed = json!({"namespaceSelector": {"matchLabels": {"governed": "true"}}});
        table(&[
            (
                "the namespace's labels match",
                governed.clone(),
                pod("prod"),
                true,
            ),
            (
                "the namespace's labels do not match",
                governed.clone(),
                pod("dev"),
                false,
            ),
            (
                "a Namespace by its own labels",
                governed.clone(),
                namespace("x", json!({"governed": "true"})),
                true,
            ),
            (
                "a Namespace without them",
                governed.clone(),
                namespace("prod", json!({})),
                false,
            ),
            (
                "cluster-scoped objects match",
                governed.clone(),
                cluster_role(),
                true,
            ),
            (
                "an object without a namespace yet matches (nothing to select on)",
                governed.clone(),
                deployment_without_namespace(),
                true,
            ),
        ]);
        // Gatekeeper: "namespace selector for namespace-scoped object but missing Namespace".
        let got = m(governed).matches(&obj(pod("staging")), Point::Ci, &known);
        assert_eq!(got, Err(UnknownNamespace("staging".into())));
        assert!(got.unwrap_err().to_string().contains("--inventory"));
    }

    #[test]
    fn names_match() {
        let generated = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "namespace": "a"}});
        table(&[
            ("exact name", json!({"name": "web-1"}), pod("a"), true),
            ("prefix glob", json!({"name": "web-*"}), pod("a"), true),
            ("suffix glob", json!({"name": "*-1"}), pod("a"), true),
            ("another name", json!({"name": "db"}), pod("a"), false),
            (
                "a blank name is any name",
                json!({"name": ""}),
                pod("a"),
                true,
            ),
            (
                "generateName by a prefix glob",
                json!({"name": "web-*"}),
                generated.clone(),
                true,
            ),
            (
                "generateName by an infix glob",
                json!({"name": "*eb*"}),
                generated.clone(),
                true,
            ),
            (
                "generateName is never matched by a suffix glob",
                json!({"name": "*-"}),
                generated.clone(),
                false,
            ),
            (
                "generateName is never matched exactly",
                json!({"name": "web-"}),
                generated,
                false,
            ),
        ]);
    }

    #[test]
    fn source_match() {
        table(&[
            ("All", json!({"source": "All"}), pod("a"), true),
            (
                "Original: every object linted or admitted is one",
                json!({"source": "Original"}),
                pod("a"),
                true,
            ),
            (
                "Generated: only expansion makes those",
                json!({"source": "Generated"}),
                pod("a"),
                false,
            ),
        ]);
        assert!(Match::parse(Some(&json!({"source": "generated"}))).is_err());
        // An ExpansionTemplate's resultant.
        let mut resultant = obj(pod("a"));
        resultant.generated = true;
        for (source, want) in [("All", true), ("Original", false), ("Generated", true)] {
            let m = Match::parse(Some(&json!({"source": source}))).unwrap();
            assert_eq!(
                m.matches(&resultant, Point::Ci, &|_| None),
                Ok(want),
                "{source}"
            );
        }
    }

    #[test]
    fn kinds_an_audit_must_list() {
        let pods = m(json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}));
        assert!(pods.may_select_kind("", "Pod") && !pods.may_select_kind("apps", "Deployment"));
        assert!(m(json!({})).may_select_kind("apps", "Deployment"));
        assert!(
            m(json!({"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}]})).may_select_kind("x", "Y")
        );
    }

    #[test]
    fn wildcards() {
        let w = |s: &str| Wildcard::parse(s, "f").unwrap();
        assert!(w("a*").matches("abc") && w("*c").matches("abc") && w("*b*").matches("abc"));
        assert!(w("*").matches("") && w("*").matches("anything") && w("x").matches("x"));
        assert!(!w("a*").matches("bac") && !w("abc").matches("ab"));
        for bad in ["a*c", "Prod", "a.b", "**x"] {
            let e = Wildcard::parse(bad, "spec.match.namespaces").unwrap_err();
            assert!(e.to_string().contains("spec.match.namespaces"), "{e}");
        }
    }
}
