//! Serves [`crate::api`] over HTTPS (HTTP/1.1 and HTTP/2 by ALPN): the
//! caller hands over the bound listener, the TLS configuration and a check
//! of each request's credentials, so the API is never reachable without
//! authentication.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};

use crate::store::Store;

/// What a request presented.
#[derive(Debug)]
pub struct Credentials<'a> {
    /// The bearer token (or HTTP Basic password).
    pub token: Option<&'a str>,
    /// Whether the connection presented a client certificate that the TLS
    /// configuration's verifier accepted.
    pub client_cert: bool,
}

/// Decides whether a request may query.
pub type Authorize = Arc<dyn Fn(&Credentials) -> bool + Send + Sync>;

/// Request bodies larger than this are refused (a POSTed query form).
const MAX_BODY: usize = 1 << 20;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Binds the API's listening socket.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Accepts connections until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    store: Arc<Store>,
    authorize: Authorize,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let store = store.clone();
        let authorize = authorize.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let client_cert = stream.get_ref().1.peer_certificates().is_some();
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let store = store.clone();
                let authorize = authorize.clone();
                async move { Ok::<_, Infallible>(respond(&store, &authorize, client_cert, req).await) }
            });
            if h2 {
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            }
        });
    }
}

fn token_of(req: &Request<hyper::body::Incoming>) -> Option<String> {
    use base64::Engine as _;
    let h = req.headers().get("authorization")?.to_str().ok()?;
    if let Some(t) = h.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h.strip_prefix("Basic ")?.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    Some(s.split_once(':')?.1.to_string())
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn respond(
    store: &Store,
    authorize: &Authorize,
    client_cert: bool,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let token = token_of(&req);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    // Read the body even when refusing: an HTTP/2 stream answered before
    // its body was read is reset, which curl reports as a framing error.
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                400,
                r#"{"status":"error","errorType":"bad_data","error":"request body too large"}"#
                    .into(),
            );
        }
    };
    let creds = Credentials {
        token: token.as_deref(),
        client_cert,
    };
    if !authorize(&creds) {
        return reply(
            401,
            r#"{"status":"error","errorType":"unauthorized","error":"authentication required: a keel token (Authorization: Bearer) or a client certificate of the cluster CA"}"#.into(),
        );
    }
    match crate::api::handle(store, &method, &path, &query, &body, now_ms()) {
        Some(r) => reply(r.status, r.body),
        None => reply(
            404,
            r#"{"status":"error","errorType":"not_found","error":"not found"}"#.into(),
        ),
    }
}
