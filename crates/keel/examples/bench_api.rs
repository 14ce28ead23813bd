//! Load generator for `scripts/bench-api.sh`: `ConfigMap` creates from many
//! concurrent clients (throughput, p50/p99 latency) and the delay from a write
//! to its event at every one of many watchers. Talks to the server named by a
//! kubeconfig (127.0.0.1 only in the script).
//!
//! usage: `bench_api KUBECONFIG CREATES CLIENTS WATCHERS`

// Counts here stay far below 2^52; the f64 casts are exact.
#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn cm(name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.data = Some([("key".to_string(), "value".to_string())].into());
    c
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // The workspace compiles in more than one rustls crypto backend: name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5,
        "usage: bench_api KUBECONFIG CREATES CLIENTS WATCHERS"
    );
    let creates: usize = args[2].parse().unwrap();
    let clients: usize = args[3].parse().unwrap();
    let watchers: usize = args[4].parse().unwrap();
    let kc = kube::config::Kubeconfig::read_from(&args[1]).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let ns_name = format!("bench-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(ns_name.clone());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns_name);

    // Phase 1: creates.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api = api.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= creates {
                    return lat;
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &cm(&format!("c{i}")))
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    lat.sort();
    println!(
        "creates={creates} clients={clients} seconds={:.2} per_sec={:.0} p50_ms={:.2} p99_ms={:.2}",
        elapsed.as_secs_f64(),
        creates as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    );

    // Phase 2: watchers; delay from the start of a write to each watcher's event.
    let wapi: Api<ConfigMap> = Api::namespaced(client.clone(), &ns_name);
    // Watch from "now": the list's revision.
    let rv = wapi
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    for _ in 0..watchers {
        let wapi = wapi.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        tokio::spawn(async move {
            let stream = wapi
                .watch(
                    &WatchParams::default().labels("probe=yes").timeout(290),
                    &rv,
                )
                .await
                .unwrap();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(c) = ev {
                    let _ = tx.send((c.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probes = 20;
    let mut delays = Vec::new();
    for p in 0..probes {
        let name = format!("probe-{p}");
        let mut c = cm(&name);
        c.metadata.labels = Some([("probe".to_string(), "yes".to_string())].into());
        let t = Instant::now();
        wapi.create(&PostParams::default(), &c).await.unwrap();
        let mut got = 0;
        while got < watchers {
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("watch event within 30s")
                .unwrap();
            if n == name {
                delays.push(at - t);
                got += 1;
            }
        }
    }
    delays.sort();
    println!(
        "watchers={watchers} probes={probes} delay_p50_ms={:.2} delay_p99_ms={:.2} delay_max_ms={:.2}",
        percentile(&delays, 0.5).as_secs_f64() * 1000.0,
        percentile(&delays, 0.99).as_secs_f64() * 1000.0,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    let _ = nss
        .delete(&ns_name, &kube::api::DeleteParams::default())
        .await;
}
