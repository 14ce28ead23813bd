//! The proxy: HTTP/1.1 and HTTP/2 (ALPN on HTTPS, prior knowledge on
//! plain HTTP) from clients, HTTP/1.1 over keep-alive pools to the pods;
//! WebSocket (any `Upgrade`) relayed byte for byte once the pod switched
//! protocols; the request timed out as a whole to the response head;
//! another endpoint tried when one refuses the connection (requests whose
//! body is empty or small enough to keep are replayable).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::metrics::{Labels, Metrics, Series};
use crate::route::{Decision, Filter, PathMatch, PathRewrite, Req, Route, Table};
use crate::tls::Certs;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Bodies kept for a retry on another endpoint up to this size.
const REPLAYABLE: u64 = 64 * 1024;
/// Endpoints tried per request at most.
const ATTEMPTS: usize = 3;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    table: RwLock<Arc<Table>>,
    pub certs: Arc<Certs>,
    pub metrics: Arc<Metrics>,
    client: Client<HttpConnector, Body>,
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
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_mins(1))
            .pool_max_idle_per_host(256)
            .build(conn);
        Shared {
            table: RwLock::default(),
            certs,
            metrics,
            client,
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

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

/// Accepts connections until the task is dropped; `tls`: HTTPS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sh: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
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
        let (sh, tls) = (sh.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                Some(acc) => match acc.accept(tcp).await {
                    Ok(s) => connection(sh, TokioIo::new(s), peer, true).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "gateway: TLS handshake failed"),
                },
                None => connection(sh, TokioIo::new(tcp), peer, false).await,
            }
        });
    }
}

async fn connection<I>(sh: Arc<Shared>, io: I, peer: SocketAddr, tls: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let sh = sh.clone();
        async move { Ok::<_, Infallible>(handle(sh, req, peer, tls).await) }
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

pub async fn handle(
    sh: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let started = Instant::now();
    let host = crate::route::request_host(req.uri(), req.headers());
    let path = crate::route::normalize(req.uri().path());
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
            return answer(&sh, no_labels(), started, 404, &[], "404 page not found\n");
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
            return answer(&sh, labels, started, 308, &[(header::LOCATION, loc)], "");
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
    let raw_path = req.uri().path().to_string();
    let mut upstream_path = raw_path.clone();
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
                    .map_or_else(|| raw_path.clone(), |how| rewritten(route, &path, how));
                let loc = format!("{scheme}://{h}{port}{}", with_query(p, req.uri().query()));
                return answer(
                    &sh,
                    labels,
                    started,
                    *status,
                    &[(header::LOCATION, loc)],
                    "",
                );
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
                    upstream_path = rewritten(route, &path, how);
                }
            }
        }
    }
    if backend.endpoints.is_empty() {
        // Gateway API asks 500 for a rule without a usable backend.
        let code = if backend.service.is_empty() { 500 } else { 503 };
        return answer(
            &sh,
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
        &parts.headers,
        &parts.uri,
        parts.version,
        peer,
        tls,
        &host,
        upgrade,
        upstream_host,
    );
    let pq = with_query(upstream_path, parts.uri.query());
    let request_bytes = body.size_hint().exact().unwrap_or(0);
    let (mut kept, mut stream) = if body.is_end_stream() {
        (Some(Bytes::new()), None)
    } else if body.size_hint().exact().is_some_and(|n| n <= REPLAYABLE) {
        match body.collect().await {
            Ok(b) => (Some(b.to_bytes()), None),
            Err(_) => return answer(&sh, labels, started, 400, &[], "400 Bad Request\n"),
        }
    } else {
        (None, Some(body))
    };
    let eps = &backend.endpoints;
    let first = fastrand::usize(0..eps.len());
    let mut last_err = 502;
    for attempt in 0..ATTEMPTS.min(eps.len()) {
        let ep = &eps[(first + attempt) % eps.len()];
        let body = match (&mut kept, stream.take()) {
            (Some(b), _) => full(b.clone()),
            (None, Some(s)) => s.boxed(),
            (None, None) => break,
        };
        let mut out = Request::new(body);
        *out.method_mut() = parts.method.clone();
        *out.headers_mut() = headers.clone();
        match format!("http://{}{pq}", ep.addr).parse() {
            Ok(u) => *out.uri_mut() = u,
            Err(_) => return answer(&sh, labels, started, 400, &[], "400 Bad Request\n"),
        }
        labels.pod.clone_from(&ep.pod);
        match tokio::time::timeout(sh.timeout, sh.client.request(out)).await {
            Ok(Ok(mut resp)) => {
                let status = resp.status().as_u16();
                let series = sh.metrics.series(Labels { status, ..labels });
                series.request(request_bytes);
                if status == 101
                    && let Some(client_up) = client_upgrade
                {
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
                    series,
                    started,
                };
                return Response::from_parts(parts, counted.boxed());
            }
            Ok(Err(e)) if e.is_connect() => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "gateway: endpoint refused");
                last_err = 502;
            }
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "gateway: upstream failed");
                return answer(&sh, labels, started, 502, &[], "502 Bad Gateway\n");
            }
            Err(_) => return answer(&sh, labels, started, 504, &[], "504 Gateway Timeout\n"),
        }
    }
    answer(&sh, labels, started, last_err, &[], "502 Bad Gateway\n")
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

#[allow(clippy::too_many_arguments)]
fn upstream_headers(
    incoming: &HeaderMap,
    uri: &hyper::Uri,
    version: Version,
    peer: SocketAddr,
    tls: bool,
    host: &str,
    upgrade: bool,
    rewrite_host: Option<String>,
) -> HeaderMap {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
    let original_host = incoming
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(ToString::to_string))
        .unwrap_or_else(|| host.to_string());
    if (version == Version::HTTP_2 || !h.contains_key(header::HOST))
        && let Ok(v) = HeaderValue::from_str(&original_host)
    {
        h.insert(header::HOST, v);
    }
    if let Some(v) = rewrite_host.and_then(|r| HeaderValue::from_str(&r).ok()) {
        h.insert(header::HOST, v);
    }
    let ip = peer.ip().to_string();
    let xff = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    let pairs = [
        ("x-forwarded-for", xff),
        ("x-real-ip", ip),
        (
            "x-forwarded-proto",
            if tls { "https" } else { "http" }.to_string(),
        ),
        ("x-forwarded-host", original_host.clone()),
        (
            "x-forwarded-port",
            original_host
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or_else(
                    || if tls { "443" } else { "80" }.to_string(),
                    |(_, p)| p.to_string(),
                ),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    h
}

/// A pod's response body, counting bytes; records the request's duration
/// and size when done (or dropped by a client that went away).
struct Counted {
    inner: Incoming,
    bytes: u64,
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
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.bytes += d.len() as u64;
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
    }
}
