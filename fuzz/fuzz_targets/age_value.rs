//! The age value reader (header, stanzas, MAC, payload) with an X25519 and a post-quantum
//! identity.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static IDENTITY: LazyLock<age::x25519::Identity> = LazyLock::new(age::x25519::Identity::generate);
static PQ: LazyLock<sealgate_core::envelope::pq::Identity> =
    LazyLock::new(sealgate_core::envelope::pq::Identity::generate);

fuzz_target!(|data: &[u8]| {
    let _ = sealgate_core::envelope::age::is_age(data);
    // Foreign input never opens: the fuzzer cannot know the identity's key.
    let identities: [&dyn age::Identity; 2] = [&*IDENTITY, &*PQ];
    assert!(sealgate_core::envelope::age::decrypt(&identities, data).is_err());
});
