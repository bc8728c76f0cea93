//! The end-to-end test against a real cluster: `#[ignore]`d, and guarded by `SEALGATE_IT=1` too,
//! because it creates a kind (or k3d, `CLUSTER_TOOL=k3d`) cluster and builds the image:
//!
//! ```sh
//! SEALGATE_IT=1 cargo test -p sealgate-e2e --test cluster -- --ignored
//! ```
//!
//! See `tests/kind.sh` for what it does (it can also be run directly).

#[test]
#[ignore = "needs docker and kind or k3d: SEALGATE_IT=1"]
fn end_to_end_in_a_kind_cluster() {
    if std::env::var_os("SEALGATE_IT").is_none() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kind.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .expect("bash");
    assert!(status.success(), "tests/kind.sh failed");
}
