//! kubeseal's envelope parser: length-prefixed RSA-OAEP session key, then AES-GCM.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealgate_core::envelope::kubeseal::parse(data);
});
