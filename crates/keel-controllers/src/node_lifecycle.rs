//! Node lifecycle, as kube-controller-manager's node lifecycle and taint
//! eviction controllers do it:
//!
//! - heartbeats are the nodes' Leases in `kube-node-lease`; a node whose
//!   Lease is not renewed for the grace period (from when this controller
//!   last saw it renewed, or first saw the node) gets its conditions set to
//!   `Unknown` (`NodeStatusUnknown`);
//! - taints follow the `Ready` condition: `False` → `node.kubernetes.io/
//!   not-ready`, `Unknown` → `node.kubernetes.io/unreachable`, both
//!   `NoSchedule` and `NoExecute`; `spec.unschedulable` (cordon) →
//!   `node.kubernetes.io/unschedulable:NoSchedule`;
//! - pods on a node with `NoExecute` taints are deleted at once when they
//!   do not tolerate one, else once their `tolerationSeconds` since the
//!   taint's `timeAdded` have passed (`TaintManagerEviction` event).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::{DeleteOptions, Loopback};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::objects::meta_str;
use crate::scheduler::cache::{Taint, Toleration, tolerations};
use crate::scheduler::events::{Involved, Recorder, now};
use crate::scheduler::{nodes, pods};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const LEASE_NS: &str = "kube-node-lease";
const MANAGER: &str = "node-controller";

fn leases() -> &'static Resource {
    resources::find("coordination.k8s.io", "v1", "leases").expect("leases are served")
}

#[derive(Debug)]
struct NodeState {
    /// When a heartbeat was last seen (or the node first seen).
    probe: Instant,
    renew: String,
    node: Value,
}

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    uid: String,
    tolerations: Vec<Toleration>,
}

/// The node lifecycle controller. [`NodeLifecycle::run`] never returns.
#[derive(Debug)]
pub struct NodeLifecycle {
    api: Loopback,
    grace: Duration,
    nodes: HashMap<String, NodeState>,
    /// Bound pods by key (`ns/name`).
    pods: HashMap<String, PodState>,
    /// Pods already deleted by eviction.
    evicted: HashSet<String>,
    recorder: Recorder,
}

impl NodeLifecycle {
    /// `grace`: how long a Lease may go unrenewed before the node is
    /// `Unknown`.
    pub fn new(api: Loopback, grace: Duration) -> Self {
        NodeLifecycle {
            recorder: Recorder::new(api.clone(), "node-controller"),
            api,
            grace,
            nodes: HashMap::new(),
            pods: HashMap::new(),
            evicted: HashSet::new(),
        }
    }

    pub async fn run(mut self) {
        let period = (self.grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let Some((nrev, lrev, prev)) = self.resync().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let (Ok(mut nw), Ok(mut lw), Ok(mut pw)) = (
                self.api.watch(nodes(), nrev + 1).await,
                self.api.watch(leases(), lrev + 1).await,
                self.api.watch(pods(), prev + 1).await,
            ) else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    ev = nw.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => match c.kind {
                            ChangeKind::Put => if let Some(n) = self.api.object(&c) {
                                self.observe_node(n);
                            },
                            ChangeKind::Deleted => {
                                self.nodes.remove(c.key.rsplit('/').next().unwrap_or_default());
                            }
                        },
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        _ => break,
                    },
                    ev = lw.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => {
                            if c.kind == ChangeKind::Put
                                && c.key.contains("/kube-node-lease/")
                                && let Some(l) = self.api.object(&c)
                            {
                                self.observe_lease(&l);
                            }
                        }
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        _ => break,
                    },
                    ev = pw.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => {
                            let key = storage_pod_key(&c.key);
                            match c.kind {
                                ChangeKind::Put if c.may_contain(b"nodeName") => {
                                    if let Some(p) = self.api.object(&c) {
                                        self.observe_pod(&p);
                                    }
                                }
                                ChangeKind::Put => {}
                                ChangeKind::Deleted => {
                                    self.pods.remove(&key);
                                    self.evicted.remove(&key);
                                }
                            }
                        }
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        _ => break,
                    },
                    _ = tick.tick() => self.monitor().await,
                }
            }
            tracing::warn!("node lifecycle: a watch ended, listing again");
        }
    }

    async fn resync(&mut self) -> Option<(i64, i64, i64)> {
        let (ns, nrev) = self.api.list(nodes(), None).await.ok()?;
        let (ls, lrev) = self.api.list(leases(), Some(LEASE_NS)).await.ok()?;
        let (ps, prev) = self.api.list(pods(), None).await.ok()?;
        self.nodes.clear();
        self.pods.clear();
        for n in ns {
            self.observe_node(n);
        }
        for l in &ls {
            self.observe_lease(l);
        }
        for p in &ps {
            self.observe_pod(p);
        }
        Some((nrev, lrev, prev))
    }

    fn observe_node(&mut self, n: Value) {
        let name = meta_str(&n, "name").to_string();
        match self.nodes.get_mut(&name) {
            Some(s) => s.node = n,
            None => {
                self.nodes.insert(
                    name,
                    NodeState {
                        probe: Instant::now(),
                        renew: String::new(),
                        node: n,
                    },
                );
            }
        }
    }

    fn observe_lease(&mut self, l: &Value) {
        let renew = l
            .pointer("/spec/renewTime")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(s) = self.nodes.get_mut(meta_str(l, "name"))
            && s.renew != renew
        {
            s.renew = renew.to_string();
            s.probe = Instant::now();
        }
    }

    fn observe_pod(&mut self, p: &Value) {
        let key = format!("{}/{}", meta_str(p, "namespace"), meta_str(p, "name"));
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let phase = p.pointer("/status/phase").and_then(Value::as_str);
        if node.is_empty() || matches!(phase, Some("Succeeded" | "Failed")) {
            self.pods.remove(&key);
            return;
        }
        self.pods.insert(
            key,
            PodState {
                node: node.to_string(),
                uid: meta_str(p, "uid").to_string(),
                tolerations: tolerations(p),
            },
        );
    }

    /// One pass: stale heartbeats, taints, evictions.
    async fn monitor(&mut self) {
        let now_i = Instant::now();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let Some(s) = self.nodes.get(&name) else {
                continue;
            };
            let ready = ready_status(&s.node);
            if now_i.duration_since(s.probe) > self.grace && ready.as_deref() != Some("Unknown") {
                self.mark_unknown(&name, ready.is_none()).await;
            }
            let Some(s) = self.nodes.get(&name) else {
                continue;
            };
            if let Some(taints) = wanted_taints(&s.node) {
                let r = self
                    .api
                    .modify(nodes(), None, &name, None, MANAGER, |cur| {
                        let t = wanted_taints(cur)?;
                        let mut v = cur.clone();
                        if t.is_empty() {
                            v["spec"].as_object_mut()?.remove("taints");
                        } else {
                            v["spec"]["taints"] = json!(t);
                        }
                        Some(v)
                    })
                    .await;
                match r {
                    Ok(Some(n)) => self.observe_node(n),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(node = name, error = %e, taints = ?taints, "node lifecycle: taints not written");
                    }
                }
            }
        }
        self.evict().await;
    }

    async fn mark_unknown(&mut self, name: &str, never: bool) {
        let message = if never {
            "Kubelet never posted node status."
        } else {
            "Kubelet stopped posting node status."
        };
        tracing::info!(
            node = name,
            "node lifecycle: heartbeat missed, node is Unknown"
        );
        let ts = now();
        let r = self
            .api
            .modify(nodes(), None, name, Some("status"), MANAGER, |cur| {
                let mut v = cur.clone();
                if !v.get("status").is_some_and(Value::is_object) {
                    v["status"] = json!({});
                }
                let mut conds: Vec<Value> = v["status"]
                    .get("conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
                    if let Some(c) = conds
                        .iter_mut()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
                    {
                        if c.get("status").and_then(Value::as_str) != Some("Unknown") {
                            c["status"] = json!("Unknown");
                            c["reason"] = json!("NodeStatusUnknown");
                            c["message"] = json!("Kubelet stopped posting node status.");
                            c["lastTransitionTime"] = json!(ts);
                        }
                    } else {
                        conds.push(json!({"type": ty, "status": "Unknown", "reason": "NodeStatusUnknown",
                            "message": "Kubelet never posted node status.", "lastHeartbeatTime": null,
                            "lastTransitionTime": ts}));
                    }
                }
                v["status"]["conditions"] = json!(conds);
                Some(v)
            })
            .await;
        match r {
            Ok(Some(n)) => {
                let uid = meta_str(&n, "uid").to_string();
                self.observe_node(n);
                self.recorder.normal(
                    &Involved {
                        kind: "Node",
                        api_version: "v1",
                        ns: String::new(),
                        name: name.to_string(),
                        uid,
                    },
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady ({message})"),
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = name, error = %e, "node lifecycle: status not written"),
        }
    }

    /// Deletes pods whose `NoExecute` taints are no longer tolerated.
    async fn evict(&mut self) {
        let tainted: HashMap<&str, Vec<Taint>> = self
            .nodes
            .iter()
            .filter_map(|(n, s)| {
                let t: Vec<Taint> = Taint::list(&s.node)
                    .into_iter()
                    .filter(|t| t.effect == "NoExecute")
                    .collect();
                (!t.is_empty()).then_some((n.as_str(), t))
            })
            .collect();
        if tainted.is_empty() {
            return;
        }
        let wall = jiff::Timestamp::now();
        let mut due = Vec::new();
        for (key, p) in &self.pods {
            if self.evicted.contains(key) {
                continue;
            }
            let Some(taints) = tainted.get(p.node.as_str()) else {
                continue;
            };
            if eviction_due(&p.tolerations, taints, wall) {
                due.push((key.clone(), p.clone()));
            }
        }
        for (key, p) in due {
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            tracing::info!(
                pod = key,
                node = p.node,
                "node lifecycle: evicting pod from tainted node"
            );
            self.recorder.normal(
                &Involved {
                    kind: "Pod",
                    api_version: "v1",
                    ns: ns.to_string(),
                    name: name.to_string(),
                    uid: p.uid.clone(),
                },
                "TaintManagerEviction",
                format!("Marking for deletion Pod {key}"),
            );
            let opts = DeleteOptions {
                grace_period: None,
                precondition_uid: Some(p.uid.clone()),
                ..DeleteOptions::default()
            };
            match self.api.delete(pods(), Some(ns), name, &opts).await {
                Ok(_) => {
                    self.evicted.insert(key);
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {
                    self.pods.remove(&key);
                }
                Err(e) => tracing::warn!(pod = key, error = %e, "node lifecycle: eviction failed"),
            }
        }
    }
}

fn storage_pod_key(storage: &str) -> String {
    let mut parts = storage.rsplit('/');
    let name = parts.next().unwrap_or_default();
    let ns = parts.next().unwrap_or_default();
    format!("{ns}/{name}")
}

/// The node's `Ready` condition status; `None` when it has none.
fn ready_status(node: &Value) -> Option<String> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .map(String::from)
}

/// The node's taints as its condition and cordon call for; `None` when
/// they already are.
fn wanted_taints(node: &Value) -> Option<Vec<Value>> {
    let current: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut want: Vec<(&str, &str)> = Vec::new();
    match ready_status(node).as_deref() {
        Some("False") => {
            want.push((NOT_READY, "NoSchedule"));
            want.push((NOT_READY, "NoExecute"));
        }
        Some("Unknown") => {
            want.push((UNREACHABLE, "NoSchedule"));
            want.push((UNREACHABLE, "NoExecute"));
        }
        _ => {}
    }
    if node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        want.push((UNSCHEDULABLE, "NoSchedule"));
    }
    let ours = |t: &Value| {
        matches!(
            t.get("key").and_then(Value::as_str),
            Some(NOT_READY | UNREACHABLE | UNSCHEDULABLE)
        )
    };
    let has = |k: &str, e: &str| {
        current.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(k)
                && t.get("effect").and_then(Value::as_str) == Some(e)
        })
    };
    let stale = current.iter().filter(|t| ours(t)).any(|t| {
        !want.iter().any(|(k, e)| {
            t.get("key").and_then(Value::as_str) == Some(k)
                && t.get("effect").and_then(Value::as_str) == Some(e)
        })
    });
    let missing = want.iter().any(|(k, e)| !has(k, e));
    if !stale && !missing {
        return None;
    }
    let ts = now();
    let mut out: Vec<Value> = current
        .iter()
        .filter(|t| {
            !ours(t)
                || want.iter().any(|(k, e)| {
                    t.get("key").and_then(Value::as_str) == Some(k)
                        && t.get("effect").and_then(Value::as_str) == Some(e)
                })
        })
        .cloned()
        .collect();
    for (k, e) in want {
        if !has(k, e) {
            let mut t = json!({"key": k, "effect": e});
            if e == "NoExecute" {
                t["timeAdded"] = json!(ts);
            }
            out.push(t);
        }
    }
    Some(out)
}

/// Whether a pod with `tols` must go from a node with `NoExecute` taints.
fn eviction_due(tols: &[Toleration], taints: &[Taint], now: jiff::Timestamp) -> bool {
    for t in taints {
        let matching: Vec<&Toleration> = tols.iter().filter(|x| x.tolerates(t)).collect();
        if matching.is_empty() {
            return true;
        }
        // Tolerated forever unless every matching toleration has a limit.
        if matching.iter().any(|x| x.seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|x| x.seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = t.added.parse::<jiff::Timestamp>().unwrap_or(now);
        if now.as_second() >= added.as_second() + secs {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_follow_ready_and_cordon() {
        let node = json!({"spec": {"taints": [{"key": "user", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let t = wanted_taints(&node).unwrap();
        let keys: Vec<_> = t
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap(),
                    t["effect"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "user:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert!(t[2].get("timeAdded").is_some());
        let mut back = node.clone();
        back["spec"]["taints"] = json!(t);
        assert!(wanted_taints(&back).is_none());
        back["status"]["conditions"][0]["status"] = json!("True");
        back["spec"]["unschedulable"] = json!(true);
        let t = wanted_taints(&back).unwrap();
        let keys: Vec<_> = t.iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["user", "node.kubernetes.io/unschedulable"]);
    }

    #[test]
    fn eviction_waits_for_toleration_seconds() {
        let now: jiff::Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        let taint = Taint {
            key: UNREACHABLE.into(),
            value: String::new(),
            effect: "NoExecute".into(),
            added: "2026-01-01T00:00:00Z".into(),
        };
        let tol = |secs: Option<i64>| Toleration {
            key: UNREACHABLE.into(),
            exists: true,
            value: String::new(),
            effect: "NoExecute".into(),
            seconds: secs,
        };
        assert!(eviction_due(&[], std::slice::from_ref(&taint), now));
        assert!(eviction_due(
            &[tol(Some(10))],
            std::slice::from_ref(&taint),
            now
        ));
        assert!(!eviction_due(
            &[tol(Some(60))],
            std::slice::from_ref(&taint),
            now
        ));
        assert!(!eviction_due(
            &[tol(None)],
            std::slice::from_ref(&taint),
            now
        ));
    }
}
