//! keel's ingress gateway, run by every node agent on the node's ports 80
//! and 443: `networking.k8s.io/v1` Ingresses of the class `keel` (and
//! those without a class), ingress-nginx's canary annotations, and Gateway
//! API `HTTPRoutes` attached to Gateways of a `GatewayClass` whose
//! `controllerName` is `keel.dev/gateway-controller`, proxied to the ready
//! endpoints of the backend Services.
//!
//! - [`route`]: the routing table (hosts, paths, matches, canaries,
//!   weights); pure, unit- and property-tested.
//! - [`build`]: the table from the watched objects.
//! - [`tls`]: certificates from Secrets by SNI (rustls `ResolvesServerCert`).
//! - [`proxy`]: the hyper server, a thread per core as nginx's workers.
//! - [`pool`]: each serving thread's keep-alive connections to pods.
//! - [`metrics`]: `keel_gateway_*` series in Prometheus' text format, served
//!   by the agent's node endpoint at `/metrics/gateway`.
//! - [`watch`]: the objects from kube-rs reflectors; status written back.
//!
//! The protocol work is hyper's (HTTP/1.1, HTTP/2, upgrades) and rustls'.
//! Written here by hand, because no crate does them as Kubernetes and
//! ingress-nginx define them: the matching rules (Ingress' element-wise
//! prefixes, Gateway API's precedence, nginx's canary order), the proxy's
//! glue (forwarded headers, retries, draining) and a metrics family of four
//! series kinds (a registry crate would add a dependency for a few
//! atomics). The pool too: hyper-util's pooled client spawns a task per
//! request to watch its connection, a cost nginx does not pay.

pub mod build;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod route;
pub mod status;
pub mod tls;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the gateway listens.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_port: u16,
    pub https_port: u16,
    /// Time to a backend's response head before a 504 (nginx's
    /// `proxy_read_timeout` default).
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_port: 80,
            https_port: 443,
            timeout: Duration::from_mins(1),
        }
    }
}

/// A running gateway's metrics (what `/metrics/gateway` serves).
pub type Handle = Arc<metrics::Metrics>;

/// Binds both ports on every address and serves in the background,
/// routing by what `client` watches; `node_ip` goes into the status of
/// what is served.
pub async fn start(
    client: kube::Client,
    cfg: Config,
    node_ip: String,
) -> Result<Handle, GatewayError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bind = |port: u16| async move {
        tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|source| GatewayError::Bind {
                addr: format!("0.0.0.0:{port}"),
                source,
            })
    };
    let http = bind(cfg.http_port).await?;
    let https = bind(cfg.https_port).await?;
    let certs = Arc::new(tls::Certs::new(tls::fallback()?));
    let metrics = Arc::new(metrics::Metrics::default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let sh = Arc::new(proxy::Shared::new(
        certs,
        metrics.clone(),
        cfg.timeout,
        cfg.https_port,
    ));
    // One set of serving threads (and pools) for both ports.
    let listeners = vec![(http, None), (https, Some(acceptor))];
    tokio::spawn(proxy::serve_all(listeners, sh.clone()));
    tokio::spawn(watch::run(client, sh, node_ip));
    tracing::info!(
        http = cfg.http_port,
        https = cfg.https_port,
        "ingress gateway listening"
    );
    Ok(metrics)
}
