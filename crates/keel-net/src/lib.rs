//! keel-net: container networking on one host. [`Networks`] keeps the networks
//! (the predefined `bridge`, `host`, `none` and user-defined bridges), their IPAM
//! leases and container endpoints in `<root>/net/state.json` under an exclusive
//! `flock`, and drives the kernel through the [`Kernel`] trait ([`HostKernel`]:
//! Linux bridge, one veth pair per container, iptables NAT for outbound traffic
//! and DNAT for published ports). It also maintains each container's
//! `/etc/hosts` (peers by name and alias on user networks) and `/etc/resolv.conf`.
//! [`parse_port_spec`] parses Docker's `-p` syntax into [`PortMapping`]s.

mod hosts;
mod ipam;
mod kernel;
mod ports;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

pub use hosts::{render_hosts, render_resolv_conf};
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
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    ActiveEndpoints { name: String, id: String },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("network {0} is not a bridge network; the runtime sets up host and none itself")]
    NotBridge(String),
    #[error("invalid container id {0:?}")]
    InvalidContainerId(String),
    #[error("container {0} is already attached to a network")]
    AlreadyAttached(String),
    #[error("invalid port specification {spec:?}: {reason}")]
    PortSpec { spec: String, reason: String },
    #[error("bind for {addr}:{port}/{proto} failed: port is already allocated ({by})")]
    PortTaken {
        addr: String,
        port: u16,
        proto: Protocol,
        by: String,
    },
    #[error("cannot publish on {0}: only IPv4 host addresses are supported")]
    Ipv6Unsupported(IpAddr),
    #[error("cannot find a free host port: {0}")]
    NoFreePort(std::io::Error),
    #[error("cannot create bridge {name}: {reason}")]
    CreateBridge { name: String, reason: String },
    #[error("cannot create veth {name}: {reason}")]
    CreateVeth { name: String, reason: String },
    #[error("cannot configure eth0 in network namespace {netns}: {reason}")]
    ConfigureNetns { netns: PathBuf, reason: String },
    #[error("cannot delete link {name}: {reason}")]
    DeleteLink { name: String, reason: String },
    #[error("iptables: {0}")]
    Iptables(String),
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl {
        key: String,
        source: std::io::Error,
    },
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
        self.endpoints.iter().filter(move |e| e.network_id == net_id)
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
        f.debug_struct("Networks").field("dir", &self.dir).finish_non_exhaustive()
    }
}

const STATE: &str = "state.json";
const DEFAULT_BRIDGE: &str = "keel0";

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
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
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
        r("nat", "KEEL-POSTROUTING", format!("-s {subnet} ! -o {br} -j MASQUERADE")),
        // DNAT of 127.0.0.1 traffic keeps a loopback source, which the
        // container could not answer; masquerade it to the bridge address.
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s 127.0.0.0/8 -o {br} -m addrtype --src-type LOCAL -j MASQUERADE"),
        ),
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
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
        let dst = p.host_ip.map(|ip| format!("-d {ip}/32 ")).unwrap_or_default();
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
        let path = self.dir.join(STATE);
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::ParseState {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let st = self.initial_state()?;
                self.save(&st)?;
                st
            }
            Err(e) => return Err(NetError::ReadState { path, source: e }),
        };
        Ok(Locked { _lock: f, state })
    }

    /// Docker's three predefined networks; the default bridge's subnet avoids the host's routes.
    fn initial_state(&self) -> Result<State, NetError> {
        let routes = self.kernel.routes()?;
        let subnet = ipam::pick_subnet(&routes, false)?;
        let created = now();
        let mk = |name: &str, driver: &str, subnet, bridge: Option<&str>| -> Result<NetRecord, NetError> {
            Ok(NetRecord {
                id: random_hex(32)?,
                name: name.into(),
                driver: driver.into(),
                subnet,
                bridge: bridge.map(Into::into),
                created: created.clone(),
                predefined: true,
            })
        };
        Ok(State {
            networks: vec![
                mk("bridge", "bridge", Some(subnet), Some(DEFAULT_BRIDGE))?,
                mk("host", "host", None, None)?,
                mk("none", "null", None, None)?,
            ],
            endpoints: Vec::new(),
        })
    }

    /// Atomic replace: temp file, fsync, rename, fsync directory.
    fn save(&self, st: &State) -> Result<(), NetError> {
        let path = self.dir.join(STATE);
        let werr = |e: std::io::Error| NetError::WriteState {
            path: path.clone(),
            source: e,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(werr)?;
        serde_json::to_writer_pretty(&mut tmp, st).map_err(|e| werr(e.into()))?;
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&path).map_err(|e| werr(e.error))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(werr)?;
        Ok(())
    }

    fn info(st: &State, n: &NetRecord) -> NetworkInfo {
        let prefix = n.subnet.map_or(0, |s| s.prefix_len());
        NetworkInfo {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            scope: "local".into(),
            subnet: n.subnet.map(|s| s.to_string()),
            gateway: n.subnet.as_ref().map(ipam::gateway),
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
            .ensure_bridge(br, ipam::gateway(subnet), subnet.prefix_len())?
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
        let subnet = match subnet {
            Some(s) => {
                let net = ipam::parse_subnet(s)?;
                if let Some((other, os)) = keel_nets.iter().find(|(_, os)| ipam::overlaps(&net, os)) {
                    return Err(NetError::SubnetOverlap {
                        subnet: s.to_string(),
                        other: other.name.clone(),
                        other_subnet: os.to_string(),
                    });
                }
                net
            }
            None => {
                let mut taken: Vec<Ipv4Net> = keel_nets.iter().map(|(_, s)| *s).collect();
                taken.extend(self.kernel.routes()?);
                ipam::pick_subnet(&taken, true)?
            }
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
        };
        self.ensure_network_kernel(&rec)?;
        st.networks.push(rec.clone());
        if let Err(e) = self.save(&l.state) {
            let _ = self.teardown_network_kernel(&rec);
            return Err(e);
        }
        Ok(Self::info(&l.state, &rec))
    }

    /// All networks, predefined first, then in creation order.
    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetError> {
        let l = self.lock()?;
        Ok(l.state.networks.iter().map(|n| Self::info(&l.state, n)).collect())
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
        self.save(&l.state)
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
        self.save(&l.state)?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Resolves requested ports: conflicts with other containers' and the host's
    /// ports are refused; host port 0 becomes a free port.
    fn resolve_ports(&self, st: &State, want: &[PortMapping]) -> Result<Vec<PortMapping>, NetError> {
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
            } else if let Some(by) = owner(&m) {
                return Err(NetError::PortTaken {
                    addr,
                    port: m.host_port,
                    proto: m.protocol,
                    by,
                });
            } else if self.kernel.port_in_use(ip4, m.host_port, m.protocol) {
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

    /// Rewrites the hosts file of every container on `net_id` (peers see each
    /// other only on user networks, as with Docker's default bridge).
    fn refresh_hosts(&self, st: &State, net: &NetRecord) -> Result<(), NetError> {
        let eps: Vec<&Endpoint> = st.endpoints_of(&net.id).collect();
        for e in &eps {
            let own = hosts::HostEntry {
                ip: e.ip,
                names: std::iter::once(e.hostname.clone())
                    .chain(std::iter::once(e.name.clone()))
                    .chain(e.aliases.iter().cloned())
                    .collect(),
            };
            let peers: Vec<hosts::HostEntry> = if net.predefined {
                Vec::new()
            } else {
                eps.iter()
                    .filter(|p| p.container_id != e.container_id)
                    .map(|p| hosts::HostEntry {
                        ip: p.ip,
                        names: std::iter::once(p.name.clone())
                            .chain(p.aliases.iter().cloned())
                            .collect(),
                    })
                    .collect()
            };
            let path = self.container_dir(&e.container_id).join("hosts");
            hosts::write_in_place(&path, &hosts::render_hosts(&own, &peers))?;
        }
        Ok(())
    }

    /// Connects a container's network namespace to a bridge network; see [`AttachRequest`].
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        let id = &req.container_id;
        if !valid_name(id) || id.len() > 128 {
            return Err(NetError::InvalidContainerId(id.clone()));
        }
        let mut l = self.lock()?;
        if l.state.endpoints.iter().any(|e| &e.container_id == id) {
            return Err(NetError::AlreadyAttached(id.clone()));
        }
        let net = l
            .state
            .find(&req.network)
            .ok_or_else(|| NetError::NotFound(req.network.clone()))?
            .clone();
        let (Some(subnet), Some(bridge)) = (net.subnet, net.bridge.clone()) else {
            return Err(NetError::NotBridge(net.name));
        };
        // Everything that can be refused is checked before any effect.
        let ports = self.resolve_ports(&l.state, &req.ports)?;
        let used: BTreeSet<Ipv4Addr> = l.state.endpoints_of(&net.id).map(|e| e.ip).collect();
        let ip = ipam::allocate(&subnet, &used).ok_or_else(|| NetError::AddressesExhausted(net.name.clone()))?;
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
        };
        // The lease is recorded before the kernel work, so a crash in between
        // leaves something `detach` knows how to clean up.
        l.state.endpoints.push(ep.clone());
        self.save(&l.state)?;
        let res = self
            .attach_kernel(&net, &bridge, &subnet, &ep, &req.netns)
            .and_then(|()| self.refresh_hosts(&l.state, &net));
        if let Err(e) = res {
            let _ = self.kernel.delete_link(&ep.host_if);
            if !ep.ports.is_empty() {
                let _ = self.kernel.remove_rules(&tag_container(id));
            }
            let _ = std::fs::remove_dir_all(self.container_dir(id));
            l.state.endpoints.retain(|e| &e.container_id != id);
            self.save(&l.state)?;
            let _ = self.refresh_hosts(&l.state, &net);
            return Err(e);
        }
        Ok(Attachment {
            ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam::gateway(&subnet),
            mac: ep.mac.clone(),
            ports: ep.ports.clone(),
            hosts_file: self.container_dir(id).join("hosts"),
            resolv_conf: self.container_dir(id).join("resolv.conf"),
            network: net.name.clone(),
        })
    }

    fn attach_kernel(
        &self,
        net: &NetRecord,
        bridge: &str,
        subnet: &Ipv4Net,
        ep: &Endpoint,
        netns: &Path,
    ) -> Result<(), NetError> {
        let dir = self.container_dir(&ep.container_id);
        std::fs::create_dir_all(&dir).map_err(|e| NetError::WriteHostsFile {
            path: dir.clone(),
            source: e,
        })?;
        let host_resolv = std::fs::read_to_string(&self.host_resolv_conf).unwrap_or_default();
        hosts::write_in_place(&dir.join("resolv.conf"), &hosts::render_resolv_conf(&host_resolv))?;
        self.ensure_network_kernel(net)?;
        self.kernel.add_veth(&VethSpec {
            host_if: ep.host_if.clone(),
            bridge: bridge.to_string(),
            netns: netns.to_path_buf(),
            mac: ep.mac.clone(),
            ip: ep.ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam::gateway(subnet),
        })?;
        if !ep.ports.is_empty() {
            self.kernel.add_rules(&port_rules(ep, bridge))?;
        }
        Ok(())
    }

    /// Undoes [`Networks::attach`]: veth, published-port rules, lease, files,
    /// and the container's line in its peers' hosts files. Idempotent.
    pub fn detach(&self, container_id: &str) -> Result<(), NetError> {
        let mut l = self.lock()?;
        let Some(ep) = l
            .state
            .endpoints
            .iter()
            .find(|e| e.container_id == container_id)
            .cloned()
        else {
            return Ok(());
        };
        self.kernel.delete_link(&ep.host_if)?;
        if !ep.ports.is_empty() {
            self.kernel.remove_rules(&tag_container(container_id))?;
        }
        l.state.endpoints.retain(|e| e.container_id != container_id);
        self.save(&l.state)?;
        let _ = std::fs::remove_dir_all(self.container_dir(container_id));
        if let Some(net) = l.state.networks.iter().find(|n| n.id == ep.network_id) {
            self.refresh_hosts(&l.state, net)?;
        }
        Ok(())
    }

    /// The current attachment of a container, if any (for `inspect` and `port`).
    pub fn attachment(&self, container_id: &str) -> Result<Option<Attachment>, NetError> {
        let l = self.lock()?;
        let Some(ep) = l.state.endpoints.iter().find(|e| e.container_id == container_id) else {
            return Ok(None);
        };
        let Some(net) = l.state.networks.iter().find(|n| n.id == ep.network_id) else {
            return Ok(None);
        };
        let subnet = net.subnet.unwrap_or_default();
        Ok(Some(Attachment {
            ip: ep.ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam::gateway(&subnet),
            mac: ep.mac.clone(),
            ports: ep.ports.clone(),
            hosts_file: self.container_dir(container_id).join("hosts"),
            resolv_conf: self.container_dir(container_id).join("resolv.conf"),
            network: net.name.clone(),
        }))
    }
}
