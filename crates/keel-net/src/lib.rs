//! keel-net: container networking on one host. [`Networks`] keeps the networks
//! (the predefined `bridge`, `host`, `none` and user-defined bridges), their IPAM
//! leases and container endpoints in `<root>/net/state.json` under an exclusive
//! `flock`, and drives the kernel through the [`Kernel`] trait ([`HostKernel`]:
//! Linux bridge, one veth pair per container, iptables NAT for outbound traffic
//! and DNAT for published ports, isolation between networks). A container may
//! be attached to several networks (`eth0` with the default route and the
//! published ports, then `eth1`, …). It also maintains each container's
//! `/etc/hosts` (peers by name and alias on every user network it is on,
//! `--add-host` entries) and `/etc/resolv.conf` (with `--dns*` settings).
//! [`parse_port_spec`] parses Docker's `-p` syntax into [`PortMapping`]s.
//!
//! For the runtime: create the container's network namespace and bind-mount
//! it to a file, call [`Networks::attach`], bind-mount the returned
//! `hosts_file` and `resolv_conf` over `/etc/hosts` and `/etc/resolv.conf`
//! (keel-net rewrites them in place when peers come and go), and call
//! [`Networks::detach`] when the container stops (idempotent, any order with
//! removing the namespace). `host` and `none` never reach keel-net. Tests
//! with a temporary root call [`Networks::release_idle`] before deleting it.

mod hosts;
mod ipam;
mod kernel;
mod ports;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

pub use hosts::{
    DnsConfig, ExtraHost, HOST_GATEWAY, parse_extra_host, render_hosts, render_hosts_with,
    render_resolv_conf, render_resolv_conf_with,
};
pub use kernel::{HostKernel, Kernel, Rule, VethSpec};
pub use ports::{PortMapping, Protocol, parse_port_spec};

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
    #[error("cannot write {path}: {source}")]
    WriteHostsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read random bytes: {0}")]
    Random(std::io::Error),
}

/// What the runtime asks for when a container joins a bridge network.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container_id: String,
    pub name: String,
    pub hostname: String,
    /// A bind-mounted nsfs file of the container's network namespace.
    pub netns: PathBuf,
    /// `bridge` (the default network) or a user network's name or ID.
    pub network: String,
    pub aliases: Vec<String>,
    pub ports: Vec<PortMapping>,
    /// A static address (`--ip`); only on user networks created with a subnet.
    pub ip: Option<Ipv4Addr>,
    /// `--add-host` entries, the same on every network of the container.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--dns*` settings, the same on every network of the container.
    pub dns: DnsConfig,
}

/// The result of [`Networks::attach`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The requested ports with host ports resolved.
    pub ports: Vec<PortMapping>,
    /// The container's /etc/hosts, kept up to date in place; bind-mount it.
    pub hosts_file: PathBuf,
    /// The container's /etc/resolv.conf; bind-mount it.
    pub resolv_conf: PathBuf,
    /// The network's name (useful for `inspect`).
    pub network: String,
    pub network_id: String,
    pub endpoint_id: String,
    /// The interface inside the container: `eth0` for the first network, then `eth1`, ….
    pub ifname: String,
    pub aliases: Vec<String>,
}

/// A container's endpoint as shown by `network inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    pub container_id: String,
    pub name: String,
    pub endpoint_id: String,
    pub mac: String,
    pub ipv4: String,
}

/// A network as listed and inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null` (Docker's names).
    pub driver: String,
    pub scope: String,
    pub subnet: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    /// The Linux bridge's name.
    pub bridge: Option<String>,
    /// RFC 3339.
    pub created: String,
    pub containers: Vec<EndpointInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetRecord {
    id: String,
    name: String,
    driver: String,
    subnet: Option<Ipv4Net>,
    bridge: Option<String>,
    created: String,
    predefined: bool,
    /// Created with `--subnet`: only then may containers ask for a static IP (Docker's rule).
    #[serde(default)]
    user_subnet: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::struct_field_names)] // endpoint_id is Docker's name
struct Endpoint {
    container_id: String,
    endpoint_id: String,
    name: String,
    hostname: String,
    aliases: Vec<String>,
    network_id: String,
    ip: Ipv4Addr,
    mac: String,
    host_if: String,
    ports: Vec<PortMapping>,
    #[serde(default = "eth0")]
    ifname: String,
    #[serde(default)]
    extra_hosts: Vec<ExtraHost>,
    #[serde(default)]
    dns: DnsConfig,
}

fn eth0() -> String {
    "eth0".to_string()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    networks: Vec<NetRecord>,
    endpoints: Vec<Endpoint>,
}

impl State {
    fn find(&self, name: &str) -> Option<&NetRecord> {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .or_else(|| self.networks.iter().find(|n| n.id == name))
            .or_else(|| {
                let mut hits = self
                    .networks
                    .iter()
                    .filter(|n| name.len() >= 3 && n.id.starts_with(name));
                match (hits.next(), hits.next()) {
                    (Some(n), None) => Some(n),
                    _ => None,
                }
            })
    }

    fn endpoints_of<'a>(&'a self, net_id: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .iter()
            .filter(move |e| e.network_id == net_id)
    }

    /// A container's endpoints, in the order they were attached (the first is its primary).
    fn endpoints_of_container<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.iter().filter(move |e| e.container_id == id)
    }

    fn network_by_id(&self, id: &str) -> Option<&NetRecord> {
        self.networks.iter().find(|n| n.id == id)
    }
}

/// Held while working on the state: the exclusive flock lives as long as this.
struct Locked {
    _lock: File,
    state: State,
}

/// Network state under `<root>/net` plus the kernel it drives.
pub struct Networks {
    dir: PathBuf,
    kernel: Box<dyn Kernel>,
    host_resolv_conf: PathBuf,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const NETWORKS: &str = "networks.json";
/// The default root's default bridge, like Docker's `docker0`.
const DEFAULT_BRIDGE: &str = "keel0";
const DEFAULT_ROOT: &str = "/var/lib/keel";

fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn random_hex(bytes: usize) -> Result<String, NetError> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(NetError::Random)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn ports_clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

fn tag_container(id: &str) -> String {
    format!("keel:{id}")
}

fn tag_network(id: &str) -> String {
    format!("keel-net:{}", &id[..12.min(id.len())])
}

/// Rules every bridge network needs: outbound NAT, localhost-published ports, forwarding.
fn network_rules(net: &NetRecord) -> Vec<Rule> {
    let (Some(br), Some(subnet)) = (&net.bridge, &net.subnet) else {
        return Vec::new();
    };
    let tag = tag_network(&net.id);
    let r = |table, chain, spec: String| Rule {
        table,
        chain,
        spec,
        tag: tag.clone(),
    };
    vec![
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s {subnet} ! -o {br} -j MASQUERADE"),
        ),
        // DNAT of 127.0.0.1 traffic keeps a loopback source, which the
        // container could not answer; masquerade it to the bridge address.
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s 127.0.0.0/8 -o {br} -m addrtype --src-type LOCAL -j MASQUERADE"),
        ),
        // A container reaching a published port through a host address gets
        // DNAT-ed back onto its own bridge; masquerade it so the reply returns
        // through the host (where the DNAT is undone), not straight over L2.
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE"),
        ),
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ),
        // Networks are isolated from each other, as Docker's are: traffic
        // from this bridge to another keel bridge is dropped unless it was
        // DNAT-ed to a published port. Containers on both networks talk over
        // their own interfaces on each bridge instead.
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-i {br} -o {br} -j ACCEPT"),
        ),
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-i {br} -o keel+ -m conntrack ! --ctstate DNAT -j DROP"),
        ),
        r("filter", "KEEL-FORWARD", format!("-i {br} -j ACCEPT")),
    ]
}

/// DNAT and forward-accept rules for one endpoint's published ports.
fn port_rules(ep: &Endpoint, bridge: &str) -> Vec<Rule> {
    let tag = tag_container(&ep.container_id);
    let mut v = Vec::new();
    for p in &ep.ports {
        let proto = p.protocol.as_str();
        let dst = p
            .host_ip
            .map(|ip| format!("-d {ip}/32 "))
            .unwrap_or_default();
        v.push(Rule {
            table: "nat",
            chain: "KEEL",
            spec: format!(
                "{dst}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}",
                p.host_port, ep.ip, p.container_port
            ),
            tag: tag.clone(),
        });
        v.push(Rule {
            table: "filter",
            chain: "KEEL-FORWARD",
            spec: format!(
                "-d {}/32 ! -i {bridge} -o {bridge} -p {proto} -m {proto} --dport {} -j ACCEPT",
                ep.ip, p.container_port
            ),
            tag: tag.clone(),
        });
    }
    v
}

impl Networks {
    /// Opens (creating on first use) the network state under `<root>/net`.
    pub fn open(root: &Path) -> Result<Networks, NetError> {
        Self::with_kernel(root, Box::new(HostKernel))
    }

    /// Like [`Networks::open`] with another kernel (tests use a fake one).
    pub fn with_kernel(root: &Path, kernel: Box<dyn Kernel>) -> Result<Networks, NetError> {
        let dir = root.join("net");
        std::fs::create_dir_all(dir.join("containers")).map_err(|e| NetError::WriteState {
            path: dir.clone(),
            source: e,
        })?;
        Ok(Networks {
            dir,
            kernel,
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
        })
    }

    /// `keel0` for the default root; other roots (tests, a second keel) get
    /// `keel0-<hash of root>` so they never share a bridge (and its addresses).
    fn default_bridge_name(&self) -> String {
        let root = self.dir.parent().unwrap_or(&self.dir);
        if root == Path::new(DEFAULT_ROOT) {
            return DEFAULT_BRIDGE.to_string();
        }
        // FNV-1a: stable across builds, unlike std's hasher.
        let h = root
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        format!("{DEFAULT_BRIDGE}-{:08x}", h as u32)
    }

    /// Where containers' resolv.conf is derived from (default `/etc/resolv.conf`).
    #[must_use]
    pub fn with_host_resolv_conf(mut self, path: PathBuf) -> Networks {
        self.host_resolv_conf = path;
        self
    }

    fn lock(&self) -> Result<Locked, NetError> {
        let lock_path = self.dir.join("lock");
        let lock_err = |e: std::io::Error| NetError::Lock {
            path: lock_path.clone(),
            source: e,
        };
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        flock(&f, FlockOperation::LockExclusive).map_err(|e| lock_err(e.into()))?;
        let path = self.dir.join(NETWORKS);
        let networks = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::ParseState {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let n = self.initial_networks()?;
                self.save_json(&path, &n, true)?;
                n
            }
            Err(e) => return Err(NetError::ReadState { path, source: e }),
        };
        let path = self.endpoints_path()?;
        let endpoints = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::ParseState {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget_earlier_boots();
                Vec::new()
            }
            Err(e) => return Err(NetError::ReadState { path, source: e }),
        };
        let state = State {
            networks,
            endpoints,
        };
        Ok(Locked { _lock: f, state })
    }

    /// Endpoints describe kernel state (veths, rules), which a reboot wipes; so
    /// they are kept per boot and written without fsync: after a crash the file
    /// of the old boot is simply ignored.
    fn endpoints_path(&self) -> Result<PathBuf, NetError> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_err(|e| {
            NetError::ReadState {
                path: "/proc/sys/kernel/random/boot_id".into(),
                source: e,
            }
        })?;
        Ok(self.dir.join(format!("endpoints-{}.json", boot.trim())))
    }

    /// Removes endpoint files and container files of earlier boots.
    fn forget_earlier_boots(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("endpoints-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("containers")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Docker's three predefined networks; the default bridge's subnet avoids the host's routes.
    fn initial_networks(&self) -> Result<Vec<NetRecord>, NetError> {
        let routes = self.kernel.routes()?;
        let subnet = ipam::pick_subnet(&routes, false)?;
        let created = now();
        let mk = |name: &str,
                  driver: &str,
                  subnet,
                  bridge: Option<&str>|
         -> Result<NetRecord, NetError> {
            Ok(NetRecord {
                id: random_hex(32)?,
                name: name.into(),
                driver: driver.into(),
                subnet,
                bridge: bridge.map(Into::into),
                created: created.clone(),
                predefined: true,
                user_subnet: false,
            })
        };
        Ok(vec![
            mk(
                "bridge",
                "bridge",
                Some(subnet),
                Some(&self.default_bridge_name()),
            )?,
            mk("host", "host", None, None)?,
            mk("none", "null", None, None)?,
        ])
    }

    /// Atomic replace: temp file, (fsync,) rename, (fsync directory).
    fn save_json<T: Serialize>(&self, path: &Path, v: &T, durable: bool) -> Result<(), NetError> {
        let werr = |e: std::io::Error| NetError::WriteState {
            path: path.to_path_buf(),
            source: e,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(werr)?;
        serde_json::to_writer_pretty(&mut tmp, v).map_err(|e| werr(e.into()))?;
        if durable {
            tmp.as_file().sync_all().map_err(werr)?;
        }
        tmp.persist(path).map_err(|e| werr(e.error))?;
        if durable {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(werr)?;
        }
        Ok(())
    }

    /// Network definitions: durable, the user was told they exist.
    fn save_networks(&self, st: &State) -> Result<(), NetError> {
        self.save_json(&self.dir.join(NETWORKS), &st.networks, true)
    }

    fn save_endpoints(&self, st: &State) -> Result<(), NetError> {
        self.save_json(&self.endpoints_path()?, &st.endpoints, false)
    }

    fn info(st: &State, n: &NetRecord) -> NetworkInfo {
        let prefix = n.subnet.map_or(0, |s| s.prefix_len());
        NetworkInfo {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            scope: "local".into(),
            subnet: n.subnet.map(|s| s.to_string()),
            gateway: n.subnet.map(ipam::gateway),
            bridge: n.bridge.clone(),
            created: n.created.clone(),
            containers: st
                .endpoints_of(&n.id)
                .map(|e| EndpointInfo {
                    container_id: e.container_id.clone(),
                    name: e.name.clone(),
                    endpoint_id: e.endpoint_id.clone(),
                    mac: e.mac.clone(),
                    ipv4: format!("{}/{prefix}", e.ip),
                })
                .collect(),
        }
    }

    /// Brings a bridge network's kernel side up if it is not (first use, or after a reboot).
    fn ensure_network_kernel(&self, net: &NetRecord) -> Result<(), NetError> {
        let (Some(br), Some(subnet)) = (&net.bridge, &net.subnet) else {
            return Ok(());
        };
        if !self
            .kernel
            .ensure_bridge(br, ipam::gateway(*subnet), subnet.prefix_len())?
        {
            return Ok(());
        }
        let res = (|| {
            self.kernel.sysctl("net.ipv4.ip_forward", "1")?;
            self.kernel
                .sysctl(&format!("net.ipv4.conf.{br}.route_localnet"), "1")?;
            self.kernel.ensure_chains()?;
            // Stale rules of an earlier incarnation of this network would double up.
            self.kernel.remove_rules(&tag_network(&net.id))?;
            self.kernel.add_rules(&network_rules(net))
        })();
        if res.is_err() {
            let _ = self.kernel.delete_link(br);
        }
        res
    }

    /// Makes sure the network's bridge is up before addresses are handed out.
    /// When it has to be created and nothing is attached, the default bridge's
    /// subnet is checked against the host's routes again (another keel root,
    /// a VPN or docker0 may have taken it since the state was initialized)
    /// and moved to a free one.
    fn prepare_bridge(&self, st: &mut State, mut net: NetRecord) -> Result<NetRecord, NetError> {
        let (Some(br), Some(subnet)) = (net.bridge.clone(), net.subnet) else {
            return Ok(net);
        };
        if self.kernel.link_exists(&br) {
            return Ok(net);
        }
        let _host = self.kernel.lock_host()?;
        if net.predefined && st.endpoints_of(&net.id).next().is_none() {
            let routes = self.kernel.routes()?;
            if routes.iter().any(|r| ipam::overlaps(*r, subnet)) {
                let mut taken = routes;
                taken.extend(
                    st.networks
                        .iter()
                        .filter(|n| n.id != net.id)
                        .filter_map(|n| n.subnet),
                );
                net.subnet = Some(ipam::pick_subnet(&taken, false)?);
                if let Some(rec) = st.networks.iter_mut().find(|n| n.id == net.id) {
                    rec.subnet = net.subnet;
                }
                self.save_networks(st)?;
            }
        }
        self.ensure_network_kernel(&net)?;
        Ok(net)
    }

    fn teardown_network_kernel(&self, net: &NetRecord) -> Result<(), NetError> {
        if let Some(br) = &net.bridge {
            self.kernel.delete_link(br)?;
            self.kernel.remove_rules(&tag_network(&net.id))?;
        }
        Ok(())
    }

    /// Creates a user-defined bridge network (and its Linux bridge) and returns it.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<NetworkInfo, NetError> {
        if !valid_name(name) {
            return Err(NetError::InvalidName(name.to_string()));
        }
        let mut l = self.lock()?;
        let st = &mut l.state;
        if st.networks.iter().any(|n| n.name == name) {
            return Err(NetError::NameExists(name.to_string()));
        }
        let keel_nets: Vec<(&NetRecord, Ipv4Net)> = st
            .networks
            .iter()
            .filter_map(|n| n.subnet.map(|s| (n, s)))
            .collect();
        // Held until the bridge exists, so the routes read below stay true.
        let _host = self.kernel.lock_host()?;
        let subnet_given = subnet.is_some();
        let subnet = if let Some(s) = subnet {
            let net = ipam::parse_subnet(s)?;
            if let Some((other, os)) = keel_nets.iter().find(|(_, os)| ipam::overlaps(net, *os)) {
                return Err(NetError::SubnetOverlap {
                    subnet: s.to_string(),
                    other: other.name.clone(),
                    other_subnet: os.to_string(),
                });
            }
            net
        } else {
            let mut taken: Vec<Ipv4Net> = keel_nets.iter().map(|(_, s)| *s).collect();
            taken.extend(self.kernel.routes()?);
            ipam::pick_subnet(&taken, true)?
        };
        let id = random_hex(32)?;
        let rec = NetRecord {
            bridge: Some(format!("keel-{}", &id[..10])),
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            subnet: Some(subnet),
            created: now(),
            predefined: false,
            user_subnet: subnet_given,
        };
        self.ensure_network_kernel(&rec)?;
        st.networks.push(rec.clone());
        if let Err(e) = self.save_networks(&l.state) {
            let _ = self.teardown_network_kernel(&rec);
            return Err(e);
        }
        Ok(Self::info(&l.state, &rec))
    }

    /// All networks, predefined first, then in creation order.
    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetError> {
        let l = self.lock()?;
        Ok(l.state
            .networks
            .iter()
            .map(|n| Self::info(&l.state, n))
            .collect())
    }

    /// One network by name, ID or unique ID prefix.
    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetError> {
        let l = self.lock()?;
        let n = l
            .state
            .find(name)
            .ok_or_else(|| NetError::NotFound(name.to_string()))?;
        Ok(Self::info(&l.state, n))
    }

    /// Removes a user network; refused for predefined networks and while containers are attached.
    pub fn remove(&self, name: &str) -> Result<(), NetError> {
        let mut l = self.lock()?;
        let n = l
            .state
            .find(name)
            .ok_or_else(|| NetError::NotFound(name.to_string()))?
            .clone();
        if n.predefined {
            return Err(NetError::Predefined(n.name));
        }
        if l.state.endpoints_of(&n.id).next().is_some() {
            return Err(NetError::ActiveEndpoints {
                name: n.name,
                id: n.id[..12].to_string(),
            });
        }
        self.teardown_network_kernel(&n)?;
        l.state.networks.retain(|x| x.id != n.id);
        self.save_networks(&l.state)
    }

    /// Takes down the kernel side (bridge, NAT rules) of every network without
    /// containers, keeping the networks themselves; the next attach brings it
    /// back. For tests and for cleaning a root up before deleting it.
    pub fn release_idle(&self) -> Result<(), NetError> {
        let l = self.lock()?;
        for n in &l.state.networks {
            if l.state.endpoints_of(&n.id).next().is_none() {
                self.teardown_network_kernel(n)?;
            }
        }
        Ok(())
    }

    /// Removes every user network without containers; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, NetError> {
        let mut l = self.lock()?;
        let unused: Vec<NetRecord> = l
            .state
            .networks
            .iter()
            .filter(|n| !n.predefined && l.state.endpoints_of(&n.id).next().is_none())
            .cloned()
            .collect();
        let mut removed = Vec::new();
        let mut first_err = None;
        for n in unused {
            match self.teardown_network_kernel(&n) {
                Ok(()) => {
                    l.state.networks.retain(|x| x.id != n.id);
                    removed.push(n.name);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.save_networks(&l.state)?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Resolves requested ports: conflicts with other containers' and the host's
    /// ports are refused; host port 0 becomes a free port.
    fn resolve_ports(
        &self,
        st: &State,
        want: &[PortMapping],
    ) -> Result<Vec<PortMapping>, NetError> {
        let mut out: Vec<PortMapping> = Vec::new();
        for m in want {
            let ip4 = match m.host_ip {
                None => None,
                Some(IpAddr::V4(ip)) => Some(ip),
                Some(ip @ IpAddr::V6(_)) => return Err(NetError::Ipv6Unsupported(ip)),
            };
            let addr = ip4.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string();
            let mut m = m.clone();
            let owner = |m: &PortMapping| -> Option<String> {
                if out.iter().any(|o| ports_clash(o, m)) {
                    return Some("requested twice".into());
                }
                st.endpoints
                    .iter()
                    .find(|e| e.ports.iter().any(|o| ports_clash(o, m)))
                    .map(|e| format!("published by container {}", e.name))
            };
            if m.host_port == 0 {
                let mut tries = 0;
                loop {
                    m.host_port = self.kernel.free_port(ip4, m.protocol)?;
                    if owner(&m).is_none() {
                        break;
                    }
                    tries += 1;
                    if tries > 50 {
                        return Err(NetError::NoFreePort(std::io::Error::other(
                            "every port offered is published already",
                        )));
                    }
                }
            } else if m.host_port_end > m.host_port {
                let (first, last) = (m.host_port, m.host_port_end);
                m.host_port_end = 0;
                let mut found = false;
                for p in first..=last {
                    m.host_port = p;
                    if owner(&m).is_none() && !self.kernel.port_in_use(ip4, p, m.protocol)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Err(NetError::PortRangeTaken {
                        addr,
                        first,
                        last,
                        proto: m.protocol,
                    });
                }
            } else if let Some(by) = owner(&m) {
                return Err(NetError::PortTaken {
                    addr,
                    port: m.host_port,
                    proto: m.protocol,
                    by,
                });
            } else if self.kernel.port_in_use(ip4, m.host_port, m.protocol)? {
                return Err(NetError::PortTaken {
                    addr,
                    port: m.host_port,
                    proto: m.protocol,
                    by: "in use on the host".into(),
                });
            }
            out.push(m);
        }
        Ok(out)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    /// Rewrites the hosts file of every container on `net` (peers see each
    /// other only on user networks, as with Docker's default bridge). A
    /// container on several networks sees its peers on all of them.
    fn refresh_hosts(&self, st: &State, net: &NetRecord) -> Result<(), NetError> {
        let mut ids: Vec<&str> = st
            .endpoints_of(&net.id)
            .map(|e| e.container_id.as_str())
            .collect();
        ids.dedup();
        for id in ids {
            self.write_hosts(st, id)?;
        }
        Ok(())
    }

    /// Writes one container's hosts file from all of its endpoints.
    fn write_hosts(&self, st: &State, id: &str) -> Result<(), NetError> {
        let mine: Vec<&Endpoint> = st.endpoints_of_container(id).collect();
        let Some(first) = mine.first() else {
            return Ok(());
        };
        // Docker's host-gateway is the host's address on the default bridge;
        // here it is the gateway of the container's primary network, an
        // address of the host the container reaches directly.
        let gw = st
            .network_by_id(&first.network_id)
            .and_then(|n| n.subnet)
            .map(ipam::gateway);
        let extra: Vec<ExtraHost> = first
            .extra_hosts
            .iter()
            .map(|x| ExtraHost {
                name: x.name.clone(),
                ip: match (x.ip.as_str(), gw) {
                    (HOST_GATEWAY, Some(g)) => g.to_string(),
                    _ => x.ip.clone(),
                },
            })
            .collect();
        let own: Vec<hosts::HostEntry> = mine
            .iter()
            .enumerate()
            .map(|(i, e)| hosts::HostEntry {
                ip: e.ip,
                names: (i == 0)
                    .then(|| e.hostname.clone())
                    .into_iter()
                    .chain(std::iter::once(e.name.clone()))
                    .chain(e.aliases.iter().cloned())
                    .collect(),
            })
            .collect();
        let mut peers: Vec<hosts::HostEntry> = Vec::new();
        for e in &mine {
            if st.network_by_id(&e.network_id).is_none_or(|n| n.predefined) {
                continue;
            }
            peers.extend(
                st.endpoints_of(&e.network_id)
                    .filter(|p| p.container_id != id)
                    .map(|p| hosts::HostEntry {
                        ip: p.ip,
                        names: std::iter::once(p.name.clone())
                            .chain(p.aliases.iter().cloned())
                            .collect(),
                    }),
            );
        }
        let path = self.container_dir(id).join("hosts");
        hosts::write_in_place(&path, &hosts::render_hosts_with(&extra, &own, &peers))
    }

    /// The address for a new endpoint: the requested one after Docker's
    /// checks, or the lowest free one.
    fn pick_ip(
        st: &State,
        net: &NetRecord,
        subnet: Ipv4Net,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetError> {
        let used: BTreeSet<Ipv4Addr> = st.endpoints_of(&net.id).map(|e| e.ip).collect();
        let Some(ip) = want else {
            return ipam::allocate(subnet, &used)
                .ok_or_else(|| NetError::AddressesExhausted(net.name.clone()));
        };
        if net.predefined {
            return Err(NetError::IpOnDefaultNetwork);
        }
        if !net.user_subnet {
            return Err(NetError::IpWithoutUserSubnet);
        }
        if !subnet.contains(&ip)
            || ip == subnet.network()
            || ip == subnet.broadcast()
            || ip == ipam::gateway(subnet)
        {
            return Err(NetError::IpOutsideSubnet {
                ip,
                network: net.name.clone(),
            });
        }
        if used.contains(&ip) {
            return Err(NetError::IpInUse {
                ip,
                network: net.name.clone(),
            });
        }
        Ok(ip)
    }

    /// Connects a container's network namespace to a bridge network; see
    /// [`AttachRequest`]. A container may be attached to several networks:
    /// the first becomes `eth0` with the default route (and takes the
    /// published ports), later ones `eth1`, `eth2`, ….
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        let id = &req.container_id;
        if !valid_name(id) || id.len() > 128 {
            return Err(NetError::InvalidContainerId(id.clone()));
        }
        req.dns.validate()?;
        let mut l = self.lock()?;
        let net = l
            .state
            .find(&req.network)
            .ok_or_else(|| NetError::NotFound(req.network.clone()))?
            .clone();
        if net.subnet.is_none() || net.bridge.is_none() {
            return Err(NetError::NotBridge(net.name));
        }
        if l.state
            .endpoints_of_container(id)
            .any(|e| e.network_id == net.id)
        {
            return Err(NetError::AlreadyAttached {
                container: req.name.clone(),
                network: net.name,
            });
        }
        let primary = l.state.endpoints_of_container(id).next().is_none();
        // Everything that can be refused is checked before any effect.
        let ports = self.resolve_ports(&l.state, &req.ports)?;
        if let Some(subnet) = net.subnet {
            Self::pick_ip(&l.state, &net, subnet, req.ip)?;
        }
        let net = self.prepare_bridge(&mut l.state, net)?;
        let (Some(subnet), Some(bridge)) = (net.subnet, net.bridge.clone()) else {
            return Err(NetError::NotBridge(net.name));
        };
        let ip = Self::pick_ip(&l.state, &net, subnet, req.ip)?;
        let ifname = (0..4096u32)
            .map(|i| format!("eth{i}"))
            .find(|n| !l.state.endpoints_of_container(id).any(|e| &e.ifname == n))
            .unwrap_or_else(eth0);
        let ep = Endpoint {
            container_id: id.clone(),
            endpoint_id: random_hex(32)?,
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            aliases: req.aliases.clone(),
            network_id: net.id.clone(),
            ip,
            mac: ipam::mac_for(ip),
            host_if: format!("veth{}", &random_hex(6)?[..11]),
            ports,
            ifname,
            extra_hosts: req.extra_hosts.clone(),
            dns: req.dns.clone(),
        };
        // The lease is recorded before the kernel work, so a crash in between
        // leaves something `detach` knows how to clean up.
        l.state.endpoints.push(ep.clone());
        self.save_endpoints(&l.state)?;
        let res = self
            .attach_kernel(&bridge, subnet, &ep, &req.netns, primary)
            .and_then(|()| self.refresh_hosts(&l.state, &net));
        if let Err(e) = res {
            let _ = self.kernel.delete_link(&ep.host_if);
            if !ep.ports.is_empty() {
                let _ = self.kernel.remove_rules(&tag_container(id));
            }
            l.state
                .endpoints
                .retain(|e| e.endpoint_id != ep.endpoint_id);
            if primary {
                let _ = std::fs::remove_dir_all(self.container_dir(id));
            }
            self.save_endpoints(&l.state)?;
            let _ = self.refresh_hosts(&l.state, &net);
            let _ = self.write_hosts(&l.state, id);
            return Err(e);
        }
        Ok(self.attachment_of(&ep, &net))
    }

    fn attachment_of(&self, ep: &Endpoint, net: &NetRecord) -> Attachment {
        let subnet = net.subnet.unwrap_or_default();
        Attachment {
            ip: ep.ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam::gateway(subnet),
            mac: ep.mac.clone(),
            ports: ep.ports.clone(),
            hosts_file: self.container_dir(&ep.container_id).join("hosts"),
            resolv_conf: self.container_dir(&ep.container_id).join("resolv.conf"),
            network: net.name.clone(),
            network_id: net.id.clone(),
            endpoint_id: ep.endpoint_id.clone(),
            ifname: ep.ifname.clone(),
            aliases: ep.aliases.clone(),
        }
    }

    fn attach_kernel(
        &self,
        bridge: &str,
        subnet: Ipv4Net,
        ep: &Endpoint,
        netns: &Path,
        primary: bool,
    ) -> Result<(), NetError> {
        let dir = self.container_dir(&ep.container_id);
        std::fs::create_dir_all(&dir).map_err(|e| NetError::WriteHostsFile {
            path: dir.clone(),
            source: e,
        })?;
        if primary {
            let host_resolv = std::fs::read_to_string(&self.host_resolv_conf).unwrap_or_default();
            hosts::write_in_place(
                &dir.join("resolv.conf"),
                &hosts::render_resolv_conf_with(&host_resolv, &ep.dns),
            )?;
        }
        let spec = VethSpec {
            host_if: ep.host_if.clone(),
            bridge: bridge.to_string(),
            netns: netns.to_path_buf(),
            mac: ep.mac.clone(),
            ip: ep.ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam::gateway(subnet),
            ifname: ep.ifname.clone(),
            default_route: primary,
        };
        if ep.ports.is_empty() {
            return self.kernel.add_veth(&spec);
        }
        // The veth and the port rules are independent; doing them side by side
        // saves an iptables round trip. A failure of either is rolled back by
        // the caller (both removals are idempotent).
        let rules = port_rules(ep, bridge);
        let (veth, rules) = std::thread::scope(|s| {
            let r = s.spawn(|| self.kernel.add_rules(&rules));
            let v = self.kernel.add_veth(&spec);
            (
                v,
                r.join()
                    .unwrap_or_else(|_| Err(NetError::Iptables("thread panicked".into()))),
            )
        });
        veth.and(rules)
    }

    /// Removes one endpoint's kernel side: its veth and published-port rules.
    fn detach_kernel(&self, st: &State, ep: &Endpoint) -> Result<(), NetError> {
        if ep.ports.is_empty() {
            return self.kernel.delete_link(&ep.host_if);
        }
        let bridge = st
            .network_by_id(&ep.network_id)
            .and_then(|n| n.bridge.clone());
        // Deleting a veth mostly waits for the kernel (RCU); remove the
        // rules meanwhile.
        let (link, rules) = std::thread::scope(|s| {
            let r = s.spawn(|| match &bridge {
                Some(br) => self.kernel.delete_rules(&port_rules(ep, br)),
                None => self.kernel.remove_rules(&tag_container(&ep.container_id)),
            });
            let d = self.kernel.delete_link(&ep.host_if);
            (
                d,
                r.join()
                    .unwrap_or_else(|_| Err(NetError::Iptables("thread panicked".into()))),
            )
        });
        link.and(rules)
    }

    /// Undoes every [`Networks::attach`] of a container: veths, published-port
    /// rules, leases, files, and its lines in its peers' hosts files. Idempotent.
    pub fn detach(&self, container_id: &str) -> Result<(), NetError> {
        let (eps, state) = {
            let l = self.lock()?;
            let eps: Vec<Endpoint> = l
                .state
                .endpoints_of_container(container_id)
                .cloned()
                .collect();
            (eps, l.state)
        };
        if eps.is_empty() {
            // A container disconnected from its last network still has files.
            let _ = std::fs::remove_dir_all(self.container_dir(container_id));
            return Ok(());
        }
        // Deleting a veth waits ~15 ms for the kernel (RCU): done unlocked,
        // so other containers attach meanwhile. The endpoints stay in the
        // state, their addresses taken, until their links are gone; both
        // steps are idempotent should two detaches race.
        for ep in &eps {
            self.detach_kernel(&state, ep)?;
        }
        let mut l = self.lock()?;
        l.state.endpoints.retain(|e| e.container_id != container_id);
        self.save_endpoints(&l.state)?;
        let _ = std::fs::remove_dir_all(self.container_dir(container_id));
        for ep in &eps {
            if let Some(net) = l.state.network_by_id(&ep.network_id) {
                self.refresh_hosts(&l.state, net)?;
            }
        }
        Ok(())
    }

    /// Disconnects a container from one network (`keel network disconnect`);
    /// its other networks stay. The container's hosts file is rewritten.
    pub fn detach_network(&self, container_id: &str, network: &str) -> Result<(), NetError> {
        let mut l = self.lock()?;
        let net = l
            .state
            .find(network)
            .ok_or_else(|| NetError::NotFound(network.to_string()))?
            .clone();
        let Some(ep) = l
            .state
            .endpoints_of_container(container_id)
            .find(|e| e.network_id == net.id)
            .cloned()
        else {
            return Err(NetError::NotAttached {
                container: container_id.to_string(),
                network: net.name,
            });
        };
        self.detach_kernel(&l.state, &ep)?;
        l.state
            .endpoints
            .retain(|e| e.endpoint_id != ep.endpoint_id);
        self.save_endpoints(&l.state)?;
        if l.state
            .endpoints_of_container(container_id)
            .next()
            .is_none()
        {
            // Keep the files: they are bind-mounted into the running
            // container; a later connect rewrites them.
            hosts::write_in_place(
                &self.container_dir(container_id).join("hosts"),
                &hosts::render_hosts_with(&[], &[], &[]),
            )?;
        } else {
            self.write_hosts(&l.state, container_id)?;
        }
        self.refresh_hosts(&l.state, &net)
    }

    /// The primary attachment of a container, if any (for `inspect` and `port`).
    pub fn attachment(&self, container_id: &str) -> Result<Option<Attachment>, NetError> {
        Ok(self.attachments(container_id)?.into_iter().next())
    }

    /// Every attachment of a container, primary first.
    pub fn attachments(&self, container_id: &str) -> Result<Vec<Attachment>, NetError> {
        let l = self.lock()?;
        Ok(l.state
            .endpoints_of_container(container_id)
            .filter_map(|ep| {
                l.state
                    .network_by_id(&ep.network_id)
                    .map(|net| self.attachment_of(ep, net))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A kernel that records what it is asked and fails where told to.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        busy_ports: Vec<u16>,
        free_ports: Mutex<Vec<u16>>,
        routes: Vec<Ipv4Net>,
        fail_veth: bool,
        bridges: Mutex<BTreeSet<String>>,
    }

    struct Shared(Arc<Fake>);

    impl Fake {
        fn log(&self, s: String) {
            self.calls.lock().unwrap().push(s);
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Kernel for Shared {
        fn ensure_bridge(&self, name: &str, gw: Ipv4Addr, p: u8) -> Result<bool, NetError> {
            let new = self.0.bridges.lock().unwrap().insert(name.to_string());
            if new {
                self.0.log(format!("bridge {name} {gw}/{p}"));
            }
            Ok(new)
        }
        fn link_exists(&self, name: &str) -> bool {
            self.0.bridges.lock().unwrap().contains(name)
        }
        fn delete_link(&self, name: &str) -> Result<(), NetError> {
            self.0.bridges.lock().unwrap().remove(name);
            self.0.log(format!("del {name}"));
            Ok(())
        }
        fn add_veth(&self, s: &VethSpec) -> Result<(), NetError> {
            if self.0.fail_veth {
                return Err(NetError::CreateVeth {
                    name: s.host_if.clone(),
                    reason: "injected".into(),
                });
            }
            self.0.log(format!(
                "veth {} {}/{} via {} as {}{}",
                s.bridge,
                s.ip,
                s.prefix_len,
                s.gateway,
                s.ifname,
                if s.default_route { " default" } else { "" }
            ));
            Ok(())
        }
        fn ensure_chains(&self) -> Result<(), NetError> {
            self.0.log("chains".into());
            Ok(())
        }
        fn add_rules(&self, rules: &[Rule]) -> Result<(), NetError> {
            for r in rules {
                self.0
                    .log(format!("+{} {} {} [{}]", r.table, r.chain, r.spec, r.tag));
            }
            Ok(())
        }
        fn remove_rules(&self, tag: &str) -> Result<(), NetError> {
            self.0.log(format!("-rules [{tag}]"));
            Ok(())
        }
        fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
            self.0.log(format!("sysctl {key}={value}"));
            Ok(())
        }
        fn port_in_use(
            &self,
            _ip: Option<Ipv4Addr>,
            port: u16,
            _p: Protocol,
        ) -> Result<bool, NetError> {
            Ok(self.0.busy_ports.contains(&port))
        }
        fn free_port(&self, _ip: Option<Ipv4Addr>, _p: Protocol) -> Result<u16, NetError> {
            Ok(self
                .0
                .free_ports
                .lock()
                .unwrap()
                .pop()
                .expect("test offers enough ports"))
        }
        fn routes(&self) -> Result<Vec<Ipv4Net>, NetError> {
            Ok(self.0.routes.clone())
        }
    }

    fn setup(fake: Fake) -> (tempfile::TempDir, Arc<Fake>, Networks) {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(fake);
        let nets = Networks::with_kernel(dir.path(), Box::new(Shared(fake.clone())))
            .unwrap()
            .with_host_resolv_conf(dir.path().join("no-resolv.conf"));
        (dir, fake, nets)
    }

    fn req(id: &str, net: &str, ports: &str) -> AttachRequest {
        AttachRequest {
            container_id: id.into(),
            name: format!("n-{id}"),
            hostname: id.into(),
            netns: "/nonexistent".into(),
            network: net.into(),
            aliases: vec![format!("a-{id}")],
            ports: if ports.is_empty() {
                Vec::new()
            } else {
                parse_port_spec(ports).unwrap()
            },
            ..AttachRequest::default()
        }
    }

    #[test]
    fn default_bridge_avoids_host_routes_and_is_set_up_once() {
        let (_d, fake, nets) = setup(Fake {
            routes: vec!["172.17.0.0/24".parse().unwrap()],
            ..Fake::default()
        });
        let a = nets.attach(&req("c1", "bridge", "")).unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(a.gateway, Ipv4Addr::new(172, 18, 0, 1));
        let b = nets.attach(&req("c2", "bridge", "")).unwrap();
        assert_eq!(b.ip, Ipv4Addr::new(172, 18, 0, 3));
        let calls = fake.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("bridge keel0"))
                .count(),
            1,
            "{calls:?}"
        );
        assert!(calls.contains(&"sysctl net.ipv4.ip_forward=1".to_string()));
        let br = nets.inspect("bridge").unwrap().bridge.unwrap();
        assert!(br.starts_with("keel0-") && br.len() <= 15, "{br}");
        assert!(calls.contains(&format!("sysctl net.ipv4.conf.{br}.route_localnet=1")));
        assert!(
            calls
                .iter()
                .any(|c| c.contains(&format!("-s 172.18.0.0/16 ! -o {br} -j MASQUERADE")))
        );
        // A user network then skips both the host's route and the default bridge.
        let n = nets.create("u", None).unwrap();
        assert_eq!(n.subnet.as_deref(), Some("172.19.0.0/16"));
        // resolv.conf falls back to public resolvers when the host has none usable.
        let r = std::fs::read_to_string(a.resolv_conf).unwrap();
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn ports_conflicts_and_free_port_selection() {
        let (_d, fake, nets) = setup(Fake {
            busy_ports: vec![8999, 9000],
            free_ports: Mutex::new(vec![40001, 40000, 8080]),
            ..Fake::default()
        });
        nets.create("u", Some("10.5.0.0/24")).unwrap();
        let a = nets.attach(&req("c1", "u", "8080:80")).unwrap();
        assert_eq!(a.ports[0].host_port, 8080);
        let rules: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.contains("[keel:c1]"))
            .collect();
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(
            rules[0],
            "+nat KEEL -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.5.0.2:80 [keel:c1]"
        );
        assert!(
            rules[1].starts_with("+filter KEEL-FORWARD -d 10.5.0.2/32 ! -i keel-"),
            "{rules:?}"
        );
        // Same port, any address: taken by c1. Another address-specific mapping too.
        for spec in ["8080:81", "127.0.0.1:8080:81"] {
            let e = nets.attach(&req("c2", "u", spec)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "bind for {}:8080/tcp failed: port is already allocated (published by container n-c1)",
                    if spec.starts_with("127") {
                        "127.0.0.1"
                    } else {
                        "0.0.0.0"
                    }
                )
            );
        }
        // UDP on the same number is a different port.
        nets.attach(&req("c2", "u", "8080:81/udp")).unwrap();
        let e = nets.attach(&req("c3", "u", "9000:80")).unwrap_err();
        assert!(e.to_string().contains("in use on the host"), "{e}");
        let e = nets.attach(&req("c3", "u", "[::1]:9001:80")).unwrap_err();
        assert!(matches!(e, NetError::Ipv6Unsupported(_)));
        // Refused attaches created nothing: no veth, no lease.
        assert_eq!(
            fake.calls()
                .iter()
                .filter(|c| c.starts_with("veth"))
                .count(),
            2
        );
        assert!(nets.attachment("c3").unwrap().is_none());
        // A host range: the first port neither published nor busy on the host.
        let a = nets.attach(&req("r1", "u", "8079-9001:80")).unwrap();
        assert_eq!(a.ports[0].host_port, 8079);
        assert_eq!(a.ports[0].host_port_end, 0);
        let a = nets.attach(&req("r2", "u", "8079-9001:80")).unwrap();
        assert_eq!(a.ports[0].host_port, 8081, "8080 is published by c1");
        let e = nets.attach(&req("r3", "u", "8999-9000:80")).unwrap_err();
        assert!(matches!(e, NetError::PortRangeTaken { .. }), "{e}");
        nets.detach("r1").unwrap();
        nets.detach("r2").unwrap();
        // Host port 0: the kernel's offer 8080 is already published, so the next one is taken.
        let a = nets.attach(&req("c3", "u", "80")).unwrap();
        assert_eq!(a.ports[0].host_port, 40000);
        assert_eq!(a.ip, Ipv4Addr::new(10, 5, 0, 4));
    }

    #[test]
    fn failed_kernel_step_leaves_no_lease() {
        let (d, fake, nets) = setup(Fake {
            fail_veth: true,
            ..Fake::default()
        });
        nets.create("u", None).unwrap();
        let e = nets.attach(&req("c1", "u", "8080:80")).unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        assert!(nets.attachment("c1").unwrap().is_none());
        assert!(!d.path().join("net/containers/c1").exists());
        assert!(nets.inspect("u").unwrap().containers.is_empty());
        assert!(fake.calls().iter().any(|c| c.starts_with("del veth")));
        nets.remove("u").unwrap();
    }

    #[test]
    fn hosts_files_follow_peers_and_detach_is_idempotent() {
        let (_d, fake, nets) = setup(Fake::default());
        nets.create("u", Some("10.6.0.0/24")).unwrap();
        let a1 = nets.attach(&req("c1", "u", "")).unwrap();
        assert!(matches!(
            nets.attach(&req("c1", "u", "")),
            Err(NetError::AlreadyAttached { .. })
        ));
        nets.attach(&req("c2", "u", "")).unwrap();
        let h = std::fs::read_to_string(&a1.hosts_file).unwrap();
        assert!(
            h.ends_with("10.6.0.2\tc1 n-c1 a-c1\n10.6.0.3\tn-c2 a-c2\n"),
            "{h}"
        );
        let e = nets.remove("u").unwrap_err().to_string();
        assert!(
            e.starts_with("network u id ") && e.ends_with(" has active endpoints"),
            "{e}"
        );
        nets.detach("c2").unwrap();
        nets.detach("c2").unwrap();
        let h = std::fs::read_to_string(&a1.hosts_file).unwrap();
        assert!(!h.contains("c2"), "{h}");
        // No ports: detach does not touch iptables.
        assert!(!fake.calls().iter().any(|c| c == "-rules [keel:c2]"));
        // The freed address is handed out again.
        assert_eq!(
            nets.attach(&req("c3", "u", "")).unwrap().ip,
            Ipv4Addr::new(10, 6, 0, 3)
        );
    }

    #[test]
    fn several_networks_per_container() {
        let (_d, fake, nets) = setup(Fake {
            free_ports: Mutex::new(vec![40000]),
            ..Fake::default()
        });
        nets.create("front", Some("10.8.0.0/24")).unwrap();
        nets.create("back", Some("10.9.0.0/24")).unwrap();
        let web = nets.attach(&req("web", "front", "")).unwrap();
        let app = nets.attach(&req("app", "back", "")).unwrap();
        let p1 = nets.attach(&req("proxy", "front", "80")).unwrap();
        let mut second = req("proxy", "back", "");
        second.aliases = vec!["gateway".into()];
        let p2 = nets.attach(&second).unwrap();
        assert_eq!((p1.ifname.as_str(), p2.ifname.as_str()), ("eth0", "eth1"));
        assert_eq!(p2.ip, Ipv4Addr::new(10, 9, 0, 3));
        let calls = fake.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.ends_with("10.8.0.3/24 via 10.8.0.1 as eth0 default")),
            "{calls:?}"
        );
        assert!(
            calls
                .iter()
                .any(|c| c.ends_with("10.9.0.3/24 via 10.9.0.1 as eth1")),
            "{calls:?}"
        );
        // The proxy sees both sides; each side sees the proxy under that network's aliases.
        let h = std::fs::read_to_string(&p1.hosts_file).unwrap();
        assert!(
            h.ends_with("10.8.0.3\tproxy n-proxy a-proxy\n10.9.0.3\tn-proxy gateway\n10.8.0.2\tn-web a-web\n10.9.0.2\tn-app a-app\n"),
            "{h}"
        );
        let h = std::fs::read_to_string(&web.hosts_file).unwrap();
        assert!(
            h.contains("10.8.0.3\tn-proxy a-proxy\n") && !h.contains("app"),
            "{h}"
        );
        let h = std::fs::read_to_string(&app.hosts_file).unwrap();
        assert!(
            h.contains("10.9.0.3\tn-proxy gateway\n") && !h.contains("web"),
            "{h}"
        );
        // Twice on one network is refused, with Docker's message.
        let e = nets.attach(&req("proxy", "back", "")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "endpoint with name n-proxy already exists in network back"
        );
        let all = nets.attachments("proxy").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].network, "front");
        assert_eq!(all[0].ports[0].host_port, 40000);
        // Disconnecting one network leaves the other, and the peers forget it.
        nets.detach_network("proxy", "back").unwrap();
        assert!(matches!(
            nets.detach_network("proxy", "back"),
            Err(NetError::NotAttached { .. })
        ));
        let h = std::fs::read_to_string(&app.hosts_file).unwrap();
        assert!(!h.contains("proxy"), "{h}");
        let h = std::fs::read_to_string(&p1.hosts_file).unwrap();
        assert!(!h.contains("app") && h.contains("web"), "{h}");
        assert_eq!(nets.attachments("proxy").unwrap().len(), 1);
        // A reconnect takes the free interface name again.
        assert_eq!(nets.attach(&second).unwrap().ifname, "eth1");
        nets.detach("proxy").unwrap();
        assert!(nets.attachments("proxy").unwrap().is_empty());
        assert!(nets.inspect("back").unwrap().containers.len() == 1);
        assert!(calls.len() < fake.calls().len());
    }

    #[test]
    fn static_addresses_follow_dockers_rules() {
        let (_d, _fake, nets) = setup(Fake::default());
        nets.create("sub", Some("10.10.0.0/24")).unwrap();
        nets.create("auto", None).unwrap();
        let with_ip = |id: &str, net: &str, ip: &str| {
            let mut r = req(id, net, "");
            r.ip = Some(ip.parse().unwrap());
            nets.attach(&r)
        };
        assert_eq!(
            with_ip("a", "sub", "10.10.0.50").unwrap().ip,
            Ipv4Addr::new(10, 10, 0, 50)
        );
        let msg = |r: Result<Attachment, NetError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(with_ip("b", "sub", "10.10.0.50")),
            "address 10.10.0.50 is already in use on network sub"
        );
        assert!(msg(with_ip("b", "sub", "10.11.0.5")).contains("does not belong"));
        assert!(msg(with_ip("b", "sub", "10.10.0.1")).contains("does not belong"));
        assert_eq!(
            msg(with_ip("b", "auto", "172.19.0.9")),
            "user specified IP address is supported only when connecting to networks with user configured subnets"
        );
        assert_eq!(
            msg(with_ip("b", "bridge", "172.18.0.9")),
            "user specified IP address is supported on user defined networks only"
        );
        // Dynamic addresses step around the static one.
        for _ in 0..2 {
            nets.attach(&req("c", "sub", "")).unwrap();
            nets.detach("c").unwrap();
        }
        assert_eq!(
            nets.attach(&req("c", "sub", "")).unwrap().ip,
            Ipv4Addr::new(10, 10, 0, 2)
        );
        assert!(nets.attachment("b").unwrap().is_none());
    }

    #[test]
    fn extra_hosts_and_dns_land_in_the_files() {
        let (d, _fake, nets) = setup(Fake::default());
        std::fs::write(
            d.path().join("no-resolv.conf"),
            "nameserver 10.0.0.2\nsearch host.test\n",
        )
        .unwrap();
        nets.create("u", Some("10.12.0.0/24")).unwrap();
        let mut r = req("c1", "u", "");
        r.extra_hosts = vec![
            parse_extra_host("db:10.1.2.3").unwrap(),
            parse_extra_host("host.keel.internal:host-gateway").unwrap(),
        ];
        r.dns = DnsConfig {
            servers: vec!["10.0.0.53".into()],
            search: vec!["svc.test".into()],
            options: vec!["ndots:1".into()],
        };
        let a = nets.attach(&r).unwrap();
        let h = std::fs::read_to_string(&a.hosts_file).unwrap();
        assert!(
            h.contains("10.1.2.3\tdb\n10.12.0.1\thost.keel.internal\n10.12.0.2\tc1 "),
            "{h}"
        );
        // A peer joining rewrites the file and keeps the extra lines.
        nets.attach(&req("c2", "u", "")).unwrap();
        let h = std::fs::read_to_string(&a.hosts_file).unwrap();
        assert!(h.contains("10.1.2.3\tdb\n") && h.contains("n-c2"), "{h}");
        let rc = std::fs::read_to_string(&a.resolv_conf).unwrap();
        assert_eq!(
            rc,
            "nameserver 10.0.0.53\nsearch svc.test\noptions ndots:1\n"
        );
        r.container_id = "c3".into();
        r.dns.servers = vec!["bogus".into()];
        assert!(matches!(nets.attach(&r), Err(NetError::InvalidDns(_))));
    }

    #[test]
    fn create_validates_and_persists() {
        let (d, _fake, nets) = setup(Fake::default());
        assert!(matches!(
            nets.create("bridge", None),
            Err(NetError::NameExists(_))
        ));
        assert!(matches!(
            nets.create("-x", None),
            Err(NetError::InvalidName(_))
        ));
        nets.create("a", Some("10.7.0.0/16")).unwrap();
        let e = nets
            .create("b", Some("10.7.3.0/24"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "subnet 10.7.3.0/24 overlaps with network a (10.7.0.0/16)"
        );
        assert!(matches!(nets.remove("host"), Err(NetError::Predefined(_))));
        // A second handle (another process) sees the same state.
        let again = Networks::with_kernel(d.path(), Box::new(HostKernel)).unwrap();
        let names: Vec<String> = again.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none", "a"]);
        let id = again.inspect("a").unwrap().id;
        assert_eq!(again.inspect(&id[..5]).unwrap().name, "a");
        assert!(matches!(
            nets.attach(&req("bad/id", "a", "")),
            Err(NetError::InvalidContainerId(_))
        ));
    }
}
