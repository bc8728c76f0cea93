//! Post-quantum age values across implementations: sealgate and typage (npm `age-encryption`,
//! with hybrid `mlkem768x25519` recipients), both ways, in every scope. typage seals with
//! sealgate's binding line as the first plaintext line, as `sealgate seal` does.
//!
//! Needs Node.js and `npm install --prefix ~/.cache/sealgate/npm age-encryption@0.3.1` (what
//! `.ci/run` does), or `SEALGATE_TYPAGE=…/node_modules/age-encryption`; skips saying so otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::Command as Bin;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sealgate_testkit::process::succeeded;

fn typage() -> Option<PathBuf> {
    let dir = std::env::var_os("SEALGATE_TYPAGE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".cache/sealgate/npm/node_modules/age-encryption"))
        })?;
    let index = dir.join("dist/index.js");
    let node = Command::new("node").arg("--version").output().is_ok();
    (node && index.is_file()).then_some(index)
}

/// typage on one value: `encrypt` to a recipient or `decrypt` with an identity; base64 both ways.
fn run_typage(index: &Path, mode: &str, key: &str, input: &[u8]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/typage.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(mode)
        .env("TYPAGE_INDEX", index)
        .env("TYPAGE_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(B64.encode(input).as_bytes())
        .unwrap();
    let out = succeeded(format!("typage {mode}"), child.wait_with_output());
    B64.decode(out.stdout).unwrap()
}

fn sealgate(keys: &Path) -> Bin {
    let mut c = Bin::cargo_bin("sealgate").unwrap();
    c.env("SEALGATE_KEYS_DIR", keys).env_remove("SEALGATE_CERT");
    c
}

/// The store's post-quantum identity (`age-pq.key` of its only key Secret).
fn pq_identity(keys: &Path) -> String {
    let file = std::fs::read_dir(keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let b64 = docs[0]["data"]["age-pq.key"].as_str().expect("age-pq.key");
    String::from_utf8(B64.decode(b64).unwrap()).unwrap()
}

fn binding(scope: &str, item: &str) -> String {
    match scope {
        "strict" => format!("sealgate/v1 scope=strict ns=shop name=db key={item}\n"),
        "namespace-wide" => "sealgate/v1 scope=namespace-wide ns=shop name=* key=*\n".into(),
        _ => "sealgate/v1 scope=cluster-wide ns=* name=* key=*\n".into(),
    }
}

#[test]
fn typage_and_sealgate_open_each_others_post_quantum_values() {
    let Some(index) = typage() else {
        sealgate_testkit::peer::missing(
            "typage is not installed (needs node; `npm install --prefix ~/.cache/sealgate/npm age-encryption@0.3.1`, or set SEALGATE_TYPAGE)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    sealgate(&keys)
        .args(["keys", "init", "--key-size", "2048"])
        .assert()
        .success();
    let exported = sealgate(&keys)
        .args(["keys", "export-public", "--age"])
        .output()
        .unwrap();
    let recipient = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("age1pq1"))
        .expect("a post-quantum recipient")
        .to_string();
    let identity = pq_identity(&keys);

    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        // sealgate → typage.
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2}\n";
        let sealed = succeeded(
            "sealgate seal",
            sealgate(&keys)
                .args(["seal", "-o", "json", "--scope", scope])
                .write_stdin(secret)
                .output(),
        );
        let ss: serde_json::Value = serde_json::from_slice(&sealed.stdout).unwrap();
        let value = B64
            .decode(ss["spec"]["encryptedData"]["password"].as_str().unwrap())
            .unwrap();
        assert!(
            String::from_utf8_lossy(&value[..200]).contains("-> mlkem768x25519 "),
            "sealed post-quantum by default"
        );
        let plain = run_typage(&index, "decrypt", &identity, &value);
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            format!("{}hunter2", binding(scope, "password")),
            "{scope}"
        );

        // typage → sealgate.
        let sealed_by_typage = run_typage(
            &index,
            "encrypt",
            &recipient,
            format!("{}s3cret", binding(scope, "token")).as_bytes(),
        );
        let ss = serde_json::json!({
            "apiVersion": "sealgate.dev/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "shop", "annotations": {"sealgate.dev/scope": scope}},
            "spec": {"encryptedData": {"token": B64.encode(&sealed_by_typage)}},
        });
        let file = dir.path().join(format!("typage-{scope}.json"));
        std::fs::write(&file, ss.to_string()).unwrap();
        let out = succeeded(
            format!("sealgate unseal ({scope})"),
            sealgate(&keys)
                .args(["unseal", "-o", "json", "-f"])
                .arg(&file)
                .output(),
        );
        let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(secret["data"]["token"], B64.encode("s3cret"), "{scope}");
    }
}
