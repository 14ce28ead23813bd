//! The cluster as DNS sees it: Services and `EndpointSlices` (as the API
//! serves them, JSON), kept per object so one change costs one object, with
//! a reverse index (address → names) for PTR queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;

/// A change of the watched objects (Services and `EndpointSlices`; other
/// kinds are ignored).
#[derive(Debug, Clone)]
pub enum Event {
    /// A fresh list: everything known before is forgotten.
    Reset(Vec<Value>),
    /// Created or updated.
    Put(Value),
    /// Deleted (only `kind`, namespace and name are read).
    Deleted(Value),
}

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    External(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_field_names)] // `port.port` is the Service's own word.
pub(crate) struct Port {
    pub name: String,
    /// Lowercase (`tcp`, `udp`, `sctp`), as SRV names spell it.
    pub proto: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub kind: Kind,
    pub ports: Vec<Port>,
    /// `publishNotReadyAddresses` or the tolerate-unready annotation.
    pub publish_not_ready: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub addrs: Vec<IpAddr>,
    pub hostname: Option<String>,
    pub ready: bool,
}

impl Endpoint {
    /// The spec's _hostname_: the endpoint's own, else a system-assigned
    /// one, its first address with dashes (as `CoreDNS` does).
    pub fn hostname(&self) -> Option<String> {
        if let Some(h) = &self.hostname {
            return Some(h.to_ascii_lowercase());
        }
        self.addrs
            .first()
            .map(|a| a.to_string().replace(['.', ':'], "-"))
    }
}

#[derive(Debug, Clone)]
struct Slice {
    service: String,
    ports: Vec<Port>,
    endpoints: Vec<Endpoint>,
}

/// What [`Cluster::apply`] keeps.
#[derive(Debug, Default)]
pub struct Cluster {
    zone: String,
    services: HashMap<Key, Service>,
    slices: HashMap<Key, Slice>,
    /// Slice names of each Service.
    slices_of: HashMap<Key, BTreeSet<String>>,
    /// Services per namespace (a namespace with none does not exist here).
    namespaces: HashMap<String, usize>,
    ptr: HashMap<IpAddr, BTreeMap<Key, Vec<String>>>,
    ptr_owned: HashMap<Key, Vec<IpAddr>>,
}

const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn ports(v: Option<&Value>) -> Vec<Port> {
    v.and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(Port {
                        name: p.get("name").and_then(Value::as_str)?.to_ascii_lowercase(),
                        proto: p
                            .get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
                            .to_ascii_lowercase(),
                        port: u16::try_from(p.get("port").and_then(Value::as_u64)?).ok()?,
                    })
                })
                .filter(|p| !p.name.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn ips(v: Option<&Value>) -> Vec<IpAddr> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn service(obj: &Value) -> Service {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or_default();
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = if ty == "ExternalName" {
        Kind::External(
            spec.get("externalName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        )
    } else if cluster_ip == "None" {
        Kind::Headless
    } else {
        let mut all = ips(spec.get("clusterIPs"));
        if all.is_empty() {
            all = cluster_ip.parse().into_iter().collect();
        }
        Kind::ClusterIp(all)
    };
    let annotated = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(TOLERATE_UNREADY))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Service {
        kind,
        ports: ports(spec.get("ports")),
        publish_not_ready: annotated
            || spec
                .get("publishNotReadyAddresses")
                .and_then(Value::as_bool)
                .unwrap_or(false),
    }
}

fn slice(obj: &Value) -> Option<Slice> {
    let service = obj
        .pointer("/metadata/labels/kubernetes.io~1service-name")
        .and_then(Value::as_str)?
        .to_string();
    let endpoints = obj
        .get("endpoints")
        .and_then(Value::as_array)
        .map(|eps| {
            eps.iter()
                .map(|e| Endpoint {
                    addrs: ips(e.get("addresses")),
                    hostname: e
                        .get("hostname")
                        .and_then(Value::as_str)
                        .filter(|h| !h.is_empty())
                        .map(str::to_string),
                    // Unset means ready (discovery.k8s.io/v1 says so).
                    ready: e
                        .pointer("/conditions/ready")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Slice {
        service,
        ports: ports(obj.get("ports")),
        endpoints,
    })
}

fn key(obj: &Value) -> Key {
    (meta(obj, "namespace").into(), meta(obj, "name").into())
}

impl Cluster {
    /// An empty cluster with domain `zone` (`cluster.local`).
    pub fn new(zone: &str) -> Self {
        Cluster {
            zone: zone.trim_end_matches('.').to_ascii_lowercase(),
            ..Cluster::default()
        }
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Applies one change.
    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Reset(objs) => {
                let zone = std::mem::take(&mut self.zone);
                *self = Cluster::new(&zone);
                for o in objs {
                    self.put(&o);
                }
            }
            Event::Put(o) => self.put(&o),
            Event::Deleted(o) => self.delete(&o),
        }
    }

    fn put(&mut self, obj: &Value) {
        let k = key(obj);
        match obj.get("kind").and_then(Value::as_str) {
            Some("Service") => {
                if self.services.insert(k.clone(), service(obj)).is_none() {
                    *self.namespaces.entry(k.0.clone()).or_default() += 1;
                }
                self.reindex(&k);
            }
            Some("EndpointSlice") => {
                self.drop_slice(&k);
                if let Some(s) = slice(obj) {
                    let svc = (k.0.clone(), s.service.clone());
                    self.slices_of
                        .entry(svc.clone())
                        .or_default()
                        .insert(k.1.clone());
                    self.slices.insert(k, s);
                    self.reindex(&svc);
                }
            }
            _ => {}
        }
    }

    fn delete(&mut self, obj: &Value) {
        let k = key(obj);
        match obj.get("kind").and_then(Value::as_str) {
            Some("Service") => {
                if self.services.remove(&k).is_some()
                    && let Some(n) = self.namespaces.get_mut(&k.0)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.namespaces.remove(&k.0);
                    }
                }
                self.reindex(&k);
            }
            Some("EndpointSlice") => self.drop_slice(&k),
            _ => {}
        }
    }

    fn drop_slice(&mut self, k: &Key) {
        if let Some(old) = self.slices.remove(k) {
            let svc = (k.0.clone(), old.service);
            if let Some(set) = self.slices_of.get_mut(&svc) {
                set.remove(&k.1);
                if set.is_empty() {
                    self.slices_of.remove(&svc);
                }
            }
            self.reindex(&svc);
        }
    }

    /// Recomputes the PTR entries of one Service.
    fn reindex(&mut self, svc: &Key) {
        for ip in self.ptr_owned.remove(svc).unwrap_or_default() {
            if let Some(m) = self.ptr.get_mut(&ip) {
                m.remove(svc);
                if m.is_empty() {
                    self.ptr.remove(&ip);
                }
            }
        }
        let Some(s) = self.services.get(svc) else {
            return;
        };
        let base = format!("{}.{}.svc.{}", svc.1, svc.0, self.zone);
        let mut names: Vec<(IpAddr, String)> = Vec::new();
        match &s.kind {
            Kind::ClusterIp(ips) => names.extend(ips.iter().map(|ip| (*ip, base.clone()))),
            Kind::Headless => {
                for e in self.endpoints(svc, s) {
                    if let Some(h) = e.hostname() {
                        names.extend(e.addrs.iter().map(|ip| (*ip, format!("{h}.{base}"))));
                    }
                }
            }
            Kind::External(_) => {}
        }
        let mut owned = Vec::new();
        for (ip, name) in names {
            let list = self
                .ptr
                .entry(ip)
                .or_default()
                .entry(svc.clone())
                .or_default();
            if !list.contains(&name) {
                list.push(name);
            }
            owned.push(ip);
        }
        if !owned.is_empty() {
            self.ptr_owned.insert(svc.clone(), owned);
        }
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        self.services.get(&(ns.to_string(), name.to_string()))
    }

    pub(crate) fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains_key(ns)
    }

    /// The _ready_ endpoints of a Service (all of them when it publishes
    /// unready ones).
    pub(crate) fn endpoints<'a>(
        &'a self,
        svc: &'a Key,
        s: &'a Service,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.slices_of
            .get(svc)
            .into_iter()
            .flatten()
            .filter_map(move |n| self.slices.get(&(svc.0.clone(), n.clone())))
            .flat_map(|sl| sl.endpoints.iter())
            .filter(move |e| e.ready || s.publish_not_ready)
    }

    /// `(port, endpoint)` pairs of a headless Service for a named port.
    pub(crate) fn endpoint_ports<'a>(
        &'a self,
        svc: &Key,
        s: &'a Service,
        port: &'a str,
        proto: &'a str,
    ) -> Vec<(u16, &'a Endpoint)> {
        let mut out = Vec::new();
        for n in self.slices_of.get(svc).into_iter().flatten() {
            let Some(sl) = self.slices.get(&(svc.0.clone(), n.clone())) else {
                continue;
            };
            for p in sl
                .ports
                .iter()
                .filter(|p| p.name == port && p.proto == proto)
            {
                for e in &sl.endpoints {
                    if e.ready || s.publish_not_ready {
                        out.push((p.port, e));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn ptr(&self, ip: IpAddr) -> Vec<&str> {
        self.ptr
            .get(&ip)
            .into_iter()
            .flat_map(|m| m.values().flatten().map(String::as_str))
            .collect()
    }
}
