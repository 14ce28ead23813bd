//! The Deployment controller, following kube-controller-manager's
//! (pkg/controller/deployment) so `kubectl rollout` behaves as on
//! Kubernetes:
//!
//! - the `ReplicaSet` whose template equals the Deployment's (ignoring the
//!   `pod-template-hash` label) is the new one; others are old. A new one
//!   is named `<deployment>-<hash>` (FNV-32a of the template and
//!   `collisionCount`, upstream's alphabet) and carries the hash as label
//!   and selector; revisions (`deployment.kubernetes.io/revision`, with
//!   `revision-history` when an old set comes back through `rollout undo`)
//!   and the Deployment's annotations are copied onto it;
//! - `RollingUpdate` scales the new set up to `replicas + maxSurge` (surge
//!   rounded up) and old ones down while `replicas - maxUnavailable`
//!   (rounded down; 1 when both resolve to 0) stay available; Recreate
//!   scales old sets to 0, waits for their pods to go, then scales the new
//!   one up; a change of `replicas` mid-rollout is spread proportionally;
//! - `paused` stops rollouts (scaling still applies); the Progressing and
//!   Available conditions carry upstream's reasons (`NewReplicaSetCreated`,
//!   `FoundNewReplicaSet`, `ReplicaSetUpdated`, `NewReplicaSetAvailable`,
//!   `ProgressDeadlineExceeded`, `DeploymentPaused`, `DeploymentResumed`,
//!   `MinimumReplicasAvailable/Unavailable`); old sets beyond
//!   `revisionHistoryLimit` are deleted once scaled to 0.
//!
//! One rule is keel's: nothing is scaled while a `ReplicaSet`'s status lags
//! its spec (`observedGeneration` behind), so pod counts used for maxSurge
//! and maxUnavailable are the real ones; upstream may briefly act on stale
//! counts and overshoot.

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Map, Value, json};

use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{
    controller_of, controller_uid, int, is_deleting, meta_str, now, parse_time, timestamp,
};
use crate::replicaset::{replicasets, selector};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of a Deployment not copied onto its `ReplicaSets`.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Upstream's limit on `revision-history` (characters).
const HISTORY_CHARS: usize = 2000;

fn deployments() -> &'static Resource {
    resources::find("apps", "v1", "deployments").expect("deployments are served")
}

/// The Deployment controller (see the module docs).
#[derive(Debug)]
pub struct DeploymentController {
    events: Recorder,
}

impl DeploymentController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        DeploymentController {
            events: Recorder::new(api.clone(), "deployment-controller"),
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for DeploymentController {
    const NAME: &'static str = "deployment";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![deployments(), replicasets()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, deployments()) {
            queue.add(key_of(obj));
            return;
        }
        queue_controller(cache, deployments(), obj, queue);
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(d) = cache.get(deployments(), ns, name).cloned() else {
            return Ok(None);
        };
        let Some(sel) = selector(&d) else {
            return Ok(None);
        };
        let all: Vec<Value> = cache.list(replicasets(), ns).cloned().collect();
        let mut rss = cache
            .claim(deployments(), &d, replicasets(), &sel, all)
            .await?;
        // Wait until the ReplicaSet controller has acted on every spec.
        if rss
            .iter()
            .any(|rs| int(rs, "/status/observedGeneration") < int(rs, "/metadata/generation"))
        {
            return Ok(None);
        }
        rss.sort_by_cached_key(|rs| {
            (
                meta_str(rs, "creationTimestamp").to_string(),
                meta_str(rs, "name").to_string(),
            )
        });
        let mut run = Run {
            cache,
            events: &self.events,
            st: d.get("status").cloned().unwrap_or_else(|| json!({})),
            d,
            rss,
        };
        run.sync().await
    }
}

/// One reconcile of one Deployment.
struct Run<'a> {
    cache: &'a mut Cache,
    events: &'a Recorder,
    d: Value,
    /// The status being built.
    st: Value,
    /// Owned `ReplicaSets`, oldest first.
    rss: Vec<Value>,
}

fn spec_replicas(v: &Value) -> i64 {
    int(v, "/spec/replicas")
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn annotation_i64(rs: &Value, name: &str) -> Option<i64> {
    rs.pointer("/metadata/annotations")?
        .get(name)?
        .as_str()?
        .parse()
        .ok()
}

fn is_rolling(d: &Value) -> bool {
    d.pointer("/spec/strategy/type").and_then(Value::as_str) != Some("Recreate")
}

/// An int-or-percent of `total`, percentages rounded up or down.
pub(crate) fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * total;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) as upstream's `ResolveFenceposts`.
fn fenceposts(d: &Value) -> (i64, i64) {
    let n = spec_replicas(d);
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), n, true);
    let mut unavailable = scaled(ru.and_then(|r| r.get("maxUnavailable")), n, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn max_surge(d: &Value) -> i64 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

fn max_unavailable(d: &Value) -> i64 {
    let n = spec_replicas(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d).1.min(n)
}

fn has_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s != i64::from(i32::MAX))
}

/// The template without the `pod-template-hash` label.
fn without_hash(t: Option<&Value>) -> Value {
    let mut t = t.cloned().unwrap_or(Value::Null);
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

/// FNV-32a (written here: five lines, and the value must stay stable).
fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Feeds `v` to FNV with object keys sorted, so equal templates hash
/// equally whatever their field order.
fn hash_value(v: &Value, h: u32) -> u32 {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut h = fnv32a(b"{", h);
            for k in keys {
                h = fnv32a(k.as_bytes(), h);
                h = hash_value(&m[k], fnv32a(b":", h));
            }
            fnv32a(b"}", h)
        }
        Value::Array(a) => {
            let h = a
                .iter()
                .fold(fnv32a(b"[", h), |h, x| fnv32a(b",", hash_value(x, h)));
            fnv32a(b"]", h)
        }
        other => fnv32a(other.to_string().as_bytes(), h),
    }
}

/// The `pod-template-hash` of a template (upstream's alphabet, which has
/// no vowels so no words form).
pub(crate) fn template_hash(template: &Value, collisions: i64) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = hash_value(&without_hash(Some(template)), 0x811c_9dc5);
    if collisions > 0 {
        h = fnv32a(&u32::try_from(collisions).unwrap_or(0).to_le_bytes(), h);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHA[usize::from(b) % ALPHA.len()] as char)
        .collect()
}

/// A condition as upstream builds it.
fn condition(kind: &str, status: &str, reason: &str, message: String) -> Value {
    let t = timestamp(now());
    json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": t, "lastTransitionTime": t})
}

fn get_condition<'a>(st: &'a Value, kind: &str) -> Option<&'a Value> {
    st.get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn remove_condition(st: &mut Value, kind: &str) {
    if let Some(a) = st.get_mut("conditions").and_then(Value::as_array_mut) {
        a.retain(|c| c["type"] != kind);
    }
}

/// Upstream's `SetDeploymentCondition`: same status and reason is no
/// change; same status keeps the transition time.
fn set_condition(st: &mut Value, mut c: Value) {
    let kind = c["type"].as_str().unwrap_or_default().to_string();
    if let Some(cur) = get_condition(st, &kind) {
        if cur["status"] == c["status"] && cur["reason"] == c["reason"] {
            return;
        }
        if cur["status"] == c["status"] {
            c["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
    }
    remove_condition(st, &kind);
    if !st["conditions"].is_array() {
        st["conditions"] = json!([]);
    }
    if let Some(a) = st["conditions"].as_array_mut() {
        a.push(c);
    }
}

fn set_count(st: &mut Value, field: &str, n: i64) {
    if let Some(m) = st.as_object_mut() {
        if n == 0 {
            m.remove(field);
        } else {
            m.insert(field.into(), json!(n));
        }
    }
}

impl Run<'_> {
    fn name(&self) -> &str {
        meta_str(&self.d, "name")
    }

    fn ns(&self) -> String {
        meta_str(&self.d, "namespace").to_string()
    }

    async fn sync(&mut self) -> Result<Option<Duration>, ClientError> {
        if is_deleting(&self.d) {
            let (new, olds) = self.split();
            return self.sync_status(new, olds, false).await;
        }
        self.paused_conditions();
        let paused = self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        if paused || self.scaling_event() {
            let (new, olds) = self.sync_revision(false).await?;
            let (new, olds) = self.scale(new, olds).await?;
            let olds = if paused {
                self.cleanup(olds).await?
            } else {
                olds
            };
            return self.sync_status(new, olds, false).await;
        }
        if is_rolling(&self.d) {
            self.rolling().await
        } else {
            self.recreate().await
        }
    }

    /// Upstream's `checkPausedConditions`.
    fn paused_conditions(&mut self) {
        if !has_deadline(&self.d) {
            return;
        }
        let cur = get_condition(&self.st, "Progressing");
        let reason = cur.and_then(|c| c["reason"].as_str()).unwrap_or_default();
        if reason == "ProgressDeadlineExceeded" {
            return;
        }
        let paused = self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        let marked = reason == "DeploymentPaused";
        if paused && !marked {
            set_condition(
                &mut self.st,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                ),
            );
        } else if !paused && marked {
            set_condition(
                &mut self.st,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                ),
            );
        }
    }

    /// The new `ReplicaSet` (template equal to the Deployment's) and the old.
    fn split(&self) -> (Option<Value>, Vec<Value>) {
        let want = without_hash(self.d.pointer("/spec/template"));
        let mut new = None;
        let mut olds = Vec::new();
        for rs in &self.rss {
            if new.is_none() && without_hash(rs.pointer("/spec/template")) == want {
                new = Some(rs.clone());
            } else {
                olds.push(rs.clone());
            }
        }
        (new, olds)
    }

    fn scaling_event(&self) -> bool {
        let want = spec_replicas(&self.d);
        self.rss
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .any(|rs| annotation_i64(rs, DESIRED).is_some_and(|n| n != want))
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: finds (or, with
    /// `create`, makes) the new `ReplicaSet` and brings revisions up to date.
    async fn sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<Value>, Vec<Value>), ClientError> {
        let (new, olds) = self.split();
        let next = olds.iter().map(revision).max().unwrap_or(0) + 1;
        let new = match new {
            Some(rs) => {
                let rs = self.annotate_existing(rs, next).await?;
                if has_deadline(&self.d) && get_condition(&self.st, "Progressing").is_none() {
                    let msg = format!("Found new replica set \"{}\"", meta_str(&rs, "name"));
                    set_condition(
                        &mut self.st,
                        condition("Progressing", "True", "FoundNewReplicaSet", msg),
                    );
                }
                Some(rs)
            }
            None if create => self.create_new(&olds, next).await?,
            None => None,
        };
        if let Some(rs) = &new {
            self.set_deployment_revision(revision(rs)).await?;
        }
        Ok((new, olds))
    }

    /// The Deployment's annotations a `ReplicaSet` should carry.
    fn copied_annotations(&self) -> Map<String, Value> {
        self.d
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn annotate_existing(&mut self, rs: Value, next: i64) -> Result<Value, ClientError> {
        let copied = self.copied_annotations();
        let update = move |cur: &Value| {
            let mut v = cur.clone();
            if !v["metadata"]["annotations"].is_object() {
                v["metadata"]["annotations"] = json!({});
            }
            let a = v["metadata"]["annotations"].as_object_mut()?;
            for (k, val) in &copied {
                a.insert(k.clone(), val.clone());
            }
            let old = a.get(REVISION).and_then(Value::as_str).map(String::from);
            let old_n: i64 = old.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            if old_n < next {
                a.insert(REVISION.into(), json!(next.to_string()));
                // Rolled back to: keep the revisions it had.
                if let Some(old) = old {
                    let hist = a
                        .get(REVISION_HISTORY)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mut revs: Vec<&str> = hist.split(',').filter(|s| !s.is_empty()).collect();
                    revs.push(&old);
                    while revs.join(",").len() > HISTORY_CHARS && revs.len() > 1 {
                        revs.remove(0);
                    }
                    let joined = revs.join(",");
                    a.insert(REVISION_HISTORY.into(), json!(joined));
                }
            }
            (v != *cur).then_some(v)
        };
        if update(&rs).is_none() {
            return Ok(rs);
        }
        let (ns, name) = (self.ns(), meta_str(&rs, "name").to_string());
        let out = self
            .cache
            .modify(replicasets(), &ns, &name, None, update)
            .await?;
        Ok(out.unwrap_or(rs))
    }

    async fn create_new(
        &mut self,
        olds: &[Value],
        next: i64,
    ) -> Result<Option<Value>, ClientError> {
        let d = self.d.clone();
        let collisions = int(&self.st, "/collisionCount");
        let template = d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&template, collisions);
        let mut template = without_hash(Some(&template));
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut sel = d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        sel["matchLabels"][HASH_LABEL] = json!(hash);
        let replicas = self.new_rs_replicas(olds, None);
        let mut annotations = self.copied_annotations();
        annotations.insert(REVISION.into(), json!(next.to_string()));
        annotations.insert(DESIRED.into(), json!(spec_replicas(&d).to_string()));
        annotations.insert(
            MAX_REPLICAS.into(),
            json!((spec_replicas(&d) + max_surge(&d)).to_string()),
        );
        let name = format!("{}-{hash}", self.name());
        let mut spec = json!({"replicas": replicas, "selector": sel, "template": template.clone()});
        if let Some(m) = d.pointer("/spec/minReadySeconds") {
            spec["minReadySeconds"] = m.clone();
        }
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": self.ns(), "labels": template["metadata"]["labels"],
                "annotations": annotations, "ownerReferences": [controller_of(deployments(), &d)]},
            "spec": spec,
        });
        match self.cache.create(replicasets(), rs).await {
            Ok(rs) => {
                if replicas > 0 {
                    self.events.normal(
                        deployments(),
                        &d,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {replicas}"),
                    );
                }
                if has_deadline(&d) {
                    let msg = format!("Created new replica set \"{name}\"");
                    set_condition(
                        &mut self.st,
                        condition("Progressing", "True", "NewReplicaSetCreated", msg),
                    );
                }
                Ok(Some(rs))
            }
            Err(e) if e.code == 409 => {
                // A set of that name that is not ours, or another template:
                // a hash collision. Count it so the next name differs.
                let existing = self
                    .cache
                    .api
                    .get(replicasets(), Some(&self.ns()), &name)
                    .await?;
                if let Some(rs) = existing
                    && controller_uid(&rs, "Deployment") == Some(meta_str(&d, "uid"))
                    && without_hash(rs.pointer("/spec/template"))
                        == without_hash(d.pointer("/spec/template"))
                {
                    return Ok(Some(rs));
                }
                self.st["collisionCount"] = json!(collisions + 1);
                self.write_status().await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn set_deployment_revision(&mut self, rev: i64) -> Result<(), ClientError> {
        let want = rev.to_string();
        let cur = self
            .d
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION))
            .and_then(Value::as_str);
        if cur == Some(want.as_str()) {
            return Ok(());
        }
        let (ns, name, uid) = (
            self.ns(),
            self.name().to_string(),
            meta_str(&self.d, "uid").to_string(),
        );
        let out = self
            .cache
            .modify(deployments(), &ns, &name, None, |cur| {
                if meta_str(cur, "uid") != uid {
                    return None;
                }
                let mut v = cur.clone();
                if !v["metadata"]["annotations"].is_object() {
                    v["metadata"]["annotations"] = json!({});
                }
                v["metadata"]["annotations"][REVISION] = json!(want);
                (v != *cur).then_some(v)
            })
            .await?;
        if let Some(v) = out {
            self.d["metadata"] = v["metadata"].clone();
        }
        Ok(())
    }

    /// Upstream's `NewRSNewReplicas`.
    fn new_rs_replicas(&self, olds: &[Value], new: Option<&Value>) -> i64 {
        let want = spec_replicas(&self.d);
        if !is_rolling(&self.d) {
            return want;
        }
        let cur_new = new.map_or(0, spec_replicas);
        let current: i64 = olds.iter().chain(new).map(spec_replicas).sum();
        let max_total = want + max_surge(&self.d);
        if current >= max_total {
            return cur_new;
        }
        cur_new + (max_total - current).min(want - cur_new).max(0)
    }

    /// Sets a `ReplicaSet`'s size and replica annotations; returns it as
    /// written.
    async fn scale_rs(&mut self, rs: &Value, n: i64) -> Result<Value, ClientError> {
        let d = &self.d;
        let desired = spec_replicas(d).to_string();
        let max = (spec_replicas(d) + max_surge(d)).to_string();
        let old = spec_replicas(rs);
        let needs = old != n
            || annotation_i64(rs, DESIRED).map(|x| x.to_string()) != Some(desired.clone())
            || annotation_i64(rs, MAX_REPLICAS).map(|x| x.to_string()) != Some(max.clone());
        if !needs {
            return Ok(rs.clone());
        }
        let (ns, name, uid) = (
            self.ns(),
            meta_str(rs, "name").to_string(),
            meta_str(rs, "uid").to_string(),
        );
        let out = self
            .cache
            .modify(replicasets(), &ns, &name, None, |cur| {
                if meta_str(cur, "uid") != uid {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["replicas"] = json!(n);
                if !v["metadata"]["annotations"].is_object() {
                    v["metadata"]["annotations"] = json!({});
                }
                v["metadata"]["annotations"][DESIRED] = json!(desired);
                v["metadata"]["annotations"][MAX_REPLICAS] = json!(max);
                (v != *cur).then_some(v)
            })
            .await?;
        if old != n {
            let op = if old < n { "up" } else { "down" };
            self.events.normal(
                deployments(),
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {n}"),
            );
        }
        let out = out.unwrap_or_else(|| rs.clone());
        if let Some(x) = self.rss.iter_mut().find(|x| meta_str(x, "uid") == uid) {
            *x = out.clone();
        }
        Ok(out)
    }

    async fn rolling(&mut self) -> Result<Option<Duration>, ClientError> {
        let (new, olds) = self.sync_revision(true).await?;
        // Scale the new set up (or down to `replicas`).
        if let Some(rs) = &new {
            let want = spec_replicas(&self.d);
            let cur = spec_replicas(rs);
            let target = if cur > want {
                want
            } else {
                self.new_rs_replicas(&olds, Some(rs))
            };
            if target != cur {
                let rs = self.scale_rs(rs, target).await?;
                return self.rollout_status(Some(rs), olds).await;
            }
        }
        let (new, olds) = self.scale_down_old(new, olds).await?;
        if self.complete(false) {
            let olds = self.cleanup(olds).await?;
            return self.rollout_status(new, olds).await;
        }
        self.rollout_status(new, olds).await
    }

    /// Upstream's `reconcileOldReplicaSets`: removes unhealthy old pods, then
    /// healthy ones while enough stay available.
    async fn scale_down_old(
        &mut self,
        new: Option<Value>,
        mut olds: Vec<Value>,
    ) -> Result<(Option<Value>, Vec<Value>), ClientError> {
        let old_pods: i64 = olds.iter().map(spec_replicas).sum();
        if old_pods == 0 {
            return Ok((new, olds));
        }
        let all_pods: i64 = old_pods + new.as_ref().map_or(0, spec_replicas);
        let min_available = spec_replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = new.as_ref().map_or(0, |rs| {
            spec_replicas(rs) - int(rs, "/status/availableReplicas")
        });
        let max_down = all_pods - min_available - new_unavailable;
        if max_down <= 0 {
            return Ok((new, olds));
        }
        // Old pods that are not available go first.
        let mut cleaned = 0;
        for rs in &mut olds {
            if cleaned >= max_down {
                break;
            }
            let (spec, avail) = (spec_replicas(rs), int(rs, "/status/availableReplicas"));
            if spec == 0 || spec == avail {
                continue;
            }
            let n = (max_down - cleaned).min(spec - avail);
            *rs = self.scale_rs(rs, spec - n).await?;
            cleaned += n;
        }
        // Then available ones, while `minAvailable` stay.
        let available: i64 = olds
            .iter()
            .chain(new.as_ref())
            .map(|rs| int(rs, "/status/availableReplicas").min(spec_replicas(rs)))
            .sum();
        if available > min_available {
            let total = available - min_available;
            let mut down = 0;
            for rs in &mut olds {
                if down >= total {
                    break;
                }
                let spec = spec_replicas(rs);
                if spec == 0 {
                    continue;
                }
                let n = spec.min(total - down);
                *rs = self.scale_rs(rs, spec - n).await?;
                down += n;
            }
        }
        Ok((new, olds))
    }

    async fn recreate(&mut self) -> Result<Option<Duration>, ClientError> {
        let (new, mut olds) = self.sync_revision(false).await?;
        let mut scaled = false;
        for rs in &mut olds {
            if spec_replicas(rs) > 0 {
                *rs = self.scale_rs(rs, 0).await?;
                scaled = true;
            }
        }
        let old_running = olds.iter().any(|rs| int(rs, "/status/replicas") > 0);
        if scaled || old_running {
            return self.rollout_status(new, olds).await;
        }
        let (new, olds) = if new.is_none() {
            self.sync_revision(true).await?
        } else {
            (new, olds)
        };
        let new = match new {
            Some(rs) => Some(self.scale_rs(&rs, spec_replicas(&self.d)).await?),
            None => None,
        };
        let olds = if self.complete(false) {
            self.cleanup(olds).await?
        } else {
            olds
        };
        self.rollout_status(new, olds).await
    }

    /// Upstream's `scale`: a change of `replicas` outside a rollout.
    async fn scale(
        &mut self,
        new: Option<Value>,
        mut olds: Vec<Value>,
    ) -> Result<(Option<Value>, Vec<Value>), ClientError> {
        let want = spec_replicas(&self.d);
        let active: Vec<usize> = (0..=olds.len())
            .filter(|&i| {
                if i == olds.len() {
                    new.as_ref().is_some_and(|rs| spec_replicas(rs) > 0)
                } else {
                    spec_replicas(&olds[i]) > 0
                }
            })
            .collect();
        // One active set, or none: it (or the newest) takes all.
        if active.len() <= 1 {
            let idx = active.first().copied().or(if new.is_some() {
                Some(olds.len())
            } else {
                olds.len().checked_sub(1)
            });
            let Some(i) = idx else { return Ok((new, olds)) };
            if i == olds.len() {
                let rs = new.clone().unwrap_or_default();
                let rs = self.scale_rs(&rs, want).await?;
                return Ok((Some(rs), olds));
            }
            olds[i] = self.scale_rs(&olds[i].clone(), want).await?;
            return Ok((new, olds));
        }
        // The new set is saturated: old ones go to zero.
        if let Some(rs) = &new
            && spec_replicas(rs) == want
            && annotation_i64(rs, DESIRED) == Some(want)
            && int(rs, "/status/availableReplicas") == want
        {
            for rs in &mut olds {
                if spec_replicas(rs) > 0 {
                    *rs = self.scale_rs(rs, 0).await?;
                }
            }
            return Ok((new, olds));
        }
        if !is_rolling(&self.d) {
            return Ok((new, olds));
        }
        // Proportional scaling across the active sets.
        let mut all: Vec<Value> = olds
            .iter()
            .chain(new.as_ref())
            .filter(|rs| spec_replicas(rs) > 0)
            .cloned()
            .collect();
        let current: i64 = all.iter().map(spec_replicas).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        // Bigger first; among equals newer first when adding, older when removing.
        all.sort_by(|a, b| {
            let by_size = spec_replicas(b).cmp(&spec_replicas(a));
            let by_age = meta_str(a, "creationTimestamp").cmp(meta_str(b, "creationTimestamp"));
            by_size.then(if to_add > 0 { by_age.reverse() } else { by_age })
        });
        let mut added = 0;
        let mut sizes: Vec<i64> = Vec::new();
        for rs in &all {
            let mut size = spec_replicas(rs);
            if to_add != 0 && size != 0 && to_add != added {
                let fraction = if want == 0 {
                    -size
                } else {
                    let before = annotation_i64(rs, MAX_REPLICAS)
                        .filter(|n| *n != 0)
                        .unwrap_or_else(|| int(&self.d, "/status/replicas"));
                    if before == 0 {
                        0
                    } else {
                        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                        let f = ((size * allowed) as f64 / before as f64).round() as i64;
                        f - size
                    }
                };
                let left = to_add - added;
                let p = if to_add > 0 {
                    fraction.min(left)
                } else {
                    fraction.max(left)
                };
                size += p;
                added += p;
            }
            sizes.push(size);
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.iter().zip(sizes) {
            let rs = self.scale_rs(rs, size).await?;
            let uid = meta_str(&rs, "uid").to_string();
            if let Some(o) = olds.iter_mut().find(|o| meta_str(o, "uid") == uid) {
                *o = rs;
            }
        }
        let new = new.map(|n| {
            self.rss
                .iter()
                .find(|x| meta_str(x, "uid") == meta_str(&n, "uid"))
                .cloned()
                .unwrap_or(n)
        });
        Ok((new, olds))
    }

    /// Deletes old sets beyond `revisionHistoryLimit`, lowest revision
    /// first, once they have no pods.
    async fn cleanup(&mut self, olds: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        let Some(limit) = self
            .d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
        else {
            return Ok(olds);
        };
        let mut alive: Vec<&Value> = olds.iter().filter(|rs| !is_deleting(rs)).collect();
        let extra = i64::try_from(alive.len()).unwrap_or(0) - limit;
        if extra <= 0 {
            return Ok(olds);
        }
        alive.sort_by_key(|rs| (revision(rs), meta_str(rs, "creationTimestamp").to_string()));
        let mut gone = Vec::new();
        for rs in alive.into_iter().take(usize::try_from(extra).unwrap_or(0)) {
            if int(rs, "/status/replicas") != 0
                || spec_replicas(rs) != 0
                || int(rs, "/metadata/generation") > int(rs, "/status/observedGeneration")
            {
                continue;
            }
            let (name, uid) = (
                meta_str(rs, "name").to_string(),
                meta_str(rs, "uid").to_string(),
            );
            tracing::debug!(replicaset = name, "deleting an old revision");
            self.cache
                .delete(replicasets(), &self.ns(), &name, &uid)
                .await?;
            gone.push(uid);
        }
        Ok(olds
            .into_iter()
            .filter(|rs| !gone.iter().any(|g| g == meta_str(rs, "uid")))
            .collect())
    }

    /// Upstream's `calculateStatus` into `self.st`.
    fn calculate(&mut self, new: Option<&Value>, olds: &[Value]) {
        let all: Vec<&Value> = olds.iter().chain(new).collect();
        let sum = |p: &str| all.iter().map(|rs| int(rs, p)).sum::<i64>();
        let available = sum("/status/availableReplicas");
        let total_spec: i64 = all.iter().map(|rs| spec_replicas(rs)).sum();
        self.st["observedGeneration"] = json!(int(&self.d, "/metadata/generation"));
        set_count(&mut self.st, "replicas", sum("/status/replicas"));
        set_count(
            &mut self.st,
            "updatedReplicas",
            new.map_or(0, |rs| int(rs, "/status/replicas")),
        );
        set_count(&mut self.st, "readyReplicas", sum("/status/readyReplicas"));
        set_count(&mut self.st, "availableReplicas", available);
        set_count(
            &mut self.st,
            "unavailableReplicas",
            (total_spec - available).max(0),
        );
        let c = if available >= spec_replicas(&self.d) - max_unavailable(&self.d) {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut self.st, c);
    }

    /// Upstream's `DeploymentComplete` on the status being built (or the
    /// stored one).
    fn complete(&self, built: bool) -> bool {
        let st = if built {
            &self.st
        } else {
            self.d.get("status").unwrap_or(&Value::Null)
        };
        let want = spec_replicas(&self.d);
        int(st, "/updatedReplicas") == want
            && int(st, "/replicas") == want
            && int(st, "/availableReplicas") == want
            && int(st, "/observedGeneration") >= int(&self.d, "/metadata/generation")
    }

    /// Status without progress estimation (paused, scaling, deleting).
    async fn sync_status(
        &mut self,
        new: Option<Value>,
        olds: Vec<Value>,
        _: bool,
    ) -> Result<Option<Duration>, ClientError> {
        self.calculate(new.as_ref(), &olds);
        self.write_status().await?;
        Ok(None)
    }

    /// Upstream's `syncRolloutStatus`: status with the Progressing
    /// condition; asks to be called again when the deadline may pass.
    async fn rollout_status(
        &mut self,
        new: Option<Value>,
        olds: Vec<Value>,
    ) -> Result<Option<Duration>, ClientError> {
        let old_status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
        self.calculate(new.as_ref(), &olds);
        let deadline = has_deadline(&self.d);
        if !deadline {
            remove_condition(&mut self.st, "Progressing");
        }
        let cur = get_condition(&old_status, "Progressing").cloned();
        let rs_name = new.as_ref().map(|rs| meta_str(rs, "name").to_string());
        let done = int(&self.st, "/replicas") == int(&self.st, "/updatedReplicas")
            && cur
                .as_ref()
                .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        if deadline && !done {
            let progressing = {
                let (o, n) = (&old_status, &self.st);
                int(n, "/updatedReplicas") > int(o, "/updatedReplicas")
                    || int(n, "/replicas") - int(n, "/updatedReplicas")
                        < int(o, "/replicas") - int(o, "/updatedReplicas")
                    || int(n, "/readyReplicas") > int(o, "/readyReplicas")
                    || int(n, "/availableReplicas") > int(o, "/availableReplicas")
            };
            if self.complete(true) {
                let msg = rs_name.as_ref().map_or_else(
                    || {
                        format!(
                            "Deployment \"{}\" has successfully progressed.",
                            self.name()
                        )
                    },
                    |n| format!("ReplicaSet \"{n}\" has successfully progressed."),
                );
                set_condition(
                    &mut self.st,
                    condition("Progressing", "True", "NewReplicaSetAvailable", msg),
                );
            } else if progressing {
                let msg = rs_name.as_ref().map_or_else(
                    || format!("Deployment \"{}\" is progressing.", self.name()),
                    |n| format!("ReplicaSet \"{n}\" is progressing."),
                );
                let mut c = condition("Progressing", "True", "ReplicaSetUpdated", msg);
                if let Some(cur) = get_condition(&self.st, "Progressing")
                    && cur["status"] == "True"
                {
                    c["lastTransitionTime"] = cur["lastTransitionTime"].clone();
                }
                remove_condition(&mut self.st, "Progressing");
                set_condition(&mut self.st, c);
            } else if self.timed_out() {
                let msg = rs_name.as_ref().map_or_else(
                    || format!("Deployment \"{}\" has timed out progressing.", self.name()),
                    |n| format!("ReplicaSet \"{n}\" has timed out progressing."),
                );
                set_condition(
                    &mut self.st,
                    condition("Progressing", "False", "ProgressDeadlineExceeded", msg),
                );
                self.events.warning(
                    deployments(),
                    &self.d,
                    "ProgressDeadlineExceeded",
                    format!("Deployment \"{}\" has timed out progressing.", self.name()),
                );
            }
        }
        self.write_status().await?;
        Ok(self.until_deadline())
    }

    fn timed_out(&self) -> bool {
        let Some(c) = get_condition(&self.st, "Progressing") else {
            return false;
        };
        match c["reason"].as_str() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => {
                let secs = int(&self.d, "/spec/progressDeadlineSeconds");
                parse_time(c.get("lastUpdateTime"))
                    .is_some_and(|t| t.as_second() + secs < now().as_second())
            }
        }
    }

    /// Upstream's `requeueStuckDeployment`.
    fn until_deadline(&self) -> Option<Duration> {
        if !has_deadline(&self.d) || self.complete(true) {
            return None;
        }
        let c = get_condition(&self.st, "Progressing")?;
        if c["reason"] == "ProgressDeadlineExceeded" || c["status"] == "Unknown" {
            return None;
        }
        let since = parse_time(c.get("lastUpdateTime"))?;
        let left =
            since.as_second() + int(&self.d, "/spec/progressDeadlineSeconds") - now().as_second();
        Some(Duration::from_secs(
            u64::try_from(left.max(0)).unwrap_or(0) + 1,
        ))
    }

    async fn write_status(&mut self) -> Result<(), ClientError> {
        if self.d.get("status") == Some(&self.st) {
            return Ok(());
        }
        let (ns, name, uid) = (
            self.ns(),
            self.name().to_string(),
            meta_str(&self.d, "uid").to_string(),
        );
        let st = self.st.clone();
        let r = self
            .cache
            .modify(deployments(), &ns, &name, Some("status"), |cur| {
                (meta_str(cur, "uid") == uid && cur.get("status") != Some(&st)).then(|| {
                    let mut v = cur.clone();
                    v["status"] = st.clone();
                    v
                })
            })
            .await;
        match r {
            Ok(Some(v)) => {
                self.d = v;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(fenceposts(&d(10, json!("25%"), json!("25%"))), (3, 2));
        // Both resolving to zero: one may be unavailable.
        assert_eq!(fenceposts(&d(1, json!("0%"), json!("25%"))), (0, 1));
        assert_eq!(max_unavailable(&d(2, json!(0), json!(5))), 2);
        let recreate = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn template_hash_ignores_key_order_and_its_own_label() {
        let a = json!({"metadata": {"labels": {"app": "x", "tier": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"tier": "y", "app": "x", HASH_LABEL: "zzz"}}});
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        let h = template_hash(&a, 0);
        assert!(
            h.bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)),
            "{h}"
        );
    }

    #[test]
    fn conditions_keep_transition_time_on_same_status() {
        let mut st = json!({});
        let mut c = condition("Progressing", "True", "NewReplicaSetCreated", "m".into());
        c["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        set_condition(&mut st, c);
        set_condition(
            &mut st,
            condition("Progressing", "True", "NewReplicaSetAvailable", "n".into()),
        );
        let got = get_condition(&st, "Progressing").unwrap();
        assert_eq!(got["reason"], "NewReplicaSetAvailable");
        assert_eq!(got["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }
}
