//! `keel network …` driven through the real binary, as root, inside a scratch
//! network namespace the test creates (`ip netns add`) so bridges and iptables
//! rules never touch the host's own.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use keel_net::{AttachRequest, Networks};

/// A named network namespace, deleted (with its bridges and rules) on drop.
struct NetNs(String);

impl NetNs {
    fn new(tag: &str) -> NetNs {
        // Tests of this file run side by side: one namespace each.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("kc{}-{tag}{n}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success());
        NetNs(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
    fn sh(&self, args: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// keel with a temporary root, run inside the scratch namespace.
struct Keel {
    root: tempfile::TempDir,
    ns: NetNs,
}

impl Keel {
    fn new() -> Keel {
        Keel {
            root: tempfile::Builder::new()
                .prefix("keel-net-test-")
                .tempdir()
                .unwrap(),
            ns: NetNs::new("host"),
        }
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns.0, env!("CARGO_BIN_EXE_keel")])
            .args(args)
            .env("KEEL_ROOT", self.root.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run_with_stdin(args, "");
        assert!(
            o.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Asserts a clean failure: non-zero, one `error:` line, maybe one `hint:` line. Returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run_with_stdin(args, "");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(!o.status.success(), "keel {args:?} should fail");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].starts_with("error: "), "{err}");
        assert!(
            lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")),
            "{err}"
        );
        err
    }

    /// Links and tagged iptables rules keel left in the namespace.
    fn leftovers(&self) -> String {
        let links: String = self
            .ns
            .sh(&["ip", "-o", "link"])
            .lines()
            .filter(|l| l.contains("keel") || l.contains("veth"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let rules: String = self
            .ns
            .sh(&["iptables-save"])
            .lines()
            .filter(|l| l.contains("--comment"))
            .flat_map(|l| [l, "\n"])
            .collect();
        links + &rules
    }
}

#[test]
#[allow(clippy::many_single_char_names)] // short-lived JSON values and outputs
fn network_commands() {
    let keel = Keel::new();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[0-9a-f]{12}", "[id]");
    let _guard = settings.bind_to_scope();

    insta::assert_snapshot!("ls_fresh", keel.ok(&["network", "ls"]));

    let id = keel.ok(&["network", "create", "appnet"]);
    assert!(
        id.trim().len() == 64 && id.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    keel.ok(&["network", "create", "--subnet", "10.77.0.0/24", "other"]);
    insta::assert_snapshot!("ls_two", keel.ok(&["network", "ls"]));
    assert_eq!(keel.ok(&["network", "ls", "-q"]).lines().count(), 5);
    assert_eq!(
        keel.ok(&["network", "ls", "-q", "--no-trunc", "-f", "name=app"])
            .trim(),
        id.trim()
    );
    let custom = keel.ok(&["network", "ls", "--filter", "type=custom", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&custom).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["appnet", "other"]);

    // inspect: docker's object; the Linux bridge exists in the namespace.
    let out = keel.ok(&["network", "inspect", "appnet"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = &v[0];
    assert_eq!(n["Name"], "appnet");
    assert_eq!(n["Id"], id.trim());
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "172.18.0.1");
    assert_eq!(n["Containers"], serde_json::json!({}));
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        keel.ns
            .sh(&["ip", "-o", "addr", "show", "dev", &bridge])
            .contains("172.18.0.1/16")
    );
    let y = keel.ok(&["network", "inspect", "-o", "yaml", "other"]);
    assert!(y.contains("Subnet: 10.77.0.0/24"), "{y}");

    // Errors: one line each, hints where the user can act, nothing created.
    insta::assert_snapshot!("create_dup", keel.fails(&["network", "create", "appnet"]));
    insta::assert_snapshot!(
        "create_overlap",
        keel.fails(&["network", "create", "--subnet", "10.77.0.128/25", "x"])
    );
    insta::assert_snapshot!(
        "create_host_bits",
        keel.fails(&["network", "create", "--subnet", "10.78.0.5/24", "x"])
    );
    insta::assert_snapshot!(
        "create_driver",
        keel.fails(&["network", "create", "-d", "weave", "x"])
    );
    // Overlay networks span a cluster: a root that joined none is told so.
    insta::assert_snapshot!(
        "create_overlay_unjoined",
        keel.fails(&["network", "create", "-d", "overlay", "x"])
    );
    insta::assert_snapshot!(
        "create_macvlan_no_parent",
        keel.fails(&["network", "create", "-d", "macvlan", "x"])
    );
    insta::assert_snapshot!(
        "create_macvlan_missing_parent",
        keel.fails(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=nosuch0",
            "x"
        ])
    );
    insta::assert_snapshot!(
        "create_unknown_option",
        keel.fails(&[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "x"
        ])
    );
    insta::assert_snapshot!(
        "create_gateway_without_subnet",
        keel.fails(&["network", "create", "--gateway", "10.1.0.1", "x"])
    );
    insta::assert_snapshot!(
        "create_bad_label",
        keel.fails(&["network", "create", "--opt", "novalue", "x"])
    );
    insta::assert_snapshot!(
        "create_bad_name",
        keel.fails(&["network", "create", "_bad"])
    );
    keel.fails(&["network", "create", "bad name"]);
    assert_eq!(keel.ok(&["network", "ls", "-q"]).lines().count(), 5);
    let o = keel.run_with_stdin(&["network", "inspect", "appnet", "nope"], "");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"appnet\""));
    insta::assert_snapshot!("inspect_missing", String::from_utf8(o.stderr).unwrap());
    insta::assert_snapshot!("rm_predefined", keel.fails(&["network", "rm", "bridge"]));
    insta::assert_snapshot!("rm_missing", keel.fails(&["network", "rm", "nope"]));

    // A container attached through the library keeps the network in use.
    let c = NetNs::new("c1");
    let nets_root = keel.root.path().to_path_buf();
    let ns_file = std::fs::File::open(keel.ns.path()).unwrap();
    let attach_to = |network: &str, detach: bool| {
        std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    ns_file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                let nets = Networks::open(&nets_root).unwrap();
                if detach {
                    nets.detach("ctr1").unwrap();
                } else {
                    nets.attach(&AttachRequest {
                        container_id: "ctr1".into(),
                        name: "web".into(),
                        hostname: "web".into(),
                        netns: c.path(),
                        network: network.into(),
                        ..AttachRequest::default()
                    })
                    .unwrap();
                }
            })
            .join()
            .unwrap();
        });
    };
    let attach = |detach: bool| attach_to("appnet", detach);
    attach(false);
    let v: serde_json::Value =
        serde_json::from_str(&keel.ok(&["network", "inspect", "appnet"])).unwrap();
    let ep = &v[0]["Containers"]["ctr1"];
    assert_eq!(ep["Name"], "web");
    assert_eq!(ep["IPv4Address"], "172.18.0.2/16");
    assert_eq!(ep["MacAddress"], "02:42:ac:12:00:02");
    insta::assert_snapshot!("rm_in_use", keel.fails(&["network", "rm", "appnet"]));
    // prune leaves the network in use alone; without -f it asks first.
    let o = keel.run_with_stdin(&["network", "prune"], "n\n");
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Are you sure you want to continue? [y/N]")
    );
    assert_eq!(keel.ok(&["network", "ls", "-q"]).lines().count(), 5);
    assert_eq!(
        keel.ok(&["network", "prune", "-f"]),
        "Deleted Networks:\nother\n"
    );
    assert_eq!(keel.ok(&["network", "prune", "-f"]), "");
    attach(true);
    assert!(!keel.leftovers().contains("veth"), "{}", keel.leftovers());
    assert_eq!(keel.ok(&["network", "rm", "appnet"]), "appnet\n");
    assert_eq!(keel.leftovers(), "");
    insta::assert_snapshot!("ls_end", keel.ok(&["network", "ls"]));
    // The default bridge stays up while idle; prune gives back its Linux
    // bridge and tagged iptables rules.
    attach_to("bridge", false);
    attach_to("bridge", true);
    let idle = keel.leftovers();
    assert!(idle.contains("keel"), "{idle}");
    assert!(idle.contains("--comment"), "{idle}");
    assert_eq!(keel.ok(&["network", "prune", "-f"]), "");
    assert_eq!(keel.leftovers(), "");
    assert_eq!(keel.ok(&["network", "ls", "-q"]).lines().count(), 3);
}

/// `network connect`/`disconnect` on containers that are not running change
/// only the container's record (they join at their next start), with
/// Docker's refusals; nothing touches the kernel here.
#[test]
fn connect_and_disconnect_created_containers() {
    let keel = Keel::new();
    keel.ok(&["image", "seed-busybox"]);
    keel.ok(&["network", "create", "one"]);
    keel.ok(&["network", "create", "--subnet", "10.78.0.0/24", "two"]);
    keel.ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "one",
        "busybox",
        "true",
    ]);
    keel.ok(&[
        "create",
        "--name",
        "hostc",
        "--network",
        "host",
        "busybox",
        "true",
    ]);
    let networks = |name: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&keel.ok(&["inspect", name])).unwrap();
        v[0]["NetworkSettings"]["Networks"].clone()
    };
    keel.ok(&[
        "network",
        "connect",
        "--alias",
        "db",
        "--ip",
        "10.78.0.9",
        "two",
        "c",
    ]);
    let n = networks("c");
    assert_eq!(n["two"]["Aliases"], serde_json::json!(["db"]), "{n}");
    assert_eq!(n["two"]["IPAMConfig"]["IPv4Address"], "10.78.0.9", "{n}");
    // Not running: no address yet.
    assert_eq!(n["one"]["IPAddress"], "", "{n}");
    let e = keel.fails(&["network", "connect", "two", "c"]);
    assert!(
        e.contains("endpoint with name c already exists in network two"),
        "{e}"
    );
    let e = keel.fails(&["network", "connect", "nosuch", "c"]);
    assert!(e.contains("network nosuch not found"), "{e}");
    let e = keel.fails(&["network", "connect", "two", "nosuch"]);
    assert!(e.contains("nosuch"), "{e}");
    let e = keel.fails(&["network", "connect", "one", "hostc"]);
    assert!(
        e.contains("cannot be connected to any other network"),
        "{e}"
    );
    let e = keel.fails(&["network", "connect", "host", "c"]);
    assert!(
        e.contains("cannot be connected to any other network"),
        "{e}"
    );
    // Disconnecting the primary makes the next network the primary.
    keel.ok(&["network", "disconnect", "one", "c"]);
    let n = networks("c");
    assert!(n.get("one").is_none() && n.get("two").is_some(), "{n}");
    let v: serde_json::Value = serde_json::from_str(&keel.ok(&["inspect", "c"])).unwrap();
    assert_eq!(v[0]["HostConfig"]["NetworkMode"], "two");
    let e = keel.fails(&["network", "disconnect", "one", "c"]);
    assert!(
        e.contains("container c is not connected to network one"),
        "{e}"
    );
    // Bad option values are refused at create, nothing created.
    let before = keel.ok(&["ps", "-a", "-q"]);
    for bad in [
        &["--add-host", "nocolon"][..],
        &["--dns", "not-an-ip"],
        &["--network", "two", "--ip", "300.1.1.1"],
        &["--network", "none", "--ip", "10.78.0.5"],
        &["--network", "container:nosuch"],
    ] {
        let mut a = vec!["create"];
        a.extend_from_slice(bad);
        a.extend_from_slice(&["busybox", "true"]);
        keel.fails(&a);
    }
    assert_eq!(keel.ok(&["ps", "-a", "-q"]), before);
    // Docker's long --network form, several networks with their own options.
    keel.ok(&[
        "create",
        "--name",
        "d",
        "--network",
        "one",
        "--network",
        "name=two,alias=x,alias=y,ip=10.78.0.20",
        "busybox",
        "true",
    ]);
    let n = networks("d");
    assert_eq!(n["two"]["Aliases"], serde_json::json!(["x", "y"]), "{n}");
    assert_eq!(n["two"]["IPAMConfig"]["IPv4Address"], "10.78.0.20", "{n}");
    assert!(n.get("one").is_some(), "{n}");
    let e = keel.fails(&["create", "--network", "name=two,mtu=1", "busybox", "true"]);
    assert!(e.contains("unknown field \"mtu\""), "{e}");
    keel.ok(&["rm", "c", "d", "hostc"]);
    keel.ok(&["network", "rm", "one", "two"]);
    assert_eq!(keel.leftovers(), "");
}
