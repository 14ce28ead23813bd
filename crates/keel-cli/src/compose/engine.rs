//! The compose reconciler's [`Engine`] on keel's own runtime: containers from
//! keel-runtime, networks from keel-net, volumes and images from the root.
//! Pulls, pushes and builds run the keel binary itself (`keel pull/push/build`)
//! so they share those commands' behaviour and cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_compose::model::Build;
use keel_compose::reconcile::{
    self, Container, ContainerSpec, Engine, EngineError, EngineResult, Health, LABEL_HASH,
    LABEL_NETWORK, LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE, LABEL_VOLUME,
};
use keel_runtime::engine::{self, CreateOptions};
use keel_runtime::network::NetworkAttacher;
use keel_runtime::{
    Containers, HealthConfig, MountKind, MountSpec, PortSpec, RestartPolicy, Volumes, ids,
};

use crate::Hint;
use crate::container::{hinted, network_attacher, start_one};

/// A failure for keel-compose: keel's one-line message (the CLI's own
/// renderer), the typed cause kept as its source, and the hint `crate::hints`
/// attached, which `compose up` prints as keel prints any hint.
fn engine_error(e: anyhow::Error) -> EngineError {
    let hint = e.downcast_ref::<Hint>().map(|h| h.0.clone());
    EngineError::new(line(&e)).with_hint(hint).with_source(e)
}

fn typed(e: impl std::error::Error + Send + Sync + 'static) -> EngineError {
    engine_error(anyhow::Error::new(e))
}

fn runtime(e: keel_runtime::RuntimeError) -> EngineError {
    engine_error(hinted(e))
}

fn net(e: keel_net::NetError) -> EngineError {
    engine_error(crate::hints::net(e))
}

/// An I/O failure on `path`.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |e| engine_error(anyhow::Error::new(e).context(path.display().to_string()))
}

/// An error chain as one line, without the `error: ` prefix or hint.
pub fn line(e: &anyhow::Error) -> String {
    let r = crate::render_error(e);
    r.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

pub struct KeelEngine {
    root: PathBuf,
    containers: Containers,
    net: Box<dyn NetworkAttacher>,
    exe: PathBuf,
}

impl KeelEngine {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        Ok(KeelEngine {
            root: root.to_path_buf(),
            containers: crate::container::open(root)?,
            net: network_attacher(root),
            exe: std::env::current_exe().context("locating the keel binary")?,
        })
    }

    pub fn store(&self) -> &Containers {
        &self.containers
    }

    /// `keel --root ROOT args…` with our output, failing with keel's own error line.
    pub fn keel(&self, args: &[String], what: &str) -> Result<(), String> {
        let out = Command::new(&self.exe)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running keel {what}: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            eprint!("{err}");
            return Ok(());
        }
        Err(err
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .map_or_else(
                || format!("keel {what} failed ({})", out.status),
                str::to_string,
            ))
    }

    fn info(&self, id: &str) -> EngineResult<Container> {
        let cfg = self.containers.config(id).map_err(runtime)?;
        let st = self.containers.state(id).map_err(runtime)?;
        let status = engine::effective_status(&self.containers, id);
        let running = status == keel_runtime::Status::Running;
        let health = st
            .health
            .as_ref()
            .filter(|_| running)
            .map(|h| match h.status.as_str() {
                "healthy" => Health::Healthy,
                "unhealthy" => Health::Unhealthy,
                _ => Health::Starting,
            });
        let label = |k: &str| cfg.labels.get(k).cloned().unwrap_or_default();
        Ok(Container {
            id: cfg.id.clone(),
            name: cfg.name.clone(),
            service: label(LABEL_SERVICE),
            number: label(LABEL_NUMBER).parse().unwrap_or(0),
            oneoff: label(LABEL_ONEOFF) == "True",
            config_hash: label(LABEL_HASH),
            image: cfg.image.clone(),
            image_id: cfg.image_id.clone(),
            status: status.as_str().to_string(),
            exit_code: st.exit_code,
            health,
            labels: cfg.labels.clone(),
        })
    }

    /// Every container of every project.
    pub fn all_project_containers(&self) -> Result<Vec<Container>, String> {
        let mut out = Vec::new();
        for id in self.containers.ids().map_err(|e| e.to_string())? {
            let Ok(cfg) = self.containers.config(&id) else {
                continue;
            };
            if cfg.labels.contains_key(LABEL_PROJECT)
                && let Ok(c) = self.info(&id)
            {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn project_dir(&self, project: &str) -> PathBuf {
        self.root.join("compose").join(project)
    }

    /// Where the labels of compose's networks live: keel-net networks carry
    /// none, and `down -p NAME` must find a project's networks without its file.
    fn network_labels_dir(&self) -> PathBuf {
        self.root.join("compose-networks")
    }

    /// `(key, name)` of the networks labelled with `project` that still exist.
    pub fn project_networks(&self, project: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.network_labels_dir()) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let Some(name) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            let Ok(labels) = std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<BTreeMap<String, String>>(&b)
                        .map_err(|e| e.to_string())
                })
            else {
                continue;
            };
            if labels.get(LABEL_PROJECT).is_some_and(|p| p == project)
                && self.network_exists(&name).map_err(|e| e.to_string())?
            {
                let key = labels
                    .get(LABEL_NETWORK)
                    .cloned()
                    .unwrap_or_else(|| name.clone());
                out.push((key, name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// `(key, name)` of the volumes labelled with `project`.
    pub fn project_volumes(&self, project: &str) -> Result<Vec<(String, String)>, String> {
        let v = Volumes::open(&self.root).map_err(|e| e.to_string())?;
        let mut out: Vec<(String, String)> = v
            .list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|x| x.labels.get(LABEL_PROJECT).is_some_and(|p| p == project))
            .map(|x| {
                let key = x
                    .labels
                    .get(LABEL_VOLUME)
                    .cloned()
                    .unwrap_or_else(|| x.name.clone());
                (key, x.name)
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// keel-runtime takes one entrypoint word; the rest of a Docker-style
/// entrypoint list goes in front of the command, which is what the process
/// sees either way. `Some([])` clears the image's entrypoint.
pub fn split_entrypoint(
    entrypoint: Option<&[String]>,
    mut command: Vec<String>,
) -> (Option<String>, Vec<String>) {
    match entrypoint {
        None => (None, command),
        Some([]) => (Some(String::new()), command),
        Some([first, rest @ ..]) => {
            let mut words = rest.to_vec();
            words.append(&mut command);
            (Some(first.clone()), words)
        }
    }
}

/// The runtime's create options for a compose container.
pub fn create_options(spec: &ContainerSpec) -> Result<CreateOptions, String> {
    // `logging:` as `--log-driver`/`--log-opt`.
    let (log_max_size, log_max_file) =
        crate::container::log_options(spec.log_driver.as_deref(), &spec.log_opts)
            .map_err(|e| format!("{e:#}"))?;
    let (entrypoint, command) = split_entrypoint(
        spec.entrypoint.as_deref(),
        spec.command.clone().unwrap_or_default(),
    );
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        let (kind, source, anonymous) = match m.kind {
            reconcile::MountKind::Bind => {
                if m.create_host_path && !Path::new(&m.source).exists() {
                    std::fs::create_dir_all(&m.source)
                        .map_err(|e| format!("creating bind source {}: {e}", m.source))?;
                }
                (MountKind::Bind, m.source.clone(), false)
            }
            reconcile::MountKind::Volume if m.source.is_empty() => {
                (MountKind::Volume, ids::new_id(), true)
            }
            reconcile::MountKind::Volume => (MountKind::Volume, m.source.clone(), false),
            reconcile::MountKind::Tmpfs => (MountKind::Tmpfs, String::new(), false),
        };
        mounts.push(MountSpec {
            kind,
            source,
            target: m.target.clone(),
            read_only: m.read_only,
            anonymous,
            options: m.options.clone(),
        });
    }
    Ok(CreateOptions {
        image: spec.image.clone(),
        name: Some(spec.name.clone()),
        command,
        entrypoint,
        env: spec.env.clone(),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        labels: spec.labels.clone(),
        network: spec.network.clone(),
        network_aliases: spec.aliases.clone(),
        networking: keel_runtime::NetworkConfig {
            ip: spec.ipv4_address.clone(),
            extra_networks: spec
                .extra_networks
                .iter()
                .map(|n| keel_runtime::EndpointConfig {
                    network: n.name.clone(),
                    aliases: n.aliases.clone(),
                    ip: n.ipv4_address.clone(),
                })
                .collect(),
            extra_hosts: spec.extra_hosts.clone(),
            dns: spec.dns.clone(),
            dns_search: spec.dns_search.clone(),
            dns_options: spec.dns_opt.clone(),
        },
        ports: spec
            .ports
            .iter()
            .map(|p| PortSpec {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        mounts,
        read_only: spec.read_only,
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        restart: RestartPolicy::parse(&spec.restart).map_err(|e| e.to_string())?,
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
            start_period_ms: h.start_period_ms,
        }),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout,
        interactive: spec.interactive,
        tty: spec.tty,
        memory: spec.resources.memory,
        nano_cpus: spec.resources.nano_cpus,
        pids_limit: spec.resources.pids_limit,
        extra: keel_runtime::record::ExtraConfig {
            memory_swap: spec.resources.memory_swap,
            shm_size: spec.resources.shm_size,
            ulimits: spec
                .resources
                .ulimits
                .iter()
                .map(|(name, soft, hard)| keel_runtime::record::Ulimit {
                    name: name.clone(),
                    soft: *soft,
                    hard: *hard,
                })
                .collect(),
            sysctls: spec.resources.sysctls.clone(),
            init: spec.init,
            log_max_size,
            log_max_file,
            log_attrs: crate::container::log_attrs(
                &spec.log_opts,
                &spec
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
                &spec.env,
            ),
            ..Default::default()
        },
        ..CreateOptions::default()
    })
}

fn is_not_found(e: &keel_oci::OciError) -> bool {
    matches!(e, keel_oci::OciError::ImageNotFound(_))
}

impl Engine for KeelEngine {
    fn containers(&self, project: &str) -> EngineResult<Vec<Container>> {
        Ok(self
            .all_project_containers()
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|c| c.labels.get(LABEL_PROJECT).is_some_and(|p| p == project))
            .collect())
    }

    fn container(&self, id: &str) -> EngineResult<Container> {
        self.info(id)
    }

    fn image_id(&self, image: &str) -> EngineResult<Option<String>> {
        let store = keel_oci::ImageStore::open(&self.root).map_err(typed)?;
        match store.resolve(image) {
            Ok(i) => Ok(Some(i.id().to_string())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(typed(e)),
        }
    }

    fn pull(&self, image: &str) -> EngineResult<()> {
        Ok(self.keel(&["pull".into(), image.into()], "pull")?)
    }

    fn build(&self, image: &str, b: &Build) -> EngineResult<()> {
        let mut args: Vec<String> = vec!["build".into(), "-t".into(), image.into()];
        for t in &b.tags {
            args.extend(["-t".into(), t.clone()]);
        }
        let inline;
        if let Some(text) = &b.dockerfile_inline {
            inline = tempfile::NamedTempFile::new().map_err(typed)?;
            std::fs::write(inline.path(), text).map_err(typed)?;
            args.extend(["-f".into(), inline.path().display().to_string()]);
        } else if let Some(f) = &b.dockerfile {
            let p = Path::new(&b.context).join(f);
            args.extend(["-f".into(), p.display().to_string()]);
        }
        if let Some(t) = &b.target {
            args.extend(["--target".into(), t.clone()]);
        }
        for (k, v) in &b.args {
            let arg = match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            };
            args.extend(["--build-arg".into(), arg]);
        }
        args.push(b.context.clone());
        Ok(self.keel(&args, "build")?)
    }

    fn network_exists(&self, name: &str) -> EngineResult<bool> {
        let nets = keel_net::Networks::open(&self.root).map_err(net)?;
        match nets.inspect(name) {
            Ok(_) => Ok(true),
            Err(keel_net::NetError::NotFound(_)) => Ok(false),
            Err(e) => Err(net(e)),
        }
    }

    fn create_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> EngineResult<()> {
        let nets = keel_net::Networks::open(&self.root).map_err(net)?;
        nets.create(name, subnet).map(|_| ()).map_err(net)?;
        let dir = self.network_labels_dir();
        std::fs::create_dir_all(&dir).map_err(at(&dir))?;
        let p = dir.join(format!("{name}.json"));
        let json = serde_json::to_vec(labels).map_err(typed)?;
        std::fs::write(&p, json).map_err(at(&p))
    }

    fn remove_network(&self, name: &str) -> EngineResult<()> {
        let nets = keel_net::Networks::open(&self.root).map_err(net)?;
        crate::network::remove_network(&self.root, &nets, name).map_err(net)?;
        let p = self.network_labels_dir().join(format!("{name}.json"));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(&p)(e)),
            _ => Ok(()),
        }
    }

    fn volume_exists(&self, name: &str) -> EngineResult<bool> {
        let v = Volumes::open(&self.root).map_err(runtime)?;
        Ok(v.list().map_err(runtime)?.iter().any(|x| x.name == name))
    }

    fn create_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> EngineResult<()> {
        let v = Volumes::open(&self.root).map_err(runtime)?;
        v.create(name, labels.clone(), false)
            .map(|_| ())
            .map_err(runtime)
    }

    fn remove_volume(&self, name: &str) -> EngineResult<()> {
        let v = Volumes::open(&self.root).map_err(runtime)?;
        v.remove(&self.containers, name, false).map_err(runtime)
    }

    fn write_project_file(
        &self,
        project: &str,
        name: &str,
        content: &[u8],
    ) -> EngineResult<PathBuf> {
        let dir = self.project_dir(project);
        std::fs::create_dir_all(&dir).map_err(at(&dir))?;
        let p = dir.join(name);
        std::fs::write(&p, content).map_err(at(&p))?;
        Ok(p)
    }

    fn remove_project_files(&self, project: &str) -> EngineResult<()> {
        let dir = self.project_dir(project);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(&dir)(e)),
            _ => Ok(()),
        }
    }

    fn create(&self, spec: &ContainerSpec) -> EngineResult<String> {
        let o = create_options(spec)?;
        engine::create(&self.root, &o)
            .map(|c| c.id)
            .map_err(runtime)
    }

    fn start(&self, id: &str) -> EngineResult<()> {
        start_one(&self.root, &self.containers, id).map_err(engine_error)
    }

    fn stop(&self, id: &str, timeout: Option<u32>) -> EngineResult<()> {
        engine::stop(&self.containers, id, timeout, None).map_err(runtime)
    }

    fn stop_many(&self, ids: &[String], timeout: Option<u32>) -> Vec<EngineResult<()>> {
        let containers = &self.containers;
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    s.spawn(move || engine::stop(containers, id, timeout, None).map_err(runtime))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("stopping thread panicked".into()))
                })
                .collect()
        })
    }

    fn remove(&self, id: &str, volumes: bool) -> EngineResult<()> {
        engine::remove(&self.containers, id, true, volumes, self.net.as_ref()).map_err(runtime)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}
