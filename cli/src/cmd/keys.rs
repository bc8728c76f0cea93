//! `sealgate keys …`: the local key store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use sealgate_core::keys::cert::fmt_time;
use sealgate_core::keys::secret::{self, CertSource};
use sealgate_core::keys::{KeyGenOptions, KeyRing, PublicKey, SealingKey};
use serde_json::json;

use crate::args::{CertArgs, KeyGenArgs, KeysCommand, ListFormat};
use crate::{input, key_source, output};

pub fn run(store_dir: Option<&Path>, cmd: &KeysCommand) -> Result<ExitCode> {
    let store = key_source::key_store(store_dir)?;
    match cmd {
        KeysCommand::Init(args) => {
            let ring = key_source::load_store(&store)?;
            if let Some(newest) = ring.newest() {
                outln!(
                    "key store {} already has {} key(s); the newest is {}. Use `sealgate keys rotate` to add a newer one.",
                    store.dir().display(),
                    ring.len(),
                    newest.id().short()
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            generate(&store, args)
        }
        KeysCommand::Rotate(args) => generate(&store, args),
        KeysCommand::List { output } => {
            let ring = key_source::load_store(&store)?;
            let rows: Vec<_> = ring.iter().collect();
            match output {
                ListFormat::Json => {
                    let list: Vec<_> = rows
                        .iter()
                        .enumerate()
                        .map(|(i, k)| describe_json(k, i == 0))
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&list)?)?;
                }
                ListFormat::Text => {
                    if rows.is_empty() {
                        eprintln!(
                            "no keys in {} (run `sealgate keys init`)",
                            store.dir().display()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    outln!(
                        "{:<18} {:<21} {:<21} {:<5} {:<7} {:<9}",
                        "ID",
                        "CREATED",
                        "EXPIRES",
                        "RSA",
                        "AGE",
                        "ORIGIN"
                    )?;
                    for (i, k) in rows.iter().enumerate() {
                        outln!(
                            "{:<18} {:<21} {:<21} {:<5} {:<7} {:<9}{}",
                            k.id().short(),
                            // To the second, so the table's columns line up; JSON has it all.
                            fmt_time(k.created().replace_nanosecond(0).unwrap_or(k.created())),
                            fmt_time(k.public().not_after()),
                            k.public().rsa_bits(),
                            match (k.pq_identity(), k.age_identity()) {
                                (Some(_), _) => "pq",
                                (None, Some(_)) => "x25519",
                                (None, None) => "no",
                            },
                            k.origin().as_str(),
                            if i == 0 {
                                " (newest: used for sealing)"
                            } else {
                                ""
                            }
                        )?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::ExportPublic {
            all,
            age,
            output_file,
        } => {
            let ring = key_source::load_store(&store)?;
            if ring.is_empty() {
                bail!(
                    "no keys in {}: run `sealgate keys init` first",
                    store.dir().display()
                );
            }
            let keys: Vec<PublicKey> = if *all {
                ring.public_keys()
            } else {
                ring.newest()
                    .map(|k| k.public().clone())
                    .into_iter()
                    .collect()
            };
            print_public(&keys, *age, output_file.as_deref())
        }
        KeysCommand::Import { files } => {
            let mut ring = key_source::load_store(&store)?;
            let imports = keys_to_import(files, &ring)?;
            // All or nothing: a failed write takes back what this command wrote before it.
            let mut written = Vec::new();
            for (key, _) in &imports {
                match store.add(key) {
                    Ok(path) => written.push(path),
                    Err(e) => {
                        for p in &written {
                            let _ = std::fs::remove_file(p);
                        }
                        return Err(e.into());
                    }
                }
            }
            let added = imports.len();
            for ((key, from), path) in imports.into_iter().zip(written) {
                outln!(
                    "imported key {} ({}) from {from} into {}",
                    key.id().short(),
                    key.origin().as_str(),
                    path.display()
                )?;
                ring.insert(key);
            }
            if added > 0 {
                outln!(
                    "the key store has {} key(s); the newest is {}",
                    ring.len(),
                    ring.newest().map(|k| k.id().short()).unwrap_or_default()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `keys import FILE…` would add, checked whole before anything is written: key Secrets,
/// PEM private keys paired with the certificate files given beside them (in any order), and each
/// key's source for the report. Keys already in the store are reported and left out; a key whose
/// certificate differs from the stored one, or a certificate that belongs to no key given, is an
/// error.
fn keys_to_import(files: &[PathBuf], ring: &KeyRing) -> Result<Vec<(SealingKey, String)>> {
    let mut inputs = Vec::new();
    let mut certs: Vec<(String, Vec<u8>)> = Vec::new();
    for f in files {
        let input = input::read_file(f)?;
        let pem = input::manifest_docs(&input).is_none();
        if pem && !secret::pem_has_private_key(&input.bytes) {
            let found = secret::pem_certificates(&input.bytes);
            if found.is_empty() {
                bail!(
                    "{}: neither key Secrets nor a PEM private key or certificate",
                    input.name
                );
            }
            certs.extend(found.into_iter().map(|der| (input.name.clone(), der)));
            continue;
        }
        inputs.push((input, pem));
    }
    let cert_ders: Vec<Vec<u8>> = certs.iter().map(|(_, der)| der.clone()).collect();
    let mut used = vec![false; certs.len()];
    let mut out: Vec<(SealingKey, String)> = Vec::new();
    for (input, pem) in &inputs {
        // (key, where it came from, whether its certificate was made here)
        let keys: Vec<(SealingKey, String, bool)> = if *pem {
            let (key, source) =
                secret::from_pem_with(&input.bytes, &cert_ders, time::OffsetDateTime::now_utc())
                    .with_context(|| input.name.clone())?;
            let from = match source {
                CertSource::File | CertSource::Generated => input.name.clone(),
                CertSource::Paired(i) => {
                    used[i] = true;
                    format!("{} with the certificate in {}", input.name, certs[i].0)
                }
            };
            vec![(key, from, source == CertSource::Generated)]
        } else {
            key_source::keys_from_input(input)?
                .into_iter()
                .map(|k| (k, input.name.clone(), false))
                .collect()
        };
        for (key, from, made_cert) in keys {
            let id = key.id();
            let known = ring
                .get(id)
                .or_else(|| out.iter().map(|(k, _)| k).find(|k| k.id() == id));
            match known {
                // A certificate made here is no claim about the cluster's: keep the stored one.
                Some(k) if !made_cert && k.public().cert_der() != key.public().cert_der() => bail!(
                    "{from}: key {} is already in the store with another certificate; importing it would replace the certificate `sealgate cert` publishes. Nothing was imported (to replace it on purpose, remove sealgate-key-{}.yaml from the key store first)",
                    id.short(),
                    id.short()
                ),
                Some(_) => outln!("key {} from {from} is already in the store", id.short())?,
                None if made_cert => {
                    eprintln!(
                        "warning: {from}: no certificate for key {} was given, so a new self-signed one was made (CN=sealgate, valid 10 years). No cluster has it, and `sealgate cert` will publish it. To keep the cluster's certificate, import the key with it: `sealgate keys import {from} CERT.pem`",
                        id.short()
                    );
                    out.push((key, format!("{from} (with a new certificate)")));
                }
                None => out.push((key, from)),
            }
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        bail!(
            "{}: this certificate belongs to none of the private keys given; pass it with its key (`sealgate keys import KEY.pem {}`). Nothing was imported",
            certs[i].0,
            certs[i].0
        );
    }
    Ok(out)
}

fn generate(store: &sealgate_core::keys::store::KeyStore, args: &KeyGenArgs) -> Result<ExitCode> {
    let key = SealingKey::generate(&KeyGenOptions {
        rsa_bits: args.key_size as usize,
        validity: time::Duration::days(args.validity_days.into()),
        common_name: args.cn.clone(),
        now: time::OffsetDateTime::now_utc(),
    })?;
    let path = store.add(&key)?;
    outln!(
        "created sealing key {} (RSA-{}, age {} and a post-quantum recipient) in {}",
        key.id().short(),
        key.public().rsa_bits(),
        key.public()
            .age_recipient()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn describe_json(k: &SealingKey, newest: bool) -> serde_json::Value {
    json!({
        "id": k.id().to_string(),
        "created": fmt_time(k.created()),
        "notAfter": fmt_time(k.public().not_after()),
        "rsaBits": k.public().rsa_bits(),
        "ageRecipient": k.public().age_recipient().map(|r| r.to_string()),
        "agePqRecipient": k.public().pq_recipient().map(|r| r.to_string()),
        "origin": k.origin().as_str(),
        "newest": newest,
    })
}

/// Certificates (PEM, kubeseal-compatible) or age recipients.
fn print_public(keys: &[PublicKey], age: bool, output_file: Option<&Path>) -> Result<ExitCode> {
    let mut out = String::new();
    for k in keys {
        if age {
            if let Some(r) = k.pq_recipient() {
                out.push_str(&format!(
                    "# key {} (post-quantum: ML-KEM-768 + X25519; what `seal` uses)\n{r}\n",
                    k.id().short()
                ));
            }
            match k.age_recipient() {
                // Commented out, so the output works as a recipients file (-R) for post-quantum
                // sealing: age does not mix the two types in one value.
                Some(r) if k.pq_recipient().is_some() => out.push_str(&format!(
                    "# X25519, for readers without the post-quantum type (`seal --pq=false`): {r}\n"
                )),
                Some(r) => out.push_str(&format!("# key {}\n{r}\n", k.id().short())),
                None => eprintln!(
                    "note: key {} has no age identity (imported from Bitnami)",
                    k.id().short()
                ),
            }
        } else {
            out.push_str(&k.cert_pem());
        }
    }
    output::emit(&out, output_file, None)?;
    Ok(ExitCode::SUCCESS)
}

/// `sealgate cert`: the cluster's public keys from the controller, else the key store's.
pub fn cert(store_dir: Option<&Path>, args: &CertArgs) -> Result<ExitCode> {
    let Some(controller) = crate::controller_client::connect(&args.controller)? else {
        return run(
            store_dir,
            &KeysCommand::ExportPublic {
                all: args.all,
                age: args.age,
                output_file: args.output_file.clone(),
            },
        );
    };
    let keys = if args.all {
        let body = controller.get("/v1/keys")?;
        let list: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("{}: /v1/keys is not JSON: {e}", controller.describe()))?;
        let mut keys = Vec::new();
        for k in list["keys"].as_array().into_iter().flatten() {
            let pem = k["certificate"].as_str().unwrap_or_default();
            keys.extend(PublicKey::from_pem_bundle(pem.as_bytes())?);
        }
        keys
    } else {
        let pem = controller.get("/v1/cert.pem")?;
        PublicKey::from_pem_bundle(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{}: /v1/cert.pem is not a usable certificate: {e}",
                controller.describe()
            )
        })?
    };
    if keys.is_empty() {
        bail!(
            "the controller at {} has no keys yet",
            controller.describe()
        );
    }
    print_public(&keys, args.age, args.output_file.as_deref())
}
