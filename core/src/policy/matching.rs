//! Gatekeeper's `match` block (`pkg/mutation/match/match.go`): every matcher present must match;
//! within `kinds` the entries are alternatives; an absent or empty `match` matches everything.

use std::collections::BTreeMap;

use serde_json::Value;

use super::PolicyError;

/// What a constraint's `match` needs to know about an object.
#[derive(Debug, Clone, Default)]
pub struct ObjectInfo {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub generate_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cluster_scoped: bool,
}

/// Kinds that are cluster-scoped. Offline there is no discovery API, so this list decides `scope`
/// and whether `namespaces` applies; everything else is treated as namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterIssuer",
    "ConstraintTemplate",
    "ClusterPolicy",
    "VolumeSnapshotClass",
];

impl ObjectInfo {
    pub fn of(object: &Value) -> ObjectInfo {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let meta = object.get("metadata");
        let api_version = s(object.get("apiVersion")).unwrap_or_default();
        let group = match api_version.rsplit_once('/') {
            Some((g, _)) => g.to_string(),
            None => String::new(),
        };
        let kind = s(object.get("kind")).unwrap_or_default();
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        ObjectInfo {
            cluster_scoped: CLUSTER_SCOPED.contains(&kind.as_str()),
            group,
            kind,
            namespace: s(meta.and_then(|m| m.get("namespace"))).filter(|n| !n.is_empty()),
            name: s(meta.and_then(|m| m.get("name"))).unwrap_or_default(),
            generate_name: s(meta.and_then(|m| m.get("generateName"))),
            labels,
        }
    }

    /// The namespace `namespaces`/`excludedNamespaces`/`namespaceSelector` look at: a namespaced
    /// object's own, or a Namespace's name.
    fn effective_namespace(&self) -> Option<&str> {
        if self.kind == "Namespace" && self.group.is_empty() {
            Some(&self.name)
        } else if self.cluster_scoped {
            None
        } else {
            self.namespace.as_deref()
        }
    }
}

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
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            sel.expressions.push((key.to_string(), op, values));
        }
        Ok(sel)
    }

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

/// A constraint's `spec.match`.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// `(apiGroups, kinds)` alternatives; empty = every kind.
    kinds: Vec<(Vec<String>, Vec<String>)>,
    scope: ScopeMatch,
    namespaces: Vec<String>,
    excluded_namespaces: Vec<String>,
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    name: Option<String>,
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

impl Match {
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
        m.scope = match v.get("scope").and_then(Value::as_str) {
            None | Some("*") => ScopeMatch::Any,
            Some("Cluster") => ScopeMatch::Cluster,
            Some("Namespaced") => ScopeMatch::Namespaced,
            Some(other) => {
                return Err(PolicyError::Invalid(format!(
                    "spec.match.scope: {other:?} is not one of \"*\", Cluster, Namespaced"
                )));
            }
        };
        m.namespaces = strings(v.get("namespaces"));
        m.excluded_namespaces = strings(v.get("excludedNamespaces"));
        if let Some(s) = v.get("labelSelector").filter(|s| !s.is_null()) {
            m.label_selector = Some(LabelSelector::parse(s, "spec.match.labelSelector")?);
        }
        if let Some(s) = v.get("namespaceSelector").filter(|s| !s.is_null()) {
            m.namespace_selector = Some(LabelSelector::parse(s, "spec.match.namespaceSelector")?);
        }
        m.name = v.get("name").and_then(Value::as_str).map(str::to_string);
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

    /// Whether this `match` selects `obj`. `namespace_labels` gives the labels of known Namespace
    /// objects (from the linted files and the inventory); an unknown namespace has no labels.
    pub fn matches(
        &self,
        obj: &ObjectInfo,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> bool {
        let kind_ok = self.kinds.is_empty()
            || self.kinds.iter().any(|(groups, kinds)| {
                let g = groups.is_empty() || groups.iter().any(|g| g == "*" || *g == obj.group);
                let k = kinds.is_empty() || kinds.iter().any(|k| k == "*" || *k == obj.kind);
                g && k
            });
        if !kind_ok {
            return false;
        }
        match self.scope {
            ScopeMatch::Any => {}
            ScopeMatch::Cluster if !obj.cluster_scoped => return false,
            ScopeMatch::Namespaced if obj.cluster_scoped => return false,
            _ => {}
        }
        let ns = obj.effective_namespace();
        let applies_to_ns = obj.kind == "Namespace" || !obj.cluster_scoped;
        if applies_to_ns {
            if !self.namespaces.is_empty()
                && !ns.is_some_and(|n| self.namespaces.iter().any(|p| glob(p, n)))
            {
                return false;
            }
            if ns.is_some_and(|n| self.excluded_namespaces.iter().any(|p| glob(p, n))) {
                return false;
            }
        }
        if let Some(sel) = &self.label_selector
            && !sel.matches(&obj.labels)
        {
            return false;
        }
        if let Some(sel) = &self.namespace_selector {
            let labels = if obj.kind == "Namespace" && obj.group.is_empty() {
                Some(obj.labels.clone())
            } else {
                ns.and_then(namespace_labels)
            };
            if obj.cluster_scoped && obj.kind != "Namespace" {
                // Gatekeeper: a namespaceSelector does not apply to other cluster-scoped objects.
            } else if !sel.matches(&labels.unwrap_or_default()) {
                return false;
            }
        }
        if let Some(pattern) = &self.name {
            let by_name = !obj.name.is_empty() && glob(pattern, &obj.name);
            let by_generate = obj
                .generate_name
                .as_deref()
                .is_some_and(|g| glob(pattern, g));
            if !by_name && !by_generate {
                return false;
            }
        }
        true
    }
}

/// Gatekeeper's wildcards (`prefix*`, `*suffix`, `*infix*`), generalised to `*` anywhere.
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first)
        || !s[first.len()..].ends_with(last)
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(p) => rest = &rest[p + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> ObjectInfo {
        ObjectInfo::of(&v)
    }

    fn m(v: Value) -> Match {
        Match::parse(Some(&v)).unwrap()
    }

    fn no_ns(_: &str) -> Option<BTreeMap<String, String>> {
        None
    }

    fn pod(ns: &str, labels: Value) -> ObjectInfo {
        obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": ns, "labels": labels}}),
        )
    }

    #[test]
    fn kinds_groups_and_wildcards() {
        let deploy = obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "a"}}),
        );
        let p = pod("a", json!({}));
        assert!(m(json!({})).matches(&deploy, &no_ns));
        let pods = m(json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}));
        assert!(pods.matches(&p, &no_ns) && !pods.matches(&deploy, &no_ns));
        let either = m(
            json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}, {"apiGroups": ["apps"], "kinds": ["Deployment"]}]}),
        );
        assert!(either.matches(&p, &no_ns) && either.matches(&deploy, &no_ns));
        let star = m(json!({"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}]}));
        assert!(star.matches(&deploy, &no_ns));
    }

    #[test]
    fn scope_and_namespaces() {
        let ns_obj = obj(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod-eu", "labels": {"team": "a"}}}),
        );
        let crole = obj(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
        );
        let p = pod("prod-eu", json!({}));
        assert!(m(json!({"scope": "Cluster"})).matches(&crole, &no_ns));
        assert!(!m(json!({"scope": "Cluster"})).matches(&p, &no_ns));
        assert!(!m(json!({"scope": "Namespaced"})).matches(&crole, &no_ns));
        let prod = m(json!({"namespaces": ["prod-*"]}));
        assert!(prod.matches(&p, &no_ns));
        assert!(
            prod.matches(&ns_obj, &no_ns),
            "a Namespace is matched by its own name"
        );
        assert!(
            prod.matches(&crole, &no_ns),
            "namespaces does nothing for cluster-scoped objects"
        );
        assert!(!prod.matches(&pod("dev", json!({})), &no_ns));
        let excl = m(json!({"excludedNamespaces": ["kube-*", "*-system", "*mon*"]}));
        assert!(!excl.matches(&pod("kube-public", json!({})), &no_ns));
        assert!(!excl.matches(&pod("sealgate-system", json!({})), &no_ns));
        assert!(!excl.matches(&pod("x-monitoring", json!({})), &no_ns));
        assert!(excl.matches(&p, &no_ns));
    }

    #[test]
    fn selectors() {
        let sel = m(
            json!({"labelSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}),
        );
        assert!(sel.matches(&pod("a", json!({"app": "web", "tier": "fe"})), &no_ns));
        assert!(!sel.matches(&pod("a", json!({"app": "web", "tier": "db"})), &no_ns));
        assert!(!sel.matches(
            &pod("a", json!({"app": "web", "tier": "fe", "legacy": "1"})),
            &no_ns
        ));
        assert!(!sel.matches(
            &pod("a", json!({"app": "web", "tier": "fe", "env": "dev"})),
            &no_ns
        ));
        let exists = m(
            json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}),
        );
        assert!(!exists.matches(&pod("a", json!({})), &no_ns));

        let nssel = m(json!({"namespaceSelector": {"matchLabels": {"governed": "true"}}}));
        let known = |n: &str| {
            (n == "prod").then(|| BTreeMap::from([("governed".to_string(), "true".to_string())]))
        };
        assert!(nssel.matches(&pod("prod", json!({})), &known));
        assert!(
            !nssel.matches(&pod("dev", json!({})), &known),
            "unknown namespace: no labels"
        );
        let ns_obj = obj(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"governed": "true"}}}),
        );
        assert!(
            nssel.matches(&ns_obj, &no_ns),
            "a Namespace is selected by its own labels"
        );
        assert!(
            Match::parse(Some(
                &json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}})
            ))
            .is_err()
        );
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
    fn name_and_generate_name() {
        let n = m(json!({"name": "web-*"}));
        assert!(n.matches(&pod("a", json!({})), &no_ns));
        let generated = obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "namespace": "a"}}),
        );
        assert!(n.matches(&generated, &no_ns));
        assert!(!m(json!({"name": "db"})).matches(&generated, &no_ns));
    }

    #[test]
    fn globs() {
        assert!(glob("a*", "abc") && glob("*c", "abc") && glob("*b*", "abc") && glob("a*c", "abc"));
        assert!(!glob("a*", "bac") && !glob("abc", "ab") && !glob("ab*bc", "abc"));
        assert!(glob("*", "") && glob("x", "x"));
    }
}
