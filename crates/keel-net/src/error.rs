//! [`NetError`]: everything that can fail in keel-net.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::ports::Protocol;

/// Everything that can fail in keel-net, one variant per failed operation.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot lock network state {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read network state {path}: {source}")]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt network state {path}: {source}")]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write network state {path}: {source}")]
    WriteState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("network with name {0} already exists")]
    NameExists(String),
    #[error("network {0} not found")]
    NotFound(String),
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet { subnet: String, reason: String },
    #[error("subnet {subnet} overlaps with network {other} ({other_subnet})")]
    SubnetOverlap {
        subnet: String,
        other: String,
        other_subnet: String,
    },
    #[error("no free subnet left in the default address pools; pass --subnet")]
    PoolExhausted,
    #[error("no free IP address left in network {0}")]
    AddressesExhausted(String),
    #[error("network {name} id {id} has active endpoints")]
    ActiveEndpoints { name: String, id: String },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("network {0} is not a bridge network; the runtime sets up host and none itself")]
    NotBridge(String),
    #[error("invalid container id {0:?}")]
    InvalidContainerId(String),
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyAttached { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotAttached { container: String, network: String },
    #[error("user specified IP address is supported on user defined networks only")]
    IpOnDefaultNetwork,
    #[error(
        "user specified IP address is supported only when connecting to networks with user configured subnets"
    )]
    IpWithoutUserSubnet,
    #[error("invalid address {ip}: it does not belong to any of network {network}'s subnets")]
    IpOutsideSubnet { ip: Ipv4Addr, network: String },
    #[error("address {ip} is already in use on network {network}")]
    IpInUse { ip: Ipv4Addr, network: String },
    #[error("invalid --add-host {spec:?}: {reason}")]
    ExtraHost { spec: String, reason: String },
    #[error("{0} is not an ip address")]
    InvalidDns(String),
    #[error("invalid port specification {spec:?}: {reason}")]
    PortSpec { spec: String, reason: String },
    #[error("bind for {addr}:{port}/{proto} failed: port is already allocated ({by})")]
    PortTaken {
        addr: String,
        port: u16,
        proto: Protocol,
        by: String,
    },
    #[error(
        "bind for {addr}:{first}-{last}/{proto} failed: every port of the range is already allocated"
    )]
    PortRangeTaken {
        addr: String,
        first: u16,
        last: u16,
        proto: Protocol,
    },
    #[error("cannot publish on {0}: only IPv4 host addresses are supported")]
    Ipv6Unsupported(IpAddr),
    #[error("cannot publish a port on {addr}: {source}")]
    PublishAddress {
        addr: IpAddr,
        source: std::io::Error,
    },
    #[error("cannot find a free host port: {0}")]
    NoFreePort(std::io::Error),
    #[error("cannot create bridge {name}: {reason}")]
    CreateBridge { name: String, reason: String },
    #[error("cannot create veth {name}: {reason}")]
    CreateVeth { name: String, reason: String },
    #[error("cannot configure the interface in network namespace {netns}: {reason}")]
    ConfigureNetns { netns: PathBuf, reason: String },
    #[error("cannot delete link {name}: {reason}")]
    DeleteLink { name: String, reason: String },
    #[error("iptables: {0}")]
    Iptables(String),
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    #[error("cannot list the host's routes: {0}")]
    ListRoutes(String),
    #[error("cannot list the host's links: {0}")]
    ListLinks(String),
    #[error("cannot write {path}: {source}")]
    WriteHostsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read random bytes: {0}")]
    Random(std::io::Error),
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    #[error("parent interface {0} not found on this host")]
    NoParent(String),
    #[error("network {network} already uses parent interface {parent}")]
    ParentInUse { parent: String, network: String },
    #[error("cannot create {kind} link on {parent}: {reason}")]
    CreateSublink {
        kind: String,
        parent: String,
        reason: String,
    },
    /// The runtime has no network driver (keel-net's state cannot be opened).
    #[error("network {network} is unavailable: {reason}")]
    Unavailable { network: String, reason: String },
    /// The pod network across nodes (vxlan, routes, neighbours, FDB).
    #[error("pod network: {0}")]
    Overlay(String),
}
