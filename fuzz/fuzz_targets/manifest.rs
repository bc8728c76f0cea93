//! The YAML/JSON manifest loader, then the SealedSecret model on every document it yields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealgate_core::manifest;
use sealgate_core::sealing::SealedSecret;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each execution fast; the limits' own errors are part of what is fuzzed.
    let limits = manifest::ParseLimits::default().with_max_documents(64);
    if let Ok(docs) = manifest::parse(data, &limits) {
        for d in &docs {
            // Every document has a line inside the input.
            assert!(d.line >= 1);
            let _ = SealedSecret::from_value(&d.value);
        }
    }
});
