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

mod chains;
mod error;
mod hosts;
mod ipam;
mod kernel;
pub mod netpol;
mod ports;
pub mod proxy;
mod restore;
mod rules;
mod state;
pub mod vxlan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Serialize;

pub use chains::{Chains, HostChains};
pub use error::NetError;
pub use hosts::{
    DnsConfig, ExtraHost, HOST_GATEWAY, parse_extra_host, render_hosts, render_hosts_with,
    render_resolv_conf, render_resolv_conf_with,
};
pub use kernel::{HostKernel, Kernel, Rule, SublinkSpec, VethSpec, VxlanPort};
pub use ports::{PortMapping, Protocol, parse_port_spec};
use rules::{network_rules, port_rules, ports_clash, tag_container, tag_network};
use state::{
    Endpoint, NetRecord, OPT_MASQUERADE, OPT_MTU, State, eth0, now, random_hex, valid_name,
};
pub use state::{OPT_VNI, OPT_VTEP, OVERLAY_PORT, RemotePeer};

/// What `keel network create` asks for, Docker's flags one for one; the
/// default is a bridge on the next free subnet of Docker's pools.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// `bridge` (empty: bridge), `macvlan`, `ipvlan` or `overlay` (a node's
    /// part of a cluster-wide network: see [`OPT_VNI`], [`OPT_VTEP`]).
    pub driver: String,
    /// The network's ID (64 hex digits): an overlay network has the same
    /// on every node. `None`: a new random one.
    pub id: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// `--aux-address NAME=IP`: addresses the network never hands out.
    pub aux_addresses: BTreeMap<String, String>,
    /// No route out: no NAT, nothing forwarded beyond the bridge.
    pub internal: bool,
    /// Refused: keel's networks are IPv4 only.
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    /// `-o KEY=VALUE`: `parent`, `macvlan_mode`, `ipvlan_mode`,
    /// `com.docker.network.bridge.enable_ip_masquerade`,
    /// `com.docker.network.driver.mtu`.
    pub options: BTreeMap<String, String>,
}

/// The options each driver takes, as `(key, allowed values)`; empty: any value.
const DRIVER_OPTIONS: &[(&str, &str, &[&str])] = &[
    ("bridge", OPT_MASQUERADE, &["true", "false"]),
    ("bridge", OPT_MTU, &[]),
    ("macvlan", "parent", &[]),
    (
        "macvlan",
        "macvlan_mode",
        &["bridge", "private", "vepa", "passthru"],
    ),
    ("ipvlan", "parent", &[]),
    ("ipvlan", "ipvlan_mode", &["l2", "l3", "l3s"]),
    ("overlay", OPT_VNI, &[]),
    ("overlay", OPT_VTEP, &[]),
    ("overlay", OPT_MTU, &[]),
];

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
    /// `--ip-range`.
    pub ip_range: Option<String>,
    /// `--aux-address` entries.
    pub aux_addresses: BTreeMap<String, String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options as given at creation.
    pub options: BTreeMap<String, String>,
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

    fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// FNV-1a of the root's path: stable across builds, unlike std's hasher.
    fn root_hash(&self) -> u64 {
        self.root()
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// `keel0` for the default root; other roots (tests, a second keel) get
    /// `keel0-<hash of root>` so they never share a bridge (and its addresses).
    fn default_bridge_name(&self) -> String {
        if self.root() == Path::new(DEFAULT_ROOT) {
            return DEFAULT_BRIDGE.to_string();
        }
        format!("{DEFAULT_BRIDGE}-{:08x}", self.root_hash() as u32)
    }

    /// The mark (link alias) on every bridge this root creates: `keel:<root
    /// path>`, or `keel:#<hash>` for a path an alias cannot hold (over 255
    /// bytes, not UTF-8, or with characters `ip -batch` cannot quote).
    fn owner_mark(&self) -> String {
        match self.root().to_str() {
            Some(p) if p.len() <= 250 && !p.contains(['"', '\\', '\n']) => format!("keel:{p}"),
            _ => format!("keel:#{:016x}", self.root_hash()),
        }
    }

    /// A root starting without state (first use, or its directory was
    /// deleted and made again) removes the bridges (and overlay networks'
    /// VXLAN devices) an earlier root at the same path left (they carry its
    /// mark) and the rules naming them:
    /// otherwise the new default network would pick its subnet around a
    /// bridge of its own name and then find that bridge on the old subnet.
    pub(crate) fn prune_forgotten(&self) -> Result<(), NetError> {
        let mark = self.owner_mark();
        for (name, owner) in self.kernel.owned_links()? {
            if owner == mark {
                self.purge_bridge(&name)?;
            }
        }
        Ok(())
    }

    /// Removes a bridge keel no longer knows the network of, with its rules.
    fn purge_bridge(&self, name: &str) -> Result<(), NetError> {
        self.kernel.remove_link_rules(name)?;
        self.kernel.delete_link(name)
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
            scope: if n.driver == "overlay" {
                "swarm"
            } else {
                "local"
            }
            .into(),
            subnet: n.subnet.map(|s| s.to_string()),
            gateway: n.gateway_ip(),
            ip_range: n.ip_range.map(|r| r.to_string()),
            aux_addresses: n
                .aux_addresses
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            internal: n.internal,
            labels: n.labels.clone(),
            options: n.options.clone(),
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
        let (Some(br), Some(subnet), Some(gw)) = (&net.bridge, &net.subnet, net.gateway_ip())
        else {
            return Ok(());
        };
        if !self
            .kernel
            .ensure_bridge(br, gw, subnet.prefix_len(), &self.owner_mark())?
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
            self.kernel.add_rules(&network_rules(net))?;
            if let (Some((vni, local)), Some(dev)) = (net.overlay(), net.vxlan_dev()) {
                self.kernel.ensure_vxlan_port(&VxlanPort {
                    name: dev.clone(),
                    vni,
                    local,
                    port: OVERLAY_PORT,
                    bridge: br.clone(),
                    mtu: net.options.get(OPT_MTU).and_then(|m| m.parse().ok()),
                    owner: self.owner_mark(),
                })?;
                self.kernel
                    .vxlan_entries(&remote_entries(&dev, &net.remote), &[])?;
            }
            Ok(())
        })();
        if res.is_err() {
            if let Some(dev) = net.vxlan_dev() {
                let _ = self.kernel.delete_link(&dev);
            }
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
        let idle = st.endpoints_of(&net.id).next().is_none();
        if self.kernel.link_exists(&br) {
            // The first container checks the bridge's address: a bridge of
            // this name on another subnet (left by an earlier keel, or by
            // hand) is re-addressed, i.e. made again with its rules.
            let gw = net.gateway_ip().unwrap_or_else(|| ipam::gateway(subnet));
            let want = Ipv4Net::new(gw, subnet.prefix_len()).ok();
            if !idle
                || want.is_none()
                || self
                    .kernel
                    .link_addrs(&br)?
                    .iter()
                    .any(|a| Some(*a) == want)
            {
                return Ok(net);
            }
            self.purge_bridge(&br)?;
        }
        let _host = self.kernel.lock_host()?;
        if net.predefined && idle {
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
        if let Some(dev) = net.vxlan_dev() {
            self.kernel.delete_link(&dev)?;
        }
        if let Some(br) = &net.bridge {
            self.kernel.delete_link(br)?;
            self.kernel.remove_rules(&tag_network(&net.id))?;
        }
        Ok(())
    }

    /// Creates a user-defined bridge network (and its Linux bridge) and returns it.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<NetworkInfo, NetError> {
        self.create_with(
            name,
            &NetworkOptions {
                subnet: subnet.map(str::to_string),
                ..NetworkOptions::default()
            },
        )
    }

    /// Checks `o`'s driver and options as Docker does, before anything is created.
    fn check_options(&self, st: &State, o: &NetworkOptions) -> Result<String, NetError> {
        let bad = |m: String| Err(NetError::InvalidConfig(m));
        let driver = if o.driver.is_empty() {
            "bridge"
        } else {
            o.driver.as_str()
        };
        if !matches!(driver, "bridge" | "macvlan" | "ipvlan" | "overlay") {
            return bad(format!(
                "driver {driver:?} is not supported: keel has bridge, macvlan, ipvlan and overlay networks"
            ));
        }
        if let Some(id) = &o.id
            && (id.len() != 64
                || !id.bytes().all(|b| b.is_ascii_hexdigit())
                || st.network_by_id(id).is_some())
        {
            return bad(format!(
                "network ID {id:?} is not 64 hex digits or is in use"
            ));
        }
        if driver == "overlay" {
            let vni = o.options.get(OPT_VNI).and_then(|v| v.parse::<u32>().ok());
            let vtep = o
                .options
                .get(OPT_VTEP)
                .and_then(|v| v.parse::<Ipv4Addr>().ok());
            if !vni.is_some_and(|v| (1..1 << 24).contains(&v))
                || vtep.is_none()
                || o.subnet.is_none()
            {
                return bad(format!(
                    "an overlay network is made by the cluster (`keel network create -d overlay` on a node of it): it needs --subnet, {OPT_VNI} (1 to 16777215) and {OPT_VTEP} (this node's address)"
                ));
            }
        }
        if o.ipv6 {
            return bad("IPv6 networks are not supported: keel's networks are IPv4 only".into());
        }
        for (k, v) in &o.options {
            let Some((_, _, allowed)) = DRIVER_OPTIONS
                .iter()
                .find(|(d, key, _)| *d == driver && key == k)
            else {
                let known: Vec<&str> = DRIVER_OPTIONS
                    .iter()
                    .filter(|(d, _, _)| *d == driver)
                    .map(|(_, k, _)| *k)
                    .collect();
                return bad(format!(
                    "option {k} is not supported on {driver} networks (supported: {})",
                    known.join(", ")
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
                return bad(format!(
                    "option {k}={v}: expected one of {}",
                    allowed.join(", ")
                ));
            }
            if k == OPT_MTU && !v.parse::<u32>().is_ok_and(|m| (68..=65535).contains(&m)) {
                return bad(format!("option {k}={v}: expected an MTU from 68 to 65535"));
            }
        }
        if o.subnet.is_none()
            && (o.gateway.is_some() || o.ip_range.is_some() || !o.aux_addresses.is_empty())
        {
            return bad("every ip-range, gateway or aux-address must have a corresponding subnet (--subnet)".into());
        }
        if driver != "bridge" && driver != "overlay" {
            if o.internal {
                return bad(format!(
                    "--internal applies to bridge networks; a {driver} network is part of the parent's LAN"
                ));
            }
            let Some(parent) = o.options.get("parent") else {
                return bad(format!(
                    "a {driver} network needs its host interface: -o parent=IFNAME"
                ));
            };
            if !valid_name(parent) || parent.len() > 15 {
                return bad(format!("parent {parent:?} is not an interface name"));
            }
            if let Some(other) = st
                .networks
                .iter()
                .find(|n| n.is_sublink() && n.options.get("parent") == Some(parent))
            {
                return Err(NetError::ParentInUse {
                    parent: parent.clone(),
                    network: other.name.clone(),
                });
            }
            if !self.kernel.link_exists(parent) {
                return Err(NetError::NoParent(parent.clone()));
            }
        }
        Ok(driver.to_string())
    }

    /// Creates a user-defined network as `keel network create` does: a bridge
    /// (with its Linux bridge and rules) or a macvlan/ipvlan network on a host
    /// interface (links are made per container).
    pub fn create_with(&self, name: &str, o: &NetworkOptions) -> Result<NetworkInfo, NetError> {
        if !valid_name(name) {
            return Err(NetError::InvalidName(name.to_string()));
        }
        let mut l = self.lock()?;
        let st = &mut l.state;
        if st.networks.iter().any(|n| n.name == name) {
            return Err(NetError::NameExists(name.to_string()));
        }
        let driver = self.check_options(st, o)?;
        let keel_nets: Vec<(&NetRecord, Ipv4Net)> = st
            .networks
            .iter()
            .filter_map(|n| n.subnet.map(|s| (n, s)))
            .collect();
        // Held until the bridge exists, so the routes read below stay true.
        let _host = self.kernel.lock_host()?;
        let subnet_given = o.subnet.is_some();
        let subnet = if let Some(s) = &o.subnet {
            let net = ipam::parse_subnet(s)?;
            if let Some((other, os)) = keel_nets.iter().find(|(_, os)| ipam::overlaps(net, *os)) {
                return Err(NetError::SubnetOverlap {
                    subnet: s.clone(),
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
        let host_addr = |what: &str, s: &str| -> Result<Ipv4Addr, NetError> {
            let ip = ipam::parse_addr(what, s)?;
            if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(NetError::InvalidConfig(format!(
                    "{what} {ip} is not a host address of subnet {subnet}"
                )));
            }
            Ok(ip)
        };
        let gateway = o
            .gateway
            .as_deref()
            .map(|g| host_addr("gateway", g))
            .transpose()?;
        let ip_range = o
            .ip_range
            .as_deref()
            .map(|r| ipam::parse_range(r, subnet))
            .transpose()?;
        let mut aux_addresses = BTreeMap::new();
        for (k, v) in &o.aux_addresses {
            aux_addresses.insert(k.clone(), host_addr(&format!("aux-address {k}"), v)?);
        }
        let id = match &o.id {
            Some(id) => id.to_ascii_lowercase(),
            None => random_hex(32)?,
        };
        let rec = NetRecord {
            bridge: matches!(driver.as_str(), "bridge" | "overlay")
                .then(|| format!("keel-{}", &id[..10])),
            id,
            name: name.to_string(),
            driver,
            subnet: Some(subnet),
            created: now(),
            predefined: false,
            user_subnet: subnet_given,
            gateway,
            ip_range,
            aux_addresses,
            internal: o.internal,
            labels: o.labels.clone(),
            options: o.options.clone(),
            remote: Vec::new(),
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
        // keel's chains are the host's, shared by every root: they go
        // (with their jumps) only when no root has a rule left in them.
        let _host = self.kernel.lock_host()?;
        self.kernel.remove_empty_chains()
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
            .and_then(NetRecord::gateway_ip);
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
        // Overlay networks: the containers of other nodes too.
        for e in &mine {
            if let Some(net) = st.network_by_id(&e.network_id) {
                peers.extend(net.remote.iter().map(|p| {
                    hosts::HostEntry {
                        ip: p.ip,
                        names: std::iter::once(p.name.clone())
                            .chain(p.aliases.iter().cloned())
                            .collect(),
                    }
                }));
            }
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
        let gateway = net.gateway_ip().unwrap_or_else(|| ipam::gateway(subnet));
        let Some(ip) = want else {
            let mut reserved = used;
            reserved.insert(gateway);
            reserved.extend(net.aux_addresses.values());
            return ipam::allocate_in(subnet, net.ip_range, &reserved)
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
            || ip == gateway
        {
            return Err(NetError::IpOutsideSubnet {
                ip,
                network: net.name.clone(),
            });
        }
        if used.contains(&ip) || net.aux_addresses.values().any(|a| *a == ip) {
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
        if net.subnet.is_none() || (net.bridge.is_none() && !net.is_sublink()) {
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
        // Docker publishes nothing from internal, macvlan and ipvlan networks.
        let ports = if net.internal || net.is_sublink() {
            Vec::new()
        } else {
            self.resolve_ports(&l.state, &req.ports)?
        };
        if let Some(subnet) = net.subnet {
            Self::pick_ip(&l.state, &net, subnet, req.ip)?;
        }
        let net = self.prepare_bridge(&mut l.state, net)?;
        let Some(subnet) = net.subnet else {
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
            host_if: if net.is_sublink() {
                String::new()
            } else {
                format!("veth{}", &random_hex(6)?[..11])
            },
            ports,
            ifname,
            extra_hosts: req.extra_hosts.clone(),
            dns: req.dns.clone(),
            netns: Some(req.netns.clone()),
        };
        // The lease is recorded before the kernel work, so a crash in between
        // leaves something `detach` knows how to clean up.
        l.state.endpoints.push(ep.clone());
        self.save_endpoints(&l.state)?;
        let res = self
            .attach_kernel(&net, subnet, &ep, &req.netns, primary)
            .and_then(|()| self.refresh_hosts(&l.state, &net));
        if let Err(e) = res {
            let _ = self.delete_endpoint_link(&ep);
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
            gateway: net.gateway_ip().unwrap_or_else(|| ipam::gateway(subnet)),
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
        net: &NetRecord,
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
        let gateway = net.gateway_ip().unwrap_or_else(|| ipam::gateway(subnet));
        let Some(bridge) = net.bridge.as_deref() else {
            let mode_key = format!("{}_mode", net.driver);
            let default_mode = if net.driver == "macvlan" {
                "bridge"
            } else {
                "l2"
            };
            return self.kernel.add_sublink(&SublinkSpec {
                kind: net.driver.clone(),
                mode: net
                    .options
                    .get(&mode_key)
                    .map_or(default_mode, String::as_str)
                    .to_string(),
                parent: net.options.get("parent").cloned().unwrap_or_default(),
                netns: netns.to_path_buf(),
                ifname: ep.ifname.clone(),
                mac: (net.driver == "macvlan").then(|| ep.mac.clone()),
                ip: ep.ip,
                prefix_len: subnet.prefix_len(),
                gateway: primary.then_some(gateway),
            });
        };
        let spec = VethSpec {
            host_if: ep.host_if.clone(),
            bridge: bridge.to_string(),
            netns: netns.to_path_buf(),
            mac: ep.mac.clone(),
            ip: ep.ip,
            prefix_len: subnet.prefix_len(),
            gateway,
            ifname: ep.ifname.clone(),
            // Docker's internal networks give containers no way out, not even a route.
            default_route: primary && !net.internal,
            mtu: net.options.get(OPT_MTU).and_then(|m| m.parse().ok()),
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

    /// Deletes an endpoint's link: the host side of its veth, or its
    /// macvlan/ipvlan link inside the container's namespace.
    fn delete_endpoint_link(&self, ep: &Endpoint) -> Result<(), NetError> {
        if !ep.host_if.is_empty() {
            return self.kernel.delete_link(&ep.host_if);
        }
        match &ep.netns {
            Some(ns) => self.kernel.delete_link_in(ns, &ep.ifname),
            None => Ok(()),
        }
    }

    /// Removes one endpoint's kernel side: its veth and published-port rules.
    fn detach_kernel(&self, st: &State, ep: &Endpoint) -> Result<(), NetError> {
        if ep.ports.is_empty() {
            return self.delete_endpoint_link(ep);
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

    /// Sets the containers other nodes run on overlay network `network`:
    /// its VXLAN device's FDB entries change by the difference, and local
    /// containers' hosts files name them.
    pub fn set_remote_peers(&self, network: &str, peers: &[RemotePeer]) -> Result<(), NetError> {
        let mut l = self.lock()?;
        let net = l
            .state
            .find(network)
            .cloned()
            .ok_or_else(|| NetError::NotFound(network.to_string()))?;
        let Some(dev) = net.vxlan_dev() else {
            return Err(NetError::InvalidConfig(format!(
                "network {} is not an overlay network",
                net.name
            )));
        };
        let mut want = peers.to_vec();
        want.sort();
        want.dedup();
        if want == net.remote {
            return Ok(());
        }
        // With the kernel side down (idle, released) the entries come back
        // with it, from the record.
        if net
            .bridge
            .as_ref()
            .is_some_and(|b| self.kernel.link_exists(b))
        {
            let have: BTreeSet<vxlan::Entry> =
                remote_entries(&dev, &net.remote).into_iter().collect();
            let next: BTreeSet<vxlan::Entry> = remote_entries(&dev, &want).into_iter().collect();
            let del: Vec<_> = have.difference(&next).cloned().collect();
            let add: Vec<_> = next.difference(&have).cloned().collect();
            self.kernel.vxlan_entries(&add, &del)?;
        }
        if let Some(rec) = l.state.networks.iter_mut().find(|n| n.id == net.id) {
            rec.remote = want;
        }
        self.save_networks(&l.state)?;
        let net = l.state.network_by_id(&net.id).cloned().unwrap_or(net);
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

/// The FDB entries that reach `peers` through VXLAN device `dev`: one
/// all-zeros entry per node they run on (broadcasts, ARP above all, are
/// replicated to each: the containers answer ARP themselves) and one per
/// container's MAC (unicast goes to its node only).
fn remote_entries(dev: &str, peers: &[RemotePeer]) -> Vec<vxlan::Entry> {
    let hosts: BTreeSet<Ipv4Addr> = peers.iter().map(|p| p.host).collect();
    hosts
        .into_iter()
        .map(|dst| vxlan::Entry::Flood {
            dev: dev.to_string(),
            dst,
        })
        .chain(peers.iter().map(|p| vxlan::Entry::Fdb {
            dev: dev.to_string(),
            mac: p.mac.clone(),
            dst: p.host,
        }))
        .collect()
}

#[cfg(test)]
mod tests;
