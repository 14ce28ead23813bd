//! The Job controller (batch/v1), with kube-controller-manager's behaviour:
//!
//! - pods are made from `spec.template` until `completions` have succeeded,
//!   never more than `parallelism` active at once; without `completions` (a
//!   work queue) none are added after the first success. `Indexed` Jobs give
//!   each pod an index (annotation and label
//!   `batch.kubernetes.io/job-completion-index`, hostname `<job>-<index>`,
//!   `JOB_COMPLETION_INDEX` in the environment) and track
//!   `status.completedIndexes`;
//! - every pod carries the `batch.kubernetes.io/job-tracking` finalizer,
//!   removed once the pod's end is recorded: a finished pod goes first into
//!   `status.uncountedTerminatedPods`, then loses the finalizer, then moves
//!   into `succeeded`/`failed`, so no pod is counted twice or lost even if
//!   the controller stops in between (upstream's protocol);
//! - failed pods are replaced after an exponential back-off (10 s doubled per
//!   failure since the last success, at most 10 min); past `backoffLimit`
//!   (or `backoffLimitPerIndex` per index), past `activeDeadlineSeconds`, or
//!   on a `podFailurePolicy` `FailJob` rule the Job gets `FailureTarget`,
//!   its active pods are deleted, and it ends `Failed` with upstream's
//!   reasons (`BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`,
//!   `FailedIndexes`, `MaxFailedIndexesExceeded`); `Ignore` rules do not
//!   count a failure, `FailIndex` fails the pod's index;
//! - success: `SuccessCriteriaMet`, then `Complete` with `completionTime`;
//! - `suspend` deletes the active pods (`Suspended` condition) and resuming
//!   restarts the deadline; `ttlSecondsAfterFinished` deletes a finished Job
//!   (foreground, as the TTL controller does).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use keel_api::resources::{self, Resource};
use keel_api::{ClientError, DeleteOptions};
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{
    controller_of, controller_ref, has_finalizer, int, is_deleting, meta_str, now, parse_time,
    pod_ready, timestamp, without_finalizer,
};
use crate::replicaset::{pods, selector};

/// Keeps a pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of a pod of an `Indexed` Job.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// How many pods of this index failed before (with `backoffLimitPerIndex`).
const INDEX_FAILURES: &str = "batch.kubernetes.io/job-index-failure-count";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_mins(10);
/// Pods created in one pass at most (upstream's burst).
const BURST: usize = 500;

pub(crate) fn jobs() -> &'static Resource {
    resources::find("batch", "v1", "jobs").expect("jobs are served")
}

/// Failures since the last success, for the pod back-off.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    last: jiff::Timestamp,
}

impl Backoff {
    /// Time left before a replacement pod may be created.
    fn remaining(self, t: jiff::Timestamp) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let exp = self.failures.saturating_sub(1).min(16);
        let wait = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
        let passed = t.duration_since(self.last).unsigned_abs();
        wait.saturating_sub(passed)
    }
}

/// The Job controller (see the module docs).
#[derive(Debug)]
pub struct JobController {
    events: Recorder,
    /// Job uid → back-off record (in memory, as upstream's).
    backoff: HashMap<String, Backoff>,
}

impl JobController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        JobController {
            events: Recorder::new(api.clone(), "job-controller"),
            backoff: HashMap::new(),
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

/// What a `podFailurePolicy` decides for a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Count,
    Ignore,
    FailIndex,
    FailJob(String),
}

fn phase(p: &Value) -> &str {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn index_of(p: &Value) -> Option<i64> {
    p.pointer("/metadata/annotations")
        .and_then(|a| a.get(INDEX_KEY))
        .and_then(Value::as_str)?
        .parse()
        .ok()
}

/// A finished pod: `Some(true)` succeeded, `Some(false)` failed. A pod
/// deleted before it ended counts as failed, unless the Job replaces only
/// `Failed` pods (then it counts once it is `Failed`).
fn finished(job: &Value, p: &Value) -> Option<bool> {
    match phase(p) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if is_deleting(p)
            && job
                .pointer("/spec/podReplacementPolicy")
                .and_then(Value::as_str)
                != Some("Failed") =>
        {
            Some(false)
        }
        _ => None,
    }
}

/// Upstream's `matchPodFailurePolicy`: the first rule matching the pod.
fn pod_failure_verdict(job: &Value, p: &Value) -> Verdict {
    let Some(rules) = job
        .pointer("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array)
    else {
        return Verdict::Count;
    };
    let statuses: Vec<&Value> = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|f| p.pointer(&format!("/status/{f}"))?.as_array())
        .flatten()
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let action = rule["action"].as_str().unwrap_or_default();
        let mut why = None;
        if let Some(codes) = rule.get("onExitCodes") {
            let wanted: Vec<i64> = codes["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let only = codes.get("containerName").and_then(Value::as_str);
            let is_in = codes["operator"] == "In";
            why = statuses.iter().find_map(|c| {
                let code = c.pointer("/state/terminated/exitCode")?.as_i64()?;
                let name = c["name"].as_str().unwrap_or_default();
                (code != 0
                    && only.is_none_or(|n| n == name)
                    && wanted.contains(&code) == is_in)
                    .then(|| {
                        format!(
                            "Container {name} for pod {}/{} failed with exit code {code} matching {action} rule at index {i}",
                            meta_str(p, "namespace"),
                            meta_str(p, "name")
                        )
                    })
            });
        }
        if let Some(patterns) = rule.get("onPodConditions").and_then(Value::as_array) {
            let conds = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            why = why.or_else(|| {
                patterns.iter().find_map(|pat| {
                    let status = pat.get("status").and_then(Value::as_str).unwrap_or("True");
                    conds
                        .iter()
                        .any(|c| c["type"] == pat["type"] && c["status"] == status)
                        .then(|| {
                            format!(
                                "Pod {}/{} has condition {} matching {action} rule at index {i}",
                                meta_str(p, "namespace"),
                                meta_str(p, "name"),
                                pat["type"].as_str().unwrap_or_default()
                            )
                        })
                })
            });
        }
        if let Some(why) = why {
            return match action {
                "FailJob" => Verdict::FailJob(why),
                "Ignore" => Verdict::Ignore,
                "FailIndex" => Verdict::FailIndex,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// Index sets as upstream writes them: `1,3-5,7`.
fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Reads `1,3-5`; malformed parts are skipped (the field is the
/// controller's own).
fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                    set.extend(a..=b.min(a.saturating_add(1_000_000)));
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    set.insert(i);
                }
            }
        }
    }
    set
}

fn indexes(status: &Value, field: &str) -> BTreeSet<i64> {
    parse_indexes(status[field].as_str().unwrap_or_default())
}

fn condition<'a>(job: &'a Value, ty: &str) -> Option<&'a Value> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
}

/// Sets condition `ty` in `status` (keeping its transition time when its
/// status does not change).
fn set_condition(status: &mut Value, ty: &str, st: &str, reason: &str, message: &str, t: &str) {
    let conds = status["conditions"].as_array().cloned().unwrap_or_default();
    let old = conds.iter().find(|c| c["type"] == ty);
    if old.is_some_and(|c| c["status"] == st && c["reason"] == reason) {
        return;
    }
    let new = json!({"type": ty, "status": st, "reason": reason, "message": message,
        "lastProbeTime": t, "lastTransitionTime": t});
    let mut out: Vec<Value> = conds.into_iter().filter(|c| c["type"] != ty).collect();
    out.push(new);
    status["conditions"] = Value::Array(out);
}

fn uncounted(status: &Value, which: &str) -> Vec<String> {
    status
        .pointer(&format!("/uncountedTerminatedPods/{which}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A new pod for `job`, with index `index` for an `Indexed` Job.
fn pod_for(job: &Value, index: Option<i64>, index_failures: i64) -> Value {
    let t = job
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let name = meta_str(job, "name");
    let mut meta = json!({
        "generateName": format!("{name}-"),
        "namespace": meta_str(job, "namespace"),
        "ownerReferences": [controller_of(jobs(), job)],
        "labels": t.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        "annotations": t.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
    });
    let mut finalizers: Vec<Value> = t
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    finalizers.push(json!(TRACKING_FINALIZER));
    meta["finalizers"] = json!(finalizers);
    let mut spec = t.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(i) = index {
        meta["generateName"] = json!(format!("{name}-{i}-"));
        meta["annotations"][INDEX_KEY] = json!(i.to_string());
        meta["labels"][INDEX_KEY] = json!(i.to_string());
        if job.pointer("/spec/backoffLimitPerIndex").is_some() {
            meta["annotations"][INDEX_FAILURES] = json!(index_failures.to_string());
        }
        if spec.get("hostname").is_none() {
            spec["hostname"] = json!(format!("{name}-{i}"));
        }
        for list in ["initContainers", "containers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let mut env = c["env"].as_array().cloned().unwrap_or_default();
                if !env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX") {
                    env.push(
                        json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef":
                        {"apiVersion": "v1",
                         "fieldPath": format!("metadata.annotations['{INDEX_KEY}']")}}}),
                    );
                }
                c["env"] = json!(env);
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

impl Reconciler for JobController {
    const NAME: &'static str = "job";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![jobs(), pods()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, jobs()) {
            queue.add(key_of(obj));
            return;
        }
        queue_controller(cache, jobs(), obj, queue);
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(job) = cache.get(jobs(), ns, name).cloned() else {
            release_orphans(cache, ns, name).await?;
            return Ok(None);
        };
        let Some(sel) = selector(&job) else {
            return Ok(None);
        };
        let candidates: Vec<Value> = cache.list(pods(), ns).cloned().collect();
        let owned = cache.claim(jobs(), &job, pods(), &sel, candidates).await?;
        if is_deleting(&job) {
            for p in &owned {
                drop_finalizer(cache, p).await?;
            }
            self.backoff.remove(meta_str(&job, "uid"));
            return Ok(None);
        }
        let mut sync = Sync::new(self, job, owned);
        sync.run(cache).await
    }
}

/// Pods a deleted Job left with its finalizer.
async fn release_orphans(cache: &mut Cache, ns: &str, job: &str) -> Result<(), ClientError> {
    let left: Vec<Value> = cache
        .list(pods(), ns)
        .filter(|p| {
            has_finalizer(p, TRACKING_FINALIZER)
                && controller_ref(p).is_some_and(|o| o["kind"] == "Job" && o["name"] == job)
        })
        .cloned()
        .collect();
    for p in &left {
        drop_finalizer(cache, p).await?;
    }
    Ok(())
}

async fn drop_finalizer(cache: &mut Cache, p: &Value) -> Result<(), ClientError> {
    if !has_finalizer(p, TRACKING_FINALIZER) {
        return Ok(());
    }
    let uid = meta_str(p, "uid").to_string();
    let r = cache
        .modify(
            pods(),
            meta_str(p, "namespace"),
            meta_str(p, "name"),
            None,
            |cur| {
                let mut v = (meta_str(cur, "uid") == uid)
                    .then(|| without_finalizer(cur, TRACKING_FINALIZER))
                    .flatten()?;
                // No finalizers is no list, as the API server stores it.
                if v["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                    && let Some(m) = v["metadata"].as_object_mut()
                {
                    m.remove("finalizers");
                }
                Some(v)
            },
        )
        .await;
    match r {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// One reconcile of one Job.
struct Sync<'c> {
    ctl: &'c mut JobController,
    job: Value,
    pods: Vec<Value>,
    status: Value,
    now: jiff::Timestamp,
    again: Option<Duration>,
}

impl<'c> Sync<'c> {
    fn new(ctl: &'c mut JobController, job: Value, pods: Vec<Value>) -> Self {
        let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
        if !status.is_object() {
            status = json!({});
        }
        Sync {
            ctl,
            job,
            pods,
            status,
            now: now(),
            again: None,
        }
    }

    fn indexed(&self) -> bool {
        self.job
            .pointer("/spec/completionMode")
            .and_then(Value::as_str)
            == Some("Indexed")
    }

    fn completions(&self) -> Option<i64> {
        self.job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
    }

    fn wake_in(&mut self, d: Duration) {
        self.again = Some(self.again.map_or(d, |a| a.min(d)));
    }

    fn uid(&self) -> String {
        meta_str(&self.job, "uid").to_string()
    }

    async fn run(&mut self, cache: &mut Cache) -> Result<Option<Duration>, ClientError> {
        let ts = timestamp(self.now);
        let done = condition(&self.job, "Complete").or_else(|| condition(&self.job, "Failed"));
        if let Some(c) = done.cloned() {
            // Finished: pods go, counts settle, then the TTL.
            self.account(cache).await?;
            self.delete_active(cache).await?;
            self.write_status(cache).await?;
            return self.ttl(cache, &c).await;
        }
        self.account(cache).await?;
        let view = self.status_view();
        let target = condition(&view, "FailureTarget")
            .or_else(|| condition(&view, "SuccessCriteriaMet"))
            .is_some();
        if !target {
            self.judge();
        }
        let ending = ["FailureTarget", "SuccessCriteriaMet"]
            .iter()
            .find_map(|t| {
                self.status["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == *t && c["status"] == "True")
                    .cloned()
            });
        if let Some(end) = ending {
            self.delete_active(cache).await?;
            let left = self.pods.iter().any(|p| {
                has_finalizer(p, TRACKING_FINALIZER) && finished(&self.job, p).is_none()
                    || is_deleting(p) && has_finalizer(p, TRACKING_FINALIZER)
            });
            self.account(cache).await?;
            let uncounted_left = !uncounted(&self.status, "succeeded").is_empty()
                || !uncounted(&self.status, "failed").is_empty();
            if !left && !uncounted_left {
                let (reason, message) = (
                    end["reason"].as_str().unwrap_or_default().to_string(),
                    end["message"].as_str().unwrap_or_default().to_string(),
                );
                if end["type"] == "SuccessCriteriaMet" {
                    set_condition(&mut self.status, "Complete", "True", &reason, &message, &ts);
                    self.status["completionTime"] = json!(ts);
                    self.ctl
                        .events
                        .normal(jobs(), &self.job, "Completed", "Job completed".into());
                } else {
                    set_condition(&mut self.status, "Failed", "True", &reason, &message, &ts);
                }
                self.ctl.backoff.remove(&self.uid());
            } else {
                self.wake_in(Duration::from_millis(500));
            }
            self.write_status(cache).await?;
            return Ok(self.again);
        }
        self.manage(cache).await?;
        self.write_status(cache).await?;
        Ok(self.again)
    }

    /// Records finished pods: into `uncountedTerminatedPods`, finalizers
    /// off, then into the counters.
    async fn account(&mut self, cache: &mut Cache) -> Result<(), ClientError> {
        let mut unc_ok = uncounted(&self.status, "succeeded");
        let mut unc_failed = uncounted(&self.status, "failed");
        let mut completed =
            parse_indexes(self.status["completedIndexes"].as_str().unwrap_or_default());
        let mut failed_ix = indexes(&self.status, "failedIndexes");
        let per_index = self
            .job
            .pointer("/spec/backoffLimitPerIndex")
            .and_then(Value::as_i64);
        let mut release = Vec::new();
        let mut changed = false;
        let ts = timestamp(self.now);
        for p in &self.pods {
            let uid = meta_str(p, "uid").to_string();
            if !has_finalizer(p, TRACKING_FINALIZER)
                || unc_ok.contains(&uid)
                || unc_failed.contains(&uid)
            {
                continue;
            }
            let Some(ok) = finished(&self.job, p) else {
                continue;
            };
            release.push(p.clone());
            changed = true;
            let b = self.ctl.backoff.entry(self.uid()).or_insert(Backoff {
                failures: 0,
                last: self.now,
            });
            if ok {
                b.failures = 0;
                if let Some(i) = index_of(p).filter(|_| self.indexed()) {
                    completed.insert(i);
                }
                unc_ok.push(uid);
                continue;
            }
            let verdict = pod_failure_verdict(&self.job, p);
            if verdict == Verdict::Ignore {
                continue;
            }
            b.failures += 1;
            b.last = self.now;
            if let Verdict::FailJob(why) = &verdict
                && condition(&self.job, "FailureTarget").is_none()
            {
                set_condition(
                    &mut self.status,
                    "FailureTarget",
                    "True",
                    "PodFailurePolicy",
                    why,
                    &ts,
                );
                self.ctl
                    .events
                    .warning(jobs(), &self.job, "PodFailurePolicy", why.clone());
            }
            if let (Some(limit), Some(i)) = (per_index, index_of(p)) {
                let before = p
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(INDEX_FAILURES))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0);
                if verdict == Verdict::FailIndex || before + 1 > limit {
                    failed_ix.insert(i);
                }
            } else if verdict == Verdict::FailIndex
                && let Some(i) = index_of(p)
            {
                failed_ix.insert(i);
            }
            unc_failed.push(uid);
        }
        // Deleted pods that were never running may also hold the finalizer.
        for p in &self.pods {
            if is_deleting(p) && finished(&self.job, p).is_none() {
                release.push(p.clone());
            }
        }
        if changed {
            self.status["uncountedTerminatedPods"] =
                json!({"succeeded": unc_ok, "failed": unc_failed});
            if self.indexed() {
                self.status["completedIndexes"] = json!(format_indexes(&completed));
                if per_index.is_some() {
                    self.status["failedIndexes"] = json!(format_indexes(&failed_ix));
                }
            }
            self.write_status(cache).await?;
        }
        for p in &release {
            drop_finalizer(cache, p).await?;
        }
        // Finalizers are off: move the uncounted into the counters.
        let still = |uid: &String| {
            cache
                .list(pods(), meta_str(&self.job, "namespace"))
                .any(|p| meta_str(p, "uid") == uid && has_finalizer(p, TRACKING_FINALIZER))
        };
        let (ok_done, ok_left): (Vec<String>, Vec<String>) =
            unc_ok.into_iter().partition(|u| !still(u));
        let (failed_done, failed_left): (Vec<String>, Vec<String>) =
            unc_failed.into_iter().partition(|u| !still(u));
        if !ok_done.is_empty() || !failed_done.is_empty() {
            let succeeded = if self.indexed() {
                i64::try_from(completed.len()).unwrap_or(i64::MAX)
            } else {
                int(&self.status, "/succeeded") + i64::try_from(ok_done.len()).unwrap_or(0)
            };
            self.status["succeeded"] = json!(succeeded);
            self.status["failed"] =
                json!(int(&self.status, "/failed") + i64::try_from(failed_done.len()).unwrap_or(0));
        }
        self.status["uncountedTerminatedPods"] = json!({});
        if !ok_left.is_empty() {
            self.status["uncountedTerminatedPods"]["succeeded"] = json!(ok_left);
        }
        if !failed_left.is_empty() {
            self.status["uncountedTerminatedPods"]["failed"] = json!(failed_left);
        }
        // The pods as they are now (finalizers removed).
        self.refresh(cache);
        Ok(())
    }

    /// The Job's pods as the cache now holds them (gone ones dropped).
    fn refresh(&mut self, cache: &Cache) {
        let ns = meta_str(&self.job, "namespace").to_string();
        let uids: Vec<String> = self
            .pods
            .iter()
            .map(|p| meta_str(p, "uid").to_string())
            .collect();
        self.pods = cache
            .list(pods(), &ns)
            .filter(|p| uids.iter().any(|u| u == meta_str(p, "uid")))
            .cloned()
            .collect();
    }

    fn active(&self) -> impl Iterator<Item = &Value> {
        self.pods
            .iter()
            .filter(|p| !is_deleting(p) && !matches!(phase(p), "Succeeded" | "Failed"))
    }

    /// Decides whether the Job has failed or succeeded (the `*Target`
    /// conditions).
    fn judge(&mut self) {
        if condition(&self.status_view(), "FailureTarget").is_some() {
            return;
        }
        let ts = timestamp(self.now);
        match self.outcome() {
            Some(Err((reason, message))) => {
                set_condition(
                    &mut self.status,
                    "FailureTarget",
                    "True",
                    reason,
                    message,
                    &ts,
                );
                self.ctl
                    .events
                    .warning(jobs(), &self.job, reason, message.to_string());
            }
            Some(Ok(())) => set_condition(
                &mut self.status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &ts,
            ),
            None => {}
        }
    }

    /// `Ok` when the Job succeeded, `Err((reason, message))` when it failed.
    #[allow(clippy::type_complexity)]
    fn outcome(&mut self) -> Option<Result<(), (&'static str, &'static str)>> {
        let failed = int(&self.status, "/failed")
            + i64::try_from(uncounted(&self.status, "failed").len()).unwrap_or(0);
        let succeeded = int(&self.status, "/succeeded")
            + i64::try_from(uncounted(&self.status, "succeeded").len()).unwrap_or(0);
        let per_index = self.job.pointer("/spec/backoffLimitPerIndex").is_some();
        if !per_index && failed > int(&self.job, "/spec/backoffLimit") {
            return Some(Err((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )));
        }
        if let Some(deadline) = self
            .job
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            && let Some(start) = parse_time(self.status.get("startTime"))
        {
            let left = start.as_second() + deadline - self.now.as_second();
            if left <= 0 {
                return Some(Err((
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )));
            }
            self.wake_in(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        }
        if self.indexed() {
            let completions = self.completions().unwrap_or(0);
            let completed = indexes(&self.status, "completedIndexes");
            let failed_ix = indexes(&self.status, "failedIndexes");
            if let Some(max) = self
                .job
                .pointer("/spec/maxFailedIndexes")
                .and_then(Value::as_i64)
                && i64::try_from(failed_ix.len()).unwrap_or(0) > max
            {
                return Some(Err((
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                )));
            }
            let settled = i64::try_from(completed.union(&failed_ix).count()).unwrap_or(0);
            if settled >= completions && !failed_ix.is_empty() {
                return Some(Err(("FailedIndexes", "Job has failed indexes")));
            }
            return (i64::try_from(completed.len()).unwrap_or(0) >= completions).then_some(Ok(()));
        }
        let complete = match self.completions() {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && self.active().next().is_none(),
        };
        complete.then_some(Ok(()))
    }

    fn status_view(&self) -> Value {
        json!({"status": self.status})
    }

    async fn delete_active(&mut self, cache: &mut Cache) -> Result<(), ClientError> {
        let active: Vec<Value> = self.active().cloned().collect();
        self.delete_pods(cache, &active).await
    }

    async fn delete_pods(&mut self, cache: &mut Cache, list: &[Value]) -> Result<(), ClientError> {
        for p in list {
            let (ns, pname, uid) = (
                meta_str(p, "namespace").to_string(),
                meta_str(p, "name").to_string(),
                meta_str(p, "uid").to_string(),
            );
            cache.delete(pods(), &ns, &pname, &uid).await?;
            self.ctl.events.normal(
                jobs(),
                &self.job,
                "SuccessfulDelete",
                format!("Deleted pod: {pname}"),
            );
        }
        self.refresh(cache);
        Ok(())
    }

    /// Creates or deletes pods towards `parallelism`, handles `suspend`.
    async fn manage(&mut self, cache: &mut Cache) -> Result<(), ClientError> {
        let ts = timestamp(self.now);
        let suspended = self.job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        if suspended {
            self.delete_active(cache).await?;
            if condition(&self.status_view(), "Suspended").is_none() {
                set_condition(
                    &mut self.status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &ts,
                );
                self.ctl
                    .events
                    .normal(jobs(), &self.job, "Suspended", "Job suspended".into());
            }
            if let Some(m) = self.status.as_object_mut() {
                m.remove("startTime");
            }
            return Ok(());
        }
        if condition(&self.status_view(), "Suspended").is_some() {
            set_condition(
                &mut self.status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &ts,
            );
            self.ctl
                .events
                .normal(jobs(), &self.job, "Resumed", "Job resumed".into());
            if let Some(m) = self.status.as_object_mut() {
                m.remove("startTime");
            }
        }
        if self.status.get("startTime").is_none() {
            self.status["startTime"] = json!(ts);
            if let Some(d) = self
                .job
                .pointer("/spec/activeDeadlineSeconds")
                .and_then(Value::as_i64)
            {
                self.wake_in(Duration::from_secs(u64::try_from(d).unwrap_or(0)));
            }
        }
        let parallelism = usize::try_from(int(&self.job, "/spec/parallelism")).unwrap_or(0);
        let active: Vec<Value> = self.active().cloned().collect();
        // What to create: indexes (Indexed) or a count.
        let mut create: Vec<(Option<i64>, i64)> = Vec::new();
        let mut excess: Vec<Value> = Vec::new();
        if self.indexed() {
            let completed = indexes(&self.status, "completedIndexes");
            let failed_ix = indexes(&self.status, "failedIndexes");
            let mut held = BTreeSet::new();
            for p in &active {
                match index_of(p) {
                    Some(i)
                        if !completed.contains(&i) && !failed_ix.contains(&i) && held.insert(i) => {
                    }
                    _ => excess.push(p.clone()),
                }
            }
            let room = parallelism.saturating_sub(held.len());
            let completions = self.completions().unwrap_or(0);
            for i in (0..completions)
                .filter(|i| !completed.contains(i) && !held.contains(i) && !failed_ix.contains(i))
                .take(room.min(BURST))
            {
                create.push((Some(i), self.index_failures(i)));
            }
        } else {
            let succeeded = int(&self.status, "/succeeded")
                + i64::try_from(uncounted(&self.status, "succeeded").len()).unwrap_or(0);
            let want = match self.completions() {
                Some(c) => usize::try_from((c - succeeded).max(0))
                    .unwrap_or(0)
                    .min(parallelism),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            if active.len() > want {
                // Newest first, as upstream picks the pods to delete.
                let mut a = active.clone();
                a.sort_by(|x, y| {
                    meta_str(y, "creationTimestamp").cmp(meta_str(x, "creationTimestamp"))
                });
                excess.extend(a.into_iter().take(active.len() - want));
            }
            for _ in 0..want.saturating_sub(active.len()).min(BURST) {
                create.push((None, 0));
            }
        }
        if !excess.is_empty() {
            self.delete_pods(cache, &excess).await?;
        }
        if create.is_empty() {
            return Ok(());
        }
        if let Some(b) = self.ctl.backoff.get(&self.uid()) {
            let left = b.remaining(self.now);
            if !left.is_zero() {
                self.wake_in(left + Duration::from_millis(50));
                return Ok(());
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for (index, failures) in create {
            let (api, pod) = (cache.api.clone(), pod_for(&self.job, index, failures));
            set.spawn(async move { api.create(pods(), pod, crate::MANAGER).await });
        }
        let mut failure = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(pod)) => {
                    self.ctl.events.normal(
                        jobs(),
                        &self.job,
                        "SuccessfulCreate",
                        format!("Created pod: {}", meta_str(&pod, "name")),
                    );
                    cache.remember(pods(), pod.clone());
                    self.pods.push(pod);
                }
                Ok(Err(e)) => {
                    self.ctl.events.warning(
                        jobs(),
                        &self.job,
                        "FailedCreate",
                        format!("Error creating: {}", e.message),
                    );
                    failure = Some(e);
                }
                Err(e) => {
                    failure = Some(ClientError {
                        code: 500,
                        reason: "InternalError".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// How many pods of index `i` failed before (for a replacement).
    fn index_failures(&self, i: i64) -> i64 {
        self.pods
            .iter()
            .filter(|p| index_of(p) == Some(i) && phase(p) == "Failed")
            .map(|p| {
                p.pointer("/metadata/annotations")
                    .and_then(|a| a.get(INDEX_FAILURES))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0)
                    + 1
            })
            .max()
            .unwrap_or(0)
    }

    /// The status from the pods, written when it changed.
    async fn write_status(&mut self, cache: &mut Cache) -> Result<(), ClientError> {
        let active: Vec<&Value> = self.active().collect();
        let (n_active, n_ready) = (active.len(), active.iter().filter(|p| pod_ready(p)).count());
        let terminating = self
            .pods
            .iter()
            .filter(|p| is_deleting(p) && !matches!(phase(p), "Succeeded" | "Failed"))
            .count();
        let s = &mut self.status;
        for (k, v) in [
            ("active", n_active),
            ("ready", n_ready),
            ("terminating", terminating),
        ] {
            if v == 0 && k == "active" {
                if let Some(m) = s.as_object_mut() {
                    m.remove(k);
                }
            } else {
                s[k] = json!(v);
            }
        }
        if s.get("uncountedTerminatedPods").is_none() {
            s["uncountedTerminatedPods"] = json!({});
        }
        for k in ["succeeded", "failed"] {
            if s.get(k) == Some(&json!(0))
                && let Some(m) = s.as_object_mut()
            {
                m.remove(k);
            }
        }
        if self.job.get("status") == Some(&self.status) {
            return Ok(());
        }
        let (ns, name, uid) = (
            meta_str(&self.job, "namespace").to_string(),
            meta_str(&self.job, "name").to_string(),
            self.uid(),
        );
        let status = self.status.clone();
        let r = cache
            .modify(jobs(), &ns, &name, Some("status"), |cur| {
                (meta_str(cur, "uid") == uid && cur.get("status") != Some(&status)).then(|| {
                    let mut v = cur.clone();
                    v["status"] = status.clone();
                    v
                })
            })
            .await;
        match r {
            Ok(Some(v)) => {
                self.job = v;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `ttlSecondsAfterFinished`: the finished Job is deleted (foreground)
    /// that long after its terminal condition.
    async fn ttl(
        &mut self,
        cache: &mut Cache,
        done: &Value,
    ) -> Result<Option<Duration>, ClientError> {
        let Some(ttl) = self
            .job
            .pointer("/spec/ttlSecondsAfterFinished")
            .and_then(Value::as_i64)
        else {
            return Ok(None);
        };
        let at = self
            .status
            .get("completionTime")
            .and_then(|v| parse_time(Some(v)))
            .or_else(|| parse_time(done.get("lastTransitionTime")))
            .unwrap_or(self.now);
        let left = at.as_second() + ttl - self.now.as_second();
        if left > 0 {
            return Ok(Some(Duration::from_secs(u64::try_from(left).unwrap_or(0))));
        }
        let opts = DeleteOptions {
            propagation: Some("Foreground".into()),
            precondition_uid: Some(self.uid()),
            ..DeleteOptions::default()
        };
        match cache
            .api
            .delete(
                jobs(),
                Some(meta_str(&self.job, "namespace")),
                meta_str(&self.job, "name"),
                &opts,
            )
            .await
        {
            Err(e) if !e.is_not_found() && !e.is_conflict() => Err(e),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_round_trip() {
        let set: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert!(parse_indexes("").is_empty());
        assert_eq!(parse_indexes("x,3,5-a"), [3].into_iter().collect());
    }

    #[test]
    fn backoff_doubles_from_ten_seconds() {
        let t: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let b = |failures| Backoff { failures, last: t };
        assert_eq!(b(0).remaining(t), Duration::ZERO);
        assert_eq!(b(1).remaining(t), Duration::from_secs(10));
        assert_eq!(b(3).remaining(t), Duration::from_secs(40));
        assert_eq!(b(30).remaining(t), BACKOFF_MAX);
        let later = t + jiff::SignedDuration::from_secs(15);
        assert_eq!(b(2).remaining(later), Duration::from_secs(5));
    }

    #[test]
    fn pod_failure_policy_rules_match_in_order() {
        let job = json!({"spec": {"podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]}}});
        let pod = |code: i64, cond: Option<&str>| {
            let mut p = json!({"metadata": {"name": "p", "namespace": "n"}, "status": {"phase": "Failed",
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": code}}}]}});
            if let Some(c) = cond {
                p["status"]["conditions"] = json!([{"type": c, "status": "True"}]);
            }
            p
        };
        assert_eq!(
            pod_failure_verdict(&job, &pod(42, None)),
            Verdict::FailJob(
                "Container main for pod n/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(
            pod_failure_verdict(&job, &pod(42, Some("DisruptionTarget"))),
            Verdict::Ignore
        );
        assert_eq!(pod_failure_verdict(&job, &pod(3, None)), Verdict::Count);
        assert_eq!(pod_failure_verdict(&job, &pod(1, None)), Verdict::Count);
        assert_eq!(
            pod_failure_verdict(&json!({}), &pod(42, None)),
            Verdict::Count
        );
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let job = json!({"metadata": {"name": "ix", "namespace": "n", "uid": "u"},
            "spec": {"completionMode": "Indexed", "backoffLimitPerIndex": 1,
                "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let p = pod_for(&job, Some(3), 1);
        assert_eq!(p["metadata"]["generateName"], "ix-3-");
        assert_eq!(p["metadata"]["annotations"][INDEX_KEY], "3");
        assert_eq!(p["metadata"]["labels"][INDEX_KEY], "3");
        assert_eq!(p["metadata"]["annotations"][INDEX_FAILURES], "1");
        assert_eq!(p["metadata"]["labels"]["a"], "b");
        assert_eq!(p["spec"]["hostname"], "ix-3");
        assert_eq!(p["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        assert_eq!(
            p["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
    }
}
