//! Overlay networks for plain containers: `keel network create -d overlay
//! NAME` on a node spans every node of the cluster, as Docker's overlay
//! spans a swarm. The network is a `ConfigMap` in namespace [`NAMESPACE`]
//! (nodes may read and write there, nowhere else): its ID, subnet and VNI,
//! each node's slice of the subnet (`slice.<node>`, claimed with a
//! compare-and-swap on the `ConfigMap`, so no two nodes hand out one
//! address) and each node's containers on it (`endpoints.<node>`, names,
//! addresses and MACs, written by that node only).
//!
//! Every agent reconciles once a second: it claims its slice, makes its
//! part of each network with keel-net (a bridge holding its slice, a VXLAN
//! port with the network's VNI), publishes its containers, and hands the
//! other nodes' containers to keel-net (FDB and neighbour entries towards
//! their node's address, from the Node objects; names in the hosts files).
//! A network whose `ConfigMap` is gone is removed from the node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AgentError;

/// Where overlay networks are recorded (created by `keel server`).
pub const NAMESPACE: &str = "keel-overlay";
/// VNIs of overlay networks start here (the pod network's is 1).
pub const VNI_BASE: u32 = 4096;
const SLICE: &str = "slice.";
const ENDPOINTS: &str = "endpoints.";
/// Where subnets are picked from when none is given: 10.200.0.0/16 on.
const POOL_FIRST: u8 = 200;

/// A container of an overlay network, as its node publishes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// An overlay network as the server records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNet {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Net,
    pub vni: u32,
    pub slices: BTreeMap<String, Ipv4Net>,
    pub endpoints: BTreeMap<String, Vec<Member>>,
}

impl ClusterNet {
    /// Reads a `ConfigMap` of [`NAMESPACE`]; `None`: not an overlay network.
    pub fn parse(cm: &ConfigMap) -> Option<ClusterNet> {
        let data = cm.data.as_ref()?;
        let mut n = ClusterNet {
            name: cm.metadata.name.clone()?,
            id: data.get("id")?.clone(),
            subnet: data.get("subnet")?.parse().ok()?,
            vni: data.get("vni")?.parse().ok()?,
            slices: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        };
        for (k, v) in data {
            if let Some(node) = k.strip_prefix(SLICE)
                && let Ok(s) = v.parse()
            {
                n.slices.insert(node.to_string(), s);
            } else if let Some(node) = k.strip_prefix(ENDPOINTS)
                && let Ok(m) = serde_json::from_str(v)
            {
                n.endpoints.insert(node.to_string(), m);
            }
        }
        Some(n)
    }

    /// A node's gateway: the first address of its slice, which its bridge
    /// holds (with the whole subnet's prefix). Each node's is its own, so
    /// the ARP broadcasts the overlay carries to every node are answered
    /// by one bridge only.
    pub fn gateway(slice: Ipv4Net) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(slice.network()) + 1)
    }

    /// The length of the node slices: /24s of a /16, 16 slices of smaller subnets.
    fn slice_len(&self) -> u8 {
        let p = self.subnet.prefix_len();
        if p <= 16 { 24 } else { (p + 4).min(30) }
    }

    /// The lowest slice no node holds; the first (with the subnet's
    /// first address, which Docker would make the gateway) is never handed out.
    pub fn free_slice(&self) -> Option<Ipv4Net> {
        self.subnet
            .subnets(self.slice_len())
            .ok()?
            .skip(1)
            .find(|s| !self.slices.values().any(|t| t == s))
    }
}

/// A subnet of the pool (10.200.0.0/16 to 10.254.0.0/16) overlapping none of `taken`.
pub fn pick_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    (POOL_FIRST..=254)
        .filter_map(|b| Ipv4Net::new(Ipv4Addr::new(10, b, 0, 0), 16).ok())
        .find(|n| {
            !taken
                .iter()
                .any(|t| t.contains(&n.network()) || n.contains(&t.network()))
        })
}

fn api_err(what: &str) -> impl FnOnce(kube::Error) -> AgentError + '_ {
    move |e| AgentError::Other(format!("{what}: {e}"))
}

/// The client of a node root joined to a cluster (`<root>/agent/kubeconfig`).
pub async fn node_client(root: &Path) -> Result<kube::Client, AgentError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = root.join("agent/kubeconfig");
    let text = std::fs::read_to_string(&kc).map_err(crate::io_err(format!(
        "read {} (this root has not joined a cluster)",
        kc.display()
    )))?;
    crate::join::client_from(&text).await
}

/// Records a new overlay network on the server (`subnet`: `None` picks a
/// free one); the agents make it on their nodes.
pub async fn create(
    client: &kube::Client,
    name: &str,
    subnet: Option<&str>,
) -> Result<ClusterNet, AgentError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let all: Vec<ClusterNet> = api
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing overlay networks"))?
        .items
        .iter()
        .filter_map(ClusterNet::parse)
        .collect();
    if all.iter().any(|n| n.name == name) {
        return Err(AgentError::Other(format!(
            "network with name {name} already exists in the cluster"
        )));
    }
    let taken: Vec<Ipv4Net> = all.iter().map(|n| n.subnet).collect();
    let subnet = match subnet {
        Some(s) => {
            let s: Ipv4Net = s.parse().map_err(|_| {
                AgentError::Other(format!(
                    "subnet {s:?} is not an IPv4 CIDR such as 10.200.0.0/16"
                ))
            })?;
            if s.prefix_len() > 26 {
                return Err(AgentError::Other(format!(
                    "subnet {s} is too small for an overlay network (at most /26: each node gets a slice)"
                )));
            }
            if let Some(o) = all
                .iter()
                .find(|n| n.subnet.contains(&s.network()) || s.contains(&n.subnet.network()))
            {
                return Err(AgentError::Other(format!(
                    "subnet {s} overlaps overlay network {} ({})",
                    o.name, o.subnet
                )));
            }
            s.trunc()
        }
        None => pick_subnet(&taken).ok_or_else(|| {
            AgentError::Other("no free overlay subnet left in 10.200.0.0-10.254.255.255".into())
        })?,
    };
    let vni = (VNI_BASE + 1..1 << 24)
        .find(|v| !all.iter().any(|n| n.vni == *v))
        .unwrap_or(VNI_BASE + 1);
    let id = random_id()?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "keel".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("id".to_string(), id),
            ("subnet".to_string(), subnet.to_string()),
            ("vni".to_string(), vni.to_string()),
        ])),
        ..ConfigMap::default()
    };
    let made = api
        .create(&PostParams::default(), &cm)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => AgentError::Other(format!(
                "network with name {name} already exists in the cluster"
            )),
            e => AgentError::Other(format!("recording overlay network {name}: {e}")),
        })?;
    ClusterNet::parse(&made)
        .ok_or_else(|| AgentError::Other(format!("overlay network {name} did not read back")))
}

/// Removes an overlay network from the cluster; refused while any node
/// has containers on it (Docker's "has active endpoints").
pub async fn remove(client: &kube::Client, name: &str) -> Result<(), AgentError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(cm) = api
        .get_opt(name)
        .await
        .map_err(api_err("reading the overlay network"))?
    else {
        return Ok(());
    };
    if let Some(n) = ClusterNet::parse(&cm) {
        let busy: Vec<String> = n
            .endpoints
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(node, m)| {
                format!(
                    "{} on {node}",
                    m.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        if !busy.is_empty() {
            return Err(AgentError::Other(format!(
                "network {name} has active endpoints ({})",
                busy.join("; ")
            )));
        }
    }
    // Only the version read above: a container published meanwhile keeps it.
    let dp =
        DeleteParams {
            preconditions: cm.metadata.resource_version.clone().map(|rv| {
                kube::api::Preconditions {
                    resource_version: Some(rv),
                    uid: None,
                }
            }),
            ..DeleteParams::default()
        };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(AgentError::Other(format!(
            "removing overlay network {name}: {e}"
        ))),
    }
}

fn random_id() -> Result<String, AgentError> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| AgentError::Other("no randomness for a network ID".into()))?;
    Ok(b.iter().fold(String::new(), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    }))
}

/// This node's side of the overlay networks.
struct Me {
    client: kube::Client,
    node: String,
    ip: Ipv4Addr,
    root: PathBuf,
}

/// Starts the reconcile loop (not for a loopback node address: no other
/// node can reach it).
pub(crate) fn spawn(client: kube::Client, node: String, node_ip: &str, root: PathBuf) {
    let Ok(ip) = node_ip.parse::<Ipv4Addr>() else {
        return;
    };
    if ip.is_loopback() {
        return;
    }
    let me = Me {
        client,
        node,
        ip,
        root,
    };
    tokio::spawn(async move {
        loop {
            if let Err(e) = me.reconcile().await {
                tracing::warn!(error = %e, "overlay networks not in sync; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// What the local keel-net has of a network: (ID, members), `None`: absent.
type Local = Option<(String, String, Vec<Member>)>;

impl Me {
    async fn reconcile(&self) -> Result<(), AgentError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), NAMESPACE);
        let cms = api
            .list(&ListParams::default())
            .await
            .map_err(api_err("listing overlay networks"))?
            .items;
        let nets: Vec<(ClusterNet, &ConfigMap)> = cms
            .iter()
            .filter_map(|cm| ClusterNet::parse(cm).map(|n| (n, cm)))
            .collect();
        let ids: Vec<String> = nets.iter().map(|(n, _)| n.id.clone()).collect();
        let root = self.root.clone();
        // Networks whose record is gone go from this node too.
        blocking(move || {
            let nets = open(&root)?;
            for n in nets.list().map_err(net_err)? {
                if n.driver == "overlay" && !ids.contains(&n.id) {
                    if n.containers.is_empty() {
                        nets.remove(&n.id).map_err(net_err)?;
                        tracing::info!(network = n.name, "overlay network removed");
                    } else {
                        tracing::warn!(
                            network = n.name,
                            "overlay network deleted in the cluster still has containers here"
                        );
                    }
                }
            }
            Ok(())
        })
        .await?;
        if nets.is_empty() {
            return Ok(());
        }
        let nodes: BTreeMap<String, Ipv4Addr> = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_err("listing nodes"))?
            .items
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, crate::overlay::node_address(n)?)))
            .collect();
        for (net, cm) in nets {
            if let Err(e) = self.sync(&api, &net, cm, &nodes).await {
                tracing::warn!(network = net.name, error = %e, "overlay network not in sync");
            }
        }
        Ok(())
    }

    async fn sync(
        &self,
        api: &Api<ConfigMap>,
        net: &ClusterNet,
        cm: &ConfigMap,
        nodes: &BTreeMap<String, Ipv4Addr>,
    ) -> Result<(), AgentError> {
        let Some(slice) = net.slices.get(&self.node).copied() else {
            return self.claim(api, net, cm).await;
        };
        let (root, n, ip) = (self.root.clone(), net.clone(), self.ip);
        let local: Local = blocking(move || ensure_local(&root, &n, slice, ip)).await?;
        let Some((_, _, members)) = local else {
            return Ok(());
        };
        if net.endpoints.get(&self.node) != Some(&members) {
            let key = format!("{ENDPOINTS}{}", self.node);
            let v =
                serde_json::to_string(&members).map_err(|e| AgentError::Other(e.to_string()))?;
            api.patch(
                &net.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"data": {key: v}})),
            )
            .await
            .map_err(api_err("publishing this node's containers"))?;
        }
        let remote: Vec<keel_net::RemotePeer> = net
            .endpoints
            .iter()
            .filter(|(node, _)| **node != self.node)
            .filter_map(|(node, ms)| Some((nodes.get(node).copied()?, ms)))
            .flat_map(|(host, ms)| {
                ms.iter().map(move |m| keel_net::RemotePeer {
                    name: m.name.clone(),
                    aliases: Vec::new(),
                    ip: m.ip,
                    mac: m.mac.clone(),
                    host,
                })
            })
            .collect();
        let (root, name) = (self.root.clone(), net.name.clone());
        blocking(move || {
            open(&root)?
                .set_remote_peers(&name, &remote)
                .map_err(net_err)
        })
        .await
    }

    /// Claims the lowest free slice for this node: a replace carrying the
    /// resourceVersion read, so of two nodes claiming at once one fails
    /// (409) and picks again on the next round.
    async fn claim(
        &self,
        api: &Api<ConfigMap>,
        net: &ClusterNet,
        cm: &ConfigMap,
    ) -> Result<(), AgentError> {
        let slice = net.free_slice().ok_or_else(|| {
            AgentError::Other(format!(
                "overlay network {}: no free slice of {} left for this node",
                net.name, net.subnet
            ))
        })?;
        let mut cm = cm.clone();
        cm.data
            .get_or_insert_default()
            .insert(format!("{SLICE}{}", self.node), slice.to_string());
        match api.replace(&net.name, &PostParams::default(), &cm).await {
            Ok(_) => {
                tracing::info!(network = net.name, %slice, "overlay network slice claimed");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(AgentError::Other(format!("claiming a slice: {e}"))),
        }
    }
}

fn net_err(e: keel_net::NetError) -> AgentError {
    AgentError::Network(e.to_string())
}

fn open(root: &Path) -> Result<keel_net::Networks, AgentError> {
    keel_net::Networks::open(root).map_err(net_err)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Other(e.to_string()))?
}

/// Makes this node's part of `net` (bridge on `slice`, VXLAN port from
/// `vtep`) unless there; returns its (ID, name, members). A local network
/// of that name that is not this one is left alone (`None`).
fn ensure_local(
    root: &Path,
    net: &ClusterNet,
    slice: Ipv4Net,
    vtep: Ipv4Addr,
) -> Result<Local, AgentError> {
    use keel_net::vxlan::OverlayKernel as _;
    let nets = open(root)?;
    let info = match nets.inspect(&net.name) {
        Ok(i) => i,
        Err(keel_net::NetError::NotFound(_)) => {
            let (_, link_mtu) = keel_net::vxlan::HostOverlay
                .link_of(vtep)
                .map_err(net_err)?;
            let opts = keel_net::NetworkOptions {
                driver: "overlay".into(),
                id: Some(net.id.clone()),
                subnet: Some(net.subnet.to_string()),
                gateway: Some(ClusterNet::gateway(slice).to_string()),
                ip_range: Some(slice.to_string()),
                // The slice's first address is a host of the subnet, but
                // reads as a network's: not handed out.
                aux_addresses: BTreeMap::from([("slice".to_string(), slice.network().to_string())]),
                options: BTreeMap::from([
                    (keel_net::OPT_VNI.to_string(), net.vni.to_string()),
                    (keel_net::OPT_VTEP.to_string(), vtep.to_string()),
                    (
                        "com.docker.network.driver.mtu".to_string(),
                        link_mtu
                            .saturating_sub(keel_net::vxlan::VXLAN_OVERHEAD)
                            .to_string(),
                    ),
                ]),
                ..keel_net::NetworkOptions::default()
            };
            let i = nets.create_with(&net.name, &opts).map_err(net_err)?;
            tracing::info!(network = net.name, %slice, vni = net.vni, "overlay network set up");
            i
        }
        Err(e) => return Err(net_err(e)),
    };
    if info.id != net.id {
        tracing::warn!(
            network = net.name,
            "a local network has the overlay network's name; not joining it"
        );
        return Ok(None);
    }
    let mut members: Vec<Member> = info
        .containers
        .iter()
        .filter_map(|c| {
            Some(Member {
                name: c.name.clone(),
                ip: c.ipv4.split('/').next()?.parse().ok()?,
                mac: c.mac.clone(),
            })
        })
        .collect();
    members.sort();
    Ok(Some((info.id, info.name, members)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("ov".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn slices_are_distinct_and_skip_the_gateways() {
        let mut n = ClusterNet::parse(&cm(&[
            ("id", "x"),
            ("subnet", "10.200.0.0/16"),
            ("vni", "4097"),
            ("slice.a", "10.200.1.0/24"),
            (
                "endpoints.a",
                r#"[{"name":"web","ip":"10.200.1.0","mac":"02:42:0a:c8:01:00"}]"#,
            ),
        ]))
        .unwrap();
        assert_eq!(
            ClusterNet::gateway("10.200.1.0/24".parse().unwrap()),
            Ipv4Addr::new(10, 200, 1, 1)
        );
        assert_eq!(n.endpoints["a"][0].name, "web");
        assert_eq!(n.free_slice(), Some("10.200.2.0/24".parse().unwrap()));
        n.subnet = "10.9.0.0/24".parse().unwrap();
        n.slices.clear();
        assert_eq!(n.free_slice(), Some("10.9.0.16/28".parse().unwrap()));
        assert!(ClusterNet::parse(&cm(&[("subnet", "10.0.0.0/16")])).is_none());
    }

    #[test]
    fn subnets_come_from_the_pool_around_taken_ones() {
        let taken: Vec<Ipv4Net> = vec![
            "10.200.0.0/16".parse().unwrap(),
            "10.201.5.0/24".parse().unwrap(),
        ];
        assert_eq!(pick_subnet(&taken), Some("10.202.0.0/16".parse().unwrap()));
    }
}
