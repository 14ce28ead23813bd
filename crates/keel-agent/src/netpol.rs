//! `NetworkPolicy` enforcement for this node's pods (what kube-router does in
//! k3s's agents): reflectors of every Pod, Namespace and `NetworkPolicy`, and
//! on any change (batched over 50 ms) keel-net's [`keel_net::netpol`]
//! compiles the rules for the pods bound here and replaces its chain whole.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use keel_net::netpol::{Cluster, PodInfo, Policy};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

/// Removes the chain (the agent's stop handler calls this).
pub(crate) fn cleanup() -> Result<(), keel_net::NetError> {
    keel_net::netpol::cleanup(&keel_net::HostChains)
}

/// Starts the reflectors and the enforcement loop in the background.
pub(crate) fn spawn(client: kube::Client, node: String) {
    let changed = Arc::new(Notify::new());
    let pods = reflect::<Pod>(Api::all(client.clone()), &changed, slim);
    let namespaces = reflect::<Namespace>(Api::all(client.clone()), &changed, |n| {
        n.metadata.managed_fields = None;
    });
    let policies = reflect::<NetworkPolicy>(Api::all(client), &changed, |p| {
        p.metadata.managed_fields = None;
    });
    tokio::spawn(async move {
        let mut last: Option<Vec<String>> = None;
        loop {
            changed.notified().await;
            // Batches a burst of events (a Deployment's pods starting).
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (c, local) = snapshot(&pods, &namespaces, &policies, &node);
            let rules = c.compile(&local);
            if last.as_ref() == Some(&rules) {
                continue;
            }
            let r = rules.clone();
            match tokio::task::spawn_blocking(move || {
                keel_net::netpol::apply(&keel_net::HostChains, &r)
            })
            .await
            {
                Ok(Ok(())) => {
                    tracing::debug!(rules = rules.len(), "network policy rules written");
                    last = Some(rules);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "network policy rules not written; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    changed.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "network policy task panicked"),
            }
        }
    });
}

/// What [`pod_info`] and [`snapshot`] read of a pod, and nothing else: the
/// reflector holds every pod of the cluster, on every node.
fn slim(p: &mut Pod) {
    let m = &mut p.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    if let Some(spec) = &mut p.spec {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            host_network: spec.host_network,
            containers: std::mem::take(&mut spec.containers)
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ports: c.ports,
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        };
    }
    if let Some(st) = &mut p.status {
        *st = PodStatus {
            phase: st.phase.take(),
            pod_ip: st.pod_ip.take(),
            ..PodStatus::default()
        };
    }
}

/// A reflector of every `K`, each object passed through `trim` before it is
/// stored.
fn reflect<K>(api: Api<K>, changed: &Arc<Notify>, trim: fn(&mut K)) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(trim),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "network policy watch failed; retrying");
            }
            changed.notify_one();
        }
    });
    reader
}

/// The pods with an IPv4 address that are not done (their IPs may be reused).
fn pod_info(p: &Pod) -> Option<PodInfo> {
    let st = p.status.as_ref()?;
    if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let spec = p.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let ip: Ipv4Addr = st.pod_ip.as_deref()?.parse().ok()?;
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|cp| {
            Some((
                cp.name.clone()?,
                cp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                u16::try_from(cp.container_port).ok()?,
            ))
        })
        .collect();
    Some(PodInfo {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ip,
        ports,
    })
}

fn snapshot(
    pods: &Store<Pod>,
    namespaces: &Store<Namespace>,
    policies: &Store<NetworkPolicy>,
    node: &str,
) -> (Cluster, Vec<Ipv4Addr>) {
    let mut c = Cluster::default();
    let mut local = Vec::new();
    for p in pods.state() {
        if let Some(info) = pod_info(&p) {
            if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) {
                local.push(info.ip);
            }
            c.pods.push(info);
        }
    }
    c.namespaces = namespaces
        .state()
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                n.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    for np in policies.state() {
        let v = match serde_json::to_value(&*np) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "network policy not serializable");
                continue;
            }
        };
        match Policy::from_json(&v) {
            Ok(p) => c.policies.push(p),
            // The API server validated it; a policy keel cannot read is
            // skipped (and said), the others still hold.
            Err(e) => tracing::warn!(
                policy = np.metadata.name.as_deref().unwrap_or_default(),
                error = %e,
                "network policy ignored"
            ),
        }
    }
    (c, local)
}
