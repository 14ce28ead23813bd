//! Real bridges, veths and iptables rules, as root, inside namespaces the tests
//! create (`ip netns add`): one scratch namespace plays the host, others play
//! containers. Traffic only goes to 127.0.0.1 and addresses inside them.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use common::{NetNs, eventually, free_port, sh, wget};
use keel_net::{AttachRequest, HostKernel, NetError, Networks, parse_port_spec};

fn req(id: &str, name: &str, ns: &NetNs, network: &str) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        name: name.into(),
        hostname: id[..6.min(id.len())].into(),
        netns: ns.path(),
        network: network.into(),
        ..AttachRequest::default()
    }
}

/// Unmounts a bind mount on drop.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The real kernel, timing each operation (to see where attach/detach time goes).
#[derive(Default)]
struct Timed(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, std::time::Duration>>>,
);

impl Timed {
    fn time<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        *self.0.lock().unwrap().entry(op).or_default() += t.elapsed();
        r
    }
}

impl keel_net::Kernel for Timed {
    fn ensure_bridge(
        &self,
        n: &str,
        g: std::net::Ipv4Addr,
        p: u8,
        o: &str,
    ) -> Result<bool, NetError> {
        self.time("ensure_bridge", || HostKernel.ensure_bridge(n, g, p, o))
    }
    fn owned_links(&self) -> Result<Vec<(String, String)>, NetError> {
        HostKernel.owned_links()
    }
    fn link_addrs(&self, n: &str) -> Result<Vec<ipnet::Ipv4Net>, NetError> {
        self.time("link_addrs", || HostKernel.link_addrs(n))
    }
    fn remove_link_rules(&self, n: &str) -> Result<(), NetError> {
        HostKernel.remove_link_rules(n)
    }
    fn remove_empty_chains(&self) -> Result<(), NetError> {
        HostKernel.remove_empty_chains()
    }
    fn link_exists(&self, n: &str) -> bool {
        self.time("link_exists", || HostKernel.link_exists(n))
    }
    fn lock_host(&self) -> Result<Option<std::fs::File>, NetError> {
        HostKernel.lock_host()
    }
    fn delete_link(&self, n: &str) -> Result<(), NetError> {
        self.time("delete_link", || HostKernel.delete_link(n))
    }
    fn add_veth(&self, s: &keel_net::VethSpec) -> Result<(), NetError> {
        self.time("add_veth", || HostKernel.add_veth(s))
    }
    fn add_sublink(&self, s: &keel_net::SublinkSpec) -> Result<(), NetError> {
        HostKernel.add_sublink(s)
    }
    fn delete_link_in(&self, ns: &std::path::Path, i: &str) -> Result<(), NetError> {
        HostKernel.delete_link_in(ns, i)
    }
    fn ensure_chains(&self) -> Result<(), NetError> {
        self.time("ensure_chains", || HostKernel.ensure_chains())
    }
    fn add_rules(&self, r: &[keel_net::Rule]) -> Result<(), NetError> {
        self.time("add_rules", || HostKernel.add_rules(r))
    }
    fn remove_rules(&self, t: &str) -> Result<(), NetError> {
        self.time("remove_rules", || HostKernel.remove_rules(t))
    }
    fn delete_rules(&self, r: &[keel_net::Rule]) -> Result<(), NetError> {
        self.time("delete_rules", || HostKernel.delete_rules(r))
    }
    fn sysctl(&self, k: &str, v: &str) -> Result<(), NetError> {
        HostKernel.sysctl(k, v)
    }
    fn port_in_use(
        &self,
        ip: Option<std::net::Ipv4Addr>,
        p: u16,
        pr: keel_net::Protocol,
    ) -> Result<bool, NetError> {
        self.time("port_checks", || HostKernel.port_in_use(ip, p, pr))
    }
    fn free_port(
        &self,
        ip: Option<std::net::Ipv4Addr>,
        pr: keel_net::Protocol,
    ) -> Result<u16, NetError> {
        self.time("port_checks", || HostKernel.free_port(ip, pr))
    }
    fn routes(&self) -> Result<Vec<ipnet::Ipv4Net>, NetError> {
        self.time("routes", || HostKernel.routes())
    }
}

fn www(dir: &std::path::Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), body).unwrap();
}

/// What the host namespace shows of keel: links, iptables lines with keel tags.
fn leftovers() -> (Vec<String>, Vec<String>) {
    let links: Vec<String> = sh("ip", &["-o", "link", "show"])
        .lines()
        .filter(|l| l.contains("veth") || l.contains("keel"))
        .map(String::from)
        .collect();
    let rules: Vec<String> = sh("iptables-save", &[])
        .lines()
        .filter(|l| l.contains("--comment"))
        .map(String::from)
        .collect();
    (links, rules)
}

#[test]
fn user_network_peers_names_ports_and_cleanup() {
    let host = NetNs::new("host");
    let c1 = NetNs::new("c1");
    let c2 = NetNs::new("c2");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let site = tmp.path().join("site");
    www(&site, "hello from c1\n");

    host.run(|| {
        let nets = Networks::open(&root).unwrap();
        let info = nets.create("appnet", None).unwrap();
        assert_eq!(info.subnet.as_deref(), Some("172.18.0.0/16"));
        let bridge = info.bridge.clone().unwrap();
        assert!(sh("ip", &["-o", "addr", "show", "dev", &bridge]).contains("172.18.0.1/16"));

        let hp = free_port();
        let mut r1 = req("c1aaaaaaaaaa", "web", &c1, "appnet");
        r1.aliases = vec!["www".into()];
        r1.ports = parse_port_spec(&format!("{hp}:8080")).unwrap();
        let t = Instant::now();
        let a1 = nets.attach(&r1).unwrap();
        eprintln!("attach with a port took {:?}", t.elapsed());
        assert_eq!(a1.ip.to_string(), "172.18.0.2");
        assert_eq!(a1.ports[0].host_port, hp);
        let mut r2 = req("c2bbbbbbbbbb", "client", &c2, "appnet");
        r2.aliases = vec!["cl".into()];
        let t = Instant::now();
        let a2 = nets.attach(&r2).unwrap();
        eprintln!("attach without ports took {:?}", t.elapsed());
        assert_eq!(a2.ip.to_string(), "172.18.0.3");

        // eth0 inside the container namespace, with address and default route.
        let addr = c1.exec(&["ip", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains("172.18.0.2/16"), "{addr}");
        assert!(c1.exec(&["ip", "route"]).contains("default via 172.18.0.1"));
        assert!(c1.exec(&["ip", "link", "show", "eth0"]).contains(&a1.mac));

        // Peers reach each other by IP: ping and HTTP.
        c2.exec(&["busybox", "ping", "-c", "1", "-W", "3", "172.18.0.2"]);
        let _httpd = c1.spawn(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            site.to_str().unwrap(),
        ]);
        let got = eventually(|| wget(Some(&c2), "http://172.18.0.2:8080/"));
        assert_eq!(got, "hello from c1\n");

        // By name and alias through the hosts file keel-net keeps (bind-mounted
        // over /etc/hosts in a private mount namespace, as the runtime will).
        let hosts2 = std::fs::read_to_string(&a2.hosts_file).unwrap();
        assert!(hosts2.contains("172.18.0.2\tweb www\n"), "{hosts2}");
        let hosts1 = std::fs::read_to_string(&a1.hosts_file).unwrap();
        assert!(hosts1.contains("172.18.0.3\tclient cl\n"), "{hosts1}");
        for name in ["web", "www"] {
            let script = format!(
                "mount --bind {} /etc/hosts && timeout 5 busybox wget -qO- http://{name}:8080/",
                a2.hosts_file.display()
            );
            assert_eq!(
                c2.exec(&["unshare", "-m", "sh", "-c", &script]),
                "hello from c1\n"
            );
        }
        let resolv = std::fs::read_to_string(&a2.resolv_conf).unwrap();
        assert!(resolv.starts_with("nameserver "), "{resolv}");
        assert!(!resolv.contains("nameserver 127."), "{resolv}");

        // The published port serves on 127.0.0.1 and on the host's own address (the gateway).
        assert_eq!(
            eventually(|| wget(None, &format!("http://127.0.0.1:{hp}/"))),
            "hello from c1\n"
        );
        assert_eq!(
            wget(None, &format!("http://172.18.0.1:{hp}/")).unwrap(),
            "hello from c1\n"
        );

        // Containers reach published ports through the host's address too:
        // a peer, and the publishing container itself (hairpin).
        assert_eq!(
            wget(Some(&c2), &format!("http://172.18.0.1:{hp}/")).unwrap(),
            "hello from c1\n"
        );
        assert_eq!(
            wget(Some(&c1), &format!("http://172.18.0.1:{hp}/")).unwrap(),
            "hello from c1\n"
        );
        // Another machine: a namespace linked to the host by a veth, with no
        // route to the container subnet. It reaches the published port on the
        // host's address (PREROUTING DNAT), and the container reaches it through
        // outbound NAT (its replies could not come back otherwise).
        let outside = NetNs::new("ext");
        let ns_path = outside.path();
        sh(
            "ip",
            &[
                "link", "add", "kext0", "type", "veth", "peer", "name", "eth0", "netns",
            ]
            .into_iter()
            .chain([ns_path.to_str().unwrap()])
            .collect::<Vec<_>>(),
        );
        sh("ip", &["addr", "add", "10.99.0.1/24", "dev", "kext0"]);
        sh("ip", &["link", "set", "kext0", "up"]);
        outside.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
        outside.exec(&["ip", "link", "set", "eth0", "up"]);
        assert_eq!(
            eventually(|| wget(Some(&outside), &format!("http://10.99.0.1:{hp}/"))),
            "hello from c1\n"
        );
        // The host itself, to its own non-bridge address (OUTPUT DNAT).
        assert_eq!(
            wget(None, &format!("http://10.99.0.1:{hp}/")).unwrap(),
            "hello from c1\n"
        );
        let ext_site = tmp.path().join("ext-site");
        www(&ext_site, "hello from outside\n");
        let _ext_httpd = outside.spawn(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            ext_site.to_str().unwrap(),
        ]);
        assert_eq!(
            eventually(|| wget(Some(&c2), "http://10.99.0.2:8080/")),
            "hello from outside\n"
        );
        // Publishing on an address the host does not have is refused up front.
        let mut bad = req("c9cccccccccc", "bad", &c2, "appnet");
        bad.ports = parse_port_spec("10.200.0.1:8081:80").unwrap();
        let e = nets.attach(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot publish a port on 10.200.0.1: "),
            "{e}"
        );

        // Port conflicts are refused before anything is created.
        let c3 = NetNs::new("c3");
        let links_before = leftovers();
        let mut r3 = req("c3cccccccccc", "other", &c3, "appnet");
        r3.ports = parse_port_spec(&format!("127.0.0.1:{hp}:80")).unwrap();
        let e = nets.attach(&r3).unwrap_err();
        assert!(matches!(e, NetError::PortTaken { .. }), "{e}");
        assert!(e.to_string().contains("port is already allocated"), "{e}");
        assert!(e.to_string().contains("container web"), "{e}");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        r3.ports = parse_port_spec(&format!("{busy_port}:80")).unwrap();
        let e = nets.attach(&r3).unwrap_err();
        assert!(e.to_string().contains("in use on the host"), "{e}");
        assert_eq!(leftovers(), links_before);
        assert!(nets.attachment("c3cccccccccc").unwrap().is_none());
        assert_eq!(c3.exec(&["ip", "-o", "link"]).lines().count(), 1);

        // Removing the network is refused while containers are attached.
        let e = nets.remove("appnet").unwrap_err().to_string();
        assert!(e.contains("has active endpoints"), "{e}");

        // Detach updates the peer's hosts file in place (same inode: it is bind-mounted).
        let ino = std::fs::metadata(&a1.hosts_file).unwrap().ino();
        let t = Instant::now();
        nets.detach("c2bbbbbbbbbb").unwrap();
        eprintln!("detach without ports took {:?}", t.elapsed());
        let hosts1 = std::fs::read_to_string(&a1.hosts_file).unwrap();
        assert!(!hosts1.contains("client"), "{hosts1}");
        assert_eq!(std::fs::metadata(&a1.hosts_file).unwrap().ino(), ino);
        assert!(!a2.hosts_file.exists());
        nets.detach("c2bbbbbbbbbb").unwrap(); // idempotent
        // An admin flushed keel's nat chain: detach still removes the rest.
        sh("iptables", &["-t", "nat", "-F", "KEEL"]);
        assert!(sh("iptables-save", &["-t", "filter"]).contains("keel:c1aaaaaaaaaa"));
        let t = Instant::now();
        nets.detach("c1aaaaaaaaaa").unwrap();
        eprintln!("detach with a port took {:?}", t.elapsed());

        let (links, rules) = leftovers();
        assert!(links.iter().all(|l| !l.contains("veth")), "{links:?}");
        assert!(rules.iter().all(|l| !l.contains("keel:")), "{rules:?}");
        assert!(rules.iter().any(|l| l.contains("keel-net:")), "{rules:?}");
        let state = std::fs::read_dir(root.join("net"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>();
        assert!(
            !state.contains("c1aaaaaaaaaa") && !state.contains("172.18.0.2"),
            "{state}"
        );
        assert!(wget(None, &format!("http://127.0.0.1:{hp}/")).is_err());

        nets.remove("appnet").unwrap();
        let (links, rules) = leftovers();
        assert!(links.is_empty(), "{links:?}");
        assert!(rules.is_empty(), "{rules:?}");
        assert!(matches!(nets.inspect("appnet"), Err(NetError::NotFound(_))));
    });
}

#[test]
fn default_bridge_on_demand_without_peer_names() {
    let host = NetNs::new("host");
    let c1 = NetNs::new("c1");
    let c2 = NetNs::new("c2");
    let tmp = tempfile::tempdir().unwrap();
    host.run(|| {
        let nets = Networks::open(tmp.path()).unwrap();
        let br = nets.inspect("bridge").unwrap().bridge.unwrap();
        assert!(br.starts_with("keel0-"), "a test root never takes keel0: {br}");
        assert!(!sh("ip", &["-o", "link"]).contains(&br));
        // The runtime hands over a bind-mounted nsfs file under its root,
        // which may contain spaces.
        let nsdir = tmp.path().join("run netns");
        std::fs::create_dir_all(&nsdir).unwrap();
        let nsfile = nsdir.join("d1");
        std::fs::write(&nsfile, "").unwrap();
        sh(
            "mount",
            &[
                "--bind",
                c1.path().to_str().unwrap(),
                nsfile.to_str().unwrap(),
            ],
        );
        let _unmount = Unmount(nsfile.clone());
        let mut r1 = req("d1", "one", &c1, "bridge");
        r1.netns = nsfile.clone();
        let a1 = nets.attach(&r1).unwrap();
        let mut r2 = req("d2", "two", &c2, "bridge");
        r2.ports = parse_port_spec("127.0.0.1::5353/udp").unwrap();
        let a2 = nets.attach(&r2).unwrap();
        assert_eq!(a1.ip.to_string(), "172.17.0.2");
        assert_eq!(a1.gateway.to_string(), "172.17.0.1");
        assert!(sh("ip", &["-o", "addr", "show", "dev", &br]).contains("172.17.0.1/16"));
        c2.exec(&["busybox", "ping", "-c", "1", "-W", "3", &a1.ip.to_string()]);
        c1.exec(&["busybox", "ping", "-c", "1", "-W", "3", "172.17.0.1"]);
        // A published UDP port: an echo server in the container answers
        // datagrams sent to 127.0.0.1 on the host side.
        let _echo = c2.spawn(&[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5353))\nwhile True:\n d, a = s.recvfrom(100)\n s.sendto(b'got-' + d, a)",
        ]);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let target = format!("127.0.0.1:{}", a2.ports[0].host_port);
        let reply = eventually(|| {
            udp.send_to(b"ping", &target).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let (n, _) = udp.recv_from(&mut buf).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        assert_eq!(reply, "got-ping");
        // Docker's default bridge has no name resolution between containers.
        let h = std::fs::read_to_string(&a2.hosts_file).unwrap();
        assert!(
            h.contains("172.17.0.3\td2 two\n") && !h.contains("one"),
            "{h}"
        );
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        let nat = sh("iptables-save", &["-t", "nat"]);
        assert!(
            nat.lines()
                .any(|l| l.contains(&format!("-s 172.17.0.0/16 ! -o {br} "))
                    && l.ends_with("-j MASQUERADE")),
            "{nat}"
        );
        for e in ["host", "none"] {
            let err = nets.attach(&req("d3", "x", &c1, e)).unwrap_err();
            assert!(matches!(err, NetError::NotBridge(_)), "{err}");
        }
        assert!(
            nets.remove("bridge")
                .unwrap_err()
                .to_string()
                .contains("pre-defined")
        );
        nets.detach("d1").unwrap();
        nets.detach("d2").unwrap();
        let (links, rules) = leftovers();
        assert!(links.iter().all(|l| !l.contains("veth")), "{links:?}");
        assert!(rules.iter().all(|l| !l.contains("keel:")), "{rules:?}");
        // A root about to be deleted releases its bridge and rules.
        nets.release_idle().unwrap();
        assert_eq!(leftovers(), (vec![], vec![]));
        // ... and the next attach brings them back.
        let a = nets.attach(&req("d4", "four", &c1, "bridge")).unwrap();
        assert_eq!(a.ip.to_string(), "172.17.0.2");
        c1.exec(&["busybox", "ping", "-c", "1", "-W", "3", "172.17.0.1"]);
        nets.detach("d4").unwrap();
        nets.release_idle().unwrap();
        assert_eq!(leftovers(), (vec![], vec![]));
    });
}

#[test]
fn concurrent_attaches_get_distinct_addresses() {
    const N: usize = 8;
    let host = NetNs::new("host");
    let cs: Vec<NetNs> = (0..N).map(|i| NetNs::new(&format!("p{i}"))).collect();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    host.run(|| {
        Networks::open(&root)
            .unwrap()
            .create("many", Some("10.88.0.0/24"))
            .unwrap();
    });
    // Each thread enters the host namespace and opens its own Networks (its own
    // lock file descriptor, so flock serializes them exactly like processes).
    let ips: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let root = &root;
                let host = &host;
                s.spawn(move || {
                    host.run(|| {
                        let nets = Networks::open(root).unwrap();
                        let mut r = req(&format!("conc{i}"), &format!("n{i}"), c, "many");
                        r.ports = parse_port_spec("8080").unwrap();
                        let a = nets.attach(&r).unwrap();
                        assert_ne!(a.ports[0].host_port, 0);
                        a.ip.to_string()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), N, "{ips:?}");
    host.run(|| {
        let nets = Networks::open(&root).unwrap();
        let info = nets.inspect("many").unwrap();
        assert_eq!(info.containers.len(), N);
        let ports: BTreeSet<u16> = (0..N)
            .map(|i| nets.attachment(&format!("conc{i}")).unwrap().unwrap().ports[0].host_port)
            .collect();
        assert_eq!(ports.len(), N);
        // Every hosts file lists all seven peers.
        let a0 = nets.attachment("conc0").unwrap().unwrap();
        let h = std::fs::read_to_string(a0.hosts_file).unwrap();
        assert_eq!(h.lines().filter(|l| l.starts_with("10.88.0.")).count(), N);
        for i in 0..N {
            nets.detach(&format!("conc{i}")).unwrap();
        }
        let (links, rules) = leftovers();
        assert!(links.iter().all(|l| !l.contains("veth")), "{links:?}");
        assert!(rules.iter().all(|l| !l.contains("keel:")), "{rules:?}");
        assert_eq!(nets.prune().unwrap(), ["many"]);
        assert!(leftovers().0.is_empty());
    });
}

/// Twenty attach/detach cycles (with a published port) leave nothing behind;
/// prints the median times, which BENCHMARKS.md records.
#[test]
fn repeated_attach_detach_leaves_nothing_and_is_timed() {
    const N: usize = 20;
    let host = NetNs::new("host");
    let c = NetNs::new("rep");
    let tmp = tempfile::tempdir().unwrap();
    host.run(|| {
        let timed = Timed::default();
        let totals = timed.0.clone();
        let nets = Networks::with_kernel(tmp.path(), Box::new(timed)).unwrap();
        nets.create("rep", None).unwrap();
        // The first attach also sets up bridge and chains; not part of the timing.
        nets.attach(&req("warm", "warm", &c, "rep")).unwrap();
        nets.detach("warm").unwrap();
        let (mut att, mut det, mut att_p, mut det_p) = (vec![], vec![], vec![], vec![]);
        for i in 0..N {
            let mut r = req(&format!("rep{i}"), "r", &c, "rep");
            let with_port = i % 2 == 1;
            if with_port {
                r.ports = parse_port_spec("127.0.0.1::80").unwrap();
            }
            let t = Instant::now();
            let a = nets.attach(&r).unwrap();
            let ta = t.elapsed();
            assert_eq!(a.ip.to_string(), "172.18.0.2", "the lease is reused");
            let t = Instant::now();
            nets.detach(&r.container_id).unwrap();
            let td = t.elapsed();
            if with_port {
                att_p.push(ta);
                det_p.push(td);
            } else {
                att.push(ta);
                det.push(td);
            }
            assert_eq!(c.exec(&["ip", "-o", "link"]).lines().count(), 1);
        }
        let (links, rules) = leftovers();
        assert!(links.iter().all(|l| !l.contains("veth")), "{links:?}");
        assert!(rules.iter().all(|l| !l.contains("keel:")), "{rules:?}");
        let median = |v: &mut Vec<std::time::Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let totals = totals.lock().unwrap();
        eprintln!("kernel time over all cycles, by operation: {totals:?}");
        eprintln!(
            "median over {} cycles: attach {:?}, detach {:?}; with a published port: attach {:?}, detach {:?}",
            N / 2,
            median(&mut att),
            median(&mut det),
            median(&mut att_p),
            median(&mut det_p)
        );
    });
}

/// Several keel processes attaching at once (each its own process, lock file
/// descriptor and kernel calls) get distinct addresses and ports.
#[test]
fn concurrent_attaches_from_processes() {
    const N: usize = 6;
    let host = NetNs::new("host");
    let cs: Vec<NetNs> = (0..N).map(|i| NetNs::new(&format!("q{i}"))).collect();
    let tmp = tempfile::tempdir().unwrap();
    host.run(|| {
        Networks::open(tmp.path())
            .unwrap()
            .create("procs", None)
            .unwrap();
    });
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            std::process::Command::new("ip")
                .args(["netns", "exec", &host.name])
                .arg(&exe)
                .args([
                    "--exact",
                    "attach_child_process",
                    "--ignored",
                    "--nocapture",
                ])
                .env(
                    "KEEL_NET_CHILD",
                    format!("{}|{}|proc{i}", tmp.path().display(), c.path().display()),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ATTACHED "))
            .unwrap_or_else(|| panic!("no result in {stdout}"))
            .to_string();
        let (ip, port) = line.split_once(' ').unwrap();
        ips.insert(ip.to_string());
        ports.insert(port.to_string());
    }
    assert_eq!(ips.len(), N, "{ips:?}");
    assert_eq!(ports.len(), N, "{ports:?}");
    host.run(|| {
        let nets = Networks::open(tmp.path()).unwrap();
        assert_eq!(nets.inspect("procs").unwrap().containers.len(), N);
        for i in 0..N {
            nets.detach(&format!("proc{i}")).unwrap();
        }
        nets.remove("procs").unwrap();
        let (links, rules) = leftovers();
        assert!(links.is_empty(), "{links:?}");
        assert!(rules.is_empty(), "{rules:?}");
    });
}

/// The body of one process of `concurrent_attaches_from_processes`; runs only
/// when that test starts it (inside the scratch host namespace).
#[test]
#[ignore = "started by concurrent_attaches_from_processes"]
fn attach_child_process() {
    let spec =
        std::env::var("KEEL_NET_CHILD").expect("started by concurrent_attaches_from_processes");
    let mut parts = spec.split('|');
    let (root, ns, id) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let nets = Networks::open(std::path::Path::new(root)).unwrap();
    let a = nets
        .attach(&AttachRequest {
            container_id: id.into(),
            name: id.into(),
            hostname: id.into(),
            netns: ns.into(),
            network: "procs".into(),
            ports: parse_port_spec("80").unwrap(),
            ..AttachRequest::default()
        })
        .unwrap();
    println!("ATTACHED {} {}", a.ip, a.ports[0].host_port);
}

/// Two keel roots on one host: each has its own default bridge, and the one
/// that comes second moves its subnet off the first one's.
#[test]
fn two_roots_do_not_share_a_default_bridge() {
    let host = NetNs::new("host");
    let c1 = NetNs::new("r1");
    let c2 = NetNs::new("r2");
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    host.run(|| {
        // Both initialize before either bridge exists: both pick 172.17.0.0/16.
        let n1 = Networks::open(t1.path()).unwrap();
        let n2 = Networks::open(t2.path()).unwrap();
        assert_eq!(
            n1.inspect("bridge").unwrap().subnet,
            n2.inspect("bridge").unwrap().subnet
        );
        let a1 = n1.attach(&req("x1", "x1", &c1, "bridge")).unwrap();
        let a2 = n2.attach(&req("x2", "x2", &c2, "bridge")).unwrap();
        assert_eq!(a1.ip.to_string(), "172.17.0.2");
        assert_eq!(a2.ip.to_string(), "172.18.0.2");
        let (b1, b2) = (
            n1.inspect("bridge").unwrap().bridge.unwrap(),
            n2.inspect("bridge").unwrap().bridge.unwrap(),
        );
        assert_ne!(b1, b2);
        assert_eq!(
            n2.inspect("bridge").unwrap().subnet.as_deref(),
            Some("172.18.0.0/16")
        );
        assert!(sh("ip", &["-o", "addr", "show", "dev", &b2]).contains("172.18.0.1/16"));
        n1.detach("x1").unwrap();
        n2.detach("x2").unwrap();
    });
}

/// The quickstart's stale bridge, with the real kernel: a root's directory
/// is deleted while its default bridge, its rules and a published port's
/// rules stay; a new root at the same path removes them (they carry its
/// path's mark) and comes back on the same subnet. A bridge of its name on
/// another subnet without a mark (an older keel's) is re-addressed by the
/// first container. Another root's bridge stays.
#[test]
fn a_new_root_at_the_same_path_prunes_and_readdresses() {
    let host = NetNs::new("host");
    let (c1, c2, c3) = (NetNs::new("s1"), NetNs::new("s2"), NetNs::new("s3"));
    let tmp = tempfile::tempdir().unwrap();
    let (root, other) = (tmp.path().join("qs root"), tmp.path().join("other"));
    host.run(|| {
        let old = Networks::open(&root).unwrap();
        let mut r = req("s1aaaa", "web", &c1, "bridge");
        r.ports = parse_port_spec("127.0.0.1::80").unwrap();
        old.attach(&r).unwrap();
        let br = old.inspect("bridge").unwrap().bridge.unwrap();
        let old_id = old.inspect("bridge").unwrap().id;
        let link = sh("ip", &["-d", "link", "show", "dev", &br]);
        assert!(
            link.contains(&format!("alias keel:{}", root.display())),
            "{link}"
        );
        let keep = Networks::open(&other).unwrap();
        keep.attach(&req("k1", "k1", &c2, "bridge")).unwrap();
        let kept = keep.inspect("bridge").unwrap().bridge.unwrap();
        // The container was killed (never detached, its namespace gone) and
        // the root deleted.
        sh("ip", &["netns", "del", &c1.name]);
        drop(old);
        std::fs::remove_dir_all(&root).unwrap();

        let new = Networks::open(&root).unwrap();
        let info = new.inspect("bridge").unwrap();
        assert_eq!(info.subnet.as_deref(), Some("172.17.0.0/16"));
        assert!(!sh("ip", &["-o", "link"]).contains(&format!("{br}:")));
        let (_, rules) = leftovers();
        assert!(
            rules
                .iter()
                .all(|l| !l.contains("keel:s1aaaa") && !l.contains(&old_id[..12])),
            "{rules:?}"
        );
        assert!(rules.iter().any(|l| l.contains(&kept)), "{rules:?}");
        assert!(sh("ip", &["-o", "link"]).contains(&format!("{kept}:")));
        keep.detach("k1").unwrap();
        keep.release_idle().unwrap();

        // An unmarked bridge of this root's name on another subnet.
        sh("ip", &["link", "add", &br, "type", "bridge"]);
        sh("ip", &["addr", "add", "10.9.0.1/24", "dev", &br]);
        let a = new.attach(&req("s2bbbb", "two", &c3, "bridge")).unwrap();
        assert_eq!(a.ip.to_string(), "172.17.0.2");
        let addr = sh("ip", &["-o", "-4", "addr", "show", "dev", &br]);
        assert!(
            addr.contains("172.17.0.1/16") && !addr.contains("10.9.0.1"),
            "{addr}"
        );
        c3.exec(&["busybox", "ping", "-c", "1", "-W", "3", "172.17.0.1"]);
        new.detach("s2bbbb").unwrap();
        new.release_idle().unwrap();
        assert_eq!(leftovers(), (vec![], vec![]));
        // With no bridge of any root left, keel's empty chains go too.
        let all = sh("iptables-save", &[]);
        assert!(!all.contains("KEEL"), "{all}");
    });
}
