//! `keel server`'s metrics (keel-metrics): scrapes every Node's gateway
//! (`/metrics/gateway` on its agent, as the API server reaches the agent
//! for `pods/log`: job `keel-gateway`, labels `instance` and `node`; nodes
//! joining and leaving are picked up each round) and the `--metrics-target`
//! endpoints into an in-memory store and serves Prometheus' query API
//! (`/api/v1/query`, `/api/v1/query_range`, `/api/v1/labels`,
//! `/api/v1/series`) on `--metrics-listen` (port 9090) over HTTPS with the
//! server's certificate, to holders of a keel token or a client certificate
//! of the cluster CA; and the Service `prometheus` in keel-system (port
//! 9090) with an `EndpointSlice` to this node, for in-cluster clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use keel_api::Loopback;
use keel_api::resources::{self, Resource};
use keel_metrics::scrape::{Discover, Fetch, Target};
use serde_json::json;

use crate::Hint;

/// The default address of the query API (Prometheus' port).
const DEFAULT_LISTEN: &str = "0.0.0.0:9090";

/// `keel server`'s metrics flags.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve the Prometheus query API on ADDR over HTTPS, or "off" (default
    /// 0.0.0.0:9090; when that port is taken the server starts without it).
    #[arg(
        id = "metrics_listen",
        long = "metrics-listen",
        value_name = "ADDR",
        env = "KEEL_METRICS_LISTEN"
    )]
    pub listen: Option<String>,
    /// Scrape JOB=URL (http://host:port/path, Prometheus text format);
    /// repeat for more targets.
    #[arg(
        id = "metrics_targets",
        long = "metrics-target",
        value_name = "JOB=URL",
        env = "KEEL_METRICS_TARGETS",
        value_delimiter = ','
    )]
    pub targets: Vec<String>,
    /// How often targets are scraped.
    #[arg(id = "metrics_scrape_interval", long = "metrics-scrape-interval", value_name = "DURATION", default_value = "15s", env = "KEEL_METRICS_SCRAPE_INTERVAL", value_parser = duration)]
    pub scrape_interval: Duration,
    /// How long samples are kept.
    #[arg(id = "metrics_retention", long = "metrics-retention", value_name = "DURATION", default_value = "1d", value_parser = duration)]
    pub retention: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    match keel_metrics::api::parse_duration(s) {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(format!("{s}: expected a duration like 15s, 1m or 1d")),
    }
}

fn targets(args: &MetricsArgs) -> anyhow::Result<Vec<Target>> {
    args.targets
        .iter()
        .map(|t| match t.split_once('=') {
            Some((job, url)) if !job.is_empty() && url.starts_with("http://") => {
                Ok(Target::http(job, url))
            }
            _ => Err(anyhow::Error::new(Hint::new(
                "write targets as JOB=http://host:port/path, e.g. --metrics-target web=http://127.0.0.1:8080/metrics",
            ))
            .context(format!("--metrics-target {t}: not JOB=http://host:port/path"))),
        })
        .collect()
}

/// The store the scraper fills, the query API serves and the autoscaler reads.
pub fn store(args: &MetricsArgs) -> Arc<keel_metrics::Store> {
    Arc::new(keel_metrics::Store::new(keel_metrics::Options {
        retention_ms: args.retention.as_millis() as i64,
        ..keel_metrics::Options::default()
    }))
}

/// The job of the gateways' series.
pub const GATEWAY_JOB: &str = "keel-gateway";

/// Every Node whose agent published its endpoint, as a target fetched
/// through [`Loopback::node_get`].
fn gateways(api: Loopback) -> Discover {
    Arc::new(move || {
        let api = api.clone();
        Box::pin(async move {
            let (nodes, _) = api
                .list(find("", "v1", "nodes"), None)
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "listing nodes to scrape"))
                .ok()?;
            Some(
                nodes
                    .into_iter()
                    .filter_map(|node| {
                        let endpoint = Loopback::node_endpoint(&node)?;
                        let name = node.pointer("/metadata/name")?.as_str()?.to_string();
                        let api = api.clone();
                        let fetch: Fetch = Arc::new(move || {
                            let (api, node) = (api.clone(), node.clone());
                            Box::pin(async move { api.node_get(&node, "/metrics/gateway").await })
                        });
                        Some(Target {
                            job: GATEWAY_JOB.into(),
                            url: format!("https://{endpoint}/metrics/gateway"),
                            labels: vec![("node".into(), name)],
                            fetch: Some(fetch),
                        })
                    })
                    .collect(),
            )
        })
    })
}

/// Starts scraping and, unless "off", serving; the socket is bound when this returns.
pub async fn start(
    api: Loopback,
    state_dir: &Path,
    node: Option<String>,
    args: &MetricsArgs,
    store: Arc<keel_metrics::Store>,
) -> anyhow::Result<()> {
    let targets = targets(args)?;
    let scraper = keel_metrics::scrape::Scraper::new(store.clone(), targets, args.scrape_interval)
        .with_discovery(gateways(api.clone()));
    analysis_queries(store.clone());
    tokio::spawn(scraper.run());
    let explicit = args.listen.as_deref();
    if explicit == Some("off") {
        return Ok(());
    }
    let addr: SocketAddr = explicit
        .unwrap_or(DEFAULT_LISTEN)
        .parse()
        .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", explicit.unwrap_or_default()))?;
    let listener = match keel_metrics::http::bind(addr).await {
        Ok(l) => l,
        Err(e) if explicit.is_none() => {
            tracing::warn!(%addr, error = %e, "metrics API not served (pass --metrics-listen ADDR)");
            return Ok(());
        }
        Err(e) => {
            return Err(anyhow::Error::new(Hint::new(
                "pick a free address with --metrics-listen 127.0.0.1:PORT, or --metrics-listen off",
            ))
            .context(format!("--metrics-listen {addr}: {e}")));
        }
    };
    let paths = keel_api::pki::Paths::new(state_dir);
    let tls = keel_api::pki::tls_config(&paths).context("metrics API certificate")?;
    let authorize: keel_metrics::http::Authorize = Arc::new(move |c| {
        // Client certificates were verified against the CA by rustls.
        c.client_cert
            || c.token.is_some_and(|t| {
                keel_api::pki::read_tokens(&paths).is_ok_and(|all| {
                    all.iter()
                        .any(|(k, role)| k == t && *role != keel_api::pki::Role::Join)
                })
            })
    });
    let bound = listener.local_addr().context("metrics API address")?;
    tracing::info!(%bound, "Prometheus query API listening");
    tokio::spawn(keel_metrics::http::serve(
        listener,
        Arc::new(tls),
        store,
        authorize,
    ));
    // Pods reach the API at the node's address when it listens on all of
    // them, else at the address it listens on (none for loopback).
    let at = if bound.ip().is_unspecified() && node.is_some() {
        Endpoint::Node(node.unwrap_or_default())
    } else {
        crate::server_dns::endpoint_for(bound.ip()).map_or(Endpoint::None, Endpoint::Ip)
    };
    tokio::spawn(service(api, at, bound.port()));
    Ok(())
}

fn find(group: &str, version: &str, plural: &str) -> &'static Resource {
    resources::find(group, version, plural).expect("built-in resource is served")
}

/// Where the `prometheus` Service's endpoint is.
enum Endpoint {
    /// This node's `InternalIP`, once it reports it.
    Node(String),
    Ip(std::net::IpAddr),
    /// Not reachable from pods (loopback).
    None,
}

/// The keel-system namespace and the `prometheus` Service (no selector),
/// and an `EndpointSlice` to the query API.
async fn service(api: Loopback, at: Endpoint, port: u16) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "keel-system", "labels": {"kubernetes.io/metadata.name": "keel-system"}}});
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "prometheus", "namespace": "keel-system",
            "labels": {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "keel"}},
        "spec": {"ports": [{"name": "https", "port": 9090, "protocol": "TCP", "targetPort": port}]}});
    for (r, obj) in [
        (find("", "v1", "namespaces"), ns),
        (find("", "v1", "services"), svc),
    ] {
        match api.create(r, obj, "keel-metrics").await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(error = %e, "create the prometheus Service");
                return;
            }
        }
    }
    let node = match at {
        Endpoint::Node(n) => n,
        Endpoint::Ip(ip) => {
            slice(&api, &ip.to_string(), None, port).await;
            return;
        }
        Endpoint::None => {
            tracing::info!(
                "the prometheus Service has no endpoint: the query API listens on loopback"
            );
            return;
        }
    };
    let nodes = find("", "v1", "nodes");
    for _ in 0..120 {
        let ip = api
            .get(nodes, None, &node)
            .await
            .ok()
            .flatten()
            .and_then(|n| {
                n.pointer("/status/addresses")?
                    .as_array()?
                    .iter()
                    .find(|a| a["type"] == "InternalIP")?
                    .get("address")?
                    .as_str()
                    .map(String::from)
            });
        if let Some(ip) = ip {
            slice(&api, &ip, Some(&node), port).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn slice(api: &Loopback, ip: &str, node: Option<&str>, port: u16) {
    let mut endpoint = json!({"addresses": [ip], "conditions": {"ready": true}});
    if let Some(n) = node {
        endpoint["nodeName"] = json!(n);
    }
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "prometheus", "namespace": "keel-system",
            "labels": {"kubernetes.io/service-name": "prometheus",
                "endpointslice.kubernetes.io/managed-by": "keel-metrics"}},
        "addressType": "IPv4",
        "endpoints": [endpoint],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    let r = find("discovery.k8s.io", "v1", "endpointslices");
    if let Err(e) = api.create(r, slice, "keel-metrics").await
        && e.code != 409
    {
        tracing::warn!(error = %e, "create the prometheus EndpointSlice");
    }
}

/// Analysis metrics addressed to `prometheus.keel-system.svc` are answered
/// from this store in-process (see keel-controllers' analysis providers).
fn analysis_queries(store: Arc<keel_metrics::Store>) {
    keel_controllers::analysis::set_local_prometheus(Arc::new(move |query: &str| {
        let now = chrono::Utc::now().timestamp_millis();
        keel_metrics::api::handle(&store, "GET", "/api/v1/query", query, b"", now)
            .map_or((404, String::new()), |r| (r.status, r.body))
    }));
}
