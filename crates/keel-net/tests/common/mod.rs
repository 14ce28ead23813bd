//! Test harness: network namespaces created with `ip netns add` and removed on
//! drop; a scratch "host" namespace per test so bridges and iptables rules never
//! touch the real host, and containers' namespaces beside it.

#![allow(dead_code)]

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace under /run/netns, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!(
            "kt{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        sh("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace and returns its output (not checked).
    pub fn output(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// Runs a command inside the namespace; panics when it fails; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a background process inside the namespace, killed on drop.
    pub fn spawn(&self, args: &[&str]) -> KillOnDrop {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        KillOnDrop(child)
    }

    /// Runs `f` on a thread that has entered this namespace: every process it
    /// spawns and every socket it opens lives there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(self.path()).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect(prog);
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` for up to ~5 s (servers in namespaces take a moment to listen).
pub fn eventually(mut f: impl FnMut() -> Result<String, String>) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        match f() {
            Ok(s) => return s,
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("gave up: {last}");
}

/// `busybox wget -qO- url` (inside the current thread's namespace, or via `ns`), bounded by `timeout`.
pub fn wget(ns: Option<&NetNs>, url: &str) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    if let Some(n) = ns {
        cmd.args(["netns", "exec", &n.name, "timeout", "5"]);
    } else {
        // Stays in the calling thread's namespace.
        cmd = Command::new("timeout");
        cmd.arg("5");
    }
    let out = cmd
        .args(["busybox", "wget", "-qO-", url])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "wget {url}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A free TCP port on 127.0.0.1 in the current thread's namespace.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
