//! sealgate-controller: unseals SealedSecrets into Secrets and manages sealing keys.
//!
//! - [`crd`]: the `sealgate.dev/v1alpha1` SealedSecret resource.
//! - [`desired`]: the Secret a SealedSecret should produce, as a pure function.
//! - [`http`]: the HTTP API: public keys, verify, rotate.
//! - [`keys`]: key renewal and the keys held by the controller's Secrets.
//! - [`reconcile`]: what to do given the Secret that exists, and the status condition.
//! - [`reconciler`]: the kube adapter that carries the plan out (apply, status, events, retries).
//! - [`metrics`]: Prometheus metrics.
#![forbid(unsafe_code)]

pub mod crd;
pub mod desired;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod reconcile;
pub mod reconciler;
