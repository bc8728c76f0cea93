//! `sealgate-controller`: the command line; the work is in the library ([`sealgate_controller::run`]).
#![forbid(unsafe_code)]

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use sealgate_controller::run::{Config, run};

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
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the SealedSecret CustomResourceDefinition (what deploy/crds/ holds)
    Crd,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if sealgate_service::check_args_only() {
        return Ok(());
    }
    if let Some(Command::Crd) = args.command {
        print!("{}", sealgate_controller::crd::crd_yaml());
        return Ok(());
    }
    let settings = sealgate_service::usable(args.config.validate());
    sealgate_service::install_crypto_provider();
    sealgate_service::init_logging(args.config.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args.config, settings))?;
    Ok(())
}
