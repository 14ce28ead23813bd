//! The project as the reconciler sees it: naming, labels, start order and
//! the container spec each service asks for.

use super::resources::{int_of, text_of};
use crate::model::{Build, Model, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{
    Container, ContainerSpec, Engine, HealthReq, LABEL_CONFIG_FILES, LABEL_DEPENDS_ON, LABEL_HASH,
    LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE, LABEL_WORKING_DIR, MountKind,
    MountReq, NetworkReq, PortReq, ReconcileError, Resources, Result, UNSUPPORTED_KEYS,
    config_hash, engine_err, parse_duration_ms,
};

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
    /// Services left out by profiles or by naming others: not orphans.
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

    pub(super) fn service(&self, name: &str) -> Result<&Service> {
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

    pub(super) fn visit(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
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
    pub(super) fn replicas(&self, service: &str, scale: &BTreeMap<String, u32>) -> u32 {
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
    pub(super) fn labels(
        &self,
        service: &str,
        number: u32,
        oneoff: bool,
    ) -> BTreeMap<String, String> {
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
    pub(super) fn service_networks(
        svc: &Service,
    ) -> Vec<(&str, Option<&crate::model::ServiceNetwork>)> {
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
    pub(super) fn network_name(&self, key: &str) -> String {
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
            if kind == MountKind::Volume && m.volume.as_ref().is_some_and(|v| v.nocopy) {
                // keel-runtime's `volume::NOCOPY`.
                options.push("nocopy".to_string());
            }
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
            log_driver: svc.logging.as_ref().and_then(|l| l.driver.clone()),
            log_opts: svc
                .logging
                .iter()
                .flat_map(|l| l.options.iter().map(|(k, v)| format!("{k}={}", text_of(v))))
                .collect(),
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

pub(super) fn kind_name(is_secret: bool) -> &'static str {
    if is_secret { "secret" } else { "config" }
}
