//! The embedded backend: a kine-like revision log in `SQLite`.
//!
//! Every write appends one row to `kv`; the row's id is the write's revision
//! (AUTOINCREMENT keeps ids increasing even after compaction deletes rows). A
//! key's state is its newest row; a delete appends a tombstone row. One writer
//! thread applies queued writes in a single transaction per batch (group
//! commit) with `synchronous=FULL`, and acknowledges only after COMMIT returned,
//! so an acknowledged write survives a crash. Watchers get committed events
//! through a broadcast channel and replay from the log when they fall behind.
//! Reads use a small pool of connections; point reads and short lists run
//! on the caller's thread, longer lists on tokio's blocking pool.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    Watch, WatchItem, prefix_end,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv(name, id);
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL, expires_at INTEGER NOT NULL);
";

/// Most writes one transaction takes; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

/// The live rows of keys in [?1, ?2) after ?3 at revision ?4, at most ?5.
const LIST_SQL: &str = "SELECT kv.id, kv.name, kv.create_revision, kv.lease, kv.value FROM kv
     JOIN (SELECT MAX(id) AS mid FROM kv WHERE name >= ?1 AND name < ?2
           AND name > ?3 AND id <= ?4 GROUP BY name) m ON kv.id = m.mid
     WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?5";

/// The end of `prefix`'s key range as a bound the index can use: the next
/// prefix, or a BLOB (which sorts after every TEXT) when there is none.
/// An optional bound (`?2 IS NULL OR name < ?2`) left the range open above
/// under a plan made once (QPSG): a list then scanned every key after its
/// prefix.
fn upper_bound(prefix: &str) -> rusqlite::types::Value {
    match prefix_end(prefix).and_then(|e| String::from_utf8(e).ok()) {
        Some(end) => rusqlite::types::Value::Text(end),
        None => rusqlite::types::Value::Blob(Vec::new()),
    }
}

/// Rows a list reads on the caller's thread before it moves to the
/// blocking pool.
const INLINE_ROWS: usize = 64;

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
        lease: i64,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact(Revision),
    LeaseGrant(i64),
    LeaseKeepAlive(i64),
    LeaseRevoke(i64),
    ExpireLeases,
}

enum Output {
    Revision(Revision),
    Deleted(Revision, KeyValue),
    Lease(i64),
    Done,
}

type Reply = oneshot::Sender<Result<Output>>;

struct Shared {
    /// Latest committed revision (advanced before its events are broadcast).
    revision: AtomicI64,
    /// Held while events are broadcast and `revision` advanced, so a watcher
    /// sees a consistent (subscription, revision) pair.
    publish: Mutex<()>,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Event>>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

/// The `SQLite` backend. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: std::sync::mpsc::Sender<(Op, Reply)>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|source| StoreError::OpenSqlite {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql("set busy timeout"))?;
    // WAL lets readers run beside the writer; FULL fsyncs the WAL on every
    // commit, which is what makes an acknowledged write durable.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("enable WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("set synchronous"))?;
    // One plan per statement: without this SQLite prepares a statement
    // again whenever a parameter its planner looked at (the list's LIMIT)
    // is bound, which was a fifth of the API server's CPU under creates.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sql("enable the query planner stability guarantee"))?;
    Ok(conn)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The newest row of `key`, tombstone or not: (id, deleted, kv).
fn latest_row(conn: &Connection, key: &str) -> Result<Option<(bool, KeyValue)>> {
    conn.prepare_cached(
        "SELECT id, deleted, create_revision, lease, value FROM kv WHERE name = ?1 ORDER BY id DESC LIMIT 1",
    )
    .map_err(sql("prepare get"))?
    .query_row(params![key], |r| {
        Ok((
            r.get::<_, i64>(1)? != 0,
            KeyValue {
                key: key.to_string(),
                mod_revision: r.get(0)?,
                create_revision: r.get(2)?,
                lease: r.get(3)?,
                value: r.get(4)?,
            },
        ))
    })
    .optional()
    .map_err(sql("get"))
}

fn live(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(latest_row(conn, key)?.and_then(|(deleted, kv)| (!deleted).then_some(kv)))
}

fn insert_row(
    conn: &Connection,
    key: &str,
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    lease: i64,
    value: &[u8],
) -> Result<Revision> {
    conn.prepare_cached(
        "INSERT INTO kv (name, deleted, create_revision, prev_revision, lease, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(sql("prepare insert"))?
    .execute(params![key, i64::from(deleted), create_revision, prev_revision, lease, value])
    .map_err(sql("insert"))?;
    let id = conn.last_insert_rowid();
    if create_revision == 0 {
        // A create's create_revision is its own id, known only after insert.
        conn.prepare_cached("UPDATE kv SET create_revision = ?1 WHERE id = ?1")
            .map_err(sql("prepare insert"))?
            .execute(params![id])
            .map_err(sql("insert"))?;
    }
    Ok(id)
}

fn check_lease(conn: &Connection, lease: i64) -> Result<()> {
    if lease == 0 {
        return Ok(());
    }
    let found: Option<i64> = conn
        .query_row("SELECT id FROM leases WHERE id = ?1", params![lease], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("look up lease"))?;
    found.map(|_| ()).ok_or(StoreError::LeaseNotFound(lease))
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
}

impl Writer {
    fn apply(&self, op: &Op, events: &mut Vec<Event>) -> Result<Output> {
        let conn = &self.conn;
        match op {
            Op::Create { key, value, lease } => {
                check_lease(conn, *lease)?;
                if live(conn, key)?.is_some() {
                    return Err(StoreError::AlreadyExists(key.clone()));
                }
                let rev = insert_row(conn, key, false, 0, 0, *lease, value)?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: rev,
                        mod_revision: rev,
                        lease: *lease,
                    },
                    prev: None,
                });
                Ok(Output::Revision(rev))
            }
            Op::Update {
                key,
                value,
                expected,
                lease,
            } => {
                check_lease(conn, *lease)?;
                let cur = live(conn, key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
                if cur.mod_revision != *expected {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: cur.mod_revision,
                    });
                }
                let rev = insert_row(
                    conn,
                    key,
                    false,
                    cur.create_revision,
                    cur.mod_revision,
                    *lease,
                    value,
                )?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: cur.create_revision,
                        mod_revision: rev,
                        lease: *lease,
                    },
                    prev: Some(cur),
                });
                Ok(Output::Revision(rev))
            }
            Op::Delete { key, expected } => {
                let cur = live(conn, key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
                if let Some(expected) = expected
                    && cur.mod_revision != *expected
                {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: cur.mod_revision,
                    });
                }
                let rev = self.tombstone(&cur, events)?;
                Ok(Output::Deleted(rev, cur))
            }
            Op::Compact(rev) => {
                let current = Writer::current(conn)?;
                if *rev > current {
                    return Err(StoreError::FutureRevision(*rev));
                }
                let compacted = self.shared.compacted.load(Ordering::SeqCst);
                if *rev <= compacted {
                    return Err(StoreError::Expired {
                        requested: *rev,
                        compacted,
                    });
                }
                // Drop rows superseded by a newer row at or below `rev`, and
                // tombstones at or below it (the key is simply absent then).
                conn.execute(
                    "DELETE FROM kv WHERE id <= ?1 AND (deleted = 1 OR id < (SELECT MAX(k2.id) FROM kv k2 WHERE k2.name = kv.name AND k2.id <= ?1))",
                    params![rev],
                )
                .map_err(sql("compact"))?;
                conn.execute(
                    "INSERT INTO meta (k, v) VALUES ('compact_rev', ?1) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    params![rev],
                )
                .map_err(sql("compact"))?;
                Ok(Output::Done)
            }
            Op::LeaseGrant(ttl) => {
                conn.execute(
                    "INSERT INTO leases (ttl, expires_at) VALUES (?1, ?2)",
                    params![ttl, now_secs() + ttl],
                )
                .map_err(sql("grant lease"))?;
                Ok(Output::Lease(conn.last_insert_rowid()))
            }
            Op::LeaseKeepAlive(id) => {
                let n = conn
                    .execute(
                        "UPDATE leases SET expires_at = ?2 + ttl WHERE id = ?1",
                        params![id, now_secs()],
                    )
                    .map_err(sql("keep lease alive"))?;
                if n == 0 {
                    return Err(StoreError::LeaseNotFound(*id));
                }
                Ok(Output::Done)
            }
            Op::LeaseRevoke(id) => {
                self.revoke(*id, events)?;
                Ok(Output::Done)
            }
            Op::ExpireLeases => {
                let expired: Vec<i64> = conn
                    .prepare_cached("SELECT id FROM leases WHERE expires_at <= ?1")
                    .map_err(sql("expire leases"))?
                    .query_map(params![now_secs()], |r| r.get(0))
                    .map_err(sql("expire leases"))?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(sql("expire leases"))?;
                for id in expired {
                    self.revoke(id, events)?;
                }
                Ok(Output::Done)
            }
        }
    }

    fn current(conn: &Connection) -> Result<Revision> {
        conn.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'kv'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read revision"))
    }

    fn tombstone(&self, cur: &KeyValue, events: &mut Vec<Event>) -> Result<Revision> {
        let rev = insert_row(
            &self.conn,
            &cur.key,
            true,
            cur.create_revision,
            cur.mod_revision,
            0,
            &[],
        )?;
        events.push(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: cur.key.clone(),
                value: Vec::new(),
                create_revision: cur.create_revision,
                mod_revision: rev,
                lease: 0,
            },
            prev: Some(cur.clone()),
        });
        Ok(rev)
    }

    fn revoke(&self, id: i64, events: &mut Vec<Event>) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM leases WHERE id = ?1", params![id])
            .map_err(sql("revoke lease"))?;
        if n == 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        let keys: Vec<String> = self
            .conn
            .prepare_cached("SELECT DISTINCT name FROM kv WHERE lease = ?1")
            .map_err(sql("revoke lease"))?
            .query_map(params![id], |r| r.get(0))
            .map_err(sql("revoke lease"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql("revoke lease"))?;
        for key in keys {
            if let Some(cur) = live(&self.conn, &key)?
                && cur.lease == id
            {
                self.tombstone(&cur, events)?;
            }
        }
        Ok(())
    }

    fn run(mut self, rx: &std::sync::mpsc::Receiver<(Op, Reply)>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
    }

    /// Runs one statement without parameters from the statement cache (a
    /// batch runs a savepoint and its release per write: parsing them each
    /// time showed in profiles).
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn run_batch(&mut self, batch: Vec<(Op, Reply)>) {
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        let begin = self.exec("BEGIN IMMEDIATE");
        if let Err(e) = begin {
            let msg = e.to_string();
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Sqlite {
                    op: "begin transaction",
                    source: rusqlite::Error::InvalidParameterName(msg.clone()),
                }));
            }
            return;
        }
        let mut fatal = None;
        for (op, _) in &batch {
            // Each op runs in a savepoint so a failed op leaves no partial rows
            // while the batch's other ops still commit.
            let before = events.len();
            if let Err(e) = self.exec("SAVEPOINT op") {
                fatal = Some(e);
                break;
            }
            let r = self.apply(op, &mut events);
            let end = if r.is_ok() {
                self.exec("RELEASE op")
            } else {
                events.truncate(before);
                self.exec("ROLLBACK TO op")
                    .and_then(|()| self.exec("RELEASE op"))
            };
            if let Err(e) = end {
                fatal = Some(e);
                break;
            }
            results.push(r);
        }
        let commit = match fatal {
            Some(e) => Err(e),
            None => self.exec("COMMIT"),
        };
        if let Err(e) = commit {
            let _ = self.conn.execute_batch("ROLLBACK");
            let msg = e.to_string();
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Sqlite {
                    op: "commit",
                    source: rusqlite::Error::InvalidParameterName(msg.clone()),
                }));
            }
            return;
        }
        // Durable now: publish, then acknowledge.
        for (op, _) in &batch {
            if let Op::Compact(rev) = op {
                self.shared.compacted.fetch_max(*rev, Ordering::SeqCst);
            }
        }
        {
            let _guard = self.shared.publish.lock();
            // The revision advances before the events go out: a watcher that
            // reads (list, get, current_revision) on an event must see it.
            if let Some(rev) = events.last().map(Event::revision) {
                self.shared.revision.fetch_max(rev, Ordering::SeqCst);
            }
            for ev in events {
                let _ = self.shared.events.send(Arc::new(ev));
            }
        }
        for ((_, reply), r) in batch.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Event, Revision)> {
    let deleted: i64 = r.get(2)?;
    let kv = KeyValue {
        key: r.get(1)?,
        mod_revision: r.get(0)?,
        create_revision: r.get(3)?,
        lease: r.get(5)?,
        value: r.get(6)?,
    };
    let prev_rev: Revision = r.get(4)?;
    let kind = if deleted != 0 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    Ok((
        Event {
            kind,
            kv,
            prev: None,
        },
        prev_rev,
    ))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_conn(path)?;
        conn.execute_batch(SCHEMA).map_err(sql("create schema"))?;
        let (events, _) = broadcast::channel(8192);
        let compacted: i64 = conn
            .query_row(
                "SELECT COALESCE((SELECT v FROM meta WHERE k = 'compact_rev'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(sql("read compact revision"))?;
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(0),
            compacted: AtomicI64::new(compacted),
            events,
            publish: Mutex::new(()),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
        });
        let writer = Writer {
            conn,
            shared: shared.clone(),
        };
        let rev = Writer::current(&writer.conn)?;
        shared.revision.store(rev, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("keel-store-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| StoreError::Sqlite {
                op: "start writer thread",
                source: rusqlite::Error::InvalidParameterName(e.to_string()),
            })?;
        let store = SqliteStore { shared, writer: tx };
        // Lease expiry runs only inside a tokio runtime; without one, leases
        // expire when the next store opened in a runtime sweeps them.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let w = store.writer.clone();
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let (rtx, rrx) = oneshot::channel();
                    if w.send((Op::ExpireLeases, rtx)).is_err() {
                        break;
                    }
                    let _ = rrx.await;
                }
            });
        }
        Ok(store)
    }

    async fn write(&self, op: Op) -> Result<Output> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send((op, tx))
            .map_err(|_| StoreError::WriterStopped)?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs `f` with a pooled read connection here, on the caller's thread:
    /// for point lookups and bounded scans, which take microseconds in
    /// WAL mode (readers never wait for the writer), less than the two
    /// context switches of a hop to the blocking pool.
    async fn read_here<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let r = self.read_now(f);
        // Still a point where other tasks run, as the hop to the pool was:
        // callers' loops (a controller polling the store) rely on it.
        tokio::task::yield_now().await;
        r
    }

    fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.shared.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.shared.path)?,
        };
        let r = f(&conn);
        if let Ok(mut v) = self.shared.readers.lock()
            && v.len() < 8
        {
            v.push(conn);
        }
        r
    }

    /// Runs `f` with a pooled read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = shared.readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match conn {
                Some(c) => c,
                None => open_conn(&shared.path)?,
            };
            let r = f(&conn);
            if let Ok(mut v) = shared.readers.lock()
                && v.len() < 8
            {
                v.push(conn);
            }
            r
        })
        .await
        .map_err(|_| StoreError::WriterStopped)?
    }

    fn check_revision(&self, rev: Revision) -> Result<()> {
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if rev < compacted {
            return Err(StoreError::Expired {
                requested: rev,
                compacted,
            });
        }
        if rev > self.shared.revision.load(Ordering::SeqCst) {
            return Err(StoreError::FutureRevision(rev));
        }
        Ok(())
    }
}

/// Events of keys under `prefix` with revision in `from..=to`, from the log.
fn history(conn: &Connection, prefix: &str, from: Revision, to: Revision) -> Result<Vec<Event>> {
    let end = upper_bound(prefix);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name, deleted, create_revision, prev_revision, lease, value FROM kv
             WHERE id >= ?1 AND id <= ?2 AND name >= ?3 AND name < ?4 ORDER BY id",
        )
        .map_err(sql("read history"))?;
    let rows: Vec<(Event, Revision)> = stmt
        .query_map(params![from, to, prefix, end], row_event)
        .map_err(sql("read history"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql("read history"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (mut ev, prev_rev) in rows {
        if !ev.kv.key.starts_with(prefix) {
            continue;
        }
        if prev_rev != 0 {
            ev.prev = conn
                .prepare_cached(
                    "SELECT create_revision, lease, value FROM kv WHERE id = ?1 AND deleted = 0",
                )
                .map_err(sql("read history"))?
                .query_row(params![prev_rev], |r| {
                    Ok(KeyValue {
                        key: ev.kv.key.clone(),
                        mod_revision: prev_rev,
                        create_revision: r.get(0)?,
                        lease: r.get(1)?,
                        value: r.get(2)?,
                    })
                })
                .optional()
                .map_err(sql("read history"))?;
        }
        out.push(ev);
    }
    Ok(out)
}

/// Rows under `prefix` alive at `rev`, at most `opts.limit` (0: all) after
/// `opts.start_after`.
fn list_rows(
    c: &Connection,
    prefix: &str,
    opts: &ListOptions,
    rev: Revision,
) -> Result<ListResult> {
    let end = upper_bound(prefix);
    let lower = match &opts.start_after {
        Some(s) if s.as_str() >= prefix => s.clone(),
        _ => String::new(),
    };
    let limit = if opts.limit == 0 {
        -1
    } else {
        opts.limit as i64 + 1
    };
    let mut stmt = c.prepare_cached(LIST_SQL).map_err(sql("list"))?;
    let mut items: Vec<KeyValue> = stmt
        .query_map(params![prefix, end, lower, rev, limit], |r| {
            Ok(KeyValue {
                mod_revision: r.get(0)?,
                key: r.get(1)?,
                create_revision: r.get(2)?,
                lease: r.get(3)?,
                value: r.get(4)?,
            })
        })
        .map_err(sql("list"))?
        .filter(|r| r.as_ref().map_or(true, |kv| kv.key.starts_with(prefix)))
        .collect::<rusqlite::Result<_>>()
        .map_err(sql("list"))?;
    let more = opts.limit != 0 && items.len() > opts.limit;
    items.truncate(if opts.limit == 0 {
        items.len()
    } else {
        opts.limit
    });
    Ok(ListResult {
        items,
        revision: rev,
        more,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.read_here(|c| live(c, key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let rev = match opts.revision {
            Some(r) if r > 0 => {
                self.check_revision(r)?;
                r
            }
            _ => self.shared.revision.load(Ordering::SeqCst),
        };
        // Most lists an API request makes on its way (quotas, limit ranges,
        // priority classes of a namespace) are empty or tiny: try them here,
        // and hop to the blocking pool only for a longer one.
        if opts.limit == 0 || opts.limit > INLINE_ROWS {
            let small = ListOptions {
                limit: INLINE_ROWS,
                ..opts.clone()
            };
            let first = self
                .read_here(|c| list_rows(c, prefix, &small, rev))
                .await?;
            if !first.more {
                return Ok(first);
            }
        } else {
            return self.read_here(|c| list_rows(c, prefix, &opts, rev)).await;
        }
        let prefix = prefix.to_string();
        self.read(move |c| list_rows(c, &prefix, &opts, rev)).await
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            let end = upper_bound(&prefix);
            c.prepare_cached(
                "SELECT COUNT(*) FROM kv JOIN (SELECT MAX(id) AS mid FROM kv WHERE name >= ?1 AND name < ?2 GROUP BY name) m ON kv.id = m.mid WHERE kv.deleted = 0",
            )
            .map_err(sql("count"))?
            .query_row(params![prefix, end], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(sql("count"))
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<Revision> {
        match self
            .write(Op::Create {
                key: key.to_string(),
                value,
                lease,
            })
            .await?
        {
            Output::Revision(r) => Ok(r),
            _ => unreachable!("create yields a revision"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: i64,
    ) -> Result<Revision> {
        match self
            .write(Op::Update {
                key: key.to_string(),
                value,
                expected,
                lease,
            })
            .await?
        {
            Output::Revision(r) => Ok(r),
            _ => unreachable!("update yields a revision"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .write(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
        {
            Output::Deleted(r, kv) => Ok((r, kv)),
            _ => unreachable!("delete yields the deleted value"),
        }
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<Watch> {
        // Subscribe before reading history so nothing falls between the two.
        let (mut live_rx, now) = {
            let _guard = self.shared.publish.lock();
            (
                self.shared.events.subscribe(),
                self.shared.revision.load(Ordering::SeqCst),
            )
        };
        if start > 0 {
            let compacted = self.shared.compacted.load(Ordering::SeqCst);
            if start <= compacted {
                return Err(StoreError::Expired {
                    requested: start,
                    compacted,
                });
            }
        }
        let (watch, tx, mut cancel) = Watch::channel();
        let prefix = prefix.to_string();
        let shared = self.shared.clone();
        let replay = {
            let prefix = prefix.clone();
            let shared = shared.clone();
            move |from: Revision, to: Revision| {
                let prefix = prefix.clone();
                let shared = shared.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        let conn = open_conn(&shared.path)?;
                        history(&conn, &prefix, from, to)
                    })
                    .await
                    .map_err(|_| StoreError::WatchClosed)?
                }
            }
        };
        tokio::spawn(async move {
            let mut last = if start > 0 { start - 1 } else { now };
            if start > 0 && start <= now {
                match replay(start, now).await {
                    Ok(evs) => {
                        for ev in evs {
                            if tx.send(Ok(WatchItem::Event(ev))).await.is_err() {
                                return;
                            }
                        }
                        last = now;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut cancel => return,
                    () = tx.closed() => return,
                    msg = live_rx.recv() => match msg {
                        Ok(ev) => {
                            if ev.revision() > last {
                                last = ev.revision();
                                if ev.kv.key.starts_with(&prefix)
                                    && tx.send(Ok(WatchItem::Event((*ev).clone()))).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Fell behind the broadcast buffer: catch up from the log.
                            let to = shared.revision.load(Ordering::SeqCst);
                            let compacted = shared.compacted.load(Ordering::SeqCst);
                            if last < compacted {
                                let _ = tx.send(Err(StoreError::Expired { requested: last + 1, compacted })).await;
                                return;
                            }
                            match replay(last + 1, to).await {
                                Ok(evs) => {
                                    for ev in evs {
                                        if tx.send(Ok(WatchItem::Event(ev))).await.is_err() {
                                            return;
                                        }
                                    }
                                    last = last.max(to);
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(e)).await;
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = tx.send(Err(StoreError::WatchClosed)).await;
                            return;
                        }
                    },
                    _ = tick.tick() => {
                        // Under the publish lock, everything up to `notified`
                        // is already in our receiver.
                        let (notified, pending) = {
                            let _guard = shared.publish.lock();
                            let notified = shared.revision.load(Ordering::SeqCst);
                            let mut pending = Vec::new();
                            while let Ok(ev) = live_rx.try_recv() {
                                pending.push(ev);
                            }
                            (notified, pending)
                        };
                        for ev in pending {
                            if ev.revision() > last {
                                last = ev.revision();
                                if ev.kv.key.starts_with(&prefix)
                                    && tx.send(Ok(WatchItem::Event((*ev).clone()))).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        last = last.max(notified);
                        if tx.send(Ok(WatchItem::Progress(last))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(watch)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::Compact(revision)).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<i64> {
        match self.write(Op::LeaseGrant(ttl_secs)).await? {
            Output::Lease(id) => Ok(id),
            _ => unreachable!("grant yields a lease"),
        }
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<()> {
        self.write(Op::LeaseKeepAlive(id)).await.map(|_| ())
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.write(Op::LeaseRevoke(id)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached list statement runs with new bindings without being
    /// prepared again (it was, on every call, before QPSG).
    #[test]
    fn lists_keep_their_prepared_statement() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_conn(&dir.path().join("db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for (limit, after) in [(0, ""), (10, "/a"), (65, "/b"), (2, "")] {
            let opts = ListOptions {
                limit,
                start_after: (!after.is_empty()).then(|| after.to_string()),
                ..ListOptions::default()
            };
            list_rows(&conn, "/", &opts, 100).unwrap();
        }
        let stmt = conn.prepare_cached(LIST_SQL).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::Run), 4);
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// A list reads only its prefix's range of the index, bounded on both
    /// sides, whatever the bindings.
    #[test]
    fn a_list_reads_only_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_conn(&dir.path().join("db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LIST_SQL}"))
            .unwrap()
            .query_map(params!["/a/", "/a0", "", 1, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("kv_name_id (name>? AND name<?)")),
            "{plan:?}"
        );
        // Keys after the range are not listed; with no end every key is.
        let insert = |name: &str, id: i64| {
            conn.execute(
                "INSERT INTO kv (id, name, deleted, create_revision, prev_revision, lease, value) VALUES (?1, ?2, 0, ?1, 0, 0, x'00')",
                params![id, name],
            )
            .unwrap();
        };
        insert("/a/1", 1);
        insert("/a0", 2);
        insert("/b/\u{10ffff}", 3);
        let names = |prefix: &str| -> Vec<String> {
            list_rows(&conn, prefix, &ListOptions::default(), 10)
                .unwrap()
                .items
                .into_iter()
                .map(|kv| kv.key)
                .collect()
        };
        assert_eq!(names("/a/"), ["/a/1"]);
        assert_eq!(names(""), ["/a/1", "/a0", "/b/\u{10ffff}"]);
    }
}
