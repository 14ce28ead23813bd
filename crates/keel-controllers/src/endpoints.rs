//! Endpoints and `EndpointSlices` (discovery.k8s.io/v1) of Services with a
//! selector, as kube-controller-manager's endpoints and endpointslice
//! controllers write them:
//!
//! - the selected pods that have an IP and have not finished; a pod is in
//!   `addresses` when Ready (or the Service sets
//!   `publishNotReadyAddresses`), else in `notReadyAddresses`; pods being
//!   deleted are left out of Endpoints, and are in slices with
//!   `terminating: true`;
//! - ports resolved per pod: a `targetPort` name through the pod's
//!   container ports (pods without it are left out), a number as is; pods
//!   with the same resolved ports share a subset (and a slice of at most 100
//!   endpoints); a headless Service without ports gets addresses only;
//! - slices carry `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by`
//!   and the Service as controller owner (the garbage collector removes
//!   them with it); Endpoints of a deleted Service are deleted here.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::informer::{Cache, Queue, Reconciler, key_of, split_key};
use crate::objects::{controller_of, controller_uid, is_deleting, meta_str, pod_ready};
use crate::replicaset::pods;

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER_NAME: &str = "endpointslice-controller.k8s.io";
const PER_SLICE: usize = 100;

fn services() -> &'static Resource {
    resources::find("", "v1", "services").expect("services are served")
}

fn endpoints() -> &'static Resource {
    resources::find("", "v1", "endpoints").expect("endpoints are served")
}

fn slices() -> &'static Resource {
    resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served")
}

/// The endpoints controller (see the module docs).
#[derive(Debug, Default)]
pub struct EndpointsController;

impl EndpointsController {
    /// Runs until the runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        crate::informer::run(api, self).await;
    }
}

/// The Service's selector as label equalities; `None` without one.
fn service_selector(svc: &Value) -> Option<&serde_json::Map<String, Value>> {
    svc.pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

fn selects(sel: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels");
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl Reconciler for EndpointsController {
    const NAME: &'static str = "endpoints";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![services(), pods(), endpoints(), slices()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        let ns = meta_str(obj, "namespace");
        if std::ptr::eq(r, services()) || std::ptr::eq(r, endpoints()) {
            queue.add(key_of(obj));
        } else if std::ptr::eq(r, slices()) {
            if let Some(svc) = obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(SERVICE_NAME))
                .and_then(Value::as_str)
            {
                queue.add(format!("{ns}/{svc}"));
            }
        } else {
            for svc in cache.list(services(), ns) {
                if service_selector(svc).is_some_and(|s| selects(s, obj)) {
                    queue.add(key_of(svc));
                }
            }
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let svc = cache.get(services(), ns, name).cloned();
        let Some(svc) = svc.filter(|s| !is_deleting(s)) else {
            // Gone: its Endpoints go too (slices follow through their owner).
            if let Some(ep) = cache.get(endpoints(), ns, name).cloned()
                && ep
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get("endpointslice.kubernetes.io/skip-mirror"))
                    .is_some()
            {
                let uid = meta_str(&ep, "uid").to_string();
                cache.delete(endpoints(), ns, name, &uid).await?;
            }
            return Ok(None);
        };
        let Some(sel) = service_selector(&svc) else {
            return Ok(None);
        };
        let publish = svc
            .pointer("/spec/publishNotReadyAddresses")
            .and_then(Value::as_bool)
            == Some(true);
        let svc_ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Resolved ports → the pods serving on them.
        let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
        let mut selected: Vec<Value> = cache
            .list(pods(), ns)
            .filter(|p| selects(sel, p))
            .filter(|p| {
                p.pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| !ip.is_empty())
            })
            .filter(|p| {
                !matches!(
                    p.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                )
            })
            .cloned()
            .collect();
        selected.sort_by_key(|p| meta_str(p, "name").to_string());
        for p in selected {
            let Some(ports) = resolve_ports(&svc_ports, &p) else {
                continue;
            };
            let k = serde_json::to_string(&ports).unwrap_or_default();
            groups
                .entry(k)
                .or_insert_with(|| (ports, Vec::new()))
                .1
                .push(p);
        }
        let want_ep = endpoints_object(&svc, &groups, publish);
        let cur = cache.get(endpoints(), ns, name).cloned();
        match cur {
            None => {
                cache.create(endpoints(), want_ep).await?;
            }
            Some(cur)
                if cur.get("subsets") != want_ep.get("subsets")
                    || cur.pointer("/metadata/labels") != want_ep.pointer("/metadata/labels") =>
            {
                let want = want_ep.clone();
                cache
                    .modify(endpoints(), ns, name, None, |c| {
                        let mut v = c.clone();
                        v["metadata"]["labels"] = want["metadata"]["labels"].clone();
                        match want.get("subsets") {
                            Some(s) => v["subsets"] = s.clone(),
                            None => {
                                v.as_object_mut()?.remove("subsets");
                            }
                        }
                        (v != *c).then_some(v)
                    })
                    .await?;
            }
            Some(_) => {}
        }
        self.sync_slices(cache, &svc, &groups, publish).await?;
        Ok(None)
    }
}

/// The Service's ports as this pod serves them; `None` when a named
/// `targetPort` is not among the pod's container ports.
fn resolve_ports(svc_ports: &[Value], pod: &Value) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for sp in svc_ports {
        let protocol = sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        let port = match sp.get("targetPort") {
            Some(Value::String(name)) => {
                let found = pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)?
                    .iter()
                    .flat_map(|c| {
                        c.get("ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                    })
                    .find(|p| {
                        p.get("name").and_then(Value::as_str) == Some(name.as_str())
                            && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                == protocol
                    })?;
                found.get("containerPort")?.as_i64()?
            }
            Some(Value::Number(n)) => n.as_i64()?,
            _ => sp.get("port")?.as_i64()?,
        };
        let mut p = json!({"port": port, "protocol": protocol});
        if let Some(n) = sp
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            p["name"] = json!(n);
        }
        if let Some(a) = sp.get("appProtocol") {
            p["appProtocol"] = a.clone();
        }
        out.push(p);
    }
    Some(out)
}

fn target_ref(p: &Value) -> Value {
    json!({"kind": "Pod", "namespace": meta_str(p, "namespace"), "name": meta_str(p, "name"), "uid": meta_str(p, "uid")})
}

fn address(p: &Value) -> Value {
    let mut a = json!({"ip": p.pointer("/status/podIP").cloned().unwrap_or(Value::Null), "targetRef": target_ref(p)});
    if let Some(n) = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        a["nodeName"] = json!(n);
    }
    a
}

fn endpoints_object(
    svc: &Value,
    groups: &BTreeMap<String, (Vec<Value>, Vec<Value>)>,
    publish: bool,
) -> Value {
    let mut subsets = Vec::new();
    for (ports, members) in groups.values() {
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for p in members.iter().filter(|p| !is_deleting(p)) {
            if publish || pod_ready(p) {
                ready.push(address(p));
            } else {
                not_ready.push(address(p));
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let mut s = json!({});
        if !ready.is_empty() {
            s["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            s["notReadyAddresses"] = json!(not_ready);
        }
        if !ports.is_empty() {
            s["ports"] = json!(ports);
        }
        subsets.push(s);
    }
    let mut labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
    let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": meta_str(svc, "name"), "namespace": meta_str(svc, "namespace"), "labels": labels}});
    if !subsets.is_empty() {
        ep["subsets"] = json!(subsets);
    }
    ep
}

impl EndpointsController {
    async fn sync_slices(
        &self,
        cache: &mut Cache,
        svc: &Value,
        groups: &BTreeMap<String, (Vec<Value>, Vec<Value>)>,
        publish: bool,
    ) -> Result<(), ClientError> {
        let (ns, name, uid) = (
            meta_str(svc, "namespace"),
            meta_str(svc, "name"),
            meta_str(svc, "uid"),
        );
        let mut labels = svc
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels[SERVICE_NAME] = json!(name);
        labels[MANAGED_BY] = json!(MANAGER_NAME);
        // Desired slice bodies (ports + endpoints).
        let mut want: Vec<(Value, Value)> = Vec::new();
        for (ports, members) in groups.values() {
            let eps: Vec<Value> = members
                .iter()
                .map(|p| {
                    let ready = (publish || pod_ready(p)) && !is_deleting(p);
                    let mut e = json!({"addresses": [p.pointer("/status/podIP").cloned().unwrap_or(Value::Null)],
                        "conditions": {"ready": ready, "serving": publish || pod_ready(p), "terminating": is_deleting(p)},
                        "targetRef": target_ref(p)});
                    if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                        e["nodeName"] = json!(n);
                    }
                    e
                })
                .collect();
            for chunk in eps.chunks(PER_SLICE) {
                want.push((json!(ports), json!(chunk)));
            }
        }
        // A Service selecting nothing still has one empty slice.
        if want.is_empty() {
            let ports: Vec<Value> = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ports: Vec<Value> = ports.iter().filter_map(|sp| {
                let mut p = json!({"port": sp.get("targetPort").and_then(Value::as_i64).or_else(|| sp.get("port")?.as_i64())?, "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
                if let Some(n) = sp.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) { p["name"] = json!(n); }
                Some(p)
            }).collect();
            want.push((json!(ports), json!([])));
        }
        let mut have: Vec<Value> = cache
            .list(slices(), ns)
            .filter(|s| controller_uid(s, "Service") == Some(uid))
            .cloned()
            .collect();
        have.sort_by_key(|s| meta_str(s, "name").to_string());
        let mut unused: Vec<Value> = Vec::new();
        let mut pending: Vec<(Value, Value)> = Vec::new();
        // Keep slices already right; reuse the others for what is left.
        for s in have {
            let body = (
                s.get("ports").cloned().unwrap_or_else(|| json!([])),
                s.get("endpoints").cloned().unwrap_or_else(|| json!([])),
            );
            if let Some(i) = want.iter().position(|w| *w == body)
                && s.pointer("/metadata/labels") == Some(&labels)
            {
                want.remove(i);
            } else {
                unused.push(s);
            }
        }
        pending.extend(want);
        for (ports, eps) in pending {
            if let Some(s) = unused.pop() {
                let (labels, sname) = (labels.clone(), meta_str(&s, "name").to_string());
                cache
                    .modify(slices(), ns, &sname, None, |c| {
                        let mut v = c.clone();
                        v["metadata"]["labels"] = labels.clone();
                        v["ports"] = ports.clone();
                        v["endpoints"] = eps.clone();
                        (v != *c).then_some(v)
                    })
                    .await?;
            } else {
                let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels,
                        "ownerReferences": [controller_of(services(), svc)]},
                    "addressType": "IPv4", "ports": ports, "endpoints": eps});
                cache.create(slices(), slice).await?;
            }
        }
        for s in unused {
            let (sname, suid) = (
                meta_str(&s, "name").to_string(),
                meta_str(&s, "uid").to_string(),
            );
            cache.delete(slices(), ns, &sname, &suid).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_through_the_pod() {
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        let svc_ports = [
            json!({"name": "web", "port": 80, "targetPort": "http"}),
            json!({"port": 9000, "targetPort": 9001}),
        ];
        let got = resolve_ports(&svc_ports, &pod).unwrap();
        assert_eq!(
            got,
            [
                json!({"name": "web", "port": 8080, "protocol": "TCP"}),
                json!({"port": 9001, "protocol": "TCP"})
            ]
        );
        let other = json!({"spec": {"containers": [{"ports": []}]}});
        assert!(resolve_ports(&svc_ports, &other).is_none());
    }
}
