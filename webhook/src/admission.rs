//! AdmissionReview in, AdmissionReview out: pure functions over the policy bundle, so every
//! decision can be tested without a server.

use sealgate_core::policy::{Bundle, Effect, NamespaceLabels, Point, Review, Violation};
use serde_json::{Value, json};

/// A request the webhook cannot evaluate: answered with HTTP 400 and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("expected an admission.k8s.io/v1 AdmissionReview, got {0}")]
    WrongKind(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("invalid AdmissionReview request: {0}")]
    Invalid(String),
}

/// Parse and check the envelope; returns the review and the request uid.
pub fn parse(body: &[u8]) -> Result<(Value, String), BadReview> {
    // serde_json's syntax errors name a position, never object content.
    let review: Value = serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
    let api = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if api != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        let found = if api.is_empty() && kind.is_empty() {
            "an object without apiVersion and kind".into()
        } else {
            format!("{api} {kind}")
        };
        return Err(BadReview::WrongKind(found));
    }
    let request = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(BadReview::NoRequest)?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| BadReview::Invalid("request.uid is missing".into()))?
        .to_string();
    Ok((review, uid))
}

/// How a review ended, as logs and the `decision` metric label say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Evaluated, nothing rejects it.
    Allowed,
    /// Evaluated, a constraint rejects it.
    Denied,
    /// In an exempt namespace: not evaluated.
    Exempt,
    /// The evaluation did not finish within the deadline.
    Timeout,
    /// Not evaluated: the queue ahead would take longer than the deadline.
    Overloaded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Exempt => "exempt",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
        }
    }
}

/// What the webhook answers, plus what it logs and counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub uid: String,
    pub allowed: bool,
    pub outcome: Outcome,
    /// The denial message: every deny violation as `[constraint] message`.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// Every violated constraint with its action (dryrun ones are only logged and counted).
    pub constraints: Vec<(String, &'static str)>,
    pub break_glass: bool,
    pub evaluation_errors: usize,
    pub request: RequestInfo,
}

/// The identifying fields of a request, for logs and metrics: never object data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    pub operation: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub user: String,
    pub dry_run: bool,
    pub sub_resource: String,
}

impl RequestInfo {
    pub fn of(review: &Value) -> RequestInfo {
        let r = &review["request"];
        // Bounded before anything is logged or counted: these come from the request body, and
        // a 4 MB `kind` must not become a 4 MB log line or label. Kubernetes' own limits
        // (names 253, namespaces and kinds 63) leave room; longer is cut with `…`.
        let s = |v: &Value, max: usize| {
            let text = v.as_str().unwrap_or("");
            match text.char_indices().nth(max) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_string(),
            }
        };
        RequestInfo {
            operation: s(&r["operation"], 16),
            kind: s(&r["kind"]["kind"], 128),
            namespace: s(&r["namespace"], 128),
            name: s(&r["name"], 256),
            user: s(&r["userInfo"]["username"], 256),
            dry_run: r["dryRun"].as_bool().unwrap_or(false),
            sub_resource: s(&r["subResource"], 64),
        }
    }
}

/// Settings that shape decisions.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespaces always admitted: the webhook's own and kube-system, so it can never deadlock
    /// the cluster.
    pub exempt_namespaces: Vec<String>,
    /// Provenance checks (attestations), when trusted keys are configured.
    pub provenance: Option<std::sync::Arc<crate::provenance::Provenance>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            exempt_namespaces: vec!["kube-system".into(), "sealgate-system".into()],
            provenance: None,
        }
    }
}

/// Evaluate one review at the admission point. `info` is `RequestInfo::of(&review)`, taken
/// before the review is handed over.
pub fn decide(
    bundle: &Bundle,
    review: Value,
    uid: String,
    info: RequestInfo,
    namespaces: &NamespaceLabels,
    settings: &Settings,
) -> Result<Decision, BadReview> {
    let mut d = Decision {
        uid,
        allowed: true,
        outcome: Outcome::Allowed,
        message: None,
        warnings: Vec::new(),
        constraints: Vec::new(),
        break_glass: false,
        evaluation_errors: 0,
        request: info,
    };
    if settings.exempt_namespaces.contains(&d.request.namespace) {
        d.outcome = Outcome::Exempt;
        return Ok(d);
    }
    let r = Review::from_admission_review(review, Point::Admission)
        .map_err(|e| BadReview::Invalid(e.to_string()))?;
    let violations = bundle.evaluate(&r, namespaces);
    let mut denials = Vec::new();
    for v in &violations {
        let line = format!("[{}] {}", v.constraint, v.message);
        match v.action.effect(Point::Admission, false) {
            Effect::Reject => denials.push(line),
            Effect::Warn => d.warnings.push(line),
            Effect::Report => {}
        }
        let entry = (v.constraint.clone(), v.action.as_str());
        if !d.constraints.contains(&entry) {
            d.constraints.push(entry);
        }
        d.break_glass |= is_break_glass(v);
        d.evaluation_errors += usize::from(v.evaluation_error);
    }
    // Provenance: only where the policies admit (a denial already says no), and never for a
    // break-glass change, which is admitted and reported instead.
    if let Some(p) = &settings.provenance
        && denials.is_empty()
    {
        match p.check(&r.request, namespaces) {
            Ok(()) => {}
            Err(why) if d.break_glass => {
                d.warnings.push(format!("{why} (admitted: break-glass)"));
            }
            Err(why) => denials.push(why),
        }
    }
    if !denials.is_empty() {
        d.allowed = false;
        d.outcome = Outcome::Denied;
        d.message = Some(denials.join("\n"));
    }
    Ok(d)
}

/// A break-glass admission, as the built-in identity policy reports it (mode audit-break-glass).
fn is_break_glass(v: &Violation) -> bool {
    v.policy == "SealgateGitOpsIdentity" && v.details.get("reason").is_some()
}

/// The decision for a request whose evaluation did not finish in time.
pub fn timed_out(
    uid: String,
    request: RequestInfo,
    deadline: std::time::Duration,
    allow: bool,
) -> Decision {
    let why = format!("policy evaluation did not finish within {deadline:?}");
    unevaluated(uid, request, Outcome::Timeout, &why, allow)
}

/// The decision for a request not evaluated because the reviews queued before it would take
/// longer than the deadline: answered at once, instead of after the deadline.
pub fn overloaded(
    uid: String,
    request: RequestInfo,
    queued: usize,
    wait: std::time::Duration,
    allow: bool,
) -> Decision {
    let why = format!(
        "the webhook is overloaded ({queued} reviews queued, about {} ms of evaluation, more than the deadline)",
        wait.as_millis()
    );
    unevaluated(uid, request, Outcome::Overloaded, &why, allow)
}

/// No evaluation: the answer `--allow-on-timeout` chooses, saying why.
fn unevaluated(
    uid: String,
    request: RequestInfo,
    outcome: Outcome,
    why: &str,
    allow: bool,
) -> Decision {
    let what = if allow {
        "admitted without a decision"
    } else {
        "denied"
    };
    Decision {
        uid,
        allowed: allow,
        outcome,
        message: (!allow).then(|| {
            format!("[sealgate-webhook] {why}; the request was {what} (retry, or see the webhook's logs)")
        }),
        warnings: if allow {
            vec![format!("[sealgate-webhook] {why}; the request was {what}")]
        } else {
            Vec::new()
        },
        constraints: Vec::new(),
        break_glass: false,
        evaluation_errors: 0,
        request,
    }
}

/// The AdmissionReview response body.
pub fn response(d: &Decision) -> Value {
    let mut resp = json!({"uid": d.uid, "allowed": d.allowed});
    if let Some(m) = &d.message {
        resp["status"] = json!({"code": 403, "reason": "Forbidden", "message": m});
    }
    if !d.warnings.is_empty() {
        resp["warnings"] = json!(d.warnings);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
}
