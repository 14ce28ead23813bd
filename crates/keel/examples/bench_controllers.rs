//! Load generator for `scripts/bench-controllers.sh`: a Deployment of many
//! replicas on fake nodes (this program marks every pod Running and Ready
//! through `pods/status` as soon as it appears, as kwok does, with 16
//! concurrent writers), timed until all pods exist and until the Deployment
//! reports them all available; then a rolling update of the image, timed
//! until `rollout status` would succeed. Talks to the server named by a
//! kubeconfig (127.0.0.1 only in the script).
//!
//! usage: `bench_controllers KUBECONFIG REPLICAS`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};

const WRITERS: usize = 16;

async fn kubelet(client: kube::Client, ns: String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..WRITERS {
        let (pods, rx) = (pods.clone(), rx.clone());
        tokio::spawn(async move {
            loop {
                let Some(name) = rx.lock().await.recv().await else {
                    return;
                };
                let now = k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let patch = serde_json::json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(watcher::watcher(pods, watcher::Config::default()));
    while let Some(ev) = stream.next().await {
        if let Ok(Event::Apply(p) | Event::InitApply(p)) = ev {
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let name = p.metadata.name.unwrap_or_default();
            if !running && seen.insert(p.metadata.uid.unwrap_or_default()) {
                let _ = tx.send(name);
            }
        }
    }
}

async fn wait(what: &str, start: Instant, mut f: impl AsyncFnMut() -> bool) -> Duration {
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_mins(10),
            "{what}: timed out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 3,
        "usage: bench_controllers KUBECONFIG REPLICAS"
    );
    let replicas: i32 = args[2].parse().unwrap();
    let kc = kube::config::Kubeconfig::read_from(&args[1]).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let ns = format!("bench-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    nss.create(&PostParams::default(), &n).await.unwrap();
    tokio::spawn(kubelet(client.clone(), ns.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}}))
    .unwrap();
    let want = i64::from(replicas);
    let start = Instant::now();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let lp = ListParams::default().labels("app=web");
    let created = wait("pods created", start, async || {
        pods.list_metadata(&lp)
            .await
            .is_ok_and(|l| l.items.len() >= usize::try_from(want).unwrap())
    })
    .await;
    let available = |img: &'static str| {
        let deploys = deploys.clone();
        async move || {
            deploys.get("web").await.is_ok_and(|d| {
                let st = d.status.unwrap_or_default();
                let gen_ok = st.observed_generation >= d.metadata.generation;
                gen_ok
                    && i64::from(st.available_replicas.unwrap_or(0)) == want
                    && i64::from(st.updated_replicas.unwrap_or(0)) == want
                    && i64::from(st.replicas.unwrap_or(0)) == want
                    && d.spec.unwrap().template.spec.unwrap().containers[0]
                        .image
                        .as_deref()
                        == Some(img)
            })
        }
    };
    let ready = wait("all available", start, available("img:1")).await;
    println!(
        "replicas={replicas} pods_created_s={:.2} all_available_s={:.2}",
        created.as_secs_f64(),
        ready.as_secs_f64()
    );
    let start = Instant::now();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}});
    deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let rolled = wait("rolled out", start, available("img:2")).await;
    println!(
        "replicas={replicas} rolling_update_s={:.2}",
        rolled.as_secs_f64()
    );
    let _ = nss.delete(&ns, &kube::api::DeleteParams::default()).await;
}
