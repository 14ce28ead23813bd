//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it for kube-controller-manager and kube-scheduler:
//! several `keel server`s on one etcd all serve the API, and only the
//! holder of the Lease runs the controllers and the scheduler.
//!
//! A candidate reads the Lease every `retry_period`; it takes it over when
//! the holder has not renewed it for `leaseDurationSeconds`. The holder
//! renews every `retry_period` and, when it has not managed to for
//! `renew_deadline`, stops its controllers before anyone else may take over
//! (`renew_deadline` < `lease_duration`). Writes are compare-and-swap on
//! the Lease's resourceVersion, so two candidates never both win.
//!
//! Expiry is judged, as client-go does, from when this process saw the
//! Lease change (its own clock), and also from the Lease's `renewTime`, so
//! a killed holder is replaced `lease_duration` after its last renewal
//! rather than up to a poll later. The second rule assumes the servers'
//! clocks agree to within `lease_duration - renew_deadline`.
//!
//! Everything the leader runs lives on a runtime of its own ([`Term`]):
//! losing the Lease shuts it down with every task the controllers spawned.

use std::time::{Duration, Instant};

use keel_api::Loopback;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::objects::meta_str;

fn leases() -> &'static Resource {
    resources::find("coordination.k8s.io", "v1", "leases").expect("leases are served")
}

/// Settings of one election (kube-controller-manager's `--leader-elect-*`).
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// Who this process is in `holderIdentity` (unique per process).
    pub identity: String,
    /// How long others wait after the last renewal (Kubernetes: 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a renewal (10 s).
    pub renew_deadline: Duration,
    /// How often candidates try and the holder renews (2 s).
    pub retry_period: Duration,
}

impl Election {
    /// The Lease `kube-system/keel-controllers` with Kubernetes' timings.
    pub fn new(identity: String) -> Self {
        Election {
            namespace: "kube-system".into(),
            name: crate::MANAGER.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Why these timings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(
                "the retry period must be positive and shorter than the renew deadline".into(),
            );
        }
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return Err("the lease duration is a whole number of seconds".into());
        }
        Ok(())
    }

    /// Campaigns forever: whenever this process holds the Lease, the
    /// [`Term`] made by `start` runs; it is dropped (stopped) when the Lease
    /// is lost. `leading` (if given) follows whether this process leads.
    pub async fn run(
        self,
        api: Loopback,
        mut start: impl FnMut() -> std::io::Result<Term>,
        leading: Option<tokio::sync::watch::Sender<bool>>,
    ) {
        let mut seen = Observed::default();
        loop {
            self.acquire(&api, &mut seen).await;
            tracing::info!(identity = self.identity, lease = self.name, "became leader");
            let term = match start() {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "leader: cannot start the controllers");
                    tokio::time::sleep(self.retry_period).await;
                    continue;
                }
            };
            if let Some(tx) = &leading {
                let _ = tx.send(true);
            }
            self.renew(&api, &mut seen).await;
            drop(term);
            if let Some(tx) = &leading {
                let _ = tx.send(false);
            }
            tracing::warn!(
                identity = self.identity,
                lease = self.name,
                "leader election lost: controllers stopped"
            );
        }
    }

    async fn acquire(&self, api: &Loopback, seen: &mut Observed) {
        loop {
            let wait = match self.try_acquire_or_renew(api, seen).await {
                Ok(Attempt::Held) => return,
                Ok(Attempt::Other { expires_in }) => expires_in.min(self.retry_period),
                Err(e) => {
                    tracing::debug!(error = %e, "leader election: lease not acquired");
                    self.retry_period
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }

    /// Renews until it fails for `renew_deadline` or another holder shows.
    async fn renew(&self, api: &Loopback, seen: &mut Observed) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            loop {
                let left = self.renew_deadline.saturating_sub(renewed.elapsed());
                if left.is_zero() {
                    return;
                }
                let attempt = Instant::now();
                match tokio::time::timeout(left, self.try_acquire_or_renew(api, seen)).await {
                    Ok(Ok(Attempt::Held)) => {
                        renewed = attempt;
                        break;
                    }
                    Ok(Ok(Attempt::Other { .. })) => return,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "leader election: renewal failed");
                    }
                    Err(_) => {}
                }
                let left = self.renew_deadline.saturating_sub(renewed.elapsed());
                tokio::time::sleep(self.retry_period.min(left)).await;
            }
        }
    }

    async fn try_acquire_or_renew(
        &self,
        api: &Loopback,
        seen: &mut Observed,
    ) -> Result<Attempt, keel_api::ClientError> {
        let now = jiff::Timestamp::now();
        let ns = Some(self.namespace.as_str());
        let Some(cur) = api.get(leases(), ns, &self.name).await? else {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self.spec(now, None),
            });
            return match api.create(leases(), lease, crate::MANAGER).await {
                Ok(_) => Ok(Attempt::Held),
                // Another candidate created it first.
                Err(e) if e.is_conflict() => Ok(Attempt::Other {
                    expires_in: self.retry_period,
                }),
                Err(e) => Err(e),
            };
        };
        let spec = cur.get("spec").cloned().unwrap_or(Value::Null);
        if seen.spec != spec {
            seen.spec = spec.clone();
            seen.at = Instant::now();
        }
        let holder = spec
            .get("holderIdentity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !holder.is_empty() && holder != self.identity {
            let left = expires_in(&spec, seen.at, now);
            if !left.is_zero() {
                return Ok(Attempt::Other { expires_in: left });
            }
            tracing::info!(
                previous = holder,
                identity = self.identity,
                "leader election: the lease expired, taking it over"
            );
        }
        let new_spec = self.spec(now, Some(&spec));
        let rv = meta_str(&cur, "resourceVersion").to_string();
        let written = api
            .modify(leases(), ns, &self.name, None, crate::MANAGER, |c| {
                // Compare-and-swap: a Lease written since it was read means
                // someone else moved first.
                (meta_str(c, "resourceVersion") == rv).then(|| {
                    let mut v = c.clone();
                    v["spec"] = new_spec.clone();
                    v
                })
            })
            .await?;
        Ok(match written {
            Some(v) => {
                seen.spec = v.get("spec").cloned().unwrap_or(Value::Null);
                seen.at = Instant::now();
                Attempt::Held
            }
            None => Attempt::Other {
                expires_in: self.retry_period,
            },
        })
    }

    /// The Lease's spec renewed by this process at `now`: a holder keeps
    /// its `acquireTime`; a new one counts a transition over `old`.
    fn spec(&self, now: jiff::Timestamp, old: Option<&Value>) -> Value {
        let stamp = micro_time(now);
        let transitions = old
            .and_then(|s| s.get("leaseTransitions"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let (acquired, transitions) = match old {
            Some(s) if s.get("holderIdentity").and_then(Value::as_str) == Some(&self.identity) => (
                s.get("acquireTime").cloned().unwrap_or(json!(stamp)),
                transitions,
            ),
            Some(_) => (json!(stamp), transitions + 1),
            None => (json!(stamp), 0),
        };
        json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration.as_secs(),
            "acquireTime": acquired,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        })
    }
}

/// How long until another holder's Lease expires (zero: it has).
fn expires_in(spec: &Value, observed: Instant, now: jiff::Timestamp) -> Duration {
    let duration = Duration::from_secs(
        spec.get("leaseDurationSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(15),
    );
    let by_observation = duration.saturating_sub(observed.elapsed());
    let by_renew_time = spec
        .get("renewTime")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .and_then(|t| {
            let age = now.duration_since(t);
            // A renewal stamped in the future (clock skew) proves nothing.
            (!age.is_negative()).then(|| duration.saturating_sub(age.unsigned_abs()))
        })
        .unwrap_or(by_observation);
    by_observation.min(by_renew_time)
}

fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The holder's spec as this process last saw it change, and when.
struct Observed {
    spec: Value,
    at: Instant,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            spec: Value::Null,
            at: Instant::now(),
        }
    }
}

enum Attempt {
    /// This process holds the Lease (acquired or renewed).
    Held,
    /// Someone else does, for at most this long without renewing.
    Other { expires_in: Duration },
}

/// What the leader runs: a runtime of its own; dropping it stops every task
/// on it, including those its tasks spawned.
pub struct Term {
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term").finish_non_exhaustive()
    }
}

impl Term {
    /// A runtime of `threads` workers on which `spawn` starts the work.
    pub fn start(threads: usize, spawn: impl FnOnce()) -> std::io::Result<Term> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("keel-leader")
            .enable_all()
            .build()?;
        {
            let _in = rt.enter();
            spawn();
        }
        Ok(Term { rt: Some(rt) })
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_renewal_or_the_observation_whichever_is_older() {
        let now: jiff::Timestamp = "2026-12-07T10:00:20Z".parse().unwrap();
        let spec = json!({"leaseDurationSeconds": 15, "renewTime": "2026-12-07T10:00:10.000000Z"});
        // Seen just now, renewed 10 s ago: 5 s left.
        let left = expires_in(&spec, Instant::now(), now);
        assert!(
            left <= Duration::from_secs(5) && left > Duration::from_secs(4),
            "{left:?}"
        );
        // Renewed 20 s ago: expired.
        let old = json!({"leaseDurationSeconds": 15, "renewTime": "2026-12-07T10:00:00Z"});
        assert!(expires_in(&old, Instant::now(), now).is_zero());
        // A renewTime in the future (skew) falls back to the observation.
        let future = json!({"leaseDurationSeconds": 15, "renewTime": "2026-12-07T11:00:00Z"});
        assert!(expires_in(&future, Instant::now(), now) > Duration::from_secs(14));
    }

    #[test]
    fn timings_are_checked() {
        let mut e = Election::new("a".into());
        assert!(e.check().is_ok());
        e.renew_deadline = Duration::from_secs(15);
        assert!(e.check().is_err());
        e.renew_deadline = Duration::from_secs(10);
        e.retry_period = Duration::from_secs(10);
        assert!(e.check().is_err());
    }

    #[test]
    fn micro_time_has_six_fraction_digits() {
        let t: jiff::Timestamp = "2026-12-07T10:00:00.5Z".parse().unwrap();
        assert_eq!(micro_time(t), "2026-12-07T10:00:00.500000Z");
    }
}
