//! sealgate-core: everything the `sealgate` binaries share, with no cluster I/O.
//!
//! Layered bottom-up; each module uses only those above it in this list (`tests/layers.rs`
//! checks it):
//! - [`fsutil`]: atomic file writes; [`duration`]: `30s`, `10m`, `30d` as flags take them.
//! - [`envelope`]: one value's envelope: the kubeseal-compatible RSA-OAEP + AES-GCM format, age,
//!   and the scopes that bind a value to its place.
//! - [`manifest`]: bounded multi-document YAML/JSON loading with file:line for every document.
//! - [`objects`]: the Secret and SealedSecret objects, parsed so that every error names a field
//!   and none quotes a value.
//! - [`keys`]: sealing keys, certificates, the key ring, the local key store and the Secret shape
//!   keys are stored in.
//! - [`sealing`]: `seal`, `unseal`, `reseal` and `validate` of whole objects, as pure functions.
//! - [`rewrite`]: editing documents of a stream in place, keeping comments and other documents.
//! - [`policy`]: the Rego policy engine (Gatekeeper templates and constraints, conftest modules).
//! - [`attest`]: signed provenance attestations (DSSE, in-toto) and their admission checks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attest;
pub mod duration;
pub mod envelope;
pub mod fsutil;
pub mod keys;
pub mod manifest;
pub mod objects;
pub mod policy;
pub mod rewrite;
pub mod sealing;
mod secret_bytes;

pub use secret_bytes::SecretBytes;
