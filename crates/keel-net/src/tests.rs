//! Unit tests of [`Networks`] on a recording fake [`Kernel`].

use super::*;
use std::sync::{Arc, Mutex};

/// A kernel that records what it is asked and fails where told to.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    busy_ports: Vec<u16>,
    free_ports: Mutex<Vec<u16>>,
    routes: Vec<Ipv4Net>,
    fail_veth: bool,
    bridges: Mutex<BTreeSet<String>>,
    /// Bridges' address and owner mark (as `ip -j` shows them).
    marks: Mutex<BTreeMap<String, (Ipv4Net, String)>>,
    /// The rules in place.
    rules: Mutex<Vec<Rule>>,
}

struct Shared(Arc<Fake>);

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Kernel for Shared {
    fn ensure_bridge(
        &self,
        name: &str,
        gw: Ipv4Addr,
        p: u8,
        owner: &str,
    ) -> Result<bool, NetError> {
        let new = self.0.bridges.lock().unwrap().insert(name.to_string());
        if new {
            self.0.log(format!("bridge {name} {gw}/{p}"));
            self.0.marks.lock().unwrap().insert(
                name.to_string(),
                (Ipv4Net::new(gw, p).unwrap(), owner.to_string()),
            );
        }
        Ok(new)
    }
    fn owned_links(&self) -> Result<Vec<(String, String)>, NetError> {
        Ok(self
            .0
            .marks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (_, o))| !o.is_empty())
            .map(|(n, (_, o))| (n.clone(), o.clone()))
            .collect())
    }
    fn link_addrs(&self, name: &str) -> Result<Vec<Ipv4Net>, NetError> {
        Ok(self
            .0
            .marks
            .lock()
            .unwrap()
            .get(name)
            .map(|(a, _)| *a)
            .into_iter()
            .collect())
    }
    fn remove_link_rules(&self, name: &str) -> Result<(), NetError> {
        self.0.log(format!("-link-rules {name}"));
        let mut rules = self.0.rules.lock().unwrap();
        let tags: BTreeSet<String> = rules
            .iter()
            .filter(|r| {
                r.spec
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| matches!(w[0], "-i" | "-o") && w[1] == name)
            })
            .map(|r| r.tag.clone())
            .collect();
        rules.retain(|r| !tags.contains(&r.tag));
        Ok(())
    }
    fn link_exists(&self, name: &str) -> bool {
        self.0.bridges.lock().unwrap().contains(name)
    }
    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        self.0.bridges.lock().unwrap().remove(name);
        self.0.marks.lock().unwrap().remove(name);
        self.0.log(format!("del {name}"));
        Ok(())
    }
    fn add_veth(&self, s: &VethSpec) -> Result<(), NetError> {
        if self.0.fail_veth {
            return Err(NetError::CreateVeth {
                name: s.host_if.clone(),
                reason: "injected".into(),
            });
        }
        self.0.log(format!(
            "veth {} {}/{} via {} as {}{}",
            s.bridge,
            s.ip,
            s.prefix_len,
            s.gateway,
            s.ifname,
            if s.default_route { " default" } else { "" }
        ));
        Ok(())
    }
    fn add_sublink(&self, s: &SublinkSpec) -> Result<(), NetError> {
        self.0.log(format!(
            "{} {} on {} {}/{} as {}{}",
            s.kind,
            s.mode,
            s.parent,
            s.ip,
            s.prefix_len,
            s.ifname,
            s.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        ));
        Ok(())
    }
    fn delete_link_in(&self, netns: &std::path::Path, ifname: &str) -> Result<(), NetError> {
        self.0.log(format!("del {ifname} in {}", netns.display()));
        Ok(())
    }
    fn ensure_chains(&self) -> Result<(), NetError> {
        self.0.log("chains".into());
        Ok(())
    }
    fn add_rules(&self, rules: &[Rule]) -> Result<(), NetError> {
        for r in rules {
            self.0
                .log(format!("+{} {} {} [{}]", r.table, r.chain, r.spec, r.tag));
        }
        self.0.rules.lock().unwrap().extend_from_slice(rules);
        Ok(())
    }
    fn remove_rules(&self, tag: &str) -> Result<(), NetError> {
        self.0.log(format!("-rules [{tag}]"));
        self.0.rules.lock().unwrap().retain(|r| r.tag != tag);
        Ok(())
    }
    fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        self.0.log(format!("sysctl {key}={value}"));
        Ok(())
    }
    fn port_in_use(
        &self,
        _ip: Option<Ipv4Addr>,
        port: u16,
        _p: Protocol,
    ) -> Result<bool, NetError> {
        Ok(self.0.busy_ports.contains(&port))
    }
    fn free_port(&self, _ip: Option<Ipv4Addr>, _p: Protocol) -> Result<u16, NetError> {
        Ok(self
            .0
            .free_ports
            .lock()
            .unwrap()
            .pop()
            .expect("test offers enough ports"))
    }
    fn ensure_vxlan_port(&self, s: &VxlanPort) -> Result<(), NetError> {
        self.0.log(format!(
            "vxlan {} vni {} local {} port {} on {} mtu {:?}",
            s.name, s.vni, s.local, s.port, s.bridge, s.mtu
        ));
        self.0
            .marks
            .lock()
            .unwrap()
            .insert(s.name.clone(), (Ipv4Net::default(), s.owner.clone()));
        Ok(())
    }
    fn vxlan_entries(&self, add: &[vxlan::Entry], del: &[vxlan::Entry]) -> Result<(), NetError> {
        let (ai, ab) = vxlan::batch_lines(add, true);
        let (di, db) = vxlan::batch_lines(del, false);
        for l in [di, db, ai, ab].iter().flat_map(|b| b.lines()) {
            self.0.log(l.to_string());
        }
        Ok(())
    }
    fn routes(&self) -> Result<Vec<Ipv4Net>, NetError> {
        // A bridge's address brings its subnet's route, as in the kernel.
        let mut r = self.0.routes.clone();
        r.extend(
            self.0
                .marks
                .lock()
                .unwrap()
                .values()
                .map(|(a, _)| a.trunc()),
        );
        Ok(r)
    }
}

fn setup(fake: Fake) -> (tempfile::TempDir, Arc<Fake>, Networks) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(fake);
    let nets = Networks::with_kernel(dir.path(), Box::new(Shared(fake.clone())))
        .unwrap()
        .with_host_resolv_conf(dir.path().join("no-resolv.conf"));
    (dir, fake, nets)
}

fn req(id: &str, net: &str, ports: &str) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        name: format!("n-{id}"),
        hostname: id.into(),
        netns: "/nonexistent".into(),
        network: net.into(),
        aliases: vec![format!("a-{id}")],
        ports: if ports.is_empty() {
            Vec::new()
        } else {
            parse_port_spec(ports).unwrap()
        },
        ..AttachRequest::default()
    }
}

/// Issue 15 (found by the parity suite): with every pool subnet taken on
/// the host, even `network create --subnet` failed ("no free subnet left in
/// the default address pools"), because the default bridge's subnet was
/// picked eagerly. Only what needs a pool subnet fails now.
#[test]
fn exhausted_pools_fail_only_what_needs_them() {
    let (_d, _fake, nets) = setup(Fake {
        routes: vec![
            "172.16.0.0/12".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ],
        ..Fake::default()
    });
    let n = nets.create("own", Some("10.250.1.0/24")).unwrap();
    assert_eq!(n.subnet.as_deref(), Some("10.250.1.0/24"));
    assert!(matches!(
        nets.create("pooled", None),
        Err(NetError::PoolExhausted)
    ));
    assert!(matches!(
        nets.attach(&req("c1", "bridge", "")),
        Err(NetError::PoolExhausted)
    ));
    nets.attach(&req("c2", "own", "")).unwrap();
}

#[test]
fn default_bridge_avoids_host_routes_and_is_set_up_once() {
    let (_d, fake, nets) = setup(Fake {
        routes: vec!["172.17.0.0/24".parse().unwrap()],
        ..Fake::default()
    });
    let a = nets.attach(&req("c1", "bridge", "")).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(172, 18, 0, 2));
    assert_eq!(a.gateway, Ipv4Addr::new(172, 18, 0, 1));
    let b = nets.attach(&req("c2", "bridge", "")).unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(172, 18, 0, 3));
    let calls = fake.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("bridge keel0"))
            .count(),
        1,
        "{calls:?}"
    );
    assert!(calls.contains(&"sysctl net.ipv4.ip_forward=1".to_string()));
    let br = nets.inspect("bridge").unwrap().bridge.unwrap();
    assert!(br.starts_with("keel0-") && br.len() <= 15, "{br}");
    assert!(calls.contains(&format!("sysctl net.ipv4.conf.{br}.route_localnet=1")));
    assert!(
        calls
            .iter()
            .any(|c| c.contains(&format!("-s 172.18.0.0/16 ! -o {br} -j MASQUERADE")))
    );
    // A user network then skips both the host's route and the default bridge.
    let n = nets.create("u", None).unwrap();
    assert_eq!(n.subnet.as_deref(), Some("172.19.0.0/16"));
    // resolv.conf falls back to public resolvers when the host has none usable.
    let r = std::fs::read_to_string(a.resolv_conf).unwrap();
    assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
}

#[test]
fn ports_conflicts_and_free_port_selection() {
    let (_d, fake, nets) = setup(Fake {
        busy_ports: vec![8999, 9000],
        free_ports: Mutex::new(vec![40001, 40000, 8080]),
        ..Fake::default()
    });
    nets.create("u", Some("10.5.0.0/24")).unwrap();
    let a = nets.attach(&req("c1", "u", "8080:80")).unwrap();
    assert_eq!(a.ports[0].host_port, 8080);
    let rules: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("[keel:c1]"))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(
        rules[0],
        "+nat KEEL -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.5.0.2:80 [keel:c1]"
    );
    assert!(
        rules[1].starts_with("+filter KEEL-FORWARD -d 10.5.0.2/32 ! -i keel-"),
        "{rules:?}"
    );
    // Same port, any address: taken by c1. Another address-specific mapping too.
    for spec in ["8080:81", "127.0.0.1:8080:81"] {
        let e = nets.attach(&req("c2", "u", spec)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "bind for {}:8080/tcp failed: port is already allocated (published by container n-c1)",
                if spec.starts_with("127") {
                    "127.0.0.1"
                } else {
                    "0.0.0.0"
                }
            )
        );
    }
    // UDP on the same number is a different port.
    nets.attach(&req("c2", "u", "8080:81/udp")).unwrap();
    let e = nets.attach(&req("c3", "u", "9000:80")).unwrap_err();
    assert!(e.to_string().contains("in use on the host"), "{e}");
    let e = nets.attach(&req("c3", "u", "[::1]:9001:80")).unwrap_err();
    assert!(matches!(e, NetError::Ipv6Unsupported(_)));
    // Refused attaches created nothing: no veth, no lease.
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| c.starts_with("veth"))
            .count(),
        2
    );
    assert!(nets.attachment("c3").unwrap().is_none());
    // A host range: the first port neither published nor busy on the host.
    let a = nets.attach(&req("r1", "u", "8079-9001:80")).unwrap();
    assert_eq!(a.ports[0].host_port, 8079);
    assert_eq!(a.ports[0].host_port_end, 0);
    let a = nets.attach(&req("r2", "u", "8079-9001:80")).unwrap();
    assert_eq!(a.ports[0].host_port, 8081, "8080 is published by c1");
    let e = nets.attach(&req("r3", "u", "8999-9000:80")).unwrap_err();
    assert!(matches!(e, NetError::PortRangeTaken { .. }), "{e}");
    nets.detach("r1").unwrap();
    nets.detach("r2").unwrap();
    // Host port 0: the kernel's offer 8080 is already published, so the next one is taken.
    let a = nets.attach(&req("c3", "u", "80")).unwrap();
    assert_eq!(a.ports[0].host_port, 40000);
    assert_eq!(a.ip, Ipv4Addr::new(10, 5, 0, 4));
}

#[test]
fn failed_kernel_step_leaves_no_lease() {
    let (d, fake, nets) = setup(Fake {
        fail_veth: true,
        ..Fake::default()
    });
    nets.create("u", None).unwrap();
    let e = nets.attach(&req("c1", "u", "8080:80")).unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    assert!(nets.attachment("c1").unwrap().is_none());
    assert!(!d.path().join("net/containers/c1").exists());
    assert!(nets.inspect("u").unwrap().containers.is_empty());
    assert!(fake.calls().iter().any(|c| c.starts_with("del veth")));
    nets.remove("u").unwrap();
}

#[test]
fn hosts_files_follow_peers_and_detach_is_idempotent() {
    let (_d, fake, nets) = setup(Fake::default());
    nets.create("u", Some("10.6.0.0/24")).unwrap();
    let a1 = nets.attach(&req("c1", "u", "")).unwrap();
    assert!(matches!(
        nets.attach(&req("c1", "u", "")),
        Err(NetError::AlreadyAttached { .. })
    ));
    nets.attach(&req("c2", "u", "")).unwrap();
    let h = std::fs::read_to_string(&a1.hosts_file).unwrap();
    assert!(
        h.ends_with("10.6.0.2\tc1 n-c1 a-c1\n10.6.0.3\tn-c2 a-c2\n"),
        "{h}"
    );
    let e = nets.remove("u").unwrap_err().to_string();
    assert!(
        e.starts_with("network u id ") && e.ends_with(" has active endpoints"),
        "{e}"
    );
    nets.detach("c2").unwrap();
    nets.detach("c2").unwrap();
    let h = std::fs::read_to_string(&a1.hosts_file).unwrap();
    assert!(!h.contains("c2"), "{h}");
    // No ports: detach does not touch iptables.
    assert!(!fake.calls().iter().any(|c| c == "-rules [keel:c2]"));
    // The freed address is handed out again.
    assert_eq!(
        nets.attach(&req("c3", "u", "")).unwrap().ip,
        Ipv4Addr::new(10, 6, 0, 3)
    );
}

#[test]
fn several_networks_per_container() {
    let (_d, fake, nets) = setup(Fake {
        free_ports: Mutex::new(vec![40000]),
        ..Fake::default()
    });
    nets.create("front", Some("10.8.0.0/24")).unwrap();
    nets.create("back", Some("10.9.0.0/24")).unwrap();
    let web = nets.attach(&req("web", "front", "")).unwrap();
    let app = nets.attach(&req("app", "back", "")).unwrap();
    let p1 = nets.attach(&req("proxy", "front", "80")).unwrap();
    let mut second = req("proxy", "back", "");
    second.aliases = vec!["gateway".into()];
    let p2 = nets.attach(&second).unwrap();
    assert_eq!((p1.ifname.as_str(), p2.ifname.as_str()), ("eth0", "eth1"));
    assert_eq!(p2.ip, Ipv4Addr::new(10, 9, 0, 3));
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.ends_with("10.8.0.3/24 via 10.8.0.1 as eth0 default")),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.ends_with("10.9.0.3/24 via 10.9.0.1 as eth1")),
        "{calls:?}"
    );
    // The proxy sees both sides; each side sees the proxy under that network's aliases.
    let h = std::fs::read_to_string(&p1.hosts_file).unwrap();
    assert!(
        h.ends_with("10.8.0.3\tproxy n-proxy a-proxy\n10.9.0.3\tn-proxy gateway\n10.8.0.2\tn-web a-web\n10.9.0.2\tn-app a-app\n"),
        "{h}"
    );
    let h = std::fs::read_to_string(&web.hosts_file).unwrap();
    assert!(
        h.contains("10.8.0.3\tn-proxy a-proxy\n") && !h.contains("app"),
        "{h}"
    );
    let h = std::fs::read_to_string(&app.hosts_file).unwrap();
    assert!(
        h.contains("10.9.0.3\tn-proxy gateway\n") && !h.contains("web"),
        "{h}"
    );
    // Twice on one network is refused, with Docker's message.
    let e = nets.attach(&req("proxy", "back", "")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "endpoint with name n-proxy already exists in network back"
    );
    let all = nets.attachments("proxy").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].network, "front");
    assert_eq!(all[0].ports[0].host_port, 40000);
    // Disconnecting one network leaves the other, and the peers forget it.
    nets.detach_network("proxy", "back").unwrap();
    assert!(matches!(
        nets.detach_network("proxy", "back"),
        Err(NetError::NotAttached { .. })
    ));
    let h = std::fs::read_to_string(&app.hosts_file).unwrap();
    assert!(!h.contains("proxy"), "{h}");
    let h = std::fs::read_to_string(&p1.hosts_file).unwrap();
    assert!(!h.contains("app") && h.contains("web"), "{h}");
    assert_eq!(nets.attachments("proxy").unwrap().len(), 1);
    // A reconnect takes the free interface name again.
    assert_eq!(nets.attach(&second).unwrap().ifname, "eth1");
    nets.detach("proxy").unwrap();
    assert!(nets.attachments("proxy").unwrap().is_empty());
    assert!(nets.inspect("back").unwrap().containers.len() == 1);
    assert!(calls.len() < fake.calls().len());
}

#[test]
fn static_addresses_follow_dockers_rules() {
    let (_d, _fake, nets) = setup(Fake::default());
    nets.create("sub", Some("10.10.0.0/24")).unwrap();
    nets.create("auto", None).unwrap();
    let with_ip = |id: &str, net: &str, ip: &str| {
        let mut r = req(id, net, "");
        r.ip = Some(ip.parse().unwrap());
        nets.attach(&r)
    };
    assert_eq!(
        with_ip("a", "sub", "10.10.0.50").unwrap().ip,
        Ipv4Addr::new(10, 10, 0, 50)
    );
    let msg = |r: Result<Attachment, NetError>| r.unwrap_err().to_string();
    assert_eq!(
        msg(with_ip("b", "sub", "10.10.0.50")),
        "address 10.10.0.50 is already in use on network sub"
    );
    assert!(msg(with_ip("b", "sub", "10.11.0.5")).contains("does not belong"));
    assert!(msg(with_ip("b", "sub", "10.10.0.1")).contains("does not belong"));
    assert_eq!(
        msg(with_ip("b", "auto", "172.19.0.9")),
        "user specified IP address is supported only when connecting to networks with user configured subnets"
    );
    assert_eq!(
        msg(with_ip("b", "bridge", "172.18.0.9")),
        "user specified IP address is supported on user defined networks only"
    );
    // Dynamic addresses step around the static one.
    for _ in 0..2 {
        nets.attach(&req("c", "sub", "")).unwrap();
        nets.detach("c").unwrap();
    }
    assert_eq!(
        nets.attach(&req("c", "sub", "")).unwrap().ip,
        Ipv4Addr::new(10, 10, 0, 2)
    );
    assert!(nets.attachment("b").unwrap().is_none());
}

#[test]
fn extra_hosts_and_dns_land_in_the_files() {
    let (d, _fake, nets) = setup(Fake::default());
    std::fs::write(
        d.path().join("no-resolv.conf"),
        "nameserver 10.0.0.2\nsearch host.test\n",
    )
    .unwrap();
    nets.create("u", Some("10.12.0.0/24")).unwrap();
    let mut r = req("c1", "u", "");
    r.extra_hosts = vec![
        parse_extra_host("db:10.1.2.3").unwrap(),
        parse_extra_host("host.keel.internal:host-gateway").unwrap(),
    ];
    r.dns = DnsConfig {
        servers: vec!["10.0.0.53".into()],
        search: vec!["svc.test".into()],
        options: vec!["ndots:1".into()],
    };
    let a = nets.attach(&r).unwrap();
    let h = std::fs::read_to_string(&a.hosts_file).unwrap();
    assert!(
        h.contains("10.1.2.3\tdb\n10.12.0.1\thost.keel.internal\n10.12.0.2\tc1 "),
        "{h}"
    );
    // A peer joining rewrites the file and keeps the extra lines.
    nets.attach(&req("c2", "u", "")).unwrap();
    let h = std::fs::read_to_string(&a.hosts_file).unwrap();
    assert!(h.contains("10.1.2.3\tdb\n") && h.contains("n-c2"), "{h}");
    let rc = std::fs::read_to_string(&a.resolv_conf).unwrap();
    assert_eq!(
        rc,
        "nameserver 10.0.0.53\nsearch svc.test\noptions ndots:1\n"
    );
    r.container_id = "c3".into();
    r.dns.servers = vec!["bogus".into()];
    assert!(matches!(nets.attach(&r), Err(NetError::InvalidDns(_))));
}

#[test]
fn create_validates_and_persists() {
    let (d, _fake, nets) = setup(Fake::default());
    assert!(matches!(
        nets.create("bridge", None),
        Err(NetError::NameExists(_))
    ));
    assert!(matches!(
        nets.create("-x", None),
        Err(NetError::InvalidName(_))
    ));
    nets.create("a", Some("10.7.0.0/16")).unwrap();
    let e = nets
        .create("b", Some("10.7.3.0/24"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "subnet 10.7.3.0/24 overlaps with network a (10.7.0.0/16)"
    );
    assert!(matches!(nets.remove("host"), Err(NetError::Predefined(_))));
    // A second handle (another process) sees the same state.
    let again = Networks::with_kernel(d.path(), Box::new(HostKernel)).unwrap();
    let names: Vec<String> = again.list().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["bridge", "host", "none", "a"]);
    let id = again.inspect("a").unwrap().id;
    assert_eq!(again.inspect(&id[..5]).unwrap().name, "a");
    assert!(matches!(
        nets.attach(&req("bad/id", "a", "")),
        Err(NetError::InvalidContainerId(_))
    ));
}

fn opts(f: impl FnOnce(&mut NetworkOptions)) -> NetworkOptions {
    let mut o = NetworkOptions::default();
    f(&mut o);
    o
}

#[test]
fn internal_network_has_no_way_out() {
    let (_d, fake, nets) = setup(Fake {
        free_ports: Mutex::new(vec![40000]),
        ..Fake::default()
    });
    let info = nets
        .create_with("sealed", &opts(|o| o.internal = true))
        .unwrap();
    assert!(info.internal);
    let br = info.bridge.unwrap();
    let calls = fake.calls();
    // No NAT at all, and forwarding in or out of the bridge dropped.
    assert!(!calls.iter().any(|c| c.contains("MASQUERADE")), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains(&format!("-i {br} ! -o {br} -j DROP"))),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains(&format!("! -i {br} -o {br} -j DROP"))),
        "{calls:?}"
    );
    // No default route in the container, and ports are not published (docker's behaviour).
    let a = nets.attach(&req("c1", "sealed", "8080:80")).unwrap();
    assert!(a.ports.is_empty());
    let veth = fake
        .calls()
        .into_iter()
        .rfind(|c| c.starts_with("veth"))
        .unwrap();
    assert!(!veth.ends_with(" default"), "{veth}");
    assert!(!fake.calls().iter().any(|c| c.contains("DNAT")));
    // A bridge with NAT switched off by option keeps the rest of its rules.
    let calls_before = fake.calls().len();
    nets.create_with(
        "nonat",
        &opts(|o| {
            o.options
                .insert(state::OPT_MASQUERADE.into(), "false".into());
        }),
    )
    .unwrap();
    let new: Vec<String> = fake.calls()[calls_before..].to_vec();
    assert!(
        !new.iter()
            .any(|c| c.contains("! -o") && c.contains("MASQUERADE")),
        "{new:?}"
    );
    assert!(new.iter().any(|c| c.contains("-j ACCEPT")), "{new:?}");
}

#[test]
#[allow(clippy::many_single_char_names)]
fn gateway_ip_range_aux_addresses_and_labels() {
    let (d, fake, nets) = setup(Fake::default());
    let o = opts(|o| {
        o.subnet = Some("10.20.0.0/16".into());
        o.gateway = Some("10.20.0.254".into());
        o.ip_range = Some("10.20.5.0/30".into());
        o.aux_addresses.insert("router".into(), "10.20.5.1".into());
        o.labels.insert("team".into(), "blue".into());
    });
    let info = nets.create_with("lab", &o).unwrap();
    assert_eq!(info.gateway, Some(Ipv4Addr::new(10, 20, 0, 254)));
    assert_eq!(info.ip_range.as_deref(), Some("10.20.5.0/30"));
    assert_eq!(info.aux_addresses["router"], "10.20.5.1");
    assert_eq!(info.labels["team"], "blue");
    // The bridge carries the chosen gateway.
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.starts_with("bridge ") && c.ends_with(" 10.20.0.254/16")),
        "{:?}",
        fake.calls()
    );
    let ips: Vec<String> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| nets.attach(&req(c, "lab", "")).unwrap().ip.to_string())
        .collect();
    // From the range only, skipping the auxiliary address.
    assert_eq!(ips, ["10.20.5.0", "10.20.5.2", "10.20.5.3"]);
    let a = nets.attachment("c1").unwrap().unwrap();
    assert_eq!(a.gateway.to_string(), "10.20.0.254");
    assert!(matches!(
        nets.attach(&req("c4", "lab", "")),
        Err(NetError::AddressesExhausted(_))
    ));
    // A static address may lie outside the range, but not on the gateway or an aux address.
    let mut r = req("c5", "lab", "");
    r.ip = Some(Ipv4Addr::new(10, 20, 9, 9));
    assert_eq!(nets.attach(&r).unwrap().ip.to_string(), "10.20.9.9");
    r.container_id = "c6".into();
    r.ip = Some(Ipv4Addr::new(10, 20, 0, 254));
    assert!(matches!(
        nets.attach(&r),
        Err(NetError::IpOutsideSubnet { .. })
    ));
    r.ip = Some(Ipv4Addr::new(10, 20, 5, 1));
    assert!(matches!(nets.attach(&r), Err(NetError::IpInUse { .. })));
    // Persisted: another handle sees all of it.
    let again = Networks::with_kernel(d.path(), Box::new(HostKernel)).unwrap();
    let i = again.inspect("lab").unwrap();
    assert_eq!(
        (i.gateway, i.ip_range, i.labels, i.aux_addresses),
        (info.gateway, info.ip_range, info.labels, info.aux_addresses)
    );
}

#[test]
fn create_refuses_what_docker_refuses() {
    let (_d, _fake, nets) = setup(Fake::default());
    let err = |o: NetworkOptions| nets.create_with("x", &o).unwrap_err().to_string();
    assert!(err(opts(|o| o.gateway = Some("10.1.0.1".into()))).contains("corresponding subnet"),);
    let e = err(opts(|o| {
        o.subnet = Some("10.1.0.0/24".into());
        o.gateway = Some("10.2.0.1".into());
    }));
    assert!(
        e.contains("gateway 10.2.0.1 is not a host address of subnet 10.1.0.0/24"),
        "{e}"
    );
    let e = err(opts(|o| {
        o.subnet = Some("10.1.0.0/24".into());
        o.ip_range = Some("10.1.1.0/28".into());
    }));
    assert!(e.contains("not inside subnet"), "{e}");
    let e = err(opts(|o| o.driver = "weave".into()));
    assert!(e.contains("driver \"weave\" is not supported"), "{e}");
    // An overlay network comes from the cluster, never from a bare create.
    let e = err(opts(|o| o.driver = "overlay".into()));
    assert!(e.contains("made by the cluster"), "{e}");
    let e = err(opts(|o| o.ipv6 = true));
    assert!(e.contains("IPv6"), "{e}");
    let e = err(opts(|o| {
        o.options
            .insert("com.docker.network.driver.mtu".into(), "9x".into());
    }));
    assert!(e.contains("expected an MTU from 68 to 65535"), "{e}");
    let e = err(opts(|o| {
        o.options
            .insert("com.docker.network.bogus".into(), "1".into());
    }));
    assert!(e.contains("not supported on bridge networks"), "{e}");
    let e = err(opts(|o| o.driver = "macvlan".into()));
    assert!(e.contains("-o parent=IFNAME"), "{e}");
    let e = err(opts(|o| {
        o.driver = "macvlan".into();
        o.options.insert("parent".into(), "nosuch0".into());
    }));
    assert_eq!(e, "parent interface nosuch0 not found on this host");
    let e = err(opts(|o| {
        o.driver = "ipvlan".into();
        o.options.insert("parent".into(), "x0".into());
        o.options.insert("ipvlan_mode".into(), "l9".into());
    }));
    assert!(e.contains("expected one of l2, l3, l3s"), "{e}");
    // Nothing was created by any of them.
    assert_eq!(nets.list().unwrap().len(), 3);
}

#[test]
fn macvlan_links_live_in_the_container() {
    let (_d, fake, nets) = setup(Fake::default());
    fake.bridges.lock().unwrap().insert("dm0".into());
    let o = opts(|o| {
        o.driver = "macvlan".into();
        o.subnet = Some("192.168.77.0/24".into());
        o.options.insert("parent".into(), "dm0".into());
    });
    let info = nets.create_with("lan", &o).unwrap();
    assert_eq!((info.driver.as_str(), info.bridge), ("macvlan", None));
    let e = nets.create_with("lan2", &o).unwrap_err().to_string();
    assert_eq!(e, "network lan already uses parent interface dm0");
    let mut r = req("c1", "lan", "8080:80");
    r.netns = "/run/netns/c1".into();
    let a = nets.attach(&r).unwrap();
    assert_eq!(a.ip.to_string(), "192.168.77.2");
    assert!(a.ports.is_empty());
    let calls = fake.calls();
    assert!(
        calls.contains(&"macvlan bridge on dm0 192.168.77.2/24 as eth0 via 192.168.77.1".into()),
        "{calls:?}"
    );
    // No bridge, no iptables rules for such a network.
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("bridge ") || c.starts_with('+')),
        "{calls:?}"
    );
    nets.detach("c1").unwrap();
    assert!(fake.calls().contains(&"del eth0 in /run/netns/c1".into()));
    nets.remove("lan").unwrap();
    let o = opts(|o| {
        o.driver = "ipvlan".into();
        o.options.insert("parent".into(), "dm0".into());
        o.options.insert("ipvlan_mode".into(), "l3".into());
    });
    nets.create_with("ipv", &o).unwrap();
    nets.attach(&req("c2", "ipv", "")).unwrap();
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.starts_with("ipvlan l3 on dm0 ")),
        "{:?}",
        fake.calls()
    );
}

/// The quickstart's bug: a root's directory deleted while its default
/// bridge (on 172.17.0.0/16) and rules stayed; a new root at that path
/// picked 172.18.0.0/16 around the old bridge, then found a bridge of its
/// own name on 172.17 and gave containers addresses no route served. Now
/// the new root removes what carries its path's mark (bridge, network
/// rules, a killed container's port rules) before it picks its subnet, and
/// a bridge of its name on another subnet (no mark: an older keel) is
/// re-addressed by the first container. Other roots' bridges stay.
#[test]
fn a_new_root_at_the_same_path_prunes_and_readdresses() {
    let fake = Arc::new(Fake {
        free_ports: Mutex::new(vec![40000]),
        ..Fake::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let open = |p: &Path| {
        Networks::with_kernel(p, Box::new(Shared(fake.clone())))
            .unwrap()
            .with_host_resolv_conf(tmp.path().join("no-resolv.conf"))
    };
    let (root, other) = (tmp.path().join("qs"), tmp.path().join("other"));
    let old = open(&root);
    old.attach(&req("c1", "bridge", "8080:80")).unwrap();
    let br = old.inspect("bridge").unwrap().bridge.unwrap();
    let old_id = old.inspect("bridge").unwrap().id;
    let keep = open(&other);
    keep.attach(&req("k1", "bridge", "")).unwrap();
    let kept_br = keep.inspect("bridge").unwrap().bridge.unwrap();
    assert_eq!(
        fake.marks.lock().unwrap()[&br],
        (
            "172.17.0.1/16".parse().unwrap(),
            format!("keel:{}", root.display())
        )
    );
    assert!(
        fake.rules
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.tag == "keel:c1")
    );
    drop(old);
    std::fs::remove_dir_all(&root).unwrap();

    let new = open(&root);
    let info = new.inspect("bridge").unwrap();
    assert_ne!(info.id, old_id);
    assert_eq!(
        info.subnet.as_deref(),
        Some("172.17.0.0/16"),
        "not around the old bridge"
    );
    assert!(!fake.bridges.lock().unwrap().contains(&br));
    let rules = fake.rules.lock().unwrap().clone();
    assert!(
        rules
            .iter()
            .all(|r| r.tag != "keel:c1" && r.tag != tag_network(&old_id)),
        "{rules:?}"
    );
    assert!(rules.iter().any(|r| r.spec.contains(&kept_br)), "{rules:?}");
    assert!(fake.bridges.lock().unwrap().contains(&kept_br));
    let a = new.attach(&req("c2", "bridge", "")).unwrap();
    assert_eq!(a.gateway, Ipv4Addr::new(172, 17, 0, 1));
    new.detach("c2").unwrap();
    new.release_idle().unwrap();

    // A bridge of this root's name on another subnet, without a mark.
    let stale: Ipv4Net = "10.9.0.1/24".parse().unwrap();
    fake.bridges.lock().unwrap().insert(br.clone());
    fake.marks
        .lock()
        .unwrap()
        .insert(br.clone(), (stale, String::new()));
    fake.rules.lock().unwrap().push(Rule {
        table: "filter",
        chain: "KEEL-FORWARD",
        spec: format!("-i {br} -j ACCEPT"),
        tag: "keel-net:0123456789ab".into(),
    });
    let a = new.attach(&req("c3", "bridge", "")).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(172, 17, 0, 2));
    assert_eq!(
        fake.marks.lock().unwrap()[&br],
        (
            "172.17.0.1/16".parse().unwrap(),
            format!("keel:{}", root.display())
        )
    );
    let rules = fake.rules.lock().unwrap().clone();
    assert!(
        rules.iter().all(|r| r.tag != "keel-net:0123456789ab"),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r.spec == format!("-i {br} -j ACCEPT") && r.tag == tag_network(&info.id)),
        "{rules:?}"
    );
}

/// An overlay network's part on one node: a bridge with the node's
/// gateway, a VXLAN port with the network's VNI; other nodes' containers
/// become one all-zeros FDB entry per node (ARP and other broadcasts reach
/// every node) and one unicast entry per container, changed by difference,
/// and names in local containers' hosts files; removal takes the port.
#[test]
fn overlay_network_with_remote_peers() {
    let (_d, fake, nets) = setup(Fake::default());
    let id = "ab".repeat(32);
    let o = NetworkOptions {
        driver: "overlay".into(),
        id: Some(id.clone()),
        subnet: Some("10.200.0.0/16".into()),
        gateway: Some("10.200.1.1".into()),
        ip_range: Some("10.200.1.0/24".into()),
        aux_addresses: BTreeMap::from([("slice".into(), "10.200.1.0".into())]),
        options: BTreeMap::from([
            (OPT_VNI.to_string(), "4097".to_string()),
            (OPT_VTEP.to_string(), "192.0.2.10".to_string()),
            (OPT_MTU.to_string(), "1450".to_string()),
        ]),
        ..NetworkOptions::default()
    };
    let info = nets.create_with("ov", &o).unwrap();
    assert_eq!(
        (info.id.as_str(), info.scope.as_str()),
        (id.as_str(), "swarm")
    );
    let br = info.bridge.unwrap();
    let calls = fake.calls();
    assert!(
        calls.contains(&format!("bridge {br} 10.200.1.1/16")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!(
            "vxlan kvx-4097 vni 4097 local 192.0.2.10 port 4789 on {br} mtu Some(1450)"
        )),
        "{calls:?}"
    );
    // Made by the cluster only; one ID per network.
    for bad in [
        NetworkOptions {
            options: BTreeMap::new(),
            ..o.clone()
        },
        NetworkOptions {
            id: Some(id.clone()),
            ..o.clone()
        },
    ] {
        assert!(matches!(
            nets.create_with("ov2", &bad),
            Err(NetError::InvalidConfig(_))
        ));
    }
    let a = nets.attach(&req("c1", "ov", "")).unwrap();
    assert_eq!(
        (a.ip, a.gateway),
        (Ipv4Addr::new(10, 200, 1, 2), Ipv4Addr::new(10, 200, 1, 1))
    );

    let peer = |name: &str, ip: [u8; 4], host: [u8; 4]| RemotePeer {
        name: name.into(),
        aliases: Vec::new(),
        ip: ip.into(),
        mac: ipam::mac_for(ip.into()),
        host: host.into(),
    };
    let (p1, p2) = (
        peer("web", [10, 200, 2, 2], [192, 0, 2, 20]),
        peer("db", [10, 200, 2, 3], [192, 0, 2, 20]),
    );
    let n = fake.calls().len();
    nets.set_remote_peers("ov", &[p1.clone(), p2.clone()])
        .unwrap();
    let added: Vec<String> = fake.calls()[n..].to_vec();
    assert_eq!(
        added
            .iter()
            .filter(|c| c.contains("00:00:00:00:00:00"))
            .count(),
        1,
        "one flood entry per node: {added:?}"
    );
    assert!(added.contains(
        &"fdb append 00:00:00:00:00:00 dev kvx-4097 dst 192.0.2.20 self permanent".to_string()
    ));
    assert!(added.contains(&format!(
        "fdb replace {} dev kvx-4097 dst 192.0.2.20 self permanent",
        p1.mac
    )));
    let hosts = std::fs::read_to_string(&a.hosts_file).unwrap();
    assert!(
        hosts.contains("10.200.2.2\tweb\n") && hosts.contains("10.200.2.3\tdb\n"),
        "{hosts}"
    );

    // db goes: only its entry; the node still has web, so its flood entry stays.
    let n = fake.calls().len();
    nets.set_remote_peers("ov", std::slice::from_ref(&p1))
        .unwrap();
    assert_eq!(
        fake.calls()[n..].to_vec(),
        vec![format!(
            "fdb del {} dev kvx-4097 dst 192.0.2.20 self",
            p2.mac
        )]
    );
    assert!(
        !std::fs::read_to_string(&a.hosts_file)
            .unwrap()
            .contains("db")
    );
    let n = fake.calls().len();
    nets.set_remote_peers("ov", std::slice::from_ref(&p1))
        .unwrap();
    assert_eq!(fake.calls().len(), n, "nothing changed, nothing done");

    assert!(matches!(
        nets.remove("ov"),
        Err(NetError::ActiveEndpoints { .. })
    ));
    nets.detach("c1").unwrap();
    nets.remove("ov").unwrap();
    let calls = fake.calls();
    assert!(calls.contains(&"del kvx-4097".to_string()) && calls.contains(&format!("del {br}")));
}
