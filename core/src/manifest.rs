//! Bounded multi-document YAML/JSON loading with the line of every document.
//!
//! Everything goes through serde-saphyr (pure Rust, budgets against YAML bombs and deep nesting,
//! duplicate keys rejected so a second value cannot be smuggled past a reviewer). JSON input is
//! YAML too, except a stream of concatenated JSON objects (what kubeseal accepts), which is split
//! into documents first.
//!
//! Error messages keep only `line:col` and the reason: serde-saphyr's snippet rendering would
//! print the surrounding source lines, which for a Secret are its plaintext (DESIGN §10).

use serde_json::Value;

/// Bounds on what is read from outside. They stop bombs (aliases that expand, endless nesting),
/// not large repositories: `helm template` of a big chart or `kubectl kustomize` of a monorepo is
/// tens of thousands of documents. What a stream may cost is bounded by its bytes (every node
/// costs at least a byte or two of input, except an alias, whose expansion serde-saphyr bounds
/// itself), so the node and event budgets are set from `max_bytes`, not guessed.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Bytes in one stream or file.
    pub max_bytes: usize,
    /// Documents in one stream (`--max-documents`).
    pub max_documents: usize,
    /// Nesting depth of one document.
    pub max_depth: usize,
    /// YAML nodes in one stream (derived from `max_bytes`).
    pub max_nodes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        let max_bytes = 256 << 20;
        ParseLimits {
            max_bytes,
            max_documents: 100_000,
            max_depth: 64,
            // One node per two bytes: "a:" is a node and its key.
            max_nodes: max_bytes / 2,
        }
    }
}

impl ParseLimits {
    /// The limits with another document count (`--max-documents`).
    pub fn with_max_documents(self, max_documents: usize) -> ParseLimits {
        ParseLimits {
            max_documents,
            ..self
        }
    }
}

/// One document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position in the stream (empty documents are not counted).
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The document, as JSON.
    pub value: Value,
}

/// Why a stream could not be read. Messages name the position, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid YAML or JSON.
    #[error("{line}:{column}: {reason}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser says is wrong.
        reason: String,
    },
    /// A limit of [`ParseLimits`] was passed; the message says which and how to raise it.
    #[error("{0}")]
    Limit(String),
    /// The input is not UTF-8; the offset of the first bad byte.
    #[error("not UTF-8 text (invalid byte at offset {0}); is this a binary file?")]
    NotUtf8(usize),
}

/// Parse a YAML or JSON stream into documents.
pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Vec<Document>, ManifestError> {
    if bytes.len() > limits.max_bytes {
        return Err(ManifestError::Limit(format!(
            "input is {} bytes, over the {}-byte limit",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        // JSON, or a YAML flow mapping (`{apiVersion: v1, …}`): YAML decides when JSON can't.
        parse_json_stream(text, limits).or_else(|json_err| match parse_yaml(text, 0, limits) {
            Ok(docs) => Ok(docs),
            Err(ManifestError::Limit(l)) => Err(ManifestError::Limit(l)),
            Err(_) => Err(json_err),
        })
    } else {
        parse_yaml(text, 0, limits)
    }
}

pub(crate) fn options(limits: &ParseLimits) -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: limits.max_documents,
            max_depth: limits.max_depth,
            max_nodes: limits.max_nodes,
            // Every node is at least a start event, a collection also an end event.
            max_events: limits.max_nodes.saturating_mul(2),
            max_reader_input_bytes: Some(limits.max_bytes),
        },
        with_snippet: false,
        crop_radius: 0,
        // "yes"/"on" stay strings, as Kubernetes (YAML 1.2) reads them.
        strict_booleans: true,
    }
}

fn parse_yaml(
    text: &str,
    line_offset: usize,
    limits: &ParseLimits,
) -> Result<Vec<Document>, ManifestError> {
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, options(limits)).map_err(|e| {
            budget_error(&e, limits).unwrap_or_else(|| syntax_error(&e, line_offset))
        })?;
    Ok(docs
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.value.is_null())
        .map(|(i, d)| Document {
            index: i + 1,
            line: d.referenced.line() as usize + line_offset,
            value: d.value,
        })
        .collect())
}

/// A breached budget, said for a person: which limit, its value, and how to raise it.
fn budget_error(e: &serde_saphyr::Error, limits: &ParseLimits) -> Option<ManifestError> {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    let serde_saphyr::Error::Budget { breach, .. } = e else {
        return None;
    };
    let message = match breach {
        B::Documents { .. } => format!(
            "more than {} documents in one stream (`sealgate lint --max-documents N` raises the limit)",
            limits.max_documents
        ),
        B::Depth { .. } => format!(
            "nested deeper than {} levels: no Kubernetes object needs that (a YAML bomb?)",
            limits.max_depth
        ),
        B::Nodes { .. } | B::Events { .. } => format!(
            "more than {} YAML nodes in one stream: split the input",
            limits.max_nodes
        ),
        B::Aliases { .. }
        | B::Anchors { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. }
        | B::MergeKeys { .. } => "its aliases (*ref) expand beyond what sealgate reads (a YAML alias bomb?): expand them or split the input".to_string(),
        B::ScalarBytes { .. } | B::InputBytes { .. } => format!(
            "larger than the {}-byte limit",
            limits.max_bytes
        ),
        other => format!("beyond a YAML resource limit ({other:?})"),
    };
    Some(ManifestError::Limit(message))
}

fn syntax_error(e: &serde_saphyr::Error, line_offset: usize) -> ManifestError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    // The rendered message ends with its own " at line X column Y"; keep only the reason.
    let mut reason = e.without_snippet().to_string();
    if let Some(pos) = reason.find(" at line ") {
        reason.truncate(pos);
    }
    // The library's wording names its own option; say what is wrong and what to do instead.
    if let Some(key) = reason
        .strip_prefix("duplicate mapping key: ")
        .map(|k| k.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable"))
    {
        reason = format!(
            "the key {key:?} appears twice in the same mapping (which value counts depends on the tool; keep one)"
        );
    }
    ManifestError::Syntax {
        line: line + line_offset,
        column,
        reason,
    }
}

/// `{...}{...}` or `{...}\n{...}`: find each object's bytes with serde_json, then parse each with
/// serde-saphyr so duplicate keys and budgets are handled the same way as YAML.
fn parse_json_stream(text: &str, limits: &ParseLimits) -> Result<Vec<Document>, ManifestError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut docs = Vec::new();
    let mut start = 0;
    while let Some(item) = stream.next() {
        if let Err(e) = item {
            return Err(ManifestError::Syntax {
                line: e.line(),
                column: e.column(),
                reason: json_reason(&e),
            });
        }
        let end = stream.byte_offset();
        if docs.len() >= limits.max_documents {
            return Err(ManifestError::Limit(format!(
                "more than {} documents in one stream (`sealgate lint --max-documents N` raises the limit)",
                limits.max_documents
            )));
        }
        let chunk = &text[start..end];
        let offset = text[..start].matches('\n').count();
        let mut parsed = parse_yaml(chunk, offset, limits)?;
        for mut d in parsed.drain(..) {
            d.index = docs.len() + 1;
            docs.push(d);
        }
        start = end;
    }
    Ok(docs)
}

/// serde_json's syntax errors don't quote input, but strip its position suffix for uniformity.
fn json_reason(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    if let Some(pos) = s.find(" at line ") {
        s.truncate(pos);
    }
    s
}

/// Whether `v` is a list of objects, as `kubectl get -o yaml` and the API server write them:
/// `kind: List`, or a `…List` kind (`SecretList`, `DeploymentList`) with an `items` array and no
/// `spec` (a custom resource whose kind happens to end in "List" has one).
pub fn is_list(v: &Value) -> bool {
    let Some(kind) = v.get("kind").and_then(Value::as_str) else {
        return false;
    };
    let items = v.get("items").is_some_and(Value::is_array);
    kind == "List" || (kind.ends_with("List") && items && v.get("spec").is_none())
}

/// One object of a document: the document itself, or an item of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The object.
    pub value: Value,
    /// 1-based line where the object starts.
    pub line: usize,
    /// Where the object sits in its document: empty for the document itself, `["items", "N"]`
    /// for a list's item (prefix a field path with it to find the field's line).
    pub path: Vec<String>,
}

/// The objects of a document: itself, or, for a list ([`is_list`]), each item with its own line
/// (found in `text`, the document's source, when it is given and parses).
pub fn items(doc: Document, text: Option<&str>, next_line: Option<usize>) -> Vec<Item> {
    if !is_list(&doc.value) {
        return vec![Item {
            value: doc.value,
            line: doc.line,
            path: Vec::new(),
        }];
    }
    let Value::Object(mut list) = doc.value else {
        return Vec::new();
    };
    let Some(Value::Array(objects)) = list.remove("items") else {
        return Vec::new();
    };
    let positions = text.and_then(|t| {
        Positions::of_document(t, doc.line, next_line)
            .map(|p| (p, 1))
            .or_else(|| Positions::parse(t).map(|p| (p, doc.index)))
    });
    objects
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let path = vec!["items".to_string(), i.to_string()];
            let line = positions
                .as_ref()
                .and_then(|(p, index)| p.line(*index, &path))
                .unwrap_or(doc.line);
            Item { value, line, path }
        })
        .collect()
}

/// Where each line of a text starts (byte offsets; one past the end for a final newline).
pub struct LineStarts(Vec<usize>);

impl LineStarts {
    /// Of `text`.
    pub fn new(text: &str) -> LineStarts {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineStarts(starts)
    }
}

/// Line numbers of every node of a YAML/JSON text, for reporting the line of a field.
pub struct Positions {
    /// (line offset, document) per document; the offset is non-zero in a JSON stream.
    docs: Vec<(usize, PNode)>,
}

impl Positions {
    /// Index a text. `None` if it does not parse (then its documents have no findings anyway).
    pub fn parse(text: &str) -> Option<Positions> {
        let opts = || options(&ParseLimits::default());
        let docs = if text.trim_start().starts_with('{') {
            let mut stream =
                serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
            let mut docs = Vec::new();
            let mut start = 0;
            while let Some(Ok(_)) = stream.next() {
                let end = stream.byte_offset();
                let offset = text[..start].matches('\n').count();
                docs.push((
                    offset,
                    serde_saphyr::from_str_with_options(&text[start..end], opts()).ok()?,
                ));
                start = end;
            }
            docs
        } else {
            let nodes: Vec<PNode> = serde_saphyr::from_multiple_with_options(text, opts()).ok()?;
            nodes.into_iter().map(|n| (0, n)).collect()
        };
        Some(Positions { docs })
    }

    /// Index one document of a text: the lines from its root node's (`line`, as in
    /// [`Document::line`]) up to the next document's root line (exclusive), as document 1.
    /// `None` if that slice is not one YAML document by itself (then index the whole text).
    pub fn of_document(text: &str, line: usize, next_line: Option<usize>) -> Option<Positions> {
        Positions::of_document_in(text, &LineStarts::new(text), line, next_line)
    }

    /// [`Positions::of_document`] with the text's line starts computed once (a stream's
    /// documents are each indexed in time of their own length, not of the stream's).
    pub fn of_document_in(
        text: &str,
        starts: &LineStarts,
        line: usize,
        next_line: Option<usize>,
    ) -> Option<Positions> {
        let start_line = line.checked_sub(1)?;
        let skipped = *starts.0.get(start_line)?;
        let end = match next_line {
            Some(n) => *starts.0.get(n.checked_sub(1)?)?,
            None => text.len(),
        };
        let slice = text.get(skipped..end)?;
        let nodes: Vec<PNode> =
            serde_saphyr::from_multiple_with_options(slice, options(&ParseLimits::default()))
                .ok()?;
        let first = nodes.into_iter().next()?;
        // Line numbers inside the slice are 1-based from its start.
        Some(Positions {
            docs: vec![(start_line, first)],
        })
    }

    /// The line of the node at `path` (map keys and sequence indexes) in document `index`
    /// (1-based, as in [`Document::index`]); the deepest node found if the path goes further.
    pub fn line(&self, index: usize, path: &[String]) -> Option<usize> {
        let (offset, doc) = self.docs.get(index.checked_sub(1)?)?;
        Some(doc.find(path, doc.line()) + offset)
    }
}

/// A YAML node and where it is: its token's location (line; byte span for string input), and
/// each mapping key's. [`Positions`] reads the lines, `crate::rewrite` the byte spans.
pub(crate) struct SpannedNode {
    pub(crate) at: serde_saphyr::Location,
    pub(crate) kind: SpannedKind,
}

pub(crate) enum SpannedKind {
    Scalar,
    Seq(Vec<SpannedNode>),
    /// (key, the key's location, value)
    Map(Vec<(String, serde_saphyr::Location, SpannedNode)>),
}

type PNode = SpannedNode;

impl SpannedNode {
    fn line(&self) -> usize {
        self.at.line() as usize
    }

    /// `anchor` is the line reported for this node: its key's line inside a mapping.
    fn find(&self, path: &[String], anchor: usize) -> usize {
        let Some((first, rest)) = path.split_first() else {
            return anchor;
        };
        let child = match &self.kind {
            SpannedKind::Map(entries) => entries
                .iter()
                .find(|(k, _, _)| k == first)
                .map(|(_, l, v)| (l.line() as usize, v)),
            SpannedKind::Seq(items) => first
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .map(|v| (v.line(), v)),
            SpannedKind::Scalar => None,
        };
        child.map_or(anchor, |(line, c)| c.find(rest, line))
    }
}

impl<'de> serde::Deserialize<'de> for SpannedNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<SpannedKind>::deserialize(d)?;
        Ok(SpannedNode {
            at: s.referenced,
            kind: s.value,
        })
    }
}

impl<'de> serde::Deserialize<'de> for SpannedKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpannedKind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_unit<E>(self) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_none<E>(self) -> Result<SpannedKind, E> {
                Ok(SpannedKind::Scalar)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<SpannedKind, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element::<SpannedNode>()? {
                    items.push(n);
                }
                Ok(SpannedKind::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<SpannedKind, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = a.next_key::<serde_saphyr::Spanned<Value>>()? {
                    let key = match k.value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    entries.push((key, k.referenced, a.next_value::<SpannedNode>()?));
                }
                Ok(SpannedKind::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Render documents as a YAML stream (`---` before each).
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(v));
    }
    out
}

/// `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings
/// and numbers as serde_json writes them. Two renderings of the same manifest (YAML or JSON, any
/// key order) give the same bytes, so their digest identifies the object's content.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, k).expect("a string serializes");
                    out.push(b':');
                    write(&m[k], out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serializes"),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// SHA-256 of `bytes`, lower-case hex: content identities (attestation subjects, bundle and
/// SealedSecret digests, key ids).
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One document as YAML (block style, keys in their order).
pub fn to_yaml(value: &Value) -> String {
    // Plain scalars: kubectl-style output, and no `>-` folding of long base64 values.
    let opts = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let mut s =
        serde_saphyr::to_string_with_options(value, opts).unwrap_or_else(|e| format!("# {e}\n"));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Pretty JSON, one object after another (kubeseal's `-o json` stream).
pub fn to_json_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for v in values {
        out.push_str(&serde_json::to_string_pretty(v).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Vec<Document>, ManifestError> {
        parse(s.as_bytes(), &ParseLimits::default())
    }

    #[test]
    fn multi_document_yaml_with_lines() {
        let docs =
            p("# leading comment\napiVersion: v1\nkind: Secret\n---\n---\n\nkind: ConfigMap\n")
                .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].line), (1, 2));
        assert_eq!(docs[1].value["kind"], "ConfigMap");
        assert_eq!(docs[1].line, 7);
    }

    #[test]
    fn json_stream_with_lines() {
        let docs = p("{\"kind\": \"A\"}\n\n{\n  \"kind\": \"B\"\n}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["kind"], "B");
        assert_eq!(docs[1].line, 3);
        let e = p("{\"kind\": \"A\"}\n{\"kind\": }").unwrap_err();
        assert!(matches!(e, ManifestError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn yaml_flow_mapping_is_not_mistaken_for_json() {
        let docs = p("{apiVersion: v1, kind: Secret}\n").unwrap();
        assert_eq!(docs[0].value["kind"], "Secret");
    }

    #[test]
    fn syntax_error_has_position_and_no_source_snippet() {
        let e =
            p("apiVersion: v1\nstringData:\n  password: hunter2\n  bad: [unclosed\n").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ManifestError::Syntax { line: 4, .. }), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = p("stringData:\n  password: a\n  password: b\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "3:3: the key \"password\" appears twice in the same mapping (which value counts depends on the tool; keep one)"
        );
    }

    #[test]
    fn yaml_bomb_and_deep_nesting_are_rejected() {
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        assert!(p(bomb).is_err());
        let deep = "[".repeat(50_000);
        assert!(p(&deep).is_err());
    }

    #[test]
    fn limits_and_binary() {
        let limits = ParseLimits {
            max_bytes: 10,
            ..ParseLimits::default()
        };
        assert!(matches!(
            parse(b"kind: Secret\n", &limits),
            Err(ManifestError::Limit(_))
        ));
        assert_eq!(
            parse(b"a: \xff\xfe", &ParseLimits::default()),
            Err(ManifestError::NotUtf8(3))
        );
        assert!(p("").unwrap().is_empty());
    }

    /// `kubectl get secret -o yaml` writes a `v1 List`; the API server's own lists are `…List`
    /// kinds. Each item is an object with its own line; other documents are themselves.
    #[test]
    fn lists_are_their_items() {
        let text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Secret\n    metadata: {name: a}\n  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: b}\nmetadata:\n  resourceVersion: \"\"\n---\nkind: ConfigMap\n";
        let docs = parse(text.as_bytes(), &ParseLimits::default()).unwrap();
        let next = docs.get(1).map(|d| d.line);
        let mut it = docs.into_iter();
        let list = items(it.next().unwrap(), Some(text), next);
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].value["kind"].as_str(), list[0].line),
            (Some("Secret"), 4)
        );
        assert_eq!(
            (list[1].value["kind"].as_str(), list[1].line),
            (Some("Deployment"), 7)
        );
        assert_eq!(list[1].path, ["items", "1"]);
        let cm = items(it.next().unwrap(), Some(text), None);
        assert_eq!((cm.len(), cm[0].line, cm[0].path.len()), (1, 13, 0));

        let json = "{\"apiVersion\": \"v1\", \"kind\": \"SecretList\",\n \"items\": [\n  {\"kind\": \"Secret\"}]}\n";
        let doc = parse(json.as_bytes(), &ParseLimits::default())
            .unwrap()
            .remove(0);
        let secrets = items(doc, Some(json), None);
        assert_eq!((secrets.len(), secrets[0].line), (1, 3));
        // A custom resource whose kind ends in "List" is an object, and so is an empty List's
        // absence of items.
        let crd = serde_json::json!({"kind": "IPAllowList", "spec": {"items": []}, "items": []});
        assert!(!is_list(&crd));
        assert!(is_list(&serde_json::json!({"kind": "List"})));
        let empty = Document {
            index: 1,
            line: 1,
            value: serde_json::json!({"kind": "List", "items": []}),
        };
        assert!(items(empty, None, None).is_empty());
    }

    #[test]
    fn positions_give_the_line_of_a_path() {
        let locate = |text: &str, index, path: &[String]| Positions::parse(text)?.line(index, path);
        let text = "a: 1\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: a\n      image: x\n    - name: b\n      image: y:latest\n";
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            locate(text, 2, &p(&["spec", "containers", "1", "image"])),
            Some(10)
        );
        assert_eq!(locate(text, 2, &p(&["spec", "containers", "0"])), Some(7));
        assert_eq!(
            locate(text, 2, &p(&["spec", "missing", "x"])),
            Some(5),
            "deepest node found"
        );
        assert_eq!(locate(text, 1, &p(&[])), Some(1));
        assert_eq!(locate(text, 3, &p(&["a"])), None);
        let json = "{\"a\": 1}\n{\n  \"kind\": \"Pod\",\n  \"spec\": {\"x\": 1}\n}\n";
        assert_eq!(locate(json, 2, &p(&["spec", "x"])), Some(4));

        // One document indexed on its own lines gives the same lines as the whole text.
        let docs = parse(text.as_bytes(), &ParseLimits::default()).unwrap();
        let third = "---\n# c\nkind: Service\nspec:\n  ports: [1]\n";
        let three = format!("{text}{third}");
        let all = parse(three.as_bytes(), &ParseLimits::default()).unwrap();
        for path in [
            p(&["spec", "containers", "1", "image"]),
            p(&["spec"]),
            p(&[]),
        ] {
            let one = Positions::of_document(&three, docs[1].line, Some(all[2].line)).unwrap();
            assert_eq!(one.line(1, &path), locate(&three, 2, &path), "{path:?}");
        }
        let last = Positions::of_document(&three, all[2].line, None).unwrap();
        assert_eq!(last.line(1, &p(&["spec", "ports", "0"])), Some(15));
        assert_eq!(locate(&three, 3, &p(&["spec", "ports", "0"])), Some(15));
    }

    #[test]
    fn yaml_output_round_trips() {
        let v: Value =
            serde_json::json!({"apiVersion": "v1", "data": {"a": "b=="}, "n": "yes", "x": "012"});
        let back = p(&to_yaml_stream([&v])).unwrap();
        assert_eq!(back[0].value, v);
    }
}
