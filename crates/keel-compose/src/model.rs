//! The typed view of a normalized project, for the reconciler. Deserialized
//! from [`crate::Project::to_value`], so every field is already in long form.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Model {
    pub name: String,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(default)]
    pub configs: BTreeMap<String, FileObject>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Service {
    pub profiles: Vec<String>,
    pub build: Option<Build>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub command: Option<Vec<String>>,
    pub configs: Vec<FileRef>,
    pub container_name: Option<String>,
    pub cpus: Option<serde_yaml_ng::Value>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub deploy: Option<Deploy>,
    pub dns: Vec<String>,
    pub dns_opt: Vec<String>,
    pub dns_search: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, Option<String>>,
    pub expose: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub hostname: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub image: Option<String>,
    pub init: Option<bool>,
    pub labels: BTreeMap<String, Option<String>>,
    pub logging: Option<Logging>,
    pub mem_limit: Option<serde_yaml_ng::Value>,
    pub memswap_limit: Option<serde_yaml_ng::Value>,
    pub network_mode: Option<String>,
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub pids_limit: Option<serde_yaml_ng::Value>,
    pub ports: Vec<Port>,
    pub pull_policy: Option<String>,
    pub read_only: bool,
    pub restart: Option<String>,
    pub scale: Option<i64>,
    pub secrets: Vec<FileRef>,
    pub shm_size: Option<serde_yaml_ng::Value>,
    pub stop_grace_period: Option<String>,
    pub stop_signal: Option<String>,
    pub sysctls: BTreeMap<String, Option<serde_yaml_ng::Value>>,
    pub tmpfs: Vec<String>,
    /// `nofile: 1024` or `nofile: {soft: 1024, hard: 2048}`.
    pub ulimits: BTreeMap<String, serde_yaml_ng::Value>,
    pub user: Option<String>,
    pub volumes: Vec<Mount>,
    pub working_dir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    pub args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, Option<String>>,
    pub cache_from: Vec<String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Dependency {
    pub condition: String,
    pub restart: bool,
    pub required: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Deploy {
    pub replicas: Option<i64>,
    pub resources: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServiceNetwork {
    /// Higher joins first; the first network is the container's primary.
    pub priority: Option<i64>,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Port {
    pub mode: String,
    pub host_ip: Option<String>,
    pub target: u16,
    pub published: Option<String>,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// `type: tmpfs` options (`size`, `mode`).
    pub tmpfs: Option<serde_yaml_ng::Value>,
    /// `type: volume` options (`nocopy`).
    pub volume: Option<MountVolume>,
}

/// `logging:` (driver and its options, as `--log-driver`/`--log-opt`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountVolume {
    /// Keep an empty volume empty instead of filling it from the image.
    pub nocopy: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Network {
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub internal: bool,
    pub ipam: Option<Ipam>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Volume {
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileObject {
    pub name: String,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub external: bool,
}
