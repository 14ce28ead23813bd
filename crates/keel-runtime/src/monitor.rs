//! The per-container monitor: a fork of a single-threaded client (see
//! [`crate::launch`]) or `keel __monitor <id>`, that owns one container's
//! life. It is single-threaded on purpose, since libcontainer forks and must
//! never run inside a multi-threaded process. It mounts the root, creates
//! the network namespace and attaches the networks, starts the container,
//! streams its output into the JSON-lines log (and, framed, to an attached
//! `keel run`), runs health checks, records exit code and OOM kill, applies
//! the restart policy with exponential backoff, and tears down; an `--rm`
//! container is retired before its exit frame and released after it.
//! [`run_with`] is all of that on the kernel its [`Containers`] carries
//! (unit-tested on a fake); [`run_sized`] adds the process set-up. Its
//! `tracing` events (its stderr: `monitor.log`) say what it did.
//!
//! Its stdout is a pipe to the `keel` command that started it, carrying
//! [`Frame`]s; once that reader goes away the monitor carries on alone.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rustix::event::{PollFd, PollFlags, poll};

use crate::backend::{ExecSpec, OciRuntime, Stdio};
use crate::error::{Result, RuntimeError};
use crate::logs::LogWriter;
use crate::network::{AttachRequest, Mode, NetworkAttacher, PortMapping, Protocol};
use crate::record::{
    ContainerConfig, Containers, EndpointState, HealthProbe, HealthState, NetworkState, PortSpec,
    Status,
};
use crate::spec;

/// A message from the monitor to its `keel` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container runs; its init pid.
    Started(i32),
    /// Setting up or starting failed.
    Error(String),
    /// The container is done for good (after restarts and, for --rm, removal).
    Exit(i32),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, Vec<u8>) = match self {
            Frame::Stdout(d) => (1, d.clone()),
            Frame::Stderr(d) => (2, d.clone()),
            Frame::Started(p) => (3, p.to_string().into_bytes()),
            Frame::Error(m) => (4, m.clone().into_bytes()),
            Frame::Exit(c) => (5, c.to_string().into_bytes()),
        };
        let mut v = Vec::with_capacity(body.len() + 5);
        v.push(tag);
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(&body);
        v
    }

    /// Reads one frame; `None` at EOF.
    pub fn read(r: &mut impl Read) -> std::io::Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let text = || String::from_utf8_lossy(&body).into_owned();
        let num = || text().parse::<i32>().unwrap_or(-1);
        Ok(Some(match head[0] {
            1 => Frame::Stdout(body),
            2 => Frame::Stderr(body),
            3 => Frame::Started(num()),
            4 => Frame::Error(text()),
            5 => Frame::Exit(num()),
            t => {
                return Err(std::io::Error::other(format!("bad monitor frame tag {t}")));
            }
        }))
    }
}

/// The pipe to the attached `keel` command, if it is still listening.
struct Attached(Option<File>);

impl Attached {
    fn send(&mut self, f: &Frame) {
        if let Some(out) = &mut self.0
            && out.write_all(&f.encode()).is_err()
        {
            // The command went away (`run -d` returns early): carry on alone.
            self.0 = None;
        }
    }
}

fn prepare(
    containers: &Containers,
    cfg: &ContainerConfig,
    rt: &dyn OciRuntime,
    net: &dyn NetworkAttacher,
) -> Result<(PathBuf, PathBuf)> {
    let dir = containers.dir(&cfg.id);
    let k = containers.kernel();
    let merged = k.mount_overlay(&dir, &cfg.lowerdirs, cfg.auto_remove)?;
    copy_up_volumes(containers, cfg, &merged)?;
    if !cfg.working_dir.is_empty() {
        // docker makes a missing working directory instead of failing the start.
        crate::copy::mkdir_all_in_root(&merged, &cfg.working_dir)?;
    }
    let mode = Mode::parse(&cfg.network);
    crate::network::write_etc_files(&dir, &mode, &cfg.hostname, &cfg.networking)?;
    let mut paths = spec::SpecPaths {
        rootfs: merged,
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
        netns: None,
        volumes: containers.root().join("volumes"),
        ipc_ns: None,
        pid_ns: None,
    };
    match &mode {
        Mode::Host => {}
        Mode::Container(other) => join_container(containers, other, &mut paths)?,
        Mode::None | Mode::Network(_) => {
            let ns = containers.netns_path(&cfg.id);
            if !k.is_mounted(&ns) {
                k.create_netns(&ns)?;
            }
            paths.netns = Some(ns.clone());
            if let Mode::Network(name) = &mode {
                attach_all(containers, cfg, net, name, &ns, &mut paths)?;
            }
        }
    }
    paths.ipc_ns = shared_ns(containers, "ipc", &cfg.extra.ipc)?;
    paths.pid_ns = shared_ns(containers, "pid", &cfg.extra.pid)?;
    let s = spec::build(cfg, &paths)?;
    rt.write_bundle(s, &containers.bundle(&cfg.id))?;
    // Recorded with the Running state, one write fewer per start.
    Ok((paths.hosts, paths.resolv_conf))
}

/// Docker's copy-up, on every start as docker does it: each empty volume is
/// filled with what the image has at its mount point, unless it is mounted
/// `nocopy`. Done before the spec is written, so the container never sees
/// the empty volume.
fn copy_up_volumes(containers: &Containers, cfg: &ContainerConfig, merged: &Path) -> Result<()> {
    let volumes = containers.root().join("volumes");
    for m in &cfg.mounts {
        if m.kind != crate::record::MountKind::Volume
            || m.options.iter().any(|o| o == crate::volume::NOCOPY)
        {
            continue;
        }
        crate::copy::copy_up(merged, &m.target, &volumes.join(&m.source).join("_data"))?;
    }
    Ok(())
}

/// `--ipc container:X`, `--pid container:X`: X's namespace of `kind`
/// (X must run; docker joins another's IPC only if it is `shareable`).
fn shared_ns(containers: &Containers, kind: &str, mode: &str) -> Result<Option<PathBuf>> {
    let Some(other) = mode.strip_prefix("container:") else {
        return Ok(None);
    };
    let oid = containers.resolve(other)?;
    let st = containers.state(&oid)?;
    if st.status != Status::Running || st.pid <= 0 || !containers.monitor_alive(&st, &oid) {
        return Err(RuntimeError::Start(format!(
            "cannot join {} of a non running container: {other}",
            kind.to_ascii_uppercase()
        )));
    }
    if kind == "ipc"
        && !matches!(
            containers.config(&oid)?.extra.ipc.as_str(),
            "shareable" | "host"
        )
    {
        return Err(RuntimeError::Start(
            "non-shareable IPC (hint: use IpcMode:shareable for the donor container)".to_string(),
        ));
    }
    Ok(Some(PathBuf::from(format!("/proc/{}/ns/{kind}", st.pid))))
}

/// `--network container:X`: X's namespace and its hosts, resolv.conf and
/// hostname files, as Docker shares them. X must be running.
fn join_container(containers: &Containers, other: &str, paths: &mut spec::SpecPaths) -> Result<()> {
    let oid = containers.resolve(other)?;
    let st = containers.state(&oid)?;
    if st.status != Status::Running || !containers.monitor_alive(&st, &oid) {
        return Err(RuntimeError::JoinNotRunning(oid));
    }
    let ocfg = containers.config(&oid)?;
    // A host-mode container shares the host's stack: so does its follower.
    paths.netns = match Mode::parse(&ocfg.network) {
        Mode::Host => None,
        _ => Some(containers.netns_path(&oid)),
    };
    paths.hostname = containers.dir(&oid).join("hostname");
    paths.hosts = st
        .hosts_path
        .unwrap_or_else(|| containers.dir(&oid).join("hosts"));
    paths.resolv_conf = st
        .resolv_conf_path
        .unwrap_or_else(|| containers.dir(&oid).join("resolv.conf"));
    Ok(())
}

pub(crate) fn endpoint_state(a: &crate::network::Attachment) -> EndpointState {
    EndpointState {
        network: a.network.clone(),
        network_id: a.network_id.clone(),
        endpoint_id: a.endpoint_id.clone(),
        ifname: a.ifname.clone(),
        aliases: a.aliases.clone(),
        ip: a.ip.to_string(),
        prefix_len: a.prefix_len,
        gateway: a.gateway.to_string(),
        mac: a.mac.clone(),
    }
}

/// The attach request for one of the container's networks.
pub fn attach_request(
    cfg: &ContainerConfig,
    netns: &Path,
    network: &str,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<AttachRequest> {
    let ip = ip.map(crate::network::parse_ip).transpose()?;
    Ok(AttachRequest {
        container_id: cfg.id.clone(),
        name: cfg.name.clone(),
        hostname: cfg.hostname.clone(),
        netns: netns.to_path_buf(),
        network: network.to_string(),
        aliases: aliases.to_vec(),
        ports: Vec::new(),
        ip,
        extra_hosts: crate::network::extra_hosts(&cfg.networking)?,
        dns: crate::network::dns_config(&cfg.networking),
    })
}

/// Connects the primary network (with the published ports) and then every
/// further one, and records them all in the state.
fn attach_all(
    containers: &Containers,
    cfg: &ContainerConfig,
    net: &dyn NetworkAttacher,
    primary: &str,
    ns: &Path,
    paths: &mut spec::SpecPaths,
) -> Result<()> {
    let mut req = attach_request(
        cfg,
        ns,
        primary,
        &cfg.network_aliases,
        cfg.networking.ip.as_deref(),
    )?;
    req.ports = cfg
        .ports
        .iter()
        .map(|p| PortMapping {
            host_ip: p.host_ip.as_ref().and_then(|i| i.parse().ok()),
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: if p.protocol.eq_ignore_ascii_case("udp") {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            ..PortMapping::default()
        })
        .collect();
    let a = net.attach(&req)?;
    paths.hosts.clone_from(&a.hosts_file);
    paths.resolv_conf.clone_from(&a.resolv_conf);
    let mut endpoints = vec![endpoint_state(&a)];
    for e in &cfg.networking.extra_networks {
        let req = attach_request(cfg, ns, &e.network, &e.aliases, e.ip.as_deref())?;
        let x = net.attach(&req).map_err(|source| RuntimeError::Connect {
            network: e.network.clone(),
            source,
        })?;
        endpoints.push(endpoint_state(&x));
    }
    containers.update(&cfg.id, |s| {
        s.network = Some(NetworkState {
            ip: a.ip.to_string(),
            prefix_len: a.prefix_len,
            gateway: a.gateway.to_string(),
            mac: a.mac.clone(),
            ports: a
                .ports
                .iter()
                .map(|p| PortSpec {
                    host_ip: p.host_ip.map(|i| i.to_string()),
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.protocol.as_str().to_string(),
                })
                .collect(),
        });
        s.endpoints = endpoints;
    })?;
    Ok(())
}

/// Undoes `prepare`: network, namespace, root mount. Idempotent.
pub fn teardown(
    containers: &Containers,
    id: &str,
    net: &dyn NetworkAttacher,
    network: &str,
) -> Result<()> {
    if needs_detach(containers, id, network) {
        net.detach(id)?;
        if containers.dir(id).join("state.json").exists() {
            containers.update(id, |s| s.endpoints.clear())?;
        }
    }
    teardown_local(containers, id)
}

/// [`teardown`], its failure logged (the monitor carries on to record the exit).
fn logged_teardown(containers: &Containers, id: &str, net: &dyn NetworkAttacher, network: &str) {
    if let Err(e) = teardown(containers, id, net, network) {
        tracing::warn!(error = %crate::error_chain(&e), "teardown failed");
    }
}

/// Whether keel-net holds anything of the container.
fn needs_detach(containers: &Containers, id: &str, network: &str) -> bool {
    // A container disconnected from its last network runs on as `none`
    // with keel-net's files still mounted.
    let net_files = containers
        .state(id)
        .ok()
        .and_then(|s| s.hosts_path)
        .is_some_and(|p| !p.starts_with(containers.dir(id)));
    matches!(Mode::parse(network), Mode::Network(_))
        || (net_files && Mode::parse(network) == Mode::None)
}

/// [`teardown`] but for the network: namespace and root mount.
fn teardown_local(containers: &Containers, id: &str) -> Result<()> {
    let k = containers.kernel();
    k.remove_netns(&containers.netns_path(id))?;
    k.unmount(&containers.rootfs(id))
}

/// Whether the monitor's stdin is /dev/null (a detached `run`).
fn stdin_is_dev_null() -> bool {
    let same =
        |a: &rustix::fs::Stat, b: &rustix::fs::Stat| a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    match (
        rustix::fs::fstat(std::io::stdin()),
        rustix::fs::stat("/dev/null"),
    ) {
        (Ok(a), Ok(b)) => same(&a, &b),
        _ => false,
    }
}

/// The FIFO in a container's directory that a detached `-i` container
/// reads its stdin from; `keel attach` writes into it.
pub const STDIN_FIFO: &str = "stdin";

/// Makes `<dir>/stdin` a fresh FIFO and opens it read-write: the container
/// never reads EOF when a writer goes, as docker keeps a detached `-i`
/// container's stdin open.
fn stdin_fifo(dir: &Path) -> Result<OwnedFd> {
    use rustix::fs::{CWD, FileType, Mode, OFlags};
    let path = dir.join(STDIN_FIFO);
    let _ = std::fs::remove_file(&path);
    let err = |e: rustix::io::Errno| RuntimeError::Monitor(format!("stdin fifo: {e}"));
    rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).map_err(err)?;
    rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(err)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RuntimeError::Monitor(format!("pipe: {e}")))
}

/// Runs the health probe once; returns (exit code, output).
fn probe(rt: &dyn OciRuntime, id: &str, hc: &crate::record::HealthConfig) -> (i32, String) {
    let args: Vec<String> = match hc.test.first().map(String::as_str) {
        Some("CMD-SHELL") => vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            hc.test[1..].join(" "),
        ],
        Some("CMD") => hc.test[1..].to_vec(),
        _ => hc.test.clone(),
    };
    let Ok((rd, wr)) = pipe() else {
        return (-1, "pipe failed".to_string());
    };
    let Ok(wr2) = wr.try_clone() else {
        return (-1, "pipe failed".to_string());
    };
    let Ok(stdio) = Stdio::null_in(wr, wr2) else {
        return (-1, "/dev/null".to_string());
    };
    let spec = ExecSpec {
        args,
        ..ExecSpec::default()
    };
    let mut h = match rt.exec(id, &spec, stdio) {
        Ok(h) => h,
        Err(e) => return (-1, e.to_string()),
    };
    let timeout = Duration::from_millis(hc.timeout_ms.max(1));
    let code = h.wait(Some(timeout));
    let mut out = Vec::new();
    let mut f = File::from(rd);
    // The probe and its children are gone, so the pipe reaches EOF.
    let _ = (&mut f).take(4096).read_to_end(&mut out);
    match code {
        Ok(Some(c)) => (c, String::from_utf8_lossy(&out).into_owned()),
        Ok(None) => (
            -1,
            format!("Health check exceeded timeout ({}ms)", hc.timeout_ms),
        ),
        Err(e) => (-1, e.to_string()),
    }
}

/// Runs the container until it is done; returns the final exit code. A `-t`
/// container's window size comes from [`TTY_SIZE_ENV`].
pub fn run(root: &Path, id: &str, net: &dyn NetworkAttacher) -> Result<i32> {
    let win = std::env::var(TTY_SIZE_ENV)
        .ok()
        .and_then(|s| crate::tty::WinSize::parse(&s));
    run_sized(root, id, net, win)
}

/// [`run`] with the window size given.
pub fn run_sized(
    root: &Path,
    id: &str,
    net: &dyn NetworkAttacher,
    win: Option<crate::tty::WinSize>,
) -> Result<i32> {
    // Our own process group (set at spawn) keeps the terminal's signals away;
    // setsid would be refused to a group leader. So the client's terminal may
    // still be ours: we never read it (a client relays stdin through a pipe).
    // Reparented container processes (runc's init once runc exits) become our children.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let frames = File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| RuntimeError::Monitor(e.to_string()))?,
    );
    // Nothing else may write into the frame pipe.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    let containers = Containers::open(root)?;
    run_with(&containers, id, net, win, Some(frames))
}

/// The monitor's work for container `id`, its [`Frame`]s going to `frames`:
/// everything but the process-wide set-up of [`run_sized`], on the kernel
/// `containers` carries.
pub fn run_with(
    containers: &Containers,
    id: &str,
    net: &dyn NetworkAttacher,
    win: Option<crate::tty::WinSize>,
    frames: Option<File>,
) -> Result<i32> {
    let root = containers.root();
    let k = containers.kernel();
    let mut attached = Attached(frames);
    let cfg = containers.config(id)?;
    // Every event of this monitor names its container.
    let _span = tracing::info_span!("monitor", container = %crate::ids::short(id)).entered();
    let rt = containers.runtime(&cfg.runtime)?;
    tracing::debug!(runtime = rt.name(), network = %cfg.network, "setting up");
    containers.update(id, |s| {
        s.monitor_pid = rustix::process::getpid().as_raw_nonzero().get();
        s.monitor_start = k.process_start(s.monitor_pid).unwrap_or(0);
        s.user_stopped = false;
        s.error.clear();
    })?;
    // A runtime that moves its init by pid pays a grace period unless the
    // lock is warm: warm it while we prepare (runc is a separate binary,
    // so threads here do not matter to it; libcontainer needs none).
    let mut warm = rt
        .migrates_by_pid()
        .then(crate::cgroups::MigrationWarmer::start);
    let (hosts_path, resolv_conf_path) = match prepare(containers, &cfg, rt.as_ref(), net) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            let full = crate::error_chain(&e);
            tracing::error!(error = %full, "setting up failed");
            let _ = containers.update(id, |s| {
                s.error.clone_from(&full);
                s.monitor_pid = 0;
            });
            logged_teardown(containers, id, net, &cfg.network);
            attached.send(&Frame::Error(if full.is_empty() { msg } else { full }));
            return Ok(-1);
        }
    };
    let mut log = LogWriter::open(
        &containers.log_path(id),
        cfg.extra.log_max_size,
        cfg.extra.log_max_file.unwrap_or(1),
    )?;
    let mut first = true;
    let mut code;
    // Some(oom_killed) once an --rm container has exited for good.
    let mut unrecorded_exit = None;
    // With -t the runtime makes the pty and sends us its master.
    let console = if cfg.tty {
        Some(crate::tty::ConsoleSocket::bind(&root.join("run"))?)
    } else {
        None
    };
    // `run -d -i`: nobody relays stdin, but docker keeps the container's
    // stdin open (a `cat` waits instead of reading EOF) and `keel attach`
    // writes into it: a FIFO the container holds open read-write.
    let fifo = if cfg.interactive && stdin_is_dev_null() {
        Some(stdin_fifo(&containers.dir(id))?)
    } else {
        None
    };
    loop {
        let stdin: OwnedFd = if cfg.interactive && fifo.is_none() {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| RuntimeError::Monitor(e.to_string()))?
        } else if let Some(f) = &fifo {
            f.try_clone()
                .map_err(|e| RuntimeError::Monitor(e.to_string()))?
        } else {
            File::open("/dev/null")
                .map_err(|e| RuntimeError::Monitor(e.to_string()))?
                .into()
        };
        let mut streams = Streams {
            out: None,
            err: None,
            input: None,
        };
        let started = if let Some(cs) = &console {
            rt.start_console(id, &containers.bundle(id), cs, win)
                .and_then(|(pid, master)| {
                    let to_master = master
                        .try_clone()
                        .map_err(|e| RuntimeError::Tty(e.to_string()))?;
                    streams.out = Some(master);
                    if cfg.interactive {
                        streams.input = Some((stdin, to_master));
                    }
                    Ok(pid)
                })
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            streams.out = Some(out_r);
            streams.err = Some(err_r);
            rt.start(
                id,
                &containers.bundle(id),
                Stdio {
                    stdin,
                    stdout: out_w,
                    stderr: err_w,
                },
            )
        };
        let pid = match started {
            Ok(p) => p,
            Err(e) => {
                let full = crate::error_chain(&e);
                tracing::error!(error = %full, "start failed");
                let _ = containers.update(id, |s| {
                    s.error.clone_from(&full);
                    s.status = if first {
                        Status::Created
                    } else {
                        Status::Exited
                    };
                    s.monitor_pid = 0;
                    s.pid = 0;
                });
                let _ = rt.delete(id);
                logged_teardown(containers, id, net, &cfg.network);
                attached.send(&Frame::Error(full));
                return Ok(-1);
            }
        };
        let started_at = Utc::now();
        containers.update(id, |s| {
            s.status = Status::Running;
            s.hosts_path = Some(hosts_path.clone());
            s.resolv_conf_path = Some(resolv_conf_path.clone());
            s.pid = pid;
            s.started_at = Some(started_at);
            s.finished_at = None;
            s.exit_code = 0;
            s.oom_killed = false;
            if cfg.healthcheck.is_some() {
                s.health = Some(HealthState {
                    status: "starting".to_string(),
                    ..HealthState::default()
                });
            }
        })?;
        drop(warm.take());
        tracing::info!(pid, "started");
        crate::events::container(root, &cfg, "start", &[]);
        if first {
            attached.send(&Frame::Started(pid));
            first = false;
        }
        code = supervise(
            containers,
            &cfg,
            rt.as_ref(),
            pid,
            streams,
            &mut log,
            &mut attached,
        )?;
        log.flush()?;
        let oom = k.oom_kills(id) > 0;
        if oom {
            crate::events::container(root, &cfg, "oom", &[]);
        }
        crate::events::container(root, &cfg, "die", &[("exitCode", code.to_string())]);
        // The policy as recorded now: `keel update --restart` (and the
        // docker provider's in-place update) change it while this runs.
        let policy = containers
            .config(id)
            .map_or_else(|_| cfg.restart.clone(), |c| c.restart);
        let restart = containers
            .state(id)
            .is_ok_and(|st| policy.should_restart(code, st.restart_count, st.user_stopped));
        tracing::info!(exit_code = code, oom_killed = oom, restart, "exited");
        if cfg.auto_remove && !restart {
            // Removed below: its exit is only recorded if that fails.
            unrecorded_exit = Some(oom);
            break;
        }
        let _ = rt.delete(id);
        let st = containers.update(id, |s| {
            s.status = Status::Exited;
            s.exit_code = code;
            s.oom_killed = oom;
            s.pid = 0;
            s.finished_at = Some(Utc::now());
        })?;
        if !restart {
            break;
        }
        // Exponential backoff from 100 ms, like Docker; a user stop ends the wait.
        containers.update(id, |s| s.status = Status::Restarting)?;
        let delay = Duration::from_millis(100u64 << st.restart_count.min(9));
        tracing::info!(
            delay_ms = delay.as_millis(),
            restart_count = st.restart_count + 1,
            "restarting"
        );
        let until = k.now() + delay;
        let mut stopped = false;
        while k.now() < until {
            k.sleep(Duration::from_millis(20));
            if containers.state(id).is_ok_and(|s| s.user_stopped) {
                stopped = true;
                break;
            }
        }
        if stopped {
            tracing::info!("stopped during the backoff");
            containers.update(id, |s| s.status = Status::Exited)?;
            break;
        }
        containers.update(id, |s| s.restart_count += 1)?;
    }
    drop(log);
    k.reap_orphans();
    // --rm: out of sight first (record retired, image unpinned, anonymous
    // volumes gone, as with `docker run --rm`), then the exit frame, then
    // the rest (engine::release_retired). Whether keel-net holds anything
    // is read from the record before it is retired.
    let retired = unrecorded_exit.and_then(|_| {
        let detach = needs_detach(containers, id, &cfg.network);
        let trash = crate::engine::retire(containers, id, &cfg, true).ok()?;
        Some((trash, detach))
    });
    if retired.is_none() {
        logged_teardown(containers, id, net, &cfg.network);
        containers.update(id, |s| {
            if let Some(oom) = unrecorded_exit {
                s.status = Status::Exited;
                s.exit_code = code;
                s.oom_killed = oom;
                s.pid = 0;
                s.finished_at = Some(Utc::now());
            }
            s.monitor_pid = 0;
        })?;
        // (remove_stopped also deletes the runtime state.)
        if cfg.auto_remove
            && let Err(e) = crate::engine::remove_stopped(containers, id, true, net)
        {
            tracing::warn!(error = %crate::error_chain(&e), "removing failed");
        }
    }
    attached.send(&Frame::Exit(code));
    // The container is gone for every observer and its processes are dead:
    // the rest of a removal no longer keeps the client waiting.
    if let Some((trash, detach)) = retired {
        crate::engine::release_retired(
            containers,
            Some(id),
            trash.as_deref(),
            Some(rt.as_ref()),
            detach.then_some(net),
        );
    }
    Ok(code)
}

/// Environment variable carrying the client's window size (`ROWSxCOLS`) to
/// the monitor of a `-t` container.
pub const TTY_SIZE_ENV: &str = "KEEL_TTY_SIZE";

/// The container's output streams (a pty master is one stream, stdout) and,
/// for `-it`, the monitor's stdin to copy into the master.
struct Streams {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    input: Option<(OwnedFd, OwnedFd)>,
}

/// Streams output and runs health checks until the init process `pid` exits.
fn supervise(
    containers: &Containers,
    cfg: &ContainerConfig,
    rt: &dyn OciRuntime,
    pid: i32,
    io: Streams,
    log: &mut LogWriter,
    attached: &mut Attached,
) -> Result<i32> {
    let k = containers.kernel();
    let pidfd = k.watch_init(pid)?;
    let mut streams: [Option<File>; 2] = [io.out.map(File::from), io.err.map(File::from)];
    let mut input: Option<(File, File)> = io.input.map(|(i, m)| (File::from(i), File::from(m)));
    let started = Instant::now();
    let hc = cfg.healthcheck.clone();
    let mut next_probe = hc
        .as_ref()
        .map(|h| started + Duration::from_millis(h.interval_ms));
    let mut exited: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        k.reap_others(pid);
        if exited.is_some() && streams.iter().all(Option::is_none) {
            return Ok(exited.unwrap_or(-1));
        }
        let timeout = next_probe.map(|t| t.saturating_duration_since(Instant::now()));
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            if let Some(f) = s {
                fds.push(PollFd::new(f, PollFlags::IN));
                which.push(i);
            }
        }
        if exited.is_none() {
            fds.push(PollFd::from_borrowed_fd(pidfd.as_fd(), PollFlags::IN));
            which.push(2);
            if let Some((i, _)) = &input {
                fds.push(PollFd::new(i, PollFlags::IN));
                which.push(3);
            }
        }
        let ts = timeout.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RuntimeError::Monitor(format!("poll: {e}"))),
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, w)| (*w, !f.revents().is_empty()))
            .collect();
        drop(fds);
        for (w, is_ready) in ready {
            if !is_ready {
                continue;
            }
            if w == 3 {
                if let Some((i, m)) = input.as_mut() {
                    match i.read(&mut buf) {
                        Ok(n) if n > 0 && m.write_all(&buf[..n]).is_ok() => {}
                        _ => input = None,
                    }
                }
                continue;
            }
            if w == 2 {
                exited = Some(k.reap_init(pid).unwrap_or(-1));
                continue;
            }
            let Some(f) = streams[w].as_mut() else {
                continue;
            };
            match f.read(&mut buf) {
                Ok(0) | Err(_) => streams[w] = None,
                Ok(n) => {
                    log.write(w, &buf[..n])?;
                    let data = buf[..n].to_vec();
                    attached.send(&if w == 0 {
                        Frame::Stdout(data)
                    } else {
                        Frame::Stderr(data)
                    });
                }
            }
        }
        if let (Some(h), Some(t)) = (&hc, next_probe)
            && exited.is_none()
            && Instant::now() >= t
        {
            let start = Utc::now();
            let (c, output) = probe(rt, &cfg.id, h);
            let end = Utc::now();
            let in_start_period = started.elapsed() < Duration::from_millis(h.start_period_ms);
            let mut before = String::new();
            let now = containers.update(&cfg.id, |s| {
                let hs = s.health.get_or_insert_with(HealthState::default);
                hs.log.push(HealthProbe {
                    start,
                    end,
                    exit_code: c,
                    output,
                });
                if hs.log.len() > 5 {
                    hs.log.remove(0);
                }
                before.clone_from(&hs.status);
                if c == 0 {
                    hs.status = "healthy".to_string();
                    hs.failing_streak = 0;
                } else if !in_start_period {
                    hs.failing_streak += 1;
                    if hs.failing_streak >= h.retries.max(1) {
                        hs.status = "unhealthy".to_string();
                    }
                }
            })?;
            let now = now.health.map(|h| h.status).unwrap_or_default();
            if now != before {
                tracing::info!(status = %now, probe_exit_code = c, "health");
            }
            next_probe = Some(Instant::now() + Duration::from_millis(h.interval_ms.max(1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::Started(42),
            Frame::Stdout(b"out\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Error("bad thing".to_string()),
            Frame::Exit(137),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut r = &bytes[..];
        let mut back = Vec::new();
        while let Some(f) = Frame::read(&mut r).unwrap() {
            back.push(f);
        }
        assert_eq!(back, frames);
        // A torn frame is an error, not a panic.
        assert!(Frame::read(&mut &bytes[..6]).is_err());
        assert!(Frame::read(&mut &[9u8, 0, 0, 0, 0][..]).is_err());
    }
}
