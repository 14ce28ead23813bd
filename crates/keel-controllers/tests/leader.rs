//! Leader election against a real API (keel-api on a temporary `SQLite`
//! store, in process): of two candidates exactly one leads; when the leader
//! dies (its task dropped, as a crash stops its renewals) the other takes
//! over once the Lease has gone unrenewed for its duration, and what the
//! old leader ran is stopped with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_api::resources;
use keel_api::{Loopback, Server};
use keel_controllers::leader::{Election, Term};
use serde_json::Value;
use tokio::sync::watch;

fn election(identity: &str) -> Election {
    let mut e = Election::new(identity.into());
    e.lease_duration = Duration::from_secs(3);
    e.renew_deadline = Duration::from_secs(2);
    e.retry_period = Duration::from_millis(300);
    e
}

/// Starts a candidate whose term counts ticks into `ticks` while it runs.
fn candidate(
    api: &Loopback,
    identity: &str,
    ticks: Arc<AtomicUsize>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let start = move || {
        let ticks = ticks.clone();
        Term::start(1, move || {
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })
    };
    let task = tokio::spawn(election(identity).run(api.clone(), start, Some(tx)));
    (task, rx)
}

/// The API on a temporary `SQLite` store.
async fn serve() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(keel_api::Config {
        state_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore: None,
    })
    .await
    .unwrap();
    (dir, server)
}

async fn holder(api: &Loopback) -> Option<Value> {
    let leases = resources::find("coordination.k8s.io", "v1", "leases").unwrap();
    api.get(leases, Some("kube-system"), "keel-controllers")
        .await
        .unwrap()
        .map(|l| l["spec"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_and_the_other_takes_over_when_it_dies() {
    let (_dir, server) = serve().await;
    let api = server.loopback();
    let (a_ticks, b_ticks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, mut a_leads) = candidate(&api, "a", a_ticks.clone());
    a_leads.wait_for(|l| *l).await.unwrap();
    let (b, b_leads) = candidate(&api, "b", b_ticks.clone());

    // Several lease durations later, a still leads and b never started.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(*a_leads.borrow() && !*b_leads.borrow());
    assert_eq!(b_ticks.load(Ordering::SeqCst), 0);
    let spec = holder(&api).await.unwrap();
    assert_eq!(spec["holderIdentity"], "a");
    assert_eq!(spec["leaseDurationSeconds"], 3);
    assert_eq!(spec["leaseTransitions"], 0);

    // a dies: its term's tasks stop at once, b takes over after the lease.
    a.abort();
    let died = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let frozen = a_ticks.load(Ordering::SeqCst);
    let mut b_leads = b_leads;
    tokio::time::timeout(Duration::from_secs(6), b_leads.wait_for(|l| *l))
        .await
        .expect("b takes over")
        .unwrap();
    let took = died.elapsed();
    assert!(
        took <= Duration::from_millis(3500),
        "taken over {took:?} after the holder died (lease 3 s)"
    );
    let spec = holder(&api).await.unwrap();
    assert_eq!(spec["holderIdentity"], "b");
    assert_eq!(spec["leaseTransitions"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b_ticks.load(Ordering::SeqCst) > 0);
    assert_eq!(a_ticks.load(Ordering::SeqCst), frozen, "a's term stopped");
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_finds_another_holder_steps_down() {
    let (_dir, server) = serve().await;
    let api = server.loopback();
    let ticks = Arc::new(AtomicUsize::new(0));
    let (a, mut a_leads) = candidate(&api, "a", ticks.clone());
    a_leads.wait_for(|l| *l).await.unwrap();
    // Someone else (an operator, another server) takes the Lease: a sees
    // it at its next renewal and stops.
    let leases = resources::find("coordination.k8s.io", "v1", "leases").unwrap();
    api.modify(
        leases,
        Some("kube-system"),
        "keel-controllers",
        None,
        "test",
        |c| {
            let mut v = c.clone();
            v["spec"]["holderIdentity"] = "intruder".into();
            v["spec"]["renewTime"] = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
                .into();
            Some(v)
        },
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(2), a_leads.wait_for(|l| !*l))
        .await
        .expect("a steps down")
        .unwrap();
    let n = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), n, "a's term stopped");
    // The intruder does not renew: a leads again after the lease.
    tokio::time::timeout(Duration::from_secs(5), a_leads.wait_for(|l| *l))
        .await
        .expect("a leads again")
        .unwrap();
    a.abort();
}
