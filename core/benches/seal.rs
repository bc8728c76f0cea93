//! `cargo bench -p sealgate-core --bench seal`: sealing and unsealing throughput.
//!
//! Prints values/s for seal and unseal in both formats, the ratio of our kubeseal-format unseal
//! to a raw aws-lc-rs RSA-4096 OAEP decryption loop measured in the same run (so machine noise
//! cancels out), `openssl speed rsa4096` as an outside reference, and unseal with 25 keys in the
//! ring versus 1. Each measurement runs for a fixed time, not a fixed count.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use sealgate_core::envelope::{Format, Scope, kubeseal};
use sealgate_core::keys::{KeyGenOptions, KeyRing, SealingKey};
use sealgate_core::objects::KEY_ID_ANNOTATION;
use sealgate_core::sealing::{self, ObjectMeta, SealOptions, Secret, Target};

const BUDGET: Duration = Duration::from_secs(2);

/// Run `f` repeatedly for about `BUDGET`; returns operations per second.
fn rate(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn key(days_ago: i64) -> SealingKey {
    SealingKey::generate(&KeyGenOptions {
        rsa_bits: 4096,
        now: time::OffsetDateTime::now_utc() - time::Duration::days(days_ago),
        ..KeyGenOptions::default()
    })
    .expect("key generation")
}

fn secret(items: usize, value_len: usize) -> Secret {
    Secret {
        meta: ObjectMeta {
            name: Some("db".into()),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        },
        data: (0..items)
            .map(|i| (format!("item{i}"), vec![b'x'; value_len].into()))
            .collect(),
        ..Secret::default()
    }
}

fn openssl_rsa4096_sign_per_s() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa4096"])
        .output()
        .ok()?;
    // "rsa 4096 bits 0.003000s 0.000046s    333.3  21739.1"
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("rsa 4096 bits"))
        .and_then(|l| l.split_whitespace().nth(5)?.parse().ok())
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let value_len = 64;
    println!(
        "sealgate seal/unseal benchmark: RSA-4096 keys, {value_len}-byte values, {BUDGET:?} per figure\n"
    );
    let k = key(0);
    let ring1 = KeyRing::new([clone_key(&k)]);
    let target = Target::new(k.public(), &[]);
    let one = secret(1, value_len);

    // Reference: raw aws-lc-rs RSA-4096 OAEP-SHA256 decryptions of a 32-byte session key.
    let label = b"shop/db";
    let mut ct = vec![0u8; 512];
    k.public()
        .oaep()
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ct, Some(label))
        .unwrap();
    let mut out = vec![0u8; 512];
    let raw_oaep = rate(|| {
        black_box(
            k.rsa()
                .decrypt(
                    &OAEP_SHA256_MGF1SHA256,
                    black_box(&ct),
                    &mut out,
                    Some(label),
                )
                .unwrap(),
        );
    });

    // kubeseal (RSA-4096), age to the X25519 recipient (`--pq=false`), age to the hybrid
    // post-quantum one (the default).
    let classical = Target::with(k.public(), &[], false);
    let mut rows = Vec::new();
    for (name, format, target) in [
        ("kubeseal", Format::Kubeseal, &target),
        ("age x25519", Format::Age, &classical),
        ("age pq", Format::Age, &target),
    ] {
        let opts = SealOptions {
            format,
            scope: Some(Scope::Strict),
            ..SealOptions::default()
        };
        let seal = rate(|| {
            black_box(sealing::seal_secret(&one, target, &opts).unwrap());
        });
        let ss = sealing::seal_secret(&one, target, &opts).unwrap();
        let unseal = rate(|| {
            black_box(sealing::unseal(&ss, &ring1).unwrap());
        });
        rows.push((name, seal, unseal, ss));
    }
    println!(
        "{:<12} {:>14} {:>16}",
        "format", "seal values/s", "unseal values/s"
    );
    for (name, seal, unseal, _) in &rows {
        println!("{name:<12} {seal:>14.0} {unseal:>16.0}");
    }
    let pq_unseal = rows[2].2;
    println!(
        "target (issue 13): post-quantum age unseal >= 5000 values/s on one core: {} ({pq_unseal:.0}/s; {:.2}x X25519, {:.1}x RSA-4096)",
        if pq_unseal >= 5000.0 {
            "met"
        } else {
            "NOT met"
        },
        pq_unseal / rows[1].2,
        pq_unseal / rows[0].2
    );
    let kubeseal_unseal = rows[0].2;
    println!("\nraw aws-lc-rs RSA-4096 OAEP decrypt: {raw_oaep:.0}/s");
    println!(
        "kubeseal-format unseal / raw OAEP decrypt = {:.3} (1.0 = no overhead beyond the RSA operation)",
        kubeseal_unseal / raw_oaep
    );
    match openssl_rsa4096_sign_per_s() {
        Some(s) => println!(
            "openssl speed rsa4096 private-key ops: {s:.0}/s (aws-lc-rs OAEP decrypt / openssl = {:.2})",
            raw_oaep / s
        ),
        None => println!("openssl speed: not available"),
    }

    // 25 keys vs 1. The value is sealed to the *oldest* key: the worst case for trial decryption.
    // "hinted": the object carries sealgate's key-id annotation (what `sealgate seal` writes);
    // "bare": it does not (an object sealed by Bitnami's kubeseal), so keys are tried in turn.
    println!("\ngenerating 23 more RSA-4096 keys for a 25-key ring...");
    let oldest = key(1000);
    let ring25 = KeyRing::new(
        (1..24)
            .map(|i| key(i * 30))
            .chain([clone_key(&k), clone_key(&oldest)]),
    );
    assert_eq!(ring25.len(), 25);
    let ring1_oldest = KeyRing::new([clone_key(&oldest)]);
    let t_old = Target::new(oldest.public(), &[]);
    let three = secret(3, value_len);
    println!(
        "{:<9} {:>5} {:>7} {:>15} {:>16} {:>7} {:>22}",
        "format",
        "items",
        "object",
        "1 key objs/s",
        "25 keys objs/s",
        "ratio",
        "private-key ops (25)"
    );
    for format in [Format::Kubeseal, Format::Age] {
        for s in [&one, &three] {
            let opts = SealOptions {
                format,
                scope: Some(Scope::Strict),
                ..SealOptions::default()
            };
            let hinted = sealing::seal_secret(s, &t_old, &opts).unwrap();
            let mut bare = hinted.clone();
            bare.meta.annotations.remove(KEY_ID_ANNOTATION);
            for (kind, ss) in [("hinted", &hinted), ("bare", &bare)] {
                let ops = sealing::unseal(ss, &ring25).unwrap().attempts;
                let r1 = rate(|| {
                    black_box(sealing::unseal(ss, &ring1_oldest).unwrap());
                });
                let r25 = rate(|| {
                    black_box(sealing::unseal(ss, &ring25).unwrap());
                });
                println!(
                    "{:<9} {:>5} {:>7} {:>15.1} {:>16.1} {:>7.2} {:>22}",
                    format.as_str(),
                    s.data.len(),
                    kind,
                    r1,
                    r25,
                    r1 / r25,
                    ops
                );
            }
        }
    }
    // The parse-only path validate uses, for scale.
    let raw = base64_decode(&rows[0].3.encrypted_data["item0"]);
    let parse = rate(|| {
        black_box(kubeseal::parse(black_box(&raw)).unwrap());
    });
    println!("\nkubeseal value structure check (validate without keys): {parse:.0}/s");

    hostile_age_headers(&ring25, &rows[2].3);
}

/// An attacker's age value with 10,000 X25519 stanzas (1.3 MB) once cost 82 CPU-s to `unseal`
/// with 4 keys (issue 25): the age crate's header parse is quadratic and ran once per key. Now a
/// bounded scan refuses it first. Printed beside an honest value's unseal, and beside the age
/// crate's own parse of smaller hostile headers (what the bound spares).
fn hostile_age_headers(ring: &KeyRing, honest: &sealing::SealedSecret) {
    use base64::Engine as _;
    let hostile = |stanzas: usize| -> Vec<u8> {
        let b64 = |seed: usize| {
            let bytes: Vec<u8> = (0..32).map(|i| (i * 31 + seed * 7) as u8).collect();
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        };
        let mut raw = String::from("age-encryption.org/v1\n");
        for i in 0..stanzas {
            raw.push_str(&format!("-> X25519 {}\n{}\n", b64(i), b64(i + 1)));
        }
        raw.push_str(&format!("--- {}\n", b64(0)));
        let mut bytes = raw.into_bytes();
        bytes.extend([0u8; 64]);
        bytes
    };
    let raw = hostile(10_000);
    let mut ss = honest.clone();
    ss.encrypted_data.insert(
        "item0".into(),
        base64::engine::general_purpose::STANDARD.encode(&raw),
    );
    let start = Instant::now();
    let e = sealing::unseal(&ss, ring).unwrap_err();
    let refused = start.elapsed();
    let start = Instant::now();
    sealing::unseal(honest, ring).unwrap();
    let opened = start.elapsed();
    println!(
        "\nhostile age value, 10,000 X25519 stanzas ({} KB), {}-key ring: refused in {:.3} ms ({e}); an honest value opens in {:.3} ms; ratio {:.2}",
        raw.len() / 1000,
        ring.len(),
        refused.as_secs_f64() * 1e3,
        opened.as_secs_f64() * 1e3,
        refused.as_secs_f64() / opened.as_secs_f64()
    );
    println!("the age crate's own header parse of hostile headers (what the bound spares it):");
    for n in [250, 500, 1000, 2000] {
        let raw = hostile(n);
        let start = Instant::now();
        let _ = black_box(age::Decryptor::new_buffered(&raw[..]));
        println!(
            "  {n:>5} stanzas ({:>4} KB): {:>9.1} ms",
            raw.len() / 1000,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

fn clone_key(k: &SealingKey) -> SealingKey {
    use sealgate_core::keys::secret;
    secret::from_secret(&secret::to_secret(k, None)).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
