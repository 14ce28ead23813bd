//! Harness for tests that drive the real `keel server` binary: a server on a
//! random 127.0.0.1 port with a temporary root, its kubeconfig, and helpers
//! to run kubectl (1.32 on PATH and 1.33) against it. Killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `f` every 200 ms until it returns true, failing the test naming
/// `what` after `limit`: what a write causes (indexes, controllers, the
/// scheduler) reaches the server's watchers a moment after it.
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn free_port() -> u16 {
    keel_store::testing::free_port()
}

/// The kubectl binaries under test: 1.32 (on PATH) and 1.33.
pub fn kubectls() -> Vec<PathBuf> {
    let on_path = which("kubectl").expect("kubectl on PATH");
    let real = std::fs::canonicalize(&on_path).expect("resolve kubectl");
    let k133 = real.parent().expect("kubectl dir").join("kubectl.1.33");
    assert!(k133.exists(), "kubectl.1.33 next to {}", real.display());
    vec![on_path, k133]
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Runs kubectl `bin` with `kubeconfig` and `home` (its discovery cache).
pub fn kubectl_at(
    bin: &Path,
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub struct KeelServer {
    child: Option<Child>,
    pub root: tempfile::TempDir,
    pub port: u16,
    pub datastore: Option<String>,
    pub kubeconfig: PathBuf,
    /// HOME for kubectl, so its discovery cache is per test.
    pub home: tempfile::TempDir,
    /// Extra environment of the server process.
    pub env: Vec<(String, String)>,
    /// Extra flags of `keel server`.
    pub args: Vec<String>,
    /// The address it listens on (127.0.0.1 unless started with
    /// [`KeelServer::start_on`]).
    pub ip: String,
}

impl KeelServer {
    pub fn start(datastore: Option<String>) -> Self {
        Self::start_with_env(datastore, Vec::new())
    }

    pub fn start_with_env(datastore: Option<String>, env: Vec<(String, String)>) -> Self {
        Self::start_full(datastore, env, Vec::new())
    }

    fn start_full(
        datastore: Option<String>,
        env: Vec<(String, String)>,
        args: Vec<String>,
    ) -> Self {
        // Test-side clients (kube-rs) need rustls' process default named: the
        // workspace compiles in more than one crypto backend.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = root.path().join("kubeconfig");
        let mut s = KeelServer {
            child: None,
            root,
            port: free_port(),
            datastore,
            kubeconfig,
            home,
            env,
            args,
            ip: "127.0.0.1".into(),
        };
        s.spawn();
        s
    }

    /// A server started with extra `keel server` flags.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_full(
            None,
            Vec::new(),
            args.iter().map(|a| (*a).to_string()).collect(),
        )
    }

    /// A server listening on `ip` (an address of this host that node
    /// network namespaces reach).
    pub fn start_on(ip: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = root.path().join("kubeconfig");
        let mut s = KeelServer {
            child: None,
            root,
            port: free_port(),
            datastore: None,
            kubeconfig,
            home,
            env: Vec::new(),
            args: Vec::new(),
            ip: ip.to_string(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.arg("--root")
            .arg(self.root.path())
            .arg("server")
            .arg("--listen")
            .arg(format!("{}:{}", self.ip, self.port))
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            // These suites use fake nodes; agent_pods.rs runs real agents.
            .arg("--disable-agent")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.root.path().join("server.log")).unwrap(),
            ));
        if let Some(d) = &self.datastore {
            cmd.arg("--datastore").arg(d);
        }
        cmd.args(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("start keel server"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig.exists()
            || std::net::TcpStream::connect((self.ip.as_str(), self.port)).is_err()
        {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("keel server exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "keel server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("server")
    }

    /// Runs kubectl `bin` with this server's kubeconfig.
    pub fn kubectl_with(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_at(bin, &self.kubeconfig, self.home.path(), args, stdin)
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn ok(&self, bin: &Path, args: &[&str]) -> String {
        self.ok_in(bin, args, None)
    }

    pub fn ok_in(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(bin, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(bin, args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// The admin bearer token (the kubeconfig authenticates with the
    /// admin's client certificate; the token is in the state directory).
    pub fn admin_token(&self) -> String {
        let tokens = std::fs::read_to_string(self.state_dir().join("tokens")).unwrap();
        tokens
            .lines()
            .find_map(|l| l.strip_suffix(" admin"))
            .unwrap()
            .to_string()
    }

    /// A kube-rs client for this server.
    pub async fn kube_client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for KeelServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A folder of ../shared/conformance: `$KEEL_CONFORMANCE/SUB`, else the
/// nearest ancestor of the repo holding it. Missing is a failure.
pub fn conformance(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}

/// Pods with this label are never marked Ready by [`FakeKubelet`].
pub const NEVER_READY: &str = "keel.test/never-ready";

/// A stand-in for the kubelets of fake nodes (as kwok does): every pod that
/// appears is marked Running and Ready through `pods/status` after
/// `delay`, except pods labelled [`NEVER_READY`]. Stops on drop.
pub struct FakeKubelet {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    pub fn start(s: &KeelServer, delay: Duration) -> Self {
        let kubeconfig = s.kubeconfig.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    () = mark_ready(kubeconfig, delay) => {}
                    _ = rx => {}
                }
            });
        });
        FakeKubelet {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeKubelet {
    /// Ends pod `ns/name` as its kubelet would: `phase` (`Succeeded` or
    /// `Failed`), its first container terminated with `exit_code`, plus
    /// the pod `condition` type given (e.g. `DisruptionTarget`), through
    /// `kubectl patch --subresource=status`.
    pub fn finish_pod(
        s: &KeelServer,
        k: &Path,
        ns: &str,
        name: &str,
        phase: &str,
        exit_code: i32,
        condition: Option<&str>,
    ) {
        let now = jiff_now();
        let mut status = serde_json::json!({"phase": phase, "containerStatuses": [{
            "name": "main", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now}}}]});
        if let Some(c) = condition {
            status["conditions"] =
                serde_json::json!([{"type": c, "status": "True", "lastTransitionTime": now}]);
        }
        let patch = serde_json::json!({"status": status}).to_string();
        s.ok(
            k,
            &[
                "-n",
                ns,
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
        );
    }
}

pub async fn kube_client_for(kubeconfig: &Path) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn mark_ready(kubeconfig: PathBuf, delay: Duration) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};
    let client = kube_client_for(&kubeconfig).await;
    let pods: Api<Pod> = Api::all(client.clone());
    let mut seen = std::collections::HashSet::new();
    let stream = kube::runtime::watcher(pods, kube::runtime::watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        use kube::runtime::watcher::Event;
        let Ok(Event::Apply(pod) | Event::InitApply(pod)) = ev else {
            continue;
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running
            || pod.metadata.deletion_timestamp.is_some()
            || labels.contains_key(NEVER_READY)
            || !seen.insert(uid)
        {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let ip = format!("10.0.{}.{}", seen.len() / 250, seen.len() % 250 + 1);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let now = jiff_now();
            let patch = serde_json::json!({"status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        });
    }
}

/// Now in RFC 3339 (UTC, seconds).
fn jiff_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
