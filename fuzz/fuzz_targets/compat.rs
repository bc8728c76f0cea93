//! The Rego compatibility layer: never panics, and keeps every line where it was.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    for v0 in [true, false] {
        let out = sealgate_core::policy::compat::normalize(src, v0);
        assert_eq!(out.lines().count(), src.lines().count());
    }
});
