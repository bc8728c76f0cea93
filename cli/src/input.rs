//! Reading what the user gives: files and stdin (bounded), and the documents in them.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use sealgate_core::manifest::{self, Document, ParseLimits};
use serde_json::Value;
use zeroize::Zeroizing;

/// Bound on anything read (stdin included), files and HTTP bodies alike.
pub const MAX_INPUT: usize = 64 << 20;

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
    manifest::parse(&input.bytes, &ParseLimits::default()).map_err(|e| match e {
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

/// The documents of `input` if it holds Kubernetes objects (they have a kind); `None` for anything
/// else, such as PEM text (which parses as a YAML string).
pub fn manifest_docs(input: &Input) -> Option<Vec<Document>> {
    parse_docs(input)
        .ok()
        .filter(|d| d.iter().any(|d| d.value.get("kind").is_some()))
}
