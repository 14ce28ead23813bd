//! Container operations shared by the CLI, compose and (through them) the pipeline runner:
//! create from an image, start (spawning the monitor), stop, kill, remove, exec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use keel_oci::ImageStore;

use crate::backend::{self, ExecHandle, ExecSpec, Stdio};
use crate::error::{Result, RuntimeError};
use crate::kernel::Kernel;
use crate::monitor::Frame;
use crate::network::{Mode, NetworkAttacher};
use crate::record::{
    ContainerConfig, ContainerState, Containers, EndpointConfig, HealthConfig, MountKind,
    MountSpec, NetworkConfig, PortSpec, RestartPolicy, Status, monitor_alive_on,
};
use crate::volume::Volumes;
use crate::{ids, spec, user};

/// What `keel create`/`run` asks for (flags already parsed).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Replaces the image's Cmd when non-empty.
    pub command: Vec<String>,
    /// `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    pub network_aliases: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub publish_all: bool,
    pub mounts: Vec<MountSpec>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub restart: RestartPolicy,
    /// Merged over the image's `Healthcheck` the way Docker does: an empty
    /// `test` or a zero field inherits the image's value, `["NONE"]` disables
    /// the check; `None` takes the image's as is.
    pub healthcheck: Option<HealthConfig>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub runtime: String,
    pub auto_remove: bool,
    pub interactive: bool,
    pub tty: bool,
    pub extra: crate::record::ExtraConfig,
    /// Further networks, `--ip`, `--add-host`, `--dns*`.
    pub networking: NetworkConfig,
    /// `--expose PORT[-LAST][/PROTO]`, added to the image's exposed ports.
    pub expose: Vec<String>,
    /// `--group-add`: group names (of the image's /etc/group) or GIDs.
    pub group_add: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
}

/// Docker's `--volumes-from`: every volume and bind mount of each named
/// container at the same path, read-only or read-write as asked (default:
/// as mounted there), followed by the container's own mounts, which win
/// over an inherited one at the same path. Inherited volumes are never
/// anonymous here, so `rm -v` of this container leaves them to their owner.
pub fn mounts_with_volumes_from(
    containers: &Containers,
    o: &CreateOptions,
) -> Result<Vec<MountSpec>> {
    let mut out: Vec<MountSpec> = Vec::new();
    for spec in &o.volumes_from {
        let (name, mode) = match spec.split_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "ro")),
            Some((_, m)) => {
                return Err(RuntimeError::InvalidOption {
                    what: "--volumes-from",
                    value: spec.clone(),
                    why: format!("invalid mode {m:?}: expected ro or rw"),
                });
            }
            None => (spec.as_str(), None),
        };
        let cfg = containers.config(&containers.resolve(name)?)?;
        for m in cfg.mounts.iter().filter(|m| m.kind != MountKind::Tmpfs) {
            if o.mounts.iter().chain(&out).any(|x| x.target == m.target) {
                continue;
            }
            out.push(MountSpec {
                read_only: mode.unwrap_or(m.read_only),
                anonymous: false,
                ..m.clone()
            });
        }
    }
    out.extend(o.mounts.iter().cloned());
    Ok(out)
}

/// `--expose` values as `PORT/PROTO` entries.
fn exposed(spec: &str) -> Result<Vec<String>> {
    Ok(PortSpec::parse(spec)?
        .into_iter()
        .map(|p| format!("{}/{}", p.container_port, p.protocol))
        .collect())
}

/// A `--group-add` value: a GID, or a name from the image's /etc/group.
fn group_id(g: &str, lowerdirs: &[std::path::PathBuf]) -> Result<u32> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    user::read_image_file(lowerdirs, "etc/group")
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&g)).then(|| f.get(2).and_then(|x| x.parse().ok()))?
            })
        })
        .ok_or_else(|| RuntimeError::InvalidOption {
            what: "group",
            value: g.to_string(),
            why: "no such group in the image's /etc/group".to_string(),
        })
}

/// Parses Docker's signal names (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    let bad = || RuntimeError::InvalidOption {
        what: "signal",
        value: s.to_string(),
        why: "not a signal name or number".to_string(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

/// Docker's defaults for a health check field left at zero.
const HEALTH_DEFAULT_MS: u64 = 30_000;
const HEALTH_DEFAULT_RETRIES: u32 = 3;

/// The effective health check: the user's fields over the image's
/// `config.Healthcheck` (Go durations in nanoseconds), defaults for the rest.
pub fn merge_healthcheck(
    user: Option<&HealthConfig>,
    image_config: &serde_json::Value,
) -> Option<HealthConfig> {
    let img = &image_config["config"]["Healthcheck"];
    let ms = |k: &str| img[k].as_u64().map_or(0, |ns| ns / 1_000_000);
    let image_test = spec::json_strings(&img["Test"]);
    let pick = |u: u64, i: u64, d: u64| {
        if u != 0 {
            u
        } else if i != 0 {
            i
        } else {
            d
        }
    };
    let u = user.cloned().unwrap_or(HealthConfig {
        test: Vec::new(),
        interval_ms: 0,
        timeout_ms: 0,
        retries: 0,
        start_period_ms: 0,
    });
    let test = if u.test.is_empty() {
        image_test
    } else {
        u.test
    };
    // Docker: no test, or NONE, means no health check.
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let retries = img["Retries"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0);
    Some(HealthConfig {
        test,
        interval_ms: pick(u.interval_ms, ms("Interval"), HEALTH_DEFAULT_MS),
        timeout_ms: pick(u.timeout_ms, ms("Timeout"), HEALTH_DEFAULT_MS),
        retries: if u.retries != 0 {
            u.retries
        } else if retries != 0 {
            retries
        } else {
            HEALTH_DEFAULT_RETRIES
        },
        start_period_ms: pick(u.start_period_ms, ms("StartPeriod"), 0),
    })
}

/// Builds and records a new container; nothing is left behind on error.
pub fn create(root: &Path, o: &CreateOptions) -> Result<ContainerConfig> {
    let store = ImageStore::open(root)?;
    let image = store.resolve(&o.image)?;
    let lowerdirs = store.unpack(&image)?;
    let icfg = image.config.config().clone().unwrap_or_default();
    let image_ep: Vec<String> = icfg.entrypoint().clone().unwrap_or_default();
    let image_cmd: Vec<String> = icfg.cmd().clone().unwrap_or_default();
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(ep) if ep.is_empty() => (Vec::new(), o.command.clone()),
        Some(ep) => (vec![ep.clone()], o.command.clone()),
        None if !o.command.is_empty() => (image_ep, o.command.clone()),
        None => (image_ep, image_cmd),
    };
    let mut full: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if full.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let path = full.remove(0);
    let user_spec = o
        .user
        .clone()
        .or_else(|| icfg.user().clone())
        .unwrap_or_default();
    let mut ident = user::resolve_in_image(&user_spec, &lowerdirs)?;
    for g in &o.group_add {
        let gid = group_id(g, &lowerdirs)?;
        if !ident.additional_gids.contains(&gid) {
            ident.additional_gids.push(gid);
        }
    }
    let mut exposed_ports = icfg.exposed_ports().clone().unwrap_or_default();
    for e in &o.expose {
        for p in exposed(e)? {
            if !exposed_ports.contains(&p) {
                exposed_ports.push(p);
            }
        }
    }
    let id = ids::new_id();
    let mode = Mode::parse(&o.network);
    let containers = Containers::open(root)?;
    let network = check_network_options(&containers, o, &mode)?;
    let mounts = mounts_with_volumes_from(&containers, o)?;
    let mode = Mode::parse(&network);
    let hostname = match (&o.hostname, &mode) {
        (Some(h), _) => h.clone(),
        (None, Mode::Host) => crate::network::host_hostname(),
        (None, Mode::Container(other)) => containers.config(other)?.hostname,
        (None, _) => ids::short(&id).to_string(),
    };
    let env = spec::merge_env(
        &icfg.env().clone().unwrap_or_default(),
        &o.env,
        &hostname,
        &ident.home,
    );
    let working_dir = o
        .working_dir
        .clone()
        .or_else(|| icfg.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !working_dir.starts_with('/') {
        return Err(RuntimeError::InvalidOption {
            what: "working directory",
            value: working_dir,
            why: "must be an absolute path".to_string(),
        });
    }
    for m in &mounts {
        validate_mount(m)?;
    }
    if let Some(s) = &o.stop_signal {
        parse_signal(s)?;
    }
    validate_extra(o)?;
    let runtime = if o.runtime.is_empty() {
        "libcontainer".to_string()
    } else {
        o.runtime.clone()
    };
    backend::by_name(&runtime, &root.join("run"))?;
    let mut cfg = ContainerConfig {
        id: id.clone(),
        name: o.name.clone().unwrap_or_default(),
        created: Utc::now(),
        image: o.image.clone(),
        image_id: image.id().to_string(),
        image_manifest: image.manifest_digest.to_string(),
        lowerdirs,
        path,
        args: full,
        entrypoint,
        cmd,
        env,
        working_dir,
        user: user_spec,
        uid: ident.uid,
        gid: ident.gid,
        additional_gids: ident.additional_gids,
        hostname,
        labels: o.labels.clone(),
        network,
        network_aliases: o.network_aliases.clone(),
        ports: o.ports.clone(),
        publish_all: o.publish_all,
        exposed_ports,
        mounts,
        memory: o.memory,
        nano_cpus: o.nano_cpus,
        pids_limit: o.pids_limit,
        read_only: o.read_only,
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        restart: o.restart.clone(),
        healthcheck: merge_healthcheck(o.healthcheck.as_ref(), &image.config_json()),
        stop_signal: o
            .stop_signal
            .clone()
            .unwrap_or_else(|| "SIGTERM".to_string()),
        stop_timeout: o.stop_timeout.unwrap_or(10),
        runtime,
        auto_remove: o.auto_remove,
        interactive: o.interactive,
        tty: o.tty,
        extra: o.extra.clone(),
        networking: o.networking.clone(),
    };
    // -P publishes every exposed port on a free host port.
    if cfg.publish_all {
        for p in &cfg.exposed_ports {
            let mut parsed = PortSpec::parse(p)?;
            cfg.ports.append(&mut parsed);
        }
    }
    // A dry run of the spec catches bad capabilities and the like before anything exists.
    spec::build(
        &cfg,
        &spec::SpecPaths {
            rootfs: PathBuf::from("/"),
            hosts: PathBuf::from("/"),
            hostname: PathBuf::from("/"),
            resolv_conf: PathBuf::from("/"),
            netns: None,
            volumes: PathBuf::from("/"),
            ipc_ns: None,
            pid_ns: None,
        },
    )?;
    containers.create(&mut cfg)?;
    // The image's layers must outlive an `rmi -f` or prune while the container exists.
    if let Err(e) = store.pin(&cfg.id, &image.manifest_digest) {
        let _ = containers.remove_record(&cfg.id);
        return Err(e.into());
    }
    let volumes = Volumes::open(root)?;
    for m in cfg.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
        if let Err(e) = volumes.create(&m.source, BTreeMap::new(), m.anonymous) {
            let _ = store.unpin(&cfg.id);
            let _ = containers.remove_record(&cfg.id);
            return Err(e);
        }
    }
    crate::events::container(root, &cfg, "create", &[]);
    Ok(cfg)
}

/// Docker's checks on `--ulimit` and `--memory-swap`.
fn validate_extra(o: &CreateOptions) -> Result<()> {
    for u in &o.extra.ulimits {
        let bad = |why: &str| RuntimeError::InvalidOption {
            what: "ulimit",
            value: format!("{}={}:{}", u.name, u.soft, u.hard),
            why: why.to_string(),
        };
        if !spec::ULIMIT_NAMES.contains(&u.name.as_str()) {
            return Err(bad("unknown limit name"));
        }
        if u.hard != -1 && (u.soft == -1 || u.soft > u.hard) {
            return Err(bad("the soft limit is above the hard limit"));
        }
    }
    if let Some(swap) = o.extra.memory_swap {
        let bad = |why: &str| RuntimeError::InvalidOption {
            what: "memory-swap",
            value: swap.to_string(),
            why: why.to_string(),
        };
        match o.memory {
            None => return Err(bad("a memory limit must be set too")),
            Some(m) if swap != -1 && swap < m => {
                return Err(bad("must be at least the memory limit"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Docker's rules for the network options; returns the network mode to
/// record (`container:` with the other container's full ID).
fn check_network_options(
    containers: &Containers,
    o: &CreateOptions,
    mode: &Mode,
) -> Result<String> {
    let n = &o.networking;
    crate::network::extra_hosts(n)?;
    crate::network::dns_config(n)
        .validate()
        .map_err(|e| RuntimeError::InvalidOption {
            what: "--dns",
            value: n.dns.join(","),
            why: e.to_string(),
        })?;
    for ip in
        n.ip.iter()
            .chain(n.extra_networks.iter().filter_map(|e| e.ip.as_ref()))
    {
        crate::network::parse_ip(ip)?;
    }
    match mode {
        Mode::Container(other) => {
            if o.hostname.is_some() {
                return Err(RuntimeError::ConflictingOptions(
                    "hostname and the network mode",
                ));
            }
            if !o.ports.is_empty() || o.publish_all {
                return Err(RuntimeError::ConflictingOptions(
                    "port publishing and the container type network mode",
                ));
            }
            if !n.dns.is_empty() || !n.dns_search.is_empty() || !n.dns_options.is_empty() {
                return Err(RuntimeError::ConflictingOptions("dns and the network mode"));
            }
            if !n.extra_hosts.is_empty() {
                return Err(RuntimeError::ConflictingOptions(
                    "custom host-to-IP mapping and the network mode",
                ));
            }
            if !o.network_aliases.is_empty() || n.ip.is_some() || !n.extra_networks.is_empty() {
                return Err(RuntimeError::SharedNetns);
            }
            let oid = containers.resolve(other)?;
            Ok(format!("container:{oid}"))
        }
        Mode::Host | Mode::None => {
            if n.ip.is_some() {
                return Err(keel_net::NetError::IpOnDefaultNetwork.into());
            }
            if !n.extra_networks.is_empty() {
                return Err(RuntimeError::SharedNetns);
            }
            Ok(o.network.clone())
        }
        Mode::Network(name) => Ok(name.clone()),
    }
}

/// `keel network connect`: records the network in the container's config
/// (so every later start joins it) and, when the container runs, connects
/// it now. The CLI checks that the network exists.
pub fn connect(
    containers: &Containers,
    id: &str,
    net: &dyn NetworkAttacher,
    ep: &EndpointConfig,
) -> Result<()> {
    let cfg = containers.config(id)?;
    if !matches!(Mode::parse(&cfg.network), Mode::Network(_)) {
        return Err(RuntimeError::SharedNetns);
    }
    let st = containers.state(id)?;
    let running = st.status == Status::Running && containers.monitor_alive(&st, id);
    let known = cfg.joins(&ep.network);
    if known && (!running || st.endpoints.iter().any(|e| e.network == ep.network)) {
        return Err(keel_net::NetError::AlreadyAttached {
            container: cfg.name.clone(),
            network: ep.network.clone(),
        }
        .into());
    }
    if running {
        let req = crate::monitor::attach_request(
            &cfg,
            &containers.netns_path(id),
            &ep.network,
            &ep.aliases,
            ep.ip.as_deref(),
        )?;
        let a = net.attach(&req)?;
        containers.update(id, |s| s.endpoints.push(crate::monitor::endpoint_state(&a)))?;
    }
    if !known {
        containers.update_config(id, |c| c.networking.extra_networks.push(ep.clone()))?;
    }
    Ok(())
}

/// `keel network disconnect`: the reverse of [`connect`]. Disconnecting the
/// primary network makes the next one primary (for later starts).
pub fn disconnect(
    containers: &Containers,
    id: &str,
    net: &dyn NetworkAttacher,
    network: &str,
) -> Result<()> {
    let cfg = containers.config(id)?;
    let st = containers.state(id)?;
    let running = st.status == Status::Running && containers.monitor_alive(&st, id);
    let in_config = cfg.joins(network);
    let live = st.endpoints.iter().any(|e| e.network == network);
    if !in_config && !live {
        return Err(RuntimeError::NotConnected {
            container: cfg.name.clone(),
            network: network.to_string(),
        });
    }
    if running && live {
        net.detach_network(id, network)?;
        containers.update(id, |s| s.endpoints.retain(|e| e.network != network))?;
    }
    containers.update_config(id, |c| {
        if c.network == network {
            if c.networking.extra_networks.is_empty() {
                // No network left: a later start has only loopback.
                c.network = "none".to_string();
                c.network_aliases.clear();
                c.networking.ip = None;
            } else {
                let next = c.networking.extra_networks.remove(0);
                c.network = next.network;
                c.network_aliases = next.aliases;
                c.networking.ip = next.ip;
            }
        } else {
            c.networking.extra_networks.retain(|e| e.network != network);
        }
    })?;
    Ok(())
}

fn validate_mount(m: &MountSpec) -> Result<()> {
    let bad = |why: &str| RuntimeError::InvalidOption {
        what: "mount",
        value: format!("{}:{}", m.source, m.target),
        why: why.to_string(),
    };
    if !m.target.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    if m.target == "/" {
        return Err(bad("cannot mount over /"));
    }
    match m.kind {
        MountKind::Bind => {
            if !m.source.starts_with('/') {
                return Err(bad("the host path must be absolute"));
            }
            if !Path::new(&m.source).exists() {
                return Err(bad("the host path does not exist"));
            }
        }
        MountKind::Volume => {
            if !ids::valid_name(&m.source) {
                return Err(bad("invalid volume name"));
            }
        }
        MountKind::Tmpfs => {}
    }
    Ok(())
}

/// Whether the container's monitor is alive.
pub fn is_active(containers: &Containers, id: &str) -> bool {
    containers
        .state(id)
        .is_ok_and(|s| containers.monitor_alive(&s, id))
}

/// The status shown to users: a dead monitor means the container is not running,
/// whatever the record last said.
pub fn effective_status(containers: &Containers, id: &str) -> Status {
    let Ok(s) = containers.state(id) else {
        return Status::Exited;
    };
    match s.status {
        Status::Running | Status::Restarting if !containers.monitor_alive(&s, id) => Status::Exited,
        st => st,
    }
}

pub use crate::launch::{InProcess, Monitor, spawn_monitor, spawn_monitor_sized};

/// Waits for the monitor to report the start; returns the init pid.
pub fn await_start(child: &mut Monitor) -> Result<i32> {
    let out = child
        .stdout
        .as_mut()
        .ok_or_else(|| RuntimeError::Monitor("no pipe".to_string()))?;
    loop {
        match Frame::read(out).map_err(|e| RuntimeError::Monitor(e.to_string()))? {
            Some(Frame::Started(pid)) => return Ok(pid),
            Some(Frame::Error(m)) => return Err(RuntimeError::Start(m)),
            Some(_) => {}
            None => {
                return Err(RuntimeError::Monitor(
                    "the monitor exited before starting the container".to_string(),
                ));
            }
        }
    }
}

/// Waits until the monitor of `id` (pid `monitor_pid`) is gone, up to `timeout`.
pub fn wait_monitor(id: &str, st: &ContainerState, timeout: Option<Duration>) -> bool {
    wait_monitor_on(&crate::kernel::HostKernel, id, st, timeout)
}

/// [`wait_monitor`] through `kernel`.
pub fn wait_monitor_on(
    kernel: &dyn Kernel,
    id: &str,
    st: &ContainerState,
    timeout: Option<Duration>,
) -> bool {
    let deadline = timeout.map(|t| kernel.now() + t);
    loop {
        if !monitor_alive_on(kernel, st, id) {
            return true;
        }
        let left = deadline.map(|d| d.saturating_duration_since(kernel.now()));
        if left == Some(Duration::ZERO) {
            return false;
        }
        let step = left.map_or(Duration::from_millis(200), |l| {
            l.min(Duration::from_millis(200))
        });
        kernel.wait_exit(st.monitor_pid, step);
    }
}

/// Sends `signal` to the container's init process; marks a user stop first so
/// restart policies leave it alone.
pub fn kill(
    containers: &Containers,
    id: &str,
    signal: nix::sys::signal::Signal,
    user_stop: bool,
) -> Result<()> {
    let st = containers.update(id, |s| {
        if user_stop {
            s.user_stopped = true;
        }
    })?;
    if st.pid <= 0 || !containers.monitor_alive(&st, id) || st.status != Status::Running {
        return Err(RuntimeError::NotRunning(id.to_string()));
    }
    containers.kernel().signal(st.pid, signal)?;
    if let Ok(cfg) = containers.config(id) {
        let n = (signal as i32).to_string();
        crate::events::container(containers.root(), &cfg, "kill", &[("signal", n)]);
    }
    Ok(())
}

/// `keel stop`: stop signal, then SIGKILL after `timeout`; waits for the monitor.
pub fn stop(
    containers: &Containers,
    id: &str,
    timeout: Option<u32>,
    signal: Option<&str>,
) -> Result<()> {
    let cfg = containers.config(id)?;
    let st = containers.update(id, |s| s.user_stopped = true)?;
    let k = containers.kernel();
    if !containers.monitor_alive(&st, id) {
        return Ok(());
    }
    let sig = parse_signal(signal.unwrap_or(&cfg.stop_signal))?;
    let t = Duration::from_secs(u64::from(timeout.unwrap_or(cfg.stop_timeout)));
    let root = containers.root();
    if st.status == Status::Running && st.pid > 0 && k.signal(st.pid, sig).is_ok() {
        crate::events::container(root, &cfg, "kill", &[("signal", (sig as i32).to_string())]);
    }
    if !wait_monitor_on(k, id, &st, Some(t)) {
        let st = containers.state(id)?;
        if st.pid > 0 && k.signal(st.pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
            crate::events::container(root, &cfg, "kill", &[("signal", "9".to_string())]);
        }
        wait_monitor_on(k, id, &st, None);
    }
    // docker's order: kill, die (the monitor's), stop.
    crate::events::container(root, &cfg, "stop", &[]);
    Ok(())
}

/// Removes a container whose monitor is gone: runtime state, mounts, network,
/// (anonymous volumes with `volumes`), record.
pub fn remove_stopped(
    containers: &Containers,
    id: &str,
    volumes: bool,
    net: &dyn NetworkAttacher,
) -> Result<()> {
    let cfg = containers.config(id)?;
    containers.update(id, |s| s.status = Status::Removing)?;
    let rt = containers.runtime(&cfg.runtime)?;
    rt.delete(id)?;
    crate::monitor::teardown(containers, id, net, &cfg.network)?;
    let k = containers.kernel();
    for m in k.mounts_under(&containers.dir(id)) {
        k.unmount(&m)?;
    }
    let trash = retire(containers, id, &cfg, volumes)?;
    if let Some(t) = trash {
        crate::record::purge(&t)?;
    }
    sweep_leftovers(containers, net);
    Ok(())
}

/// Finishes what monitors killed between retiring an --rm container and
/// releasing it left behind: see [`release_retired`]. Best effort.
pub fn sweep_leftovers(containers: &Containers, net: &dyn NetworkAttacher) {
    for (dir, cfg) in containers.leftovers() {
        let rt = cfg
            .as_ref()
            .and_then(|c| containers.runtime(&c.runtime).ok());
        // Idempotent: a container with no endpoints only loses its files.
        release_retired(
            containers,
            cfg.as_ref().map(|c| c.id.as_str()),
            Some(&dir),
            rt.as_deref(),
            Some(net),
        );
    }
}

/// What a retired container (see [`retire`]) may still hold, released:
/// mounts under its retired record `trash`, and for container `id` its
/// netns, runtime state (the empty cgroups, with `rt`) and network (with
/// `net`); then the record's files. An --rm container's monitor runs this
/// after reporting the exit (a veth alone takes ~15 ms of kernel time to
/// delete); `keel rm` for one whose monitor was killed first. Best effort,
/// except that a record whose network could not be released is kept (the
/// error logged: the monitor's log) for the next sweep to retry: its
/// endpoints would otherwise hold their addresses and network for good.
pub fn release_retired(
    containers: &Containers,
    id: Option<&str>,
    trash: Option<&Path>,
    rt: Option<&dyn backend::OciRuntime>,
    net: Option<&dyn NetworkAttacher>,
) {
    let k = containers.kernel();
    // Never delete through a root still mounted there.
    if let Some(t) = trash {
        for m in k.mounts_under(t) {
            let _ = k.unmount(&m);
        }
    }
    if let Some(id) = id {
        let _ = k.remove_netns(&containers.netns_path(id));
        if let Some(rt) = rt {
            let _ = rt.delete(id);
        }
        if let Some(net) = net
            && let Err(e) = net.detach(id)
        {
            tracing::warn!(
                container = %ids::short(id),
                error = %e,
                "releasing the network failed; the record stays for the next sweep"
            );
            return;
        }
    }
    if let Some(t) = trash {
        let _ = crate::record::purge(t);
    }
}

/// Takes a stopped container out of sight: its record is retired (see
/// [`Containers::retire_record`]), its image unpinned and (with `volumes`)
/// its anonymous volumes removed. The caller releases what else is left
/// (mounts, runtime state, network) and deletes the returned directory with
/// [`crate::record::purge`].
pub fn retire(
    containers: &Containers,
    id: &str,
    cfg: &ContainerConfig,
    volumes: bool,
) -> Result<Option<PathBuf>> {
    let trash = containers.retire_record(id)?;
    crate::events::container(containers.root(), cfg, "destroy", &[]);
    ImageStore::open(containers.root())?.unpin(id)?;
    if volumes {
        let vols = Volumes::open(containers.root())?;
        for m in cfg
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume && m.anonymous)
        {
            let _ = vols.remove(containers, &m.source, false);
        }
    }
    Ok(trash)
}

/// `keel rm`: refuses a running container unless `force` (then kills it).
pub fn remove(
    containers: &Containers,
    id: &str,
    force: bool,
    volumes: bool,
    net: &dyn NetworkAttacher,
) -> Result<()> {
    let st = containers.state(id)?;
    let k = containers.kernel();
    if containers.monitor_alive(&st, id) {
        if !force {
            return Err(RuntimeError::Running(ids::short(id).to_string()));
        }
        containers.update(id, |s| s.user_stopped = true)?;
        if st.pid > 0 {
            let _ = k.signal(st.pid, nix::sys::signal::Signal::SIGKILL);
        }
        wait_monitor_on(k, id, &st, Some(Duration::from_secs(30)));
        // --rm containers remove themselves; nothing left to do then.
        if !containers.dir(id).join("config.json").exists() {
            return Ok(());
        }
    }
    remove_stopped(containers, id, volumes, net)
}

/// Starts a process in a running container with the caller's stdio.
pub fn exec(
    containers: &Containers,
    id: &str,
    spec: &ExecSpec,
    stdio: Stdio,
) -> Result<ExecHandle> {
    let cfg = containers.config(id)?;
    let st = containers.state(id)?;
    if st.status != Status::Running || !containers.monitor_alive(&st, id) {
        return Err(RuntimeError::NotRunning(id.to_string()));
    }
    containers.runtime(&cfg.runtime)?.exec(id, spec, stdio)
}

/// Resolves an exec `-u` against the container's image.
pub fn exec_identity(cfg: &ContainerConfig, user_spec: &str) -> Result<user::Identity> {
    user::resolve_in_image(user_spec, &cfg.lowerdirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str], interval_ms: u64, retries: u32) -> HealthConfig {
        HealthConfig {
            test: test.iter().map(|s| (*s).to_string()).collect(),
            interval_ms,
            timeout_ms: 0,
            retries,
            start_period_ms: 0,
        }
    }

    #[test]
    fn health_check_merges_user_fields_over_the_image() {
        let image = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD", "true"], "Interval": 2_000_000_000u64, "Timeout": 500_000_000u64,
            "Retries": 5, "StartPeriod": 1_000_000_000u64}}});
        let h = merge_healthcheck(None, &image).unwrap();
        assert_eq!(h.test, ["CMD", "true"]);
        assert_eq!(
            (h.interval_ms, h.timeout_ms, h.retries, h.start_period_ms),
            (2000, 500, 5, 1000)
        );
        let h = merge_healthcheck(Some(&hc(&[], 100, 0)), &image).unwrap();
        assert_eq!(
            (h.test[1].as_str(), h.interval_ms, h.retries),
            ("true", 100, 5)
        );
        let h = merge_healthcheck(Some(&hc(&["CMD-SHELL", "x"], 0, 1)), &image).unwrap();
        assert_eq!(
            (h.test[1].as_str(), h.interval_ms, h.retries),
            ("x", 2000, 1)
        );
        assert!(merge_healthcheck(Some(&hc(&["NONE"], 0, 0)), &image).is_none());
        // No image check: only a user command makes one, with Docker's defaults.
        let plain = serde_json::json!({"config": {}});
        assert!(merge_healthcheck(Some(&hc(&[], 100, 0)), &plain).is_none());
        let h = merge_healthcheck(Some(&hc(&["CMD-SHELL", "x"], 0, 0)), &plain).unwrap();
        assert_eq!(
            (h.interval_ms, h.timeout_ms, h.retries),
            (30_000, 30_000, 3)
        );
        let none = serde_json::json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
        assert!(merge_healthcheck(None, &none).is_none());
    }
}
