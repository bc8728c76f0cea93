//! C2SP's CCTV age test vectors (`../shared/corpora/age-cctv`, see its SOURCE.md), read by
//! sealgate's age reader (`envelope::age::decrypt`, what unseal calls): every vector whose
//! identities are X25519 or hybrid post-quantum (`mlkem768x25519`); the scrypt ones are skipped,
//! as sealgate never reads passphrase files. Each result must be what the vector expects.
//!
//! Two X25519 vectors are a known leniency of the age crate (0.12.1), whose header parser accepts
//! a stanza without its body line: `stanza_missing_body` and `stanza_missing_final_line` decrypt
//! where Go's age stops at the header. The header MAC still holds, so nothing forged opens; they
//! are listed below and reported, and fail the test if that ever changes (to drop them here).

use std::io::Read;
use std::path::{Path, PathBuf};

use sealgate_core::envelope::age::{OpenFailure, decrypt};
use sealgate_core::envelope::pq;

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/age-cctv/testdata");
    dir.is_dir().then_some(dir)
}

struct Vector {
    name: String,
    expect: String,
    payload: Option<String>,
    identities: Vec<String>,
    passphrase: bool,
    compressed: bool,
    body: Vec<u8>,
}

fn read_vector(path: &Path) -> Vector {
    let bytes = std::fs::read(path).unwrap();
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header, an empty line, then the file");
    let header = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut v = Vector {
        name: path.file_name().unwrap().to_string_lossy().into(),
        expect: String::new(),
        payload: None,
        identities: Vec::new(),
        passphrase: false,
        compressed: false,
        body: bytes[split + 2..].to_vec(),
    };
    for line in header.lines() {
        let (k, val) = line.split_once(": ").unwrap_or((line, ""));
        match k {
            "expect" => v.expect = val.into(),
            "payload" => v.payload = Some(val.into()),
            "identity" => v.identities.push(val.into()),
            "passphrase" => v.passphrase = true,
            "compressed" => v.compressed = val == "zlib",
            _ => {}
        }
    }
    if v.compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&v.body[..])
            .read_to_end(&mut out)
            .unwrap();
        v.body = out;
    }
    v
}

enum Id {
    X25519(age::x25519::Identity),
    Pq(pq::Identity),
}

/// What sealgate's reader did, in the corpus's words.
fn outcome(v: &Vector, ids: &[Id]) -> (String, Option<Vec<u8>>) {
    let dyns: Vec<&dyn age::Identity> = ids
        .iter()
        .map(|i| match i {
            Id::X25519(i) => i as &dyn age::Identity,
            Id::Pq(i) => i as &dyn age::Identity,
        })
        .collect();
    match decrypt(&dyns, &v.body) {
        Ok(plain) => ("success".into(), Some(plain.expose().to_vec())),
        Err(OpenFailure::NotARecipient) => ("no match".into(), None),
        Err(OpenFailure::Tampered) => ("tampered".into(), None),
        Err(OpenFailure::Malformed(m)) => (format!("malformed ({m})"), None),
    }
}

/// Whether sealgate's outcome is what the vector expects.
fn agrees(expect: &str, got: &str) -> bool {
    match expect {
        "success" => got == "success",
        "no match" => got == "no match",
        "HMAC failure" => got == "tampered",
        // Bytes after the header that are not a valid payload: tampered or malformed.
        "payload failure" => got == "tampered" || got.starts_with("malformed"),
        "header failure" | "armor failure" => got.starts_with("malformed"),
        _ => false,
    }
}

/// The age crate's known header leniencies (see the top of this file).
const AGE_CRATE_LENIENT: [&str; 2] = ["stanza_missing_body", "stanza_missing_final_line"];

#[test]
fn cctv_age_vectors() {
    let Some(dir) = corpus() else {
        let why = "the age CCTV corpus is not at ../shared/corpora/age-cctv (see its SOURCE.md)";
        // As sealgate_testkit::peer::missing (testkit depends on this crate): CI may not skip.
        assert!(
            std::env::var_os("SEALGATE_REQUIRE_PEERS").is_none(),
            "{why} (SEALGATE_REQUIRE_PEERS is set, so this test may not skip)"
        );
        eprintln!("SKIPPED: {why}");
        return;
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let (mut passed, mut hybrid, mut lenient, mut skipped) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for path in &paths {
        let v = read_vector(path);
        if v.passphrase {
            skipped += 1;
            continue;
        }
        let ids: Vec<Id> = v
            .identities
            .iter()
            .map(|s| {
                if s.starts_with("AGE-SECRET-KEY-PQ-1") {
                    Id::Pq(s.parse().unwrap())
                } else {
                    Id::X25519(s.parse().unwrap())
                }
            })
            .collect();
        let is_hybrid = ids.iter().any(|i| matches!(i, Id::Pq(_)));
        hybrid += usize::from(is_hybrid);
        let (got, plain) = outcome(&v, &ids);
        if let (Some(plain), Some(want)) = (&plain, &v.payload)
            && &sealgate_core::manifest::sha256_hex(plain) != want
        {
            failures.push(format!("{}: the payload's hash differs", v.name));
            continue;
        }
        if agrees(&v.expect, &got) {
            passed += 1;
        } else if AGE_CRATE_LENIENT.contains(&v.name.as_str()) && got == "success" {
            lenient += 1;
        } else {
            failures.push(format!("{}: expected {}, got {got}", v.name, v.expect));
        }
    }
    println!(
        "age CCTV: {} vectors read ({hybrid} hybrid post-quantum): {passed} as expected, {lenient} the age crate's known leniency (header failure read as success), {} not, {skipped} skipped (scrypt)",
        paths.len() - skipped,
        failures.len()
    );
    assert!(
        hybrid >= 19,
        "the corpus has 19 hybrid vectors; found {hybrid}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        lenient,
        AGE_CRATE_LENIENT.len(),
        "a leniency is gone: drop it from the list"
    );
    assert_eq!(
        lenient,
        AGE_CRATE_LENIENT.len(),
        "a leniency is gone: drop it from the list"
    );
}
