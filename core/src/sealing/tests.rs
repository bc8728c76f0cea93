use super::*;
use crate::SecretBytes;
use crate::envelope::age::AgeRecipient;
use crate::keys::testkeys::{generate, k2048, k2048_b};
use crate::keys::{KeyRing, SealingKey};
use proptest::prelude::*;

fn ring_of(keys: &[&SealingKey]) -> KeyRing {
    // Round-trip through the Secret shape: the ring owns its keys.
    KeyRing::new(keys.iter().map(|k| {
        crate::keys::secret::from_secret(&crate::keys::secret::to_secret(k, None)).unwrap()
    }))
}

fn secret(ns: Option<&str>, name: &str, items: &[(&str, &[u8])]) -> Secret {
    Secret {
        meta: ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        immutable: None,
        data: items
            .iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::from(*v)))
            .collect(),
    }
}

fn opts(format: Format, scope: Scope) -> SealOptions {
    SealOptions {
        format,
        scope: Some(scope),
        ..SealOptions::default()
    }
}

fn target(k: &SealingKey) -> Target {
    Target::new(k.public(), &[])
}

const FORMATS: [Format; 2] = [Format::Age, Format::Kubeseal];

#[test]
fn round_trip_every_scope_and_format() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let s = secret(
        Some("prod"),
        "db",
        &[
            ("password", b"hunter2"),
            ("user", b""),
            ("bin", &[0, 255, 10, 13]),
        ],
    );
    for format in FORMATS {
        for scope in Scope::ALL {
            let ss = seal_secret(&s, &target(k), &opts(format, scope)).unwrap();
            assert_eq!(ss.scope().unwrap(), scope);
            // Through YAML text and back, as it would be committed.
            let text = crate::manifest::to_yaml_stream([&ss.to_value()]);
            let docs = crate::manifest::parse(text.as_bytes(), &Default::default()).unwrap();
            let ss = SealedSecret::from_value(&docs[0].value).unwrap();
            let out = unseal(&ss, &ring).unwrap();
            assert_eq!(out.secret.data, s.data, "{format} {scope}");
            assert_eq!(out.secret.meta.name.as_deref(), Some("db"));
            assert_eq!(out.secret.meta.namespace.as_deref(), Some("prod"));
            assert_eq!(out.secret.type_.as_deref(), Some("Opaque"));
            assert_eq!(
                out.formats.iter().copied().collect::<Vec<_>>(),
                vec![format.as_str()]
            );
            assert!(!text.contains("hunter2"));
        }
    }
}

/// Fast deterministic bytes for large random values (proptest's per-byte strategy is slow at 1 MiB).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn seal_then_unseal_is_identity(
        len in prop_oneof![Just(0usize), Just(1usize << 20), 0usize..=4096, 0usize..=(1 << 20)],
        seed in any::<u64>(),
        age in any::<bool>(),
        scope in prop_oneof![Just(Scope::Strict), Just(Scope::NamespaceWide), Just(Scope::ClusterWide)],
    ) {
        let k = k2048();
        let ring = ring_of(&[k]);
        let value = bytes(len, seed);
        let s = secret(Some("ns"), "n", &[("v", &value)]);
        let format = if age { Format::Age } else { Format::Kubeseal };
        let ss = seal_secret(&s, &target(k), &SealOptions { allow_empty_data: true, ..opts(format, scope) }).unwrap();
        let out = unseal(&ss, &ring).unwrap();
        prop_assert_eq!(out.secret.data["v"].expose(), &value[..]);
    }
}

fn raw_value(ss: &SealedSecret, item: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&ss.encrypted_data[item])
        .unwrap()
}

fn with_raw(ss: &SealedSecret, item: &str, raw: &[u8]) -> SealedSecret {
    let mut t = ss.clone();
    t.encrypted_data.insert(
        item.into(),
        base64::engine::general_purpose::STANDARD.encode(raw),
    );
    t
}

#[test]
fn tamper_battery_every_bit_flip_and_truncation_fails_cleanly() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let s = secret(Some("prod"), "db", &[("password", b"bar")]);
    for format in FORMATS {
        let ss = seal_secret(&s, &target(k), &opts(format, Scope::Strict)).unwrap();
        let raw = raw_value(&ss, "password");
        let mut flips = 0;
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let r = unseal(&with_raw(&ss, "password", &t), &ring);
                assert!(
                    r.is_err(),
                    "{format}: flip of byte {i} bit {bit} was accepted"
                );
                flips += 1;
            }
        }
        for len in 0..raw.len() {
            let r = unseal(&with_raw(&ss, "password", &raw[..len]), &ring);
            assert!(
                r.is_err(),
                "{format}: truncation to {len} bytes was accepted"
            );
        }
        assert_eq!(flips, raw.len() * 8);
        // Untouched, it still opens.
        assert_eq!(
            unseal(&ss, &ring).unwrap().secret.data["password"].expose(),
            b"bar"
        );
    }
}

fn item_error(r: Result<Unsealed, UnsealError>) -> SealError {
    match r {
        Err(UnsealError::Items { mut failed, .. }) => failed.remove(0).1,
        other => panic!("expected an item error, got {other:?}"),
    }
}

#[test]
fn wrong_key_gives_no_key_error() {
    let s = secret(Some("prod"), "db", &[("password", b"bar")]);
    let other_ring = ring_of(&[k2048_b()]);
    for format in FORMATS {
        let ss = seal_secret(&s, &target(k2048()), &opts(format, Scope::Strict)).unwrap();
        let e = item_error(unseal(&ss, &other_ring));
        assert!(
            matches!(e, SealError::NoKey { tried: 1, .. }),
            "{format}: {e}"
        );
        assert!(e.to_string().contains("another cluster"), "{e}");
    }
}

#[test]
fn moved_values_are_refused_with_the_specific_error() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let s = secret(
        Some("prod"),
        "db",
        &[("password", b"bar"), ("user", b"admin")],
    );
    let strict_age = seal_secret(&s, &target(k), &opts(Format::Age, Scope::Strict)).unwrap();

    // Another namespace.
    let mut moved = strict_age.clone();
    moved.meta.namespace = Some("dev".into());
    let e = item_error(unseal(&moved, &ring)).to_string();
    assert!(
        e.contains("sealed for item \"password\" of prod/db (strict scope)")
            && e.contains("dev/db"),
        "{e}"
    );
    // Another name.
    let mut renamed = strict_age.clone();
    renamed.meta.name = Some("db2".into());
    assert!(matches!(
        item_error(unseal(&renamed, &ring)),
        SealError::BindingMismatch { .. }
    ));
    // Another item: swap two values inside the object.
    let mut swapped = strict_age.clone();
    let (p, u) = (
        swapped.encrypted_data["password"].clone(),
        swapped.encrypted_data["user"].clone(),
    );
    swapped.encrypted_data.insert("password".into(), u);
    swapped.encrypted_data.insert("user".into(), p);
    let e = item_error(unseal(&swapped, &ring)).to_string();
    assert!(
        e.contains("item \"user\" of prod/db") && e.contains("item \"password\""),
        "{e}"
    );
    // Widened scope by annotation.
    let mut widened = strict_age.clone();
    widened.set_scope(Scope::ClusterWide);
    assert!(matches!(
        item_error(unseal(&widened, &ring)),
        SealError::BindingMismatch { .. }
    ));

    // Namespace-wide: a rename is fine, another namespace is not.
    let nsw = seal_secret(&s, &target(k), &opts(Format::Age, Scope::NamespaceWide)).unwrap();
    let mut renamed = nsw.clone();
    renamed.meta.name = Some("other".into());
    assert!(unseal(&renamed, &ring).is_ok());
    let mut moved = nsw.clone();
    moved.meta.namespace = Some("dev".into());
    let e = item_error(unseal(&moved, &ring)).to_string();
    assert!(
        e.contains("namespace \"prod\" (namespace-wide scope)"),
        "{e}"
    );

    // kubeseal format: the label binds namespace/name (not the item); a move is NoKey.
    let ks = seal_secret(&s, &target(k), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    let mut moved = ks.clone();
    moved.meta.namespace = Some("dev".into());
    assert!(matches!(
        item_error(unseal(&moved, &ring)),
        SealError::NoKey { .. }
    ));
    let mut widened = ks.clone();
    widened.set_scope(Scope::ClusterWide);
    assert!(matches!(
        item_error(unseal(&widened, &ring)),
        SealError::NoKey { .. }
    ));
}

#[test]
fn unseal_is_all_or_nothing() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let s = secret(Some("prod"), "db", &[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let mut ss = seal_secret(&s, &target(k), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    ss.encrypted_data.insert("b".into(), "AgAAAA==".into());
    match unseal(&ss, &ring) {
        Err(UnsealError::Items {
            failed,
            total,
            untried,
        }) => {
            assert_eq!(total, 3);
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, "b");
            assert_eq!(untried, 1, "c is not tried once b failed");
        }
        other => panic!("{other:?}"),
    }
}

/// An object of garbage costs one search of the ring, not one per item: the first item no key
/// opens ends it (before, every item was tried against every same-size key).
#[test]
fn garbage_items_cost_one_search_not_one_per_item() {
    let ring = ring_of(&[k2048(), k2048_b()]);
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let mut ss = seal_secret(&s, &target(k2048()), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    // Sealed for another name: every key fails the OAEP label check, as with random bytes.
    let foreign = {
        let mut o = seal_secret(
            &secret(Some("prod"), "other", &[("a", b"1")]),
            &target(k2048()),
            &opts(Format::Kubeseal, Scope::Strict),
        )
        .unwrap();
        o.encrypted_data.remove("a").unwrap()
    };
    ss.encrypted_data.clear();
    for i in 0..50 {
        ss.encrypted_data
            .insert(format!("item{i:02}"), foreign.clone());
    }
    let msg = match unseal(&ss, &ring) {
        Err(e @ UnsealError::Items { .. }) => {
            let UnsealError::Items {
                failed, untried, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(failed.len(), 1);
            assert!(matches!(failed[0].1, SealError::NoKey { tried: 2, .. }));
            assert_eq!(*untried, 49);
            e.to_string()
        }
        other => panic!("{other:?}"),
    };
    assert!(
        msg.contains("1 of 50 item(s) could not be unsealed"),
        "{msg}"
    );
    assert!(msg.contains("49 other item(s) not tried"), "{msg}");
}

/// A value the hinted key does not open needs a search of the ring; the search stops at the
/// object's budget, so an object of such values costs linear, not items x keys, operations.
#[test]
fn an_object_that_needs_too_many_key_operations_is_refused() {
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let (old, new) = (k2048(), k2048_b());
    let ring = ring_of(&[old, new]);
    let ss = seal_secret(&s, &target(new), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    let value = &ss.encrypted_data["a"];
    let binding = Binding {
        scope: Scope::Strict,
        namespace: "prod",
        name: "db",
        item: "a",
    };
    let e = ring
        .open(value, &binding, &mut Some(old.id()), &mut KeyBudget::new(1))
        .unwrap_err();
    assert!(matches!(e, SealError::Budget { limit: 1 }), "{e:?}");
    assert!(
        e.to_string()
            .contains("more private-key work than its budget (1 units"),
        "{e}"
    );
    // The budget an object of one item gets covers a search of the whole ring.
    let mut budget = KeyBudget::for_object(1, &ring);
    assert!(
        ring.open(value, &binding, &mut Some(old.id()), &mut budget)
            .is_ok()
    );
}

/// However many threads unseal at once, at most one private-key operation per core runs.
#[test]
fn private_key_work_is_bounded_by_the_cores() {
    let ring = ring_of(&[k2048()]);
    let s = secret(Some("prod"), "db", &[("a", b"1"), ("b", b"2")]);
    let ss = seal_secret(&s, &target(k2048()), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    std::thread::scope(|t| {
        for _ in 0..8 {
            t.spawn(|| {
                for _ in 0..5 {
                    unseal(&ss, &ring).unwrap();
                }
            });
        }
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let peak = crate::keys::ring::private_key_work_peak();
    // 8 threads of ~1 ms RSA decryptions: unbounded, the peak reaches 8.
    assert!(peak >= 1 && peak <= cores, "peak {peak}, cores {cores}");
}

/// Found by the property test below: a Secret built in code with the item key "." sealed into
/// an object that `SealedSecret::from_value` then refused.
#[test]
fn an_item_key_no_reader_accepts_is_refused_at_seal_time() {
    let k = k2048();
    for bad in [".", "..", "a/b"] {
        let s = secret(Some("prod"), "db", &[(bad, b"v")]);
        let e = seal_secret(&s, &target(k), &opts(Format::Age, Scope::Strict)).unwrap_err();
        assert!(e.to_string().contains(&format!("item {bad:?}")), "{e}");
    }
}

#[test]
fn seal_input_errors() {
    let t = target(k2048());
    let o = opts(Format::Age, Scope::Strict);
    let no_ns = secret(None, "db", &[("a", b"1")]);
    let e = seal_secret(&no_ns, &t, &o).unwrap_err().to_string();
    assert!(e.contains("no namespace"), "{e}");
    assert!(seal_secret(&no_ns, &t, &opts(Format::Age, Scope::ClusterWide)).is_ok());
    let with_ns = SealOptions {
        namespace: Some("x".into()),
        ..o.clone()
    };
    assert!(seal_secret(&no_ns, &t, &with_ns).is_ok());
    let e = seal_secret(&secret(Some("y"), "db", &[("a", b"1")]), &t, &with_ns)
        .unwrap_err()
        .to_string();
    assert!(e.contains("namespace mismatch"), "{e}");
    let mut unnamed = secret(Some("y"), "db", &[("a", b"1")]);
    unnamed.meta.name = None;
    assert!(
        seal_secret(&unnamed, &t, &o)
            .unwrap_err()
            .to_string()
            .contains("metadata.name")
    );
    let empty = secret(Some("y"), "db", &[]);
    assert!(
        seal_secret(&empty, &t, &o)
            .unwrap_err()
            .to_string()
            .contains("--allow-empty-data")
    );
    let bitnami_age = SealOptions {
        api: ApiGroup::Bitnami,
        ..o.clone()
    };
    assert!(seal_secret(&secret(Some("y"), "db", &[("a", b"1")]), &t, &bitnami_age).is_err());
    // No age recipient (a plain kubeseal certificate) → a clear error.
    let rsa_only = Target {
        rsa: Some(k2048().public().clone()),
        age: vec![],
    };
    let e = seal_secret(&secret(Some("y"), "db", &[("a", b"1")]), &rsa_only, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one age recipient"), "{e}");
}

#[test]
fn seal_strips_server_fields_and_scope_from_template() {
    let mut s = secret(Some("prod"), "db", &[("a", b"1")]);
    s.meta.extra.insert("uid".into(), "123".into());
    s.meta.extra.insert("resourceVersion".into(), "9".into());
    s.meta.annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{\"stringData\":{\"a\":\"1\"}}".into(),
    );
    s.meta.annotations.insert(
        "sealedsecrets.bitnami.com/namespace-wide".into(),
        "true".into(),
    );
    s.meta.annotations.insert("team".into(), "x".into());
    s.meta.labels.insert("app".into(), "db".into());
    let ss = seal_secret(
        &s,
        &target(k2048()),
        &SealOptions {
            scope: None,
            ..opts(Format::Age, Scope::Strict)
        },
    )
    .unwrap();
    // The input's Bitnami annotation chose the scope...
    assert_eq!(ss.scope().unwrap(), Scope::NamespaceWide);
    // ...and only the top level says so.
    let tm = &ss.template.meta;
    assert_eq!(tm.annotations.keys().collect::<Vec<_>>(), vec!["team"]);
    assert_eq!(tm.labels["app"], "db");
    assert!(tm.extra.is_empty() && tm.name.is_none() && tm.namespace.is_none());
}

#[test]
fn multi_recipient_age_opens_with_each_key() {
    use crate::envelope::age::AgeRecipient;
    let (a, b) = (k2048(), k2048_b());
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    // Post-quantum by default: the extra recipient in its post-quantum form.
    let b_pq = AgeRecipient::Pq(b.public().pq_recipient().unwrap().clone());
    let t = Target::new(a.public(), &[b_pq]);
    let ss = seal_secret(&s, &t, &opts(Format::Age, Scope::Strict)).unwrap();
    assert_eq!(stanza_types(&ss), ["mlkem768x25519", "mlkem768x25519"]);
    assert!(unseal(&ss, &ring_of(&[a])).is_ok());
    assert!(unseal(&ss, &ring_of(&[b])).is_ok());
    // Classical (`--pq=false`), with a classical extra recipient.
    let b_x = AgeRecipient::X25519(b.public().age_recipient().unwrap().clone());
    let t = Target::with(a.public(), std::slice::from_ref(&b_x), false);
    let ss = seal_secret(&s, &t, &opts(Format::Age, Scope::Strict)).unwrap();
    assert_eq!(stanza_types(&ss), ["X25519", "X25519"]);
    assert!(unseal(&ss, &ring_of(&[a])).is_ok());
    assert!(unseal(&ss, &ring_of(&[b])).is_ok());
    // Mixing the two would undo the protection: refused, saying how to choose.
    let t = Target::new(a.public(), &[b_x]);
    let e = seal_secret(&s, &t, &opts(Format::Age, Scope::Strict)).unwrap_err();
    assert!(e.to_string().contains("does not mix post-quantum"), "{e}");
}

/// The recipient stanza types of item `a`'s age header.
fn stanza_types(ss: &SealedSecret) -> Vec<String> {
    crate::envelope::age::header(&raw_value(ss, "a"))
        .unwrap()
        .recipients()
        .map(str::to_string)
        .collect()
}

/// Keys made before sealgate sealed post-quantum (no PQ recipient in the certificate, no
/// `age-pq.key`) keep sealing and opening classically; a new key seals post-quantum; a ring with
/// both opens both.
#[test]
fn keys_without_a_post_quantum_identity_keep_working() {
    use crate::keys::{AgeIdentities, KeyOrigin, SealingKey, cert};
    let new = k2048();
    let donor = k2048_b();
    let x25519 = age::x25519::Identity::generate();
    let now = donor.created();
    let old_cert = cert::self_signed(
        donor.pkcs8(),
        "old",
        now,
        now + time::Duration::days(365),
        Some(&x25519.to_public()),
        None,
    )
    .unwrap();
    let old = SealingKey::from_parts(
        zeroize::Zeroizing::new(donor.pkcs8().to_vec()),
        &old_cert,
        AgeIdentities {
            x25519: Some(x25519),
            pq: None,
        },
        now,
        KeyOrigin::Generated,
    )
    .unwrap();
    let old =
        crate::keys::secret::from_secret(&crate::keys::secret::to_secret(&old, None)).unwrap();
    assert!(old.pq_identity().is_none() && old.public().pq_recipient().is_none());

    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let by_old = seal_secret(&s, &target(&old), &opts(Format::Age, Scope::Strict)).unwrap();
    assert_eq!(stanza_types(&by_old), ["X25519"]);
    let by_new = seal_secret(&s, &target(new), &opts(Format::Age, Scope::Strict)).unwrap();
    assert_eq!(stanza_types(&by_new), ["mlkem768x25519"]);
    let ring = ring_of(&[new, &old]);
    for ss in [&by_old, &by_new] {
        assert_eq!(unseal(ss, &ring).unwrap().secret.data["a"].expose(), b"1");
    }
    // Offline, the stanza type is what public keys can check: a post-quantum value cannot be
    // for a key that has no post-quantum recipient.
    let v = validate(&by_new, &[old.public().clone()], None);
    assert!(
        v.problems.join("\n").contains(
            "recipients are of type mlkem768x25519, which none of the given public keys has"
        ),
        "{:?}",
        v.problems
    );
    assert!(
        validate(&by_old, &[old.public().clone()], None)
            .problems
            .is_empty()
    );
}

/// Public keys cannot prove which key a value was sealed to: stanzas and kubeseal values do not
/// name their recipient, and the key-id annotation is an unauthenticated hint. What `validate`
/// can and cannot tell offline, and that private keys settle it.
#[test]
fn offline_validation_fits_but_does_not_prove_the_key() {
    use crate::envelope::age::AgeRecipient;
    let (a, b) = (k2048(), k2048_b());
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    for format in FORMATS {
        let mut ss = seal_secret(&s, &target(a), &opts(format, Scope::Strict)).unwrap();
        // With the annotation naming A, sealing to A is told apart from B ...
        let v = validate(&ss, &[b.public().clone()], None);
        assert!(
            v.problems
                .join("\n")
                .contains("which is none of the given public keys"),
            "{:?}",
            v.problems
        );
        // ... but without it (kubeseal never writes one) a value for A fits B's same-sized,
        // same-typed key: only decryption tells.
        ss.meta.annotations.remove(KEY_ID_ANNOTATION);
        let v = validate(&ss, &[b.public().clone()], None);
        assert!(v.problems.is_empty() && !v.decrypted, "{:?}", v.problems);
        let v = validate(&ss, &[b.public().clone()], Some(&ring_of(&[b])));
        assert!(!v.problems.is_empty() && !v.decrypted);
    }
    // Sealed to A with B as an extra recipient: the annotation names A, but B is a recipient,
    // so checking against B passes with a note, and B's private key proves it.
    let b_pq = AgeRecipient::Pq(b.public().pq_recipient().unwrap().clone());
    let ss = seal_secret(
        &s,
        &Target::new(a.public(), &[b_pq]),
        &opts(Format::Age, Scope::Strict),
    )
    .unwrap();
    let v = validate(&ss, &[b.public().clone()], None);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(v.notes.join("\n").contains("2 recipients"), "{:?}", v.notes);
    let v = validate(&ss, &[b.public().clone()], Some(&ring_of(&[b])));
    assert!(v.problems.is_empty() && v.decrypted, "{:?}", v.problems);
}

#[test]
fn reseal_moves_to_the_newest_key_and_keeps_the_scope() {
    let (old, new) = (k2048(), k2048_b());
    let s = secret(Some("prod"), "db", &[("a", b"1"), ("b", b"2")]);
    for format in FORMATS {
        let ss = seal_secret(&s, &target(old), &opts(format, Scope::NamespaceWide)).unwrap();
        let both = ring_of(&[old, new]);
        assert_eq!(both.newest().unwrap().id(), new.id());
        let re = reseal(&ss, &both, &target(both.newest().unwrap()), None).unwrap();
        assert_eq!(re.scope().unwrap(), Scope::NamespaceWide);
        let only_new = ring_of(&[new]);
        let out = unseal(&re, &only_new).unwrap();
        assert_eq!(out.secret.data, s.data);
        assert_eq!(
            out.keys_used.into_iter().collect::<Vec<_>>(),
            vec![new.id()]
        );
        assert_eq!(re.template, ss.template);
        assert_eq!(re.meta.annotations[KEY_ID_ANNOTATION], new.id().short());
    }
    // A template asking for cluster-wide does not widen anything.
    let mut ss = seal_secret(&s, &target(old), &opts(Format::Age, Scope::Strict)).unwrap();
    ss.template
        .meta
        .annotations
        .insert(SCOPE_ANNOTATION.into(), "cluster-wide".into());
    let re = reseal(&ss, &ring_of(&[old, new]), &target(new), None).unwrap();
    let mut moved = re.clone();
    moved.meta.namespace = Some("elsewhere".into());
    assert!(unseal(&moved, &ring_of(&[new])).is_err());
    // Format conversion.
    let to_age = reseal(
        &seal_secret(&s, &target(old), &opts(Format::Kubeseal, Scope::Strict)).unwrap(),
        &ring_of(&[old]),
        &target(new),
        Some(Format::Age),
    )
    .unwrap();
    assert_eq!(
        unseal(&to_age, &ring_of(&[new]))
            .unwrap()
            .formats
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["age"]
    );
}

#[test]
fn ring_uses_the_hint_and_skips_other_sizes() {
    let keys: Vec<SealingKey> = (0..4).map(|i| generate(2048, 10 + i)).collect();
    let big = generate(3072, 0);
    let oldest = keys.last().unwrap();
    let s = secret(Some("prod"), "db", &[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let ss = seal_secret(&s, &target(oldest), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    let mut refs: Vec<&SealingKey> = keys.iter().collect();
    refs.push(&big);
    let ring = ring_of(&refs);
    // The key-id annotation names the right key: one attempt per item.
    assert_eq!(ss.meta.annotations[KEY_ID_ANNOTATION], oldest.id().short());
    assert_eq!(unseal(&ss, &ring).unwrap().attempts, 3);
    // Without it (a Bitnami-sealed object): the four 2048-bit keys newest-first (the 3072-bit
    // one is skipped) for the first item, then the key that opened it.
    let mut bare = ss.clone();
    bare.meta.annotations.remove(KEY_ID_ANNOTATION);
    assert_eq!(unseal(&bare, &ring).unwrap().attempts, 4 + 1 + 1);
    // A wrong annotation costs time, not correctness.
    let mut lying = ss.clone();
    lying
        .meta
        .annotations
        .insert(KEY_ID_ANNOTATION.into(), keys[0].id().short());
    assert_eq!(unseal(&lying, &ring).unwrap().attempts, 4 + 1 + 1);
}

#[test]
fn validate_offline() {
    let k = k2048();
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let publics = vec![k.public().clone()];
    for format in FORMATS {
        let ss = seal_secret(&s, &target(k), &opts(format, Scope::Strict)).unwrap();
        let v = validate(&ss, &publics, None);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(!v.decrypted);
        let v = validate(&ss, &publics, Some(&ring_of(&[k])));
        assert!(v.problems.is_empty() && v.decrypted, "{:?}", v.problems);

        let mut moved = ss.clone();
        moved.meta.namespace = Some("dev".into());
        assert!(
            validate(&moved, &publics, None).problems.is_empty(),
            "undetectable without private keys"
        );
        let v = validate(&moved, &publics, Some(&ring_of(&[k])));
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    }
    let mut ss = seal_secret(&s, &target(k), &opts(Format::Kubeseal, Scope::Strict)).unwrap();
    ss.template.meta.namespace = Some("other".into());
    ss.template
        .meta
        .annotations
        .insert(BITNAMI_CLUSTER_WIDE.into(), "true".into());
    ss.encrypted_data.insert("b".into(), "!!!".into());
    let big = generate(3072, 0);
    let v = validate(&ss, &[big.public().clone()], None);
    let all = v.problems.join("\n");
    assert!(
        all.contains("which is none of the given public keys"),
        "{all}"
    );
    assert!(
        all.contains("spec.template.metadata.namespace differs"),
        "{all}"
    );
    assert!(
        all.contains("spec.encryptedData.b: not valid base64"),
        "{all}"
    );
    assert!(all.contains("2048-bit RSA key"), "{all}");
    // For sealgate objects only sealgate's annotation counts, so Bitnami's in the template is inert.
    assert!(!all.contains("different scope"), "{all}");
    ss.template
        .meta
        .annotations
        .insert(SCOPE_ANNOTATION.into(), "cluster-wide".into());
    let all = validate(&ss, &[], None).problems.join("\n");
    assert!(all.contains("different scope"), "{all}");
}

#[test]
fn merge_into_adds_items_under_the_existing_identity() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let mut ss = seal_secret(
        &secret(Some("prod"), "db", &[("a", b"1")]),
        &target(k),
        &opts(Format::Age, Scope::Strict),
    )
    .unwrap();
    let mut extra = secret(
        Some("ignored"),
        "ignored",
        &[("b", b"2"), ("a", b"updated")],
    );
    extra.meta.labels.insert("tier".into(), "backend".into());
    merge_into(&mut ss, &extra, &target(k), Format::Age).unwrap();
    let out = unseal(&ss, &ring).unwrap();
    assert_eq!(out.secret.data["a"].expose(), b"updated");
    assert_eq!(out.secret.data["b"].expose(), b"2");
    assert_eq!(out.secret.meta.labels["tier"], "backend");
    assert_eq!(ss.name(), "db");
}

/// Item names and values as a Secret may hold them: several items, binary values, empty ones.
fn items() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::btree_map(
        "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,19}",
        proptest::collection::vec(any::<u8>(), 0..300),
        1..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Strict),
        Just(Scope::NamespaceWide),
        Just(Scope::ClusterWide)
    ]
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Age), Just(Format::Kubeseal)]
}

fn secret_of(ns: &str, name: &str, items: &[(String, Vec<u8>)]) -> Secret {
    let items: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    secret(Some(ns), name, &items)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// seal∘unseal is the identity for every scope and format, with several items of any bytes,
    /// through the committed YAML text.
    #[test]
    fn seal_then_unseal_is_identity_for_every_item(
        items in items(),
        ns in "[a-z][a-z0-9-]{0,20}",
        name in "[a-z][a-z0-9.-]{0,30}",
        scope in scope(),
        format in format(),
    ) {
        let k = k2048();
        let s = secret_of(&ns, &name, &items);
        let ss = seal_secret(&s, &target(k), &opts(format, scope)).unwrap();
        let text = crate::manifest::to_yaml_stream([&ss.to_value()]);
        let docs = crate::manifest::parse(text.as_bytes(), &Default::default()).unwrap();
        let ss = SealedSecret::from_value(&docs[0].value).unwrap();
        let out = unseal(&ss, &ring_of(&[k])).unwrap();
        prop_assert_eq!(&out.secret.data, &s.data);
    }

    /// Reseal to another key, keeping or changing the format: the plaintext never changes, and
    /// the new key alone opens it.
    #[test]
    fn reseal_never_changes_plaintext(
        items in items(),
        scope in scope(),
        from in format(),
        to in prop_oneof![Just(None), Just(Some(Format::Age)), Just(Some(Format::Kubeseal))],
    ) {
        let (a, b) = (k2048(), k2048_b());
        let s = secret_of("prod", "db", &items);
        let ss = seal_secret(&s, &target(a), &opts(from, scope)).unwrap();
        let resealed = reseal(&ss, &ring_of(&[a, b]), &target(b), to).unwrap();
        prop_assert_ne!(&resealed.encrypted_data, &ss.encrypted_data);
        let out = unseal(&resealed, &ring_of(&[b])).unwrap();
        prop_assert_eq!(&out.secret.data, &s.data);
    }

    /// Any single-byte change anywhere in a sealed value is refused, never opened to other bytes.
    #[test]
    fn any_single_byte_change_is_refused(
        value in proptest::collection::vec(any::<u8>(), 0..200),
        format in format(),
        scope in scope(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let k = k2048();
        let ring = ring_of(&[k]);
        let s = secret(Some("prod"), "db", &[("v", &value)]);
        let ss = seal_secret(&s, &target(k), &SealOptions { allow_empty_data: true, ..opts(format, scope) }).unwrap();
        let mut raw = raw_value(&ss, "v");
        let i = at.index(raw.len());
        raw[i] ^= xor;
        prop_assert!(unseal(&with_raw(&ss, "v", &raw), &ring).is_err());
    }
}

/// Sealed values are decoded as Go's `base64.StdEncoding` decodes them (Bitnami's controller):
/// `validate` and `unseal` accept exactly what the cluster will.
#[test]
fn sealed_values_are_base64_as_go_decodes_it() {
    let k = k2048();
    let ring = ring_of(&[k]);
    let publics = vec![k.public().clone()];
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let mut opts = opts(Format::Kubeseal, Scope::Strict);
    opts.api = ApiGroup::Bitnami;
    let ss = seal_secret(&s, &target(k), &opts).unwrap();
    let value = ss.encrypted_data["a"].clone();

    // Spaces around the value: Go says `illegal base64 data at input byte 0`; so do we.
    let mut spaced = ss.clone();
    spaced
        .encrypted_data
        .insert("a".into(), format!("  {value}  "));
    let problems = validate(&spaced, &publics, None).problems.join("\n");
    assert!(
        problems.contains("spec.encryptedData.a: not valid base64: a space or tab at byte 0"),
        "{problems}"
    );
    let e = item_error(unseal(&spaced, &ring));
    assert!(matches!(e, SealError::Whitespace { at: 0 }), "{e:?}");

    // Line breaks anywhere are skipped, as Go skips them.
    let mut wrapped = ss.clone();
    let folded: Vec<String> = value
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    wrapped
        .encrypted_data
        .insert("a".into(), folded.join("\r\n") + "\n");
    assert!(
        validate(&wrapped, &publics, Some(&ring))
            .problems
            .is_empty()
    );
    assert_eq!(
        unseal(&wrapped, &ring).unwrap().secret.data["a"].expose(),
        b"1"
    );

    // Missing padding is refused (Go's StdEncoding requires it).
    let mut unpadded = ss.clone();
    unpadded
        .encrypted_data
        .insert("a".into(), value.trim_end_matches('=').to_string());
    assert_ne!(
        unpadded.encrypted_data["a"], value,
        "a 275-byte value is padded"
    );
    assert!(!validate(&unpadded, &publics, None).problems.is_empty());

    // Non-zero trailing bits: Go accepts them, and so do we ("QR==" and "QQ==" are both "A").
    assert_eq!(crate::objects::decode_sealed_value("QR==").unwrap(), b"A");
    assert_eq!(crate::objects::decode_sealed_value("QQ==").unwrap(), b"A");
    assert!(crate::objects::decode_sealed_value("QQ").is_err());
    assert!(crate::objects::decode_sealed_value("QQ==\t").is_err());
}

/// An armored age value (`age -a`, base64-encoded like any value) opens as the binary one does;
/// it used to be taken for a malformed kubeseal value.
#[test]
fn armored_age_values_open() {
    use std::io::Write as _;
    let k = k2048();
    let ring = ring_of(&[k]);
    let s = secret(Some("prod"), "db", &[("a", b"armored")]);
    let ss = seal_secret(&s, &target(k), &opts(Format::Age, Scope::Strict)).unwrap();
    let binary = raw_value(&ss, "a");
    let mut armored = Vec::new();
    let mut w =
        age::armor::ArmoredWriter::wrap_output(&mut armored, age::armor::Format::AsciiArmor)
            .unwrap();
    w.write_all(&binary).unwrap();
    w.finish().unwrap();
    assert!(armored.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    let ss = with_raw(&ss, "a", &armored);
    let v = validate(&ss, &[k.public().clone()], Some(&ring));
    assert!(v.problems.is_empty() && v.decrypted, "{:?}", v.problems);
    let out = unseal(&ss, &ring).unwrap();
    assert_eq!(out.secret.data["a"].expose(), b"armored");
    assert!(out.formats.contains("age"));
}

/// An age header of `stanzas` X25519 stanzas (well-formed, random shares) and a MAC line, as an
/// attacker would write it; the payload is junk.
pub(crate) fn hostile_age_value(stanzas: usize) -> String {
    use base64::Engine as _;
    let b64 = |n: usize, seed: usize| {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 31 + seed * 7) as u8).collect();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    };
    let mut raw = String::from("age-encryption.org/v1\n");
    for i in 0..stanzas {
        raw.push_str(&format!("-> X25519 {}\n{}\n", b64(32, i), b64(32, i + 1)));
    }
    raw.push_str(&format!("--- {}\n", b64(32, 0)));
    let mut bytes = raw.into_bytes();
    bytes.extend([0u8; 64]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A header of thousands of stanzas (1.3 MB) once cost 82 CPU-s in `unseal` with 4 keys: the
/// age crate's header parser is quadratic and ran once per key. It is refused by a bounded scan
/// before age sees it, wherever values are opened or checked, and sealgate never writes one.
#[test]
fn an_age_header_beyond_the_bounds_is_refused_unread() {
    let s = secret(Some("prod"), "db", &[("a", b"1")]);
    let k = k2048();
    let mut ss = seal_secret(&s, &target(k), &opts(Format::Age, Scope::Strict)).unwrap();
    let ring = ring_of(&[k, k2048_b()]);
    ss.encrypted_data
        .insert("a".into(), hostile_age_value(10_000));
    let e = unseal(&ss, &ring).unwrap_err().to_string();
    assert!(e.contains("more than 32 age recipient stanzas"), "{e}");
    let v = validate(&ss, &[k.public().clone()], None);
    assert!(
        v.problems
            .join("\n")
            .contains("more than 32 age recipient stanzas"),
        "{:?}",
        v.problems
    );
    // A few stanzas with a huge argument: the header's size is bounded too.
    let big = {
        use base64::Engine as _;
        let raw = format!(
            "age-encryption.org/v1\n-> X25519 {}\nAAAA\n--- AAAA\n",
            "A".repeat(100_000)
        );
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    ss.encrypted_data.insert("a".into(), big);
    let e = unseal(&ss, &ring).unwrap_err().to_string();
    assert!(e.contains("age header is over 64 KiB"), "{e}");
    // Sealing never writes what is refused: 31 recipients at most.
    let extra: Vec<AgeRecipient> = (0..31)
        .map(|_| AgeRecipient::X25519(age::x25519::Identity::generate().to_public()))
        .collect();
    let t = Target::with(k.public(), &extra, false);
    let e = seal_secret(&s, &t, &opts(Format::Age, Scope::Strict)).unwrap_err();
    assert!(e.to_string().contains("at most 31"), "{e}");
    let t = Target::with(k.public(), &extra[..30], false);
    let ok = seal_secret(&s, &t, &opts(Format::Age, Scope::Strict)).unwrap();
    assert!(unseal(&ok, &ring_of(&[k])).is_ok());
}
