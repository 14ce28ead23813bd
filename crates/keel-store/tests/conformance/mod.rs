//! The shared conformance suite: every `Store` backend must pass all of it.
//! Each check takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use keel_store::{EventKind, ListOptions, Store, StoreError, Watch, WatchItem};

/// Generates one `#[tokio::test]` per check, with stores from `$make`
/// (an async expression yielding `(Arc<dyn Store>, guard)`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = $make.await;
                conformance::$name(store).await;
            }
        )*
    };
}

async fn next_event(w: &mut Watch) -> keel_store::Event {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch event within 10s")
            .expect("watch still open")
            .expect("watch item ok");
        if let WatchItem::Event(ev) = item {
            return ev;
        }
    }
}

pub async fn create_get(s: Arc<dyn Store>) {
    assert!(s.get("/a").await.unwrap().is_none());
    let r1 = s.create("/a", b"one".to_vec(), 0).await.unwrap();
    assert!(r1 > 0);
    let kv = s.get("/a").await.unwrap().unwrap();
    assert_eq!(kv.value, b"one");
    assert_eq!(kv.mod_revision, r1);
    assert_eq!(kv.create_revision, r1);
    let err = s.create("/a", b"two".to_vec(), 0).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, b"one");
    let r2 = s.create("/b", b"x".to_vec(), 0).await.unwrap();
    assert!(r2 > r1);
    assert!(s.current_revision().await.unwrap() >= r2);
}

pub async fn update_cas(s: Arc<dyn Store>) {
    let r1 = s.create("/k", b"1".to_vec(), 0).await.unwrap();
    let r2 = s.update("/k", b"2".to_vec(), r1, 0).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get("/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.create_revision),
        (&b"2"[..], r2, r1)
    );
    // A stale revision loses and changes nothing.
    let err = s.update("/k", b"3".to_vec(), r1, 0).await.unwrap_err();
    match err {
        StoreError::Conflict { current, .. } => assert_eq!(current, r2),
        e => panic!("expected conflict, got {e:?}"),
    }
    assert_eq!(s.get("/k").await.unwrap().unwrap().value, b"2");
    let err = s.update("/missing", b"x".to_vec(), 1, 0).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn delete_cas(s: Arc<dyn Store>) {
    let r1 = s.create("/d", b"v".to_vec(), 0).await.unwrap();
    let err = s.delete("/d", Some(r1 + 1000)).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(s.get("/d").await.unwrap().is_some());
    let (rd, prev) = s.delete("/d", Some(r1)).await.unwrap();
    assert!(rd > r1);
    assert_eq!(prev.value, b"v");
    assert!(s.get("/d").await.unwrap().is_none());
    let err = s.delete("/d", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // Re-creating a deleted key starts a new life.
    let r3 = s.create("/d", b"again".to_vec(), 0).await.unwrap();
    assert_eq!(s.get("/d").await.unwrap().unwrap().create_revision, r3);
    s.delete("/d", None).await.unwrap();
}

pub async fn list_pagination(s: Arc<dyn Store>) {
    for i in 0..25 {
        s.create(&format!("/p/{i:03}"), format!("{i}").into_bytes(), 0)
            .await
            .unwrap();
    }
    s.create("/pz", b"outside".to_vec(), 0).await.unwrap();
    s.create("/o/1", b"outside".to_vec(), 0).await.unwrap();
    let all = s.list("/p/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert!(!all.more);
    assert_eq!(s.count("/p/").await.unwrap(), 25);
    // Page through at the first page's revision, while writes go on.
    let mut seen = Vec::new();
    let mut opts = ListOptions {
        limit: 10,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = s.list("/p/", opts.clone()).await.unwrap();
        pages += 1;
        if pages == 1 {
            s.create("/p/000a", b"later".to_vec(), 0).await.unwrap();
            s.delete("/p/020", None).await.unwrap();
        }
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
        opts.revision = Some(page.revision);
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("/p/{i:03}")).collect();
    assert_eq!(seen, want, "pages are a consistent snapshot");
    let now = s.list("/p/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 25);
    assert!(now.items.iter().any(|kv| kv.key == "/p/000a"));
    assert!(!now.items.iter().any(|kv| kv.key == "/p/020"));
}

/// Lists longer than a backend may read in one go (`SQLite` reads short
/// ones on the caller's thread and moves on for longer ones): whole, in
/// pages, and as of an older revision.
pub async fn list_long(s: Arc<dyn Store>) {
    for i in 0..150 {
        s.create(&format!("/l/{i:03}"), format!("{i}").into_bytes(), 0)
            .await
            .unwrap();
    }
    s.create("/lz", b"outside".to_vec(), 0).await.unwrap();
    let all = s.list("/l/", ListOptions::default()).await.unwrap();
    let want: Vec<String> = (0..150).map(|i| format!("/l/{i:03}")).collect();
    let keys = |l: &keel_store::ListResult| -> Vec<String> {
        l.items.iter().map(|kv| kv.key.clone()).collect()
    };
    assert_eq!(keys(&all), want);
    assert!(!all.more);
    let page = s
        .list(
            "/l/",
            ListOptions {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&page), want[..100]);
    assert!(page.more);
    for i in 0..150 {
        s.delete(&format!("/l/{i:03}"), None).await.unwrap();
    }
    let old = s
        .list(
            "/l/",
            ListOptions {
                revision: Some(all.revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&old), want, "the old view, read after the deletes");
    assert!(
        s.list("/l/", ListOptions::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn concurrent_writers(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..40 {
                revs.push(s.create(&format!("/c/{w}/{i}"), vec![1], 0).await.unwrap());
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.extend(t.await.unwrap());
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 640, "every write has its own revision");
    assert_eq!(s.count("/c/").await.unwrap(), 640);
}

pub async fn cas_counter(s: Arc<dyn Store>) {
    s.create("/counter", b"0".to_vec(), 0).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..25 {
                loop {
                    let kv = s.get("/counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                    match s
                        .update(
                            "/counter",
                            (n + 1).to_string().into_bytes(),
                            kv.mod_revision,
                            0,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => conflicts += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let kv = s.get("/counter").await.unwrap().unwrap();
    assert_eq!(
        kv.value, b"200",
        "no lost update ({conflicts} conflicts retried)"
    );
}

pub async fn watch_ordering(s: Arc<dyn Store>) {
    s.create("/w/pre", b"old".to_vec(), 0).await.unwrap();
    let mut w = s.watch("/w/", 0).await.unwrap();
    let r1 = s.create("/w/a", b"1".to_vec(), 0).await.unwrap();
    s.create("/x/ignored", b"1".to_vec(), 0).await.unwrap();
    let r2 = s.update("/w/a", b"2".to_vec(), r1, 0).await.unwrap();
    let (r3, _) = s.delete("/w/a", None).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str(), ev.revision()),
        (EventKind::Put, "/w/a", r1)
    );
    assert!(ev.prev.is_none());
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.revision(), ev.kv.value.as_slice()),
        (EventKind::Put, r2, &b"2"[..])
    );
    assert_eq!(ev.prev.unwrap().value, b"1");
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.revision()), (EventKind::Delete, r3));
    assert_eq!(ev.prev.unwrap().value, b"2");
    // Many concurrent writers: events still arrive in strictly increasing order.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.create(&format!("/w/{t}/{i}"), vec![], 0).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = r3;
    for _ in 0..200 {
        let ev = next_event(&mut w).await;
        assert!(ev.revision() > last, "revision order");
        last = ev.revision();
    }
}

pub async fn watch_resume(s: Arc<dyn Store>) {
    let r0 = s.create("/r/a", b"1".to_vec(), 0).await.unwrap();
    let r1 = s.update("/r/a", b"2".to_vec(), r0, 0).await.unwrap();
    let r2 = s.create("/r/b", b"1".to_vec(), 0).await.unwrap();
    // Resume just after r0: history first (r1, r2), then live events.
    let mut w = s.watch("/r/", r0 + 1).await.unwrap();
    let r3 = s.create("/r/c", b"1".to_vec(), 0).await.unwrap();
    let got: Vec<i64> = [
        next_event(&mut w).await,
        next_event(&mut w).await,
        next_event(&mut w).await,
    ]
    .iter()
    .map(keel_store::Event::revision)
    .collect();
    assert_eq!(got, vec![r1, r2, r3]);
    // A watch reports progress, so an idle client knows how far it is.
    let mut w = s.watch("/r/", r3 + 1).await.unwrap();
    let r4 = s.create("/elsewhere", vec![], 0).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let item = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("progress within 15s")
            .unwrap()
            .unwrap();
        if let WatchItem::Progress(p) = item
            && p >= r4
        {
            break;
        }
    }
}

pub async fn compaction(s: Arc<dyn Store>) {
    let r1 = s.create("/cp/a", b"1".to_vec(), 0).await.unwrap();
    let r2 = s.update("/cp/a", b"2".to_vec(), r1, 0).await.unwrap();
    s.create("/cp/gone", b"x".to_vec(), 0).await.unwrap();
    let (r3, _) = s.delete("/cp/gone", None).await.unwrap();
    let r4 = s.update("/cp/a", b"3".to_vec(), r2, 0).await.unwrap();
    s.compact(r3).await.unwrap();
    let err = s.watch("/cp/", r1).await.unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
    let err = s
        .list(
            "/cp/",
            ListOptions {
                revision: Some(r1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
    // Revisions after the compaction point still work.
    let at = s
        .list(
            "/cp/",
            ListOptions {
                revision: Some(r3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at.items.len(), 1);
    assert_eq!(at.items[0].value, b"2");
    let mut w = s.watch("/cp/", r4).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), r4);
    let now = s.list("/cp/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].value, b"3");
    let err = s.compact(r1).await.unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
}

pub async fn leases(s: Arc<dyn Store>) {
    let l = s.lease_grant(60).await.unwrap();
    s.create("/l/a", b"1".to_vec(), l).await.unwrap();
    s.create("/l/b", b"1".to_vec(), 0).await.unwrap();
    assert_eq!(s.get("/l/a").await.unwrap().unwrap().lease, l);
    s.lease_keep_alive(l).await.unwrap();
    let mut w = s.watch("/l/", 0).await.unwrap();
    s.lease_revoke(l).await.unwrap();
    assert!(s.get("/l/a").await.unwrap().is_none());
    assert!(s.get("/l/b").await.unwrap().is_some());
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.kv.key.as_str()), (EventKind::Delete, "/l/a"));
    assert!(matches!(
        s.lease_keep_alive(l).await.unwrap_err(),
        StoreError::LeaseNotFound(_)
    ));
    assert!(matches!(
        s.create("/l/c", vec![], l).await.unwrap_err(),
        StoreError::LeaseNotFound(_) | StoreError::Etcd { .. }
    ));
    // A lease nobody keeps alive expires and takes its keys with it.
    let short = s.lease_grant(1).await.unwrap();
    s.create("/l/short", b"1".to_vec(), short).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while s.get("/l/short").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A watcher that reads on every event sees that event's write: the store's
/// revision, a list and a get all reflect it (caches that reload on an event
/// depend on this).
pub async fn watch_then_read(s: Arc<dyn Store>) {
    let mut w = s.watch("/seen/", 0).await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("/seen/{}", i % 7);
                match s.get(&key).await.unwrap() {
                    Some(kv) if i % 3 == 0 => {
                        let _ = s.delete(&key, Some(kv.mod_revision)).await;
                    }
                    Some(kv) => {
                        let _ = s
                            .update(&key, i.to_string().into_bytes(), kv.mod_revision, 0)
                            .await;
                    }
                    None => {
                        let _ = s.create(&key, i.to_string().into_bytes(), 0).await;
                    }
                }
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() || seen < 50 {
        let Ok(Some(Ok(item))) = tokio::time::timeout(Duration::from_secs(2), w.next()).await
        else {
            break;
        };
        let WatchItem::Event(ev) = item else { continue };
        seen += 1;
        let rev = ev.revision();
        let current = s.current_revision().await.unwrap();
        assert!(
            current >= rev,
            "current revision {current} behind event {rev}"
        );
        let list = s.list("/seen/", ListOptions::default()).await.unwrap();
        assert!(
            list.revision >= rev,
            "list at {} behind event {rev}",
            list.revision
        );
        let now = s.get(&ev.kv.key).await.unwrap();
        match ev.kind {
            EventKind::Put => {
                if let Some(kv) = now {
                    assert!(kv.mod_revision >= rev, "get behind event {rev}");
                }
                // Read at the event's revision, the put is there as announced.
                let opts = ListOptions {
                    revision: Some(rev),
                    ..ListOptions::default()
                };
                let at = s.list("/seen/", opts).await.unwrap();
                let kv = at.items.iter().find(|kv| kv.key == ev.kv.key);
                assert_eq!(kv.map(|kv| &kv.value), Some(&ev.kv.value), "read at {rev}");
            }
            EventKind::Delete => {
                if let Some(kv) = now {
                    assert!(kv.mod_revision > rev, "deleted key read back at {rev}");
                }
            }
        }
    }
    writer.await.unwrap();
    assert!(seen >= 50, "only {seen} events");
}
