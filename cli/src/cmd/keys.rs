//! `sealgate keys …`: the local key store.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use sealgate_core::keys::cert::fmt_time;
use sealgate_core::keys::{KeyGenOptions, KeyOrigin, PublicKey, SealingKey};
use serde_json::json;

use crate::args::{CertArgs, KeyGenArgs, KeysCommand, ListFormat};
use crate::io;

pub fn run(store_dir: Option<&Path>, cmd: &KeysCommand) -> Result<ExitCode> {
    let store = io::key_store(store_dir)?;
    match cmd {
        KeysCommand::Init(args) => {
            let ring = io::load_store(&store)?;
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
            let ring = io::load_store(&store)?;
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
                        "{:<18} {:<21} {:<21} {:<5} {:<4} {:<9}",
                        "ID",
                        "CREATED",
                        "EXPIRES",
                        "RSA",
                        "AGE",
                        "ORIGIN"
                    )?;
                    for (i, k) in rows.iter().enumerate() {
                        outln!(
                            "{:<18} {:<21} {:<21} {:<5} {:<4} {:<9}{}",
                            k.id().short(),
                            fmt_time(k.created()),
                            fmt_time(k.public().not_after()),
                            k.public().rsa_bits(),
                            if k.age_identity().is_some() {
                                "yes"
                            } else {
                                "no"
                            },
                            origin(k.origin()),
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
            let ring = io::load_store(&store)?;
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
            let mut ring = io::load_store(&store)?;
            let mut added = 0;
            for f in files {
                for key in io::keys_from_file(f)? {
                    let id = key.id();
                    if ring.get(id).is_some() {
                        outln!(
                            "key {} from {} is already in the store",
                            id.short(),
                            f.display()
                        )?;
                        continue;
                    }
                    let path = store.add(&key)?;
                    outln!(
                        "imported key {} ({}) from {} into {}",
                        id.short(),
                        origin(key.origin()),
                        f.display(),
                        path.display()
                    )?;
                    ring.insert(key);
                    added += 1;
                }
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

fn generate(store: &sealgate_core::keys::store::KeyStore, args: &KeyGenArgs) -> Result<ExitCode> {
    let key = SealingKey::generate(&KeyGenOptions {
        rsa_bits: args.key_size as usize,
        validity: time::Duration::days(args.validity_days.into()),
        common_name: args.cn.clone(),
        now: time::OffsetDateTime::now_utc(),
    })?;
    let path = store.add(&key)?;
    outln!(
        "created sealing key {} (RSA-{}, age {}) in {}",
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

fn origin(o: KeyOrigin) -> &'static str {
    match o {
        KeyOrigin::Generated => "sealgate",
        KeyOrigin::Bitnami => "bitnami",
        KeyOrigin::Pem => "pem",
    }
}

fn describe_json(k: &SealingKey, newest: bool) -> serde_json::Value {
    json!({
        "id": k.id().to_string(),
        "created": fmt_time(k.created()),
        "notAfter": fmt_time(k.public().not_after()),
        "rsaBits": k.public().rsa_bits(),
        "ageRecipient": k.public().age_recipient().map(|r| r.to_string()),
        "origin": origin(k.origin()),
        "newest": newest,
    })
}

/// Certificates (PEM, kubeseal-compatible) or age recipients.
fn print_public(keys: &[PublicKey], age: bool, output_file: Option<&Path>) -> Result<ExitCode> {
    let mut out = String::new();
    for k in keys {
        if age {
            match k.age_recipient() {
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
    io::emit(&out, output_file, None)?;
    Ok(ExitCode::SUCCESS)
}

/// `sealgate cert`: the cluster's public keys from the controller, else the key store's.
pub fn cert(store_dir: Option<&Path>, args: &CertArgs) -> Result<ExitCode> {
    let Some(controller) = args.controller.connect()? else {
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
