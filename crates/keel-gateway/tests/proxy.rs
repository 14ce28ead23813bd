//! The proxy against backends on 127.0.0.1: forwarded headers, a retry
//! when an endpoint refuses connections (body included), connections to
//! pods kept alive and reused, 503 without ready endpoints, 404 without a
//! rule, a WebSocket-style upgrade relayed both ways, and the metrics of
//! what went through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_gateway::metrics::Metrics;
use keel_gateway::proxy::{Shared, serve};
use keel_gateway::route::{Backend, Endpoint, PathMatch, PortRef, Route, Source, Table};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend: answers each request with its head (lowercased) and then
/// its body as the body, keeps connections alive, and switches to echoing
/// bytes after an `Upgrade` request.
async fn backend() -> SocketAddr {
    backend_counted().await.0
}

/// [`backend`], with the number of connections it accepted.
async fn backend_counted() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    let head = head + &body;
                    if head.contains("\r\nupgrade: websocket") {
                        let _ = s
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                            .await;
                        let (mut rx, mut tx) = s.split();
                        let _ = tokio::io::copy(&mut rx, &mut tx).await;
                        return;
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Endpoints `dead` (refusing connections) and `live` (`live`).
async fn dead_and_live(live: SocketAddr) -> Vec<Endpoint> {
    vec![
        Endpoint {
            addr: closed_port().await,
            pod: "dead".into(),
        },
        Endpoint {
            addr: live,
            pod: "live".into(),
        },
    ]
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn route(host: &str, service: &str, endpoints: Vec<Endpoint>) -> (Option<String>, Route) {
    (
        Some(host.to_string()),
        Route {
            source: Source {
                namespace: "default".into(),
                name: "web".into(),
            },
            path: PathMatch::prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
            filters: Vec::new(),
            backends: vec![Backend {
                namespace: "default".into(),
                service: service.into(),
                port: PortRef::Number(80),
                weight: 1,
                endpoints,
            }],
            canary: None,
            ssl_redirect: false,
            order: (String::new(), "default/web".into()),
        },
    )
}

async fn gateway(routes: Vec<(Option<String>, Route)>) -> (SocketAddr, Arc<Metrics>) {
    let mut t = Table::default();
    for (h, r) in routes {
        t.add(h.as_deref(), r);
    }
    t.finish();
    let metrics = Arc::new(Metrics::default());
    let certs = Arc::new(keel_gateway::tls::Certs::new(
        keel_gateway::tls::fallback().unwrap(),
    ));
    let sh = Arc::new(Shared::new(
        certs,
        metrics.clone(),
        Duration::from_secs(10),
        443,
    ));
    sh.set_table(t);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve(l, sh, None));
    (addr, metrics)
}

/// One request over a fresh connection; (status, body).
async fn get(gw: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(gw).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_retries_refusals_and_answers_503_and_404() {
    let eps = dead_and_live(backend().await).await;
    let (gw, metrics) = gateway(vec![
        route("app.test", "app", eps),
        route("empty.test", "empty", Vec::new()),
    ])
    .await;

    let (status, body) = get(gw, "App.Test:8080", "/x?y=1").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("get /x?y=1 http/1.1\r\n"), "{body}");
    for h in [
        "host: app.test:8080",
        "x-forwarded-for: 127.0.0.1",
        "x-real-ip: 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test:8080",
        "x-forwarded-port: 8080",
    ] {
        assert!(body.contains(&format!("\r\n{h}")), "{h} in {body}");
    }
    // The refusing endpoint is skipped: every request gets through.
    for _ in 0..20 {
        assert_eq!(get(gw, "app.test", "/").await.0, 200);
    }
    assert_eq!(get(gw, "empty.test", "/").await.0, 503);
    assert_eq!(get(gw, "nothing.test", "/").await.0, 404);

    let text = metrics.render();
    let line = |labels: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("keel_gateway_requests_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(
        line(r#"namespace="default",ingress="web",service="app",pod="live",status="200""#),
        Some(21),
        "{text}"
    );
    assert_eq!(
        line(r#"namespace="default",ingress="web",service="empty",pod="",status="503""#),
        Some(1)
    );
    assert_eq!(
        line(r#"namespace="",ingress="",service="",pod="",status="404""#),
        Some(1)
    );
    assert!(!text.contains("pod=\"dead\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_upgraded_connections_both_ways() {
    let live = backend().await;
    let eps = vec![Endpoint {
        addr: live,
        pod: "ws".into(),
    }];
    let (gw, _) = gateway(vec![route("ws.test", "ws", eps)]).await;
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(got, msg);
    }
}

/// Reads one response with a `Content-Length` body from `s`; (head, body).
async fn response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "closed after {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_pod_connections_and_resends_bodies_past_refusing_endpoints() {
    let (live, accepted) = backend_counted().await;
    let eps = dead_and_live(live).await;
    let (gw, _) = gateway(vec![route("app.test", "app", eps)]).await;
    // One client connection stays on one serving thread, whose pool keeps
    // the pod's connection: 30 requests, one connection to the pod.
    let mut s = TcpStream::connect(gw).await.unwrap();
    for i in 0..30 {
        let body = format!("request {i}");
        let req = format!(
            "POST /p{i} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, got) = response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}\n{got}");
        assert!(
            got.starts_with(&format!("post /p{i} http/1.1\r\n")),
            "{got}"
        );
        assert!(
            got.ends_with(&body),
            "the body, also after a refusal: {got}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
