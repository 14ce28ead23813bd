//! The `DaemonSet` controller, with kube-controller-manager's behaviour:
//!
//! - one pod per eligible node: the template's `nodeSelector` and required
//!   node affinity match the node, and every `NoSchedule`/`NoExecute` taint
//!   is tolerated, counting the tolerations Kubernetes adds to daemon pods
//!   (`not-ready`/`unreachable` `NoExecute`, the pressure conditions and
//!   `unschedulable` `NoSchedule`, `network-unavailable` for host-network
//!   pods). A node that stops matching loses its pod (for an untolerated
//!   `NoSchedule` taint only new pods are held back, as upstream); a node
//!   that is deleted loses its pod; a node added later gets one;
//! - pods are scheduled as Kubernetes 1.32 does: through the scheduler,
//!   with the required node affinity replaced by one term
//!   `metadata.name In [node]`;
//! - `RollingUpdate` replaces at most `maxUnavailable` pods at once, or with
//!   `maxSurge` starts the new pod beside the old and deletes the old once
//!   the new is available; `OnDelete` uses the new template only for pods
//!   the user deletes; failed pods are replaced;
//! - templates are `ControllerRevisions` (pods are labelled
//!   `controller-revision-hash` with the revision's hash); status has the
//!   `*NumberScheduled`, `numberReady`, `numberAvailable`,
//!   `numberUnavailable`, `numberMisscheduled` counts and
//!   `observedGeneration`.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::deployment::scaled;
use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{controller_of, int, is_deleting, meta_str, now, until_available};
use crate::replicaset::pods;
use crate::revisions::{self, HASH_LABEL, POD_REVISION_LABEL, controller_revisions};
use crate::scheduler::cache::{self as sched, PodInfo};
use crate::scheduler::plugins;

pub(crate) fn daemonsets() -> &'static Resource {
    resources::find("apps", "v1", "daemonsets").expect("daemonsets are served")
}

fn nodes() -> &'static Resource {
    crate::scheduler::nodes()
}

/// The `DaemonSet` controller (see the module docs).
#[derive(Debug)]
pub struct DaemonSetController {
    events: Recorder,
}

impl DaemonSetController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        DaemonSetController {
            events: Recorder::new(api.clone(), "daemonset-controller"),
        }
    }

    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for DaemonSetController {
    const NAME: &'static str = "daemonset";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![daemonsets(), pods(), controller_revisions(), nodes()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, daemonsets()) {
            queue.add(key_of(obj));
        } else if std::ptr::eq(r, nodes()) {
            for ds in cache.list_all(daemonsets()) {
                queue.add(key_of(ds));
            }
        } else {
            queue_controller(cache, daemonsets(), obj, queue);
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(ds) = cache.get(daemonsets(), ns, name).cloned() else {
            return Ok(None);
        };
        let Some((owned, history, update, _)) =
            revisions::claim_all(cache, daemonsets(), &ds).await?
        else {
            return Ok(None);
        };
        let hash = history
            .iter()
            .find(|r| meta_str(r, "name") == update)
            .and_then(|r| r.pointer("/metadata/labels")?.get(HASH_LABEL))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let node_list: Vec<Value> = cache.list(nodes(), "").cloned().collect();
        let mut sync = Sync {
            ctl: self,
            ds: &ds,
            hash,
            again: None,
        };
        let placed = sync.manage(cache, &node_list, owned).await?;
        let placed = if sync.rolling() {
            sync.roll(cache, placed).await?
        } else {
            placed
        };
        let again = sync.again;
        let status = sync.status(&placed);
        // Revisions pods still use are kept whatever the limit.
        let hashes: Vec<&str> = placed
            .values()
            .flat_map(|(_, ps)| ps.iter())
            .filter_map(|p| p.pointer(&format!("/metadata/labels/{POD_REVISION_LABEL}")))
            .filter_map(Value::as_str)
            .collect();
        let mut live: Vec<&str> = history
            .iter()
            .filter(|r| {
                r.pointer("/metadata/labels")
                    .and_then(|l| l.get(HASH_LABEL))
                    .and_then(Value::as_str)
                    .is_some_and(|h| hashes.contains(&h))
            })
            .map(|r| meta_str(r, "name"))
            .collect();
        live.push(&update);
        revisions::truncate(
            cache,
            &history,
            &live,
            int(&ds, "/spec/revisionHistoryLimit"),
        )
        .await?;
        crate::workloads::write_status(cache, daemonsets(), &ds, status).await?;
        Ok(again)
    }
}

/// The tolerations Kubernetes adds to every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`).
fn with_daemon_tolerations(spec: &mut Value) {
    let mut list: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut add = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        add.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in add {
        list.retain(|t| !(t["key"] == key && t["effect"] == effect));
        list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
    }
    spec["tolerations"] = json!(list);
}

/// The node a daemon pod is for: its `nodeName`, else the node its
/// `metadata.name` affinity term names (upstream's `GetTargetNodeName`).
fn target_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Some(n.to_string());
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t.get("matchFields")?.as_array()?.iter().find_map(|f| {
            (f["key"] == "metadata.name" && f["operator"] == "In")
                .then(|| f.pointer("/values/0")?.as_str().map(String::from))
                .flatten()
        })
    })
}

/// `template` made into the pod for `node`.
fn pod_for(ds: &Value, template: &Value, hash: &str, node: &str) -> Value {
    let mut meta = json!({
        "generateName": format!("{}-", meta_str(ds, "name")),
        "namespace": meta_str(ds, "namespace"),
        "ownerReferences": [controller_of(daemonsets(), ds)],
    });
    for f in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
            meta[f] = v.clone();
        }
    }
    meta["labels"][POD_REVISION_LABEL] = json!(hash);
    meta["labels"]["pod-template-generation"] = json!(int(ds, "/metadata/generation").to_string());
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    with_daemon_tolerations(&mut spec);
    // The node already matched the template's own terms: one term naming it
    // replaces them (`ReplaceDaemonSetPodNodeNameNodeAffinity`).
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// (should run a new pod, may keep running one) for `node`
/// (upstream's `NodeShouldRunDaemonPod`).
fn fits(ds: &Value, node: &Value) -> (bool, bool) {
    let mut pod = json!({"metadata": {"namespace": meta_str(ds, "namespace")},
        "spec": ds.pointer("/spec/template/spec").cloned().unwrap_or_else(|| json!({}))});
    with_daemon_tolerations(&mut pod["spec"]);
    let info = PodInfo::from_json(&pod);
    let mut c = sched::Cache::default();
    c.set_node(node);
    let Some(n) = c.nodes.get(meta_str(node, "name")) else {
        return (false, false);
    };
    if !plugins::node_affinity_ok(&info, n) {
        return (false, false);
    }
    let no_exec: Vec<sched::Taint> = n
        .taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect();
    let keep = plugins::untolerated(&info, &no_exec).is_none();
    (plugins::untolerated(&info, &n.taints).is_none(), keep)
}

fn failed(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Failed")
}

/// Node → (should run, the set's pods there).
type Placed = BTreeMap<String, (bool, Vec<Value>)>;

struct Sync<'a> {
    ctl: &'a DaemonSetController,
    ds: &'a Value,
    hash: String,
    again: Option<Duration>,
}

impl Sync<'_> {
    fn rolling(&self) -> bool {
        self.ds
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            != Some("OnDelete")
    }

    fn is_new(&self, pod: &Value) -> bool {
        pod.pointer(&format!("/metadata/labels/{POD_REVISION_LABEL}"))
            .and_then(Value::as_str)
            == Some(self.hash.as_str())
    }

    fn available(&mut self, pod: &Value) -> bool {
        if is_deleting(pod) {
            return false;
        }
        match until_available(pod, int(self.ds, "/spec/minReadySeconds"), now()) {
            Some(d) if d.is_zero() => true,
            Some(d) => {
                let d = d + Duration::from_millis(100);
                self.again = Some(self.again.map_or(d, |a| a.min(d)));
                false
            }
            None => false,
        }
    }

    /// Creates the missing pods and deletes the ones that must go; returns
    /// where the set's pods are afterwards.
    async fn manage(
        &mut self,
        cache: &mut Cache,
        node_list: &[Value],
        owned: Vec<Value>,
    ) -> Result<Placed, ClientError> {
        let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut orphaned = Vec::new();
        for p in owned {
            match target_node(&p) {
                Some(n) => by_node.entry(n).or_default().push(p),
                None => orphaned.push(p),
            }
        }
        let mut placed = Placed::new();
        for node in node_list {
            let name = meta_str(node, "name").to_string();
            let (run, keep) = fits(self.ds, node);
            let mut here: Vec<Value> = by_node.remove(&name).unwrap_or_default();
            let mut keep_here = Vec::new();
            for p in here.drain(..) {
                if is_deleting(&p) {
                    keep_here.push(p);
                } else if !keep || failed(&p) {
                    if failed(&p) {
                        self.ctl.events.warning(
                            daemonsets(),
                            self.ds,
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                                meta_str(&p, "namespace"),
                                meta_str(&p, "name")
                            ),
                        );
                    }
                    self.delete_pod(cache, &p).await?;
                } else {
                    keep_here.push(p);
                }
            }
            let live: Vec<&Value> = keep_here.iter().filter(|p| !is_deleting(p)).collect();
            if run && live.is_empty() {
                let made = self.create_pod(cache, &name).await?;
                keep_here.push(made);
            } else if live.len() > 1 {
                // More than one daemon pod on a node: the oldest stays (the
                // oldest of each revision while a surge update runs).
                let mut live: Vec<Value> = live.into_iter().cloned().collect();
                live.sort_by_key(|p| meta_str(p, "creationTimestamp").to_string());
                let surge = self.rolling() && self.max_surge(node_list.len()) > 0;
                let (mut kept_new, mut kept_old) = (false, false);
                for p in &live {
                    let new = self.is_new(p);
                    let kept = if surge && new {
                        &mut kept_new
                    } else {
                        &mut kept_old
                    };
                    if !*kept {
                        *kept = true;
                        continue;
                    }
                    self.delete_pod(cache, p).await?;
                    keep_here.retain(|k| meta_str(k, "uid") != meta_str(p, "uid"));
                }
            }
            placed.insert(name, (run, keep_here));
        }
        // Pods for nodes that no longer exist, or naming none.
        for p in by_node.into_values().flatten().chain(orphaned) {
            if !is_deleting(&p) {
                self.delete_pod(cache, &p).await?;
            }
        }
        Ok(placed)
    }

    fn max_surge(&self, n: usize) -> i64 {
        let n = i64::try_from(n).unwrap_or(0);
        scaled(
            self.ds
                .pointer("/spec/updateStrategy/rollingUpdate/maxSurge"),
            n,
            true,
        )
    }

    fn max_unavailable(&self, n: usize) -> i64 {
        let n = i64::try_from(n).unwrap_or(0);
        let u = scaled(
            self.ds
                .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
            n,
            true,
        );
        if u == 0 && self.max_surge(usize::try_from(n).unwrap_or(0)) == 0 {
            1
        } else {
            u
        }
    }

    /// `RollingUpdate` (upstream's `rollingUpdate`): old pods are deleted
    /// while at most `maxUnavailable` are unavailable, or with `maxSurge`
    /// new ones start beside them first.
    async fn roll(&mut self, cache: &mut Cache, mut placed: Placed) -> Result<Placed, ClientError> {
        let desired = placed.values().filter(|(run, _)| *run).count();
        let max_surge = self.max_surge(desired);
        let max_unavailable = self.max_unavailable(desired);
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        let mut surging = 0;
        let mut surge_candidates = Vec::new();
        let mut old_to_drop = Vec::new();
        let names: Vec<String> = placed.keys().cloned().collect();
        for name in &names {
            let (run, ps) = &placed[name];
            if !run {
                continue;
            }
            let live: Vec<Value> = ps.iter().filter(|p| !is_deleting(p)).cloned().collect();
            let new = live.iter().find(|p| self.is_new(p)).cloned();
            let old = live.iter().find(|p| !self.is_new(p)).cloned();
            match (old, new) {
                (None, None) => unavailable += 1,
                (None, Some(n)) => {
                    if !self.available(&n) {
                        unavailable += 1;
                    }
                }
                (Some(o), Some(n)) => {
                    // A surge in progress: the old goes once the new is available.
                    if self.available(&n) {
                        old_to_drop.push(o);
                    } else {
                        surging += 1;
                    }
                }
                (Some(o), None) => {
                    if !self.available(&o) {
                        // Unavailable anyway: replace at once.
                        old_to_drop.push(o);
                        unavailable += 1;
                    } else if max_surge > 0 {
                        surge_candidates.push(name.clone());
                    } else {
                        candidates.push(o);
                    }
                }
            }
        }
        for o in &old_to_drop {
            self.delete_pod(cache, o).await?;
        }
        if max_surge > 0 {
            for name in surge_candidates {
                if surging >= max_surge {
                    break;
                }
                let made = self.create_pod(cache, &name).await?;
                if let Some(e) = placed.get_mut(&name) {
                    e.1.push(made);
                }
                surging += 1;
            }
        } else {
            let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            for o in candidates.iter().take(room) {
                self.delete_pod(cache, o).await?;
                old_to_drop.push(o.clone());
            }
        }
        let gone: Vec<&str> = old_to_drop.iter().map(|p| meta_str(p, "uid")).collect();
        for (_, ps) in placed.values_mut() {
            ps.retain(|p| !gone.contains(&meta_str(p, "uid")));
        }
        Ok(placed)
    }

    async fn create_pod(&mut self, cache: &mut Cache, node: &str) -> Result<Value, ClientError> {
        let template = self
            .ds
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let pod = pod_for(self.ds, &template, &self.hash, node);
        match cache.create(pods(), pod).await {
            Ok(made) => {
                self.ctl.events.normal(
                    daemonsets(),
                    self.ds,
                    "SuccessfulCreate",
                    format!("Created pod: {}", meta_str(&made, "name")),
                );
                Ok(made)
            }
            Err(e) => {
                self.ctl.events.warning(
                    daemonsets(),
                    self.ds,
                    "FailedCreate",
                    format!("Error creating: {}", e.message),
                );
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, cache: &mut Cache, pod: &Value) -> Result<(), ClientError> {
        let name = meta_str(pod, "name");
        cache
            .delete(
                pods(),
                meta_str(pod, "namespace"),
                name,
                meta_str(pod, "uid"),
            )
            .await?;
        self.ctl.events.normal(
            daemonsets(),
            self.ds,
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
        );
        Ok(())
    }

    fn status(&mut self, placed: &Placed) -> Value {
        let (mut desired, mut current, mut mis, mut ready, mut updated, mut available) =
            (0, 0, 0, 0, 0, 0);
        for (run, ps) in placed.values() {
            let live: Vec<&Value> = ps.iter().filter(|p| !is_deleting(p)).collect();
            if *run {
                desired += 1;
                if !live.is_empty() {
                    current += 1;
                }
            } else if !live.is_empty() {
                mis += 1;
                continue;
            }
            // The newest pod on the node speaks for it.
            let Some(p) = live
                .iter()
                .max_by_key(|p| meta_str(p, "creationTimestamp").to_string())
            else {
                continue;
            };
            if crate::objects::pod_ready(p) {
                ready += 1;
                if self.available(p) {
                    available += 1;
                }
            }
            if self.is_new(p) {
                updated += 1;
            }
        }
        let mut status = self.ds.get("status").cloned().unwrap_or_else(|| json!({}));
        status["desiredNumberScheduled"] = json!(desired);
        status["currentNumberScheduled"] = json!(current);
        status["numberMisscheduled"] = json!(mis);
        status["numberReady"] = json!(ready);
        status["updatedNumberScheduled"] = json!(updated);
        status["numberAvailable"] = json!(available);
        status["numberUnavailable"] = json!(desired - available);
        status["observedGeneration"] = json!(int(self.ds, "/metadata/generation"));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(spec: Value) -> Value {
        json!({"metadata": {"name": "agent", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": spec}}})
    }

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn eligibility_follows_selectors_taints_and_daemon_tolerations() {
        let d = ds(json!({"nodeSelector": {"role": "edge"}, "containers": []}));
        assert_eq!(
            fits(&d, &node("a", json!({"role": "edge"}), json!([]))),
            (true, true)
        );
        assert_eq!(fits(&d, &node("b", json!({}), json!([]))), (false, false));
        let tainted = node(
            "c",
            json!({"role": "edge"}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(fits(&d, &tainted), (false, true));
        let evicting = node(
            "c",
            json!({"role": "edge"}),
            json!([{"key": "gpu", "effect": "NoExecute"}]),
        );
        assert_eq!(fits(&d, &evicting), (false, false));
        // Added automatically: a cordoned or unreachable node keeps its pod.
        let cordoned = node(
            "d",
            json!({"role": "edge"}),
            json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
        );
        assert_eq!(fits(&d, &cordoned), (true, true));
    }

    #[test]
    fn a_daemon_pod_names_its_node_through_affinity() {
        let d = ds(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}}}),
        );
        let p = pod_for(&d, &d["spec"]["template"], "h1", "n1");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert_eq!(p["metadata"]["labels"][POD_REVISION_LABEL], "h1");
        assert!(p["spec"].get("nodeName").is_none());
        let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(terms.as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 6);
    }
}
