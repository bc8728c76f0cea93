//! The webhook process: its flags ([`Config`]), [`run`] (serve reviews until shutdown) and
//! [`audit`] (the background scan), wired from the library's modules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealgate_core::policy::Sources;
use sealgate_core::policy::flags::PolicyArgs;
use sealgate_service::LogFormat;

use crate::admission::Exemptions;
use crate::audit::{self, AuditError, AuditFormat};
use crate::namespaces::NamespaceCache;
use crate::provenance::{self, ProvenanceConfig};
use crate::self_tls::{self, SelfTlsConfig};
use crate::state::{AppState, EvalConfig};
use crate::{inventory, reload, server};
use sealgate_core::attest::compare::IgnoredField;
use sealgate_core::attest::keys::VerifyingKey;
use sealgate_core::attest::verify::{self, Rules, TrustedKey};

/// How the webhook runs: every flag of `sealgate-webhook` (those marked global also apply to
/// `audit`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// HTTPS address for POST /validate, /healthz and /readyz
    #[arg(long, env = "SEALGATE_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Serving certificate (PEM); reloaded when it changes
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_TLS_CERT",
        default_value = "/certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM)
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_TLS_KEY",
        default_value = "/certs/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Serve plain HTTP instead of TLS (local testing only: the API server requires TLS)
    #[arg(long)]
    pub insecure_http: bool,
    /// Self-contained TLS: keep a CA and serving certificate in the Secret --tls-secret, write the
    /// pair to --tls-cert/--tls-key, and keep the caBundle of --webhook-config current
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_SELF_SIGNED_TLS",
        conflicts_with = "insecure_http"
    )]
    pub self_signed_tls: bool,
    /// Secret for --self-signed-tls (in the webhook's namespace)
    #[arg(long, default_value = "sealgate-webhook-tls")]
    pub tls_secret: String,
    /// ValidatingWebhookConfiguration whose caBundle --self-signed-tls keeps current
    #[arg(long, default_value = "sealgate-webhook")]
    pub webhook_config: String,
    /// Service the API server calls (the certificate's DNS names) for --self-signed-tls
    #[arg(long, default_value = "sealgate-webhook")]
    pub service_name: String,
    /// Another name for the --self-signed-tls certificate, an IP address or a DNS name
    /// (repeatable): for a webhook the API server reaches by `url:`, e.g. one run outside the
    /// cluster
    #[arg(long = "tls-san", value_name = "IP|DNS", value_parser = crate::self_tls::parse_san, requires = "self_signed_tls")]
    pub tls_sans: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// How long inventory changes (the kinds a Gatekeeper Config or SyncSet among the policies
    /// syncs) are collected before the bundle is rebuilt with them
    #[arg(long, default_value = "1s", value_parser = sealgate_core::duration::parse)]
    pub inventory_debounce: Duration,
    /// Where namespaceSelector gets Namespace labels: `cluster` (watch Namespaces with the
    /// in-cluster or kubeconfig credentials), or files with Namespace objects
    #[arg(
        long = "namespace-labels",
        env = "SEALGATE_WEBHOOK_NAMESPACE_LABELS",
        value_delimiter = ',',
        default_value = "cluster"
    )]
    pub namespace_labels: Vec<String>,
    /// Namespaces always admitted (repeatable) [default: kube-system and the webhook's own]
    #[arg(
        long = "exempt-namespace",
        env = "SEALGATE_WEBHOOK_EXEMPT_NAMESPACES",
        value_delimiter = ','
    )]
    pub exempt_namespaces: Vec<String>,
    /// Deadline for one review, below the webhook configuration's timeoutSeconds
    #[arg(long, default_value = "2500ms", value_parser = sealgate_core::duration::parse)]
    pub deadline: Duration,
    /// Admit (with a warning) instead of deny a review whose evaluation passes the deadline
    #[arg(long)]
    pub allow_on_timeout: bool,
    /// Largest accepted request body, in bytes
    #[arg(long, default_value_t = 7 << 20)]
    pub max_body_bytes: usize,
    /// Evaluation threads: reviews evaluated at once [default: the number of cores]
    #[arg(long, env = "SEALGATE_WEBHOOK_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Threads for TLS, HTTP and JSON (the async runtime) [default: a quarter of the cores, at
    /// least 1]
    #[arg(long, env = "SEALGATE_WEBHOOK_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// How often to check the policy directories and the certificate for changes (and, with
    /// --self-signed-tls, whether the serving certificate needs renewal)
    #[arg(long, default_value = "10s", value_parser = sealgate_core::duration::parse)]
    pub reload_interval: Duration,
    /// Log format
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Public key attestations may be signed with (PEM, e.g. cosign.pub; repeatable).
    /// `FILE@TIME` refuses its signatures after TIME (RFC 3339). Turns provenance checks on
    #[arg(
        long = "attestation-key",
        env = "SEALGATE_ATTESTATION_KEYS",
        value_delimiter = ',',
        value_name = "FILE[@TIME]",
        value_parser = parse_key_spec
    )]
    pub attestation_keys: Vec<KeySpec>,
    /// A withdrawn attestation key (repeatable): attestations it signed are refused, saying so
    #[arg(
        long = "attestation-revoked-key",
        value_name = "FILE",
        requires = "attestation_keys"
    )]
    pub attestation_revoked_keys: Vec<PathBuf>,
    /// Refuse attestations linted longer ago than this: the rollback window. Checked at every
    /// admission, as is each key's @TIME
    #[arg(long, default_value = "90d", value_parser = sealgate_core::duration::parse, value_name = "DURATION")]
    pub attestation_max_age: Duration,
    /// Repository attestations may come from (their `predicate.repository`; repeatable).
    /// Without it, an attestation linted in any repository by a trusted key admits
    #[arg(
        long = "attestation-repository",
        value_name = "URL",
        requires = "attestation_keys"
    )]
    pub attestation_repositories: Vec<String>,
    /// Field left out of the attested-manifest check: `[KIND[,KIND]:]PATH`, `*` for any key
    /// (repeatable; e.g. `Deployment:spec.replicas` with an autoscaler)
    #[arg(
        long = "attestation-ignore-field",
        value_name = "FIELD",
        requires = "attestation_keys"
    )]
    pub attestation_ignore_fields: Vec<String>,
    /// A container a mutating webhook injects into pod templates (e.g. istio-proxy), which
    /// attested manifests do not hold: admitted by that name (repeatable; none by default)
    #[arg(
        long = "attestation-allow-injected",
        value_name = "CONTAINER",
        requires = "attestation_keys"
    )]
    pub attestation_allow_injected: Vec<String>,
    /// Require provenance for every object, not only in namespaces labelled
    /// sealgate.dev/provenance=required
    #[arg(long, requires = "attestation_keys")]
    pub provenance_required: bool,
    /// A user whose changes need no attestation: an operator that creates objects (e.g.
    /// system:serviceaccount:cert-manager:cert-manager). Kubernetes' controllers always are
    #[arg(
        long = "provenance-exempt-user",
        value_name = "USER",
        requires = "attestation_keys"
    )]
    pub provenance_exempt_users: Vec<String>,
}

/// Where namespaceSelector gets Namespace labels (`--namespace-labels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceSource {
    /// Watch the cluster's Namespaces.
    Cluster,
    /// Namespace objects in files.
    Files(Vec<PathBuf>),
}

/// `--attestation-key FILE[@TIME]`, parsed when the flags are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The public key's file.
    pub file: PathBuf,
    /// Signatures by it are refused after this time.
    pub not_after: Option<time::OffsetDateTime>,
}

fn parse_key_spec(spec: &str) -> Result<KeySpec, String> {
    let (file, until) = match spec.rsplit_once('@') {
        Some((f, t)) => (f, Some(t)),
        None => (spec, None),
    };
    let not_after = until
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| format!("{t:?} is not an RFC 3339 time (FILE@2027-01-01T00:00:00Z)"))
        })
        .transpose()?;
    Ok(KeySpec {
        file: PathBuf::from(file),
        not_after,
    })
}

/// Why the webhook stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bundle(#[from] sealgate_core::policy::BundleErrors),
    #[error("--namespace-labels: {0}")]
    NamespaceLabels(String),
    #[error("cannot start the evaluation threads: {0}")]
    Pool(#[source] std::io::Error),
    #[error("cannot reach the Kubernetes API ({why}): {source}")]
    Kube {
        why: &'static str,
        source: kube::Error,
    },
    #[error("cannot load the serving certificate {cert} / {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The flags, checked: what [`run`] starts from. Nothing is bound, watched or asked of the API
/// server before this exists, so a bad flag costs nothing and says which flag.
#[derive(Debug)]
pub struct Settings {
    /// Where Namespace labels come from.
    pub namespaces: NamespaceSource,
    /// Provenance checks, with the trusted keys read and parsed.
    pub provenance: Option<ProvenanceConfig>,
    /// The policy bundle's sources.
    pub sources: Sources,
    /// How reviews are evaluated.
    pub eval: EvalConfig,
    /// The webhook's own namespace (exempt by default; where --self-signed-tls keeps its Secret).
    pub own_namespace: String,
}

/// A flag that cannot be used: the process exits 2 saying which.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--namespace-labels: {0}")]
    NamespaceLabels(String),
    #[error("{flag} {}: {reason}", path.display())]
    KeyFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "--attestation-key {trusted} is also given as --attestation-revoked-key {revoked}: a key is trusted or revoked, not both (remove it from --attestation-key)"
    )]
    TrustedAndRevoked { trusted: String, revoked: String },
    #[error("--attestation-ignore-field: {0}")]
    IgnoreField(String),
    #[error("{0} is too long")]
    TooLong(&'static str),
    #[error("{flag} {value}: must be at least {min}")]
    TooSmall {
        flag: &'static str,
        value: u128,
        min: u128,
    },
    #[error("--listen and --metrics-listen are both {0}: give each its own port")]
    SameAddress(SocketAddr),
    #[error(
        "{flag} {}: {reason} (mount the serving certificate there, or use --self-signed-tls)",
        path.display()
    )]
    TlsFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl Config {
    /// Check every flag and combination, and read what they name (keys, certificates): a bad flag
    /// is refused here, before a socket opens.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let at_least = |flag: &'static str, value: u128, min: u128| {
            if value < min {
                Err(ConfigError::TooSmall { flag, value, min })
            } else {
                Ok(())
            }
        };
        at_least("--concurrency", self.concurrency.unwrap_or(1) as u128, 1)?;
        at_least("--io-threads", self.io_threads.unwrap_or(1) as u128, 1)?;
        at_least("--max-body-bytes", self.max_body_bytes as u128, 1024)?;
        at_least("--deadline (ms)", self.deadline.as_millis(), 1)?;
        at_least(
            "--reload-interval (ms)",
            self.reload_interval.as_millis(),
            1,
        )?;
        let own_namespace = sealgate_service::own_namespace(None);
        let exempt_namespaces = if self.exempt_namespaces.is_empty() {
            vec!["kube-system".into(), own_namespace.clone()]
        } else {
            self.exempt_namespaces.clone()
        };
        Ok(Settings {
            namespaces: self.namespace_source()?,
            provenance: self.provenance()?,
            sources: self.sources(),
            eval: EvalConfig {
                settings: Exemptions { exempt_namespaces },
                deadline: self.deadline,
                allow_on_timeout: self.allow_on_timeout,
                max_body_bytes: self.max_body_bytes,
                concurrency: self.concurrency(),
            },
            own_namespace,
        })
    }

    /// [`Config::validate`], and what serving needs besides (`audit` does not serve): two
    /// listeners on different addresses, and the serving certificate unless it is plain HTTP or
    /// self-signed.
    pub fn validate_serving(&self) -> Result<Settings, ConfigError> {
        if self.listen == self.metrics_listen {
            return Err(ConfigError::SameAddress(self.listen));
        }
        if !self.insecure_http && !self.self_signed_tls {
            for (flag, path) in [("--tls-cert", &self.tls_cert), ("--tls-key", &self.tls_key)] {
                std::fs::metadata(path).map_err(|e| ConfigError::TlsFile {
                    flag,
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        self.validate()
    }

    /// The provenance configuration, when attestation keys are given.
    fn provenance(&self) -> Result<Option<ProvenanceConfig>, ConfigError> {
        if self.attestation_keys.is_empty() {
            return Ok(None);
        }
        let read = |flag: &'static str, path: &std::path::Path| {
            let bad = |reason: String| ConfigError::KeyFile {
                flag,
                path: path.to_path_buf(),
                reason,
            };
            let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            VerifyingKey::from_pem(&text).map_err(|e| bad(e.to_string()))
        };
        let mut keys = Vec::new();
        for spec in &self.attestation_keys {
            keys.push(TrustedKey {
                name: spec.file.display().to_string(),
                key: read("--attestation-key", &spec.file)?,
                not_after: spec.not_after,
                revoked: false,
            });
        }
        for path in &self.attestation_revoked_keys {
            keys.push(TrustedKey {
                name: path.display().to_string(),
                key: read("--attestation-revoked-key", path)?,
                not_after: None,
                revoked: true,
            });
        }
        if let Some((trusted, revoked)) = verify::overlapping(&keys).into_iter().next() {
            return Err(ConfigError::TrustedAndRevoked { trusted, revoked });
        }
        let ignored = self
            .attestation_ignore_fields
            .iter()
            .map(|f| IgnoredField::parse(f).map_err(|e| ConfigError::IgnoreField(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Some(ProvenanceConfig {
            keys,
            rules: Rules {
                max_age: Some(
                    time::Duration::try_from(self.attestation_max_age)
                        .map_err(|_| ConfigError::TooLong("--attestation-max-age"))?,
                ),
                ignored,
                repositories: self.attestation_repositories.clone(),
                injected: self.attestation_allow_injected.clone(),
            },
            required_everywhere: self.provenance_required,
            exempt_users: self.provenance_exempt_users.clone(),
        }))
    }

    /// The bundle's sources, as `sealgate lint` describes them; the engine's per-evaluation timer
    /// is the request deadline.
    pub fn sources(&self) -> Sources {
        self.policy.sources(self.deadline)
    }

    /// `--namespace-labels`: `cluster` alone, or files.
    fn namespace_source(&self) -> Result<NamespaceSource, ConfigError> {
        match self.namespace_labels.as_slice() {
            [only] if only == "cluster" => Ok(NamespaceSource::Cluster),
            files if files.iter().any(|f| f == "cluster") => Err(ConfigError::NamespaceLabels(
                "`cluster` watches the cluster's Namespaces and cannot be combined with files"
                    .into(),
            )),
            files => Ok(NamespaceSource::Files(
                files.iter().map(PathBuf::from).collect(),
            )),
        }
    }

    /// Evaluation threads: `--concurrency`, or one per core.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or_else(cores).max(1)
    }

    /// The async runtime for [`run`] and [`audit`]. Evaluations run on their own threads
    /// (`pool`); the runtime only moves bytes and parses JSON, about a third of an evaluation's
    /// CPU, so more I/O threads than that share of the cores only take turns with the evaluations
    /// (measured: 1 of 2 cores gives ~10 % more throughput and a lower p99 than 2). Its blocking
    /// pool serves only file reads.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(self.io_threads.unwrap_or(cores().div_ceil(4)).max(1))
            .max_blocking_threads(4)
            .build()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn client(why: &'static str) -> Result<kube::Client, RunError> {
    kube::Client::try_default()
        .await
        .map_err(|source| RunError::Kube { why, source })
}

/// Serve admission reviews until SIGTERM or Ctrl-C, then let in-flight reviews finish (up to
/// 25 s, inside the default 30 s termination grace period).
pub async fn run(config: Config, settings: Settings) -> Result<(), RunError> {
    let Settings {
        namespaces: namespace_source,
        provenance,
        sources,
        eval,
        own_namespace,
    } = settings;
    let bundle = reload::build(&sources, Vec::new()).map_err(RunError::Bundle)?;
    let from_cluster = namespace_source == NamespaceSource::Cluster;
    let namespaces = match &namespace_source {
        NamespaceSource::Cluster => NamespaceCache::watched(),
        NamespaceSource::Files(files) => NamespaceCache::fixed(
            reload::namespace_labels_from(files).map_err(RunError::NamespaceLabels)?,
        ),
    };
    tracing::info!(constraints = bundle.constraints().len(), exempt = ?eval.settings.exempt_namespaces, "starting sealgate-webhook");
    let provenance = provenance.map(|c| Arc::new(provenance::Provenance::new(c)));
    let state = AppState::build(bundle, namespaces, provenance, eval).map_err(RunError::Pool)?;
    if from_cluster {
        let client = client("for Namespace labels; or pass --namespace-labels FILE").await?;
        let _ = state.api.set(client.clone());
        tokio::spawn(state.namespaces.clone().watch(client.clone()));
        if let Some(p) = &state.provenance {
            tokio::spawn(provenance::watch(client.clone(), p.clone()));
        }
        tokio::spawn(inventory::run(
            client,
            state.inventory.clone(),
            reload::Rebuilder::new(state.clone(), sources.clone()),
            config.inventory_debounce,
        ));
    } else if let Some(p) = &state.provenance {
        // Attestations are read from the cluster only: without it, none is trusted.
        tracing::warn!(
            "attestation keys are set, but --namespace-labels is not `cluster`: no Attestation is watched, so provenance admits nothing it requires"
        );
        p.replace_all(&[], time::OffsetDateTime::now_utc());
    } else if !state.bundle.load().sync_kinds().is_empty() {
        tracing::warn!(
            "the policies sync kinds into data.inventory, but --namespace-labels is not `cluster`: nothing is watched, the inventory stays empty"
        );
    }
    tokio::spawn(reload::watch_policies(
        state.clone(),
        sources,
        config.reload_interval,
    ));

    if config.self_signed_tls {
        let client = client("--self-signed-tls needs it").await?;
        let cfg = SelfTlsConfig {
            namespace: own_namespace,
            secret: config.tls_secret.clone(),
            webhook_config: config.webhook_config.clone(),
            service: config.service_name.clone(),
            extra_names: config.tls_sans.clone(),
            cert_path: config.tls_cert.clone(),
            key_path: config.tls_key.clone(),
        };
        let material = self_tls::ensure_until_ready(&client, &cfg).await;
        tokio::spawn(self_tls::run(
            client,
            cfg,
            material.ca_cert,
            config.reload_interval,
            std::future::pending(),
        ));
    }
    serve(&config, state).await
}

async fn serve(config: &Config, state: Arc<AppState>) -> Result<(), RunError> {
    let handle = axum_server::Handle::new();
    let metrics = tokio::spawn({
        let handle = handle.clone();
        let app = server::metrics_router(state.clone());
        axum_server::bind(config.metrics_listen)
            .handle(handle)
            .serve(app.into_make_service())
    });
    tokio::spawn({
        let handle = handle.clone();
        async move {
            sealgate_service::shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight reviews");
            handle.graceful_shutdown(Some(Duration::from_secs(25)));
        }
    });
    let app = server::router(state.clone()).into_make_service();
    let served = if config.insecure_http {
        tracing::warn!("serving plain HTTP: for local testing only");
        axum_server::bind(config.listen)
            .acceptor(axum_server::accept::NoDelayAcceptor::new())
            .handle(handle)
            .serve(app)
            .await
    } else {
        let tls =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&config.tls_cert, &config.tls_key)
                .await
                .map_err(|source| RunError::Tls {
                    cert: config.tls_cert.clone(),
                    key: config.tls_key.clone(),
                    source,
                })?;
        tokio::spawn(reload::watch_tls(
            state,
            tls.clone(),
            config.tls_cert.clone(),
            config.tls_key.clone(),
            config.reload_interval,
        ));
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        axum_server::bind(config.listen)
            .acceptor(acceptor)
            .handle(handle)
            .serve(app)
            .await
    };
    metrics.abort();
    served.map_err(RunError::Serve)
}

/// `sealgate-webhook audit`: evaluate the cluster's objects at the point `audit` and print the
/// report as `format` (kinds that could not be listed go to stderr). Returns whether an object
/// violates a deny constraint.
pub async fn audit(settings: &Settings, format: AuditFormat) -> Result<bool, RunError> {
    let client = client("for audit").await?;
    let report = audit::run(client, &settings.sources).await?;
    print!("{}", audit::render_audit_report(&report, format));
    for e in &report.errors {
        eprintln!("warning: not audited: {e}");
    }
    Ok(report.denies() > 0)
}
