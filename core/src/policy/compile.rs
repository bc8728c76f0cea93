//! Compiling templates and conftest modules: regorus's interpreter, and its register VM where
//! a template compiles there.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regorus::Value as RValue;
use serde_json::Value;

use super::cel::CelCode;
use super::{Action, PolicyError, SourceRef, at, builtins, compat, matching};

/// Evaluation settings.
#[derive(Debug, Clone, Copy)]
pub struct EvalLimits {
    /// Wall-clock limit for one evaluation of one constraint.
    pub eval_timeout: Duration,
}

impl Default for EvalLimits {
    fn default() -> Self {
        EvalLimits {
            eval_timeout: Duration::from_secs(2),
        }
    }
}

/// A compiled ConstraintTemplate.
#[derive(Clone)]
pub struct Template {
    /// The constraint kind it defines (`spec.crd.spec.names.kind`).
    pub kind: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    /// The code that is evaluated: its Rego, or its CEL (`K8sNativeValidation`).
    code: Code,
    /// `spec.crd.spec.validation.openAPIV3Schema`, checked against constraint parameters.
    pub(super) schema: Option<Value>,
}

/// Which of a template's code is evaluated.
#[derive(Clone)]
enum Code {
    Rego(Box<RegoCode>),
    Cel(Arc<CelCode>),
}

/// A template's Rego, compiled.
#[derive(Clone)]
struct RegoCode {
    entry: String,
    engine: regorus::Engine,
    /// The same policy compiled for regorus's register VM; `None` when the VM cannot compile it
    /// (the interpreter is used).
    vm: Option<VmProgram>,
}

/// Which code of a template with both Rego and CEL is evaluated (`--template-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "flags", derive(clap::ValueEnum))]
pub enum TemplateCode {
    /// As Gatekeeper chooses: the CEL when the template has it, else the Rego.
    #[default]
    Auto,
    /// The Rego; a template with only CEL is refused.
    Rego,
    /// The CEL; a template with only Rego is refused.
    Cel,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// A conftest rule: its path (`data.main.deny`), its name as reported, its action.
pub(super) type ConftestRule = (String, String, Action);

/// conftest-style modules: `deny`/`warn`/`violation` rules on the raw object, in the packages
/// selected as conftest's `--namespace` selects them (`main` by default).
#[derive(Clone)]
pub(super) struct Conftest {
    engine: regorus::Engine,
    /// Engines that finished a review, ready for the next (a clone copies the interpreter's
    /// state: most of a small rule's cost), sharded by thread as [`VmProgram`]'s machines.
    idle: Arc<[std::sync::Mutex<Vec<regorus::Engine>>; SHARDS]>,
    pub(super) rules: Vec<ConftestRule>,
    /// Packages that define such rules but are not selected (for a warning).
    pub(super) skipped: Vec<String>,
}

impl Conftest {
    /// Evaluate every rule on `input`: each rule and its result.
    pub(super) fn eval(&self, input: RValue) -> Vec<(&ConftestRule, anyhow::Result<RValue>)> {
        let idle = &self.idle[shard()];
        let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut engine = pooled.unwrap_or_else(|| self.engine.clone());
        engine.set_input(input);
        let results: Vec<_> = self
            .rules
            .iter()
            .map(|r| (r, engine.eval_rule(r.0.clone())))
            .collect();
        // The review is not kept alive in the pool.
        engine.set_input(RValue::Undefined);
        idle.lock().unwrap_or_else(|e| e.into_inner()).push(engine);
        results
    }
}

/// Which packages' conftest rules run: conftest's `--namespace NS` (repeatable; `main` when none
/// is given) or `--all-namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConftestNamespaces {
    /// These packages (without the `data.` prefix).
    Only(Vec<String>),
    /// Every package.
    All,
}

impl Default for ConftestNamespaces {
    fn default() -> Self {
        ConftestNamespaces::Only(vec!["main".to_string()])
    }
}

impl ConftestNamespaces {
    fn selects(&self, package: &str) -> bool {
        match self {
            ConftestNamespaces::All => true,
            ConftestNamespaces::Only(list) => list.iter().any(|n| n == package),
        }
    }
}

fn new_engine(v0: bool, data: &RValue, limits: EvalLimits) -> Result<regorus::Engine, String> {
    let mut e = regorus::Engine::new();
    e.set_rego_v0(v0);
    e.set_strict_builtin_errors(false);
    builtins::register(&mut e, v0).map_err(|e| e.to_string())?;
    e.add_data(data.clone()).map_err(|err| err.to_string())?;
    e.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: limits.eval_timeout,
        check_interval: NonZeroU32::new(256).expect("non-zero"),
    });
    Ok(e)
}

pub(super) fn compile_template(
    source: &SourceRef,
    v: &Value,
    data: &RValue,
    limits: EvalLimits,
    use_vm: bool,
    compat: bool,
    choice: TemplateCode,
) -> Result<Template, PolicyError> {
    let kind = v
        .pointer("/spec/crd/spec/names/kind")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            at(
                source,
                "ConstraintTemplate",
                "spec.crd.spec.names.kind is missing",
            )
        })?
        .to_string();
    let what = format!("ConstraintTemplate {kind}");
    let targets = v
        .pointer("/spec/targets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ti = targets
        .iter()
        .position(|t| {
            t.get("target").and_then(Value::as_str) == Some("admission.k8s.gatekeeper.sh")
        })
        .unwrap_or(0);
    let target = targets
        .get(ti)
        .ok_or_else(|| at(source, &what, "spec.targets is empty"))?;
    let path = |rest: &[&str]| -> Vec<String> {
        ["spec", "targets", &ti.to_string()]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };
    // The legacy `rego` field wins over `code`'s Rego entry. `field` is where the Rego text is,
    // for error messages.
    let code = target
        .get("code")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let engine_at = |name: &str| {
        code.iter()
            .position(|c| c.get("engine").and_then(Value::as_str) == Some(name))
    };
    let rego_src = match target
        .get("rego")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
    {
        Some(r) => Some((
            r.to_string(),
            matching::strings(target.get("libs")),
            false,
            path(&[]),
        )),
        None => engine_at("Rego").map(|ci| {
            let src = code[ci].get("source").cloned().unwrap_or(Value::Null);
            (
                src.get("rego")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                matching::strings(src.get("libs")),
                src.get("version").and_then(Value::as_str) == Some("v1"),
                path(&["code", &ci.to_string(), "source"]),
            )
        }),
    };
    let cel_src = engine_at("K8sNativeValidation").map(|ci| {
        (
            code[ci].get("source").cloned().unwrap_or(Value::Null),
            path(&["code", &ci.to_string(), "source"]).join("."),
        )
    });
    let cel = |(src, field): &(Value, String)| {
        CelCode::compile(src, super::cel::Dialect::Gatekeeper)
            .map(|c| Code::Cel(Arc::new(c)))
            .map_err(|e| at(source, &what, format!("{field} (K8sNativeValidation): {e}")))
    };
    let rego = |(rego, libs, v1, field): &(String, Vec<String>, bool, Vec<String>)| {
        compile_rego(
            source,
            &kind,
            (rego, libs, *v1, field),
            data,
            limits,
            use_vm,
            compat,
        )
        .map(|r| Code::Rego(Box::new(r)))
    };
    let code = match (choice, &rego_src, &cel_src) {
        (_, None, None) => {
            return Err(at(
                source,
                &what,
                "has no code: neither Rego (spec.targets[].rego, code[].source.rego) nor CEL (code[] of engine K8sNativeValidation)",
            ));
        }
        (TemplateCode::Auto | TemplateCode::Cel, _, Some(c)) => cel(c)?,
        (TemplateCode::Auto | TemplateCode::Rego, Some(r), _) => rego(r)?,
        (TemplateCode::Rego, None, Some(_)) => {
            return Err(at(
                source,
                &what,
                "has only CEL (K8sNativeValidation) code, and --template-code rego evaluates only Rego",
            ));
        }
        (TemplateCode::Cel, Some(_), None) => {
            return Err(at(
                source,
                &what,
                "has only Rego code, and --template-code cel evaluates only CEL",
            ));
        }
    };
    Ok(Template {
        kind,
        source: source.clone(),
        code,
        schema: v
            .pointer("/spec/crd/spec/validation/openAPIV3Schema")
            .filter(|s| s.is_object())
            .cloned()
            .map(|mut s| {
                // legacySchema: Gatekeeper keeps fields the schema does not declare.
                if v.pointer("/spec/crd/spec/validation/legacySchema") == Some(&Value::Bool(true)) {
                    s["x-kubernetes-preserve-unknown-fields"] = Value::Bool(true);
                }
                s
            }),
    })
}

/// Whether a ConstraintTemplate has code that `choice` evaluates (its admission target's Rego,
/// legacy or in `code[]`, or its K8sNativeValidation CEL).
pub(super) fn has_code(v: &Value, choice: TemplateCode) -> bool {
    let targets = v
        .pointer("/spec/targets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let target = targets
        .iter()
        .find(|t| t.get("target").and_then(Value::as_str) == Some("admission.k8s.gatekeeper.sh"))
        .or(targets.first());
    let Some(target) = target else { return false };
    let engine = |name: &str| {
        target
            .get("code")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("engine").and_then(Value::as_str) == Some(name))
            })
    };
    let rego = target
        .get("rego")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.trim().is_empty())
        || engine("Rego");
    let cel = engine("K8sNativeValidation");
    match choice {
        TemplateCode::Auto => rego || cel,
        TemplateCode::Rego => rego,
        TemplateCode::Cel => cel,
    }
}

/// A template's Rego (and its libs), compiled for regorus (and its register VM).
fn compile_rego(
    source: &SourceRef,
    kind: &str,
    (rego, libs, v1, field): (&str, &[String], bool, &[String]),
    data: &RValue,
    limits: EvalLimits,
    use_vm: bool,
    compat: bool,
) -> Result<RegoCode, PolicyError> {
    let rego_err = |message: String| {
        let (message, at) = locate_rego_error(kind, field, &message);
        PolicyError::Rego {
            file: source.clone(),
            template: kind.to_string(),
            message,
            at,
        }
    };
    for (i, text) in std::iter::once(rego)
        .chain(libs.iter().map(String::as_str))
        .enumerate()
    {
        compat::check_limits(text).map_err(|e| rego_err(e.to_string()))?;
        // Refused as OPA refuses it: Gatekeeper would not install the template.
        if let Some((line, col)) = compat::unsafe_wildcard(text, !v1) {
            let file = match i {
                0 => kind.to_string(),
                n => format!("{kind}.lib{}", n - 1),
            };
            return Err(rego_err(format!(
                "--> {file}.rego:{line}:{col}\nerror: var _ is unsafe: OPA (and so Gatekeeper) refuses a `_` wildcard under `not`; write `count([1 | EXPR]) == 0`, or move EXPR into a helper rule and negate that"
            )));
        }
    }
    let mut engine = new_engine(!v1, data, limits).map_err(rego_err)?;
    let file = format!("{kind}.rego");
    let edit = |text: &str| match compat {
        true => compat::normalize(text, !v1),
        false => text.to_string(),
    };
    let package = engine
        .add_policy(file, edit(rego))
        .map_err(|e| rego_err(e.to_string()))?;
    for (i, lib) in libs.iter().enumerate() {
        engine
            .add_policy(format!("{kind}.lib{i}.rego"), edit(lib))
            .map_err(|e| rego_err(e.to_string()))?;
    }
    let entry = format!("{package}.violation");
    // Prepare once (regorus compiles lazily) so that every clone starts prepared.
    engine.set_input(RValue::new_object());
    if let Err(e) = engine.eval_rule(entry.clone()) {
        // Static errors surface at preparation; runtime errors on an empty input do not count.
        let msg = e.to_string();
        if ["is unsafe", "could not find function", "recursion"]
            .iter()
            .any(|m| msg.contains(m))
        {
            return Err(rego_err(msg));
        }
    }
    let vm = use_vm
        .then(|| VmProgram::compile(&engine, &entry, data, limits, !v1))
        .flatten();
    Ok(RegoCode { entry, engine, vm })
}

/// regorus's message (`--> Kind.rego:6:1`, a source excerpt, `error: expecting expression`) as
/// one line that names the field (`line 6, column 1 of spec.targets[0].rego: expecting
/// expression`), and where that is, for the bundle to turn into a line of the template's file.
fn locate_rego_error(kind: &str, field: &[String], raw: &str) -> (String, Option<super::RegoAt>) {
    static AT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"--> (\S+?)\.rego:(\d+):(\d+)").expect("valid regex")
    });
    let Some(c) = AT.captures(raw) else {
        return (raw.trim().to_string(), None);
    };
    let reason = raw
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map(str::trim)
        .unwrap_or_else(|| raw.lines().last().unwrap_or(raw).trim());
    let name = &c[1];
    let mut field = field.to_vec();
    if name == kind {
        field.push("rego".into());
    } else if let Some(i) = name.strip_prefix(&format!("{kind}.lib")) {
        field.extend(["libs".to_string(), i.to_string()]);
    } else {
        return (raw.trim().to_string(), None);
    }
    let (line, column) = (c[2].parse().unwrap_or(0), c[3].parse().unwrap_or(0));
    let shown: Vec<String> = field
        .iter()
        .map(|p| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                format!("[{p}]")
            } else {
                format!(".{p}")
            }
        })
        .collect();
    let shown = shown.concat();
    (
        format!(
            "line {line}, column {column} of {}: {reason}",
            shown.trim_start_matches('.')
        ),
        Some(super::RegoAt {
            field,
            line,
            column,
        }),
    )
}

/// A template compiled for regorus's register VM (RVM). sealgate's extensions (the OPA-compatible
/// `sprintf`, `re_match`, `sealgate.*`) are registered as host-await builtins: the VM suspends at
/// each call and [`builtins::call`] answers, so both engines run the same extension code.
#[derive(Clone)]
struct VmProgram {
    policy: regorus::CompiledPolicy,
    program: Arc<regorus::rvm::Program>,
    data: RValue,
    timer: regorus::utils::limits::ExecutionTimerConfig,
    /// Machines that finished an evaluation, ready to run the program again: setting one up
    /// (program, data, registers) costs about what a small policy's evaluation does. Sharded by
    /// thread, so the workers judging one stream do not queue on one lock per evaluation.
    idle: Arc<[std::sync::Mutex<Vec<regorus::rvm::vm::RegoVM>>; SHARDS]>,
}

/// Shards of a [`VmProgram`]'s idle machines.
const SHARDS: usize = 16;

/// This thread's shard: threads take them in turn.
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl VmProgram {
    fn compile(
        engine: &regorus::Engine,
        entry: &str,
        data: &RValue,
        limits: EvalLimits,
        v0: bool,
    ) -> Option<VmProgram> {
        let host: Vec<(&str, usize)> = builtins::extensions(v0)
            .map(|(name, n, _)| (*name, *n as usize))
            .collect();
        let policy = engine.clone().compile_with_entrypoint(&entry.into()).ok()?;
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy_with_host_await(
                &policy,
                &[entry],
                &host,
            )
            .ok()?;
        Some(VmProgram {
            policy,
            program,
            data: data.clone(),
            timer: regorus::utils::limits::ExecutionTimerConfig {
                limit: limits.eval_timeout,
                check_interval: NonZeroU32::new(256).expect("non-zero"),
            },
            idle: Arc::new(std::array::from_fn(|_| Default::default())),
        })
    }

    fn eval(&self, entry: &str, input: RValue) -> anyhow::Result<RValue> {
        let idle = &self.idle[shard()];
        let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => self.new_vm()?,
        };
        vm.set_input(input);
        let mut result = vm.execute_entry_point_by_name(entry)?;
        while let Some(name) = vm.get_host_await_identifier() {
            let name = name.as_string()?.to_string();
            let args = vm
                .get_host_await_argument()
                .cloned()
                .unwrap_or(RValue::Undefined);
            let answer = builtins::call(&name, &args);
            result = vm.resume(Some(answer))?;
        }
        // Only a machine that finished is reused (one that failed is dropped); the next run
        // starts from a clean state. The review is not kept alive in between.
        vm.set_input(RValue::Undefined);
        idle.lock().unwrap_or_else(|e| e.into_inner()).push(vm);
        Ok(result)
    }

    fn new_vm(&self) -> anyhow::Result<regorus::rvm::vm::RegoVM> {
        use regorus::rvm::vm::{ExecutionMode, RegoVM};
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone())?;
        vm.set_strict_builtin_errors(false);
        // No instruction budget (its default, 25,000, stops ordinary policies): the time limit,
        // as for the interpreter, bounds evaluation.
        vm.set_max_instructions(usize::MAX);
        vm.set_execution_timer_config(Some(self.timer));
        vm.set_execution_mode(ExecutionMode::Suspendable);
        Ok(vm)
    }
}

impl Template {
    /// Evaluate the violation rule: on the VM when it compiled there and `use_vm`, else on the
    /// interpreter.
    pub(super) fn eval(&self, input: RValue, use_vm: bool) -> anyhow::Result<RValue> {
        let Code::Rego(r) = &self.code else {
            anyhow::bail!("template {} is evaluated as CEL", self.kind)
        };
        match &r.vm {
            Some(vm) if use_vm => vm.eval(&r.entry, input),
            _ => {
                let mut engine = r.engine.clone();
                engine.set_input(input);
                engine.eval_rule(r.entry.clone())
            }
        }
    }

    /// The template's CEL, when that is what is evaluated.
    pub(super) fn cel(&self) -> Option<&CelCode> {
        match &self.code {
            Code::Cel(c) => Some(c),
            Code::Rego(_) => None,
        }
    }

    /// Whether evaluation can run on the register VM.
    pub fn on_vm(&self) -> bool {
        matches!(&self.code, Code::Rego(r) if r.vm.is_some())
    }

    /// Whether the template is evaluated as CEL.
    pub fn is_cel(&self) -> bool {
        matches!(self.code, Code::Cel(_))
    }
}

/// conftest rule heads: `deny`, `warn`, `violation`, optionally with a `_suffix`.
fn conftest_rules(text: &str) -> Vec<(String, Action)> {
    let re = regex::Regex::new(r"(?m)^\s*((deny|warn|violation)(_[A-Za-z0-9_]+)?)\b")
        .expect("valid regex");
    let mut rules: Vec<(String, Action)> = Vec::new();
    for c in re.captures_iter(text) {
        let name = c[1].to_string();
        let action = if &c[2] == "warn" {
            Action::Warn
        } else {
            Action::Deny
        };
        if !rules.iter().any(|(n, _)| *n == name) {
            rules.push((name, action));
        }
    }
    rules
}

pub(super) fn compile_conftest(
    modules: &[(String, String)],
    namespaces: &ConftestNamespaces,
    data: &RValue,
    limits: EvalLimits,
) -> Result<Option<Conftest>, Vec<PolicyError>> {
    if modules.is_empty() {
        return Ok(None);
    }
    // v0 modules are accepted too (below), so the deprecated built-ins are registered.
    let mut engine = new_engine(true, data, limits).map_err(|e| vec![PolicyError::Invalid(e)])?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut skipped = Vec::new();
    for (source, text) in modules {
        if let Err(e) = compat::check_limits(text) {
            errors.push(PolicyError::Invalid(format!("{source}: {e}")));
            continue;
        }
        if let Some((line, col)) =
            compat::unsafe_wildcard(text, false).or_else(|| compat::unsafe_wildcard(text, true))
        {
            errors.push(PolicyError::Invalid(format!(
                "{source}:{line}:{col}: var _ is unsafe: OPA (and so conftest) refuses a `_` wildcard under `not`; write `count([1 | EXPR]) == 0`, or move EXPR into a helper rule and negate that"
            )));
            continue;
        }
        // conftest reads Rego v1 by default (v0.60+); older modules are v0: accept both.
        engine.set_rego_v0(false);
        let package = engine
            .add_policy(source.clone(), compat::normalize(text, false))
            .or_else(|v1_err| {
                engine.set_rego_v0(true);
                engine
                    .add_policy(source.clone(), compat::normalize(text, true))
                    .map_err(|_| v1_err)
            });
        match package {
            Ok(p) => {
                let found = conftest_rules(text);
                let ns = p.strip_prefix("data.").unwrap_or(&p).to_string();
                if found.is_empty() {
                    // A helper package.
                } else if namespaces.selects(&ns) {
                    for (rule, action) in found {
                        // Reported as conftest does: the rule, in its namespace unless `main`.
                        let name = if ns == "main" {
                            rule.clone()
                        } else {
                            format!("{ns}.{rule}")
                        };
                        rules.push((format!("{p}.{rule}"), name, action));
                    }
                } else {
                    skipped.push(ns);
                }
            }
            Err(e) => errors.push(PolicyError::Invalid(format!("{source}: Rego error: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    rules.sort();
    rules.dedup_by(|a, b| a.0 == b.0);
    skipped.sort();
    skipped.dedup();
    // Prepared once here (regorus analyzes and schedules the modules on a first evaluation, and
    // a clone of a prepared engine is prepared), so each review's clone does not analyze them
    // again: that was most of a conftest rule's cost.
    if let Some((path, _, _)) = rules.first() {
        let _ = engine.eval_rule(path.clone());
    }
    Ok(Some(Conftest {
        engine,
        idle: Arc::new(std::array::from_fn(|_| Default::default())),
        rules,
        skipped,
    }))
}
