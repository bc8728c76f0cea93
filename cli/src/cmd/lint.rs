//! `sealgate lint`: every manifest under the given paths against the policy bundle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
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
use crate::{discover, input, output};

pub fn run(args: &LintArgs) -> Result<ExitCode> {
    // No path: stdin when something is piped in (`kustomize build | sealgate lint`, forgetting
    // the `-`), as ripgrep does; else the current directory.
    let paths = if !args.paths.is_empty() {
        args.paths.clone()
    } else if input::stdin_has_input() {
        // Implicit stdin that holds nothing is a mistake (`cat missing.yaml | sealgate lint`),
        // not a clean lint of zero objects.
        if stdin_bytes()
            .as_ref()
            .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace))
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
    let sources = parallel(&files, jobs, |f| read_source(f, &limits));
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
        .filter_map(|s| match &s.bytes {
            // The text may only mention them (a ConfigMap holding policies): parse to be sure.
            Ok(b)
                if POLICY.is_match(b)
                    && manifest::parse(b, limits)
                        .is_ok_and(|docs| docs.iter().any(|d| is_policy(&d.value))) =>
            {
                Some((s.name.clone(), String::from_utf8(b.clone()).ok()?))
            }
            _ => None,
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

struct Parsed {
    name: String,
    text: String,
    docs: Result<Vec<Document>, ParseError>,
}

/// A file's name and bytes, read but not parsed yet.
struct Source {
    name: String,
    bytes: Result<Vec<u8>, String>,
}

/// Stdin, read once (the no-path check looks at it before it is linted).
fn stdin_bytes() -> &'static Result<Vec<u8>, String> {
    static STDIN: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    STDIN.get_or_init(|| {
        input::read_input(None, "manifests")
            .map(|i| i.bytes.to_vec())
            .map_err(|e| format!("{e:#}"))
    })
}

fn read_source(path: &Path, limits: &ParseLimits) -> Source {
    if path.as_os_str() == "-" {
        return Source {
            name: "<stdin>".to_string(),
            bytes: stdin_bytes().clone(),
        };
    }
    let name = path.display().to_string();
    // Bounded, whatever the file claims to be (/dev/zero has no size).
    let limit = limits.max_bytes;
    let bytes = std::fs::File::open(path)
        .and_then(|f| input::read_limited(f, limit))
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.map(|mut b| std::mem::take(&mut *b))
                .ok_or_else(|| format!("input is over the {limit}-byte limit"))
        });
    Source {
        name: name.strip_prefix("./").unwrap_or(&name).to_string(),
        bytes,
    }
}

impl Source {
    /// Whether the file may hold a Namespace or a CustomResourceDefinition, which change how
    /// every other object is judged (namespaceSelector, a kind's scope), so it is parsed before
    /// any object is linted. Conservative: a kind is spelt out in the text unless escaped.
    fn may_define_scope(&self) -> bool {
        static SCOPE_WORDS: std::sync::LazyLock<regex::bytes::Regex> =
            std::sync::LazyLock::new(|| {
                regex::bytes::Regex::new(r"Namespace|CustomResourceDefinition|\\")
                    .expect("valid regex")
            });
        self.bytes.as_ref().is_ok_and(|b| SCOPE_WORDS.is_match(b))
    }

    /// Whether the file may hold an object `kinds` matches (the text names its kind).
    fn may_hold(&self, kinds: Option<&regex::bytes::Regex>) -> bool {
        kinds.is_some_and(|k| self.bytes.as_ref().is_ok_and(|b| k.is_match(b)))
    }

    /// Parse, a large stream on up to `parts` threads.
    fn parse(self, limits: &ParseLimits, parts: usize) -> Parsed {
        let bytes = match self.bytes {
            Ok(b) => b,
            Err(e) => {
                return Parsed {
                    name: self.name,
                    text: String::new(),
                    docs: Err(ParseError {
                        line: 0,
                        column: 0,
                        message: format!("cannot read: {e}"),
                    }),
                };
            }
        };
        let docs = manifest::parse_parallel(&bytes, limits, parts).map_err(|e| match e {
            manifest::ManifestError::Syntax {
                line,
                column,
                reason,
            } => ParseError {
                line,
                column,
                message: reason,
            },
            other => ParseError {
                line: 0,
                column: 0,
                message: other.to_string(),
            },
        });
        Parsed {
            name: self.name,
            text: String::from_utf8(bytes).unwrap_or_default(),
            docs,
        }
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
}

/// Lint every file.
///
/// Files that may define Namespaces or CRDs (or hold VAP parameters) are parsed first; every
/// other file is parsed and linted in one pass, so its documents are still in cache when
/// evaluated and memory holds a few files' documents rather than the whole tree's. A file of
/// more than one run of documents (one stream) is judged by every worker ([`Tasks`]).
fn lint_sources(mut bundle: Bundle, sources: Vec<Source>, pass: &Pass) -> Linted {
    enum Stage {
        Read(Source),
        Parsed(Parsed),
        Taken,
    }
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let stages: Vec<std::sync::Mutex<Stage>> = sources
        .into_iter()
        .map(|s| std::sync::Mutex::new(Stage::Read(s)))
        .collect();
    // ValidatingAdmissionPolicies' parameters among the linted files are read before any object
    // is judged, as Namespaces and CRDs are.
    let params = param_kinds_regex(&bundle);
    let admission = bundle.admission_policies();
    parallel(&stages, pass.jobs, |s| {
        let mut stage = s.lock().unwrap_or_else(|e| e.into_inner());
        if let Stage::Read(source) = &*stage
            && (source.may_define_scope() || source.may_hold(params.as_ref()))
        {
            let Stage::Read(source) = std::mem::replace(&mut *stage, Stage::Taken) else {
                unreachable!("matched above")
            };
            *stage = Stage::Parsed(source.parse(pass.limits, pass.jobs));
        }
    });
    let early: Vec<Value> = stages
        .iter()
        .filter_map(|s| match &*s.lock().unwrap_or_else(|e| e.into_inner()) {
            Stage::Parsed(p) => Some(
                p.docs
                    .iter()
                    .flatten()
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
    let tasks = Tasks::new(stages.len());
    let slots: Vec<std::sync::Mutex<Slot>> =
        (0..stages.len()).map(|_| Default::default()).collect();
    tasks.run(pass.jobs, |task| match task {
        Task::File(i) => {
            let stage = std::mem::replace(
                &mut *stages[i].lock().unwrap_or_else(|e| e.into_inner()),
                Stage::Taken,
            );
            let p = match stage {
                Stage::Read(source) => source.parse(pass.limits, pass.jobs),
                Stage::Parsed(p) => p,
                Stage::Taken => unreachable!("each file is linted once"),
            };
            let file = Arc::new(FileText {
                name: p.name,
                text: p.text,
                starts: Default::default(),
                whole: Default::default(),
            });
            let docs = match p.docs {
                Ok(d) => d,
                Err(e) => {
                    slot(&slots[i]).error = Some(e);
                    return;
                }
            };
            // A large file (one stream: `kustomize build | sealgate lint -`) is judged by every
            // worker, in runs of documents queued before any other file's work.
            let mut runs = chunks(docs).into_iter();
            let first = runs.next().unwrap_or_default();
            let rest: Vec<Task> = runs
                .enumerate()
                .map(|(n, docs)| Task::Run {
                    file: i,
                    run: n + 1,
                    text: file.clone(),
                    docs,
                })
                .collect();
            slot(&slots[i]).runs = (0..=rest.len()).map(|_| None).collect();
            tasks.push_front(rest);
            let judged = judge_docs(bundle, &file, first, pass, &namespaces);
            slot(&slots[i]).runs[0] = Some(judged);
        }
        Task::Run {
            file,
            run,
            text,
            docs,
        } => {
            let judged = judge_docs(bundle, &text, docs, pass, &namespaces);
            slot(&slots[file]).runs[run] = Some(judged);
        }
    });
    let mut out = Linted {
        reports: Vec::with_capacity(slots.len()),
        applied: Vec::new(),
    };
    for (s, source_name) in slots.into_iter().zip(names) {
        let s = s.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut objects = Vec::new();
        for (o, applied) in s.runs.into_iter().flatten() {
            objects.extend(o);
            out.applied.extend(applied);
        }
        out.reports.push(FileReport {
            file: source_name,
            objects,
            error: s.error,
        });
    }
    out
}

/// How many documents one task judges: large enough that queueing costs nothing beside
/// evaluation, small enough that two workers share a stream of a few hundred documents.
const RUN: usize = 64;

/// A file's documents in runs of [`RUN`], each with the line the next document starts on (where
/// a document's field positions end).
fn chunks(docs: Vec<Document>) -> Vec<Vec<(Document, Option<usize>)>> {
    let next_lines: Vec<Option<usize>> = (0..docs.len())
        .map(|i| docs.get(i + 1).map(|d| d.line))
        .collect();
    let mut out: Vec<Vec<(Document, Option<usize>)>> = Vec::new();
    for (i, pair) in docs.into_iter().zip(next_lines).enumerate() {
        if i % RUN == 0 {
            out.push(Vec::with_capacity(RUN));
        }
        if let Some(run) = out.last_mut() {
            run.push(pair);
        }
    }
    out
}

/// A file's name and text, shared by the tasks that judge its runs, with what finding a field's
/// line needs, computed once per file when a finding first needs it.
struct FileText {
    name: String,
    text: String,
    starts: std::sync::OnceLock<manifest::LineStarts>,
    /// The whole text indexed, for documents that cannot be indexed alone.
    whole: std::sync::OnceLock<Option<manifest::Positions>>,
}

/// What lint has of one file: its parse error, or the judged runs, in order.
#[derive(Default)]
struct Slot {
    error: Option<ParseError>,
    runs: Vec<Option<(Vec<ObjectReport>, Vec<Judged>)>>,
}

fn slot(s: &std::sync::Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One unit of lint work.
enum Task {
    /// Parse file `i` (unless parsed early) and judge its first run.
    File(usize),
    /// Judge run `run` of a file.
    Run {
        file: usize,
        run: usize,
        text: Arc<FileText>,
        docs: Vec<(Document, Option<usize>)>,
    },
}

/// Marks a task done when dropped.
struct Done<'a>(&'a Tasks);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.1 -= 1;
        self.0.changed.notify_all();
    }
}

/// The work queue: files in order, a large file's runs pushed in front of the files after it (so
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
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
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
                            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
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

/// Judge a run of a file's documents: their reports and, with `--attest`, the applied objects.
fn judge_docs(
    bundle: &Bundle,
    file: &FileText,
    docs: Vec<(Document, Option<usize>)>,
    pass: &Pass,
    namespaces: &NamespaceLabels,
) -> (Vec<ObjectReport>, Vec<Judged>) {
    let p = file;
    let mut objects = Vec::new();
    let mut applied = Vec::new();
    // Field lines need a second, position-tracking parse: only of the documents with findings
    // that name a field, each on its own lines (a file's other documents are not parsed again).
    for (doc, next_line) in docs {
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
            let keep = pass.keep_applied && is_applied_object(&item.value);
            if pass.skip_policies && is_policy(&item.value) {
                // Applied to the cluster like any object, so attested too.
                if keep {
                    applied.push(Judged {
                        file: p.name.clone(),
                        line: item.line,
                        object: item.value,
                    });
                }
                continue;
            }
            let object = sealgate_core::policy::ObjectRef::of(&item.value);
            let review = match Review::from_document(item.value, pass.point) {
                Ok(r) => r,
                Err(e) => {
                    objects.push(ObjectReport::invalid(item.line, object, &e.to_string()));
                    continue;
                }
            };
            let mut review = review.at(p.name.clone(), item.line);
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
                            .unwrap_or(item.line)
                        }
                        _ => item.line,
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
                line: item.line,
                object: sealgate_core::policy::ObjectRef::of(review.object()),
                findings,
                applied: evaluation.applied,
            });
            if keep {
                applied.push(Judged {
                    file: p.name.clone(),
                    line: item.line,
                    object: review.request["object"].take(),
                });
            }
        }
    }
    (objects, applied)
}
