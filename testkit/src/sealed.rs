//! SealedSecrets for tests, sealed for real.

use sealgate_core::keys::SealingKey;
use sealgate_core::seal::Scope;
use sealgate_core::sealed::{self, SealOptions, Target};

/// `secret` (a Secret as JSON) sealed to `k`; `scope: None` takes it from the Secret's
/// annotations (strict when there are none), as `sealgate seal` does.
pub fn seal(
    k: &SealingKey,
    secret: serde_json::Value,
    scope: Option<Scope>,
) -> sealed::SealedSecret {
    let plain = sealed::Secret::from_value(&secret).expect("a valid Secret");
    sealed::seal_secret(
        &plain,
        &Target::new(k.public(), &[]),
        &SealOptions {
            scope,
            ..SealOptions::default()
        },
    )
    .expect("sealing")
}
