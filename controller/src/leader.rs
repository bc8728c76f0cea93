//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does, so
//! two replicas can run: only the leader reconciles and renews keys; every replica serves HTTP.
//!
//! The holder renews every `retry` period. Another replica takes over once `renewTime +
//! leaseDurationSeconds` has passed. A leader that cannot renew within `renew_deadline` steps
//! down (the binary then exits, so no two replicas ever write at once). On shutdown the lease is
//! released, so the other replica takes over at its next retry instead of after the duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica (the pod name).
    pub identity: String,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl LeaseConfig {
    pub fn new(name: &str, namespace: &str, identity: &str) -> LeaseConfig {
        // client-go's defaults.
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is no lease: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    Acquire,
    /// Someone else holds it.
    Wait { holder: String },
}

pub fn step(lease: Option<&Lease>, me: &str, now: Timestamp) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder.is_empty() {
        return Step::Acquire;
    }
    if holder == me {
        return Step::Renew;
    }
    let expires = spec.renew_time.map(|t| {
        t.0 + SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)))
    });
    match expires {
        Some(e) if e > now => Step::Wait { holder },
        _ => Step::Acquire,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the leader lease {0}: could not renew it within the renew deadline")]
    Lost(String),
}

pub struct Elector {
    client: kube::Client,
    cfg: LeaseConfig,
    tx: tokio::sync::watch::Sender<bool>,
}

impl Elector {
    /// The elector, and a receiver that is `true` while this replica leads.
    pub fn new(
        client: kube::Client,
        cfg: LeaseConfig,
    ) -> (Elector, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (Elector { client, cfg, tx }, rx)
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.duration.as_secs().try_into().unwrap_or(15)),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: `Ok(true)` when we hold the lease afterwards. Conflicts (someone else wrote
    /// first) are `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let api = self.api();
        let now = Timestamp::now();
        let current = api.get_opt(&self.cfg.name).await?;
        let result = match step(current.as_ref(), &self.cfg.identity, now) {
            Step::Wait { .. } => return Ok(false),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                api.create(&PostParams::default(), &lease).await
            }
            s @ (Step::Renew | Step::Acquire) => {
                let mut lease = current.unwrap_or_default();
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if s == Step::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    self.spec(now, None, transitions + 1)
                });
                // resourceVersion is kept: a concurrent writer makes this a 409, not a split brain.
                api.replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up (on shutdown), so another replica need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let api = self.api();
        let Some(mut lease) = api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        api.replace(&self.cfg.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// Campaign and renew until `shutdown` (then release) or until leadership is lost.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), LeaderError> {
        tokio::pin!(shutdown);
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            let held = match self.try_acquire_or_renew().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "cannot read or write the leader lease");
                    false
                }
            };
            let now = tokio::time::Instant::now();
            match (held, last_renew) {
                (true, None) => {
                    tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
                    last_renew = Some(now);
                    self.tx.send_replace(true);
                }
                (true, Some(_)) => last_renew = Some(now),
                (false, Some(t)) if now.duration_since(t) > self.cfg.renew_deadline => {
                    self.tx.send_replace(false);
                    return Err(LeaderError::Lost(self.cfg.name.clone()));
                }
                (false, _) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry) => {}
                _ = &mut shutdown => {
                    if last_renew.is_some() {
                        self.tx.send_replace(false);
                        if let Err(e) = self.release().await {
                            tracing::warn!(lease = %self.cfg.name, error = %e, "cannot release the leader lease");
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn steps() {
        let now = Timestamp::now();
        assert_eq!(step(None, "a", now), Step::Create);
        assert_eq!(step(Some(&lease("a", 1, 15)), "a", now), Step::Renew);
        assert_eq!(
            step(Some(&lease("b", 5, 15)), "a", now),
            Step::Wait { holder: "b".into() }
        );
        assert_eq!(
            step(Some(&lease("b", 16, 15)), "a", now),
            Step::Acquire,
            "expired"
        );
        assert_eq!(
            step(Some(&lease("", 1, 15)), "a", now),
            Step::Acquire,
            "released"
        );
    }
}
