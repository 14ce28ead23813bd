//! The `ReplicaSet` controller, with kube-controller-manager's behaviour:
//!
//! - pods are created from `spec.template` or deleted until as many active
//!   pods (not deleting, not finished) as `spec.replicas` are owned, at most
//!   500 per pass (as upstream's burst), created in concurrent batches of
//!   1, 2, 4… (upstream's slow start); the ones deleted first are the
//!   unscheduled, then pending, then not ready, then the most recently ready,
//!   then the ones restarted most, then the newest (upstream's ranking);
//! - pods matching the selector without a controller are adopted, owned
//!   ones that stopped matching are released;
//! - status: `replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//!   `availableReplicas` (ready for `minReadySeconds`), `observedGeneration`,
//!   and a `ReplicaFailure` condition while pods cannot be created.

use std::cmp::Reverse;
use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use keel_api::selectors::LabelSelector;
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{
    controller_of, int, is_deleting, meta_str, now, pod_active, pod_ready, ready_since,
    until_available,
};

/// Pods created or deleted in one pass at most.
const BURST: usize = 500;

pub(crate) fn replicasets() -> &'static Resource {
    resources::find("apps", "v1", "replicasets").expect("replicasets are served")
}

pub(crate) fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

pub(crate) fn selector(owner: &Value) -> Option<LabelSelector> {
    let sel = owner.pointer("/spec/selector")?;
    // An empty selector selects nothing for a controller.
    let empty = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(serde_json::Map::is_empty)
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    (!empty).then(|| LabelSelector::from_json(sel))
}

/// The `ReplicaSet` controller (see the module docs).
#[derive(Debug)]
pub struct ReplicaSetController {
    events: Recorder,
}

impl ReplicaSetController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        ReplicaSetController {
            events: Recorder::new(api.clone(), "replicaset-controller"),
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for ReplicaSetController {
    const NAME: &'static str = "replicaset";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![replicasets(), pods()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, replicasets()) {
            queue.add(key_of(obj));
            return;
        }
        queue_controller(cache, replicasets(), obj, queue);
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(rs) = cache.get(replicasets(), ns, name).cloned() else {
            return Ok(None);
        };
        let Some(sel) = selector(&rs) else {
            return Ok(None);
        };
        let deleting = is_deleting(&rs);
        let active: Vec<Value> = cache
            .list(pods(), ns)
            .filter(|p| pod_active(p))
            .cloned()
            .collect();
        let mut owned = cache
            .claim(replicasets(), &rs, pods(), &sel, active)
            .await?;
        let want = usize::try_from(int(&rs, "/spec/replicas")).unwrap_or(0);
        let mut failure = None;
        if !deleting {
            if owned.len() < want {
                // Upstream's slow start: batches of 1, 2, 4… created
                // concurrently; a batch with an error ends the pass.
                let mut left = (want - owned.len()).min(BURST);
                let mut batch = 1;
                while left > 0 && failure.is_none() {
                    let size = batch.min(left);
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..size {
                        let (api, pod) = (cache.api.clone(), pod_from_template(&rs));
                        set.spawn(async move { api.create(pods(), pod, crate::MANAGER).await });
                    }
                    while let Some(joined) = set.join_next().await {
                        let made = joined.unwrap_or_else(|e| {
                            Err(ClientError {
                                code: 500,
                                reason: "InternalError".into(),
                                message: e.to_string(),
                            })
                        });
                        match made {
                            Ok(pod) => {
                                cache.remember(pods(), pod.clone());
                                self.events.normal(
                                    replicasets(),
                                    &rs,
                                    "SuccessfulCreate",
                                    format!("Created pod: {}", meta_str(&pod, "name")),
                                );
                                owned.push(pod);
                            }
                            Err(e) => {
                                self.events.warning(
                                    replicasets(),
                                    &rs,
                                    "FailedCreate",
                                    format!("Error creating: {}", e.message),
                                );
                                failure = Some(e);
                            }
                        }
                    }
                    left -= size;
                    batch *= 2;
                }
            } else if owned.len() > want {
                let n = (owned.len() - want).min(BURST);
                owned.sort_by_cached_key(deletion_rank);
                for p in owned.drain(..n) {
                    let pname = meta_str(&p, "name").to_string();
                    cache
                        .delete(pods(), ns, &pname, meta_str(&p, "uid"))
                        .await?;
                    self.events.normal(
                        replicasets(),
                        &rs,
                        "SuccessfulDelete",
                        format!("Deleted pod: {pname}"),
                    );
                }
            }
        }
        let again = self
            .write_status(cache, &rs, &owned, failure.as_ref())
            .await?;
        if let Some(e) = failure {
            return Err(e);
        }
        // More to create or delete than one pass does.
        if !deleting && owned.len() != want {
            return Ok(Some(Duration::ZERO));
        }
        Ok(again)
    }
}

impl ReplicaSetController {
    /// Writes the status the owned pods give; returns when a pod becomes
    /// available (ready for `minReadySeconds`).
    async fn write_status(
        &self,
        cache: &mut Cache,
        rs: &Value,
        owned: &[Value],
        failure: Option<&ClientError>,
    ) -> Result<Option<Duration>, ClientError> {
        let min_ready = int(rs, "/spec/minReadySeconds");
        let t = now();
        let template_labels = rs
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object);
        let (mut ready, mut available, mut labeled) = (0, 0, 0);
        let mut next: Option<Duration> = None;
        for p in owned {
            let labels = p.pointer("/metadata/labels").and_then(Value::as_object);
            if template_labels.is_none_or(|tl| {
                tl.iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            }) {
                labeled += 1;
            }
            if pod_ready(p) {
                ready += 1;
            }
            match until_available(p, min_ready, t) {
                Some(d) if d.is_zero() => available += 1,
                Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                None => {}
            }
        }
        let mut status = rs.get("status").cloned().unwrap_or_else(|| json!({}));
        status["replicas"] = json!(owned.len());
        status["fullyLabeledReplicas"] = json!(labeled);
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(available);
        status["observedGeneration"] = json!(int(rs, "/metadata/generation"));
        let all: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let since = all
            .iter()
            .find(|c| c["type"] == "ReplicaFailure")
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(crate::objects::timestamp(t)));
        let mut conds: Vec<Value> = all
            .into_iter()
            .filter(|c| c["type"] != "ReplicaFailure")
            .collect();
        if let Some(e) = failure {
            conds.push(
                json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": e.message, "lastTransitionTime": since}),
            );
        }
        if conds.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("conditions");
            }
        } else {
            status["conditions"] = json!(conds);
        }
        // Upstream writes zeros out; keel stores them as they are.
        if rs.get("status") != Some(&status) {
            let (ns, name, uid) = (
                meta_str(rs, "namespace"),
                meta_str(rs, "name"),
                meta_str(rs, "uid"),
            );
            let r = cache
                .modify(replicasets(), ns, name, Some("status"), |cur| {
                    (meta_str(cur, "uid") == uid && cur.get("status") != Some(&status)).then(|| {
                        let mut v = cur.clone();
                        v["status"] = status.clone();
                        v
                    })
                })
                .await;
            match r {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        // Re-check a second after the next pod's minReadySeconds run out.
        Ok(next.map(|d| d + Duration::from_millis(100)))
    }
}

/// A new pod for `rs`: its template, labels and annotations, with `rs` as
/// controller.
fn pod_from_template(rs: &Value) -> Value {
    let t = rs
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut meta = json!({
        "generateName": format!("{}-", meta_str(rs, "name")),
        "namespace": meta_str(rs, "namespace"),
        "ownerReferences": [controller_of(replicasets(), rs)],
    });
    for f in ["labels", "annotations", "finalizers"] {
        if let Some(v) = t.pointer(&format!("/metadata/{f}")) {
            meta[f] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t.get("spec").cloned().unwrap_or_else(|| json!({}))})
}

/// Sort key: pods to delete first come first (upstream's `ActivePods`
/// order).
fn deletion_rank(p: &Value) -> (bool, u8, bool, Reverse<i64>, Reverse<i64>, Reverse<String>) {
    let phase = match p.pointer("/status/phase").and_then(Value::as_str) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts: i64 = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |a| a.iter().map(|c| int(c, "/restartCount")).sum());
    (
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty()),
        phase,
        pod_ready(p),
        // Ready more recently first.
        Reverse(ready_since(p).map_or(0, jiff::Timestamp::as_second)),
        Reverse(restarts),
        // Newest first (RFC 3339 in UTC sorts as text).
        Reverse(meta_str(p, "creationTimestamp").to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::controller_uid;

    #[test]
    fn deletion_order_is_upstreams() {
        let pod = |name: &str, node: &str, phase: &str, ready: Option<&str>, created: &str| {
            let mut p = json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"nodeName": node}, "status": {"phase": phase}});
            if let Some(t) = ready {
                p["status"]["conditions"] =
                    json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
            }
            p
        };
        let mut pods = [
            pod(
                "ready-old",
                "n1",
                "Running",
                Some("2024-01-01T00:00:00Z"),
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "ready-new",
                "n1",
                "Running",
                Some("2024-01-02T00:00:00Z"),
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "running-not-ready",
                "n1",
                "Running",
                None,
                "2024-01-01T00:00:00Z",
            ),
            pod("pending", "n1", "Pending", None, "2024-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", None, "2023-01-01T00:00:00Z"),
        ];
        pods.sort_by_cached_key(deletion_rank);
        let names: Vec<&str> = pods.iter().map(|p| meta_str(p, "name")).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "running-not-ready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn template_becomes_an_owned_pod() {
        let rs = json!({"metadata": {"name": "web-abc", "namespace": "n", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let p = pod_from_template(&rs);
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(controller_uid(&p, "ReplicaSet"), Some("u1"));
        assert_eq!(p["spec"]["containers"][0]["name"], "c");
    }
}
