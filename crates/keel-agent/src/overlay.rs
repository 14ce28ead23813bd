//! The pod network across nodes (keel-net's [`keel_net::vxlan`], flannel's
//! VXLAN or host-gw backend): the agent creates the node's VXLAN device,
//! publishes its VTEP MAC and public IP as flannel does (the Node's
//! `flannel.alpha.coreos.com/*` annotations), watches every Node and
//! programs routes, neighbours and FDB entries for the others' podCIDRs.
//! On SIGTERM or SIGINT it removes all of it (and `NetworkPolicy`'s chains)
//! before the process exits; a crash (SIGKILL) leaves it in place for the
//! next start to take over.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use keel_net::vxlan::{Backend, HostOverlay, Local, Overlay, OverlayKernel, Peer};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::AgentError;

pub const ANN_BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const ANN_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const ANN_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const ANN_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

type Shared = Arc<Mutex<Option<Overlay<HostOverlay>>>>;

fn net_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::Network(e.to_string())
}

/// The address other nodes reach a Node at: its flannel public IP, else
/// its `InternalIP`.
pub(crate) fn node_address(node: &Node) -> Option<Ipv4Addr> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PUBLIC_IP))
        .and_then(|ip| ip.parse().ok())
        .or_else(|| {
            node.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()
        })
}

/// A Node as a peer of the pod network (`None`: no podCIDR or address yet).
pub(crate) fn peer_of(node: &Node) -> Option<Peer> {
    let name = node.metadata.name.clone()?;
    let ann = node.metadata.annotations.clone().unwrap_or_default();
    let pod_cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let public_ip = node_address(node)?;
    let vtep_mac = ann
        .get(ANN_BACKEND_DATA)
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|d| d["VtepMAC"].as_str().map(str::to_string));
    Some(Peer {
        name,
        public_ip,
        pod_cidr,
        vtep_mac,
    })
}

/// Sets the node's pod network up; returns the MTU pods' interfaces get
/// (`None`: the kernel's default). The Node watch and the stop handler keep
/// running in the background.
pub(crate) async fn start(
    client: &kube::Client,
    name: &str,
    node_ip: &str,
    cidr: &str,
    backend: Backend,
) -> Result<Option<u32>, AgentError> {
    let ip: Ipv4Addr = node_ip
        .parse()
        .map_err(|_| AgentError::Network(format!("node address {node_ip} is not IPv4")))?;
    if ip.is_loopback() {
        // `keel server`'s own node talking to itself: no other node can
        // reach a loopback address, and several such servers (tests, a
        // second root) share the host's one namespace, where one device
        // name cannot serve them all.
        tracing::info!(
            node = name,
            "node address is loopback: no pod network across nodes"
        );
        crate::shutdown::on_stop(|| stop(Arc::new(Mutex::new(None))));
        return Ok(None);
    }
    let pod_cidr = cidr
        .parse()
        .map_err(|_| AgentError::Network(format!("podCIDR {cidr} is not an IPv4 network")))?;
    let (overlay, mac) = tokio::task::spawn_blocking(move || {
        let (link, link_mtu) = HostOverlay.link_of(ip)?;
        let local = Local {
            public_ip: ip,
            link,
            link_mtu,
            pod_cidr,
        };
        let mut o = Overlay::new(HostOverlay, backend, local);
        let mac = o.start()?;
        Ok::<_, keel_net::NetError>((o, mac))
    })
    .await
    .map_err(net_err)?
    .map_err(net_err)?;
    let mtu = overlay.pod_mtu();
    tracing::info!(
        node = name,
        backend = backend.as_str(),
        link = overlay.local().link,
        mtu,
        "pod network up"
    );
    let mut ann = BTreeMap::from([
        (ANN_BACKEND_TYPE, json!(backend.as_str())),
        (ANN_PUBLIC_IP, json!(node_ip)),
        (ANN_SUBNET_MANAGER, json!("true")),
        (ANN_BACKEND_DATA, serde_json::Value::Null),
    ]);
    if let Some(mac) = mac {
        ann.insert(
            ANN_BACKEND_DATA,
            json!(json!({"VNI": keel_net::vxlan::VXLAN_VNI, "VtepMAC": mac}).to_string()),
        );
    }
    let api: Api<Node> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": ann}})),
    )
    .await?;
    let shared: Shared = Arc::new(Mutex::new(Some(overlay)));
    tokio::spawn(watch_nodes(api, name.to_string(), shared.clone()));
    crate::shutdown::on_stop(|| stop(shared));
    Ok(Some(mtu))
}

/// Keeps the kernel in step with the Nodes; a failed sync (say, keel-net's
/// chains are not there yet) is retried every second until it succeeds.
async fn watch_nodes(api: Api<Node>, me: String, overlay: Shared) {
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
    let mut nodes: BTreeMap<String, Peer> = BTreeMap::new();
    let mut listing: BTreeMap<String, Peer> = BTreeMap::new();
    let mut ready = false;
    let mut failed = false;
    loop {
        let ev = if failed {
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(Some(ev)) => Some(ev),
                Ok(None) => return,
                Err(_) => None,
            }
        } else {
            match stream.next().await {
                Some(ev) => Some(ev),
                None => return,
            }
        };
        let changed = match ev {
            None => false,
            Some(Ok(watcher::Event::Init)) => {
                listing.clear();
                false
            }
            Some(Ok(watcher::Event::InitApply(n))) => {
                if let Some(p) = peer_of(&n) {
                    listing.insert(p.name.clone(), p);
                }
                false
            }
            Some(Ok(watcher::Event::InitDone)) => {
                nodes = std::mem::take(&mut listing);
                ready = true;
                true
            }
            Some(Ok(watcher::Event::Apply(n))) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                match peer_of(&n) {
                    Some(p) if nodes.get(&name) == Some(&p) => false,
                    Some(p) => {
                        nodes.insert(name, p);
                        true
                    }
                    None => nodes.remove(&name).is_some(),
                }
            }
            Some(Ok(watcher::Event::Delete(n))) => nodes
                .remove(&n.metadata.name.clone().unwrap_or_default())
                .is_some(),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        };
        if !ready || !(changed || failed) {
            continue;
        }
        let peers: Vec<Peer> = nodes.values().filter(|p| p.name != me).cloned().collect();
        let o = overlay.clone();
        let res = tokio::task::spawn_blocking(move || {
            o.lock()
                .map_err(|_| keel_net::NetError::Overlay("state poisoned".into()))?
                .as_mut()
                .map_or(Ok(()), |o| o.sync(&peers))
        })
        .await;
        failed = !matches!(res, Ok(Ok(())));
        match res {
            Ok(Ok(())) => tracing::debug!(peers = nodes.len(), "pod network routes synced"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pod network routes not synced; retrying"),
            Err(e) => tracing::warn!(error = %e, "pod network sync panicked"),
        }
    }
}

/// On stop: removes the pod network's kernel state and `NetworkPolicy`'s
/// chains.
async fn stop(overlay: Shared) {
    tracing::info!("stopping: removing the pod network's routes, device and rules");
    let res = tokio::task::spawn_blocking(move || {
        let mut o = overlay
            .lock()
            .map_err(|_| keel_net::NetError::Overlay("state poisoned".into()))?;
        let a = o.as_mut().map_or(Ok(()), Overlay::cleanup);
        let b = crate::netpol::cleanup();
        a.and(b)
    })
    .await;
    if let Ok(Err(e)) = &res {
        tracing::warn!(error = %e, "cleanup incomplete");
    }
}
