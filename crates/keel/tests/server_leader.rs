//! Two `keel server`s on one 3-member etcd cluster (real etcd): both serve
//! the API, only the holder of the Lease `kube-system/keel-controllers`
//! runs the controllers; killing it (SIGKILL) hands them over to the other,
//! which reconciles what is asked of it within 15 s. The second server is
//! given the first one's CA, service-account key, encryption key and tokens
//! (what several servers on one etcd must share).

mod server_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use server_common::{eventually, free_port, kubectls};

struct Server {
    child: Child,
    root: tempfile::TempDir,
    port: u16,
    kubeconfig: PathBuf,
}

impl Server {
    fn start(datastore: &str, root: tempfile::TempDir) -> Server {
        let port = free_port();
        let kubeconfig = root.path().join("kubeconfig");
        let log = std::fs::File::create(root.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("--root")
            .arg(root.path())
            .args(["server", "--disable-agent", "--datastore", datastore])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            // Shorter than Kubernetes' 15/10/2 s so the test is quick.
            .args([
                "--leader-elect-lease-duration=6s",
                "--leader-elect-renew-deadline=4s",
                "--leader-elect-retry-period=1s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start keel server");
        let mut s = Server {
            child,
            root,
            port,
            kubeconfig,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.kubeconfig.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("keel server exited with {st}: {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "keel server did not start: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }

    /// The identity this server campaigns with (from its log).
    fn identity(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("leader election: campaigning"))
            .unwrap_or_else(|| panic!("no campaign in the log: {log}"));
        let id = line.split("identity=").nth(1).expect("identity field");
        id.split_whitespace()
            .next()
            .unwrap()
            .trim_matches('"')
            .to_string()
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        kubectl_at(&self.kubeconfig, None, args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs kubectl 1.33 with `kubeconfig` (against `server` when given).
fn kubectl_at(
    kubeconfig: &Path,
    server: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> String {
    use std::io::Write;
    let home = kubeconfig.parent().unwrap().join("home");
    let mut cmd = Command::new(&kubectls()[1]);
    if let Some(s) = server {
        cmd.arg(format!("--server={s}"));
    }
    let mut child = cmd
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
    )
}

fn pods_of(s: &Server, app: &str) -> usize {
    s.kubectl(
        &["get", "pods", "-l", &format!("app={app}"), "-o", "name"],
        None,
    )
    .lines()
    .count()
}

fn lease(s: &Server, field: &str) -> String {
    s.kubectl(
        &[
            "-n",
            "kube-system",
            "get",
            "lease",
            "keel-controllers",
            "-o",
            &format!("jsonpath={{.spec.{field}}}"),
        ],
        None,
    )
}

/// The files a server joining others on one etcd must share with them.
fn share_identity(from: &Path, to: &Path) {
    for f in [
        "tls/ca.crt",
        "tls/ca.key",
        "tls/sa.key",
        "secrets.key",
        "tokens",
    ] {
        let dst = to.join("server").join(f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join("server").join(f), &dst).unwrap();
    }
}

#[test]
fn two_servers_on_three_member_etcd_hand_over_the_controllers() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let url = cluster.datastore_url();
    let mut a = Server::start(&url, tempfile::tempdir().unwrap());
    let root_b = tempfile::tempdir().unwrap();
    share_identity(a.root.path(), root_b.path());
    let b = Server::start(&url, root_b);
    let (id_a, id_b) = (a.identity(), b.identity());
    assert_ne!(id_a, id_b);
    eventually("a lease holder", Duration::from_secs(20), || {
        !lease(&b, "holderIdentity").is_empty()
    });
    // a started first and campaigns unopposed.
    assert_eq!(lease(&b, "holderIdentity"), id_a);

    // One identity: a's kubeconfig works against b, and a Secret written
    // through a reads back through b (same encryption key).
    let b_url = format!("https://127.0.0.1:{}", b.port);
    a.kubectl(
        &["create", "secret", "generic", "s", "--from-literal=k=v1"],
        None,
    );
    let got = kubectl_at(
        &a.kubeconfig,
        Some(&b_url),
        &["get", "secret", "s", "-o", "jsonpath={.data.k}"],
        None,
    );
    assert_eq!(got, "djE=");

    // A Deployment created through the follower is reconciled once, by
    // the leader's controllers.
    b.kubectl(&["apply", "-f", "-"], Some(&deployment("web", 3)));
    eventually("web's 3 pods", Duration::from_secs(20), || {
        pods_of(&b, "web") == 3
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pods_of(&b, "web"), 3, "one set of controllers");
    let rs = b.kubectl(&["get", "rs", "-o", "name"], None);
    assert_eq!(rs.lines().count(), 1, "{rs}");
    assert!(a.log().contains("became leader"), "{}", a.log());
    assert!(!b.log().contains("became leader"), "{}", b.log());

    // The leader dies; b takes over and reconciles within 15 s.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    b.kubectl(&["apply", "-f", "-"], Some(&deployment("after", 2)));
    b.kubectl(&["scale", "deployment", "web", "--replicas=5"], None);
    eventually("b's controllers reconcile", Duration::from_secs(15), || {
        pods_of(&b, "after") == 2 && pods_of(&b, "web") == 5
    });
    let took = killed.elapsed();
    assert_eq!(lease(&b, "holderIdentity"), id_b);
    assert_eq!(lease(&b, "leaseTransitions"), "1");
    assert!(b.log().contains("became leader"), "{}", b.log());
    eprintln!("handed over and reconciled {took:?} after the kill");
}
