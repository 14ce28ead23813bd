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
    #[error("container {container} did not become ready: {reason}")]
    Wait { container: String, reason: String },
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
    /// Creates a bridge network; `subnet` from the network's `ipam.config`.
    fn create_network(&self, name: &str, subnet: Option<&str>) -> std::result::Result<(), String>;
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
}

impl ProjectSpec {
    pub fn from_project(p: &crate::Project) -> std::result::Result<Self, crate::Error> {
        let model = p.model()?;
        let value = p.to_value();
        let mut hashes = BTreeMap::new();
        if let Some(serde_yaml_ng::Value::Mapping(services)) = value.get("services") {
            for (k, v) in services {
                if let Some(name) = k.as_str() {
                    hashes.insert(name.to_string(), config_hash(v));
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
        })
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
            mounts.push(MountReq {
                kind,
                source,
                target: m.target.clone(),
                read_only: m.read_only,
                create_host_path: true,
            });
        }
        for t in &svc.tmpfs {
            mounts.push(MountReq {
                kind: MountKind::Tmpfs,
                source: String::new(),
                target: t.split(':').next().unwrap_or(t).to_string(),
                read_only: false,
                create_host_path: false,
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
        })
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
    Some(u64::try_from((ns + 500_000) / 1_000_000).unwrap_or(u64::MAX))
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

    /// Networks the given services join: (full name, external, subnet).
    fn networks_for(&self, services: &[String]) -> Result<Vec<(String, bool, Option<String>)>> {
        let mut out: Vec<(String, bool, Option<String>)> = Vec::new();
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
                if !out.iter().any(|(n, _, _)| *n == name) {
                    out.push((name, external, subnet));
                }
            }
        }
        Ok(out)
    }

    fn ensure_networks(&mut self, services: &[String]) -> Result<()> {
        for (name, external, subnet) in self.networks_for(services)? {
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
            self.engine
                .create_network(&name, subnet.as_deref())
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

    /// Builds or pulls what the services need, per `policy` and `pull_policy`.
    pub fn ensure_images(&mut self, services: &[String], policy: BuildPolicy) -> Result<()> {
        let mut done = BTreeSet::new();
        for s in services {
            let svc = self.project.service(s)?;
            let image = self.project.image_of(s);
            if !done.insert(image.clone()) {
                continue;
            }
            let present = self
                .engine
                .image_id(&image)
                .map_err(engine_err(format!("inspecting image {image}")))?
                .is_some();
            let pull_policy = svc.pull_policy.as_deref().unwrap_or("missing");
            if let Some(b) = &svc.build {
                let build = match policy {
                    BuildPolicy::Always => true,
                    BuildPolicy::Never => false,
                    BuildPolicy::Missing => !present || pull_policy == "build",
                };
                if build {
                    self.emit(progress("Image", &image, "Building"));
                    self.engine
                        .build(&image, b)
                        .map_err(engine_err(format!("building service {s}")))?;
                    self.emit(progress("Image", &image, "Built"));
                    continue;
                }
                if present {
                    continue;
                }
            }
            let pull = match pull_policy {
                "always" => true,
                "never" => false,
                _ => !present,
            };
            if pull {
                self.emit(progress("Image", &image, "Pulling"));
                self.engine
                    .pull(&image)
                    .map_err(engine_err(format!("pulling image for service {s}")))?;
                self.emit(progress("Image", &image, "Pulled"));
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
        self.ensure_images(&order, o.build)?;
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

    fn wait_all(&mut self, services: &[String], timeout: Duration) -> Result<()> {
        let set: BTreeSet<&String> = services.iter().collect();
        let targets: Vec<Container> = self
            .containers()?
            .into_iter()
            .filter(|c| !c.oneoff && set.contains(&c.service))
            .collect();
        let step = Duration::from_millis(100);
        for c in targets {
            let mut waited = Duration::ZERO;
            loop {
                let cur = self
                    .engine
                    .container(&c.id)
                    .map_err(engine_err(format!("inspecting {}", c.name)))?;
                let fail = |reason: String| ReconcileError::Wait {
                    container: c.name.clone(),
                    reason,
                };
                match (cur.status.as_str(), cur.health) {
                    (_, Some(Health::Unhealthy)) => return Err(fail("unhealthy".into())),
                    ("running", Some(Health::Healthy) | None) => break,
                    ("exited", _) if cur.exit_code == 0 => break,
                    ("exited", _) => return Err(fail(format!("exited ({})", cur.exit_code))),
                    _ => {}
                }
                if waited >= timeout {
                    return Err(fail(format!("timed out after {}s", timeout.as_secs())));
                }
                self.engine.sleep(step);
                waited += step;
            }
            self.emit(progress(
                "Container",
                &c.name,
                if c.health.is_some() || self.has_healthcheck(&c.service) {
                    "Healthy"
                } else {
                    "Running"
                },
            ));
        }
        Ok(())
    }

    fn has_healthcheck(&self, service: &str) -> bool {
        self.project
            .model
            .services
            .get(service)
            .and_then(|s| s.healthcheck.as_ref())
            .is_some_and(|h| !h.disable)
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
