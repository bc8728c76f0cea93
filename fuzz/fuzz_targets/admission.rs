//! The AdmissionReview parser of the webhook's /validate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((review, _uid)) = sealgate_webhook::admission::parse(data) {
        let _ = sealgate_webhook::admission::RequestInfo::of(&review);
    }
});
