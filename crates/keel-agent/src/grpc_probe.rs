//! The `grpc` probe: one call of the standard health service
//! (`grpc.health.v1.Health/Check`) over cleartext HTTP/2, as the kubelet
//! makes it, judged as the kubelet judges it (SERVING passes) and failing
//! with its messages.
//!
//! The request and the response are one field each, so their protobuf and
//! gRPC framing are written here: a gRPC stack (tonic, prost) would double
//! the agent's dependencies for a message of a few bytes.

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};

/// Health statuses of `grpc.health.v1.HealthCheckResponse`.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// Checks `service` ("" for the server as a whole) at `ip:port`.
pub async fn check(ip: &str, port: u16, service: &str) -> Result<(), String> {
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let tcp = tokio::net::TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| format!("timeout: failed to connect service {addr:?}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .map_err(|e| format!("timeout: failed to connect service {addr:?}: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(Bytes::from(request(service))))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
    let head = resp.headers().clone();
    let http = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
    let trailers = body.trailers().cloned().unwrap_or_default();
    // A trailers-only response (an error) carries the status in its headers.
    let field = |n: &str| {
        trailers
            .get(n)
            .or_else(|| head.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = field("grpc-status");
    let message = field("grpc-message").unwrap_or_default();
    match code.as_deref() {
        Some("0") => {}
        Some("12") => {
            return Err(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): rpc error: code = Unimplemented desc = {message}"
            ));
        }
        Some(c) => {
            return Err(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {message}",
                code_name(c)
            ));
        }
        None => {
            return Err(format!(
                "error: health rpc probe failed: no grpc-status in the response (HTTP {http})"
            ));
        }
    }
    let status = response(body.to_bytes())
        .ok_or("error: health rpc probe failed: malformed HealthCheckResponse")?;
    if status == 1 {
        Ok(())
    } else {
        let name = usize::try_from(status)
            .ok()
            .and_then(|i| STATUSES.get(i))
            .map_or_else(|| status.to_string(), |s| (*s).to_string());
        Err(format!("service unhealthy (responded with {name:?})"))
    }
}

/// gRPC's names of its status codes (for messages).
fn code_name(c: &str) -> &str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    c.parse::<usize>()
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or(c)
}

/// A length-prefixed `HealthCheckRequest { service = 1 }`.
fn request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        varint(&mut msg, u64::try_from(service.len()).unwrap_or(u64::MAX));
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0u8]; // not compressed
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or_default() | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or_default());
}

fn read_varint(b: &mut Bytes) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            return None;
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `status` of a length-prefixed `HealthCheckResponse` (0, UNKNOWN,
/// when absent, as protobuf's default); `None` when malformed.
fn response(mut b: Bytes) -> Option<u64> {
    if b.remaining() < 5 || b.get_u8() != 0 {
        return None; // compressed messages are never asked for
    }
    let len = usize::try_from(b.get_u32()).ok()?;
    if b.remaining() < len {
        return None;
    }
    let mut m = b.split_to(len);
    let mut status = 0;
    while m.has_remaining() {
        let key = read_varint(&mut m)?;
        match key & 7 {
            0 => {
                let v = read_varint(&mut m)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            1 if m.remaining() >= 8 => m.advance(8),
            2 => {
                let n = usize::try_from(read_varint(&mut m)?).ok()?;
                if m.remaining() < n {
                    return None;
                }
                m.advance(n);
            }
            5 if m.remaining() >= 4 => m.advance(4),
            _ => return None,
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn messages_are_framed_as_grpc_does() {
        assert_eq!(request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(request("db"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(
            response(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1])),
            Some(1)
        );
        assert_eq!(response(Bytes::from_static(&[0, 0, 0, 0, 0])), Some(0));
        // Unknown fields are skipped.
        assert_eq!(
            response(Bytes::from_static(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 8, 2])),
            Some(2)
        );
        assert_eq!(response(Bytes::from_static(&[0, 0, 0, 0, 9, 8])), None);
        assert_eq!(response(Bytes::from_static(&[1, 0, 0, 0, 0])), None);
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        // A small exhaustive-ish sweep in place of a fuzzer: every prefix
        // and every single-byte change of a valid response.
        let good = [0u8, 0, 0, 0, 5, 0x12, 1, b'x', 8, 2];
        for n in 0..=good.len() {
            let _ = response(Bytes::copy_from_slice(&good[..n]));
        }
        for i in 0..good.len() {
            for v in 0..=255u8 {
                let mut b = good;
                b[i] = v;
                let _ = response(Bytes::copy_from_slice(&b));
            }
        }
    }

    /// A health server over h2c, as grpc-go serves it: the status it
    /// answers is `status`; the service "missing" gets `NOT_FOUND`.
    async fn server(status: Arc<AtomicU64>) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let status = status.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let status = status.load(Ordering::SeqCst);
                        async move {
                            assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                            assert_eq!(req.headers()["content-type"], "application/grpc");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut trailers = hyper::HeaderMap::new();
                            let msg: Vec<u8> = if body.as_ref() == request("missing").as_slice() {
                                trailers.insert("grpc-status", "5".parse().unwrap());
                                trailers.insert("grpc-message", "unknown service".parse().unwrap());
                                Vec::new()
                            } else {
                                trailers.insert("grpc-status", "0".parse().unwrap());
                                vec![0, 0, 0, 0, 2, 8, u8::try_from(status).unwrap()]
                            };
                            let frames = futures::stream::iter(vec![
                                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                    Bytes::from(msg),
                                )),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ]);
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(http_body_util::StreamBody::new(frames))
                                    .unwrap(),
                            )
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn serving_passes_and_anything_else_fails_with_the_kubelets_message() {
        let status = Arc::new(AtomicU64::new(1));
        let port = server(status.clone()).await;
        check("127.0.0.1", port, "").await.unwrap();
        status.store(2, Ordering::SeqCst);
        assert_eq!(
            check("127.0.0.1", port, "").await.unwrap_err(),
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        assert_eq!(
            check("127.0.0.1", port, "missing").await.unwrap_err(),
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = closed.local_addr().unwrap().port();
        drop(closed);
        let e = check("127.0.0.1", p, "").await.unwrap_err();
        assert!(
            e.starts_with("timeout: failed to connect service \"127.0.0.1:"),
            "{e}"
        );
    }
}
