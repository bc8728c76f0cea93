//! `sealgate-controller`: flags and wiring; the work is in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use sealgate_controller::crd::{BitnamiSealedSecret, SealedSecret};
use sealgate_controller::http;
use sealgate_controller::keys::KeyManager;
use sealgate_controller::keys::plan::RenewalPolicy;
use sealgate_controller::leader::{Elector, LeaseConfig};
use sealgate_controller::metrics::{self, Metrics};
use sealgate_controller::reconcile::{self, Context, ReconcileConfig};
use sealgate_controller::throttle::{Bucket, ThrottleLayer};
use sealgate_core::keys::{KeyGenOptions, KeyRing};
use tokio::sync::watch;

/// sealgate's controller: unseals SealedSecrets into Secrets, manages the sealing keys and serves
/// their public parts. With no subcommand, runs the controller.
#[derive(Debug, Parser)]
#[command(
    name = "sealgate-controller",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the SealedSecret CustomResourceDefinition (what deploy/crds/ holds)
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespace holding the key Secrets and the leader Lease [default: $POD_NAMESPACE, the
    /// service account's namespace, or sealgate-system]
    #[arg(long, env = "SEALGATE_NAMESPACE")]
    namespace: Option<String>,
    /// This replica's identity for the Lease and events [default: $POD_NAME or the host name]
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Plain-HTTP address for /v1/cert.pem, /v1/keys, /v1/verify, /v1/rotate, /healthz, /readyz
    #[arg(long, env = "SEALGATE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Plain-HTTP address for /metrics
    #[arg(long, env = "SEALGATE_METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    metrics_listen: SocketAddr,
    /// Generate a new sealing key this often, counted from the newest key (0 disables)
    #[arg(long, env = "SEALGATE_KEY_RENEW_PERIOD", default_value = "30d", value_parser = sealgate_core::duration::parse)]
    key_renew_period: Duration,
    /// Generate a new key at start if the newest one predates this time (RFC 3339, or RFC 2822
    /// as `date -R` prints): early renewal after a suspected compromise
    #[arg(long, env = "SEALGATE_KEY_CUTOFF_TIME", value_parser = parse_time)]
    key_cutoff_time: Option<time::OffsetDateTime>,
    /// RSA size of generated keys
    #[arg(long, env = "SEALGATE_KEY_SIZE", default_value_t = 4096)]
    key_size: usize,
    /// Validity of generated certificates
    #[arg(long, env = "SEALGATE_KEY_TTL", default_value = "3650d", value_parser = sealgate_core::duration::parse)]
    key_ttl: Duration,
    /// Common name of generated certificates
    #[arg(long, env = "SEALGATE_KEY_CN", default_value = "sealgate")]
    key_cn: String,
    /// How often to look for keys created elsewhere (another replica, an import, a restore)
    #[arg(long, env = "SEALGATE_KEY_POLL_PERIOD", default_value = "30s", value_parser = sealgate_core::duration::parse)]
    key_poll_period: Duration,
    /// SealedSecrets reconciled at once
    #[arg(long, env = "SEALGATE_WORKERS", default_value_t = 8)]
    workers: u16,
    /// How often a synced SealedSecret is checked again, repairing hand edits of its Secret
    #[arg(long, env = "SEALGATE_RESYNC_PERIOD", default_value = "10m", value_parser = sealgate_core::duration::parse)]
    resync_period: Duration,
    /// Longest wait between retries of a failing SealedSecret (retries never stop)
    #[arg(long, env = "SEALGATE_MAX_BACKOFF", default_value = "5m", value_parser = sealgate_core::duration::parse)]
    max_backoff: Duration,
    /// Sustained Kubernetes API requests per second
    #[arg(long, env = "SEALGATE_KUBE_API_QPS", default_value_t = 50.0)]
    kube_api_qps: f64,
    /// Kubernetes API requests allowed in a burst
    #[arg(long, env = "SEALGATE_KUBE_API_BURST", default_value_t = 100)]
    kube_api_burst: u32,
    /// Also reconcile bitnami.com/v1alpha1 SealedSecrets (drop-in migration from Bitnami's
    /// controller: stop it first)
    #[arg(long, env = "SEALGATE_BITNAMI")]
    bitnami: bool,
    /// Run leader election (required with more than one replica)
    #[arg(long, env = "SEALGATE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease
    #[arg(
        long,
        env = "SEALGATE_LEASE_NAME",
        default_value = "sealgate-controller"
    )]
    lease_name: String,
    /// Log format
    #[arg(long, env = "SEALGATE_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(s, &Rfc2822))
        .map_err(|_| format!("{s:?} is not an RFC 3339 or RFC 2822 time (e.g. `date -R`)"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SEALGATE_CHECK_ARGS=1: parse the command line and stop (the documentation test).
    if std::env::var_os("SEALGATE_CHECK_ARGS").is_some() {
        return Ok(());
    }
    if let Some(Command::Crd) = args.command {
        print!("{}", sealgate_controller::crd::crd_yaml());
        return Ok(());
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args.run))
}

fn own_namespace(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sealgate-system".into())
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

async fn run(args: RunArgs) -> Result<()> {
    init_logging(&args.log_format);
    let namespace = own_namespace(args.namespace.clone());
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sealgate-controller".into());
    let config = kube::Config::infer()
        .await
        .context("cannot find Kubernetes credentials (in-cluster service account or KUBECONFIG)")?;
    let client = kube::client::ClientBuilder::try_from(config)
        .context("cannot build the Kubernetes client")?
        .with_layer(&ThrottleLayer(Arc::new(Bucket::new(
            args.kube_api_qps,
            args.kube_api_burst,
        ))))
        .build();

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });

    let ring = Arc::new(ArcSwap::from_pointee(KeyRing::default()));
    let metrics = Arc::new(Metrics::default());

    // Every replica serves the HTTP API and metrics from the shared key Secrets.
    let api = http::router(http::ApiState::shared(ring.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let api_server = tokio::spawn(
        axum::serve(listener, api)
            .with_graceful_shutdown(on_shutdown(&stop_rx))
            .into_future(),
    );
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics::router(metrics.clone()))
            .with_graceful_shutdown(on_shutdown(&stop_rx))
            .into_future(),
    );
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
        RenewalPolicy {
            period: (!args.key_renew_period.is_zero())
                .then(|| time::Duration::try_from(args.key_renew_period))
                .transpose()
                .context("--key-renew-period is too long")?,
            cutoff: args.key_cutoff_time,
        },
        KeyGenOptions {
            rsa_bits: args.key_size,
            validity: time::Duration::try_from(args.key_ttl).context("--key-ttl is too long")?,
            common_name: args.key_cn.clone(),
            ..KeyGenOptions::default()
        },
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
            workers: args.workers.max(1),
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
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("{e}"),
            Err(e) => anyhow::bail!("leader election task failed: {e}"),
        }
    }
    for (what, task) in [("controller", controllers), ("key manager", key_task)] {
        task.await
            .with_context(|| format!("the {what} task failed"))?;
    }
    api_server.await?.context("the HTTP server failed")?;
    metrics_server.await?.context("the metrics server failed")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn init_logging(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}
