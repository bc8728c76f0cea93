//! The AdmissionReview parser of the webhook's /validate, and the answer to what it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(review) = sealgate_webhook::admission::parse(data) {
        let d = sealgate_webhook::admission::timed_out(
            review.info,
            std::time::Duration::from_secs(1),
            false,
        );
        let _ = sealgate_webhook::admission::response(&d);
    }
});
