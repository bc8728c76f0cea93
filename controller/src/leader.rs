//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does, so
//! two replicas can run: only the leader reconciles and renews keys; every replica serves HTTP.
//!
//! The holder renews every `retry` period. Another replica takes over once the lease record has
//! stayed unchanged for `leaseDurationSeconds` by its own monotonic clock (client-go's
//! `observedTime`): the holder's `renewTime` is never compared with the local clock, so clocks
//! that disagree by more than the lease duration do not flap leadership. A leader that cannot renew within `renew_deadline` steps
//! down (the binary then exits, so no two replicas ever write at once). On shutdown the lease is
//! released, so the other replica takes over at its next retry instead of after the duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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

/// `unchanged_for`: how long, by this replica's clock, the lease record has been seen unchanged
/// (see [`Observer`]).
pub fn step(lease: Option<&Lease>, me: &str, unchanged_for: Duration) -> Step {
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
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(0) as u64);
    if unchanged_for > duration {
        Step::Acquire
    } else {
        Step::Wait { holder }
    }
}

/// When this replica last saw the lease record change (holder, renewTime or resourceVersion).
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(String, std::time::Instant)>,
}

impl Observer {
    /// How long the record has been unchanged as of `now` (zero when it just changed).
    pub fn observe(&mut self, lease: Option<&Lease>, now: std::time::Instant) -> Duration {
        let record = lease.map(|l| {
            let spec = l.spec.as_ref();
            format!(
                "{:?}|{:?}|{:?}",
                spec.and_then(|s| s.holder_identity.as_ref()),
                spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
                l.metadata.resource_version
            )
        });
        let record = record.unwrap_or_default();
        match &self.last {
            Some((seen, at)) if *seen == record => now.saturating_duration_since(*at),
            _ => {
                self.last = Some((record, now));
                Duration::ZERO
            }
        }
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
    observer: std::sync::Mutex<Observer>,
}

impl Elector {
    /// The elector, and a receiver that is `true` while this replica leads.
    pub fn new(
        client: kube::Client,
        cfg: LeaseConfig,
    ) -> (Elector, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (
            Elector {
                client,
                cfg,
                tx,
                observer: Default::default(),
            },
            rx,
        )
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
        let unchanged_for = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(current.as_ref(), std::time::Instant::now());
        let result = match step(current.as_ref(), &self.cfg.identity, unchanged_for) {
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
    use k8s_openapi::jiff::SignedDuration;

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
        let s = Duration::from_secs;
        assert_eq!(step(None, "a", s(0)), Step::Create);
        assert_eq!(step(Some(&lease("a", 1, 15)), "a", s(0)), Step::Renew);
        assert_eq!(
            step(Some(&lease("b", 5, 15)), "a", s(5)),
            Step::Wait { holder: "b".into() }
        );
        assert_eq!(
            step(Some(&lease("b", 5, 15)), "a", s(16)),
            Step::Acquire,
            "expired"
        );
        assert_eq!(
            step(Some(&lease("", 1, 15)), "a", s(0)),
            Step::Acquire,
            "released"
        );
    }

    /// The holder's clock runs 10 minutes behind ours: its renewTime always looks stale, yet
    /// as long as it keeps renewing the lease is not taken; once it stops, it is, after the
    /// lease duration by our clock.
    #[test]
    fn a_skewed_holder_clock_does_not_flap_leadership() {
        let t0 = std::time::Instant::now();
        let mut o = Observer::default();
        let skewed = |renew_offset: i64| {
            let mut l = lease("b", 600 - renew_offset, 15);
            l.metadata.resource_version = Some(format!("{renew_offset}"));
            l
        };
        for i in 0..10u64 {
            let l = skewed(i as i64 * 2);
            let unchanged = o.observe(Some(&l), t0 + Duration::from_secs(i * 2));
            assert_eq!(
                step(Some(&l), "a", unchanged),
                Step::Wait { holder: "b".into() },
                "round {i}"
            );
        }
        // It stops renewing: the same record for longer than 15 s by our clock.
        let last = skewed(18);
        assert_eq!(
            o.observe(Some(&last), t0 + Duration::from_secs(18)),
            Duration::ZERO
        );
        let unchanged = o.observe(Some(&last), t0 + Duration::from_secs(34));
        assert_eq!(step(Some(&last), "a", unchanged), Step::Acquire);
    }
}
