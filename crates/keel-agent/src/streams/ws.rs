//! Kubernetes' WebSocket stream protocols for exec and attach:
//! `v5.channel.k8s.io` (kubectl 1.30+) and `v4.channel.k8s.io` (the Python
//! client's `stream`). Each binary (or text) message is one channel byte
//! and data: 0 stdin, 1 stdout, 2 stderr, 3 the final `Status`, 4 resize
//! (`{"Width":w,"Height":h}`); v5 adds 255, "close channel N" (kubectl's
//! end of stdin). The handshake is answered here (RFC 6455's accept key);
//! framing is tokio-tungstenite's.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::exec::{In, Job, Opts, Out};
use super::{Body, header, status};

/// Sub-protocols served, preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub(crate) fn is_upgrade(req: &Request<Incoming>) -> bool {
    header(req, "upgrade").eq_ignore_ascii_case("websocket")
}

/// RFC 6455: base64(SHA-1(key + GUID)).
pub(crate) fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// The first protocol the client offers that is served.
pub(crate) fn choose(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// Parses a resize message's JSON.
pub(crate) fn parse_resize(data: &[u8]) -> Option<In> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    Some(In::Resize {
        width: u16::try_from(v.get("Width")?.as_u64()?).ok()?,
        height: u16::try_from(v.get("Height")?.as_u64()?).ok()?,
    })
}

pub(crate) fn upgrade(mut req: Request<Incoming>, o: &Opts, job: Job) -> Response<Body> {
    let key = header(&req, "sec-websocket-key").to_string();
    let Some(proto) = choose(header(&req, "sec-websocket-protocol")) else {
        return status(
            400,
            "BadRequest",
            &format!(
                "unsupported stream protocols; this node serves {}",
                PROTOCOLS.join(", ")
            ),
        );
    };
    if key.is_empty() {
        return status(400, "BadRequest", "missing Sec-WebSocket-Key");
    }
    let v5 = proto.starts_with("v5");
    let on = hyper::upgrade::on(&mut req);
    let o = o.clone();
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let io = hyper_util::rt::TokioIo::new(up);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        session(ws, v5, &o, job).await;
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept_key(&key))
        .header("sec-websocket-protocol", proto)
        .body(super::text(200, "").into_body())
        .expect("static response parts are valid")
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

async fn session<S>(ws: WebSocketStream<S>, v5: bool, o: &Opts, job: Job)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    // As the kubelet: an empty message on the lowest writable channel tells
    // the client the streams are up.
    let first = if o.stdout {
        STDOUT
    } else if o.stderr {
        STDERR
    } else {
        ERROR
    };
    if sink.send(frame(first, &[])).await.is_err() {
        return;
    }
    let work = tokio::spawn(job(in_rx, out_tx));
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let data: Bytes = match m {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            let msg = match ch {
                STDIN => In::Stdin(data.slice(1..)),
                RESIZE => match parse_resize(rest) {
                    Some(r) => r,
                    None => continue,
                },
                CLOSE if v5 && rest.first() == Some(&STDIN) => In::StdinEof,
                _ => continue,
            };
            if in_tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    while let Some(m) = out_rx.recv().await {
        let f = match m {
            Out::Stdout(b) => frame(STDOUT, &b),
            Out::Stderr(b) => frame(STDERR, &b),
        };
        if sink.send(f).await.is_err() {
            break;
        }
    }
    // The job dropped its sender: it is done (or the client went away).
    let st = work
        .await
        .unwrap_or_else(|e| super::exec::failure(&e.to_string()));
    let _ = sink.send(frame(ERROR, st.to_string().as_bytes())).await;
    // A normal closure (1000): client-go reports any other as an error.
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
    // The connection ends with the close frame, as the kubelet's does
    // (x/net/websocket closes at once). Waiting for the client's reply kept
    // it open: the Python client polls the raw socket, so a close frame
    // that arrived in one TLS record with the status sat in its SSL buffer
    // until the connection closed, and the exec never ended.
    reader.abort();
    let _ = reader.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_parts() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            choose("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
        assert_eq!(choose("channel.k8s.io"), None);
        assert!(matches!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some(In::Resize {
                width: 120,
                height: 40
            })
        ));
        assert!(parse_resize(b"{").is_none());
    }
}
