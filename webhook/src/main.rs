//! `sealgate-webhook`: the command line; the work is in the library ([`sealgate_webhook::run`]).
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::Parser;
use sealgate_webhook::audit::AuditFormat;
use sealgate_webhook::run::{Config, audit, run};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sealgate's validating admission webhook: the `sealgate lint` policies at the cluster's door.
#[derive(Debug, Parser)]
#[command(name = "sealgate-webhook", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Evaluate the objects already in the cluster (enforcement point `audit`) and report
    /// violations: the background scan. Uses the in-cluster or kubeconfig credentials
    Audit {
        /// Report format (policyreport: wgpolicyk8s.io/v1alpha2 PolicyReport and
        /// ClusterPolicyReport objects, YAML, for `kubectl apply -f -` and Policy Reporter)
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: AuditFormat,
        /// Exit 1 when an object violates a deny constraint
        #[arg(long)]
        fail_on_deny: bool,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if sealgate_service::check_args_only() {
        return Ok(());
    }
    // Every flag is checked before anything starts; `audit` does not serve.
    let settings = sealgate_service::usable(match args.command {
        Some(Command::Audit { .. }) => args.config.validate(),
        None => args.config.validate_serving(),
    });
    sealgate_service::install_crypto_provider();
    let runtime = args
        .config
        .runtime()
        .context("cannot start the async runtime")?;
    match args.command {
        Some(Command::Audit {
            output,
            fail_on_deny,
        }) => {
            let denied = runtime.block_on(audit(&settings, output))?;
            if fail_on_deny && denied {
                std::process::exit(1);
            }
        }
        None => {
            sealgate_service::init_logging(args.config.log_format);
            runtime.block_on(run(args.config, settings))?;
        }
    }
    Ok(())
}
