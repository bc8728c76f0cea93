//! `sealgate lint` reports: text, JSON, SARIF 2.1.0, JUnit XML and GitHub workflow commands.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sealgate_core::policy::report::ReportApi;
use sealgate_core::policy::{Action, Effect, ObjectRef, Point, Violation};
use serde_json::{Value, json};

use crate::args::ReportFormat;

/// Whether a violation fails the run: lint's verdict is CI's, whatever point it evaluated as.
pub fn fails(action: Action, fail_on_warn: bool) -> bool {
    action.effect(Point::Ci, fail_on_warn) == Effect::Reject
}

/// A file that could not be read or parsed: its own finding; the rest is still linted.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug)]
pub struct Finding {
    pub violation: Violation,
    /// The offending field's line, or the object's.
    pub line: usize,
}

#[derive(Debug)]
pub struct ObjectReport {
    pub line: usize,
    pub object: ObjectRef,
    pub findings: Vec<Finding>,
    /// (policy, constraint) of every constraint that applied, for pass results.
    pub applied: Vec<(sealgate_core::policy::PolicyRef, String)>,
}

impl ObjectReport {
    /// An object that could not be evaluated (e.g. an AdmissionReview without a request).
    pub fn invalid(line: usize, object: ObjectRef, why: &str) -> ObjectReport {
        ObjectReport {
            line,
            findings: vec![Finding {
                line,
                violation: Violation {
                    policy: sealgate_core::policy::PolicyRef::Sealgate,
                    constraint: "invalid-object".into(),
                    message: why.to_string(),
                    details: json!({}),
                    action: Action::Deny,
                    object: object.clone(),
                    path: None,
                    evaluation_error: false,
                    severity: None,
                },
            }],
            object,
            applied: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    pub objects: Vec<ObjectReport>,
    /// Objects that passed without a finding and are not in `objects`: the formats that list only
    /// findings count them (so a large stream's report does not grow with its passing objects).
    pub passed: usize,
    pub error: Option<ParseError>,
}

/// Counts over all files. An object fails when it has a violation that fails the run.
#[derive(Debug, Default)]
pub struct Summary {
    pub objects: usize,
    pub passed: usize,
    pub failed: usize,
    pub warnings: usize,
    /// Files that could not be read or parsed.
    pub errors: usize,
    pub fail_on_warn: bool,
}

impl Summary {
    pub fn of(reports: &[FileReport], fail_on_warn: bool) -> Summary {
        let mut s = Summary {
            fail_on_warn,
            ..Summary::default()
        };
        for r in reports {
            if r.error.is_some() {
                s.errors += 1;
            }
            s.objects += r.passed;
            s.passed += r.passed;
            for o in &r.objects {
                s.objects += 1;
                if o.findings
                    .iter()
                    .any(|f| fails(f.violation.action, fail_on_warn))
                {
                    s.failed += 1;
                } else {
                    s.passed += 1;
                }
                s.warnings += o
                    .findings
                    .iter()
                    .filter(|f| f.violation.action == Action::Warn)
                    .count();
            }
        }
        s
    }

    /// Objects plus unparseable files count in `N passed, N failed`.
    fn failed_total(&self) -> usize {
        self.failed + self.errors
    }
}

/// Whether `format` lists the objects that passed (JUnit test cases, policy reports' pass
/// results); the others only count them.
pub fn lists_passing(format: ReportFormat) -> bool {
    matches!(
        format,
        ReportFormat::Junit | ReportFormat::Policyreport | ReportFormat::Openreports
    )
}

pub fn render_lint_report(
    reports: &[FileReport],
    summary: &Summary,
    format: ReportFormat,
) -> String {
    match format {
        ReportFormat::Text => text(reports, summary),
        ReportFormat::Json => json_report(reports, summary),
        ReportFormat::Sarif => sarif(reports),
        ReportFormat::Junit => junit(reports, summary),
        ReportFormat::Github => github(reports, summary),
        ReportFormat::Policyreport => policy_reports(reports, ReportApi::WgPolicy),
        ReportFormat::Openreports => policy_reports(reports, ReportApi::OpenReports),
    }
}

/// Report objects in `api` (wg-policy's PolicyReport / ClusterPolicyReport, or OpenReports'
/// Report / ClusterReport), YAML, one document each; every result carries the file and line.
/// Unparseable files are not objects: they are reported on stderr by the exit code's usual path.
fn policy_reports(reports: &[FileReport], api: ReportApi) -> String {
    use sealgate_core::policy::report::{ObjectResult, policy_reports, unix_now};
    let results: Vec<ObjectResult> = reports
        .iter()
        .flat_map(|r| {
            r.objects.iter().map(|o| ObjectResult {
                object: o.object.clone(),
                uid: None,
                applied: o.applied.clone(),
                violations: o.findings.iter().map(|f| f.violation.clone()).collect(),
                properties: BTreeMap::from([
                    ("file".to_string(), r.file.clone()),
                    ("line".to_string(), o.line.to_string()),
                ]),
            })
        })
        .collect();
    let docs = policy_reports(&results, sealgate_core::policy::Point::Ci, unix_now(), api);
    sealgate_core::manifest::to_yaml_stream(&docs)
}

fn rule_id(v: &Violation) -> String {
    format!("{}/{}", v.policy, v.constraint)
}

/// One finding, flattened for the line-oriented formats.
struct Row<'a> {
    file: &'a str,
    line: usize,
    column: Option<usize>,
    action: Action,
    rule: String,
    message: String,
    object: Option<&'a ObjectRef>,
}

/// Every finding in file order, parse errors first within a file.
fn rows(reports: &[FileReport]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            out.push(Row {
                file: &r.file,
                line: e.line,
                column: Some(e.column),
                action: Action::Deny,
                rule: "sealgate/parse-error".into(),
                message: e.message.clone(),
                object: None,
            });
        }
        for o in &r.objects {
            for f in &o.findings {
                out.push(Row {
                    file: &r.file,
                    line: f.line,
                    column: None,
                    action: f.violation.action,
                    rule: rule_id(&f.violation),
                    message: f.violation.message.clone(),
                    object: Some(&o.object),
                });
            }
        }
    }
    out
}

fn text(reports: &[FileReport], s: &Summary) -> String {
    let mut out = String::new();
    for r in rows(reports) {
        let loc = match r.column {
            Some(c) if c > 0 => format!("{}:{}:{c}", r.file, r.line),
            _ => format!("{}:{}", r.file, r.line),
        };
        let obj = r.object.map(|o| format!(" ({o})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{loc}: {:<6} {}: {}{obj}",
            r.action.as_str(),
            r.rule,
            r.message
        );
    }
    if s.warnings > 0 {
        let _ = writeln!(
            out,
            "{} warning(s){}",
            s.warnings,
            if s.fail_on_warn {
                " (failing: --fail-on-warn)"
            } else {
                ""
            }
        );
    }
    if s.errors > 0 {
        let _ = writeln!(out, "{} file(s) could not be parsed", s.errors);
    }
    let _ = writeln!(out, "{} passed, {} failed", s.passed, s.failed_total());
    out
}

/// One entry of the JSON report's `findings` (serialized as it is written, not built as a
/// `Value` tree first: a large stream's report has tens of thousands).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum JsonFinding<'a> {
    ParseError {
        file: &'a str,
        line: usize,
        column: usize,
        policy: &'static str,
        constraint: &'static str,
        action: &'static str,
        message: &'a str,
    },
    Finding {
        file: &'a str,
        line: usize,
        #[serde(rename = "objectLine")]
        object_line: usize,
        policy: &'a sealgate_core::policy::PolicyRef,
        constraint: &'a str,
        action: &'static str,
        message: &'a str,
        object: &'a ObjectRef,
        details: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<&'a Vec<String>>,
    },
}

fn json_report(reports: &[FileReport], s: &Summary) -> String {
    let mut findings = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            findings.push(JsonFinding::ParseError {
                file: &r.file,
                line: e.line,
                column: e.column,
                policy: "sealgate",
                constraint: "parse-error",
                action: "deny",
                message: &e.message,
            });
        }
        for o in &r.objects {
            for f in &o.findings {
                let v = &f.violation;
                findings.push(JsonFinding::Finding {
                    file: &r.file,
                    line: f.line,
                    object_line: o.line,
                    policy: &v.policy,
                    constraint: &v.constraint,
                    action: v.action.as_str(),
                    message: &v.message,
                    object: &v.object,
                    details: &v.details,
                    path: v.path.as_ref(),
                });
            }
        }
    }
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        summary: Value,
        findings: Vec<JsonFinding<'a>>,
    }
    let doc = Doc {
        summary: json!({"objects": s.objects, "passed": s.passed, "failed": s.failed, "warnings": s.warnings, "unparseableFiles": s.errors}),
        findings,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

fn sarif_level(a: Action) -> &'static str {
    match a {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Dryrun => "note",
    }
}

fn sarif(reports: &[FileReport]) -> String {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for r in rows(reports) {
        rules.entry(r.rule.clone()).or_insert_with(|| {
            let (policy, constraint) = r.rule.split_once('/').unwrap_or((&r.rule, ""));
            json!({"id": r.rule, "name": constraint, "shortDescription": {"text": format!("{policy} constraint {constraint}")},
                   "defaultConfiguration": {"level": sarif_level(r.action)}})
        });
        let mut region = json!({"startLine": r.line.max(1)});
        if let Some(c) = r.column.filter(|c| *c > 0) {
            region["startColumn"] = json!(c);
        }
        let text = match r.object {
            Some(o) => format!("{} ({o})", r.message),
            None => r.message.clone(),
        };
        results.push(json!({
            "ruleId": r.rule,
            "level": sarif_level(r.action),
            "message": {"text": text},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": r.file.replace('\\', "/")}, "region": region}}],
        }));
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sealgate",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/sealgate/sealgate",
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// One testsuite per file, one testcase per object (or per unparseable file).
fn junit(reports: &[FileReport], s: &Summary) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"sealgate lint\" tests=\"{}\" failures=\"{}\">",
        s.objects + s.errors,
        s.failed_total()
    );
    for r in reports {
        let tests = r.objects.len() + usize::from(r.error.is_some());
        let failures = r
            .objects
            .iter()
            .filter(|o| {
                o.findings
                    .iter()
                    .any(|f| fails(f.violation.action, s.fail_on_warn))
            })
            .count()
            + usize::from(r.error.is_some());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">",
            xml(&r.file)
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"parse\">",
                xml(&r.file)
            );
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"sealgate/parse-error\">{}:{}:{}: {}</failure>",
                xml(&e.message),
                xml(&r.file),
                e.line,
                e.column,
                xml(&e.message)
            );
            out.push_str("    </testcase>\n");
        }
        for o in &r.objects {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(&r.file),
                xml(&o.object.to_string())
            );
            if o.findings.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            let mut notes = String::new();
            for f in &o.findings {
                let v = &f.violation;
                let line = format!(
                    "{}:{}: {} {}: {}",
                    r.file,
                    f.line,
                    v.action.as_str(),
                    rule_id(v),
                    v.message
                );
                if fails(v.action, s.fail_on_warn) {
                    let _ = writeln!(
                        out,
                        "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                        xml(&v.message),
                        xml(&rule_id(v)),
                        xml(&line)
                    );
                } else {
                    notes.push_str(&line);
                    notes.push('\n');
                }
            }
            if !notes.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    xml(notes.trim_end())
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// GitHub Actions workflow commands: annotations on the changed lines of a pull request.
fn github(reports: &[FileReport], s: &Summary) -> String {
    let data = |v: &str| {
        v.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |v: &str| data(v).replace(':', "%3A").replace(',', "%2C");
    let mut out = String::new();
    for r in rows(reports) {
        let level = match r.action {
            Action::Deny => "error",
            Action::Warn => "warning",
            Action::Dryrun => "notice",
        };
        let col = r
            .column
            .filter(|c| *c > 0)
            .map(|c| format!(",col={c}"))
            .unwrap_or_default();
        let obj = r.object.map(|o| format!(" ({o})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "::{level} file={},line={}{col},title={}::{}",
            prop(r.file),
            r.line.max(1),
            prop(&r.rule),
            data(&format!("{}{obj}", r.message))
        );
    }
    let _ = writeln!(out, "{} passed, {} failed", s.passed, s.failed_total());
    out
}
