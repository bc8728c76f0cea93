//! Compatibility with Bitnami Sealed Secrets, checked against independent implementations:
//! - values and a PKCS#1 key Secret made by Python's `cryptography` (data/bitnami/make_vectors.py)
//!   must open with sealgate;
//! - values sealgate seals must open with `openssl pkeyutl` (RSA-OAEP) plus RustCrypto's
//!   `aes-gcm`, neither of which shares code with aws-lc-rs's envelope.

use std::path::{Path, PathBuf};
use std::process::Command;

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine as _;
use sealgate_core::envelope::{Format, Scope, kubeseal};
use sealgate_core::keys::{KeyOrigin, KeyRing, SealingKey, secret};
use sealgate_core::manifest::{self, ParseLimits};
use sealgate_core::sealing::{self, ApiGroup, SealOptions, SealedSecret, Secret, Target};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bitnami")
        .join(name)
}

fn docs(name: &str) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(data(name)).unwrap();
    manifest::parse(&bytes, &ParseLimits::default())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn bitnami_key() -> SealingKey {
    let secrets: Vec<Secret> = docs("key-secret.yaml")
        .iter()
        .flat_map(secret::secrets_in)
        .map(Result::unwrap)
        .collect();
    assert_eq!(secrets.len(), 1);
    let key = secret::from_secret(&secrets[0]).unwrap();
    assert_eq!(key.origin(), KeyOrigin::Bitnami);
    assert!(key.age_identity().is_none());
    key
}

#[test]
fn values_sealed_by_an_independent_implementation_open() {
    let ring = KeyRing::new([bitnami_key()]);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("expected.json")).unwrap()).unwrap();
    for scope in Scope::ALL {
        let ss = SealedSecret::from_value(&docs(&format!("sealed-{scope}.yaml"))[0]).unwrap();
        assert_eq!(ss.api, ApiGroup::Bitnami);
        assert_eq!(ss.scope().unwrap(), scope);
        let out = sealing::unseal(&ss, &ring).unwrap();
        let want = &expected[scope.as_str()]["items"];
        assert_eq!(out.secret.data.len(), want.as_object().unwrap().len());
        for (item, value) in &out.secret.data {
            let w = base64::engine::general_purpose::STANDARD
                .decode(want[item].as_str().unwrap())
                .unwrap();
            assert_eq!(value.expose(), &w[..], "{scope} {item}");
        }
        assert_eq!(out.secret.meta.labels["app"], "db");
    }
}

#[test]
fn imported_pem_key_is_the_same_key() {
    let pem_key = std::fs::read(data("tls.key")).unwrap();
    let from_pem = secret::from_pem(&pem_key, time::OffsetDateTime::now_utc()).unwrap();
    assert_eq!(from_pem.id(), bitnami_key().id());
}

fn openssl_oaep_decrypt(rsa_ct: &[u8], label: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let ct = dir.path().join("ct.bin");
    std::fs::write(&ct, rsa_ct).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(data("tls.key"))
        .arg("-in")
        .arg(&ct)
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ]);
    if !label.is_empty() {
        let hex: String = label.iter().map(|b| format!("{b:02x}")).collect();
        cmd.args(["-pkeyopt", &format!("rsa_oaep_label:{hex}")]);
    }
    let out = cmd
        .output()
        .expect("this test needs the `openssl` command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn values_sealed_by_sealgate_open_with_openssl_and_rustcrypto() {
    let key = bitnami_key();
    let target = Target::new(key.public(), &[]);
    let plain = Secret::from_value(&serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "stringData": {"password": "hunter2", "empty": ""}
    }))
    .unwrap();
    for scope in Scope::ALL {
        let opts = SealOptions {
            format: Format::Kubeseal,
            scope: Some(scope),
            api: ApiGroup::Bitnami,
            ..SealOptions::default()
        };
        let ss = sealing::seal_secret(&plain, &target, &opts).unwrap();
        let label: &[u8] = match scope {
            Scope::Strict => b"prod/db",
            Scope::NamespaceWide => b"prod",
            Scope::ClusterWide => b"",
        };
        for (item, b64) in &ss.encrypted_data {
            assert!(
                b64.starts_with("Ag"),
                "RSA-4096 values start with Ag: {b64:.8}"
            );
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let want = plain.data[item].expose();
            assert_eq!(raw.len(), 2 + 512 + want.len() + 16);
            let parts = kubeseal::parse(&raw).unwrap();
            let session_key = openssl_oaep_decrypt(parts.rsa, label);
            assert_eq!(session_key.len(), 32);
            let gcm = aes_gcm::Aes256Gcm::new_from_slice(&session_key).unwrap();
            let opened = gcm
                .decrypt(&aes_gcm::Nonce::default(), parts.aead)
                .expect("RustCrypto AES-GCM opens it");
            assert_eq!(opened, want, "{scope} {item}");
        }
    }
}

#[test]
fn sealgate_keys_are_standard_pem_that_openssl_reads() {
    let key = SealingKey::generate(&sealgate_core::keys::KeyGenOptions {
        rsa_bits: 2048,
        ..Default::default()
    })
    .unwrap();
    let s = secret::to_secret(&key, Some("sealgate-system"));
    let dir = tempfile::tempdir().unwrap();
    for (item, args) in [
        ("tls.key", &["pkey", "-noout", "-in"][..]),
        ("tls.crt", &["x509", "-noout", "-text", "-in"][..]),
    ] {
        let p = dir.path().join(item);
        std::fs::write(&p, s.data[item].expose()).unwrap();
        let out = Command::new("openssl").args(args).arg(&p).output().unwrap();
        assert!(
            out.status.success(),
            "{item}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if item == "tls.crt" {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("URI:sealgate:age:age1"), "{text}");
            assert!(text.contains("CA:TRUE"), "{text}");
        }
    }
}
