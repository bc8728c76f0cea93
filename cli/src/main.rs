//! `sealgate`: parses the command line, runs it (the `sealgate_cli` library) and maps errors to
//! exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use sealgate_cli::args::Cli;
use sealgate_cli::{output, run};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One crypto provider for the whole process (only used to fetch --cert over HTTPS).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if check_args_only() {
        return ExitCode::SUCCESS;
    }
    match run(&cli) {
        Ok(code) => code,
        // The reader went away (`sealgate lint … | head`): stop quietly, as ripgrep does.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            if e.is::<output::VerifyFailed>() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// An error and its causes, `: `-joined as anyhow's `{:#}`, but without a cause its outer
/// message already quotes (io errors wrapped by a library repeat `(os error 2)` otherwise).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `SEALGATE_CHECK_ARGS=1`: parse the command line and stop. The documentation test uses it for
/// commands that need a cluster, so every command the docs show is at least checked.
fn check_args_only() -> bool {
    std::env::var_os("SEALGATE_CHECK_ARGS").is_some()
}
