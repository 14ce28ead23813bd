//! The node's service proxy (kube-proxy): watches Services and
//! `EndpointSlices` and keeps this node's rules (nftables, or iptables
//! where `nft` is missing or `KEEL_PROXY_BACKEND=iptables`) in step
//! through keel-net's [`keel_net::proxy::Proxy`], one transaction per
//! changed Service. The kernel work runs on a thread of its own, which coalesces
//! bursts (only a Service's newest rules are applied). On SIGTERM or SIGINT
//! the table is deleted and the process exits: "stop with cleanup".

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_net::proxy::{Backend, Proxy, ServiceRules, host_backend, table_name};
use kube::Api;
use kube::runtime::watcher;
use serde_json::Value;

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

enum Msg {
    All(BTreeMap<String, ServiceRules>),
    One(String, Option<ServiceRules>),
    Cleanup(mpsc::Sender<()>),
}

/// What the watchers have seen: Services and slices by Service key.
#[derive(Default)]
struct Seen {
    services: HashMap<String, Value>,
    /// Service key → slice name → slice.
    slices: HashMap<String, BTreeMap<String, Value>>,
}

impl Seen {
    fn rules(&self, key: &str, node: &str) -> Option<ServiceRules> {
        let svc = self.services.get(key)?;
        let slices: Vec<&Value> = self
            .slices
            .get(key)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        ServiceRules::from_api(svc, &slices, node)
    }

    fn all(&self, node: &str) -> BTreeMap<String, ServiceRules> {
        self.services
            .keys()
            .filter_map(|k| Some((k.clone(), self.rules(k, node)?)))
            .collect()
    }
}

fn svc_key(v: &Value) -> String {
    let m = &v["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or_default(),
        m["name"].as_str().unwrap_or_default()
    )
}

/// `(service key, slice name)` of a slice.
fn slice_key(v: &Value) -> Option<(String, String)> {
    let m = &v["metadata"];
    let svc = m["labels"][SERVICE_NAME].as_str()?;
    Some((
        format!("{}/{svc}", m["namespace"].as_str().unwrap_or_default()),
        m["name"].as_str()?.to_string(),
    ))
}

#[allow(clippy::large_enum_variant)] // one event at a time, never stored
enum Ev {
    Svc(Result<watcher::Event<Service>, watcher::Error>),
    Slice(Result<watcher::Event<EndpointSlice>, watcher::Error>),
}

/// Starts the proxy of node `node`: it runs until the process ends.
pub fn start(client: &kube::Client, node: &str) {
    let table = table_name(node);
    let backend = match host_backend() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no service proxy: Services will not be reachable on this node");
            return;
        }
    };
    tracing::info!(backend = backend.name(), "service proxy");
    // NodePorts on 127.0.0.1: loopback sources may be routed out (and are
    // masqueraded), as kube-proxy arranges it.
    let before = std::fs::read_to_string(LOCALNET).unwrap_or_default();
    if let Err(e) = std::fs::write(LOCALNET, "1") {
        tracing::warn!(error = %e, "route_localnet not set: node ports on 127.0.0.1 will not answer");
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::Builder::new()
        .name("keel-proxy".into())
        .spawn(move || kernel_loop(&rx, Proxy::new(backend, table), before.trim() == "0"))
        .ok();
    let node = node.to_string();
    let svcs = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(Ev::Svc);
    let slices = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(Ev::Slice);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(futures::stream::select(svcs, slices));
        let mut seen = Seen::default();
        let (mut svc_init, mut slice_init) = (None::<Seen>, None::<Seen>);
        let (mut svc_ready, mut slice_ready) = (false, false);
        while let Some(ev) = events.next().await {
            let changed: Option<String> = match ev {
                Ev::Svc(Ok(e)) => match e {
                    watcher::Event::Init => {
                        svc_init = Some(Seen::default());
                        None
                    }
                    watcher::Event::InitApply(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        if let Some(i) = svc_init.as_mut() {
                            i.services.insert(svc_key(&v), v);
                        }
                        None
                    }
                    watcher::Event::InitDone => {
                        seen.services = svc_init.take().unwrap_or_default().services;
                        svc_ready = true;
                        if slice_ready {
                            let _ = tx2.send(Msg::All(seen.all(&node)));
                        }
                        None
                    }
                    watcher::Event::Apply(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        let k = svc_key(&v);
                        seen.services.insert(k.clone(), v);
                        Some(k)
                    }
                    watcher::Event::Delete(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        let k = svc_key(&v);
                        seen.services.remove(&k);
                        Some(k)
                    }
                },
                Ev::Slice(Ok(e)) => match e {
                    watcher::Event::Init => {
                        slice_init = Some(Seen::default());
                        None
                    }
                    watcher::Event::InitApply(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        if let (Some(i), Some((k, n))) = (slice_init.as_mut(), slice_key(&v)) {
                            i.slices.entry(k).or_default().insert(n, v);
                        }
                        None
                    }
                    watcher::Event::InitDone => {
                        seen.slices = slice_init.take().unwrap_or_default().slices;
                        slice_ready = true;
                        if svc_ready {
                            let _ = tx2.send(Msg::All(seen.all(&node)));
                        }
                        None
                    }
                    watcher::Event::Apply(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        slice_key(&v).map(|(k, n)| {
                            seen.slices.entry(k.clone()).or_default().insert(n, v);
                            k
                        })
                    }
                    watcher::Event::Delete(s) => {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        slice_key(&v).map(|(k, n)| {
                            if let Some(m) = seen.slices.get_mut(&k) {
                                m.remove(&n);
                            }
                            k
                        })
                    }
                },
                Ev::Svc(Err(e)) | Ev::Slice(Err(e)) => {
                    tracing::warn!(error = %e, "service proxy: watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    None
                }
            };
            if let Some(k) = changed.filter(|_| svc_ready && slice_ready) {
                let r = seen.rules(&k, &node);
                let _ = tx2.send(Msg::One(k, r));
            }
        }
    });
    crate::shutdown::on_stop(move || async move {
        let (done_tx, done_rx) = mpsc::channel();
        if tx.send(Msg::Cleanup(done_tx)).is_ok() {
            let _ =
                tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(5)))
                    .await;
        }
    });
}

/// Applies what arrives, newest per Service first drained from the queue.
/// On cleanup the table goes and `route_localnet` is set back to 0 if
/// it was off before.
fn kernel_loop(
    rx: &mpsc::Receiver<Msg>,
    mut proxy: Proxy<Box<dyn Backend>>,
    localnet_was_off: bool,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        // Coalesce: a full sync resets; later single updates win.
        let mut all: Option<BTreeMap<String, ServiceRules>> = None;
        let mut ones: BTreeMap<String, Option<ServiceRules>> = BTreeMap::new();
        let mut cleanup = None;
        for m in batch {
            match m {
                Msg::All(a) => {
                    all = Some(a);
                    ones.clear();
                }
                Msg::One(k, r) => {
                    ones.insert(k, r);
                }
                Msg::Cleanup(done) => cleanup = Some(done),
            }
        }
        if let Some(done) = cleanup {
            if let Err(e) = proxy.cleanup() {
                tracing::warn!(error = %e, table = proxy.table(), "service rules not removed");
            }
            if localnet_was_off {
                let _ = std::fs::write(LOCALNET, "0");
            }
            let _ = done.send(());
            return;
        }
        if let Some(a) = all {
            let n = a.len();
            match proxy.sync_all(a) {
                Ok(()) => tracing::info!(
                    services = n,
                    table = proxy.table(),
                    "service rules in place"
                ),
                Err(e) => tracing::warn!(error = %e, "service rules not applied"),
            }
        }
        // A burst is one transaction (one `nft` run), not one per Service.
        let n = ones.len();
        if let Err(e) = proxy.update_many(ones) {
            tracing::warn!(services = n, error = %e, "service rules not applied");
        }
    }
}
