//! One behavioural suite for every [`Backend`]: a backend's rules are put
//! into a network namespace made for the test, and real connections show
//! what they do (the cluster IP reaches every ready endpoint and only those,
//! a port without endpoints refuses, `ClientIP` affinity sticks, node ports
//! answer on the node's address and 127.0.0.1, UDP, an update moves traffic
//! and touches no other Service, a full sync drops Services that are gone,
//! cleanup leaves nothing). The test's thread enters the namespace, so its
//! sockets and the tools it runs are there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Backend, HostIptables, HostNft, Iptables, Nftables, Proxy, ServiceRules};
use crate::kernel::run;

const NODE_IP: &str = "10.42.0.1";
const EPS: [&str; 3] = ["10.42.0.5", "10.42.0.6", "10.42.0.7"];

/// A named network namespace, removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0], None);
    }
}

fn sh(args: &[&str]) {
    run(args[0], &args[1..], None).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Moves this thread into a new namespace with a veth link holding the
/// node's and the endpoints' addresses and a route for cluster IPs.
fn enter(tag: &str) -> Netns {
    let name = format!("keel-proxy-{tag}-{}", std::process::id());
    let _ = run("ip", &["netns", "del", &name], None);
    sh(&["ip", "netns", "add", &name]);
    let ns = Netns(name);
    let f = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap();
    let mut batch = String::from(
        "link set lo up\nlink add d0 type veth peer name d1\nlink set d0 up\nlink set d1 up\naddr add 10.42.0.1/24 dev d0\nroute add 10.43.0.0/16 dev d0\n",
    );
    for e in EPS {
        let _ = writeln!(batch, "addr add {e}/32 dev d0");
    }
    run("ip", &["-batch", "-"], Some(&batch)).unwrap();
    std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1").unwrap();
    ns
}

/// TCP on 8080 and UDP on 5353 of every endpoint address, answering with
/// that address (threads end with the namespace's sockets at exit).
fn serve() {
    for e in EPS {
        let t = TcpListener::bind((e, 8080)).unwrap();
        std::thread::spawn(move || {
            for mut c in t.incoming().flatten() {
                let _ = c.write_all(e.as_bytes());
            }
        });
        let u = UdpSocket::bind((e, 5353)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(e.as_bytes(), from);
            }
        });
    }
}

/// What answers at `addr`: `Ok(endpoint)`, or the connect error's kind.
fn get(addr: &str) -> Result<String, std::io::ErrorKind> {
    let a: SocketAddr = addr.parse().unwrap();
    let mut c = TcpStream::connect_timeout(&a, Duration::from_millis(400)).map_err(|e| e.kind())?;
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).map_err(|e| e.kind())?;
    Ok(s)
}

fn get_udp(addr: &str) -> Option<String> {
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    u.send_to(b"?", addr).ok()?;
    let mut buf = [0u8; 64];
    let n = u.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Who answers `n` requests.
fn answers(addr: &str, n: usize) -> BTreeSet<String> {
    (0..n).filter_map(|_| get(addr).ok()).collect()
}

fn svc(name: &str, ip: &str, spec: &Value) -> Value {
    let mut s = json!({"metadata": {"namespace": "t", "name": name},
        "spec": {"type": "ClusterIP", "clusterIP": ip,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "dns", "port": 53, "protocol": "UDP"}]}});
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    s
}

/// `ready`: endpoint addresses taking connections; the others are there
/// but unready.
fn rules(svc: &Value, ready: &[&str]) -> ServiceRules {
    let eps: Vec<Value> = EPS
        .iter()
        .map(|e| {
            json!({"addresses": [e], "nodeName": "n1",
            "conditions": {"ready": ready.contains(e)}})
        })
        .collect();
    let slice = json!({"addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": eps});
    ServiceRules::from_api(svc, &[&slice], "n1").unwrap()
}

fn set<'a>(xs: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    xs.into_iter().map(str::to_string).collect()
}

/// The suite; `leftovers` lists what of `table` the kernel still holds.
fn suite<B: Backend>(tag: &str, backend: B, leftovers: fn(&str) -> String) {
    let _ns = enter(tag);
    serve();
    let table = "keel-svc-conf".to_string();
    let mut p = Proxy::new(backend, table.clone());
    let web = svc("web", "10.43.0.20", &json!({}));
    let sticky = svc(
        "sticky",
        "10.43.0.22",
        &json!({"sessionAffinity": "ClientIP"}),
    );
    let mut np = svc("np", "10.43.0.23", &json!({"type": "NodePort"}));
    np["spec"]["ports"][0]["nodePort"] = json!(30080);
    np["spec"]["ports"][1]["nodePort"] = json!(30053);
    let empty = svc("empty", "10.43.0.21", &json!({}));
    let mut all = BTreeMap::new();
    for r in [
        rules(&web, &EPS[..2]),
        rules(&sticky, &EPS),
        rules(&np, &EPS[2..]),
        rules(&empty, &[]),
    ] {
        all.insert(r.key.clone(), r);
    }
    // A stale Service from an earlier run of the same table: a full sync
    // removes it.
    let old = svc("old", "10.43.0.24", &json!({}));
    let mut with_old = all.clone();
    let r_old = rules(&old, &EPS);
    with_old.insert(r_old.key.clone(), r_old);
    p.sync_all(with_old).unwrap();
    assert!(
        get("10.43.0.24:80").is_ok(),
        "{tag}: the old Service answers"
    );
    let mut p = Proxy::new(p.backend, table.clone());
    p.sync_all(all).unwrap();
    assert!(
        get("10.43.0.24:80").is_err(),
        "{tag}: a full sync left a Service that is gone"
    );

    // Every ready endpoint and only those.
    assert_eq!(
        answers("10.43.0.20:80", 60),
        set(EPS[..2].iter().copied()),
        "{tag}"
    );
    assert_eq!(
        get_udp("10.43.0.20:53")
            .as_deref()
            .map(|e| EPS[..2].contains(&e)),
        Some(true),
        "{tag}: UDP"
    );
    // No endpoints: refused at once.
    assert_eq!(
        get("10.43.0.21:80"),
        Err(std::io::ErrorKind::ConnectionRefused),
        "{tag}"
    );
    // Affinity: one client, one endpoint.
    assert_eq!(answers("10.43.0.22:80", 20).len(), 1, "{tag}: affinity");
    // Node ports on the node's address and on 127.0.0.1.
    for a in [format!("{NODE_IP}:30080"), "127.0.0.1:30080".to_string()] {
        assert_eq!(answers(&a, 3), set([EPS[2]]), "{tag}: {a}");
    }
    assert_eq!(
        get_udp(&format!("{NODE_IP}:30053")).as_deref(),
        Some(EPS[2]),
        "{tag}"
    );

    // An update moves the traffic and leaves the others alone.
    p.update("t/web", Some(rules(&web, &EPS[1..]))).unwrap();
    assert_eq!(
        answers("10.43.0.20:80", 60),
        set(EPS[1..].iter().copied()),
        "{tag}"
    );
    assert_eq!(answers("10.43.0.22:80", 10).len(), 1, "{tag}");
    // Endpoints come to the empty one.
    p.update("t/empty", Some(rules(&empty, &EPS[..1]))).unwrap();
    assert_eq!(answers("10.43.0.21:80", 5), set([EPS[0]]), "{tag}");
    // A burst: several Services in one go.
    let burst = BTreeMap::from([
        ("t/web".to_string(), Some(rules(&web, &EPS[..1]))),
        ("t/sticky".to_string(), Some(rules(&sticky, &EPS[2..]))),
        ("t/empty".to_string(), Some(rules(&empty, &[]))),
    ]);
    p.update_many(burst).unwrap();
    assert_eq!(answers("10.43.0.20:80", 10), set([EPS[0]]), "{tag}");
    assert_eq!(answers("10.43.0.22:80", 10), set([EPS[2]]), "{tag}");
    assert_eq!(
        get("10.43.0.21:80"),
        Err(std::io::ErrorKind::ConnectionRefused),
        "{tag}"
    );
    // Deleted: no longer sent anywhere.
    p.update("t/web", None).unwrap();
    assert!(get("10.43.0.20:80").is_err(), "{tag}");
    assert_eq!(
        answers(&format!("{NODE_IP}:30080"), 3),
        set([EPS[2]]),
        "{tag}"
    );

    p.cleanup().unwrap();
    assert!(get(&format!("{NODE_IP}:30080")).is_err(), "{tag}");
    let left = leftovers(&table);
    assert!(left.is_empty(), "{tag}: left behind: {left}");
}

#[test]
fn nftables_backend_conforms() {
    std::thread::spawn(|| {
        suite("nft", Nftables(HostNft), |table| {
            let out = run("nft", &["list", "tables"], None).unwrap();
            if out.contains(table) {
                out
            } else {
                String::new()
            }
        });
    })
    .join()
    .unwrap();
}

#[test]
fn iptables_backend_conforms() {
    std::thread::spawn(|| {
        suite("ipt", Iptables(HostIptables), |_| {
            let out = run("iptables-save", &[], None).unwrap();
            out.lines()
                .filter(|l| {
                    ["KEEL-", "SVC-", "SEP-", "EXT-"]
                        .iter()
                        .any(|k| l.contains(k))
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    })
    .join()
    .unwrap();
}

#[test]
fn the_backend_is_chosen_by_option_then_path() {
    use super::choose;
    let none = |_: &str| false;
    let ipt_only = |p: &str| p == "iptables-restore";
    assert_eq!(choose("", |_| true), Ok("nftables"));
    assert_eq!(choose("", ipt_only), Ok("iptables"));
    assert_eq!(choose("iptables", |_| true), Ok("iptables"));
    assert_eq!(choose("nftables", none), Ok("nftables"));
    assert!(choose("", none).unwrap_err().contains("neither"));
    assert!(
        choose("ebpf", none)
            .unwrap_err()
            .contains("KEEL_PROXY_BACKEND=ebpf")
    );
    // A PATH without nft (tools are found on PATH).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iptables-restore"), "").unwrap();
    assert_eq!(choose("", |p| dir.path().join(p).is_file()), Ok("iptables"));
}
