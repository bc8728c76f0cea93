//! Input, output and key loading shared by the subcommands.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sealgate_core::envelope::age::AgeRecipient;
use sealgate_core::keys::store::KeyStore;
use sealgate_core::keys::{KeyRing, PublicKey, SealingKey, secret};
use sealgate_core::manifest::{self, Document, Limits};
use sealgate_core::sealing::Target;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::args::{OutputFormat, PrivateKeySource, PublicKeySource};

/// Bound on anything read (stdin included), files and HTTP bodies alike.
pub const MAX_INPUT: usize = 64 << 20;

/// A verification failure: exit code 1 instead of 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerifyFailed(pub String);

/// Bytes read from a file or stdin. May hold plaintext, so wiped on drop.
pub struct Input {
    pub name: String,
    pub bytes: Zeroizing<Vec<u8>>,
}

/// Whether stdin carries input: a pipe, a socket or a redirected file, as ripgrep decides (not a
/// terminal, and not /dev/null or another character device, which CI runners often give).
pub fn stdin_has_input() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if std::io::stdin().is_terminal() {
            return false;
        }
        std::fs::metadata("/dev/stdin")
            .map(|m| {
                let t = m.file_type();
                t.is_fifo() || t.is_socket() || t.is_file()
            })
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Read `-f FILE`, or stdin when `file` is `None` or `-`.
pub fn read_input(file: Option<&Path>, what: &str) -> Result<Input> {
    match file {
        Some(p) if p.as_os_str() != "-" => read_file(p),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!(
                    "(tty detected: expecting {what} as YAML or JSON on stdin; end with Ctrl-D, or pass -f FILE)"
                );
            }
            let bytes = read_limited(stdin.lock(), MAX_INPUT).context("cannot read stdin")?;
            let Some(bytes) = bytes else {
                bail!("stdin: input is over the {MAX_INPUT}-byte limit");
            };
            Ok(Input {
                name: "<stdin>".into(),
                bytes,
            })
        }
    }
}

pub fn read_file(p: &Path) -> Result<Input> {
    let name = p.display().to_string();
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read {name}"))?;
    if meta.is_dir() {
        bail!("{name} is a directory, not a file");
    }
    if meta.len() > MAX_INPUT as u64 {
        bail!(
            "{name}: {} bytes is over the {MAX_INPUT}-byte limit",
            meta.len()
        );
    }
    // The size on disk is not trusted: a device (/dev/zero), a FIFO or a growing file has none.
    let file = std::fs::File::open(p).with_context(|| format!("cannot read {name}"))?;
    let Some(bytes) =
        read_limited(file, MAX_INPUT).with_context(|| format!("cannot read {name}"))?
    else {
        bail!("{name}: input is over the {MAX_INPUT}-byte limit");
    };
    Ok(Input { name, bytes })
}

/// Everything `r` holds, or `None` past `limit` bytes (having read no more than one byte past).
pub fn read_limited(r: impl Read, limit: usize) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

/// Parse an input into documents; errors read `FILE:LINE:COL: reason`.
pub fn parse_docs(input: &Input) -> Result<Vec<Document>> {
    manifest::parse(&input.bytes, &Limits::default()).map_err(|e| match e {
        manifest::ManifestError::Syntax { .. } => anyhow!("{}:{e}", input.name),
        other => anyhow!("{}: {other}", input.name),
    })
}

/// The objects of parsed documents: each list (`kubectl get -o yaml`) replaced by its items, each
/// item a document of its own at its line (the list's position in the stream kept as its index).
pub fn objects(input: &Input, docs: Vec<Document>) -> Vec<Document> {
    let text = std::str::from_utf8(&input.bytes).ok();
    let next_lines: Vec<Option<usize>> = (0..docs.len())
        .map(|i| docs.get(i + 1).map(|d| d.line))
        .collect();
    docs.into_iter()
        .zip(next_lines)
        .flat_map(|(doc, next)| {
            let index = doc.index;
            sealgate_core::manifest::items(doc, text, next)
                .into_iter()
                .map(move |item| Document {
                    index,
                    line: item.line,
                    value: item.value,
                })
        })
        .collect()
}

/// `FILE:LINE (document N, Kind ns/name)`, for messages about one document.
pub fn at(input: &Input, doc: &Document) -> String {
    let object = match doc.value.get("kind").and_then(Value::as_str) {
        Some(_) => format!(", {}", sealgate_core::policy::ObjectRef::of(&doc.value)),
        None => String::new(),
    };
    format!(
        "{}:{} (document {}{object})",
        input.name, doc.line, doc.index
    )
}

/// Whether a file should be written as JSON: by content for existing files, else by extension.
pub fn looks_like_json(path: &Path, content: Option<&[u8]>) -> bool {
    match content {
        Some(c) => c
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
        None => path.extension().is_some_and(|e| e == "json"),
    }
}

pub fn output_format(explicit: Option<OutputFormat>, file: Option<&Path>) -> OutputFormat {
    explicit.unwrap_or(match file {
        Some(p) if looks_like_json(p, None) => OutputFormat::Json,
        _ => OutputFormat::Yaml,
    })
}

pub fn render(values: &[Value], format: OutputFormat) -> String {
    match format {
        OutputFormat::Yaml => manifest::to_yaml_stream(values),
        OutputFormat::Json => manifest::to_json_stream(values),
    }
}

/// `input` with the documents of `changed` (by [`manifest::Document::index`]) replaced, editing
/// only what changes (`sealgate_core::rewrite`): other documents and comments stay byte for byte.
/// A document that changes shape is written anew, with a note.
pub fn rewrite(
    input: &Input,
    docs: &[manifest::Document],
    changed: &[(usize, Value)],
) -> Result<String> {
    use sealgate_core::rewrite::{Change, RewriteError};
    let fmt = if looks_like_json(Path::new(&input.name), Some(&input.bytes)) {
        OutputFormat::Json
    } else {
        OutputFormat::Yaml
    };
    let text = std::str::from_utf8(&input.bytes)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", input.name))?;
    let changes: Vec<Change<'_>> = changed
        .iter()
        .map(|(index, value)| Change {
            index: *index,
            value,
        })
        .collect();
    // A document written anew follows the `---` line it keeps.
    let render = |v: &Value| {
        let r = render(std::slice::from_ref(v), fmt);
        r.strip_prefix("---\n").map(str::to_string).unwrap_or(r)
    };
    match sealgate_core::rewrite::rewrite(text, &changes, render) {
        Ok(r) => {
            if !r.rendered.is_empty() {
                eprintln!(
                    "note: {}: document(s) {} changed shape (keys removed or multi-line values), so they were written anew without their comments; the other documents and comments are kept",
                    input.name,
                    r.rendered
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(r.text)
        }
        // Concatenated JSON objects: written anew, one after the other.
        Err(RewriteError::NotOneStream) => {
            let values: Vec<Value> = docs
                .iter()
                .map(|d| {
                    changed
                        .iter()
                        .find(|(i, _)| *i == d.index)
                        .map_or_else(|| d.value.clone(), |(_, v)| v.clone())
                })
                .collect();
            Ok(self::render(&values, fmt))
        }
        Err(e) => bail!("{}: {e}", input.name),
    }
}

/// Write to stdout, or atomically to `file` (a crash leaves the old file or the new one).
pub fn emit(text: &str, file: Option<&Path>, mode: Option<u32>) -> Result<()> {
    match file {
        Some(p) => {
            // `-w reports/lint.sarif`, `--attest attestations/apps.yaml`: make the folder, as
            // `sealgate man DIR` does. Private output (mode 0600) gets a private folder.
            if let Some(dir) = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.exists())
            {
                let mut b = std::fs::DirBuilder::new();
                b.recursive(true);
                #[cfg(unix)]
                if mode.is_some_and(|m| m & 0o077 == 0) {
                    use std::os::unix::fs::DirBuilderExt;
                    b.mode(0o700);
                }
                b.create(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            sealgate_core::fsutil::write_atomic(p, text.as_bytes(), mode)
                .with_context(|| format!("cannot write {}", p.display()))
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .context("cannot write to stdout")
        }
    }
}

pub fn key_store(dir: Option<&Path>) -> Result<KeyStore> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => dirs::config_dir()
            .map(|d| d.join("sealgate").join("keys"))
            .ok_or_else(|| anyhow!("no configuration directory on this system: pass --keys DIR"))?,
    };
    Ok(KeyStore::new(dir))
}

/// Every key in the store; reports skipped files on stderr.
pub fn load_store(store: &KeyStore) -> Result<KeyRing> {
    let loaded = store.load()?;
    for s in &loaded.skipped {
        eprintln!("note: skipped {s}");
    }
    Ok(loaded.ring)
}

/// Keys from a file: PEM (a private key, optionally with its certificate) or key Secrets.
pub fn keys_from_file(path: &Path) -> Result<Vec<SealingKey>> {
    keys_from_input(&read_file(path)?)
}

/// The documents of `input` if it holds Kubernetes objects (they have a kind); `None` for anything
/// else, such as PEM text (which parses as a YAML string).
pub fn manifest_docs(input: &Input) -> Option<Vec<Document>> {
    parse_docs(input)
        .ok()
        .filter(|d| d.iter().any(|d| d.value.get("kind").is_some()))
}

/// [`keys_from_file`] of an input already read.
pub fn keys_from_input(input: &Input) -> Result<Vec<SealingKey>> {
    let Some(docs) = manifest_docs(input) else {
        let key = secret::from_pem(&input.bytes, time::OffsetDateTime::now_utc())
            .with_context(|| input.name.clone())?;
        return Ok(vec![key]);
    };
    let mut keys = Vec::new();
    for doc in docs {
        for s in secret::secrets_in(&doc.value) {
            let s = s.map_err(|e| anyhow!("{}: {e}", at(input, &doc)))?;
            match secret::classify(&s) {
                secret::KeySecretKind::Inactive(state) => {
                    eprintln!(
                        "note: {}: skipped key Secret {} labelled {state:?}",
                        input.name,
                        s.meta.name.as_deref().unwrap_or("?")
                    );
                    continue;
                }
                secret::KeySecretKind::NotAKey if !s.data.contains_key("tls.key") => continue,
                _ => {}
            }
            let key = secret::from_secret(&s).map_err(|e| {
                anyhow!(
                    "{}: Secret {}: {e}",
                    at(input, &doc),
                    s.meta.name.as_deref().unwrap_or("?")
                )
            })?;
            keys.push(key);
        }
    }
    if keys.is_empty() {
        bail!(
            "{}: no sealing key found (expected key Secrets with tls.key and tls.crt, or a PEM private key)",
            input.name
        );
    }
    Ok(keys)
}

/// The private keys to open values with: `--private-key` files if given, else the key store.
pub fn load_ring(store_dir: Option<&Path>, src: &PrivateKeySource) -> Result<KeyRing> {
    if !src.private_keys.is_empty() {
        let mut ring = KeyRing::default();
        for p in &src.private_keys {
            for k in keys_from_file(p)? {
                ring.insert(k);
            }
        }
        return Ok(ring);
    }
    let store = key_store(store_dir)?;
    let ring = load_store(&store)?;
    if ring.is_empty() {
        // Only the keys that sealed the values can open them: a new key (`keys init`) never can.
        bail!(
            "no private keys: the key store {} is empty. Only the keys the values were sealed with can open them: import the cluster's (`kubectl get secret -n sealgate-system -l sealgate.dev/sealing-key -o yaml > keys.yaml`, then `sealgate keys import keys.yaml`), or pass --private-key FILE",
            store.dir().display()
        );
    }
    Ok(ring)
}

/// Certificates from a file path or a URL (`http(s)://`, `file://`).
pub fn fetch_certs(src: &str) -> Result<Vec<PublicKey>> {
    let (name, bytes) = if src.starts_with("http://") || src.starts_with("https://") {
        warn_plain_http(src, "fetching the certificate");
        (src.to_string(), http_get(src)?)
    } else {
        let path = PathBuf::from(src.strip_prefix("file://").unwrap_or(src));
        let input = read_file(&path).context("cannot read the certificate")?;
        (input.name, input.bytes.to_vec())
    };
    PublicKey::from_pem_bundle(&bytes).with_context(|| format!("{name}: not a usable certificate"))
}

fn http_get(url: &str) -> Result<Vec<u8>> {
    use ureq::tls::{RootCerts, TlsConfig};
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("Accept", "application/x-pem-file, */*")
        .call()
        .with_context(|| format!("cannot fetch the certificate from {url}"))?;
    resp.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .with_context(|| format!("cannot read the certificate from {url}"))
}

/// Extra age recipients from `--recipient` and `--recipients-file`.
pub fn extra_recipients(values: &[String], files: &[PathBuf]) -> Result<Vec<AgeRecipient>> {
    let mut out = Vec::new();
    for v in values {
        out.push(sealgate_core::envelope::age::parse_recipient(v).context("--recipient")?);
    }
    for f in files {
        let input = read_file(f)?;
        let text = String::from_utf8_lossy(&input.bytes);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                sealgate_core::envelope::age::parse_recipient(line)
                    .with_context(|| format!("{}:{}", input.name, i + 1))?,
            );
        }
    }
    Ok(out)
}

/// The public keys to seal to: `--cert`, else the key store's newest key.
pub fn target(
    store_dir: Option<&Path>,
    cert: Option<&str>,
    extra: Vec<AgeRecipient>,
    pq: bool,
) -> Result<Target> {
    let key = match cert {
        Some(src) => {
            // kubeseal uses the first certificate of a bundle, and so do we.
            fetch_certs(src)?.swap_remove(0)
        }
        None => {
            let store = key_store(store_dir)?;
            let ring = load_store(&store)?;
            let newest = ring.newest().ok_or_else(|| {
                anyhow!(
                    "no sealing key: the key store {} is empty; run `sealgate keys init`, or pass --cert FILE|URL",
                    store.dir().display()
                )
            })?;
            newest.public().clone()
        }
    };
    key.check_valid_at(time::OffsetDateTime::now_utc())?;
    Ok(Target::with(&key, &extra, pq))
}

pub fn public_target(store_dir: Option<&Path>, src: &PublicKeySource) -> Result<Target> {
    let target = public_target_unpinned(store_dir, src)?;
    if let Some(want) = &src.expect_key_id {
        let Some(got) = target.rsa.as_ref().map(PublicKey::id) else {
            bail!("--expect-key-id: there is no cluster key to check");
        };
        if !got.matches(want) {
            bail!(
                "the key to seal with is {got}, not the expected {want} (--expect-key-id): nothing was sealed. If the cluster's key was renewed, check the new id with `sealgate cert` over a trusted channel"
            );
        }
    }
    Ok(target)
}

/// A warning for a plain-HTTP URL to another host: whoever is on the path can swap the
/// certificate for their own and read every value sealed to it. Loopback (`kubectl
/// port-forward`) is exempt.
pub fn warn_plain_http(url: &str, what: &str) {
    if let Some(host) = plain_http_remote_host(url) {
        eprintln!(
            "warning: {what} over plain HTTP from {host}: anyone on the path can replace the key with their own; use https://, kube://, a file, or pin the key with --expect-key-id"
        );
    }
}

/// The host of an `http://` URL unless it is loopback.
fn plain_http_remote_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

fn public_target_unpinned(store_dir: Option<&Path>, src: &PublicKeySource) -> Result<Target> {
    let extra = extra_recipients(&src.recipients, &src.recipients_files)?;
    if let Some(controller) = src.controller.connect()? {
        if src.cert.is_some() {
            bail!("--cert and --controller both name the key to seal with: use one of them");
        }
        let pem = controller.get("/v1/cert.pem")?;
        let key = PublicKey::from_pem_bundle(&pem)
            .with_context(|| {
                format!(
                    "{}: /v1/cert.pem is not a usable certificate",
                    controller.describe()
                )
            })?
            .swap_remove(0);
        key.check_valid_at(time::OffsetDateTime::now_utc())?;
        return Ok(Target::with(&key, &extra, src.pq));
    }
    target(store_dir, src.cert.as_deref(), extra, src.pq)
}

/// Manifests under `paths`: files named explicitly, and *.yaml/*.yml/*.json found in directories.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            // Standard input, e.g. `helm template . | sealgate lint -`.
            out.push(p.clone());
            continue;
        }
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        if p.is_file() {
            // Named files get the walk's rules too: pre-commit names every changed file, and a
            // chart's templates or an ignored file must not fail the hook.
            match skipped_because(p) {
                Some(why) => eprintln!(
                    "note: skipped {} ({why}; pipe it to `-` to check it anyway)",
                    p.display()
                ),
                None => out.push(p.clone()),
            }
            continue;
        }
        let walker = ignore::WalkBuilder::new(p)
            .hidden(true)
            .git_ignore(true)
            .require_git(false)
            .add_custom_ignore_filename(".sealgateignore")
            .filter_entry(|e| !is_chart_templates(e.path()))
            .build();
        for entry in walker {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type().is_some_and(|t| t.is_file())
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            {
                out.push(path.to_path_buf());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Why a named file is one a directory walk would skip, if it is: hidden (in a relative path), in a
/// Helm chart's `templates/`, or matched by a `.sealgateignore` or `.gitignore` in its directory
/// or one above it (up to the repository root, the directory with `.git`).
fn skipped_because(file: &Path) -> Option<String> {
    // Only the path as named from the current directory (pre-commit names files from the
    // repository root): an absolute path may well pass through /tmp/.tmpXYZ.
    let hidden = file.is_relative()
        && file.components().any(|c| match c {
            std::path::Component::Normal(n) => n.to_str().is_some_and(|n| n.starts_with('.')),
            _ => false,
        });
    if hidden {
        return Some("a hidden file or directory".into());
    }
    let abs = std::path::absolute(file).ok()?;
    let mut dir = abs.parent();
    let mut decided = false;
    let mut reason = None;
    while let Some(d) = dir {
        if is_chart_templates(d) {
            return Some(format!(
                "a Helm chart's templates, not manifests: lint `helm template {}`'s output instead",
                d.parent().unwrap_or(d).display()
            ));
        }
        // The deepest ignore file with a rule for the file decides, as in git.
        for name in [".sealgateignore", ".gitignore"] {
            let rules = d.join(name);
            if decided || !rules.is_file() {
                continue;
            }
            let mut b = ignore::gitignore::GitignoreBuilder::new(d);
            if b.add(&rules).is_some() {
                continue;
            }
            let Ok(gi) = b.build() else { continue };
            match gi.matched_path_or_any_parents(&abs, false) {
                ignore::Match::Ignore(_) => {
                    decided = true;
                    reason = Some(format!("matched by {}", rules.display()));
                }
                ignore::Match::Whitelist(_) => decided = true,
                ignore::Match::None => {}
            }
        }
        if d.join(".git").exists() {
            break;
        }
        dir = d.parent();
    }
    reason
}

/// A Helm chart's `templates/` holds Go templates, not manifests.
fn is_chart_templates(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "templates")
        && p.parent().is_some_and(|d| d.join("Chart.yaml").is_file())
}

#[cfg(test)]
mod tests {
    use super::plain_http_remote_host as remote;

    #[test]
    fn plain_http_to_another_host_is_flagged_loopback_and_https_are_not() {
        assert_eq!(
            remote("http://sealgate.example.com/v1/cert.pem"),
            Some("sealgate.example.com")
        );
        assert_eq!(remote("http://10.0.0.7:8080"), Some("10.0.0.7"));
        assert_eq!(
            remote("http://user@evil.example:80/x"),
            Some("evil.example")
        );
        assert_eq!(remote("http://[2001:db8::1]:8080/"), Some("2001:db8::1"));
        for quiet in [
            "http://localhost:8080/v1/cert.pem",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "https://sealgate.example.com/v1/cert.pem",
            "kube://",
            "cert.pem",
        ] {
            assert_eq!(remote(quiet), None, "{quiet}");
        }
    }
}
