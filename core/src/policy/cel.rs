//! Gatekeeper's CEL engine for ConstraintTemplates (`code[].engine: K8sNativeValidation`), as
//! `pkg/drivers/k8scel` evaluates it: a ValidatingAdmissionPolicy's `variables`,
//! `matchConditions` and `validations` over `object`, `oldObject`, `request`, `params` (the
//! constraint) and `namespaceObject`, with Gatekeeper's two variables `variables.params` (the
//! constraint's `spec.parameters`) and `variables.anyObject` (the object, or the old one for a
//! DELETE). The CEL is the `cel` crate's, with Kubernetes' libraries from `kube-cel`.
//!
//! An expression that fails to evaluate follows `failurePolicy` (Gatekeeper's default: `Fail`,
//! a violation saying why; `Ignore`, nothing). A validation that is false is a violation with its
//! `messageExpression`'s result, else its `message`, else the expression, as Kubernetes words it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// What to do when an expression cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A violation saying why (Gatekeeper's default).
    Fail,
    /// No violation.
    Ignore,
}

struct Named {
    name: String,
    program: cel::Program,
}

struct Validation {
    expression: cel::Program,
    text: String,
    message: Option<String>,
    message_expression: Option<cel::Program>,
}

/// A template's compiled CEL.
pub struct CelCode {
    variables: Vec<Named>,
    match_conditions: Vec<Named>,
    validations: Vec<Validation>,
    failure_policy: FailurePolicy,
}

impl std::fmt::Debug for CelCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelCode")
            .field("variables", &self.variables.len())
            .field("validations", &self.validations.len())
            .finish()
    }
}

/// What the review gives every CEL template, converted to CEL once per review (the object can be
/// large, and each constraint of a CEL template evaluates over it).
pub struct CelInput {
    object: cel::Value,
    old_object: cel::Value,
    /// The AdmissionRequest without `object` and `oldObject`.
    request: cel::Value,
    /// Gatekeeper's `variables.anyObject`.
    any_object: cel::Value,
    namespace: cel::Value,
}

impl CelInput {
    /// From the AdmissionRequest (`object`, `oldObject`, `operation`, `userInfo`, …) and the
    /// request's Namespace object, when its labels are known.
    pub fn new(request: &Value, namespace: Option<&Value>) -> CelInput {
        let field = |k: &str| request.get(k).unwrap_or(&Value::Null);
        let (object, old) = (field("object"), field("oldObject"));
        let delete = field("operation").as_str() == Some("DELETE");
        // Gatekeeper's DELETE: `object` is null, the old object is `oldObject` and `anyObject`
        // (a review built from the old object alone has it as `object`).
        let any_object = match (delete, old.is_null()) {
            (true, false) => old,
            _ => object,
        };
        let rest: HashMap<String, cel::Value> = request
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "object" && *k != "oldObject")
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect();
        CelInput {
            object: if delete {
                cel::Value::Null
            } else {
                to_cel(object)
            },
            old_object: to_cel(old),
            request: cel::Value::Map(rest.into()),
            any_object: to_cel(any_object),
            namespace: namespace.map_or(cel::Value::Null, to_cel),
        }
    }
}

/// A failed evaluation, under failure policy `Fail`: its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CelError(pub String);

fn compile(what: &str, text: &str) -> Result<cel::Program, String> {
    cel::Program::compile(text).map_err(|e| {
        let first = e.to_string();
        format!(
            "{what}: {}",
            first.lines().next().unwrap_or("does not parse")
        )
    })
}

impl CelCode {
    /// Compile a `code[].source` of engine K8sNativeValidation.
    pub fn compile(source: &Value) -> Result<CelCode, String> {
        let list = |key: &str| {
            source
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let named = |key: &str| -> Result<Vec<Named>, String> {
            list(key)
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = text(v, "name").ok_or_else(|| format!("{key}[{i}] has no name"))?;
                    let expression = text(v, "expression")
                        .ok_or_else(|| format!("{key}[{i}] ({name}) has no expression"))?;
                    Ok(Named {
                        program: compile(&format!("{key}[{i}] ({name})"), &expression)?,
                        name,
                    })
                })
                .collect()
        };
        let variables = named("variables")?;
        let match_conditions = named("matchConditions")?;
        let validations = list("validations")
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let expr = text(v, "expression")
                    .ok_or_else(|| format!("validations[{i}] has no expression"))?;
                Ok(Validation {
                    expression: compile(&format!("validations[{i}]"), &expr)?,
                    text: expr,
                    message: text(v, "message"),
                    message_expression: text(v, "messageExpression")
                        .map(|m| compile(&format!("validations[{i}].messageExpression"), &m))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if validations.is_empty() {
            return Err("has no validations".into());
        }
        let failure_policy = match source.get("failurePolicy").and_then(Value::as_str) {
            None | Some("Fail") => FailurePolicy::Fail,
            Some("Ignore") => FailurePolicy::Ignore,
            Some(other) => return Err(format!("failurePolicy {other:?} is not Fail or Ignore")),
        };
        Ok(CelCode {
            variables,
            match_conditions,
            validations,
            failure_policy,
        })
    }

    /// The messages of the validations `input` fails; `Err` when an expression cannot be
    /// evaluated under failure policy `Fail` (under `Ignore`, nothing).
    pub fn eval(&self, input: &CelInput, parameters: &Value) -> Result<Vec<String>, CelError> {
        match (self.run(input, parameters), self.failure_policy) {
            (Err(_), FailurePolicy::Ignore) => Ok(Vec::new()),
            (result, _) => result,
        }
    }

    fn run(&self, input: &CelInput, parameters: &Value) -> Result<Vec<String>, CelError> {
        BASE.with(|base| {
            // Gatekeeper binds `variables.params` to `spec.parameters`, or null without any.
            let params = match parameters {
                Value::Object(m) if m.is_empty() => cel::Value::Null,
                other => to_cel(other),
            };
            let constraint: HashMap<String, cel::Value> = HashMap::from([(
                "spec".to_string(),
                cel::Value::Map(HashMap::from([("parameters".to_string(), params.clone())]).into()),
            )]);
            let mut ctx = base.new_inner_scope();
            ctx.add_variable_from_value("object", input.object.clone());
            ctx.add_variable_from_value("oldObject", input.old_object.clone());
            ctx.add_variable_from_value("request", input.request.clone());
            ctx.add_variable_from_value("params", constraint);
            ctx.add_variable_from_value("namespaceObject", input.namespace.clone());
            let mut vars: HashMap<String, cel::Value> = HashMap::from([
                ("params".to_string(), params),
                ("anyObject".to_string(), input.any_object.clone()),
            ]);
            ctx.add_variable_from_value("variables", vars.clone());
            // Kubernetes evaluates variables lazily: one that fails matters only where an
            // expression uses it. A failed one is left out, so a use of it fails (and follows the
            // failure policy) while `false && variables.broken` stays false.
            let mut failed: Vec<String> = Vec::new();
            for v in &self.variables {
                match v.program.execute(&ctx) {
                    Ok(value) => {
                        vars.insert(v.name.clone(), value);
                        ctx.add_variable_from_value("variables", vars.clone());
                    }
                    Err(e) => failed.push(format!("variable {}: {e}", v.name)),
                }
            }
            let explain = |e: String| match failed.is_empty() {
                true => CelError(e),
                false => CelError(format!("{e} ({})", failed.join("; "))),
            };
            for m in &self.match_conditions {
                match m.program.execute(&ctx) {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => return Ok(Vec::new()),
                    Ok(other) => {
                        return Err(CelError(format!(
                            "matchCondition {} is not a bool but {}",
                            m.name,
                            type_name(&other)
                        )));
                    }
                    Err(e) => return Err(explain(format!("matchCondition {}: {e}", m.name))),
                }
            }
            let mut out = Vec::new();
            for v in &self.validations {
                match v.expression.execute(&ctx) {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => out.push(message(v, &ctx)),
                    Ok(other) => {
                        return Err(CelError(format!(
                            "validation {:?} is not a bool but {}",
                            v.text.trim(),
                            type_name(&other)
                        )));
                    }
                    Err(e) => {
                        return Err(explain(format!(
                            "validation {:?} could not be evaluated: {e}",
                            v.text.trim()
                        )));
                    }
                }
            }
            Ok(out)
        })
    }
}

/// A failed validation's message, as Kubernetes chooses it: `messageExpression` when it
/// gives a non-empty string, else `message`, else "failed expression: EXPR".
fn message(v: &Validation, ctx: &cel::Context) -> String {
    if let Some(Ok(cel::Value::String(s))) = v.message_expression.as_ref().map(|m| m.execute(ctx))
        && !s.trim().is_empty()
    {
        return s.to_string();
    }
    match &v.message {
        Some(m) if !m.is_empty() => m.clone(),
        _ => format!("failed expression: {}", v.text.trim()),
    }
}

/// A CEL value's type, for errors (never the value itself: it may be a secret's).
fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Function(..) => "a function",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a double",
        cel::Value::String(_) => "a string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "a bool",
        cel::Value::Null => "null",
        _ => "another type",
    }
}

thread_local! {
    /// The functions (CEL's standard library and Kubernetes'), registered once per thread: each
    /// evaluation adds its variables in a child scope.
    static BASE: cel::Context<'static> = {
        let mut ctx = cel::Context::default();
        kube_cel::register_all(&mut ctx);
        // CEL's `dyn(x)`: a type assertion for the checker, the identity when evaluating.
        ctx.add_function("dyn", dyn_identity);
        ctx
    };
}

/// `dyn(x)`: x.
fn dyn_identity(cel::extractors::This(v): cel::extractors::This<cel::Value>) -> cel::ResolveResult {
    Ok(v)
}

/// JSON as CEL sees Kubernetes objects: integers are `int` (as in the API server), never `uint`.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => match n.as_u64() {
                Some(u) => cel::Value::UInt(u),
                None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, cel::Value> =
                m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(source: Value) -> CelCode {
        CelCode::compile(&source).unwrap()
    }

    fn request(object: Value) -> Value {
        json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "userInfo": {"username": "alice"}, "object": object, "oldObject": null})
    }

    fn pod(images: &[&str]) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}},
               "spec": {"containers": containers}})
    }

    /// The library's k8sallowedrepos CEL, as Gatekeeper ships it.
    fn allowed_repos() -> CelCode {
        code(json!({
            "variables": [
                {"name": "containers", "expression": "has(variables.anyObject.spec.containers) ? variables.anyObject.spec.containers : []"},
                {"name": "badContainers", "expression": "variables.containers.filter(container, !variables.params.repos.exists(repo, container.image.startsWith(repo)))"}
            ],
            "validations": [{
                "expression": "size(variables.badContainers) == 0",
                "messageExpression": "'container <' + variables.badContainers.map(c, c.name).join(', ') + '> has an invalid image repo, allowed repos are ' + variables.params.repos.join(', ')"
            }]
        }))
    }

    #[test]
    fn validations_variables_and_parameters() {
        let c = allowed_repos();
        let params = json!({"repos": ["registry.example.com/"]});
        let ok = pod(&["registry.example.com/web:1"]);
        let bad = pod(&["registry.example.com/web:1", "docker.io/nginx"]);
        let input = |o: &Value| CelInput::new(&request(o.clone()), None);
        assert_eq!(c.eval(&input(&ok), &params), Ok(vec![]));
        assert_eq!(
            c.eval(&input(&bad), &params),
            Ok(vec![
                "container <c1> has an invalid image repo, allowed repos are registry.example.com/"
                    .into()
            ])
        );
    }

    #[test]
    fn delete_judges_the_old_object_and_match_conditions_gate() {
        let c = code(json!({
            "matchConditions": [{"name": "not-exempt", "expression": "!has(variables.anyObject.metadata.labels) || !('exempt' in variables.anyObject.metadata.labels)"}],
            "validations": [{"expression": "variables.anyObject.metadata.name != 'forbidden'", "message": "forbidden name"},
                            {"expression": "object == null || request.operation != 'DELETE'"}]
        }));
        let named =
            |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}});
        let delete = json!({"operation": "DELETE", "object": null, "oldObject": named("forbidden", json!({}))});
        assert_eq!(
            c.eval(&CelInput::new(&delete, None), &json!({})),
            Ok(vec!["forbidden name".into()])
        );
        let exempt = json!({"operation": "CREATE", "object": named("forbidden", json!({"exempt": "yes"})), "oldObject": null});
        assert_eq!(
            c.eval(&CelInput::new(&exempt, None), &json!({})),
            Ok(vec![])
        );
        // No message: Kubernetes' wording.
        let c = code(
            json!({"validations": [{"expression": "object.metadata.name.startsWith('ok-')"}]}),
        );
        let r = request(named("bad", json!({})));
        assert_eq!(
            c.eval(&CelInput::new(&r, None), &json!({})),
            Ok(vec![
                "failed expression: object.metadata.name.startsWith('ok-')".into()
            ])
        );
    }

    #[test]
    fn failure_policy_and_kubernetes_functions() {
        let failing = |policy: Option<&str>| {
            let mut s = json!({"validations": [{"expression": "object.spec.missing.field == 1"}]});
            if let Some(p) = policy {
                s["failurePolicy"] = json!(p);
            }
            code(s)
        };
        let r = request(pod(&["nginx"]));
        let input = CelInput::new(&r, None);
        assert!(failing(None).eval(&input, &json!({})).is_err());
        assert!(failing(Some("Fail")).eval(&input, &json!({})).is_err());
        assert_eq!(failing(Some("Ignore")).eval(&input, &json!({})), Ok(vec![]));
        assert!(CelCode::compile(&json!({"validations": [{"expression": "1 +"}]})).is_err());
        assert!(
            CelCode::compile(
                &json!({"failurePolicy": "Maybe", "validations": [{"expression": "true"}]})
            )
            .is_err()
        );
        // Kubernetes' libraries (kube-cel): quantities, and the namespace object.
        let c = code(json!({"validations": [
            {"expression": "quantity('1Gi').isGreaterThan(quantity('500Mi'))", "message": "quantity"},
            {"expression": "namespaceObject != null && namespaceObject.metadata.labels.team == 'web'", "message": "namespace"}
        ]}));
        let ns = json!({"metadata": {"name": "shop", "labels": {"team": "web"}}});
        assert_eq!(
            c.eval(&CelInput::new(&r, Some(&ns)), &json!({})),
            Ok(vec![])
        );
        assert_eq!(
            c.eval(&CelInput::new(&r, None), &json!({})),
            Ok(vec!["namespace".into()])
        );
    }
}
