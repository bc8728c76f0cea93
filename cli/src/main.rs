//! `sealgate`: thin binary; the work is in sealgate-core.
#![forbid(unsafe_code)]

/// `println!` that returns the write's error instead of panicking, so a closed pipe
/// (`sealgate validate … | head`) reaches `main`'s quiet exit.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod args;
mod cmd;
mod controller_client;
mod io;
mod report;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use args::{Cli, Command};

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
            if e.is::<io::VerifyFailed>() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
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
