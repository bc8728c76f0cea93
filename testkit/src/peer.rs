//! Tests that need a peer (a corpus, typage, pre-commit): without it they skip, saying what to
//! install; with `SEALGATE_REQUIRE_PEERS` set (`.ci/run` sets it), the skip is a failure, so CI
//! cannot pass by not running them.

/// The variable that turns a peer test's skip into a failure.
pub const REQUIRE_VAR: &str = "SEALGATE_REQUIRE_PEERS";

/// Report a missing peer: panic if peers are required, else print `SKIPPED: …` on stderr.
/// `what` names the peer and how to install it.
pub fn missing(what: &str) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{what} ({REQUIRE_VAR} is set, so this test may not skip)");
    }
    eprintln!("SKIPPED: {what}");
}
