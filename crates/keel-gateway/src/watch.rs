//! The objects the gateway routes by, kept from watches (kube-rs reflectors:
//! one list, then a watch, listed again after an error, as client-go's
//! informers do), and the routing table rebuilt from them shortly after any
//! change. TLS Secrets are read one by one, as named (the Node authorizer
//! lets a node get those, not list Secrets), and read again every
//! [`SECRET_REFRESH`] for renewals. Served Ingresses get the node's address
//! in `status.loadBalancer.ingress`; served Gateways in `status.addresses`
//! and their listeners' status, `HTTPRoute`s their `status.parents`
//! ([`crate::status`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::build::{Objects, build};
use crate::proxy::Shared;

/// How often TLS Secrets are read again.
pub const SECRET_REFRESH: Duration = Duration::from_secs(30);

/// Gateway API's group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

fn follow<K>(api: Api<K>, writer: reflector::store::Writer<K>, notify: Arc<Notify>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    tokio::spawn(async move {
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::debug!(error = %e, "gateway: watch failed"),
            }
        }
    });
}

fn follow_dynamic(client: &kube::Client, kind: &str, notify: Arc<Notify>) -> Store<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", kind));
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    follow(api, writer, notify);
    reader
}

fn store<K>(client: &kube::Client, notify: &Arc<Notify>) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Default + Eq + std::hash::Hash + Send + Sync,
{
    let (reader, writer) = reflector::store::<K>();
    follow(Api::<K>::all(client.clone()), writer, notify.clone());
    reader
}

fn values(s: &Store<DynamicObject>) -> Vec<Arc<Value>> {
    s.state()
        .iter()
        .filter_map(|o| serde_json::to_value(&**o).ok())
        .map(Arc::new)
        .collect()
}

/// Watches and rebuilds until the task is dropped.
pub async fn run(client: kube::Client, sh: Arc<Shared>, node_ip: String) {
    let notify = Arc::new(Notify::new());
    let ingresses = store::<Ingress>(&client, &notify);
    let classes = store::<IngressClass>(&client, &notify);
    let services = store::<Service>(&client, &notify);
    let slices = store::<EndpointSlice>(&client, &notify);
    let mut secrets: HashMap<(String, String), Arc<Secret>> = HashMap::new();
    let mut refreshed = tokio::time::Instant::now();
    let tick = notify.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SECRET_REFRESH).await;
            tick.notify_one();
        }
    });
    let gateway_classes = follow_dynamic(&client, "GatewayClass", notify.clone());
    let gateways = follow_dynamic(&client, "Gateway", notify.clone());
    let routes = follow_dynamic(&client, "HTTPRoute", notify.clone());
    loop {
        notify.notified().await;
        // Let a burst of events (a Deployment rolling) settle into one rebuild.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let objects = Objects {
            ingresses: ingresses.state(),
            classes: classes.state(),
            services: services.state(),
            slices: slices.state(),
            gateway_classes: values(&gateway_classes),
            gateways: values(&gateways),
            routes: values(&routes),
        };
        let built = build(&objects);
        if refreshed.elapsed() >= SECRET_REFRESH {
            secrets.clear();
            refreshed = tokio::time::Instant::now();
        }
        for t in &built.tls {
            let key = (t.namespace.clone(), t.secret.clone());
            if secrets.contains_key(&key) {
                continue;
            }
            let api: Api<Secret> = Api::namespaced(client.clone(), &t.namespace);
            match api.get_opt(&t.secret).await {
                Ok(Some(s)) => {
                    secrets.insert(key, Arc::new(s));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(ns = t.namespace, secret = t.secret, error = %e, "gateway: TLS secret not read");
                }
            }
        }
        sh.certs.update(&built.tls, &secrets);
        sh.set_table(built.table);
        for (ns, name) in &built.ingresses {
            let Some(ing) = ingresses.state().into_iter().find(|i| {
                i.metadata.namespace.as_deref() == Some(ns)
                    && i.metadata.name.as_deref() == Some(name)
            }) else {
                continue;
            };
            let list: Vec<Value> = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| serde_json::to_value(i).ok())
                .collect();
            if let Some(list) = with_address(list, "ip", &node_ip) {
                let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
                let patch = json!({"status": {"loadBalancer": {"ingress": list}}});
                if let Err(e) = api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(ns, name, error = %e, "gateway: Ingress status not written");
                }
            }
        }
        let now = chrono_now();
        let listeners = crate::status::gateway_listeners(&objects);
        for (ns, name) in &built.gateways {
            let Some(g) = objects.gateways.iter().find(|g| {
                g.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                    && g.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            }) else {
                continue;
            };
            let current = g
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let added = with_address(current.clone(), "value", &node_ip);
            let mut ls = listeners
                .get(&(ns.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            for l in &mut ls {
                let cur = g["status"]["listeners"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["name"] == l["name"]))
                    .cloned()
                    .unwrap_or(Value::Null);
                crate::status::stamp(l, &cur, &now);
            }
            let same_listeners = g.pointer("/status/listeners") == Some(&json!(ls));
            if added.is_none() && same_listeners {
                continue;
            }
            let list: Vec<Value> = added
                .unwrap_or(current)
                .into_iter()
                .map(|mut a| {
                    a["type"] = json!("IPAddress");
                    a
                })
                .collect();
            let generation = g
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let cond = |t: &str| json!({"type": t, "status": "True", "reason": t, "message": "", "observedGeneration": generation});
            let mut conds = json!({"conditions": [cond("Accepted"), cond("Programmed")]});
            crate::status::stamp(&mut conds, &g["status"], &now);
            let patch = json!({"status": {"addresses": list, "conditions": conds["conditions"], "listeners": ls}});
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "Gateway"));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(ns, name, error = %e, "gateway: Gateway status not written");
            }
        }
        for ((ns, name), entries) in crate::status::route_parents(&objects) {
            let Some(r) = objects.routes.iter().find(|r| {
                r.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&ns)
                    && r.pointer("/metadata/name").and_then(Value::as_str) == Some(&name)
            }) else {
                continue;
            };
            let current = r.pointer("/status/parents").unwrap_or(&Value::Null);
            let Some(parents) = crate::status::merged_parents(current, &entries, &now) else {
                continue;
            };
            let ar =
                ApiResource::from_gvk(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "HTTPRoute"));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            let patch = json!({"status": {"parents": parents}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(ns, name, error = %e, "gateway: HTTPRoute status not written");
            }
        }
    }
}

/// `list` with `{key: addr}` added, or `None` when it is there already.
fn with_address(mut list: Vec<Value>, key: &str, addr: &str) -> Option<Vec<Value>> {
    if list
        .iter()
        .any(|i| i.get(key).and_then(Value::as_str) == Some(addr))
    {
        return None;
    }
    let mut m = serde_json::Map::new();
    m.insert(key.to_string(), json!(addr));
    list.push(Value::Object(m));
    Some(list)
}

/// RFC 3339 UTC, seconds precision (a condition's `lastTransitionTime`).
fn chrono_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
