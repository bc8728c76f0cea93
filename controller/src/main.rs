//! `sealgate-controller`: flags and wiring; the work is in the library.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// sealgate's controller.
#[derive(Debug, Parser)]
#[command(name = "sealgate-controller", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the SealedSecret CustomResourceDefinition (what deploy/crds/ holds)
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Crd => print!("{}", sealgate_controller::crd::crd_yaml()),
    }
    Ok(())
}
