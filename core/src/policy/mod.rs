//! The policy engine shared by `sealgate lint` and the admission webhook: Gatekeeper
//! ConstraintTemplates and Constraints, plus conftest-style modules, evaluated with regorus.
//! Find a module by its question:
//!
//! - [`enforcement`]: where is a policy enforced, and what does a violation do there?
//! - [`review`]: what is evaluated (the AdmissionRequest and `input`), and what comes out?
//! - [`bundle`]: which policies are loaded, from where, with which inventory?
//! - `compile`: how a template becomes a regorus program (interpreter and register VM).
//! - [`evaluate`]: which constraints apply to a review, and what they report.
//! - [`matching`] and [`scope`]: the Constraint `match` block, and which kinds are namespaced.
//! - [`report`]: results as PolicyReport / ClusterPolicyReport objects.
//! - [`builtins`] and `compat`: what makes regorus behave like OPA on Gatekeeper templates.
//! - [`suite`]: `gator verify` Suite files.
//! - [`vap`] (with [`cel`]): Kubernetes' ValidatingAdmissionPolicies, in lint and `policy verify`.
//! - [`builtin_bundle`]: the policies shipped in the binary (`policies/`).
//!
//! Everything is compiled once into a [`Bundle`]; evaluation clones a prepared engine per
//! (document, constraint), which shares the parsed modules and data.

pub mod bench;
pub mod builtin_bundle;
pub mod builtins;
pub mod bundle;
pub mod cel;
mod cel_cost;
#[doc(hidden)] // public for the fuzz target (fuzz/), not an API
pub mod compat;
mod compile;
pub mod enforcement;
pub mod evaluate;
pub mod expansion;
#[cfg(feature = "flags")]
pub mod flags;
pub mod matching;
pub mod report;
pub mod review;
mod schema;
pub mod scope;
pub mod suite;
pub mod vap;

pub use bundle::{
    BundleBuilder, BundleErrors, Constraint, InvalidConstraint, POLICY_GROUPS, Sources, SyncKind,
    inventory_data, namespace_labels,
};
pub use compile::{ConftestNamespaces, EvalLimits, Template, TemplateCode};
pub use enforcement::{Action, Effect, Enforcement, Point};
pub use evaluate::{Bundle, Evaluation, NamespaceLabels};
pub use review::{
    BREAK_GLASS_DETAIL, ObjectRef, Operation, PolicyRef, RequestInfo, Review, ReviewError,
    Severity, Violation, pod_spec_path,
};

/// Errors that make a bundle unusable. Each names the file and the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The bundle as a whole is unusable (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// A template's Rego does not compile.
    #[error("{file}: ConstraintTemplate {template}: Rego error: {message}")]
    Rego {
        /// The template's file, at the line of the error when known (else of its document).
        file: SourceRef,
        /// The template's kind.
        template: String,
        /// What is wrong, and where in the Rego (`line 6, column 1 of spec.targets[0].rego`).
        message: String,
        /// The field holding the Rego and the line and column in it, when regorus says.
        at: Option<RegoAt>,
    },
    /// An object in a policy file is malformed.
    #[error("{file}: {what}: {problem}")]
    At {
        /// The file.
        file: String,
        /// The object (`Constraint K8sRequiredLabels/must-have-owner`).
        what: String,
        /// What is wrong.
        problem: String,
    },
}

/// Where in a template a Rego error is: its field (`spec`, `targets`, `0`, `rego`), and the
/// 1-based line and column inside that field's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoAt {
    /// The path of the field holding the Rego text.
    pub field: Vec<String>,
    /// Line in the Rego text.
    pub line: usize,
    /// Column in the Rego text.
    pub column: usize,
}

/// Where a policy document comes from: its file (`builtin:…` for the built-in policies) and the
/// line its document starts on. Reports, duplicates and the webhook's logs name it as
/// `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    /// The file.
    pub file: String,
    /// The 1-based line.
    pub line: usize,
}

impl SourceRef {
    /// Whether it is one of sealgate's built-in policies (a user's Constraint of the same name
    /// replaces it).
    pub fn is_builtin(&self) -> bool {
        self.file.starts_with("builtin:")
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

fn at(
    source: impl std::fmt::Display,
    what: impl Into<String>,
    problem: impl Into<String>,
) -> PolicyError {
    PolicyError::At {
        file: source.to_string(),
        what: what.into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compat_equivalence;
