//! The pod network across nodes (3 node hosts, see `node_hosts`): pods on
//! different nodes reach each other by IP over the VXLAN overlay and see
//! each other's real addresses, a node host reaches another node's pods,
//! pod egress to the outside is masqueraded to the node's address, pods'
//! MTU leaves room for VXLAN, a deleted Node's routes go, and an agent
//! stopped with SIGTERM leaves no device, route or rule behind.
//! `NetworkPolicy`: a default deny, then an allow policy (on one node and
//! across nodes), and an egress policy.

mod node_hosts;
mod server_common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use node_hosts::{Cluster, NodeHost};
use serde_json::Value;
use server_common::eventually;

/// An httpd whose `/cgi-bin/ip` answers with the client's address as seen
/// by the server (no NAT between pods: the pod's own IP).
const HTTPD: &str = r"mkdir -p /www/cgi-bin && hostname > /www/index.html && printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";

fn pod(name: &str, node: &str, app: &str, httpd: bool) -> String {
    let cmd = if httpd { HTTPD } else { "exec sleep 3600" };
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", {cmd:?}]
    ports: [{{containerPort: 8080, name: http}}]
"#
    )
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    c.get_json(&["pod", name])["status"]["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no IP"))
        .to_string()
}

/// Runs `argv` in pod `name`'s container (on its node).
fn in_pod(c: &Cluster, name: &str, argv: &[&str]) -> Output {
    let p = c.get_json(&["pod", name]);
    let node = p["spec"]["nodeName"].as_str().unwrap();
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let host = c.host(node);
    let ctr = host
        .container_of(uid, "c")
        .unwrap_or_else(|| panic!("{name}'s container"));
    host.exec_in(&ctr, argv)
}

fn get(c: &Cluster, from: &str, url: &str) -> Option<String> {
    let out = in_pod(c, from, &["timeout", "5", "wget", "-qO-", url]);
    // busybox httpd prints an IPv4 client in its IPv6-mapped form, `[::ffff:A.B.C.D]`.
    out.status.success().then(|| {
        let s = String::from_utf8_lossy(&out.stdout);
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        s.strip_prefix("::ffff:").unwrap_or(s).to_string()
    })
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn start_pods(c: &Cluster, pods: &[(&str, &str, &str, bool)]) {
    for (name, node, app, httpd) in pods {
        c.apply(&pod(name, node, app, *httpd));
    }
    c.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout=120s",
    ]);
}

/// A busybox httpd with the `ip` CGI in the host's (root) namespace on
/// `ip`, on a free port; killed on drop.
/// (The directory is kept until the server goes.)
struct RootHttpd(
    std::process::Child,
    u16,
    #[allow(dead_code)] tempfile::TempDir,
);

impl RootHttpd {
    fn start(ip: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir_all(&cgi).unwrap();
        std::fs::write(
            cgi.join("ip"),
            "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n",
        )
        .unwrap();
        Command::new("chmod")
            .args(["+x", cgi.join("ip").to_str().unwrap()])
            .status()
            .unwrap();
        for _ in 0..20 {
            let port = std::net::TcpListener::bind((ip, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("busybox")
                .args(["httpd", "-f", "-p", &format!("{ip}:{port}"), "-h"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            if child.try_wait().unwrap().is_none() {
                return RootHttpd(child, port, dir);
            }
        }
        panic!("no port for the root namespace's httpd");
    }
}

impl Drop for RootHttpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` for 20 s; on timeout, prints every node host's pod network
/// (routes, neighbours, FDB, nat and filter rules) and fails.
fn wait_for(c: &Cluster, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for h in &c.nodes {
        eprintln!("--- {} ({}) ---", h.ns, h.node_ip);
        for cmd in [
            &["ip", "route"][..],
            &["ip", "neigh", "show", "dev", "kvxlan.1"],
            &["bridge", "fdb", "show", "dev", "kvxlan.1"],
            &["ip", "-d", "link", "show", "kvxlan.1"],
            &["iptables-save"],
        ] {
            let o = h.exec(cmd);
            eprintln!(
                "$ {}\n{}{}",
                cmd.join(" "),
                text(&o),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    // KEEL_TEST_HOLD=SECONDS keeps the cluster up for a look before it goes.
    if let Some(s) = std::env::var("KEEL_TEST_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("holding the cluster for {s} s");
        std::thread::sleep(Duration::from_secs(s));
    }
    panic!("timed out waiting for {what}");
}

fn routes(h: &NodeHost) -> String {
    text(&h.exec(&["ip", "-4", "route", "show", "proto", "75"]))
}

/// What of the pod network is left in a node host's kernel.
fn overlay_leftovers(h: &NodeHost) -> Vec<String> {
    let mut left = Vec::new();
    if h.exec(&["ip", "link", "show", "kvxlan.1"]).status.success() {
        left.push("link kvxlan.1".to_string());
    }
    let r = routes(h);
    if !r.trim().is_empty() {
        left.push(format!("routes: {r}"));
    }
    let rules = text(&h.exec(&["iptables-save"]));
    for l in rules
        .lines()
        .filter(|l| l.contains("KEEL-OVERLAY") || l.contains("KEEL-NETPOL"))
    {
        left.push(l.to_string());
    }
    left
}

#[test]
fn pods_reach_each_other_across_nodes_with_egress_nat_and_cleanup() {
    let mut c = Cluster::start(3);
    start_pods(
        &c,
        &[
            ("web0", "node-0", "web", true),
            ("web1", "node-1", "web", true),
            ("client", "node-2", "client", false),
            ("near", "node-0", "client", false),
        ],
    );
    // Each node published its VTEP as flannel does.
    for i in 0..3 {
        let n = c.get_json(&["node", &Cluster::name(i)]);
        let ann = &n["metadata"]["annotations"];
        assert_eq!(ann["flannel.alpha.coreos.com/backend-type"], "vxlan");
        assert_eq!(
            ann["flannel.alpha.coreos.com/public-ip"],
            c.nodes[i].node_ip.as_str()
        );
        let data: Value = serde_json::from_str(
            ann["flannel.alpha.coreos.com/backend-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["VNI"], 1);
        assert!(data["VtepMAC"].as_str().is_some_and(|m| m.len() == 17));
    }
    let (web0, web1, client_ip) = (pod_ip(&c, "web0"), pod_ip(&c, "web1"), pod_ip(&c, "client"));

    // Pod to pod across nodes, by IP, with the client's own address (no NAT).
    for (ip, name) in [(&web0, "web0"), (&web1, "web1")] {
        wait_for(&c, &format!("client -> {name}"), || {
            get(&c, "client", &format!("http://{ip}:8080/")).as_deref() == Some(name)
        });
        assert_eq!(
            get(&c, "client", &format!("http://{ip}:8080/cgi-bin/ip")).as_deref(),
            Some(client_ip.as_str())
        );
    }
    // Same node still works.
    assert_eq!(
        get(&c, "near", &format!("http://{web0}:8080/")).as_deref(),
        Some("web0")
    );

    // A node host reaches another node's pod.
    // (Debian's busybox 1.35 wget crashes with -T: `timeout` bounds it.)
    let out = c.nodes[1].exec(&[
        "busybox",
        "timeout",
        "10",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{web0}:8080/"),
    ]);
    assert!(out.status.success(), "node-1 -> web0: {out:?}");
    assert_eq!(text(&out).trim(), "web0");

    // Egress to a non-cluster address is masqueraded to the node's address.
    let outside = RootHttpd::start(&c.nodes[0].host_ip);
    let url = format!("http://{}:{}/cgi-bin/ip", c.nodes[0].host_ip, outside.1);
    assert_eq!(
        get(&c, "client", &url).as_deref(),
        Some(c.nodes[2].node_ip.as_str())
    );

    // MTU: the node link's (1500) less VXLAN's 50, on the device and in pods.
    let mtu = text(&c.nodes[2].exec(&["cat", "/sys/class/net/kvxlan.1/mtu"]));
    let link = text(&c.nodes[2].exec(&["ip", "-o", "link", "show", "kvxlan.1"]));
    assert!(link.contains("mtu 1450"), "{link} {mtu}");
    let out = in_pod(&c, "client", &["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(text(&out).trim(), "1450");

    // node-2's Node deleted (its agent killed first): the others drop its routes.
    let cidr2 = c.get_json(&["node", "node-2"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        routes(&c.nodes[0]).contains(&cidr2),
        "{}",
        routes(&c.nodes[0])
    );
    c.nodes[2].kill_agent();
    c.kubectl(&["delete", "node", "node-2", "--wait=false"]);
    eventually(
        "node-2's route gone from node-0",
        Duration::from_secs(20),
        || !routes(&c.nodes[0]).contains(&cidr2),
    );
    assert!(
        !overlay_leftovers(&c.nodes[2]).is_empty(),
        "a crash keeps the overlay"
    );

    // SIGTERM: the agent removes the device, its routes and its chains.
    let pid = c.nodes[1].agent_pid().to_string();
    assert!(!overlay_leftovers(&c.nodes[1]).is_empty());
    node_hosts::must(&["kill", "-TERM", &pid]);
    let mut agent = c.nodes[1].agent.take().unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exit: {status:?}");
    assert_eq!(overlay_leftovers(&c.nodes[1]), Vec::<String>::new());
}

const DENY_ALL: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

const ALLOW_CLIENTS: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
";

const CLIENT_EGRESS: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: clients-only-to-web}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 8080}]
";

#[test]
fn network_policy_denies_then_allows_on_one_node_and_across_nodes() {
    let mut c = Cluster::start(2);
    start_pods(
        &c,
        &[
            ("web", "node-0", "web", true),
            ("near", "node-0", "client", false),
            ("far", "node-1", "client", false),
            ("other", "node-1", "other", false),
        ],
    );
    let web = format!("http://{}:8080/", pod_ip(&c, "web"));
    let reach = |c: &Cluster, from: &str| get(c, from, &web).as_deref() == Some("web");
    for from in ["near", "far", "other"] {
        eventually(&format!("{from} -> web"), Duration::from_secs(20), || {
            reach(&c, from)
        });
    }

    // Default deny: nobody reaches web, on its node or from another.
    c.apply(DENY_ALL);
    for from in ["near", "far", "other"] {
        eventually(&format!("{from} denied"), Duration::from_secs(20), || {
            !reach(&c, from)
        });
    }

    // An allow policy adds the clients (on both nodes), not the others.
    c.apply(ALLOW_CLIENTS);
    for from in ["near", "far"] {
        eventually(&format!("{from} allowed"), Duration::from_secs(20), || {
            reach(&c, from)
        });
    }
    assert!(!reach(&c, "other"), "other is no client");

    // Egress: clients may reach web only; a listener on node-1's host
    // (reachable before) is not.
    let node_ip = c.nodes[1].node_ip.clone();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "node\n").unwrap();
    c.nodes[1].spawn(&[
        "busybox",
        "httpd",
        "-f",
        "-p",
        &format!("{node_ip}:8082"),
        "-h",
        www.path().to_str().unwrap(),
    ]);
    let node_url = format!("http://{node_ip}:8082/");
    // near (node-0) to node-1's host address: forwarded by node-0, where
    // near's egress is checked.
    eventually("near -> node-1 host", Duration::from_secs(20), || {
        get(&c, "near", &node_url).as_deref() == Some("node")
    });
    c.apply(CLIENT_EGRESS);
    eventually("near's egress restricted", Duration::from_secs(20), || {
        get(&c, "near", &node_url).is_none()
    });
    assert!(reach(&c, "near") && reach(&c, "far"), "web still allowed");

    // Removing the policies restores everything.
    c.kubectl(&["delete", "networkpolicy", "--all"]);
    for from in ["other", "near"] {
        eventually(
            &format!("{from} open again"),
            Duration::from_secs(20),
            || reach(&c, from),
        );
    }
}

/// A process killed on drop.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx answering `ok` on `addr` inside the network namespace `netns`
/// (a pod's: `/proc/<pid>/ns/net`), its files in `dir`.
fn nginx_in(netns: &str, addr: &str, dir: &std::path::Path) -> Guard {
    let d = dir.display();
    let conf = format!(
        "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p;\n\
         fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         server {{ listen {addr}; location / {{ return 200 \"ok\\n\"; }} }} }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let g = Guard(
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["nginx", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    std::thread::sleep(Duration::from_millis(500));
    g
}

/// `wrk` from namespace `netns` against `url`: (requests/s, p99 text).
fn wrk_from(netns: &str, url: &str, secs: u32) -> (f64, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args([
            "wrk",
            "-t1",
            "-c16",
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk");
    let s = text(&out);
    assert!(out.status.success() && !s.contains("Non-2xx"), "wrk: {s}");
    let rps = s
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk: {s}"));
    let p99 = s
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    (rps, p99)
}

/// Pod-to-pod HTTP throughput and p99 (scripts/bench-podnet.sh): nginx in a
/// pod's namespace on node-0, wrk from a pod on the same node and from one
/// on node-1 (over the VXLAN overlay), and node-1's host to node-0's host
/// (the routed underlay, no overlay) as the baseline.
#[test]
#[ignore = "a benchmark: scripts/bench-podnet.sh runs it"]
fn bench_pod_network() {
    let secs: u32 = std::env::var("KEEL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let c = Cluster::start(2);
    start_pods(
        &c,
        &[
            ("server", "node-0", "web", false),
            ("near", "node-0", "client", false),
            ("far", "node-1", "client", false),
        ],
    );
    let pid_of = |name: &str| -> String {
        let p = c.get_json(&["pod", name]);
        let host = c.host(p["spec"]["nodeName"].as_str().unwrap());
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let id = host.container_of(uid, "c").unwrap();
        let pid = host
            .containers()
            .into_iter()
            .find(|(i, _, _)| *i == id)
            .unwrap()
            .2;
        format!("/proc/{pid}/ns/net")
    };
    let dir = tempfile::tempdir().unwrap();
    let server_ip = pod_ip(&c, "server");
    let _pod_nginx = nginx_in(&pid_of("server"), &format!("{server_ip}:8080"), dir.path());
    let dir2 = tempfile::tempdir().unwrap();
    let n0 = c.nodes[0].node_ip.clone();
    let _host_nginx = nginx_in(
        &format!("/run/netns/{}", c.nodes[0].ns),
        &format!("{n0}:8081"),
        dir2.path(),
    );
    let pod_url = format!("http://{server_ip}:8080/");
    // Warm-up (ARP, conntrack, nginx's worker).
    wrk_from(&pid_of("far"), &pod_url, 1);
    let rows = [
        ("same node (bridge)", pid_of("near"), pod_url.clone()),
        ("cross node (vxlan)", pid_of("far"), pod_url.clone()),
        (
            "node to node (underlay)",
            format!("/run/netns/{}", c.nodes[1].ns),
            format!("http://{n0}:8081/"),
        ),
    ];
    let mut results = Vec::new();
    for (name, ns, url) in &rows {
        let (rps, p99) = wrk_from(ns, url, secs);
        println!("podnet: {name}: requests_per_sec={rps:.0} p99={p99}");
        results.push(rps);
    }
    println!(
        "podnet: cross/same throughput={:.2}x cross/underlay={:.2}x",
        results[1] / results[0],
        results[1] / results[2]
    );
}
