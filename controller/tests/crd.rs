//! The committed CRD is the one the Rust types generate (`sealgate-controller crd`).

#[test]
fn committed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/crds/sealedsecrets.sealgate.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sealgate_controller::crd::crd_yaml(),
        "{} is out of date: run `cargo run -p sealgate-controller -- crd > deploy/crds/sealedsecrets.sealgate.dev.yaml` and copy it to charts/sealgate/files/crds/",
        path.display()
    );
}
