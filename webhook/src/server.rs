//! The HTTP layer: `POST /validate`, `/healthz`, `/readyz` and, on another port, `/metrics`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use sealgate_core::policy::{RequestInfo, Review};

use crate::admission::{self, Decision, Outcome};
use crate::metrics::{ConstraintLabels, OutcomeLabels, ProvenanceLabels, RequestLabels};
use crate::pool::Incomplete;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<AppState>>| async move {
                // The watches' state, as of this scrape.
                let m = &s.metrics;
                m.namespaces_synced.set(i64::from(s.namespaces.is_synced()));
                m.inventory_synced.set(i64::from(s.inventory.is_ready()));
                m.inventory_objects.set(s.inventory.len() as i64);
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let status = s.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let bundle = s.bundle.load();
    let namespaces = s.namespaces.is_synced();
    let inventory = s.inventory.is_ready();
    let provenance = s.provenance.as_ref();
    let attestations = provenance.is_none_or(|p| p.is_synced());
    let synced = namespaces && inventory && attestations;
    let body = json!({
        "ready": synced,
        "namespacesSynced": namespaces,
        "inventorySynced": inventory,
        "attestationsSynced": attestations,
        "trustedAttestations": provenance.map(|p| p.trusted()),
        "inventoryObjects": s.inventory.len(),
        "syncedKinds": bundle.sync_kinds().iter().map(|k| format!("{}/{}", k.api_version(), k.kind)).collect::<Vec<_>>(),
        "constraints": bundle.constraints().len(),
        "templates": bundle.templates().count(),
        "policyLoadedAt": status.loaded_at,
        // A failed reload keeps the previous bundle serving: visible here, not an outage.
        "lastReloadError": status.last_error,
    });
    let code = if synced {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// The request body, or the 413 answer when it is over `limit` bytes.
///
/// An early answer on HTTP/2 must reach the client before the rest of the request is refused:
/// dropping the request stream first makes h2 reset it with CANCEL, which clients (curl, Go)
/// report as a transport error instead of the 413. So the 413 carries the request stream and
/// drops it once sent, and h2 then ends it with NO_ERROR (RFC 9113 §8.1).
async fn read_body(request: Request, limit: usize) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let mut body = request.into_body();
    let declared = http_body::Body::size_hint(&body).exact();
    let mut buf = bytes::BytesMut::new();
    let mut read = 0u64;
    if declared.is_none_or(|n| n <= limit as u64) {
        loop {
            let Some(frame) = body.frame().await else {
                return Ok(buf.freeze());
            };
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {e}\n"),
                )
                    .into_response()
            })?;
            if let Ok(data) = frame.into_data() {
                read += data.len() as u64;
                if buf.len() + data.len() > limit {
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    drop(buf);
    // Read the rest and throw it away, within bounds, so the stream ends with the client's last
    // byte and the 413 is a complete exchange: curl (nghttp2) reports a stream that the server
    // ends early as `(92) Stream error in the HTTP/2 framing layer`, even after a 413. Past the
    // bounds (a huge or trickling body) the stream is reset as before.
    let drain_limit = (limit as u64).saturating_mul(4).max(64 << 20);
    if declared.is_none_or(|n| n <= drain_limit) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while read <= drain_limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            read += data.len() as u64;
                        }
                    }
                    _ => break,
                }
            }
        })
        .await;
    }
    let message = format!(
        "the request body is over the {limit}-byte limit (the webhook's --max-body-bytes)\n"
    );
    let response = Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::new(AnswerThenDrop {
            message: Some(Bytes::from(message)),
            _request: body,
        }))
        .unwrap_or_else(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response());
    Err(response)
}

/// A response body that holds the unread request body until the response has been sent.
struct AnswerThenDrop {
    message: Option<Bytes>,
    _request: Body,
}

impl http_body::Body for AnswerThenDrop {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .message
                .take()
                .map(|m| Ok(http_body::Frame::data(m))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.message.as_ref().map_or(0, |m| m.len() as u64))
    }
}

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let body = match read_body(request, state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(too_large) => return too_large,
    };
    let start = Instant::now();
    let (deadline, allow) = (state.config.deadline, state.config.allow_on_timeout);
    // A review that could not even start before its deadline is answered now: waiting would only
    // hold the API server's request (and its caller) for the whole deadline, then answer the same.
    let wait = state.pool.expected_wait();
    if wait > deadline || state.pool.full() {
        let queued = state.pool.queued();
        state.metrics.queued.set(queued as i64);
        // Rare, so the body is parsed here, on the reactor, for the uid the answer must carry.
        let d = match admission::parse(&body) {
            Ok(review) => admission::overloaded(review.info, queued, wait, allow),
            Err(bad) => Decision::bad_request(&bad),
        };
        return answer(&state, &d, start);
    }
    // The evaluation hands the request's identity here once it has parsed the body, so a late
    // or failed evaluation is answered without parsing it again.
    let identity = Arc::new(OnceLock::new());
    let evaluation = evaluate(state.clone(), body.clone(), identity.clone(), start);
    state.metrics.queued.set(state.pool.queued() as i64);
    let outcome = tokio::time::timeout(deadline, evaluation).await;
    let known = || match identity.get() {
        Some(info) => Ok(RequestInfo::clone(info)),
        // Never parsed: it was still queued when its deadline passed.
        None => admission::parse(&body).map(|r| r.info),
    };
    let d = match outcome {
        Ok(Ok(answered)) => return answered,
        Ok(Err(internal)) => {
            let uid = known().map(|i| i.uid).unwrap_or_default();
            tracing::error!(target: "sealgate::decision", uid = %uid, error = %internal, "evaluation failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{internal}\n")).into_response();
        }
        Err(_) => match known() {
            Ok(info) => admission::timed_out(info, deadline, allow),
            Err(bad) => Decision::bad_request(&bad),
        },
    };
    answer(&state, &d, start)
}

/// Parse and decide on an evaluation thread: everything CPU-bound, parsing included, so a large
/// body cannot stall the connections sharing the reactor, and the review is allocated and freed
/// on one thread (cross-thread frees cost the allocator). A Namespace the watch has not delivered
/// yet (created a moment ago) is read from the API in between, as Gatekeeper falls back to its
/// uncached reader; the parsed review is carried across, not parsed again. The decision is
/// recorded and answered on the evaluation thread too.
async fn evaluate(
    state: Arc<AppState>,
    body: Bytes,
    identity: Arc<OnceLock<RequestInfo>>,
    start: Instant,
) -> Result<Response, Incomplete> {
    let can_read = state.api.get().is_some();
    let s = state.clone();
    let first = state
        .pool
        .run(move || {
            let _in_flight = InFlight::start(&s.metrics.in_flight);
            let review = match admission::parse(&body) {
                Ok(review) => review,
                Err(bad) => {
                    let d = Decision::bad_request(&bad);
                    return Evaluated::Answered(answer(&s, &d, start));
                }
            };
            drop(body);
            let _ = identity.set(review.info.clone());
            if can_read && s.namespace_unknown(&review.info.namespace) {
                return Evaluated::Unknown(Box::new(review));
            }
            let d = s.decide(review);
            Evaluated::Answered(answer(&s, &d, start))
        })
        .await?;
    match first {
        Evaluated::Answered(response) => Ok(response),
        Evaluated::Unknown(review) => {
            if let Some(client) = state.api.get() {
                state
                    .namespaces
                    .read_missing(client, &review.info.namespace)
                    .await;
            }
            let s = state.clone();
            state
                .pool
                .run(move || {
                    let _in_flight = InFlight::start(&s.metrics.in_flight);
                    let d = s.decide(*review);
                    answer(&s, &d, start)
                })
                .await
        }
    }
}

/// What the first evaluation step hands back: the answer, or a review whose Namespace must be
/// read first.
enum Evaluated {
    Answered(Response),
    Unknown(Box<Review>),
}

/// Record the decision and write the answer: the AdmissionReview, or a 400 for a bad request.
fn answer(state: &AppState, d: &Decision, start: Instant) -> Response {
    record(state, d, start.elapsed());
    if d.outcome == Outcome::BadRequest {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", d.message.as_deref().unwrap_or_default()),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&admission::response(d)).unwrap_or_default(),
    )
        .into_response()
}

/// Counts an evaluation in `in_flight_requests` until dropped, panics included.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn start(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Metrics and the decision log: one event per request, naming the request (bounded: these fields
/// come from the body, and a 4 MB `kind` must not become a 4 MB log line) and the constraints,
/// never object data. Not a span: one measured 40 µs more per review at concurrency 1 (see
/// docs/decisions.md), and a request logs this one event.
fn record(state: &AppState, d: &Decision, elapsed: Duration) {
    let m = &state.metrics;
    let r = &d.request;
    let bad = d.outcome == Outcome::BadRequest;
    m.requests
        .get_or_create(&RequestLabels {
            decision: d.outcome.as_str().into(),
            // A bad request has no operation or kind to speak of.
            operation: (if bad {
                ""
            } else {
                crate::metrics::operation_label(r.operation)
            })
            .into(),
            kind: (if bad {
                ""
            } else {
                crate::metrics::kind_label(&r.kind)
            })
            .into(),
        })
        .inc();
    m.duration
        .get_or_create(&OutcomeLabels {
            outcome: d.outcome.as_str().into(),
        })
        .observe(elapsed.as_secs_f64());
    if bad {
        tracing::warn!(target: "sealgate::decision", decision = "bad_request", error = d.message.as_deref().unwrap_or_default(), "rejected admission request");
        return;
    }
    for (constraint, action) in &d.constraints {
        m.violations
            .get_or_create(&ConstraintLabels {
                constraint: constraint.clone(),
                action: action.as_str().into(),
            })
            .inc();
    }
    m.evaluation_errors.inc_by(d.evaluation_errors as u64);
    if d.break_glass {
        m.break_glass.inc();
    }
    if let Some(p) = &d.provenance {
        m.provenance_denials
            .get_or_create(&ProvenanceLabels {
                reason: p.rejection.reason().into(),
            })
            .inc();
    }
    // Kubernetes' own limits (names 253, namespaces and kinds 63) leave room; longer is cut.
    let clip = |s: &str, max: usize| match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    };
    tracing::info!(
        target: "sealgate::decision",
        uid = %clip(&r.uid, 128), operation = r.operation.as_str(), kind = %clip(&r.kind, 128),
        namespace = %clip(&r.namespace, 128), name = %clip(&r.name, 256),
        sub_resource = %clip(&r.sub_resource, 64), user = %clip(&r.user, 256),
        dry_run = r.dry_run,
        decision = d.outcome.as_str(), allowed = d.allowed,
        constraints = ?d.constraints.iter().map(|(c, a)| (c, a.as_str())).collect::<Vec<_>>(),
        warnings = d.warnings.len(), break_glass = d.break_glass,
        provenance = d.provenance.as_ref().map(|p| p.rejection.reason()),
        attestation = d.provenance.as_ref().and_then(|p| p.attestation.as_deref()),
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "admission decision"
    );
}
