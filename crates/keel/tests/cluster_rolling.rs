//! A Deployment's rolling update under continuous load through the node's
//! ingress gateway drops no request: readiness gates new pods into the
//! pool, terminating pods leave it before their containers stop, and the
//! gateway retries a request whose connection to a pod failed. Every
//! response is recorded (status code and body) over at least 10,000
//! requests spanning two rollouts.

mod node_hosts;
mod server_common;

use std::process::Command;
use std::time::{Duration, Instant};

use node_hosts::Cluster;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: busybox:latest
        env: [{name: VERSION, value: v1}]
        command: ["sh", "-c", "mkdir -p /www && echo $VERSION > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: zdt.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

/// `n` GETs over one keep-alive connection (curl's URL globbing); each
/// response as (status code, body). A failed transfer shows as code 000.
fn burst(ip: &str, n: usize) -> Vec<(String, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "120", "-H", "Host: zdt.test"])
        .args(["-w", "<<%{http_code}>>\n"])
        .arg(format!("http://{ip}/?n=[1-{n}]"))
        .output()
        .unwrap();
    // Each response is its body followed by `<<CODE>>`.
    String::from_utf8_lossy(&out.stdout)
        .split_terminator(">>\n")
        .filter_map(|r| {
            let (body, code) = r.rsplit_once("<<")?;
            Some((code.to_string(), body.trim().to_string()))
        })
        .collect()
}

#[test]
fn a_rolling_update_under_load_drops_no_request() {
    let c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    c.apply(APP);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    server_common::eventually("the gateway to serve v1", Duration::from_secs(30), || {
        burst(&ip, 1) == [("200".to_string(), "v1".to_string())]
    });

    let mut seen: Vec<(String, String)> = Vec::new();
    for version in ["v2", "v3"] {
        // Four clients keep sending while the rollout replaces every pod.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (ip, stop) = (ip.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        got.extend(burst(&ip, 250));
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        c.kubectl(&[
            "set",
            "env",
            "deployment/web",
            &format!("VERSION={version}"),
        ]);
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
        // The last old pods finish terminating while the clients go on.
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let before = seen.len();
        for t in clients {
            seen.extend(t.join().unwrap());
        }
        eprintln!(
            "cluster_rolling: {version} rolled out in {:?}, {} requests",
            started.elapsed(),
            seen.len() - before
        );
        assert_eq!(
            burst(&ip, 20),
            vec![("200".to_string(), version.to_string()); 20],
            "after the rollout to {version}"
        );
    }
    let failed: Vec<_> = seen.iter().filter(|(code, _)| code != "200").collect();
    let versions: std::collections::BTreeSet<_> = seen.iter().map(|(_, b)| b.as_str()).collect();
    assert!(seen.len() >= 10_000, "only {} requests", seen.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(20)]
    );
    assert_eq!(
        versions,
        ["v1", "v2", "v3"].into_iter().collect(),
        "bodies seen"
    );
}
