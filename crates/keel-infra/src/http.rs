//! A small synchronous HTTP/1.1 client over rustls with the credentials
//! remote-state servers and Kubernetes API servers take (Basic, Bearer,
//! client certificates). Synchronous because the engine does not run inside
//! an async runtime; hand-written because the maintained sync clients
//! (ureq) would bring a second TLS and proxy stack for these few requests.
//!
//! Connections are kept alive: a response read to its end (by
//! Content-Length or the chunked encoding's last chunk) leaves the connection
//! in a per-process pool keyed by address and identity, and the next request
//! to that server reuses it instead of a TCP and TLS handshake. A pooled
//! connection the server has closed meanwhile is detected when it yields no
//! byte of a response, and the request is sent once more on a new one (the
//! server saw none of it), as Go's net/http does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::backend::BackendError;

fn http_err(msg: impl Into<String>) -> BackendError {
    BackendError::Http(msg.into())
}

/// A parsed response.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Header names as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What reading a response found besides the response.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The body ended by its framing; the connection can carry another request.
    KeepAlive,
    /// The body ended with the connection (or the server asked to close).
    Closed,
}

/// Reads one response from `s`. `head_only`: the request was HEAD (no body).
/// An `UnexpectedEof` error with nothing read means the server closed the
/// connection before answering.
pub fn read_response(s: &mut impl Read, head_only: bool) -> std::io::Result<(Response, Ending)> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = read_some(s, &mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "connection closed before a response"
                } else {
                    "connection closed inside a response's header"
                },
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let close = resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        || status_line.starts_with("HTTP/1.0");
    let mut rest = buf.split_off(head_end + 4);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        let ending = if close || !rest.is_empty() {
            Ending::Closed
        } else {
            Ending::KeepAlive
        };
        return Ok((resp, ending));
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            match dechunk(&rest) {
                Chunks::Complete(body, used) => {
                    resp.body = body;
                    let ending = if close || used != rest.len() {
                        Ending::Closed
                    } else {
                        Ending::KeepAlive
                    };
                    return Ok((resp, ending));
                }
                Chunks::Invalid => return Err(bad("malformed chunked body")),
                Chunks::Incomplete => {}
            }
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("malformed Content-Length"))?;
        while rest.len() < len {
            let n = read_some(s, &mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a response body",
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        let ending = if close || rest.len() != len {
            Ending::Closed
        } else {
            Ending::KeepAlive
        };
        rest.truncate(len);
        resp.body = rest;
        return Ok((resp, ending));
    }
    // No framing: the body is what arrives until the server closes.
    loop {
        match read_some(s, &mut chunk) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            // Servers that close without close_notify: keep what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    resp.body = rest;
    Ok((resp, Ending::Closed))
}

fn read_some(s: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

enum Chunks {
    /// The body and how many bytes of the input the encoding used.
    Complete(Vec<u8>, usize),
    Incomplete,
    Invalid,
}

/// Decodes a chunked body (RFC 9112 §7.1), trailers skipped.
fn dechunk(b: &[u8]) -> Chunks {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") else {
            return Chunks::Incomplete;
        };
        let line = String::from_utf8_lossy(&b[i..i + nl]);
        let size = line.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            return Chunks::Invalid;
        };
        i += nl + 2;
        if n == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") else {
                    return Chunks::Incomplete;
                };
                i += nl + 2;
                if nl == 0 {
                    return Chunks::Complete(out, i);
                }
            }
        }
        let Some(end) = i.checked_add(n).and_then(|e| e.checked_add(2)) else {
            return Chunks::Invalid;
        };
        if b.len() < end {
            return Chunks::Incomplete;
        }
        if &b[end - 2..end] != b"\r\n" {
            return Chunks::Invalid;
        }
        out.extend_from_slice(&b[i..end - 2]);
        i = end;
    }
}

/// Sends `req` and `body` on a new plain connection to `addr` and reads the
/// response to its end (no pooling: for one-off requests such as the `http`
/// data source).
pub fn plain_request(
    addr: &str,
    req: &[u8],
    timeout: Duration,
    head_only: bool,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(req)?;
    Ok(read_response(&mut s, head_only)?.0)
}

/// The client: credentials for every request it sends (Basic, Bearer, a
/// client certificate) and how it verifies servers.
#[derive(Clone, Debug, Default)]
pub struct HttpClient {
    pub basic: Option<(String, String)>,
    pub bearer: Option<String>,
    pub ca_pem: Option<String>,
    /// PEM certificate chain and key.
    pub client_cert: Option<(String, String)>,
    pub skip_verify: bool,
}

/// TLS client configurations by the credentials they were built from: one
/// per client identity for the life of the process, so its session cache
/// lets later connections resume (a 1-RTT handshake, no certificate
/// chains again) instead of a full handshake per request.
type TlsKey = (Option<String>, Option<(String, String)>, bool);
static TLS_CONFIGS: LazyLock<Mutex<HashMap<TlsKey, Arc<rustls::ClientConfig>>>> =
    LazyLock::new(Default::default);

impl HttpClient {
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, BackendError> {
        let key = self.tls_key();
        if let Some(c) = TLS_CONFIGS.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(c);
        }
        let c = self.build_tls_config()?;
        if let Ok(mut m) = TLS_CONFIGS.lock() {
            m.insert(key, c.clone());
        }
        Ok(c)
    }

    fn build_tls_config(&self) -> Result<Arc<rustls::ClientConfig>, BackendError> {
        use rustls::pki_types::pem::PemObject as _;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| http_err(e.to_string()))?;
        if self.skip_verify {
            return Ok(Arc::new(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = &self.ca_pem {
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(c.map_err(|e| http_err(format!("client_ca_certificate_pem: {e}")))?)
                    .map_err(|e| http_err(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(http_err(
                "https needs client_ca_certificate_pem (keel has no system CA store offline), or skip_cert_verification = true",
            ));
        }
        let builder = builder.with_root_certificates(roots);
        Ok(Arc::new(match &self.client_cert {
            Some((cert, key)) => {
                let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| http_err(format!("client certificate: {e}")))?;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| http_err(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| http_err(format!("client certificate: {e}")))?
            }
            None => builder.with_no_client_auth(),
        }))
    }

    /// One request; returns status and body.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<(u16, Vec<u8>), BackendError> {
        self.request_accepting(method, url, body, content_type, None)
    }

    /// [`HttpClient::request`] with an `Accept` header (Kubernetes' `as=Table`).
    pub fn request_accepting(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        content_type: &str,
        accept: Option<&str>,
    ) -> Result<(u16, Vec<u8>), BackendError> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => return Err(http_err(format!("{url}: not an http(s) URL"))),
        };
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .trim_matches(['[', ']']);
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:{}", if tls { 443 } else { 80 })
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: keel\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some((u, p)) = &self.basic {
            req.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ));
        }
        if let Some(t) = &self.bearer {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(a) = accept {
            req.push_str(&format!("Accept: {a}\r\n"));
        }
        req.push_str("\r\n");
        let mut msg = req.into_bytes();
        msg.extend_from_slice(body);
        let io = |e: std::io::Error| http_err(format!("{method} {url}: {e}"));
        let key = PoolKey {
            addr: addr.clone(),
            host: host.to_string(),
            tls: tls.then(|| self.tls_key()),
        };
        let head_only = method.eq_ignore_ascii_case("HEAD");
        // A pooled connection first; if the server had closed it (nothing of
        // a response arrives), once more on a new connection.
        let (resp, ending, conn) = loop {
            let (mut conn, pooled) = match take_pooled(&key) {
                Some(c) => (c, true),
                None => (self.connect(&key, method, url)?, false),
            };
            let sent = conn.write_all(&msg).and_then(|()| conn.flush());
            match sent.and_then(|()| read_response(&mut conn, head_only)) {
                Ok((resp, ending)) => break (resp, ending, conn),
                Err(e) if pooled && stale(&e) => {}
                Err(e) => return Err(io(e)),
            }
        };
        if ending == Ending::KeepAlive {
            give_back(key, conn);
        }
        if resp.status == 401 || resp.status == 403 {
            return Err(http_err(format!(
                "HTTP remote state endpoint requires auth ({} from {url})",
                resp.status
            )));
        }
        Ok((resp.status, resp.body))
    }

    fn tls_key(&self) -> TlsKey {
        (
            self.ca_pem.clone(),
            self.client_cert.clone(),
            self.skip_verify,
        )
    }

    fn connect(&self, key: &PoolKey, method: &str, url: &str) -> Result<Conn, BackendError> {
        let tcp =
            TcpStream::connect(&key.addr).map_err(|e| http_err(format!("{method} {url}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_mins(1)));
        let _ = tcp.set_nodelay(true);
        if key.tls.is_none() {
            return Ok(Conn::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(key.host.clone())
            .map_err(|e| http_err(e.to_string()))?;
        let conn = rustls::ClientConnection::new(self.tls_config()?, name)
            .map_err(|e| http_err(e.to_string()))?;
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }
}

/// Whether a request on a pooled connection failed because the server had
/// closed it before reading it (so sending it again is safe).
fn stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
        || (e.kind() == UnexpectedEof && e.to_string() == "connection closed before a response")
}

/// Where a kept-alive connection goes back to: the server and the identity
/// it was opened with (`tls`: the TLS configuration's key, `None` for http).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: String,
    host: String,
    tls: Option<TlsKey>,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Idle connections per server; a few each, as a client rarely has more
/// than a few requests in flight to one server.
static POOL: LazyLock<Mutex<HashMap<PoolKey, Vec<Conn>>>> = LazyLock::new(Default::default);
const IDLE_PER_SERVER: usize = 4;

fn take_pooled(key: &PoolKey) -> Option<Conn> {
    POOL.lock().ok()?.get_mut(key)?.pop()
}

fn give_back(key: PoolKey, conn: Conn) {
    if let Ok(mut pool) = POOL.lock() {
        let idle = pool.entry(key).or_default();
        if idle.len() < IDLE_PER_SERVER {
            idle.push(conn);
        }
    }
}

/// `skip_cert_verification = true`: accepts any server certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn read(raw: &[u8]) -> std::io::Result<(Response, Ending)> {
        read_response(&mut &raw[..], false)
    }

    #[test]
    fn content_length_ends_the_body_and_keeps_the_connection() {
        let (r, e) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), e),
            (200, &b"hello"[..], Ending::KeepAlive)
        );
        let (_, e) =
            read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!(e, Ending::Closed);
        let err = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhi").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: v\r\n\r\n";
        let (r, e) = read(raw).unwrap();
        assert_eq!((r.body.as_slice(), e), (&b"hello!"[..], Ending::KeepAlive));
        // The old decoder returned what it had when the body was cut short.
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert!(read(cut).is_err());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(
            read(bad).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn unframed_bodies_end_with_the_connection() {
        let (r, e) = read(b"HTTP/1.0 200 OK\r\n\r\nall of it").unwrap();
        assert_eq!((r.body.as_slice(), e), (&b"all of it"[..], Ending::Closed));
        let (r, e) = read(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.body.len(), e), (0, Ending::KeepAlive));
        let err = read(b"").unwrap_err();
        assert!(stale(&err), "{err}");
    }

    /// A server answering keep-alive requests; `close_after_first` drops
    /// each connection after its first response without saying so, as a
    /// server whose idle timeout passed does.
    fn server(close_after_first: bool) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut n = 0;
                    loop {
                        let Ok(got) = conn.read(&mut buf[n..]) else {
                            return;
                        };
                        if got == 0 {
                            return;
                        }
                        n += got;
                        if !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            continue;
                        }
                        n = 0;
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                        );
                        if close_after_first {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[test]
    fn requests_to_one_server_share_a_connection() {
        let (addr, accepted) = server(false);
        let c = HttpClient::default();
        for _ in 0..3 {
            let (status, body) = c
                .request("GET", &format!("http://{addr}/x"), b"", "text/plain")
                .unwrap();
            assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_connection_the_server_closed_is_replaced() {
        let (addr, accepted) = server(true);
        let c = HttpClient::default();
        for _ in 0..3 {
            let (status, _) = c
                .request(
                    "PUT",
                    &format!("http://{addr}/x"),
                    b"{}",
                    "application/json",
                )
                .unwrap();
            assert_eq!(status, 200);
            // Let the server's close arrive before the next request.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_response_or_an_error(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read(&raw);
        }

        #[test]
        fn chunked_framing_round_trips(parts in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64), 0..8)) {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for p in &parts {
                raw.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
                raw.extend_from_slice(p);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            let (r, e) = read(&raw).unwrap();
            proptest::prop_assert_eq!(r.body, parts.concat());
            proptest::prop_assert_eq!(e, Ending::KeepAlive);
        }
    }
}
