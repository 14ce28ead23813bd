//! `keel server`'s cluster DNS (keel-dns), fed from the API's watch of
//! Services and `EndpointSlices`: the kube-dns Service in kube-system (its
//! cluster IP the 10th address of the service range, as k3s has it),
//! answers on the `--dns-listen` addresses and, once this machine's node
//! has its pod network, on the network's gateway (port 53), the
//! nameserver its pods get.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use keel_api::Loopback;
use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_dns::{Dns, Event};
use serde_json::{Value, json};

/// What `keel server` was told about DNS.
#[derive(Debug, Clone)]
pub struct Options {
    pub domain: String,
    /// The kube-dns Service's cluster IP.
    pub service_ip: IpAddr,
    /// Addresses to answer on from the start (`127.0.0.1:PORT`).
    pub listen: Vec<SocketAddr>,
    /// This machine's node: its pod network's gateway gets port 53.
    pub node: Option<String>,
    /// An address every node reaches this server at: DNS answers on its
    /// port 53 and it becomes the kube-dns Service's endpoint, so the
    /// nodes' service proxies send the cluster IP there.
    pub endpoint: Option<IpAddr>,
}

fn services() -> &'static Resource {
    resources::find("", "v1", "services").expect("services are served")
}

fn slices() -> &'static Resource {
    resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served")
}

/// Starts serving; the sockets are bound when this returns.
pub async fn start(api: Loopback, opts: Options) -> anyhow::Result<()> {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = Dns::new(&opts.domain, keel_dns::upstreams_from_resolv_conf(&resolv));
    for addr in &opts.listen {
        let bound = dns
            .listen(*addr)
            .await
            .with_context(|| format!("--dns-listen {addr}"))?;
        tracing::info!(%bound, "cluster DNS listening");
    }
    kube_dns_service(&api, opts.service_ip).await;
    if let Some(ip) = opts.endpoint {
        match dns.listen(SocketAddr::new(ip, 53)).await {
            Ok(bound) => {
                tracing::info!(%bound, "cluster DNS listening for the kube-dns Service");
                kube_dns_endpoint(&api, ip).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, address = %ip, "cluster DNS not on the kube-dns Service: port 53 is taken");
            }
        }
    }
    tokio::spawn(feed(api.clone(), dns.clone()));
    if let Some(node) = opts.node {
        tokio::spawn(on_pod_network(api, dns, node));
    }
    Ok(())
}

/// The kube-dns Service, as k3s's `CoreDNS` manifest has it.
async fn kube_dns_service(api: &Loopback, ip: IpAddr) {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": ip.to_string(), "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}});
    match api.create(services(), svc, "keel-dns").await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "create the kube-dns Service"),
    }
}

/// The kube-dns Service's `EndpointSlice`: this server's `ip`, port 53.
async fn kube_dns_endpoint(api: &Loopback, ip: IpAddr) {
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-keel", "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "keel-dns"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]});
    let r = match api.create(slices(), slice.clone(), "keel-dns").await {
        Err(e) if e.code == 409 => api
            .modify(
                slices(),
                Some("kube-system"),
                "kube-dns-keel",
                None,
                "keel-dns",
                |cur| {
                    (cur["endpoints"] != slice["endpoints"]).then(|| {
                        let mut v = cur.clone();
                        v["endpoints"] = slice["endpoints"].clone();
                        v["ports"] = slice["ports"].clone();
                        v
                    })
                },
            )
            .await
            .map(|_| Value::Null),
        r => r,
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "write the kube-dns EndpointSlice");
    }
}

/// `(namespace, name)` of a storage key of `r`.
fn deleted(r: &Resource, key: &str) -> Option<Value> {
    let rest = key.strip_prefix(&r.key_prefix())?;
    let (ns, name) = rest.split_once('/')?;
    Some(json!({"kind": r.kind, "metadata": {"namespace": ns, "name": name}}))
}

/// Lists, then follows the watch; lists again when it breaks.
async fn feed(api: Loopback, dns: Dns) {
    let (svc, sl) = (services(), slices());
    loop {
        let listed = async {
            let (mut a, r1) = api.list(svc, None).await?;
            let (b, r2) = api.list(sl, None).await?;
            a.extend(b);
            Ok::<_, keel_api::ClientError>((a, r1.min(r2)))
        };
        let (objs, rev) = match listed.await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "dns: list services");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        dns.apply(Event::Reset(objs));
        let mut watch = match api.watch_all(rev + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "dns: watch");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(Ok(ev)) = watch.next().await {
            let WatchEvent::Change(c) = ev else { continue };
            if !std::ptr::eq(c.resource, svc) && !std::ptr::eq(c.resource, sl) {
                continue;
            }
            let ev = match c.kind {
                ChangeKind::Put => api.object(&c).map(Event::Put),
                ChangeKind::Deleted => deleted(c.resource, &c.key).map(Event::Deleted),
            };
            if let Some(ev) = ev {
                dns.apply(ev);
            }
        }
    }
}

/// Waits for the node's pod CIDR, then answers on its gateway address,
/// port 53 (bound before the agent's bridge holds it).
async fn on_pod_network(api: Loopback, dns: Dns, node: String) {
    let nodes = resources::find("", "v1", "nodes").expect("nodes are served");
    let mut warned = false;
    loop {
        // Often: the node gets its podCIDR and runs its first pod within a
        // few hundred ms, and that pod's first query needs the port bound.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(Some(n)) = api.get(nodes, None, &node).await else {
            continue;
        };
        let Some(gw) = n
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .and_then(gateway)
        else {
            continue;
        };
        // Bound before the bridge has the address, so the node's first pod
        // finds the port open.
        match dns.listen_freebind(SocketAddr::new(IpAddr::V4(gw), 53)) {
            Ok(bound) => {
                tracing::info!(%bound, "cluster DNS listening for pods");
                return;
            }
            // The agent has not made the bridge yet.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {}
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, address = %gw, "cluster DNS cannot listen for pods; retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The first host address of an IPv4 CIDR (keel-net's bridge gateway).
fn gateway(cidr: &str) -> Option<Ipv4Addr> {
    let (net, bits) = cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(Ipv4Addr::from((u32::from(net) & mask) + 1))
}

/// The kube-dns endpoint of a server listening on `listen`: that address,
/// or for a wildcard the machine's source address towards other hosts (no
/// packet is sent); `None` for loopback or when there is no route.
pub fn endpoint_for(listen: IpAddr) -> Option<IpAddr> {
    let ip = if listen.is_unspecified() {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("192.0.2.1:53").ok()?;
        s.local_addr().ok()?.ip()
    } else {
        listen
    };
    (ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The 10th address of the service range (k3s: 10.43.0.10 of 10.43.0.0/16).
pub fn default_service_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 43, 0, 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_the_first_host() {
        assert_eq!(gateway("10.42.3.0/24"), Some(Ipv4Addr::new(10, 42, 3, 1)));
        assert_eq!(gateway("10.42.3.7/16"), Some(Ipv4Addr::new(10, 42, 0, 1)));
        assert_eq!(gateway("fd00::/64"), None);
        assert_eq!(gateway("10.42.0.0/31"), None);
    }

    #[test]
    fn a_deleted_key_names_its_object() {
        let r = services();
        let key = r.key(Some("ns"), "web");
        assert_eq!(
            deleted(r, &key),
            Some(json!({"kind": "Service", "metadata": {"namespace": "ns", "name": "web"}}))
        );
    }
}
