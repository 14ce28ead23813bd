//! The node's streaming endpoint, the kubelet's `:10250` API as the API
//! server uses it: `GET /containerLogs/{ns}/{pod}/{container}` ([`logs`]),
//! `/exec/{ns}/{pod}/{container}` and `/attach/...` ([`exec`]) upgraded to
//! WebSocket ([`ws`], `v5`/`v4.channel.k8s.io`) or SPDY/3.1 ([`spdy`]), and
//! `/portForward/{ns}/{pod}` ([`portforward`]), `/stats/summary`
//! ([`stats`]: CPU and memory of the node, its pods and containers) and
//! `/metrics/gateway` (the ingress gateway's series, Prometheus text).
//!
//! Only the API server talks to it: HTTPS where the client must present a
//! certificate chaining to the cluster CA (`<root>/agent/ca.crt`) whose CN
//! is [`APISERVER_CLIENT`] (the kubelet authorizes the apiserver the same
//! way, by its client certificate). The agent's serving certificate is
//! self-signed, made at each start; its SHA-256 is published on the Node
//! ([`SERVING_CERT_ANNOTATION`]) with the port (`daemonEndpoints`), and the
//! server pins it.

pub(crate) mod exec;
pub(crate) mod logs;
pub(crate) mod portforward;
pub(crate) mod spdy;
pub(crate) mod stats;
pub(crate) mod ws;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::AgentError;

/// The CN of the API server's client certificate for agents (keel-api's
/// `pki::KUBELET_CLIENT_CN`; the crates do not depend on each other).
pub const APISERVER_CLIENT: &str = "keel:kube-apiserver-kubelet-client";

/// Node annotation: hex SHA-256 of the agent's serving certificate (DER).
pub const SERVING_CERT_ANNOTATION: &str = "node.keel.dev/serving-cert-sha256";

/// The kubelet's port; another is taken when it is in use (several agents
/// on one host), and published on the Node either way.
const KUBELET_PORT: u16 = 10250;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What the handlers need.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub root: PathBuf,
    pub exe: PathBuf,
    /// The ingress gateway's metrics (`/metrics/gateway`).
    pub gateway: Option<keel_gateway::Handle>,
}

pub(crate) fn text(code: u16, s: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(s.into())).boxed())
        .expect("static response parts are valid")
}

/// A Kubernetes `Status` failure (the API server passes it on to kubectl).
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("static response parts are valid")
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("static response parts are valid")
}

/// A request header's value ("" when missing or not text).
pub(crate) fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Decoded query parameters, repeated keys kept (`command=a&command=b`).
#[derive(Debug, Default)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "True" | "1"))
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A container of a pod on this node, found by its labels.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: String,
    pub pod_uid: String,
    pub restarts: u32,
}

/// The newest container `container` of pod `ns/pod` (the one with the most
/// restarts), if the node has it.
pub(crate) fn find_container(root: &Path, ns: &str, pod: &str, container: &str) -> Option<Found> {
    use crate::runtime::{
        LABEL_CONTAINER, LABEL_POD_NAME, LABEL_POD_NS, LABEL_POD_UID, LABEL_RESTARTS,
    };
    crate::runtime::labelled(root)
        .into_iter()
        .filter_map(|(id, l)| {
            (l.get(LABEL_POD_NS)? == ns
                && l.get(LABEL_POD_NAME)? == pod
                && l.get(LABEL_CONTAINER)? == container)
                .then(|| Found {
                    id: id.clone(),
                    pod_uid: l.get(LABEL_POD_UID).cloned().unwrap_or_default(),
                    restarts: l
                        .get(LABEL_RESTARTS)
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0),
                })
        })
        .max_by_key(|f| f.restarts)
}

async fn route(
    ctx: Arc<Ctx>,
    stats: &(Arc<stats::Sampler>, String),
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["containerLogs", ns, pod, container] => logs::serve(&ctx, ns, pod, container, &query),
        [kind @ ("exec" | "attach"), ns, pod, container] => {
            let (ns, pod, container) = (
                (*ns).to_string(),
                (*pod).to_string(),
                (*container).to_string(),
            );
            exec::serve(ctx, *kind == "attach", ns, pod, container, query, req).await
        }
        ["portForward", ns, pod] => portforward::serve(&ctx, ns, pod, req).await,
        ["stats", "summary"] => json_response(&stats.0.summary(&stats.1)),
        ["healthz"] => text(200, "ok"),
        ["metrics", "gateway"] => match &ctx.gateway {
            Some(m) => text(200, m.render()),
            None => text(404, "the ingress gateway is not running on this node"),
        },
        _ => text(404, "404 page not found"),
    }
}

/// Serving certificate and key (self-signed, for the node's addresses).
fn serving_cert(ip: &str, name: &str) -> Result<(Vec<u8>, Vec<u8>), AgentError> {
    let mut p = rcgen::CertificateParams::new(vec![ip.to_string(), name.to_string()])
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name}@keel-agent"));
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(|e| AgentError::Credentials(e.to_string()))?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

fn tls_config(
    root: &Path,
    cert: Vec<u8>,
    key: Vec<u8>,
) -> Result<rustls::ServerConfig, AgentError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca = root.join("agent/ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca)
        .map_err(|e| AgentError::Credentials(format!("{}: {e}", ca.display())))?
    {
        let c = c.map_err(|e| AgentError::Credentials(format!("{}: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| AgentError::Credentials(format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| AgentError::Credentials(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Credentials(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The CN of a verified client certificate.
fn client_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// Binds the endpoint on the node's address, publishes it on the Node and
/// serves it in the background.
pub(crate) async fn start(
    client: &kube::Client,
    node: &str,
    node_ip: &str,
    ctx: Ctx,
) -> Result<(), AgentError> {
    let listener = match tokio::net::TcpListener::bind((node_ip, KUBELET_PORT)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((node_ip, 0))
            .await
            .map_err(crate::io_err(format!(
                "binding the node endpoint on {node_ip}"
            )))?,
    };
    let port = listener
        .local_addr()
        .map_err(crate::io_err("node endpoint address"))?
        .port();
    let (cert, key) = serving_cert(node_ip, node)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &cert);
    let hash = digest.as_ref().iter().fold(String::new(), |mut h, b| {
        let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{b:02x}"));
        h
    });
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&ctx.root, cert, key)?));
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {SERVING_CERT_ANNOTATION: hash}}})),
        )
        .await?;
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}),
            ),
        )
        .await?;
    tracing::info!(node, port, "node endpoint serving");
    let stats = Arc::new((stats::Sampler::start(ctx.root.clone()), node.to_string()));
    let ctx = Arc::new(ctx);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (tls, ctx, stats) = (tls.clone(), ctx.clone(), stats.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    tracing::debug!(%peer, "node endpoint: TLS handshake failed");
                    return;
                };
                let cn = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| client_cn(c));
                let allowed = cn.as_deref() == Some(APISERVER_CLIENT);
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    let cn = cn.clone();
                    let stats = stats.clone();
                    async move {
                        if !allowed {
                            let who = cn.unwrap_or_default();
                            return Ok::<_, Infallible>(status(
                                403,
                                "Forbidden",
                                &format!(
                                    "Forbidden (user={who}, verb={}, path={})",
                                    req.method(),
                                    req.uri().path()
                                ),
                            ));
                        }
                        Ok(route(ctx, &stats, req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_repeated_keys() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo+a%3Db&tty=true&x=%zz",
        ));
        assert_eq!(q.all("command"), ["sh", "-c", "echo a=b"]);
        assert!(q.flag("tty"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(Query::parse(Some("a=%4")).get("a"), Some("%4"));
    }
}
