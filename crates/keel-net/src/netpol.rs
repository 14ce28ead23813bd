//! `NetworkPolicy` (`networking.k8s.io/v1`) compiled to iptables rules for the
//! pods of one node, enforced in one keel-owned chain [`CHAIN`] (first in
//! FORWARD; bridged pod-to-pod traffic passes there through `br_netfilter`).
//!
//! Kubernetes' semantics: a pod no policy selects (for a direction) is
//! unrestricted in that direction; policies are additive (a connection is
//! allowed if any rule of any policy selecting the pod allows it); replies
//! of allowed connections pass (conntrack `ESTABLISHED,RELATED`). Egress is
//! checked on the node of the source pod, ingress on the node of the
//! destination, so both hold across nodes. In one pass a packet collects a
//! mark bit for "egress allowed" and one for "ingress allowed"; a selected
//! pod's packet without its bit is dropped. Peers are expanded to pod IPs
//! (pod and namespace selectors evaluated against every pod) or CIDRs
//! (`ipBlock` less its `except`, split into the CIDRs that remain), ports
//! to `--dport N[:endPort]` (named ports resolved against the pod that
//! serves them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::NetError;
use crate::chains::Chains;

/// The chain, jumped to first from FORWARD.
pub const CHAIN: &str = "KEEL-NETPOL";
/// Mark bits (clear of kube-proxy's 0x4000/0x8000).
pub const MARK_EGRESS: u32 = 0x10000;
pub const MARK_INGRESS: u32 = 0x20000;

/// A label selector (`metav1.LabelSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub labels: BTreeMap<String, String>,
    pub exprs: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Parses a `LabelSelector` object; `null` or absent is the empty selector.
    pub fn from_json(v: &Value) -> Result<Selector, String> {
        if v.is_null() {
            return Ok(Selector::default());
        }
        let obj = v.as_object().ok_or("a label selector is an object")?;
        let mut s = Selector::default();
        if let Some(ml) = obj.get("matchLabels").filter(|m| !m.is_null()) {
            for (k, val) in ml.as_object().ok_or("matchLabels is an object")? {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("matchLabels.{k} is not a string"))?;
                s.labels.insert(k.clone(), val.to_string());
            }
        }
        if let Some(me) = obj.get("matchExpressions").filter(|m| !m.is_null()) {
            for e in me.as_array().ok_or("matchExpressions is a list")? {
                let key = e["key"]
                    .as_str()
                    .ok_or("a match expression needs a key")?
                    .to_string();
                let op = match e["operator"].as_str() {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    o => return Err(format!("unknown selector operator {o:?}")),
                };
                let values: Vec<String> = match &e["values"] {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).ok_or("values are strings"))
                        .collect::<Result<_, _>>()?,
                    _ => return Err("values is a list".into()),
                };
                if matches!(op, Op::In | Op::NotIn) == values.is_empty() {
                    return Err(format!(
                        "operator {op:?} of key {key:?}: values must be {}",
                        if values.is_empty() {
                            "non-empty"
                        } else {
                            "empty"
                        }
                    ));
                }
                s.exprs.push(Requirement { key, op, values });
            }
        }
        Ok(s)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|r| {
                let v = labels.get(&r.key);
                match r.op {
                    Op::In => v.is_some_and(|v| r.values.contains(v)),
                    Op::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                    Op::Exists => v.is_some(),
                    Op::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// A pod as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// Named container ports: (name, protocol, port).
    pub ports: Vec<(String, String, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSel {
    /// `namespaces: None`: the policy's namespace.
    Pods {
        namespaces: Option<Selector>,
        pods: Selector,
    },
    IpBlock {
        cidr: Ipv4Net,
        except: Vec<Ipv4Net>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortVal {
    Num(u16),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSel {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: Option<PortVal>,
    pub end_port: Option<u16>,
}

/// One ingress or egress rule: empty `peers` or `ports` mean all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub peers: Vec<PeerSel>,
    pub ports: Vec<PortSel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    /// `None`: the policy does not restrict ingress (not in policyTypes).
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
}

fn parse_peer(v: &Value, dir: &str) -> Result<PeerSel, String> {
    if let Some(b) = v.get("ipBlock").filter(|b| !b.is_null()) {
        let cidr = b["cidr"]
            .as_str()
            .ok_or("ipBlock needs a cidr")?
            .parse::<Ipv4Net>()
            .map_err(|e| format!("ipBlock.cidr: {e}"))?
            .trunc();
        let mut except = Vec::new();
        for e in b["except"].as_array().into_iter().flatten() {
            let e = e
                .as_str()
                .ok_or("ipBlock.except holds CIDRs")?
                .parse::<Ipv4Net>()
                .map_err(|e| format!("ipBlock.except: {e}"))?
                .trunc();
            except.push(e);
        }
        return Ok(PeerSel::IpBlock { cidr, except });
    }
    let ns = v.get("namespaceSelector").filter(|s| !s.is_null());
    let pods = v.get("podSelector").filter(|s| !s.is_null());
    if ns.is_none() && pods.is_none() {
        return Err(format!(
            "a {dir} peer needs podSelector, namespaceSelector or ipBlock"
        ));
    }
    Ok(PeerSel::Pods {
        namespaces: ns.map(Selector::from_json).transpose()?,
        pods: pods.map_or(Ok(Selector::default()), Selector::from_json)?,
    })
}

fn parse_rules(v: &Value, peers_key: &str) -> Result<Vec<PolicyRule>, String> {
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        let mut rule = PolicyRule::default();
        for p in r[peers_key].as_array().into_iter().flatten() {
            rule.peers.push(parse_peer(p, peers_key)?);
        }
        for p in r["ports"].as_array().into_iter().flatten() {
            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
            if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                return Err(format!("unknown protocol {protocol:?}"));
            }
            let port = match &p["port"] {
                Value::Null => None,
                Value::Number(n) => Some(PortVal::Num(
                    n.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("port {n} is out of range"))?,
                )),
                Value::String(s) => Some(PortVal::Named(s.clone())),
                _ => return Err("port is a number or a name".into()),
            };
            let end_port = match &p["endPort"] {
                Value::Null => None,
                e => Some(
                    e.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or("endPort is a port number")?,
                ),
            };
            if let (Some(e), Some(PortVal::Num(s))) = (end_port, &port)
                && e < *s
            {
                return Err(format!("endPort {e} is below port {s}"));
            }
            rule.ports.push(PortSel {
                protocol,
                port,
                end_port,
            });
        }
        out.push(rule);
    }
    Ok(out)
}

impl Policy {
    /// Parses a `NetworkPolicy` object (JSON as the API serves it).
    pub fn from_json(v: &Value) -> Result<Policy, String> {
        let spec = &v["spec"];
        let types: Vec<&str> = spec["policyTypes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Kubernetes' default: Ingress always, Egress when egress rules exist.
        let (ing, eg) = if types.is_empty() {
            (true, spec["egress"].is_array())
        } else {
            (types.contains(&"Ingress"), types.contains(&"Egress"))
        };
        Ok(Policy {
            namespace: v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .into(),
            name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            pod_selector: Selector::from_json(&spec["podSelector"])?,
            ingress: ing
                .then(|| parse_rules(&spec["ingress"], "from"))
                .transpose()?,
            egress: eg.then(|| parse_rules(&spec["egress"], "to")).transpose()?,
        })
    }

    fn selects(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }
}

/// `cidr` less every `except`, as the fewest CIDRs that remain.
pub fn subtract(cidr: Ipv4Net, except: &[Ipv4Net]) -> Vec<Ipv4Net> {
    if except.iter().any(|e| e.contains(&cidr)) {
        return Vec::new();
    }
    if !except.iter().any(|e| cidr.contains(e)) {
        return vec![cidr];
    }
    // Some except lies strictly inside: split in halves (depth <= 32).
    cidr.subnets(cidr.prefix_len() + 1).map_or_else(
        |_| Vec::new(),
        |s| s.flat_map(|h| subtract(h, except)).collect(),
    )
}

/// The cluster as the compiler sees it.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub pods: Vec<PodInfo>,
    /// Namespace name → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub policies: Vec<Policy>,
}

/// An address match: a pod (for named ports) or a CIDR; `None` is any.
enum Addr<'a> {
    Any,
    Pod(&'a PodInfo),
    Net(Ipv4Net),
}

impl Cluster {
    fn peers<'a>(&'a self, policy: &Policy, rule: &PolicyRule) -> Vec<Addr<'a>> {
        if rule.peers.is_empty() {
            return vec![Addr::Any];
        }
        let mut out = Vec::new();
        for p in &rule.peers {
            match p {
                PeerSel::IpBlock { cidr, except } => {
                    out.extend(subtract(*cidr, except).into_iter().map(Addr::Net));
                }
                PeerSel::Pods { namespaces, pods } => {
                    let empty = BTreeMap::new();
                    out.extend(
                        self.pods
                            .iter()
                            .filter(|q| match namespaces {
                                None => q.namespace == policy.namespace,
                                Some(sel) => {
                                    sel.matches(self.namespaces.get(&q.namespace).unwrap_or(&empty))
                                }
                            })
                            .filter(|q| pods.matches(&q.labels))
                            .map(Addr::Pod),
                    );
                }
            }
        }
        out
    }

    /// The `-p proto --dport` parts of `rule` for traffic served by `server`
    /// (named ports need it; `None` when unknown, say an ipBlock).
    fn ports(rule: &PolicyRule, server: Option<&PodInfo>) -> Vec<String> {
        if rule.ports.is_empty() {
            return vec![String::new()];
        }
        let mut out = Vec::new();
        for p in &rule.ports {
            let proto = &p.protocol;
            let m = format!("-p {proto} -m {proto}");
            match &p.port {
                None => out.push(format!("-p {proto}")),
                Some(PortVal::Num(n)) => match p.end_port {
                    Some(e) if e > *n => out.push(format!("{m} --dport {n}:{e}")),
                    _ => out.push(format!("{m} --dport {n}")),
                },
                Some(PortVal::Named(name)) => {
                    let Some(s) = server else { continue };
                    for (pn, pp, num) in &s.ports {
                        if pn == name && pp.eq_ignore_ascii_case(proto) {
                            out.push(format!("{m} --dport {num}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// The chain's rules for the pods of this node (`local`: their IPs).
    pub fn compile(&self, local: &[Ipv4Addr]) -> Vec<String> {
        let mut out = vec!["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_string()];
        let mut drops = Vec::new();
        let mine = self.pods.iter().filter(|p| local.contains(&p.ip));
        for pod in mine {
            let ip = pod.ip;
            let sel: Vec<&Policy> = self.policies.iter().filter(|p| p.selects(pod)).collect();
            let egress: Vec<(&Policy, &PolicyRule)> = sel
                .iter()
                .filter_map(|p| p.egress.as_ref().map(|r| (*p, r)))
                .flat_map(|(p, rs)| rs.iter().map(move |r| (p, r)))
                .collect();
            if sel.iter().any(|p| p.egress.is_some()) {
                let set = format!("-j MARK --set-xmark {MARK_EGRESS:#x}/{MARK_EGRESS:#x}");
                for (p, r) in egress {
                    for dst in self.peers(p, r) {
                        let (d, server) = match dst {
                            Addr::Any => (String::new(), None),
                            Addr::Pod(q) => (format!(" -d {}/32", q.ip), Some(q)),
                            Addr::Net(n) => (format!(" -d {n}"), None),
                        };
                        for port in Self::ports(r, server) {
                            let port = if port.is_empty() {
                                port
                            } else {
                                format!(" {port}")
                            };
                            out.push(format!("-s {ip}/32{d}{port} {set}"));
                        }
                    }
                }
                drops.push(format!(
                    "-s {ip}/32 -m mark ! --mark {MARK_EGRESS:#x}/{MARK_EGRESS:#x} -j DROP"
                ));
            }
            let ingress: Vec<(&Policy, &PolicyRule)> = sel
                .iter()
                .filter_map(|p| p.ingress.as_ref().map(|r| (*p, r)))
                .flat_map(|(p, rs)| rs.iter().map(move |r| (p, r)))
                .collect();
            if sel.iter().any(|p| p.ingress.is_some()) {
                let set = format!("-j MARK --set-xmark {MARK_INGRESS:#x}/{MARK_INGRESS:#x}");
                for (p, r) in ingress {
                    for src in self.peers(p, r) {
                        let s = match src {
                            Addr::Any => String::new(),
                            Addr::Pod(q) => format!(" -s {}/32", q.ip),
                            Addr::Net(n) => format!(" -s {n}"),
                        };
                        for port in Self::ports(r, Some(pod)) {
                            let port = if port.is_empty() {
                                port
                            } else {
                                format!(" {port}")
                            };
                            out.push(format!("-d {ip}/32{s}{port} {set}"));
                        }
                    }
                }
                drops.push(format!(
                    "-d {ip}/32 -m mark ! --mark {MARK_INGRESS:#x}/{MARK_INGRESS:#x} -j DROP"
                ));
            }
        }
        out.extend(drops);
        let mut clear = String::new();
        let _ = write!(
            clear,
            "-j MARK --set-xmark 0x0/{:#x}",
            MARK_EGRESS | MARK_INGRESS
        );
        out.push(clear);
        out
    }
}

/// Writes the node's policy chain.
pub fn apply(k: &dyn Chains, rules: &[String]) -> Result<(), NetError> {
    k.set_chain("filter", "FORWARD", CHAIN, rules)
}

/// Removes the policy chain and its jump.
pub fn cleanup(k: &dyn Chains) -> Result<(), NetError> {
    k.delete_chain("filter", "FORWARD", CHAIN)
}

#[cfg(test)]
#[path = "netpol_tests.rs"]
mod tests;
