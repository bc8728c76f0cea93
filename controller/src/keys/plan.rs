//! Key management decisions, as pure functions: when to generate a key, and which keys the
//! controller's Secrets hold. Keys are never deleted, so everything in Git stays decryptable.

use k8s_openapi::api::core::v1::Secret;
use sealgate_core::keys::secret::{self, KeySecretKind};
use sealgate_core::keys::{KeyRing, SealingKey};
use time::{Duration, OffsetDateTime};

/// `--key-renew-period` and `--key-cutoff-time`.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPolicy {
    /// `None`: never renew on a schedule.
    pub period: Option<Duration>,
    /// Keys older than this are replaced at start-up (early renewal after a suspected compromise).
    pub cutoff: Option<OffsetDateTime>,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            period: Some(Duration::days(30)),
            cutoff: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Generate a key now, for this reason.
    Now(&'static str),
    /// Check again at this time.
    At(OffsetDateTime),
    Never,
}

/// When the next key is due. The clock counts from the newest key's creation, so restarts do not
/// reset it.
pub fn renewal(
    newest_created: Option<OffsetDateTime>,
    policy: RenewalPolicy,
    now: OffsetDateTime,
) -> Renewal {
    let Some(newest) = newest_created else {
        return Renewal::Now("there is no sealing key yet");
    };
    if policy
        .cutoff
        .is_some_and(|cutoff| newest < cutoff && now >= cutoff)
    {
        return Renewal::Now("the newest key is older than --key-cutoff-time");
    }
    match policy.period {
        None => Renewal::Never,
        Some(p) if now >= newest + p => Renewal::Now("the key renewal period has elapsed"),
        Some(p) => Renewal::At(newest + p),
    }
}

/// The active keys among Secrets (sealgate's and Bitnami's labels, Bitnami's legacy name). A
/// Secret that is labelled as a key but cannot be read is reported, never fatal.
pub fn ring_from_secrets(secrets: &[Secret], now: OffsetDateTime) -> (KeyRing, Vec<String>) {
    let mut ring = KeyRing::default();
    let mut problems = Vec::new();
    for s in secrets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let model = serde_json::to_value(s)
            .map_err(|e| e.to_string())
            .and_then(|mut v| {
                // Listed Secrets may omit apiVersion and kind.
                v["apiVersion"] = "v1".into();
                v["kind"] = "Secret".into();
                sealgate_core::sealing::Secret::from_value(&v).map_err(|e| e.to_string())
            });
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("Secret {name}: {e}"));
                continue;
            }
        };
        let kind = secret::classify(&model);
        // A Secret this controller unsealed is never a key, whatever its labels say: a
        // SealedSecret in this namespace must not plant a sealing key.
        if kind != KeySecretKind::NotAKey
            && let Some(owner) = s
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "SealedSecret")
        {
            problems.push(format!(
                "Secret {name} looks like a sealing key but is owned by SealedSecret {}: ignored",
                owner.name
            ));
            continue;
        }
        match kind {
            KeySecretKind::Active(_) => match secret::from_secret(&model) {
                Ok(mut k) => {
                    // Replicas' clocks differ a little; a key from further ahead is clamped.
                    if k.clamp_created(now + time::Duration::minutes(5)) {
                        problems.push(format!(
                            "key Secret {name} claims a creation time in the future: taken as now"
                        ));
                    }
                    ring.insert(k);
                }
                Err(e) => problems.push(format!(
                    "key Secret {name} is labelled active but cannot be used: {e}"
                )),
            },
            KeySecretKind::Inactive(_) | KeySecretKind::NotAKey => {}
        }
    }
    (ring, problems)
}

/// A key as the Secret the controller stores in its namespace.
pub fn key_secret(key: &SealingKey, namespace: &str) -> Result<Secret, serde_json::Error> {
    serde_json::from_value(secret::to_secret(key, Some(namespace)).to_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_core::keys::KeyGenOptions;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
    }

    #[test]
    fn renewal_timing() {
        let p = RenewalPolicy::default();
        assert_eq!(
            renewal(None, p, now()),
            Renewal::Now("there is no sealing key yet")
        );
        // Ten days after the newest key, across any number of restarts: due in 20 days.
        assert_eq!(
            renewal(Some(now() - Duration::days(10)), p, now()),
            Renewal::At(now() + Duration::days(20))
        );
        assert!(matches!(
            renewal(Some(now() - Duration::days(31)), p, now()),
            Renewal::Now(_)
        ));
        assert_eq!(
            renewal(
                Some(now() - Duration::days(400)),
                RenewalPolicy {
                    period: None,
                    cutoff: None
                },
                now()
            ),
            Renewal::Never
        );
        let cutoff = RenewalPolicy {
            period: None,
            cutoff: Some(now() - Duration::hours(1)),
        };
        assert_eq!(
            renewal(Some(now() - Duration::days(2)), cutoff, now()),
            Renewal::Now("the newest key is older than --key-cutoff-time")
        );
        assert_eq!(
            renewal(Some(now() - Duration::minutes(5)), cutoff, now()),
            Renewal::Never,
            "a key made after the cutoff"
        );
    }

    #[test]
    fn keys_from_secrets_including_bitnami_and_broken_ones() {
        let key = SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            ..KeyGenOptions::default()
        })
        .unwrap();
        let ours = key_secret(&key, "sealgate-system").unwrap();
        assert_eq!(ours.metadata.namespace.as_deref(), Some("sealgate-system"));
        // Bitnami's key Secret, from the compatibility vectors (a List as kubectl prints it).
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/data/bitnami/key-secret.yaml"
        ))
        .unwrap();
        let list = &sealgate_core::manifest::parse(&text, &Default::default()).unwrap()[0].value;
        let bitnami: Secret = serde_json::from_value(list["items"][0].clone()).unwrap();
        let mut inactive = ours.clone();
        inactive
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("sealgate.dev/sealing-key".into(), "compromised".into());
        inactive.metadata.name = Some("old".into());
        let mut broken = ours.clone();
        broken.metadata.name = Some("broken".into());
        broken.data.as_mut().unwrap().remove("tls.crt");
        let unrelated: Secret = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "app"}, "data": {"x": "eQ=="}}),
        )
        .unwrap();
        // The same key material, but the Secret a SealedSecret unsealed: never a key.
        let mut planted = ours.clone();
        planted.metadata.name = Some("planted".into());
        planted.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "sealgate.dev/v1alpha1".into(),
                kind: "SealedSecret".into(),
                name: "planted".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        let (ring, problems) = ring_from_secrets(
            &[ours, bitnami, inactive, broken, unrelated, planted],
            OffsetDateTime::now_utc(),
        );
        assert_eq!(ring.len(), 2, "ours and Bitnami's; not the compromised one");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("broken") && problems[0].contains("tls.crt"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("planted") && problems[1].contains("owned by SealedSecret"),
            "{problems:?}"
        );
    }

    /// `sealgate.dev/created-at` orders the ring; a key dated in the future is taken as now
    /// (plus the clock-skew allowance), so it cannot stay "newest" for years.
    #[test]
    fn future_creation_times_are_clamped() {
        let k = SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            now: now() - Duration::days(3),
            ..KeyGenOptions::default()
        })
        .unwrap();
        let mut s = key_secret(&k, "sealgate-system").unwrap();
        s.metadata.annotations.as_mut().unwrap().insert(
            secret::CREATED_ANNOTATION.into(),
            "2099-01-01T00:00:00Z".into(),
        );
        let (ring, problems) = ring_from_secrets(&[s], now());
        assert_eq!(
            ring.newest().unwrap().created(),
            now() + Duration::minutes(5)
        );
        assert!(problems[0].contains("in the future"), "{problems:?}");
    }
}
