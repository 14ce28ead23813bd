//! A cluster of several nodes on this one machine, for tests that need
//! real kubelets: `keel server --disable-agent` and `keel agent`s, each in a
//! network namespace of its own ("node host", made here and joined to the
//! host by a veth pair: a /30 per node) with its own root. Each agent's pods
//! get the node's podCIDR on the node's own `keel-pods` bridge inside its
//! namespace. Namespaces are entered with `nsenter --net=<bind-mounted
//! netns file>` only: `ip netns exec` would also remount /sys and hide the
//! host's cgroups from the agent.
//!
//! Everything is torn down on drop, failure included: agents, the pods'
//! containers (processes, mounts, cgroups), bridges, namespaces, veths.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::server_common::{self, KeelServer, eventually};

pub fn keel() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn must(args: &[&str]) -> String {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Node hosts made by this process so far (names stay unique when several
/// tests of one binary run at once).
static HOSTS: AtomicU32 = AtomicU32::new(0);

/// A node host: a network namespace with a veth to the host, a keel root,
/// and (once started) a `keel agent` in it.
pub struct NodeHost {
    pub ns: String,
    pub veth: String,
    pub host_ip: String,
    pub node_ip: String,
    pub root: tempfile::TempDir,
    pub agent: Option<Child>,
    /// Other processes started in the namespace (killed on drop).
    pub extra: Vec<Child>,
    /// Environment of the agent (say, `KEEL_PROXY_BACKEND`).
    pub agent_env: Vec<(String, String)>,
}

/// A /30 of 172.31.0.0/16 no interface of this host has yet: `(host, node)`.
fn free_slash30(seed: u32) -> (String, String) {
    let used = must(&["ip", "-o", "-4", "addr", "show"]);
    for i in 0..16_000 {
        let slot = (seed + i * 7) % 16_000;
        let (third, fourth) = (slot / 64, (slot % 64) * 4);
        let host = format!("172.31.{third}.{}", fourth + 1);
        let node = format!("172.31.{third}.{}", fourth + 2);
        if !used.contains(&format!(" {host}/")) && !used.contains(&format!(" {node}/")) {
            return (host, node);
        }
    }
    panic!("no free /30 in 172.31.0.0/16");
}

impl NodeHost {
    pub fn create() -> Self {
        let pid = std::process::id();
        let n = HOSTS.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{n}", pid % 100_000);
        let ns = format!("keel-node-t{tag}");
        let veth = format!("kh{tag}");
        let peer = format!("kp{tag}");
        let (host_ip, node_ip) = free_slash30(pid.wrapping_mul(31).wrapping_add(n * 3));
        // From here on, drop undoes whatever was made.
        let host = NodeHost {
            ns: ns.clone(),
            veth: veth.clone(),
            host_ip: host_ip.clone(),
            node_ip: node_ip.clone(),
            root: tempfile::tempdir().unwrap(),
            agent: None,
            extra: Vec::new(),
            agent_env: Vec::new(),
        };
        must(&["ip", "netns", "add", &ns]);
        must(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ]);
        must(&["ip", "link", "set", &peer, "netns", &ns]);
        must(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        must(&["ip", "link", "set", &veth, "up"]);
        let inside = |args: &[&str]| {
            let out = host.exec(args);
            assert!(
                out.status.success(),
                "{args:?} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", &peer]);
        inside(&["ip", "link", "set", &peer, "up"]);
        inside(&["ip", "route", "add", "default", "via", &host_ip]);
        host
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn netns_arg(&self) -> String {
        format!("--net=/run/netns/{}", self.ns)
    }

    /// `keel --root <this node's root> args` on the host.
    pub fn keel(&self, args: &[&str]) -> String {
        let mut v = vec![keel(), "--root", self.root().to_str().unwrap()];
        v.extend_from_slice(args);
        must(&v)
    }

    /// Runs `args` inside the node's network namespace (only that).
    pub fn exec(&self, args: &[&str]) -> Output {
        let net = self.netns_arg();
        let mut v = vec!["nsenter", &net];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// `keel exec <container> argv` for a container of this node.
    pub fn exec_in(&self, container: &str, argv: &[&str]) -> Output {
        let root = self.root().to_str().unwrap().to_string();
        let mut v = vec![keel(), "--root", &root, "exec", container];
        v.extend_from_slice(argv);
        self.exec(&v)
    }

    /// Starts a long-running process in the namespace (killed on drop).
    pub fn spawn(&mut self, args: &[&str]) {
        let child = Command::new("nsenter")
            .arg(self.netns_arg())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.extra.push(child);
    }

    pub fn start_agent(&mut self, server: &str, token: &str, name: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join("agent.log"))
            .unwrap();
        // nsenter execs the agent (no fork for a network namespace), so the
        // child's pid is the agent's.
        let child = Command::new("nsenter")
            .arg(self.netns_arg())
            .args([keel(), "--root"])
            .arg(self.root())
            .args([
                "agent", "--server", server, "--token", token, "--name", name,
            ])
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start keel agent");
        self.agent = Some(child);
    }

    /// SIGKILL to the agent, as a crash would; its pods keep running.
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("agent.log")).unwrap_or_default()
    }

    /// Containers under this root: (id, labels, pid).
    pub fn containers(&self) -> Vec<(String, Value, i64)> {
        let Ok(rd) = std::fs::read_dir(self.root().join("containers")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let cfg: Value =
                    serde_json::from_slice(&std::fs::read(e.path().join("config.json")).ok()?)
                        .ok()?;
                let st: Value =
                    serde_json::from_slice(&std::fs::read(e.path().join("state.json")).ok()?)
                        .unwrap_or_default();
                Some((
                    cfg["id"].as_str()?.to_string(),
                    cfg["labels"].clone(),
                    st["pid"].as_i64().unwrap_or(0),
                ))
            })
            .collect()
    }

    /// kubectl 1.33 with the node's own credentials (its kubeconfig under
    /// `<root>/agent`, a `system:node:<name>` client certificate).
    pub fn kubectl_as_node(&self, args: &[&str], stdin: Option<&str>) -> Output {
        server_common::kubectl_at(
            &kubectl133(),
            &self.root().join("agent/kubeconfig"),
            &self.root().join("kubectl-home"),
            args,
            stdin,
        )
    }

    /// The id of container `name` of pod `uid` on this node.
    pub fn container_of(&self, uid: &str, name: &str) -> Option<String> {
        self.containers()
            .into_iter()
            .find(|(_, l, _)| {
                l["io.kubernetes.pod.uid"] == uid && l["io.kubernetes.container.name"] == name
            })
            .map(|(id, _, _)| id)
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- agent log of {} (last lines) ---", self.ns);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill_agent();
        for mut c in self.extra.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let root = self.root().to_str().unwrap().to_string();
        // Containers are removed in the node's namespace, where their veths
        // and the bridge live; `rm -f` stops them and removes their mounts
        // and cgroups.
        for (id, _, _) in self.containers() {
            let _ = self.exec(&[keel(), "--root", &root, "rm", "-f", &id]);
        }
        let _ = self.exec(&[keel(), "--root", &root, "network", "rm", "keel-pods"]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.veth]);
    }
}

/// A server and `n` node hosts, each running an agent named `node-<i>`.
pub struct Cluster {
    // Nodes first: they are torn down before the server goes.
    pub nodes: Vec<NodeHost>,
    pub server: KeelServer,
    pub url: String,
    pub token: String,
}

pub fn kubectl133() -> PathBuf {
    server_common::kubectls().pop().unwrap()
}

impl Cluster {
    /// The server listens on the host side of the first node's veth; the
    /// others reach it through their own veth (the host routes between).
    pub fn start(n: usize) -> Self {
        Self::start_with_agent_env(n, &[])
    }

    /// [`Cluster::start`] with `env` in every agent's environment.
    pub fn start_with_agent_env(n: usize, env: &[(&str, &str)]) -> Self {
        let mut nodes: Vec<NodeHost> = (0..n).map(|_| NodeHost::create()).collect();
        for h in &mut nodes {
            h.agent_env = env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
        }
        let server = KeelServer::start_on(&nodes[0].host_ip);
        let token = must(&[
            keel(),
            "--root",
            server.root.path().to_str().unwrap(),
            "server",
            "token",
            "create",
            "--join",
        ])
        .trim()
        .to_string();
        let url = format!("https://{}:{}", server.ip, server.port);
        let mut c = Cluster {
            nodes,
            server,
            url,
            token,
        };
        for i in 0..n {
            // How an image gets onto a node: into the node's own store.
            c.nodes[i].keel(&["image", "seed-busybox"]);
            c.start_agent(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    pub fn name(i: usize) -> String {
        format!("node-{i}")
    }

    pub fn start_agent(&mut self, i: usize) {
        let (url, token) = (self.url.clone(), self.token.clone());
        self.nodes[i].start_agent(&url, &token, &Self::name(i));
    }

    pub fn wait_ready(&self, i: usize) {
        let name = Self::name(i);
        eventually(&format!("{name} Ready"), Duration::from_mins(1), || {
            let out = self.server.kubectl_with(
                &kubectl133(),
                &["get", "node", &name, "-o", "json"],
                None,
            );
            out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout)
                    .is_ok_and(|n| condition(&n, "Ready") == Some("True"))
        });
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.server.ok(&kubectl133(), args)
    }

    pub fn apply(&self, yaml: &str) {
        self.server
            .ok_in(&kubectl133(), &["apply", "-f", "-"], Some(yaml));
    }

    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut v = vec!["get"];
        v.extend_from_slice(args);
        v.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&v)).unwrap()
    }

    /// The node host a node name belongs to.
    pub fn host(&self, node: &str) -> &NodeHost {
        let i: usize = node
            .strip_prefix("node-")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("not a node of this cluster: {node}"));
        &self.nodes[i]
    }
}

pub fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?["status"]
        .as_str()
}

/// What of `root` is still on this machine: processes with it on their
/// command line, mounts under it, keel cgroups of `ids`.
pub fn leftovers(root: &Path, ids: &[String]) -> Vec<String> {
    let root_s = root.to_str().unwrap();
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(root_s) {
            left.push(format!(
                "process {}: {cmd}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(root_s)) {
        left.push(format!("mount: {l}"));
    }
    for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for id in ids {
            for p in [
                c.path().join("keel").join(id),
                c.path().join(id),
                PathBuf::from(format!("/sys/fs/cgroup/keel/{id}")),
            ] {
                if p.exists() {
                    left.push(format!("cgroup: {}", p.display()));
                }
            }
        }
    }
    left.sort();
    left.dedup();
    left
}

/// A `keel server` with its own agent, alone in a network namespace made
/// here (its pods on the namespace's `keel-pods` bridge): one node, no
/// veth, for tests of what a single machine serves (DNS, metrics, the
/// autoscaler). Torn down on drop, failure included.
pub struct Host {
    ns: String,
    root: tempfile::TempDir,
    home: tempfile::TempDir,
    /// The API server's port (on 127.0.0.1 in the namespace).
    pub port: u16,
    /// The cluster DNS's port (on 127.0.0.1 in the namespace).
    pub dns_port: u16,
    server: Option<Child>,
}

impl Host {
    /// Starts `keel server --node-name NODE` with `extra` flags; `tag`
    /// names the namespace (`keel-TAG-t<pid>-<n>`).
    pub fn start(tag: &str, node: &str, extra: &[&str]) -> Self {
        let n = HOSTS.fetch_add(1, Ordering::SeqCst);
        let ns = format!("keel-{tag}-t{}-{n}", std::process::id());
        let mut h = Host {
            ns: ns.clone(),
            root: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            port: server_common::free_port(),
            dns_port: server_common::free_port(),
            server: None,
        };
        assert!(sh(&["ip", "netns", "add", &ns]).status.success());
        assert!(h.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        let root = h.root().to_str().unwrap().to_string();
        must(&[keel(), "--root", &root, "image", "seed-busybox"]);
        let log = std::fs::File::create(h.root().join("server.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args([keel(), "--root", &root, "server", "--listen"])
            .arg(format!("127.0.0.1:{}", h.port))
            .arg("--write-kubeconfig")
            .arg(h.kubeconfig())
            .args(["--node-name", node, "--dns-listen"])
            .arg(format!("127.0.0.1:{}", h.dns_port))
            .args(extra)
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

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.root().join("kubeconfig")
    }

    /// `nsenter`'s argument entering the namespace's network.
    pub fn exec_prefix(&self) -> String {
        format!("--net=/run/netns/{}", self.ns)
    }

    /// Runs `args` in the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let net = format!("--net=/run/netns/{}", self.ns);
        let mut v = vec!["nsenter", &net];
        v.extend_from_slice(args);
        sh(&v)
    }

    pub fn kubectl_bin(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(bin)
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

    /// kubectl 1.33.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_bin(&kubectl133(), args, stdin)
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
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
