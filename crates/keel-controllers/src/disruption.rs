//! The disruption controller: the status of every `PodDisruptionBudget`
//! (`expectedPods`, `currentHealthy`, `desiredHealthy`,
//! `disruptionsAllowed`, the `DisruptionAllowed` condition), which the
//! `pods/eviction` subresource (keel-api) checks and spends.
//!
//! As in kube-controller-manager: healthy pods are the matched pods that
//! are Ready and not being deleted, minus those an eviction just took
//! (`status.disruptedPods`, forgotten after two minutes or once the pod is
//! gone); with `minAvailable` as a number the expected count is the
//! matched pods, otherwise the scale of their controllers (a `ReplicaSet`'s
//! `Deployment`, a `StatefulSet`, ...). Pods are indexed only in namespaces
//! that have a budget.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use keel_api::Loopback;
use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::selectors::LabelSelector;
use serde_json::{Value, json};

use crate::objects::meta_str;
use crate::scheduler::events::now;
use crate::scheduler::pods;

const MANAGER: &str = "disruption-controller";
/// How long an eviction's entry in `disruptedPods` holds a pod out of the
/// healthy count when the pod is not deleted.
const DISRUPTED_TIMEOUT: i64 = 120;

fn pdbs() -> &'static Resource {
    resources::find("policy", "v1", "poddisruptionbudgets").expect("PDBs are served")
}

#[derive(Debug, Clone)]
struct PodState {
    name: String,
    labels: Value,
    healthy: bool,
    /// (apiVersion, kind, name) of the controller owner.
    controller: Option<(String, String, String)>,
}

/// The controller. [`Disruption::run`] never returns.
#[derive(Debug)]
pub struct Disruption {
    api: Loopback,
    /// Namespace → PDB name → PDB.
    budgets: HashMap<String, HashMap<String, Value>>,
    /// Namespace (with budgets) → pod name → state.
    pods: HashMap<String, HashMap<String, PodState>>,
    dirty: BTreeSet<(String, String)>,
}

impl Disruption {
    pub fn new(api: Loopback) -> Self {
        Disruption {
            api,
            budgets: HashMap::new(),
            pods: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            // The pod watch starts before the lists: replayed changes are
            // newer than or equal to what the lists show.
            let Ok(mut pw) = self.api.watch(pods(), 0).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let Ok((list, brev)) = self.api.list(pdbs(), None).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            self.budgets.clear();
            self.pods.clear();
            for b in list {
                self.add_budget(b).await;
            }
            let Ok(mut bw) = self.api.watch(pdbs(), brev + 1).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            // Budgets with disrupted pods are recounted now and then, so
            // that stale entries expire.
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    biased;
                    ev = bw.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => {
                            let (ns, name) = ns_name(&c.key);
                            match c.kind {
                                ChangeKind::Put => if let Some(b) = self.api.object(&c) {
                                    self.add_budget(b).await;
                                },
                                ChangeKind::Deleted => {
                                    if let Some(m) = self.budgets.get_mut(&ns) {
                                        m.remove(&name);
                                        if m.is_empty() {
                                            self.budgets.remove(&ns);
                                            self.pods.remove(&ns);
                                        }
                                    }
                                }
                            }
                        }
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        _ => break,
                    },
                    ev = pw.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => {
                            let (ns, name) = ns_name(&c.key);
                            if self.budgets.contains_key(&ns) {
                                let old = self.pods.get_mut(&ns).and_then(|m| m.remove(&name));
                                let new = match c.kind {
                                    ChangeKind::Put => self.api.object(&c).map(|p| pod_state(&p)),
                                    ChangeKind::Deleted => None,
                                };
                                self.touch(&ns, old.as_ref(), new.as_ref());
                                if let Some(n) = new {
                                    self.pods.entry(ns).or_default().insert(name, n);
                                }
                            }
                        }
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        _ => break,
                    },
                    _ = tick.tick() => {
                        for (ns, m) in &self.budgets {
                            for (name, b) in m {
                                if b.pointer("/status/disruptedPods").and_then(Value::as_object).is_some_and(|d| !d.is_empty()) {
                                    self.dirty.insert((ns.clone(), name.clone()));
                                }
                            }
                        }
                    }
                    () = std::future::ready(()), if !self.dirty.is_empty() => {
                        if let Some(k) = self.dirty.pop_first() {
                            self.sync(&k.0, &k.1).await;
                        }
                    }
                }
            }
            tracing::warn!("disruption controller: a watch ended, listing again");
        }
    }

    async fn add_budget(&mut self, b: Value) {
        let ns = meta_str(&b, "namespace").to_string();
        let name = meta_str(&b, "name").to_string();
        if !self.pods.contains_key(&ns) {
            let list = match self.api.list(pods(), Some(&ns)).await {
                Ok((l, _)) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "disruption controller: pods not listed");
                    Vec::new()
                }
            };
            let m = list
                .iter()
                .map(|p| (meta_str(p, "name").to_string(), pod_state(p)))
                .collect();
            self.pods.insert(ns.clone(), m);
        }
        self.budgets
            .entry(ns.clone())
            .or_default()
            .insert(name.clone(), b);
        self.dirty.insert((ns, name));
    }

    /// Marks the budgets a pod change concerns.
    fn touch(&mut self, ns: &str, old: Option<&PodState>, new: Option<&PodState>) {
        let Some(m) = self.budgets.get(ns) else {
            return;
        };
        for (name, b) in m {
            let sel = selector(b);
            if [old, new]
                .into_iter()
                .flatten()
                .any(|p| sel.as_ref().is_some_and(|s| s.matches(Some(&p.labels))))
            {
                self.dirty.insert((ns.to_string(), name.clone()));
            }
        }
    }

    async fn sync(&mut self, ns: &str, name: &str) {
        let Some(b) = self.budgets.get(ns).and_then(|m| m.get(name)).cloned() else {
            return;
        };
        let sel = selector(&b);
        let matched: Vec<PodState> = self
            .pods
            .get(ns)
            .map(|m| {
                m.values()
                    .filter(|p| sel.as_ref().is_some_and(|s| s.matches(Some(&p.labels))))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let min = b.pointer("/spec/minAvailable");
        let max = b.pointer("/spec/maxUnavailable");
        let count = i64::try_from(matched.len()).unwrap_or(i64::MAX);
        let expected = match min {
            Some(Value::Number(_)) => count,
            _ if min.is_none() && max.is_none() => count,
            _ => self.controller_scale(ns, &matched).await,
        };
        let desired = if let Some(m) = min {
            scaled(m, expected, true)
        } else if let Some(m) = max {
            (expected - scaled(m, expected, true)).max(0)
        } else {
            0
        };
        // Evictions not yet seen through: those pods do not count.
        let wall = jiff::Timestamp::now().as_second();
        let disrupted: serde_json::Map<String, Value> = b
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .filter(|(pod, at)| {
                        matched.iter().any(|p| p.name == **pod)
                            && at
                                .as_str()
                                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                                .is_some_and(|t| t.as_second() + DISRUPTED_TIMEOUT > wall)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let healthy = i64::try_from(
            matched
                .iter()
                .filter(|p| p.healthy && !disrupted.contains_key(&p.name))
                .count(),
        )
        .unwrap_or(0);
        let allowed = (healthy - desired).max(0);
        let generation = b
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let r = self
            .api
            .modify(pdbs(), Some(ns), name, Some("status"), MANAGER, |cur| {
                let old = cur.get("status").cloned().unwrap_or(Value::Null);
                let cond_status = if allowed > 0 { "True" } else { "False" };
                let old_cond = old
                    .get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|c| c["type"] == "DisruptionAllowed"));
                let transition = old_cond
                    .filter(|c| c["status"] == cond_status)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now()));
                let mut st = json!({
                    "observedGeneration": generation,
                    "disruptionsAllowed": allowed,
                    "currentHealthy": healthy,
                    "desiredHealthy": desired,
                    "expectedPods": expected,
                    "conditions": [{
                        "type": "DisruptionAllowed",
                        "status": cond_status,
                        "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                        "message": "",
                        "observedGeneration": generation,
                        "lastTransitionTime": transition,
                    }],
                });
                if !disrupted.is_empty() {
                    st["disruptedPods"] = Value::Object(disrupted.clone());
                }
                if st == old {
                    return None;
                }
                let mut v = cur.clone();
                v["status"] = st;
                Some(v)
            })
            .await;
        match r {
            Ok(Some(v)) => {
                if let Some(m) = self.budgets.get_mut(ns) {
                    m.insert(name.to_string(), v);
                }
            }
            Ok(None) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(pdb = name, error = %e, "disruption controller: status not written");
                self.dirty.insert((ns.to_string(), name.to_string()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The summed scale of the controllers of `matched` (a pod without a
    /// controller counts as one).
    async fn controller_scale(&self, ns: &str, matched: &[PodState]) -> i64 {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for p in matched {
            let Some(c) = &p.controller else {
                total += 1;
                continue;
            };
            if !seen.insert(c.clone()) {
                continue;
            }
            total += self.scale_of(ns, c).await.unwrap_or(0);
        }
        total
    }

    async fn scale_of(&self, ns: &str, c: &(String, String, String)) -> Option<i64> {
        let r = resources::by_kind(&c.0, &c.1)?;
        let obj = self.api.get(r, Some(ns), &c.2).await.ok()??;
        // A ReplicaSet of a Deployment: the Deployment's scale.
        if c.1 == "ReplicaSet"
            && let Some(owner) = controller_of(&obj)
            && owner.1 == "Deployment"
            && let Some(d) = resources::by_kind(&owner.0, &owner.1)
            && let Ok(Some(dep)) = self.api.get(d, Some(ns), &owner.2).await
        {
            return dep
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .or(Some(1));
        }
        obj.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .or(Some(1))
    }
}

fn ns_name(storage: &str) -> (String, String) {
    let mut parts = storage.rsplit('/');
    let name = parts.next().unwrap_or_default().to_string();
    let ns = parts.next().unwrap_or_default().to_string();
    (ns, name)
}

fn selector(b: &Value) -> Option<LabelSelector> {
    b.pointer("/spec/selector")
        .filter(|s| !s.is_null())
        .map(LabelSelector::from_json)
}

fn controller_of(obj: &Value) -> Option<(String, String, String)> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let s = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (s("apiVersion"), s("kind"), s("name"))
        })
}

fn pod_state(p: &Value) -> PodState {
    let ready = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    PodState {
        name: meta_str(p, "name").to_string(),
        labels: p
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null),
        healthy: ready && !crate::objects::is_deleting(p),
        controller: controller_of(p),
    }
}

/// An int-or-percent of `total` (percentages rounded up or down).
fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = total * pct;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent() {
        assert_eq!(scaled(&json!(2), 10, true), 2);
        assert_eq!(scaled(&json!("50%"), 5, true), 3);
        assert_eq!(scaled(&json!("50%"), 5, false), 2);
        assert_eq!(
            ns_name("/registry/core/pods/ns1/p"),
            ("ns1".into(), "p".into())
        );
    }
}
