//! The policy flags, one definition for `sealgate lint`, `sealgate policy …` and
//! `sealgate-webhook`, so a bundle is described the same way wherever it is built (feature
//! `flags`).

use std::path::PathBuf;
use std::time::Duration;

use super::{ConftestNamespaces, EvalLimits, Sources, TemplateCode};

/// Where the policies come from and how they are evaluated.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy directory or file: ConstraintTemplates, Constraints, conftest `.rego` modules
    /// (repeatable). A Constraint with the name of a built-in one replaces it
    #[arg(
        long = "policy",
        short = 'p',
        value_name = "PATH",
        env = "SEALGATE_POLICY",
        value_delimiter = ',',
        global = true
    )]
    pub policies: Vec<PathBuf>,
    /// Do not load the built-in policies
    #[arg(long, global = true)]
    pub no_builtin: bool,
    /// Kinds to treat as namespaced in `match` (Kind or group/Kind, comma-separated), for custom
    /// resources whose CRD is not among the linted files, policies or inventory
    #[arg(
        long,
        value_name = "KINDS",
        env = "SEALGATE_NAMESPACED_KINDS",
        global = true
    )]
    pub namespaced_kinds: Vec<String>,
    /// Kinds to treat as cluster-scoped in `match` (Kind or group/Kind, comma-separated)
    #[arg(
        long,
        value_name = "KINDS",
        env = "SEALGATE_CLUSTER_KINDS",
        global = true
    )]
    pub cluster_kinds: Vec<String>,
    /// Rego engine: regorus's register VM, or its interpreter (slower; for a policy that meets
    /// a VM gap)
    #[arg(long, value_enum, default_value_t = RegoEngine::Vm, env = "SEALGATE_REGO_ENGINE", global = true)]
    pub rego_engine: RegoEngine,
    /// Which code of a ConstraintTemplate is evaluated: `auto` as Gatekeeper (its CEL,
    /// K8sNativeValidation, when it has some; else its Rego), or only `rego` or only `cel`
    #[arg(long, value_enum, default_value_t = TemplateCode::Auto, env = "SEALGATE_TEMPLATE_CODE", global = true)]
    pub template_code: TemplateCode,
    /// conftest modules: run the deny/warn/violation rules of this Rego package (repeatable;
    /// conftest's --namespace) [default: main]
    #[arg(
        long = "namespace",
        value_name = "PACKAGE",
        conflicts_with = "all_namespaces",
        global = true
    )]
    pub conftest_namespaces: Vec<String>,
    /// conftest modules: run the rules of every package (conftest's --all-namespaces)
    #[arg(long, global = true)]
    pub all_namespaces: bool,
}

/// `--rego-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegoEngine {
    /// regorus's register VM.
    Vm,
    /// regorus's interpreter.
    Interpreter,
}

impl PolicyArgs {
    /// The bundle's sources; `eval_timeout` bounds one policy evaluation.
    pub fn sources(&self, eval_timeout: Duration) -> Sources {
        Sources {
            builtin: !self.no_builtin,
            policies: self.policies.clone(),
            namespaced_kinds: self.namespaced_kinds.clone(),
            cluster_kinds: self.cluster_kinds.clone(),
            limits: EvalLimits { eval_timeout },
            use_vm: self.rego_engine == RegoEngine::Vm,
            template_code: self.template_code,
            // Lint turns them on; at admission and in audit the API server evaluates them.
            admission_policies: false,
            conftest_namespaces: if self.all_namespaces {
                ConftestNamespaces::All
            } else if self.conftest_namespaces.is_empty() {
                ConftestNamespaces::default()
            } else {
                ConftestNamespaces::Only(self.conftest_namespaces.clone())
            },
            from_inputs: Vec::new(),
        }
    }

    /// The sources in words, for messages: "the built-in policies, -p DIR".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.no_builtin {
            parts.push("the built-in policies".to_string());
        }
        for p in &self.policies {
            parts.push(format!("-p {}", p.display()));
        }
        if parts.is_empty() {
            "--no-builtin and no -p".to_string()
        } else {
            format!("loaded from {}", parts.join(", "))
        }
    }
}
