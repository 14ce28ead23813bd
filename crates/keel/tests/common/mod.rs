//! Shared helpers for keel's CLI tests: a keel with a temporary root, a real
//! registry (Debian's docker-registry) and podman with a throw-away store, all
//! on 127.0.0.1 and cleaned up on drop.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The keel binary under test with its own root.
pub struct Keel {
    pub root: tempfile::TempDir,
}

/// A test root's containers and networks go with it, even when the test
/// fails: the default bridge and its NAT rules live in the host's namespace
/// and would outlive the temporary root (and use up the address pools).
impl Drop for Keel {
    fn drop(&mut self) {
        if self.root.path().join("net").exists() {
            prune_root(self);
        }
    }
}

/// Never panics: it runs in drops, also while a failed test unwinds.
fn prune_root(k: &Keel) {
    let run = |args: &[&str]| k.cmd().args(args).stdin(Stdio::null()).output().ok();
    if let Some(ps) = run(&["ps", "-a", "-q"]) {
        for id in String::from_utf8_lossy(&ps.stdout).split_whitespace() {
            run(&["rm", "-f", id]);
        }
    }
    run(&["network", "prune", "-f"]);
}

impl Keel {
    pub fn new() -> Self {
        Keel {
            root: tempfile::Builder::new()
                .prefix("keel-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
        c.env("KEEL_ROOT", self.root.path())
            .env("NO_COLOR", "1")
            .env_remove("KEEL_INSECURE_REGISTRIES")
            // Credentials never come from the host's docker config.
            .env("DOCKER_CONFIG", self.root.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "keel {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs the command `args(port)` makes with a [`free_port`], and again
    /// with another (up to 5 times) when the port was taken meanwhile;
    /// asserts success; returns the port and stdout.
    pub fn ok_on_free_port(&self, args: impl Fn(&str) -> Vec<String>) -> (u16, String) {
        for _ in 0..5 {
            let port = free_port();
            let a = args(&port.to_string());
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let o = self.run(&a);
            let err = String::from_utf8_lossy(&o.stderr);
            if o.status.success() {
                return (port, String::from_utf8(o.stdout).unwrap());
            }
            assert!(port_clash(&err), "keel {a:?} failed: {err}");
        }
        panic!("five free ports in a row were taken before keel could publish them");
    }

    /// Runs, asserts a clean failure (non-zero, one `error:` line, optional
    /// `hint:` line, nothing else) and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "keel {args:?} should fail; stderr: {err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "one error line expected: {err}");
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("error: ")
                || (last.starts_with("hint: ") && lines[lines.len() - 2].starts_with("error: ")),
            "error (and hint) must be the last lines: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// Every file under the root with its size, to compare before/after a failure.
    pub fn snapshot_store(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out.sort();
        out
    }

    pub fn seed_busybox(&self) -> String {
        self.ok(&["image", "seed-busybox"]).trim().to_string()
    }

    /// `keel images -o json`.
    pub fn images_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["images", "-o", "json"])).unwrap()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        // Lock files are created on first use and carry no data.
        if p.extension().is_some_and(|x| x == "lock") {
            continue;
        }
        if md.is_dir() {
            walk(root, &p, out);
        } else {
            out.push((
                p.strip_prefix(root).unwrap().display().to_string(),
                md.len(),
            ));
        }
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// A port free for TCP and UDP on every address now. It comes from below
/// the kernel's ephemeral range (so no outgoing connection is handed it
/// before the test binds it) and never twice from one process. Another
/// process may still bind it first: where keel publishes it, use
/// [`Keel::ok_on_free_port`], which retries on such a clash.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768);
    let base = 10_000u64;
    let span = ephemeral.saturating_sub(base).max(1000);
    let seed = u64::from(std::process::id()) * 7919;
    loop {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + (seed + i * 1009) % span).unwrap();
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

/// Whether keel's (or a container's) error says a port was taken.
pub fn port_clash(stderr: &str) -> bool {
    stderr.contains("already allocated") || stderr.contains("ddress already in use")
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real registry (Debian's docker-registry) on 127.0.0.1.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// With `Some((user, password))`, the registry requires basic auth (htpasswd).
    pub fn start_with_auth(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut extra = String::new();
        if let Some((u, p)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            writeln!(
                extra,
                "auth:\n  htpasswd:\n    realm: keel-test\n    path: {}",
                file.display()
            )
            .unwrap();
        }
        Self::start_with_config(&extra, dir)
    }

    /// Starts with extra YAML appended to the config; `dir` holds its data.
    /// On a [`free_port`] that another process took meanwhile the registry
    /// exits saying so: it starts again on another (up to 5 times).
    pub fn start_with_config(extra: &str, dir: tempfile::TempDir) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n{extra}",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = dir.path().join("log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("docker-registry is installed");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().unwrap().is_some() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(port_clash(&text), "docker-registry exited: {text}");
                    break;
                }
                // Ours, not whoever else listens there: it is still running.
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && child.try_wait().unwrap().is_none()
                {
                    return Registry {
                        port,
                        child,
                        _dir: dir,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "docker-registry did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("five free ports in a row were taken before docker-registry could listen");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Podman with a throw-away store and a test containers.conf (runc, cgroupfs,
/// ulimits within this machine's hard limits).
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("keel-podman-")
            .tempdir()
            .unwrap();
        // Networks in a directory of its own: podman keeps them host-wide
        // (/etc/containers/networks) otherwise, and one test's `network
        // prune` removed another's network.
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n[network]\nnetwork_config_dir = \"{}\"\n",
                dir.path().join("networks").display()
            ),
        )
        .unwrap();
        Podman { dir }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            // Podman's default tmpdir (exit codes, locks) is shared between
            // instances; concurrent tests race on it without their own.
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"))
            .args(["--storage-driver", "overlay"]);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            o.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Overlay mounts of podman's store must go before the directory can.
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .output();
    }
}

/// A keel and a podman with the same busybox (keel's seed, saved into
/// `tmp` and loaded into podman), for side-by-side tests.
pub fn keel_and_podman_with_busybox(tmp: &Path) -> (Keel, Podman) {
    let keel = Keel::new();
    keel.seed_busybox();
    let bb = tmp.join("busybox.tar");
    keel.ok(&["save", "-o", bb.to_str().unwrap(), "busybox"]);
    let podman = Podman::new();
    podman.ok(&["load", "-q", "-i", bb.to_str().unwrap()]);
    (keel, podman)
}

/// Unmounts everything mounted at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).output();
    }
}

/// A busybox root filesystem tarball (Debian's busybox-static) for peers to import.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let p = dir.join("busybox-rootfs.tar");
    let f = std::fs::File::create(&p).unwrap();
    keel_oci::busybox::build_rootfs_tar(std::io::BufWriter::new(f)).unwrap();
    p
}

/// A TCP proxy to 127.0.0.1:`upstream` that cuts every connection once
/// `limit` bytes in total went from clients to the server: a registry that
/// fails in the middle of a push.
pub struct CuttingProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    pub fn start(upstream: u16, limit: u64) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let sent = sent.clone();
                        std::thread::spawn(move || pump(client, server, Some((sent, limit))));
                        std::thread::spawn(move || pump(s2, c2, None));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CuttingProxy { port, stop }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<(Arc<AtomicU64>, u64)>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((sent, limit)) = &budget
            && sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > *limit
        {
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A registry that requires bearer tokens (Docker's token auth), with a token
/// server on 127.0.0.1 that hands out RS256 JWTs (signed by `openssl`) to
/// clients presenting `user:password` over basic auth.
pub struct TokenRegistry {
    pub registry: Registry,
    pub token_port: u16,
    stop: Arc<AtomicBool>,
    pub tokens_issued: Arc<AtomicU64>,
}

impl TokenRegistry {
    pub fn start(user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=keel-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let token_port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicU64::new(0));
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (st2, issued2, key2) = (stop.clone(), issued.clone(), key.clone());
        std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let authorized = req.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:")
                        && l[14..].trim() == expected_auth
                });
                if !authorized {
                    let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let access: Vec<serde_json::Value> = path
                    .split(['?', '&'])
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(|s| s.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/"))
                    .filter_map(|s| {
                        let mut p = s.splitn(3, ':');
                        let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                        Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "keel-test-issuer", "sub": "alice", "aud": "keel-test",
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}"),
                    "access": access,
                });
                let input = format!(
                    "{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(claims.to_string().as_bytes())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key2)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                sign.stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                let sig = sign.wait_with_output().unwrap().stdout;
                let jwt = format!("{input}.{}", b64(&sig));
                let body =
                    serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300})
                        .to_string();
                issued2.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
            }
        });
        let extra = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: keel-test\n    issuer: keel-test-issuer\n    rootcertbundle: {}\n",
            cert.display()
        );
        let registry = Registry::start_with_config(&extra, dir);
        TokenRegistry {
            registry,
            token_port,
            stop,
            tokens_issued: issued,
        }
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs skopeo (always without TLS: test registries are plain HTTP on loopback).
pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed")
}

/// The manifest digest a registry serves for `reference`, as skopeo sees it.
pub fn skopeo_digest(reference: &str) -> String {
    let o = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// Removes a test root's networks when dropped, even when the test fails:
/// the root's default bridge and its NAT rules live in the host's namespace
/// and would outlive the temporary root (and use up the address pools).
pub struct PruneNetworks<'a>(pub &'a Keel);

impl Drop for PruneNetworks<'_> {
    fn drop(&mut self) {
        prune_root(self.0);
    }
}
