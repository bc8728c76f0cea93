//! Whether an object as admitted still holds everything its attested manifest declared.
//!
//! What the API server defaults, and what mutating webhooks and the GitOps agent add (Flux's
//! `kustomize.toolkit.fluxcd.io/*` labels, `kubectl.kubernetes.io/last-applied-configuration`),
//! is not in the manifest, so it cannot fail the check; a declared field that changed does. The
//! API server's rewrites of what was declared are accounted for:
//! - a declared `null`, `{}` or `[]` may be absent (the server drops them);
//! - numbers compare by value, and resource quantities too (`0.5` is stored as `500m`);
//! - lists whose items all have a `name` (containers, env, ports, volumes) match by name, as
//!   strategic merge does, so an injected sidecar is an addition; other lists match by position,
//!   and may have items appended (defaulted tolerations).
//!
//! Paths can be ignored, as Kyverno's `ignoreFields`: `spec.replicas` for an autoscaled workload,
//! `*` for any key or list item.

use serde_json::Value;

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
    pub fn parse(s: &str) -> Result<IgnoredField, String> {
        let (kinds, path) = match s.split_once(':') {
            Some((k, p)) => (k.split(',').map(|k| k.trim().to_string()).collect(), p),
            None => (Vec::new(), s),
        };
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "{s:?} is not a field path (e.g. Deployment:spec.replicas)"
            ));
        }
        Ok(IgnoredField { kinds, path })
    }

    fn matches(&self, kind: &str, path: &[String]) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && self.path.len() == path.len()
            && self.path.iter().zip(path).all(|(p, q)| p == "*" || p == q)
    }
}

/// The first declared field the admitted object does not hold. Names the path, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Dotted path of the field.
    pub path: String,
    /// `missing` or `changed`.
    pub what: &'static str,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} from what was attested",
            self.path,
            if self.what == "missing" {
                "missing"
            } else {
                "changed"
            }
        )
    }
}

/// `Ok` when `admitted` holds everything `declared` does (see the module's rules).
pub fn contains(
    declared: &Value,
    admitted: &Value,
    ignored: &[IgnoredField],
) -> Result<(), Difference> {
    let kind = declared.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut path = Vec::new();
    walk(declared, Some(admitted), kind, ignored, &mut path)
}

fn walk(
    declared: &Value,
    admitted: Option<&Value>,
    kind: &str,
    ignored: &[IgnoredField],
    path: &mut Vec<String>,
) -> Result<(), Difference> {
    if ignored.iter().any(|f| f.matches(kind, path)) {
        return Ok(());
    }
    let differs = |what| Difference {
        path: if path.is_empty() {
            "the object".into()
        } else {
            path.join(".")
        },
        what,
    };
    let Some(admitted) = admitted else {
        return if droppable(declared) {
            Ok(())
        } else {
            Err(differs("missing"))
        };
    };
    match (declared, admitted) {
        (Value::Object(d), Value::Object(a)) => {
            for (k, dv) in d {
                path.push(k.clone());
                walk(dv, a.get(k), kind, ignored, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(d), Value::Array(a)) => {
            let named = |items: &[Value]| {
                !items.is_empty()
                    && items
                        .iter()
                        .all(|i| i.get("name").and_then(Value::as_str).is_some())
            };
            for (i, dv) in d.iter().enumerate() {
                let (label, found) = if named(d) {
                    let n = dv["name"].as_str().unwrap_or_default();
                    (
                        n.to_string(),
                        a.iter()
                            .find(|x| x.get("name").and_then(Value::as_str) == Some(n)),
                    )
                } else {
                    (i.to_string(), a.get(i))
                };
                path.push(label);
                walk(dv, found, kind, ignored, path)?;
                path.pop();
            }
            Ok(())
        }
        (d, a) if scalars_equal(d, a) => Ok(()),
        (Value::Null, _) => Ok(()),
        _ => Err(differs("changed")),
    }
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

fn scalars_equal(d: &Value, a: &Value) -> bool {
    if d == a {
        return true;
    }
    match (d, a) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        // A quantity may be declared as a number or a string and is stored canonicalised.
        (Value::Number(_) | Value::String(_), Value::String(_))
        | (Value::String(_), Value::Number(_)) => {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            matches!((quantity(&text(d)), quantity(&text(a))), (Some(x), Some(y)) if x == y)
        }
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
                  "resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}}}],
                "tolerations": [{"key": "a", "operator": "Exists"}]}}}})
    }

    /// What kube-apiserver stores after defaulting, with Flux's labels and an injected sidecar.
    fn as_admitted() -> Value {
        let mut a = deployment();
        a["metadata"].as_object_mut().unwrap().remove("annotations");
        a["metadata"]["uid"] = "0b3c".into();
        a["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = "apps".into();
        a["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        a["spec"]["revisionHistoryLimit"] = 10.into();
        let pod = &mut a["spec"]["template"]["spec"];
        pod["containers"][0]["imagePullPolicy"] = "IfNotPresent".into();
        pod["containers"][0]["resources"]["requests"]["cpu"] = "500m".into();
        pod["containers"][0]["resources"]["requests"]["memory"] = "1024Mi".into();
        pod["containers"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "istio-proxy", "image": "proxy"}));
        pod["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "node.kubernetes.io/not-ready"}));
        pod["dnsPolicy"] = "ClusterFirst".into();
        a
    }

    #[test]
    fn defaults_and_additions_pass_and_a_changed_declared_field_fails() {
        assert_eq!(contains(&deployment(), &as_admitted(), &[]), Ok(()));

        let mut changed = as_admitted();
        changed["spec"]["template"]["spec"]["containers"][1]["image"] = "evil:latest".into();
        let d = contains(&deployment(), &changed, &[]).unwrap_err();
        assert_eq!(d.path, "spec.template.spec.containers.app.image");
        assert_eq!(d.what, "changed");
        assert!(!d.to_string().contains("evil"), "values are never quoted");

        let mut dropped = as_admitted();
        dropped["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert_eq!(
            contains(&deployment(), &dropped, &[]).unwrap_err().path,
            "metadata.labels.app"
        );

        let mut scaled = as_admitted();
        scaled["spec"]["replicas"] = 5.into();
        assert_eq!(
            contains(&deployment(), &scaled, &[]).unwrap_err().path,
            "spec.replicas"
        );
        let hpa = IgnoredField::parse("Deployment:spec.replicas").unwrap();
        assert_eq!(contains(&deployment(), &scaled, &[hpa]), Ok(()));
        let other_kind = IgnoredField::parse("StatefulSet:spec.replicas").unwrap();
        assert!(contains(&deployment(), &scaled, &[other_kind]).is_err());
        let wildcard = IgnoredField::parse("spec.template.spec.containers.*.image").unwrap();
        assert_eq!(contains(&deployment(), &changed, &[wildcard]), Ok(()));
    }

    #[test]
    fn quantities_compare_by_value() {
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
    }
}
