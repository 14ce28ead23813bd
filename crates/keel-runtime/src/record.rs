//! Container records on disk: `<root>/containers/<id>/config.json` (what the user
//! asked for, written once at create), `state.json` (what is happening, rewritten
//! whole under the container's lock), logs and the OCI bundle.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError, read_err, write_err};
use crate::ids;
use crate::kernel::{HostKernel, Kernel};

/// Docker's restart policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        #[serde(rename = "MaximumRetryCount")]
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| RuntimeError::InvalidOption {
            what: "restart policy",
            value: s.to_string(),
            why: why.to_string(),
        };
        Ok(match s.split_once(':') {
            None | Some((_, "")) => match s.trim_end_matches(':') {
                "" | "no" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure { max: 0 },
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                _ => return Err(bad("expected no, on-failure[:N], always or unless-stopped")),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure {
                max: n
                    .parse()
                    .map_err(|_| bad("the retry count must be a number"))?,
            },
            Some(_) => return Err(bad("only on-failure takes a retry count")),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts
    /// should start again. A user stop always wins.
    pub fn should_restart(&self, code: i32, restarts: u32, user_stopped: bool) -> bool {
        if user_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (*max == 0 || restarts < *max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// A port to publish: `[IP:]HOST:CTR[/udp]`; host port 0 picks a free one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl PortSpec {
    pub fn parse(s: &str) -> Result<Vec<Self>> {
        let bad = |why: &str| RuntimeError::InvalidOption {
            what: "port specification",
            value: s.to_string(),
            why: why.to_string(),
        };
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, p @ ("tcp" | "udp"))) => (r, p.to_string()),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, "tcp".to_string()),
        };
        let parts: Vec<&str> = if rest.starts_with('[') {
            // [v6]:host:ctr
            let end = rest.find(']').ok_or_else(|| bad("unclosed ["))?;
            let mut v = vec![&rest[1..end]];
            v.extend(rest[end + 1..].trim_start_matches(':').split(':'));
            v
        } else {
            rest.split(':').collect()
        };
        let port = |p: &str| -> Result<u16> {
            p.parse::<u16>()
                .map_err(|_| bad(&format!("{p:?} is not a port number")))
        };
        // A port or docker's range `FIRST-LAST`.
        let range = |p: &str| -> Result<(u16, u16)> {
            match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if b < a {
                        return Err(bad(&format!("invalid range {p:?}")));
                    }
                    Ok((a, b))
                }
                None => port(p).map(|x| (x, x)),
            }
        };
        let none = (0, 0);
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => (None, none, range(c)?),
            [h, c] => (None, if h.is_empty() { none } else { range(h)? }, range(c)?),
            [ip, h, c] => {
                let ip: std::net::IpAddr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
                (
                    Some(ip.to_string()),
                    if h.is_empty() { none } else { range(h)? },
                    range(c)?,
                )
            }
            _ => return Err(bad("expected [IP:]HOST:CONTAINER[/PROTO]")),
        };
        if ctr.0 == 0 {
            return Err(bad("the container port must not be 0"));
        }
        let count = ctr.1 - ctr.0;
        if host != none && host.1 - host.0 != count {
            return Err(bad(
                "the host and container port ranges must be the same size",
            ));
        }
        Ok((0..=count)
            .map(|i| PortSpec {
                host_ip: ip.clone(),
                host_port: if host == none { 0 } else { host.0 + i },
                container_port: ctr.0 + i,
                protocol: protocol.clone(),
            })
            .collect())
    }
}

/// What a mount is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// One `-v`, `--mount` or `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path (bind), volume name (volume), empty (tmpfs).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Anonymous volumes (`-v /data`) are removed by `rm -v`.
    pub anonymous: bool,
    /// tmpfs options (`size=64m,mode=1777`).
    pub options: Vec<String>,
}

/// `--health-*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["CMD-SHELL", "..."]` or `["CMD", ...]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// One `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `nofile`, `nproc`, `core`, … (lowercase, without `RLIMIT_`).
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// Docker's `NAME=SOFT[:HARD]` (HARD defaults to SOFT; -1 is unlimited).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (name, limits) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit {s:?}: expected NAME=SOFT[:HARD]"))?;
        let num = |x: &str| {
            x.parse::<i64>()
                .map_err(|_| format!("invalid ulimit {s:?}: {x:?} is not a number"))
        };
        let (soft, hard) = match limits.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(limits)?, num(limits)?),
        };
        Ok(Ulimit {
            name: name.to_ascii_lowercase(),
            soft,
            hard,
        })
    }
}

/// Less common settings, kept together so that records written before they
/// existed still load (all default to "as Docker does without them").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtraConfig {
    /// `--memory-swap`: memory plus swap in bytes, -1 unlimited.
    pub memory_swap: Option<i64>,
    /// `--shm-size` in bytes (Docker's default is 64 MiB).
    pub shm_size: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    /// `--init`: docker-init (tini) runs as PID 1 and the command under it.
    pub init: bool,
    /// `--log-opt max-size`: rotate the json-file log past this many bytes;
    /// none keeps everything, as docker's json-file default does.
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file`: files kept with `log_max_size` (docker's default 1).
    pub log_max_file: Option<u32>,
    /// `--log-opt labels=…`/`env=…`: the labels and variables named there,
    /// which `logs --details` prints before each line as docker does.
    pub log_attrs: BTreeMap<String, String>,
    /// `--cpu-shares`: the relative CPU weight (docker's default 1024).
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`, `--cpuset-mems`: the CPUs and memory nodes allowed.
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `--privileged`: every capability and host device, no seccomp, no
    /// masked paths, /sys and cgroups writable.
    pub privileged: bool,
    /// `--device HOST[:CONTAINER[:PERMS]]`.
    pub devices: Vec<DeviceMapping>,
    /// `--security-opt seccomp=`: `unconfined`, or a docker seccomp
    /// profile (its JSON text, read at create as docker does).
    pub seccomp: Option<String>,
    /// `--security-opt no-new-privileges[:true|false]`; none: keel's
    /// default (set).
    pub no_new_privileges: Option<bool>,
    /// `--security-opt` as given, for inspect.
    pub security_opt: Vec<String>,
    /// `--ipc`: `private` (default), `shareable`, `none`, `host`, `container:ID`.
    pub ipc: String,
    /// `--pid`: private (empty), `host`, `container:ID`.
    pub pid: String,
}

/// One `--device`: a host device node made in the container with the
/// cgroup permissions (`rwm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

impl DeviceMapping {
    /// docker's `HOST[:CONTAINER][:PERMS]` (PERMS a combination of r, w, m).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let perms_ok = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if perms_ok(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] if perms_ok(p) => (*h, *c, *p),
            _ => return Err(format!("invalid device specification: {s}")),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(format!(
                "invalid device specification: {s}: paths must be absolute"
            ));
        }
        Ok(DeviceMapping {
            host: host.to_string(),
            container: container.to_string(),
            permissions: permissions.to_string(),
        })
    }
}

/// Everything `keel create`/`run` decided, fixed for the container's life.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it.
    pub image: String,
    /// Image ID (`sha256:` of its config).
    pub image_id: String,
    pub image_manifest: String,
    /// The layer snapshot directories, base first.
    pub lowerdirs: Vec<PathBuf>,
    /// Process args: entrypoint + cmd, resolved.
    pub path: String,
    pub args: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    pub network_aliases: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub publish_all: bool,
    pub exposed_ports: Vec<String>,
    pub mounts: Vec<MountSpec>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub restart: RestartPolicy,
    pub healthcheck: Option<HealthConfig>,
    pub stop_signal: String,
    pub stop_timeout: u32,
    /// `libcontainer` or `runc`.
    pub runtime: String,
    pub auto_remove: bool,
    pub interactive: bool,
    pub tty: bool,
    #[serde(default)]
    pub extra: ExtraConfig,
    /// Further networks, static address, extra hosts, DNS (absent in older records).
    #[serde(default)]
    pub networking: NetworkConfig,
}

impl ContainerConfig {
    /// Whether starting the container joins `network` (primary or further).
    pub fn joins(&self, network: &str) -> bool {
        self.network == network
            || self
                .networking
                .extra_networks
                .iter()
                .any(|e| e.network == network)
    }
}

/// A network a container joins besides its primary one (`network connect`,
/// compose services on several networks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConfig {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A static IPv4 address (`--ip`).
    #[serde(default)]
    pub ip: Option<String>,
}

/// The networking options beyond the primary network's name and aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// A static IPv4 address on the primary network (`--ip`).
    pub ip: Option<String>,
    /// Networks joined after the primary, in order (`eth1`, `eth2`, …).
    pub extra_networks: Vec<EndpointConfig>,
    /// `--add-host NAME:IP` entries.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
}

/// Docker's container states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Restarting,
    Exited,
    Removing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
        }
    }
}

/// Health as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// The last few probe results.
    pub log: Vec<HealthProbe>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub exit_code: i32,
    pub output: String,
}

/// Network facts recorded when the container was connected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: String,
    /// Resolved port bindings.
    pub ports: Vec<PortSpec>,
}

/// One network a running container is connected to, as `inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    pub network: String,
    pub network_id: String,
    pub endpoint_id: String,
    /// `eth0`, `eth1`, … inside the container.
    pub ifname: String,
    pub aliases: Vec<String>,
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: String,
}

/// The live state, kept by the monitor (and stop/kill requests by the CLI).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    pub pid: i32,
    pub monitor_pid: i32,
    /// The monitor's start time (/proc/PID/stat field 22): with the pid, who
    /// it is. 0 in records from before it was kept.
    #[serde(default)]
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub restart_count: u32,
    /// Set by `keel stop`/`kill` so restart policies leave the container alone.
    pub user_stopped: bool,
    pub health: Option<HealthState>,
    /// The primary network (ports are published through it).
    pub network: Option<NetworkState>,
    /// Every network the running container is connected to, primary first.
    #[serde(default)]
    pub endpoints: Vec<EndpointState>,
    /// The files bind-mounted over /etc/hosts and /etc/resolv.conf (a
    /// `container:` network mode shares them).
    #[serde(default)]
    pub hosts_path: Option<PathBuf>,
    #[serde(default)]
    pub resolv_conf_path: Option<PathBuf>,
}

/// All containers under `<root>/containers`, and the kernel their
/// lifecycle operations use.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
    dir: PathBuf,
    kernel: Arc<dyn Kernel>,
}

/// An exclusive lock on one container's state (or the name table); unlocks on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn lock(path: &Path) -> Result<Lock> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| RuntimeError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
    flock(&f, FlockOperation::LockExclusive).map_err(|e| RuntimeError::Lock {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(Lock { _file: f })
}

/// Writes a file whole: temp file, fsync, rename. Readers never see half a record.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace(path, bytes, true)
}

/// Like [`write_atomic`]; `durable: false` skips the fsync, for state that a
/// crash makes stale anyway (the processes it describes die with the host).
pub(crate) fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_new(&tmp, bytes, durable)?;
    fs::rename(&tmp, path).map_err(write_err(path))
}

/// Writes a file nobody reads yet (a temporary name, a directory not yet published).
fn write_new(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut f = File::create(path).map_err(write_err(path))?;
    f.write_all(bytes).map_err(write_err(path))?;
    if durable {
        f.sync_all().map_err(write_err(path))?;
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(read_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

impl Containers {
    pub fn open(root: &Path) -> Result<Self> {
        Self::with_kernel(root, Arc::new(HostKernel))
    }

    /// Like [`Containers::open`] with another kernel (tests use a fake one).
    pub fn with_kernel(root: &Path, kernel: Arc<dyn Kernel>) -> Result<Self> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir).map_err(write_err(&dir))?;
        Ok(Containers {
            root: root.to_path_buf(),
            dir,
            kernel,
        })
    }

    /// The kernel lifecycle operations on these containers go through.
    pub fn kernel(&self) -> &dyn Kernel {
        self.kernel.as_ref()
    }

    /// Whether the monitor recorded in `st` (for container `id`) still runs;
    /// see [`monitor_alive`].
    pub fn monitor_alive(&self, st: &ContainerState, id: &str) -> bool {
        monitor_alive_on(self.kernel(), st, id)
    }

    /// OCI runtime `name`, with its state under `<root>/run`.
    pub fn runtime(&self, name: &str) -> Result<Box<dyn crate::backend::OciRuntime>> {
        self.kernel.runtime(name, &self.root.join("run"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/containers/<id>`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir(id).join("bundle")
    }

    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("merged")
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }

    /// Where the runtime backends keep their own state.
    pub fn runtime_root(&self, runtime: &str) -> PathBuf {
        self.root.join("run").join(runtime)
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.root.join("run").join("netns").join(id)
    }

    /// Every container ID, oldest first.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(read_err(&self.dir))? {
            let e = e.map_err(read_err(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().join("config.json").exists() {
                out.push(name);
            }
        }
        let mut with_time: Vec<(DateTime<Utc>, String)> = out
            .into_iter()
            .filter_map(|id| self.config(&id).ok().map(|c| (c.created, id)))
            .collect();
        with_time.sort();
        Ok(with_time.into_iter().map(|(_, id)| id).collect())
    }

    pub fn config(&self, id: &str) -> Result<ContainerConfig> {
        read_json(&self.dir(id).join("config.json"))
    }

    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let p = self.dir(id).join("state.json");
        if !p.exists() {
            return Ok(ContainerState::default());
        }
        read_json(&p)
    }

    /// Locks the container's state for a read-modify-write.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        lock(&self.dir(id).join("lock"))
    }

    /// Changes the state under the container's lock and returns the new state.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut ContainerState)) -> Result<ContainerState> {
        let _l = self.lock(id)?;
        let mut st = self.state(id)?;
        f(&mut st);
        self.write_state(id, &st)?;
        Ok(st)
    }

    /// Changes the config under the container's lock (`network connect` and
    /// `disconnect` are the only changes after create); durable like create.
    pub fn update_config(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerConfig),
    ) -> Result<ContainerConfig> {
        let _l = self.lock(id)?;
        let mut cfg = self.config(id)?;
        f(&mut cfg);
        let bytes = serde_json::to_vec_pretty(&cfg).expect("config serializes");
        write_atomic(&self.dir(id).join("config.json"), &bytes)?;
        Ok(cfg)
    }

    pub fn write_state(&self, id: &str, st: &ContainerState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(st).expect("state serializes");
        write_replace(&self.dir(id).join("state.json"), &bytes, false)
    }

    /// Finds a container by full ID, unique ID prefix or name.
    pub fn resolve(&self, s: &str) -> Result<String> {
        let s = s.trim_start_matches('/');
        if s.is_empty() {
            return Err(RuntimeError::NotFound(s.to_string()));
        }
        let ids = self.ids()?;
        if ids.iter().any(|i| i == s) {
            return Ok(s.to_string());
        }
        for id in &ids {
            if self.config(id).is_ok_and(|c| c.name == s) {
                return Ok(id.clone());
            }
        }
        let hits: Vec<&String> = ids.iter().filter(|i| i.starts_with(s)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RuntimeError::NotFound(s.to_string())),
            _ => Err(RuntimeError::AmbiguousId(s.to_string())),
        }
    }

    /// Reserves the record: checks the name is free and writes config.json, all
    /// under the name-table lock so that two concurrent creates cannot share a name.
    /// `cfg.name` empty means "generate one".
    pub fn create(&self, cfg: &mut ContainerConfig) -> Result<()> {
        let _l = lock(&self.dir.join(".names.lock"))?;
        let taken: BTreeMap<String, String> = self
            .ids()?
            .into_iter()
            .filter_map(|id| self.config(&id).ok().map(|c| (c.name, id)))
            .collect();
        if cfg.name.is_empty() {
            let mut attempt = 0;
            loop {
                let n = ids::random_name(attempt);
                if !taken.contains_key(&n) {
                    cfg.name = n;
                    break;
                }
                attempt += 1;
            }
        } else {
            if !ids::valid_name(&cfg.name) {
                return Err(RuntimeError::InvalidName(cfg.name.clone()));
            }
            if let Some(id) = taken.get(&cfg.name) {
                return Err(RuntimeError::NameInUse {
                    name: cfg.name.clone(),
                    id: id.clone(),
                });
            }
        }
        // Built under a hidden name and published by one rename: nobody sees
        // a half-written record, and no file needs a rename of its own.
        let staging = self.hidden(".new-");
        let built = (|| {
            fs::create_dir_all(staging.join("bundle")).map_err(write_err(&staging))?;
            // A --rm container's record lives only as long as its process,
            // which a crash ends anyway: no need to wait for the disk (an
            // fsync costs from half a millisecond to tens on a busy disk).
            let durable = !cfg.auto_remove;
            let config = serde_json::to_vec_pretty(cfg).expect("config serializes");
            write_new(&staging.join("config.json"), &config, durable)?;
            let state =
                serde_json::to_vec_pretty(&ContainerState::default()).expect("state serializes");
            write_new(&staging.join("state.json"), &state, durable)?;
            let dir = self.dir(&cfg.id);
            fs::rename(&staging, &dir).map_err(write_err(&dir))
        })();
        if built.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        built
    }

    /// Gives container `id` the name `name` (docker's `rename`), under the
    /// name-table lock as [`Containers::create`] takes names.
    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        let _l = lock(&self.dir.join(".names.lock"))?;
        if !ids::valid_name(name) {
            return Err(RuntimeError::InvalidName(name.to_string()));
        }
        for other in self.ids()? {
            if other != id && self.config(&other).is_ok_and(|c| c.name == name) {
                return Err(RuntimeError::NameInUse {
                    name: name.to_string(),
                    id: other,
                });
            }
        }
        self.update_config(id, |c| c.name = name.to_string())?;
        Ok(())
    }

    /// Removes the record directory (the caller has already released mounts).
    pub fn remove_record(&self, id: &str) -> Result<()> {
        match self.retire_record(id)? {
            Some(trash) => purge(&trash),
            None => Ok(()),
        }
    }

    /// Takes the record directory out of sight at once: renamed to a hidden
    /// name without the id (no listing, lookup or name check sees it any
    /// more); the caller deletes the returned directory with [`purge`], now
    /// or once the user no longer waits. `None` if there is no record.
    pub fn retire_record(&self, id: &str) -> Result<Option<PathBuf>> {
        let dir = self.dir(id);
        let trash = self.hidden(".removed-");
        match fs::rename(&dir, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::Write {
                path: dir,
                source: e,
            }),
        }
    }

    /// A fresh hidden name beside the records, `prefix` and random hex: no
    /// listing sees it (ids are 64 hex digits) and it names no container.
    fn hidden(&self, prefix: &str) -> PathBuf {
        self.dir.join(format!("{prefix}{}", &ids::new_id()[..16]))
    }

    /// Records left behind half-way: retired ones whose monitor died before
    /// releasing them (with their config, when readable), and ones a crash
    /// left half-built long ago. A retired record whose monitor still runs
    /// is that monitor's business and not listed.
    pub fn leftovers(&self) -> Vec<(PathBuf, Option<ContainerConfig>)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".removed-") {
                let cfg: Option<ContainerConfig> = read_json(&e.path().join("config.json")).ok();
                let st: Option<ContainerState> = read_json(&e.path().join("state.json")).ok();
                if let Some(s) = &st
                    && s.monitor_start > 0
                    && self.monitor_alive(s, cfg.as_ref().map_or("", |c| c.id.as_str()))
                {
                    continue;
                }
                out.push((e.path(), cfg));
            } else if name.starts_with(".new-")
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|d| d.as_secs() > 600))
            {
                out.push((e.path(), None));
            }
        }
        out
    }
}

/// Deletes a directory returned by [`Containers::retire_record`].
pub fn purge(trash: &Path) -> Result<()> {
    crate::error::removed(fs::remove_dir_all(trash), trash)
}

/// Whether a process is still alive (and not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    process_start(pid).is_some()
}

/// When process `pid` started, in clock ticks after boot (/proc/PID/stat
/// field 22: unique for a pid until reboot), if it is alive (not a zombie):
/// one read of the file answers both.
pub fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3, start time 22.
    let mut fields = s.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the monitor recorded in `st` (for container `id`) still runs.
/// Guards against pid reuse: the process must have the recorded start time
/// (a forked monitor keeps its client's command line, so that cannot tell);
/// records without one fall back to a command line naming `id`.
pub fn monitor_alive(st: &ContainerState, id: &str) -> bool {
    monitor_alive_on(&HostKernel, st, id)
}

/// [`monitor_alive`] as `kernel` sees the processes.
pub fn monitor_alive_on(kernel: &dyn Kernel, st: &ContainerState, id: &str) -> bool {
    let pid = st.monitor_pid;
    let Some(start) = kernel.process_start(pid) else {
        return false;
    };
    if st.monitor_start > 0 {
        return start == st.monitor_start;
    }
    kernel.cmdline(pid).is_some_and(|c| c.contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_record_is_gone_at_once_and_purged_later() {
        let root = tempfile::tempdir().unwrap();
        let c = Containers::open(root.path()).unwrap();
        let id = crate::ids::new_id();
        std::fs::create_dir_all(c.dir(&id).join("upper/etc")).unwrap();
        std::fs::write(c.dir(&id).join(format!("{id}-json.log")), "x").unwrap();
        let trash = c.retire_record(&id).unwrap().unwrap();
        assert!(!c.dir(&id).exists());
        assert!(!trash.to_string_lossy().contains(&id));
        assert!(trash.join("upper/etc").is_dir());
        purge(&trash).unwrap();
        assert!(!trash.exists());
        assert!(c.retire_record(&id).unwrap().is_none());
        // One whose monitor died before releasing it is a leftover...
        std::fs::create_dir_all(c.dir(&id).join("work")).unwrap();
        let left = c.retire_record(&id).unwrap().unwrap();
        let found = c.leftovers();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, left);
        purge(&left).unwrap();
        // ...one whose monitor still runs (here: this process) is not.
        std::fs::create_dir_all(c.dir(&id)).unwrap();
        let me = std::process::id().cast_signed();
        let st = ContainerState {
            monitor_pid: me,
            monitor_start: process_start(me).unwrap(),
            ..ContainerState::default()
        };
        c.write_state(&id, &st).unwrap();
        let busy = c.retire_record(&id).unwrap().unwrap();
        assert!(c.leftovers().is_empty());
        purge(&busy).unwrap();
        assert_eq!(std::fs::read_dir(&c.dir).unwrap().count(), 0);
    }

    #[test]
    fn a_monitor_is_known_by_pid_and_start_time() {
        let me = std::process::id().cast_signed();
        let start = process_start(me).unwrap();
        assert!(start > 0);
        let st = |pid, monitor_start| ContainerState {
            monitor_pid: pid,
            monitor_start,
            ..ContainerState::default()
        };
        assert!(monitor_alive(&st(me, start), "any-id"));
        // The same pid with another start time is another process.
        assert!(!monitor_alive(&st(me, start + 1), "any-id"));
        // Old records: the command line must name the container.
        assert!(!monitor_alive(&st(me, 0), "no-such-container-id"));
        assert!(!monitor_alive(&st(0, start), "any-id"));
    }

    #[test]
    fn ulimits_parse_like_docker() {
        let u = |name: &str, soft, hard| Ulimit {
            name: name.into(),
            soft,
            hard,
        };
        assert_eq!(
            Ulimit::parse("nofile=1024").unwrap(),
            u("nofile", 1024, 1024)
        );
        assert_eq!(Ulimit::parse("NPROC=10:-1").unwrap(), u("nproc", 10, -1));
        for bad in ["nofile", "nofile=x", "nofile=1:y", "=1:2:3"] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
        let old: ContainerConfig = {
            // A record from before `extra` existed still loads.
            let mut v = serde_json::to_value(crate::spec::tests_config()).unwrap();
            v.as_object_mut().unwrap().remove("extra");
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(old.extra, ExtraConfig::default());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("always:3").is_err());
        let p = RestartPolicy::OnFailure { max: 3 };
        assert!(p.should_restart(1, 2, false));
        assert!(!p.should_restart(1, 3, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(!RestartPolicy::Always.should_restart(0, 9, true));
        assert!(RestartPolicy::UnlessStopped.should_restart(0, 9, false));
    }

    #[test]
    fn ports() {
        let p = &PortSpec::parse("127.0.0.1:8080:80/udp").unwrap()[0];
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host_port, p.container_port), (8080, 80));
        assert_eq!(p.protocol, "udp");
        assert_eq!(PortSpec::parse("80").unwrap()[0].host_port, 0);
        assert!(PortSpec::parse("x:80").is_err());
        assert!(PortSpec::parse("1:2:3:4").is_err());
        assert!(PortSpec::parse("80/sctp").is_err());
        assert!(PortSpec::parse("8080:0").is_err());
        // docker's ranges map pairwise (issue 15).
        let r = PortSpec::parse("127.0.0.1:18300-18302:80-82").unwrap();
        let pairs: Vec<(u16, u16)> = r.iter().map(|p| (p.host_port, p.container_port)).collect();
        assert_eq!(pairs, [(18300, 80), (18301, 81), (18302, 82)]);
        assert_eq!(PortSpec::parse("80-81").unwrap().len(), 2);
        assert!(PortSpec::parse("8000-8002:80-81").is_err());
        assert!(PortSpec::parse("82-80").is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn option_parsers_never_panic(s in ".{0,40}") {
            let _ = RestartPolicy::parse(&s);
            let _ = PortSpec::parse(&s);
            let _ = crate::ids::valid_name(&s);
            let _ = Ulimit::parse(&s);
        }
    }
}
