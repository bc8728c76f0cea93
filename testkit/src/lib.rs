//! Test support shared by the controller's, the webhook's and the end-to-end tests (a
//! dev-dependency only; never in a shipped binary).
#![forbid(unsafe_code)]

pub mod admission;
pub mod fake_api;
pub mod files;
pub mod gatekeeper;
pub mod keys;
pub mod peer;
pub mod process;
pub mod sealed;
pub mod tls;

pub use fake_api::{FakeApi, Recorded};
