//! Overlay networks for plain containers (`keel network create -d
//! overlay`), across two node hosts (see `node_hosts`): created on one
//! node, the network appears on the other; each node hands out addresses
//! from its own slice (recorded on the server); a busybox httpd on node A
//! answers a container on node B by IP and by name; removal is refused
//! while a container uses the network anywhere, and once done takes the
//! network's bridge, VXLAN device and rules from every node.

mod node_hosts;
mod server_common;

use std::process::Output;
use std::time::Duration;

use node_hosts::{Cluster, NodeHost, keel};
use serde_json::Value;
use server_common::eventually;

/// `keel --root <node's root> args` inside the node's namespace.
fn on(h: &NodeHost, args: &[&str]) -> Output {
    let root = h.root().to_str().unwrap().to_string();
    let mut v = vec![keel(), "--root", &root];
    v.extend_from_slice(args);
    h.exec(&v)
}

fn ok(h: &NodeHost, args: &[&str]) -> String {
    let out = on(h, args);
    assert!(
        out.status.success(),
        "keel {args:?} on {}: {}",
        h.ns,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn inspect(h: &NodeHost, net: &str) -> Option<Value> {
    let out = on(h, &["network", "inspect", net]);
    out.status
        .success()
        .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone())
}

/// The address of container `name` on network `net` of node `h`.
fn ip_of(h: &NodeHost, net: &str, name: &str) -> String {
    let n = inspect(h, net).unwrap();
    let ep = n["Containers"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Name"] == name)
        .unwrap_or_else(|| panic!("{name} on {net}: {n}"));
    let cidr = ep["IPv4Address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_string()
}

/// Links and keel rules of the node's namespace that belong to network `id`.
fn kernel_traces(h: &NodeHost, id: &str) -> Vec<String> {
    let links = String::from_utf8_lossy(&h.exec(&["ip", "-o", "link", "show"]).stdout).to_string();
    let rules = String::from_utf8_lossy(&h.exec(&["iptables-save"]).stdout).to_string();
    links
        .lines()
        .chain(rules.lines())
        .filter(|l| {
            l.contains(&format!("keel-{}", &id[..10]))
                || l.contains("kvx-")
                || l.contains(&format!("keel-net:{}", &id[..12]))
        })
        .map(String::from)
        .collect()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let (ip, net): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (ip.parse().unwrap(), net.parse().unwrap());
    let mask = u32::MAX
        .checked_shl(32 - len.parse::<u32>().unwrap())
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// What each node has of the overlay (printed when a fetch fails).
fn diagnose(c: &Cluster, hosts: &[&NodeHost]) {
    for h in hosts {
        let state = format!("{}/net/networks.json", h.root().display());
        for cmd in [
            &["bridge", "fdb", "show", "dev", "kvx-4097"][..],
            &["ip", "neigh"],
            &["ip", "-s", "-d", "link", "show", "kvx-4097"],
            &["ip", "-s", "link", "show"],
            &["iptables", "-vnL", "FORWARD"],
            &["cat", &state],
        ] {
            let o = h.exec(cmd);
            eprintln!(
                "{} {cmd:?}: {}{}",
                h.ns,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    eprintln!(
        "configmap: {}",
        c.get_json(&["configmap", "-n", "keel-overlay", "ov"])
    );
}

#[test]
fn overlay_network_spans_node_hosts() {
    let c = Cluster::start(2);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let id = ok(a, &["network", "create", "-d", "overlay", "ov"]);
    assert_eq!(id.len(), 64, "{id}");
    let on_a = inspect(a, "ov").expect("ov on node A as soon as create returns");
    assert_eq!(
        (on_a["Driver"].as_str(), on_a["Scope"].as_str()),
        (Some("overlay"), Some("swarm"))
    );
    eventually("ov on node B", Duration::from_secs(30), || {
        inspect(b, "ov").is_some_and(|n| n["Id"] == id.as_str())
    });
    let dup = on(b, &["network", "create", "-d", "overlay", "ov"]);
    assert!(
        !dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );

    ok(
        a,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "ov",
            "busybox:latest",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-a > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    ok(
        b,
        &[
            "run",
            "-d",
            "--name",
            "client",
            "--network",
            "ov",
            "busybox:latest",
            "sleep",
            "3600",
        ],
    );
    let (web_ip, client_ip) = (ip_of(a, "ov", "web"), ip_of(b, "ov", "client"));
    // Each node hands out its own slice of the subnet, recorded on the server.
    let cm = c.get_json(&["configmap", "-n", "keel-overlay", "ov"]);
    let slice = |n: &str| {
        cm["data"][format!("slice.{n}")]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (sa, sb) = (slice("node-0"), slice("node-1"));
    assert_ne!(sa, sb);
    assert!(in_cidr(&web_ip, &sa), "{web_ip} in {sa}");
    assert!(in_cidr(&client_ip, &sb), "{client_ip} in {sb}");
    // Each node's gateway is its slice's first host; the slice's base address is never handed out.
    for (h, ip, slice) in [(a, &web_ip, &sa), (b, &client_ip, &sb)] {
        let base: std::net::Ipv4Addr = slice.split('/').next().unwrap().parse().unwrap();
        assert_ne!(*ip, base.to_string());
        let gw = inspect(h, "ov").unwrap()["IPAM"]["Config"][0]["Gateway"].clone();
        let first = std::net::Ipv4Addr::from(u32::from(base) + 1).to_string();
        assert_eq!(gw.as_str(), Some(first.as_str()));
    }
    // The VXLAN device: the network's VNI from the node's address to IANA's
    // port, learning nothing, a port of the bridge, with room for its 50 bytes.
    for h in [a, b] {
        let dev =
            String::from_utf8_lossy(&h.exec(&["ip", "-d", "link", "show", "kvx-4097"]).stdout)
                .to_string();
        for want in [
            "mtu 1450".to_string(),
            format!("master keel-{}", &id[..10]),
            format!("vxlan id 4097 local {}", h.node_ip),
            "dstport 4789".to_string(),
            "nolearning".to_string(),
        ] {
            assert!(dev.contains(&want), "{want}: {dev}");
        }
    }
    let mtu = ok(a, &["exec", "web", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu, "1450");

    // Node B's container reaches node A's by IP and by name: ping, HTTP.
    // (busybox 1.35's wget crashes with -T: `timeout` bounds it.)
    for target in [web_ip.as_str(), "web"] {
        let url = format!("http://{target}/");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ping = on(b, &["exec", "client", "ping", "-c", "1", "-W", "2", target]);
            let out = on(b, &["exec", "client", "timeout", "5", "wget", "-qO-", &url]);
            if ping.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("hello-from-a")
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                diagnose(&c, &[a, b]);
                panic!(
                    "client on B cannot fetch {url}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // And back: A's container reaches B's by name.
    let back = on(a, &["exec", "web", "ping", "-c", "1", "-W", "2", "client"]);
    assert!(back.status.success(), "web -> client: {back:?}");

    // In use on node A: node B may not remove it.
    ok(b, &["rm", "-f", "client"]);
    let busy = on(b, &["network", "rm", "ov"]);
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        !busy.status.success() && err.contains("active endpoints") && err.contains("web"),
        "{err}"
    );
    ok(a, &["rm", "-f", "web"]);
    // Node A publishes that web is gone within a round or two.
    eventually("ov removed from node B", Duration::from_secs(30), || {
        on(b, &["network", "rm", "ov"]).status.success()
    });
    for h in [a, b] {
        eventually(
            &format!("ov gone from {}", h.ns),
            Duration::from_secs(30),
            || inspect(h, "ov").is_none() && kernel_traces(h, &id).is_empty(),
        );
    }
    let gone = c.server.kubectl_with(
        &node_hosts::kubectl133(),
        &["get", "configmap", "-n", "keel-overlay", "ov"],
        None,
    );
    assert!(!gone.status.success());
}
