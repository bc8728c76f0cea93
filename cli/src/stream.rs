//! A large YAML stream read a segment of whole documents at a time, so that what lint holds in
//! memory does not grow with the stream (`helm template | sealgate lint -` of a gigabyte).
//!
//! Every input is read in segments of whole documents of about [`SEGMENT`] bytes, cut at document
//! markers (a `---` line, which YAML forbids inside any scalar), each parsed and judged on its own
//! with its first line's number. The first [`HEAD`] bytes are read before anything is judged:
//! lint looks there for the Namespaces, CRDs and policies every other object's verdict depends
//! on. The rest is read as it is judged.

use std::io::{BufRead, BufReader, Read};

/// Bytes of a stream read whole before the rest is streamed.
pub const HEAD: usize = 64 << 20;

/// About how many bytes a segment holds (it ends at the first document marker after; a quarter
/// of the head when that is less): a task's worth of documents, about a hundred Pods, so the
/// workers share a stream of a few hundred and none is left with a long last task.
pub const SEGMENT: usize = 64 << 10;

/// Why a stream cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "a document larger than {0} bytes (a stream that large is read a few documents at a time; split the document)"
    )]
    DocumentTooLarge(usize),
    #[error(
        "a JSON stream larger than {0} bytes (only YAML streams that large are read, a few documents at a time; write YAML, or split the input)"
    )]
    LargeJson(usize),
}

/// A stream's first segments, up to [`HEAD`] bytes, and a reader of the rest when there is more.
pub struct Head {
    pub segments: Vec<Segment>,
    pub rest: Option<Rest>,
}

/// Read the head of `reader`: segments of whole documents up to `head` bytes in all.
pub fn read_head(reader: impl Read + Send + 'static, head: usize) -> Result<Head, StreamError> {
    read_head_in(reader, head, SEGMENT.min(head / 4))
}

fn read_head_in(
    reader: impl Read + Send + 'static,
    head: usize,
    size: usize,
) -> Result<Head, StreamError> {
    let mut rest = Rest {
        reader: BufReader::with_capacity(32 << 10, Box::new(reader) as Box<dyn Read + Send>),
        next: Vec::new(),
        lines_before: 0,
        max_document: head,
        size,
        json: false,
    };
    // JSON has no document markers to cut at: it is read whole, up to the head.
    let start = rest.reader.fill_buf()?;
    rest.json = start
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    let mut segments = Vec::new();
    let mut read = 0;
    while read < head {
        let Some(s) = rest.segment(size.max(1).min(head - read))? else {
            return Ok(Head {
                segments,
                rest: None,
            });
        };
        read += s.text.len();
        segments.push(s);
    }
    if rest.next.is_empty() && rest.reader.fill_buf()?.is_empty() {
        return Ok(Head {
            segments,
            rest: None,
        });
    }
    if rest.json {
        return Err(StreamError::LargeJson(head));
    }
    Ok(Head {
        segments,
        rest: Some(rest),
    })
}

/// A stream after its head.
pub struct Rest {
    reader: BufReader<Box<dyn Read + Send>>,
    /// The marker line that starts the next segment, already read.
    next: Vec<u8>,
    /// Lines before the next segment.
    lines_before: usize,
    max_document: usize,
    /// About how many bytes a segment holds.
    size: usize,
    /// The stream is JSON: never cut.
    json: bool,
}

/// Whole documents of a stream, and how many lines come before them.
pub struct Segment {
    pub text: Vec<u8>,
    pub lines_before: usize,
}

impl Rest {
    /// The next segment: whole documents of about [`SEGMENT`] bytes, `None` at the end.
    pub fn next_segment(&mut self) -> Option<Result<Segment, StreamError>> {
        self.segment(self.size).transpose()
    }

    fn segment(&mut self, size: usize) -> Result<Option<Segment>, StreamError> {
        let mut text = std::mem::take(&mut self.next);
        // A directive (`%YAML`) belongs to the document its marker starts: never cut between.
        let mut directive = false;
        let mut document_start = 0;
        loop {
            let start = text.len();
            let limit = (self.max_document + 1).saturating_sub(start - document_start);
            let n = (&mut self.reader)
                .take(limit as u64)
                .read_until(b'\n', &mut text)?;
            if n == 0 {
                break;
            }
            let line = &text[start..];
            if !self.json && is_marker(line) {
                if start >= size && !directive {
                    self.next = text.split_off(start);
                    break;
                }
                directive = false;
                document_start = start;
            } else if line.starts_with(b"%") {
                directive = true;
            }
            if text.len() - document_start > self.max_document {
                return Err(if self.json {
                    StreamError::LargeJson(self.max_document)
                } else {
                    StreamError::DocumentTooLarge(self.max_document)
                });
            }
        }
        if text.is_empty() {
            return Ok(None);
        }
        let lines_before = self.lines_before;
        self.lines_before += count_lines(&text);
        Ok(Some(Segment { text, lines_before }))
    }
}

/// Where a line is a document marker: `---` alone or followed by a space or tab.
fn is_marker(line: &[u8]) -> bool {
    line.strip_prefix(b"---")
        .is_some_and(|after| matches!(after.first(), None | Some(b' ' | b'\t' | b'\r' | b'\n')))
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(docs: usize) -> String {
        (0..docs)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: |\n    ---\n    text\n"))
            .collect()
    }

    use std::io::Cursor;

    /// Every segment of `text`, read with a head and segment size.
    fn segments(text: &str, head: usize, size: usize) -> Result<Vec<Segment>, StreamError> {
        let h = read_head_in(Cursor::new(text.as_bytes().to_vec()), head, size)?;
        let mut out = h.segments;
        if let Some(mut rest) = h.rest {
            while let Some(s) = rest.segment(size)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    #[test]
    fn segments_are_whole_documents_with_their_lines() {
        let text = stream(500);
        let segs = segments(&text, 4096, 2048).unwrap();
        assert!(segs.len() > 10, "{} segments", segs.len());
        let joined: Vec<u8> = segs.iter().flat_map(|s| s.text.clone()).collect();
        assert_eq!(joined, text.as_bytes());
        let mut lines = 0;
        for s in &segs {
            assert_eq!(s.lines_before, lines);
            assert!(
                s.text.starts_with(b"---\napiVersion"),
                "cut inside a document"
            );
            lines += count_lines(&s.text);
        }
        // Each segment but the last is its size and at most a document more.
        assert!(
            segs[..segs.len() - 1]
                .iter()
                .all(|s| (2048..2048 + 100).contains(&s.text.len()))
        );
    }

    /// What must not be cut: indented `---` lines in block scalars, a marker with content on its
    /// line, comments, empty documents.
    fn awkward_stream() -> String {
        let mut s = String::from("# a header comment\n");
        for i in 0..3000 {
            match i % 5 {
                0 => s.push_str(&format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata:\n  script: |\n    echo one\n    ---\n    --- not a marker\n"
                )),
                1 => s.push_str(&format!("--- {{apiVersion: v1, kind: Pod, metadata: {{name: p{i}}}}}\n")),
                2 => s.push_str("---\n# only a comment\n"),
                3 => s.push_str(&format!(
                    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  replicas: {i}\n"
                )),
                _ => s.push_str("---\n"),
            }
        }
        s
    }

    /// Segments parsed each on its own give the documents, lines and errors of the whole parse.
    #[test]
    fn segments_parsed_alone_are_the_stream_parsed_whole() {
        use sealgate_core::manifest::{ParseLimits, parse};
        let text = awkward_stream();
        let limits = ParseLimits::default();
        let whole = parse(text.as_bytes(), &limits).unwrap();
        for size in [64, 1000, 20_000] {
            let segments = segments(&text, 1 << 30, size).unwrap();
            assert!(segments.len() > 1);
            let docs: Vec<(usize, serde_json::Value)> = segments
                .iter()
                .flat_map(|s| {
                    parse(&s.text, &limits)
                        .unwrap()
                        .into_iter()
                        .map(|d| (d.line + s.lines_before, d.value))
                })
                .collect();
            let expected: Vec<(usize, serde_json::Value)> =
                whole.iter().map(|d| (d.line, d.value.clone())).collect();
            assert_eq!(docs, expected, "segments of {size} bytes");
        }
        // An error is at the whole parse's line.
        let broken = format!("{text}---\nkind: [unclosed\n{text}");
        let Err(sealgate_core::manifest::ManifestError::Syntax { line, .. }) =
            parse(broken.as_bytes(), &limits)
        else {
            panic!("no syntax error")
        };
        let found = segments(&broken, 1 << 30, 1000)
            .unwrap()
            .iter()
            .find_map(|s| match parse(&s.text, &limits) {
                Err(sealgate_core::manifest::ManifestError::Syntax { line, .. }) => {
                    Some(line + s.lines_before)
                }
                _ => None,
            });
        assert_eq!(found, Some(line));
        // JSON is one segment.
        let json = "{\"kind\": \"A\"}\n---\n".repeat(100);
        assert_eq!(segments(&json, 1 << 20, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_small_stream_is_all_head() {
        let text = stream(3);
        let h = read_head(Cursor::new(text.clone().into_bytes()), 1 << 20).unwrap();
        let joined: Vec<u8> = h.segments.iter().flat_map(|s| s.text.clone()).collect();
        assert_eq!(joined, text.as_bytes());
        assert!(h.rest.is_none());
        // Empty input: no segment.
        let h = read_head(Cursor::new(Vec::new()), 1 << 20).unwrap();
        assert!(h.segments.is_empty() && h.rest.is_none());
    }

    #[test]
    fn a_directive_stays_with_its_marker() {
        let mut text = stream(40);
        text.push_str("%YAML 1.2\n---\nkind: Late\n");
        text.push_str(&stream(40));
        let segs = segments(&text, 1024, 200).unwrap();
        for s in &segs[1..] {
            assert!(
                !s.text.starts_with(b"---\nkind: Late"),
                "cut after a directive"
            );
        }
        let joined: Vec<u8> = segs.iter().flat_map(|s| s.text.clone()).collect();
        assert_eq!(joined, text.as_bytes());
    }

    #[test]
    fn oversized_documents_and_large_json_are_refused() {
        let big = format!("---\nkind: A\n---\nkind: B\ndata: {}\n", "x".repeat(10_000));
        assert!(matches!(
            segments(&big, 1024, 512),
            Err(StreamError::DocumentTooLarge(_))
        ));
        let one = format!("kind: B\ndata: {}\n", "x".repeat(10_000));
        assert!(matches!(
            segments(&one, 1024, 512),
            Err(StreamError::DocumentTooLarge(_))
        ));
        let json = format!("{{\"kind\": \"{}\"}}", "x".repeat(10_000));
        assert!(matches!(
            segments(&json, 1024, 512),
            Err(StreamError::LargeJson(_))
        ));
        // A line without end is bounded too (read at most one byte past the limit).
        let endless = format!("---\nkind: A\n---\n{}", "y".repeat(1 << 20));
        assert!(matches!(
            segments(&endless, 64, 32),
            Err(StreamError::DocumentTooLarge(_))
        ));
    }
}
