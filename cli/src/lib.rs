//! The `sealgate` command as a library: the binary (`main.rs`) parses the command line and maps
//! errors to exit codes; everything else is here, so benchmarks and tests call the same code.
//!
//! Layers, bottom first (each module uses only those above it):
//! - [`args`]: the flags, as clap types, validated into settings.
//! - [`input`]: files and stdin, bounded, and the documents in them.
//! - [`output`]: output formats and whole-file writes.
//! - [`fetch`]: certificates over HTTP(S).
//! - [`discover`]: which files a directory walk lints.
//! - [`controller_client`]: the controller's HTTP API, directly or through the API server.
//! - [`key_source`]: keys from the store, files, manifests or the controller.
//! - [`report`]: lint reports (text, JSON, SARIF, JUnit, …).
//! - [`cmd`]: one module per subcommand.
#![forbid(unsafe_code)]

/// `println!` that returns the write's error instead of panicking, so a closed pipe
/// (`sealgate validate … | head`) reaches `main`'s quiet exit.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

pub mod args;
pub mod cmd;
pub mod controller_client;
pub mod discover;
pub mod fetch;
pub mod input;
pub mod key_source;
pub mod output;
pub mod report;
pub mod stream;

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use args::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let keys = cli.command.key_store(cli.keys.as_deref());
    match &cli.command {
        Command::Keys(args) => cmd::keys::run(keys, &args.command),
        Command::Seal(args) => cmd::seal::run(keys, args),
        Command::Unseal(args) => cmd::unseal::run(keys, args),
        Command::Reseal(args) => cmd::reseal::run(keys, args),
        Command::Validate(args) => cmd::validate::run(keys, args),
        Command::Cert(args) => cmd::keys::cert(keys, args),
        Command::Lint(args) => cmd::lint::run(args),
        Command::Policy(cmd) => cmd::policy::run(cmd),
        Command::Attest(cmd) => cmd::attest::run(cmd),
        Command::VerifyAttestation(args) => cmd::attest::verify(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "sealgate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
