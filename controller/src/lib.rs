//! sealgate-controller: unseals SealedSecrets into Secrets and manages sealing keys.
//!
//! - [`crd`]: the `sealgate.dev/v1alpha1` SealedSecret resource.
//! - [`desired`]: the Secret a SealedSecret should produce, as a pure function.
//! - [`http`]: the HTTP API: public keys, verify, rotate.
//! - [`key_manager`]: loads, generates and renews the keys held in Secrets.
//! - [`keys`]: key renewal and the keys held by the controller's Secrets.
//! - [`reconcile`]: what to do given the Secret that exists, and the status condition.
//! - [`reconciler`]: the kube adapter that carries the plan out (apply, status, events, retries).
//! - [`leader`]: leader election on a Lease.
//! - [`metrics`]: Prometheus metrics.
//! - [`throttle`]: client-side QPS/burst limit for API requests.
#![forbid(unsafe_code)]

pub mod crd;
pub mod desired;
pub mod http;
pub mod key_manager;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod reconciler;
pub mod throttle;
