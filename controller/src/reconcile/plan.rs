//! What to do with one SealedSecret, as pure functions: the plan (given the Secret that exists)
//! and the status condition. The kube adapter only carries them out.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use sealgate_core::keys::KeyRing;

use super::desired::{cached_up_to_date, desired_secret, up_to_date};
use crate::crd::{Condition, Reason, SealedSecret, SealedSecretStatus, Source};

/// Annotation by which an existing Secret the controller does not own opts in to being taken over.
pub const MANAGED_ANNOTATION: &str = "sealgate.dev/managed";

#[derive(Debug)]
pub enum Plan {
    /// The Secret already holds what this SealedSecret produces: nothing to unseal or write.
    UpToDate,
    /// Create or update the Secret (server-side apply).
    Apply {
        secret: Box<Secret>,
        /// Private-key operations spent unsealing it.
        private_key_ops: usize,
    },
    /// Not written, by design (an existing Secret that is not ours).
    Refuse { reason: Reason, message: String },
    /// Cannot be unsealed or written.
    Fail { reason: Reason, message: String },
}

fn owned_by(secret: &Secret, ss: &SealedSecret) -> bool {
    let uid = ss.metadata.uid.as_deref();
    secret.metadata.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true) && o.kind == "SealedSecret" && Some(o.uid.as_str()) == uid
    })
}

/// Whether `existing` is this SealedSecret's Secret and holds what it produces (no private-key
/// operation).
pub fn current(existing: &Secret, ss: &SealedSecret, source: Source, ring: &KeyRing) -> bool {
    owned_by(existing, ss) && up_to_date(existing, ss, source, ring)
}

/// [`current`] for the Secret cache's copy ([`for_cache`]), which holds no data.
pub fn cached_current(cached: &Secret, ss: &SealedSecret, source: Source, ring: &KeyRing) -> bool {
    owned_by(cached, ss) && cached_up_to_date(cached, ss, source, ring)
}

/// Decide what to do. Private-key operations happen only when the Secret must change.
pub fn plan(ss: &SealedSecret, source: Source, existing: Option<&Secret>, ring: &KeyRing) -> Plan {
    let id = format!(
        "{}/{}",
        ss.metadata.namespace.as_deref().unwrap_or(""),
        ss.metadata.name.as_deref().unwrap_or("")
    );
    if let Some(e) = existing {
        let opted_in = e
            .annotations()
            .get(MANAGED_ANNOTATION)
            .is_some_and(|v| v == "true");
        if !owned_by(e, ss) && !opted_in {
            return Plan::Refuse {
                reason: Reason::SecretNotOwned,
                message: format!(
                    "Secret {id} exists and is not managed by this SealedSecret; it is left unchanged. To let sealgate take it over, annotate it {MANAGED_ANNOTATION}=true"
                ),
            };
        }
        if current(e, ss, source, ring) {
            return Plan::UpToDate;
        }
    }
    let (desired, private_key_ops) = match desired_secret(ss, source, ring) {
        Ok(d) => d,
        Err(err) => {
            return Plan::Fail {
                reason: err.reason(),
                message: bounded(err.to_string()),
            };
        }
    };
    if let Some(e) = existing
        && e.immutable == Some(true)
        && e.data != desired.data
    {
        return Plan::Fail {
            reason: Reason::ImmutableSecret,
            message: format!(
                "Secret {id} is immutable and its data would change: delete it, and the controller recreates it"
            ),
        };
    }
    Plan::Apply {
        secret: Box::new(desired),
        private_key_ops,
    }
}

/// Longest message in a status condition or Event note: the API server drops Events whose note
/// passes 1 KiB, and an object's own names (item keys) could otherwise grow its status without
/// bound.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message`, cut at a character boundary to fit [`MAX_MESSAGE_BYTES`] with a note of how much
/// was left out.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - 48;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &message[..end], message.len() - end)
}

/// The status after a plan, or `None` when it would not change: writing an unchanged status
/// would trigger another watch event and, through GitOps tools, needless refreshes.
pub fn status(ss: &SealedSecret, plan: &Plan, now: &str) -> Option<SealedSecretStatus> {
    let (status, reason, message) = match plan {
        Plan::UpToDate | Plan::Apply { .. } => ("True", Reason::Unsealed, None),
        Plan::Refuse { reason, message } | Plan::Fail { reason, message } => {
            ("False", *reason, Some(message.clone()))
        }
    };
    let old = ss.status.clone().unwrap_or_default();
    let previous = old.conditions.iter().find(|c| c.type_ == "Synced");
    let same = previous.is_some_and(|c| {
        c.status == status && c.reason.as_deref() == Some(reason.as_str()) && c.message == message
    });
    if same && old.observed_generation == ss.metadata.generation {
        return None;
    }
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.to_string()),
    };
    Some(SealedSecretStatus {
        observed_generation: ss.metadata.generation,
        conditions: vec![Condition {
            type_: "Synced".into(),
            status: status.into(),
            reason: Some(reason.to_string()),
            message,
            last_transition_time,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: Source = Source::Sealgate;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use sealgate_core::keys::{KeyGenOptions, SealingKey};

    fn setup() -> (SealedSecret, KeyRing) {
        let k = SealingKey::generate(&KeyGenOptions {
            rsa_bits: 2048,
            ..KeyGenOptions::default()
        })
        .unwrap();
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
            "stringData": {"password": "hunter2"}
        });
        let mut v = sealgate_testkit::sealed::seal(&k, secret, None).to_value();
        v["metadata"]["uid"] = "uid-1".into();
        v["metadata"]["generation"] = 2.into();
        (serde_json::from_value(v).unwrap(), KeyRing::new([k]))
    }

    fn applied(p: Plan) -> Secret {
        match p {
            Plan::Apply { secret, .. } => *secret,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_then_up_to_date_then_update_after_a_spec_change() {
        let (ss, ring) = setup();
        let created = applied(plan(&ss, S, None, &ring));
        assert!(
            matches!(plan(&ss, S, Some(&created), &ring), Plan::UpToDate),
            "restart: nothing to unseal"
        );
        let mut changed = ss.clone();
        changed
            .spec
            .template
            .get_or_insert_with(Default::default)
            .type_ = Some("kubernetes.io/basic-auth".into());
        let updated = applied(plan(&changed, S, Some(&created), &ring));
        assert_eq!(updated.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        // Deleted by hand: recreated.
        assert!(matches!(plan(&ss, S, None, &ring), Plan::Apply { .. }));
    }

    /// The Secret cache holds metadata and a verdict, never values: a current Secret's copy is
    /// current without its data; an edited one, or one whose verdict is forged on the real
    /// Secret, is not.
    #[test]
    fn the_cache_keeps_no_plaintext_and_cannot_be_told_a_secret_is_current() {
        use crate::reconcile::desired::for_cache;
        let (ss, ring) = setup();
        let created = applied(plan(&ss, S, None, &ring));
        let cached = for_cache(&created, &ring);
        assert!(cached.data.is_none() && cached.string_data.is_none());
        assert!(
            !format!("{cached:?}").contains("aHVudGVyMg")
                && !format!("{cached:?}").contains("hunter2")
        );
        assert!(cached_current(&cached, &ss, S, &ring));
        // Edited by hand: the MAC no longer verifies, so the cache says "read it".
        let mut edited = created.clone();
        edited.data.as_mut().unwrap().insert(
            "password".into(),
            k8s_openapi::ByteString(b"changed".to_vec()),
        );
        assert!(!cached_current(&for_cache(&edited, &ring), &ss, S, &ring));
        // The verdict annotation written on the real Secret by someone else is not trusted:
        // neither by the cache (it recomputes it) nor on an object read from the API.
        edited.metadata.annotations.as_mut().unwrap().insert(
            "sealgate.dev/cache-verified-mac-key".into(),
            ring.newest().unwrap().id().short(),
        );
        assert!(!cached_current(&for_cache(&edited, &ring), &ss, S, &ring));
        assert!(!current(&edited, &ss, S, &ring));
        assert!(
            !cached_current(&edited, &ss, S, &ring),
            "a copy with data is not the cache's"
        );
        // A key that leaves the ring takes its verdicts with it.
        assert!(!cached_current(&cached, &ss, S, &KeyRing::default()));
    }

    /// An item named with 5,000 characters makes a long error: the status and Event carry at
    /// most 1 KiB of it.
    #[test]
    fn failure_messages_are_bounded() {
        let (mut ss, ring) = setup();
        let long = "é".repeat(2_500);
        ss.spec
            .encrypted_data
            .insert(long.clone(), "AgAAAA==".into());
        match plan(&ss, S, None, &ring) {
            Plan::Fail { message, .. } => {
                assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
                assert!(message.ends_with(" more bytes)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn an_unowned_secret_is_refused_unless_it_opts_in() {
        let (ss, ring) = setup();
        let mut foreign = Secret::default();
        foreign.metadata.name = Some("db".into());
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            kind: "SealedSecret".into(),
            uid: "someone-else".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        match plan(&ss, S, Some(&foreign), &ring) {
            Plan::Refuse { reason, message } => {
                assert_eq!(reason, Reason::SecretNotOwned);
                assert!(message.contains("sealgate.dev/managed=true"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        foreign.metadata.annotations =
            Some([(MANAGED_ANNOTATION.to_string(), "true".to_string())].into());
        let taken = applied(plan(&ss, S, Some(&foreign), &ring));
        assert_eq!(taken.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }

    #[test]
    fn an_immutable_secret_whose_data_would_change_is_not_written() {
        let (ss, ring) = setup();
        let mut existing = applied(plan(&ss, S, None, &ring));
        existing.immutable = Some(true);
        existing.metadata.annotations = None; // no hash: data must be compared
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), k8s_openapi::ByteString(b"old".to_vec()));
        match plan(&ss, S, Some(&existing), &ring) {
            Plan::Fail { reason, .. } => assert_eq!(reason, Reason::ImmutableSecret),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_changes_only_when_something_changed() {
        let (mut ss, ring) = setup();
        let p = plan(&ss, S, None, &ring);
        let st = status(&ss, &p, "t1").expect("first status");
        assert_eq!(
            (st.observed_generation, st.conditions[0].status.as_str()),
            (Some(2), "True")
        );
        ss.status = Some(st.clone());
        assert!(
            status(&ss, &Plan::UpToDate, "t2").is_none(),
            "unchanged: no write"
        );
        let fail = Plan::Fail {
            reason: Reason::UnsealFailed,
            message: "1 of 1 item(s) could not be unsealed".into(),
        };
        let st2 = status(&ss, &fail, "t3").unwrap();
        assert_eq!(
            (
                st2.conditions[0].status.as_str(),
                st2.conditions[0].last_transition_time.as_deref()
            ),
            ("False", Some("t3"))
        );
        ss.metadata.generation = Some(3);
        assert_eq!(
            status(&ss, &Plan::UpToDate, "t4")
                .unwrap()
                .observed_generation,
            Some(3),
            "new generation: recorded"
        );
    }
}
