//! Client-side rate limiting of API requests (`--kube-api-qps`, `--kube-api-burst`), as
//! client-go does: a token bucket in front of the kube client's service. kube-rs has none, and a
//! controller that starts with thousands of SealedSecrets must not flood the API server.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Token-bucket arithmetic: at most `burst` tokens, refilled at `rate` per second. Shared by
/// the API client's throttle and the HTTP API's per-client limit.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    tokens: f64,
    last: Instant,
}

impl Tokens {
    pub fn full(burst: f64, now: Instant) -> Tokens {
        Tokens {
            tokens: burst,
            last: now,
        }
    }

    /// Take a token, or say how long until one is there.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate)
            .min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `qps` per second.
#[derive(Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<Tokens>,
}

impl Bucket {
    pub fn new(qps: f64, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            qps: qps.max(0.001),
            burst,
            state: Mutex::new(Tokens::full(burst, Instant::now())),
        }
    }

    /// Take a token, or say how long until one is there.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.take(now, self.qps, self.burst)
    }
}

/// A `tower::Layer` for `kube::client::ClientBuilder::with_layer`.
#[derive(Clone)]
pub struct ThrottleLayer(pub Arc<Bucket>);

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;
    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            bucket: self.0.clone(),
            wait: None,
            has_token: false,
        }
    }
}

pub struct Throttle<S> {
    inner: S,
    bucket: Arc<Bucket>,
    wait: Option<Pin<Box<Sleep>>>,
    /// A token taken for the next call (readiness holds it until `call`).
    has_token: bool,
}

impl<S: tower::Service<R>, R> tower::Service<R> for Throttle<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.has_token {
            if let Some(w) = self.wait.as_mut() {
                std::task::ready!(w.as_mut().poll(cx));
                self.wait = None;
            }
            match self.bucket.try_take(Instant::now()) {
                Ok(()) => self.has_token = true,
                Err(d) => self.wait = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.has_token = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_for_tokens() {
        let layer = ThrottleLayer(Arc::new(Bucket::new(10.0, 3)));
        let mut svc = layer.layer(tower::service_fn(|x: u32| async move {
            Ok::<_, std::convert::Infallible>(x)
        }));
        let start = Instant::now();
        for i in 0..13 {
            assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
        }
        // 3 at once, then 10 more at 10/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took < Duration::from_millis(1100),
            "{took:?}"
        );
    }
}
