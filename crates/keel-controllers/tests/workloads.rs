//! The `ReplicaSet` and `Deployment` controllers against a real API (keel-api
//! on a temporary `SQLite` store, in process), with a fake kubelet that
//! marks pods Running and Ready through `pods/status` as kwok does: scaling,
//! adoption, rolling updates that never break maxSurge/maxUnavailable (seen
//! from a watch), Recreate, and the revision history.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::{Loopback, Server};
use serde_json::{Value, json};

struct Running {
    api: Loopback,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(keel_api::Config {
        state_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore: None,
    })
    .await
    .unwrap();
    let api = server.loopback();
    keel_controllers::spawn(&api);
    tokio::spawn(fake_kubelet(api.clone(), Duration::from_millis(150)));
    Running {
        api,
        _server: server,
        _dir: dir,
    }
}

fn res(group: &str, plural: &str) -> &'static Resource {
    resources::find(group, "v1", plural).unwrap()
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Failed" | "Succeeded")
    )
}

/// Marks every pod Running and Ready `delay` after it appears.
async fn fake_kubelet(api: Loopback, delay: Duration) {
    let pods = res("", "pods");
    let mut watch = api.watch(pods, 0).await.unwrap();
    let mut count = 0;
    while let Some(Ok(ev)) = watch.next().await {
        let WatchEvent::Change(c) = ev else { continue };
        if c.kind != ChangeKind::Put {
            continue;
        }
        let Some(p) = api.object(&c) else { continue };
        // A kubelet never brings a finished pod back.
        if p["status"]["phase"] == "Running"
            || finished(&p)
            || p["metadata"]["deletionTimestamp"].is_string()
        {
            continue;
        }
        let api = api.clone();
        count += 1;
        let ip = format!("10.0.{}.{}", count / 250, count % 250 + 1);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let ns = p["metadata"]["namespace"].as_str().unwrap().to_string();
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            let _ = api
                .modify(pods, Some(&ns), &name, Some("status"), "kubelet", |cur| {
                    // Failed (as a test may mark it) while this waited.
                    if finished(cur) {
                        return None;
                    }
                    let mut v = cur.clone();
                    v["status"]["phase"] = json!("Running");
                    v["status"]["podIP"] = json!(ip);
                    v["status"]["conditions"] = json!([
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    ]);
                    Some(v)
                })
                .await;
        });
    }
}

async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pods_of(api: &Loopback, app: &str) -> Vec<Value> {
    let (items, _) = api.list(res("", "pods"), Some("default")).await.unwrap();
    items
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

fn deployment(name: &str, replicas: i64, strategy: Value, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

async fn get(api: &Loopback, r: &'static Resource, name: &str) -> Value {
    api.get(r, Some("default"), name).await.unwrap().unwrap()
}

async fn set_image(api: &Loopback, name: &str, image: &str) {
    api.modify(
        res("apps", "deployments"),
        Some("default"),
        name,
        None,
        "test",
        |cur| {
            let mut v = cur.clone();
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            Some(v)
        },
    )
    .await
    .unwrap();
}

async fn rolled_out(api: &Loopback, name: &str, replicas: i64) -> bool {
    let d = get(api, res("apps", "deployments"), name).await;
    let st = &d["status"];
    st["observedGeneration"] == d["metadata"]["generation"]
        && st["updatedReplicas"] == replicas
        && st["replicas"] == replicas
        && st["availableReplicas"] == replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_scales_adopts_and_reports() {
    let k = start().await;
    let api = &k.api;
    let rsr = res("apps", "replicasets");
    // An orphan pod that the set's selector matches is adopted, not doubled.
    api.create(
        res("", "pods"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "rs"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        "test",
    )
    .await
    .unwrap();
    api.create(
        rsr,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}},
                "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        "test",
    )
    .await
    .unwrap();
    wait_for("3 ready replicas", || async {
        let rs = get(api, rsr, "rs").await;
        rs["status"]["readyReplicas"] == 3 && rs["status"]["availableReplicas"] == 3
    })
    .await;
    let pods = pods_of(api, "rs").await;
    assert_eq!(pods.len(), 3);
    let rs = get(api, rsr, "rs").await;
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 3);
    assert_eq!(
        rs["status"]["observedGeneration"],
        rs["metadata"]["generation"]
    );
    assert!(pods.iter().any(|p| p["metadata"]["name"] == "stray"));
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"])
    );
    // Scale down to 1, then up to 2.
    for n in [1, 2] {
        api.modify(rsr, Some("default"), "rs", None, "test", |cur| {
            let mut v = cur.clone();
            v["spec"]["replicas"] = json!(n);
            Some(v)
        })
        .await
        .unwrap();
        wait_for("scaled", || async {
            let rs = get(api, rsr, "rs").await;
            pods_of(api, "rs").await.len() == n && rs["status"]["availableReplicas"] == n
        })
        .await;
    }
    // A deleted pod is replaced.
    let victim = pods_of(api, "rs").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    api.delete(
        res("", "pods"),
        Some("default"),
        &victim,
        &keel_api::DeleteOptions::default(),
    )
    .await
    .unwrap();
    wait_for("replacement", || async {
        let p = pods_of(api, "rs").await;
        p.len() == 2 && p.iter().all(|p| p["metadata"]["name"] != victim.as_str())
    })
    .await;
    // Events were recorded for the set.
    let (events, _) = api.list(res("", "events"), Some("default")).await.unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "SuccessfulCreate"
            && e["involvedObject"]["name"] == "rs"
            && e["source"]["component"] == "replicaset-controller"),
        "{events:?}"
    );
}

/// Watches the app's pods; returns (most pods at once, fewest ready at
/// once after `armed` is set).
async fn watch_bounds(
    api: Loopback,
    app: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, usize) {
    let pods = res("", "pods");
    let mut w = api.watch(pods, 0).await.unwrap();
    let mut live: HashMap<String, bool> = HashMap::new();
    for p in pods_of(&api, &app).await {
        let ready = p["status"]["conditions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        live.insert(p["metadata"]["name"].as_str().unwrap().into(), ready);
    }
    let (mut most, mut fewest_ready) = (live.len(), usize::MAX);
    loop {
        tokio::select! {
            ev = w.next() => {
                let Some(Ok(WatchEvent::Change(c))) = ev else { continue };
                let name = c.key.rsplit('/').next().unwrap().to_string();
                match c.kind {
                    ChangeKind::Deleted => { live.remove(&name); }
                    ChangeKind::Put => {
                        let p = api.object(&c).unwrap();
                        if p["metadata"]["labels"]["app"] != app.as_str() { continue; }
                        let ready = p["status"]["conditions"].as_array().is_some_and(|a| a.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                        live.insert(name, ready);
                    }
                }
                most = most.max(live.len());
                fewest_ready = fewest_ready.min(live.values().filter(|r| **r).count());
            }
            () = async { let mut s = stop.clone(); let _ = s.wait_for(|v| *v).await; } => return (most, fewest_ready),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_respects_surge_and_unavailability() {
    let k = start().await;
    let api = &k.api;
    let dr = res("apps", "deployments");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    api.create(dr, deployment("roll", 4, strategy, "img:1"), "test")
        .await
        .unwrap();
    wait_for("first rollout", || rolled_out(api, "roll", 4)).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_bounds(api.clone(), "roll".into(), rx));
    tokio::time::sleep(Duration::from_millis(100)).await;
    set_image(api, "roll", "img:2").await;
    wait_for("second rollout", || rolled_out(api, "roll", 4)).await;
    tx.send(true).unwrap();
    let (most, fewest_ready) = watcher.await.unwrap();
    assert!(most <= 5, "maxSurge 1 of 4 exceeded: {most} pods at once");
    assert!(
        fewest_ready >= 3,
        "maxUnavailable 1 of 4 exceeded: {fewest_ready} ready"
    );
    assert!(
        most == 5 || fewest_ready == 3,
        "the rollout used neither surge nor unavailability"
    );
    let pods = pods_of(api, "roll").await;
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "img:2")
    );
    // Two revisions, the old set scaled to zero and kept as history.
    let (sets, _) = api
        .list(res("apps", "replicasets"), Some("default"))
        .await
        .unwrap();
    let mut revs: Vec<(String, i64)> = sets
        .iter()
        .map(|s| {
            (
                s["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                s["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    revs.sort();
    assert_eq!(revs, [("1".to_string(), 0), ("2".to_string(), 4)]);
    let d = get(api, dr, "roll").await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    // The pod-template-hash is on the set's pods and selector.
    let new = sets.iter().find(|s| s["spec"]["replicas"] == 4).unwrap();
    let hash = new["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(
        new["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_mixes_versions() {
    let k = start().await;
    let api = &k.api;
    let dr = res("apps", "deployments");
    api.create(
        dr,
        deployment("rec", 3, json!({"type": "Recreate"}), "img:1"),
        "test",
    )
    .await
    .unwrap();
    wait_for("first rollout", || rolled_out(api, "rec", 3)).await;
    // Record every instant's set of images.
    let pods = res("", "pods");
    let mut w = api.watch(pods, 0).await.unwrap();
    set_image(api, "rec", "img:2").await;
    let mut live: HashMap<String, String> = HashMap::new();
    for p in pods_of(api, "rec").await {
        live.insert(
            p["metadata"]["name"].as_str().unwrap().into(),
            p["spec"]["containers"][0]["image"].as_str().unwrap().into(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "recreate did not finish");
        let ev = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
        if let Ok(Some(Ok(WatchEvent::Change(c)))) = ev {
            let name = c.key.rsplit('/').next().unwrap().to_string();
            match c.kind {
                ChangeKind::Deleted => {
                    live.remove(&name);
                }
                ChangeKind::Put => {
                    let p = api.object(&c).unwrap();
                    live.insert(
                        name,
                        p["spec"]["containers"][0]["image"].as_str().unwrap().into(),
                    );
                }
            }
            let images: HashSet<&String> = live.values().collect();
            assert!(images.len() <= 1, "old and new pods at once: {live:?}");
        } else if rolled_out(api, "rec", 3).await {
            break;
        }
    }
    assert!(
        live.values().all(|i| i == "img:2") && live.len() == 3,
        "{live:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_slices_of_their_pods() {
    let k = start().await;
    let api = &k.api;
    let mut d = deployment("ep", 2, json!({"type": "RollingUpdate"}), "img:1");
    d["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"name": "http", "containerPort": 8080}]);
    api.create(res("apps", "deployments"), d, "test")
        .await
        .unwrap();
    // A pod of its own, selected by the Service too.
    api.create(
        res("", "pods"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow", "namespace": "default", "labels": {"app": "ep"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        "test",
    )
    .await
    .unwrap();
    api.create(
        res("", "services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ep", "namespace": "default"},
            "spec": {"selector": {"app": "ep"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
        "test",
    )
    .await
    .unwrap();
    wait_for("two ready addresses", || async {
        api.get(res("", "endpoints"), Some("default"), "ep")
            .await
            .unwrap()
            .is_some_and(|ep| {
                ep["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 3)
            })
    })
    .await;
    let ep = get(api, res("", "endpoints"), "ep").await;
    assert_eq!(
        ep["subsets"][0]["ports"],
        json!([{"name": "web", "port": 8080, "protocol": "TCP"}])
    );
    assert!(ep["subsets"][0].get("notReadyAddresses").is_none());
    // The EndpointSlice controller runs beside the Endpoints one: its
    // object may be a pod behind when the Endpoints show all three.
    let slice = || async {
        let (slices, _) = api
            .list(res("discovery.k8s.io", "endpointslices"), Some("default"))
            .await
            .unwrap();
        slices
            .into_iter()
            .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "ep")
    };
    wait_for("the slice with three endpoints", || async {
        slice()
            .await
            .is_some_and(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 3))
    })
    .await;
    let slice = slice().await.unwrap();
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 3);
    assert!(
        slice["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["conditions"]["ready"] == true)
    );
    assert_eq!(slice["ports"][0]["port"], 8080);
    // Scaling down drops the address; a pod that is not ready moves to
    // notReadyAddresses.
    api.modify(
        res("", "pods"),
        Some("default"),
        "slow",
        Some("status"),
        "kubelet",
        |cur| {
            let mut v = cur.clone();
            v["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
            Some(v)
        },
    )
    .await
    .unwrap();
    api.modify(
        res("apps", "deployments"),
        Some("default"),
        "ep",
        None,
        "test",
        |cur| {
            let mut v = cur.clone();
            v["spec"]["replicas"] = json!(1);
            Some(v)
        },
    )
    .await
    .unwrap();
    wait_for("one ready, one not", || async {
        let ep = get(api, res("", "endpoints"), "ep").await;
        ep["subsets"][0]["addresses"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
            && ep["subsets"][0]["notReadyAddresses"]
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["targetRef"]["name"] == "slow")
    })
    .await;
    let (slices, _) = api
        .list(res("discovery.k8s.io", "endpointslices"), Some("default"))
        .await
        .unwrap();
    let slice = slices
        .iter()
        .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "ep")
        .unwrap();
    let slow = slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["targetRef"]["name"] == "slow")
        .unwrap();
    assert_eq!(slow["conditions"]["ready"], false);
    // Deleting the Service deletes its Endpoints.
    api.delete(
        res("", "services"),
        Some("default"),
        "ep",
        &keel_api::DeleteOptions::default(),
    )
    .await
    .unwrap();
    wait_for("endpoints gone", || async {
        api.get(res("", "endpoints"), Some("default"), "ep")
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

/// `rollingUpdate.maxUnavailable` on a `StatefulSet` (upstream's
/// `MaxUnavailableStatefulSet`): outdated pods are replaced two at a time,
/// never more. Without it one pod at a time is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_rolls_with_max_unavailable() {
    let k = start().await;
    let api = &k.api;
    let sr = res("apps", "statefulsets");
    let set = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 5, "serviceName": "db", "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "40%"}},
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}})
    };
    let updated = |image: &'static str| async move {
        let s = get(api, sr, "db").await;
        let pods = pods_of(api, "db").await;
        s["status"]["updatedReplicas"] == 5
            && s["status"]["readyReplicas"] == 5
            && pods.len() == 5
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == image)
    };
    api.create(sr, set("img:1"), "test").await.unwrap();
    wait_for("the set's pods", || updated("img:1")).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_bounds(api.clone(), "db".into(), rx));
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.modify(sr, Some("default"), "db", None, "test", |cur| {
        let mut v = cur.clone();
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        Some(v)
    })
    .await
    .unwrap();
    wait_for("the rolling update", || updated("img:2")).await;
    tx.send(true).unwrap();
    let (most, fewest_ready) = watcher.await.unwrap();
    assert_eq!(most, 5, "a StatefulSet never surges");
    // 40% of 5 rounds down to 2.
    assert_eq!(fewest_ready, 3, "two pods at a time, never three");
}

/// A `StatefulSet`'s pod that fails or is deleted comes back under the
/// same name (a new uid), as upstream's controller repairs its replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_recreates_failed_and_deleted_pods_with_their_identity() {
    let k = start().await;
    let api = &k.api;
    let pods = res("", "pods");
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "kv", "namespace": "default"},
        "spec": {"replicas": 2, "serviceName": "kv",
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {"metadata": {"labels": {"app": "kv"}},
                "spec": {"containers": [{"name": "c", "image": "img"}]}}}});
    api.create(res("apps", "statefulsets"), set, "test")
        .await
        .unwrap();
    let running_uid = |name: &'static str| async move {
        api.get(pods, Some("default"), name)
            .await
            .unwrap()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
    };
    wait_for("both pods", || async {
        running_uid("kv-0").await.is_some() && running_uid("kv-1").await.is_some()
    })
    .await;
    let (uid0, uid1) = (
        running_uid("kv-0").await.unwrap(),
        running_uid("kv-1").await.unwrap(),
    );
    api.modify(
        pods,
        Some("default"),
        "kv-1",
        Some("status"),
        "test",
        |cur| {
            let mut v = cur.clone();
            v["status"]["phase"] = json!("Failed");
            Some(v)
        },
    )
    .await
    .unwrap();
    api.delete(
        pods,
        Some("default"),
        "kv-0",
        &keel_api::DeleteOptions::default(),
    )
    .await
    .unwrap();
    wait_for("both pods back", || async {
        running_uid("kv-0").await.is_some_and(|u| u != uid0)
            && running_uid("kv-1").await.is_some_and(|u| u != uid1)
    })
    .await;
}
