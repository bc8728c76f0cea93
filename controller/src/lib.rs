//! sealgate-controller: unseals SealedSecrets into Secrets and manages sealing keys.
//!
//! - [`crd`]: the `sealgate.dev/v1alpha1` SealedSecret resource.
//! - [`http`]: the HTTP API: public keys, verify, rotate.
//! - [`keys`]: the key manager (loads, generates and renews the keys held in Secrets) and its
//!   pure decisions ([`keys::plan`]).
//! - [`reconcile`]: the SealedSecret reconciler (apply, status, events, retries) and its pure
//!   parts: the desired Secret ([`reconcile::desired`]) and the plan ([`reconcile::plan`]).
//! - [`leader`]: leader election on a Lease.
//! - [`metrics`]: Prometheus metrics.
//! - [`run`]: the process: its flags ([`run::Config`]) and [`run::run`], which wires the rest.
//! - [`throttle`]: client-side QPS/burst limit for API requests.
#![forbid(unsafe_code)]

pub mod crd;
pub mod http;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod throttle;
