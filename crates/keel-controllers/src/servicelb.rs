//! keel's built-in service load balancer, as k3s's `ServiceLB`: a
//! `LoadBalancer` Service (without a `loadBalancerClass`) is served on its
//! own port on every node's address (the agents' service proxies put the
//! rules in), so its `status.loadBalancer.ingress` lists the Ready nodes'
//! `InternalIP`s, kept in step as nodes come and go.

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::informer::{Cache, Queue, Reconciler, key_of, split_key};
use crate::objects::is_deleting;

fn services() -> &'static Resource {
    resources::find("", "v1", "services").expect("services are served")
}

fn nodes() -> &'static Resource {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

fn ours(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
        && svc
            .pointer("/spec/loadBalancerClass")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

/// The `InternalIP`s of Ready nodes, sorted.
fn node_ips(cache: &Cache) -> Vec<String> {
    let mut ips: Vec<String> = cache
        .list_all(nodes())
        .filter(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .flat_map(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a["type"] == "InternalIP")
                .filter_map(|a| a["address"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The service load balancer (see the module docs).
#[derive(Debug, Default)]
pub struct ServiceLb;

impl ServiceLb {
    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for ServiceLb {
    const NAME: &'static str = "servicelb";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![services(), nodes()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, services()) {
            if ours(obj) {
                queue.add(key_of(obj));
            }
        } else {
            for s in cache.list_all(services()).filter(|s| ours(s)) {
                queue.add(key_of(s));
            }
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(svc) = cache.get(services(), ns, name) else {
            return Ok(None);
        };
        if !ours(svc) || is_deleting(svc) {
            return Ok(None);
        }
        let ingress: Vec<Value> = node_ips(cache)
            .into_iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let want = json!({"ingress": ingress});
        if svc.pointer("/status/loadBalancer") == Some(&want) {
            return Ok(None);
        }
        let r = cache
            .modify(services(), ns, name, Some("status"), |cur| {
                if cur.pointer("/status/loadBalancer") == Some(&want) || !ours(cur) {
                    return None;
                }
                let mut v = cur.clone();
                v["status"]["loadBalancer"] = want.clone();
                Some(v)
            })
            .await;
        match r {
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
            Ok(_) => Ok(None),
        }
    }
}
