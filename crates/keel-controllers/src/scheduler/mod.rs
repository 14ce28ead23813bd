//! The scheduler, after kube-scheduler's framework: pods without a node
//! whose `spec.schedulerName` is `default-scheduler` are queued by priority
//! ([`queue`]), filtered against a watch-fed cache of nodes and the pods on
//! them ([`cache`]), scored ([`plugins`]), and bound through the
//! `pods/binding` subresource. A pod is *assumed* onto its node as soon as
//! it is chosen, and bound in the background, so the next cycle does not
//! wait for the API. When no node fits, the pod gets kube-scheduler's
//! `FailedScheduling` event and `PodScheduled=False` condition, preemption
//! of lower-priority pods is tried ([`preempt`]), and the pod waits until a
//! node or pod change may help (with back-off).
//!
//! Like kube-scheduler, it stops searching once it has found enough
//! feasible nodes (`percentageOfNodesToScore`, adaptive: 42% of 1,000
//! nodes, at least 100) and starts the next search where this one stopped.

pub(crate) mod cache;
pub(crate) mod events;
pub(crate) mod plugins;
mod preempt;
mod queue;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::{ClientError, DeleteOptions, Loopback};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use cache::{Cache, PodInfo};
use events::{Involved, Recorder};
use plugins::{CycleState, Diagnosis};
use queue::Queue;

/// The `spec.schedulerName` this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Bindings in flight at once.
const BINDERS: usize = 64;

pub(crate) fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

pub(crate) fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

/// How a background binding ended.
#[derive(Debug)]
enum Bound {
    Ok(String),
    /// The pod is gone, was replaced or was bound by someone else.
    Gone(String),
    Failed(String, ClientError),
}

/// The scheduler (see the module docs). [`Scheduler::run`] never returns.
#[derive(Debug)]
pub struct Scheduler {
    api: Loopback,
    cache: Cache,
    queue: Queue,
    next_start: usize,
    rng: u64,
    recorder: Recorder,
    binders: Arc<Semaphore>,
    bound_tx: mpsc::UnboundedSender<Bound>,
    bound_rx: mpsc::UnboundedReceiver<Bound>,
}

impl Scheduler {
    pub fn new(api: Loopback) -> Self {
        let (bound_tx, bound_rx) = mpsc::unbounded_channel();
        let seed = jiff::Timestamp::now().as_nanosecond();
        Scheduler {
            recorder: Recorder::new(api.clone(), SCHEDULER_NAME),
            api,
            cache: Cache::default(),
            queue: Queue::default(),
            next_start: 0,
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
            rng: (seed as u64) | 1,
            binders: Arc::new(Semaphore::new(BINDERS)),
            bound_tx,
            bound_rx,
        }
    }

    pub async fn run(mut self) {
        loop {
            let Some((node_rev, pod_rev)) = self.resync().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let (mut node_watch, mut pod_watch, mut claim_watch) = match (
                self.api.watch(nodes(), node_rev + 1).await,
                self.api.watch(pods(), pod_rev + 1).await,
                // A claim made or bound may be what a pending pod waits for.
                self.api.watch(crate::volumes::claims(), 0).await,
            ) {
                (Ok(n), Ok(p), Ok(c)) => (n, p, c),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    tracing::warn!(error = %e, "scheduler: watch failed, listing again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let next_due = self.queue.promote();
                let ready = !self.queue.is_empty_active();
                tokio::select! {
                    biased;
                    ev = node_watch.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => match c.kind {
                            ChangeKind::Put => if let Some(n) = self.api.object(&c)
                                && self.cache.set_node(&n) {
                                    self.queue.move_all_unschedulable();
                            },
                            ChangeKind::Deleted => {
                                let name = c.key.rsplit('/').next().unwrap_or_default().to_string();
                                self.cache.remove_node(&name);
                            }
                        },
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "scheduler: node watch failed, listing again");
                            break;
                        }
                        None => break,
                    },
                    ev = pod_watch.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => match c.kind {
                            ChangeKind::Put => if let Some(p) = self.api.object(&c) {
                                self.observe_pod(&p);
                            },
                            ChangeKind::Deleted => self.pod_deleted(&c.key),
                        },
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "scheduler: pod watch failed, listing again");
                            break;
                        }
                        None => break,
                    },
                    ev = claim_watch.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => if c.kind == ChangeKind::Put {
                            self.queue.move_all_unschedulable();
                        },
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        Some(Err(_)) | None => break,
                    },
                    Some(b) = self.bound_rx.recv() => self.binding_done(b),
                    () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)),
                        if next_due.is_some() && !ready => {}
                    () = std::future::ready(()), if ready => {
                        if let Some(pod) = self.queue.pop() {
                            self.schedule_one(pod).await;
                        }
                    }
                }
            }
        }
    }

    /// Rebuilds the cache and queue from lists; the revisions to watch from.
    async fn resync(&mut self) -> Option<(i64, i64)> {
        let (node_list, node_rev) = self.api.list(nodes(), None).await.ok()?;
        let (pod_list, pod_rev) = self.api.list(pods(), None).await.ok()?;
        self.cache = Cache::default();
        self.queue = Queue::default();
        for n in &node_list {
            self.cache.set_node(n);
        }
        for p in &pod_list {
            self.observe_pod(p);
        }
        tracing::debug!(
            nodes = node_list.len(),
            pods = pod_list.len(),
            "scheduler synced"
        );
        Some((node_rev, pod_rev))
    }

    fn observe_pod(&mut self, p: &Value) {
        let info = PodInfo::from_json(p);
        let key = info.key();
        if !info.node.is_empty() {
            self.queue.done(&key);
            if info.terminal {
                self.cache.forget(&key);
                self.queue.move_all_unschedulable();
            } else {
                let new = !self.cache.is_placed(&key) || self.cache.is_assumed(&key);
                self.cache.place(info, false);
                if new && self.queue.any_waits_for_pods() {
                    self.queue.move_all_unschedulable();
                }
            }
            return;
        }
        if info.scheduler != SCHEDULER_NAME || info.deleting || info.terminal {
            self.queue.remove(&key);
            return;
        }
        // Being bound by us: the API has not caught up yet.
        if self.cache.is_assumed(&key) {
            return;
        }
        self.queue.add_or_update(info);
    }

    fn pod_deleted(&mut self, storage_key: &str) {
        let mut parts = storage_key.rsplit('/');
        let (Some(name), Some(ns)) = (parts.next(), parts.next()) else {
            return;
        };
        let key = format!("{ns}/{name}");
        self.queue.remove(&key);
        if self.cache.is_placed(&key) {
            self.cache.forget(&key);
            self.queue.move_all_unschedulable();
        }
    }

    fn binding_done(&mut self, b: Bound) {
        match b {
            Bound::Ok(key) => self.queue.done(&key),
            Bound::Gone(key) => {
                if self.cache.is_assumed(&key) {
                    self.cache.forget(&key);
                }
                self.queue.remove(&key);
            }
            Bound::Failed(key, e) => {
                tracing::warn!(pod = key, error = %e, "scheduler: binding failed, will retry");
                if self.cache.is_assumed(&key) {
                    self.cache.forget(&key);
                }
                self.queue.failed(&key, false);
            }
        }
    }

    /// Filters, scores and assumes one pod, and starts its binding.
    async fn schedule_one(&mut self, pod: PodInfo) {
        let all = self.cache.order.len();
        if all == 0 {
            self.unschedulable(&pod, "no nodes available to schedule pods".into(), None);
            return;
        }
        let vols = if pod.claims.is_empty() {
            Ok(volumes::Plan::default())
        } else {
            volumes::plan(&self.api, &pod).await
        };
        let st = CycleState::new(&pod, &self.cache);
        let want = feasible_to_find(all);
        let mut diag = Diagnosis {
            nodes: all,
            ..Diagnosis::default()
        };
        let mut feasible = Vec::new();
        let mut processed = 0;
        for i in 0..all {
            let name = &self.cache.order[(self.next_start + i) % all];
            let Some(node) = self.cache.nodes.get(name) else {
                continue;
            };
            processed += 1;
            let checked = match &vols {
                Err(why) => Err(plugins::Failure {
                    reasons: vec![why.clone()],
                    unresolvable: true,
                }),
                Ok(v) if !v.allows(node) => Err(plugins::Failure {
                    reasons: vec![volumes::ERR_CONFLICT.into()],
                    unresolvable: true,
                }),
                Ok(_) => st.filter(&pod, node),
            };
            match checked {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err(f) => diag.record(name, f),
            }
        }
        self.next_start = (self.next_start + processed) % all;
        if feasible.is_empty() {
            let fit = diag.message();
            match preempt::preempt(&pod, &self.cache, &st, &diag) {
                Ok(c) => {
                    let node = c.node.clone();
                    self.start_preemption(&pod, c);
                    self.unschedulable(&pod, fit, Some(node));
                }
                Err(post) => self.unschedulable(&pod, format!("{fit} preemption: {post}"), None),
            }
            return;
        }
        let chosen = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let scores = st.score(&pod, &feasible);
            let best = scores.iter().copied().max().unwrap_or(0);
            let top: Vec<usize> = (0..scores.len()).filter(|i| scores[*i] == best).collect();
            #[allow(clippy::cast_possible_truncation)]
            let pick = top[(xorshift(&mut self.rng) % top.len() as u64) as usize];
            feasible[pick].name.clone()
        };
        let mut assumed = pod.clone();
        assumed.node.clone_from(&chosen);
        self.cache.place(assumed, true);
        let select = vols.map(|v| v.select).unwrap_or_default();
        self.bind(pod, chosen, select).await;
    }

    async fn bind(&self, pod: PodInfo, node: String, select: Vec<String>) {
        let Ok(permit) = self.binders.clone().acquire_owned().await else {
            return;
        };
        let api = self.api.clone();
        let tx = self.bound_tx.clone();
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let key = pod.key();
            if let Err(e) = volumes::select_node(&api, &pod.ns, &select, &node).await {
                let _ = tx.send(Bound::Failed(key, e));
                return;
            }
            let r = api
                .modify(
                    pods(),
                    Some(&pod.ns),
                    &pod.name,
                    Some("binding"),
                    SCHEDULER_NAME,
                    |cur| {
                        let assigned = cur
                            .pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .is_some_and(|n| !n.is_empty());
                        if assigned || crate::objects::meta_str(cur, "uid") != pod.uid {
                            return None;
                        }
                        let mut v = cur.clone();
                        v["spec"]["nodeName"] = json!(node);
                        Some(v)
                    },
                )
                .await;
            let _ = tx.send(match r {
                Ok(Some(_)) => {
                    recorder.normal(
                        &involved(&pod),
                        "Scheduled",
                        format!("Successfully assigned {key} to {node}"),
                    );
                    Bound::Ok(key)
                }
                Ok(None) => Bound::Gone(key),
                Err(e) if e.is_not_found() => Bound::Gone(key),
                Err(e) => Bound::Failed(key, e),
            });
        });
    }

    /// Reports why the pod did not fit (event and `PodScheduled=False`) and
    /// parks it until something changes.
    fn unschedulable(&mut self, pod: &PodInfo, message: String, nominated: Option<String>) {
        tracing::debug!(pod = pod.key(), message, "scheduler: pod does not fit");
        self.queue.failed(&pod.key(), true);
        self.recorder
            .warning(&involved(pod), "FailedScheduling", message.clone());
        let api = self.api.clone();
        let (ns, name, uid) = (pod.ns.clone(), pod.name.clone(), pod.uid.clone());
        tokio::spawn(async move {
            let r = api
                .modify(
                    pods(),
                    Some(&ns),
                    &name,
                    Some("status"),
                    SCHEDULER_NAME,
                    |cur| pod_unschedulable_status(cur, &uid, &message, nominated.as_deref()),
                )
                .await;
            if let Err(e) = r
                && !e.is_not_found()
            {
                tracing::debug!(pod = name, error = %e, "scheduler: status not written");
            }
        });
    }

    /// Deletes the victims of a preemption (they leave the cache when the
    /// watch reports them gone, which moves the pod back to the queue).
    fn start_preemption(&self, pod: &PodInfo, c: preempt::Candidate) {
        for v in c.victims {
            let api = self.api.clone();
            self.recorder.normal(
                &involved(&v),
                "Preempted",
                format!("Preempted by pod {} on node {}", pod.uid, c.node),
            );
            tokio::spawn(async move {
                let opts = DeleteOptions {
                    precondition_uid: Some(v.uid.clone()),
                    ..DeleteOptions::default()
                };
                if let Err(e) = api.delete(pods(), Some(&v.ns), &v.name, &opts).await
                    && !e.is_not_found()
                {
                    tracing::warn!(pod = v.key(), error = %e, "scheduler: preemption victim not deleted");
                }
            });
        }
    }
}

fn involved(p: &PodInfo) -> Involved {
    Involved {
        kind: "Pod",
        api_version: "v1",
        ns: p.ns.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
    }
}

/// The pod with `PodScheduled=False` (reason `Unschedulable`) and the
/// nominated node; `None` when that is already so or the pod changed.
fn pod_unschedulable_status(
    cur: &Value,
    uid: &str,
    message: &str,
    nominated: Option<&str>,
) -> Option<Value> {
    if crate::objects::meta_str(cur, "uid") != uid
        || cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    {
        return None;
    }
    let conds = cur
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let same = old.is_some_and(|c| {
        c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("message").and_then(Value::as_str) == Some(message)
    });
    let nominated_now = cur
        .pointer("/status/nominatedNodeName")
        .and_then(Value::as_str);
    if same && (nominated.is_none() || nominated_now == nominated) {
        return None;
    }
    let transition = old
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("False"))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(events::now()));
    let mut v = cur.clone();
    if !v.get("status").is_some_and(Value::is_object) {
        v["status"] = json!({});
    }
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"))
        .collect();
    conds.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }));
    v["status"]["conditions"] = json!(conds);
    if v["status"].get("phase").is_none() {
        v["status"]["phase"] = json!("Pending");
    }
    if let Some(n) = nominated {
        v["status"]["nominatedNodeName"] = json!(n);
    }
    Some(v)
}

/// xorshift64: only for breaking ties between equal scores.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// kube-scheduler's `numFeasibleNodesToFind` with the adaptive default.
fn feasible_to_find(all: usize) -> usize {
    if all < 100 {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_nodes_to_find_is_adaptive() {
        assert_eq!(feasible_to_find(3), 3);
        assert_eq!(feasible_to_find(150), 100);
        assert_eq!(feasible_to_find(1000), 420);
        assert_eq!(feasible_to_find(5000), 500);
    }

    #[test]
    fn unschedulable_status_is_written_once() {
        let pod = json!({"metadata": {"uid": "u"}, "spec": {}, "status": {"phase": "Pending"}});
        let v = pod_unschedulable_status(&pod, "u", "0/1 nodes are available.", None).unwrap();
        assert_eq!(v["status"]["conditions"][0]["reason"], "Unschedulable");
        assert!(pod_unschedulable_status(&v, "u", "0/1 nodes are available.", None).is_none());
        assert!(pod_unschedulable_status(&v, "other", "x", None).is_none());
        let n = pod_unschedulable_status(&v, "u", "0/1 nodes are available.", Some("n1")).unwrap();
        assert_eq!(n["status"]["nominatedNodeName"], "n1");
    }
}
