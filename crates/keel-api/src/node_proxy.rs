//! Pod streams through the pod's node: `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` are proxied to the node agent's
//! HTTPS endpoint (the kubelet's `:10250` API: `/containerLogs`, `/exec`,
//! `/attach`, `/portForward`), as kube-apiserver does. The request has been
//! authenticated and authorized already; the agent authenticates the server
//! by its client certificate (`pki::KUBELET_CLIENT_CN`) and the server pins
//! the agent's self-signed serving certificate by the SHA-256 the agent
//! published on its Node. Upgraded requests (WebSocket, SPDY) are relayed
//! byte for byte once both sides switched protocols: the stream protocols
//! are the agent's.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

use crate::State;
use crate::http::{Body, Fail, Query, Target, fail_response};

/// The Node annotation holding the hex SHA-256 of its agent's serving
/// certificate (`keel_agent::streams::SERVING_CERT_ANNOTATION`).
pub const SERVING_CERT_ANNOTATION: &str = "node.keel.dev/serving-cert-sha256";

/// Request headers the stream protocols need, passed to the agent.
const UPGRADE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Response headers of a switch of protocols, passed to the client.
const SWITCH_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The streamed pod subresource `t` addresses, if any.
pub(crate) fn subresource(t: &Target) -> Option<&'static str> {
    if t.resource.kind != "Pod" || !t.resource.group.is_empty() || t.name.is_none() {
        return None;
    }
    match t.subresource.as_deref()? {
        "log" => Some("log"),
        "exec" => Some("exec"),
        "attach" => Some("attach"),
        "portforward" => Some("portforward"),
        _ => None,
    }
}

pub(crate) async fn handle(
    state: &Arc<State>,
    sub: &str,
    ns: &str,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    match proxy(state, sub, ns, name, query, req).await {
        Ok(r) => r,
        Err(f) => fail_response(&f),
    }
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request names, or the pod's only one (Kubernetes'
/// defaulting and messages).
pub(crate) fn container(pod: &Value, asked: Option<&str>) -> Result<String, Fail> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let (cs, init, eph) = (
        names(pod, "containers"),
        names(pod, "initContainers"),
        names(pod, "ephemeralContainers"),
    );
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if cs.iter().chain(&init).chain(&eph).any(|x| x == c) => Ok(c.to_string()),
        Some(c) => Err(Fail::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if cs.len() == 1 => Ok(cs[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                cs.join(" ")
            );
            if !init.is_empty() {
                let _ = std::fmt::Write::write_fmt(
                    &mut msg,
                    format_args!(" or one of the init containers: [{}]", init.join(" ")),
                );
            }
            Err(Fail::bad_request(msg))
        }
    }
}

/// Where a Node's agent listens, and its certificate's pin.
pub(crate) fn endpoint(node: &Value) -> Option<(String, u16, String)> {
    let addrs = node.pointer("/status/addresses")?.as_array()?;
    let ip = addrs
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addrs.first())?["address"]
        .as_str()?
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")?
        .as_u64()?;
    let pin = node
        .pointer("/metadata/annotations")?
        .get(SERVING_CERT_ANNOTATION)?
        .as_str()?
        .to_string();
    Some((ip, u16::try_from(port).ok()?, pin))
}

fn backend_error(node: &str, e: impl std::fmt::Display) -> Fail {
    Fail::internal(format!("error dialing backend: node {node}: {e}"))
}

async fn proxy(
    state: &Arc<State>,
    sub: &str,
    ns: &str,
    name: &str,
    query: &Query,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Fail> {
    let pods = crate::resources::find("", "v1", "pods").expect("pods are served");
    let (_, pod) = crate::handlers::get_current(state, pods, Some(ns), name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Fail::bad_request(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let c = container(&pod, query.get("container"))?;
        let kind = match sub {
            "log" => "containerLogs",
            "exec" => "exec",
            _ => "attach",
        };
        format!("/{kind}/{ns}/{name}/{c}")
    };
    let uri = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let nodes = crate::resources::find("", "v1", "nodes").expect("nodes are served");
    let (_, n) = crate::handlers::get_current(state, nodes, None, &node)
        .await
        .map_err(|f| backend_error(&node, f.message))?;
    let (ip, port, pin) = endpoint(&n)
        .ok_or_else(|| backend_error(&node, "its agent has not published an endpoint"))?;
    let tls = connect(state, &ip, port, &pin)
        .await
        .map_err(|e| backend_error(&node, e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| backend_error(&node, e))?;
    tokio::spawn(conn.with_upgrades());
    let mut b = Request::builder()
        .method(req.method())
        .uri(uri)
        .header("host", format!("{ip}:{port}"));
    for h in UPGRADE_HEADERS {
        for v in req.headers().get_all(h) {
            b = b.header(h, v);
        }
    }
    let areq = b.body(Empty::<Bytes>::new()).map_err(Fail::internal)?;
    let mut resp = sender
        .send_request(areq)
        .await
        .map_err(|e| backend_error(&node, e))?;
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let client_up = hyper::upgrade::on(&mut req);
        let agent_up = hyper::upgrade::on(&mut resp);
        let mut out = Response::builder().status(101);
        for h in SWITCH_HEADERS {
            for v in resp.headers().get_all(h) {
                out = out.header(h, v);
            }
        }
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client_up.await, agent_up.await) {
                relay(
                    hyper_util::rt::TokioIo::new(a),
                    hyper_util::rt::TokioIo::new(b),
                )
                .await;
            }
        });
        return out.body(Empty::new().boxed()).map_err(Fail::internal);
    }
    let code = resp.status();
    let ctype = resp.headers().get("content-type").cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data()
                && tx.send(d).await.is_err()
            {
                return;
            }
        }
    });
    let mut out = Response::builder().status(code);
    if let Some(t) = ctype {
        out = out.header("content-type", t);
    }
    out.body(ChannelBody(rx).boxed()).map_err(Fail::internal)
}

/// Relays an upgraded stream between the client and the agent. Each
/// direction flushes what it read before it ends, and its end (EOF or an
/// error: the agent drops TLS without `close_notify`) shuts the other side's
/// writer, so the client sees the agent's last frames and then the close.
/// `copy_bidirectional` returned on the first error and dropped bytes still
/// in the client's TLS writer. Once the agent is done, the client gets a
/// few seconds to close its side.
async fn relay<A, B>(client: A, agent: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ar, mut aw) = tokio::io::split(agent);
    let up = pump(&mut cr, &mut aw);
    let down = pump(&mut ar, &mut cw);
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), up).await;
        }
        () = &mut up => down.await,
    }
}

/// Copies until EOF or an error, flushing each write; then shuts `w` down.
async fn pump<R, W>(r: &mut R, w: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 || w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// A streamed response body fed by a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

pub(crate) async fn connect(
    state: &State,
    ip: &str,
    port: u16,
    pin: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let paths = &state.paths;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(paths.kubelet_client_cert())
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key =
        PrivateKeyDer::from_pem_file(paths.kubelet_client_key()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            sha256: pin.to_ascii_lowercase(),
            provider,
        }))
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .map_err(|_| format!("connecting to {ip}:{port} timed out"))?
    .map_err(|e| format!("{ip}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(ip.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{ip}:{port}: {e}"))
}

/// Accepts exactly the certificate whose SHA-256 the Node published
/// (signatures are still checked: the agent holds its key).
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let d = ring::digest::digest(&ring::digest::SHA256, end_entity);
        let hex = d.as_ref().iter().fold(String::new(), |mut h, b| {
            let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{b:02x}"));
            h
        });
        if hex == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the node's serving certificate is not the one its Node names".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_default_as_kubernetes_does() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container(&one, None).unwrap(), "a");
        assert_eq!(container(&one, Some("")).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container(&two, Some("i")).unwrap(), "i");
        assert_eq!(
            container(&two, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(
            container(&two, Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn endpoints_come_from_the_node() {
        let n = json!({"metadata": {"annotations": {SERVING_CERT_ANNOTATION: "ab"}},
            "status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(endpoint(&n), Some(("10.0.0.2".into(), 10250, "ab".into())));
        assert_eq!(endpoint(&json!({"status": {}})), None);
    }
}
