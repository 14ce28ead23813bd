//! Cluster DNS end to end: a real `keel server` with its own agent, in a
//! network namespace made here (the node host: pod bridge, pods), serves
//! DNS on the pod network's gateway; a busybox pod with the default
//! dnsPolicy (`ClusterFirst`) runs `nslookup` on a Service's name and gets
//! its cluster IP; queries from the node host see a Service change within
//! a second. Everything (server, containers, bridge,
//! namespace) is torn down on drop, failure included.

mod server_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use server_common::{eventually, free_port};

fn keel() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A namespace holding a `keel server` (with its agent) and its pods.
struct Host {
    ns: String,
    root: tempfile::TempDir,
    home: tempfile::TempDir,
    port: u16,
    dns_port: u16,
    server: Option<Child>,
}

impl Host {
    fn start() -> Self {
        let ns = format!("keel-dns-t{}", std::process::id());
        let h = Host {
            ns: ns.clone(),
            root: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            port: free_port(),
            dns_port: free_port(),
            server: None,
        };
        assert!(sh(&["ip", "netns", "add", &ns]).status.success());
        let mut h = h;
        assert!(h.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        let root = h.root().to_str().unwrap().to_string();
        let seed = sh(&[keel(), "--root", &root, "image", "seed-busybox"]);
        assert!(
            seed.status.success(),
            "{}",
            String::from_utf8_lossy(&seed.stderr)
        );
        let log = std::fs::File::create(h.root().join("server.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args([keel(), "--root", &root, "server", "--listen"])
            .arg(format!("127.0.0.1:{}", h.port))
            .arg("--write-kubeconfig")
            .arg(h.kubeconfig())
            .args(["--node-name", "dns-node", "--dns-listen"])
            .arg(format!("127.0.0.1:{}", h.dns_port))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start keel server");
        h.server = Some(child);
        eventually("the server's kubeconfig", Duration::from_secs(30), || {
            h.kubeconfig().exists()
        });
        h
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.root().join("kubeconfig")
    }

    /// `args` in the namespace's network (only that, so cgroups stay).
    fn exec(&self, args: &[&str]) -> Output {
        let net = format!("--net=/run/netns/{}", self.ns);
        let mut v = vec!["nsenter", &net];
        v.extend_from_slice(args);
        sh(&v)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let k = server_common::kubectls().pop().unwrap();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(k)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The output of the pod's container (read from the node's store:
    /// `kubectl logs` is not served yet).
    fn pod_output(&self, pod: &str) -> String {
        let root = self.root().to_str().unwrap();
        let Ok(rd) = std::fs::read_dir(self.root().join("containers")) else {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let root = self.root().to_str().unwrap().to_string();
        if let Ok(rd) = std::fs::read_dir(self.root().join("containers")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.exec(&[keel(), "--root", &root, "rm", "-f", &id]);
            }
        }
        let _ = self.exec(&[keel(), "--root", &root, "network", "rm", "keel-pods"]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
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
    let h = Host::start();
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
    let out = h.pod_output("client");
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
