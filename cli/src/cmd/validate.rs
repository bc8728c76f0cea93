//! `sealgate validate`: offline CI check of SealedSecret files (Bitnami #1444).
//!
//! Without private keys it checks everything the formats let one check: metadata consistent with
//! the scope, values well-formed, each value's recipient type and RSA size fitting the given
//! keys. That is not proof of the key, and the output says so. With `--decrypt` it opens every
//! value at its place, which proves the key, scope, namespace, name and item binding; with
//! `--controller` the cluster does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use sealgate_core::keys::{KeyRing, PublicKey};
use sealgate_core::sealing::{self, SealedSecret};

use crate::args::ValidateArgs;
use crate::controller_client::Controller;
use crate::{discover, fetch, input, key_source};

/// What a run can prove, from the strongest to the weakest.
enum Proof {
    /// The cluster decrypts each SealedSecret (`POST /v1/verify`).
    Cluster(Controller),
    /// Private keys decrypt every value at its place.
    Decrypt(KeyRing),
    /// Public keys: values fit them (type, size), which is not proof of the key.
    Fits(Vec<PublicKey>),
    /// No key at all: structure and scope only.
    Structure,
}

pub fn run(store_dir: Option<&Path>, args: &ValidateArgs) -> Result<ExitCode> {
    let controller = crate::controller_client::connect(&args.controller)?;
    if controller.is_some() && (args.decrypt || !args.certs.is_empty()) {
        bail!(
            "--controller checks with the cluster's own keys: it cannot be combined with --cert or --decrypt"
        );
    }
    let proof = if let Some(c) = controller {
        Proof::Cluster(c)
    } else if args.decrypt {
        Proof::Decrypt(key_source::load_ring(store_dir, &args.private)?)
    } else if !args.certs.is_empty() {
        let mut v = Vec::new();
        for c in &args.certs {
            v.extend(fetch::fetch_certs(c)?);
        }
        Proof::Fits(v)
    } else {
        let keys = key_source::load_store(&key_source::key_store(store_dir)?)?.public_keys();
        if keys.is_empty() {
            Proof::Structure
        } else {
            Proof::Fits(keys)
        }
    };
    let (known, ring) = match &proof {
        Proof::Decrypt(r) => (r.public_keys(), Some(r)),
        Proof::Fits(k) => (k.clone(), None),
        Proof::Cluster(_) | Proof::Structure => (Vec::new(), None),
    };
    let detail = match proof {
        Proof::Cluster(_) => ", decryptable by the cluster",
        Proof::Decrypt(_) => ", decrypted",
        Proof::Fits(_) => ", fit the given keys",
        Proof::Structure => ", well-formed (not checked against any key)",
    };

    let files = discover::discover(&args.paths)?;
    let (mut passed, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    for file in &files {
        let input = match input::read_file(file) {
            Ok(i) => i,
            Err(e) => {
                unreadable += 1;
                outln!("FAIL  {e:#}")?;
                continue;
            }
        };
        // SealedSecrets in a List (`kubectl get sealedsecrets -o yaml`) are each validated.
        let docs = match input::parse_docs(&input) {
            Ok(d) => input::objects(&input, d),
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
            let at = input::at(&input, doc);
            let ss = match SealedSecret::from_value(&doc.value) {
                Ok(ss) => ss,
                Err(e) => {
                    failed += 1;
                    outln!("FAIL  {at}: {e}")?;
                    continue;
                }
            };
            let outcome = match &proof {
                Proof::Cluster(c) => verify_remote(c, &doc.value)?,
                _ => {
                    let v = sealing::validate(&ss, &known, ring);
                    if v.problems.is_empty() {
                        Ok(v.notes)
                    } else {
                        Err(v.problems.join("; "))
                    }
                }
            };
            match outcome {
                Ok(notes) => {
                    passed += 1;
                    outln!("ok    {at}: {} item(s){detail}", ss.encrypted_data.len())?;
                    for n in notes {
                        outln!("      note: {n}")?;
                    }
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
    let unverified = matches!(proof, Proof::Structure) && !args.allow_unverified;
    match proof {
        Proof::Fits(_) => eprintln!(
            "note: checked with public keys only: structure, scope, and that each value's recipient type and RSA size fit the given keys. \
Public keys cannot prove which key a value was sealed to (age and kubeseal values do not name their recipient); \
--decrypt (private keys) or --controller (the cluster) proves it"
        ),
        Proof::Structure if unverified => eprintln!(
            "error: not checked against any key: there is no --cert and no key store. \
Give the cluster's certificate (--cert cert.pem), --decrypt or --controller; --allow-unverified accepts a check of structure and scope only"
        ),
        _ => {}
    }
    Ok(if unreadable > 0 {
        ExitCode::from(2)
    } else if failed > 0 || unverified {
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
) -> Result<std::result::Result<Vec<String>, String>> {
    let r = c.post_sealed("/v1/verify", doc)?;
    Ok(match r.status {
        200 => Ok(Vec::new()),
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
