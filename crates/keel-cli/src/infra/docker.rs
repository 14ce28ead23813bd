//! keel-infra's docker provider on keel's engine: the same runtime, network
//! and image-store calls `keel run`, `keel network` and compose make (pulls
//! and builds run `keel pull`/`keel build`, as compose's engine does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_infra::providers::docker::{
    BuildSpec, ContainerInfo, ContainerSpec, DockerEngine, EngineFactory, ImageInfo, NetData,
    NetworkInfo, NetworkSpec, PortSpec, VolumeInfo,
};
use keel_runtime::engine::{self, CreateOptions};
use keel_runtime::network::NetworkAttacher;
use keel_runtime::{Containers, HealthConfig, MountKind, MountSpec, RestartPolicy, Volumes};

use crate::compose::engine::{KeelEngine, line, split_entrypoint};

/// One line for the provider's diagnostic, hint included.
fn one(e: &anyhow::Error) -> String {
    let mut s = line(e);
    if let Some(h) = e.downcast_ref::<crate::Hint>() {
        s.push_str(&format!(" (hint: {})", h.0));
    }
    s
}

fn rt(e: keel_runtime::RuntimeError) -> String {
    one(&crate::container::hinted(e))
}

fn net(e: keel_net::NetError) -> String {
    one(&crate::hints::net(e))
}

/// The root's stores; the network driver and compose's engine (for `keel
/// pull`/`keel build`) are opened per call, since they are not `Sync`.
struct Engine {
    root: PathBuf,
    containers: Containers,
}

/// The factory the provider opens engines with: `host` unset is `default_root`;
/// `keel:///PATH` is the keel root at PATH. keel has no daemon socket, so a
/// Docker `unix://` or `tcp://` address is refused with what to write instead.
pub fn factory(default_root: &Path) -> EngineFactory {
    let default_root = default_root.to_path_buf();
    Arc::new(move |host: Option<&str>| {
        let root = match host {
            None | Some("") => default_root.clone(),
            Some(h) => match h.strip_prefix("keel://") {
                Some(p) if p.starts_with('/') => PathBuf::from(p),
                _ => {
                    return Err(format!(
                        "provider \"docker\": host {h:?} is not a keel engine: keel runs containers without a daemon; leave host unset (keel --root/KEEL_ROOT) or write host = \"keel:///path/to/root\""
                    ));
                }
            },
        };
        let containers = crate::container::open(&root).map_err(|e| one(&e))?;
        Ok(Arc::new(Engine { root, containers }) as Arc<dyn DockerEngine>)
    })
}

impl Engine {
    fn containers(&self) -> &Containers {
        &self.containers
    }

    fn keel(&self, args: &[String], what: &str) -> Result<(), String> {
        KeelEngine::open(&self.root)
            .map_err(|e| one(&e))?
            .keel(args, what)
    }

    fn images(&self) -> Result<keel_oci::ImageStore, String> {
        keel_oci::ImageStore::open(&self.root).map_err(|e| e.to_string())
    }

    fn networks(&self) -> Result<keel_net::Networks, String> {
        keel_net::Networks::open(&self.root).map_err(net)
    }

    fn volumes(&self) -> Result<Volumes, String> {
        Volumes::open(&self.root).map_err(rt)
    }
}

fn network_info(n: &keel_net::NetworkInfo) -> NetworkInfo {
    NetworkInfo {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.clone(),
        scope: n.scope.clone(),
        subnet: n.subnet.clone(),
        gateway: n.gateway.map(|g| g.to_string()),
        ip_range: n.ip_range.clone(),
        aux_addresses: n.aux_addresses.clone(),
        internal: n.internal,
        labels: n.labels.clone(),
        options: n.options.clone(),
    }
}

fn create_options(s: &ContainerSpec) -> Result<CreateOptions, String> {
    let (entrypoint, command) = split_entrypoint(
        s.entrypoint.as_deref(),
        s.command.clone().unwrap_or_default(),
    );
    let mounts = s
        .mounts
        .iter()
        .map(|m| match (&m.volume_name, &m.host_path) {
            (_, Some(h)) => MountSpec {
                kind: MountKind::Bind,
                source: h.clone(),
                target: m.container_path.clone(),
                read_only: m.read_only,
                anonymous: false,
                options: Vec::new(),
            },
            (Some(v), None) => MountSpec {
                kind: MountKind::Volume,
                source: v.clone(),
                target: m.container_path.clone(),
                read_only: m.read_only,
                anonymous: false,
                options: Vec::new(),
            },
            (None, None) => MountSpec {
                kind: MountKind::Volume,
                source: keel_runtime::ids::new_id(),
                target: m.container_path.clone(),
                read_only: m.read_only,
                anonymous: true,
                options: Vec::new(),
            },
        })
        .collect();
    let (network, aliases, ip, extra) = match s.networks.split_first() {
        Some((first, rest)) => (
            first.name.clone(),
            first.aliases.clone(),
            first.ipv4_address.clone(),
            rest.iter()
                .map(|n| keel_runtime::EndpointConfig {
                    network: n.name.clone(),
                    aliases: n.aliases.clone(),
                    ip: n.ipv4_address.clone(),
                })
                .collect(),
        ),
        None => (s.network_mode.clone(), Vec::new(), None, Vec::new()),
    };
    Ok(CreateOptions {
        image: s.image.clone(),
        name: Some(s.name.clone()),
        command,
        entrypoint,
        env: s.env.clone(),
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        labels: s.labels.clone(),
        network,
        network_aliases: aliases,
        networking: keel_runtime::NetworkConfig {
            ip,
            extra_networks: extra,
            ..keel_runtime::NetworkConfig::default()
        },
        ports: s
            .ports
            .iter()
            .map(|p| keel_runtime::PortSpec {
                host_ip: Some(p.ip.clone()).filter(|i| i != "0.0.0.0" && !i.is_empty()),
                host_port: p.external,
                container_port: p.internal,
                protocol: p.protocol.clone(),
            })
            .collect(),
        mounts,
        volumes_from: s.volumes_from.clone(),
        read_only: s.read_only,
        restart: RestartPolicy::parse(&s.restart).map_err(|e| e.to_string())?,
        healthcheck: s.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
            start_period_ms: h.start_period_ms,
        }),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s.stop_timeout,
        auto_remove: s.auto_remove,
        ..CreateOptions::default()
    })
}

impl DockerEngine for Engine {
    fn image(&self, name: &str) -> Result<Option<ImageInfo>, String> {
        let store = self.images()?;
        let md = match store.resolve_manifest(name) {
            Ok(md) => md,
            Err(keel_oci::OciError::ImageNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let img = store.resolve(name).map_err(|e| e.to_string())?;
        let repo_digest = store
            .repo_digests_of(&md)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Some(ImageInfo {
            id: img.id().to_string(),
            repo_digest,
        }))
    }

    fn pull(&self, name: &str) -> Result<(), String> {
        self.keel(&["pull".into(), name.into()], "pull")
    }

    fn build(&self, name: &str, b: &BuildSpec) -> Result<(), String> {
        let mut args: Vec<String> = vec!["build".into(), "-t".into(), name.into()];
        for t in &b.tags {
            args.extend(["-t".into(), t.clone()]);
        }
        args.extend([
            "-f".into(),
            Path::new(&b.context)
                .join(&b.dockerfile)
                .display()
                .to_string(),
        ]);
        if let Some(t) = &b.target {
            args.extend(["--target".into(), t.clone()]);
        }
        for (k, v) in &b.build_args {
            args.extend(["--build-arg".into(), format!("{k}={v}")]);
        }
        for (k, v) in &b.labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.push(b.context.clone());
        self.keel(&args, "build")
    }

    fn remove_image(&self, name: &str, force: bool) -> Result<(), String> {
        self.images()?
            .remove(name, force)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn network(&self, name: &str) -> Result<Option<NetworkInfo>, String> {
        match self.networks()?.inspect(name) {
            Ok(n) => Ok(Some(network_info(&n))),
            Err(keel_net::NetError::NotFound(_)) => Ok(None),
            Err(e) => Err(net(e)),
        }
    }

    fn create_network(&self, n: &NetworkSpec) -> Result<NetworkInfo, String> {
        let o = keel_net::NetworkOptions {
            id: None,
            driver: n.driver.clone(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            ip_range: n.ip_range.clone(),
            aux_addresses: n.aux_addresses.clone(),
            internal: n.internal,
            ipv6: n.ipv6,
            labels: n.labels.clone(),
            options: n.options.clone(),
        };
        self.networks()?
            .create_with(&n.name, &o)
            .map(|n| network_info(&n))
            .map_err(net)
    }

    fn remove_network(&self, name: &str) -> Result<(), String> {
        crate::network::remove_network(&self.root, &self.networks()?, name).map_err(net)
    }

    fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, String> {
        match self.volumes()?.get(name) {
            Ok(v) => Ok(Some(VolumeInfo {
                name: v.name,
                driver: "local".into(),
                mountpoint: v.mountpoint.display().to_string(),
            })),
            Err(keel_runtime::RuntimeError::NoSuchVolume(_)) => Ok(None),
            Err(e) => Err(rt(e)),
        }
    }

    fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, String> {
        let vols = self.volumes()?;
        vols.create(name, labels.clone(), false).map_err(rt)?;
        self.volume(name)?
            .ok_or_else(|| format!("volume {name} vanished after create"))
    }

    fn remove_volume(&self, name: &str) -> Result<(), String> {
        self.volumes()?
            .remove(self.containers(), name, false)
            .map_err(rt)
    }

    fn create_container(&self, spec: &ContainerSpec) -> Result<String, String> {
        let o = create_options(spec)?;
        engine::create(&self.root, &o).map(|c| c.id).map_err(rt)
    }

    fn start_container(&self, id: &str) -> Result<(), String> {
        crate::container::start_one(&self.root, self.containers(), id).map_err(|e| one(&e))
    }

    fn container(&self, id: &str) -> Result<Option<ContainerInfo>, String> {
        let c = self.containers();
        let id = match c.resolve(id) {
            Ok(id) => id,
            Err(keel_runtime::RuntimeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(rt(e)),
        };
        let cfg = c.config(&id).map_err(rt)?;
        let st = c.state(&id).map_err(rt)?;
        let running = engine::effective_status(c, &id) == keel_runtime::Status::Running;
        let networks = st
            .endpoints
            .iter()
            .map(|e| NetData {
                network_name: e.network.clone(),
                ip_address: e.ip.clone(),
                ip_prefix_length: i64::from(e.prefix_len),
                gateway: e.gateway.clone(),
                mac_address: e.mac.clone(),
            })
            .collect();
        let ports = st
            .network
            .as_ref()
            .map(|n| {
                n.ports
                    .iter()
                    .map(|p| PortSpec {
                        internal: p.container_port,
                        external: p.host_port,
                        ip: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ContainerInfo {
            id: cfg.id.clone(),
            running,
            exit_code: i64::from(st.exit_code),
            hostname: cfg.hostname.clone(),
            command: cfg.cmd.clone(),
            entrypoint: cfg.entrypoint.clone(),
            networks,
            ports,
        }))
    }

    fn stop_container(&self, id: &str, timeout: Option<u32>) -> Result<(), String> {
        engine::stop(self.containers(), id, timeout, None).map_err(rt)
    }

    fn remove_container(&self, id: &str, volumes: bool) -> Result<(), String> {
        let net: Box<dyn NetworkAttacher> = crate::container::network_attacher(&self.root);
        engine::remove(self.containers(), id, true, volumes, net.as_ref()).map_err(rt)
    }

    fn set_restart(&self, id: &str, policy: &str) -> Result<(), String> {
        let p = RestartPolicy::parse(policy).map_err(|e| e.to_string())?;
        self.containers()
            .update_config(id, |c| c.restart = p)
            .map(|_| ())
            .map_err(rt)
    }

    fn push_image(&self, name: &str, insecure: bool) -> Result<String, String> {
        let store = self.images()?;
        let (target, opts) = self.remote(name, insecure)?;
        let d = block_on(keel_oci::registry::push(
            &store,
            name,
            &target,
            &opts,
            &keel_oci::registry::NoProgress,
        ))
        .map_err(|e| oci(e, &format!("pushing {name}")))?;
        Ok(d.to_string())
    }

    fn remote_digest(&self, name: &str, insecure: bool) -> Result<Option<String>, String> {
        let (target, opts) = self.remote(name, insecure)?;
        let d = block_on(keel_oci::registry::remote_digest(&target, &opts))
            .map_err(|e| oci(e, &format!("reading {name} from its registry")))?;
        Ok(d.map(|d| d.to_string()))
    }

    fn delete_remote(&self, name: &str, digest: &str, insecure: bool) -> Result<(), String> {
        let (target, opts) = self.remote(name, insecure)?;
        let d = keel_oci::Digest::parse(digest).map_err(|e| e.to_string())?;
        block_on(keel_oci::registry::delete_manifest(&target, &d, &opts))
            .map_err(|e| oci(e, &format!("deleting {name} from its registry")))
    }
}

fn oci(e: keel_oci::OciError, what: &str) -> String {
    one(&crate::hints::oci(e).context(what.to_string()))
}

/// The provider runs resources on plain threads (keel-infra's walk), so each
/// registry call gets its own small runtime, as `keel push` does.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
        .block_on(f)
}

impl Engine {
    /// `name` as a registry reference, with `keel push`'s options: stored
    /// credentials, `KEEL_INSECURE_REGISTRIES`, and the registry itself when
    /// the resource says `insecure_skip_verify`.
    fn remote(
        &self,
        name: &str,
        insecure: bool,
    ) -> Result<(keel_oci::Reference, keel_oci::registry::RegistryOptions), String> {
        let target = keel_oci::Reference::parse(name).map_err(|e| e.to_string())?;
        let mut list: Vec<String> = std::env::var("KEEL_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect();
        if insecure {
            list.push(target.registry().to_string());
        }
        Ok((
            target,
            keel_oci::registry::RegistryOptions {
                insecure: list,
                credentials: None,
                root: Some(self.root.clone()),
            },
        ))
    }
}
