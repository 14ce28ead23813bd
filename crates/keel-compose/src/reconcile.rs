//! The project reconciler: brings the containers, networks and volumes of a
//! project in line with its [`Model`](crate::model::Model), the way docker compose v2 does. All
//! effects go through the [`Engine`] trait (implemented by keel-cli on
//! keel-runtime and keel-net), so the planning — what to create, recreate,
//! leave alone or remove, in which order, waiting for which condition — is
//! tested here with a fake engine.
//!
//! Containers are found again by their labels (`com.docker.compose.*`); a
//! container whose `config-hash` label differs from the service's current hash
//! (or whose image changed) is recreated, everything else is left alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::Build;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
/// `dep:condition:restart,…` as docker compose writes it: lets commands
/// that only know the project name (`down -p NAME`) keep the start order.
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// What failed while reconciling; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine refused an effect (`what` names it, e.g. `creating container p-web-1`).
    #[error("{what}: {source}")]
    Engine {
        what: String,
        #[source]
        source: EngineError,
    },
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("network {name} declared as external, but could not be found")]
    ExternalNetwork { name: String },
    #[error("volume {name} declared as external, but could not be found")]
    ExternalVolume { name: String },
    #[error("service {service}: {message}")]
    Invalid { service: String, message: String },
    /// A dependency did not reach its condition: `up` stops here.
    #[error("dependency failed to start: service {dependency} (needed by {service}): {reason}")]
    Dependency {
        service: String,
        dependency: String,
        reason: String,
    },
    /// `up --wait`: a service failed to become ready.
    #[error("service {service} is not ready: {reason}")]
    Wait { service: String, reason: String },
    /// `up --wait`: the deadline passed first (docker compose's words, then who).
    #[error("application not healthy after {secs}s: service {service}: {reason}")]
    WaitTimeout {
        secs: u64,
        service: String,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, ReconcileError>;

fn engine_err(what: impl Into<String>) -> impl FnOnce(EngineError) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Engine { what, source }
}

/// An effect the [`Engine`] could not carry out: the engine's one-line
/// message, its typed cause (reachable through `source()` for callers that
/// match on it) and what the user can do about it, carried to the front-end
/// that prints hints.
#[derive(Debug)]
pub struct EngineError {
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    pub fn new(message: impl Into<String>) -> Self {
        EngineError {
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// Keeps the engine's own error as the cause.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    #[must_use]
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for EngineError {
    fn from(message: String) -> Self {
        EngineError::new(message)
    }
}

impl From<&str> for EngineError {
    fn from(message: &str) -> Self {
        EngineError::new(message)
    }
}

/// What an [`Engine`] call returns.
pub type EngineResult<T> = std::result::Result<T, EngineError>;

/// A container's health as its healthcheck reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A container of the project as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    pub oneoff: bool,
    pub config_hash: String,
    pub image: String,
    pub image_id: String,
    /// `created`, `running`, `restarting`, `exited`.
    pub status: String,
    pub exit_code: i32,
    pub health: Option<Health>,
    pub labels: BTreeMap<String, String>,
}

impl Container {
    pub fn running(&self) -> bool {
        self.status == "running" || self.status == "restarting"
    }
}

/// How a mount is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// One more network for a container: full name, aliases, static address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkReq {
    pub name: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountReq {
    pub kind: MountKind,
    /// Host path (bind), full volume name (volume; empty: anonymous), empty (tmpfs).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Create a missing bind source directory (compose's default for short syntax).
    pub create_host_path: bool,
    /// tmpfs options (`size=65536k`, `mode=1777`); `nocopy` for volumes.
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReq {
    pub host_ip: Option<String>,
    /// 0: any free port.
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReq {
    /// `["CMD-SHELL", "..."]` or `["CMD", ...]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// Everything the engine needs to create one container of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub service: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `host`, `none`, `container:NAME` or the full name of the first
    /// (primary) network to join.
    pub network: String,
    pub aliases: Vec<String>,
    /// A static address on the primary network.
    pub ipv4_address: Option<String>,
    /// The service's further networks, in docker compose's order.
    pub extra_networks: Vec<NetworkReq>,
    /// `NAME=IP` (compose's normalized form).
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub hostname: Option<String>,
    pub ports: Vec<PortReq>,
    pub mounts: Vec<MountReq>,
    /// Docker's restart policy syntax (`no`, `always`, `on-failure:3`, …).
    pub restart: String,
    pub healthcheck: Option<HealthReq>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub interactive: bool,
    pub tty: bool,
    pub resources: Resources,
    /// `init: true`: docker-init as PID 1.
    pub init: bool,
    /// `logging.driver`.
    pub log_driver: Option<String>,
    /// `logging.options` as `--log-opt` values (`max-size=10m`).
    pub log_opts: Vec<String>,
}

mod lifecycle;
mod resources;
mod spec;
mod up;

pub use resources::{Resources, UNSUPPORTED_KEYS};
pub use spec::ProjectSpec;

/// The effects the reconciler needs; failures are [`EngineError`]s.
pub trait Engine {
    /// Every container labelled with `project`, one-off ones included.
    fn containers(&self, project: &str) -> EngineResult<Vec<Container>>;
    fn container(&self, id: &str) -> EngineResult<Container>;
    /// The image's ID if it is present locally.
    fn image_id(&self, image: &str) -> EngineResult<Option<String>>;
    fn pull(&self, image: &str) -> EngineResult<()>;
    fn build(&self, image: &str, build: &Build) -> EngineResult<()>;
    fn network_exists(&self, name: &str) -> EngineResult<bool>;
    fn create_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> EngineResult<()>;
    fn remove_network(&self, name: &str) -> EngineResult<()>;
    fn volume_exists(&self, name: &str) -> EngineResult<bool>;
    fn create_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> EngineResult<()>;
    fn remove_volume(&self, name: &str) -> EngineResult<()>;
    /// Writes a secret or config that has no file of its own (`content`,
    /// `environment`) somewhere the container can bind-mount it from.
    fn write_project_file(
        &self,
        project: &str,
        name: &str,
        content: &[u8],
    ) -> EngineResult<PathBuf>;
    /// Removes what `write_project_file` wrote for `project`.
    fn remove_project_files(&self, project: &str) -> EngineResult<()>;
    /// Creates the container (not started); returns its ID.
    fn create(&self, spec: &ContainerSpec) -> EngineResult<String>;
    fn start(&self, id: &str) -> EngineResult<()>;
    fn stop(&self, id: &str, timeout: Option<u32>) -> EngineResult<()>;
    /// Stops several containers; engines that can wait for them side by side
    /// override this (the default stops one after the other).
    fn stop_many(&self, ids: &[String], timeout: Option<u32>) -> Vec<EngineResult<()>> {
        ids.iter().map(|id| self.stop(id, timeout)).collect()
    }
    /// Removes a stopped container (`volumes`: its anonymous volumes too).
    fn remove(&self, id: &str, volumes: bool) -> EngineResult<()>;
    fn sleep(&self, d: Duration);
}

/// What happened to what; the CLI prints these like docker compose does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `kind` is `Network`, `Volume`, `Container` or `Image`.
    Progress {
        kind: &'static str,
        name: String,
        status: &'static str,
    },
    Warning(String),
}

fn progress(kind: &'static str, name: &str, status: &'static str) -> Event {
    Event::Progress {
        kind,
        name: name.to_string(),
        status,
    }
}

/// The config hash of one normalized service: what decides recreation.
/// Scaling is left out so that `--scale` never recreates existing replicas.
pub fn config_hash(service: &serde_yaml_ng::Value) -> String {
    let mut v = service.clone();
    if let serde_yaml_ng::Value::Mapping(m) = &mut v {
        m.remove("scale");
        if let Some(serde_yaml_ng::Value::Mapping(d)) = m.get_mut("deploy") {
            d.remove("replicas");
        }
    }
    let text = serde_json::to_string(&v).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Go-style durations as compose writes them: `1m30s`, `500ms`, `2h`, `10`.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    // The loader's Go-duration parser, in whole milliseconds (rounded).
    let ns = crate::normalize::parse_duration(s).filter(|ns| *ns >= 0)?;
    Some(u64::try_from((i128::from(ns) + 500_000) / 1_000_000).unwrap_or(u64::MAX))
}

/// When images are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildPolicy {
    /// Build images that are missing.
    #[default]
    Missing,
    /// `--build`: always build.
    Always,
    /// `--no-build`: never build.
    Never,
}

/// `up`'s options.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Services to bring up (with their dependencies); empty: all.
    pub services: Vec<String>,
    pub scale: BTreeMap<String, u32>,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub build: BuildPolicy,
    /// `up --pull`: overrides every service's `pull_policy`.
    pub pull: Option<String>,
    pub remove_orphans: bool,
    /// Wait for every container to be running/healthy at the end.
    pub wait: bool,
    /// How long a dependency (or `wait`) may take.
    pub timeout: Duration,
    /// Stop timeout when recreating.
    pub stop_timeout: Option<u32>,
    /// Start the containers (false: `create` only).
    pub start: bool,
    /// `--no-deps`: only `services`, without starting or waiting for what
    /// they depend on (compose drops their `depends_on`).
    pub no_deps: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            services: Vec::new(),
            scale: BTreeMap::new(),
            force_recreate: false,
            no_recreate: false,
            build: BuildPolicy::Missing,
            pull: None,
            remove_orphans: false,
            wait: false,
            timeout: Duration::from_mins(2),
            stop_timeout: None,
            start: true,
            no_deps: false,
        }
    }
}

/// `down`'s options.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    pub volumes: bool,
    pub remove_orphans: bool,
    pub timeout: Option<u32>,
    /// `--rmi`: `Some(false)` local (built) images, `Some(true)` all.
    pub rmi: Option<bool>,
}

/// Brings up a project.
pub struct Reconciler<'a> {
    pub project: &'a ProjectSpec,
    pub engine: &'a dyn Engine,
    pub events: &'a mut dyn FnMut(Event),
}

#[cfg(test)]
mod tests;
