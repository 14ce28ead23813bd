//! Services in the kernel, as kube-proxy does it: the rule model
//! ([`ServiceRules`], built from a Service and its `EndpointSlices` by
//! [`ServiceRules::from_api`]), and [`Proxy`], which keeps one node's rules
//! in step with the Services through a [`Backend`]: [`Nftables`] (kube-proxy's
//! nftables mode; `nft.rs` renders `nft -f` transactions) or, where `nft`
//! is missing, [`Iptables`] (its iptables mode, `iptables.rs`, through
//! `iptables-restore`); [`host_backend`] picks one. Both pass one
//! behavioural suite (`conformance.rs`) in a real network namespace.
//!
//! nftables: one table (`ip keel-svc-<node>`), a verdict map from `ip . proto . port`
//! (cluster IPs and the load-balancer ingress addresses) and one from
//! `proto . port` (node ports, on every local address, 127.0.0.1 included
//! with `route_localnet`) send a packet to its service port's chain, which
//! picks a ready endpoint at random (`numgen`), or the one a client's
//! affinity set remembers, and DNATs to it. Every chain and set name is a
//! hash of the Service and port, so a change to one Service is one
//! transaction touching only that Service's chains and map elements:
//! kube-proxy's iptables mode rewrites everything, which is what makes it
//! slow with many Services. Written by hand because no maintained crate
//! models kube-proxy's rules; `nft` does the kernel side.
//!
//! Only ready endpoints take new connections (terminating ones keep their
//! established flows through conntrack: drained). Masquerading (mark
//! `0x4000`) for hairpin traffic (a pod reaching itself through its
//! Service), node-port and load-balancer traffic with
//! `externalTrafficPolicy: Cluster`, and connections from loopback. A port
//! without endpoints rejects.

#[cfg(test)]
mod conformance;
mod iptables;
mod nft;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::Value;

pub use iptables::{HostIptables, Iptables, Restore};
pub use nft::{cleanup_script, full_script, update_script};

/// A transport protocol nftables knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" | "" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (`externalTrafficPolicy: Local` uses only these).
    pub local: bool,
}

/// One port of a Service with the endpoints that take new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRules {
    /// The port's name ("" when the Service has one unnamed port).
    pub name: String,
    pub proto: Proto,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Ready endpoints, sorted.
    pub endpoints: Vec<Endpoint>,
}

/// What one Service needs in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRules {
    /// `namespace/name`.
    pub key: String,
    pub cluster_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress` addresses (keel's service load
    /// balancer fills them with the nodes' addresses).
    pub lb_ips: Vec<Ipv4Addr>,
    pub ports: Vec<PortRules>,
    /// `sessionAffinity: ClientIP` and its timeout in seconds.
    pub affinity: Option<u32>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
}

/// kube-proxy's default affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

impl ServiceRules {
    /// The rules of Service `svc` on node `node` given its `EndpointSlices`;
    /// `None` when the Service needs none (headless, `ExternalName`, no
    /// IPv4 cluster IP).
    pub fn from_api(svc: &Value, slices: &[&Value], node: &str) -> Option<Self> {
        let spec = svc.get("spec")?;
        if str_at(spec, "/type") == "ExternalName" {
            return None;
        }
        let mut cluster_ips: Vec<Ipv4Addr> = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(spec.get("clusterIP"))
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect();
        cluster_ips.sort_unstable();
        cluster_ips.dedup();
        if cluster_ips.is_empty() {
            return None;
        }
        let ty = str_at(spec, "/type");
        let lb = ty == "LoadBalancer";
        let mut lb_ips: Vec<Ipv4Addr> = if lb {
            svc.pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("ip")?.as_str()?.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        lb_ips.sort_unstable();
        lb_ips.dedup();
        let affinity = (str_at(spec, "/sessionAffinity") == "ClientIP").then(|| {
            spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let mut ports = Vec::new();
        for p in spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(proto) = Proto::parse(str_at(p, "/protocol")) else {
                continue;
            };
            let Some(port) = p
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            let name = str_at(p, "/name").to_string();
            let node_port = (ty == "NodePort" || lb)
                .then(|| p.get("nodePort").and_then(Value::as_u64))
                .flatten()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0);
            let mut endpoints = BTreeSet::new();
            for s in slices {
                if s.get("addressType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != "IPv4")
                {
                    continue;
                }
                // The slice's port of the same name and protocol: that is
                // where a named targetPort was resolved for its endpoints.
                let Some(target) = s
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|sp| {
                        str_at(sp, "/name") == name
                            && Proto::parse(str_at(sp, "/protocol")) == Some(proto)
                    })
                    .and_then(|sp| sp.get("port")?.as_u64())
                    .and_then(|n| u16::try_from(n).ok())
                else {
                    continue;
                };
                for e in s
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // `ready` is false for terminating endpoints: they get
                    // no new connections (drained).
                    if e.pointer("/conditions/ready") == Some(&Value::Bool(false)) {
                        continue;
                    }
                    let local = str_at(e, "/nodeName") == node;
                    for a in e
                        .get("addresses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(ip) = a.as_str().and_then(|a| a.parse().ok()) {
                            endpoints.insert(Endpoint {
                                ip,
                                port: target,
                                local,
                            });
                        }
                    }
                }
            }
            ports.push(PortRules {
                name,
                proto,
                port,
                node_port,
                endpoints: endpoints.into_iter().collect(),
            });
        }
        Some(Self {
            key: format!(
                "{}/{}",
                str_at(svc, "/metadata/namespace"),
                str_at(svc, "/metadata/name")
            ),
            cluster_ips,
            lb_ips,
            ports,
            affinity,
            external_local: (ty == "NodePort" || lb)
                && str_at(spec, "/externalTrafficPolicy") == "Local",
        })
    }
}

/// What failed applying rules.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot run {0}")]
    Spawn(String),
    #[error("{0} refused the rules: {1}")]
    Refused(&'static str, String),
}

/// One way of putting [`ServiceRules`] into the kernel (nftables, or
/// iptables where nftables is missing); [`Proxy`] keeps the bookkeeping.
pub trait Backend: Send {
    /// `nftables` or `iptables`.
    fn name(&self) -> &'static str;
    /// Makes `table` hold exactly `all`, whatever it held before.
    fn sync_all(
        &mut self,
        table: &str,
        all: &BTreeMap<String, ServiceRules>,
    ) -> Result<(), ProxyError>;
    /// Takes one Service from `old` to `new` in one transaction, touching
    /// nothing else; `old` is what an earlier call put there.
    fn update(
        &mut self,
        table: &str,
        old: Option<&ServiceRules>,
        new: Option<&ServiceRules>,
    ) -> Result<(), ProxyError>;
    /// Several Services at once (a burst of changes); backends that can
    /// make it one transaction do.
    fn update_many(&mut self, table: &str, changes: &[Change<'_>]) -> Result<(), ProxyError> {
        changes
            .iter()
            .try_for_each(|(old, new)| self.update(table, *old, *new))
    }
    /// Removes everything of `table` (absent is fine).
    fn cleanup(&mut self, table: &str) -> Result<(), ProxyError>;
}

/// One Service's rules before and after.
pub type Change<'a> = (Option<&'a ServiceRules>, Option<&'a ServiceRules>);

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn sync_all(
        &mut self,
        table: &str,
        all: &BTreeMap<String, ServiceRules>,
    ) -> Result<(), ProxyError> {
        (**self).sync_all(table, all)
    }
    fn update(
        &mut self,
        table: &str,
        old: Option<&ServiceRules>,
        new: Option<&ServiceRules>,
    ) -> Result<(), ProxyError> {
        (**self).update(table, old, new)
    }
    fn update_many(&mut self, table: &str, changes: &[Change<'_>]) -> Result<(), ProxyError> {
        (**self).update_many(table, changes)
    }
    fn cleanup(&mut self, table: &str) -> Result<(), ProxyError> {
        (**self).cleanup(table)
    }
}

/// The nftables side: transactions in `nft -f` syntax.
pub trait Nft: Send {
    /// Applies `script` as one transaction.
    fn apply(&mut self, script: &str) -> Result<(), ProxyError>;
}

/// The nftables backend: renders `nft.rs`'s scripts for an [`Nft`].
#[derive(Debug, Default)]
pub struct Nftables<N: Nft = HostNft>(pub N);

impl<N: Nft> Backend for Nftables<N> {
    fn name(&self) -> &'static str {
        "nftables"
    }
    fn sync_all(
        &mut self,
        table: &str,
        all: &BTreeMap<String, ServiceRules>,
    ) -> Result<(), ProxyError> {
        self.0.apply(&full_script(table, all.values()))
    }
    fn update(
        &mut self,
        table: &str,
        old: Option<&ServiceRules>,
        new: Option<&ServiceRules>,
    ) -> Result<(), ProxyError> {
        self.0.apply(&update_script(table, old, new))
    }
    /// One `nft` run and one transaction for all of them: the cost of an
    /// `nft` run is mostly reading the table into its cache, not the change.
    fn update_many(&mut self, table: &str, changes: &[Change<'_>]) -> Result<(), ProxyError> {
        let script: String = changes
            .iter()
            .map(|(old, new)| update_script(table, *old, *new))
            .collect();
        if script.is_empty() {
            return Ok(());
        }
        self.0.apply(&script)
    }
    fn cleanup(&mut self, table: &str) -> Result<(), ProxyError> {
        self.0.apply(&cleanup_script(table))
    }
}

/// `nft -f -` of this network namespace.
#[derive(Debug, Default)]
pub struct HostNft;

impl Nft for HostNft {
    fn apply(&mut self, script: &str) -> Result<(), ProxyError> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ProxyError::Spawn(format!("nft: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| ProxyError::Spawn(format!("nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| ProxyError::Spawn(format!("nft: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ProxyError::Refused(
                "nft",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

/// Which backend this host gets: `KEEL_PROXY_BACKEND` (`nftables` or
/// `iptables`) forces one; otherwise nftables when `nft` is on `PATH`,
/// else iptables (`iptables-restore`, nft-based or legacy).
pub fn host_backend() -> Result<Box<dyn Backend>, String> {
    let forced = std::env::var("KEEL_PROXY_BACKEND").unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    match choose(&forced, |prog| {
        std::env::split_paths(&path).any(|d| d.join(prog).is_file())
    })? {
        "iptables" => Ok(Box::new(Iptables(HostIptables))),
        _ => Ok(Box::new(Nftables(HostNft))),
    }
}

/// The backend's name given a forced one (`""`: none) and what is on `PATH`.
fn choose(forced: &str, on_path: impl Fn(&str) -> bool) -> Result<&'static str, String> {
    match forced {
        "nftables" | "nft" => Ok("nftables"),
        "iptables" => Ok("iptables"),
        "" if on_path("nft") => Ok("nftables"),
        "" if on_path("iptables-restore") => Ok("iptables"),
        "" => Err("neither nft nor iptables-restore is on PATH".into()),
        other => Err(format!(
            "KEEL_PROXY_BACKEND={other}: want nftables or iptables"
        )),
    }
}

/// The table name of node `node`: `keel-svc-<node>` (several agents may
/// share a machine in tests; each owns its table).
pub fn table_name(node: &str) -> String {
    let mut t = String::from("keel-svc-");
    for c in node.chars() {
        t.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    t
}

/// Keeps the kernel's table in step with the Services it is told about.
pub struct Proxy<B: Backend> {
    backend: B,
    table: String,
    /// What the kernel has now, by Service key.
    applied: BTreeMap<String, ServiceRules>,
    /// The table exists with its base chains.
    ready: bool,
}

impl<B: Backend> Proxy<B> {
    pub fn new(backend: B, table: String) -> Self {
        Self {
            backend,
            table,
            applied: BTreeMap::new(),
            ready: false,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Replaces everything: the table is made anew with these Services.
    pub fn sync_all(&mut self, all: BTreeMap<String, ServiceRules>) -> Result<(), ProxyError> {
        self.ready = false;
        self.backend.sync_all(&self.table, &all)?;
        self.applied = all;
        self.ready = true;
        Ok(())
    }

    /// Brings one Service's rules to `new` (`None`: it is gone or needs
    /// none), touching nothing else; after a failure, rebuilds the table.
    pub fn update(&mut self, key: &str, new: Option<ServiceRules>) -> Result<(), ProxyError> {
        let old = self.applied.get(key);
        if old == new.as_ref() && self.ready {
            return Ok(());
        }
        if !self.ready {
            let mut all = self.applied.clone();
            match new {
                Some(n) => all.insert(key.to_string(), n),
                None => all.remove(key),
            };
            return self.sync_all(all);
        }
        match self.backend.update(&self.table, old, new.as_ref()) {
            Ok(()) => {
                match new {
                    Some(n) => self.applied.insert(key.to_string(), n),
                    None => self.applied.remove(key),
                };
                Ok(())
            }
            Err(e) => {
                // The kernel's state is unknown: rebuild it whole.
                let mut all = self.applied.clone();
                match new {
                    Some(n) => all.insert(key.to_string(), n),
                    None => all.remove(key),
                };
                self.sync_all(all).map_err(|_| e)
            }
        }
    }

    /// Brings several Services to their new rules (`None`: gone) at once,
    /// skipping those that did not change; after a failure, rebuilds the
    /// table.
    pub fn update_many(
        &mut self,
        changes: BTreeMap<String, Option<ServiceRules>>,
    ) -> Result<(), ProxyError> {
        let changes: Vec<(String, Option<ServiceRules>)> = changes
            .into_iter()
            .filter(|(k, new)| !self.ready || self.applied.get(k) != new.as_ref())
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let mut all = self.applied.clone();
        for (k, new) in &changes {
            match new {
                Some(n) => all.insert(k.clone(), n.clone()),
                None => all.remove(k),
            };
        }
        if !self.ready {
            return self.sync_all(all);
        }
        let pairs: Vec<Change<'_>> = changes
            .iter()
            .map(|(k, new)| (self.applied.get(k), new.as_ref()))
            .collect();
        match self.backend.update_many(&self.table, &pairs) {
            Ok(()) => {
                self.applied = all;
                Ok(())
            }
            // The kernel's state is unknown: rebuild it whole.
            Err(e) => self.sync_all(all).map_err(|_| e),
        }
    }

    /// Removes the table and everything in it.
    pub fn cleanup(&mut self) -> Result<(), ProxyError> {
        self.ready = false;
        self.applied.clear();
        self.backend.cleanup(&self.table)
    }
}

/// A short stable id of `parts` (FNV-1a, 64 bits, hex), for chain and set
/// names.
fn id(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut s = String::with_capacity(16);
    let _ = write!(s, "{h:016x}");
    s
}
