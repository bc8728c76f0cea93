//! SealedSecrets for tests, sealed for real.

use sealgate_core::envelope::Scope;
use sealgate_core::keys::SealingKey;
use sealgate_core::sealing::{self, SealOptions, Target};

/// `secret` (a Secret as JSON) sealed to `k`; `scope: None` takes it from the Secret's
/// annotations (strict when there are none), as `sealgate seal` does.
pub fn seal(
    k: &SealingKey,
    secret: serde_json::Value,
    scope: Option<Scope>,
) -> sealing::SealedSecret {
    let plain = sealing::Secret::from_value(&secret).expect("a valid Secret");
    sealing::seal_secret(
        &plain,
        &Target::new(k.public(), &[]),
        &SealOptions {
            scope,
            ..SealOptions::default()
        },
    )
    .expect("sealing")
}
