//! Internal networks, custom gateways and the macvlan/ipvlan drivers on the
//! real kernel, as root, inside namespaces the tests create: a scratch
//! namespace plays the host (with a veth to an "outside" namespace, and a
//! veth pair whose one end is the macvlan/ipvlan parent), others play
//! containers.

mod common;

use common::{NetNs, sh};
use keel_net::{AttachRequest, NetworkOptions, Networks};

fn req(id: &str, ns: &NetNs, network: &str) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        name: id.into(),
        hostname: id.into(),
        netns: ns.path(),
        network: network.into(),
        ..AttachRequest::default()
    }
}

fn ping(from: &NetNs, ip: &str) -> bool {
    from.output(&["busybox", "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

/// An "outside" namespace at 10.99.0.2, linked to the host namespace (10.99.0.1).
fn outside(host: &NetNs) -> NetNs {
    let ext = NetNs::new("ext");
    host.run(|| {
        sh(
            "ip",
            &[
                "link",
                "add",
                "kext0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ext.path().to_str().unwrap(),
            ],
        );
        sh("ip", &["addr", "add", "10.99.0.1/24", "dev", "kext0"]);
        sh("ip", &["link", "set", "kext0", "up"]);
    });
    ext.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    ext.exec(&["ip", "link", "set", "eth0", "up"]);
    // The outside answers the container subnets through the host.
    ext.exec(&["ip", "route", "add", "default", "via", "10.99.0.1"]);
    ext
}

#[test]
fn internal_network_keeps_traffic_on_the_bridge() {
    let host = NetNs::new("host");
    let ext = outside(&host);
    let (c1, c2, c3) = (NetNs::new("i1"), NetNs::new("i2"), NetNs::new("o1"));
    let tmp = tempfile::tempdir().unwrap();
    host.run(|| {
        let nets = Networks::open(tmp.path()).unwrap();
        let o = NetworkOptions {
            internal: true,
            subnet: Some("10.44.0.0/24".into()),
            gateway: Some("10.44.0.254".into()),
            ..NetworkOptions::default()
        };
        let info = nets.create_with("sealed", &o).unwrap();
        let br = info.bridge.unwrap();
        assert!(sh("ip", &["-o", "addr", "show", "dev", &br]).contains("10.44.0.254/24"));
        let a1 = nets.attach(&req("i1", &c1, "sealed")).unwrap();
        let a2 = nets.attach(&req("i2", &c2, "sealed")).unwrap();
        // A custom gateway frees the first address for containers.
        assert_eq!(a1.ip.to_string(), "10.44.0.1");
        assert_eq!(a1.gateway.to_string(), "10.44.0.254");
        // Peers talk; there is no default route out.
        assert!(ping(&c1, &a2.ip.to_string()));
        let routes = c1.exec(&["ip", "route"]);
        assert!(!routes.contains("default"), "{routes}");
        assert!(!ping(&c1, "10.99.0.2"));
        // Even a route added by hand inside the container leads nowhere:
        // the host forwards nothing out of (or into) the bridge.
        c1.exec(&["ip", "route", "add", "default", "via", "10.44.0.254"]);
        assert!(!ping(&c1, "10.99.0.2"));
        ext.exec(&["ip", "route", "add", "10.44.0.0/24", "via", "10.99.0.1"]);
        assert!(!ping(&ext, "10.44.0.1"));

        // The same on an ordinary network works: the difference is --internal.
        nets.create("open", Some("10.45.0.0/24")).unwrap();
        nets.attach(&req("o1", &c3, "open")).unwrap();
        assert!(ping(&c3, "10.99.0.2"));

        for id in ["i1", "i2", "o1"] {
            nets.detach(id).unwrap();
        }
        nets.remove("sealed").unwrap();
        nets.remove("open").unwrap();
        nets.release_idle().unwrap();
        let rules = sh("iptables-save", &[]);
        assert!(!rules.contains("keel-net:"), "{rules}");
    });
}

fn sublink_network(driver: &str, mode: Option<(&str, &str)>) {
    let host = NetNs::new("host");
    let (c1, c2) = (NetNs::new("m1"), NetNs::new("m2"));
    let tmp = tempfile::tempdir().unwrap();
    host.run(|| {
        // A veth end as the parent: this kernel has no dummy driver.
        sh(
            "ip",
            &["link", "add", "dm0", "type", "veth", "peer", "name", "dm1"],
        );
        sh("ip", &["link", "set", "dm0", "up"]);
        sh("ip", &["link", "set", "dm1", "up"]);
        let supported = std::process::Command::new("ip")
            .args([
                "link", "add", "link", "dm0", "name", "probe0", "type", driver,
            ])
            .status()
            .unwrap()
            .success();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "probe0"])
            .status();
        let nets = Networks::open(tmp.path()).unwrap();
        let mut o = NetworkOptions {
            driver: driver.into(),
            subnet: Some("192.168.77.0/24".into()),
            ..NetworkOptions::default()
        };
        o.options.insert("parent".into(), "dm0".into());
        if let Some((k, v)) = mode {
            o.options.insert(k.into(), v.into());
        }
        let info = nets.create_with("lan", &o).unwrap();
        assert_eq!(info.driver, driver);
        assert_eq!(info.bridge, None);
        if !supported {
            // A kernel without the driver: a clear error, and no lease left.
            let e = nets.attach(&req("m1", &c1, "lan")).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("cannot create {driver} link on dm0: ")),
                "{e}"
            );
            assert!(nets.attachment("m1").unwrap().is_none());
            assert_eq!(c1.exec(&["ip", "-o", "link"]).lines().count(), 1);
            eprintln!("this kernel has no {driver}: checked the error path only");
            nets.remove("lan").unwrap();
            return;
        }
        let a1 = nets.attach(&req("m1", &c1, "lan")).unwrap();
        let a2 = nets.attach(&req("m2", &c2, "lan")).unwrap();
        assert_eq!(a1.ip.to_string(), "192.168.77.2");
        let link = c1.exec(&["ip", "-d", "link", "show", "eth0"]);
        assert!(link.contains(driver), "{link}");
        if driver == "macvlan" {
            assert!(link.contains(&a1.mac), "{link}");
        }
        let routes = c1.exec(&["ip", "route"]);
        assert!(
            routes.contains("default via 192.168.77.1 dev eth0"),
            "{routes}"
        );
        assert!(ping(&c1, &a2.ip.to_string()));
        // Nothing on the host side: no bridge, no veth, no rules.
        let links = sh("ip", &["-o", "link"]);
        assert!(
            !links.contains("veth") && !links.contains("keel"),
            "{links}"
        );
        // Disconnecting removes the link inside the running container.
        nets.detach_network("m1", "lan").unwrap();
        assert_eq!(c1.exec(&["ip", "-o", "link"]).lines().count(), 1);
        nets.detach("m1").unwrap();
        nets.detach("m2").unwrap();
        assert_eq!(c2.exec(&["ip", "-o", "link"]).lines().count(), 1);
        nets.remove("lan").unwrap();
        sh("ip", &["link", "del", "dm0"]);
    });
}

#[test]
fn macvlan_network_on_a_veth_parent() {
    sublink_network("macvlan", None);
}

/// Kernels built without ipvlan (this machine's) check the error path.
#[test]
fn ipvlan_network_on_a_veth_parent() {
    sublink_network("ipvlan", Some(("ipvlan_mode", "l2")));
}
