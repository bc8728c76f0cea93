//! `sealgate unseal`: offline recovery with private keys. All or nothing per object; with -w,
//! the file is written only if every object unseals.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use sealgate_core::sealing::{self, SealedSecret};
use zeroize::Zeroizing;

use crate::args::UnsealArgs;
use crate::{input, key_source, output};

pub fn run(store_dir: Option<&Path>, args: &UnsealArgs) -> Result<ExitCode> {
    let ring = key_source::load_ring(store_dir, &args.private)?;
    let input = input::read_input(args.file.as_deref(), "a SealedSecret")?;
    // A List (`kubectl get sealedsecrets -o yaml`) is its items.
    let docs = input::objects(&input, input::parse_docs(&input)?);
    let mut secrets = Vec::new();
    let (mut failed, mut objects) = (0, 0);
    for doc in &docs {
        if doc.value.get("kind").and_then(|k| k.as_str()) != Some("SealedSecret") {
            eprintln!(
                "note: {}: skipped, not a SealedSecret",
                input::at(&input, doc)
            );
            continue;
        }
        objects += 1;
        let ss = SealedSecret::from_value(&doc.value)
            .map_err(|e| anyhow!("{}: {e}", input::at(&input, doc)))?;
        match sealing::unseal(&ss, &ring) {
            Ok(u) => secrets.push(u.secret.to_value()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e}", input::at(&input, doc));
            }
        }
    }
    if objects == 0 {
        bail!("no SealedSecrets found in {}", input.name);
    }
    let fmt = output::output_format(args.output, args.output_file.as_deref());
    let text = Zeroizing::new(output::serialize_objects(&secrets, fmt));
    if failed > 0 {
        if args.output_file.is_none() {
            output::emit(&text, None, None)?;
        }
        return Err(output::VerifyFailed(format!(
            "{failed} of {objects} SealedSecret(s) could not be unsealed{}",
            if args.output_file.is_some() {
                "; nothing was written"
            } else {
                ""
            }
        ))
        .into());
    }
    // Plaintext on disk: owner-only.
    output::emit(&text, args.output_file.as_deref(), Some(0o600))?;
    Ok(ExitCode::SUCCESS)
}
