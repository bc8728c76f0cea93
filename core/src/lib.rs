//! sealgate-core: everything the `sealgate` binaries share, with no cluster I/O.
//!
//! - [`seal`]: the two value envelopes (kubeseal-compatible RSA-OAEP + AES-GCM, and age) and scopes.
//! - [`keys`]: sealing keys, certificates, the key ring, the local key store and the Secret shape keys are stored in.
//! - [`manifest`]: bounded multi-document YAML/JSON loading with file:line for every document.
//! - [`sealed`]: the Secret and SealedSecret models and `seal`/`unseal` as pure functions.
//! - [`policy`]: the Rego policy engine (Gatekeeper templates and constraints, conftest modules).
//! - [`fsutil`]: atomic file writes.
#![forbid(unsafe_code)]

pub mod duration;
pub mod fsutil;
pub mod keys;
pub mod manifest;
pub mod policy;
pub mod seal;
pub mod sealed;
mod secret_bytes;

pub use secret_bytes::SecretBytes;
