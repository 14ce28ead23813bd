//! Container and volume commands: run, create, start, stop, kill, restart, rm,
//! ps, logs, exec, wait, inspect (containers), port, stats, cp, volume …, and the
//! hidden `__monitor` that supervises one container.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use keel_runtime::backend::{ExecSpec, Stdio};
use keel_runtime::engine::{self, CreateOptions};
use keel_runtime::monitor::Frame;
use keel_runtime::network::{NetworkAttacher, NoNetworks};
use keel_runtime::tty::{ConsoleSocket, RawMode, WinSize};
use keel_runtime::{
    ContainerConfig, ContainerState, Containers, HealthConfig, MountKind, MountSpec, PortSpec,
    RestartPolicy, RuntimeError, Status, Volumes, ids, logs, stats,
};
use serde_json::{Value, json};

use crate::Hint;
use crate::output::{Format, human_duration, human_size, print_structured, table};

/// The network driver the runtime calls: keel-net's bridges. If its state
/// cannot be opened, only `none` and `host` work and the error says why.
pub(crate) fn network_attacher(root: &Path) -> Box<dyn NetworkAttacher> {
    match keel_net::Networks::open(root) {
        Ok(n) => Box::new(NetAttacher(n, root.to_path_buf())),
        Err(e) => {
            eprintln!("warning: networks unavailable: {e}");
            Box::new(NoNetworks)
        }
    }
}

/// Adapts keel-net's `Networks` (of the keel root in `.1`) to the runtime's seam.
struct NetAttacher(keel_net::Networks, std::path::PathBuf);

fn to_net_port(p: &keel_runtime::network::PortMapping) -> keel_net::PortMapping {
    keel_net::PortMapping {
        host_ip: p.host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: if p.protocol.eq_ignore_ascii_case("udp") {
            keel_net::Protocol::Udp
        } else {
            keel_net::Protocol::Tcp
        },
        ..keel_net::PortMapping::default()
    }
}

fn from_net_port(p: &keel_net::PortMapping) -> keel_runtime::network::PortMapping {
    keel_runtime::network::PortMapping {
        host_ip: p.host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: match p.protocol {
            keel_net::Protocol::Udp => "udp".to_string(),
            keel_net::Protocol::Tcp => "tcp".to_string(),
        },
    }
}

impl NetworkAttacher for NetAttacher {
    fn attach(
        &self,
        req: &keel_runtime::network::AttachRequest,
    ) -> std::result::Result<keel_runtime::network::Attachment, String> {
        let req = keel_net::AttachRequest {
            container_id: req.container_id.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            aliases: req.aliases.clone(),
            ports: req.ports.iter().map(to_net_port).collect(),
            ip: req.ip,
            extra_hosts: req.extra_hosts.clone(),
            dns: req.dns.clone(),
        };
        let a = match self.0.attach(&req) {
            // An --rm container that `run` reported gone may still hold the
            // port or address while its monitor releases it: wait for that
            // (docker finishes removing before `run` returns), try once more.
            Err(
                keel_net::NetError::PortTaken { .. }
                | keel_net::NetError::PortRangeTaken { .. }
                | keel_net::NetError::IpInUse { .. }
                | keel_net::NetError::AddressesExhausted(_),
            ) => {
                crate::network::wait_for_releases(&self.1, &self.0, None);
                self.0.attach(&req)
            }
            r => r,
        }
        .map_err(|e| e.to_string())?;
        Ok(keel_runtime::network::Attachment {
            ip: a.ip,
            prefix_len: a.prefix_len,
            gateway: a.gateway,
            mac: a.mac,
            ports: a.ports.iter().map(from_net_port).collect(),
            hosts_file: a.hosts_file,
            resolv_conf: a.resolv_conf,
            network: a.network,
            network_id: a.network_id,
            endpoint_id: a.endpoint_id,
            ifname: a.ifname,
            aliases: a.aliases,
        })
    }

    fn detach(&self, container_id: &str) -> std::result::Result<(), String> {
        self.0.detach(container_id).map_err(|e| e.to_string())
    }

    fn detach_network(&self, container_id: &str, network: &str) -> std::result::Result<(), String> {
        self.0
            .detach_network(container_id, network)
            .map_err(|e| e.to_string())
    }
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to take it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set metadata on a container (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Publish a container's port(s) to the host ([IP:]HOST:CTR[/udp]).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Connect to a network: bridge, host, none, container:NAME, a network's
    /// name, or name=NET[,alias=A][,ip=IP]; repeat to join several (the
    /// first is the primary).
    #[arg(long, alias = "net")]
    pub network: Vec<String>,
    /// Add a network-scoped alias for the container (on its first network).
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// IPv4 address on the first network (e.g. 172.30.100.104).
    #[arg(long)]
    pub ip: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip, or host:host-gateway).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Bind mount a volume (`NAME:/path`, `/host:/path[:ro]`, `/path`).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…[,readonly]).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:options]).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Tune container pids limit (-1 for unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Size of /dev/shm (e.g. 128m).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Ulimit options (NAME=SOFT[:HARD]).
    #[arg(long, value_parser = keel_runtime::record::Ulimit::parse)]
    pub ulimit: Vec<keel_runtime::record::Ulimit>,
    /// Sysctl options (NAME=VALUE).
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Run an init (docker-init, i.e. tini) inside the container that
    /// forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem as read only.
    #[arg(long)]
    pub read_only: bool,
    /// Add Linux capabilities.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Command to run to check health.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run.
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize before counting retries.
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Signal to stop the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long)]
    pub stop_timeout: Option<u32>,
    /// Runtime to use: libcontainer (default, in process) or runc.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY (stdio is passed through to the container; no pty of its own).
    #[arg(short = 't', long)]
    pub tty: bool,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run the container in the background and print its ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and wait for the exit.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach the container's STDIN.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u32>,
    /// Signal to send (default: the container's stop signal).
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter output (name=, id=, status=, label=, ancestor=).
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end ("all" for all).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since a timestamp (RFC 3339) or relative (e.g. 42s, 5m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY (stdio is passed through).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PORT[/PROTO] to look up.
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// `CONTAINER:SRC_PATH` or a host path.
    pub src: String,
    /// `CONTAINER:DEST_PATH` or a host path.
    pub dest: String,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(VolumeCreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on volumes.
    Inspect(VolumeNamesArgs),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused volumes (anonymous ones unless --all).
    Prune(VolumePruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Set metadata for a volume.
    #[arg(long)]
    pub label: Vec<String>,
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Remove even when a container refers to it.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub(crate) fn open(root: &Path) -> anyhow::Result<Containers> {
    Containers::open(root).with_context(|| format!("opening containers under {}", root.display()))
}

/// Adds hints to runtime errors the user can act on.
pub(crate) fn hinted(e: RuntimeError) -> anyhow::Error {
    let hint = match &e {
        RuntimeError::Image(keel_oci::OciError::ImageNotFound(_)) => Some(
            "`keel images` lists local images; `keel pull NAME`, `keel import` or `keel image seed-busybox` brings one in",
        ),
        RuntimeError::NotFound(_) => Some("`keel ps -a` lists containers"),
        RuntimeError::NoCommand => Some("give a command after the image name"),
        RuntimeError::UnknownUser(_) | RuntimeError::UnknownGroup(_) => {
            Some("use a name from the image's /etc/passwd, or a numeric uid[:gid]")
        }
        RuntimeError::Running(_) => Some("stop it first, or use keel rm -f"),
        RuntimeError::NameInUse { .. } => Some("remove that container or choose another --name"),
        RuntimeError::Network(m) if m.contains("no network driver") => {
            Some("run with --network none or --network host")
        }
        _ => None,
    };
    let msg = keel_runtime::error_chain(&e);
    match hint {
        Some(h) => anyhow::Error::new(Hint::new(h)).context(msg),
        None => anyhow::anyhow!(msg),
    }
}

/// `512`, `64k`, `64m`, `1g` (binary units, like Docker).
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| {
        format!("invalid size {s:?}: expected a number with an optional k, m, g suffix")
    })?;
    if n < 0.0 {
        bail!("invalid size {s:?}: must not be negative");
    }
    #[allow(clippy::cast_precision_loss)]
    let v = n * mul as f64;
    Ok(v as i64)
}

/// `500ms`, `30s`, `1m30s`, `1h` → milliseconds.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("invalid duration {s:?}: expected e.g. 500ms, 30s, 1m30s");
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit: String = std::iter::once(c)
            .chain(std::iter::from_fn(|| {
                chars.next_if(char::is_ascii_alphabetic)
            }))
            .collect();
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(total as u64)
}

fn kv(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `-v` forms: `/path` (anonymous volume), `NAME:/path[:opts]`, `/host:/path[:opts]`.
pub fn parse_volume(s: &str) -> anyhow::Result<MountSpec> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = |why: &str| anyhow::anyhow!("invalid volume specification {s:?}: {why}");
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [a, b] => (*a, *b, ""),
        [a, b, o] => (*a, *b, *o),
        _ => return Err(bad("expected [SOURCE:]TARGET[:OPTIONS]")),
    };
    if dst.is_empty() || !dst.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave"
            | "slave" | "nocopy" => {}
            _ => return Err(bad(&format!("unknown option {o:?}"))),
        }
    }
    if src.is_empty() {
        if parts.len() > 1 {
            return Err(bad("empty source"));
        }
        return Ok(MountSpec {
            kind: MountKind::Volume,
            source: ids::new_id(),
            target: dst.to_string(),
            read_only,
            anonymous: true,
            options: Vec::new(),
        });
    }
    if src.starts_with('/') {
        // Like Docker's -v, a missing host directory is created.
        std::fs::create_dir_all(src).with_context(|| format!("creating host directory {src}"))?;
        return Ok(MountSpec {
            kind: MountKind::Bind,
            source: src.to_string(),
            target: dst.to_string(),
            read_only,
            anonymous: false,
            options: Vec::new(),
        });
    }
    if !ids::valid_name(src) {
        return Err(bad(
            "the source must be an absolute host path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
        ));
    }
    Ok(MountSpec {
        kind: MountKind::Volume,
        source: src.to_string(),
        target: dst.to_string(),
        read_only,
        anonymous: false,
        options: Vec::new(),
    })
}

/// `--mount type=…,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`.
pub fn parse_mount(s: &str) -> anyhow::Result<MountSpec> {
    let bad = |why: &str| anyhow::anyhow!("invalid mount specification {s:?}: {why}");
    let mut kind = MountKind::Volume;
    let (mut src, mut dst, mut ro, mut opts) = (String::new(), String::new(), false, Vec::new());
    for field in s.split(',') {
        let (k, v) = kv(field);
        match k.as_str() {
            "type" => {
                kind = match v.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    _ => return Err(bad("type must be bind, volume or tmpfs")),
                };
            }
            "source" | "src" => src = v,
            "target" | "destination" | "dst" => dst = v,
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => opts.push(format!("size={}", parse_bytes(&v)?)),
            "tmpfs-mode" => opts.push(format!("mode={v}")),
            "bind-propagation" | "consistency" | "volume-nocopy" => {}
            _ => return Err(bad(&format!("unknown field {k:?}"))),
        }
    }
    if dst.is_empty() {
        return Err(bad("target is required"));
    }
    let anonymous = kind == MountKind::Volume && src.is_empty();
    if anonymous {
        src = ids::new_id();
    }
    if kind == MountKind::Bind && src.is_empty() {
        return Err(bad("source is required for bind mounts"));
    }
    Ok(MountSpec {
        kind,
        source: src,
        target: dst,
        read_only: ro,
        anonymous,
        options: opts,
    })
}

fn parse_tmpfs(s: &str) -> anyhow::Result<MountSpec> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    Ok(MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        target: dst.to_string(),
        read_only: false,
        anonymous: false,
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn create_options(f: &CreateFlags) -> anyhow::Result<CreateOptions> {
    let mut env = Vec::new();
    for file in &f.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading env file {}", file.display()))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            env.push(expand_env(l));
        }
    }
    env.extend(f.env.iter().map(|e| expand_env(e)));
    let mut mounts = Vec::new();
    for v in &f.volume {
        mounts.push(parse_volume(v)?);
    }
    for m in &f.mount {
        mounts.push(parse_mount(m)?);
    }
    for t in &f.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.extend(PortSpec::parse(p).map_err(hinted)?);
    }
    // Zero fields and an empty test inherit the image's HEALTHCHECK (engine::merge_healthcheck).
    let healthcheck = if f.no_healthcheck {
        Some(HealthConfig {
            test: vec!["NONE".to_string()],
            interval_ms: 0,
            timeout_ms: 0,
            retries: 0,
            start_period_ms: 0,
        })
    } else {
        let ms = |v: &Option<String>| v.as_deref().map_or(Ok(0), parse_duration_ms);
        Some(HealthConfig {
            test: f
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
                .unwrap_or_default(),
            interval_ms: ms(&f.health_interval)?,
            timeout_ms: ms(&f.health_timeout)?,
            retries: f.health_retries.unwrap_or(0),
            start_period_ms: ms(&f.health_start_period)?,
        })
    };
    let mut networks = f
        .network
        .iter()
        .map(|n| parse_network_flag(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut primary = if networks.is_empty() {
        keel_runtime::EndpointConfig {
            network: "bridge".to_string(),
            ..keel_runtime::EndpointConfig::default()
        }
    } else {
        networks.remove(0)
    };
    primary.aliases.extend(f.network_alias.iter().cloned());
    if f.ip.is_some() {
        primary.ip.clone_from(&f.ip);
    }
    let cpus = match f.cpus {
        Some(c) if c <= 0.0 => bail!("invalid --cpus {c}: must be positive"),
        Some(c) => Some((c * 1e9) as i64),
        None => None,
    };
    Ok(CreateOptions {
        image: f.image.clone(),
        name: f.name.clone(),
        command: f.command.clone(),
        entrypoint: f.entrypoint.clone(),
        env,
        working_dir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        labels: f.label.iter().map(|l| kv(l)).collect::<BTreeMap<_, _>>(),
        network: primary.network,
        network_aliases: primary.aliases,
        networking: keel_runtime::NetworkConfig {
            ip: primary.ip,
            extra_networks: networks,
            extra_hosts: f.add_host.clone(),
            dns: f.dns.clone(),
            dns_search: f.dns_search.clone(),
            dns_options: f.dns_option.clone(),
        },
        ports,
        publish_all: f.publish_all,
        mounts,
        memory: f.memory.as_deref().map(parse_bytes).transpose()?,
        nano_cpus: cpus,
        pids_limit: f.pids_limit.filter(|p| *p > 0),
        read_only: f.read_only,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        restart: RestartPolicy::parse(&f.restart).map_err(hinted)?,
        healthcheck,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        runtime: f.runtime.clone().unwrap_or_default(),
        auto_remove: f.rm,
        interactive: f.interactive,
        tty: f.tty,
        extra: keel_runtime::record::ExtraConfig {
            memory_swap: match f.memory_swap.as_deref() {
                Some("-1") => Some(-1),
                other => other.map(parse_bytes).transpose()?,
            },
            shm_size: f.shm_size.as_deref().map(parse_bytes).transpose()?,
            ulimits: f.ulimit.clone(),
            sysctls: f.sysctl.iter().map(|l| kv(l)).collect(),
            init: f.init,
        },
    })
}

/// `--network NAME` or Docker's long form `name=NAME[,alias=A]...[,ip=IP]`.
fn parse_network_flag(s: &str) -> anyhow::Result<keel_runtime::EndpointConfig> {
    let mut ep = keel_runtime::EndpointConfig::default();
    if !s.starts_with("name=") {
        ep.network = s.to_string();
        return Ok(ep);
    }
    for field in s.split(',') {
        match kv(field) {
            (k, v) if k == "name" => ep.network = v,
            (k, v) if k == "alias" => ep.aliases.push(v),
            (k, v) if k == "ip" => ep.ip = Some(v),
            (k, _) => bail!(
                "invalid --network {s:?}: unknown field {k:?} (keel takes name, alias and ip)"
            ),
        }
    }
    if ep.network.is_empty() {
        bail!("invalid --network {s:?}: name is required");
    }
    Ok(ep)
}

/// `KEY` alone takes the value from keel's own environment, like Docker.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

fn do_create(root: &Path, f: &CreateFlags) -> anyhow::Result<ContainerConfig> {
    let o = create_options(f)?;
    engine::create(root, &o)
        .map_err(hinted)
        .context("creating the container")
}

pub fn create(root: &Path, a: CreateFlags) -> anyhow::Result<ExitCode> {
    let cfg = do_create(root, &a)?;
    println!("{}", cfg.id);
    Ok(ExitCode::SUCCESS)
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the keel binary")
}

/// Forwards the monitor's frames to our stdout/stderr until the exit frame.
/// Like Docker's sig-proxy, INT, TERM, HUP, QUIT, USR1 and USR2 sent to us go
/// to the container (`pid`) instead of ending keel.
fn follow_frames(child: &mut engine::Monitor, pid: i32) -> anyhow::Result<Option<i32>> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use rustix::event::{PollFd, PollFlags, poll};
    let mut out = child.stdout.take().context("monitor pipe")?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        mask.add(s);
    }
    // Blocked only now: the monitor and the container were spawned with the
    // default mask, which they would otherwise inherit.
    mask.thread_block().context("blocking signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    loop {
        let (pipe_ready, sig_ready) = {
            let mut fds = [
                PollFd::new(&out, PollFlags::IN),
                PollFd::new(&sfd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
        };
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
            }
        }
        if !pipe_ready {
            continue;
        }
        match Frame::read(&mut out).context("reading from the container monitor")? {
            Some(Frame::Stdout(d)) => {
                let _ = stdout.write_all(&d);
                let _ = stdout.flush();
            }
            Some(Frame::Stderr(d)) => {
                let _ = stderr.write_all(&d);
            }
            Some(Frame::Exit(c)) => return Ok(Some(c)),
            Some(Frame::Error(m)) => bail!("{m}"),
            Some(Frame::Started(_)) => {}
            None => return Ok(None),
        }
    }
}

fn exit_code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c.clamp(0, 255)).unwrap_or(1))
}

/// Docker's exit status for `run` when keel itself fails.
const EXIT_KEEL_FAILED: u8 = 125;
/// The command exists but cannot be invoked.
const EXIT_CANNOT_INVOKE: u8 = 126;
/// The command was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// A usage error of `keel run` exits 125 as with docker (clap's 2 otherwise).
pub fn usage_exit_code(e: &clap::Error) -> Option<u8> {
    if !e.use_stderr() {
        return None;
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            args.next();
        } else if !a.starts_with('-') {
            return (a == "run").then_some(EXIT_KEEL_FAILED);
        }
    }
    None
}

/// Marks a start failure with the exit status Docker gives it.
#[derive(Debug)]
struct RunExit(u8);

impl std::fmt::Display for RunExit {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl std::error::Error for RunExit {}

/// 127 for a command that is not there, 126 for one that cannot be run,
/// matched on the runtime's message the way dockerd does.
fn start_failure_exit(msg: &str) -> u8 {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found in $path")
        || m.contains("executable file not found")
        || m.contains("no such file or directory")
    {
        EXIT_NOT_FOUND
    } else if m.contains("permission denied") || m.contains("does not have correct permissions") {
        EXIT_CANNOT_INVOKE
    } else {
        EXIT_KEEL_FAILED
    }
}

/// `keel run`: the container's exit status, or Docker's 125/126/127 when it
/// could not run.
pub fn run(root: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    match run_container(root, a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("{}", crate::render_error(&e));
            Ok(ExitCode::from(
                e.downcast_ref::<RunExit>()
                    .map_or(EXIT_KEEL_FAILED, |r| r.0),
            ))
        }
    }
}

fn run_container(root: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = do_create(root, &a.flags)?;
    let containers = open(root)?;
    let net = network_attacher(root);
    let attach_tty = a.flags.tty && !a.detach;
    let size = if attach_tty { client_size() } else { None };
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        &cfg.id,
        a.flags.interactive && !a.detach,
        size,
        Some(&|win| monitor_in_process(root, &cfg.id, win)),
    )
    .map_err(hinted)?;
    let pid = match engine::await_start(&mut child) {
        Ok(pid) => pid,
        Err(e) => {
            // Nothing half-created: a container that never started goes away again.
            let _ = child.wait();
            let _ = engine::remove(&containers, &cfg.id, true, true, net.as_ref());
            let code = RunExit(start_failure_exit(&keel_runtime::error_chain(&e)));
            return Err(hinted(e).context(code).context("starting the container"));
        }
    };
    if a.detach {
        println!("{}", cfg.id);
        return Ok(ExitCode::SUCCESS);
    }
    follow_until_exit(
        &mut child,
        pid,
        &containers,
        &cfg.id,
        attach_tty && a.flags.interactive,
    )
}

/// The client's terminal size: stdout's, or stdin's when output is redirected.
fn client_size() -> Option<WinSize> {
    WinSize::of(std::io::stdout()).or_else(|| WinSize::of(std::io::stdin()))
}

/// Follows a started container's frames until it exits; returns its exit
/// code. With `raw_keys` (-it on a terminal) keys, Ctrl-C included, go to
/// the container as typed.
fn follow_until_exit(
    child: &mut engine::Monitor,
    pid: i32,
    c: &Containers,
    id: &str,
    raw_keys: bool,
) -> anyhow::Result<ExitCode> {
    let raw = raw_keys
        .then(|| RawMode::enable(std::io::stdin()))
        .flatten();
    let code = follow_frames(child, pid);
    drop(raw);
    // With an exit frame the container is done (and with --rm, gone); the
    // monitor may still be deleting its files and is reaped by whoever
    // inherits it. Without one, the monitor died: its record tells.
    let code = if let Some(code) = code? {
        code
    } else {
        let _ = child.wait();
        c.state(id).map_or(-1, |s| s.exit_code)
    };
    Ok(exit_code(code))
}

fn resolve(c: &Containers, name: &str) -> anyhow::Result<String> {
    c.resolve(name).map_err(hinted)
}

/// Runs `f` for each named container; like Docker, reports failures and goes on.
fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{}", crate::render_error(&e));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Starts a created container with its output (and with `interactive` its
/// input) attached, and waits for its exit code; a container created with a
/// TTY gets this terminal's size and raw keys.
pub(crate) fn start_attached(
    root: &Path,
    c: &Containers,
    id: &str,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let tty = c.config(id).map_err(hinted)?.tty;
    let size = if tty { client_size() } else { None };
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        id,
        interactive,
        size,
        Some(&|win| monitor_in_process(root, id, win)),
    )
    .map_err(hinted)?;
    let pid = engine::await_start(&mut child).map_err(hinted)?;
    follow_until_exit(&mut child, pid, c, id, tty && interactive)
}

pub(crate) fn start_one(root: &Path, c: &Containers, id: &str) -> anyhow::Result<()> {
    if engine::is_active(c, id) {
        return Ok(());
    }
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        id,
        false,
        None,
        Some(&|win| monitor_in_process(root, id, win)),
    )
    .map_err(hinted)?;
    let r = engine::await_start(&mut child);
    drop(child);
    r.map_err(|e| hinted(e).context("starting the container"))?;
    Ok(())
}

pub fn start(root: &Path, a: StartArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    if a.attach {
        let [name] = a.containers.as_slice() else {
            bail!("you cannot start and attach multiple containers at once");
        };
        let id = resolve(&c, name)?;
        return start_attached(root, &c, &id, a.interactive);
    }
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        start_one(root, &c, &id)
    })
}

pub fn stop(root: &Path, a: StopArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        if let Some(s) = &a.signal {
            engine::parse_signal(s).map_err(hinted)?;
        }
        engine::stop(&c, &id, a.time, a.signal.as_deref()).map_err(hinted)
    })
}

pub fn kill(root: &Path, a: KillArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let sig = engine::parse_signal(&a.signal).map_err(hinted)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        engine::kill(&c, &id, sig, true).map_err(hinted)
    })
}

pub fn restart(root: &Path, a: StopArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        engine::stop(&c, &id, a.time, a.signal.as_deref()).map_err(hinted)?;
        start_one(root, &c, &id)
    })
}

pub fn rm(root: &Path, a: RmArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let net = network_attacher(root);
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        engine::remove(&c, &id, a.force, a.volumes, net.as_ref()).map_err(hinted)
    })
}

pub(crate) fn status_text(st: &ContainerState, status: Status) -> String {
    let now = Utc::now();
    let since = |t: Option<DateTime<Utc>>| {
        t.map_or_else(String::new, |t| human_duration((now - t).num_seconds()))
    };
    let mut s = match status {
        Status::Created => "Created".to_string(),
        Status::Running => format!("Up {}", since(st.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(st.finished_at)
        ),
        Status::Exited => {
            if st.finished_at.is_some() {
                format!("Exited ({}) {} ago", st.exit_code, since(st.finished_at))
            } else {
                "Created".to_string()
            }
        }
        Status::Removing => "Removal In Progress".to_string(),
    };
    if status == Status::Running
        && let Some(h) = &st.health
    {
        let h = if h.status == "starting" {
            "health: starting"
        } else {
            &h.status
        };
        s = format!("{s} ({h})");
    }
    s
}

pub(crate) fn ports_text(cfg: &ContainerConfig, st: &ContainerState) -> String {
    let ports = st
        .network
        .as_ref()
        .map_or_else(|| cfg.ports.clone(), |n| n.ports.clone());
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn command_text(cfg: &ContainerConfig) -> String {
    std::iter::once(cfg.path.as_str())
        .chain(cfg.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn matches_filter(cfg: &ContainerConfig, status: Status, f: &str) -> anyhow::Result<bool> {
    let (k, v) = f
        .split_once('=')
        .with_context(|| format!("bad filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "name" => cfg.name.contains(v),
        "id" => cfg.id.starts_with(v),
        "status" => status.as_str() == v,
        "ancestor" => cfg.image == v || cfg.image_id.contains(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => cfg.labels.get(lk).is_some_and(|x| x == lv),
            None => cfg.labels.contains_key(v),
        },
        "network" => cfg.joins(v),
        _ => bail!("invalid filter {k:?}"),
    })
}

pub fn ps(root: &Path, a: PsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut ids_out = Vec::new();
    // Newest first, like docker.
    for id in c.ids().map_err(hinted)?.into_iter().rev() {
        let (Ok(cfg), Ok(st)) = (c.config(&id), c.state(&id)) else {
            continue;
        };
        let status = engine::effective_status(&c, &id);
        let has_status_filter = a.filter.iter().any(|f| f.starts_with("status="));
        if !a.all && !has_status_filter && status != Status::Running && status != Status::Restarting
        {
            continue;
        }
        let mut keep = true;
        for f in &a.filter {
            keep &= matches_filter(&cfg, status, f)?;
        }
        if !keep {
            continue;
        }
        let shown_id = if a.no_trunc {
            id.clone()
        } else {
            ids::short(&id).to_string()
        };
        let mut cmd = format!("\"{}\"", command_text(&cfg));
        if !a.no_trunc && cmd.chars().count() > 22 {
            cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
        }
        let created = crate::output::ago(Some(&cfg.created.to_rfc3339()));
        let st_text = status_text(&st, status);
        let ports = ports_text(&cfg, &st);
        ids_out.push(shown_id.clone());
        objs.push(json!({
            "ID": shown_id, "Image": cfg.image, "Command": cmd, "CreatedAt": cfg.created.to_rfc3339(),
            "RunningFor": created, "State": status.as_str(), "Status": st_text, "Ports": ports,
            "Names": cfg.name, "Labels": cfg.labels, "Networks": std::iter::once(cfg.network.clone()).chain(cfg.networking.extra_networks.iter().map(|e| e.network.clone())).collect::<Vec<_>>().join(","),
        }));
        rows.push(vec![
            shown_id,
            cfg.image.clone(),
            cmd,
            created,
            st_text,
            ports,
            cfg.name.clone(),
        ]);
    }
    if a.quiet {
        for i in ids_out {
            println!("{i}");
        }
    } else if a.output == Format::Table {
        print!(
            "{}",
            table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES"
                ],
                &rows
            )
        );
    } else {
        print_structured(&objs, a.output)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).context("timestamp out of range");
    }
    let ms = parse_duration_ms(s).with_context(|| {
        format!("invalid --since {s:?}: expected RFC 3339, a unix time or 42s/5m")
    })?;
    Ok(Utc::now() - chrono::Duration::milliseconds(ms as i64))
}

fn print_entry(e: &logs::Entry, timestamps: bool) {
    let line = if timestamps {
        format!(
            "{} {}",
            e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            e.log
        )
    } else {
        e.log.clone()
    };
    if e.stream == "stderr" {
        let _ = std::io::stderr().write_all(line.as_bytes());
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(line.as_bytes());
        let _ = o.flush();
    }
}

pub fn logs_cmd(root: &Path, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let path = c.log_path(&id);
    let since = a.since.as_deref().map(parse_since).transpose()?;
    let tail: Option<usize> = if a.tail == "all" {
        None
    } else {
        Some(
            a.tail
                .parse()
                .with_context(|| format!("invalid --tail {:?}", a.tail))?,
        )
    };
    let mut entries: Vec<logs::Entry> = logs::read_all(&path)
        .into_iter()
        .filter(|e| since.is_none_or(|s| e.time >= s))
        .collect();
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    for e in &entries {
        print_entry(e, a.timestamps);
    }
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow from the end of what we printed: the current file size.
    let mut offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut pending = String::new();
    loop {
        let active = engine::is_active(&c, &id);
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        if len < offset {
            // Rotated: the new file starts from scratch.
            offset = 0;
        }
        if len > offset
            && let Ok(mut f) = std::fs::File::open(&path)
        {
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = String::new();
            let n = f.read_to_string(&mut buf)?;
            offset += n as u64;
            pending.push_str(&buf);
            while let Some(pos) = pending.find('\n') {
                let line: String = pending.drain(..=pos).collect();
                if let Some(e) = logs::parse_line(line.trim_end())
                    && since.is_none_or(|s| e.time >= s)
                {
                    print_entry(&e, a.timestamps);
                }
            }
            continue;
        }
        if !active {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn own_stdio(interactive: bool) -> anyhow::Result<Stdio> {
    let stdin: std::os::fd::OwnedFd = if interactive {
        std::io::stdin().as_fd().try_clone_to_owned()?
    } else {
        std::fs::File::open("/dev/null")?.into()
    };
    Ok(Stdio {
        stdin,
        stdout: std::io::stdout().as_fd().try_clone_to_owned()?,
        stderr: std::io::stderr().as_fd().try_clone_to_owned()?,
    })
}

pub fn exec(root: &Path, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let (uid, gid, gids) = match &a.user {
        Some(u) => {
            let ident = engine::exec_identity(&cfg, u).map_err(hinted)?;
            (ident.uid, ident.gid, ident.additional_gids)
        }
        None => (cfg.uid, cfg.gid, cfg.additional_gids.clone()),
    };
    let mut env = cfg.env.clone();
    for e in a.env.iter().map(|e| expand_env(e)) {
        let k = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(k.as_str()));
        env.push(e);
    }
    let spec = ExecSpec {
        args: a.command.clone(),
        env,
        cwd: Some(a.workdir.clone().unwrap_or_else(|| cfg.working_dir.clone())),
        uid: Some(uid),
        gid: Some(gid),
        additional_gids: gids,
        console_socket: None,
    };
    if a.tty {
        return exec_tty(root, &c, &id, spec, &a);
    }
    let stdio = if a.detach {
        let null = || -> anyhow::Result<std::os::fd::OwnedFd> {
            Ok(std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into())
        };
        Stdio {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        }
    } else {
        own_stdio(a.interactive || a.tty)?
    };
    let mut h = engine::exec(&c, &id, &spec, stdio)
        .map_err(hinted)
        .context("exec")?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let code = h.wait(None).map_err(hinted)?.unwrap_or(-1);
    Ok(exit_code(code))
}

/// `exec -t`: the process gets a pty made in the container; we relay it.
fn exec_tty(
    root: &Path,
    c: &Containers,
    id: &str,
    mut spec: ExecSpec,
    a: &ExecArgs,
) -> anyhow::Result<ExitCode> {
    let console = ConsoleSocket::bind(&root.join("run")).map_err(hinted)?;
    spec.console_socket = Some(console.path().to_path_buf());
    let null = std::fs::File::open("/dev/null")?;
    let stdio = Stdio {
        stdin: null.try_clone()?.into(),
        stdout: null.try_clone()?.into(),
        stderr: null.into(),
    };
    let mut h = engine::exec(c, id, &spec, stdio)
        .map_err(hinted)
        .context("exec")?;
    let master = console.receive().map_err(hinted).context("exec")?;
    if let Some(w) = client_size() {
        w.apply(&master).map_err(hinted)?;
    }
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let done = h.pidfd().map_err(hinted)?;
    let input = if a.interactive {
        Some(std::io::stdin().as_fd().try_clone_to_owned()?)
    } else {
        None
    };
    let raw = input
        .as_ref()
        .and_then(|_| RawMode::enable(std::io::stdin()));
    let relayed = keel_runtime::tty::relay(
        &master,
        input.as_ref(),
        &mut std::io::stdout().lock(),
        Some(&done),
    );
    drop(raw);
    relayed.map_err(hinted)?;
    let code = h.wait(None).map_err(hinted)?.unwrap_or(-1);
    Ok(exit_code(code))
}

pub fn wait(root: &Path, a: ContainersArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let mut last = ExitCode::SUCCESS;
    for n in &a.containers {
        let id = resolve(&c, n)?;
        loop {
            let st = c.state(&id).map_err(hinted)?;
            if !keel_runtime::record::monitor_alive(&st, &id) {
                break;
            }
            engine::wait_monitor(&id, &st, None);
        }
        // A --rm container is gone by now; its exit code went with it.
        let code = c.state(&id).map_or(0, |s| s.exit_code);
        println!("{code}");
        last = ExitCode::SUCCESS;
    }
    Ok(last)
}

/// Docker-shaped inspect object.
fn inspect_json(c: &Containers, id: &str) -> anyhow::Result<Value> {
    let cfg = c.config(id).map_err(hinted)?;
    let st = c.state(id).map_err(hinted)?;
    let status = engine::effective_status(c, id);
    let running = status == Status::Running;
    let ts = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )
    };
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            let (ty, src) = match m.kind {
                MountKind::Bind => ("bind", m.source.clone()),
                MountKind::Volume => (
                    "volume",
                    c.root()
                        .join("volumes")
                        .join(&m.source)
                        .join("_data")
                        .display()
                        .to_string(),
                ),
                MountKind::Tmpfs => ("tmpfs", String::new()),
            };
            json!({"Type": ty, "Name": if m.kind == MountKind::Volume { m.source.clone() } else { String::new() },
                   "Source": src, "Destination": m.target, "RW": !m.read_only})
        })
        .collect();
    let mut ports = serde_json::Map::new();
    let bound = st
        .network
        .as_ref()
        .map_or_else(|| cfg.ports.clone(), |n| n.ports.clone());
    for p in &bound {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(arr) = entry.as_array_mut() {
            arr.push(json!({"HostIp": p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), "HostPort": p.host_port.to_string()}));
        }
    }
    let health = st.health.as_ref().map(|h| {
        json!({"Status": h.status, "FailingStreak": h.failing_streak,
               "Log": h.log.iter().map(|p| json!({"Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output})).collect::<Vec<_>>()})
    });
    let mut state = json!({
        "Status": status.as_str(), "Running": running, "Paused": false,
        "Restarting": status == Status::Restarting, "OOMKilled": st.oom_killed, "Dead": false,
        "Pid": if running { st.pid } else { 0 }, "ExitCode": st.exit_code, "Error": st.error,
        "StartedAt": ts(st.started_at), "FinishedAt": ts(st.finished_at),
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let net = st.network.clone().unwrap_or_default();
    Ok(json!({
        "Id": cfg.id,
        "Created": cfg.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Path": cfg.path,
        "Args": cfg.args,
        "State": state,
        "Image": cfg.image_id,
        "ResolvConfPath": c.dir(id).join("resolv.conf"),
        "HostnamePath": c.dir(id).join("hostname"),
        "HostsPath": c.dir(id).join("hosts"),
        "LogPath": c.log_path(id),
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": cfg.network,
            "RestartPolicy": {"Name": cfg.restart.name(), "MaximumRetryCount": match cfg.restart { RestartPolicy::OnFailure { max } => max, _ => 0 }},
            "AutoRemove": cfg.auto_remove,
            "Runtime": cfg.runtime,
            "CapAdd": cfg.cap_add, "CapDrop": cfg.cap_drop,
            "ReadonlyRootfs": cfg.read_only,
            "Memory": cfg.memory.unwrap_or(0),
            "NanoCpus": cfg.nano_cpus.unwrap_or(0),
            "PidsLimit": cfg.pids_limit,
            "MemorySwap": cfg.extra.memory_swap.or(cfg.memory.map(|m| m * 2)).unwrap_or(0),
            "ShmSize": cfg.extra.shm_size.unwrap_or(64 << 20),
            "Ulimits": cfg.extra.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "Sysctls": cfg.extra.sysctls,
            "Init": cfg.extra.init,
            "PortBindings": ports.clone(),
            "PublishAllPorts": cfg.publish_all,
        },
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": cfg.lowerdirs.iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
            "UpperDir": c.dir(id).join("upper"), "WorkDir": c.dir(id).join("work"), "MergedDir": c.rootfs(id)}},
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname, "User": cfg.user, "Env": cfg.env,
            "Cmd": cfg.cmd, "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Image": cfg.image, "WorkingDir": cfg.working_dir, "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal, "StopTimeout": cfg.stop_timeout,
            "OpenStdin": cfg.interactive, "Tty": cfg.tty,
            "Healthcheck": cfg.healthcheck.as_ref().map(|h| json!({"Test": h.test, "Interval": h.interval_ms * 1_000_000, "Timeout": h.timeout_ms * 1_000_000, "Retries": h.retries, "StartPeriod": h.start_period_ms * 1_000_000})),
        },
        "NetworkSettings": {
            "Ports": ports,
            "IPAddress": net.ip, "IPPrefixLen": net.prefix_len, "Gateway": net.gateway, "MacAddress": net.mac,
            "SandboxKey": if cfg.network == "host" { String::new() } else { c.netns_path(id).display().to_string() },
            "Networks": inspect_networks(&cfg, &st),
        },
    }))
}

/// `NetworkSettings.Networks` like Docker's: every network of the
/// container, with addresses while it is connected.
fn inspect_networks(cfg: &ContainerConfig, st: &ContainerState) -> Value {
    let mut out = serde_json::Map::new();
    if !matches!(
        keel_runtime::network::Mode::parse(&cfg.network),
        keel_runtime::network::Mode::Network(_) | keel_runtime::network::Mode::None
    ) {
        let mode = cfg.network.split(':').next().unwrap_or_default();
        out.insert(
            mode.to_string(),
            json!({"Aliases": Value::Null, "IPAddress": "", "Gateway": "", "MacAddress": ""}),
        );
        return Value::Object(out);
    }
    let wanted = std::iter::once((&cfg.network, &cfg.network_aliases, &cfg.networking.ip)).chain(
        cfg.networking
            .extra_networks
            .iter()
            .map(|e| (&e.network, &e.aliases, &e.ip)),
    );
    for (name, aliases, ip) in wanted {
        let live = st.endpoints.iter().find(|e| &e.network == name);
        out.insert(
            name.clone(),
            json!({
                "IPAMConfig": ip.as_ref().map(|ip| json!({"IPv4Address": ip})),
                "Aliases": aliases,
                "NetworkID": live.map(|e| e.network_id.clone()).unwrap_or_default(),
                "EndpointID": live.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
                "Gateway": live.map(|e| e.gateway.clone()).unwrap_or_default(),
                "IPAddress": live.map(|e| e.ip.clone()).unwrap_or_default(),
                "IPPrefixLen": live.map_or(0, |e| e.prefix_len),
                "MacAddress": live.map(|e| e.mac.clone()).unwrap_or_default(),
                "InterfaceName": live.map(|e| e.ifname.clone()).unwrap_or_default(),
            }),
        );
    }
    // Connected live but not (or no longer) in the config, say mid-disconnect.
    for e in &st.endpoints {
        if !out.contains_key(&e.network) {
            out.insert(e.network.clone(), json!({"Aliases": e.aliases, "NetworkID": e.network_id, "EndpointID": e.endpoint_id, "Gateway": e.gateway, "IPAddress": e.ip, "IPPrefixLen": e.prefix_len, "MacAddress": e.mac, "InterfaceName": e.ifname}));
        }
    }
    Value::Object(out)
}

/// `keel inspect`: containers by name or ID first, then images.
pub fn inspect_any(root: &Path, a: crate::image::InspectArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let mut found = Vec::new();
    let mut images = Vec::new();
    for n in &a.images {
        match c.resolve(n) {
            Ok(id) => found.push(inspect_json(&c, &id)?),
            Err(_) => images.push(n.clone()),
        }
    }
    if found.is_empty() {
        return crate::image::inspect(root, a);
    }
    let f = if a.output == Format::Table {
        Format::Json
    } else {
        a.output
    };
    print_structured(&found, f)?;
    if !images.is_empty() {
        return crate::image::inspect(
            root,
            crate::image::InspectArgs {
                output: a.output,
                images,
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn port(root: &Path, a: PortArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let st = c.state(&id).map_err(hinted)?;
    let ports = st.network.map_or(cfg.ports, |n| n.ports);
    let want = a.port.as_deref().map(|p| {
        let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (n.to_string(), proto.to_string())
    });
    let mut any = false;
    for p in &ports {
        if let Some((n, proto)) = &want {
            if p.container_port.to_string() != *n || p.protocol != *proto {
                continue;
            }
            println!(
                "{}:{}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port
            );
        } else {
            println!(
                "{}/{} -> {}:{}",
                p.container_port,
                p.protocol,
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port
            );
        }
        any = true;
    }
    if !any && let Some(p) = &a.port {
        bail!("no public port '{p}' published for {}", a.container);
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::cast_precision_loss)] // percentages for display
pub fn stats_cmd(root: &Path, a: StatsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let ids: Vec<String> = if a.containers.is_empty() {
        c.ids()
            .map_err(hinted)?
            .into_iter()
            .filter(|id| a.all || engine::effective_status(&c, id) == Status::Running)
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| resolve(&c, n))
            .collect::<anyhow::Result<_>>()?
    };
    loop {
        let first: Vec<Option<stats::Sample>> = ids.iter().map(|id| stats::sample(id)).collect();
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let wall = t0.elapsed().as_nanos() as f64;
        let mut rows = Vec::new();
        let mut objs = Vec::new();
        for (id, s0) in ids.iter().zip(first) {
            let name = c.config(id).map(|x| x.name).unwrap_or_default();
            let s1 = stats::sample(id);
            let (cpu, s1) = match (s0, s1) {
                (Some(a0), Some(a1)) => (
                    a1.cpu_ns.saturating_sub(a0.cpu_ns) as f64 / wall * 100.0,
                    a1,
                ),
                _ => (0.0, stats::Sample::default()),
            };
            let (mem, lim, pids) = (s1.memory_usage, s1.memory_limit, s1.pids);
            let net_io = format!("{} / {}", human_size(s1.net_rx), human_size(s1.net_tx));
            let block_io = format!(
                "{} / {}",
                human_size(s1.block_read),
                human_size(s1.block_write)
            );
            let mem_pct = if lim > 0 {
                mem as f64 / lim as f64 * 100.0
            } else {
                0.0
            };
            objs.push(json!({"ID": ids::short(id), "Name": name, "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", human_size(mem), human_size(lim)), "MemPerc": format!("{mem_pct:.2}%"),
                "MemUsageBytes": mem, "MemLimitBytes": lim, "CPUPercent": cpu, "PIDs": pids,
                "NetIO": net_io, "BlockIO": block_io, "NetRxBytes": s1.net_rx, "NetTxBytes": s1.net_tx,
                "BlockReadBytes": s1.block_read, "BlockWriteBytes": s1.block_write}));
            rows.push(vec![
                ids::short(id).to_string(),
                name,
                format!("{cpu:.2}%"),
                format!("{} / {}", human_size(mem), human_size(lim)),
                format!("{mem_pct:.2}%"),
                net_io,
                block_io,
                pids.to_string(),
            ]);
        }
        if a.output == Format::Table {
            if !a.no_stream && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            print!(
                "{}",
                table(
                    &[
                        "CONTAINER ID",
                        "NAME",
                        "CPU %",
                        "MEM USAGE / LIMIT",
                        "MEM %",
                        "NET I/O",
                        "BLOCK I/O",
                        "PIDS"
                    ],
                    &rows
                )
            );
        } else {
            print_structured(&objs, a.output)?;
        }
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Splits `CONTAINER:PATH`; host paths have no colon before the first slash.
fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// Copies between the host and a container's root with `docker cp`'s rules;
/// `keel_runtime::copy` keeps every container path inside the container.
pub fn cp(root: &Path, a: CpArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let (to_container, ctr, cpath, host) = match (container_path(&a.src), container_path(&a.dest)) {
        (Some((ctr, p)), None) => (false, ctr, p, a.dest.clone()),
        (None, Some((ctr, p))) => (true, ctr, p, a.src.clone()),
        _ => bail!(
            "copying between containers is not supported; exactly one of SRC and DEST must be CONTAINER:PATH"
        ),
    };
    let id = resolve(&c, ctr)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let st = c.state(&id).map_err(hinted)?;
    let running = engine::effective_status(&c, &id) == Status::Running;
    let mut mounted_here = false;
    let root_dir = if running {
        PathBuf::from(format!("/proc/{}/root", st.pid))
    } else {
        let merged = c.rootfs(&id);
        if !keel_runtime::rootfs::is_mounted(&merged) {
            keel_runtime::rootfs::mount_overlay(&c.dir(&id), &cfg.lowerdirs, false)
                .map_err(hinted)?;
            mounted_here = true;
        }
        merged
    };
    let result = (|| -> anyhow::Result<()> {
        use keel_runtime::copy::{Tree, copy};
        let inside = Tree::container(&root_dir).map_err(hinted)?;
        let host_tree = Tree::host().map_err(hinted)?;
        let r = if to_container {
            copy(&host_tree, &host, &inside, cpath)
        } else {
            copy(&inside, cpath, &host_tree, &host)
        };
        r.map_err(hinted)
    })();
    if mounted_here {
        let _ = keel_runtime::rootfs::unmount_if_mounted(&c.rootfs(&id));
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

pub fn volume(root: &Path, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    let vols = Volumes::open(root).map_err(hinted)?;
    let c = open(root)?;
    let vjson = |v: &keel_runtime::Volume| {
        json!({"CreatedAt": v.created.to_rfc3339(), "Driver": "local", "Labels": v.labels,
               "Mountpoint": v.mountpoint, "Name": v.name, "Options": {}, "Scope": "local"})
    };
    match cmd {
        VolumeCommand::Create(a) => {
            let name = a.name.unwrap_or_else(ids::new_id);
            let labels = a.label.iter().map(|l| kv(l)).collect();
            let v = vols.create(&name, labels, false).map_err(hinted)?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls(a) => {
            let list = vols.list().map_err(hinted)?;
            if a.quiet {
                for v in &list {
                    println!("{}", v.name);
                }
            } else if a.output == Format::Table {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| vec!["local".to_string(), v.name.clone()])
                    .collect();
                print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
            } else {
                print_structured(&list.iter().map(vjson).collect::<Vec<_>>(), a.output)?;
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.names {
                out.push(vjson(&vols.get(n).map_err(hinted)?));
            }
            print_structured(&out, Format::Json)?;
        }
        VolumeCommand::Rm(a) => {
            return each(&a.names, |n| vols.remove(&c, n, a.force).map_err(hinted));
        }
        VolumeCommand::Prune(a) => {
            let removed = vols.prune(&c, a.all).map_err(hinted)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {} volumes", removed.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keel rmi` refuses images that containers use, with Docker's message.
pub fn check_image_unused(root: &Path, names: &[String], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let store = keel_oci::ImageStore::open(root)?;
    let c = open(root)?;
    for n in names {
        let Ok(img) = store.resolve(n) else { continue };
        let iid = img.id().to_string();
        for id in c.ids().map_err(hinted)? {
            if c.config(&id).is_ok_and(|cfg| cfg.image_id == iid) {
                return Err(anyhow::Error::new(Hint::new(format!(
                    "remove the container first: keel rm {}",
                    ids::short(&id)
                )))
                .context(format!(
                    "conflict: unable to remove repository reference \"{n}\" (must force) - container {} is using its referenced image {}",
                    ids::short(&id),
                    &iid.trim_start_matches("sha256:")[..12]
                )));
            }
        }
    }
    Ok(())
}

/// The hidden `__monitor` command (see `keel_runtime::monitor`).
pub fn monitor(root: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let net = network_attacher(root);
    let code = keel_runtime::monitor::run(root, id, net.as_ref()).map_err(hinted)?;
    Ok(exit_code(code.max(0)))
}

/// The monitor in a forked client (`keel_runtime::launch`): what
/// `__monitor` does, with the window size handed over directly.
fn monitor_in_process(root: &Path, id: &str, win: Option<WinSize>) -> i32 {
    let net = network_attacher(root);
    match keel_runtime::monitor::run_sized(root, id, net.as_ref(), win) {
        Ok(code) => code.max(0),
        Err(e) => {
            eprintln!("{}", crate::render_error(&hinted(e)));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
        assert_eq!(parse_duration_ms("200ms").unwrap(), 200);
        assert_eq!(parse_duration_ms("1m30s").unwrap(), 90_000);
        assert!(parse_duration_ms("30").is_err());
        assert!(parse_duration_ms("3x").is_err());
    }

    #[test]
    fn volume_and_mount_specs() {
        let v = parse_volume("data:/data:ro").unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str(), v.read_only),
            (MountKind::Volume, "data", "/data", true)
        );
        let a = parse_volume("/scratch").unwrap();
        assert!(a.anonymous && a.source.len() == 64);
        assert!(parse_volume("a:b:c:d").is_err());
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("data:/x:bogus").is_err());
        assert!(parse_volume("bad name:/x").is_err());
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert_eq!(m.kind, MountKind::Tmpfs);
        assert_eq!(m.options, vec![format!("size={}", 1 << 20)]);
        let b = parse_mount("type=bind,src=/tmp,dst=/h,readonly").unwrap();
        assert!(b.read_only && b.source == "/tmp");
        assert!(parse_mount("type=bind,target=/x").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("source=x").is_err());
        assert_eq!(
            container_path("c1:/etc/passwd"),
            Some(("c1", "/etc/passwd"))
        );
        assert_eq!(container_path("/tmp/a:b"), None);
    }

    proptest! {
        #[test]
        fn flag_parsers_never_panic(s in ".{0,40}") {
            let _ = parse_bytes(&s);
            let _ = parse_duration_ms(&s);
            let _ = parse_mount(&s);
            let _ = parse_since(&s);
            let _ = container_path(&s);
        }
    }
}
