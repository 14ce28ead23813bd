//! The `StatefulSet` controller, with kube-controller-manager's behaviour:
//!
//! - pods have stable names `<set>-<ordinal>` (from `spec.ordinals.start`),
//!   `hostname` = name and `subdomain` = `serviceName`, and the labels
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
//!   and `controller-revision-hash`;
//! - each pod's claims `<template>-<set>-<ordinal>` are made from
//!   `volumeClaimTemplates` before it, and kept as
//!   `persistentVolumeClaimRetentionPolicy` says (`whenDeleted: Delete` makes
//!   the set their owner, `whenScaled: Delete` the condemned pod);
//! - `OrderedReady`: pod N+1 is created only once pods 0..N are Running and
//!   Ready (for `minReadySeconds`), scale-down removes the highest ordinal
//!   first, one at a time, and waits on unhealthy pods; `Parallel` creates
//!   and deletes all at once;
//! - `RollingUpdate` replaces pods from the highest ordinal down to
//!   `partition`, one at a time, each once the previous is healthy; pods
//!   below the partition are (re)created from the current revision;
//!   `OnDelete` only uses the new template for pods deleted by the user;
//! - templates are recorded as `ControllerRevisions` ([`crate::revisions`]);
//!   status carries the replica counts, `currentRevision`/`updateRevision`
//!   (equal once a rolling update is complete) and `observedGeneration`.
//!
//! `rollingUpdate.maxUnavailable` (behind an alpha feature gate in
//! Kubernetes 1.33), when set, lets that many pods be unavailable at once:
//! outdated pods are deleted in batches, as upstream does with the gate on.

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{controller_of, int, is_deleting, meta_str, now, until_available};
use crate::replicaset::pods;
use crate::revisions::{self, POD_REVISION_LABEL, controller_revisions};
use crate::volumes::claims;

pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub(crate) fn statefulsets() -> &'static Resource {
    resources::find("apps", "v1", "statefulsets").expect("statefulsets are served")
}

/// The `StatefulSet` controller (see the module docs).
#[derive(Debug)]
pub struct StatefulSetController {
    events: Recorder,
}

impl StatefulSetController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        StatefulSetController {
            events: Recorder::new(api.clone(), "statefulset-controller"),
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for StatefulSetController {
    const NAME: &'static str = "statefulset";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![statefulsets(), pods(), controller_revisions(), claims()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, statefulsets()) {
            queue.add(key_of(obj));
        } else if !std::ptr::eq(r, claims()) {
            queue_controller(cache, statefulsets(), obj, queue);
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(set) = cache.get(statefulsets(), ns, name).cloned() else {
            return Ok(None);
        };
        let Some((owned, history, update_rev, collisions)) =
            revisions::claim_all(cache, statefulsets(), &set).await?
        else {
            return Ok(None);
        };
        let current_rev = set
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
            .filter(|c| history.iter().any(|r| meta_str(r, "name") == *c))
            .unwrap_or(&update_rev)
            .to_string();
        let template_for = |rev: &str| {
            history
                .iter()
                .find(|r| meta_str(r, "name") == rev)
                .map(revisions::template_of)
        };
        let mut sync = Sync {
            ctl: self,
            set: &set,
            current: (
                current_rev.clone(),
                template_for(&current_rev).unwrap_or_default(),
            ),
            update: (
                update_rev.clone(),
                template_for(&update_rev).unwrap_or_default(),
            ),
            again: None,
        };
        let pods = sync.run(cache, owned).await?;
        let again = sync.again;
        let (cur, upd) = (sync.current.0.clone(), sync.update.0.clone());
        let status = status_of(&set, &pods, &cur, &upd, collisions);
        let final_current = status["currentRevision"].as_str().unwrap_or_default();
        // Revisions pods still use are kept whatever the limit.
        let mut live: Vec<&str> = vec![final_current, &upd];
        live.extend(
            pods.iter()
                .filter_map(|p| p.pointer(&format!("/metadata/labels/{POD_REVISION_LABEL}")))
                .filter_map(Value::as_str),
        );
        revisions::truncate(
            cache,
            &history,
            &live,
            int(&set, "/spec/revisionHistoryLimit"),
        )
        .await?;
        crate::workloads::write_status(cache, statefulsets(), &set, status).await?;
        Ok(again)
    }
}

fn policy_is(set: &Value, field: &str, want: &str) -> bool {
    set.pointer(&format!(
        "/spec/persistentVolumeClaimRetentionPolicy/{field}"
    ))
    .and_then(Value::as_str)
        == Some(want)
}

fn start(set: &Value) -> i64 {
    int(set, "/spec/ordinals/start")
}

/// The ordinal in a pod's name, when it is `<set>-<n>`.
fn ordinal(set: &Value, pod: &Value) -> Option<i64> {
    let rest = meta_str(pod, "name").strip_prefix(meta_str(set, "name"))?;
    let digits = rest.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn revision_of(pod: &Value) -> &str {
    pod.pointer(&format!("/metadata/labels/{POD_REVISION_LABEL}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn running_and_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && crate::objects::pod_ready(pod)
}

fn healthy(pod: &Value) -> bool {
    running_and_ready(pod) && !is_deleting(pod)
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn claim_name(template: &Value, set: &Value, ord: i64) -> String {
    format!(
        "{}-{}-{ord}",
        meta_str(template, "name"),
        meta_str(set, "name")
    )
}

fn claim_templates(set: &Value) -> Vec<Value> {
    set.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Pod `ord` of `set` from `template`, at revision `rev`.
pub(crate) fn new_pod(set: &Value, template: &Value, rev: &str, ord: i64) -> Value {
    let name = format!("{}-{ord}", meta_str(set, "name"));
    let mut meta = json!({
        "name": name,
        "namespace": meta_str(set, "namespace"),
        "ownerReferences": [controller_of(statefulsets(), set)],
    });
    for f in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
            meta[f] = v.clone();
        }
    }
    meta["labels"][POD_NAME_LABEL] = json!(name);
    meta["labels"][POD_INDEX_LABEL] = json!(ord.to_string());
    meta["labels"][POD_REVISION_LABEL] = json!(rev);
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["hostname"] = json!(name);
    if let Some(svc) = set
        .pointer("/spec/serviceName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(svc);
    }
    let templates = claim_templates(set);
    if !templates.is_empty() {
        let mut vols: Vec<Value> = spec
            .get("volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in &templates {
            let vname = meta_str(t, "name");
            vols.retain(|v| v["name"] != vname);
            vols.push(json!({"name": vname,
                "persistentVolumeClaim": {"claimName": claim_name(t, set, ord)}}));
        }
        spec["volumes"] = json!(vols);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// One pass over one set.
struct Sync<'a> {
    ctl: &'a StatefulSetController,
    set: &'a Value,
    /// (revision name, template)
    current: (String, Value),
    update: (String, Value),
    again: Option<Duration>,
}

impl Sync<'_> {
    fn monotonic(&self) -> bool {
        self.set
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            != Some("Parallel")
    }

    fn rolling(&self) -> bool {
        self.set
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            != Some("OnDelete")
    }

    fn partition(&self) -> i64 {
        int(self.set, "/spec/updateStrategy/rollingUpdate/partition")
    }

    /// Waits for `pod` to be available; false when it is not yet.
    fn available(&mut self, pod: &Value) -> bool {
        match until_available(pod, int(self.set, "/spec/minReadySeconds"), now()) {
            Some(d) if d.is_zero() => true,
            Some(d) => {
                let d = d + Duration::from_millis(100);
                self.again = Some(self.again.map_or(d, |a| a.min(d)));
                false
            }
            None => false,
        }
    }

    /// Creates, deletes and replaces pods; returns the pods the set has
    /// afterwards.
    async fn run(
        &mut self,
        cache: &mut Cache,
        owned: Vec<Value>,
    ) -> Result<Vec<Value>, ClientError> {
        let want = int(self.set, "/spec/replicas").max(0);
        let first = start(self.set);
        let mut replicas: Vec<Option<Value>> = vec![None; usize::try_from(want).unwrap_or(0)];
        let mut condemned = Vec::new();
        for p in owned {
            match ordinal(self.set, &p) {
                Some(o) if o >= first && o < first + want => {
                    replicas[usize::try_from(o - first).unwrap_or(0)] = Some(p);
                }
                Some(_) => condemned.push(p),
                None => {}
            }
        }
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(self.set, p)));
        self.claim_owners(cache, want).await?;
        let done = self.scale(cache, &mut replicas, &mut condemned).await?;
        if done && self.rolling() {
            self.roll(cache, &replicas).await?;
        }
        let mut out: Vec<Value> = replicas.into_iter().flatten().collect();
        out.extend(condemned);
        Ok(out)
    }

    /// Brings pods up to `replicas` and removes condemned ones; true when
    /// nothing is left to wait for.
    async fn scale(
        &mut self,
        cache: &mut Cache,
        replicas: &mut [Option<Value>],
        condemned: &mut Vec<Value>,
    ) -> Result<bool, ClientError> {
        let monotonic = self.monotonic();
        let first = start(self.set);
        // Upstream's order of attention: replicas up, then condemned down.
        let first_unhealthy = replicas
            .iter()
            .flatten()
            .chain(condemned.iter())
            .find(|p| !healthy(p))
            .map(|p| meta_str(p, "name").to_string());
        for (i, slot) in replicas.iter_mut().enumerate() {
            let ord = first + i64::try_from(i).unwrap_or(0);
            if let Some(p) = slot.as_ref().filter(|p| finished(p) && !is_deleting(p)) {
                self.delete_pod(cache, p).await?;
                if monotonic {
                    return Ok(false);
                }
                continue;
            }
            let Some(p) = slot.as_ref() else {
                let pod = self.create_pod(cache, ord).await?;
                *slot = Some(pod);
                if monotonic {
                    return Ok(false);
                }
                continue;
            };
            if monotonic && (is_deleting(p) || !running_and_ready(p)) {
                return Ok(false);
            }
            if monotonic && !self.available(&p.clone()) {
                return Ok(false);
            }
        }
        if monotonic && replicas.iter().flatten().any(|p| !healthy(p)) {
            return Ok(false);
        }
        let mut i = 0;
        while i < condemned.len() {
            let p = condemned[i].clone();
            if is_deleting(&p) {
                if monotonic {
                    return Ok(false);
                }
                i += 1;
                continue;
            }
            if monotonic
                && !running_and_ready(&p)
                && first_unhealthy.as_deref() != Some(meta_str(&p, "name"))
            {
                return Ok(false);
            }
            self.delete_pod(cache, &p).await?;
            condemned.remove(i);
            if monotonic {
                return Ok(false);
            }
        }
        Ok(condemned.is_empty())
    }

    /// `RollingUpdate`: the highest-ordinal pod not at the update revision
    /// is deleted (it comes back from the new template), one at a time.
    async fn roll(
        &mut self,
        cache: &mut Cache,
        replicas: &[Option<Value>],
    ) -> Result<(), ClientError> {
        let min = usize::try_from(self.partition().max(0)).unwrap_or(0);
        if let Some(max) = self.max_unavailable(replicas.len()) {
            return self.roll_unavailable(cache, replicas, min, max).await;
        }
        for target in (min..replicas.len()).rev() {
            let Some(p) = &replicas[target] else {
                return Ok(());
            };
            if revision_of(p) != self.update.0 && !is_deleting(p) {
                return self.delete_pod(cache, p).await;
            }
            if !healthy(p) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// `rollingUpdate.maxUnavailable` of `replicas` (at least 1), when set.
    fn max_unavailable(&self, replicas: usize) -> Option<usize> {
        let v = self
            .set
            .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
            .filter(|v| !v.is_null())?;
        let n = crate::deployment::scaled(Some(v), i64::try_from(replicas).unwrap_or(0), false);
        Some(usize::try_from(n.max(1)).unwrap_or(1))
    }

    /// Rolling update with `maxUnavailable` (upstream's
    /// `MaxUnavailableStatefulSet`): with `unavailable` pods counted over
    /// all replicas, up to `max - unavailable` outdated pods are deleted at
    /// once, highest ordinal first, down to the partition.
    async fn roll_unavailable(
        &mut self,
        cache: &mut Cache,
        replicas: &[Option<Value>],
        min: usize,
        max: usize,
    ) -> Result<(), ClientError> {
        let mut unavailable = 0;
        for p in replicas {
            match p {
                Some(p) if healthy(p) && self.available(p) => {}
                _ => unavailable += 1,
            }
        }
        let mut budget = max.saturating_sub(unavailable);
        for target in (min..replicas.len()).rev() {
            if budget == 0 {
                break;
            }
            if let Some(p) = &replicas[target]
                && revision_of(p) != self.update.0
                && !is_deleting(p)
            {
                self.delete_pod(cache, p).await?;
                budget -= 1;
            }
        }
        Ok(())
    }

    async fn create_pod(&mut self, cache: &mut Cache, ord: i64) -> Result<Value, ClientError> {
        let set = self.set;
        // Below the partition pods stay at the current revision.
        let (rev, template) = if self.rolling() && ord < start(set) + self.partition() {
            &self.current
        } else {
            &self.update
        };
        let pod = new_pod(set, template, rev, ord);
        let pname = meta_str(&pod, "name").to_string();
        self.create_claims(cache, ord, &pname).await?;
        match cache.create(pods(), pod).await {
            Ok(made) => {
                self.ctl.events.normal(
                    statefulsets(),
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {pname} in StatefulSet {} successful",
                        meta_str(set, "name")
                    ),
                );
                Ok(made)
            }
            Err(e) => {
                self.ctl.events.warning(
                    statefulsets(),
                    set,
                    "FailedCreate",
                    format!(
                        "create Pod {pname} in StatefulSet {} failed error: {}",
                        meta_str(set, "name"),
                        e.message
                    ),
                );
                Err(e)
            }
        }
    }

    /// `whenDeleted` on existing claims of ordinals in range: the set is
    /// their owner under `Delete`, not under `Retain` (the policy may change
    /// after the claims were made).
    async fn claim_owners(&self, cache: &mut Cache, want: i64) -> Result<(), ClientError> {
        let set = self.set;
        let (ns, uid) = (meta_str(set, "namespace"), meta_str(set, "uid"));
        let delete = policy_is(set, "whenDeleted", "Delete");
        let mut owner = controller_of(statefulsets(), set);
        owner["controller"] = json!(false);
        for ord in start(set)..start(set) + want {
            for t in claim_templates(set) {
                let name = claim_name(&t, set, ord);
                let Some(c) = cache.get(claims(), ns, &name) else {
                    continue;
                };
                let refs: Vec<Value> = c
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if refs.iter().any(|r| r["uid"] == uid) == delete {
                    continue;
                }
                let r = cache
                    .modify(claims(), ns, &name, None, |cur| {
                        let mut refs: Vec<Value> = cur
                            .pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let had = refs.iter().any(|r| r["uid"] == uid);
                        if had == delete {
                            return None;
                        }
                        refs.retain(|r| r["uid"] != uid);
                        if delete {
                            refs.push(owner.clone());
                        }
                        let mut v = cur.clone();
                        v["metadata"]["ownerReferences"] = json!(refs);
                        Some(v)
                    })
                    .await;
                if let Err(e) = r
                    && !e.is_not_found()
                {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn create_claims(
        &self,
        cache: &mut Cache,
        ord: i64,
        pod: &str,
    ) -> Result<(), ClientError> {
        let set = self.set;
        let ns = meta_str(set, "namespace");
        for t in claim_templates(set) {
            let name = claim_name(&t, set, ord);
            if cache.get(claims(), ns, &name).is_some() {
                continue;
            }
            let mut labels = t
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let Some(m) = set
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
            {
                for (k, v) in m {
                    labels[k] = v.clone();
                }
            }
            let mut meta = json!({"name": name, "namespace": ns, "labels": labels});
            if let Some(a) = t.pointer("/metadata/annotations") {
                meta["annotations"] = a.clone();
            }
            if policy_is(set, "whenDeleted", "Delete") {
                let mut owner = controller_of(statefulsets(), set);
                owner["controller"] = json!(false);
                meta["ownerReferences"] = json!([owner]);
            }
            let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta, "spec": t.get("spec").cloned().unwrap_or_else(|| json!({}))});
            match cache.create(claims(), claim).await {
                Ok(_) => self.ctl.events.normal(
                    statefulsets(),
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {name} Pod {pod} in StatefulSet {} success",
                        meta_str(set, "name")
                    ),
                ),
                Err(e) if e.code == 409 => {}
                Err(e) => {
                    self.ctl.events.warning(
                        statefulsets(),
                        set,
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {pod} in StatefulSet {} failed error: {}",
                            meta_str(set, "name"),
                            e.message
                        ),
                    );
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn delete_pod(&self, cache: &mut Cache, pod: &Value) -> Result<(), ClientError> {
        let set = self.set;
        let (ns, pname) = (meta_str(pod, "namespace"), meta_str(pod, "name"));
        // whenScaled: Delete — a pod removed by a scale-down takes its claims.
        let scaled_away =
            ordinal(set, pod).is_some_and(|o| o >= start(set) + int(set, "/spec/replicas"));
        if scaled_away && policy_is(set, "whenScaled", "Delete") {
            let owner = {
                let mut o = controller_of(pods(), pod);
                o["controller"] = json!(false);
                o
            };
            for t in claim_templates(set) {
                let Some(o) = ordinal(set, pod) else { break };
                let name = claim_name(&t, set, o);
                let r = cache
                    .modify(claims(), ns, &name, None, |cur| {
                        let refs = cur
                            .pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array);
                        if refs.is_some_and(|r| r.iter().any(|x| x["uid"] == owner["uid"])) {
                            return None;
                        }
                        let mut v = cur.clone();
                        let mut list = refs.cloned().unwrap_or_default();
                        list.push(owner.clone());
                        v["metadata"]["ownerReferences"] = json!(list);
                        Some(v)
                    })
                    .await;
                match r {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
        cache
            .delete(pods(), ns, pname, meta_str(pod, "uid"))
            .await?;
        self.ctl.events.normal(
            statefulsets(),
            set,
            "SuccessfulDelete",
            format!(
                "delete Pod {pname} in StatefulSet {} successful",
                meta_str(set, "name")
            ),
        );
        Ok(())
    }
}

/// The status `pods` give (upstream's `computeReplicaStatus` and
/// `completeRollingUpdate`).
fn status_of(set: &Value, pods: &[Value], current: &str, update: &str, collisions: i64) -> Value {
    let min_ready = int(set, "/spec/minReadySeconds");
    let t = now();
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for p in pods {
        replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if until_available(p, min_ready, t).is_some_and(|d| d.is_zero()) {
                available += 1;
            }
        }
        if !is_deleting(p) {
            if revision_of(p) == current {
                cur += 1;
            }
            if revision_of(p) == update {
                upd += 1;
            }
        }
    }
    let mut status = set.get("status").cloned().unwrap_or_else(|| json!({}));
    let rolling = set
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("OnDelete");
    let (mut cur_name, mut cur_count) = (current.to_string(), cur);
    if rolling && upd == replicas && ready == replicas {
        cur_name = update.to_string();
        cur_count = upd;
    }
    status["observedGeneration"] = json!(int(set, "/metadata/generation"));
    status["replicas"] = json!(replicas);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["currentReplicas"] = json!(cur_count);
    status["updatedReplicas"] = json!(upd);
    status["currentRevision"] = json!(cur_name);
    status["updateRevision"] = json!(update);
    status["collisionCount"] = json!(collisions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Value {
        json!({"metadata": {"name": "web", "namespace": "n", "uid": "u"},
            "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    }

    #[test]
    fn pods_have_stable_identities_and_claims() {
        let s = set();
        let p = new_pod(&s, &s["spec"]["template"], "web-abc", 2);
        assert_eq!(p["metadata"]["name"], "web-2");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(p["metadata"]["labels"][POD_REVISION_LABEL], "web-abc");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "web");
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "data-web-2"
        );
        assert_eq!(ordinal(&s, &p), Some(2));
        assert_eq!(ordinal(&s, &json!({"metadata": {"name": "web-x"}})), None);
        assert_eq!(ordinal(&s, &json!({"metadata": {"name": "webby-1"}})), None);
    }

    #[test]
    fn a_rolling_update_completes_when_every_pod_is_updated_and_ready() {
        let s = set();
        let ready = |rev: &str| {
            json!({"metadata": {"name": "web-0", "labels": {POD_REVISION_LABEL: rev}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        };
        let st = status_of(&s, &[ready("b"), ready("a")], "a", "b", 0);
        assert_eq!(
            (
                st["currentRevision"].as_str(),
                st["updatedReplicas"].as_i64()
            ),
            (Some("a"), Some(1))
        );
        let st = status_of(&s, &[ready("b"), ready("b")], "a", "b", 0);
        assert_eq!(
            (
                st["currentRevision"].as_str(),
                st["currentReplicas"].as_i64()
            ),
            (Some("b"), Some(2))
        );
    }
}
