//! The proxy: HTTP/1.1 and HTTP/2 (ALPN on HTTPS, prior knowledge on
//! plain HTTP) from clients, HTTP/1.1 over keep-alive pools to the pods;
//! WebSocket (any `Upgrade`) relayed byte for byte once the pod switched
//! protocols; the request timed out as a whole to the response head;
//! another endpoint tried when one refuses the connection (the request,
//! body included, comes back unsent).
//!
//! Connections are served as nginx's workers serve them: one thread per
//! core, each with its own single-threaded runtime and its own pool to the
//! pods, a connection staying on the thread that accepted it. A request
//! then never wakes another thread (the work-stealing runtime did, per
//! request, through its idle workers), which is what set the gateway
//! behind nginx (BENCHMARKS.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

use crate::metrics::{Labels, Metrics, Series};
use crate::pool::{Lease, Pool, SendError};
use crate::route::{Decision, Filter, PathMatch, PathRewrite, Req, Route, Table};
use crate::tls::Certs;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Endpoints tried per request at most.
const ATTEMPTS: usize = 3;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    table: RwLock<Arc<Table>>,
    pub certs: Arc<Certs>,
    pub metrics: Arc<Metrics>,
    timeout: Duration,
    https_port: u16,
}

impl Shared {
    pub fn new(
        certs: Arc<Certs>,
        metrics: Arc<Metrics>,
        timeout: Duration,
        https_port: u16,
    ) -> Self {
        Shared {
            table: RwLock::default(),
            certs,
            metrics,
            timeout,
            https_port,
        }
    }

    pub fn set_table(&self, t: Table) {
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(t);
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A serving thread's view: the shared state and its own pool.
struct Ctx {
    sh: Arc<Shared>,
    pool: Arc<Pool>,
}

/// An accepted connection handed to a serving thread.
struct Accepted {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

/// Accepts connections until the task is dropped; `tls`: HTTPS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sh: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    serve_all(vec![(listener, tls)], sh).await;
}

/// Accepts on every listener (`Some` acceptor: HTTPS) until the task is
/// dropped, which ends the serving threads and their connections.
pub async fn serve_all(
    listeners: Vec<(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    sh: Arc<Shared>,
) {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut workers = Vec::new();
    for i in 0..threads {
        match worker(i, sh.clone()) {
            Ok(tx) => workers.push(tx),
            Err(e) => {
                tracing::warn!(error = %e, "gateway: no serving thread, serving on the agent's runtime");
                break;
            }
        }
    }
    let next = AtomicUsize::new(0);
    let (workers, next, sh) = (&workers, &next, &sh);
    let accepting = listeners.into_iter().map(|(listener, tls)| async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tls = tls.clone();
            if !workers.is_empty() {
                let i = next.fetch_add(1, Ordering::Relaxed) % workers.len();
                match tcp.into_std() {
                    Ok(tcp) => {
                        let _ = workers[i].send(Accepted { tcp, peer, tls });
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "gateway: connection lost"),
                }
                continue;
            }
            let ctx = Arc::new(Ctx {
                sh: sh.clone(),
                pool: Arc::default(),
            });
            tokio::spawn(accepted(ctx, tcp, peer, tls));
        }
    });
    futures::future::join_all(accepting).await;
}

/// Starts serving thread `i`: it serves what is sent until the sender is
/// dropped.
fn worker(i: usize, sh: Arc<Shared>) -> std::io::Result<mpsc::UnboundedSender<Accepted>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
    std::thread::Builder::new()
        .name(format!("keel-gateway-{i}"))
        .spawn(move || {
            let ctx = Arc::new(Ctx {
                sh,
                pool: Arc::default(),
            });
            rt.block_on(async move {
                while let Some(Accepted { tcp, peer, tls }) = rx.recv().await {
                    match tokio::net::TcpStream::from_std(tcp) {
                        Ok(tcp) => drop(tokio::spawn(accepted(ctx.clone(), tcp, peer, tls))),
                        Err(e) => tracing::debug!(%peer, error = %e, "gateway: connection lost"),
                    }
                }
            });
        })?;
    Ok(tx)
}

async fn accepted(
    ctx: Arc<Ctx>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    match tls {
        Some(acc) => match acc.accept(tcp).await {
            Ok(s) => connection(ctx, TokioIo::new(s), peer, true).await,
            Err(e) => tracing::debug!(%peer, error = %e, "gateway: TLS handshake failed"),
        },
        None => connection(ctx, TokioIo::new(tcp), peer, false).await,
    }
}

async fn connection<I>(ctx: Arc<Ctx>, io: I, peer: SocketAddr, tls: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req, peer, tls).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, svc)
        .await;
}

/// A generated response, counted under `labels`.
fn answer(
    sh: &Shared,
    labels: Labels,
    started: Instant,
    status: u16,
    headers: &[(HeaderName, String)],
    body: &str,
) -> Response<Body> {
    let series = sh.metrics.series(Labels { status, ..labels });
    series.request(0);
    series.finished(started.elapsed(), body.len() as u64);
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn no_labels() -> Labels {
    Labels {
        namespace: String::new(),
        ingress: String::new(),
        service: String::new(),
        pod: String::new(),
        status: 0,
    }
}

/// The path after a `ReplacePrefixMatch`/`ReplaceFullPath`.
fn rewritten(route: &Route, path: &str, how: &PathRewrite) -> String {
    match how {
        PathRewrite::Full(p) => p.clone(),
        PathRewrite::Prefix(repl) => {
            let rest = match &route.path {
                PathMatch::Prefix(p) => path.get(p.len()..).unwrap_or(""),
                _ => "",
            };
            let repl = repl.trim_end_matches('/');
            match (repl.is_empty(), rest.is_empty()) {
                (true, true) => "/".to_string(),
                _ => format!("{repl}{rest}"),
            }
        }
    }
}

fn with_query(path: String, q: Option<&str>) -> String {
    match q {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

async fn handle(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let sh = &*ctx.sh;
    let started = Instant::now();
    let host = crate::route::request_host(req.uri(), req.headers());
    // A clone shares the client's bytes: the filters below change headers.
    let uri = req.uri().clone();
    let path = crate::route::normalize(uri.path());
    let table = sh.table();
    let decision = table.decide(
        &Req {
            host: &host,
            path: &path,
            query: req.uri().query(),
            method: req.method().as_str(),
            headers: req.headers(),
            tls,
        },
        &mut |n| fastrand::u32(0..n),
    );
    let (route, source, backend) = match decision {
        Decision::NotFound => {
            return answer(sh, no_labels(), started, 404, &[], "404 page not found\n");
        }
        Decision::HttpsRedirect(route) => {
            let port = if sh.https_port == 443 {
                String::new()
            } else {
                format!(":{}", sh.https_port)
            };
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let labels = Labels {
                namespace: route.source.namespace.clone(),
                ingress: route.source.name.clone(),
                ..no_labels()
            };
            let loc = format!("https://{host}{port}{pq}");
            return answer(sh, labels, started, 308, &[(header::LOCATION, loc)], "");
        }
        Decision::Forward {
            route,
            source,
            backend,
        } => (route, source, backend),
    };
    let mut labels = Labels {
        namespace: source.namespace.clone(),
        ingress: source.name.clone(),
        service: backend.service.clone(),
        ..no_labels()
    };
    let raw_path = uri.path();
    // `None`: the client's path and query go upstream as they came.
    let mut upstream_path: Option<String> = None;
    let mut upstream_host: Option<String> = None;
    for f in &route.filters {
        match f {
            Filter::Redirect {
                scheme,
                hostname,
                path: p,
                port,
                status,
            } => {
                let scheme = scheme
                    .clone()
                    .unwrap_or_else(|| if tls { "https" } else { "http" }.into());
                let h = hostname.clone().unwrap_or_else(|| host.clone());
                let port = match port {
                    Some(p) if !matches!((scheme.as_str(), p), ("http", 80) | ("https", 443)) => {
                        format!(":{p}")
                    }
                    _ => String::new(),
                };
                let p = p
                    .as_ref()
                    .map_or_else(|| raw_path.to_string(), |how| rewritten(route, &path, how));
                let loc = format!("{scheme}://{h}{port}{}", with_query(p, req.uri().query()));
                return answer(sh, labels, started, *status, &[(header::LOCATION, loc)], "");
            }
            Filter::RequestHeader { set, add, remove } => {
                let h = req.headers_mut();
                for (k, v) in set {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        h.insert(k, v);
                    }
                }
                for (k, v) in add {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        h.append(k, v);
                    }
                }
                for k in remove {
                    h.remove(k.as_str());
                }
            }
            Filter::Rewrite { hostname, path: p } => {
                upstream_host.clone_from(hostname);
                if let Some(how) = p {
                    upstream_path = Some(rewritten(route, &path, how));
                }
            }
        }
    }
    if backend.endpoints.is_empty() {
        // Gateway API asks 500 for a rule without a usable backend.
        let code = if backend.service.is_empty() { 500 } else { 503 };
        return answer(
            sh,
            labels,
            started,
            code,
            &[],
            "503 Service Temporarily Unavailable\n",
        );
    }
    let upgrade = req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let headers = upstream_headers(
        parts.headers,
        &parts.uri,
        parts.version,
        peer,
        tls,
        &host,
        upgrade,
        upstream_host,
    );
    let request_bytes = body.size_hint().exact().unwrap_or(0);
    let body = if body.is_end_stream() {
        Empty::new().map_err(|n| match n {}).boxed()
    } else {
        body.boxed()
    };
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.headers_mut() = headers;
    let pq = match upstream_path {
        Some(p) => with_query(p, uri.query()).parse(),
        None => Ok(uri.path_and_query().map_or_else(
            || hyper::http::uri::PathAndQuery::from_static("/"),
            Clone::clone,
        )),
    };
    match pq.map(hyper::Uri::from) {
        Ok(u) => *out.uri_mut() = u,
        Err(_) => return answer(sh, labels, started, 400, &[], "400 Bad Request\n"),
    }
    let eps = &backend.endpoints;
    let first = fastrand::usize(0..eps.len());
    for attempt in 0..ATTEMPTS.min(eps.len()) {
        let ep = &eps[(first + attempt) % eps.len()];
        labels.pod.clone_from(&ep.pod);
        match tokio::time::timeout(sh.timeout, ctx.pool.send(ep.addr, out)).await {
            Ok(Ok((mut resp, lease))) => {
                let status = resp.status().as_u16();
                let series = sh.metrics.series(Labels { status, ..labels });
                series.request(request_bytes);
                if status == 101
                    && let Some(client_up) = client_upgrade
                {
                    // The pod's connection is the tunnel now, not pooled.
                    drop(lease);
                    let pod_up = hyper::upgrade::on(&mut resp);
                    tokio::spawn(async move {
                        if let (Ok(c), Ok(p)) = (client_up.await, pod_up.await) {
                            let _ = tokio::io::copy_bidirectional(
                                &mut TokioIo::new(c),
                                &mut TokioIo::new(p),
                            )
                            .await;
                        }
                    });
                    series.finished(started.elapsed(), 0);
                    let (parts, _) = resp.into_parts();
                    return Response::from_parts(
                        parts,
                        Empty::new().map_err(|n| match n {}).boxed(),
                    );
                }
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let counted = Counted {
                    inner: body,
                    bytes: 0,
                    done: false,
                    lease: Some(lease),
                    series,
                    started,
                };
                return Response::from_parts(parts, counted.boxed());
            }
            Ok(Err(SendError::Connect { addr, source, req })) => {
                tracing::debug!(endpoint = %addr, error = %source, "gateway: endpoint refused");
                out = *req;
            }
            Ok(Err(SendError::Upstream(e))) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "gateway: upstream failed");
                return answer(sh, labels, started, 502, &[], "502 Bad Gateway\n");
            }
            Err(_) => return answer(sh, labels, started, 504, &[], "504 Gateway Timeout\n"),
        }
    }
    answer(sh, labels, started, 502, &[], "502 Bad Gateway\n")
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "upgrade")
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The request's headers as sent to the pod: hop-by-hop ones dropped,
/// `Host` kept (or set from the HTTP/2 authority), `X-Forwarded-*` and
/// `X-Real-IP` set as ingress-nginx sets them. In place: the client's
/// headers are not needed afterwards.
#[allow(clippy::too_many_arguments)]
fn upstream_headers(
    mut h: HeaderMap,
    uri: &hyper::Uri,
    version: Version,
    peer: SocketAddr,
    tls: bool,
    host: &str,
    upgrade: bool,
    rewrite_host: Option<String>,
) -> HeaderMap {
    // What the client sent, before hop-by-hop headers go.
    let prev_xff = h.get(XFF).and_then(|v| v.to_str().ok()).map(str::to_string);
    let original_host = match h.get(header::HOST).filter(|v| v.to_str().is_ok()) {
        Some(v) => v.clone(),
        None => HeaderValue::from_str(
            &uri.authority()
                .map_or_else(|| host.to_string(), ToString::to_string),
        )
        .unwrap_or_else(|_| HeaderValue::from_static("")),
    };
    strip_hop_by_hop(&mut h);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
    if version == Version::HTTP_2 || !h.contains_key(header::HOST) {
        h.insert(header::HOST, original_host.clone());
    }
    if let Some(v) = rewrite_host.and_then(|r| HeaderValue::from_str(&r).ok()) {
        h.insert(header::HOST, v);
    }
    let ip = peer.ip().to_string();
    let xff = match prev_xff {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")),
        None => HeaderValue::from_str(&ip),
    };
    if let Ok(v) = xff {
        h.insert(XFF, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert("x-real-ip", v);
    }
    let (proto, default_port) = if tls {
        ("https", "443")
    } else {
        ("http", "80")
    };
    h.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    let port = original_host
        .to_str()
        .ok()
        .and_then(|v| v.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| p.parse::<u16>().is_ok())
        .and_then(|p| HeaderValue::from_str(p).ok())
        .unwrap_or_else(|| HeaderValue::from_static(default_port));
    h.insert("x-forwarded-port", port);
    h.insert("x-forwarded-host", original_host);
    h
}

const XFF: &str = "x-forwarded-for";

/// A pod's response body, counting bytes; records the request's duration
/// and size when done (or dropped by a client that went away), and gives
/// the connection back to the pool once the body was read to its end.
struct Counted {
    inner: Incoming,
    bytes: u64,
    done: bool,
    lease: Option<Lease>,
    series: Arc<Series>,
    started: Instant,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.done = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.series.finished(self.started.elapsed(), self.bytes);
        // A body left unread would be the next request's response: only a
        // finished one frees the connection (an unfinished one closes it).
        if (self.done || self.inner.is_end_stream())
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}
