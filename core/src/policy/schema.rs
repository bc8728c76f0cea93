//! Structural checks of Constraints against the schema Gatekeeper generates for their kind: its
//! fixed `spec.match` and `spec.enforcementAction` fields, and `spec.parameters` from the
//! template's `openAPIV3Schema` (the subset Gatekeeper templates use: type, properties, items,
//! enum, required, additionalProperties, x-kubernetes-preserve-unknown-fields). A field the schema
//! does not declare is refused, as `kubectl apply` does with strict field validation (its default),
//! so `match.namespace` for `namespaces` is an error, not a match that applies everywhere.

use serde_json::{Value, json};

/// Problems found, each with the path of the offending field.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if preserve && schema.get("type").is_none() && schema.get("properties").is_none() {
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        let null_ok = value.is_null() && schema.get("nullable") == Some(&Value::Bool(true));
        if !ok && !null_ok {
            out.push(format!("{path}: expected {t}, found {}", kind(value)));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        out.push(format!(
            "{path}: must be one of {}",
            Value::Array(e.clone())
        ));
    }
    let field = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (k, v) in obj {
            match (props.get(k), schema.get("additionalProperties")) {
                (Some(s), _) => check(s, v, &field(k), out),
                (None, Some(ap)) if ap.is_object() => check(ap, v, &field(k), out),
                (None, Some(Value::Bool(true))) => {}
                // Declared properties and nothing else allowed: the API server prunes the field
                // (or, with strict field validation, refuses the object).
                (None, _) if !preserve => out.push(format!(
                    "{}: unknown field{}",
                    field(k),
                    suggestion(k, props.keys())
                )),
                (None, _) => {}
            }
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !obj.contains_key(r)
            {
                out.push(format!("{}: required", field(r)));
            }
        }
    } else if let (Some(ap), Some(obj)) = (
        schema.get("additionalProperties").filter(|a| a.is_object()),
        value.as_object(),
    ) {
        for (k, v) in obj {
            check(ap, v, &field(k), out);
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(items, v, &format!("{path}[{i}]"), out);
        }
    }
}

/// ` (did you mean "x"?)` for the nearest declared field within a typo's reach, else nothing.
fn suggestion<'a>(k: &str, known: impl Iterator<Item = &'a String>) -> String {
    let reach = if k.chars().count() >= 4 { 2 } else { 1 };
    known
        .map(|c| (distance(k, c), c))
        .filter(|(d, _)| *d <= reach)
        .min()
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// Edit distance with swaps of neighbours (optimal string alignment), ignoring case: the typos
/// a reviewer misses (`lable`, `namespace`, `enforcementaction`).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (
        a.to_lowercase().chars().collect(),
        b.to_lowercase().chars().collect(),
    );
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The schema of a Constraint of a template's kind, as Gatekeeper generates its CRD: `metadata`
/// (ObjectMeta), `spec.match` (the Kubernetes target's match), `spec.enforcementAction`,
/// `spec.scopedEnforcementActions`, and `spec.parameters`, from the template's
/// `openAPIV3Schema`, or anything at all when it declares none.
pub fn constraint(parameters: Option<&Value>) -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let selector = json!({"type": "object", "properties": {
        "matchLabels": string_map,
        "matchExpressions": {"type": "array", "items": {"type": "object",
            "required": ["key", "operator"],
            "properties": {"key": {"type": "string"}, "operator": {"type": "string"}, "values": strings}}}
    }});
    let anything = json!({"x-kubernetes-preserve-unknown-fields": true});
    json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "generateName": {"type": "string"},
            "namespace": {"type": "string"}, "selfLink": {"type": "string"},
            "uid": {"type": "string"}, "resourceVersion": {"type": "string"},
            "generation": {"type": "integer"}, "creationTimestamp": {"nullable": true},
            "deletionTimestamp": {"type": "string"},
            "deletionGracePeriodSeconds": {"type": "integer"},
            "labels": string_map, "annotations": string_map,
            "ownerReferences": {"type": "array", "items": anything},
            "finalizers": strings,
            "managedFields": {"type": "array", "items": anything}
        }},
        "spec": {"type": "object", "properties": {
            "enforcementAction": {"type": "string"},
            "scopedEnforcementActions": {"type": "array", "items": {"type": "object",
                "properties": {"action": {"type": "string"},
                    "enforcementPoints": {"type": "array", "items": {"type": "object",
                        "properties": {"name": {"type": "string"}}}}}}},
            "match": {"type": "object", "properties": {
                "kinds": {"type": "array", "items": {"type": "object", "properties": {
                    "apiGroups": strings, "kinds": strings}}},
                "scope": {"type": "string", "enum": ["*", "Cluster", "Namespaced"]},
                "namespaces": strings,
                "excludedNamespaces": strings,
                "labelSelector": selector,
                "namespaceSelector": selector,
                "name": {"type": "string"},
                "source": {"type": "string", "enum": ["All", "Generated", "Original"]}
            }},
            "parameters": parameters.cloned().unwrap_or_else(|| anything.clone())
        }},
        "status": anything
    }})
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structural_checks() {
        let schema = json!({"type": "object", "properties": {
            "repos": {"type": "array", "items": {"type": "string"}},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "limit": {"type": "integer"}}, "required": ["repos"]});
        let mut out = Vec::new();
        check(
            &schema,
            &json!({"repos": ["x"], "mode": "a", "limit": 3}),
            "spec.parameters",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        check(
            &schema,
            &json!({"repos": "x", "mode": "c", "limit": 1.5}),
            "spec.parameters",
            &mut out,
        );
        out.sort();
        assert_eq!(
            out,
            vec![
                "spec.parameters.limit: expected integer, found number",
                "spec.parameters.mode: must be one of [\"a\",\"b\"]",
                "spec.parameters.repos: expected array, found string",
            ]
        );
        out.clear();
        check(&schema, &json!({}), "p", &mut out);
        assert_eq!(out, vec!["p.repos: required"]);
        // Undeclared fields are refused, with the near miss named; preserve-unknown-fields and
        // additionalProperties allow them.
        out.clear();
        check(
            &schema,
            &json!({"repos": [], "mdoe": "a", "x": 1}),
            "p",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "p.mdoe: unknown field (did you mean \"mode\"?)",
                "p.x: unknown field"
            ]
        );
        out.clear();
        let mut open = schema.clone();
        open["x-kubernetes-preserve-unknown-fields"] = json!(true);
        check(&open, &json!({"repos": [], "x": 1}), "p", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn constraint_schema_refuses_what_strict_field_validation_refuses() {
        let params = json!({"type": "object", "properties": {"labels": {"type": "array"}}});
        let c = constraint(Some(&params));
        let mut out = Vec::new();
        let good = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K",
            "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"enforcementAction": "warn", "match": {"namespaces": ["a"],
                "kinds": [{"apiGroups": [""], "kinds": ["Pod"]}],
                "labelSelector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}},
                "parameters": {"labels": []}}});
        check(&c, &good, "", &mut out);
        assert!(out.is_empty(), "{out:?}");
        let bad = json!({"metadata": {"name": "n", "lables": {}},
            "spec": {"enforcementaction": "warn", "match": {"namespace": ["a"]},
                "parameters": {"lable": []}}});
        check(&c, &bad, "", &mut out);
        assert_eq!(
            out,
            vec![
                "metadata.lables: unknown field (did you mean \"labels\"?)",
                "spec.enforcementaction: unknown field (did you mean \"enforcementAction\"?)",
                "spec.match.namespace: unknown field (did you mean \"namespaces\"?)",
                "spec.parameters.lable: unknown field (did you mean \"labels\"?)",
            ]
        );
        // A template without a schema takes any parameters.
        out.clear();
        check(
            &constraint(None),
            &json!({"spec": {"parameters": {"x": 1}}}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
