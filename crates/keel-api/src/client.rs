//! [`Loopback`]: in-process access to the API for the server's own
//! controllers. Calls go through the same handler code as HTTP requests
//! (defaulting, validation, bookkeeping, compare-and-swap, finalizers), without
//! TLS, HTTP or JSON on the wire, the way kube-controller-manager would use
//! the API through client-go.

use std::sync::Arc;

use keel_store::{EventKind, KeyValue, ListOptions, StoreError, WatchItem};
use serde_json::Value;

use crate::State;
use crate::handlers::{self, DeleteOptions};
use crate::http::Fail;
use crate::resources::{self, Resource};

/// A failed API call: the HTTP status, reason and message a client would get.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({code} {reason})")]
pub struct ClientError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }
}

impl From<Fail> for ClientError {
    fn from(f: Fail) -> Self {
        ClientError {
            code: f.code,
            reason: f.reason.to_string(),
            message: f.message,
        }
    }
}

fn store_error(e: &StoreError) -> ClientError {
    let (code, reason) = match e {
        StoreError::Expired { .. } => (410, "Expired"),
        _ => (500, "InternalError"),
    };
    ClientError {
        code,
        reason: reason.into(),
        message: crate::handlers::error_chain(e),
    }
}

/// What happened to an object, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created or updated.
    Put,
    Deleted,
}

/// One change of any object, undecoded until asked.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    pub resource: &'static Resource,
    /// The storage key (unique per object).
    pub key: String,
    pub revision: i64,
    raw: Option<KeyValue>,
    prev: Option<KeyValue>,
}

impl Change {
    /// Cheap filter before decoding: whether the new or previous stored
    /// bytes may contain `needle` (always true for sealed values).
    pub fn may_contain(&self, needle: &[u8]) -> bool {
        // memmem rather than comparing every window: each controller asks
        // this of every change it watches (a memcmp call per byte showed
        // up as 6% of the server's CPU in the scheduler benchmark).
        [&self.raw, &self.prev].into_iter().flatten().any(|kv| {
            keel_secrets::is_sealed(&kv.value) || memchr::memmem::find(&kv.value, needle).is_some()
        })
    }
}

/// What a [`Loopback::watch_all`] yields.
#[derive(Debug)]
pub enum WatchEvent {
    Change(Change),
    /// Everything up to this revision has been delivered.
    Progress(i64),
}

/// A watch over objects of one or every resource.
#[derive(Debug)]
pub struct AllWatch {
    inner: keel_store::Watch,
}

impl AllWatch {
    /// The next event; `None` when the watch ended, `Err` with code 410 when
    /// the revision it would resume from has been compacted (list again).
    pub async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        loop {
            let item = match self.inner.next().await? {
                Ok(i) => i,
                Err(StoreError::WatchClosed) => return None,
                Err(e) => return Some(Err(store_error(&e))),
            };
            let ev = match item {
                WatchItem::Progress(rev) => return Some(Ok(WatchEvent::Progress(rev))),
                WatchItem::Event(ev) => ev,
            };
            // Keys outside the resource table (none today) are skipped.
            let Some(resource) = resources::from_key(&ev.kv.key) else {
                continue;
            };
            let revision = ev.revision();
            let (kind, raw) = match ev.kind {
                EventKind::Put => (ChangeKind::Put, Some(ev.kv.clone())),
                EventKind::Delete => (ChangeKind::Deleted, None),
            };
            return Some(Ok(WatchEvent::Change(Change {
                kind,
                resource,
                key: ev.kv.key,
                revision,
                raw,
                prev: ev.prev,
            })));
        }
    }
}

/// In-process API access (cheap to clone).
#[derive(Clone)]
pub struct Loopback {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback").finish_non_exhaustive()
    }
}

impl Loopback {
    /// The object a change put (`None` for a deletion or an undecodable
    /// value), without its `metadata.managedFields` (see `Decoded`).
    pub fn object(&self, c: &Change) -> Option<Value> {
        self.shared_object(c).map(Arc::unwrap_or_clone)
    }

    /// [`Self::object`] without a copy: decoded once for every in-process
    /// watcher of the change.
    pub fn shared_object(&self, c: &Change) -> Option<Arc<Value>> {
        let kv = c.raw.as_ref()?;
        self.state.decoded.get(&self.state, kv).ok()
    }

    /// The object as it was before the change, when the store kept it.
    pub fn previous(&self, c: &Change) -> Option<Value> {
        let kv = c.prev.as_ref()?;
        handlers::decode(&self.state, kv, kv.mod_revision).ok()
    }

    /// One object; `None` when absent.
    pub async fn get(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClientError> {
        match handlers::get_current(&self.state, r, ns, name).await {
            Ok((_, v)) => Ok(Some(v)),
            Err(f) if f.code == 404 => Ok(None),
            Err(f) => Err(f.into()),
        }
    }

    /// Every object of `r` (in `ns`, or everywhere) and the list's revision.
    pub async fn list(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
    ) -> Result<(Vec<Value>, i64), ClientError> {
        let (items, rev) = self.list_prefix(&r.list_prefix(ns)).await?;
        Ok((items.into_iter().map(|(_, v)| v).collect(), rev))
    }

    /// Every stored object of every resource at one revision.
    pub async fn list_all(&self) -> Result<(Vec<(&'static Resource, Value)>, i64), ClientError> {
        self.list_prefix(resources::REGISTRY).await
    }

    async fn list_prefix(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(&'static Resource, Value)>, i64), ClientError> {
        let mut opts = ListOptions {
            limit: 500,
            ..ListOptions::default()
        };
        let mut out = Vec::new();
        loop {
            let page = self
                .state
                .store
                .list(prefix, opts.clone())
                .await
                .map_err(|e| store_error(&e))?;
            for kv in &page.items {
                let Some(r) = resources::from_key(&kv.key) else {
                    continue;
                };
                out.push((r, handlers::decode(&self.state, kv, kv.mod_revision)?));
            }
            if !page.more {
                return Ok((out, page.revision));
            }
            opts.revision = Some(page.revision);
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Changes of every object from revision `from` on (0: from now).
    pub async fn watch_all(&self, from: i64) -> Result<AllWatch, ClientError> {
        self.watch_prefix(resources::REGISTRY, from).await
    }

    /// Changes of the objects of `r` from revision `from` on (0: from now).
    pub async fn watch(&self, r: &'static Resource, from: i64) -> Result<AllWatch, ClientError> {
        self.watch_prefix(&r.key_prefix(), from).await
    }

    async fn watch_prefix(&self, prefix: &str, from: i64) -> Result<AllWatch, ClientError> {
        let inner = self
            .state
            .store
            .watch(prefix, from)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(AllWatch { inner })
    }

    /// Creates an object, recording `manager` in its managedFields.
    pub async fn create(
        &self,
        r: &'static Resource,
        obj: Value,
        manager: &str,
    ) -> Result<Value, ClientError> {
        let track = handlers::Track {
            manager: manager.to_string(),
            subresource: String::new(),
            scope: handlers::scope_for(r, None),
        };
        Ok(handlers::create(&self.state, r, obj, false, Some(&track)).await?)
    }

    /// Read-modify-write (through subresource `sub` when given): `f` maps the
    /// current object to the desired one, or `None` to leave it. Lost races
    /// are retried with the newer object. Returns the written object.
    pub async fn modify(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        manager: &str,
        f: impl Fn(&Value) -> Option<Value>,
    ) -> Result<Option<Value>, ClientError> {
        Ok(handlers::update_object(&self.state, r, ns, name, sub, manager, f).await?)
    }

    /// Deletes an object as a DELETE request with `opts` would.
    pub async fn delete(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ClientError> {
        Ok(handlers::delete(&self.state, r, ns, name, opts).await?)
    }
}
