//! The Argo Rollouts controller: `argoproj.io/v1alpha1` Rollouts reconciled
//! as Argo's rollout controller does, through `ReplicaSets` named
//! `<rollout>-<hash>` and labelled and selected by
//! `rollouts-pod-template-hash` (the template's hash, as Deployments'):
//!
//! - [`replicas`]: Argo's canary replica arithmetic (pure);
//! - `canary`: steps `setWeight`, `pause` (with a duration, or until
//!   promoted), `setCanaryScale`; promote (`status.pauseConditions`
//!   cleared, or `status.promoteFull`), abort (`status.abort`: canary
//!   weight 0 at once, phase Degraded with Argo's message); `canaryService` and
//!   `stableService` selectors carry the hashes;
//! - `bluegreen`: the new set scaled up behind `previewService`,
//!   `activeService` switched at once on promotion (automatic unless
//!   `autoPromotionEnabled: false`), the old set kept for
//!   `scaleDownDelaySeconds`; abort points preview back at stable;
//! - `restart`: `spec.restartAt`, pods older than it replaced one at a
//!   time;
//! - `experiment`: the Experiment controller; `experiment_step`: a canary
//!   step that runs one;
//! - `traffic`: weights through an nginx canary Ingress or a Gateway API
//!   `HTTPRoute`, the router moved before the sets (with
//!   `dynamicStableScale`, stable shrinks only once traffic left it and on
//!   abort grows back before traffic returns); `analysis`: the `AnalysisRuns` of steps and background
//!   analysis; `workload`: `workloadRef` to a Deployment.
//!
//! Every decision is read from and written to the Rollout's status
//! (`currentPodHash`, `stableRS`, `currentStepIndex`, `pauseConditions`,
//! `controllerPause`, `abort`), so a restarted server resumes at the same
//! step.

mod analysis;
mod bluegreen;
mod canary;
pub mod experiment;
mod experiment_step;
pub mod replicas;
#[cfg(test)]
mod replicas_tests;
mod restart;
mod traffic;
mod workload;

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::deployment::template_hash;
use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{controller_of, int, meta_str, now, timestamp};
use crate::replicaset::{replicasets, selector};

/// The label and selector key Argo gives its `ReplicaSets` and Services.
pub const HASH_LABEL: &str = "rollouts-pod-template-hash";
const REVISION: &str = "rollout.argoproj.io/revision";
const REVISION_HISTORY: &str = "rollout.argoproj.io/revision-history";
pub(crate) const SCALE_DOWN_DEADLINE: &str = "scale-down-deadline";

fn rollouts() -> Option<&'static Resource> {
    resources::find("argoproj.io", "v1alpha1", "rollouts")
}

pub(super) fn services() -> &'static Resource {
    resources::find("", "v1", "services").expect("services are served")
}

/// Runs the controller once the Rollout CRD is served (keel-api creates
/// it at bootstrap).
pub async fn run(api: keel_api::Loopback) {
    let (r, runs, exps) = loop {
        if let (Some(r), Some(runs), Some(e)) = (
            rollouts(),
            analysis::analysis_runs(),
            experiment::experiments(),
        ) {
            break (r, runs, e);
        }

        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let me = RolloutController {
        rollouts: r,
        runs,
        experiments: exps,
        events: Recorder::new(api.clone(), "rollouts-controller"),
    };
    crate::informer::run(api, me).await;
}

/// The Rollout controller (see the module docs).
#[derive(Debug)]
pub struct RolloutController {
    rollouts: &'static Resource,
    runs: &'static Resource,
    experiments: &'static Resource,
    events: Recorder,
}

impl Reconciler for RolloutController {
    const NAME: &'static str = "rollout";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![
            self.rollouts,
            replicasets(),
            self.runs,
            self.experiments,
            workload::deployments(),
        ]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, self.rollouts) {
            queue.add(key_of(obj));
        } else if std::ptr::eq(r, workload::deployments()) {
            let name = meta_str(obj, "name");
            for ro in cache.list(self.rollouts, meta_str(obj, "namespace")) {
                if workload::references(ro, name) {
                    queue.add(key_of(ro));
                }
            }
        } else {
            queue_controller(cache, self.rollouts, obj, queue);
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(ro) = cache.get(self.rollouts, ns, name).cloned() else {
            return Ok(None);
        };
        // As an Argo controller without `--instance-id`: a Rollout labelled
        // for another controller instance is that one's.
        if crate::objects::is_deleting(&ro)
            || ro
                .pointer("/metadata/labels")
                .and_then(|l| l.get(INSTANCE_ID))
                .is_some()
        {
            return Ok(None);
        }
        // The Rollout as written: a workloadRef's template comes after.
        let errors = crate::rollout_validate::validate(&ro);
        if let Some(e) = errors.first() {
            // As Argo: an invalid spec is reported and nothing is touched.
            let message = format!(
                "The Rollout \"{name}\" is invalid: {}: {}",
                e.field,
                e.body()
            );
            return invalid_spec(cache, self.rollouts, &ro, &message).await;
        }
        let Some(ro) = workload::resolve(cache, &ro).await? else {
            // The referenced Deployment is not there (yet).
            return Ok(Some(Duration::from_secs(5)));
        };
        let Some(sel) = selector(&ro) else {
            return Ok(None);
        };
        let all: Vec<Value> = cache.list(replicasets(), ns).cloned().collect();
        let mut rss = cache
            .claim(self.rollouts, &ro, replicasets(), &sel, all)
            .await?;
        rss.sort_by_key(revision);
        let mut run = Run {
            r: self.rollouts,
            cache,
            events: &self.events,
            st: ro.get("status").cloned().unwrap_or_else(|| json!({})),
            ro,
            rss,
            requeue: None,
            abort_message: None,
        };
        run.sync().await?;
        workload::scale_down(run.cache, &run.ro, &run.st).await?;
        Ok(run.requeue)
    }
}

/// Argo's answer to an invalid spec: the `InvalidSpec` condition (the only
/// status change), which makes the phase `Degraded`. A valid spec later
/// drops the condition (`set_conditions` writes Argo's usual set).
async fn invalid_spec(
    cache: &mut Cache,
    r: &'static Resource,
    ro: &Value,
    message: &str,
) -> Result<Option<Duration>, ClientError> {
    let mut st = ro.get("status").cloned().unwrap_or_else(|| json!({}));
    set_invalid_spec(&mut st, "InvalidSpec", Some(message));
    st["phase"] = json!("Degraded");
    st["message"] = json!(format!("InvalidSpec: {message}"));
    st["observedGeneration"] = json!(int(ro, "/metadata/generation").to_string());
    if ro.get("status") == Some(&st) {
        return Ok(None);
    }
    put_status(cache, r, ro, &st).await?;
    Ok(None)
}

/// Sets (`Some`) or drops the invalid-spec condition `kind` (Argo's
/// `InvalidSpec` of a Rollout, `InvalidExperimentSpec` of an Experiment).
/// A new message replaces the condition; the same one keeps it as it is
/// (Argo also bumps `lastUpdateTime` every pass; here each write would
/// come back as an event and pass again).
pub(super) fn set_invalid_spec(st: &mut Value, kind: &str, message: Option<&str>) {
    let mut conds: Vec<Value> = st["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != kind || message == c["message"].as_str())
        .collect();
    if let Some(m) = message
        && !conds.iter().any(|c| c["type"] == kind)
    {
        let t = timestamp(now());
        conds.push(
            json!({"type": kind, "status": "True", "reason": "InvalidSpec",
            "message": m, "lastUpdateTime": t, "lastTransitionTime": t}),
        );
    }
    if conds.is_empty() {
        st.as_object_mut().map(|m| m.remove("conditions"));
    } else {
        st["conditions"] = Value::Array(conds);
    }
}

/// Writes `st` as `ro`'s status (through the status subresource where
/// there is one), only over the version `ro` was read at: a concurrent
/// promote or abort (a status patch) is never overwritten; its event
/// reconciles again. An object deleted meanwhile is no error.
pub(super) async fn put_status(
    cache: &mut Cache,
    r: &'static Resource,
    ro: &Value,
    st: &Value,
) -> Result<(), ClientError> {
    let (ns, name, uid, seen) = (
        meta_str(ro, "namespace").to_string(),
        meta_str(ro, "name").to_string(),
        meta_str(ro, "uid").to_string(),
        meta_str(ro, "resourceVersion").to_string(),
    );
    let out = cache
        .modify(r, &ns, &name, r.status.then_some("status"), |cur| {
            let same = meta_str(cur, "uid") == uid && meta_str(cur, "resourceVersion") == seen;
            (same && cur.get("status") != Some(st)).then(|| {
                let mut v = cur.clone();
                v["status"] = st.clone();
                v
            })
        })
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets annotation `k` of `obj`.
fn annotate(obj: &mut Value, k: &str, v: String) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][k] = json!(v);
}

/// Argo's label naming the controller instance a Rollout belongs to.
const INSTANCE_ID: &str = "argo-rollouts.argoproj.io/controller-instance-id";

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The revision a set was created at: its earliest, whatever `undo` made
/// of it since (Argo orders by creation time; revisions are exact where
/// timestamps are whole seconds).
fn first_revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_HISTORY))
        .and_then(Value::as_str)
        .and_then(|h| h.split(',').filter_map(|r| r.parse().ok()).min())
        .map_or_else(|| revision(rs), |h: i64| h.min(revision(rs)))
}

/// A pod template without the hash label.
fn without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    t
}

fn hash_of(rs: &Value) -> &str {
    rs.pointer("/metadata/labels")
        .and_then(|l| l.get(HASH_LABEL))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn spec_of(rs: &Value) -> i64 {
    rs.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// The arithmetic's view of a `ReplicaSet`.
fn count_of(rs: &Value) -> replicas::RsCount {
    replicas::RsCount {
        hash: hash_of(rs).to_string(),
        spec: spec_of(rs),
        available: int(rs, "/status/availableReplicas"),
    }
}

/// A set has settled at `n`: its controller saw the spec and `n` pods are
/// available.
fn settled(rs: &Value, n: i64) -> bool {
    spec_of(rs) == n
        && int(rs, "/status/observedGeneration") >= int(rs, "/metadata/generation")
        && int(rs, "/status/replicas") == n
        && int(rs, "/status/availableReplicas") == n
}

/// The set carries Argo's scale-down deadline: it is on its way out.
fn has_deadline(rs: &Value) -> bool {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(SCALE_DOWN_DEADLINE))
        .is_some()
}

fn pause_conditions(st: &Value) -> &[Value] {
    st["pauseConditions"].as_array().map_or(&[], Vec::as_slice)
}

fn has_pause(st: &Value, reason: &str) -> bool {
    pause_conditions(st).iter().any(|p| p["reason"] == reason)
}

fn add_pause(st: &mut Value, reason: &str) {
    if has_pause(st, reason) {
        return;
    }
    let mut list = pause_conditions(st).to_vec();
    list.push(json!({"reason": reason, "startTime": timestamp(now())}));
    st["pauseConditions"] = Value::Array(list);
    st["controllerPause"] = json!(true);
}

/// One reconcile of one Rollout.
struct Run<'a> {
    r: &'static Resource,
    cache: &'a mut Cache,
    events: &'a Recorder,
    ro: Value,
    st: Value,
    rss: Vec<Value>,
    requeue: Option<Duration>,
    /// Why this pass aborted (Argo's `pauseContext.abortMessage`): kept in
    /// the Progressing condition while the abort lasts.
    abort_message: Option<String>,
}

impl Run<'_> {
    fn name(&self) -> String {
        meta_str(&self.ro, "name").to_string()
    }

    fn ns(&self) -> String {
        meta_str(&self.ro, "namespace").to_string()
    }

    fn again_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn find(&self, hash: &str) -> Option<Value> {
        (!hash.is_empty())
            .then(|| self.rss.iter().find(|rs| hash_of(rs) == hash).cloned())
            .flatten()
    }

    fn revision_of_current(&self) -> i64 {
        self.find(self.st["currentPodHash"].as_str().unwrap_or(""))
            .map_or(0, |rs| revision(&rs))
    }

    async fn sync(&mut self) -> Result<(), ClientError> {
        let template = self.ro["spec"]["template"].clone();
        let hash = template_hash(&template, int(&self.st, "/collisionCount"));
        // As Argo's FindNewReplicaSet: by hash, then a set whose template
        // is the same but for the hash label (`undo` copies a set's
        // template, defaults and all, back into the Rollout).
        let same = self
            .rss
            .iter()
            .find(|rs| without_hash(&rs["spec"]["template"]) == without_hash(&template))
            .cloned();
        let new = match self.find(&hash).or(same) {
            Some(rs) => self.sync_revision(&rs).await?,
            None => self.create_rs(&hash, &template).await?,
        };
        let hash = hash_of(&new).to_string();
        if self.st["currentPodHash"].as_str() != Some(&hash) {
            self.new_revision(&hash);
        }
        if self.st["abort"] == true && self.ro["status"]["abort"] != true {
            self.events.warning(
                self.r,
                &self.ro,
                "RolloutAborted",
                format!("Rollout aborted update to revision {}", revision(&new)),
            );
        }
        if self.st["stableRS"].as_str().unwrap_or("").is_empty() {
            // The first template is stable at once; no steps run.
            self.st["stableRS"] = json!(hash);
        }
        if self.ro["spec"]["strategy"]["blueGreen"].is_object() {
            self.sync_bluegreen(&new).await?;
        } else {
            self.sync_canary(&new).await?;
        }
        self.restart_pods().await?;
        self.write_status(&new).await
    }

    /// Argo's syncReplicaSetRevision: a set taken up again (an `undo`)
    /// becomes the newest revision, its earlier ones kept in
    /// `revision-history`.
    async fn sync_revision(&mut self, rs: &Value) -> Result<Value, ClientError> {
        let uid = meta_str(rs, "uid").to_string();
        let max = self
            .rss
            .iter()
            .filter(|o| meta_str(o, "uid") != uid)
            .map(revision)
            .max()
            .unwrap_or(0);
        let old = revision(rs);
        if old > max {
            return Ok(rs.clone());
        }
        let history = match rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION_HISTORY))
            .and_then(Value::as_str)
        {
            Some(h) if !h.is_empty() => format!("{h},{old}"),
            _ => old.to_string(),
        };
        self.modify_set(rs, |v| {
            if revision(v) > max {
                return false;
            }
            annotate(v, REVISION, (max + 1).to_string());
            annotate(v, REVISION_HISTORY, history.clone());
            true
        })
        .await
    }

    /// Changes the set `rs` (the same object, by uid) by `f` (false: no
    /// change); returns it as written and keeps `rss` current.
    async fn modify_set(
        &mut self,
        rs: &Value,
        f: impl Fn(&mut Value) -> bool,
    ) -> Result<Value, ClientError> {
        let (ns, name, uid) = (
            self.ns(),
            meta_str(rs, "name").to_string(),
            meta_str(rs, "uid").to_string(),
        );
        let out = self
            .cache
            .modify(replicasets(), &ns, &name, None, |cur| {
                let mut v = cur.clone();
                (meta_str(cur, "uid") == uid && f(&mut v) && v != *cur).then_some(v)
            })
            .await?
            .unwrap_or_else(|| rs.clone());
        if let Some(x) = self.rss.iter_mut().find(|x| meta_str(x, "uid") == uid) {
            *x = out.clone();
        }
        Ok(out)
    }

    /// Argo's isRollbackWithinWindow: the new set is older than the stable
    /// one and fewer than `spec.rollbackWindow.revisions` sets came
    /// between them. Steps and analyses are skipped then.
    fn rollback_within_window(&self, new: &Value) -> bool {
        let Some(limit) = self.ro["spec"]["rollbackWindow"]["revisions"]
            .as_i64()
            .filter(|n| *n > 0)
        else {
            return false;
        };
        let Some(stable) = self.find(self.st["stableRS"].as_str().unwrap_or("")) else {
            return false;
        };
        let (n, s) = (first_revision(new), first_revision(&stable));
        if n >= s {
            return false;
        }
        let between = self
            .rss
            .iter()
            .filter(|rs| (n + 1..s).contains(&first_revision(rs)))
            .count();
        i64::try_from(between).unwrap_or(i64::MAX) < limit
    }

    /// A new template: the steps start over.
    fn new_revision(&mut self, hash: &str) {
        let st = &mut self.st;
        st["currentPodHash"] = json!(hash);
        for f in [
            "pauseConditions",
            "abortedAt",
            "promoteFull",
            "currentStepIndex",
        ] {
            st.as_object_mut().map(|m| m.remove(f));
        }
        st["abort"] = json!(false);
        st["controllerPause"] = json!(false);
        // As Argo's resetRolloutStatus: a new template's pods are new, so
        // a restartAt already passed is served.
        let at = self.ro.pointer("/spec/restartAt");
        if crate::objects::parse_time(at).is_some_and(|t| t <= now()) {
            st["restartedAt"] = at.cloned().unwrap_or_default();
        }
        if self.ro["spec"]["strategy"]["canary"].is_object() {
            st["currentStepIndex"] = json!(0);
        }
        if let Some(b) = st.get_mut("blueGreen").and_then(Value::as_object_mut) {
            for f in [
                "previewSelector",
                "prePromotionAnalysisRunStatus",
                "postPromotionAnalysisRunStatus",
            ] {
                b.remove(f);
            }
        }
    }

    async fn create_rs(&mut self, hash: &str, template: &Value) -> Result<Value, ClientError> {
        let mut template = template.clone();
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut sel = self.ro["spec"]["selector"].clone();
        sel["matchLabels"][HASH_LABEL] = json!(hash);
        let next = self.rss.iter().map(revision).max().unwrap_or(0) + 1;
        let name = format!("{}-{hash}", self.name());
        let mut spec = json!({"replicas": 0, "selector": sel, "template": template});
        if let Some(m) = self.ro.pointer("/spec/minReadySeconds") {
            spec["minReadySeconds"] = m.clone();
        }
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": self.ns(),
                "labels": template["metadata"]["labels"],
                "annotations": {REVISION: next.to_string()},
                "ownerReferences": [controller_of(self.r, &self.ro)]},
            "spec": spec,
        });
        let rs = match self.cache.create(replicasets(), rs).await {
            Ok(rs) => rs,
            Err(e) if e.code == 409 => {
                let existing = self
                    .cache
                    .api
                    .get(replicasets(), Some(&self.ns()), &name)
                    .await?;
                match existing {
                    Some(rs)
                        if crate::objects::controller_uid(&rs, "Rollout")
                            == Some(meta_str(&self.ro, "uid")) =>
                    {
                        rs
                    }
                    _ => {
                        self.st["collisionCount"] = json!(int(&self.st, "/collisionCount") + 1);
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        };
        self.events.normal(
            self.r,
            &self.ro,
            "NewReplicaSetCreated",
            format!("Created ReplicaSet {name} (revision {next})"),
        );
        self.rss.push(rs.clone());
        Ok(rs)
    }

    /// Scales a set (no-op when already at `n`); returns it as written.
    async fn scale(&mut self, rs: &Value, n: i64, role: &str) -> Result<Value, ClientError> {
        let old = spec_of(rs);
        if old == n && !(has_deadline(rs) && n > 0) {
            return Ok(rs.clone());
        }
        let out = self
            .modify_set(rs, |v| {
                v["spec"]["replicas"] = json!(n);
                if n > 0
                    && let Some(a) = v["metadata"]["annotations"].as_object_mut()
                {
                    a.remove(SCALE_DOWN_DEADLINE);
                }
                true
            })
            .await?;
        let name = meta_str(rs, "name").to_string();
        if old != n {
            self.events.normal(
                self.r,
                &self.ro,
                "ScalingReplicaSet",
                format!(
                    "Scaled {role} ReplicaSet {name} (revision {}) from {old} to {n}",
                    revision(rs)
                ),
            );
        }
        Ok(out)
    }

    /// Scales a set to 0 once `delay` seconds have passed since it was
    /// first asked (the deadline annotation Argo uses), at once when 0.
    async fn scale_down_after(&mut self, rs: &Value, delay: i64) -> Result<(), ClientError> {
        if spec_of(rs) == 0 {
            return Ok(());
        }
        if delay <= 0 {
            self.scale(rs, 0, "down").await?;
            return Ok(());
        }
        if !self.deadline_passed(rs) {
            if !has_deadline(rs) {
                self.mark_deadline(rs, delay).await?;
            }
            return Ok(());
        }
        self.scale(rs, 0, "down").await?;
        Ok(())
    }

    /// Whether `rs`'s scale-down deadline has passed; when it is still
    /// ahead, asks to be run again then. False without a deadline.
    fn deadline_passed(&mut self, rs: &Value) -> bool {
        let deadline = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SCALE_DOWN_DEADLINE))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<jiff::Timestamp>().ok());
        match deadline {
            Some(at) if at <= now() => true,
            Some(at) => {
                let left = at.duration_since(now()).as_millis();
                self.again_in(Duration::from_millis(
                    u64::try_from(left).unwrap_or(0) + 100,
                ));
                false
            }
            None => false,
        }
    }

    /// Gives `rs` Argo's `scale-down-deadline` annotation, `delay` seconds
    /// from now (RFC 3339, as Argo writes it).
    async fn mark_deadline(&mut self, rs: &Value, delay: i64) -> Result<(), ClientError> {
        let at = timestamp(now() + jiff::SignedDuration::from_secs(delay));
        self.modify_set(rs, |v| {
            annotate(v, SCALE_DOWN_DEADLINE, at.clone());
            true
        })
        .await?;
        self.again_in(Duration::from_secs(u64::try_from(delay).unwrap_or(0)));
        Ok(())
    }

    /// Points a Service's selector at `hash` (Argo adds the
    /// `rollouts-pod-template-hash` to the selector).
    async fn point_service(&mut self, name: &str, hash: &str) -> Result<(), ClientError> {
        if name.is_empty() || hash.is_empty() {
            return Ok(());
        }
        let ns = self.ns();
        let hash = hash.to_string();
        let r = self
            .cache
            .modify(services(), &ns, name, None, |cur| {
                if cur
                    .pointer("/spec/selector")
                    .and_then(|s| s.get(HASH_LABEL))
                    == Some(&json!(hash))
                {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["selector"][HASH_LABEL] = json!(hash);
                Some(v)
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                self.events.warning(
                    self.r,
                    &self.ro,
                    "ServiceReferenceError",
                    format!("Service \"{name}\" not found"),
                );
                self.again_in(Duration::from_secs(5));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The message of the failed Experiment the current step ran.
    fn failed_experiment_message(&self) -> Option<String> {
        let ex = self.cache.get(
            experiment::experiments()?,
            &self.ns(),
            &self.current_experiment()?,
        )?;
        matches!(ex["status"]["phase"].as_str(), Some("Failed" | "Error")).then(|| {
            let mut m = "Experiment analysis phase is error/failed".to_string();
            if let Some(x) = ex["status"]["message"].as_str().filter(|x| !x.is_empty()) {
                m = format!("{m}: {x}");
            }
            m
        })
    }

    /// Aborts the update (Argo's `AddAbort`).
    fn abort_with(&mut self, why: &str) {
        if self.begin_abort(why) {
            self.events
                .warning(self.r, &self.ro, "RolloutAborted", why.to_string());
        }
    }

    /// Marks the update aborted for `why`; false when it already was.
    fn begin_abort(&mut self, why: &str) -> bool {
        if self.st["abort"] == true {
            return false;
        }
        self.st["abort"] = json!(true);
        self.st["abortedAt"] = json!(timestamp(now()));
        self.abort_message = Some(why.to_string());
        true
    }

    /// Phase and message as Argo's controller computes them.
    fn phase(&self, new: &Value) -> (&'static str, String) {
        let st = &self.st;
        if st["abort"] == true {
            // As Argo: the message is the Progressing condition's, set
            // when the abort came and kept while it lasts (the step that
            // failed is no longer current once the steps start over).
            let kept = st["conditions"].as_array().and_then(|cs| {
                cs.iter().find(|c| {
                    c["type"] == "Progressing"
                        && c["status"] == "False"
                        && c["reason"] == "RolloutAborted"
                })
            });
            if let Some(m) = kept.and_then(|c| c["message"].as_str()) {
                return ("Degraded", format!("RolloutAborted: {m}"));
            }
            let mut msg = format!(
                "RolloutAborted: Rollout aborted update to revision {}",
                revision(new)
            );
            if let Some(why) = self.abort_message.as_deref().filter(|m| !m.is_empty()) {
                return ("Degraded", format!("{msg}: {why}"));
            }
            // An analysis that failed says why (a step's, or an
            // Experiment's).
            let mut told = false;
            for run in [
                "/canary/currentStepAnalysisRunStatus",
                "/canary/currentBackgroundAnalysisRunStatus",
                "/blueGreen/prePromotionAnalysisRunStatus",
                "/blueGreen/postPromotionAnalysisRunStatus",
            ] {
                let run = st.pointer(run).unwrap_or(&Value::Null);
                if matches!(run["status"].as_str(), Some("Failed" | "Error"))
                    && let Some(m) = run["message"].as_str().filter(|m| !m.is_empty())
                {
                    msg = format!("{msg}: {m}");
                    told = true;
                    break;
                }
            }
            if !told && let Some(m) = self.failed_experiment_message() {
                msg = format!("{msg}: {m}");
            }
            return ("Degraded", msg);
        }
        if self.ro["spec"]["paused"] == true {
            return ("Paused", "manually paused".into());
        }
        if let Some(p) = pause_conditions(st).first() {
            return ("Paused", p["reason"].as_str().unwrap_or("").to_string());
        }
        let want = replicas::spec_replicas(&self.ro);
        if int(st, "/updatedReplicas") < want {
            return ("Progressing", "more replicas need to be updated".into());
        }
        if int(st, "/availableReplicas") < int(st, "/updatedReplicas") {
            return (
                "Progressing",
                "updated replicas are still becoming available".into(),
            );
        }
        let hash = st["currentPodHash"].as_str().unwrap_or("");
        if self.ro["spec"]["strategy"]["blueGreen"].is_object() {
            if st["blueGreen"]["activeSelector"].as_str() != Some(hash) {
                return ("Progressing", "active service cutover pending".into());
            }
        } else if !self.ro["spec"]["strategy"]["canary"]["trafficRouting"].is_object()
            && int(st, "/replicas") > int(st, "/updatedReplicas")
        {
            return ("Progressing", "old replicas are pending termination".into());
        }
        if st["stableRS"].as_str() != Some(hash) {
            return ("Progressing", "waiting for all steps to complete".into());
        }
        ("Healthy", String::new())
    }

    async fn write_status(&mut self, new: &Value) -> Result<(), ClientError> {
        let sum = |f: &str| -> i64 { self.rss.iter().map(|rs| int(rs, f)).sum() };
        let (replicas, ready, available) = (
            sum("/status/replicas"),
            sum("/status/readyReplicas"),
            sum("/status/availableReplicas"),
        );
        let st = &mut self.st;
        st["replicas"] = json!(replicas);
        st["updatedReplicas"] = json!(int(new, "/status/replicas"));
        st["readyReplicas"] = json!(ready);
        st["availableReplicas"] = json!(available);
        st["HPAReplicas"] = json!(replicas);
        st["observedGeneration"] = json!(int(&self.ro, "/metadata/generation").to_string());
        let mut sel = self.ro["spec"]["selector"].clone();
        if self.ro["spec"]["strategy"]["blueGreen"].is_object()
            && let Some(a) = st["blueGreen"]["activeSelector"].as_str()
        {
            sel["matchLabels"][HASH_LABEL] = json!(a);
        }
        st["selector"] = json!(label_selector_string(&sel));
        let (phase, message) = self.phase(new);
        self.set_conditions(phase, &message);
        self.st["phase"] = json!(phase);
        self.st["message"] = json!(message);
        if self.ro.get("status") == Some(&self.st) {
            return Ok(());
        }
        put_status(self.cache, self.r, &self.ro, &self.st).await
    }

    /// Argo's condition types with their reasons.
    /// `message` is the phase's (on abort, the condition keeps its why).
    fn set_conditions(&mut self, phase: &str, message: &str) {
        let t = timestamp(now());
        let healthy = phase == "Healthy";
        let avail = int(&self.st, "/availableReplicas")
            >= replicas::spec_replicas(&self.ro) - self.max_unavailable();
        let paused = phase == "Paused";
        let progressing = if self.st["abort"] == true {
            // `phase` says `RolloutAborted: <why>` on abort.
            let why = message.strip_prefix("RolloutAborted: ").unwrap_or(message);
            ("False", "RolloutAborted", why.to_string())
        } else if paused {
            ("Unknown", "RolloutPaused", "Rollout is paused".to_string())
        } else if healthy {
            (
                "True",
                "NewReplicaSetAvailable",
                "Rollout has completed rollout".to_string(),
            )
        } else {
            (
                "True",
                "ReplicaSetUpdated",
                format!("Rollout \"{}\" is progressing.", self.name()),
            )
        };
        let want: Vec<(&str, &str, &str, String)> = vec![
            ("Progressing", progressing.0, progressing.1, progressing.2),
            if avail {
                (
                    "Available",
                    "True",
                    "AvailableReason",
                    "Rollout has minimum availability".into(),
                )
            } else {
                (
                    "Available",
                    "False",
                    "AvailableReason",
                    "Rollout does not have minimum availability".into(),
                )
            },
            if healthy {
                (
                    "Completed",
                    "True",
                    "RolloutCompleted",
                    "Rollout completed update".into(),
                )
            } else {
                (
                    "Completed",
                    "False",
                    "RolloutCompleted",
                    "Rollout not completed".into(),
                )
            },
            if healthy {
                (
                    "Healthy",
                    "True",
                    "RolloutHealthy",
                    "Rollout is healthy".into(),
                )
            } else {
                (
                    "Healthy",
                    "False",
                    "RolloutHealthy",
                    "Rollout is not healthy".into(),
                )
            },
            if paused {
                (
                    "Paused",
                    "True",
                    "RolloutPaused",
                    "Rollout is paused".into(),
                )
            } else {
                (
                    "Paused",
                    "False",
                    "RolloutResumed",
                    "Rollout is resumed".into(),
                )
            },
        ];
        let old = self.st["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let conds: Vec<Value> = want
            .into_iter()
            .map(|(kind, status, reason, message)| {
                let prev = old.iter().find(|c| c["type"] == kind);
                match prev {
                    Some(p) if p["status"] == status && p["reason"] == reason => p.clone(),
                    _ => {
                        json!({"type": kind, "status": status, "reason": reason, "message": message,
                        "lastUpdateTime": t, "lastTransitionTime": t})
                    }
                }
            })
            .collect();
        self.st["conditions"] = Value::Array(conds);
    }

    fn max_unavailable(&self) -> i64 {
        if self.ro["spec"]["strategy"]["canary"].is_object() {
            replicas::surge_and_unavailable(&self.ro).1
        } else {
            0
        }
    }
}

/// A label selector's string form, as `status.selector` holds it.
fn label_selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts.join(",")
}
