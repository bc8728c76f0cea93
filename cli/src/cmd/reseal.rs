//! `sealgate reseal`: re-encrypt SealedSecret files in place to the newest key, offline.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use sealgate_core::seal::Format;
use sealgate_core::sealed::{self, SealedSecret};

use crate::args::{OutputFormat, ResealArgs};
use crate::io;

pub fn run(store_dir: Option<&Path>, args: &ResealArgs) -> Result<ExitCode> {
    let ring = io::load_ring(store_dir, &args.private)?;
    let extra = io::extra_recipients(&args.recipients, &[])?;
    let target = io::target(store_dir, args.cert.as_deref(), extra)?;
    let format = args.format.map(Format::from);
    let mut failed = 0;
    let mut objects = 0;
    for file in &args.files {
        match reseal_file(file, &ring, &target, format, args.dry_run) {
            Ok(n) => objects += n,
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    let verb = if args.dry_run {
        "would re-encrypt"
    } else {
        "re-encrypted"
    };
    eprintln!(
        "{verb} {objects} SealedSecret(s) in {} file(s); {failed} file(s) failed",
        args.files.len() - failed
    );
    if failed > 0 {
        return Err(io::VerifyFailed(format!(
            "{failed} file(s) could not be re-encrypted and were left unchanged"
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reseal every SealedSecret in one file; the file is rewritten only if all of them succeed.
fn reseal_file(
    file: &Path,
    ring: &sealgate_core::keys::KeyRing,
    target: &sealed::Target,
    format: Option<Format>,
    dry_run: bool,
) -> Result<usize> {
    let input = io::read_file(file)?;
    let docs = io::parse_docs(&input)?;
    let mut values = Vec::with_capacity(docs.len());
    let mut count = 0;
    for doc in &docs {
        let is_sealed = doc.value.get("kind").and_then(|k| k.as_str()) == Some("SealedSecret");
        if !is_sealed {
            values.push(doc.value.clone());
            continue;
        }
        let ss = SealedSecret::from_value(&doc.value)
            .map_err(|e| anyhow!("{}: {e}", io::at(&input, doc)))?;
        let re = sealed::reseal(&ss, ring, target, format)
            .map_err(|e| anyhow!("{}: {e}", io::at(&input, doc)))?;
        eprintln!(
            "{}: {} item(s)",
            io::at(&input, doc),
            ss.encrypted_data.len()
        );
        values.push(re.to_value());
        count += 1;
    }
    if count > 0 && !dry_run {
        let fmt = if io::looks_like_json(file, Some(&input.bytes)) {
            OutputFormat::Json
        } else {
            OutputFormat::Yaml
        };
        io::emit(&io::render(&values, fmt), Some(file), None)?;
    }
    Ok(count)
}
