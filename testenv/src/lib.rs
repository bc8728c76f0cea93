//! The real-cluster test tier (DESIGN §11): a Kubernetes control plane built from Kubernetes' own
//! Go modules and started on loopback by the tests themselves.
//!
//! - [`go`]: the Go binaries (kube-apiserver, kube-controller-manager, kubectl, etcd, Bitnami's
//!   controller and kubeseal), built once from the modules under `testenv/go/` into a cache
//!   outside the clone;
//! - [`pki`]: the cluster's CA, serving and client certificates, and the service-account key;
//! - [`cluster`]: [`ControlPlane`], etcd + kube-apiserver + kube-controller-manager, and the
//!   identities tests act as ([`Identity`]).
//!
//! Where Go is absent the tier skips with a message naming what to install; with
//! `SEALGATE_REQUIRE_CLUSTER=1` (set by `.ci/run`) that skip is a failure instead.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod crds;
pub mod go;
pub mod pki;

pub use cluster::{ControlPlane, Identity};
pub use go::{GoModule, Unavailable};

/// The variable that turns the tier's skip into a failure (`.ci/run` sets it).
pub const REQUIRE_VAR: &str = "SEALGATE_REQUIRE_CLUSTER";

/// Whether a skip must fail instead.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}
