//! The `CronJob` controller, with kube-controller-manager's behaviour (its
//! second version, `cronjob_controllerv2`):
//!
//! - at each time `spec.schedule` names (in `spec.timeZone`, an IANA zone,
//!   else UTC) a Job is made from `spec.jobTemplate`, named
//!   `<cronjob>-<minutes since the epoch>` and annotated with
//!   `batch.kubernetes.io/cronjob-scheduled-timestamp`; only the most recent
//!   missed time is started, and none older than `startingDeadlineSeconds`;
//!   more than 100 missed times are reported (`TooManyMissedTimes`);
//! - `concurrencyPolicy`: `Allow` runs Jobs side by side, `Forbid` skips a
//!   time while one is active, `Replace` deletes the active ones first;
//! - finished Jobs beyond `successfulJobsHistoryLimit` /
//!   `failedJobsHistoryLimit` are deleted, oldest first;
//! - `suspend` stops new Jobs; status: `active`, `lastScheduleTime`,
//!   `lastSuccessfulTime`.
//!
//! Time comes from a [`Clock`], so tests move it.

use std::sync::Arc;
use std::time::Duration;

use keel_api::resources::{self, Resource};
use keel_api::{ClientError, DeleteOptions};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, split_key};
use crate::job::jobs;
use crate::objects::{
    controller_of, controller_ref, controller_uid, is_deleting, meta_str, parse_time, timestamp,
};
use keel_api::cron::Schedule;

/// More missed start times than this are reported.
const MISSED_LIMIT: u32 = 100;
/// How often a fake clock is looked at.
const FAKE_POLL: Duration = Duration::from_millis(200);

pub(crate) fn cronjobs() -> &'static Resource {
    resources::find("batch", "v1", "cronjobs").expect("cronjobs are served")
}

/// The `CronJob` controller (see the module docs).
#[derive(Debug)]
pub struct CronJobController {
    events: Recorder,
    clock: Arc<dyn Clock>,
}

impl CronJobController {
    pub fn new(api: &keel_api::Loopback, clock: Arc<dyn Clock>) -> Self {
        CronJobController {
            events: Recorder::new(api.clone(), "cronjob-controller"),
            clock,
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

fn finished(job: &Value) -> Option<&'static str> {
    let conds = job.pointer("/status/conditions")?.as_array()?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conds
            .iter()
            .any(|c| c["type"] == *t && c["status"] == "True")
    })
}

fn job_ref(job: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": meta_str(job, "name"),
        "namespace": meta_str(job, "namespace"), "uid": meta_str(job, "uid")})
}

fn secs(t: jiff::Timestamp) -> i64 {
    t.as_second()
}

fn ts_of(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl Reconciler for CronJobController {
    const NAME: &'static str = "cronjob";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![cronjobs(), jobs()]
    }

    fn keys_for(&self, _: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, cronjobs()) {
            queue.add(key_of(obj));
        } else if let Some(c) = controller_ref(obj).filter(|c| c["kind"] == "CronJob") {
            queue.add(format!(
                "{}/{}",
                meta_str(obj, "namespace"),
                c["name"].as_str().unwrap_or_default()
            ));
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(cj) = cache.get(cronjobs(), ns, name).cloned() else {
            return Ok(None);
        };
        let now = self.clock.now();
        let uid = meta_str(&cj, "uid").to_string();
        let mut owned: Vec<Value> = cache
            .list(jobs(), ns)
            .filter(|j| controller_uid(j, "CronJob") == Some(uid.as_str()))
            .cloned()
            .collect();
        owned.sort_by_key(start_of);
        let mut status = cj.get("status").cloned().unwrap_or_else(|| json!({}));
        if !status.is_object() {
            status = json!({});
        }
        let was_active: Vec<String> = status["active"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["uid"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut last_ok = parse_time(status.get("lastSuccessfulTime"));
        for j in &owned {
            let Some(how) = finished(j) else { continue };
            if was_active.iter().any(|u| u == meta_str(j, "uid")) {
                self.events.normal(
                    cronjobs(),
                    &cj,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {how}",
                        meta_str(j, "name")
                    ),
                );
            }
            if how == "Complete"
                && let Some(t) = parse_time(j.pointer("/status/completionTime"))
                && last_ok.is_none_or(|l| t > l)
            {
                last_ok = Some(t);
            }
        }
        if let Some(t) = last_ok {
            status["lastSuccessfulTime"] = json!(timestamp(t));
        }
        self.clean_history(cache, &cj, &mut owned).await?;
        let mut again = None;
        if !is_deleting(&cj) && cj.pointer("/spec/suspend").and_then(Value::as_bool) != Some(true) {
            again = self
                .schedule(cache, &cj, &mut owned, &mut status, now)
                .await?;
        }
        let active: Vec<Value> = owned
            .iter()
            .filter(|j| finished(j).is_none() && !is_deleting(j))
            .map(job_ref)
            .collect();
        if active.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("active");
            }
        } else {
            status["active"] = json!(active);
        }
        if cj.get("status") != Some(&status) {
            let r = cache
                .modify(cronjobs(), ns, name, Some("status"), |cur| {
                    (meta_str(cur, "uid") == uid && cur.get("status") != Some(&status)).then(|| {
                        let mut v = cur.clone();
                        v["status"] = status.clone();
                        v
                    })
                })
                .await;
            match r {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        if self.clock.is_fake() {
            return Ok(Some(FAKE_POLL));
        }
        Ok(again)
    }
}

fn start_of(j: &Value) -> String {
    j.pointer("/status/startTime")
        .and_then(Value::as_str)
        .unwrap_or_else(|| meta_str(j, "creationTimestamp"))
        .to_string()
}

impl CronJobController {
    /// Starts the Job of the most recent scheduled time when due; returns
    /// when to look again.
    async fn schedule(
        &self,
        cache: &mut Cache,
        cj: &Value,
        owned: &mut Vec<Value>,
        status: &mut Value,
        now: jiff::Timestamp,
    ) -> Result<Option<Duration>, ClientError> {
        let tz_name = cj.pointer("/spec/timeZone").and_then(Value::as_str);
        let Ok(tz) = tz_name.map_or(Ok(chrono_tz::UTC), str::parse::<chrono_tz::Tz>) else {
            let n = tz_name.unwrap_or_default();
            self.events.warning(
                cronjobs(),
                cj,
                "UnknownTimeZone",
                format!("invalid timeZone: \"{n}\": unknown time zone {n}"),
            );
            return Ok(None);
        };
        let spec = cj
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sched: Schedule = match spec.parse() {
            Ok(s) => s,
            Err(e) => {
                self.events.warning(
                    cronjobs(),
                    cj,
                    "UnparseableSchedule",
                    format!("unparseable schedule: \"{spec}\" : {e}"),
                );
                return Ok(None);
            }
        };
        let deadline = cj
            .pointer("/spec/startingDeadlineSeconds")
            .and_then(Value::as_i64);
        let mut earliest = parse_time(status.get("lastScheduleTime"))
            .or_else(|| parse_time(cj.pointer("/metadata/creationTimestamp")))
            .map_or(secs(now), secs);
        if let Some(d) = deadline {
            earliest = earliest.max(secs(now) - d);
        }
        let next_in = |from: i64| {
            sched.next_after(from, tz).map(|n| {
                Duration::from_secs(u64::try_from(n - secs(now)).unwrap_or(0))
                    + Duration::from_millis(100)
            })
        };
        let (recent, missed) = sched.most_recent(earliest, secs(now), tz, MISSED_LIMIT);
        if missed > MISSED_LIMIT {
            self.events.warning(
                cronjobs(),
                cj,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            );
        }
        let Some(at) = recent else {
            return Ok(next_in(secs(now)));
        };
        if let Some(d) = deadline
            && at + d < secs(now)
        {
            self.events.warning(
                cronjobs(),
                cj,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    timestamp(ts_of(at))
                ),
            );
            return Ok(next_in(secs(now)));
        }
        let job_name = format!("{}-{}", meta_str(cj, "name"), at / 60);
        if owned.iter().any(|j| meta_str(j, "name") == job_name) {
            return Ok(next_in(secs(now)));
        }
        let active: Vec<Value> = owned
            .iter()
            .filter(|j| finished(j).is_none() && !is_deleting(j))
            .cloned()
            .collect();
        match cj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
        {
            Some("Forbid") if !active.is_empty() => {
                self.events.normal(
                    cronjobs(),
                    cj,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                return Ok(next_in(secs(now)));
            }
            Some("Replace") => {
                for j in &active {
                    self.delete_job(cache, cj, j).await?;
                }
                let gone: Vec<&str> = active.iter().map(|j| meta_str(j, "uid")).collect();
                owned.retain(|j| !gone.contains(&meta_str(j, "uid")));
            }
            _ => {}
        }
        let job = Self::job_for(cj, &job_name, at, tz);
        match cache.create(jobs(), job).await {
            Ok(made) => {
                self.events.normal(
                    cronjobs(),
                    cj,
                    "SuccessfulCreate",
                    format!("Created job {job_name}"),
                );
                owned.push(made);
            }
            Err(e) if e.code == 409 => {}
            Err(e) => {
                self.events.warning(
                    cronjobs(),
                    cj,
                    "FailedCreate",
                    format!("Error creating job: {}", e.message),
                );
                return Err(e);
            }
        }
        status["lastScheduleTime"] = json!(timestamp(ts_of(at)));
        Ok(next_in(secs(now)))
    }

    /// The Job for the time `at` (unix seconds).
    fn job_for(cj: &Value, name: &str, at: i64, tz: chrono_tz::Tz) -> Value {
        let t = cj
            .pointer("/spec/jobTemplate")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut annotations = t
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let local = chrono::DateTime::from_timestamp(at, 0)
            .map(|d| {
                d.with_timezone(&tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default();
        annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = json!(local);
        let mut meta = json!({
            "name": name,
            "namespace": meta_str(cj, "namespace"),
            "annotations": annotations,
            "ownerReferences": [controller_of(cronjobs(), cj)],
        });
        if let Some(l) = t.pointer("/metadata/labels") {
            meta["labels"] = l.clone();
        }
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": t.get("spec").cloned().unwrap_or_else(|| json!({}))})
    }

    async fn delete_job(
        &self,
        cache: &mut Cache,
        cj: &Value,
        j: &Value,
    ) -> Result<(), ClientError> {
        let opts = DeleteOptions {
            propagation: Some("Background".into()),
            precondition_uid: Some(meta_str(j, "uid").to_string()),
            ..DeleteOptions::default()
        };
        match cache
            .api
            .delete(
                jobs(),
                Some(meta_str(j, "namespace")),
                meta_str(j, "name"),
                &opts,
            )
            .await
        {
            Ok(_) => {
                self.events.normal(
                    cronjobs(),
                    cj,
                    "SuccessfulDelete",
                    format!("Deleted job {}", meta_str(j, "name")),
                );
                Ok(())
            }
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn clean_history(
        &self,
        cache: &mut Cache,
        cj: &Value,
        owned: &mut Vec<Value>,
    ) -> Result<(), ClientError> {
        let mut gone = Vec::new();
        for (how, field) in [
            ("Complete", "/spec/successfulJobsHistoryLimit"),
            ("Failed", "/spec/failedJobsHistoryLimit"),
        ] {
            let Some(limit) = cj.pointer(field).and_then(Value::as_i64) else {
                continue;
            };
            let done: Vec<&Value> = owned
                .iter()
                .filter(|j| finished(j) == Some(how) && !is_deleting(j))
                .collect();
            let extra = done
                .len()
                .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
            // `owned` is sorted oldest first.
            gone.extend(done.into_iter().take(extra).cloned());
        }
        for j in &gone {
            self.delete_job(cache, cj, j).await?;
        }
        let uids: Vec<&str> = gone.iter().map(|j| meta_str(j, "uid")).collect();
        owned.retain(|j| !uids.contains(&meta_str(j, "uid")));
        Ok(())
    }
}
