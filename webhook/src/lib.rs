//! sealgate-webhook: the validating admission webhook. It evaluates every AdmissionReview with the
//! same policy bundle as `sealgate lint`, at the enforcement point `admission`.
//!
//! Bottom first; no module uses one below it (`tests/tests/imports.rs` checks there is no circle):
//! - [`metrics`]: Prometheus metrics.
//! - [`pool`]: the evaluation threads (bounded concurrency, off the reactor).
//! - [`provenance`]: admission only of attested objects; owns the Attestation watch.
//! - [`admission`]: one parse of the AdmissionReview, decisions and responses, as pure functions.
//! - [`namespaces`]: the cluster's Namespace labels ([`namespaces::NamespaceCache`]: its watch,
//!   synced flag and cache-miss read).
//! - [`inventory`]: `data.inventory`, the kinds the sync configuration replicates; it serves an
//!   [`inventory::Consumer`] that rebuilds the bundle.
//! - [`state`]: the shared state (bundle, the three watched things, metrics, pool) and its config.
//! - [`reload`]: hot reload of the policy bundle and the TLS certificate.
//! - [`audit`]: the background scan of existing objects.
//! - [`server`]: the axum routers and the decision log.
//! - [`self_tls`]: self-contained TLS (own CA, serving certificate, caBundle).
//! - [`run`]: the process: its flags ([`run::Config`], checked by [`run::Config::validate`]),
//!   [`run::run`] and [`run::audit()`].
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod inventory;
pub mod metrics;
pub mod namespaces;
pub mod pool;
pub mod provenance;
pub mod reload;
pub mod run;
pub mod self_tls;
pub mod server;
pub mod state;
