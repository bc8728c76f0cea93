//! AdmissionReview in, AdmissionReview out: pure functions over the policy bundle, so every
//! decision can be tested without a server.

use sealgate_core::policy::{
    Action, Bundle, Effect, NamespaceLabels, Point, RequestInfo, Review, ReviewError,
};
use serde_json::{Value, json};

use crate::provenance::{Denial, Provenance};

/// A request the webhook cannot evaluate: answered with HTTP 400 and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("expected an admission.k8s.io/v1 AdmissionReview, got {0}")]
    WrongKind(String),
    #[error("invalid AdmissionReview request: request.uid is missing")]
    NoUid,
    #[error(transparent)]
    Review(#[from] ReviewError),
}

/// Parse the body once into the review everything after reads: the envelope is checked, and
/// the request's identifying fields are typed (`Review::info`).
pub fn parse(body: &[u8]) -> Result<Review, BadReview> {
    // serde_json's syntax errors name a position, never object content.
    let review: Value = serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
    let field = |k: &str| review.get(k).and_then(Value::as_str).unwrap_or("");
    let (api, kind) = (field("apiVersion"), field("kind"));
    if api != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        let found = if api.is_empty() && kind.is_empty() {
            "an object without apiVersion and kind".into()
        } else {
            format!("{api} {kind}")
        };
        return Err(BadReview::WrongKind(found));
    }
    let review = Review::from_admission_review(review, Point::Admission)?;
    if review.info.uid.is_empty() {
        return Err(BadReview::NoUid);
    }
    Ok(review)
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
    /// Not an AdmissionReview the webhook can evaluate: answered with HTTP 400.
    BadRequest,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Exempt => "exempt",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::BadRequest => "bad_request",
        }
    }
}

/// What the webhook answers, plus what it logs and counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The request (its uid goes in the answer). Empty for a bad request.
    pub request: RequestInfo,
    pub allowed: bool,
    pub outcome: Outcome,
    /// The denial message: every deny violation as `[constraint] message`; for a bad request,
    /// what is wrong with it.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// Every violated constraint with its action (dryrun ones are only logged and counted).
    pub constraints: Vec<(String, Action)>,
    pub break_glass: bool,
    pub evaluation_errors: usize,
    /// Why provenance refused the object (a denial, or a warning under break-glass).
    pub provenance: Option<Denial>,
}

impl Decision {
    fn new(request: RequestInfo, outcome: Outcome) -> Decision {
        Decision {
            request,
            allowed: true,
            outcome,
            message: None,
            warnings: Vec::new(),
            constraints: Vec::new(),
            break_glass: false,
            evaluation_errors: 0,
            provenance: None,
        }
    }

    /// The answer to a body that is not an AdmissionReview the webhook can evaluate.
    pub fn bad_request(why: &BadReview) -> Decision {
        Decision {
            allowed: false,
            message: Some(why.to_string()),
            ..Decision::new(RequestInfo::default(), Outcome::BadRequest)
        }
    }
}

/// Exemptions that shape decisions.
#[derive(Debug, Clone)]
pub struct Exemptions {
    /// Namespaces always admitted: the webhook's own and kube-system, so it can never deadlock
    /// the cluster.
    pub exempt_namespaces: Vec<String>,
}

impl Default for Exemptions {
    fn default() -> Self {
        Exemptions {
            exempt_namespaces: vec!["kube-system".into(), "sealgate-system".into()],
        }
    }
}

/// Evaluate one review at the admission point (and provenance, when given).
pub fn decide(
    bundle: &Bundle,
    review: Review,
    namespaces: &NamespaceLabels,
    provenance: Option<&Provenance>,
    settings: &Exemptions,
) -> Decision {
    if settings.exempt_namespaces.contains(&review.info.namespace) {
        return Decision::new(review.info, Outcome::Exempt);
    }
    let violations = bundle.evaluate(&review, namespaces);
    let mut denials = Vec::new();
    let mut warnings = Vec::new();
    let mut constraints = Vec::new();
    let (mut break_glass, mut evaluation_errors) = (false, 0);
    for v in &violations {
        let line = format!("[{}] {}", v.constraint, v.message);
        match v.action.effect(Point::Admission, false) {
            Effect::Reject => denials.push(line),
            Effect::Warn => warnings.push(line),
            Effect::Report => {}
        }
        let entry = (v.constraint.clone(), v.action);
        if !constraints.contains(&entry) {
            constraints.push(entry);
        }
        break_glass |= v.is_break_glass();
        evaluation_errors += usize::from(v.evaluation_error);
    }
    // Provenance: only where the policies admit (a denial already says no), and never for a
    // break-glass change, which is admitted and reported instead.
    let provenance = match provenance {
        Some(p) if denials.is_empty() => p.denial(&review, namespaces),
        _ => None,
    };
    match &provenance {
        Some(why) if break_glass => warnings.push(format!("{why} (admitted: break-glass)")),
        Some(why) => denials.push(why.to_string()),
        None => {}
    }
    let denied = !denials.is_empty();
    Decision {
        allowed: !denied,
        outcome: if denied {
            Outcome::Denied
        } else {
            Outcome::Allowed
        },
        message: denied.then(|| denials.join("\n")),
        warnings,
        constraints,
        break_glass,
        evaluation_errors,
        provenance,
        request: review.info,
    }
}

/// The decision for a request whose evaluation did not finish in time.
pub fn timed_out(request: RequestInfo, deadline: std::time::Duration, allow: bool) -> Decision {
    let why = format!("policy evaluation did not finish within {deadline:?}");
    unevaluated(request, Outcome::Timeout, &why, allow)
}

/// The decision for a request not evaluated because the reviews queued before it would take
/// longer than the deadline: answered at once, instead of after the deadline.
pub fn overloaded(
    request: RequestInfo,
    queued: usize,
    wait: std::time::Duration,
    allow: bool,
) -> Decision {
    let why = format!(
        "the webhook is overloaded ({queued} reviews queued, about {} ms of evaluation, more than the deadline)",
        wait.as_millis()
    );
    unevaluated(request, Outcome::Overloaded, &why, allow)
}

/// No evaluation: the answer `--allow-on-timeout` chooses, saying why.
fn unevaluated(request: RequestInfo, outcome: Outcome, why: &str, allow: bool) -> Decision {
    let what = if allow {
        "admitted without a decision"
    } else {
        "denied"
    };
    let mut d = Decision::new(request, outcome);
    d.allowed = allow;
    if allow {
        d.warnings = vec![format!("[sealgate-webhook] {why}; the request was {what}")];
    } else {
        d.message = Some(format!(
            "[sealgate-webhook] {why}; the request was {what} (retry, or see the webhook's logs)"
        ));
    }
    d
}

/// The AdmissionReview response body.
pub fn response(d: &Decision) -> Value {
    let mut resp = json!({"uid": d.request.uid, "allowed": d.allowed});
    if let Some(m) = &d.message {
        resp["status"] = json!({"code": 403, "reason": "Forbidden", "message": m});
    }
    if !d.warnings.is_empty() {
        resp["warnings"] = json!(d.warnings);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
}
