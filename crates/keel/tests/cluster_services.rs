//! Services end to end in a cluster of node hosts (`node_hosts`): each
//! agent's service proxy puts nftables rules in its node's namespace. A
//! `ClusterIP` reaches every ready pod and never an unready one, named
//! `targetPorts`, hairpin, `sessionAffinity`, `NodePort` (127.0.0.1 and the
//! node's address, from the node, the machine and another node), a
//! `LoadBalancer` gets the nodes' addresses and serves, scaling under
//! continuous requests loses none, cluster DNS answers through the kube-dns
//! cluster IP, and an agent stopped with SIGTERM leaves no table behind.
//! Endpoints are on the client's node; `cross_node_*` needs the VXLAN
//! overlay between node hosts.

mod node_hosts;
mod server_common;

use std::collections::BTreeSet;
use std::time::Duration;

use node_hosts::{Cluster, NodeHost, condition};
use serde_json::Value;
use server_common::eventually;

/// Pods answering their own name on 8080 (port name `http`), ready while
/// /tmp/ready exists; `NODE` pins them.
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
      nodeSelector: {kubernetes.io/hostname: NODE}
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          exec: {command: ["cat", "/tmp/ready"]}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {command: ["sleep", "2"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:latest
    command: ["sleep", "3600"]
"#;

const MORE: &str = r"
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8088, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
";

fn web_yaml(node: &str) -> String {
    WEB.replace("NODE", node)
}

fn ready_pods(c: &Cluster) -> Vec<Value> {
    c.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            condition(p, "Ready") == Some("True") && p["metadata"]["deletionTimestamp"].is_null()
        })
        .cloned()
        .collect()
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn cluster_ip(c: &Cluster, svc: &str) -> String {
    c.get_json(&["service", svc])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `wget` of `url` in container `ctr` of `host`: the body, or `None`.
fn get_in(host: &NodeHost, ctr: &str, url: &str) -> Option<String> {
    let out = host.exec_in(ctr, &["timeout", "5", "wget", "-q", "-O-", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `wget` from the node host's namespace itself.
fn get_on(host: &NodeHost, url: &str) -> Option<String> {
    let out = host.exec(&["timeout", "5", "busybox", "wget", "-q", "-O-", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn get_here(url: &str) -> Option<String> {
    let out = node_hosts::sh(&["timeout", "5", "busybox", "wget", "-q", "-O-", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn client_ctr(c: &Cluster, node: &str) -> String {
    eventually("client running", Duration::from_mins(1), || {
        condition(&c.get_json(&["pod", "client"]), "Ready") == Some("True")
    });
    let uid = c.get_json(&["pod", "client"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    c.host(node)
        .container_of(&uid, "sh")
        .expect("client container")
}

fn tables(host: &NodeHost) -> String {
    let out = host.exec(&["nft", "list", "tables"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What of the service proxy's rules a node holds: its nftables table or
/// its iptables chains.
fn proxy_rules(host: &NodeHost, iptables: bool) -> String {
    if !iptables {
        return tables(host);
    }
    let out = host.exec(&["iptables-save"]);
    assert!(out.status.success(), "{out:?}");
    // The proxy's chains: `KIND-<6 hex>-…` (keel-net's own KEEL-FORWARD
    // and KEEL-POSTROUTING are the pod network's).
    let proxy_chain = |c: &str| {
        ["KEEL-", "SVC-", "SEP-", "EXT-"].iter().any(|k| {
            c.strip_prefix(k).is_some_and(|r| {
                r.len() > 7
                    && r.as_bytes()[6] == b'-'
                    && r[..6].bytes().all(|b| b.is_ascii_hexdigit())
            })
        })
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.strip_prefix(':').is_some_and(proxy_chain))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cluster_ip_node_port_load_balancer_affinity_hairpin_and_cleanup() {
    core_cases(false);
}

/// The same with the proxy's iptables backend (hosts without `nft`).
#[test]
fn the_iptables_fallback_serves_the_same_services() {
    core_cases(true);
}

fn core_cases(iptables: bool) {
    let mut c = if iptables {
        Cluster::start_with_agent_env(2, &[("KEEL_PROXY_BACKEND", "iptables")])
    } else {
        Cluster::start(2)
    };
    c.apply(&web_yaml("node-0"));
    c.apply(MORE);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let ctr = client_ctr(&c, "node-0");
    let ip = cluster_ip(&c, "web");
    let url = format!("http://{ip}/");

    // Every ready pod answers through the ClusterIP (named targetPort).
    let all = names(&ready_pods(&c));
    assert_eq!(all.len(), 3, "{all:?}");
    let host0 = c.host("node-0");
    let mut seen = BTreeSet::new();
    eventually(
        "the ClusterIP reaches all 3 pods",
        Duration::from_mins(1),
        || {
            if let Some(b) = get_in(host0, &ctr, &url) {
                seen.insert(b);
            }
            seen == all
        },
    );

    // Cluster DNS through the kube-dns Service's cluster IP (the pods'
    // nameserver, 10.43.0.10): the proxy sends it to the server.
    eventually("DNS through 10.43.0.10", Duration::from_secs(30), || {
        let out = host0.exec_in(&ctr, &["nslookup", "web.default.svc.cluster.local"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&ip)
    });

    // One pod turns unready: it gets no more requests.
    let victim = all.iter().next().unwrap().clone();
    let vuid = c.get_json(&["pod", &victim])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let vctr = host0.container_of(&vuid, "httpd").unwrap();
    let out = host0.exec_in(&vctr, &["rm", "/tmp/ready"]);
    assert!(out.status.success(), "{out:?}");
    eventually("the pod unready", Duration::from_secs(20), || {
        !names(&ready_pods(&c)).contains(&victim)
    });
    // The slice follows the pod's status within a moment; then never again.
    let mut quiet = 0;
    eventually(
        "no request to the unready pod",
        Duration::from_secs(20),
        || {
            match get_in(host0, &ctr, &url) {
                Some(b) if b == victim => quiet = 0,
                Some(_) => quiet += 1,
                None => {}
            }
            quiet >= 10
        },
    );
    for _ in 0..30 {
        let b = get_in(host0, &ctr, &url).expect("a ready pod answers");
        assert_ne!(b, victim, "an unready pod got a request");
    }
    let out = host0.exec_in(&vctr, &["touch", "/tmp/ready"]);
    assert!(out.status.success(), "{out:?}");

    eventually("the pod ready again", Duration::from_secs(20), || {
        names(&ready_pods(&c)).contains(&victim)
    });

    // Hairpin: a pod reaches itself through its Service (masqueraded). Its
    // endpoint comes back a moment after its Ready condition: ask until then.
    eventually(
        &format!("{victim} reaching itself through {url}"),
        Duration::from_secs(20),
        || get_in(host0, &vctr, &url).as_deref() == Some(victim.as_str()),
    );

    // sessionAffinity ClientIP: one client, one pod.
    let sticky = format!("http://{}/", cluster_ip(&c, "web-sticky"));
    eventually(
        "the sticky Service answers",
        Duration::from_secs(20),
        || get_in(host0, &ctr, &sticky).is_some(),
    );
    let first = get_in(host0, &ctr, &sticky).unwrap();
    for _ in 0..15 {
        assert_eq!(
            get_in(host0, &ctr, &sticky).as_deref(),
            Some(first.as_str())
        );
    }

    // A Service without endpoints refuses at once (no 3 s timeout).
    let nobody = format!("http://{}/", cluster_ip(&c, "nobody"));
    let t = std::time::Instant::now();
    assert_eq!(get_in(host0, &ctr, &nobody), None);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );

    // NodePort: allocated in range, served on 127.0.0.1 and the node's
    // address, from the node itself, this machine and the other node.
    let np = c.get_json(&["service", "web-np"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    assert!((30_000..=32_767).contains(&np), "{np}");
    let node0 = host0.node_ip.clone();
    for (what, get) in [
        (
            "127.0.0.1 on the node",
            Box::new(|| get_on(host0, &format!("http://127.0.0.1:{np}/")))
                as Box<dyn Fn() -> Option<String>>,
        ),
        (
            "the node's address on the node",
            Box::new(|| get_on(host0, &format!("http://{node0}:{np}/"))),
        ),
        (
            "this machine",
            Box::new(|| get_here(&format!("http://{node0}:{np}/"))),
        ),
        (
            "the other node",
            Box::new(|| get_on(c.host("node-1"), &format!("http://{node0}:{np}/"))),
        ),
    ] {
        eventually(
            &format!("NodePort from {what}"),
            Duration::from_secs(20),
            || get().is_some_and(|b| all.contains(&b)),
        );
    }

    // LoadBalancer: the nodes' addresses, and it serves on them.
    let want: BTreeSet<String> = c.nodes.iter().map(|n| n.node_ip.clone()).collect();
    eventually("LoadBalancer ingress", Duration::from_secs(30), || {
        let ing: BTreeSet<String> =
            c.get_json(&["service", "web-lb"])["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect();
        ing == want
    });
    eventually("LoadBalancer serves", Duration::from_secs(20), || {
        get_here(&format!("http://{node0}:8088/")).is_some_and(|b| all.contains(&b))
    });
    let shown = c.kubectl(&["get", "service", "web-lb"]);
    assert!(shown.contains(&node0), "{shown}");

    // The agent stopped with SIGTERM removes its rules; the other keeps its.
    let t0 = proxy_rules(host0, iptables);
    if iptables {
        assert!(t0.contains(":SVC-"), "{t0}");
        assert!(!tables(host0).contains("keel-svc"), "nftables used");
    } else {
        assert!(t0.contains("keel-svc-node_0"), "{t0}");
    }
    let pid = c.nodes[0].agent_pid().to_string();
    assert!(node_hosts::sh(&["kill", "-TERM", &pid]).status.success());
    let mut agent = c.nodes[0].agent.take().unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let t0 = proxy_rules(&c.nodes[0], iptables);
    assert!(
        !t0.contains("keel-svc") && !t0.contains(':'),
        "left behind: {t0}"
    );
    assert!(!proxy_rules(&c.nodes[1], iptables).is_empty());
}

#[test]
fn scaling_under_continuous_requests_loses_none() {
    let c = Cluster::start(1);
    c.apply(&web_yaml("node-0").replace("replicas: 3", "replicas: 1"));
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let ctr = client_ctr(&c, "node-0");
    let url = format!("http://{}/", cluster_ip(&c, "web"));
    let host0 = c.host("node-0");
    eventually("the Service answers", Duration::from_secs(30), || {
        get_in(host0, &ctr, &url).is_some()
    });
    // ~20 s of requests, one every 50 ms, each with a 3 s timeout.
    let script = format!(
        "ok=0; fail=0; i=0; while [ $i -lt 400 ]; do \
           if timeout 3 wget -q -O- {url} >/dev/null 2>&1; then ok=$((ok+1)); else fail=$((fail+1)); fi; \
           i=$((i+1)); usleep 50000; done; echo $ok $fail"
    );
    std::thread::scope(|s| {
        let load = s.spawn(|| host0.exec_in(&ctr, &["sh", "-c", &script]));
        std::thread::sleep(Duration::from_secs(2));
        c.kubectl(&["scale", "deployment/web", "--replicas=3"]);
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        std::thread::sleep(Duration::from_secs(3));
        c.kubectl(&["scale", "deployment/web", "--replicas=1"]);
        eventually("scaled down", Duration::from_secs(30), || {
            c.get_json(&["pods", "-l", "app=web"])["items"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        });
        let out = load.join().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(line, "400 0", "requests ok/failed: {out:?}");
    });
}

/// Endpoints on another node, reached over the VXLAN overlay between node
/// hosts (issue 21's pod network).
#[test]
fn cross_node_endpoints_are_reached_through_cluster_ip_and_node_port() {
    let c = Cluster::start(2);
    // The pods on node-1, the client on node-0.
    c.apply(&WEB.replacen("NODE", "node-1", 1).replace("NODE", "node-0"));
    c.apply(MORE);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let ctr = client_ctr(&c, "node-0");
    let all = names(&ready_pods(&c));
    let url = format!("http://{}/", cluster_ip(&c, "web"));
    let host0 = c.host("node-0");
    let mut seen = BTreeSet::new();
    eventually(
        "the ClusterIP reaches pods on node-1",
        Duration::from_mins(1),
        || {
            if let Some(b) = get_in(host0, &ctr, &url) {
                seen.insert(b);
            }
            seen == all
        },
    );
    let np = c.get_json(&["service", "web-np"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    let node0 = host0.node_ip.clone();
    eventually(
        "NodePort of node-0 reaches node-1's pods",
        Duration::from_secs(20),
        || get_here(&format!("http://{node0}:{np}/")).is_some_and(|b| all.contains(&b)),
    );
}
