//! Rewriting documents of a YAML or JSON stream in place, keeping everything else byte for byte:
//! other documents, comments, quoting, key order. `sealgate reseal` changes a SealedSecret's
//! values and its key-id annotation, and a reviewer's comments around them must survive.
//!
//! A document is edited, not re-rendered, when the change is scalars replaced by other scalars
//! and new scalar keys added to block mappings; each edit is checked by parsing the result. Any
//! other change (a key removed, a multi-line scalar, a flow mapping gaining a key) re-renders
//! that document alone, and the caller is told, since its comments are then lost.

use serde_json::Value;

use crate::manifest::{self, ParseLimits};

/// A document to change: its 1-based index in the stream ([`manifest::Document::index`]) and
/// its new content.
pub struct Change<'a> {
    /// [`manifest::Document::index`] of the document.
    pub index: usize,
    /// What it must hold afterwards.
    pub value: &'a Value,
}

/// The rewritten text, and the indexes of the documents that had to be re-rendered whole.
#[derive(Debug)]
pub struct Rewritten {
    /// The new stream.
    pub text: String,
    /// Documents rendered anew (their comments are gone).
    pub rendered: Vec<usize>,
}

/// Why a stream could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The input does not parse.
    #[error(transparent)]
    Parse(#[from] manifest::ManifestError),
    /// Concatenated JSON objects (`{…}{…}`), which only [`manifest::parse`] splits.
    #[error("not a YAML stream (concatenated JSON objects)")]
    NotOneStream,
    /// A change names a document the stream does not have.
    #[error("the stream has no document {0}")]
    NoDocument(usize),
}

/// Apply `changes` to `text`. `render` writes a document anew where editing cannot express a
/// change (YAML or JSON, as the file is).
pub fn rewrite(
    text: &str,
    changes: &[Change<'_>],
    render: impl Fn(&Value) -> String,
) -> Result<Rewritten, RewriteError> {
    let limits = ParseLimits::default();
    // For its messages: a stream that does not parse is reported as lint and seal report it.
    manifest::parse(text.as_bytes(), &limits)?;
    let parse_all = || -> Option<(Vec<Value>, Vec<Node>)> {
        let opts = || manifest::options(&limits);
        Some((
            serde_saphyr::from_multiple_with_options(text, opts()).ok()?,
            serde_saphyr::from_multiple_with_options(text, opts()).ok()?,
        ))
    };
    // A JSON stream of several objects is no YAML stream: the caller renders it anew.
    let (old, trees) = parse_all().ok_or(RewriteError::NotOneStream)?;
    let mut edits = Vec::new();
    let mut rendered = Vec::new();
    for c in changes {
        let i = c
            .index
            .checked_sub(1)
            .ok_or(RewriteError::NoDocument(c.index))?;
        let (before, tree) = old
            .get(i)
            .zip(trees.get(i))
            .ok_or(RewriteError::NoDocument(c.index))?;
        let mut doc_edits = Vec::new();
        if diff(text, tree, before, c.value, &mut doc_edits).is_some() {
            // Checked: the edited document must read back as the new value.
            let candidate = apply(text, &doc_edits);
            let ok = serde_saphyr::from_multiple_with_options::<Value>(
                &candidate,
                manifest::options(&limits),
            )
            .is_ok_and(|docs| docs.get(i) == Some(c.value) && docs.len() == old.len());
            if ok {
                edits.extend(doc_edits);
                continue;
            }
        }
        let (start, end) = document_range(text, tree);
        edits.push(Edit {
            start,
            end,
            text: render(c.value),
        });
        rendered.push(c.index);
    }
    Ok(Rewritten {
        text: apply(text, &edits),
        rendered,
    })
}

/// Replace `start..end` (bytes) with `text`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.start));
    let mut out = text.to_string();
    for e in sorted {
        out.replace_range(e.start..e.end, &e.text);
    }
    out
}

/// The edits that turn `old` (parsed as `node`) into `new`; `None` when edits cannot express it.
fn diff(text: &str, node: &Node, old: &Value, new: &Value, out: &mut Vec<Edit>) -> Option<()> {
    if old == new {
        return Some(());
    }
    match (&node.kind, old, new) {
        (Kind::Map(entries), Value::Object(o), Value::Object(n)) => {
            if o.keys().any(|k| !n.contains_key(k)) {
                return None;
            }
            for (key, _, child) in entries {
                diff(text, child, o.get(key)?, n.get(key)?, out)?;
            }
            let added: Vec<(&String, &Value)> =
                n.iter().filter(|(k, _)| !o.contains_key(*k)).collect();
            if !added.is_empty() {
                insert(text, node, entries, &added, out)?;
            }
            Some(())
        }
        (Kind::Seq(items), Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for ((child, o), n) in items.iter().zip(o).zip(n) {
                diff(text, child, o, n, out)?;
            }
            Some(())
        }
        (Kind::Scalar, _, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            let (start, end) = range(node)?;
            let original = &text[start..end];
            if original.contains('\n') {
                return None;
            }
            out.push(Edit {
                start,
                end,
                text: scalar(new, original.chars().next())?,
            });
            Some(())
        }
        _ => None,
    }
}

/// New scalar entries at the end of a block mapping, at its keys' indentation.
fn insert(
    text: &str,
    node: &Node,
    entries: &[(String, serde_saphyr::Location, Node)],
    added: &[(&String, &Value)],
    out: &mut Vec<Edit>,
) -> Option<()> {
    let first_key = byte_range(&entries.first()?.1)?.0;
    let (map_start, _) = range(node)?;
    if text[map_start..].starts_with('{') {
        return None;
    }
    let line_start = text[..first_key].rfind('\n').map_or(0, |p| p + 1);
    let indent = &text[line_start..first_key];
    if !indent.bytes().all(|b| b == b' ') {
        return None;
    }
    let end = node.end()?;
    let at = text[end..].find('\n').map_or(text.len(), |p| end + p + 1);
    let mut lines = String::new();
    if at == text.len() && !text.ends_with('\n') {
        lines.push('\n');
    }
    for (k, v) in added {
        let key = scalar(&Value::String((*k).clone()), None)?;
        lines.push_str(&format!("{indent}{key}: {}\n", scalar(v, None)?));
    }
    out.push(Edit {
        start: at,
        end: at,
        text: lines,
    });
    Some(())
}

/// A scalar's YAML text in the original's style (`"`, `'` or plain), or `None` for non-scalars.
/// A plain scalar that would read back as something else (a number, `true`, `null`) or not at
/// all is double-quoted instead.
fn scalar(v: &Value, style: Option<char>) -> Option<String> {
    let s = match v {
        Value::String(s) => s,
        Value::Number(_) | Value::Bool(_) => return Some(v.to_string()),
        _ => return None,
    };
    let quoted = serde_json::to_string(s).ok()?;
    Some(match style {
        Some('"') => quoted,
        Some('\'') if !s.contains(['\n', '\r']) && !s.chars().any(char::is_control) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        _ => {
            let reads_back = serde_saphyr::from_str::<Value>(&format!("k: {s}"))
                .ok()
                .and_then(|v| v.get("k").cloned())
                == Some(Value::String(s.clone()));
            if reads_back && !s.is_empty() && !s.contains(['#', '\n']) && s.trim() == s {
                s.clone()
            } else {
                quoted
            }
        }
    })
}

/// Bytes of a whole document: from the line after the `---` that opens it (or the stream's
/// start) to the next document's `---` line (or the end).
fn document_range(text: &str, node: &Node) -> (usize, usize) {
    let root = range(node).map_or(0, |r| r.0);
    let mut start = 0;
    let mut end = text.len();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("---") {
            if pos + line.len() <= root {
                start = pos + line.len();
            } else if pos > root {
                end = pos;
                break;
            }
        }
        pos += line.len();
    }
    (start, end)
}

use crate::manifest::{SpannedKind as Kind, SpannedNode as Node};

/// A node's byte range in the text: a scalar's text (quotes included), a collection's first
/// byte. `None` where the parser had no string input.
fn range(node: &Node) -> Option<(usize, usize)> {
    byte_range(&node.at)
}

impl Node {
    /// The last byte of the node's text: the end of its last scalar or key.
    fn end(&self) -> Option<usize> {
        let own = range(self).map(|r| r.1);
        let inner = match &self.kind {
            Kind::Scalar => None,
            Kind::Seq(items) => items.iter().filter_map(Node::end).max(),
            Kind::Map(entries) => entries
                .iter()
                .flat_map(|(_, k, v)| [byte_range(k).map(|r| r.1), v.end()])
                .flatten()
                .max(),
        };
        own.max(inner)
    }
}

fn byte_range(l: &serde_saphyr::Location) -> Option<(usize, usize)> {
    let s = l.span();
    let start = usize::try_from(s.byte_offset()?).ok()?;
    Some((start, start + usize::try_from(s.byte_len()?).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(v: &Value) -> String {
        manifest::to_yaml(v)
    }

    /// `text` with its first document changed to `new`.
    fn first(text: &str, new: &Value) -> Rewritten {
        rewrite(
            text,
            &[Change {
                index: 1,
                value: new,
            }],
            yaml,
        )
        .unwrap()
    }

    fn docs(text: &str) -> Vec<Value> {
        manifest::parse(text.as_bytes(), &ParseLimits::default())
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect()
    }

    const STREAM: &str = "# The shop's database credentials.
apiVersion: sealgate.dev/v1alpha1
kind: SealedSecret
metadata:
  name: db   # owned by team shop
  namespace: shop
  annotations:
    sealgate.dev/scope: strict
spec:
  encryptedData:
    # rotated every quarter
    password: AAAA
    user: 'BBBB' # quoted
---
# untouched
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {a: \"1\"}
";

    #[test]
    fn scalars_change_and_keys_are_added_keeping_comments_and_other_documents() {
        let mut new = docs(STREAM)[0].clone();
        new["spec"]["encryptedData"]["password"] = json!("CCCC+/=");
        new["spec"]["encryptedData"]["user"] = json!("it's");
        new["metadata"]["annotations"]["sealgate.dev/key-id"] = json!("0123456789abcdef");
        let out = first(STREAM, &new);
        assert!(out.rendered.is_empty());
        assert_eq!(
            out.text,
            STREAM
                .replace("password: AAAA", "password: CCCC+/=")
                .replace("user: 'BBBB'", "user: 'it''s'")
                .replace(
                    "    sealgate.dev/scope: strict\n",
                    "    sealgate.dev/scope: strict\n    sealgate.dev/key-id: 0123456789abcdef\n"
                )
        );
        assert_eq!(docs(&out.text)[0], new);
    }

    #[test]
    fn a_plain_scalar_that_would_change_type_is_quoted() {
        let text = "a: x\nb: y\n";
        let new = json!({"a": "12345678", "b": "true"});
        let out = first(text, &new);
        assert_eq!(out.text, "a: \"12345678\"\nb: \"true\"\n");
    }

    #[test]
    fn json_stays_json() {
        let text = "{\n  \"kind\": \"SealedSecret\",\n  \"spec\": {\"encryptedData\": {\"a\": \"AAAA\"}}\n}\n";
        let new = json!({"kind": "SealedSecret", "spec": {"encryptedData": {"a": "B\"B"}}});
        let out = first(text, &new);
        assert!(out.rendered.is_empty());
        assert_eq!(out.text, text.replace("\"AAAA\"", "\"B\\\"B\""));
        assert_eq!(serde_json::from_str::<Value>(&out.text).unwrap(), new);
    }

    #[test]
    fn shape_changes_render_that_document_alone() {
        let mut new = docs(STREAM)[0].clone();
        new["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("sealgate.dev/scope");
        let out = first(STREAM, &new);
        assert_eq!(out.rendered, [1]);
        let (_, rest) = STREAM.split_once("---\n").unwrap();
        assert!(out.text.ends_with(&format!("---\n{rest}")), "{}", out.text);
        assert_eq!(docs(&out.text), vec![new, docs(STREAM)[1].clone()]);
        // A block scalar cannot be edited in place either.
        let text = "a: |\n  x\n  y\nb: 1\n";
        let new = json!({"a": "z", "b": 1});
        let out = first(text, &new);
        assert_eq!((out.rendered, docs(&out.text)), (vec![1], vec![new]));
    }

    #[test]
    fn a_flow_mapping_gaining_a_key_is_rendered() {
        let text = "metadata: {name: c}\n";
        let new = json!({"metadata": {"name": "c", "labels": "x"}});
        let out = first(text, &new);
        assert_eq!((out.rendered, docs(&out.text)), (vec![1], vec![new]));
    }
}
