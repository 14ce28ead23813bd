//! The conformance suite on real etcd (Debian's etcd-server), plus a
//! 3-member cluster that keeps accepting writes after losing a member.

mod conformance;

use std::sync::Arc;

use keel_store::testing::EtcdCluster;
use keel_store::{EtcdStore, Store};

async fn make() -> (Arc<dyn Store>, EtcdCluster) {
    let cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(1))
        .await
        .unwrap();
    let store = EtcdStore::connect(&cluster.urls()).await.unwrap();
    (Arc::new(store), cluster)
}

conformance_suite!(make();
    create_get, update_cas, delete_cas, list_pagination, list_long, concurrent_writers,
    cas_counter, watch_ordering, watch_then_read, watch_resume, compaction, leases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_losing_one() {
    let mut cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
        .await
        .unwrap();
    let store = EtcdStore::connect(&cluster.urls()).await.unwrap();
    let r = store.create("/ha/before", b"1".to_vec(), 0).await.unwrap();
    cluster.kill(0);
    // The client fails over to the surviving members; quorum (2 of 3) remains.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut i = 0;
    let mut written = 0;
    while written < 20 {
        match store.create(&format!("/ha/after/{i}"), vec![], 0).await {
            Ok(rev) => {
                assert!(rev > r);
                written += 1;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no write after member loss: {e}"
            ),
        }
        i += 1;
    }
    assert_eq!(store.get("/ha/before").await.unwrap().unwrap().value, b"1");
}
