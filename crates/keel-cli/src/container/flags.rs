//! The clap flags of the container and volume commands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::output::Format;

/// The container's process, as `keel run`/`create` and `keel compose run`
/// both take it (docker's names and short flags).
#[derive(Debug, Args)]
pub struct ProcessFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to take it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateFlags {
    #[command(flatten)]
    pub process: ProcessFlags,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
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
    /// Mount the volumes of another container (CONTAINER[:ro|rw]).
    #[arg(long, value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight). No `-c` short form here: clap would
    /// take a command's own `-c` after the image (`IMAGE -c 'script'`).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes in which to allow execution (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMS]).
    #[arg(long, value_parser = keel_runtime::record::DeviceMapping::parse)]
    pub device: Vec<keel_runtime::record::DeviceMapping>,
    /// Security options: seccomp=unconfined|PROFILE.json,
    /// no-new-privileges[:true|false], apparmor=unconfined, label=disable.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// IPC mode: private, shareable, none, host, container:NAME.
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace: host or container:NAME.
    #[arg(long)]
    pub pid: Option<String>,
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
    /// Logging driver for the container (json-file).
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options (max-size=SIZE, max-file=N).
    #[arg(long)]
    pub log_opt: Vec<String>,
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
    /// Expose a port or a range of ports (PORT[-LAST][/PROTO]).
    #[arg(long)]
    pub expose: Vec<String>,
    /// Additional groups to join (names of the image's /etc/group or GIDs).
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Write the container ID to this file (which must not exist).
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Read labels from a file of KEY=VALUE lines.
    #[arg(long)]
    pub label_file: Vec<PathBuf>,
    /// Platform of the image: only this host's (linux/ARCH).
    #[arg(long)]
    pub platform: Option<String>,
    /// User namespace: `host` (keel runs containers in the host's user namespace).
    #[arg(long)]
    pub userns: Option<String>,
    /// Pull the image: missing (default), always or never.
    #[arg(long, value_parser = ["missing", "always", "never"])]
    pub pull: Option<String>,
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
    /// Attach to STDIN, STDOUT or STDERR (repeatable; default: all).
    #[arg(short = 'a', long, value_parser = ["stdin", "stdout", "stderr"], ignore_case = true)]
    pub attach: Vec<String>,
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
    /// Filter output: name= (a regular expression), id=, status=, exited=,
    /// health=, label=, ancestor=, network=, volume=, before=, since=.
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the N last created containers (all states).
    #[arg(short = 'n', long)]
    pub last: Option<i64>,
    /// Show the latest created container (all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show the size of each container's writable layer.
    #[arg(short = 's', long)]
    pub size: bool,
    /// Go template, `table TEMPLATE` or `json` (docker's --format).
    #[arg(long)]
    pub format: Option<String>,
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
    /// Show logs before a timestamp (RFC 3339) or relative (e.g. 42s, 5m).
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show the extra attributes given with --log-opt labels=/env=.
    #[arg(long)]
    pub details: bool,
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
    /// Give the command every capability.
    #[arg(long)]
    pub privileged: bool,
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
    /// Go template, `table TEMPLATE` or `json` (docker's --format).
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Always follow a symbolic link given as the source (in the container or on the host).
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// `CONTAINER:SRC_PATH`, a host path, or `-` (a tar archive on stdin).
    pub src: String,
    /// `CONTAINER:DEST_PATH`, a host path, or `-` (a tar archive to stdout).
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
    /// Filter: name=, label=KEY[=VALUE], driver=, dangling=true|false.
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Go template, `table TEMPLATE` or `json` (docker's --format).
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Go template run on each volume (docker's -f/--format).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
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
