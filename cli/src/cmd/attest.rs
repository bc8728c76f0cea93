//! `sealgate attest keygen`, `sealgate lint --attest` (signing) and `sealgate verify-attestation`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, anyhow, bail};
use sealgate_core::attest::compare::IgnoredField;
use sealgate_core::attest::keys::{Algorithm, SigningKey, VerifyingKey};
use sealgate_core::attest::statement::{PredicateInfo, Verdict, subject_of};
use sealgate_core::attest::verify::{self, Rules, TrustedKey, Verified};
use sealgate_core::attest::{resource, statement};
use serde_json::Value;

use super::lint::Judged;
use crate::args::{AttestAlgorithm, AttestCommand, LintArgs, VerifyAttestationArgs};
use crate::{input, output};

/// cosign's variable for the private key's password, so the same CI secret serves both tools.
const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

fn password() -> Result<zeroize::Zeroizing<Vec<u8>>> {
    match std::env::var_os(PASSWORD_ENV) {
        Some(p) => Ok(zeroize::Zeroizing::new(p.into_encoded_bytes())),
        None => bail!(
            "set {PASSWORD_ENV} to the key's password (as for cosign; `{PASSWORD_ENV}=` for none)"
        ),
    }
}

pub fn run(cmd: &AttestCommand) -> Result<ExitCode> {
    match cmd {
        AttestCommand::Keygen {
            algorithm,
            output_key_prefix,
        } => keygen(*algorithm, output_key_prefix),
    }
}

fn keygen(alg: AttestAlgorithm, prefix: &Path) -> Result<ExitCode> {
    let (private, public) = (with_ext(prefix, "key"), with_ext(prefix, "pub"));
    for p in [&private, &public] {
        if p.exists() {
            bail!("{} exists; refusing to overwrite a key", p.display());
        }
    }
    let password = password()?;
    let key = SigningKey::generate(match alg {
        AttestAlgorithm::EcdsaP256 => Algorithm::EcdsaP256,
        AttestAlgorithm::Ed25519 => Algorithm::Ed25519,
    })?;
    let pem = key.to_cosign_pem(&password)?;
    output::emit(&pem, Some(&private), Some(0o600))?;
    output::emit(&key.verifying_key().to_pem(), Some(&public), None)?;
    outln!(
        "wrote {} (private, encrypted with {PASSWORD_ENV}) and {} (public; give it to the webhook as a trusted key), key id {}",
        private.display(),
        public.display(),
        key.verifying_key().key_id()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// After a passing lint: sign the objects it judged and write the Attestations to `--attest`.
pub fn attest_lint(args: &LintArgs, applied: Vec<Judged>, bundle_digest: &str) -> Result<()> {
    let (Some(out), Some(key_file)) = (&args.attest, &args.attest_key) else {
        return Ok(());
    };
    let key_pem = input::read_file(key_file)?;
    let key = SigningKey::from_pem(&key_pem.bytes, &password()?)
        .with_context(|| key_file.display().to_string())?;
    let mut manifests = Vec::with_capacity(applied.len());
    for j in applied {
        subject_of(&j.object).map_err(|e| anyhow!("{}:{}: {e}", j.file, j.line))?;
        manifests.push(j.object);
    }
    let count = manifests.len();
    let info = PredicateInfo {
        repository: match &args.repository {
            Some(r) => r.clone(),
            None => detect_repository()?,
        },
        revision: match &args.revision {
            Some(r) => r.clone(),
            None => detect_revision()?,
        },
        linted_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)?,
        bundle_digest: bundle_digest.to_string(),
        verdict: Verdict::Pass,
    };
    let docs = resource::sign(manifests, &info, &key)?;
    output::emit(
        &sealgate_core::manifest::to_yaml_stream(&docs),
        Some(out),
        None,
    )?;
    eprintln!(
        "attested {count} object(s) of revision {} in {} Attestation(s): {}",
        info.revision,
        docs.len(),
        out.display()
    );
    Ok(())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn detect_revision() -> Result<String> {
    ["GITHUB_SHA", "CI_COMMIT_SHA"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .ok_or_else(|| {
            anyhow!("cannot tell the Git revision: pass --revision (or run in a Git checkout)")
        })
}

fn detect_repository() -> Result<String> {
    let github = match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        (Ok(server), Ok(repo)) if !repo.is_empty() => Some(format!("{server}/{repo}")),
        _ => None,
    };
    github
        .or_else(|| {
            std::env::var("CI_PROJECT_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| git(&["remote", "get-url", "origin"]))
        .ok_or_else(|| anyhow!("cannot tell the repository: pass --repository"))
}

/// `sealgate verify-attestation`.
pub fn verify(args: &VerifyAttestationArgs) -> Result<ExitCode> {
    let mut keys = Vec::new();
    for k in &args.keys {
        let input = input::read_file(k)?;
        keys.push(TrustedKey {
            name: k.display().to_string(),
            key: VerifyingKey::from_pem(&input.bytes).with_context(|| input.name.clone())?,
            not_after: None,
            revoked: false,
        });
    }
    let rules = Rules {
        max_age: args
            .max_age
            .map(time::Duration::try_from)
            .transpose()
            .context("--max-age is too long")?,
        ignored: args
            .ignore_fields
            .iter()
            .map(|f| IgnoredField::parse(f).map_err(|e| anyhow!("--ignore-field: {e}")))
            .collect::<Result<_>>()?,
        repositories: args.repositories.clone(),
        injected: args.allow_injected.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut verified: Vec<Verified> = Vec::new();
    let mut failed = 0;
    for f in &args.files {
        let input = input::read_file(f)?;
        for doc in input::parse_docs(&input)? {
            let at = input::at(&input, &doc);
            let result = resource::envelope_of(&doc.value)
                .map_err(|e| verify::Rejection::Malformed(e.to_string()))
                .and_then(|env| verify::verify(&env, &keys, &rules, now));
            match result {
                Ok(v) => {
                    let p = &v.statement.predicate;
                    outln!(
                        "ok     {at}: revision {} of {}, linted {} ({} object(s)), signed by {}",
                        p.revision,
                        p.repository,
                        p.linted_at,
                        v.statement.subject.len(),
                        v.key
                    )?;
                    verified.push(v);
                }
                Err(e) => {
                    failed += 1;
                    outln!("denied {at}: {e}")?;
                }
            }
        }
    }
    for f in &args.objects {
        let input = input::read_file(f)?;
        for doc in input::parse_docs(&input)? {
            for object in objects_in(doc.value) {
                let subject = statement::subject_of(&object)?;
                match verify::admit(&verified, &subject, &object, &rules, now) {
                    Ok(v) => outln!(
                        "ok     {subject}: as attested at revision {}",
                        v.statement.predicate.revision
                    )?,
                    Err(e) => {
                        failed += 1;
                        outln!("denied {e}")?;
                    }
                }
            }
        }
    }
    if failed > 0 {
        return Err(
            output::VerifyFailed(format!("{failed} attestation(s) or object(s) refused")).into(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The objects of a document: itself, or the items of a `List` (`kubectl get -o yaml`).
fn objects_in(v: Value) -> Vec<Value> {
    match v.get("kind").and_then(Value::as_str) {
        Some(_) if sealgate_core::manifest::is_list(&v) => match v {
            Value::Object(mut m) => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        Some(_) => vec![v],
        None => Vec::new(),
    }
}
