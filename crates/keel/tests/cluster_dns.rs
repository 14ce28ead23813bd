//! Cluster DNS end to end: a real `keel server` with its own agent, in a
//! network namespace made here (the node host: pod bridge, pods), serves
//! DNS on the pod network's gateway; a busybox pod with the default
//! dnsPolicy (`ClusterFirst`) runs `nslookup` on a Service's name and gets
//! its cluster IP; queries from the node host see a Service change within
//! a second. Everything (server, containers, bridge,
//! namespace) is torn down on drop, failure included.

mod node_hosts;
mod server_common;

use std::time::{Duration, Instant};

use node_hosts::{Host, keel, sh};
use serde_json::Value;
use server_common::eventually;

/// The output of the pod's container (read from the node's store:
/// `kubectl logs` is not served yet).
fn pod_output(h: &Host, pod: &str) -> String {
    let root = h.root().to_str().unwrap();
    let Ok(rd) = std::fs::read_dir(h.root().join("containers")) else {
        return String::new();
    };
    for e in rd.flatten() {
        let Ok(cfg) = std::fs::read(e.path().join("config.json")) else {
            continue;
        };
        let cfg: Value = serde_json::from_slice(&cfg).unwrap_or_default();
        let labels = &cfg["labels"];
        if labels.to_string().contains(&format!("\"{pod}\""))
            && !labels.to_string().contains("POD\"")
            && let Some(id) = cfg["id"].as_str()
        {
            let out = sh(&[keel(), "--root", root, "logs", id]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            if text.contains("resolv.conf") {
                return text;
            }
        }
    }
    String::new()
}

const MANIFESTS: &str = r"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo == resolv.conf; cat /etc/resolv.conf; echo == fqdn; nslookup web.default.svc.cluster.local; echo == short; nslookup web; echo == end']
";

#[test]
fn a_pod_resolves_a_service_name_through_the_cluster_dns() {
    let h = Host::start("dns", "dns-node", &[]);
    eventually("node dns-node Ready", Duration::from_mins(1), || {
        h.kubectl(&["get", "node", "dns-node"], None)
            .status
            .success()
    });
    // The kube-dns Service holds the 10th address of the service range.
    let ip = h.ok(
        &[
            "get",
            "svc",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    assert_eq!(ip, "10.43.0.10");

    h.ok(&["apply", "-f", "-"], Some(MANIFESTS));
    let web_ip = h.ok(
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );
    assert!(web_ip.starts_with("10.43."), "{web_ip}");
    eventually("the client pod finished", Duration::from_mins(2), || {
        let phase = h.ok(
            &["get", "pod", "client", "-o", "jsonpath={.status.phase}"],
            None,
        );
        phase == "Succeeded" || phase == "Failed"
    });
    let out = pod_output(&h, "client");
    let cidr = h.ok(
        &["get", "node", "dns-node", "-o", "jsonpath={.spec.podCIDR}"],
        None,
    );
    let gw = cidr.trim_end_matches(".0/24").to_string() + ".1";
    assert!(
        out.contains(&format!("nameserver {gw}\n"))
            && out.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && out.contains("options ndots:5"),
        "resolv.conf by ClusterFirst: {out}"
    );
    let section = |name: &str| {
        let start = out
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("{out}"));
        out[start..]
            .split("\n== ")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        section("fqdn").contains(&format!("Address: {web_ip}")),
        "{out}"
    );
    assert!(
        section("short").contains(&format!("Address: {web_ip}")),
        "search path: {out}"
    );

    // Queries from the node host to the pods' nameserver follow a change
    // within a second (Debian's busybox nslookup has no -port: port 53 of
    // the gateway, not --dns-listen).
    let dig = |name: &str| {
        let out = h.exec(&["busybox", "nslookup", name, &gw]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(dig("web.default.svc.cluster.local").contains(&web_ip));
    h.ok(&["delete", "svc", "web"], None);
    let t = Instant::now();
    while dig("web.default.svc.cluster.local").contains(&web_ip) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "web still resolves after 1s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
