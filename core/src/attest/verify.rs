//! Trusting an attestation, and admitting an object with one: what the webhook and `sealgate
//! verify-attestation` decide, as pure functions.

use serde_json::Value;
use time::OffsetDateTime;

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::keys::VerifyingKey;
use super::statement::{Statement, Verdict};
use super::subset::{self, IgnoredField};

/// A key attestations may be signed with.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// A name for messages (e.g. `ci-2026`).
    pub name: String,
    /// The public key.
    pub key: VerifyingKey,
    /// Signatures by it are refused after this time.
    pub not_after: Option<OffsetDateTime>,
    /// Refused: the key was withdrawn (leaked, or its CI retired).
    pub revoked: bool,
}

/// What an attestation must satisfy besides its signature.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Refuse an attestation linted longer ago than this (a revision too old to deploy).
    pub max_age: Option<time::Duration>,
    /// Fields left out of the subset check.
    pub ignored: Vec<IgnoredField>,
}

/// An attestation whose signature, key, verdict and age were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The statement.
    pub statement: Statement,
    /// The name of the key that signed it.
    pub key: String,
    /// When it was linted.
    pub linted_at: OffsetDateTime,
}

/// Why an attestation is not trusted, or an object not admitted. Each says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The envelope or statement is malformed.
    #[error("{0}")]
    Malformed(String),
    /// No trusted key signed it.
    #[error("its signature is by no trusted key{0}")]
    Untrusted(String),
    /// Signed by a revoked key.
    #[error("it is signed by key {0}, which is revoked")]
    Revoked(String),
    /// Signed by a key past its validity.
    #[error("it is signed by key {key}, which expired at {at}")]
    KeyExpired {
        /// The key's name.
        key: String,
        /// When it expired (RFC 3339).
        at: String,
    },
    /// The verdict was fail.
    #[error("revision {0} failed its policy check (verdict: fail)")]
    Failed(String),
    /// Linted too long ago.
    #[error("revision {revision} was linted at {linted_at}, more than {max_age} ago")]
    TooOld {
        /// The revision.
        revision: String,
        /// When (RFC 3339).
        linted_at: String,
        /// The window, as configured.
        max_age: String,
    },
    /// No trusted attestation covers the object.
    #[error("no attestation covers {0}: it was not linted from a reviewed revision")]
    NotCovered(String),
    /// The object differs from every manifest attested for it.
    #[error("{subject}: {difference} at revision {revision}")]
    Changed {
        /// The object.
        subject: String,
        /// What differs (a path, never a value).
        difference: String,
        /// The newest revision that covers it.
        revision: String,
    },
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Check an envelope: a trusted, unrevoked, unexpired key signed a sealgate statement whose
/// verdict is pass and which is recent enough.
pub fn verify(
    envelope: &Envelope,
    keys: &[TrustedKey],
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Verified, Rejection> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Rejection::Malformed(format!(
            "payload type {:?} is not an in-toto statement",
            envelope.payload_type
        )));
    }
    let public: Vec<VerifyingKey> = keys.iter().map(|k| k.key.clone()).collect();
    let (body, by) = envelope.verify(&public).map_err(|e| match e {
        super::AttestError::Untrusted(which) => Rejection::Untrusted(which),
        other => Rejection::Malformed(other.to_string()),
    })?;
    let key = keys
        .iter()
        .find(|k| k.key == *by)
        .expect("the key that verified is one of them");
    if key.revoked {
        return Err(Rejection::Revoked(key.name.clone()));
    }
    if let Some(at) = key.not_after
        && now > at
    {
        return Err(Rejection::KeyExpired {
            key: key.name.clone(),
            at: rfc3339(at),
        });
    }
    let statement = Statement::parse(&body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let p = &statement.predicate;
    if p.verdict == Verdict::Fail {
        return Err(Rejection::Failed(p.revision.clone()));
    }
    let linted_at =
        OffsetDateTime::parse(&p.linted_at, &time::format_description::well_known::Rfc3339)
            .map_err(|_| Rejection::Malformed("lintedAt is not an RFC 3339 time".into()))?;
    if let Some(max) = rules.max_age
        && now - linted_at > max
    {
        return Err(Rejection::TooOld {
            revision: p.revision.clone(),
            linted_at: p.linted_at.clone(),
            max_age: format!("{}h", max.whole_hours()),
        });
    }
    Ok(Verified {
        key: key.name.clone(),
        linted_at,
        statement,
    })
}

/// Admit `object` (as the API server would store it) named `subject` if a verified attestation
/// covers it and it still holds what that manifest declared. The newest covering attestation is
/// tried first; an older one still admits (a rollback to a reviewed revision).
pub fn admit<'a>(
    verified: &'a [Verified],
    subject: &str,
    object: &Value,
    rules: &Rules,
) -> Result<&'a Verified, Rejection> {
    let covering = verified
        .iter()
        .filter_map(|v| v.statement.manifest_for(subject).map(|m| (v, m)));
    admit_among(covering, subject, object, rules)
}

/// [`admit`] among the attestations already known to cover `subject`, each with its manifest
/// (the webhook keeps an index from subject to them).
pub fn admit_among<'a>(
    covering: impl IntoIterator<Item = (&'a Verified, &'a Value)>,
    subject: &str,
    object: &Value,
    rules: &Rules,
) -> Result<&'a Verified, Rejection> {
    let mut covering: Vec<(&Verified, &Value)> = covering.into_iter().collect();
    covering.sort_by_key(|(v, _)| std::cmp::Reverse(v.linted_at));
    let mut first_difference = None;
    for (v, manifest) in covering {
        match subset::contains(manifest, object, &rules.ignored) {
            Ok(()) => return Ok(v),
            Err(d) => {
                first_difference.get_or_insert((d, v.statement.predicate.revision.clone()));
            }
        }
    }
    Err(match first_difference {
        Some((d, revision)) => Rejection::Changed {
            subject: subject.into(),
            difference: d.to_string(),
            revision,
        },
        None => Rejection::NotCovered(subject.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::keys::{Algorithm, SigningKey};
    use crate::attest::statement::PredicateInfo;
    use serde_json::json;

    fn web(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
    }

    fn signed(
        key: &SigningKey,
        manifests: Vec<Value>,
        verdict: Verdict,
        at: &str,
        rev: &str,
    ) -> Envelope {
        let st = Statement::new(
            manifests,
            PredicateInfo {
                repository: "https://git.example.com/apps".into(),
                revision: rev.into(),
                linted_at: at.into(),
                bundle_digest: "00".repeat(32),
                verdict,
            },
        )
        .unwrap();
        Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &serde_json::to_vec(&st).unwrap(), key).unwrap()
    }

    fn trusted(key: &SigningKey, name: &str) -> TrustedKey {
        TrustedKey {
            name: name.into(),
            key: key.verifying_key(),
            not_after: None,
            revoked: false,
        }
    }

    const NOW: &str = "2026-12-03T12:00:00Z";

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(NOW, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn each_reason_to_refuse_an_attestation_is_named() {
        let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let stranger = SigningKey::generate(Algorithm::Ed25519).unwrap();
        let rules = Rules {
            max_age: Some(time::Duration::days(7)),
            ..Rules::default()
        };
        let good = signed(
            &ci,
            vec![web("a:1")],
            Verdict::Pass,
            "2026-12-02T12:00:00Z",
            "abc",
        );
        let keys = [trusted(&ci, "ci")];
        assert_eq!(verify(&good, &keys, &rules, now()).unwrap().key, "ci");

        let e = verify(
            &signed(&stranger, vec![web("a:1")], Verdict::Pass, NOW, "abc"),
            &keys,
            &rules,
            now(),
        );
        assert!(matches!(e, Err(Rejection::Untrusted(_))), "{e:?}");
        let revoked = [TrustedKey {
            revoked: true,
            ..trusted(&ci, "ci")
        }];
        assert_eq!(
            verify(&good, &revoked, &rules, now()).unwrap_err(),
            Rejection::Revoked("ci".into())
        );
        let expired = [TrustedKey {
            not_after: Some(now() - time::Duration::hours(1)),
            ..trusted(&ci, "ci")
        }];
        assert!(matches!(
            verify(&good, &expired, &rules, now()),
            Err(Rejection::KeyExpired { .. })
        ));
        let failed = signed(&ci, vec![web("a:1")], Verdict::Fail, NOW, "bad");
        assert_eq!(
            verify(&failed, &keys, &rules, now()).unwrap_err(),
            Rejection::Failed("bad".into())
        );
        let old = signed(
            &ci,
            vec![web("a:1")],
            Verdict::Pass,
            "2026-11-01T00:00:00Z",
            "old",
        );
        let e = verify(&old, &keys, &rules, now()).unwrap_err();
        assert!(
            e.to_string()
                .contains("revision old was linted at 2026-11-01T00:00:00Z, more than 168h ago"),
            "{e}"
        );
    }

    #[test]
    fn an_object_is_admitted_by_a_covering_attestation_it_still_matches() {
        let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let keys = [trusted(&ci, "ci")];
        let rules = Rules::default();
        let v1 = verify(
            &signed(
                &ci,
                vec![web("a:1")],
                Verdict::Pass,
                "2026-12-01T00:00:00Z",
                "r1",
            ),
            &keys,
            &rules,
            now(),
        )
        .unwrap();
        let v2 = verify(
            &signed(
                &ci,
                vec![web("a:2")],
                Verdict::Pass,
                "2026-12-02T00:00:00Z",
                "r2",
            ),
            &keys,
            &rules,
            now(),
        )
        .unwrap();
        let verified = [v1, v2];
        let subject = "apps/Deployment/shop/web";
        let mut admitted = web("a:2");
        admitted["metadata"]["uid"] = "u".into();
        assert_eq!(
            admit(&verified, subject, &admitted, &rules)
                .unwrap()
                .statement
                .predicate
                .revision,
            "r2"
        );
        // A rollback to the reviewed r1 is admitted too.
        assert_eq!(
            admit(&verified, subject, &web("a:1"), &rules)
                .unwrap()
                .statement
                .predicate
                .revision,
            "r1"
        );
        let e = admit(&verified, subject, &web("evil:1"), &rules).unwrap_err();
        assert_eq!(
            e.to_string(),
            "apps/Deployment/shop/web: spec.template.spec.containers.app.image is changed from what was attested at revision r2"
        );
        let e = admit(&verified, "apps/Deployment/shop/api", &web("a:1"), &rules).unwrap_err();
        assert!(matches!(e, Rejection::NotCovered(_)), "{e}");
    }
}
