//! A structural check of constraint `parameters` against the template's `openAPIV3Schema`
//! (the subset Gatekeeper templates use: type, properties, items, enum, required,
//! additionalProperties), so a mistyped parameter is an error at load time, as it is when the
//! Constraint CRD rejects it in a cluster.

use serde_json::Value;

/// Problems found, each with the path of the offending field.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && schema.get("type").is_none()
    {
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
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => check(s, v, &format!("{path}.{k}"), out),
                None => {
                    if let Some(ap) = schema.get("additionalProperties") {
                        if ap == &Value::Bool(false) {
                            out.push(format!("{path}.{k}: unknown field"));
                        } else if ap.is_object() {
                            check(ap, v, &format!("{path}.{k}"), out);
                        }
                    }
                }
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
                out.push(format!("{path}.{r}: required"));
            }
        }
    } else if let (Some(ap), Some(obj)) = (
        schema.get("additionalProperties").filter(|a| a.is_object()),
        value.as_object(),
    ) {
        for (k, v) in obj {
            check(ap, v, &format!("{path}.{k}"), out);
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(items, v, &format!("{path}[{i}]"), out);
        }
    }
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
    }
}
