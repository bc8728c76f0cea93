//! The age value reader (header, stanzas, MAC, payload) with one X25519 identity.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static IDENTITY: LazyLock<age::x25519::Identity> = LazyLock::new(age::x25519::Identity::generate);

fuzz_target!(|data: &[u8]| {
    let _ = sealgate_core::envelope::age::is_age(data);
    // Foreign input never opens: the fuzzer cannot know the identity's key.
    assert!(sealgate_core::envelope::age::decrypt(&IDENTITY, data).is_err());
});
