//! keel's versioned key-value store: the [`Store`] trait (get, paginated prefix
//! list, create / compare-and-swap update and delete, ordered watch from a
//! revision, compaction, leases with a TTL) and its two backends,
//! [`SqliteStore`] (embedded, a kine-like revision log in `SQLite` with WAL) and
//! [`EtcdStore`] (a real etcd cluster). Every write gets a new, globally
//! increasing revision; a write is durable before it is acknowledged.
//! [`open`] picks the backend from a datastore URL.

mod etcd;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// A store revision. Every successful write increments it; 0 means "none".
pub type Revision = i64;

/// One key with its current value and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key (for a delete event: the delete).
    pub mod_revision: Revision,
    /// Lease the key is attached to; 0 for none.
    pub lease: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put: the new value; for a delete: the key with an empty value and
    /// `mod_revision` set to the delete's revision.
    pub kv: KeyValue,
    /// The value before this change, when the backend still has it.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a watch yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every change up to and including this revision has been delivered.
    Progress(Revision),
}

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Only keys strictly after this one (a continue token's position).
    pub start_after: Option<String>,
    /// Read as of this revision; `None` means the current one.
    pub revision: Option<Revision>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} was modified: expected revision {expected}, current revision {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Expired {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {0} is in the future")]
    FutureRevision(Revision),
    #[error("lease {0} not found")]
    LeaseNotFound(i64),
    #[error("invalid datastore url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("open sqlite database {path}")]
    OpenSqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("sqlite {op}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("connect to etcd at {endpoints}")]
    ConnectEtcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd {op}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("store writer has stopped")]
    WriterStopped,
    #[error("watch stream ended")]
    WatchClosed,
}

impl StoreError {
    /// Whether the error means "compare-and-swap lost" (409 in the API).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of watch items, in revision order.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<WatchItem>>,
    // Dropping the watch stops the task that feeds it.
    _cancel: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn channel() -> (
        Self,
        tokio::sync::mpsc::Sender<Result<WatchItem>>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let (ctx, crx) = tokio::sync::oneshot::channel();
        (Watch { rx, _cancel: ctx }, tx, crx)
    }

    /// The next item; `None` when the stream has ended (after an error).
    pub async fn next(&mut self) -> Option<Result<WatchItem>> {
        self.rx.recv().await
    }
}

/// A versioned key-value store. Keys are strings; values are bytes.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, one page at a time.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Number of keys starting with `prefix` (current revision).
    async fn count(&self, prefix: &str) -> Result<usize>;

    /// Creates `key`; fails with `AlreadyExists` if it is present. Returns the
    /// new revision.
    async fn create(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<Revision>;

    /// Replaces `key`'s value if its `mod_revision` is still `expected`
    /// (`Conflict` otherwise, `NotFound` if absent). Returns the new revision.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: i64,
    ) -> Result<Revision>;

    /// Deletes `key`, only if its `mod_revision` is `expected` when given.
    /// Returns the delete's revision and the value deleted.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Changes to keys starting with `prefix` with revision >= `start`
    /// (0: from now on), in revision order. `Expired` when `start` was compacted.
    async fn watch(&self, prefix: &str, start: Revision) -> Result<Watch>;

    /// The store's latest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets history up to `revision`: older revisions can no longer be read
    /// or watched from.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// A new lease that expires `ttl_secs` after its last keep-alive; keys
    /// attached to it are deleted when it expires or is revoked.
    async fn lease_grant(&self, ttl_secs: i64) -> Result<i64>;
    async fn lease_keep_alive(&self, id: i64) -> Result<()>;
    async fn lease_revoke(&self, id: i64) -> Result<()>;
}

/// Opens the store a datastore URL names: `sqlite:///path/to/db` (or a plain
/// path) for the embedded store, `etcd://host:port,host:port` for etcd.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(rest) = url.strip_prefix("etcd://") {
        let endpoints: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| format!("http://{s}"))
            .collect();
        if endpoints.is_empty() {
            return Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "no etcd endpoints".into(),
            });
        }
        return Ok(Arc::new(EtcdStore::connect(&endpoints).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
        return Err(StoreError::InvalidUrl {
            url: url.to_string(),
            reason: "expected sqlite:///path or etcd://host:port,...".into(),
        });
    }
    Ok(Arc::new(SqliteStore::open(std::path::Path::new(path))?))
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when there is none (empty prefix or all 0xff bytes).
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(""), None);
    }
}
