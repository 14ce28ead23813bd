//! What the workload controllers share, as client-go's informers and work
//! queues give kube-controller-manager: a [`Cache`] of the resources a
//! controller reads (one list, then one watch; listed again when the watch
//! fails), a [`Queue`] of keys with de-duplication, delays and per-key
//! back-off, and [`run`], the loop that feeds one from the other and calls a
//! [`Reconciler`].
//!
//! Writes go through the cache ([`Cache::create`], [`Cache::modify`],
//! [`Cache::delete`]) so it shows them at once: a controller that created
//! three pods sees them at its next reconcile even when the watch has not
//! delivered them yet (what client-go's "expectations" are for). A watch
//! event older than what the cache holds changes nothing there but still
//! queues its keys: the read-modify-write that got the cache ahead may have
//! carried another writer's change (a status write lands on a spec someone
//! just scaled). Puts of objects the controller deleted are ignored.
//!
//! Cached objects leave out `metadata.managedFields`, as kube-controller-manager's
//! informers do: no controller reads them, and their `fieldsV1` trees are
//! about half of a pod's decoded size. (Writes keep the stored ones: the API
//! keeps an object's managedFields when a write leaves them out.)

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::Resource;
use keel_api::{ClientError, DeleteOptions, Loopback};
use serde_json::Value;
use tokio::time::Instant;

use crate::objects::meta_str;

/// `namespace/name` of an object (the key of a namespaced controller's work).
pub(crate) fn key_of(obj: &Value) -> String {
    format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"))
}

/// Splits a key made by [`key_of`].
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

fn revision_of(obj: &Value) -> i64 {
    meta_str(obj, "resourceVersion").parse().unwrap_or(0)
}

/// The objects of a few resources, by storage key, kept from a watch.
#[derive(Debug)]
pub(crate) struct Cache {
    pub api: Loopback,
    resources: Vec<&'static Resource>,
    /// Storage key → (revision, object). Shared with the other watchers of
    /// the same change (see `Loopback::shared_object`).
    objects: BTreeMap<String, (i64, Arc<Value>)>,
    /// Keys this controller deleted whose deletion the watch has not shown.
    deleted: HashSet<String>,
}

impl Cache {
    fn new(api: Loopback, resources: Vec<&'static Resource>) -> Self {
        Cache {
            api,
            resources,
            objects: BTreeMap::new(),
            deleted: HashSet::new(),
        }
    }

    /// Lists every resource; returns the lowest revision listed (watching
    /// from there replays what changed between the lists).
    async fn fill(&mut self) -> Result<i64, ClientError> {
        self.objects.clear();
        self.deleted.clear();
        let mut from = i64::MAX;
        for r in self.resources.clone() {
            let (items, rev) = self.api.list(r, None).await?;
            from = from.min(rev);
            for obj in items {
                self.put(r, Arc::new(obj));
            }
        }
        Ok(from)
    }

    fn put(&mut self, r: &Resource, mut obj: Arc<Value>) {
        // Watch events' objects come without them already (shared, see
        // `Loopback::shared_object`); lists and our own writes' answers
        // are this cache's alone, so this copies nothing.
        if obj.pointer("/metadata/managedFields").is_some()
            && let Some(m) = Arc::make_mut(&mut obj)
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
        {
            m.remove("managedFields");
        }
        let key = r.key(
            Some(meta_str(&obj, "namespace")).filter(|n| !n.is_empty() && r.namespaced),
            meta_str(&obj, "name"),
        );
        let rev = revision_of(&obj);
        if self.objects.get(&key).is_some_and(|(old, _)| *old > rev) {
            return;
        }
        self.objects.insert(key, (rev, obj));
    }

    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&r.key(Some(ns).filter(|_| r.namespaced), name))
            .map(|e| &*e.1)
    }

    /// The objects of `r` in `ns`.
    pub fn list<'a>(&'a self, r: &Resource, ns: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let prefix = r.list_prefix(Some(ns));
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| &*e.1)
    }

    /// The objects of `r` in every namespace.
    pub fn list_all<'a>(&'a self, r: &Resource) -> impl Iterator<Item = &'a Value> + 'a {
        let prefix = r.key_prefix();
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| &*e.1)
    }

    /// Records an object this controller wrote itself.
    pub fn remember(&mut self, r: &Resource, obj: Value) {
        self.put(r, Arc::new(obj));
    }

    pub async fn create(&mut self, r: &'static Resource, obj: Value) -> Result<Value, ClientError> {
        let made = self.api.create(r, obj, crate::MANAGER).await?;
        self.put(r, Arc::new(made.clone()));
        Ok(made)
    }

    /// Read-modify-write through the API (see [`Loopback::modify`]).
    pub async fn modify(
        &mut self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        sub: Option<&str>,
        f: impl Fn(&Value) -> Option<Value>,
    ) -> Result<Option<Value>, ClientError> {
        let ns = Some(ns).filter(|_| r.namespaced);
        let out = self.api.modify(r, ns, name, sub, crate::MANAGER, f).await?;
        if let Some(v) = &out {
            self.put(r, Arc::new(v.clone()));
        }
        Ok(out)
    }

    /// Deletes in the background (dependents go through the garbage
    /// collector); an object already gone is not an error.
    pub async fn delete(
        &mut self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ClientError> {
        let opts = DeleteOptions {
            grace_period: None,
            propagation: Some("Background".into()),
            precondition_uid: Some(uid.to_string()),
            ..DeleteOptions::default()
        };
        let nsr = Some(ns).filter(|_| r.namespaced);
        match self.api.delete(r, nsr, name, &opts).await {
            Ok(v) if v.pointer("/metadata/deletionTimestamp").is_some() => self.put(r, Arc::new(v)),
            Ok(_) => {
                let key = r.key(nsr, name);
                self.objects.remove(&key);
                self.deleted.insert(key);
            }
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Cache {
    /// Makes `owner` (of `owner_r`) the controller of `child` unless it
    /// has one; returns the child when `owner` now controls it.
    pub async fn adopt(
        &mut self,
        child_r: &'static Resource,
        child: &Value,
        owner_r: &Resource,
        owner: &Value,
    ) -> Result<Option<Value>, ClientError> {
        let me = crate::objects::controller_of(owner_r, owner);
        let (ns, name) = (meta_str(child, "namespace"), meta_str(child, "name"));
        let r = self
            .modify(child_r, ns, name, None, |cur| {
                if crate::objects::controller_ref(cur).is_some() || crate::objects::is_deleting(cur)
                {
                    return None;
                }
                let mut v = cur.clone();
                let mut refs: Vec<Value> = v["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o["uid"] != me["uid"])
                    .collect();
                refs.push(me.clone());
                v["metadata"]["ownerReferences"] = Value::Array(refs);
                Some(v)
            })
            .await;
        match r {
            Ok(v) => Ok(v.filter(|c| {
                crate::objects::controller_ref(c).is_some_and(|o| o["uid"] == me["uid"])
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Drops the owner reference to `uid` from `child`.
    pub async fn release(
        &mut self,
        child_r: &'static Resource,
        child: &Value,
        uid: &str,
    ) -> Result<(), ClientError> {
        let (ns, name) = (meta_str(child, "namespace"), meta_str(child, "name"));
        let drop = [uid.to_string()];
        match self
            .modify(child_r, ns, name, None, |cur| {
                crate::objects::without_owners(cur, &drop)
            })
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

impl Cache {
    /// client-go's `ClaimObjects`: of `children` (of `child_r`), those
    /// `owner` (of `owner_r`) controls and `sel` matches; orphans it matches
    /// are adopted (unless either is being deleted), owned ones it no longer
    /// matches are released.
    pub async fn claim(
        &mut self,
        owner_r: &'static Resource,
        owner: &Value,
        child_r: &'static Resource,
        sel: &keel_api::selectors::LabelSelector,
        children: Vec<Value>,
    ) -> Result<Vec<Value>, ClientError> {
        let uid = meta_str(owner, "uid").to_string();
        let mut owned = Vec::new();
        for c in children {
            let matches = sel.matches(c.pointer("/metadata/labels"));
            match crate::objects::controller_ref(&c) {
                Some(r) if r["uid"] == uid.as_str() => {
                    if matches {
                        owned.push(c);
                    } else {
                        self.release(child_r, &c, &uid).await?;
                    }
                }
                None if matches
                    && !crate::objects::is_deleting(owner)
                    && !crate::objects::is_deleting(&c) =>
                {
                    if let Some(c) = self.adopt(child_r, &c, owner_r, owner).await? {
                        owned.push(c);
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }
}

/// Queues the key of `obj`'s controller when it is an `owners` object; for
/// an orphan, every `owners` object whose selector matches it (it may adopt
/// it).
pub(crate) fn queue_controller(
    cache: &Cache,
    owners: &'static Resource,
    obj: &Value,
    queue: &mut Queue,
) {
    let ns = meta_str(obj, "namespace");
    if let Some(c) = crate::objects::controller_ref(obj) {
        if c["kind"] == owners.kind {
            queue.add(format!("{ns}/{}", c["name"].as_str().unwrap_or_default()));
        }
        return;
    }
    let labels = obj.pointer("/metadata/labels");
    for o in cache.list(owners, ns) {
        if crate::replicaset::selector(o).is_some_and(|s| s.matches(labels)) {
            queue.add(key_of(o));
        }
    }
}

/// Keys waiting for a reconcile: each at most once, some after a delay,
/// failed ones again after an exponential back-off (5 ms to 1000 s upstream;
/// 10 ms to 30 s here).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    delayed: Vec<(Instant, String)>,
    failures: HashMap<String, u32>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Queue {
    pub fn add(&mut self, key: String) {
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` once `after` has passed (sooner if added meanwhile).
    pub fn add_after(&mut self, key: String, after: Duration) {
        let at = Instant::now() + after;
        if let Some(e) = self.delayed.iter_mut().find(|e| e.1 == key) {
            e.0 = e.0.min(at);
        } else {
            self.delayed.push((at, key));
        }
    }

    fn fail(&mut self, key: String) -> Duration {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n += 1;
        let delay =
            (Duration::from_millis(10) * 2u32.saturating_pow((*n).min(16))).min(MAX_BACKOFF);
        self.add_after(key, delay);
        delay
    }

    fn forget(&mut self, key: &str) {
        self.failures.remove(key);
    }

    fn next_due(&self) -> Option<Instant> {
        self.delayed.iter().map(|e| e.0).min()
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|e| e.0 <= now);
        self.delayed = later;
        for (_, k) in due {
            self.add(k);
        }
    }

    fn pop(&mut self) -> Option<String> {
        let k = self.ready.pop_front()?;
        self.queued.remove(&k);
        Some(k)
    }
}

/// One controller: what it watches, which keys a change concerns, and how
/// a key is brought to its desired state.
pub(crate) trait Reconciler: Send + 'static {
    /// For logs.
    const NAME: &'static str;

    /// The resources to cache; the first is the one keys name.
    fn resources(&self) -> Vec<&'static Resource>;

    /// Queues the keys a change of `obj` (of resource `r`; its new or old
    /// version) concerns.
    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue);

    /// Brings `key` to its desired state; `Ok(Some(d))` asks to be called
    /// again after `d` (time-based conditions).
    fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> impl Future<Output = Result<Option<Duration>, ClientError>> + Send;
}

/// Runs `rec` until the runtime stops: list, queue every object of its first
/// resource, then reconcile queued keys while applying watch events.
pub(crate) async fn run<R: Reconciler>(api: Loopback, mut rec: R) {
    let mut cache = Cache::new(api.clone(), rec.resources());
    let mut queue = Queue::default();
    loop {
        let from = match cache.fill().await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(controller = R::NAME, error = %e, "list failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let primary = cache.resources[0];
        let keys: Vec<String> = cache
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&primary.key_prefix()))
            .map(|(_, e)| key_of(&e.1))
            .collect();
        for k in keys {
            queue.add(k);
        }
        let mut watch = match api.watch_all(from + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(controller = R::NAME, error = %e, "watch failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let due = queue.next_due();
            tokio::select! {
                biased;
                ev = watch.next() => match ev {
                    Some(Ok(WatchEvent::Change(c))) => {
                        if !cache.resources.iter().any(|r| std::ptr::eq(*r, c.resource)) {
                            continue;
                        }
                        let old = cache.objects.get(&c.key).map(|e| e.1.clone());
                        match c.kind {
                            ChangeKind::Put => {
                                if cache.deleted.contains(&c.key) {
                                    continue;
                                }
                                // The cache may already hold this version or a
                                // newer one, written through it; its keys are
                                // still queued below (the write that got there
                                // may have carried someone else's change).
                                let newer = old.as_ref().is_some_and(|o| revision_of(o) >= c.revision);
                                if !newer {
                                    let Some(obj) = api.shared_object(&c) else { continue };
                                    cache.put(c.resource, obj.clone());
                                    rec.keys_for(&cache, c.resource, &obj, &mut queue);
                                }
                            }
                            ChangeKind::Deleted => {
                                cache.deleted.remove(&c.key);
                                cache.objects.remove(&c.key);
                            }
                        }
                        if let Some(o) = old {
                            rec.keys_for(&cache, c.resource, &o, &mut queue);
                        }
                    }
                    Some(Ok(WatchEvent::Progress(_))) => {}
                    Some(Err(e)) => {
                        tracing::warn!(controller = R::NAME, error = %e, "watch failed, listing again");
                        break;
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    queue.promote_due();
                }
                () = std::future::ready(()), if !queue.ready.is_empty() => {
                    let Some(key) = queue.pop() else { continue };
                    match rec.reconcile(&mut cache, &key).await {
                        Ok(again) => {
                            queue.forget(&key);
                            if let Some(d) = again {
                                queue.add_after(key, d);
                            }
                        }
                        Err(e) => {
                            let delay = queue.fail(key.clone());
                            tracing::warn!(controller = R::NAME, key, error = %e, retry_in = ?delay, "sync failed");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_dedups_delays_and_backs_off() {
        let mut q = Queue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert!(q.pop().is_none());
        q.add_after("c".into(), Duration::from_secs(5));
        q.promote_due();
        assert!(q.pop().is_none());
        q.add_after("c".into(), Duration::ZERO);
        assert_eq!(q.delayed.len(), 1);
        q.promote_due();
        assert_eq!(q.pop().as_deref(), Some("c"));
        let d1 = q.fail("d".into());
        let d2 = q.fail("d".into());
        assert!(d2 > d1);
        q.forget("d");
        assert!(q.failures.is_empty());
    }

    /// Copies `data.x` of `ConfigMaps` into an annotation, from the cache;
    /// its first pass also plays a concurrent writer changing `data.x`
    /// just before its own write.
    struct CopyX {
        raced: bool,
    }

    fn cms() -> &'static Resource {
        keel_api::resources::find("", "v1", "configmaps").unwrap()
    }

    impl Reconciler for CopyX {
        const NAME: &'static str = "copy-x";

        fn resources(&self) -> Vec<&'static Resource> {
            vec![cms()]
        }

        fn keys_for(&self, _: &Cache, _: &'static Resource, obj: &Value, queue: &mut Queue) {
            if meta_str(obj, "name") == "c" {
                queue.add(key_of(obj));
            }
        }

        async fn reconcile(
            &mut self,
            cache: &mut Cache,
            key: &str,
        ) -> Result<Option<Duration>, ClientError> {
            let (ns, name) = split_key(key);
            let Some(x) = cache.get(cms(), ns, name).map(|c| c["data"]["x"].clone()) else {
                return Ok(None);
            };
            if !self.raced {
                self.raced = true;
                cache
                    .api
                    .modify(cms(), Some(ns), name, None, "other", |cur| {
                        let mut v = cur.clone();
                        v["data"]["x"] = serde_json::json!("2");
                        Some(v)
                    })
                    .await?;
            }
            cache
                .modify(cms(), ns, name, None, |cur| {
                    let mut v = cur.clone();
                    v["metadata"]["annotations"]["x"] = x.clone();
                    (v != *cur).then_some(v)
                })
                .await?;
            Ok(None)
        }
    }

    /// A server on 127.0.0.1 with `ConfigMap` default/c (`data.x` "1"),
    /// and that object as created.
    async fn server_with_c(dir: &std::path::Path) -> (keel_api::Server, Value) {
        let server = keel_api::Server::bind(keel_api::Config {
            state_dir: dir.join("server"),
            listen: "127.0.0.1:0".parse().unwrap(),
            datastore: None,
        })
        .await
        .unwrap();
        let made = server
            .loopback()
            .create(
                cms(),
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "c", "namespace": "default"}, "data": {"x": "1"}}),
                "test",
            )
            .await
            .unwrap();
        (server, made)
    }

    #[tokio::test]
    async fn cached_objects_leave_out_managed_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (server, made) = server_with_c(dir.path()).await;
        let api = server.loopback();
        assert!(made["metadata"]["managedFields"].is_array(), "{made}");
        let mut cache = Cache::new(api.clone(), vec![cms()]);
        cache.fill().await.unwrap();
        let cached = cache.get(cms(), "default", "c").unwrap();
        assert_eq!(cached["data"]["x"], "1");
        assert!(
            cached["metadata"].get("managedFields").is_none(),
            "{cached}"
        );
        cache.remember(cms(), made);
        let cached = cache.get(cms(), "default", "c").unwrap();
        assert!(
            cached["metadata"].get("managedFields").is_none(),
            "{cached}"
        );
        // What a watch shares with every in-process watcher.
        let from = revision_of(cached);
        let mut watch = api.watch(cms(), from + 1).await.unwrap();
        let written = api
            .modify(cms(), Some("default"), "c", None, "other", |cur| {
                let mut v = cur.clone();
                v["data"]["x"] = serde_json::json!("2");
                Some(v)
            })
            .await
            .unwrap()
            .unwrap();
        assert!(written["metadata"]["managedFields"].is_array(), "{written}");
        let Some(Ok(WatchEvent::Change(c))) = watch.next().await else {
            panic!("no change")
        };
        let shared = api.shared_object(&c).unwrap();
        assert_eq!(shared["data"]["x"], "2");
        assert!(
            shared["metadata"].get("managedFields").is_none(),
            "{shared}"
        );
        // One copy for every watcher that holds it, and none held by the
        // memo itself (a version no one keeps is freed).
        let again = api.shared_object(&c).unwrap();
        assert!(Arc::ptr_eq(&shared, &again));
        assert_eq!(Arc::strong_count(&shared), 2);
    }

    /// Cached copies have no managedFields, so a write built from one
    /// leaves them out: the stored ones must survive it (the API keeps an
    /// object's managedFields when an update leaves them out).
    #[tokio::test]
    async fn a_write_built_from_a_cached_copy_keeps_the_stored_managed_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server_with_c(dir.path()).await;
        let api = server.loopback();
        let mut cache = Cache::new(api.clone(), vec![cms()]);
        cache.fill().await.unwrap();
        let mut desired = cache.get(cms(), "default", "c").unwrap().clone();
        desired["metadata"]["labels"] = serde_json::json!({"l": "1"});
        cache
            .modify(cms(), "default", "c", None, |_| Some(desired.clone()))
            .await
            .unwrap()
            .unwrap();
        let stored = api.get(cms(), Some("default"), "c").await.unwrap().unwrap();
        assert_eq!(stored["metadata"]["labels"]["l"], "1");
        let managers: Vec<&str> = stored["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&"test") && managers.contains(&crate::MANAGER),
            "{stored}"
        );
    }

    /// Regression: a write through the cache that landed on another
    /// writer's newer change made the watch events of both look old, so the
    /// key was never queued again and the controller kept acting on the
    /// stale copy (a `ReplicaSet` whose status write merged with a scale never
    /// created the extra pods).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_merged_with_someone_elses_change_is_reconciled_again() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server_with_c(dir.path()).await;
        let api = server.loopback();
        tokio::spawn(run(api.clone(), CopyX { raced: false }));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let c = api.get(cms(), Some("default"), "c").await.unwrap().unwrap();
            if c["metadata"]["annotations"]["x"] == "2" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "stale copy kept: {c}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
