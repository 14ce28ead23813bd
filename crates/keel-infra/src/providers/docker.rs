//! The `docker` provider with kreuzwerker/docker's schemas (`docker_image`,
//! `docker_registry_image`, `docker_network`, `docker_volume`,
//! `docker_container`): the attribute
//! names, defaults, computed values and force-new rules users' files rely
//! on, carried out on keel's own engine through [`DockerEngine`], which the
//! CLI implements over keel-runtime, keel-net and the image store (keel has
//! no daemon; this crate stays free of kernel code). The provider block's
//! `host` picks the keel root (`keel:///var/lib/keel`); unset, the root of
//! `keel --root`/`KEEL_ROOT`.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_hcl::{Type, Value};

use super::{
    Attr, Nesting, OpCtx, Planned, Provider, ResourceType, Schema, get, get_bool, get_i64, get_str,
    set,
};

/// An image in the engine's store.
#[derive(Clone, Debug, Default)]
pub struct ImageInfo {
    /// `sha256:…`, the config digest (Docker's image ID).
    pub id: String,
    /// `name@sha256:…` when the image came from a registry.
    pub repo_digest: String,
}

/// A network as the engine reports it.
#[derive(Clone, Debug, Default)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// The driver options given at creation.
    pub options: BTreeMap<String, String>,
}

/// What `docker_network` asks the engine to create (`docker network create`'s flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// Empty: the engine's default (bridge).
    pub driver: String,
    pub internal: bool,
    pub ipv6: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
}

/// `ports { internal external ip protocol }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub internal: u16,
    /// 0: any free port.
    pub external: u16,
    pub ip: String,
    pub protocol: String,
}

/// `volumes { volume_name | host_path, container_path, read_only }`.
#[derive(Clone, Debug, Default)]
pub struct MountSpec {
    pub volume_name: Option<String>,
    pub host_path: Option<String>,
    pub container_path: String,
    pub read_only: bool,
}

/// `networks_advanced { name aliases ipv4_address }`.
#[derive(Clone, Debug, Default)]
pub struct NetAttach {
    pub name: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
}

/// What `docker_container` asks the engine to create.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<MountSpec>,
    /// `volumes { from_container }`: docker's `--volumes-from C[:ro]`.
    pub volumes_from: Vec<String>,
    /// `network_mode` (`bridge` by default) unless `networks` is set.
    pub network_mode: String,
    pub networks: Vec<NetAttach>,
    /// Docker's policy words, `on-failure:N` included.
    pub restart: String,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub auto_remove: bool,
    pub read_only: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
}

/// One network a container is attached to (`network_data`).
#[derive(Clone, Debug, Default)]
pub struct NetData {
    pub network_name: String,
    pub ip_address: String,
    pub ip_prefix_length: i64,
    pub gateway: String,
    pub mac_address: String,
}

/// A container as the engine reports it.
#[derive(Clone, Debug, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub running: bool,
    pub exit_code: i64,
    pub hostname: String,
    pub command: Vec<String>,
    pub entrypoint: Vec<String>,
    pub networks: Vec<NetData>,
    /// Published ports as bound (`external` resolved).
    pub ports: Vec<PortSpec>,
}

/// `build { … }` of `docker_image`, as `keel build` takes it.
#[derive(Clone, Debug, Default)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: String,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
}

/// keel's engine as the docker provider needs it. Errors are one line.
pub trait DockerEngine: Send + Sync {
    fn image(&self, name: &str) -> Result<Option<ImageInfo>, String>;
    fn pull(&self, name: &str) -> Result<(), String>;
    fn build(&self, name: &str, b: &BuildSpec) -> Result<(), String>;
    fn remove_image(&self, name: &str, force: bool) -> Result<(), String>;
    fn network(&self, name: &str) -> Result<Option<NetworkInfo>, String>;
    fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo, String>;
    fn remove_network(&self, name: &str) -> Result<(), String>;
    fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, String>;
    fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, String>;
    fn remove_volume(&self, name: &str) -> Result<(), String>;
    /// Creates the container; returns its ID.
    fn create_container(&self, spec: &ContainerSpec) -> Result<String, String>;
    fn start_container(&self, id: &str) -> Result<(), String>;
    fn container(&self, id: &str) -> Result<Option<ContainerInfo>, String>;
    fn stop_container(&self, id: &str, timeout: Option<u32>) -> Result<(), String>;
    fn remove_container(&self, id: &str, volumes: bool) -> Result<(), String>;
    /// `docker update --restart`.
    fn set_restart(&self, id: &str, policy: &str) -> Result<(), String>;
    /// `keel push NAME`: returns the manifest digest. `insecure`: plain HTTP
    /// for the registry even off loopback.
    fn push_image(&self, name: &str, insecure: bool) -> Result<String, String>;
    /// The manifest digest `name`'s registry serves, `None` when it has none.
    fn remote_digest(&self, name: &str, insecure: bool) -> Result<Option<String>, String>;
    /// Deletes manifest `digest` from `name`'s repository (gone already: fine).
    fn delete_remote(&self, name: &str, digest: &str, insecure: bool) -> Result<(), String>;
}

/// Opens the engine a provider block's `host` names (`None`: the default root).
pub type EngineFactory =
    Arc<dyn Fn(Option<&str>) -> Result<Arc<dyn DockerEngine>, String> + Send + Sync>;

fn no_engine() -> EngineFactory {
    Arc::new(|_| {
        Err("the docker provider needs keel's engine, which this program did not provide".into())
    })
}

#[derive(Clone)]
struct Shared {
    factory: EngineFactory,
}

impl Shared {
    fn engine(&self, ctx: &OpCtx) -> Result<Arc<dyn DockerEngine>, String> {
        let host = ctx.provider.as_ref().and_then(|p| get_str(p, "host"));
        (self.factory)(host)
    }
}

fn s(x: &str) -> Value {
    Value::string(x)
}

fn strings(v: &[String]) -> Value {
    Value::list(Type::String, v.iter().map(|x| s(x)).collect())
}

fn str_list(v: &Value, k: &str) -> Option<Vec<String>> {
    get(v, k).and_then(Value::as_seq).map(|xs| {
        xs.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

fn str_map(v: &Value, k: &str) -> BTreeMap<String, String> {
    get(v, k)
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_str().map(|x| (k.clone(), x.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn items<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    get(v, k).and_then(Value::as_seq).unwrap_or_default()
}

/// `labels { label value }` blocks as a map.
fn labels(v: &Value) -> BTreeMap<String, String> {
    items(v, "labels")
        .iter()
        .filter_map(|l| Some((get_str(l, "label")?.into(), get_str(l, "value")?.into())))
        .collect()
}

fn label_schema() -> Schema {
    Schema::default()
        .attr("label", Attr::required(Type::String).force_new())
        .attr("value", Attr::required(Type::String).force_new())
}

/// Go's duration strings as the provider accepts them (`30s`, `1m30s`, `500ms`).
fn duration_ms(x: &str) -> Result<u64, String> {
    keel_go_duration(x).ok_or_else(|| format!("invalid duration {x:?}"))
}

fn keel_go_duration(x: &str) -> Option<u64> {
    if x == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = x;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += num * unit;
        rest = &rest[u..];
    }
    // Durations are whole milliseconds by then; the cast truncates nothing.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(total as u64)
}

// ---------------------------------------------------------------- docker_image

struct Image {
    schema: Schema,
    shared: Shared,
}

fn build_schema() -> Schema {
    Schema::default()
        .attr("context", Attr::required(Type::String).force_new())
        .attr(
            "dockerfile",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("Dockerfile")),
        )
        .attr("target", Attr::optional(Type::String).force_new())
        .attr(
            "build_args",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr("label", Attr::optional(Type::map(Type::String)))
        .attr("tag", Attr::optional(Type::list(Type::String)))
        .attr("no_cache", Attr::optional(Type::Bool).force_new())
}

impl ResourceType for Image {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(planned, "name").ok_or("name is required")?;
        let mut out = planned.clone();
        if prior.is_none() {
            if let Some(b) = items(planned, "build").first() {
                let spec = BuildSpec {
                    context: get_str(b, "context").unwrap_or(".").to_string(),
                    dockerfile: get_str(b, "dockerfile").unwrap_or("Dockerfile").to_string(),
                    target: get_str(b, "target").map(str::to_string),
                    build_args: str_map(b, "build_args"),
                    labels: str_map(b, "label"),
                    tags: str_list(b, "tag").unwrap_or_default(),
                };
                let mut spec = spec;
                if !std::path::Path::new(&spec.context).is_absolute() {
                    spec.context = ctx.cwd.join(&spec.context).display().to_string();
                }
                e.build(name, &spec)?;
            } else if e.image(name)?.is_none() {
                e.pull(name)?;
            }
        }
        let info = e.image(name)?.ok_or_else(|| {
            format!("image {name:?} is not in keel's store after pulling or building it")
        })?;
        set(&mut out, "image_id", s(&info.id));
        set(&mut out, "repo_digest", s(&info.repo_digest));
        set(&mut out, "id", s(&format!("{}{name}", info.id)));
        Ok(out)
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        Ok(e.image(name)?.map(|_| prior.clone()))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        if get_bool(prior, "keep_locally") == Some(true) {
            return Ok(());
        }
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        if e.image(name)?.is_none() {
            return Ok(());
        }
        e.remove_image(name, get_bool(prior, "force_remove") == Some(true))
    }
}

// ---------------------------------------------------------------- docker_registry_image

/// Pushes the local image `name` (the tag names the registry) and tracks
/// its manifest there: `sha256_digest` is what the registry serves; destroy
/// deletes that manifest unless `keep_remotely`.
struct RegistryImage {
    schema: Schema,
    shared: Shared,
}

fn insecure(v: &Value) -> bool {
    get_bool(v, "insecure_skip_verify") == Some(true)
}

impl ResourceType for RegistryImage {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, _prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(planned, "name").ok_or("name is required")?;
        let digest = e.push_image(name, insecure(planned))?;
        let mut out = planned.clone();
        set(&mut out, "sha256_digest", s(&digest));
        set(&mut out, "id", s(&digest));
        Ok(out)
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        // As the provider does: gone from the registry is gone from state;
        // a new digest there is the resource's new value.
        Ok(e.remote_digest(name, insecure(prior))?.map(|d| {
            let mut out = prior.clone();
            set(&mut out, "sha256_digest", s(&d));
            out
        }))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        if get_bool(prior, "keep_remotely") == Some(true) {
            return Ok(());
        }
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        match get_str(prior, "sha256_digest") {
            Some(d) if !d.is_empty() => e.delete_remote(name, d, insecure(prior)),
            _ => Ok(()),
        }
    }
}

fn registry_image_schema() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("name", Attr::required(Type::String).force_new())
        .attr(
            "keep_remotely",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "insecure_skip_verify",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "triggers",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr("sha256_digest", Attr::computed(Type::String))
}

// ---------------------------------------------------------------- docker_network

struct Network {
    schema: Schema,
    shared: Shared,
}

impl ResourceType for Network {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        if prior.is_some() {
            // Every argument forces replacement; nothing to change in place.
            return Ok(planned.clone());
        }
        let spec = network_spec(planned)?;
        let e = self.shared.engine(ctx)?;
        let info = e.create_network(&spec)?;
        Ok(network_state(planned, &info))
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        Ok(e.network(name)?.map(|n| network_state(prior, &n)))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        if e.network(name)?.is_none() {
            return Ok(());
        }
        e.remove_network(name)
    }
    fn import(&self, id: &str, ctx: &OpCtx) -> Result<Value, String> {
        let e = self.shared.engine(ctx)?;
        let n = e.network(id)?.ok_or_else(|| format!("no network {id:?}"))?;
        let mut v = super::plan_generic(&self.schema, None, &Value::empty_object()).value;
        set(&mut v, "name", s(&n.name));
        if !n.labels.is_empty() {
            let t = label_schema().implied_type();
            let ls = n
                .labels
                .iter()
                .map(|(k, x)| {
                    Value::object(BTreeMap::from([
                        ("label".to_string(), s(k)),
                        ("value".to_string(), s(x)),
                    ]))
                })
                .collect();
            set(&mut v, "labels", Value::set(t, ls));
        }
        Ok(network_state(&v, &n))
    }
}

/// `docker_network`'s arguments as the engine takes them; what keel's engine
/// has no counterpart for (swarm's ingress, other IPAM drivers) is refused.
fn network_spec(planned: &Value) -> Result<NetworkSpec, String> {
    let name = get_str(planned, "name").ok_or("name is required")?;
    if get_bool(planned, "ingress") == Some(true) {
        return Err(format!(
            "network {name:?}: ingress networks belong to swarm, which keel's engine does not run"
        ));
    }
    if let Some(d) = get_str(planned, "ipam_driver").filter(|d| *d != "default") {
        return Err(format!(
            "network {name:?}: ipam_driver {d:?} is not supported: keel has its default IPAM only"
        ));
    }
    if get(planned, "ipam_options").is_some_and(|o| o.len().unwrap_or(0) != 0) {
        return Err(format!(
            "network {name:?}: ipam_options are not supported by keel's default IPAM"
        ));
    }
    let ipam = items(planned, "ipam_config");
    if ipam.len() > 1 {
        return Err(format!(
            "network {name:?}: keel's networks take one ipam_config (IPv4)"
        ));
    }
    let cfg = ipam.first();
    let cfg_str = |k: &str| cfg.and_then(|c| get_str(c, k)).map(str::to_string);
    Ok(NetworkSpec {
        name: name.to_string(),
        driver: get_str(planned, "driver").unwrap_or_default().to_string(),
        internal: get_bool(planned, "internal") == Some(true),
        ipv6: get_bool(planned, "ipv6") == Some(true),
        subnet: cfg_str("subnet"),
        gateway: cfg_str("gateway"),
        ip_range: cfg_str("ip_range"),
        aux_addresses: cfg.map(|c| str_map(c, "aux_address")).unwrap_or_default(),
        labels: labels(planned),
        options: str_map(planned, "options"),
    })
}

fn ipam_type() -> Type {
    Schema::default()
        .attr("subnet", Attr::optional(Type::String))
        .attr("ip_range", Attr::optional(Type::String))
        .attr("gateway", Attr::optional(Type::String))
        .attr("aux_address", Attr::optional(Type::map(Type::String)))
        .implied_type()
}

fn network_state(planned: &Value, n: &NetworkInfo) -> Value {
    let mut out = planned.clone();
    set(&mut out, "id", s(&n.id));
    set(&mut out, "driver", s(&n.driver));
    set(&mut out, "scope", s(&n.scope));
    set(&mut out, "internal", Value::bool(n.internal));
    set(
        &mut out,
        "options",
        Value::map(
            Type::String,
            n.options.iter().map(|(k, v)| (k.clone(), s(v))).collect(),
        ),
    );
    let cfg = BTreeMap::from([
        (
            "subnet".to_string(),
            n.subnet
                .as_deref()
                .map_or_else(|| Value::null(Type::String), s),
        ),
        (
            "ip_range".to_string(),
            n.ip_range
                .as_deref()
                .map_or_else(|| Value::null(Type::String), s),
        ),
        (
            "gateway".to_string(),
            n.gateway
                .as_deref()
                .map_or_else(|| Value::null(Type::String), s),
        ),
        (
            "aux_address".to_string(),
            if n.aux_addresses.is_empty() {
                Value::null(Type::map(Type::String))
            } else {
                Value::map(
                    Type::String,
                    n.aux_addresses
                        .iter()
                        .map(|(k, v)| (k.clone(), s(v)))
                        .collect(),
                )
            },
        ),
    ]);
    set(
        &mut out,
        "ipam_config",
        Value::set(ipam_type(), vec![Value::object(cfg)]),
    );
    out
}

// ---------------------------------------------------------------- docker_volume

struct Volume {
    schema: Schema,
    shared: Shared,
}

impl ResourceType for Volume {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        if prior.is_some() {
            return Ok(planned.clone());
        }
        if let Some(d) = get_str(planned, "driver").filter(|d| *d != "local") {
            return Err(format!(
                "volume driver {d:?} is not supported: keel's volumes are local directories"
            ));
        }
        if get(planned, "driver_opts").is_some_and(|o| o.len() != Some(0)) {
            return Err("volume driver_opts are not supported by keel's local volumes".into());
        }
        let e = self.shared.engine(ctx)?;
        let name = get_str(planned, "name")
            .map_or_else(|| super::random_uuid().replace('-', ""), str::to_string);
        let info = e.create_volume(&name, &labels(planned))?;
        Ok(volume_state(planned, &info))
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        Ok(e.volume(name)?.map(|v| volume_state(prior, &v)))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        let e = self.shared.engine(ctx)?;
        let name = get_str(prior, "name").unwrap_or_default();
        if e.volume(name)?.is_none() {
            return Ok(());
        }
        e.remove_volume(name)
    }
}

fn volume_state(planned: &Value, v: &VolumeInfo) -> Value {
    let mut out = planned.clone();
    set(&mut out, "id", s(&v.name));
    set(&mut out, "name", s(&v.name));
    set(&mut out, "driver", s(&v.driver));
    set(&mut out, "mountpoint", s(&v.mountpoint));
    out
}

// ---------------------------------------------------------------- docker_container

struct Container {
    schema: Schema,
    shared: Shared,
}

fn restart_policy(v: &Value) -> String {
    let r = get_str(v, "restart").unwrap_or("no");
    match get_i64(v, "max_retry_count") {
        Some(n) if r == "on-failure" && n > 0 => format!("on-failure:{n}"),
        _ => r.to_string(),
    }
}

fn u32_of(v: &Value, k: &str) -> Option<u32> {
    get_i64(v, k).and_then(|n| u32::try_from(n).ok())
}

fn container_spec(v: &Value) -> Result<ContainerSpec, String> {
    let name = get_str(v, "name").ok_or("name is required")?.to_string();
    let mut ports = Vec::new();
    for p in items(v, "ports") {
        let port = |k: &str| -> Result<u16, String> {
            get_i64(p, k).map_or(Ok(0), |n| {
                u16::try_from(n).map_err(|_| format!("ports.{k}: {n} is not a port number"))
            })
        };
        ports.push(PortSpec {
            internal: port("internal")?,
            external: port("external")?,
            ip: get_str(p, "ip").unwrap_or("0.0.0.0").to_string(),
            protocol: get_str(p, "protocol").unwrap_or("tcp").to_string(),
        });
    }
    let mut mounts = Vec::new();
    let mut volumes_from = Vec::new();
    for m in items(v, "volumes") {
        if let Some(from) = get_str(m, "from_container") {
            // docker's --volumes-from, as the provider passes it.
            let ro = get_bool(m, "read_only") == Some(true);
            if get_str(m, "container_path").is_some()
                || get_str(m, "volume_name").is_some()
                || get_str(m, "host_path").is_some()
            {
                return Err(format!(
                    "volumes from_container {from:?}: takes the other container's paths; leave container_path, volume_name and host_path unset"
                ));
            }
            volumes_from.push(if ro {
                format!("{from}:ro")
            } else {
                from.to_string()
            });
            continue;
        }
        let container_path = get_str(m, "container_path")
            .ok_or("volumes: container_path is required")?
            .to_string();
        let spec = MountSpec {
            volume_name: get_str(m, "volume_name").map(str::to_string),
            host_path: get_str(m, "host_path").map(str::to_string),
            container_path,
            read_only: get_bool(m, "read_only") == Some(true),
        };
        if spec.volume_name.is_some() && spec.host_path.is_some() {
            return Err(format!(
                "volumes for {}: set volume_name or host_path, not both",
                spec.container_path
            ));
        }
        mounts.push(spec);
    }
    let networks = items(v, "networks_advanced")
        .iter()
        .map(|n| NetAttach {
            name: get_str(n, "name").unwrap_or_default().to_string(),
            aliases: str_list(n, "aliases").unwrap_or_default(),
            ipv4_address: get_str(n, "ipv4_address").map(str::to_string),
        })
        .collect();
    let healthcheck = match items(v, "healthcheck").first() {
        Some(h) => Some(Healthcheck {
            test: str_list(h, "test").unwrap_or_default(),
            interval_ms: duration_ms(get_str(h, "interval").unwrap_or("0s"))?,
            timeout_ms: duration_ms(get_str(h, "timeout").unwrap_or("0s"))?,
            start_period_ms: duration_ms(get_str(h, "start_period").unwrap_or("0s"))?,
            retries: u32_of(h, "retries").unwrap_or(0),
        }),
        None => None,
    };
    let known = |k: &str| get(v, k).filter(|x| x.is_wholly_known());
    Ok(ContainerSpec {
        name,
        image: get_str(v, "image").ok_or("image is required")?.to_string(),
        command: known("command").and_then(|_| str_list(v, "command")),
        entrypoint: known("entrypoint").and_then(|_| str_list(v, "entrypoint")),
        env: known("env")
            .and_then(|_| str_list(v, "env"))
            .unwrap_or_default(),
        ports,
        mounts,
        volumes_from,
        network_mode: get_str(v, "network_mode").unwrap_or("bridge").to_string(),
        networks,
        restart: restart_policy(v),
        labels: labels(v),
        healthcheck,
        working_dir: get_str(v, "working_dir")
            .filter(|w| !w.is_empty())
            .map(str::to_string),
        user: get_str(v, "user")
            .filter(|w| !w.is_empty())
            .map(str::to_string),
        hostname: known("hostname").and_then(|_| get_str(v, "hostname").map(str::to_string)),
        auto_remove: get_bool(v, "rm") == Some(true),
        read_only: get_bool(v, "read_only") == Some(true),
        stop_signal: known("stop_signal")
            .and_then(|_| get_str(v, "stop_signal").map(str::to_string)),
        stop_timeout: known("stop_timeout").and_then(|_| u32_of(v, "stop_timeout")),
    })
}

fn net_data_type() -> Type {
    Type::Object(BTreeMap::from([
        ("network_name".to_string(), Type::String),
        ("ip_address".to_string(), Type::String),
        ("ip_prefix_length".to_string(), Type::Number),
        ("gateway".to_string(), Type::String),
        ("global_ipv6_address".to_string(), Type::String),
        ("global_ipv6_prefix_length".to_string(), Type::Number),
        ("ipv6_gateway".to_string(), Type::String),
        ("mac_address".to_string(), Type::String),
    ]))
}

/// Fills what the engine decided: computed values, bound ports, networks.
fn container_state(planned: &Value, c: &ContainerInfo) -> Value {
    let mut out = planned.clone();
    set(&mut out, "id", s(&c.id));
    let fill = |out: &mut Value, k: &str, v: Value| {
        if get(out, k).is_none_or(|x| !x.is_known()) {
            set(out, k, v);
        }
    };
    fill(&mut out, "hostname", s(&c.hostname));
    fill(&mut out, "command", strings(&c.command));
    fill(&mut out, "entrypoint", strings(&c.entrypoint));
    fill(&mut out, "env", Value::set(Type::String, Vec::new()));
    fill(&mut out, "stop_signal", s("SIGTERM"));
    fill(&mut out, "stop_timeout", Value::int(0));
    fill(&mut out, "bridge", s(""));
    fill(&mut out, "container_logs", Value::null(Type::String));
    fill(
        &mut out,
        "labels",
        get(planned, "labels")
            .cloned()
            .unwrap_or_else(|| Value::set(label_schema().implied_type(), Vec::new())),
    );
    set(
        &mut out,
        "exit_code",
        if c.running {
            Value::null(Type::Number)
        } else {
            Value::int(c.exit_code)
        },
    );
    let nets = c
        .networks
        .iter()
        .map(|n| {
            Value::object(BTreeMap::from([
                ("network_name".to_string(), s(&n.network_name)),
                ("ip_address".to_string(), s(&n.ip_address)),
                (
                    "ip_prefix_length".to_string(),
                    Value::int(n.ip_prefix_length),
                ),
                ("gateway".to_string(), s(&n.gateway)),
                ("global_ipv6_address".to_string(), s("")),
                ("global_ipv6_prefix_length".to_string(), Value::int(0)),
                ("ipv6_gateway".to_string(), s("")),
                ("mac_address".to_string(), s(&n.mac_address)),
            ]))
        })
        .collect();
    set(&mut out, "network_data", Value::list(net_data_type(), nets));
    // Ports published on any free port get the one bound.
    if let Some(ports) = get(planned, "ports").and_then(Value::as_seq) {
        let t = ports_schema().implied_type();
        let bound: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if get(&p, "external").is_none_or(|x| !x.is_known()) {
                    let internal = get_i64(&p, "internal").unwrap_or(0);
                    let ext = c
                        .ports
                        .iter()
                        .find(|b| i64::from(b.internal) == internal)
                        .map_or(0, |b| i64::from(b.external));
                    set(&mut p, "external", Value::int(ext));
                }
                p
            })
            .collect();
        set(&mut out, "ports", Value::list(t, bound));
    }
    out
}

fn ports_schema() -> Schema {
    Schema::default()
        .attr("internal", Attr::required(Type::Number).force_new())
        .attr("external", Attr::opt_computed(Type::Number).force_new())
        .attr(
            "ip",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("0.0.0.0")),
        )
        .attr(
            "protocol",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("tcp")),
        )
}

impl ResourceType for Container {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn modify_plan(
        &self,
        prior: Option<&Value>,
        _config: &Value,
        mut p: Planned,
    ) -> Result<Planned, String> {
        // Engine-decided values follow a replacement; they stay otherwise.
        if prior.is_none() || !p.requires_replace.is_empty() {
            set(&mut p.value, "exit_code", Value::unknown(Type::Number));
            set(
                &mut p.value,
                "network_data",
                Value::unknown(Type::list(net_data_type())),
            );
        }
        Ok(p)
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let e = self.shared.engine(ctx)?;
        let Some(prior) = prior else {
            let spec = container_spec(planned)?;
            let id = e.create_container(&spec)?;
            if get_bool(planned, "start") != Some(false)
                && let Err(err) = e.start_container(&id)
            {
                let _ = e.remove_container(&id, true);
                return Err(err);
            }
            let info = e
                .container(&id)?
                .ok_or_else(|| format!("container {} vanished after start", spec.name))?;
            if get_bool(planned, "must_run") != Some(false)
                && get_bool(planned, "start") != Some(false)
                && !info.running
                && !spec.auto_remove
            {
                return Err(format!(
                    "container {} exited after creation (exit code {}); set must_run = false for a container that is meant to stop",
                    spec.name, info.exit_code
                ));
            }
            return Ok(container_state(planned, &info));
        };
        let id = get_str(prior, "id").ok_or("container in state has no id")?;
        if restart_policy(prior) != restart_policy(planned) {
            e.set_restart(id, &restart_policy(planned))?;
        }
        if get_bool(prior, "must_run") == Some(false)
            && get_bool(planned, "must_run") != Some(false)
            && get_bool(planned, "start") != Some(false)
        {
            e.start_container(id)?;
        }
        let info = e
            .container(id)?
            .ok_or_else(|| format!("container {id} is gone"))?;
        Ok(container_state(planned, &info))
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let e = self.shared.engine(ctx)?;
        let Some(id) = get_str(prior, "id") else {
            return Ok(None);
        };
        let Some(info) = e.container(id)? else {
            return Ok(None);
        };
        let mut v = container_state(prior, &info);
        // A stopped container that must run shows as must_run = false, so
        // the plan's update (back to true) starts it, as the provider does.
        if !info.running && get_bool(prior, "must_run") != Some(false) {
            set(&mut v, "must_run", Value::bool(false));
        }
        Ok(Some(v))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        let e = self.shared.engine(ctx)?;
        let Some(id) = get_str(prior, "id") else {
            return Ok(());
        };
        if e.container(id)?.is_none() {
            return Ok(());
        }
        // As the provider: stop with destroy_grace_seconds (0, a kill, when unset), then force-remove.
        e.stop_container(
            id,
            Some(u32_of(prior, "destroy_grace_seconds").unwrap_or(0)),
        )?;
        e.remove_container(id, get_bool(prior, "remove_volumes") != Some(false))
    }
}

fn container_schema() -> Schema {
    let list = || Type::list(Type::String);
    let sset = || Type::set(Type::String);
    let volumes = Schema::default()
        .attr("from_container", Attr::optional(Type::String).force_new())
        .attr("container_path", Attr::optional(Type::String).force_new())
        .attr("host_path", Attr::optional(Type::String).force_new())
        .attr("volume_name", Attr::optional(Type::String).force_new())
        .attr("read_only", Attr::optional(Type::Bool).force_new());
    let networks = Schema::default()
        .attr("name", Attr::required(Type::String).force_new())
        .attr("aliases", Attr::optional(sset()).force_new())
        .attr("ipv4_address", Attr::optional(Type::String).force_new())
        .attr("ipv6_address", Attr::optional(Type::String).force_new());
    let health = Schema::default()
        .attr("test", Attr::optional(list()))
        .attr(
            "interval",
            Attr::optional(Type::String).with_default(s("0s")),
        )
        .attr(
            "timeout",
            Attr::optional(Type::String).with_default(s("0s")),
        )
        .attr(
            "start_period",
            Attr::optional(Type::String).with_default(s("0s")),
        )
        .attr(
            "start_interval",
            Attr::optional(Type::String).with_default(s("0s")),
        )
        .attr(
            "retries",
            Attr::optional(Type::Number).with_default(Value::int(0)),
        );
    let mut sch = Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("name", Attr::required(Type::String).force_new())
        .attr("image", Attr::required(Type::String).force_new())
        .attr(
            "rm",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "read_only",
            Attr::optional(Type::Bool)
                .force_new()
                .with_default(Value::bool(false)),
        )
        .attr(
            "start",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .attr(
            "attach",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "logs",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "wait",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "wait_timeout",
            Attr::optional(Type::Number).with_default(Value::int(60)),
        )
        .attr(
            "must_run",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .attr("exit_code", Attr::computed(Type::Number))
        .attr("container_logs", Attr::computed(Type::String))
        .attr("hostname", Attr::opt_computed(Type::String).force_new())
        .attr("command", Attr::opt_computed(list()).force_new())
        .attr("entrypoint", Attr::opt_computed(list()).force_new())
        .attr("user", Attr::optional(Type::String).force_new())
        .attr("working_dir", Attr::optional(Type::String).force_new())
        .attr("env", Attr::opt_computed(sset()).force_new())
        .attr(
            "restart",
            Attr::optional(Type::String).with_default(s("no")),
        )
        .attr("max_retry_count", Attr::optional(Type::Number))
        .attr(
            "remove_volumes",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .attr("destroy_grace_seconds", Attr::optional(Type::Number))
        .attr("stop_signal", Attr::opt_computed(Type::String).force_new())
        .attr("stop_timeout", Attr::opt_computed(Type::Number).force_new())
        .attr(
            "network_mode",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("bridge")),
        )
        .attr("bridge", Attr::computed(Type::String))
        .attr("network_data", Attr::computed(Type::list(net_data_type())))
        .block_new("ports", Nesting::List, ports_schema(), false)
        .block_new("volumes", Nesting::Set, volumes, false)
        .block_new("networks_advanced", Nesting::Set, networks, false)
        .block_new("labels", Nesting::Set, label_schema(), true)
        .block("healthcheck", Nesting::List, health);
    if let Some(h) = sch.blocks.get_mut("healthcheck") {
        h.computed = true;
    }
    sch
}

fn network_schema() -> Schema {
    let ipam = Schema::default()
        .attr("subnet", Attr::optional(Type::String).force_new())
        .attr("ip_range", Attr::optional(Type::String).force_new())
        .attr("gateway", Attr::optional(Type::String).force_new())
        .attr(
            "aux_address",
            Attr::optional(Type::map(Type::String)).force_new(),
        );
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("name", Attr::required(Type::String).force_new())
        .attr("driver", Attr::opt_computed(Type::String).force_new())
        .attr(
            "options",
            Attr::opt_computed(Type::map(Type::String)).force_new(),
        )
        .attr("internal", Attr::opt_computed(Type::Bool).force_new())
        .attr("attachable", Attr::optional(Type::Bool).force_new())
        .attr("ingress", Attr::optional(Type::Bool).force_new())
        .attr("ipv6", Attr::optional(Type::Bool).force_new())
        .attr(
            "ipam_driver",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("default")),
        )
        .attr(
            "ipam_options",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr("scope", Attr::computed(Type::String))
        .block_new("ipam_config", Nesting::Set, ipam, true)
        .block_new("labels", Nesting::Set, label_schema(), false)
}

fn volume_schema() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("name", Attr::opt_computed(Type::String).force_new())
        .attr("driver", Attr::opt_computed(Type::String).force_new())
        .attr(
            "driver_opts",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr("mountpoint", Attr::computed(Type::String))
        .block_new("labels", Nesting::Set, label_schema(), false)
}

fn image_schema() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("name", Attr::required(Type::String).force_new())
        .attr("image_id", Attr::computed(Type::String))
        .attr("repo_digest", Attr::computed(Type::String))
        .attr("keep_locally", Attr::optional(Type::Bool))
        .attr(
            "pull_triggers",
            Attr::optional(Type::set(Type::String)).force_new(),
        )
        .attr("force_remove", Attr::optional(Type::Bool))
        .attr(
            "triggers",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr(
            "platform",
            Attr::optional(Type::String).force_new().with_default(s("")),
        )
        .block_new("build", Nesting::Set, build_schema(), false)
}

/// The provider, its engine opened through `factory` (see [`EngineFactory`]).
pub fn docker_with(factory: Option<EngineFactory>) -> Provider {
    let shared = Shared {
        factory: factory.unwrap_or_else(no_engine),
    };
    let mut resources: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    resources.insert(
        "docker_image",
        Arc::new(Image {
            schema: image_schema(),
            shared: shared.clone(),
        }),
    );
    resources.insert(
        "docker_registry_image",
        Arc::new(RegistryImage {
            schema: registry_image_schema(),
            shared: shared.clone(),
        }),
    );
    resources.insert(
        "docker_network",
        Arc::new(Network {
            schema: network_schema(),
            shared: shared.clone(),
        }),
    );
    resources.insert(
        "docker_volume",
        Arc::new(Volume {
            schema: volume_schema(),
            shared: shared.clone(),
        }),
    );
    resources.insert(
        "docker_container",
        Arc::new(Container {
            schema: container_schema(),
            shared,
        }),
    );
    Provider {
        address: "registry.terraform.io/kreuzwerker/docker",
        resources,
        data: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(keel_go_duration("30s"), Some(30_000));
        assert_eq!(keel_go_duration("1m30s"), Some(90_000));
        assert_eq!(keel_go_duration("500ms"), Some(500));
        assert_eq!(keel_go_duration("0s"), Some(0));
        assert_eq!(keel_go_duration("x"), None);
        assert_eq!(keel_go_duration("5"), None);
    }
}
