//! Test harness: real etcd members (Debian's `etcd` binary) on 127.0.0.1
//! random ports in a temporary directory, killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// An etcd cluster of one or more members; everything is killed and removed
/// on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers.
    pub fn start(n: usize) -> Self {
        // A port picked free may be taken by another test before etcd binds
        // it: a cluster that does not come up is started again on new ports.
        let mut last = String::new();
        for _ in 0..3 {
            let cluster = Self::spawn(n);
            match cluster.wait_ready() {
                Ok(()) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn spawn(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("create etcd temp dir");
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            let data = dir.path().join(&m.name);
            let client = format!("http://127.0.0.1:{}", m.client_port);
            let peer = format!("http://127.0.0.1:{}", m.peer_port);
            let child = Command::new("etcd")
                .arg("--name")
                .arg(&m.name)
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "keel-test"])
                // Fast elections keep the member-failure test short.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join(format!("{}.log", m.name)))
                        .map_or_else(|_| Stdio::null(), Stdio::from),
                )
                .spawn()
                .expect("start etcd (Debian package etcd-server)");
            m.child = Some(child);
        }
        EtcdCluster { members, dir }
    }

    /// Waits until every member is healthy; `Err` quotes the laggard's log.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &self.members {
            loop {
                // /health answers {"health":"true"} once the member has a leader.
                if let Some(body) = http_get(m.client_port, "/health")
                    && body.contains("\"health\":\"true\"")
                {
                    break;
                }
                if Instant::now() >= deadline {
                    let log =
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                            .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(format!(
                        "etcd member {} did not become healthy; its log ends:\n{}",
                        m.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// `http://host:port` endpoints, as `EtcdStore::connect` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.endpoints()
            .into_iter()
            .map(|e| format!("http://{e}"))
            .collect()
    }

    /// The `--datastore` URL for keel server.
    pub fn datastore_url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A tiny blocking HTTP/1.0 GET to 127.0.0.1 (avoids an HTTP client dependency).
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
