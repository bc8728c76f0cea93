//! sealgate-controller: unseals SealedSecrets into Secrets and manages sealing keys.
//!
//! - [`crd`]: the `sealgate.dev/v1alpha1` SealedSecret resource.
//! - [`desired`]: the Secret a SealedSecret should produce, as a pure function.
#![forbid(unsafe_code)]

pub mod crd;
pub mod desired;
