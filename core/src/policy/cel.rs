//! Gatekeeper's CEL engine for ConstraintTemplates (`code[].engine: K8sNativeValidation`), as
//! `pkg/drivers/k8scel` evaluates it: a ValidatingAdmissionPolicy's `variables`,
//! `matchConditions` and `validations` over `object`, `oldObject`, `request`, `params` (the
//! constraint) and `namespaceObject`, with Gatekeeper's two variables `variables.params` (the
//! constraint's `spec.parameters`) and `variables.anyObject` (the object, or the old one for a
//! DELETE). The CEL is the `cel` crate's, with Kubernetes' libraries from `kube-cel`.
//!
//! The same code evaluates Kubernetes' own ValidatingAdmissionPolicies ([`super::vap`]): there
//! `params` is the binding's parameter object and there are no Gatekeeper variables
//! ([`Dialect`]), and `auditAnnotations` are evaluated too.
//!
//! An expression that fails to evaluate follows `failurePolicy` (Gatekeeper's default: `Fail`,
//! a violation saying why; `Ignore`, nothing). A validation that is false is a violation with its
//! `messageExpression`'s result, else its `message`, else the expression, as Kubernetes words it.
//! Errors never quote a value (the `cel` crate's own messages do): a value may be a secret's.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::cel_cost::{self, Estimator, Extent};

/// What to do when an expression cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A violation saying why (Gatekeeper's default).
    Fail,
    /// No violation.
    Ignore,
}

/// Whose CEL it is: the variables an expression sees differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A ConstraintTemplate's: `params` is the constraint, plus `variables.params` and
    /// `variables.anyObject`.
    Gatekeeper,
    /// A ValidatingAdmissionPolicy's: `params` is the parameter object (or null).
    Kubernetes,
}

struct Named {
    name: String,
    /// The expression, for errors.
    text: String,
    program: cel::Program,
}

struct Validation {
    expression: cel::Program,
    text: String,
    message: Option<String>,
    message_expression: Option<cel::Program>,
}

/// A template's (or a ValidatingAdmissionPolicy's) compiled CEL.
pub struct CelCode {
    dialect: Dialect,
    variables: Vec<Named>,
    match_conditions: Vec<Named>,
    validations: Vec<Validation>,
    audit_annotations: Vec<Named>,
    /// What to do when an expression cannot be evaluated.
    pub failure_policy: FailurePolicy,
}

/// What one validation (or audit annotation) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The validation is false: its message.
    Deny(String),
    /// It could not be evaluated: why (under failure policy `Fail`; `Ignore` drops it).
    Error(String),
}

/// What a ValidatingAdmissionPolicy's CEL gave for one review and parameter object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// One per failed validation or error, in order.
    pub decisions: Vec<Decision>,
    /// `auditAnnotations` with a value: (key, value).
    pub audit_annotations: Vec<(String, String)>,
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
    /// The largest collection and string in it, for the cost bound.
    extent: Extent,
}

impl CelInput {
    /// From the AdmissionRequest (`object`, `oldObject`, `operation`, `userInfo`, …) and the
    /// request's Namespace object, when its labels are known.
    pub fn new(request: &Value, namespace: Option<&Value>) -> CelInput {
        CelInput::with_request_fields(request, namespace, &serde_json::Map::new())
    }

    /// [`CelInput::new`], with `fields` set in `request` (a ValidatingAdmissionPolicy's
    /// `request.resource`, and the operation a bare object is judged as).
    pub fn with_request_fields(
        request: &Value,
        namespace: Option<&Value>,
        fields: &serde_json::Map<String, Value>,
    ) -> CelInput {
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
            .filter(|(k, _)| *k != "object" && *k != "oldObject" && !fields.contains_key(*k))
            .chain(fields)
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect();
        let mut input = CelInput {
            object: if delete {
                cel::Value::Null
            } else {
                to_cel(object)
            },
            old_object: to_cel(old),
            request: cel::Value::Map(rest.into()),
            any_object: to_cel(any_object),
            namespace: namespace.map_or(cel::Value::Null, to_cel),
            extent: Extent::default(),
        };
        input.extent = Extent::of([
            &input.object,
            &input.old_object,
            &input.request,
            &input.namespace,
        ]);
        input
    }
}

/// A failed evaluation, under failure policy `Fail`: its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CelError(pub String);

fn compile(what: &str, text: &str) -> Result<cel::Program, String> {
    let program = cel::Program::compile(text).map_err(|e| {
        let first = e.to_string();
        format!(
            "{what}: {}",
            first.lines().next().unwrap_or("does not parse")
        )
    })?;
    cel_cost::check(program.expression()).map_err(|e| format!("{what}: {e}"))?;
    Ok(program)
}

impl CelCode {
    /// Compile a `code[].source` of engine K8sNativeValidation, or a ValidatingAdmissionPolicy's
    /// `spec` ([`Dialect::Kubernetes`]: `auditAnnotations` too).
    pub fn compile(source: &Value, dialect: Dialect) -> Result<CelCode, String> {
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
                        text: expression.trim().to_string(),
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
        let audit_annotations = match dialect {
            Dialect::Gatekeeper => Vec::new(),
            Dialect::Kubernetes => list("auditAnnotations")
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let key = text(v, "key")
                        .ok_or_else(|| format!("auditAnnotations[{i}] has no key"))?;
                    let expr = text(v, "valueExpression").ok_or_else(|| {
                        format!("auditAnnotations[{i}] ({key}) has no valueExpression")
                    })?;
                    Ok(Named {
                        program: compile(
                            &format!("auditAnnotations[{i}] ({key}).valueExpression"),
                            &expr,
                        )?,
                        name: key,
                        text: expr.trim().to_string(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
        };
        if validations.is_empty() && audit_annotations.is_empty() {
            return Err(match dialect {
                Dialect::Gatekeeper => "has no validations".into(),
                Dialect::Kubernetes => "has neither validations nor auditAnnotations".into(),
            });
        }
        let failure_policy = match source.get("failurePolicy").and_then(Value::as_str) {
            None | Some("Fail") => FailurePolicy::Fail,
            Some("Ignore") => FailurePolicy::Ignore,
            Some(other) => return Err(format!("failurePolicy {other:?} is not Fail or Ignore")),
        };
        Ok(CelCode {
            dialect,
            variables,
            match_conditions,
            validations,
            audit_annotations,
            failure_policy,
        })
    }

    /// Gatekeeper's: the messages of the validations `input` fails, with the constraint's
    /// `spec.parameters`; `Err` when an expression cannot be evaluated under failure policy
    /// `Fail` (under `Ignore`, nothing).
    pub fn eval(&self, input: &CelInput, parameters: &Value) -> Result<Vec<String>, CelError> {
        // Gatekeeper binds `variables.params` to `spec.parameters`, or null without any.
        let params = match parameters {
            Value::Object(m) if m.is_empty() => cel::Value::Null,
            other => to_cel(other),
        };
        let constraint: HashMap<String, cel::Value> = HashMap::from([(
            "spec".to_string(),
            cel::Value::Map(HashMap::from([("parameters".to_string(), params.clone())]).into()),
        )]);
        let seed = HashMap::from([
            ("params".to_string(), params),
            ("anyObject".to_string(), input.any_object.clone()),
        ]);
        let ignore = self.failure_policy == FailurePolicy::Ignore;
        let decisions = match self.run(input, constraint.into(), seed) {
            Ok(d) => d.decisions,
            Err(_) if ignore => return Ok(Vec::new()),
            Err(e) => return Err(CelError(e)),
        };
        let mut out = Vec::new();
        for d in decisions {
            match d {
                Decision::Deny(m) => out.push(m),
                Decision::Error(_) if ignore => {}
                Decision::Error(e) => return Err(CelError(e)),
            }
        }
        Ok(out)
    }

    /// A ValidatingAdmissionPolicy's decisions for one parameter object (`None`: `params` is
    /// null), as Kubernetes' validator makes them: a failed matchCondition decides nothing, one
    /// that cannot be evaluated is one error; then one decision per failed validation, and the
    /// audit annotations. Errors are dropped under failure policy `Ignore`.
    pub fn decide(&self, input: &CelInput, param: Option<&Value>) -> Decisions {
        debug_assert_eq!(self.dialect, Dialect::Kubernetes);
        let params = param.map_or(cel::Value::Null, to_cel);
        let mut d = self
            .run(input, params, HashMap::new())
            .unwrap_or_else(|e| Decisions {
                decisions: vec![Decision::Error(e)],
                audit_annotations: Vec::new(),
            });
        if self.failure_policy == FailurePolicy::Ignore {
            d.decisions.retain(|d| matches!(d, Decision::Deny(_)));
        }
        d
    }

    /// Evaluate with `params` bound and `variables` seeded; `Err` when the matchConditions
    /// cannot be decided.
    fn run(
        &self,
        input: &CelInput,
        params: cel::Value,
        mut vars: HashMap<String, cel::Value>,
    ) -> Result<Decisions, String> {
        let cost = self.cost_bound(input, &params, &vars);
        if cost > cel_cost::BUDGET {
            return Err(format!(
                "operation cancelled: evaluating it on this object could cost {cost}, over the budget of {} (Kubernetes' runtime CEL cost budget): simplify nested comprehensions, or bound the object's lists",
                cel_cost::BUDGET
            ));
        }
        BASE.with(|base| {
            let mut ctx = base.new_inner_scope();
            ctx.add_variable_from_value("object", input.object.clone());
            ctx.add_variable_from_value("oldObject", input.old_object.clone());
            ctx.add_variable_from_value("request", input.request.clone());
            ctx.add_variable_from_value("params", params);
            ctx.add_variable_from_value("namespaceObject", input.namespace.clone());
            ctx.add_variable_from_value("variables", vars.clone());
            // Kubernetes evaluates variables lazily: one that fails matters only where an
            // expression uses it. A failed one is left out, so a use of it fails (and follows the
            // failure policy) while `false && variables.broken` stays false.
            let mut failed: Vec<(String, String)> = Vec::new();
            // Kubernetes' wording for a use of a variable that failed: the variable's error.
            let why = |failed: &[(String, String)], e: &cel::ExecutionError| match e {
                cel::ExecutionError::NoSuchKey(k) => failed
                    .iter()
                    .find(|(name, _)| name == k.as_str())
                    .map(|(name, error)| {
                        format!("composited variable \"{name}\" fails to evaluate: {error}")
                    }),
                _ => None,
            }
            .unwrap_or_else(|| describe(e));
            // The `cel` crate converts a bound value deeply, so `variables` is bound again only
            // before an expression that may read it (a variable naming `variables`, and after
            // the last variable), not after every variable.
            let mut bound = true;
            for v in &self.variables {
                if !bound && v.text.contains("variables") {
                    ctx.add_variable_from_value("variables", vars.clone());
                    bound = true;
                }
                match v.program.execute(&ctx) {
                    Ok(value) => {
                        vars.insert(v.name.clone(), value);
                        bound = false;
                    }
                    Err(e) => {
                        let error = why(&failed, &e);
                        failed.push((v.name.clone(), error));
                    }
                }
            }
            if !bound {
                ctx.add_variable_from_value("variables", vars);
            }
            let explain = |what: &str, e: &cel::ExecutionError| {
                format!("expression '{what}' resulted in error: {}", why(&failed, e))
            };
            // Any false condition: no match, even beside errors; else errors fail the match.
            let mut errors = Vec::new();
            for m in &self.match_conditions {
                match m.program.execute(&ctx) {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => return Ok(Decisions::default()),
                    Ok(other) => errors.push(format!(
                        "matchCondition {} is not a bool but {}",
                        m.name,
                        type_name(&other)
                    )),
                    Err(e) => errors.push(explain(&m.text, &e)),
                }
            }
            match errors.len() {
                0 => {}
                1 => return Err(errors.remove(0)),
                _ => return Err(format!("[{}]", errors.join(", "))),
            }
            let mut out = Decisions::default();
            for v in &self.validations {
                let text = v.text.trim();
                match v.expression.execute(&ctx) {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => {
                        out.decisions.push(Decision::Deny(message(v, &ctx)));
                    }
                    Ok(other) => out.decisions.push(Decision::Error(format!(
                        "expression '{text}' is not a bool but {}",
                        type_name(&other)
                    ))),
                    Err(e) => out.decisions.push(Decision::Error(explain(text, &e))),
                }
            }
            for a in &self.audit_annotations {
                match a.program.execute(&ctx) {
                    Ok(cel::Value::String(s)) if !s.trim().is_empty() => {
                        // Kubernetes keeps the first 10 KiB of a value.
                        let mut value = s.trim().to_string();
                        if value.len() > 10 * 1024 {
                            let mut cut = 10 * 1024;
                            while !value.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            value.truncate(cut);
                        }
                        out.audit_annotations.push((a.name.clone(), value));
                    }
                    Ok(cel::Value::String(_) | cel::Value::Null) => {}
                    Ok(other) => out.decisions.push(Decision::Error(format!(
                        "valueExpression of audit annotation {} resulted in unsupported return type: {}. Return type must be either string or null.",
                        a.name,
                        type_name(&other)
                    ))),
                    Err(e) => out.decisions.push(Decision::Error(explain(&a.text, &e))),
                }
            }
            Ok(out)
        })
    }
}

impl CelCode {
    /// An upper bound on what evaluating every expression on `input` costs ([`cel_cost`]).
    fn cost_bound(
        &self,
        input: &CelInput,
        params: &cel::Value,
        seeded: &HashMap<String, cel::Value>,
    ) -> u64 {
        let roots = HashMap::from([
            ("object", &input.object),
            ("oldObject", &input.old_object),
            ("request", &input.request),
            ("params", params),
            ("namespaceObject", &input.namespace),
        ]);
        let mut e = Estimator::new(roots, input.extent);
        for (name, value) in seeded {
            e.seed(name, value);
        }
        for v in &self.variables {
            e.variable(&v.name, v.program.expression());
        }
        for m in self.match_conditions.iter().chain(&self.audit_annotations) {
            e.add(m.program.expression());
        }
        for v in &self.validations {
            e.add(v.expression.expression());
            if let Some(m) = &v.message_expression {
                e.add(m.expression());
            }
        }
        e.total
    }
}

/// A CEL error as cel-go words the common ones, without the values the `cel` crate's own
/// messages quote (a value may be a secret's).
fn describe(e: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match e {
        E::NoSuchKey(k) => format!("no such key: {k}"),
        E::UndeclaredReference(r) => format!("undeclared reference to '{r}'"),
        E::NoSuchOverload
        | E::ValuesNotComparable(..)
        | E::UnsupportedBinaryOperator(..)
        | E::UnsupportedUnaryOperator(..) => "no such overload".into(),
        E::InvalidArgumentCount { expected, actual } => {
            format!("invalid argument count: expected {expected}, got {actual}")
        }
        E::UnexpectedType { got, want } => format!("unexpected type: got {got}, want {want}"),
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "modulus by zero".into(),
        E::Overflow(op, ..) => format!("integer overflow in '{op}'"),
        E::IndexOutOfBounds(_) => "index out of range".into(),
        E::FunctionError { function, .. } => format!("function {function} failed"),
        E::NotSupportedAsMethod { method, target } => {
            format!("no such overload: {}.{method}()", type_name(target))
        }
        E::UnsupportedTargetType { target } => {
            format!("unsupported target type: {}", type_name(target))
        }
        E::UnsupportedKeyType(v) | E::UnsupportedMapIndex(v) | E::UnsupportedListIndex(v) => {
            format!("unsupported index type: {}", type_name(v))
        }
        E::UnsupportedIndex(i, v) => format!("cannot index {} with {}", type_name(v), type_name(i)),
        E::MissingArgumentOrTarget => "missing argument or target".into(),
        _ => "evaluation error".into(),
    }
}

/// A failed validation's message, as Kubernetes chooses it: `messageExpression` when it gives
/// a non-empty single-line string of at most 5 KiB (trimmed), else `message`, else "failed
/// expression: EXPR".
fn message(v: &Validation, ctx: &cel::Context) -> String {
    if let Some(Ok(cel::Value::String(s))) = v.message_expression.as_ref().map(|m| m.execute(ctx)) {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 5 * 1024 && !s.contains('\n') {
            return s.to_string();
        }
    }
    match v.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
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
        CelCode::compile(&source, Dialect::Gatekeeper).unwrap()
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
        assert!(
            CelCode::compile(
                &json!({"validations": [{"expression": "1 +"}]}),
                Dialect::Gatekeeper
            )
            .is_err()
        );
        assert!(
            CelCode::compile(
                &json!({"failurePolicy": "Maybe", "validations": [{"expression": "true"}]}),
                Dialect::Gatekeeper
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
