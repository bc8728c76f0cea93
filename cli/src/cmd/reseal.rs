//! `sealgate reseal`: re-encrypt SealedSecret files in place to the newest key, offline with
//! private keys or in the cluster (`--controller`, POST /v1/rotate).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use sealgate_core::envelope::Format;
use sealgate_core::sealing::{self, ApiGroup, SealedSecret};

use crate::args::ResealArgs;
use crate::controller_client::Controller;
use crate::{input, key_source, output};

/// How each SealedSecret is re-encrypted: offline with private keys, or by the cluster.
enum Resealer {
    Offline {
        ring: sealgate_core::keys::KeyRing,
        target: sealing::Target,
        format: Option<Format>,
    },
    Controller(Controller),
}

impl Resealer {
    fn reseal(&self, ss: &SealedSecret, doc: &serde_json::Value) -> Result<serde_json::Value> {
        match self {
            Resealer::Offline {
                ring,
                target,
                format,
            } => Ok(sealing::reseal(ss, ring, target, *format)?.to_value()),
            Resealer::Controller(c) => {
                let r = c.post_sealed("/v1/rotate", doc)?;
                if r.status != 200 {
                    bail!(
                        "the controller at {} refused to re-encrypt it ({}): {}",
                        c.describe(),
                        r.status,
                        r.text()
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .map_err(|e| anyhow!("the controller's answer is not JSON: {e}"))?;
                // What comes back must still be a SealedSecret for the same object.
                let back = SealedSecret::from_value(&v)
                    .map_err(|e| anyhow!("the controller's answer is not a SealedSecret: {e}"))?;
                if (back.name(), back.namespace()) != (ss.name(), ss.namespace()) {
                    bail!(
                        "the controller answered with another object ({:?}/{:?})",
                        back.namespace(),
                        back.name()
                    );
                }
                Ok(v)
            }
        }
    }
}

pub fn run(store_dir: Option<&Path>, args: &ResealArgs) -> Result<ExitCode> {
    let resealer = match crate::controller_client::connect(&args.controller)? {
        Some(c) => {
            if args.value_format.is_some()
                || args.api.is_some()
                || args.cert.is_some()
                || !args.recipients.is_empty()
                || !args.private.private_keys.is_empty()
            {
                bail!(
                    "--controller re-encrypts in the cluster to its newest key, keeping each value's format: it cannot be combined with --value-format, --cert, --recipient or --private-key"
                );
            }
            Resealer::Controller(c)
        }
        None => {
            let ring = key_source::load_ring(store_dir, &args.private)?;
            let extra = key_source::extra_recipients(&args.recipients, &[])?;
            Resealer::Offline {
                ring,
                target: key_source::target(store_dir, args.cert.as_deref(), extra, args.pq)?,
                format: args.value_format.map(Format::from),
            }
        }
    };
    let mut failed = 0;
    let mut objects = 0;
    for file in &args.files {
        match reseal_file(file, &resealer, args.api.map(ApiGroup::from), args.dry_run) {
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
        return Err(output::VerifyFailed(format!(
            "{failed} file(s) could not be re-encrypted and were left unchanged"
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reseal every SealedSecret in one file (`-`: stdin to stdout); the file is rewritten only if
/// all of them succeed. Other documents stay byte for byte, and so do comments wherever the
/// change is values replaced and keys added (`sealgate_core::rewrite`).
fn reseal_file(
    file: &Path,
    resealer: &Resealer,
    api: Option<ApiGroup>,
    dry_run: bool,
) -> Result<usize> {
    let stdio = file.as_os_str() == "-";
    let input = input::read_input(Some(file), "SealedSecrets")?;
    let docs = input::parse_docs(&input)?;
    let mut changed: Vec<(usize, serde_json::Value)> = Vec::new();
    for doc in &docs {
        if doc.value.get("kind").and_then(|k| k.as_str()) != Some("SealedSecret") {
            continue;
        }
        let ss = SealedSecret::from_value(&doc.value)
            .map_err(|e| anyhow!("{}: {e}", input::at(&input, doc)))?;
        let ss = match api {
            Some(api) => ss
                .with_api(api)
                .map_err(|e| anyhow!("{}: {e}", input::at(&input, doc)))?,
            None => ss,
        };
        let re = resealer
            .reseal(&ss, &doc.value)
            .map_err(|e| anyhow!("{}: {e:#}", input::at(&input, doc)))?;
        eprintln!(
            "{}: {} item(s)",
            input::at(&input, doc),
            ss.encrypted_data.len()
        );
        changed.push((doc.index, re));
    }
    if dry_run || (changed.is_empty() && !stdio) {
        return Ok(changed.len());
    }
    let out = output::rewrite(&input, &docs, &changed)?;
    output::emit(&out, (!stdio).then_some(file), None)?;
    Ok(changed.len())
}
