//! The pod network across nodes, as flannel's backends build it. Every node
//! has a podCIDR on its own pod bridge; [`Overlay`] makes the other nodes'
//! podCIDRs reachable:
//!
//! - `vxlan` (default): a VXLAN device [`VXLAN_DEV`] (VNI 1, UDP 8472, no
//!   learning) on the interface holding the node's address, with the
//!   podCIDR's network address (`.0/32`) on it. For every other node: a
//!   route to its podCIDR via its `.0` (onlink, on the device), a permanent
//!   neighbour entry for that `.0` with the peer's VTEP MAC, and an FDB
//!   entry sending that MAC to the peer's public IP. Nothing is learned or
//!   flooded: the entries come from the Node objects (their annotations).
//! - `host-gw`: a plain route to each podCIDR via the peer's address, for
//!   nodes on one link.
//!
//! Pod traffic to other podCIDRs is exempt from the pod bridge's
//! masquerade (chain [`NAT_CHAIN`], first in nat POSTROUTING: an `ACCEPT`
//! there ends the nat table for the connection), so pods see each other's
//! real addresses; traffic to anywhere else keeps keel-net's masquerade.
//! Forwarding between podCIDRs is accepted in [`FWD_CHAIN`] (first in
//! keel-net's `KEEL-FORWARD`, so `NetworkPolicy`'s chain, first in FORWARD,
//! still sees it first). Routes carry protocol [`ROUTE_PROTO`], so cleanup
//! and a restart find exactly keel's again.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::NetError;
use crate::chains::{Chains, UsesHostChains};
use crate::kernel::run;

/// The VXLAN device (flannel's is `flannel.1`; `keel+` names are bridges
/// to keel-net's isolation rules).
pub const VXLAN_DEV: &str = "kvxlan.1";
pub const VXLAN_VNI: u32 = 1;
/// Linux's (and flannel's) VXLAN port, not IANA's 4789.
pub const VXLAN_PORT: u16 = 8472;
/// Outer Ethernet-less encapsulation: IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The route protocol keel's pod-network routes carry (`ip route ... proto 75`).
pub const ROUTE_PROTO: u8 = 75;
pub const NAT_CHAIN: &str = "KEEL-OVERLAY-POSTROUTING";
pub const FWD_CHAIN: &str = "KEEL-OVERLAY-FORWARD";

/// How podCIDRs of other nodes are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Vxlan,
    HostGw,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            o => Err(format!(
                "unknown pod network backend {o:?} (expected vxlan or host-gw)"
            )),
        }
    }
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }
}

/// This node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// The address other nodes reach this one at (the Node's `InternalIP`).
    pub public_ip: Ipv4Addr,
    /// The interface holding it and its MTU.
    pub link: String,
    pub link_mtu: u32,
    pub pod_cidr: Ipv4Net,
}

/// Another node, from its Node object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub name: String,
    pub public_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// Its VXLAN device's MAC (`None`: not published yet).
    pub vtep_mac: Option<String>,
}

/// One kernel entry for a peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    Route {
        dst: Ipv4Net,
        via: Ipv4Addr,
        dev: String,
        onlink: bool,
    },
    Neigh {
        dev: String,
        ip: Ipv4Addr,
        mac: String,
    },
    Fdb {
        dev: String,
        mac: String,
        dst: Ipv4Addr,
    },
    /// An all-zeros FDB entry: broadcasts and unknown unicast (ARP, above
    /// all) are also sent to `dst` (head-end replication, one entry per
    /// other node of an overlay network).
    Flood { dev: String, dst: Ipv4Addr },
}

/// The VXLAN device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local_ip: Ipv4Addr,
    pub link: String,
    pub mtu: u32,
    /// Its own address: the podCIDR's network address, /32.
    pub addr: Ipv4Addr,
}

/// Kernel effects of the pod network.
pub trait OverlayKernel: Chains {
    /// The interface holding `ip` and that interface's MTU.
    fn link_of(&self, ip: Ipv4Addr) -> Result<(String, u32), NetError>;
    /// Creates the device (re-creates it when its settings differ), sets its
    /// address and MTU and brings it up; returns its MAC.
    fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<String, NetError>;
    /// Deletes a link; absent is fine.
    fn delete_link(&self, name: &str) -> Result<(), NetError>;
    /// Adds (or replaces) entries.
    fn add_entries(&self, entries: &[Entry]) -> Result<(), NetError>;
    /// Removes entries; absent ones are fine.
    fn del_entries(&self, entries: &[Entry]) -> Result<(), NetError>;
    /// Removes every route carrying [`ROUTE_PROTO`].
    fn flush_routes(&self) -> Result<(), NetError>;
}

/// What a peer needs in the kernel.
pub fn peer_entries(backend: Backend, local: &Local, peer: &Peer) -> Vec<Entry> {
    if peer.pod_cidr == local.pod_cidr || peer.public_ip == local.public_ip {
        return Vec::new();
    }
    match backend {
        Backend::Vxlan => {
            let Some(mac) = &peer.vtep_mac else {
                return Vec::new();
            };
            let gw = peer.pod_cidr.network();
            let dev = VXLAN_DEV.to_string();
            vec![
                Entry::Route {
                    dst: peer.pod_cidr,
                    via: gw,
                    dev: dev.clone(),
                    onlink: true,
                },
                Entry::Neigh {
                    dev: dev.clone(),
                    ip: gw,
                    mac: mac.clone(),
                },
                Entry::Fdb {
                    dev,
                    mac: mac.clone(),
                    dst: peer.public_ip,
                },
            ]
        }
        Backend::HostGw => vec![Entry::Route {
            dst: peer.pod_cidr,
            via: peer.public_ip,
            dev: local.link.clone(),
            onlink: false,
        }],
    }
}

/// The NAT exemptions and forward accepts for the podCIDRs of `peers`.
pub fn chain_rules(local: &Local, peers: &[Peer]) -> (Vec<String>, Vec<String>) {
    let mut cidrs: Vec<Ipv4Net> = peers
        .iter()
        .map(|p| p.pod_cidr)
        .filter(|c| *c != local.pod_cidr)
        .collect();
    cidrs.sort();
    cidrs.dedup();
    let l = local.pod_cidr;
    let nat = cidrs
        .iter()
        .map(|c| format!("-s {l} -d {c} -j ACCEPT"))
        .collect();
    let mut fwd = Vec::new();
    for c in &cidrs {
        fwd.push(format!("-s {l} -d {c} -j ACCEPT"));
        fwd.push(format!("-s {c} -d {l} -j ACCEPT"));
    }
    (nat, fwd)
}

/// The pod network of this node: the device, per-peer entries and chains.
pub struct Overlay<K: OverlayKernel> {
    kernel: K,
    backend: Backend,
    local: Local,
    mac: Option<String>,
    installed: BTreeSet<Entry>,
}

impl<K: OverlayKernel> Overlay<K> {
    pub fn new(kernel: K, backend: Backend, local: Local) -> Self {
        Overlay {
            kernel,
            backend,
            local,
            mac: None,
            installed: BTreeSet::new(),
        }
    }

    pub fn local(&self) -> &Local {
        &self.local
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The MTU of pods' interfaces: the link's, less VXLAN's overhead.
    pub fn pod_mtu(&self) -> u32 {
        match self.backend {
            Backend::Vxlan => self.local.link_mtu.saturating_sub(VXLAN_OVERHEAD),
            Backend::HostGw => self.local.link_mtu,
        }
    }

    /// Starts from a clean slate (routes a crashed agent left) and creates
    /// the device; returns the VTEP MAC to publish (vxlan only).
    pub fn start(&mut self) -> Result<Option<String>, NetError> {
        self.kernel.flush_routes()?;
        self.installed.clear();
        if self.backend == Backend::HostGw {
            self.kernel.delete_link(VXLAN_DEV)?;
            return Ok(None);
        }
        let mac = self.kernel.ensure_vxlan(&VxlanSpec {
            name: VXLAN_DEV.into(),
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local_ip: self.local.public_ip,
            link: self.local.link.clone(),
            mtu: self.pod_mtu(),
            addr: self.local.pod_cidr.network(),
        })?;
        self.mac = Some(mac.clone());
        Ok(Some(mac))
    }

    /// Makes the kernel hold exactly what `peers` need (incremental: only
    /// entries of peers that changed are touched).
    pub fn sync(&mut self, peers: &[Peer]) -> Result<(), NetError> {
        let want: BTreeSet<Entry> = peers
            .iter()
            .flat_map(|p| peer_entries(self.backend, &self.local, p))
            .collect();
        let del: Vec<Entry> = self.installed.difference(&want).cloned().collect();
        let add: Vec<Entry> = want.difference(&self.installed).cloned().collect();
        if !del.is_empty() {
            self.kernel.del_entries(&del)?;
            for e in &del {
                self.installed.remove(e);
            }
        }
        if !add.is_empty() {
            self.kernel.add_entries(&add)?;
            self.installed.extend(add);
        }
        let (nat, fwd) = chain_rules(&self.local, peers);
        self.kernel
            .set_chain("nat", "POSTROUTING", NAT_CHAIN, &nat)?;
        self.kernel
            .set_chain("filter", "KEEL-FORWARD", FWD_CHAIN, &fwd)?;
        Ok(())
    }

    /// Removes everything: the device (with its neighbours and FDB), the
    /// routes and the chains. Idempotent.
    pub fn cleanup(&mut self) -> Result<(), NetError> {
        let mut first_err = None;
        let mut keep = |r: Result<(), NetError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        keep(self.kernel.flush_routes());
        keep(self.kernel.delete_link(VXLAN_DEV));
        keep(self.kernel.delete_chain("nat", "POSTROUTING", NAT_CHAIN));
        keep(
            self.kernel
                .delete_chain("filter", "KEEL-FORWARD", FWD_CHAIN),
        );
        self.installed.clear();
        first_err.map_or(Ok(()), Err)
    }
}

/// The real kernel: iproute2's `ip` and `bridge`, iptables.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostOverlay;

impl UsesHostChains for HostOverlay {}

fn overlay_err(what: &str) -> impl FnOnce(String) -> NetError + '_ {
    move |e| NetError::Overlay(format!("{what}: {e}"))
}

/// The `ip`/`bridge` batch lines for entries (`add`: replace; else delete).
pub(crate) fn batch_lines(entries: &[Entry], add: bool) -> (String, String) {
    let (mut ip, mut bridge) = (String::new(), String::new());
    for e in entries {
        match (e, add) {
            (
                Entry::Route {
                    dst,
                    via,
                    dev,
                    onlink,
                },
                true,
            ) => {
                let onlink = if *onlink { " onlink" } else { "" };
                let _ = writeln!(
                    ip,
                    "route replace {dst} via {via} dev {dev}{onlink} proto {ROUTE_PROTO}"
                );
            }
            (Entry::Route { dst, dev, .. }, false) => {
                let _ = writeln!(ip, "route del {dst} dev {dev} proto {ROUTE_PROTO}");
            }
            (Entry::Neigh { dev, ip: a, mac }, true) => {
                let _ = writeln!(ip, "neigh replace {a} lladdr {mac} dev {dev} nud permanent");
            }
            (Entry::Neigh { dev, ip: a, .. }, false) => {
                let _ = writeln!(ip, "neigh del {a} dev {dev}");
            }
            (Entry::Fdb { dev, mac, dst }, true) => {
                let _ = writeln!(
                    bridge,
                    "fdb replace {mac} dev {dev} dst {dst} self permanent"
                );
            }
            (Entry::Fdb { dev, mac, dst }, false) => {
                let _ = writeln!(bridge, "fdb del {mac} dev {dev} dst {dst} self");
            }
            (Entry::Flood { dev, dst }, true) => {
                let _ = writeln!(
                    bridge,
                    "fdb append 00:00:00:00:00:00 dev {dev} dst {dst} self permanent"
                );
            }
            (Entry::Flood { dev, dst }, false) => {
                let _ = writeln!(bridge, "fdb del 00:00:00:00:00:00 dev {dev} dst {dst} self");
            }
        }
    }
    (ip, bridge)
}

/// Whether every error line of a forced delete batch says "already gone".
fn only_absent(err: &str) -> bool {
    err.split("; ").all(|l| {
        l.is_empty()
            || l.contains("No such")
            || l.contains("Cannot find device")
            || l.starts_with("Command failed")
    })
}

/// `ip link add NAME type vxlan id VNI local IP [dev LINK] dstport PORT
/// nolearning`: FDB entries come from the cluster, nothing is learned.
pub(crate) fn add_vxlan(
    name: &str,
    vni: u32,
    local: Ipv4Addr,
    link: Option<&str>,
    port: u16,
) -> Result<(), String> {
    let (vni, local, port) = (vni.to_string(), local.to_string(), port.to_string());
    let mut args = vec![
        "link", "add", name, "type", "vxlan", "id", &vni, "local", &local,
    ];
    if let Some(l) = link {
        args.extend(["dev", l]);
    }
    args.extend(["dstport", port.as_str(), "nolearning"]);
    run("ip", &args, None).map(|_| ())
}

/// `ip -o link show dev NAME`'s `mtu N`.
fn link_mtu(name: &str) -> Result<u32, NetError> {
    let out = run("ip", &["-o", "link", "show", "dev", name], None)
        .map_err(overlay_err("reading the link's MTU"))?;
    out.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| NetError::Overlay(format!("no MTU for {name} in {out:?}")))
}

impl OverlayKernel for HostOverlay {
    fn link_of(&self, ip: Ipv4Addr) -> Result<(String, u32), NetError> {
        let out = run("ip", &["-o", "-4", "addr", "show"], None)
            .map_err(overlay_err("listing addresses"))?;
        let needle = format!("inet {ip}/");
        let name = out
            .lines()
            .find(|l| l.contains(&needle))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .ok_or_else(|| {
                NetError::Overlay(format!("no interface of this host has address {ip}"))
            })?;
        Ok((name.clone(), link_mtu(&name)?))
    }

    fn ensure_vxlan(&self, s: &VxlanSpec) -> Result<String, NetError> {
        let want = [
            format!("vxlan id {} ", s.vni),
            format!("local {} ", s.local_ip),
            format!("dev {} ", s.link),
            format!("dstport {} ", s.port),
            "nolearning".to_string(),
        ];
        if let Ok(cur) = run("ip", &["-d", "-o", "link", "show", "dev", &s.name], None)
            && !want.iter().all(|w| cur.contains(w.as_str()))
        {
            // Settings changed (another address or port): re-create.
            self.delete_link(&s.name)?;
        }
        if !crate::kernel::link_exists(&s.name) {
            add_vxlan(&s.name, s.vni, s.local_ip, Some(&s.link), s.port)
                .map_err(overlay_err("creating the vxlan device"))?;
        }
        let batch = format!(
            "link set dev {n} mtu {m}\naddr replace {a}/32 dev {n}\nlink set dev {n} up\n",
            n = s.name,
            m = s.mtu,
            a = s.addr,
        );
        run("ip", &["-batch", "-"], Some(&batch))
            .map_err(overlay_err("configuring the vxlan device"))?;
        let out = run("ip", &["-o", "link", "show", "dev", &s.name], None)
            .map_err(overlay_err("reading the vxlan device"))?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| NetError::Overlay(format!("no MAC for {} in {out:?}", s.name)))
    }

    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        if !crate::kernel::link_exists(name) {
            return Ok(());
        }
        run("ip", &["link", "del", "dev", name], None)
            .map(|_| ())
            .map_err(overlay_err("deleting the vxlan device"))
    }

    fn add_entries(&self, entries: &[Entry]) -> Result<(), NetError> {
        let (ip, bridge) = batch_lines(entries, true);
        // FDB first: a route is usable the moment it exists.
        if !bridge.is_empty() {
            run("bridge", &["-batch", "-"], Some(&bridge))
                .map_err(overlay_err("adding FDB entries"))?;
        }
        if !ip.is_empty() {
            run("ip", &["-batch", "-"], Some(&ip)).map_err(overlay_err("adding routes"))?;
        }
        Ok(())
    }

    fn del_entries(&self, entries: &[Entry]) -> Result<(), NetError> {
        let (ip, bridge) = batch_lines(entries, false);
        for (prog, batch) in [("ip", ip), ("bridge", bridge)] {
            if batch.is_empty() {
                continue;
            }
            match run(prog, &["-force", "-batch", "-"], Some(&batch)) {
                Err(e) if !only_absent(&e) => {
                    return Err(NetError::Overlay(format!("removing entries: {e}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn flush_routes(&self) -> Result<(), NetError> {
        run(
            "ip",
            &["-4", "route", "flush", "proto", &ROUTE_PROTO.to_string()],
            None,
        )
        .map(|_| ())
        .map_err(overlay_err("removing routes"))
    }
}

#[cfg(test)]
#[path = "vxlan_tests.rs"]
mod tests;
