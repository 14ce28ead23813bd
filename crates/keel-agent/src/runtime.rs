//! The node's container engine as the agent uses it. Blocking: call from
//! `spawn_blocking`. Records are written by keel-runtime's `engine`;
//! whatever runs libcontainer (monitors, stop, rm, exec) is a child `keel`
//! process.

use std::path::Path;
use std::process::{Command, Stdio};

use keel_runtime::engine::{self, CreateOptions};
use keel_runtime::{Containers, Status};

use crate::AgentError;

/// The sandbox's image: the node's busybox (`keel image seed-busybox`),
/// running `sleep` as Kubernetes' pause container does nothing.
pub const PAUSE_IMAGE: &str = "busybox:latest";

/// The pod network bridge on `cidr` with pods' interfaces at `mtu` (`None`:
/// the kernel's default), created
/// (or re-created when the node's podCIDR or the MTU changed and no pod uses it).
/// Returns the network's gateway (the node's address on it).
pub fn ensure_network(
    root: &Path,
    cidr: &str,
    mtu: Option<u32>,
) -> Result<Option<std::net::Ipv4Addr>, AgentError> {
    const OPT_MTU: &str = "com.docker.network.driver.mtu";
    let nets = keel_net::Networks::open(root).map_err(|e| AgentError::Network(e.to_string()))?;
    let mtu = mtu.map(|m| m.to_string());
    if let Ok(n) = nets.inspect(crate::POD_NETWORK) {
        // A pod still on it keeps it: its MTU changes with the next restart.
        if n.subnet.as_deref() == Some(cidr)
            && (n.options.get(OPT_MTU) == mtu.as_ref() || !n.containers.is_empty())
        {
            return Ok(n.gateway);
        }
        nets.remove(crate::POD_NETWORK)
            .map_err(|e| AgentError::Network(e.to_string()))?;
    }
    let opts = keel_net::NetworkOptions {
        subnet: Some(cidr.to_string()),
        options: mtu.map(|m| (OPT_MTU.to_string(), m)).into_iter().collect(),
        ..keel_net::NetworkOptions::default()
    };
    nets.create_with(crate::POD_NETWORK, &opts).map_err(|e| {
        AgentError::Network(format!("create {} on {cidr}: {e}", crate::POD_NETWORK))
    })?;
    Ok(nets
        .inspect(crate::POD_NETWORK)
        .ok()
        .and_then(|n| n.gateway))
}

fn keel(root: &Path, exe: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("--root").arg(root);
    c.stdin(Stdio::null());
    c
}

fn run(mut c: Command, what: &str) -> Result<(), AgentError> {
    let out = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(crate::io_err(what))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AgentError::Other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether `image` is in the node's store.
pub fn image_present(root: &Path, image: &str) -> bool {
    keel_oci::ImageStore::open(root).is_ok_and(|s| s.resolve(image).is_ok())
}

/// Pulls so far, naming each one's private directory.
static PULLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes `image` present in the node's store: the pause image is built
/// offline (`keel image seed-busybox`), others are pulled (`keel pull`),
/// with `auth` (a Docker `config.json` from the pod's pull secrets) in a
/// private directory that is gone when the pull ends.
pub fn ensure_image(
    root: &Path,
    exe: &Path,
    image: &str,
    auth: Option<&serde_json::Value>,
) -> Result<(), AgentError> {
    if image_present(root, image) {
        return Ok(());
    }
    let mut c = keel(root, exe);
    if image == PAUSE_IMAGE {
        c.args(["image", "seed-busybox"]);
        return run(c, &format!("pulling {image}"));
    }
    c.args(["pull", image]);
    let Some(auth) = auth else {
        return run(c, &format!("pulling {image}"));
    };
    let n = PULLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("tmp/pull-{}-{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("config.json"))?
            .write_all(auth.to_string().as_bytes())
    };
    let r = write()
        .map_err(crate::io_err("writing the pull secrets"))
        .and_then(|()| {
            c.env("DOCKER_CONFIG", &dir);
            run(c, &format!("pulling {image}"))
        });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Creates a container's record; returns its ID.
pub fn create(root: &Path, o: &CreateOptions) -> Result<String, AgentError> {
    engine::create(root, o)
        .map(|c| c.id)
        .map_err(|e| AgentError::Other(keel_runtime::error_chain(&e)))
}

/// Starts a created container (a `keel __monitor` process) and waits for
/// it to run.
pub fn start(root: &Path, exe: &Path, id: &str) -> Result<(), AgentError> {
    let mut child = engine::spawn_monitor(exe, root, id, false)
        .map_err(|e| AgentError::Other(keel_runtime::error_chain(&e)))?;
    let r = engine::await_start(&mut child);
    // Its frames are not read past the start (as `keel start` does): the
    // monitor sees the pipe closed. It is kept to be reaped when it exits.
    drop(child.stdout.take());
    if let Ok(mut m) = MONITORS.lock() {
        m.push(child);
    }
    r.map(|_| ())
        .map_err(|e| AgentError::Other(keel_runtime::error_chain(&e)))
}

/// Monitors this process started: children, so this process reaps them.
static MONITORS: std::sync::Mutex<Vec<engine::Monitor>> = std::sync::Mutex::new(Vec::new());

/// Reaps the monitors that exited (no zombies in a long-running agent).
pub fn reap() {
    if let Ok(mut m) = MONITORS.lock() {
        m.retain_mut(|c| !c.try_wait().unwrap_or(true));
    }
}

/// Stop signal, then SIGKILL after `grace` seconds.
pub fn stop(root: &Path, exe: &Path, id: &str, grace: i64) -> Result<(), AgentError> {
    let mut c = keel(root, exe);
    c.args(["stop", "-t", &grace.max(0).to_string(), id]);
    run(c, "stopping a container")
}

/// Removes a container (killing it if needed): its mounts, cgroup, network
/// and record.
pub fn remove(root: &Path, exe: &Path, id: &str) -> Result<(), AgentError> {
    let mut c = keel(root, exe);
    c.args(["rm", "-f", id]);
    run(c, "removing a container")
}

/// What a container is doing.
#[derive(Debug, Clone)]
pub struct Observed {
    pub running: bool,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub ip: Option<String>,
    pub image_id: String,
    pub image: String,
    pub hosts_path: Option<std::path::PathBuf>,
}

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The container's state; `None` when it does not exist.
pub fn observe(root: &Path, id: &str) -> Option<Observed> {
    let c = Containers::open(root).ok()?;
    let cfg = c.config(id).ok()?;
    let st = c.state(id).ok()?;
    let alive = c.monitor_alive(&st, id);
    Some(Observed {
        running: alive && st.status == Status::Running,
        exit_code: st.exit_code,
        oom_killed: st.oom_killed,
        started_at: rfc3339(st.started_at),
        finished_at: rfc3339(st.finished_at),
        ip: st.network.as_ref().map(|n| n.ip.clone()),
        image_id: format!("{}@{}", cfg.image, cfg.image_manifest),
        image: cfg.image,
        hosts_path: st.hosts_path.or_else(|| Some(c.dir(id).join("hosts"))),
    })
}

/// Whether other containers may join `id`'s IPC namespace.
pub fn ipc_shareable(root: &Path, id: &str) -> bool {
    Containers::open(root)
        .and_then(|c| c.config(id))
        .is_ok_and(|cfg| cfg.extra.ipc == "shareable")
}

/// Containers of this node's pods (label `io.kubernetes.pod.uid`):
/// (id, pod uid, container name, restart count).
pub fn pod_containers(root: &Path) -> Vec<(String, String, String, u32)> {
    labelled(root)
        .into_iter()
        .filter_map(|(id, labels)| {
            let uid = labels.get(LABEL_POD_UID)?.clone();
            let name = labels.get(LABEL_CONTAINER)?.clone();
            let restarts = labels
                .get(LABEL_RESTARTS)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            Some((id, uid, name, restarts))
        })
        .collect()
}

/// Every container in the node's store with its labels.
pub fn labelled(root: &Path) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    let Ok(c) = Containers::open(root) else {
        return Vec::new();
    };
    c.ids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| Some((id.clone(), c.config(&id).ok()?.labels)))
        .collect()
}

pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NS: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
pub const LABEL_RESTARTS: &str = "io.kubernetes.container.restartCount";
/// The sandbox's container name label value.
pub const SANDBOX: &str = "POD";
