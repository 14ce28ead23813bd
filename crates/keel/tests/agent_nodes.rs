//! A 3-node cluster on this machine (see `node_hosts`): pods spread over
//! the nodes, pods of a node reach each other and the node, an agent killed
//! with -9 and restarted adopts its running pods, and a node whose agent
//! is gone has its Deployment pods running elsewhere within keel's default
//! detection time (8 s node-monitor grace + 10 s default tolerations).

mod node_hosts;
mod server_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use node_hosts::{Cluster, condition, leftovers};
use serde_json::Value;
use server_common::eventually;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchLabels: {app: web}}
              topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {port: http}
          periodSeconds: 2
"#;

/// A pod pinned to node-0 whose container fails once (restartCount 1),
/// then stays up: what an adopting agent must not reset.
const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-0
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:latest
    command: ["sh", "-c", "if [ ! -e /state/once ]; then touch /state/once; exit 3; fi; exec sleep 3600"]
    volumeMounts: [{name: state, mountPath: /state}]
  volumes: [{name: state, emptyDir: {}}]
"#;

fn pods_by_node(c: &Cluster) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in c.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
    {
        m.entry(p["spec"]["nodeName"].as_str().unwrap_or_default().into())
            .or_default()
            .push(p.clone());
    }
    m
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    // The nodes' podCIDRs are /24s.
    let (net, bits) = cidr.split_once('/').unwrap();
    assert_eq!(bits, "24", "{cidr}");
    let prefix = net.rsplit_once('.').unwrap().0;
    ip.rsplit_once('.').unwrap().0 == prefix
}

#[test]
fn three_nodes_spread_a_deployment_adopt_pods_and_replace_a_lost_node() {
    let mut c = Cluster::start(3);

    // The Deployment spreads over the three nodes and becomes Available.
    c.apply(WEB);
    c.apply(CLIENT);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    c.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ]);
    let by_node = pods_by_node(&c);
    assert_eq!(
        by_node.keys().cloned().collect::<BTreeSet<_>>(),
        (0..3).map(Cluster::name).collect::<BTreeSet<_>>(),
        "one web pod per node: {:?}",
        by_node.keys()
    );
    // Each node's pods have addresses from its own podCIDR, on a bridge in
    // the node's namespace.
    for (node, pods) in &by_node {
        let cidr = c.get_json(&["node", node])["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_string();
        for p in pods {
            let ip = p["status"]["podIP"].as_str().unwrap();
            assert!(in_cidr(ip, &cidr), "{node}: pod IP {ip} not in {cidr}");
            assert_eq!(p["status"]["hostIP"], c.host(node).node_ip.as_str());
        }
        let inside = c.host(node).exec(&["ip", "-o", "-4", "addr", "show"]);
        let inside = String::from_utf8_lossy(&inside.stdout).to_string();
        let gw = format!(" {} ", cidr.replace(".0/24", ".1/24"));
        let line = inside.lines().find(|l| l.contains(&gw));
        assert!(
            line.is_some_and(|l| l.contains(": keel-")),
            "{node}'s bridge has {gw}: {inside}"
        );
    }

    // On node-0: the node reaches its pod, a pod reaches another pod of the
    // node and the node itself (an httpd the test runs on the node host).
    eventually("client running", Duration::from_mins(1), || {
        let p = c.get_json(&["pod", "client"]);
        condition(&p, "Ready") == Some("True")
            && p["status"]["containerStatuses"][0]["restartCount"] == 1
    });
    let n0 = &by_node["node-0"][0];
    let web_ip = n0["status"]["podIP"].as_str().unwrap().to_string();
    let web_name = n0["metadata"]["name"].as_str().unwrap().to_string();
    let host0 = &c.nodes[0];
    let out = host0.exec(&["busybox", "wget", "-qO-", &format!("http://{web_ip}:8080/")]);
    assert!(out.status.success(), "node -> pod: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web_name);
    let client = c.get_json(&["pod", "client"]);
    let client_uid = client["metadata"]["uid"].as_str().unwrap().to_string();
    let client_ctr = host0
        .container_of(&client_uid, "sh")
        .expect("client's container");
    let out = host0.exec_in(
        &client_ctr,
        &["wget", "-qO-", &format!("http://{web_ip}:8080/")],
    );
    assert!(out.status.success(), "pod -> pod: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web_name);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "the-node\n").unwrap();
    let node_ip = host0.node_ip.clone();
    c.nodes[0].spawn(&[
        "busybox",
        "httpd",
        "-f",
        "-p",
        &format!("{node_ip}:8081"),
        "-h",
        www.path().to_str().unwrap(),
    ]);
    let host0 = &c.nodes[0];
    eventually("pod -> node", Duration::from_secs(20), || {
        let out = host0.exec_in(
            &client_ctr,
            &["wget", "-qO-", &format!("http://{node_ip}:8081/")],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "the-node"
    });

    // node-0's agent killed with -9 and started again adopts its pods: the
    // same containers (ids, processes) and restart counts.
    let statuses = |c: &Cluster| -> Vec<(String, String, i64)> {
        let mut v: Vec<(String, String, i64)> = ["client", web_name.as_str()]
            .iter()
            .map(|p| {
                let s = &c.get_json(&["pod", p])["status"]["containerStatuses"][0];
                (
                    (*p).to_string(),
                    s["containerID"].as_str().unwrap_or_default().to_string(),
                    s["restartCount"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = statuses(&c);
    assert!(
        before.iter().all(|(_, id, _)| id.starts_with("keel://")),
        "{before:?}"
    );
    let pids_before: BTreeSet<(String, i64)> = c.nodes[0]
        .containers()
        .into_iter()
        .map(|(id, _, pid)| (id, pid))
        .collect();
    c.nodes[0].kill_agent();
    std::thread::sleep(Duration::from_secs(1));
    c.start_agent(0);
    c.wait_ready(0);
    // The new agent has reported (its status patch brings the pods back to
    // Ready after it looked at them) and nothing was restarted.
    let lines = |log: &str| log.matches("node registered").count();
    eventually("the new agent registered", Duration::from_secs(30), || {
        lines(&c.nodes[0].log()) >= 2
    });
    std::thread::sleep(Duration::from_secs(3));
    eventually("pods Ready after adoption", Duration::from_secs(30), || {
        ["client", web_name.as_str()]
            .iter()
            .all(|p| condition(&c.get_json(&["pod", p]), "Ready") == Some("True"))
    });
    assert_eq!(statuses(&c), before, "adoption kept ids and restart counts");
    let pids_after: BTreeSet<(String, i64)> = c.nodes[0]
        .containers()
        .into_iter()
        .map(|(id, _, pid)| (id, pid))
        .collect();
    assert_eq!(pids_after, pids_before, "no container was re-created");
    assert!(
        pids_after
            .iter()
            .all(|(_, pid)| Path::new(&format!("/proc/{pid}")).exists()),
        "{pids_after:?}"
    );

    // node-2's agent dies for good: within the default detection time its
    // pod is replaced by one on node-0 or node-1 that is Ready.
    let lost: Vec<String> = by_node["node-2"]
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    c.nodes[2].kill_agent();
    let t0 = Instant::now();
    eventually(
        "node-2's pod replaced on another node",
        Duration::from_mins(1),
        || {
            let d = c.get_json(&["deployment", "web"]);
            let ready_elsewhere = c.get_json(&["pods", "-l", "app=web"])["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] != "node-2"
                        && p["metadata"]["deletionTimestamp"].is_null()
                        && condition(p, "Ready") == Some("True")
                })
                .count();
            ready_elsewhere == 3 && d["status"]["availableReplicas"] == 3
        },
    );
    let took = t0.elapsed();
    eprintln!("node-2's pod replaced after {took:?}");
    assert!(
        took < Duration::from_secs(40),
        "replaced after {took:?}: keel's default detection time is 8 s + 10 s"
    );
    let node2 = c.get_json(&["node", "node-2"]);
    assert_eq!(condition(&node2, "Ready"), Some("Unknown"), "{node2}");
    for p in &lost {
        let pod = c.server.kubectl_with(
            &node_hosts::kubectl133(),
            &["get", "pod", p, "-o", "json"],
            None,
        );
        // Gone, or left Terminating for the node's kubelet to finish.
        if pod.status.success() {
            let pod: Value = serde_json::from_slice(&pod.stdout).unwrap();
            assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
        }
    }

    // Tearing the cluster down leaves nothing of the nodes behind.
    let roots: Vec<(std::path::PathBuf, Vec<String>)> = c
        .nodes
        .iter()
        .map(|n| {
            (
                n.root().to_path_buf(),
                n.containers().into_iter().map(|(id, _, _)| id).collect(),
            )
        })
        .collect();
    let netns: Vec<String> = c.nodes.iter().map(|n| n.ns.clone()).collect();
    let veths: Vec<String> = c.nodes.iter().map(|n| n.veth.clone()).collect();
    for n in &c.nodes {
        assert!(!n.log().contains("panicked"), "{}", n.log());
    }
    drop(c);
    for (root, ids) in &roots {
        let left = leftovers(root, ids);
        assert!(left.is_empty(), "left behind: {left:#?}");
    }
    let links = node_hosts::must(&["ip", "-o", "link"]);
    let spaces = node_hosts::must(&["ip", "netns", "list"]);
    for (ns, veth) in netns.iter().zip(&veths) {
        assert!(!spaces.contains(ns.as_str()), "{ns} left");
        assert!(!links.contains(&format!(" {veth}@")), "{veth} left");
    }
}
