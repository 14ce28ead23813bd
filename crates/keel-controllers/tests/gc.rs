//! The garbage collector and the namespace controller against a real API
//! (keel-api on a temporary `SQLite` store, reached in process): background,
//! foreground and orphan propagation, partial ownership, owners replaced
//! under the same name, work left over from before a restart, and namespace
//! termination held by a finalizer.

use std::future::Future;
use std::time::{Duration, Instant};

use keel_api::resources::{self, Resource};
use keel_api::{DeleteOptions, Loopback, Server};
use serde_json::{Value, json};

struct Running {
    api: Loopback,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn api() -> Running {
    api_on(None).await
}

async fn api_on(datastore: Option<String>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(keel_api::Config {
        state_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore,
    })
    .await
    .unwrap();
    Running {
        api: server.loopback(),
        _server: server,
        _dir: dir,
    }
}

fn cms() -> &'static Resource {
    resources::find("", "v1", "configmaps").unwrap()
}

fn nss() -> &'static Resource {
    resources::find("", "v1", "namespaces").unwrap()
}

/// A `ConfigMap` in `default` owned by `owners` (name, uid, `blockOwnerDeletion`).
fn cm(name: &str, owners: &[(&str, &str, bool)], finalizers: &[&str]) -> Value {
    let refs: Vec<Value> = owners
        .iter()
        .map(|(n, u, b)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": u, "blockOwnerDeletion": b}))
        .collect();
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}});
    if !refs.is_empty() {
        v["metadata"]["ownerReferences"] = json!(refs);
    }
    if !finalizers.is_empty() {
        v["metadata"]["finalizers"] = json!(finalizers);
    }
    v
}

async fn create(api: &Loopback, obj: Value) -> String {
    let v = api.create(cms(), obj, "test").await.unwrap();
    v["metadata"]["uid"].as_str().unwrap().to_string()
}

async fn get(api: &Loopback, name: &str) -> Option<Value> {
    api.get(cms(), Some("default"), name).await.unwrap()
}

async fn delete(api: &Loopback, name: &str, policy: Option<&str>) -> Value {
    let opts = DeleteOptions {
        propagation: policy.map(String::from),
        ..DeleteOptions::default()
    };
    api.delete(cms(), Some("default"), name, &opts)
        .await
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|o| o["uid"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn remove_finalizers(api: &Loopback, name: &str) {
    api.modify(cms(), Some("default"), name, None, "test", |cur| {
        let mut v = cur.clone();
        v["metadata"].as_object_mut()?.remove("finalizers")?;
        Some(v)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_collects_dependents_transitively() {
    let t = api().await;
    background(&t.api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_and_foreground_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let t = api_on(Some(cluster.datastore_url())).await;
    background(&t.api).await;
    foreground(&t.api).await;
}

async fn background(a: &Loopback) {
    keel_controllers::spawn(a);
    let o = create(a, cm("owner", &[], &[])).await;
    let c = create(a, cm("child", &[("owner", &o, false)], &[])).await;
    create(a, cm("grandchild", &[("child", &c, false)], &[])).await;
    create(a, cm("bystander", &[], &[])).await;
    // Background is the default: the owner goes at once.
    delete(a, "owner", None).await;
    assert!(get(a, "owner").await.is_none());
    eventually("child and grandchild collected", || async {
        get(a, "child").await.is_none() && get(a, "grandchild").await.is_none()
    })
    .await;
    assert!(get(a, "bystander").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let t = api().await;
    keel_controllers::spawn(&t.api);
    foreground(&t.api).await;
}

async fn foreground(a: &Loopback) {
    let o = create(a, cm("owner", &[], &[])).await;
    create(
        a,
        cm("blocker", &[("owner", &o, true)], &["example.com/hold"]),
    )
    .await;
    create(a, cm("plain", &[("owner", &o, false)], &[])).await;
    let v = delete(a, "owner", Some("Foreground")).await;
    assert_eq!(v["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    eventually("dependents being deleted", || async {
        get(a, "plain").await.is_none()
            && get(a, "blocker")
                .await
                .is_some_and(|b| b["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    // The blocking dependent still exists (held by its finalizer): so does
    // the owner.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = get(a, "owner").await.expect("owner waits for its blocker");
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    remove_finalizers(a, "blocker").await;
    eventually("owner deleted after its blocker", || async {
        get(a, "owner").await.is_none() && get(a, "blocker").await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_and_other_owners() {
    let t = api().await;
    let a = &t.api;
    keel_controllers::spawn(a);
    let o = create(a, cm("owner", &[], &[])).await;
    let o2 = create(a, cm("other-owner", &[], &[])).await;
    create(a, cm("only", &[("owner", &o, true)], &[])).await;
    create(
        a,
        cm(
            "shared",
            &[("owner", &o, false), ("other-owner", &o2, false)],
            &[],
        ),
    )
    .await;
    let v = delete(a, "owner", Some("Orphan")).await;
    assert_eq!(v["metadata"]["finalizers"], json!(["orphan"]));
    eventually("owner deleted", || async {
        get(a, "owner").await.is_none()
    })
    .await;
    let only = get(a, "only").await.expect("orphan survives");
    assert!(owner_uids(&only).is_empty(), "{only}");
    let shared = get(a, "shared").await.expect("orphan survives");
    assert_eq!(owner_uids(&shared), vec![o2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_with_a_remaining_owner_only_loses_the_dangling_reference() {
    let t = api().await;
    let a = &t.api;
    keel_controllers::spawn(a);
    let o1 = create(a, cm("o1", &[], &[])).await;
    let o2 = create(a, cm("o2", &[], &[])).await;
    create(a, cm("dep", &[("o1", &o1, false), ("o2", &o2, false)], &[])).await;
    delete(a, "o1", None).await;
    eventually("reference to o1 removed", || async {
        get(a, "dep")
            .await
            .is_some_and(|d| owner_uids(&d) == [o2.clone()])
    })
    .await;
    delete(a, "o2", None).await;
    eventually("dep collected with its last owner", || async {
        get(a, "dep").await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_left_while_no_collector_ran_is_done_at_start() {
    let t = api().await;
    let a = &t.api;
    // Without controllers: an owner deleted in the background, an owner
    // replaced by a new object of the same name, a pending orphan deletion.
    let gone = create(a, cm("gone", &[], &[])).await;
    create(a, cm("gone-child", &[("gone", &gone, false)], &[])).await;
    delete(a, "gone", None).await;
    let old = create(a, cm("reborn", &[], &[])).await;
    create(a, cm("reborn-child", &[("reborn", &old, false)], &[])).await;
    delete(a, "reborn", None).await;
    create(a, cm("reborn", &[], &[])).await;
    let orph = create(a, cm("orph", &[], &[])).await;
    create(a, cm("orph-child", &[("orph", &orph, false)], &[])).await;
    delete(a, "orph", Some("Orphan")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(a, "gone-child").await.is_some());
    assert!(get(a, "orph").await.is_some(), "orphan finalizer holds it");

    keel_controllers::spawn(a);
    eventually("leftovers collected", || async {
        get(a, "gone-child").await.is_none()
            && get(a, "reborn-child").await.is_none()
            && get(a, "orph").await.is_none()
    })
    .await;
    assert!(get(a, "reborn").await.is_some());
    let child = get(a, "orph-child").await.unwrap();
    assert!(owner_uids(&child).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_termination_deletes_contents_then_the_namespace() {
    let t = api().await;
    let a = &t.api;
    keel_controllers::spawn(a);
    a.create(
        nss(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
        "test",
    )
    .await
    .unwrap();
    for (name, fins) in [("free", vec![]), ("held", vec!["example.com/hold"])] {
        let mut obj = cm(name, &[], &fins);
        obj["metadata"]["namespace"] = json!("t");
        a.create(cms(), obj, "test").await.unwrap();
    }
    let v = a
        .delete(nss(), None, "t", &DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(v["status"]["phase"], "Terminating");
    let in_t = |name: &'static str| async move { a.get(cms(), Some("t"), name).await.unwrap() };
    eventually("free deleted, held terminating", || async {
        in_t("free").await.is_none()
            && in_t("held")
                .await
                .is_some_and(|h| h["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    // Creating in a terminating namespace is refused.
    let mut late = cm("late", &[], &[]);
    late["metadata"]["namespace"] = json!("t");
    let err = a.create(cms(), late, "test").await.unwrap_err();
    assert_eq!(err.code, 403, "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.get(nss(), None, "t").await.unwrap().is_some());
    a.modify(cms(), Some("t"), "held", None, "test", |cur| {
        let mut v = cur.clone();
        v["metadata"].as_object_mut()?.remove("finalizers")?;
        Some(v)
    })
    .await
    .unwrap();
    eventually("namespace gone", || async {
        a.get(nss(), None, "t").await.unwrap().is_none()
    })
    .await;
}
