//! `metrics.k8s.io/v1beta1`, served in process as metrics-server serves it
//! through its `APIService`: `NodeMetrics` and `PodMetrics` (get and list,
//! `labelSelector`), for `kubectl top` and the autoscaler. Readings come
//! from each Ready node's agent (`GET /stats/summary` on its HTTPS port,
//! reached as [`crate::node_proxy`] reaches it: the kubelet-client
//! certificate, the agent's pinned serving certificate) and are kept for
//! [`CACHE_TTL`], so a burst of `kubectl top` and a sync of every
//! autoscaler cost one request per node.
//!
//! As metrics-server does: a pod is listed only when every one of its
//! containers has a CPU rate (a just-started container has none yet), CPU
//! is written in nanocores (`123456n`) and memory in `KiB` (`2048Ki`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};

use crate::State;
use crate::auth::{self, User};
use crate::http::{Body, Fail, Query, fail_response};
use crate::selectors::LabelSelector;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// How long a node's summary is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// The window the agents' rates span (keel-agent's sampling interval).
const WINDOW: &str = "5s";

/// `(resource, kind, namespaced)` of the group's two resources.
const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

/// `APIResourceList` of `metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": RESOURCES.iter().map(|(p, k, ns)| json!({
            "name": p, "singularName": "", "namespaced": ns, "kind": k,
            "verbs": ["get", "list"],
        })).collect::<Vec<_>>(),
    })
}

/// The group's entry in the aggregated discovery document.
pub fn aggregated_group() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(p, k, ns)| {
            json!({
                "resource": p,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": k},
                "scope": if *ns { "Namespaced" } else { "Cluster" },
                "singularResource": p.trim_end_matches('s'),
                "verbs": ["get", "list"],
            })
        })
        .collect();
    json!({"metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}]})
}

/// Summaries by node name, with when they were fetched.
type Cache = Mutex<HashMap<(usize, String), (Instant, Value)>>;

fn cache() -> &'static Cache {
    static C: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    C.get_or_init(Cache::default)
}

/// Serves `GET /apis/metrics.k8s.io/v1beta1/{rest}` for `user`.
pub(crate) async fn handle(
    state: &Arc<State>,
    user: &User,
    rest: &[&str],
    query: &Query,
) -> Response {
    let (plural, ns, name) = match rest {
        ["nodes"] => ("nodes", None, None),
        ["nodes", n] => ("nodes", None, Some(*n)),
        ["pods"] => ("pods", None, None),
        ["namespaces", ns, "pods"] => ("pods", Some(*ns), None),
        ["namespaces", ns, "pods", n] => ("pods", Some(*ns), Some(*n)),
        _ => {
            return fail_response(&Fail::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let attrs = auth::Attributes {
        verb: if name.is_some() { "get" } else { "list" }.into(),
        group: GROUP.into(),
        resource: plural.into(),
        namespace: ns.unwrap_or_default().into(),
        name: name.unwrap_or_default().into(),
        ..auth::Attributes::default()
    };
    let (allowed, reason) = auth::authorize(state, user, &attrs).await;
    if !allowed {
        let mut f = Fail::new(403, "Forbidden", attrs.forbidden_message(user, &reason));
        f.details = Some(json!({"name": attrs.name, "group": GROUP, "kind": plural}));
        return fail_response(&f);
    }
    let selector = match LabelSelector::parse(query.get("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return fail_response(&Fail::bad_request(e)),
    };
    let items = match plural {
        "nodes" => node_metrics(state, name).await,
        _ => pod_metrics(state, ns, name).await,
    };
    let items = match items {
        Ok(i) => i,
        Err(f) => return fail_response(&f),
    };
    let items: Vec<Value> = items
        .into_iter()
        .filter(|i| selector.matches(i.pointer("/metadata/labels")))
        .collect();
    let kind = if plural == "nodes" {
        "NodeMetrics"
    } else {
        "PodMetrics"
    };
    if let Some(n) = name {
        let Some(mut i) = items.into_iter().next() else {
            let what = if plural == "nodes" {
                "nodemetrics"
            } else {
                "podmetrics"
            };
            return fail_response(&Fail::new(
                404,
                "NotFound",
                format!("{what}.{GROUP} \"{n}\" not found"),
            ));
        };
        i["kind"] = json!(kind);
        i["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
        return crate::http::json_response(200, &i);
    }
    crate::http::json_response(
        200,
        &json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {}, "items": items}),
    )
}

type Response = hyper::Response<Body>;

async fn list(state: &Arc<State>, plural: &str, ns: Option<&str>) -> Result<Vec<Value>, Fail> {
    let r = crate::resources::find("", "v1", plural).expect("core resources are served");
    let (items, _) = crate::Loopback {
        state: state.clone(),
    }
    .list(r, ns)
    .await
    .map_err(|e| Fail::internal(e.message))?;
    Ok(items)
}

fn ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Summaries of the Ready nodes (those named in `only`, when given).
async fn summaries(state: &Arc<State>, only: Option<&[&str]>) -> Result<Vec<(Value, Value)>, Fail> {
    let nodes = list(state, "nodes", None).await?;
    let mut tasks = Vec::new();
    for n in nodes {
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !ready(&n) || only.is_some_and(|o| !o.contains(&name.as_str())) {
            continue;
        }
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let s = summary(&state, &name, &n).await;
            (n, s)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok((n, Some(s))) = t.await {
            out.push((n, s));
        }
    }
    Ok(out)
}

/// One node's summary, from the cache or its agent; `None` when the agent
/// cannot be reached (its pods then have no metrics, as with metrics-server).
async fn summary(state: &Arc<State>, name: &str, node: &Value) -> Option<Value> {
    let key = (Arc::as_ptr(state) as usize, name.to_string());
    if let Some((at, v)) = cache().lock().ok()?.get(&key)
        && at.elapsed() < CACHE_TTL
    {
        return Some(v.clone());
    }
    let v = match tokio::time::timeout(Duration::from_secs(5), fetch(state, node)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(node = name, error = %e, "reading the node's resource metrics");
            return None;
        }
        Err(_) => {
            tracing::warn!(node = name, "reading the node's resource metrics timed out");
            return None;
        }
    };
    cache()
        .lock()
        .ok()?
        .insert(key, (Instant::now(), v.clone()));
    Some(v)
}

async fn fetch(state: &Arc<State>, node: &Value) -> Result<Value, String> {
    let body = node_get(state, node, "/stats/summary").await?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// GETs `path` from `node`'s agent as the API server reaches it.
async fn node_get(state: &Arc<State>, node: &Value, path: &str) -> Result<Bytes, String> {
    let (ip, port, pin) =
        crate::node_proxy::endpoint(node).ok_or("its agent has not published an endpoint")?;
    let tls = crate::node_proxy::connect(state, &ip, port, &pin).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("GET {path}: {}", resp.status()));
    }
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes())
}

/// `123456789n`: nanocores as metrics-server writes them.
pub fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

/// `2048Ki`: bytes as metrics-server writes them (rounded down to `KiB`).
pub fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn usage(cpu: &Value, mem: &Value) -> Option<Value> {
    Some(json!({
        "cpu": cpu_quantity(cpu["usageNanoCores"].as_u64()?),
        "memory": memory_quantity(mem["workingSetBytes"].as_u64().unwrap_or(0)),
    }))
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn node_metrics(state: &Arc<State>, name: Option<&str>) -> Result<Vec<Value>, Fail> {
    let only = name.map(|n| vec![n]);
    let out = summaries(state, only.as_deref()).await?;
    Ok(out
        .into_iter()
        .filter_map(|(n, s)| node_item(&n, &s))
        .collect())
}

/// A `NodeMetrics` from a Node and its summary.
pub fn node_item(node: &Value, s: &Value) -> Option<Value> {
    let u = usage(&s["node"]["cpu"], &s["node"]["memory"])?;
    Some(json!({
        "metadata": {
            "name": node["metadata"]["name"],
            "creationTimestamp": now(),
            "labels": node["metadata"].get("labels").cloned().unwrap_or(json!({})),
        },
        "timestamp": s["node"]["cpu"]["time"],
        "window": WINDOW,
        "usage": u,
    }))
}

/// `PodMetrics` of pods (in `ns`, or everywhere; only `name` when given)
/// with their pods' labels.
pub(crate) async fn pod_metrics(
    state: &Arc<State>,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Value>, Fail> {
    let pods = list(state, "pods", ns).await?;
    let mut by_node: HashMap<String, Vec<Value>> = HashMap::new();
    for p in pods {
        if name.is_some_and(|n| p["metadata"]["name"] != n) {
            continue;
        }
        if let Some(node) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
            by_node.entry(node.to_string()).or_default().push(p);
        }
    }
    if by_node.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = by_node.keys().map(String::as_str).collect();
    let sums = summaries(state, Some(&names)).await?;
    let mut out = Vec::new();
    for (n, s) in sums {
        let node = n["metadata"]["name"].as_str().unwrap_or_default();
        for p in by_node.get(node).into_iter().flatten() {
            if let Some(i) = pod_item(p, &s) {
                out.push(i);
            }
        }
    }
    out.sort_by(|a, b| {
        let k = |v: &Value| {
            (
                v["metadata"]["namespace"].to_string(),
                v["metadata"]["name"].to_string(),
            )
        };
        k(a).cmp(&k(b))
    });
    Ok(out)
}

/// A `PodMetrics` for `pod` from its node's summary; `None` when the node
/// has no complete reading of it.
pub fn pod_item(pod: &Value, s: &Value) -> Option<Value> {
    let uid = pod["metadata"]["uid"].as_str()?;
    let ps = s["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["uid"] == uid)?;
    let mut containers = Vec::new();
    for c in ps["containers"].as_array()? {
        containers.push(json!({"name": c["name"], "usage": usage(&c["cpu"], &c["memory"])?}));
    }
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "metadata": {
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "creationTimestamp": now(),
            "labels": pod["metadata"].get("labels").cloned().unwrap_or(json!({})),
        },
        "timestamp": ps["cpu"]["time"],
        "window": WINDOW,
        "containers": containers,
    }))
}

impl crate::Loopback {
    /// `PodMetrics` of the pods in `ns` (for the autoscaler).
    pub async fn pod_metrics(&self, ns: &str) -> Result<Vec<Value>, crate::ClientError> {
        Ok(pod_metrics(&self.state, Some(ns), None).await?)
    }

    /// GETs `path` (e.g. `/metrics/gateway`) from the agent of `node` (a
    /// Node object) over HTTPS: the server's kubelet-client certificate,
    /// the agent's serving certificate pinned by its Node, as `pods/log`.
    pub async fn node_get(&self, node: &Value, path: &str) -> Result<Bytes, String> {
        node_get(&self.state, node, path).await
    }

    /// `ip:port` of `node`'s agent, once it published its endpoint.
    pub fn node_endpoint(node: &Value) -> Option<String> {
        crate::node_proxy::endpoint(node).map(|(ip, port, _)| format!("{ip}:{port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({"node": {"nodeName": "n1",
          "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 1_500_000_000u64, "usageCoreNanoSeconds": 9},
          "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 2_097_152}},
        "pods": [
          {"podRef": {"name": "web", "namespace": "default", "uid": "u1"},
           "cpu": {"time": "2026-01-01T00:00:05Z", "usageNanoCores": 250_000_000},
           "containers": [
             {"name": "app", "cpu": {"usageNanoCores": 250_000_000}, "memory": {"workingSetBytes": 4096}},
           ]},
          {"podRef": {"name": "young", "namespace": "default", "uid": "u2"},
           "containers": [{"name": "app", "memory": {"workingSetBytes": 4096}}]},
        ]})
    }

    #[test]
    fn items_take_metrics_servers_shape() {
        let node = json!({"metadata": {"name": "n1", "labels": {"a": "b"}}});
        let n = node_item(&node, &summary()).unwrap();
        assert_eq!(
            n["usage"],
            json!({"cpu": "1500000000n", "memory": "2048Ki"})
        );
        assert_eq!(n["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(n["window"], WINDOW);
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}}});
        let p = pod_item(&pod, &summary()).unwrap();
        assert_eq!(
            p["containers"],
            json!([{"name": "app", "usage": {"cpu": "250000000n", "memory": "4Ki"}}])
        );
        assert_eq!(p["timestamp"], "2026-01-01T00:00:05Z");
        let young = json!({"metadata": {"name": "young", "namespace": "default", "uid": "u2"}});
        assert_eq!(
            pod_item(&young, &summary()),
            None,
            "a container without a CPU rate"
        );
        let other = json!({"metadata": {"name": "web", "namespace": "default", "uid": "zz"}});
        assert_eq!(pod_item(&other, &summary()), None, "same name, another pod");
    }

    #[test]
    fn discovery_names_both_resources() {
        let l = resource_list();
        assert_eq!(l["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(l["resources"][1]["kind"], "PodMetrics");
        assert_eq!(
            aggregated_group()["versions"][0]["resources"][0]["singularResource"],
            "node"
        );
    }
}
