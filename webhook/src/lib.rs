//! sealgate-webhook: the validating admission webhook. It evaluates every AdmissionReview with the
//! same policy bundle as `sealgate lint`, at the enforcement point `admission`.
//!
//! - [`admission`]: AdmissionReview parsing, decisions and responses, as pure functions.
//! - [`audit`]: the background scan of existing objects.
//! - [`server`]: the axum routers, decision logs.
//! - [`state`]: the shared state (bundle, Namespace labels, inventory, metrics, pool) and its config.
//! - [`pool`]: the evaluation threads (bounded concurrency, off the reactor).
//! - [`metrics`]: Prometheus metrics.
//! - [`provenance`]: admission only of attested objects, from watched Attestations.
//! - [`reload`]: hot reload of the policy bundle and the TLS certificate.
//! - [`namespaces`]: the cluster's Namespace labels, for `namespaceSelector`.
//! - [`inventory`]: `data.inventory`, the kinds the sync configuration replicates.
//! - [`run`]: the process: its flags ([`run::Config`]), [`run::run`] and [`run::audit`].
//! - [`self_tls`]: self-contained TLS (own CA, serving certificate, caBundle).
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
