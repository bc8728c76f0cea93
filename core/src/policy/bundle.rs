//! Loading a bundle: ConstraintTemplates, Constraints and conftest modules from the built-in
//! policies, files and directories, plus the inventory, compiled into a [`Bundle`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use regorus::Value as RValue;
use serde_json::{Value, json};

use super::compile::{
    ConftestNamespaces, EvalLimits, Template, TemplateCode, compile_conftest, compile_template,
};
use super::expansion::ExpansionTemplate;
use super::matching::{Match, ObjectInfo};
use super::scope::{self, KindScopes};
use super::{
    Bundle, Enforcement, NamespaceLabels, ObjectRef, PolicyError, Severity, SourceRef, at,
    builtin_bundle, schema,
};

/// A Constraint: an instance of a template with its match, parameters and enforcement.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// The template kind it instantiates (`K8sRequiredLabels`).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    /// `spec.match`.
    pub matcher: Match,
    /// `spec.parameters`, as the template's `input.parameters`.
    pub parameters: RValue,
    /// `spec.enforcementAction` (and `scopedEnforcementActions`).
    pub enforcement: Enforcement,
    /// The severity its annotations declare ([`Severity::ANNOTATIONS`]), for reports.
    pub severity: Option<Severity>,
}

/// A Constraint with fields its kind's schema does not declare, or values of the wrong type: it
/// is not loaded. `sealgate lint` reports it as a finding on its file (the cluster would refuse to
/// apply it); everywhere else it makes the bundle unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConstraint {
    /// Where it was loaded from.
    pub source: SourceRef,
    /// `apiVersion` (`constraints.gatekeeper.sh/v1beta1`, or another served version).
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Each problem, naming the field (`spec.match.namespace: unknown field …`).
    pub problems: Vec<String>,
}

impl InvalidConstraint {
    fn error(&self) -> PolicyError {
        at(
            &self.source,
            format!("{} {}", self.kind, self.name),
            self.problems.join("; "),
        )
    }
}

/// Where a bundle comes from: the one description `sealgate lint`, the webhook and audit all
/// build from, so CI and admission evaluate the same policies the same way. Only the inventory
/// differs: files in CI (`--inventory`), the watched cluster at admission and in audit.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The built-in policies (`policies/`).
    pub builtin: bool,
    /// Policy files and directories.
    pub policies: Vec<std::path::PathBuf>,
    /// `--namespaced-kinds` / `--cluster-kinds` lists.
    pub namespaced_kinds: Vec<String>,
    /// Kinds to treat as cluster-scoped (`Kind` or `group/Kind`).
    pub cluster_kinds: Vec<String>,
    /// Per-evaluation limits.
    pub limits: EvalLimits,
    /// Evaluate on regorus's register VM (else its interpreter).
    pub use_vm: bool,
    /// Which code of a template with both Rego and CEL is evaluated.
    pub template_code: TemplateCode,
    /// Evaluate Kubernetes ValidatingAdmissionPolicies among the policies (lint; at admission and
    /// in audit the API server does).
    pub admission_policies: bool,
    /// Which packages' conftest rules run (`--namespace`, `--all-namespaces`).
    pub conftest_namespaces: ConftestNamespaces,
    /// Policy documents found among the linted inputs, as gator test takes them: (source, YAML
    /// or JSON text); only their templates, constraints and sync configuration are read.
    pub from_inputs: Vec<(String, String)>,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            builtin: true,
            policies: Vec::new(),
            namespaced_kinds: Vec::new(),
            cluster_kinds: Vec::new(),
            limits: EvalLimits::default(),
            use_vm: true,
            template_code: TemplateCode::Auto,
            admission_policies: false,
            conftest_namespaces: ConftestNamespaces::default(),
            from_inputs: Vec::new(),
        }
    }
}

impl Sources {
    /// Compile the bundle with `inventory` as `data.inventory` (and Namespace labels).
    fn builder(&self, inventory: impl IntoIterator<Item = Value>) -> BundleBuilder {
        let mut b = BundleBuilder::new(self.limits);
        b.use_vm(self.use_vm);
        b.template_code(self.template_code);
        b.admission_policies(self.admission_policies);
        b.conftest_namespaces(self.conftest_namespaces.clone());
        if self.builtin {
            b.add_builtin();
        }
        for p in &self.policies {
            b.add_path(p);
        }
        for (source, text) in &self.from_inputs {
            b.add_text(source, text);
        }
        for list in &self.namespaced_kinds {
            b.declare_kinds(list, scope::Scope::Namespaced);
        }
        for list in &self.cluster_kinds {
            b.declare_kinds(list, scope::Scope::Cluster);
        }
        b.add_inventory(inventory);
        b
    }

    /// The bundle, refusing it if anything is wrong (the webhook and audit: fail closed).
    pub fn build(
        &self,
        inventory: impl IntoIterator<Item = Value>,
    ) -> Result<Bundle, BundleErrors> {
        self.builder(inventory).build()
    }

    /// The bundle without the Constraints that do not fit their kind's schema, which
    /// [`Bundle::invalid_constraints`] lists (`sealgate lint` reports them as findings).
    pub fn build_reporting(
        &self,
        inventory: impl IntoIterator<Item = Value>,
    ) -> Result<Bundle, BundleErrors> {
        self.builder(inventory).build_reporting()
    }
}

/// Everything wrong with a bundle, each problem with its file and line: every one is reported,
/// not only the first. One rendering for lint, the webhook's reloads and logs, and audit.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleErrors(pub Vec<PolicyError>);

impl std::fmt::Display for BundleErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the policy bundle has {} problem(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BundleErrors {}

impl std::ops::Deref for BundleErrors {
    type Target = [PolicyError];
    fn deref(&self) -> &[PolicyError] {
        &self.0
    }
}

/// A kind Gatekeeper replicates into `data.inventory`: `Config` `spec.sync.syncOnly[]` and
/// `SyncSet` `spec.gvks[]` entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncKind {
    /// API group (empty for the core group).
    pub group: String,
    /// API version (empty: any).
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl SyncKind {
    /// `apps/v1`, `v1`.
    pub fn api_version(&self) -> String {
        match self.group.as_str() {
            "" => self.version.clone(),
            g => format!("{g}/{}", self.version),
        }
    }
}

/// The kinds a Gatekeeper `Config` (`config.gatekeeper.sh`) or `SyncSet`
/// (`syncset.gatekeeper.sh`) document replicates; `None` for other documents.
fn sync_config(doc: &Value) -> Option<Vec<SyncKind>> {
    let api = doc.get("apiVersion").and_then(Value::as_str)?;
    let kind = doc.get("kind").and_then(Value::as_str)?;
    let list = match (api.split('/').next()?, kind) {
        ("config.gatekeeper.sh", "Config") => doc.pointer("/spec/sync/syncOnly"),
        ("syncset.gatekeeper.sh", "SyncSet") => doc.pointer("/spec/gvks"),
        _ => return None,
    };
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| !s(e, "kind").is_empty() && !s(e, "version").is_empty())
            .map(|e| SyncKind {
                group: s(e, "group"),
                version: s(e, "version"),
                kind: s(e, "kind"),
            })
            .collect(),
    )
}

/// The API groups of Gatekeeper's policy documents ([`BundleBuilder::add_text`] takes them):
/// ConstraintTemplates, Constraints and ExpansionTemplates.
pub const POLICY_GROUPS: [&str; 3] = [
    "templates.gatekeeper.sh",
    "constraints.gatekeeper.sh",
    "expansion.gatekeeper.sh",
];

/// Collects policy sources, then compiles them into a [`Bundle`].
#[derive(Default)]
pub struct BundleBuilder {
    templates: Vec<(SourceRef, Value)>,
    constraints: Vec<(SourceRef, Value)>,
    expansions: Vec<(SourceRef, Value)>,
    /// ValidatingAdmissionPolicies and their bindings (kept only with `admission_policies`).
    admission: Vec<(SourceRef, Value)>,
    /// Evaluate ValidatingAdmissionPolicies (lint, `policy verify`); the webhook and audit leave
    /// them to the API server.
    admission_policies: bool,
    modules: Vec<(String, String)>,
    inventory: Vec<Value>,
    /// CustomResourceDefinitions found among the policies and the inventory.
    crds: Vec<Value>,
    /// The kinds Gatekeeper `Config` / `SyncSet` documents among the policies replicate.
    sync: Vec<SyncKind>,
    scopes: KindScopes,
    errors: Vec<PolicyError>,
    limits: EvalLimits,
    use_vm: bool,
    /// Which code of a template with both Rego and CEL is evaluated.
    template_code: TemplateCode,
    /// Leave out templates without that code (and their constraints) instead of refusing them,
    /// as `gator bench --engine` does.
    skip_without_code: bool,
    conftest_namespaces: ConftestNamespaces,
    /// Directories `add_path` skipped (`samples/`, `testdata/`, `tests/`).
    skipped: Vec<std::path::PathBuf>,
    /// Apply the OPA-compatibility edits (`compat`); off only to test the edits themselves.
    pub(super) compat: bool,
    /// Each template's file text and document index, by source: for the file line of a Rego
    /// error.
    template_texts: HashMap<SourceRef, (Arc<str>, usize)>,
}

/// Directories under a policy directory that hold examples, not policy.
const SKIPPED_DIRS: &[&str] = &["samples", "testdata", "tests"];

impl BundleBuilder {
    /// SHA-256 (hex) of the policies' content: every template, constraint and conftest module,
    /// whatever their files and order. The inventory and kind declarations are not policy.
    fn digest(&self) -> String {
        let mut parts: Vec<Vec<u8>> = self
            .templates
            .iter()
            .chain(&self.constraints)
            .chain(&self.expansions)
            .chain(&self.admission)
            .map(|(_, v)| crate::manifest::canonical_json(v))
            .chain(
                self.modules
                    .iter()
                    .map(|(_, text)| text.as_bytes().to_vec()),
            )
            .collect();
        parts.sort();
        // Length-prefixed, so parts cannot run into each other.
        let mut all = Vec::new();
        for p in &parts {
            all.extend_from_slice(&(p.len() as u64).to_be_bytes());
            all.extend_from_slice(p);
        }
        crate::manifest::sha256_hex(&all)
    }

    /// An empty builder; add policies, then [`BundleBuilder::build`].
    pub fn new(limits: EvalLimits) -> BundleBuilder {
        BundleBuilder {
            limits,
            use_vm: true,
            compat: true,
            ..BundleBuilder::default()
        }
    }

    /// The directories [`BundleBuilder::add_path`] skipped so far: `samples/`, `testdata/` and
    /// `tests/` under a policy directory hold examples and suites (the Gatekeeper library's
    /// layout), whose constraints would otherwise join the bundle.
    pub fn skipped_dirs(&self) -> &[std::path::PathBuf] {
        &self.skipped
    }

    /// Which packages' conftest rules run (conftest's `--namespace`; `main` by default).
    pub fn conftest_namespaces(&mut self, namespaces: ConftestNamespaces) {
        self.conftest_namespaces = namespaces;
    }

    /// Evaluate on regorus's register VM (the default; ~1.9× faster) or only on its interpreter
    /// (`--rego-engine interpreter`, an escape hatch should a policy meet a VM gap).
    pub fn use_vm(&mut self, use_vm: bool) {
        self.use_vm = use_vm;
    }

    /// Evaluate Kubernetes ValidatingAdmissionPolicies (and their bindings) among the policies,
    /// as lint and `policy verify` do; otherwise they are not read (at admission the API server
    /// evaluates them).
    pub fn admission_policies(&mut self, on: bool) {
        self.admission_policies = on;
    }

    /// Which code of a template with both Rego and CEL is evaluated (Gatekeeper's choice, the
    /// CEL, by default).
    pub fn template_code(&mut self, code: TemplateCode) {
        self.template_code = code;
    }

    /// Leave out the templates that have no code of the [`BundleBuilder::template_code`] chosen,
    /// and their constraints, instead of refusing them (`policy bench --engine`, as gator bench).
    pub fn skip_templates_without_code(&mut self, skip: bool) {
        self.skip_without_code = skip;
    }

    /// The policies compiled into sealgate (`policies/`).
    pub fn add_builtin(&mut self) {
        for (path, text) in builtin_bundle::FILES {
            self.add_text(&format!("builtin:{path}"), text);
        }
    }

    /// A file or a directory tree: ConstraintTemplates and Constraints from YAML/JSON files, conftest
    /// modules from `.rego` files (not `*_test.rego`). Hidden directories and `samples/`,
    /// `testdata/`, `tests/` are skipped; suites and other kinds are ignored.
    pub fn add_path(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(PolicyError::Invalid(format!(
                    "cannot read policy path {}: {e}",
                    path.display()
                )));
                return;
            }
        };
        if meta.is_dir() {
            let mut entries: Vec<_> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    self.errors.push(PolicyError::Invalid(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                    return;
                }
            };
            entries.sort();
            for p in entries {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() && SKIPPED_DIRS.contains(&name) {
                    // Gatekeeper library layout: examples and suites, not policy.
                    self.skipped.push(p);
                    continue;
                }
                if p.is_dir() || is_policy_file(&p) {
                    self.add_path(&p);
                }
            }
            return;
        }
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) if source.ends_with(".rego") => self.add_module(&source, &text),
            Ok(text) => self.add_text(&source, &text),
            Err(e) => self
                .errors
                .push(PolicyError::Invalid(format!("cannot read {source}: {e}"))),
        }
    }

    /// YAML/JSON text with templates and constraints.
    pub fn add_text(&mut self, source: &str, text: &str) {
        let docs = match crate::manifest::parse(text.as_bytes(), &Default::default()) {
            Ok(d) => d,
            Err(e) => {
                self.errors
                    .push(PolicyError::Invalid(format!("{source}:{e}")));
                return;
            }
        };
        let shared: Arc<str> = Arc::from(text);
        for doc in docs {
            let api = doc
                .value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let where_ = SourceRef {
                file: source.to_string(),
                line: doc.line,
            };
            if api.starts_with("templates.gatekeeper.sh/") {
                self.template_texts
                    .insert(where_.clone(), (shared.clone(), doc.index));
                self.templates.push((where_, doc.value));
            } else if api.starts_with("constraints.gatekeeper.sh/") {
                self.constraints.push((where_, doc.value));
            } else if api.starts_with("expansion.gatekeeper.sh/")
                && doc.value.get("kind").and_then(Value::as_str) == Some("ExpansionTemplate")
            {
                self.expansions.push((where_, doc.value));
            } else if super::vap::is_admission_policy(&doc.value) {
                if self.admission_policies {
                    self.admission.push((where_, doc.value));
                }
            } else if api.starts_with("apiextensions.k8s.io/") {
                self.crds.push(doc.value);
            } else if let Some(kinds) = sync_config(&doc.value) {
                self.sync.extend(kinds);
            }
        }
    }

    /// A conftest-style Rego module.
    pub fn add_module(&mut self, source: &str, text: &str) {
        if !source.ends_with("_test.rego") {
            self.modules.push((source.to_string(), text.to_string()));
        }
    }

    /// Objects for `data.inventory` (and Namespace labels for `namespaceSelector`, and the
    /// scope of the kinds their CustomResourceDefinitions define).
    /// A list (`kind: List` as `kubectl get -o yaml` prints it, or a `…List` kind) counts as
    /// its items.
    pub fn add_inventory(&mut self, objects: impl IntoIterator<Item = Value>) {
        for mut o in objects {
            let is_list = crate::manifest::is_list(&o);
            match o.get_mut("items").filter(|_| is_list).map(Value::take) {
                Some(Value::Array(items)) => self.inventory.extend(items),
                _ => self.inventory.push(o),
            }
        }
    }

    /// Kinds declared namespaced or cluster-scoped (`--namespaced-kinds`, `--cluster-kinds`):
    /// `Kind` or `group/Kind`, comma-separated. They win over CRDs.
    pub fn declare_kinds(&mut self, list: &str, scope: scope::Scope) {
        if let Err(e) = self.scopes.declare(list, scope) {
            self.errors.push(PolicyError::Invalid(e.to_string()));
        }
    }

    /// A Rego error's line in the template's file: where the Rego block scalar starts, plus the
    /// line regorus names. Left as it is when the Rego is not a block scalar (`rego: |`).
    fn locate(texts: &HashMap<SourceRef, (Arc<str>, usize)>, e: PolicyError) -> PolicyError {
        let PolicyError::Rego {
            file,
            template,
            message,
            at: Some(rego_at),
        } = e
        else {
            return e;
        };
        let line = texts.get(&file).and_then(|(text, index)| {
            let key = crate::manifest::Positions::parse(text)?.line(*index, &rego_at.field)?;
            let key_text = text.lines().nth(key.checked_sub(1)?)?;
            let after_colon = key_text.split_once(':')?.1.trim_start();
            after_colon
                .starts_with(['|', '>'])
                .then_some(key + rego_at.line)
        });
        let file = match line {
            Some(line) => SourceRef { line, ..file },
            None => file,
        };
        PolicyError::Rego {
            file,
            template,
            message,
            at: Some(rego_at),
        }
    }

    /// Compile everything. Every problem is reported, not only the first.
    pub fn build(self) -> Result<Bundle, BundleErrors> {
        let bundle = self.build_reporting()?;
        if bundle.invalid_constraints.is_empty() {
            Ok(bundle)
        } else {
            Err(BundleErrors(
                bundle
                    .invalid_constraints
                    .iter()
                    .map(InvalidConstraint::error)
                    .collect(),
            ))
        }
    }

    /// [`BundleBuilder::build`], but Constraints that do not fit their kind's schema are left
    /// out and listed in [`Bundle::invalid_constraints`] instead of failing the build.
    pub fn build_reporting(self) -> Result<Bundle, BundleErrors> {
        let digest = self.digest();
        let mut errors = self.errors;
        let mut scopes = self.scopes;
        scopes.add_crds(self.crds.iter().chain(&self.inventory));
        // Converted once: every template's engine (and VM program) holds the same data.
        let data = RValue::from(inventory_data(&self.inventory, &scopes));
        let mut templates: HashMap<String, Arc<Template>> = HashMap::new();
        // The same template loaded twice (deploy/'s copy of a built-in, taken from the inputs
        // or a -p) is one template; only a different one under the same kind is a conflict.
        let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
        // Kinds whose template did not compile: their constraints are not "without a template".
        let mut failed: Vec<String> = Vec::new();
        for (source, v) in &self.templates {
            if let Some(kind) = v
                .pointer("/spec/crd/spec/names/kind")
                .and_then(Value::as_str)
            {
                let spec = crate::manifest::canonical_json(&v["spec"]);
                match seen.get(kind) {
                    Some(prev) if *prev == spec => continue,
                    Some(_) => {}
                    None => {
                        seen.insert(kind.to_string(), spec);
                    }
                }
            }
            if self.skip_without_code && !super::compile::has_code(v, self.template_code) {
                if let Some(kind) = v
                    .pointer("/spec/crd/spec/names/kind")
                    .and_then(Value::as_str)
                {
                    failed.push(kind.to_string());
                }
                continue;
            }
            match compile_template(
                source,
                v,
                &data,
                self.limits,
                self.use_vm,
                self.compat,
                self.template_code,
            ) {
                Ok(t) => {
                    if let Some(prev) = templates.get(&t.kind) {
                        errors.push(at(
                            source,
                            format!("ConstraintTemplate {}", t.kind),
                            format!("kind {} is already defined by {}", t.kind, prev.source),
                        ));
                    } else {
                        templates.insert(t.kind.clone(), Arc::new(t));
                    }
                }
                Err(e) => {
                    if let Some(kind) = v
                        .pointer("/spec/crd/spec/names/kind")
                        .and_then(Value::as_str)
                    {
                        failed.push(kind.to_string());
                    }
                    errors.push(Self::locate(&self.template_texts, e));
                }
            }
        }
        let mut constraints: Vec<Constraint> = Vec::new();
        let mut invalid = Vec::new();
        // The same Constraint loaded twice (a -p directory that is also among the linted inputs)
        // is one Constraint; only a different one under the same kind and name is a duplicate.
        let mut loaded: HashMap<(String, String), Vec<u8>> = HashMap::new();
        for (source, v) in &self.constraints {
            let id = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let content = crate::manifest::canonical_json(v);
            match loaded.get(&(id("/kind"), id("/metadata/name"))) {
                Some(prev) if *prev == content => continue,
                _ => {
                    loaded.insert((id("/kind"), id("/metadata/name")), content);
                }
            }
            // Checked against the schema Gatekeeper would generate for the kind before anything
            // is read from it: a misspelt field must not silently widen or disable a constraint.
            let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
            if let Some(t) = templates.get(text("/kind")) {
                let mut problems = Vec::new();
                schema::check(&schema::constraint(t.schema.as_ref()), v, "", &mut problems);
                if !problems.is_empty() {
                    invalid.push(InvalidConstraint {
                        source: source.clone(),
                        api_version: text("/apiVersion").to_string(),
                        kind: text("/kind").to_string(),
                        name: text("/metadata/name").to_string(),
                        problems,
                    });
                    continue;
                }
            }
            match parse_constraint(source, v) {
                // Its template's error is reported already.
                Ok(c) if failed.contains(&c.kind) => {}
                Ok(c) if !templates.contains_key(&c.kind) => errors.push(at(
                    source,
                    format!("{} {}", c.kind, c.name),
                    format!(
                        "no ConstraintTemplate defines kind {} (add its template to the bundle)",
                        c.kind
                    ),
                )),
                Ok(c) => {
                    if let Some(i) = constraints
                        .iter()
                        .position(|p| p.kind == c.kind && p.name == c.name)
                    {
                        // A user's constraint replaces the built-in one of the same name: that is
                        // how built-in policies are configured.
                        if constraints[i].source.is_builtin() {
                            constraints[i] = c;
                        } else {
                            errors.push(at(
                                source,
                                format!("{} {}", c.kind, c.name),
                                format!("duplicate of {}", constraints[i].source),
                            ));
                        }
                    } else {
                        constraints.push(c);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        // The same ExpansionTemplate loaded twice is one; two of one name are a conflict.
        let mut expansions: Vec<ExpansionTemplate> = Vec::new();
        for (source, v) in &self.expansions {
            match ExpansionTemplate::parse(source, v) {
                Ok(t) => match expansions.iter().find(|e| e.name == t.name) {
                    Some(prev) if prev.same_as(&t) => {}
                    Some(prev) => errors.push(at(
                        source,
                        format!("ExpansionTemplate {}", t.name),
                        format!("duplicate of {}", prev.source),
                    )),
                    None => expansions.push(t),
                },
                Err(e) => errors.push(e),
            }
        }
        let admission = match super::vap::Admission::parse(&self.admission) {
            Ok(a) => a,
            Err(e) => {
                errors.extend(e);
                Default::default()
            }
        };
        let params = self
            .inventory
            .iter()
            .filter(|o| admission.is_param(o))
            .cloned()
            .collect();
        let conftest =
            match compile_conftest(&self.modules, &self.conftest_namespaces, &data, self.limits) {
                Ok(c) => c.map(Arc::new),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
        if !errors.is_empty() {
            return Err(BundleErrors(errors));
        }
        Ok(Bundle {
            digest,
            templates,
            constraints,
            conftest,
            namespaces: namespace_labels(&self.inventory),
            scopes,
            sync: {
                let mut k = self.sync;
                k.sort();
                k.dedup();
                k
            },
            use_vm: self.use_vm,
            skipped_dirs: self.skipped,
            invalid_constraints: invalid,
            expansions,
            admission: Arc::new(admission),
            params,
        })
    }
}

fn is_policy_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json" | "rego")
    )
}

/// `data.inventory` as Gatekeeper replicates it: `cluster[apiVersion][kind][name]` and
/// `namespace[ns][apiVersion][kind][name]`. An object without a namespace goes under `cluster`,
/// as gator files it.
pub fn inventory_data(objects: &[Value], scopes: &KindScopes) -> Value {
    let mut cluster = serde_json::Map::new();
    let mut namespace = serde_json::Map::new();
    for o in objects {
        let r = ObjectRef::of(o);
        if r.kind.is_empty() || r.name.is_empty() {
            continue;
        }
        let info = ObjectInfo::of(o, scopes, None);
        let root = match &info.namespace {
            Some(ns) => namespace
                .entry(ns.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object"),
            _ => &mut cluster,
        };
        let by_kind = root
            .entry(r.api_version.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .entry(r.kind.clone())
            .or_insert_with(|| json!({}));
        by_kind[r.name.clone()] = o.clone();
    }
    json!({"inventory": {"cluster": cluster, "namespace": namespace}})
}

/// The labels of the Namespace objects among `objects` (other kinds are ignored), for
/// `namespaceSelector`. Lint, the webhook and audit all build their view with this.
pub fn namespace_labels<'a>(objects: impl IntoIterator<Item = &'a Value>) -> NamespaceLabels {
    objects
        .into_iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .map(|o| {
            let i = ObjectInfo::of(o, &KindScopes::default(), None);
            (i.name, i.labels)
        })
        .collect()
}

fn parse_constraint(source: &SourceRef, v: &Value) -> Result<Constraint, PolicyError> {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind.is_empty() || name.is_empty() {
        return Err(at(
            source,
            format!("constraint {kind} {name}"),
            "needs kind and metadata.name",
        ));
    }
    let what = format!("{kind} {name}");
    let spec = v.get("spec");
    let matcher = Match::parse(spec.and_then(|s| s.get("match")))
        .map_err(|e| at(source, &what, e.to_string()))?;
    let enforcement = Enforcement::parse(spec).map_err(|e| at(source, &what, e))?;
    let parameters = spec
        .and_then(|s| s.get("parameters"))
        .filter(|p| !p.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let severity = Severity::ANNOTATIONS
        .iter()
        .find_map(|a| {
            v.pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .map(|s| (a, s))
        })
        .map(|(a, s)| {
            s.as_str()
                .ok_or_else(|| format!("annotation {a} must be a string"))
                .and_then(str::parse)
                .map_err(|e| at(source, &what, format!("{a}: {e}")))
        })
        .transpose()?;
    Ok(Constraint {
        kind,
        name,
        source: source.clone(),
        matcher,
        parameters: RValue::from(parameters),
        enforcement,
        severity,
    })
}
