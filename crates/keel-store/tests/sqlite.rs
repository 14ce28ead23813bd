//! The conformance suite on the embedded `SQLite` backend, plus checks only
//! it needs (durability across reopen).

mod conformance;

use std::sync::Arc;

use keel_store::{SqliteStore, Store};

// Async like every backend's factory: the suite macro awaits it.
#[allow(clippy::unused_async)]
async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (Arc::new(store), dir)
}

conformance_suite!(make();
    create_get, update_cas, delete_cas, list_pagination, list_long, concurrent_writers,
    cas_counter, watch_ordering, watch_then_read, watch_resume, compaction, leases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let rev = {
        let s = SqliteStore::open(&path).unwrap();
        s.create("/x", b"1".to_vec(), 0).await.unwrap();
        s.compact(1).await.unwrap();
        s.create("/y", b"2".to_vec(), 0).await.unwrap()
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get("/y").await.unwrap().unwrap().mod_revision, rev);
    assert_eq!(s.current_revision().await.unwrap(), rev);
    // Revisions keep increasing after a reopen, and compaction is remembered.
    assert!(s.create("/z", vec![], 0).await.unwrap() > rev);
    assert!(s.watch("/", 1).await.is_err());
}

#[tokio::test]
async fn open_picks_backend_from_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db").display());
    let s = keel_store::open(&url).await.unwrap();
    s.create("/a", vec![], 0).await.unwrap();
    assert!(keel_store::open("mysql://x").await.is_err());
    assert!(keel_store::open("etcd://").await.is_err());
}
