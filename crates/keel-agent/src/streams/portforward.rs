//! `/portForward/{ns}/{pod}`: kubectl port-forward. The protocol is
//! `portforward.k8s.io` over SPDY/3.1 (kubectl before 1.31 upgrades to
//! SPDY; 1.31+ tunnels the same SPDY bytes in WebSocket binary messages,
//! sub-protocol `SPDY/3.1+portforward.k8s.io`). Per forwarded connection
//! the client opens an `error` and a `data` stream with the same
//! `requestID` and the pod's `port`; the agent connects to the pod's IP
//! (the node reaches it on its bridge) and copies both ways. A failed
//! connection is reported on the error stream, which ends with FIN.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::spdy::{
    CHUNK, FLAG_FIN, Frame, GOAWAY, HEADERS, HeaderCodec, PING, RST_STREAM, SYN_REPLY, SYN_STREAM,
    be32, data, read_frame,
};
use super::{Body, Ctx, find_container, header, status};

const PROTOCOL: &str = "portforward.k8s.io";
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

pub(crate) async fn serve(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let ip = match find_container(&ctx.root, ns, pod, crate::runtime::SANDBOX) {
        Some(f) => {
            let (r, id) = (ctx.root.clone(), f.id);
            tokio::task::spawn_blocking(move || crate::runtime::observe(&r, &id).and_then(|o| o.ip))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let Some(ip) = ip else {
        return status(
            400,
            "BadRequest",
            &format!("pod {pod} has no network on this node"),
        );
    };
    let on = hyper::upgrade::on(&mut req);
    if super::ws::is_upgrade(&req) {
        let offered = header(&req, "sec-websocket-protocol")
            .split(',')
            .any(|p| p.trim() == TUNNEL);
        let key = header(&req, "sec-websocket-key").to_string();
        if !offered || key.is_empty() {
            return status(
                400,
                "BadRequest",
                &format!("port forwarding over WebSocket needs {TUNNEL}"),
            );
        }
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let io = hyper_util::rt::TokioIo::new(up);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                session(tunnel(ws), ip).await;
            }
        });
        return Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", super::ws::accept_key(&key))
            .header("sec-websocket-protocol", TUNNEL)
            .body(super::text(200, "").into_body())
            .expect("static response parts are valid");
    }
    if !super::spdy::is_upgrade(&req) {
        return status(400, "BadRequest", "Upgrade request required");
    }
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            session(hyper_util::rt::TokioIo::new(up), ip).await;
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", PROTOCOL)
        .body(super::text(200, "").into_body())
        .expect("static response parts are valid")
}

/// The bytes carried in a WebSocket's binary messages, as a byte stream.
fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(theirs);
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK + 64];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    ours
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, u16)>,
    started: bool,
}

async fn session<S>(io: S, ip: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = HeaderCodec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Data stream id → what goes to its TCP connection (None: client FIN).
    let mut inputs: HashMap<u32, mpsc::UnboundedSender<Option<Bytes>>> = HashMap::new();
    let mut waiting: HashMap<u32, mpsc::UnboundedReceiver<Option<Bytes>>> = HashMap::new();
    while let Ok(Some(f)) = read_frame(&mut rd).await {
        match f {
            Frame::Control {
                kind: SYN_STREAM,
                data: d,
                ..
            } if d.len() >= 10 => {
                let id = be32(&d) & 0x7fff_ffff;
                let Ok(h) = codec.decode(&d[10..]) else { break };
                let get = |n: &str| {
                    h.iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend(codec.encode(&[]));
                let syn = Frame::Control {
                    kind: SYN_REPLY,
                    flags: 0,
                    data: reply,
                };
                if wtx.send(syn.encode()).await.is_err() {
                    break;
                }
                let req = get("requestid");
                let pair = pairs.entry(req).or_default();
                match get("streamtype").as_str() {
                    "error" => pair.error = Some(id),
                    "data" => {
                        let port: u16 = get("port").parse().unwrap_or(0);
                        pair.data = Some((id, port));
                        let (tx, rx) = mpsc::unbounded_channel();
                        inputs.insert(id, tx);
                        waiting.insert(id, rx);
                    }
                    _ => {}
                }
                if let (Some(err), Some((did, port)), false) = (pair.error, pair.data, pair.started)
                    && let Some(rx) = waiting.remove(&did)
                {
                    pair.started = true;
                    tokio::spawn(forward(ip.clone(), port, did, err, rx, wtx.clone()));
                }
            }
            Frame::Control {
                kind: HEADERS,
                data: d,
                ..
            } if d.len() >= 4 => {
                if codec.decode(&d[4..]).is_err() {
                    break;
                }
            }
            Frame::Control {
                kind: PING,
                data: d,
                ..
            } => {
                let pong = Frame::Control {
                    kind: PING,
                    flags: 0,
                    data: d,
                };
                let _ = wtx.send(pong.encode()).await;
            }
            Frame::Control { kind: GOAWAY, .. } => break,
            Frame::Control {
                kind: RST_STREAM,
                data: d,
                ..
            } => {
                if let Some(tx) = inputs.remove(&(be32(&d) & 0x7fff_ffff)) {
                    let _ = tx.send(None);
                }
            }
            Frame::Control { .. } => {}
            Frame::Data {
                stream,
                flags,
                data: d,
            } => {
                if let Some(tx) = inputs.get(&stream) {
                    if !d.is_empty() {
                        let _ = tx.send(Some(Bytes::from(d)));
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = tx.send(None);
                        inputs.remove(&stream);
                    }
                }
            }
        }
    }
    drop(inputs);
    drop(wtx);
    let _ = writer.await;
}

async fn forward(
    ip: String,
    port: u16,
    data_id: u32,
    error_id: u32,
    mut input: mpsc::UnboundedReceiver<Option<Bytes>>,
    w: mpsc::Sender<Vec<u8>>,
) {
    let tcp = match tokio::net::TcpStream::connect((ip.as_str(), port)).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod at {ip}: {e}");
            let _ = w.send(data(error_id, 0, msg.as_bytes())).await;
            let _ = w.send(data(error_id, FLAG_FIN, &[])).await;
            let _ = w.send(data(data_id, FLAG_FIN, &[])).await;
            return;
        }
    };
    let (mut tr, mut tw) = tcp.into_split();
    let to_pod = tokio::spawn(async move {
        while let Some(Some(b)) = input.recv().await {
            if tw.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = tw.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match tr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.send(data(data_id, 0, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.send(data(data_id, FLAG_FIN, &[])).await;
    let _ = to_pod.await;
    let _ = w.send(data(error_id, FLAG_FIN, &[])).await;
}
