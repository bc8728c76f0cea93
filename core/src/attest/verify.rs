//! Trusting an attestation, and admitting an object with one: what the webhook and `sealgate
//! verify-attestation` decide, as pure functions.

use serde_json::Value;
use time::OffsetDateTime;

use super::compare::{self, IgnoredField};
use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::keys::VerifyingKey;
use super::statement::{Statement, Verdict};

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
    /// Fields left out of the comparison with the attested manifest.
    pub ignored: Vec<IgnoredField>,
    /// Container names a mutating webhook may add to an attested pod template.
    pub injected: Vec<String>,
    /// Repositories attestations may come from (`predicate.repository`); empty: any.
    pub repositories: Vec<String>,
}

/// An attestation whose signature, key, verdict, repository and age were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The statement.
    pub statement: Statement,
    /// The name of the key that signed it.
    pub key: String,
    /// When the signing key stops being trusted, if it does.
    pub key_not_after: Option<OffsetDateTime>,
    /// When it was linted.
    pub linted_at: OffsetDateTime,
}

impl Verified {
    /// Whether it may still admit at `now`: its key has not expired and it is not older than
    /// the age window. Checked at every admission, not only when the Attestation arrived.
    pub fn fresh(&self, rules: &Rules, now: OffsetDateTime) -> Result<(), Rejection> {
        if let Some(at) = self.key_not_after
            && now > at
        {
            return Err(Rejection::KeyExpired {
                key: self.key.clone(),
                at: rfc3339(at),
            });
        }
        if let Some(max) = rules.max_age
            && now - self.linted_at > max
        {
            return Err(Rejection::TooOld {
                revision: self.statement.predicate.revision.clone(),
                linted_at: rfc3339(self.linted_at),
                max_age: human(max),
            });
        }
        Ok(())
    }
}

/// A window for messages: `90d`, `36h`, `15m`.
fn human(d: time::Duration) -> String {
    if d.whole_days() > 0 && d == time::Duration::days(d.whole_days()) {
        format!("{}d", d.whole_days())
    } else if d.whole_hours() > 0 {
        format!("{}h", d.whole_hours())
    } else {
        format!("{}m", d.whole_minutes())
    }
}

/// A repository URL as compared: no trailing `/` or `.git`, scheme and host in lower case.
pub fn normalize_repository(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            format!(
                "{}://{}/{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
            .trim_end_matches('/')
            .to_string()
        }
        None => url.to_string(),
    }
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
    /// Linted in a repository the rules do not allow.
    #[error(
        "it was linted in repository {repository}, which is not one attestations may come from ({allowed})"
    )]
    Repository {
        /// `predicate.repository`.
        repository: String,
        /// The allowed ones, comma-separated.
        allowed: String,
    },
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

impl Rejection {
    /// A short, fixed name for the reason: a metric label or a log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Untrusted(_) => "untrusted",
            Rejection::Revoked(_) => "revoked",
            Rejection::KeyExpired { .. } => "key_expired",
            Rejection::Failed(_) => "failed",
            Rejection::Repository { .. } => "repository",
            Rejection::TooOld { .. } => "too_old",
            Rejection::NotCovered(_) => "not_covered",
            Rejection::Changed { .. } => "changed",
        }
    }

    /// Whether a trusted key's signature held (the attestation is refused for what it says, or
    /// for its key's state): only then may what it names be repeated in a denial.
    pub fn signed(&self) -> bool {
        match self {
            Rejection::Revoked(_)
            | Rejection::KeyExpired { .. }
            | Rejection::Failed(_)
            | Rejection::TooOld { .. }
            | Rejection::Repository { .. } => true,
            Rejection::Malformed(_)
            | Rejection::Untrusted(_)
            | Rejection::NotCovered(_)
            | Rejection::Changed { .. } => false,
        }
    }
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
    // Revocation wins: the key is refused if any entry for it is revoked, whatever the order.
    if let Some(revoked) = keys.iter().find(|k| k.key == *by && k.revoked) {
        return Err(Rejection::Revoked(revoked.name.clone()));
    }
    let key = keys
        .iter()
        .find(|k| k.key == *by)
        .expect("the key that verified is one of them");
    let statement = Statement::parse(&body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let p = &statement.predicate;
    if p.verdict == Verdict::Fail {
        return Err(Rejection::Failed(p.revision.clone()));
    }
    if !rules.repositories.is_empty() {
        let theirs = normalize_repository(&p.repository);
        if !rules
            .repositories
            .iter()
            .any(|r| normalize_repository(r) == theirs)
        {
            return Err(Rejection::Repository {
                repository: p.repository.clone(),
                allowed: rules.repositories.join(", "),
            });
        }
    }
    let linted_at =
        OffsetDateTime::parse(&p.linted_at, &time::format_description::well_known::Rfc3339)
            .map_err(|_| Rejection::Malformed("lintedAt is not an RFC 3339 time".into()))?;
    let verified = Verified {
        key: key.name.clone(),
        key_not_after: key.not_after,
        linted_at,
        statement,
    };
    verified.fresh(rules, now)?;
    Ok(verified)
}

/// Keys both trusted and revoked: a configuration that cannot be meant (revocation would win,
/// but the operator should say which). Names each such pair.
pub fn overlapping(keys: &[TrustedKey]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in keys.iter().filter(|k| k.revoked) {
        for t in keys.iter().filter(|k| !k.revoked && k.key == r.key) {
            out.push((t.name.clone(), r.name.clone()));
        }
    }
    out
}

/// Admit `object` (as the API server would store it) named `subject` if a verified attestation
/// covers it and it still holds what that manifest declared. The newest covering attestation is
/// tried first; an older one still admits (a rollback to a reviewed revision).
pub fn admit<'a>(
    verified: &'a [Verified],
    subject: &str,
    object: &Value,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<&'a Verified, Rejection> {
    let covering = verified
        .iter()
        .filter_map(|v| v.statement.manifest_for(subject).map(|m| (v, m)));
    admit_among(covering, subject, object, rules, now)
}

/// [`admit`] among the attestations already known to cover `subject`, each with its manifest
/// (the webhook keeps an index from subject to them).
pub fn admit_among<'a>(
    covering: impl IntoIterator<Item = (&'a Verified, &'a Value)>,
    subject: &str,
    object: &Value,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<&'a Verified, Rejection> {
    let mut covering: Vec<(&Verified, &Value)> = covering.into_iter().collect();
    covering.sort_by_key(|(v, _)| std::cmp::Reverse(v.linted_at));
    // Expired keys and attestations past the window stopped admitting when they expired, not
    // when the webhook last restarted.
    let mut stale = None;
    covering.retain(|(v, _)| match v.fresh(rules, now) {
        Ok(()) => true,
        Err(why) => {
            stale.get_or_insert(why);
            false
        }
    });
    if covering.is_empty()
        && let Some(why) = stale
    {
        return Err(why);
    }
    let mut first_difference = None;
    for (v, manifest) in covering {
        let allowed = compare::Allowed {
            ignored: &rules.ignored,
            injected: &rules.injected,
        };
        match compare::matches(manifest, object, &allowed) {
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
                .contains("revision old was linted at 2026-11-01T00:00:00Z, more than 7d ago"),
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
            admit(&verified, subject, &admitted, &rules, now())
                .unwrap()
                .statement
                .predicate
                .revision,
            "r2"
        );
        // A rollback to the reviewed r1 is admitted too.
        assert_eq!(
            admit(&verified, subject, &web("a:1"), &rules, now())
                .unwrap()
                .statement
                .predicate
                .revision,
            "r1"
        );
        let e = admit(&verified, subject, &web("evil:1"), &rules, now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "apps/Deployment/shop/web: spec.template.spec.containers.app.image is changed from what was attested at revision r2"
        );
        let e = admit(
            &verified,
            "apps/Deployment/shop/api",
            &web("a:1"),
            &rules,
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::NotCovered(_)), "{e}");
    }

    /// Revocation wins whatever the order of the key lists, and the overlap is found so the
    /// webhook can refuse to start (issue 25, item 4).
    #[test]
    fn revocation_wins_in_either_order() {
        let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let good = signed(&ci, vec![web("a:1")], Verdict::Pass, NOW, "abc");
        let revoked = TrustedKey {
            revoked: true,
            ..trusted(&ci, "ci-revoked.pub")
        };
        for keys in [
            [trusted(&ci, "ci.pub"), revoked.clone()],
            [revoked.clone(), trusted(&ci, "ci.pub")],
        ] {
            assert_eq!(
                verify(&good, &keys, &Rules::default(), now()).unwrap_err(),
                Rejection::Revoked("ci-revoked.pub".into())
            );
            assert_eq!(
                overlapping(&keys),
                [("ci.pub".to_string(), "ci-revoked.pub".to_string())]
            );
        }
    }

    /// An attestation from another repository, signed by the same CI key, is refused when the
    /// rules name the repositories (issue 25, item 5).
    #[test]
    fn attestations_are_bound_to_their_repository() {
        let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let keys = [trusted(&ci, "ci")];
        let good = signed(&ci, vec![web("a:1")], Verdict::Pass, NOW, "abc");
        let rules = Rules {
            repositories: vec!["https://GIT.example.com/apps.git/".into()],
            ..Rules::default()
        };
        assert!(verify(&good, &keys, &rules, now()).is_ok());
        let elsewhere = Rules {
            repositories: vec!["https://git.example.com/other".into()],
            ..Rules::default()
        };
        let e = verify(&good, &keys, &elsewhere, now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it was linted in repository https://git.example.com/apps, which is not one attestations may come from (https://git.example.com/other)"
        );
    }

    /// An attestation verified when it arrived stops admitting when its key expires or it falls
    /// out of the age window, without a restart (issue 25, item 3).
    #[test]
    fn freshness_is_checked_at_every_admission() {
        let ci = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let expires = now() + time::Duration::hours(1);
        let keys = [TrustedKey {
            not_after: Some(expires),
            ..trusted(&ci, "ci")
        }];
        let rules = Rules {
            max_age: Some(time::Duration::days(2)),
            ..Rules::default()
        };
        let verified = [verify(
            &signed(&ci, vec![web("a:1")], Verdict::Pass, NOW, "r1"),
            &keys,
            &rules,
            now(),
        )
        .unwrap()];
        let subject = "apps/Deployment/shop/web";
        assert!(admit(&verified, subject, &web("a:1"), &rules, now()).is_ok());
        let later = now() + time::Duration::hours(2);
        assert!(matches!(
            admit(&verified, subject, &web("a:1"), &rules, later),
            Err(Rejection::KeyExpired { .. })
        ));
        let no_expiry = [verify(
            &signed(&ci, vec![web("a:1")], Verdict::Pass, NOW, "r1"),
            &[trusted(&ci, "ci")],
            &rules,
            now(),
        )
        .unwrap()];
        let e = admit(
            &no_expiry,
            subject,
            &web("a:1"),
            &rules,
            now() + time::Duration::days(3),
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than 2d ago"), "{e}");
    }
}
