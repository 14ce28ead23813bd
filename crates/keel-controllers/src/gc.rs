//! The garbage collector, with kube-controller-manager's semantics:
//!
//! - an object all of whose owners (`metadata.ownerReferences`) are gone is
//!   deleted (background deletion: the owner went first); owners that are
//!   gone while others remain are removed from its references;
//! - an owner deleted with `propagationPolicy: Foreground` carries the
//!   `foregroundDeletion` finalizer: its dependents are deleted, and the
//!   finalizer is removed once no dependent with `blockOwnerDeletion` is left;
//! - an owner deleted with `Orphan` carries the `orphan` finalizer: its
//!   dependents lose their reference to it, then the finalizer is removed.
//!
//! The collector keeps a graph of the objects that have owner references
//! (built from one list, then a watch over every object), so a deleted owner's
//! dependents are found without scanning the store. Events whose stored bytes
//! cannot concern it are skipped undecoded. Work items are retried with
//! back-off; a failed watch starts over from a fresh list.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use keel_api::client::{Change, ChangeKind, WatchEvent};
use keel_api::{ClientError, DeleteOptions, FOREGROUND_FINALIZER, Loopback, ORPHAN_FINALIZER};
use serde_json::Value;
use tokio::time::Instant;

use crate::MANAGER;
use crate::objects::{
    ObjRef, OwnerRef, has_finalizer, is_deleting, meta_str, owner_refs, without_finalizer,
    without_owners,
};

/// One object with owner references.
#[derive(Debug, Clone)]
struct Node {
    at: ObjRef,
    uid: String,
    owners: Vec<OwnerRef>,
}

/// Who owns whom, for the objects that have owners.
#[derive(Debug, Default)]
struct Graph {
    /// Objects with owner references, by storage key.
    nodes: HashMap<String, Node>,
    /// Owner uid → storage keys of its dependents.
    dependents: HashMap<String, BTreeSet<String>>,
    /// Storage key of an owner → the owner uids dependents name there.
    owners: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, node: Node) {
        let key = node.at.key();
        self.remove(&key);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(key.clone());
            if let Some(loc) = o.locate(&node.at) {
                self.owners
                    .entry(loc.key())
                    .or_default()
                    .insert(o.uid.clone());
            }
        }
        self.nodes.insert(key, node);
    }

    fn remove(&mut self, key: &str) -> Option<Node> {
        let node = self.nodes.remove(key)?;
        for o in &node.owners {
            let empty = self.dependents.get_mut(&o.uid).is_some_and(|d| {
                d.remove(key);
                d.is_empty()
            });
            if empty {
                self.dependents.remove(&o.uid);
                if let Some(loc) = o.locate(&node.at) {
                    let lk = loc.key();
                    if self.owners.get_mut(&lk).is_some_and(|u| {
                        u.remove(&o.uid);
                        u.is_empty()
                    }) {
                        self.owners.remove(&lk);
                    }
                }
            }
        }
        Some(node)
    }

    fn dependents_of(&self, uid: &str) -> Vec<ObjRef> {
        self.dependents
            .get(uid)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| self.nodes.get(k).map(|n| n.at.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn has_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).is_some_and(|d| !d.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Work {
    /// Check that the object's owners still exist.
    Dependent(ObjRef),
    /// Carry out the `orphan` or `foregroundDeletion` finalizer of a
    /// deleting object.
    Owner(ObjRef),
}

/// How an owner reference looks from its dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Gone, or replaced by an object with another uid.
    Dangling,
    /// Being deleted in the foreground.
    Waiting,
}

/// The garbage collector (see the module docs). [`GarbageCollector::run`]
/// never returns.
#[derive(Debug)]
pub struct GarbageCollector {
    api: Loopback,
    graph: Graph,
    queue: VecDeque<Work>,
    queued: HashSet<Work>,
    /// Failed work and when to try it again.
    retries: Vec<(Instant, Work)>,
    failures: HashMap<Work, u32>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl GarbageCollector {
    pub fn new(api: Loopback) -> Self {
        GarbageCollector {
            api,
            graph: Graph::default(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            retries: Vec::new(),
            failures: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            let rev = self.resync().await;
            let mut watch = match self.api.watch_all(rev + 1).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector: watch failed, listing again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let next_retry = self.retries.iter().map(|r| r.0).min();
                tokio::select! {
                    biased;
                    ev = watch.next() => match ev {
                        Some(Ok(WatchEvent::Change(c))) => self.observe(&c),
                        Some(Ok(WatchEvent::Progress(_))) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "garbage collector: watch failed, listing again");
                            break;
                        }
                        None => break,
                    },
                    () = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)),
                        if next_retry.is_some() => self.promote_due(),
                    () = std::future::ready(()), if !self.queue.is_empty() => {
                        if let Some(w) = self.queue.pop_front() {
                            self.queued.remove(&w);
                            self.process(w).await;
                        }
                    }
                }
            }
        }
    }

    /// Rebuilds the graph from a list of every object; queues every
    /// dependent for an owner check and every pending GC finalizer.
    async fn resync(&mut self) -> i64 {
        let (items, rev) = loop {
            match self.api.list_all().await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector: list failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        self.graph = Graph::default();
        for (r, obj) in items {
            let at = ObjRef::of(r, &obj);
            let refs = owner_refs(&obj);
            if !refs.is_empty() {
                self.graph.upsert(Node {
                    at: at.clone(),
                    uid: meta_str(&obj, "uid").to_string(),
                    owners: refs,
                });
                self.enqueue(Work::Dependent(at.clone()));
            }
            if wants_owner_work(&obj) {
                self.enqueue(Work::Owner(at));
            }
        }
        tracing::debug!(
            revision = rev,
            dependents = self.graph.nodes.len(),
            "garbage collector synced"
        );
        rev
    }

    fn enqueue(&mut self, w: Work) {
        if self.queued.insert(w.clone()) {
            self.queue.push_back(w);
        }
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.retries.drain(..).partition(|r| r.0 <= now);
        self.retries = later;
        for (_, w) in due {
            self.enqueue(w);
        }
    }

    /// Updates the graph from one change and queues what it calls for.
    fn observe(&mut self, c: &Change) {
        let in_graph =
            self.graph.nodes.contains_key(&c.key) || self.graph.owners.contains_key(&c.key);
        if !in_graph && !c.may_contain(b"ownerReferences") && !c.may_contain(b"deletionTimestamp") {
            return;
        }
        match c.kind {
            ChangeKind::Put => {
                let Some(obj) = self.api.object(c) else {
                    return;
                };
                let at = ObjRef::of(c.resource, &obj);
                let uid = meta_str(&obj, "uid").to_string();
                let refs = owner_refs(&obj);
                if refs.is_empty() {
                    self.graph.remove(&c.key);
                } else {
                    let changed = self
                        .graph
                        .nodes
                        .get(&c.key)
                        .is_none_or(|n| n.uid != uid || n.owners != refs);
                    if changed {
                        self.graph.upsert(Node {
                            at: at.clone(),
                            uid: uid.clone(),
                            owners: refs,
                        });
                        self.enqueue(Work::Dependent(at.clone()));
                    }
                }
                // An owner replaced by a new object of the same name leaves
                // the old one's dependents without their owner.
                let replaced: Vec<String> = self
                    .graph
                    .owners
                    .get(&c.key)
                    .map(|uids| uids.iter().filter(|u| **u != uid).cloned().collect())
                    .unwrap_or_default();
                for old in replaced {
                    for d in self.graph.dependents_of(&old) {
                        self.enqueue(Work::Dependent(d));
                    }
                }
                if wants_owner_work(&obj) {
                    self.enqueue(Work::Owner(at));
                }
            }
            ChangeKind::Deleted => {
                if let Some(node) = self.graph.remove(&c.key) {
                    // An owner waiting in the foreground may now be free.
                    for o in &node.owners {
                        if let Some(loc) = o.locate(&node.at) {
                            self.enqueue(Work::Owner(loc));
                        }
                    }
                }
                let uids: Vec<String> = self
                    .graph
                    .owners
                    .get(&c.key)
                    .map(|u| u.iter().cloned().collect())
                    .unwrap_or_default();
                for uid in uids {
                    for d in self.graph.dependents_of(&uid) {
                        self.enqueue(Work::Dependent(d));
                    }
                }
            }
        }
    }

    async fn process(&mut self, w: Work) {
        let result = match &w {
            Work::Dependent(at) => self.attempt_dependent(at).await,
            Work::Owner(at) => self.attempt_owner(at).await,
        };
        match result {
            Ok(()) => {
                self.failures.remove(&w);
            }
            Err(e) => {
                let n = self.failures.entry(w.clone()).or_insert(0);
                *n += 1;
                let delay = (Duration::from_millis(100) * 2u32.saturating_pow((*n).min(16)))
                    .min(MAX_BACKOFF);
                tracing::warn!(work = ?w, error = %e, attempt = *n, retry_in = ?delay, "garbage collector: will retry");
                self.retries.push((Instant::now() + delay, w));
            }
        }
    }

    async fn owner_state(
        &self,
        dependent: &ObjRef,
        o: &OwnerRef,
    ) -> Result<OwnerState, ClientError> {
        // A kind the server does not serve cannot be checked: never collect
        // on a guess.
        let Some(loc) = o.locate(dependent) else {
            return Ok(OwnerState::Solid);
        };
        // A namespaced owner of a cluster-scoped object cannot exist.
        if loc.resource.namespaced && dependent.ns.is_none() {
            return Ok(OwnerState::Dangling);
        }
        Ok(
            match self.api.get(loc.resource, loc.ns(), &loc.name).await? {
                None => OwnerState::Dangling,
                Some(owner) if meta_str(&owner, "uid") != o.uid => OwnerState::Dangling,
                Some(owner)
                    if is_deleting(&owner) && has_finalizer(&owner, FOREGROUND_FINALIZER) =>
                {
                    OwnerState::Waiting
                }
                Some(_) => OwnerState::Solid,
            },
        )
    }

    /// Deletes a dependent none of whose owners remain, or drops the
    /// references to owners that are gone or waiting for it.
    async fn attempt_dependent(&self, at: &ObjRef) -> Result<(), ClientError> {
        let Some(obj) = self.api.get(at.resource, at.ns(), &at.name).await? else {
            return Ok(());
        };
        // Already being deleted: its own finalizers decide.
        if is_deleting(&obj) {
            return Ok(());
        }
        let refs = owner_refs(&obj);
        if refs.is_empty() {
            return Ok(());
        }
        let (mut solid, mut gone, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for o in &refs {
            match self.owner_state(at, o).await? {
                OwnerState::Solid => solid.push(o.uid.clone()),
                OwnerState::Dangling => gone.push(o.uid.clone()),
                OwnerState::Waiting => waiting.push(o.uid.clone()),
            }
        }
        let uid = meta_str(&obj, "uid").to_string();
        if !solid.is_empty() {
            let drop: Vec<String> = gone.into_iter().chain(waiting).collect();
            if !drop.is_empty() {
                tracing::info!(object = %at, owners = ?drop, "removing references to owners that are gone");
                let r = self
                    .api
                    .modify(at.resource, at.ns(), &at.name, None, MANAGER, |cur| {
                        (meta_str(cur, "uid") == uid)
                            .then(|| without_owners(cur, &drop))
                            .flatten()
                    })
                    .await;
                return ignore_gone(r.map(|_| ()));
            }
            return Ok(());
        }
        let policy = if !waiting.is_empty() && self.graph.has_dependents(&uid) {
            "Foreground"
        } else if has_finalizer(&obj, ORPHAN_FINALIZER) {
            "Orphan"
        } else if has_finalizer(&obj, FOREGROUND_FINALIZER) {
            "Foreground"
        } else {
            "Background"
        };
        tracing::info!(object = %at, policy, "deleting an object whose owners are gone");
        let opts = DeleteOptions {
            grace_period: None,
            propagation: Some(policy.into()),
            precondition_uid: Some(uid),
            ..DeleteOptions::default()
        };
        ignore_gone(
            self.api
                .delete(at.resource, at.ns(), &at.name, &opts)
                .await
                .map(|_| ()),
        )
    }

    /// Carries out an `orphan` or `foregroundDeletion` finalizer.
    async fn attempt_owner(&self, at: &ObjRef) -> Result<(), ClientError> {
        let Some(obj) = self.api.get(at.resource, at.ns(), &at.name).await? else {
            return Ok(());
        };
        if !is_deleting(&obj) {
            return Ok(());
        }
        let uid = meta_str(&obj, "uid").to_string();
        let finalizer = if has_finalizer(&obj, ORPHAN_FINALIZER) {
            for d in self.graph.dependents_of(&uid) {
                let drop = [uid.clone()];
                let r = self
                    .api
                    .modify(d.resource, d.ns(), &d.name, None, MANAGER, |cur| {
                        without_owners(cur, &drop)
                    })
                    .await;
                ignore_gone(r.map(|_| ()))?;
            }
            ORPHAN_FINALIZER
        } else if has_finalizer(&obj, FOREGROUND_FINALIZER) {
            let deps = self.graph.dependents_of(&uid);
            for d in &deps {
                self.attempt_dependent(d).await?;
            }
            for d in &deps {
                if let Some(dep) = self.api.get(d.resource, d.ns(), &d.name).await?
                    && owner_refs(&dep).iter().any(|o| o.uid == uid && o.block)
                {
                    tracing::debug!(owner = %at, blocked_by = %d, "foreground deletion waits");
                    return Ok(());
                }
            }
            FOREGROUND_FINALIZER
        } else {
            return Ok(());
        };
        tracing::info!(object = %at, finalizer, "dependents handled, removing finalizer");
        let r = self
            .api
            .modify(at.resource, at.ns(), &at.name, None, MANAGER, |cur| {
                (meta_str(cur, "uid") == uid)
                    .then(|| without_finalizer(cur, finalizer))
                    .flatten()
            })
            .await;
        ignore_gone(r.map(|_| ()))
    }
}

/// Whether a deleting object carries a finalizer the collector acts on.
fn wants_owner_work(obj: &Value) -> bool {
    is_deleting(obj)
        && (has_finalizer(obj, ORPHAN_FINALIZER) || has_finalizer(obj, FOREGROUND_FINALIZER))
}

/// An object that vanished (404) or was replaced (409 on a uid
/// precondition) needs nothing more.
fn ignore_gone(r: Result<(), ClientError>) -> Result<(), ClientError> {
    match r {
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::resources;

    fn node(name: &str, uid: &str, owners: &[(&str, &str)]) -> Node {
        let cm = resources::find("", "v1", "configmaps").unwrap();
        Node {
            at: ObjRef {
                resource: cm,
                ns: Some("n".into()),
                name: name.into(),
            },
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|(n, u)| OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: (*n).into(),
                    uid: (*u).into(),
                    block: false,
                })
                .collect(),
        }
    }

    #[test]
    fn graph_indexes_dependents_and_owner_keys() {
        let mut g = Graph::default();
        g.upsert(node("a", "ua", &[("d", "ud")]));
        g.upsert(node("b", "ub", &[("d", "ud"), ("e", "ue")]));
        assert_eq!(g.dependents_of("ud").len(), 2);
        assert!(g.owners.contains_key("/registry/apps/deployments/n/d"));
        // Re-inserting with other owners moves the edges.
        g.upsert(node("b", "ub", &[("e", "ue")]));
        assert_eq!(g.dependents_of("ud").len(), 1);
        g.remove("/registry/core/configmaps/n/a");
        assert!(!g.has_dependents("ud"));
        assert!(!g.owners.contains_key("/registry/apps/deployments/n/d"));
        assert!(g.owners.contains_key("/registry/apps/deployments/n/e"));
        g.remove("/registry/core/configmaps/n/b");
        assert!(g.nodes.is_empty() && g.dependents.is_empty() && g.owners.is_empty());
    }
}
