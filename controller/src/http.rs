//! The controller's HTTP API: public keys for `seal`, and verify/rotate for SealedSecrets.
//!
//! - `GET /v1/cert.pem`: the newest key's certificate (kubeseal-compatible; it also carries the
//!   age recipient).
//! - `GET /v1/keys`: every active key's public parts, with ids.
//! - `POST /v1/verify`: 200 if every value opens at its place, 409 if not. Templates are never
//!   rendered.
//! - `POST /v1/rotate`: the SealedSecret re-encrypted to the newest key, in the scope of its
//!   top-level metadata (never the template's).
//! - `/healthz`, `/readyz` (ready once there is a key).

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sealgate_core::keys::KeyRing;
use sealgate_core::keys::cert::fmt_time;
use sealgate_core::sealing::{self, SealedSecret, Target};
use serde_json::json;

use crate::throttle::Tokens;

/// What the endpoints read: the key ring (shared with the key manager, which replaces it whole
/// when keys change).
pub struct ApiState {
    pub ring: Arc<ArcSwap<KeyRing>>,
    /// verify and rotate cost private-key operations: rate-limited per client address.
    pub limiter: RateLimiter,
}

impl ApiState {
    pub fn new(ring: KeyRing) -> Arc<ApiState> {
        ApiState::shared(Arc::new(ArcSwap::from_pointee(ring)))
    }

    pub fn shared(ring: Arc<ArcSwap<KeyRing>>) -> Arc<ApiState> {
        Arc::new(ApiState {
            ring,
            limiter: RateLimiter::new(5.0, 10.0),
        })
    }
}

/// A token bucket per client address. The table is bounded: past 10,000 clients it is cleared,
/// which only ever forgives.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Tokens>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_second,
            burst,
            buckets: Default::default(),
        }
    }

    /// `Ok` to go ahead, or `Err(seconds)` until the next token.
    pub fn check(&self, client: std::net::IpAddr) -> Result<(), u64> {
        let now = tokio::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 10_000 {
            b.clear();
        }
        b.entry(client)
            .or_insert_with(|| Tokens::full(self.burst, now))
            .take(now, self.per_second, self.burst)
            .map_err(|wait| wait.as_secs_f64().ceil() as u64)
    }
}

/// The client address (from the connection), or unspecified when unknown (in-process calls).
fn client(req: &axum::extract::Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// Rate limit, then read the body (within the size limit).
async fn limited_body(s: &ApiState, req: axum::extract::Request) -> Result<Bytes, Response> {
    if let Err(wait) = s.limiter.check(client(&req)) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.to_string())],
            "too many requests: retry later\n",
        )
            .into_response());
    }
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY} bytes"),
            )
        })
}

/// Largest accepted SealedSecret (a Secret is at most 1 MiB; sealing adds about a third).
const MAX_BODY: usize = 2 << 20;

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/cert.pem", get(cert))
        .route("/v1/keys", get(keys))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", msg.into()),
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ring.load().is_empty() {
        text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet")
    } else {
        text(StatusCode::OK, "ok")
    }
}

async fn cert(State(s): State<Arc<ApiState>>) -> Response {
    match s.ring.load().newest() {
        Some(k) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            k.public().cert_pem(),
        )
            .into_response(),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot get certificate: there is no sealing key yet",
        ),
    }
}

async fn keys(State(s): State<Arc<ApiState>>) -> Response {
    let ring = s.ring.load();
    let newest = ring.newest().map(|k| k.id());
    let list: Vec<_> = ring
        .iter()
        .map(|k| {
            json!({
                "id": k.id().to_string(),
                "created": fmt_time(k.created()),
                "notAfter": fmt_time(k.public().not_after()),
                "rsaBits": k.public().rsa_bits(),
                "certificate": k.public().cert_pem(),
                "ageRecipient": k.public().age_recipient().map(|r| r.to_string()),
                "agePqRecipient": k.public().pq_recipient().map(|r| r.to_string()),
                "newest": Some(k.id()) == newest,
            })
        })
        .collect();
    axum::Json(json!({"keys": list})).into_response()
}

/// One SealedSecret from a JSON or YAML body; the error is the 400 message.
fn parse(body: &[u8]) -> Result<SealedSecret, String> {
    let docs = sealgate_core::manifest::parse(body, &Default::default())
        .map_err(|e| format!("cannot parse the body: {e}"))?;
    let [doc] = &docs[..] else {
        return Err(format!(
            "expected one SealedSecret, got {} documents",
            docs.len()
        ));
    };
    SealedSecret::from_value(&doc.value).map_err(|e| e.to_string())
}

/// What verify and rotate start with: rate limit, body, one SealedSecret, the current keys.
async fn sealed_request(
    s: &ApiState,
    req: axum::extract::Request,
) -> Result<(SealedSecret, Arc<KeyRing>), Response> {
    let body = limited_body(s, req).await?;
    let ss = parse(&body).map_err(|msg| text(StatusCode::BAD_REQUEST, msg))?;
    Ok((ss, s.ring.load_full()))
}

async fn verify(State(s): State<Arc<ApiState>>, req: axum::extract::Request) -> Response {
    let (ss, ring) = match sealed_request(&s, req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // RSA private-key work: off the async reactor.
    match tokio::task::spawn_blocking(move || sealing::verify(&ss, &ring)).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok"),
        Ok(Err(e)) => text(
            StatusCode::CONFLICT,
            format!("unable to decrypt the sealed secret: {e}"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn rotate(State(s): State<Arc<ApiState>>, req: axum::extract::Request) -> Response {
    let (ss, ring) = match sealed_request(&s, req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let result = tokio::task::spawn_blocking(move || {
        let newest = ring
            .newest()
            .ok_or("there is no sealing key yet")?
            .public()
            .clone();
        sealing::reseal(&ss, &ring, &Target::new(&newest, &[]), None).map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(re)) => axum::Json(re.to_value()).into_response(),
        Ok(Err(e)) => text(StatusCode::CONFLICT, format!("cannot re-encrypt: {e}")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
