//! The controller process: its flags ([`Config`]) and [`run`], which wires the HTTP API, metrics,
//! leader election, the key manager and the reconcilers together until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sealgate_core::keys::{KeyGenOptions, KeyRing};
use sealgate_service::LogFormat;
use tokio::sync::watch;

use crate::crd::{BitnamiSealedSecret, SealedSecret};
use crate::http;
use crate::keys::KeyManager;
use crate::keys::plan::RenewalPolicy;
use crate::leader::{Elector, LeaseConfig};
use crate::metrics::{self, Metrics};
use crate::reconcile::{self, Context, ReconcileConfig};
use crate::throttle::{Bucket, ThrottleLayer};

/// How the controller runs: every flag of `sealgate-controller` (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Namespace holding the key Secrets and the leader Lease [default: $POD_NAMESPACE, the
    /// service account's namespace, or sealgate-system]
    #[arg(long, env = "SEALGATE_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's identity for the Lease and events [default: $POD_NAME or the host name]
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Plain-HTTP address for /v1/cert.pem, /v1/keys, /v1/verify, /v1/rotate, /healthz, /readyz
    #[arg(long, env = "SEALGATE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics
    #[arg(long, env = "SEALGATE_METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,
    /// Generate a new sealing key this often, counted from the newest key (0 disables)
    #[arg(long, env = "SEALGATE_KEY_RENEW_PERIOD", default_value = "30d", value_parser = sealgate_core::duration::parse)]
    pub key_renew_period: Duration,
    /// Generate a new key at start if the newest one predates this time (RFC 3339, or RFC 2822
    /// as `date -R` prints): early renewal after a suspected compromise
    #[arg(long, env = "SEALGATE_KEY_CUTOFF_TIME", value_parser = parse_time)]
    pub key_cutoff_time: Option<time::OffsetDateTime>,
    /// RSA size of generated keys
    #[arg(long, env = "SEALGATE_KEY_SIZE", default_value_t = 4096)]
    pub key_size: usize,
    /// Validity of generated certificates
    #[arg(long, env = "SEALGATE_KEY_TTL", default_value = "3650d", value_parser = sealgate_core::duration::parse)]
    pub key_ttl: Duration,
    /// Common name of generated certificates
    #[arg(long, env = "SEALGATE_KEY_CN", default_value = "sealgate")]
    pub key_cn: String,
    /// How often to look for keys created elsewhere (another replica, an import, a restore)
    #[arg(long, env = "SEALGATE_KEY_POLL_PERIOD", default_value = "30s", value_parser = sealgate_core::duration::parse)]
    pub key_poll_period: Duration,
    /// SealedSecrets reconciled at once
    #[arg(long, env = "SEALGATE_WORKERS", default_value_t = 8)]
    pub workers: u16,
    /// How often a synced SealedSecret is checked again, repairing hand edits of its Secret
    #[arg(long, env = "SEALGATE_RESYNC_PERIOD", default_value = "10m", value_parser = sealgate_core::duration::parse)]
    pub resync_period: Duration,
    /// Longest wait between retries of a failing SealedSecret (retries never stop)
    #[arg(long, env = "SEALGATE_MAX_BACKOFF", default_value = "5m", value_parser = sealgate_core::duration::parse)]
    pub max_backoff: Duration,
    /// Sustained Kubernetes API requests per second
    #[arg(long, env = "SEALGATE_KUBE_API_QPS", default_value_t = 50.0)]
    pub kube_api_qps: f64,
    /// Kubernetes API requests allowed in a burst
    #[arg(long, env = "SEALGATE_KUBE_API_BURST", default_value_t = 100)]
    pub kube_api_burst: u32,
    /// Also reconcile bitnami.com/v1alpha1 SealedSecrets (drop-in migration from Bitnami's
    /// controller: stop it first)
    #[arg(long, env = "SEALGATE_BITNAMI")]
    pub bitnami: bool,
    /// Run leader election (required with more than one replica)
    #[arg(long, env = "SEALGATE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader Lease
    #[arg(
        long,
        env = "SEALGATE_LEASE_NAME",
        default_value = "sealgate-controller"
    )]
    pub lease_name: String,
    /// Log format
    #[arg(long, env = "SEALGATE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot find Kubernetes credentials (in-cluster service account or KUBECONFIG): {0}")]
    Credentials(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("leader election: {0}")]
    Leader(String),
    #[error("the {0} task failed: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    #[error("the {what} failed: {source}")]
    Serve {
        what: &'static str,
        source: std::io::Error,
    },
}

/// `--key-cutoff-time`: RFC 3339, or RFC 2822 as `date -R` prints.
pub fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(s, &Rfc2822))
        .map_err(|_| format!("{s:?} is not an RFC 3339 or RFC 2822 time (e.g. `date -R`)"))
}

/// A flag that cannot be used: the process exits 2 saying which.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is too long")]
    TooLong(&'static str),
    #[error("--key-size {0}: use 2048, 3072, 4096 or 8192")]
    KeySize(usize),
    #[error("{flag} {value}: must be more than zero")]
    NotPositive { flag: &'static str, value: String },
    #[error("--listen and --metrics-listen are both {0}: give each its own port")]
    SameAddress(SocketAddr),
    #[error("--lease-name is empty")]
    NoLeaseName,
}

/// The flags, checked: what [`run`] starts from. Nothing is bound, elected or asked of the API
/// server before this exists.
#[derive(Debug, Clone)]
pub struct Settings {
    /// When new sealing keys are generated.
    pub renewal: RenewalPolicy,
    /// How they are generated.
    pub keygen: KeyGenOptions,
}

impl Config {
    /// Check every flag and combination: a bad one is refused here, before a socket opens, a
    /// lease is taken or the API server is called.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let positive = |flag: &'static str, ok: bool, value: String| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::NotPositive { flag, value })
            }
        };
        positive("--workers", self.workers > 0, self.workers.to_string())?;
        positive(
            "--kube-api-qps",
            self.kube_api_qps.is_finite() && self.kube_api_qps > 0.0,
            self.kube_api_qps.to_string(),
        )?;
        positive(
            "--kube-api-burst",
            self.kube_api_burst > 0,
            self.kube_api_burst.to_string(),
        )?;
        for (flag, d) in [
            ("--key-poll-period", self.key_poll_period),
            ("--resync-period", self.resync_period),
            ("--max-backoff", self.max_backoff),
            ("--key-ttl", self.key_ttl),
        ] {
            positive(flag, !d.is_zero(), format!("{d:?}"))?;
        }
        if self.listen == self.metrics_listen {
            return Err(ConfigError::SameAddress(self.listen));
        }
        if self.lease_name.trim().is_empty() {
            return Err(ConfigError::NoLeaseName);
        }
        if ![2048, 3072, 4096, 8192].contains(&self.key_size) {
            return Err(ConfigError::KeySize(self.key_size));
        }
        let renewal = RenewalPolicy {
            period: (!self.key_renew_period.is_zero())
                .then(|| time::Duration::try_from(self.key_renew_period))
                .transpose()
                .map_err(|_| ConfigError::TooLong("--key-renew-period"))?,
            cutoff: self.key_cutoff_time,
        };
        let keygen = KeyGenOptions {
            rsa_bits: self.key_size,
            validity: time::Duration::try_from(self.key_ttl)
                .map_err(|_| ConfigError::TooLong("--key-ttl"))?,
            common_name: self.key_cn.clone(),
            ..KeyGenOptions::default()
        };
        Ok(Settings { renewal, keygen })
    }
}

/// A future that completes once shutdown is signalled.
fn on_shutdown(
    rx: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Bind `addr` (failing before anything else starts) and serve `app` on it until shutdown, with
/// each request's peer address (the API's rate limit is per client).
async fn serve(
    addr: SocketAddr,
    app: axum::Router,
    stop: &watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    Ok(tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(on_shutdown(stop))
        .into_future(),
    ))
}

/// Run the controller until SIGTERM or Ctrl-C (or until it loses its lease: a leader that loses
/// it must stop writing at once, so it exits and Kubernetes restarts it as a follower).
pub async fn run(args: Config, settings: Settings) -> Result<(), RunError> {
    let Settings { renewal, keygen } = settings;
    let namespace = sealgate_service::own_namespace(args.namespace.clone());
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sealgate-controller".into());
    let config = kube::Config::infer().await?;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(RunError::Client)?
        .with_layer(&ThrottleLayer(Arc::new(Bucket::new(
            args.kube_api_qps,
            args.kube_api_burst,
        ))))
        .build();

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        sealgate_service::shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });

    let ring = Arc::new(ArcSwap::from_pointee(KeyRing::default()));
    let metrics = Arc::new(Metrics::default());

    // Every replica serves the HTTP API and metrics from the shared key Secrets.
    let api = http::router(http::ApiState::shared(ring.clone()));
    let api_server = serve(args.listen, api, &stop_rx).await?;
    let metrics_server = serve(
        args.metrics_listen,
        metrics::router(metrics.clone()),
        &stop_rx,
    )
    .await?;
    tracing::info!(api = %args.listen, metrics = %args.metrics_listen, namespace = %namespace, identity = %identity, "serving");

    // Leader election: only the leader generates keys and reconciles.
    let (_always_leader, mut leading) = watch::channel(!args.leader_elect);
    let mut elector_task = None;
    if args.leader_elect {
        let (elector, rx) = Elector::new(
            client.clone(),
            LeaseConfig::new(&args.lease_name, &namespace, &identity),
        );
        leading = rx;
        elector_task = Some(tokio::spawn(elector.run(on_shutdown(&stop_rx))));
    }
    {
        let metrics = metrics.clone();
        let mut leading = leading.clone();
        tokio::spawn(async move {
            loop {
                metrics.leader.set(i64::from(*leading.borrow_and_update()));
                if leading.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    let keys = KeyManager::new(
        client.clone(),
        namespace.clone(),
        renewal,
        keygen,
        ring.clone(),
        metrics.clone(),
    );
    let key_task =
        tokio::spawn(keys.run(args.key_poll_period, leading.clone(), on_shutdown(&stop_rx)));

    let ctx = Context::new(
        client,
        ring,
        metrics,
        ReconcileConfig {
            resync: args.resync_period,
            backoff_cap: args.max_backoff,
            workers: args.workers,
            ..ReconcileConfig::default()
        },
        Some(identity),
    );
    let controllers = {
        let stop = stop_rx.clone();
        let bitnami = args.bitnami;
        async move {
            let mut stop2 = stop.clone();
            tokio::select! {
                r = leading.wait_for(|l| *l) => if r.is_err() { return },
                _ = stop2.wait_for(|s| *s) => return,
            }
            tracing::info!(bitnami, "reconciling SealedSecrets");
            let ours = reconcile::run::<SealedSecret>(ctx.clone(), on_shutdown(&stop));
            if bitnami {
                let theirs = reconcile::run::<BitnamiSealedSecret>(ctx, on_shutdown(&stop));
                futures::join!(ours, theirs);
            } else {
                ours.await;
            }
        }
    };
    let controllers = tokio::spawn(controllers);

    // A leader that loses its lease must stop writing at once: exit, and let Kubernetes
    // restart the pod as a follower.
    if let Some(task) = elector_task {
        task.await
            .map_err(|e| RunError::Task("leader election", e))?
            .map_err(|e| RunError::Leader(e.to_string()))?;
    }
    for (what, task) in [("controller", controllers), ("key manager", key_task)] {
        task.await.map_err(|e| RunError::Task(what, e))?;
    }
    for (what, task) in [
        ("HTTP server", api_server),
        ("metrics server", metrics_server),
    ] {
        task.await
            .map_err(|e| RunError::Task(what, e))?
            .map_err(|source| RunError::Serve { what, source })?;
    }
    Ok(())
}
