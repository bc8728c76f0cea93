//! Provenance attestations: `sealgate lint --attest` signs, after review, a statement that the
//! objects rendered from a Git revision passed a policy bundle; the webhook admits an object in a
//! provenance-governed namespace only if such a statement covers it.
//!
//! - [`statement`]: the in-toto Statement v1 and its predicate (revision, repository, bundle
//!   digest, verdict), one subject per object with the digest of its canonical form.
//! - [`dsse`]: the DSSE envelope that signs it (what cosign and in-toto tools read).
//! - [`keys`]: ECDSA P-256 and Ed25519 keys in the formats cosign users hold (`cosign
//!   generate-key-pair`: an encrypted `SIGSTORE PRIVATE KEY` and a PEM public key), through
//!   aws-lc-rs.
//! - [`resource`]: the `Attestation` resource that carries envelopes into the cluster, sharded.
//! - [`compare`]: whether an object as admitted is exactly what its manifest declared, up to the
//!   API server's defaults (`defaults`) and what the server and the agent own.
//! - [`verify`]: trusting an attestation (key, verdict, age) and admitting an object with one.
//!
//! Offline only: no transparency log or keyless flow is reachable here. A signature is checked
//! against configured public keys; a Rekor inclusion proof or a Fulcio certificate would be
//! another [`keys::VerifyingKey`] source and a field of the envelope, not a new format.

pub mod compare;
mod defaults;
pub mod dsse;
pub mod keys;
pub mod resource;
pub mod statement;
pub mod verify;

/// Why an attestation could not be made, read or trusted. Messages never quote object data.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A key file is not a key sealgate can use (the message says why and what to do).
    #[error("{0}")]
    Key(String),
    /// The envelope or its statement is malformed.
    #[error("malformed attestation: {0}")]
    Malformed(String),
    /// No trusted key verifies the envelope's signature.
    #[error("no trusted key verifies the attestation's signature{0}")]
    Untrusted(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}
