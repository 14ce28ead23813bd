//! keel-net: container networking on one host. [`Networks`] is the API the
//! runtime calls: networks (the predefined `bridge`, `host`, `none` and
//! user-defined bridges), their IPAM leases and container endpoints, kept in
//! `<root>/net/networks.json` and `<root>/net/endpoints-<boot id>.json`
//! under an exclusive `flock` (`state.rs`), driving the kernel through the
//! [`Kernel`] trait ([`HostKernel`]: Linux bridge, one veth pair per
//! container, iptables NAT for outbound traffic and DNAT for published
//! ports, isolation between networks; the rules come from `rules.rs`). A
//! container may be attached to several networks (`eth0` with the default
//! route and the published ports, then `eth1`, …). It also maintains each
//! container's `/etc/hosts` (peers by name and alias on every user network
//! it is on, `--add-host` entries) and `/etc/resolv.conf` (with `--dns*`
//! settings). [`parse_port_spec`] parses Docker's `-p` syntax into
//! [`PortMapping`]s; every failure is a [`NetError`].
//!
//! For the runtime: create the container's network namespace and bind-mount
//! it to a file, call [`Networks::attach`], bind-mount the returned
//! `hosts_file` and `resolv_conf` over `/etc/hosts` and `/etc/resolv.conf`
//! (keel-net rewrites them in place when peers come and go), and call
//! [`Networks::detach`] when the container stops (idempotent, any order with
//! removing the namespace). `host` and `none` never reach keel-net. Tests
//! with a temporary root call [`Networks::release_idle`] before deleting it.

mod error;
mod hosts;
mod ipam;
mod kernel;
mod ports;
mod rules;
mod state;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Serialize;

pub use error::NetError;
pub use hosts::{
    DnsConfig, ExtraHost, HOST_GATEWAY, parse_extra_host, render_hosts, render_hosts_with,
    render_resolv_conf, render_resolv_conf_with,
};
pub use kernel::{HostKernel, Kernel, Rule, VethSpec};
pub use ports::{PortMapping, Protocol, parse_port_spec};
use rules::{network_rules, port_rules, ports_clash, tag_container, tag_network};
use state::{Endpoint, NetRecord, State, eth0, now, random_hex, valid_name};

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

/// The default root's default bridge, like Docker's `docker0`.
const DEFAULT_BRIDGE: &str = "keel0";
const DEFAULT_ROOT: &str = "/var/lib/keel";

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
mod tests;
