//! Where the chart parity tests find their peers: the real Helm 4.1.4 that
//! scripts/lib.sh's `keel_ensure_helm` installs, and the chart corpus in
//! ../shared/charts rendered by that Helm. Both missing is a failure, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The real Helm binary: `$KEEL_HELM`, else `keel_ensure_helm`'s fixed place.
pub fn helm() -> PathBuf {
    let p = std::env::var_os("KEEL_HELM").map_or_else(
        || PathBuf::from("/opt/keel-peers/helm-4.1.4/helm"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "real Helm 4.1.4 missing at {} (run scripts/test.sh, or `source scripts/lib.sh && keel_ensure_helm`)",
        p.display()
    );
    p
}

/// ../shared/charts: `$KEEL_CHARTS`, else the nearest ancestor of the repo
/// holding shared/charts (a clone beside shared/, or a worktree a level deeper).
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("KEEL_CHARTS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/charts"))
                .find(|d| d.join("determinism.json").is_file())
                .unwrap_or_else(|| PathBuf::from("../shared/charts"))
        },
        PathBuf::from,
    );
    assert!(
        dir.join("determinism.json").is_file(),
        "chart corpus missing at {} (the repo must sit beside shared/, or set KEEL_CHARTS)",
        dir.display()
    );
    dir
}

/// Runs `keel chart template ARGS` in `dir`.
pub fn keel_template(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("chart")
        .arg("template")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run keel")
}

/// Runs `helm template ARGS` in `dir` with empty Helm homes under `home`, as
/// the corpus goldens were made.
pub fn helm_template(dir: &Path, home: &Path, args: &[String]) -> Output {
    Command::new(helm())
        .arg("template")
        .args(args)
        .current_dir(dir)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("run helm")
}

/// Helm's error message: stderr without `Error: ` and without the
/// `Use --debug flag …` trailer, lines joined with single spaces.
pub fn helm_error(stderr: &str) -> String {
    let body = stderr
        .split("\n\nUse --debug flag")
        .next()
        .unwrap_or("")
        .trim_end();
    let body = body
        .lines()
        .skip_while(|l| !l.starts_with("Error: "))
        .collect::<Vec<_>>()
        .join("\n");
    squash(body.strip_prefix("Error: ").unwrap_or(&body))
}

/// keel's error message: the `error: ` line without its prefix (keel prints
/// one line; hints follow on their own lines).
pub fn keel_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or("");
    squash(line.strip_prefix("error: ").unwrap_or(line))
}

/// Whitespace runs (Helm's multi-line indentation) become one space.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first line where `want` and `got` differ, for failure reports.
pub fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.split('\n').collect(), got.split('\n').collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            return format!(
                "line {}:\n      helm: {}\n      keel: {}",
                i + 1,
                a.map_or("<end of output>".to_string(), |s| format!("{s:?}")),
                b.map_or("<end of output>".to_string(), |s| format!("{s:?}")),
            );
        }
    }
    "identical".into()
}

/// Runs the real `helm ARGS` against the cluster of `kubeconfig`, with empty
/// Helm homes under `home` (UTC, so times print as keel prints them).
pub fn helm_on(kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run helm")
}

/// A plain HTTP server for chart repositories; stopped on drop.
pub struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server` serving `dir` on a free 127.0.0.1 port
/// (retried on a collision); returns it with its base URL.
pub fn serve(dir: &Path) -> (Server, String) {
    use std::time::{Duration, Instant};
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 for a plain HTTP server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (Server(child), format!("http://127.0.0.1:{port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no HTTP server came up");
}
