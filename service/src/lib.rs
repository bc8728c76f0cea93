//! sealgate-service: the process plumbing `sealgate-controller` and `sealgate-webhook` share, so
//! both read signals, write logs and find their own namespace the same way.
#![forbid(unsafe_code)]

use std::path::Path;

/// Where a pod's service account says which namespace it runs in.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace used when nothing else says: the one `deploy/` installs into.
pub const DEFAULT_NAMESPACE: &str = "sealgate-system";

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // The current span (a request's, a reconcile's) is in each line under `span`; the list
        // of enclosing spans would repeat it (there is one level) at a cost on every event.
        LogFormat::Json => logs.json().with_span_list(false).init(),
        LogFormat::Text => logs.init(),
    }
}

/// The settings validated flags give, or, for a flag that cannot be used, its error on stderr
/// and exit code 2, as for a usage error: before anything starts.
pub fn usable<T, E: std::fmt::Display>(validated: Result<T, E>) -> T {
    validated.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}

/// rustls' process-wide provider: aws-lc-rs, the project's single crypto backend. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `SEALGATE_CHECK_ARGS=1`: the command line has been parsed and the process should stop there
/// (the documentation test checks every documented command line this way).
pub fn check_args_only() -> bool {
    std::env::var_os("SEALGATE_CHECK_ARGS").is_some()
}

/// The namespace this process runs in: the flag, else `$POD_NAMESPACE` (the downward API), else
/// the service account's namespace file, else [`DEFAULT_NAMESPACE`].
pub fn own_namespace(flag: Option<String>) -> String {
    resolve_namespace(
        flag,
        std::env::var("POD_NAMESPACE").ok(),
        Path::new(SERVICE_ACCOUNT_NAMESPACE),
    )
}

fn resolve_namespace(flag: Option<String>, env: Option<String>, file: &Path) -> String {
    let nonempty = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    flag.and_then(nonempty)
        .or_else(|| env.and_then(nonempty))
        .or_else(|| std::fs::read_to_string(file).ok().and_then(nonempty))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into())
}

/// Completes on SIGTERM (what the kubelet sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C ends the process gracefully.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_comes_from_the_flag_then_the_environment_then_the_service_account() {
        let dir = std::env::temp_dir().join(format!("sealgate-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "from-file\n").unwrap();
        let missing = dir.join("missing");
        let s = |v: &str| Some(v.to_string());
        assert_eq!(resolve_namespace(s("flag"), s("env"), &file), "flag");
        assert_eq!(resolve_namespace(None, s("env"), &file), "env");
        assert_eq!(resolve_namespace(s(""), s(" "), &file), "from-file");
        assert_eq!(resolve_namespace(None, None, &file), "from-file");
        assert_eq!(resolve_namespace(None, None, &missing), DEFAULT_NAMESPACE);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_formats_parse_as_the_flags_spell_them() {
        use clap::ValueEnum as _;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("yaml", false).is_err());
    }
}
