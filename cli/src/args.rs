//! Command-line arguments. Every flag that configures *where keys come from* can also be set
//! through a `SEALGATE_*` environment variable; flags win.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Seal Kubernetes Secrets for GitOps, and manage sealing keys",
    long_about = "Seal Kubernetes Secrets into SealedSecrets that are safe to commit, unseal them offline for recovery, \
re-encrypt them to the newest key, and validate them in CI.\n\n\
Exit codes: 0 ok, 1 verification failed (a value does not decrypt, a SealedSecret is invalid), 2 usage or input error."
)]
pub struct Cli {
    /// Local key store directory, for the commands that use one (keys, seal, unseal, reseal,
    /// validate, cert) [default: <config dir>/sealgate/keys]
    #[arg(long, env = "SEALGATE_KEYS_DIR", value_name = "DIR")]
    pub keys: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the sealing keys of the local key store
    Keys(KeysArgs),
    /// Seal Secrets (YAML or JSON, from stdin or -f) into SealedSecrets
    Seal(SealArgs),
    /// Offline recovery: unseal SealedSecrets into Secrets with private keys
    Unseal(UnsealArgs),
    /// Re-encrypt SealedSecret files in place to the newest key
    Reseal(ResealArgs),
    /// Check SealedSecret files: well-formed and consistent with the given public keys
    /// (offline), decryptable with private keys (--decrypt), or by the cluster (--controller)
    Validate(ValidateArgs),
    /// Print the cluster's public keys (the controller's /v1/cert.pem, like `kubeseal
    /// --fetch-cert`), or the key store's with no --controller
    Cert(CertArgs),
    /// Check manifests against the policy bundle: the built-in policies plus --policy directories
    Lint(LintArgs),
    /// Policy bundle tools
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Attestation keys (`sealgate lint --attest` signs with them)
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Check Attestation files offline: signed by a trusted key, verdict pass, recent enough;
    /// with --object, whether live objects still match what was attested
    VerifyAttestation(VerifyAttestationArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (sealgate.1 and one per subcommand, e.g. sealgate-seal.1) into DIR
    Man {
        /// Directory to write the pages into (created if missing), e.g. /usr/local/share/man/man1
        dir: std::path::PathBuf,
    },
}

/// `--keys DIR` on the commands that use a key store (also accepted before the command).
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArg {
    /// Local key store directory [default: <config dir>/sealgate/keys]
    #[arg(
        long = "keys",
        global = true,
        env = "SEALGATE_KEYS_DIR",
        value_name = "DIR"
    )]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the key store with its first sealing key (does nothing if it already has keys)
    Init(KeyGenArgs),
    /// Add a new sealing key; it becomes the one new values are sealed with. Old keys are kept
    Rotate(KeyGenArgs),
    /// List the keys in the store, newest first
    List {
        /// Output format
        #[arg(short = 'o', long = "output", value_enum, default_value_t = ListFormat::Text)]
        output: ListFormat,
    },
    /// Print public keys: the newest key's certificate (kubeseal-compatible cert.pem)
    ExportPublic {
        /// Every key's certificate, not only the newest
        #[arg(long)]
        all: bool,
        /// Print age recipients (age1…) instead of certificates
        #[arg(long)]
        age: bool,
        /// Write to FILE (atomically) instead of stdout
        #[arg(short = 'w', long = "output-file", value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Import keys: Bitnami or sealgate key Secrets (also `kubectl get secret -o yaml` Lists) or PEM files
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct KeyGenArgs {
    /// RSA key size in bits: 2048, 3072, 4096 or 8192
    #[arg(long, default_value_t = 4096, value_name = "BITS")]
    pub key_size: u32,
    /// Certificate validity in days (sealing with an expired certificate is refused)
    #[arg(long, default_value_t = 3650, value_name = "DAYS")]
    pub validity_days: u32,
    /// Certificate subject common name
    #[arg(long, default_value = "sealgate", value_name = "NAME")]
    pub cn: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SealFormat {
    /// age, to the key's hybrid post-quantum recipient (ML-KEM-768 + X25519) by default, or its
    /// X25519 one with --pq=false, and any extra recipients; binds namespace, name and item
    Age,
    /// Bitnami Sealed Secrets' RSA-OAEP + AES-GCM; readable by Bitnami's controller
    Kubeseal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    Sealgate,
    Bitnami,
}

impl From<ApiArg> for sealgate_core::sealing::ApiGroup {
    fn from(a: ApiArg) -> Self {
        match a {
            ApiArg::Sealgate => Self::Sealgate,
            ApiArg::Bitnami => Self::Bitnami,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Strict,
    NamespaceWide,
    ClusterWide,
}

/// The controller's HTTP API, for the commands that can ask the cluster.
#[derive(Debug, Args, Clone, Default)]
pub struct ControllerArgs {
    /// Ask the controller: http(s)://HOST:PORT (e.g. through kubectl port-forward), or
    /// kube://[NAMESPACE/SERVICE] through the API server's service proxy with the kubeconfig's
    /// credentials (kube:// alone = kube://sealgate-system/sealgate-controller)
    #[arg(long, env = "SEALGATE_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,
    /// kubeconfig context for kube:// [default: the current context]
    #[arg(long = "context", env = "SEALGATE_KUBE_CONTEXT", value_name = "NAME")]
    pub kube_context: Option<String>,
    /// kubeconfig file for kube:// [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Every active key's certificate, not only the newest
    #[arg(long)]
    pub all: bool,
    /// Print age recipients (age1…) instead of certificates
    #[arg(long)]
    pub age: bool,
    /// Write to FILE (atomically) instead of stdout
    #[arg(short = 'w', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// Where the public key to seal with comes from.
#[derive(Debug, Args, Clone)]
pub struct PublicKeySource {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Certificate to seal with: a file, or an http(s):// or file:// URL (the controller's
    /// /v1/cert.pem). Without it, the newest key of the local key store is used
    #[arg(long, env = "SEALGATE_CERT", value_name = "FILE|URL")]
    pub cert: Option<String>,
    /// Refuse to seal unless the key (from --cert, --controller or the key store) has this id
    /// (at least 8 hex digits, as `sealgate cert --age`/`keys list` show): pins the cluster's
    /// key when it is fetched over a network
    #[arg(long, env = "SEALGATE_EXPECT_KEY_ID", value_name = "ID", value_parser = key_id_prefix)]
    pub expect_key_id: Option<String>,
    /// Extra age recipient (age1pq1… post-quantum, or age1… with --pq=false), e.g. another
    /// cluster or an offline recovery key (repeatable)
    #[arg(long = "recipient", short = 'r', value_name = "AGE1…")]
    pub recipients: Vec<String>,
    /// Seal age values to the cluster key's hybrid post-quantum recipient (ML-KEM-768 + X25519)
    /// when it has one; --pq=false seals to its X25519 recipient, for readers without the
    /// hybrid type (age before 1.3)
    #[arg(long, env = "SEALGATE_PQ", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pq: bool,
    /// File with extra age recipients, one per line, '#' comments (repeatable; e.g. an
    /// organisation-wide recovery key)
    #[arg(
        long = "recipients-file",
        short = 'R',
        value_name = "FILE",
        env = "SEALGATE_RECIPIENTS_FILE",
        value_delimiter = ','
    )]
    pub recipients_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Input file with Secrets (multi-document YAML or a JSON stream) [default: stdin]
    #[arg(short = 'f', long = "secret-file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write the result to FILE, atomically and only on success [default: stdout]
    #[arg(short = 'w', long = "sealed-secret-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Output format [default: yaml; json when -w names a .json file]
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// kubeseal's --format: yaml or json, the same as -o. (age or kubeseal, as before, still
    /// select the value format, with a note: that is --value-format now)
    #[arg(long, value_enum, value_name = "yaml|json")]
    pub format: Option<FormatArg>,
    /// Value format: age (to the key's hybrid post-quantum recipient by default) or kubeseal
    /// (Bitnami's RSA-OAEP) [default: age; kubeseal with --bitnami; with --merge-into, the
    /// target file's]
    #[arg(long, value_enum, env = "SEALGATE_VALUE_FORMAT")]
    pub value_format: Option<SealFormat>,
    /// Scope [default: from the Secret's scope annotations, else strict]
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    #[command(flatten)]
    pub keys: PublicKeySource,
    /// Namespace for Secrets that have none (an error if a Secret names another)
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Name of the SealedSecret (overrides the Secret's; with --raw, the object name)
    #[arg(long)]
    pub name: Option<String>,
    /// Seal one raw value (stdin or --from-file) and print only the sealed base64 value
    #[arg(long)]
    pub raw: bool,
    /// With --raw: read the value from PATH; KEY names the item (needed by age in strict scope)
    #[arg(long, value_name = "[KEY=]PATH", requires = "raw")]
    pub from_file: Option<String>,
    /// With --raw: the item name the value will be stored under
    #[arg(long, value_name = "KEY", requires = "raw")]
    pub item: Option<String>,
    /// Seal the input Secret's items into this existing SealedSecret file, in place
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output_file", "raw"])]
    pub merge_into: Option<PathBuf>,
    /// Seal Secrets that have no data
    #[arg(long)]
    pub allow_empty_data: bool,
    /// Write bitnami.com/v1alpha1 SealedSecrets (kubeseal format) for Bitnami's controller
    #[arg(long)]
    pub bitnami: bool,
    #[command(flatten)]
    pub kubeseal: KubesealHabits,
}

/// kubeseal flags whose work another sealgate command does: accepted (hidden) only to say which.
#[derive(Debug, Args, Default)]
pub struct KubesealHabits {
    #[arg(long, hide = true)]
    pub re_encrypt: bool,
    #[arg(long, hide = true)]
    pub recovery_unseal: bool,
    #[arg(long, hide = true, value_name = "FILE")]
    pub recovery_private_key: Option<String>,
    #[arg(long, hide = true)]
    pub fetch_cert: bool,
    #[arg(long, hide = true)]
    pub validate: bool,
    #[arg(long, hide = true, value_name = "NAME")]
    pub controller_name: Option<String>,
    #[arg(long, hide = true, value_name = "NAMESPACE")]
    pub controller_namespace: Option<String>,
}

impl KubesealHabits {
    /// The sealgate command that does what the kubeseal flag given did, if one was given.
    pub fn instead(&self) -> Option<String> {
        let k = self;
        Some(if k.re_encrypt {
            "--re-encrypt is kubeseal's; in sealgate it is its own command: `sealgate reseal --controller kube:// FILE…` (the cluster re-encrypts), or `sealgate reseal FILE…` offline with the keys".into()
        } else if k.recovery_unseal || k.recovery_private_key.is_some() {
            "--recovery-unseal is kubeseal's; in sealgate it is its own command: `sealgate unseal -f FILE --private-key KEYS.yaml`".into()
        } else if k.fetch_cert {
            "--fetch-cert is kubeseal's; in sealgate: `sealgate cert --controller kube://` (or `sealgate cert` for the local key store)".into()
        } else if k.validate {
            "--validate is kubeseal's; in sealgate: `sealgate validate --controller kube:// FILE…` (or offline with --cert)".into()
        } else if k.controller_name.is_some() || k.controller_namespace.is_some() {
            format!(
                "--controller-name and --controller-namespace are kubeseal's; in sealgate the controller is one URL: `--controller kube://{}/{}`",
                k.controller_namespace.as_deref().unwrap_or("NAMESPACE"),
                k.controller_name.as_deref().unwrap_or("NAME")
            )
        } else {
            return None;
        })
    }
}

/// `seal --format`: kubeseal's output format, or (before --value-format) the value format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Yaml,
    Json,
    #[value(hide = true)]
    Age,
    #[value(hide = true)]
    Kubeseal,
}

/// Where private keys come from.
#[derive(Debug, Args, Clone)]
pub struct PrivateKeySource {
    /// Private keys to use instead of the key store: key Secrets (sealgate's or Bitnami's, also
    /// Lists), or PEM files (repeatable)
    #[arg(
        long = "private-key",
        value_name = "FILE",
        env = "SEALGATE_PRIVATE_KEYS",
        value_delimiter = ','
    )]
    pub private_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnsealArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// SealedSecret file [default: stdin]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write the Secrets to FILE, atomically, only if every object unseals [default: stdout]
    #[arg(short = 'w', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Output format [default: yaml, or json when -w names a .json file]
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub private: PrivateKeySource,
}

#[derive(Debug, Args)]
pub struct ResealArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// SealedSecret files to rewrite in place, or - to read stdin and write stdout. Other
    /// documents are kept byte for byte, and comments wherever the YAML keeps its shape
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Convert every value to this format [default: keep each value's format] (also --format)
    #[arg(long, value_enum, alias = "format")]
    pub value_format: Option<SealFormat>,
    /// Convert the objects to this API group (migration): sealgate (sealgate.dev/v1alpha1) or
    /// bitnami (bitnami.com/v1alpha1, kubeseal format only). The scope is kept
    #[arg(long, value_enum)]
    pub api: Option<ApiArg>,
    /// Seal to this certificate (e.g. a new cluster's) instead of the key store's newest key
    #[arg(long, value_name = "FILE|URL")]
    pub cert: Option<String>,
    /// Extra age recipients, as for seal
    #[arg(long = "recipient", short = 'r', value_name = "AGE1…")]
    pub recipients: Vec<String>,
    /// Seal age values post-quantum where the key has a post-quantum recipient, as for seal
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pq: bool,
    #[command(flatten)]
    pub private: PrivateKeySource,
    // --controller: the cluster re-encrypts (POST /v1/rotate); no private key leaves it.
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Report what would change without writing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// SealedSecret files or directories (searched for *.yaml, *.yml, *.json); other kinds are skipped
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Public key(s) the values must fit: recipient type and RSA size, not proof of the key
    /// (repeatable) [default: the key store's]
    #[arg(long = "cert", value_name = "FILE|URL")]
    pub certs: Vec<String>,
    /// Also decrypt every value with private keys (key store or --private-key), proving scope and binding
    #[arg(long)]
    pub decrypt: bool,
    /// Succeed when the paths hold no SealedSecret at all (the pre-commit hook passes every
    /// changed YAML file) instead of exiting 2
    #[arg(long)]
    pub allow_empty: bool,
    /// With no --cert, no key store, no --decrypt and no --controller, check structure and scope
    /// only and exit 0, instead of exiting 1 because nothing was checked against a key
    #[arg(long)]
    pub allow_unverified: bool,
    #[command(flatten)]
    pub private: PrivateKeySource,
    // --controller: the cluster checks that it can decrypt each SealedSecret (POST /v1/verify).
    #[command(flatten)]
    pub controller: ControllerArgs,
}

impl From<SealFormat> for sealgate_core::envelope::Format {
    fn from(f: SealFormat) -> Self {
        match f {
            SealFormat::Age => Self::Age,
            SealFormat::Kubeseal => Self::Kubeseal,
        }
    }
}

impl From<ScopeArg> for sealgate_core::envelope::Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Strict => Self::Strict,
            ScopeArg::NamespaceWide => Self::NamespaceWide,
            ScopeArg::ClusterWide => Self::ClusterWide,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PointArg {
    Ci,
    Admission,
    Audit,
}

impl From<PointArg> for sealgate_core::policy::Point {
    fn from(p: PointArg) -> Self {
        match p {
            PointArg::Ci => Self::Ci,
            PointArg::Admission => Self::Admission,
            PointArg::Audit => Self::Audit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// file:line findings, then `N passed, N failed`
    Text,
    /// one JSON document with every finding and a summary
    Json,
    /// SARIF 2.1.0, for GitHub code scanning
    Sarif,
    /// JUnit XML, for CI test reports
    Junit,
    /// GitHub Actions workflow commands (annotations on the PR)
    Github,
    /// wgpolicyk8s.io/v1alpha2 PolicyReport and ClusterPolicyReport objects (YAML), as Kyverno
    /// writes them for Policy Reporter
    Policyreport,
    /// openreports.io/v1alpha1 Report and ClusterReport objects (YAML), as Kyverno 1.15+ writes
    /// them for Policy Reporter 3
    Openreports,
}

/// Where policies come from (shared by lint and the webhook-facing commands).
#[derive(Debug, Args, Clone)]
pub struct BundleArgs {
    #[command(flatten)]
    pub policy: sealgate_core::policy::flags::PolicyArgs,
    /// Objects for data.inventory (referential policies) and namespaceSelector: files or directories (repeatable)
    #[arg(long, value_name = "PATH")]
    pub inventory: Vec<PathBuf>,
    /// Time limit for one policy evaluation, e.g. 500ms or 2s
    #[arg(long, default_value = "2s", value_parser = sealgate_core::duration::parse, value_name = "DURATION")]
    pub eval_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files or directories to check, or - for stdin [default: stdin when it is a pipe or a
    /// redirected file, else .]. Directories are searched for *.yaml, *.yml and *.json,
    /// honouring .gitignore and .sealgateignore, skipping hidden entries and Helm chart
    /// templates; named files that those rules match are skipped too, with a note
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Enforcement point to evaluate as (AdmissionReview documents are always `admission`)
    #[arg(long, value_enum, default_value_t = PointArg::Ci)]
    pub point: PointArg,
    /// Output format of the report (also --format)
    #[arg(short = 'o', long = "output", visible_alias = "format", value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report to FILE (atomically) instead of stdout
    #[arg(short = 'w', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Exit 1 on warn violations too
    #[arg(long)]
    pub fail_on_warn: bool,
    /// Lint ConstraintTemplates and Constraints found among the inputs as objects, instead of
    /// taking them into the bundle as `gator test` does
    #[arg(long)]
    pub no_policies_from_inputs: bool,
    /// Say what the bundle holds and what it skipped (samples/, testdata/ and tests/ under a -p
    /// directory), on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Lint with a bundle that has no constraint, no bound ValidatingAdmissionPolicy and no
    /// conftest rule (every object passes); without it, such a bundle is an error (exit 2), as
    /// conftest's "no policies found"
    #[arg(long)]
    pub allow_empty_bundle: bool,
    /// Worker threads [default: all cores]
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Most documents read from one file or stream (a bound against YAML bombs, not a size
    /// limit for repositories)
    #[arg(long, value_name = "N", default_value_t = sealgate_core::manifest::ParseLimits::default().max_documents)]
    pub max_documents: usize,
    /// Bytes of a file or stream read whole before the rest is judged as it is read (tests set
    /// it low to stream small inputs)
    #[arg(long, value_name = "BYTES", hide = true, default_value_t = crate::stream::HEAD as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    pub stream_head: u64,
    /// When the lint passes, write signed Attestations of the linted objects to FILE (in CI,
    /// after review, on the merge commit); the agent applies them with the manifests
    #[arg(long, value_name = "FILE", requires = "attest_key")]
    pub attest: Option<PathBuf>,
    /// Private key to sign Attestations with: `cosign generate-key-pair`'s cosign.key (its
    /// password in COSIGN_PASSWORD) or `sealgate attest keygen`'s
    #[arg(long, env = "SEALGATE_ATTEST_KEY", value_name = "FILE")]
    pub attest_key: Option<PathBuf>,
    /// Git revision the manifests were rendered from [default: $GITHUB_SHA, $CI_COMMIT_SHA, or
    /// `git rev-parse HEAD`]
    #[arg(long, env = "SEALGATE_REVISION", value_name = "REV")]
    pub revision: Option<String>,
    /// Repository the manifests come from [default: GitHub's or GitLab's CI variables, or `git
    /// remote get-url origin`]
    #[arg(long, env = "SEALGATE_REPOSITORY", value_name = "URL")]
    pub repository: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run gator Suite files (test.gatekeeper.sh/v1alpha1); `gator verify` exit codes
    Verify {
        /// Suite files or directories (`dir/...` as in gator) [default: .]
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Only tests whose name matches this regular expression
        #[arg(long, value_name = "REGEX")]
        run: Option<String>,
        /// Time limit for one policy evaluation
        #[arg(long, default_value = "2s", value_parser = sealgate_core::duration::parse, value_name = "DURATION")]
        eval_timeout: std::time::Duration,
        /// Print every test case and its time, as `gator verify -v` does [default: a line per
        /// suite, and each failure]
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Which code of a ConstraintTemplate is evaluated: `auto` as Gatekeeper (its CEL when it
        /// has some, else its Rego), or only `rego` or only `cel`
        #[arg(long, value_enum, default_value_t = sealgate_core::policy::TemplateCode::Auto, env = "SEALGATE_TEMPLATE_CODE")]
        template_code: sealgate_core::policy::TemplateCode,
    },
    /// Measure how fast policies review objects, as `gator bench` does: setup, reviews/s,
    /// latency percentiles, violations; save a baseline and fail on a regression against it
    Bench(BenchArgs),
}

/// `sealgate policy bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Files or directories with ConstraintTemplates, Constraints and the objects to review
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The same, as gator takes them (may be repeated)
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,
    /// Measured rounds over every object
    #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub iterations: u32,
    /// Rounds before measuring
    #[arg(long, default_value_t = 10)]
    pub warmup: u32,
    /// Reviews at once (threads), as a webhook under load
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Which code of the templates runs: `auto` as Gatekeeper chooses (CEL where a template has
    /// it), `rego`, `cel`, or `all` (rego, then cel)
    #[arg(short = 'e', long, value_enum, default_value_t = BenchEngine::Auto)]
    pub engine: BenchEngine,
    /// Also time each constraint on its own
    #[arg(long)]
    pub stats: bool,
    /// Output format: gator's table, or the results as JSON or YAML
    #[arg(short = 'o', long, value_enum, default_value_t = BenchFormat::Table)]
    pub output: BenchFormat,
    /// Save the results as a baseline (JSON, or YAML for .yaml/.yml)
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Compare with a saved baseline; exit 1 on a regression past both thresholds
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Regression threshold, percent
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_percent)]
    pub threshold: f64,
    /// Smallest absolute increase that counts as a regression (e.g. 1ms)
    #[arg(long, default_value = "0ms", value_parser = sealgate_core::duration::parse, value_name = "DURATION")]
    pub min_threshold: std::time::Duration,
}

fn non_negative_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a percentage (a number, 0 or more)")),
    }
}

/// `policy bench --engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchEngine {
    /// As Gatekeeper chooses: a template's CEL when it has some, else its Rego
    Auto,
    /// Rego only
    Rego,
    /// CEL only
    Cel,
    /// Rego, then CEL
    All,
}

/// `policy bench -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    /// gator's table
    Table,
    /// JSON, as gator's
    Json,
    /// YAML
    Yaml,
}

/// A key id or its prefix, as `keys list` prints it: checked before any key is fetched.
fn key_id_prefix(s: &str) -> Result<String, String> {
    let s = s.to_ascii_lowercase();
    if (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err("give at least 8 hex digits of the key id (64 at most)".into())
    }
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Write a new attestation key pair, as `cosign generate-key-pair` does: PREFIX.key
    /// (encrypted with COSIGN_PASSWORD, cosign's format) and PREFIX.pub
    Keygen {
        /// Signature algorithm
        #[arg(long, value_enum, default_value_t = AttestAlgorithm::EcdsaP256)]
        algorithm: AttestAlgorithm,
        /// Path prefix of the two files
        #[arg(long, default_value = "cosign", value_name = "PREFIX")]
        output_key_prefix: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AttestAlgorithm {
    /// ECDSA P-256 with SHA-256 (cosign's default)
    EcdsaP256,
    /// Ed25519
    Ed25519,
}

#[derive(Debug, clap::Args)]
pub struct VerifyAttestationArgs {
    /// Attestation files (YAML or JSON: Attestation resources or bare DSSE envelopes)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Trusted public key (PEM; repeatable), e.g. cosign.pub
    #[arg(long = "key", required = true, value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// Refuse attestations linted longer ago than this (e.g. 30d)
    #[arg(long, value_parser = sealgate_core::duration::parse, value_name = "DURATION")]
    pub max_age: Option<std::time::Duration>,
    /// Repository the attestations must come from (repeatable), as the webhook's
    /// --attestation-repository
    #[arg(long = "repository", value_name = "URL")]
    pub repositories: Vec<String>,
    /// Objects to check against the attestations (e.g. `kubectl get deploy -A -o yaml`): each
    /// must be covered and still hold what was attested (repeatable)
    #[arg(long = "object", value_name = "FILE")]
    pub objects: Vec<PathBuf>,
    /// Field to leave out of that check: `[KIND[,KIND]:]PATH`, `*` for any key (repeatable)
    #[arg(long = "ignore-field", value_name = "FIELD")]
    pub ignore_fields: Vec<String>,
    /// Container name a mutating webhook injects into pod templates (repeatable), as the
    /// webhook's --attestation-allow-injected
    #[arg(long = "allow-injected", value_name = "CONTAINER")]
    pub allow_injected: Vec<String>,
}

impl Command {
    /// `--keys DIR` given to the command, else before it; `None` for commands without a store.
    pub fn key_store<'a>(
        &'a self,
        before: Option<&'a std::path::Path>,
    ) -> Option<&'a std::path::Path> {
        let own = match self {
            Command::Keys(a) => &a.store,
            Command::Seal(a) => &a.store,
            Command::Unseal(a) => &a.store,
            Command::Reseal(a) => &a.store,
            Command::Validate(a) => &a.store,
            Command::Cert(a) => &a.store,
            _ => return None,
        };
        own.dir.as_deref().or(before)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `-o` means one thing wherever it exists: `--output`, the output format (issue 24,
    /// item 15); and `--keys` is offered only by the commands that read a key store.
    #[test]
    fn one_meaning_for_o_and_keys_only_where_used() {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
            for a in cmd.get_arguments() {
                out.push((path.to_string(), a.clone()));
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut cmd = super::Cli::command();
        cmd.build();
        let mut args = Vec::new();
        walk(&cmd, "sealgate", &mut args);
        let mut with_o = 0;
        for (path, a) in &args {
            if a.get_short() == Some('o') {
                with_o += 1;
                assert_eq!(a.get_long(), Some("output"), "{path}: -o is not --output");
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(
                    help.starts_with("Output format"),
                    "{path}: -o help {help:?}"
                );
            }
        }
        assert!(with_o >= 4, "seal, unseal, keys list and lint have -o");
        let store_users = ["keys", "seal", "unseal", "reseal", "validate", "cert"];
        for (path, a) in &args {
            let mut words = path.split(' ').skip(1);
            if a.get_long() == Some("keys") && a.get_id() != "keys" {
                let top = words.next().unwrap_or_default();
                assert!(
                    store_users.contains(&top),
                    "{path} offers --keys, which it ignores"
                );
            }
        }
        for sub in [
            "lint",
            "policy",
            "attest",
            "verify-attestation",
            "completions",
            "man",
        ] {
            let c = cmd.find_subcommand(sub).unwrap();
            assert!(
                c.get_arguments().all(|a| a.get_long() != Some("keys")),
                "{sub} offers --keys"
            );
        }
    }
}
