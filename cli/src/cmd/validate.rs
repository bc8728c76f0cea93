//! `sealgate validate`: offline CI check of SealedSecret files (Bitnami #1444).
//!
//! Without private keys it checks everything the formats let one check: metadata consistent with
//! the scope, values well-formed, kubeseal values sized for a known key. With `--decrypt` it opens
//! every value at its place, which proves the key, scope, namespace, name and item binding.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use sealgate_core::keys::PublicKey;
use sealgate_core::sealing::{self, SealedSecret};

use crate::args::ValidateArgs;
use crate::controller_client::Controller;
use crate::io;

pub fn run(store_dir: Option<&Path>, args: &ValidateArgs) -> Result<ExitCode> {
    let controller = args.controller.connect()?;
    if controller.is_some() && (args.decrypt || !args.certs.is_empty()) {
        bail!(
            "--controller checks with the cluster's own keys: it cannot be combined with --cert or --decrypt"
        );
    }
    let ring = if args.decrypt {
        Some(io::load_ring(store_dir, &args.private)?)
    } else {
        None
    };
    let known: Vec<PublicKey> = if !args.certs.is_empty() {
        let mut v = Vec::new();
        for c in &args.certs {
            v.extend(io::fetch_certs(c)?);
        }
        v
    } else if let Some(r) = &ring {
        r.public_keys()
    } else if controller.is_some() {
        Vec::new()
    } else {
        let store = io::key_store(store_dir)?;
        let keys = io::load_store(&store)?.public_keys();
        if keys.is_empty() {
            eprintln!("note: no public keys (--cert or a key store): key sizes are not checked");
        }
        keys
    };

    let files = io::discover(&args.paths)?;
    let (mut passed, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    for file in &files {
        let input = match io::read_file(file) {
            Ok(i) => i,
            Err(e) => {
                unreadable += 1;
                outln!("FAIL  {e:#}")?;
                continue;
            }
        };
        // SealedSecrets in a List (`kubectl get sealedsecrets -o yaml`) are each validated.
        let docs = match io::parse_docs(&input) {
            Ok(d) => io::objects(&input, d),
            Err(e) => {
                unreadable += 1;
                outln!("FAIL  {e:#}")?;
                continue;
            }
        };
        for doc in &docs {
            if doc.value.get("kind").and_then(|k| k.as_str()) != Some("SealedSecret") {
                continue;
            }
            let at = io::at(&input, doc);
            let ss = match SealedSecret::from_value(&doc.value) {
                Ok(ss) => ss,
                Err(e) => {
                    failed += 1;
                    outln!("FAIL  {at}: {e}")?;
                    continue;
                }
            };
            let outcome = match &controller {
                Some(c) => verify_remote(c, &doc.value)?,
                None => {
                    let v = sealing::validate(&ss, &known, ring.as_ref());
                    if v.problems.is_empty() {
                        Ok(if v.decrypted { ", decrypted" } else { "" })
                    } else {
                        Err(v.problems.join("; "))
                    }
                }
            };
            match outcome {
                Ok(detail) => {
                    passed += 1;
                    outln!("ok    {at}: {} item(s){detail}", ss.encrypted_data.len())?;
                }
                Err(problems) => {
                    failed += 1;
                    outln!("FAIL  {at}: {problems}")?;
                }
            }
        }
    }
    if passed + failed + unreadable == 0 {
        if args.allow_empty {
            outln!("no SealedSecrets in {}", list(&args.paths))?;
            return Ok(ExitCode::SUCCESS);
        }
        bail!(
            "no SealedSecrets found in {} (--allow-empty accepts that)",
            list(&args.paths)
        );
    }
    outln!("{passed} passed, {} failed", failed + unreadable)?;
    Ok(if unreadable > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Ask the cluster (POST /v1/verify): `Ok` when it decrypts every value, `Err(why)` when not.
/// Transport and server errors abort the run.
fn verify_remote(
    c: &Controller,
    doc: &serde_json::Value,
) -> Result<std::result::Result<&'static str, String>> {
    let r = c.post_sealed("/v1/verify", doc)?;
    Ok(match r.status {
        200 => Ok(", decryptable by the cluster"),
        400 | 409 => Err(r.text()),
        s => bail!(
            "the controller at {} answered {s} to /v1/verify: {}",
            c.describe(),
            r.text()
        ),
    })
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
