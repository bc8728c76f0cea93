//! The built-in policy bundle, embedded from `policies/` at build time (see `core/build.rs`).

include!(concat!(env!("OUT_DIR"), "/builtin_policies.rs"));
