//! `sealgate lint`: every manifest under the given paths against the policy bundle.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use sealgate_core::attest::statement::is_applied_object;
use sealgate_core::manifest::{self, Document, ParseLimits};
use sealgate_core::policy::{
    Action, Bundle, InvalidConstraint, NamespaceLabels, ObjectRef, POLICY_GROUPS, Point, Review,
    Violation,
};
use serde_json::Value;

use crate::args::{BundleArgs, LintArgs};
use crate::report::{self, FileReport, Finding, ObjectReport, ParseError};
use crate::{discover, input, output, stream};

pub fn run(args: &LintArgs) -> Result<ExitCode> {
    // No path: stdin when something is piped in (`kustomize build | sealgate lint`, forgetting
    // the `-`), as ripgrep does; else the current directory.
    let paths = if !args.paths.is_empty() {
        args.paths.clone()
    } else if input::stdin_has_input() {
        // Implicit stdin that holds nothing is a mistake (`cat missing.yaml | sealgate lint`),
        // not a clean lint of zero objects.
        if lock(stdin_source(args.stream_head as usize))
            .as_ref()
            .is_some_and(|s| {
                s.rest.is_none()
                    && s.pieces
                        .as_ref()
                        .is_ok_and(|p| p.iter().all(|p| p.text.iter().all(u8::is_ascii_whitespace)))
            })
        {
            anyhow::bail!(
                "stdin is empty: nothing to lint (pass the files or directories to lint, or `-` to lint stdin even when empty)"
            );
        }
        vec![PathBuf::from("-")]
    } else {
        vec![PathBuf::from(".")]
    };
    let files = discover::discover(&paths)?;
    let limits = ParseLimits::default().with_max_documents(args.max_documents);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Each file is read once: for the policies among them, the lint and the attestation.
    let sources = parallel(&files, jobs, |f| read_source(f, args.stream_head as usize));
    // As `gator test`: templates and constraints among the inputs are policies, not objects.
    let from_inputs = if args.no_policies_from_inputs {
        Vec::new()
    } else {
        policies_among(&sources, &limits)
    };
    if !from_inputs.is_empty() {
        eprintln!(
            "note: took the ConstraintTemplates, Constraints and ExpansionTemplates in {} as policies, as gator test does (--no-policies-from-inputs lints them as objects)",
            from_inputs
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let bundle = build_bundle(&args.bundle, from_inputs)?;
    if args.verbose {
        eprintln!(
            "policies: {} template(s), {} constraint(s), {} conftest rule(s) ({})",
            bundle.templates().count(),
            bundle.constraints().len(),
            bundle.conftest_rules(),
            args.bundle.policy.describe()
        );
        for dir in bundle.skipped_dirs() {
            eprintln!(
                "policies: skipped {} (samples/, testdata/ and tests/ under a -p directory hold examples and suites, not policies; name it with -p to load it)",
                dir.display()
            );
        }
    }
    let skipped = bundle.skipped_conftest_packages();
    if !skipped.is_empty() {
        eprintln!(
            "warning: the Rego package(s) {} define deny/warn/violation rules that will not run (conftest modules run in package main unless --namespace PACKAGE or --all-namespaces says otherwise)",
            skipped.join(", ")
        );
    }
    if bundle.is_empty() && !args.allow_empty_bundle {
        // A lint that checks nothing passes everything: CI would go green by accident.
        anyhow::bail!(
            "no policies: the bundle has no constraint, no bound ValidatingAdmissionPolicy and no conftest rule, so every object would pass ({}). \
             Point -p at ConstraintTemplates and Constraints, ValidatingAdmissionPolicies and their bindings, or Rego modules{}, or pass --allow-empty-bundle",
            args.bundle.policy.describe(),
            if args.bundle.policy.no_builtin {
                ", drop --no-builtin"
            } else {
                ""
            }
        );
    }
    let bundle_digest = bundle.digest().to_string();
    let invalid = bundle.invalid_constraints().to_vec();
    let Linted {
        mut reports,
        applied,
    } = lint_sources(
        bundle,
        sources,
        &Pass {
            point: args.point.into(),
            jobs,
            limits: &limits,
            skip_policies: !args.no_policies_from_inputs,
            keep_applied: args.attest.is_some(),
            head: args.stream_head as usize,
            list_passing: report::lists_passing(args.format),
        },
    );
    report_invalid_constraints(&mut reports, invalid);
    let summary = report::Summary::of(&reports, args.fail_on_warn);
    let text = report::render_lint_report(&reports, &summary, args.format);
    output::emit(&text, args.output_file.as_deref(), None)?;
    if let Some(out) = &args.attest {
        if summary.errors > 0 || summary.failed > 0 {
            eprintln!(
                "not attested: the lint did not pass (nothing written to {})",
                out.display()
            );
        } else {
            super::attest::attest_lint(args, applied, &bundle_digest)?;
        }
    }
    Ok(if summary.errors > 0 {
        ExitCode::from(2)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Constraints the cluster would refuse to apply (fields their kind's schema does not declare,
/// values of the wrong type) were left out of the bundle: each is a failing finding on its file.
fn report_invalid_constraints(reports: &mut Vec<FileReport>, invalid: Vec<InvalidConstraint>) {
    for c in invalid {
        let object = ObjectReport {
            line: c.source.line,
            object: ObjectRef {
                api_version: c.api_version.clone(),
                kind: c.kind.clone(),
                namespace: String::new(),
                name: c.name.clone(),
            },
            findings: Vec::new(),
            applied: Vec::new(),
        };
        let findings = c
            .problems
            .iter()
            .map(|problem| Finding {
                line: c.source.line,
                violation: Violation {
                    policy: sealgate_core::policy::PolicyRef::Sealgate,
                    constraint: "constraint-schema".into(),
                    message: format!(
                        "{problem}: the Constraint does not fit the schema of {} (kubectl apply would refuse it), so it was not loaded",
                        c.kind
                    ),
                    details: serde_json::json!({}),
                    action: Action::Deny,
                    object: object.object.clone(),
                    path: None,
                    evaluation_error: false,
                    severity: None,
                },
            })
            .collect();
        let object = ObjectReport { findings, ..object };
        match reports.iter_mut().find(|r| r.file == c.source.file) {
            Some(r) => {
                r.objects.push(object);
                r.objects.sort_by_key(|o| o.line);
            }
            None => reports.push(FileReport {
                file: c.source.file,
                objects: vec![object],
                passed: 0,
                error: None,
            }),
        }
    }
}

/// The files among `sources` that hold ConstraintTemplates, Constraints or ExpansionTemplates:
/// (name, text).
fn policies_among(sources: &[Source], limits: &ParseLimits) -> Vec<(String, String)> {
    static POLICY: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        let groups = POLICY_GROUPS.map(regex::escape).join("|");
        regex::bytes::Regex::new(&format!("({groups})/")).expect("valid regex")
    });
    sources
        .iter()
        .filter_map(|s| {
            let pieces = s.pieces.as_ref().ok()?;
            if !pieces.iter().any(|p| POLICY.is_match(&p.text)) {
                return None;
            }
            // The text may only mention them (a ConfigMap holding policies): parse to be sure.
            let text: Vec<u8> = pieces.iter().flat_map(|p| p.text.iter().copied()).collect();
            manifest::parse(&text, limits)
                .is_ok_and(|docs| docs.iter().any(|d| is_policy(&d.value)))
                .then(|| Some((s.name.clone(), String::from_utf8(text).ok()?)))
                .flatten()
        })
        .collect()
}

/// Whether a document is a policy taken from the inputs (not linted as an object).
fn is_policy(v: &Value) -> bool {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.split_once('/'))
        .is_some_and(|(group, _)| POLICY_GROUPS.contains(&group))
}

/// The bundle: the sources and the policy documents found among the inputs, with the
/// --inventory objects as `data.inventory`.
fn build_bundle(args: &BundleArgs, from_inputs: Vec<(String, String)>) -> Result<Bundle> {
    let mut inventory = Vec::new();
    for p in &args.inventory {
        for f in discover::discover(std::slice::from_ref(p))? {
            let input = input::read_file(&f)?;
            inventory.extend(input::parse_docs(&input)?.into_iter().map(|d| d.value));
        }
    }
    let mut sources = args.policy.sources(args.eval_timeout);
    sources.from_inputs = from_inputs;
    sources.admission_policies = true;
    Ok(sources.build_reporting(inventory)?)
}

/// A file's name and head (all of it unless it is over [`stream::HEAD`]) in pieces of whole
/// documents, read but not parsed yet, and a reader of the rest.
struct Source {
    name: String,
    pieces: Result<Vec<stream::Segment>, String>,
    rest: Option<stream::Rest>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stdin, its head read once (the no-path check looks at it before it is linted).
fn stdin_source(head: usize) -> &'static std::sync::Mutex<Option<Source>> {
    static STDIN: std::sync::OnceLock<std::sync::Mutex<Option<Source>>> =
        std::sync::OnceLock::new();
    STDIN.get_or_init(|| {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "(tty detected: expecting manifests as YAML or JSON on stdin; end with Ctrl-D, or pass files)"
            );
        }
        std::sync::Mutex::new(Some(Source::read("<stdin>".into(), std::io::stdin(), head)))
    })
}

fn read_source(path: &Path, head: usize) -> Source {
    if path.as_os_str() == "-" {
        return lock(stdin_source(head)).take().unwrap_or_else(|| Source {
            name: "<stdin>".to_string(),
            pieces: Err("stdin is named more than once (it is read once)".into()),
            rest: None,
        });
    }
    let name = path.display().to_string();
    let name = name.strip_prefix("./").unwrap_or(&name).to_string();
    match std::fs::File::open(path) {
        Ok(f) => Source::read(name, f, head),
        Err(e) => Source {
            name,
            pieces: Err(format!("cannot read: {e}")),
            rest: None,
        },
    }
}

impl Source {
    /// Read the head of a file or stdin: bounded, whatever the file claims to be (/dev/zero has
    /// no size); a larger stream is read on as it is judged.
    fn read(name: String, reader: impl std::io::Read + Send + 'static, head: usize) -> Source {
        match stream::read_head(reader, head) {
            Ok(h) => Source {
                name,
                pieces: Ok(h.segments),
                rest: h.rest,
            },
            Err(e) => Source {
                name,
                pieces: Err(e.to_string()),
                rest: None,
            },
        }
    }
}

/// A parse error as reported, its line counted from `lines_before` (a streamed segment's).
fn parse_error(e: manifest::ManifestError, lines_before: usize) -> ParseError {
    match e {
        manifest::ManifestError::Syntax {
            line,
            column,
            reason,
        } => ParseError {
            line: line + lines_before,
            column,
            message: reason,
        },
        other => ParseError {
            line: 0,
            column: 0,
            message: other.to_string(),
        },
    }
}

/// A pattern for the kinds of the bundle's ValidatingAdmissionPolicy parameters, if any.
fn param_kinds_regex(bundle: &Bundle) -> Option<regex::bytes::Regex> {
    let kinds: Vec<String> = bundle
        .admission_policies()
        .param_kinds()
        .map(|(_, kind)| regex::escape(kind))
        .collect();
    // A kind may be escaped in JSON or YAML: `\` makes such a file a candidate too.
    (!kinds.is_empty())
        .then(|| regex::bytes::Regex::new(&format!(r"{}|\\", kinds.join("|"))).ok())
        .flatten()
}

/// Run `f` over `items` on `jobs` threads; results keep the input order.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(items.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("lint worker panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// What a lint gives back: a report per file and, when asked for, the objects it judged that the
/// GitOps agent applies (what `--attest` signs, so the attestation covers exactly what passed).
pub struct Linted {
    pub reports: Vec<FileReport>,
    pub applied: Vec<Judged>,
}

/// An applied object as the lint judged it, and where it came from.
pub struct Judged {
    pub file: String,
    pub line: usize,
    pub object: Value,
}

/// How a lint pass runs.
pub struct Pass<'a> {
    pub point: Point,
    pub jobs: usize,
    pub limits: &'a ParseLimits,
    /// Policies taken from the inputs are not linted as objects.
    pub skip_policies: bool,
    /// Keep the applied objects (for `--attest`).
    pub keep_applied: bool,
    /// Bytes of a stream read whole ([`stream::HEAD`]).
    pub head: usize,
    /// Keep a report of each object that passed without a finding (else count it).
    pub list_passing: bool,
}

/// Lint every file.
///
/// Each file is read in pieces of whole documents ([`stream::read_head`]); a stream over its head
/// is read a piece at a time as it is judged. Pieces that may define Namespaces or CRDs (or hold VAP parameters) are
/// parsed first; every other piece is parsed and judged in one task, by whichever worker takes
/// it, so its documents are still in cache when evaluated and one stream is judged on every core.
fn lint_sources(mut bundle: Bundle, sources: Vec<Source>, pass: &Pass) -> Linted {
    let files: Vec<File> = sources.into_iter().map(File::new).collect();
    // ValidatingAdmissionPolicies' parameters among the linted files are read before any object
    // is judged, as Namespaces and CRDs are.
    let params = param_kinds_regex(&bundle);
    let admission = bundle.admission_policies();
    let pieces: Vec<&std::sync::Mutex<Piece>> = files
        .iter()
        .flat_map(|f| f.pieces.iter().flatten())
        .collect();
    parallel(&pieces, pass.jobs, |piece| {
        let mut piece = lock(piece);
        if piece.may_define_scope() || piece.may_hold(params.as_ref()) {
            piece.parse(pass.limits);
        }
    });
    let early: Vec<Value> = pieces
        .iter()
        .filter_map(|p| match &lock(p).docs {
            Some(Ok(docs)) => Some(
                docs.iter()
                    .flat_map(|d| match d.value.get("items").and_then(Value::as_array) {
                        Some(items) if manifest::is_list(&d.value) => items.iter().collect(),
                        _ => vec![&d.value],
                    })
                    .filter(|v| {
                        matches!(
                            v.get("kind").and_then(Value::as_str),
                            Some("Namespace" | "CustomResourceDefinition")
                        ) || admission.is_param(v)
                    })
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    // Namespaces defined in the linted files, for namespaceSelector; CRDs, for their kinds' scope.
    let namespaces = sealgate_core::policy::namespace_labels(&early);
    for (c, ns) in bundle.undefined_match_namespaces(&namespaces) {
        eprintln!(
            "warning: {}: {} {}: match.namespaces names {ns:?}, which no Namespace in the linted files or --inventory defines: the constraint checks nothing there",
            c.source, c.kind, c.name
        );
    }
    bundle.add_crds(&early);
    bundle.add_params(&early);
    let bundle = &bundle;
    let tasks = Tasks::new(files.len());
    // Pieces of each file queued and not judged yet: a stream's reader judges its pieces itself
    // past a bound, so memory holds a few pieces' documents whatever the stream's length.
    let max_queued = 2 * pass.jobs + 2;
    let judge = |name: &str, piece: Piece| -> Judgement {
        let Piece {
            text,
            lines_before,
            streamed,
            docs,
        } = piece;
        let docs = match docs {
            Some(d) => d,
            None => manifest::parse(text.as_bytes(), pass.limits)
                .map_err(|e| parse_error(e, lines_before)),
        }?;
        let read = docs.len();
        let text = FileText::new(text, lines_before, streamed);
        let (mut objects, applied) = judge_docs(bundle, name, &text, docs, pass, &namespaces);
        let all = objects.len();
        if !pass.list_passing {
            // Nor do those formats name the constraints that applied.
            objects.retain(|o| !o.findings.is_empty());
            objects.iter_mut().for_each(|o| o.applied = Vec::new());
        }
        let passed = all - objects.len();
        Ok((objects, passed, applied, read))
    };
    tasks.run(pass.jobs, |task| match task {
        Task::File(i) => {
            let file = &files[i];
            let head = match &file.pieces {
                Ok(pieces) => pieces,
                Err(e) => {
                    lock(&file.judged).push(Some(Err(e.clone())));
                    return;
                }
            };
            // The head's pieces, in front of every other file's work.
            lock(&file.judged).extend(head.iter().map(|_| None));
            file.queued.fetch_add(head.len(), Ordering::Relaxed);
            tasks.push_front(
                (0..head.len())
                    .map(|piece| Task::Piece { file: i, piece })
                    .collect(),
            );
            // A stream over its head: each piece read here, queued for every worker, or judged
            // here when the workers are behind.
            let Some(mut rest) = lock(&file.rest).take() else {
                return;
            };
            while let Some(segment) = rest.next_segment() {
                let piece = match segment {
                    Ok(s) => Piece::new(s, true),
                    Err(e) => {
                        lock(&file.judged).push(Some(Err(ParseError {
                            line: 0,
                            column: 0,
                            message: e.to_string(),
                        })));
                        return;
                    }
                };
                if file.queued.load(Ordering::Relaxed) >= max_queued {
                    let judged = judge(&file.name, piece);
                    lock(&file.judged).push(Some(judged));
                } else {
                    let n = {
                        let mut judged = lock(&file.judged);
                        judged.push(None);
                        judged.len() - 1
                    };
                    lock(&file.streamed).push_back((n, piece));
                    file.queued.fetch_add(1, Ordering::Relaxed);
                    tasks.push_front(vec![Task::Piece { file: i, piece: n }]);
                }
                if lock(&file.judged)
                    .last()
                    .is_some_and(|j| matches!(j, Some(Err(_))))
                {
                    return;
                }
            }
        }
        Task::Piece { file: i, piece: n } => {
            let file = &files[i];
            let piece = match &file.pieces {
                Ok(head) if n < head.len() => {
                    std::mem::replace(&mut *lock(&head[n]), Piece::taken())
                }
                _ => {
                    let mut streamed = lock(&file.streamed);
                    let at = streamed
                        .iter()
                        .position(|(k, _)| *k == n)
                        .expect("a streamed piece is queued before its task");
                    streamed.remove(at).map(|(_, p)| p).expect("found above")
                }
            };
            let judged = judge(&file.name, piece);
            lock(&file.judged)[n] = Some(judged);
            file.queued.fetch_sub(1, Ordering::Relaxed);
        }
    });
    let mut out = Linted {
        reports: Vec::with_capacity(files.len()),
        applied: Vec::new(),
    };
    for file in files {
        let mut report = FileReport {
            file: file.name,
            objects: Vec::new(),
            passed: 0,
            error: None,
        };
        // In order; what follows a piece that cannot be parsed is not reported, as in a file
        // that is parsed whole.
        let mut read = 0;
        for judged in file.judged.into_inner().unwrap_or_else(|e| e.into_inner()) {
            let Some(judged) = judged else { continue };
            match judged {
                Ok((objects, passed, applied, n)) => {
                    read += n;
                    if read > pass.limits.max_documents {
                        report.error = Some(parse_error(
                            manifest::ManifestError::Limit(format!(
                                "more than {} documents in one stream (`sealgate lint --max-documents N` raises the limit)",
                                pass.limits.max_documents
                            )),
                            0,
                        ));
                        break;
                    }
                    report.objects.extend(objects);
                    report.passed += passed;
                    out.applied.extend(applied);
                }
                Err(e) => {
                    report.error = Some(e);
                    break;
                }
            }
        }
        out.reports.push(report);
    }
    out
}

/// A judged piece: its reports, how many passed unlisted ([`Pass::list_passing`]), the applied objects (with `--attest`) and how many documents it
/// held; or why it could not be parsed.
type Judgement = Result<(Vec<ObjectReport>, usize, Vec<Judged>, usize), ParseError>;

/// One file as lint judges it.
struct File {
    name: String,
    /// The head's pieces, or why the file could not be read.
    pieces: Result<Vec<std::sync::Mutex<Piece>>, ParseError>,
    /// The rest of a stream over its head, read by the file's task.
    rest: std::sync::Mutex<Option<stream::Rest>>,
    /// Streamed pieces read and not taken by their task yet, by number.
    streamed: std::sync::Mutex<std::collections::VecDeque<(usize, Piece)>>,
    /// Pieces queued and not judged yet.
    queued: AtomicUsize,
    /// Each piece's judgement, in order (`None` until judged).
    judged: std::sync::Mutex<Vec<Option<Judgement>>>,
}

impl File {
    fn new(source: Source) -> File {
        File {
            name: source.name,
            pieces: source
                .pieces
                .map(|p| {
                    p.into_iter()
                        .map(|s| std::sync::Mutex::new(Piece::new(s, false)))
                        .collect()
                })
                .map_err(|message| ParseError {
                    line: 0,
                    column: 0,
                    message,
                }),
            rest: std::sync::Mutex::new(source.rest),
            streamed: Default::default(),
            queued: AtomicUsize::new(0),
            judged: Default::default(),
        }
    }
}

/// Whole documents of a file, and the lines before them.
struct Piece {
    text: String,
    lines_before: usize,
    /// Read past a stream's head.
    streamed: bool,
    /// Parsed early (it may define a Namespace, a CRD or a parameter).
    docs: Option<Result<Vec<Document>, ParseError>>,
}

impl Piece {
    fn new(s: stream::Segment, streamed: bool) -> Piece {
        match String::from_utf8(s.text) {
            Ok(text) => Piece {
                text,
                lines_before: s.lines_before,
                streamed,
                docs: None,
            },
            // Text that is not UTF-8 does not parse: the parser says so.
            Err(e) => Piece {
                text: String::new(),
                lines_before: s.lines_before,
                streamed,
                docs: Some(
                    manifest::parse(e.as_bytes(), &ParseLimits::default())
                        .map_err(|e| parse_error(e, s.lines_before)),
                ),
            },
        }
    }

    fn taken() -> Piece {
        Piece {
            text: String::new(),
            lines_before: 0,
            streamed: false,
            docs: Some(Ok(Vec::new())),
        }
    }

    fn parse(&mut self, limits: &ParseLimits) {
        self.docs = Some(
            manifest::parse(self.text.as_bytes(), limits)
                .map_err(|e| parse_error(e, self.lines_before)),
        );
    }

    /// Whether the piece may hold a Namespace or a CustomResourceDefinition, which change how
    /// every other object is judged (namespaceSelector, a kind's scope), so it is parsed before
    /// any object is judged. Conservative: a kind is spelt out in the text unless escaped.
    fn may_define_scope(&self) -> bool {
        static SCOPE_WORDS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"Namespace|CustomResourceDefinition|\\").expect("valid regex")
        });
        SCOPE_WORDS.is_match(&self.text)
    }

    /// Whether the piece may hold an object `kinds` matches (the text names its kind).
    fn may_hold(&self, kinds: Option<&regex::bytes::Regex>) -> bool {
        kinds.is_some_and(|k| k.is_match(self.text.as_bytes()))
    }
}

/// A piece's text shared by the findings of its documents, with what finding a field's line
/// needs, computed once per piece when a finding first needs it.
struct FileText {
    text: String,
    /// Lines of the file before `text` (a piece's documents' lines count from its first line).
    lines_before: usize,
    /// Past a stream's head: the Namespaces, CRDs and policies the other objects depend on were
    /// read from the head, so one here cannot count.
    streamed: bool,
    starts: std::sync::OnceLock<manifest::LineStarts>,
    /// The whole text indexed, for documents that cannot be indexed alone.
    whole: std::sync::OnceLock<Option<manifest::Positions>>,
}

impl FileText {
    fn new(text: String, lines_before: usize, streamed: bool) -> FileText {
        FileText {
            text,
            lines_before,
            streamed,
            starts: Default::default(),
            whole: Default::default(),
        }
    }
}

/// One unit of lint work.
enum Task {
    /// Queue a file's pieces; read on a stream over its head.
    File(usize),
    /// Parse (unless parsed early) and judge piece `piece` of file `file`.
    Piece { file: usize, piece: usize },
}

/// Marks a task done when dropped.
struct Done<'a>(&'a Tasks);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut q = lock(&self.0.queue);
        q.1 -= 1;
        self.0.changed.notify_all();
    }
}

/// The work queue: files in order, a file's pieces pushed in front of the files after it (so
/// memory holds about one large file's documents at a time, whatever `-j`).
struct Tasks {
    queue: std::sync::Mutex<(std::collections::VecDeque<Task>, usize)>,
    changed: std::sync::Condvar,
}

impl Tasks {
    fn new(files: usize) -> Tasks {
        Tasks {
            queue: std::sync::Mutex::new(((0..files).map(Task::File).collect(), 0)),
            changed: std::sync::Condvar::new(),
        }
    }

    fn push_front(&self, tasks: Vec<Task>) {
        if tasks.is_empty() {
            return;
        }
        let mut q = lock(&self.queue);
        for t in tasks.into_iter().rev() {
            q.0.push_front(t);
        }
        self.changed.notify_all();
    }

    /// Run every task (and those tasks add) on `jobs` threads.
    fn run(&self, jobs: usize, f: impl Fn(Task) + Sync) {
        std::thread::scope(|s| {
            for _ in 0..jobs.max(1) {
                s.spawn(|| {
                    loop {
                        let task = {
                            let mut q = lock(&self.queue);
                            loop {
                                if let Some(t) = q.0.pop_front() {
                                    q.1 += 1;
                                    break Some(t);
                                }
                                // Nothing queued: done unless a running task may add some.
                                if q.1 == 0 {
                                    break None;
                                }
                                q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                            }
                        };
                        let Some(task) = task else {
                            self.changed.notify_all();
                            return;
                        };
                        // Counted done even if it panics, so the other workers do not wait
                        // for it forever (the scope then reports the panic).
                        let _done = Done(self);
                        f(task);
                    }
                });
            }
        });
    }
}

/// Judge a piece of a file's documents: their reports and, with `--attest`, the applied objects.
fn judge_docs(
    bundle: &Bundle,
    name: &str,
    p: &FileText,
    docs: Vec<Document>,
    pass: &Pass,
    namespaces: &NamespaceLabels,
) -> (Vec<ObjectReport>, Vec<Judged>) {
    let mut objects = Vec::new();
    let mut applied = Vec::new();
    let next_lines: Vec<Option<usize>> = (0..docs.len())
        .map(|i| docs.get(i + 1).map(|d| d.line))
        .collect();
    // Field lines need a second, position-tracking parse: only of the documents with findings
    // that name a field, each on its own lines (a file's other documents are not parsed again).
    for (doc, next_line) in docs.into_iter().zip(next_lines) {
        let mut positions: Option<Option<manifest::Positions>> = None;
        let (doc_line, doc_index) = (doc.line, doc.index);
        // A List (`kubectl get -o yaml`, a key backup) is linted as its items, each at its line:
        // a plain Secret in one must fail as it does on its own.
        for item in manifest::items(doc, Some(&p.text), next_line) {
            // Only Kubernetes objects: other YAML (CI configs, Helm values) has no kind. Policies
            // taken into the bundle are not objects to lint.
            if item
                .value
                .get("kind")
                .and_then(|k| k.as_str())
                .is_none_or(str::is_empty)
            {
                continue;
            }
            let at = item.line + p.lines_before;
            if p.streamed
                && let Some(what) = depended_on(bundle, &item.value, pass.skip_policies)
            {
                let object = sealgate_core::policy::ObjectRef::of(&item.value);
                objects.push(ObjectReport::invalid(
                    at,
                    object,
                    &format!(
                        "{what} more than {} bytes into a stream: a stream that large is judged as it is read, so the Namespaces, CRDs, policies and policy parameters other objects depend on must come in its first {} bytes (kustomize build and helm template put Namespaces and CRDs first), or in a file of their own (`sealgate lint namespaces.yaml -`)",
                        pass.head, pass.head
                    ),
                ));
                continue;
            }
            let keep = pass.keep_applied && is_applied_object(&item.value);
            if pass.skip_policies && is_policy(&item.value) {
                // Applied to the cluster like any object, so attested too.
                if keep {
                    applied.push(Judged {
                        file: name.to_string(),
                        line: at,
                        object: item.value,
                    });
                }
                continue;
            }
            let object = sealgate_core::policy::ObjectRef::of(&item.value);
            let review = match Review::from_document(item.value, pass.point) {
                Ok(r) => r,
                Err(e) => {
                    objects.push(ObjectReport::invalid(at, object, &e.to_string()));
                    continue;
                }
            };
            let mut review = review.at(name.to_string(), at);
            let evaluation = bundle.evaluate_with_matches(&review, namespaces);
            let mut findings: Vec<Finding> = evaluation
                .violations
                .into_iter()
                .map(|v| {
                    let line = match &v.path {
                        Some(path) if !path.is_empty() => {
                            let one = positions.get_or_insert_with(|| {
                                let starts =
                                    p.starts.get_or_init(|| manifest::LineStarts::new(&p.text));
                                manifest::Positions::of_document_in(
                                    &p.text, starts, doc_line, next_line,
                                )
                            });
                            let full: Vec<String> = item.path.iter().chain(path).cloned().collect();
                            match one {
                                Some(pos) => pos.line(1, &full),
                                None => p
                                    .whole
                                    .get_or_init(|| manifest::Positions::parse(&p.text))
                                    .as_ref()
                                    .and_then(|pos| pos.line(doc_index, &full)),
                            }
                            .map_or(at, |line| line + p.lines_before)
                        }
                        _ => at,
                    };
                    Finding { violation: v, line }
                })
                .collect();
            findings.sort_by(|a, b| {
                (a.line, &a.violation.policy, &a.violation.message).cmp(&(
                    b.line,
                    &b.violation.policy,
                    &b.violation.message,
                ))
            });
            objects.push(ObjectReport {
                line: at,
                object: sealgate_core::policy::ObjectRef::of(review.object()),
                findings,
                applied: evaluation.applied,
            });
            if keep {
                applied.push(Judged {
                    file: name.to_string(),
                    line: at,
                    object: review.request["object"].take(),
                });
            }
        }
    }
    (objects, applied)
}

/// What `v` is when other objects' verdicts depend on it (a Namespace, a CRD, a policy taken from
/// the inputs, a ValidatingAdmissionPolicy's parameter), so it must be read before them.
fn depended_on(bundle: &Bundle, v: &Value, policies: bool) -> Option<&'static str> {
    match v.get("kind").and_then(Value::as_str) {
        Some("Namespace") => Some("a Namespace"),
        Some("CustomResourceDefinition") => Some("a CustomResourceDefinition"),
        _ if policies && is_policy(v) => Some("a policy"),
        _ if bundle.admission_policies().is_param(v) => {
            Some("a ValidatingAdmissionPolicy parameter")
        }
        _ => None,
    }
}
