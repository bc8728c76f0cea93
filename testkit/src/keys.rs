//! Sealing keys for tests: small (RSA-2048) so tests stay fast, and copyable (a `SealingKey`
//! holds a private key and is deliberately not `Clone`).

use sealgate_core::keys::{KeyGenOptions, SealingKey, secret};

/// An RSA-2048 sealing key created `days_ago` days ago.
pub fn key(days_ago: i64) -> SealingKey {
    SealingKey::generate(&KeyGenOptions {
        rsa_bits: 2048,
        now: time::OffsetDateTime::now_utc() - time::Duration::days(days_ago),
        ..KeyGenOptions::default()
    })
    .expect("key generation")
}

/// A second handle on the same key, through its Secret form (as a restore would make it).
pub fn copy(k: &SealingKey) -> SealingKey {
    secret::from_secret(&secret::to_secret(k, None)).expect("a key survives its Secret form")
}
