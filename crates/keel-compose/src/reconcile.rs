//! The project reconciler: brings the containers, networks and volumes of a
//! project in line with its [`Model`], the way docker compose v2 does. All
//! effects go through the [`Engine`] trait (implemented by keel-cli on
//! keel-runtime and keel-net), so the planning — what to create, recreate,
//! leave alone or remove, in which order, waiting for which condition — is
//! tested here with a fake engine.
//!
//! Containers are found again by their labels (`com.docker.compose.*`); a
//! container whose `config-hash` label differs from the service's current hash
//! (or whose image changed) is recreated, everything else is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::{Build, Model, Service};

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
    #[error("{what}: {detail}")]
    Engine { what: String, detail: String },
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

fn engine_err(what: impl Into<String>) -> impl FnOnce(String) -> ReconcileError {
    let what = what.into();
    move |detail| ReconcileError::Engine { what, detail }
}

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
    /// tmpfs options (`size=65536k`, `mode=1777`).
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
}

/// Resource limits of a container, from the service-level keys and
/// `deploy.resources.limits` (which wins, as in docker compose).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes, -1 unlimited.
    pub memory_swap: Option<i64>,
    /// CPUs in billionths.
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// /dev/shm in bytes.
    pub shm_size: Option<i64>,
    /// `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    pub sysctls: BTreeMap<String, String>,
}

/// Service keys keel cannot apply: `up` warns instead of ignoring them silently.
pub const UNSUPPORTED_KEYS: &[&str] = &[
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "device_cgroup_rules",
    "devices",
    "domainname",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "mem_reservation",
    "mem_swappiness",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "post_start",
    "pre_stop",
    "privileged",
    "runtime",
    "security_opt",
    "storage_opt",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// An integer from a normalized value: a number, digits, or a byte size (`64m`).
fn int_of(v: &serde_yaml_ng::Value) -> Option<i64> {
    match v {
        serde_yaml_ng::Value::Number(n) => n.as_i64(),
        serde_yaml_ng::Value::String(s) => s
            .trim()
            .parse()
            .ok()
            .or_else(|| crate::normalize::parse_bytes(s)),
        _ => None,
    }
}

fn float_of(v: &serde_yaml_ng::Value) -> Option<f64> {
    match v {
        serde_yaml_ng::Value::Number(n) => n.as_f64(),
        serde_yaml_ng::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_of(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

impl Resources {
    /// The limits a service asks for; `invalid` explains a value that is no number.
    fn of(svc: &Service) -> std::result::Result<Self, String> {
        let bad = |key: &str, v: &serde_yaml_ng::Value| format!("invalid {key} {:?}", text_of(v));
        let int = |key: &str,
                   v: &Option<serde_yaml_ng::Value>|
         -> std::result::Result<Option<i64>, String> {
            v.as_ref()
                .map(|v| int_of(v).ok_or_else(|| bad(key, v)))
                .transpose()
        };
        let cpus = |key: &str,
                    v: Option<&serde_yaml_ng::Value>|
         -> std::result::Result<Option<i64>, String> {
            v.map(|v| {
                float_of(v)
                    .filter(|c| *c >= 0.0)
                    .map(|c| (c * 1e9).round() as i64)
                    .ok_or_else(|| bad(key, v))
            })
            .transpose()
        };
        let mut r = Resources {
            memory: int("mem_limit", &svc.mem_limit)?,
            memory_swap: int("memswap_limit", &svc.memswap_limit)?,
            nano_cpus: cpus("cpus", svc.cpus.as_ref())?,
            pids_limit: int("pids_limit", &svc.pids_limit)?,
            shm_size: int("shm_size", &svc.shm_size)?,
            ulimits: Vec::new(),
            sysctls: svc
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(text_of).unwrap_or_default()))
                .collect(),
        };
        let limits = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.get("limits"));
        if let Some(l) = limits {
            if let Some(m) = int("deploy.resources.limits.memory", &l.get("memory").cloned())? {
                r.memory = Some(m);
            }
            if let Some(c) = cpus("deploy.resources.limits.cpus", l.get("cpus"))? {
                r.nano_cpus = Some(c);
            }
            if let Some(p) = int("deploy.resources.limits.pids", &l.get("pids").cloned())? {
                r.pids_limit = Some(p);
            }
        }
        // 0 and -1 mean "no limit" to docker.
        r.pids_limit = r.pids_limit.filter(|p| *p > 0);
        r.nano_cpus = r.nano_cpus.filter(|c| *c > 0);
        for (name, v) in &svc.ulimits {
            let (soft, hard) = match v {
                serde_yaml_ng::Value::Mapping(_) => {
                    let get = |k: &str| v.get(k).and_then(int_of);
                    match (get("soft"), get("hard")) {
                        (Some(s), Some(h)) => (s, h),
                        _ => return Err(format!("ulimits.{name} needs soft and hard")),
                    }
                }
                other => {
                    let n = int_of(other).ok_or_else(|| bad(&format!("ulimits.{name}"), other))?;
                    (n, n)
                }
            };
            r.ulimits.push((name.clone(), soft, hard));
        }
        Ok(r)
    }
}

/// The effects the reconciler needs; errors are one-line descriptions.
pub trait Engine {
    /// Every container labelled with `project`, one-off ones included.
    fn containers(&self, project: &str) -> std::result::Result<Vec<Container>, String>;
    fn container(&self, id: &str) -> std::result::Result<Container, String>;
    /// The image's ID if it is present locally.
    fn image_id(&self, image: &str) -> std::result::Result<Option<String>, String>;
    fn pull(&self, image: &str) -> std::result::Result<(), String>;
    fn build(&self, image: &str, build: &Build) -> std::result::Result<(), String>;
    fn network_exists(&self, name: &str) -> std::result::Result<bool, String>;
    fn create_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> std::result::Result<(), String>;
    fn remove_network(&self, name: &str) -> std::result::Result<(), String>;
    fn volume_exists(&self, name: &str) -> std::result::Result<bool, String>;
    fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> std::result::Result<(), String>;
    fn remove_volume(&self, name: &str) -> std::result::Result<(), String>;
    /// Writes a secret or config that has no file of its own (`content`,
    /// `environment`) somewhere the container can bind-mount it from.
    fn write_project_file(
        &self,
        project: &str,
        name: &str,
        content: &[u8],
    ) -> std::result::Result<PathBuf, String>;
    /// Removes what `write_project_file` wrote for `project`.
    fn remove_project_files(&self, project: &str) -> std::result::Result<(), String>;
    /// Creates the container (not started); returns its ID.
    fn create(&self, spec: &ContainerSpec) -> std::result::Result<String, String>;
    fn start(&self, id: &str) -> std::result::Result<(), String>;
    fn stop(&self, id: &str, timeout: Option<u32>) -> std::result::Result<(), String>;
    /// Stops several containers; engines that can wait for them side by side
    /// override this (the default stops one after the other).
    fn stop_many(
        &self,
        ids: &[String],
        timeout: Option<u32>,
    ) -> Vec<std::result::Result<(), String>> {
        ids.iter().map(|id| self.stop(id, timeout)).collect()
    }
    /// Removes a stopped container (`volumes`: its anonymous volumes too).
    fn remove(&self, id: &str, volumes: bool) -> std::result::Result<(), String>;
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

/// A loaded project ready to reconcile: the typed model plus what the typed
/// model does not carry.
#[derive(Debug, Clone)]
pub struct ProjectSpec {
    pub model: Model,
    /// Config hash per service.
    pub hashes: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    pub config_files: Vec<PathBuf>,
    /// Variables for `environment:`-sourced secrets and configs.
    pub environment: BTreeMap<String, String>,
    /// Services left out by profiles: not orphans.
    pub disabled: Vec<String>,
    /// The keys each service sets (normalized), for warnings about the
    /// ones the typed model does not carry.
    pub raw_keys: BTreeMap<String, Vec<String>>,
}

impl ProjectSpec {
    pub fn from_project(p: &crate::Project) -> std::result::Result<Self, crate::Error> {
        let model = p.model()?;
        let value = p.to_value();
        let mut hashes = BTreeMap::new();
        let mut raw_keys = BTreeMap::new();
        if let Some(serde_yaml_ng::Value::Mapping(services)) = value.get("services") {
            for (k, v) in services {
                if let Some(name) = k.as_str() {
                    hashes.insert(name.to_string(), config_hash(v));
                    if let serde_yaml_ng::Value::Mapping(m) = v {
                        raw_keys.insert(
                            name.to_string(),
                            m.keys()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(ProjectSpec {
            model,
            hashes,
            working_dir: p.working_dir.clone(),
            config_files: p.files.clone(),
            environment: p.environment.clone(),
            disabled: p.disabled.clone(),
            raw_keys,
        })
    }

    /// A project known only by its name and what carries its labels, for the
    /// commands docker compose runs without a compose file (`down -p NAME`,
    /// `ps`, `logs`, `stop`, …). `networks` and `volumes` are the project's
    /// `(key, full name)` pairs; services, their start order and images come
    /// from the containers' labels.
    pub fn from_labels(
        name: &str,
        containers: &[Container],
        networks: &[(String, String)],
        volumes: &[(String, String)],
    ) -> Self {
        let mut model = Model {
            name: name.to_string(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        let mut hashes = BTreeMap::new();
        let (mut working_dir, mut config_files) = (PathBuf::new(), Vec::new());
        for c in containers
            .iter()
            .filter(|c| !c.oneoff && !c.service.is_empty())
        {
            let svc = model.services.entry(c.service.clone()).or_default();
            // An image named like compose's default was built by the project.
            if c.image == format!("{name}-{}", c.service) {
                svc.build = Some(Build::default());
            } else {
                svc.image = Some(c.image.clone());
            }
            for d in c
                .labels
                .get(LABEL_DEPENDS_ON)
                .into_iter()
                .flat_map(|l| l.split(','))
            {
                let mut parts = d.splitn(3, ':');
                let Some(dep) = parts.next().filter(|x| !x.is_empty()) else {
                    continue;
                };
                let condition = parts.next().unwrap_or("service_started").to_string();
                let restart = parts.next() == Some("true");
                svc.depends_on.insert(
                    dep.to_string(),
                    crate::model::Dependency {
                        condition,
                        restart,
                        required: true,
                    },
                );
            }
            hashes.insert(c.service.clone(), c.config_hash.clone());
            if let Some(w) = c.labels.get(LABEL_WORKING_DIR) {
                working_dir = PathBuf::from(w);
            }
            if let Some(f) = c.labels.get(LABEL_CONFIG_FILES) {
                config_files = f
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from)
                    .collect();
            }
        }
        // Dependencies whose containers are gone cannot be waited for.
        let known: BTreeSet<String> = model.services.keys().cloned().collect();
        for svc in model.services.values_mut() {
            svc.depends_on.retain(|d, _| known.contains(d));
        }
        for (key, full) in networks {
            model.networks.insert(
                key.clone(),
                crate::model::Network {
                    name: full.clone(),
                    ..Default::default()
                },
            );
        }
        for (key, full) in volumes {
            model.volumes.insert(
                key.clone(),
                crate::model::Volume {
                    name: full.clone(),
                    ..Default::default()
                },
            );
        }
        ProjectSpec {
            model,
            hashes,
            working_dir,
            config_files,
            environment: BTreeMap::new(),
            disabled: Vec::new(),
            raw_keys: BTreeMap::new(),
        }
    }

    fn service(&self, name: &str) -> Result<&Service> {
        self.model
            .services
            .get(name)
            .ok_or_else(|| ReconcileError::NoSuchService(name.to_string()))
    }

    /// The image a service runs: its `image`, or compose's `PROJECT-SERVICE` for builds.
    pub fn image_of(&self, service: &str) -> String {
        self.model
            .services
            .get(service)
            .and_then(|s| s.image.clone())
            .unwrap_or_else(|| format!("{}-{service}", self.model.name))
    }

    /// `services` and everything they depend on, dependencies first; all
    /// services when `services` is empty. The loader has refused cycles.
    pub fn order(&self, services: &[String]) -> Result<Vec<String>> {
        for s in services {
            self.service(s)?;
        }
        let roots: Vec<String> = if services.is_empty() {
            self.model.services.keys().cloned().collect()
        } else {
            services.to_vec()
        };
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &roots {
            self.visit(r, &mut seen, &mut out);
        }
        Ok(out)
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some(svc) = self.model.services.get(name) {
            for dep in svc.depends_on.keys() {
                self.visit(dep, seen, out);
            }
            // `network_mode: service:X` needs X's container first.
            if let Some(dep) = svc
                .network_mode
                .as_deref()
                .and_then(|m| m.strip_prefix("service:"))
            {
                self.visit(dep, seen, out);
            }
            out.push(name.to_string());
        }
    }

    /// How many containers a service wants.
    fn replicas(&self, service: &str, scale: &BTreeMap<String, u32>) -> u32 {
        if let Some(n) = scale.get(service) {
            return *n;
        }
        let svc = &self.model.services[service];
        let n = svc
            .deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(svc.scale)
            .unwrap_or(1);
        u32::try_from(n.max(0)).unwrap_or(u32::MAX)
    }

    /// The container name of replica `number`.
    pub fn container_name(&self, service: &str, number: u32) -> String {
        match self
            .model
            .services
            .get(service)
            .and_then(|s| s.container_name.clone())
        {
            Some(n) => n,
            None => format!("{}-{service}-{number}", self.model.name),
        }
    }

    /// The labels every container of `service` carries.
    fn labels(&self, service: &str, number: u32, oneoff: bool) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        if let Some(svc) = self.model.services.get(service) {
            for (k, v) in &svc.labels {
                l.insert(k.clone(), v.clone().unwrap_or_default());
            }
            if !svc.depends_on.is_empty() {
                let deps: Vec<String> = svc
                    .depends_on
                    .iter()
                    .map(|(d, c)| format!("{d}:{}:{}", c.condition, c.restart))
                    .collect();
                l.insert(LABEL_DEPENDS_ON.into(), deps.join(","));
            }
        }
        l.insert(LABEL_PROJECT.into(), self.model.name.clone());
        l.insert(LABEL_SERVICE.into(), service.to_string());
        l.insert(LABEL_NUMBER.into(), number.to_string());
        l.insert(
            LABEL_HASH.into(),
            self.hashes.get(service).cloned().unwrap_or_default(),
        );
        l.insert(
            LABEL_ONEOFF.into(),
            if oneoff { "True" } else { "False" }.into(),
        );
        l.insert(
            LABEL_WORKING_DIR.into(),
            self.working_dir.display().to_string(),
        );
        l.insert(
            LABEL_CONFIG_FILES.into(),
            self.config_files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        l
    }

    /// A service's networks in docker compose's order: higher `priority`
    /// first, then by name; `default` when it names none.
    fn service_networks(svc: &Service) -> Vec<(&str, Option<&crate::model::ServiceNetwork>)> {
        if svc.networks.is_empty() {
            return vec![("default", None)];
        }
        let mut v: Vec<(&str, Option<&crate::model::ServiceNetwork>)> = svc
            .networks
            .iter()
            .map(|(k, c)| (k.as_str(), c.as_ref()))
            .collect();
        // Stable: equal priorities keep the map's name order.
        v.sort_by_key(|(_, c)| std::cmp::Reverse(c.and_then(|c| c.priority).unwrap_or(0)));
        v
    }

    /// The engine's name of network `key`.
    fn network_name(&self, key: &str) -> String {
        self.model
            .networks
            .get(key)
            .map_or_else(|| format!("{}_{key}", self.model.name), |n| n.name.clone())
    }

    /// The create request for replica `number` of `service`.
    pub fn container_spec(
        &self,
        engine: &dyn Engine,
        service: &str,
        number: u32,
        oneoff: Option<&str>,
    ) -> Result<ContainerSpec> {
        let svc = self.service(service)?;
        let invalid = |message: String| ReconcileError::Invalid {
            service: service.to_string(),
            message,
        };
        let (network, aliases, ipv4_address, extra_networks) = match svc.network_mode.as_deref() {
            Some(m @ ("host" | "none")) => (m.to_string(), Vec::new(), None, Vec::new()),
            Some("bridge") => ("bridge".to_string(), Vec::new(), None, Vec::new()),
            Some(m) if m.starts_with("container:") => (m.to_string(), Vec::new(), None, Vec::new()),
            Some(m) if m.starts_with("service:") => {
                let dep = &m["service:".len()..];
                (
                    format!("container:{}", self.container_name(dep, 1)),
                    Vec::new(),
                    None,
                    Vec::new(),
                )
            }
            Some(m) => {
                return Err(invalid(format!(
                    "network_mode {m:?} is not supported (use host, none, bridge, service:NAME, container:NAME or networks)"
                )));
            }
            None => {
                let mut reqs: Vec<NetworkReq> = Self::service_networks(svc)
                    .into_iter()
                    .map(|(key, cfg)| {
                        let mut aliases = vec![service.to_string()];
                        if let Some(c) = cfg {
                            aliases.extend(c.aliases.iter().cloned());
                        }
                        NetworkReq {
                            name: self.network_name(key),
                            aliases,
                            ipv4_address: cfg.and_then(|c| c.ipv4_address.clone()),
                        }
                    })
                    .collect();
                let first = reqs.remove(0);
                (first.name, first.aliases, first.ipv4_address, reqs)
            }
        };
        let mut ports = Vec::new();
        for p in &svc.ports {
            let host_port = match p.published.as_deref() {
                None | Some("") => 0,
                Some(s) => {
                    let first = s.split('-').next().unwrap_or(s);
                    first
                        .parse::<u16>()
                        .map_err(|_| invalid(format!("invalid published port {s:?}")))?
                }
            };
            ports.push(PortReq {
                host_ip: p.host_ip.clone(),
                host_port,
                container_port: p.target,
                protocol: if p.protocol.is_empty() {
                    "tcp".into()
                } else {
                    p.protocol.clone()
                },
            });
        }
        let mut mounts = Vec::new();
        for m in &svc.volumes {
            let (kind, source) = match m.kind.as_str() {
                "bind" => (MountKind::Bind, m.source.clone().unwrap_or_default()),
                "volume" => match m.source.as_deref() {
                    None | Some("") => (MountKind::Volume, String::new()),
                    Some(key) => (
                        MountKind::Volume,
                        self.model
                            .volumes
                            .get(key)
                            .map_or_else(|| key.to_string(), |v| v.name.clone()),
                    ),
                },
                "tmpfs" => (MountKind::Tmpfs, String::new()),
                other => {
                    return Err(invalid(format!("volume type {other:?} is not supported")));
                }
            };
            let mut options = Vec::new();
            if let Some(t) = &m.tmpfs {
                if let Some(size) = t.get("size").and_then(int_of) {
                    options.push(format!("size={size}"));
                }
                if let Some(mode) = t.get("mode") {
                    // YAML reads 1777 as a decimal number; the kernel wants the digits.
                    options.push(format!("mode={}", text_of(mode)));
                }
            }
            mounts.push(MountReq {
                kind,
                source,
                target: m.target.clone(),
                read_only: m.read_only,
                create_host_path: true,
                options,
            });
        }
        for t in &svc.tmpfs {
            let (target, opts) = t.split_once(':').unwrap_or((t, ""));
            mounts.push(MountReq {
                kind: MountKind::Tmpfs,
                source: String::new(),
                target: target.to_string(),
                read_only: false,
                create_host_path: false,
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
        for (refs, objects, is_secret) in [
            (&svc.secrets, &self.model.secrets, true),
            (&svc.configs, &self.model.configs, false),
        ] {
            for r in refs {
                let obj = objects.get(&r.source).ok_or_else(|| {
                    invalid(format!("undefined {} {:?}", kind_name(is_secret), r.source))
                })?;
                let source = if let Some(f) = &obj.file {
                    f.clone()
                } else {
                    let content = match (&obj.content, &obj.environment) {
                        (Some(c), _) => c.clone(),
                        (None, Some(var)) => self.environment.get(var).cloned().unwrap_or_default(),
                        (None, None) => {
                            return Err(invalid(format!(
                                "{} {:?} has no file, content or environment (external ones need a swarm)",
                                kind_name(is_secret),
                                r.source
                            )));
                        }
                    };
                    let file = format!("{}-{}", kind_name(is_secret), r.source);
                    engine
                        .write_project_file(&self.model.name, &file, content.as_bytes())
                        .map_err(engine_err(format!("writing {file}")))?
                        .display()
                        .to_string()
                };
                let target = match (&r.target, is_secret) {
                    (Some(t), _) if t.starts_with('/') => t.clone(),
                    (Some(t), true) => format!("/run/secrets/{t}"),
                    (Some(t), false) => format!("/{t}"),
                    (None, true) => format!("/run/secrets/{}", r.source),
                    (None, false) => format!("/{}", r.source),
                };
                mounts.push(MountReq {
                    kind: MountKind::Bind,
                    source,
                    target,
                    read_only: true,
                    create_host_path: false,
                    options: Vec::new(),
                });
            }
        }
        let healthcheck = match &svc.healthcheck {
            Some(h) if !h.disable && !h.test.is_empty() && h.test[0] != "NONE" => {
                let ms = |s: &Option<String>, d: u64| -> Result<u64> {
                    s.as_deref().map_or(Ok(d), |s| {
                        parse_duration_ms(s)
                            .ok_or_else(|| invalid(format!("invalid duration {s:?}")))
                    })
                };
                Some(HealthReq {
                    test: h.test.clone(),
                    interval_ms: ms(&h.interval, 30_000)?,
                    timeout_ms: ms(&h.timeout, 30_000)?,
                    retries: h
                        .retries
                        .map_or(3, |r| u32::try_from(r).unwrap_or(u32::MAX)),
                    start_period_ms: ms(&h.start_period, 0)?,
                })
            }
            _ => None,
        };
        let stop_timeout = match &svc.stop_grace_period {
            Some(s) => Some(
                u32::try_from(
                    parse_duration_ms(s)
                        .ok_or_else(|| invalid(format!("invalid stop_grace_period {s:?}")))?
                        / 1000,
                )
                .unwrap_or(u32::MAX),
            ),
            None => None,
        };
        let name = match oneoff {
            Some(suffix) => format!("{}-{service}-run-{suffix}", self.model.name),
            None => self.container_name(service, number),
        };
        Ok(ContainerSpec {
            name,
            service: service.to_string(),
            image: self.image_of(service),
            command: svc.command.clone(),
            entrypoint: svc.entrypoint.clone(),
            env: svc
                .environment
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect(),
            labels: self.labels(service, number, oneoff.is_some()),
            network,
            aliases,
            ipv4_address,
            extra_networks,
            extra_hosts: svc.extra_hosts.clone(),
            dns: svc.dns.clone(),
            dns_search: svc.dns_search.clone(),
            dns_opt: svc.dns_opt.clone(),
            hostname: svc.hostname.clone(),
            ports,
            mounts,
            restart: svc.restart.clone().unwrap_or_else(|| "no".into()),
            healthcheck,
            user: svc.user.clone(),
            working_dir: svc.working_dir.clone(),
            cap_add: svc.cap_add.clone(),
            cap_drop: svc.cap_drop.clone(),
            read_only: svc.read_only,
            stop_signal: svc.stop_signal.clone(),
            stop_timeout,
            interactive: false,
            tty: false,
            resources: Resources::of(svc).map_err(invalid)?,
            init: svc.init.unwrap_or(false),
        })
    }

    /// The keys of `service` that keel cannot apply.
    pub fn unsupported_keys(&self, service: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .raw_keys
            .get(service)
            .into_iter()
            .flatten()
            .filter(|k| UNSUPPORTED_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        let reservations = self
            .model
            .services
            .get(service)
            .and_then(|s| s.deploy.as_ref())
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.get("reservations"))
            .is_some();
        if reservations {
            out.push("deploy.resources.reservations".into());
        }
        out
    }
}

fn kind_name(is_secret: bool) -> &'static str {
    if is_secret { "secret" } else { "config" }
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

impl Reconciler<'_> {
    fn emit(&mut self, e: Event) {
        (self.events)(e);
    }

    fn containers(&self) -> Result<Vec<Container>> {
        self.engine
            .containers(&self.project.model.name)
            .map_err(engine_err("listing containers"))
    }

    /// Containers of services the project no longer has.
    pub fn orphans(&self, all: &[Container]) -> Vec<Container> {
        all.iter()
            .filter(|c| {
                !c.oneoff
                    && !self.project.model.services.contains_key(&c.service)
                    && !self.project.disabled.contains(&c.service)
            })
            .cloned()
            .collect()
    }

    fn report_orphans(&mut self, orphans: &[Container]) {
        if orphans.is_empty() {
            return;
        }
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        self.emit(Event::Warning(format!(
            "Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(" ")
        )));
    }

    fn remove_container(
        &mut self,
        c: &Container,
        timeout: Option<u32>,
        volumes: bool,
    ) -> Result<()> {
        if c.running() {
            self.emit(progress("Container", &c.name, "Stopping"));
            self.engine
                .stop(&c.id, timeout)
                .map_err(engine_err(format!("stopping {}", c.name)))?;
            self.emit(progress("Container", &c.name, "Stopped"));
        }
        self.emit(progress("Container", &c.name, "Removing"));
        self.engine
            .remove(&c.id, volumes)
            .map_err(engine_err(format!("removing {}", c.name)))?;
        self.emit(progress("Container", &c.name, "Removed"));
        Ok(())
    }

    /// Networks the given services join: (key, full name, external, subnet).
    #[allow(clippy::type_complexity)]
    fn networks_for(
        &self,
        services: &[String],
    ) -> Result<Vec<(String, String, bool, Option<String>)>> {
        let mut out: Vec<(String, String, bool, Option<String>)> = Vec::new();
        for s in services {
            let svc = self.project.service(s)?;
            if svc.network_mode.is_some() {
                continue;
            }
            for (key, _) in ProjectSpec::service_networks(svc) {
                let name = self.project.network_name(key);
                let def = self.project.model.networks.get(key);
                let external = def.is_some_and(|n| n.external);
                let subnet = def
                    .and_then(|n| n.ipam.as_ref())
                    .and_then(|i| i.config.iter().find_map(|c| c.subnet.clone()));
                if !out.iter().any(|(_, n, _, _)| *n == name) {
                    out.push((key.to_string(), name, external, subnet));
                }
            }
        }
        Ok(out)
    }

    /// The networks and volumes `services` need (`run --no-deps` needs them
    /// without bringing anything up).
    pub fn ensure_networks_and_volumes(&mut self, services: &[String]) -> Result<()> {
        self.ensure_networks(services)?;
        self.ensure_volumes(services)
    }

    fn ensure_networks(&mut self, services: &[String]) -> Result<()> {
        for (key, name, external, subnet) in self.networks_for(services)? {
            let exists = self
                .engine
                .network_exists(&name)
                .map_err(engine_err(format!("inspecting network {name}")))?;
            if exists {
                continue;
            }
            if external {
                return Err(ReconcileError::ExternalNetwork { name });
            }
            self.emit(progress("Network", &name, "Creating"));
            let labels = BTreeMap::from([
                (LABEL_PROJECT.to_string(), self.project.model.name.clone()),
                (LABEL_NETWORK.to_string(), key),
            ]);
            self.engine
                .create_network(&name, subnet.as_deref(), &labels)
                .map_err(engine_err(format!("creating network {name}")))?;
            self.emit(progress("Network", &name, "Created"));
        }
        Ok(())
    }

    fn ensure_volumes(&mut self, services: &[String]) -> Result<()> {
        let mut keys = BTreeSet::new();
        for s in services {
            for m in &self.project.service(s)?.volumes {
                if m.kind == "volume"
                    && let Some(src) = &m.source
                {
                    keys.insert(src.clone());
                }
            }
        }
        for key in keys {
            let Some(v) = self.project.model.volumes.get(&key) else {
                continue;
            };
            let exists = self
                .engine
                .volume_exists(&v.name)
                .map_err(engine_err(format!("inspecting volume {}", v.name)))?;
            if exists {
                continue;
            }
            if v.external {
                return Err(ReconcileError::ExternalVolume {
                    name: v.name.clone(),
                });
            }
            self.emit(progress("Volume", &v.name, "Creating"));
            let labels = BTreeMap::from([
                (LABEL_PROJECT.to_string(), self.project.model.name.clone()),
                (LABEL_VOLUME.to_string(), key.clone()),
            ]);
            self.engine
                .create_volume(&v.name, &labels)
                .map_err(engine_err(format!("creating volume {}", v.name)))?;
            self.emit(progress("Volume", &v.name, "Created"));
        }
        Ok(())
    }

    /// Pulls and builds what the services need, the way docker compose does:
    /// a service with an `image` is pulled per its `pull_policy` (or `pull`,
    /// `up --pull`'s override; default `missing`), a failed pull of a service
    /// that can be built is built instead; a `build` runs when the image is
    /// missing, with `pull_policy: build`, and always under `BuildPolicy::Always`.
    pub fn ensure_images(
        &mut self,
        services: &[String],
        policy: BuildPolicy,
        pull: Option<&str>,
    ) -> Result<()> {
        let mut done = BTreeSet::new();
        for s in services {
            let svc = self.project.service(s)?.clone();
            let image = self.project.image_of(s);
            if !done.insert(image.clone()) {
                continue;
            }
            let mut present = self
                .engine
                .image_id(&image)
                .map_err(engine_err(format!("inspecting image {image}")))?
                .is_some();
            let build = svc.build.as_ref().filter(|_| policy != BuildPolicy::Never);
            let pull_policy = if policy == BuildPolicy::Always && build.is_some() {
                "build"
            } else {
                pull.or(svc.pull_policy.as_deref()).unwrap_or("missing")
            };
            if svc.image.is_some() {
                // `daily`, `weekly` and `every_*` pull when missing too: keel
                // keeps no pull dates.
                let want = match pull_policy {
                    "always" => true,
                    "never" | "build" => false,
                    _ => !present,
                };
                if want {
                    self.emit(progress("Image", &image, "Pulling"));
                    match self.engine.pull(&image) {
                        Ok(()) => {
                            self.emit(progress("Image", &image, "Pulled"));
                            present = true;
                        }
                        Err(e) if build.is_some() => self.emit(Event::Warning(format!(
                            "pulling {image} for service {s} failed, building it instead: {e}"
                        ))),
                        Err(e) => {
                            return Err(engine_err(format!("pulling image for service {s}"))(e));
                        }
                    }
                }
            }
            if let Some(b) = build {
                if !present || pull_policy == "build" {
                    self.emit(progress("Image", &image, "Building"));
                    self.engine
                        .build(&image, b)
                        .map_err(engine_err(format!("building service {s}")))?;
                    self.emit(progress("Image", &image, "Built"));
                }
            } else if !present {
                let why = if svc.build.is_some() {
                    "--no-build forbids building it".to_string()
                } else if svc.image.is_none() {
                    "the service has neither image nor build".to_string()
                } else {
                    format!("pull_policy is {pull_policy}")
                };
                return Err(ReconcileError::Invalid {
                    service: s.clone(),
                    message: format!("no such image {image}: it is not present locally and {why}"),
                });
            }
        }
        Ok(())
    }

    fn create_and_start(&mut self, service: &str, number: u32, start: bool) -> Result<String> {
        let spec = self
            .project
            .container_spec(self.engine, service, number, None)?;
        self.emit(progress("Container", &spec.name, "Creating"));
        let id = self
            .engine
            .create(&spec)
            .map_err(engine_err(format!("creating container {}", spec.name)))?;
        self.emit(progress("Container", &spec.name, "Created"));
        if start {
            self.start_one(&id, &spec.name)?;
        }
        Ok(id)
    }

    fn start_one(&mut self, id: &str, name: &str) -> Result<()> {
        self.emit(progress("Container", name, "Starting"));
        self.engine
            .start(id)
            .map_err(engine_err(format!("starting container {name}")))?;
        self.emit(progress("Container", name, "Started"));
        Ok(())
    }

    /// Waits until `dep`'s containers meet `condition`.
    fn wait_dependency(
        &mut self,
        service: &str,
        dep: &str,
        condition: &str,
        timeout: Duration,
    ) -> Result<()> {
        let fail = |reason: String| ReconcileError::Dependency {
            service: service.to_string(),
            dependency: dep.to_string(),
            reason,
        };
        if condition == "service_healthy"
            && self
                .project
                .model
                .services
                .get(dep)
                .and_then(|s| s.healthcheck.as_ref())
                .is_none_or(|h| h.disable || h.test.first().is_some_and(|t| t == "NONE"))
        {
            return Err(fail("it has no healthcheck configured".into()));
        }
        if condition != "service_healthy" && condition != "service_completed_successfully" {
            return Ok(());
        }
        let ids: Vec<(String, String)> = self
            .containers()?
            .into_iter()
            .filter(|c| c.service == dep && !c.oneoff)
            .map(|c| (c.id, c.name))
            .collect();
        for (id, name) in ids {
            self.emit(progress("Container", &name, "Waiting"));
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            loop {
                let c = self
                    .engine
                    .container(&id)
                    .map_err(engine_err(format!("inspecting {name}")))?;
                let done = if condition == "service_healthy" {
                    match (c.running(), c.health) {
                        (_, Some(Health::Healthy)) if c.running() => true,
                        (_, Some(Health::Unhealthy)) => {
                            return Err(fail(format!("container {name} is unhealthy")));
                        }
                        (false, _) if c.status == "exited" => {
                            return Err(fail(format!("container {name} exited ({})", c.exit_code)));
                        }
                        _ => false,
                    }
                } else if c.status == "exited" {
                    if c.exit_code != 0 {
                        return Err(fail(format!(
                            "container {name} didn't complete successfully: exit {}",
                            c.exit_code
                        )));
                    }
                    true
                } else {
                    false
                };
                if done {
                    let st = if condition == "service_healthy" {
                        "Healthy"
                    } else {
                        "Exited"
                    };
                    self.emit(progress("Container", &name, st));
                    break;
                }
                if waited >= timeout {
                    return Err(fail(format!(
                        "timed out after {}s waiting for {name} ({})",
                        timeout.as_secs(),
                        condition
                    )));
                }
                self.engine.sleep(step);
                waited += step;
            }
        }
        Ok(())
    }

    /// `up`: creates, recreates, starts and scales so the project matches its model.
    pub fn up(&mut self, o: &UpOptions) -> Result<()> {
        for s in o.scale.keys() {
            self.project.service(s)?;
        }
        let order = self.project.order(&o.services)?;
        let all = self.containers()?;
        let orphans = self.orphans(&all);
        if o.remove_orphans {
            for c in &orphans {
                self.remove_container(c, o.stop_timeout, false)?;
            }
        } else {
            self.report_orphans(&orphans);
        }
        for s in &order {
            let keys = self.project.unsupported_keys(s);
            if !keys.is_empty() {
                self.emit(Event::Warning(format!(
                    "service {s}: keel cannot apply {}; ignored",
                    keys.join(", ")
                )));
            }
        }
        self.ensure_images(&order, o.build, o.pull.as_deref())?;
        self.ensure_networks(&order)?;
        self.ensure_volumes(&order)?;
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for s in &order {
            self.up_service(s, o, &all, &mut changed, &mut touched)?;
        }
        if o.wait && o.start {
            self.wait_all(&order, o.timeout)?;
        }
        Ok(())
    }

    fn up_service(
        &mut self,
        s: &str,
        o: &UpOptions,
        all: &[Container],
        changed: &mut BTreeSet<String>,
        touched: &mut BTreeSet<String>,
    ) -> Result<()> {
        let svc = self.project.service(s)?.clone();
        let want = self.project.replicas(s, &o.scale);
        if want > 1 && svc.container_name.is_some() {
            return Err(ReconcileError::Invalid {
                service: s.to_string(),
                message: format!(
                    "container_name {:?} cannot be used with {want} replicas",
                    svc.container_name.as_deref().unwrap_or_default()
                ),
            });
        }
        if o.start {
            for (dep, d) in &svc.depends_on {
                if self.project.model.services.contains_key(dep) {
                    self.wait_dependency(s, dep, &d.condition, o.timeout)?;
                }
            }
        }
        let hash = self.project.hashes.get(s).cloned().unwrap_or_default();
        let image_id = self
            .engine
            .image_id(&self.project.image_of(s))
            .map_err(engine_err(format!("inspecting the image of {s}")))?;
        let mut existing: Vec<Container> = all
            .iter()
            .filter(|c| c.service == s && !c.oneoff)
            .cloned()
            .collect();
        existing.sort_by_key(|c| c.number);
        // Scale down: the highest numbers go first, like docker compose.
        while existing.len() > want as usize {
            let c = existing.pop().unwrap_or_else(|| unreachable!());
            self.remove_container(&c, o.stop_timeout, false)?;
        }
        let restart_for_dep = svc
            .depends_on
            .iter()
            .any(|(dep, d)| d.restart && changed.contains(dep));
        // A recreated `network_mode: service:X` took its namespace with it.
        let netns_gone = svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            .is_some_and(|dep| changed.contains(dep));
        for c in &existing {
            let outdated = c.config_hash != hash
                || netns_gone
                || image_id.as_ref().is_some_and(|id| *id != c.image_id);
            if (o.force_recreate || outdated) && !o.no_recreate {
                self.emit(progress("Container", &c.name, "Recreate"));
                self.remove_container(c, o.stop_timeout, false)?;
                self.create_and_start(s, c.number, o.start)?;
                self.emit(progress("Container", &c.name, "Recreated"));
                changed.insert(s.to_string());
                touched.insert(s.to_string());
            } else if !o.start {
            } else if restart_for_dep {
                self.emit(progress("Container", &c.name, "Restarting"));
                if c.running() {
                    self.engine
                        .stop(&c.id, o.stop_timeout)
                        .map_err(engine_err(format!("stopping {}", c.name)))?;
                }
                self.start_one(&c.id, &c.name)?;
                touched.insert(s.to_string());
            } else if !c.running() {
                self.start_one(&c.id, &c.name)?;
                touched.insert(s.to_string());
            } else {
                self.emit(progress("Container", &c.name, "Running"));
            }
        }
        let taken: BTreeSet<u32> = existing.iter().map(|c| c.number).collect();
        let mut number = 1;
        for _ in existing.len()..want as usize {
            while taken.contains(&number) {
                number += 1;
            }
            self.create_and_start(s, number, o.start)?;
            number += 1;
            changed.insert(s.to_string());
            touched.insert(s.to_string());
        }
        Ok(())
    }

    /// `up --wait`, by docker compose's rules: a service some other service
    /// depends on with `service_completed_successfully` must exit 0; every
    /// other one must be running, and healthy if it has a healthcheck.
    fn wait_all(&mut self, services: &[String], timeout: Duration) -> Result<()> {
        let set: BTreeSet<&String> = services.iter().collect();
        let targets: Vec<Container> = self
            .containers()?
            .into_iter()
            .filter(|c| !c.oneoff && set.contains(&c.service))
            .collect();
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        for c in targets {
            let one_shot = self.project.model.services.values().any(|s| {
                s.depends_on.iter().any(|(d, dep)| {
                    *d == c.service && dep.condition == "service_completed_successfully"
                })
            });
            let fail = |reason: String| ReconcileError::Wait {
                service: c.service.clone(),
                reason,
            };
            loop {
                let cur = self
                    .engine
                    .container(&c.id)
                    .map_err(engine_err(format!("inspecting {}", c.name)))?;
                let ready = match (cur.status.as_str(), cur.health) {
                    ("exited", _) if one_shot && cur.exit_code == 0 => Some("Exited"),
                    ("exited", _) if one_shot => {
                        return Err(fail(format!(
                            "container {} didn't complete successfully: exit {}",
                            c.name, cur.exit_code
                        )));
                    }
                    ("exited", _) => {
                        return Err(fail(format!(
                            "container {} exited ({})",
                            c.name, cur.exit_code
                        )));
                    }
                    (_, Some(Health::Unhealthy)) => {
                        return Err(fail(format!("container {} is unhealthy", c.name)));
                    }
                    _ if one_shot => None,
                    (_, Some(Health::Healthy)) if cur.running() => Some("Healthy"),
                    (_, None) if cur.running() => Some("Running"),
                    _ => None,
                };
                if let Some(st) = ready {
                    self.emit(progress("Container", &c.name, st));
                    break;
                }
                if waited >= timeout {
                    let state = match cur.health {
                        Some(Health::Starting) => "still starting".to_string(),
                        _ => cur.status.clone(),
                    };
                    return Err(ReconcileError::WaitTimeout {
                        secs: timeout.as_secs(),
                        service: c.service.clone(),
                        reason: format!("container {} is {state}", c.name),
                    });
                }
                self.engine.sleep(step);
                waited += step;
            }
        }
        Ok(())
    }

    /// `down`: stops and removes the project's containers (dependents first),
    /// its networks, and with `volumes` its named volumes.
    pub fn down(&mut self, o: &DownOptions) -> Result<()> {
        let all = self.containers()?;
        let orphans = self.orphans(&all);
        let order = self.project.order(&[])?;
        let mut doomed: Vec<Container> = Vec::new();
        for s in order.iter().rev() {
            let mut cs: Vec<Container> = all.iter().filter(|c| &c.service == s).cloned().collect();
            cs.sort_by_key(|c| std::cmp::Reverse(c.number));
            doomed.extend(cs);
        }
        // Containers of services disabled by profiles, and one-off containers
        // of services no longer in the model, go with the project.
        doomed.extend(
            all.iter()
                .filter(|c| {
                    !self.project.model.services.contains_key(&c.service)
                        && (c.oneoff || self.project.disabled.contains(&c.service))
                })
                .cloned(),
        );
        if o.remove_orphans {
            doomed.extend(orphans.iter().cloned());
        } else {
            self.report_orphans(&orphans);
        }
        // Stopping mostly waits for processes to exit: all at once.
        let running: Vec<&Container> = doomed.iter().filter(|c| c.running()).collect();
        for c in &running {
            self.emit(progress("Container", &c.name, "Stopping"));
        }
        let ids: Vec<String> = running.iter().map(|c| c.id.clone()).collect();
        for (c, r) in running.iter().zip(self.engine.stop_many(&ids, o.timeout)) {
            r.map_err(engine_err(format!("stopping {}", c.name)))?;
            self.emit(progress("Container", &c.name, "Stopped"));
        }
        for c in &doomed {
            let mut c = c.clone();
            c.status = "exited".into();
            self.remove_container(&c, o.timeout, o.volumes)?;
        }
        let mut nets: Vec<String> = self
            .project
            .model
            .networks
            .values()
            .filter(|n| !n.external)
            .map(|n| n.name.clone())
            .collect();
        nets.dedup();
        for n in nets {
            let exists = self
                .engine
                .network_exists(&n)
                .map_err(engine_err(format!("inspecting network {n}")))?;
            if exists {
                self.emit(progress("Network", &n, "Removing"));
                match self.engine.remove_network(&n) {
                    Ok(()) => self.emit(progress("Network", &n, "Removed")),
                    // Orphans kept by the user may still use it; docker compose warns too.
                    Err(e) if !orphans.is_empty() && !o.remove_orphans => {
                        self.emit(Event::Warning(format!("network {n}: {e}")));
                    }
                    Err(e) => return Err(engine_err(format!("removing network {n}"))(e)),
                }
            }
        }
        if o.volumes {
            for v in self.project.model.volumes.values().filter(|v| !v.external) {
                let exists = self
                    .engine
                    .volume_exists(&v.name)
                    .map_err(engine_err(format!("inspecting volume {}", v.name)))?;
                if exists {
                    self.emit(progress("Volume", &v.name, "Removing"));
                    self.engine
                        .remove_volume(&v.name)
                        .map_err(engine_err(format!("removing volume {}", v.name)))?;
                    self.emit(progress("Volume", &v.name, "Removed"));
                }
            }
        }
        self.engine
            .remove_project_files(&self.project.model.name)
            .map_err(engine_err("removing the project's secret and config files"))?;
        Ok(())
    }

    /// The images `down --rmi` removes: built ones (`all`: every one).
    pub fn images_to_remove(&self, all: bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .project
            .model
            .services
            .iter()
            .filter(|(_, s)| all || (s.build.is_some() && s.image.is_none()))
            .map(|(n, _)| self.project.image_of(n))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `start`: starts existing stopped containers in dependency order.
    pub fn start(&mut self, services: &[String], timeout: Duration) -> Result<()> {
        let order = self.project.order(services)?;
        let all = self.containers()?;
        for s in &order {
            let svc = self.project.service(s)?.clone();
            let mine: Vec<&Container> = all
                .iter()
                .filter(|c| &c.service == s && !c.oneoff)
                .collect();
            if mine.iter().all(|c| c.running()) {
                continue;
            }
            for (dep, d) in &svc.depends_on {
                if self.project.model.services.contains_key(dep) {
                    self.wait_dependency(s, dep, &d.condition, timeout)?;
                }
            }
            for c in mine.into_iter().filter(|c| !c.running()) {
                self.start_one(&c.id, &c.name)?;
            }
        }
        Ok(())
    }

    /// `stop`: stops running containers, dependents first.
    pub fn stop(&mut self, services: &[String], timeout: Option<u32>) -> Result<()> {
        let order = self.project.order(&[])?;
        let all = self.containers()?;
        for s in order.iter().rev() {
            if !services.is_empty() && !services.contains(s) {
                continue;
            }
            for c in all.iter().filter(|c| &c.service == s && c.running()) {
                self.emit(progress("Container", &c.name, "Stopping"));
                self.engine
                    .stop(&c.id, timeout)
                    .map_err(engine_err(format!("stopping {}", c.name)))?;
                self.emit(progress("Container", &c.name, "Stopped"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
