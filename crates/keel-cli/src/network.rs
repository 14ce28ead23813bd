//! `keel network create|ls|inspect|rm|prune`, Docker's flags and output.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_net::{NetError, NetworkInfo, NetworkOptions, Networks};
use serde::Serialize;

use crate::Hint;
use crate::output::{Format, print_structured, table};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add a network-scoped alias for the container.
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (on networks created with --subnet).
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network (even when the container is gone).
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network: bridge, macvlan or ipvlan (these two need -o parent=IFNAME), or overlay (across the nodes of the cluster this root's agent joined).
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format, e.g. 172.30.0.0/16 (default: the next free one from Docker's pools).
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 gateway for the subnet (default: its first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container addresses from this sub-range of the subnet (CIDR).
    #[arg(long)]
    pub ip_range: Option<String>,
    /// Auxiliary addresses the network never hands out (NAME=IP).
    #[arg(long = "aux-address", value_name = "NAME=IP")]
    pub aux_address: Vec<String>,
    /// Restrict external access: no route or NAT out of the network.
    #[arg(long)]
    pub internal: bool,
    /// Enable IPv6 (not supported: keel's networks are IPv4).
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on the network (KEY=VALUE or KEY).
    #[arg(long)]
    pub label: Vec<String>,
    /// Driver options: `parent`, `macvlan_mode`, `ipvlan_mode`, `com.docker.network.bridge.enable_ip_masquerade`.
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output (`name=…`, `id=…`, `driver=…`).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Go template, `table TEMPLATE` or `json` (docker's --format).
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
    /// Output format (JSON like docker's unless yaml is asked for).
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub output: Format,
    /// Go template run on each network (docker's -f/--format).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

fn open(root: &Path) -> anyhow::Result<Networks> {
    Networks::open(root).context("cannot open network state")
}

/// Adds the hint a user can act on for the errors that have one.
fn with_hint(e: NetError, what: String) -> anyhow::Error {
    crate::hints::net(e).context(what)
}

pub fn network_command(root: &Path, cmd: NetworkCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommand::Create(a) => create(root, a),
        NetworkCommand::Ls(a) => ls(root, a),
        NetworkCommand::Inspect(a) => inspect(root, a),
        NetworkCommand::Rm(a) => rm(root, a),
        NetworkCommand::Prune(a) => prune(root, a),
        NetworkCommand::Connect(a) => connect(root, &a),
        NetworkCommand::Disconnect(a) => disconnect(root, &a),
    }
}

fn connect(root: &Path, a: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let what = || format!("cannot connect {} to network {}", a.container, a.network);
    let info = open(root)?
        .inspect(&a.network)
        .map_err(|e| with_hint(e, what()))?;
    if matches!(info.driver.as_str(), "host" | "null") {
        return Err(anyhow::Error::new(keel_runtime::RuntimeError::SharedNetns).context(what()));
    }
    let c = crate::container::open(root)?;
    let id = c
        .resolve(&a.container)
        .map_err(|e| crate::container::hinted(e).context(what()))?;
    let net = crate::container::network_attacher(root);
    let ep = keel_runtime::EndpointConfig {
        network: info.name.clone(),
        aliases: a.alias.clone(),
        ip: a.ip.clone(),
    };
    keel_runtime::engine::connect(&c, &id, net.as_ref(), &ep)
        .map_err(|e| crate::container::hinted(e).context(what()))?;
    Ok(ExitCode::SUCCESS)
}

fn disconnect(root: &Path, a: &DisconnectArgs) -> anyhow::Result<ExitCode> {
    let what = || {
        format!(
            "cannot disconnect {} from network {}",
            a.container, a.network
        )
    };
    let nets = open(root)?;
    let info = nets.inspect(&a.network).map_err(|e| with_hint(e, what()))?;
    let c = crate::container::open(root)?;
    let id = match c.resolve(&a.container) {
        Ok(id) => id,
        // -f cleans up an endpoint whose container is gone.
        Err(e) => {
            let stale = info
                .containers
                .iter()
                .find(|ep| ep.name == a.container || ep.container_id.starts_with(&a.container));
            return match (a.force, stale) {
                (true, Some(ep)) => {
                    nets.detach_network(&ep.container_id, &info.name)
                        .with_context(what)?;
                    Ok(ExitCode::SUCCESS)
                }
                _ => Err(crate::container::hinted(e).context(what())),
            };
        }
    };
    let net = crate::container::network_attacher(root);
    keel_runtime::engine::disconnect(&c, &id, net.as_ref(), &info.name)
        .map_err(|e| crate::container::hinted(e).context(what()))?;
    Ok(ExitCode::SUCCESS)
}

/// `KEY=VALUE` pairs of a repeated flag (`KEY` alone is an empty value where `bare` allows).
fn pairs(flag: &str, items: &[String], bare: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for it in items {
        let (k, v) = match it.split_once('=') {
            Some((k, v)) => (k, v),
            None if bare => (it.as_str(), ""),
            None => anyhow::bail!("invalid {flag} {it:?}: expected KEY=VALUE"),
        };
        if k.is_empty() {
            anyhow::bail!("invalid {flag} {it:?}: the key is empty");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn create(root: &Path, a: CreateArgs) -> anyhow::Result<ExitCode> {
    if a.driver == "overlay" {
        return create_overlay(root, &a);
    }
    let o = NetworkOptions {
        id: None,
        driver: a.driver.clone(),
        subnet: a.subnet.clone(),
        gateway: a.gateway.clone(),
        ip_range: a.ip_range.clone(),
        aux_addresses: pairs("--aux-address", &a.aux_address, false)?,
        internal: a.internal,
        ipv6: a.ipv6,
        labels: pairs("--label", &a.label, true)?,
        options: pairs("--opt", &a.opt, false)?,
    };
    let info = open(root)?
        .create_with(&a.name, &o)
        .map_err(|e| with_hint(e, format!("cannot create network {}", a.name)))?;
    println!("{}", info.id);
    Ok(ExitCode::SUCCESS)
}

fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, keel_agent::AgentError>>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    Ok(rt.block_on(f)?)
}

/// How long the node's agent may take to set a new overlay network up here.
const OVERLAY_SETUP: std::time::Duration = std::time::Duration::from_secs(20);

/// `network create -d overlay`: recorded in the cluster this root's agent
/// joined; every agent (this node's too) makes its part. Returns once
/// this node has it, so a `run --network` can follow at once.
fn create_overlay(root: &Path, a: &CreateArgs) -> anyhow::Result<ExitCode> {
    let what = || format!("cannot create network {}", a.name);
    if a.gateway.is_some()
        || a.ip_range.is_some()
        || !a.aux_address.is_empty()
        || a.internal
        || a.ipv6
        || !a.opt.is_empty()
        || !a.label.is_empty()
    {
        return Err(anyhow::anyhow!(
            "an overlay network takes --subnet only (its gateway is the subnet's first address; each node hands out its own slice)"
        )
        .context(what()));
    }
    if !root.join("agent/kubeconfig").exists() {
        return Err(anyhow::anyhow!("this keel root is no node of a cluster")
            .context(Hint::new(
                "an overlay network spans the nodes of a keel cluster: join this host with `keel agent --server URL --token TOKEN` (same --root) first",
            ))
            .context(what()));
    }
    let net = block_on(async {
        let client = keel_agent::overlaynet::node_client(root).await?;
        keel_agent::overlaynet::create(&client, &a.name, a.subnet.as_deref()).await
    })
    .with_context(what)?;
    let nets = open(root)?;
    let deadline = std::time::Instant::now() + OVERLAY_SETUP;
    loop {
        if nets.inspect(&net.id).is_ok() {
            println!("{}", net.id);
            return Ok(ExitCode::SUCCESS);
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "network {} is recorded in the cluster, but this node's agent has not set it up within {}s",
                a.name,
                OVERLAY_SETUP.as_secs()
            )
            .context(Hint::new("is `keel agent` running for this root?"))
            .context(what()));
        }
        // The agent reconciles once a second.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `network rm` of an overlay network: removed from the cluster (refused
/// while any node has containers on it), then from this node; the other
/// agents remove theirs.
fn remove_overlay(root: &Path, nets: &Networks, name: &str) -> anyhow::Result<()> {
    let what = || format!("cannot remove network {name}");
    let info = nets.inspect(name).map_err(|e| with_hint(e, what()))?;
    if !info.containers.is_empty() {
        return Err(with_hint(
            NetError::ActiveEndpoints {
                name: info.name.clone(),
                id: info.id[..12].to_string(),
            },
            what(),
        ));
    }
    block_on(async {
        let client = keel_agent::overlaynet::node_client(root).await?;
        keel_agent::overlaynet::remove(&client, &info.name).await
    })
    .with_context(what)?;
    match nets.remove(&info.id) {
        Ok(()) | Err(NetError::NotFound(_)) => Ok(()),
        Err(e) => Err(with_hint(e, what())),
    }
}

fn matches_filter(n: &NetworkInfo, filters: &[(String, String)]) -> bool {
    // Docker: different keys must all match; values of one key are alternatives.
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        by_key.entry(k.as_str()).or_default().push(v.as_str());
    }
    by_key.iter().all(|(k, vs)| {
        vs.iter().any(|v| match *k {
            "name" => n.name.contains(v),
            "id" => n.id.starts_with(v),
            "driver" => n.driver == *v,
            // `label=KEY` or `label=KEY=VALUE`, as docker matches them.
            "label" => match v.split_once('=') {
                Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                None => n.labels.contains_key(*v),
            },
            "scope" => n.scope == *v,
            "type" => match *v {
                "builtin" => ["bridge", "host", "none"].contains(&n.name.as_str()),
                "custom" => !["bridge", "host", "none"].contains(&n.name.as_str()),
                _ => false,
            },
            _ => false,
        })
    })
}

fn ls(root: &Path, a: LsArgs) -> anyhow::Result<ExitCode> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad filter {f:?}: expected KEY=VALUE"))?;
        if !["name", "id", "driver", "scope", "type", "label"].contains(&k) {
            return Err(anyhow::Error::new(Hint::new(
                "filters: name, id, driver, scope, type, label",
            ))
            .context(format!("invalid filter {k:?}")));
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let mut nets = open(root)?.list().context("cannot list networks")?;
    nets.retain(|n| matches_filter(n, &filters));
    nets.sort_by(|x, y| x.name.cmp(&y.name));
    let id = |n: &NetworkInfo| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id[..12].to_string()
        }
    };
    if a.quiet {
        for n in &nets {
            println!("{}", id(n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(t) = crate::template::Template::from_flag(a.format.as_deref())?
        .map(|t| t.headers(&[("ID", "NETWORK ID")]))
    {
        // The fields of docker's network formatter.
        let v: Vec<serde_json::Value> = nets
            .iter()
            .map(|n| {
                let d = serde_json::to_value(DockerNetwork::from(n)).unwrap_or_default();
                serde_json::json!({"ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": n.scope,
                    "IPv6": d["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                    "Internal": d["Internal"].as_bool().unwrap_or(false).to_string(),
                    "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    "CreatedAt": d["Created"]})
            })
            .collect();
        t.print(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.output != Format::Table {
        let v: Vec<DockerNetwork> = nets.iter().map(DockerNetwork::from).collect();
        print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| vec![id(n), n.name.clone(), n.driver.clone(), n.scope.clone()])
        .collect();
    print!(
        "{}",
        table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// `docker network inspect`'s object, field for field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerNetwork {
    name: String,
    id: String,
    created: String,
    scope: String,
    driver: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Ipam,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_from: ConfigFrom,
    config_only: bool,
    containers: BTreeMap<String, DockerEndpoint>,
    options: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Ipam {
    driver: String,
    options: BTreeMap<String, String>,
    config: Vec<IpamConfig>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfig {
    subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    ip_range: String,
    gateway: String,
    #[serde(
        rename = "AuxiliaryAddresses",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigFrom {
    network: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEndpoint {
    name: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    mac_address: String,
    #[serde(rename = "IPv4Address")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    ipv6_address: String,
}

impl From<&NetworkInfo> for DockerNetwork {
    fn from(n: &NetworkInfo) -> Self {
        let mut options = n.options.clone();
        if let Some(b) = &n.bridge {
            options.insert("com.docker.network.bridge.name".into(), b.clone());
        }
        DockerNetwork {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: n.scope.clone(),
            driver: n.driver.clone(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: match (&n.subnet, n.gateway) {
                    (Some(s), Some(g)) => vec![IpamConfig {
                        subnet: s.clone(),
                        ip_range: n.ip_range.clone().unwrap_or_default(),
                        gateway: g.to_string(),
                        aux_addresses: n.aux_addresses.clone(),
                    }],
                    _ => Vec::new(),
                },
            },
            internal: n.internal,
            attachable: false,
            ingress: false,
            config_from: ConfigFrom {
                network: String::new(),
            },
            config_only: false,
            containers: n
                .containers
                .iter()
                .map(|e| {
                    (
                        e.container_id.clone(),
                        DockerEndpoint {
                            name: e.name.clone(),
                            endpoint_id: e.endpoint_id.clone(),
                            mac_address: e.mac.clone(),
                            ipv4_address: e.ipv4.clone(),
                            ipv6_address: String::new(),
                        },
                    )
                })
                .collect(),
            options,
            labels: n.labels.clone(),
        }
    }
}

fn inspect(root: &Path, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let template = crate::template::Template::from_flag(a.format.as_deref())?;
    let nets = open(root)?;
    let mut found = Vec::new();
    let mut err = None;
    for name in &a.networks {
        match nets.inspect(name) {
            Ok(n) => found.push(DockerNetwork::from(&n)),
            Err(e) => {
                err.get_or_insert(with_hint(e, format!("cannot inspect network {name}")));
            }
        }
    }
    // Like docker: what was found is printed, a missing one still fails the command.
    if let Some(t) = template {
        let v: Vec<serde_json::Value> = found
            .iter()
            .map(|n| serde_json::to_value(n).unwrap_or_default())
            .collect();
        t.print(&v)?;
    } else if !found.is_empty() || err.is_none() {
        print_structured(&found, a.output)?;
    }
    match err {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Removes network `name`, waiting first for endpoints that `--rm`
/// containers' monitors are releasing (see [`wait_for_releases`]).
pub(crate) fn remove_network(root: &Path, nets: &Networks, name: &str) -> Result<(), NetError> {
    match nets.remove(name) {
        Err(NetError::ActiveEndpoints { .. }) => {
            wait_for_releases(root, nets, Some(name));
            nets.remove(name)
        }
        r => r,
    }
}

/// See `keel_runtime::network::wait_for_releases`.
pub(crate) fn wait_for_releases(root: &Path, nets: &Networks, network: Option<&str>) {
    if let Ok(containers) = keel_runtime::record::Containers::open(root) {
        keel_runtime::network::wait_for_releases(&containers, nets, network);
    }
}

fn rm(root: &Path, a: RmArgs) -> anyhow::Result<ExitCode> {
    let nets = open(root)?;
    let mut errors = Vec::new();
    for name in &a.networks {
        let res = if nets.inspect(name).is_ok_and(|n| n.driver == "overlay") {
            remove_overlay(root, &nets, name)
        } else {
            remove_network(root, &nets, name)
                .map_err(|e| with_hint(e, format!("cannot remove network {name}")))
        };
        match res {
            Ok(()) => println!("{name}"),
            Err(e) => errors.push(e),
        }
    }
    // Every name is tried; all but the last failure are reported here, the last
    // one as the command's error.
    let last = errors.pop();
    for e in errors {
        eprintln!("{}", crate::render_error(&e));
    }
    match last {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Removes the user networks no container uses (`network prune`, `system
/// prune`); returns their names.
pub fn prune_unused(root: &Path) -> anyhow::Result<Vec<String>> {
    let nets = open(root)?;
    wait_for_releases(root, &nets, None);
    let removed = nets.prune().context("cannot prune networks")?;
    // The predefined networks stay, but an idle default bridge gives back its
    // Linux bridge and iptables rules; the next container brings them back.
    nets.release_idle()
        .context("cannot release idle network bridges")?;
    Ok(removed)
}

fn prune(root: &Path, a: PruneArgs) -> anyhow::Result<ExitCode> {
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = prune_unused(root)?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, driver: &str) -> NetworkInfo {
        NetworkInfo {
            id: "0123456789abcdef".into(),
            name: name.into(),
            driver: driver.into(),
            scope: "local".into(),
            subnet: None,
            gateway: None,
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            internal: false,
            labels: BTreeMap::from([("team".into(), "blue".into())]),
            options: BTreeMap::new(),
            bridge: None,
            created: String::new(),
            containers: Vec::new(),
        }
    }

    #[test]
    fn filters_like_docker() {
        let f = |s: &[(&str, &str)]| -> Vec<(String, String)> {
            s.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let n = net("appnet", "bridge");
        assert!(matches_filter(
            &n,
            &f(&[("name", "app"), ("driver", "bridge")])
        ));
        assert!(matches_filter(&n, &f(&[("name", "x"), ("name", "pn")])));
        assert!(!matches_filter(
            &n,
            &f(&[("name", "app"), ("driver", "host")])
        ));
        assert!(matches_filter(
            &n,
            &f(&[("type", "custom"), ("id", "0123")])
        ));
        assert!(!matches_filter(
            &net("host", "host"),
            &f(&[("type", "custom")])
        ));
        assert!(matches_filter(&n, &f(&[("label", "team")])));
        assert!(matches_filter(&n, &f(&[("label", "team=blue")])));
        assert!(!matches_filter(&n, &f(&[("label", "team=red")])));
        assert!(!matches_filter(&n, &f(&[("label", "owner")])));
    }
}
