//! `sealgate-webhook`: flags and wiring; the work is in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sealgate_core::policy::Sources;
use sealgate_webhook::admission::Settings;
use sealgate_webhook::reload;
use sealgate_webhook::self_tls::{self, SelfTlsConfig};
use sealgate_webhook::{
    server,
    state::{AppState, Config},
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sealgate's validating admission webhook: the `sealgate lint` policies at the cluster's door.
#[derive(Debug, Parser)]
#[command(name = "sealgate-webhook", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// HTTPS address for POST /validate, /healthz and /readyz
    #[arg(long, env = "SEALGATE_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Plain-HTTP address for /metrics
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    metrics_listen: SocketAddr,
    /// Serving certificate (PEM); reloaded when it changes
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_TLS_CERT",
        default_value = "/certs/tls.crt"
    )]
    tls_cert: PathBuf,
    /// Serving key (PEM)
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_TLS_KEY",
        default_value = "/certs/tls.key"
    )]
    tls_key: PathBuf,
    /// Serve plain HTTP instead of TLS (local testing only: the API server requires TLS)
    #[arg(long)]
    insecure_http: bool,
    /// Self-contained TLS: keep a CA and serving certificate in the Secret --tls-secret, write the
    /// pair to --tls-cert/--tls-key, and keep the caBundle of --webhook-config current
    #[arg(
        long,
        env = "SEALGATE_WEBHOOK_SELF_SIGNED_TLS",
        conflicts_with = "insecure_http"
    )]
    self_signed_tls: bool,
    /// Secret for --self-signed-tls (in the webhook's namespace)
    #[arg(long, default_value = "sealgate-webhook-tls")]
    tls_secret: String,
    /// ValidatingWebhookConfiguration whose caBundle --self-signed-tls keeps current
    #[arg(long, default_value = "sealgate-webhook")]
    webhook_config: String,
    /// Service the API server calls (the certificate's DNS names) for --self-signed-tls
    #[arg(long, default_value = "sealgate-webhook")]
    service_name: String,
    /// Policy directory (mounted ConfigMap), reloaded when it changes (repeatable)
    #[arg(
        global = true,
        long = "policy",
        env = "SEALGATE_WEBHOOK_POLICY",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// Do not load the built-in policies
    #[arg(long, global = true)]
    no_builtin: bool,
    /// Kinds to treat as namespaced in `match` (Kind or group/Kind), as `sealgate lint` takes
    /// them; at admission the API server's request says so anyway
    #[arg(
        long,
        global = true,
        value_name = "KINDS",
        env = "SEALGATE_NAMESPACED_KINDS"
    )]
    namespaced_kinds: Vec<String>,
    /// Kinds to treat as cluster-scoped in `match` (Kind or group/Kind)
    #[arg(
        long,
        global = true,
        value_name = "KINDS",
        env = "SEALGATE_CLUSTER_KINDS"
    )]
    cluster_kinds: Vec<String>,
    /// How long inventory changes (the kinds a Gatekeeper Config or SyncSet among the policies
    /// syncs) are collected before the bundle is rebuilt with them
    #[arg(long, default_value = "1s", value_parser = sealgate_core::duration::parse)]
    inventory_debounce: Duration,
    /// Where namespaceSelector gets Namespace labels: `cluster` (watch Namespaces with the
    /// in-cluster or kubeconfig credentials), or files with Namespace objects
    #[arg(
        long = "namespace-labels",
        env = "SEALGATE_WEBHOOK_NAMESPACE_LABELS",
        value_delimiter = ',',
        default_value = "cluster"
    )]
    namespace_labels: Vec<String>,
    /// Namespaces always admitted (repeatable) [default: kube-system and the webhook's own]
    #[arg(
        long = "exempt-namespace",
        env = "SEALGATE_WEBHOOK_EXEMPT_NAMESPACES",
        value_delimiter = ','
    )]
    exempt_namespaces: Vec<String>,
    /// Deadline for one review, below the webhook configuration's timeoutSeconds
    #[arg(long, default_value = "2500ms", value_parser = sealgate_core::duration::parse)]
    deadline: Duration,
    /// Admit (with a warning) instead of deny a review whose evaluation passes the deadline
    #[arg(long)]
    allow_on_timeout: bool,
    /// Largest accepted request body, in bytes
    #[arg(long, default_value_t = 7 << 20)]
    max_body_bytes: usize,
    /// Evaluation threads: reviews evaluated at once [default: the number of cores]
    #[arg(long, env = "SEALGATE_WEBHOOK_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Threads for TLS, HTTP and JSON (the async runtime) [default: a quarter of the cores, at
    /// least 1]
    #[arg(long, env = "SEALGATE_WEBHOOK_IO_THREADS")]
    io_threads: Option<usize>,
    /// How often to check the policy directories and the certificate for changes
    #[arg(long, default_value = "10s", value_parser = sealgate_core::duration::parse)]
    reload_interval: Duration,
    /// Log format
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    /// Rego engine: regorus's register VM (vm), or its interpreter (slower; for a policy that
    /// meets a VM gap)
    #[arg(long, global = true, env = "SEALGATE_REGO_ENGINE", default_value = "vm", value_parser = ["vm", "interpreter"])]
    rego_engine: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Evaluate the objects already in the cluster (enforcement point `audit`) and report
    /// violations: the background scan. Uses the in-cluster or kubeconfig credentials
    Audit {
        /// Report format: text, json, or policyreport (wgpolicyk8s.io/v1alpha2 PolicyReport and
        /// ClusterPolicyReport objects, YAML, for `kubectl apply -f -` and Policy Reporter)
        #[arg(short = 'o', long = "output", default_value = "text", value_parser = ["text", "json", "policyreport"])]
        output: String,
        /// Exit 1 when an object violates a deny constraint
        #[arg(long)]
        fail_on_deny: bool,
    },
}

fn main() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    // SEALGATE_CHECK_ARGS=1: parse the command line and stop (the documentation test).
    if std::env::var_os("SEALGATE_CHECK_ARGS").is_some() {
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = args.concurrency.unwrap_or(cores).max(1);
    // Evaluations run on their own threads (`pool`). The runtime only moves bytes and parses JSON,
    // about a third of an evaluation's CPU; more I/O threads than that share of the cores only
    // take turns with the evaluations (measured: 1 of 2 cores gives ~10 % more throughput and a
    // lower p99 than 2). Its blocking pool serves only file reads.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(args.io_threads.unwrap_or(cores.div_ceil(4)).max(1))
        .max_blocking_threads(4)
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args, concurrency))
}

async fn run(args: Args, concurrency: usize) -> Result<()> {
    if let Some(Command::Audit {
        output,
        fail_on_deny,
    }) = &args.command
    {
        return audit(&args, output, *fail_on_deny).await;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let own_namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "sealgate-system".into());
    let exempt = if args.exempt_namespaces.is_empty() {
        vec!["kube-system".into(), own_namespace.clone()]
    } else {
        args.exempt_namespaces.clone()
    };
    let sources = policy_sources(&args);
    let bundle = reload::build(&sources, Vec::new())
        .map_err(anyhow::Error::msg)
        .context("the policy bundle does not compile")?;
    let from_cluster = args.namespace_labels == ["cluster"];
    let namespaces = if from_cluster {
        Default::default()
    } else {
        let files: Vec<PathBuf> = args.namespace_labels.iter().map(PathBuf::from).collect();
        reload::namespace_labels_from(&files).map_err(anyhow::Error::msg)?
    };
    let config = Config {
        settings: Settings {
            exempt_namespaces: exempt,
        },
        deadline: args.deadline,
        allow_on_timeout: args.allow_on_timeout,
        max_body_bytes: args.max_body_bytes,
        concurrency,
    };
    tracing::info!(constraints = bundle.constraints().len(), exempt = ?config.settings.exempt_namespaces, "starting sealgate-webhook");
    let state =
        AppState::new(bundle, namespaces, config).context("cannot start the evaluation threads")?;
    if from_cluster {
        let client = kube::Client::try_default().await.context(
            "cannot reach the Kubernetes API for Namespace labels (or pass --namespace-labels FILE)",
        )?;
        state
            .namespaces_synced
            .store(false, std::sync::atomic::Ordering::Release);
        let _ = state.api.set(client.clone());
        tokio::spawn(sealgate_webhook::namespaces::watch(
            client.clone(),
            state.clone(),
        ));
        tokio::spawn(sealgate_webhook::inventory::run(
            client,
            state.clone(),
            sources.clone(),
            args.inventory_debounce,
        ));
    } else if !state.bundle.load().sync_kinds().is_empty() {
        tracing::warn!(
            "the policies sync kinds into data.inventory, but --namespace-labels is not `cluster`: nothing is watched, the inventory stays empty"
        );
    }
    tokio::spawn(reload::watch_policies(
        state.clone(),
        sources,
        args.reload_interval,
    ));

    if args.self_signed_tls {
        let client = kube::Client::try_default()
            .await
            .context("--self-signed-tls needs the Kubernetes API")?;
        let cfg = SelfTlsConfig {
            namespace: own_namespace.clone(),
            secret: args.tls_secret.clone(),
            webhook_config: args.webhook_config.clone(),
            service: args.service_name.clone(),
            cert_path: args.tls_cert.clone(),
            key_path: args.tls_key.clone(),
        };
        // The server cannot start without its certificate: retry until the API answers.
        let mut delay = Duration::from_millis(500);
        loop {
            match self_tls::ensure(&client, &cfg).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "self-contained TLS not ready; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        tokio::spawn(self_tls::run(
            client,
            cfg,
            Duration::from_secs(60),
            std::future::pending(),
        ));
    }

    let handle = axum_server::Handle::new();
    let metrics = tokio::spawn({
        let handle = handle.clone();
        let app = server::metrics_router(state.clone());
        axum_server::bind(args.metrics_listen)
            .handle(handle)
            .serve(app.into_make_service())
    });
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let app = server::router(state.clone()).into_make_service();
    if args.insecure_http {
        tracing::warn!("serving plain HTTP: for local testing only");
        axum_server::bind(args.listen)
            .acceptor(axum_server::accept::NoDelayAcceptor::new())
            .handle(handle)
            .serve(app)
            .await?;
    } else {
        let tls =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&args.tls_cert, &args.tls_key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the serving certificate {} / {}",
                        args.tls_cert.display(),
                        args.tls_key.display()
                    )
                })?;
        tokio::spawn(reload::watch_tls(
            state.clone(),
            tls.clone(),
            args.tls_cert.clone(),
            args.tls_key.clone(),
            args.reload_interval,
        ));
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        axum_server::bind(args.listen)
            .acceptor(acceptor)
            .handle(handle)
            .serve(app)
            .await?;
    }
    metrics.abort();
    Ok(())
}

/// The bundle's sources, as `sealgate lint` describes them; the engine's per-evaluation timer is
/// the request deadline.
fn policy_sources(args: &Args) -> Sources {
    Sources {
        builtin: !args.no_builtin,
        policies: args.policies.clone(),
        namespaced_kinds: args.namespaced_kinds.clone(),
        cluster_kinds: args.cluster_kinds.clone(),
        limits: sealgate_core::policy::Limits {
            eval_timeout: args.deadline,
        },
        use_vm: args.rego_engine == "vm",
    }
}

async fn audit(args: &Args, output: &str, fail_on_deny: bool) -> Result<()> {
    let sources = policy_sources(args);
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let report = sealgate_webhook::audit::run(client, &sources)
        .await
        .context("audit failed")?;
    let violations: Vec<_> = report.violations().collect();
    let denies = violations
        .iter()
        .filter(|v| v.action == sealgate_core::policy::Action::Deny)
        .count();
    if output == "policyreport" {
        let docs = sealgate_core::policy::report::policy_reports(
            &report.results,
            sealgate_core::policy::Point::Audit,
            sealgate_core::policy::report::unix_now(),
        );
        print!("{}", sealgate_core::manifest::to_yaml_stream(&docs));
        for e in &report.errors {
            eprintln!("warning: not audited: {e}");
        }
    } else if output == "json" {
        let doc = serde_json::json!({
            "objects": report.objects, "violations": violations, "errors": report.errors,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for v in &violations {
            println!(
                "{:<6} {}/{}: {} ({})",
                v.action.as_str(),
                v.policy,
                v.constraint,
                v.message,
                v.object
            );
        }
        for e in &report.errors {
            eprintln!("warning: not audited: {e}");
        }
        println!(
            "{} objects audited, {} violations ({denies} deny)",
            report.objects,
            violations.len()
        );
    }
    if fail_on_deny && denies > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// SIGTERM or Ctrl-C: stop accepting, let in-flight reviews finish (up to 25 s, inside the
/// default 30 s termination grace period).
async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>) {
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
    tracing::info!("shutting down: finishing in-flight reviews");
    handle.graceful_shutdown(Some(Duration::from_secs(25)));
}
