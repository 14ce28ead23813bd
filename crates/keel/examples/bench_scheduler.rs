//! Load generator for `scripts/bench-scheduler.sh`: NODES fake nodes (Node
//! objects with capacity and a Ready condition, as kwok makes them), then
//! PODS pods created by CLIENTS concurrent clients; a watch records when
//! each pod is bound. Prints pods bound per second (first create to last
//! binding) and the create→bound latency (p50/p99).
//!
//! usage: `bench_scheduler KUBECONFIG NODES PODS CLIENTS`

// Counts here stay far below 2^52; the f64 casts are exact.
#![allow(clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `f(i)` for i in 0..n from `clients` concurrent tasks.
async fn fan_out<F, Fut>(n: usize, clients: usize, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                f(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5,
        "usage: bench_scheduler KUBECONFIG NODES PODS CLIENTS"
    );
    let nodes: usize = args[2].parse().unwrap();
    let pods: usize = args[3].parse().unwrap();
    let clients: usize = args[4].parse().unwrap();
    let kc = kube::config::Kubeconfig::read_from(&args[1]).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();

    // Fake nodes, Ready, 32 CPUs and 110 pods each.
    let node_api: Api<Node> = Api::all(client.clone());
    let t = Instant::now();
    let na = node_api.clone();
    fan_out(nodes, clients, move |i| {
        let na = na.clone();
        async move {
            let name = format!("fake-{i}");
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
            }))
            .unwrap();
            na.create(&PostParams::default(), &node).await.unwrap();
            let status = json!({"status": {
                "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
            na.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    })
    .await;
    println!(
        "nodes={nodes} setup_seconds={:.1}",
        t.elapsed().as_secs_f64()
    );
    // Let the scheduler's cache take them in.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ns_name = format!("sched-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(ns_name.clone());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns_name);

    // The watch records each pod's binding.
    let rv = pod_api
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let b2 = bound.clone();
    let wapi = pod_api.clone();
    let watcher = tokio::spawn(async move {
        let mut rv = rv;
        loop {
            let stream = wapi
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Modified(p) | WatchEvent::Added(p) = ev {
                    rv = p.metadata.resource_version.clone().unwrap_or_default();
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        let n = p.metadata.name.unwrap_or_default();
                        let mut b = b2.lock().unwrap();
                        b.entry(n).or_insert_with(Instant::now);
                        if b.len() >= pods {
                            return;
                        }
                    }
                }
            }
        }
    });

    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let c2 = created.clone();
    let start = Instant::now();
    let pa = pod_api.clone();
    fan_out(pods, clients, move |i| {
        let (pa, c2) = (pa.clone(), c2.clone());
        async move {
            let name = format!("p{i}");
            let pod: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]},
            }))
            .unwrap();
            let t = Instant::now();
            pa.create(&PostParams::default(), &pod).await.unwrap();
            c2.lock().unwrap().insert(name, t);
        }
    })
    .await;
    let created_in = start.elapsed();
    tokio::time::timeout(Duration::from_mins(10), watcher)
        .await
        .expect("every pod bound within 10 minutes")
        .unwrap();
    let (elapsed, mut lat) = {
        let bound = bound.lock().unwrap();
        let created = created.lock().unwrap();
        let last = bound.values().max().copied().unwrap_or(start);
        let lat: Vec<Duration> = created
            .iter()
            .filter_map(|(n, t)| bound.get(n).map(|b| b.saturating_duration_since(*t)))
            .collect();
        (last - start, lat)
    };
    lat.sort();
    println!(
        "pods={pods} clients={clients} create_seconds={:.2} bound_seconds={:.2} bound_per_sec={:.0} p50_ms={:.1} p99_ms={:.1}",
        created_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        pods as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    );
    // Spread check: pods per node.
    let list = pod_api
        .list(&kube::api::ListParams::default())
        .await
        .unwrap();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in list.items {
        if let Some(n) = p.spec.and_then(|s| s.node_name) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    println!(
        "nodes_used={} max_pods_per_node={} min_pods_per_node={}",
        per_node.len(),
        per_node.values().max().unwrap_or(&0),
        per_node.values().min().unwrap_or(&0)
    );
}
