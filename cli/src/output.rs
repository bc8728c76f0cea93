//! Writing results: output formats, and whole-file writes that never leave a partial file; the
//! error that exits 1.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sealgate_core::manifest;
use serde_json::Value;

use crate::args::OutputFormat;
use crate::input::{Input, looks_like_json};

/// A verification failure: exit code 1 instead of 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerifyFailed(pub String);

pub fn output_format(explicit: Option<OutputFormat>, file: Option<&Path>) -> OutputFormat {
    explicit.unwrap_or(match file {
        Some(p) if looks_like_json(p, None) => OutputFormat::Json,
        _ => OutputFormat::Yaml,
    })
}

pub fn serialize_objects(values: &[Value], format: OutputFormat) -> String {
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
        let r = serialize_objects(std::slice::from_ref(v), fmt);
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
            Ok(serialize_objects(&values, fmt))
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
