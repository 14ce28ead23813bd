//! Terraform's `http` backend, client side: the state at `address` (GET,
//! POST with `?ID=` of the held lock), locks by `LOCK`/`UNLOCK` with
//! terraform's `LockInfo` (423 or 409 name the holder), HTTP Basic auth,
//! HTTPS verified against `client_ca_certificate_pem` (or not at all with
//! `skip_cert_verification`). A small synchronous HTTP/1.1 client over
//! rustls, because the engine does not run inside an async runtime.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keel_hcl::Value;

use crate::backend::{BackendError, LockInfo};
use crate::state::StateFile;

/// The http backend's settings (backend block, `-backend-config`, `TF_HTTP_*`).
#[derive(Clone, Debug, Default)]
pub struct HttpBackend {
    pub address: String,
    pub lock_address: Option<String>,
    pub unlock_address: Option<String>,
    pub update_method: String,
    pub lock_method: String,
    pub unlock_method: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<String>,
    pub skip_verify: bool,
}

fn http_err(msg: impl Into<String>) -> BackendError {
    BackendError::Http(msg.into())
}

impl HttpBackend {
    /// From the backend block's values, with `TF_HTTP_*` for what is unset.
    pub fn from_config(cfg: &BTreeMap<String, Value>) -> Result<HttpBackend, BackendError> {
        let get = |k: &str| -> Option<String> {
            cfg.get(k)
                .and_then(|v| v.as_str().map(str::to_string))
                .or_else(|| std::env::var(format!("TF_HTTP_{}", k.to_ascii_uppercase())).ok())
        };
        let address = get("address")
            .ok_or_else(|| http_err("the http backend needs \"address\" (or TF_HTTP_ADDRESS)"))?;
        Ok(HttpBackend {
            address,
            lock_address: get("lock_address"),
            unlock_address: get("unlock_address"),
            update_method: get("update_method").unwrap_or_else(|| "POST".into()),
            lock_method: get("lock_method").unwrap_or_else(|| "LOCK".into()),
            unlock_method: get("unlock_method").unwrap_or_else(|| "UNLOCK".into()),
            username: get("username"),
            password: get("password"),
            ca_pem: get("client_ca_certificate_pem"),
            skip_verify: cfg
                .get("skip_cert_verification")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || get("skip_cert_verification").is_some_and(|v| v == "true"),
        })
    }

    fn client(&self) -> HttpClient {
        HttpClient {
            basic: self.username.clone().zip(self.password.clone()),
            bearer: None,
            ca_pem: self.ca_pem.clone(),
            client_cert: None,
            skip_verify: self.skip_verify,
        }
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), BackendError> {
        self.client().request(method, url, body, "application/json")
    }

    /// The state (empty when there is none).
    pub fn read(&self) -> Result<StateFile, BackendError> {
        let (status, body) = self.request("GET", &self.address, &[])?;
        match status {
            200 => Ok(StateFile::parse(
                std::path::Path::new(&self.address),
                &String::from_utf8_lossy(&body),
            )?
            .unwrap_or_default()),
            204 | 404 => Ok(StateFile::new()),
            s => Err(http_err(format!(
                "HTTP error {s} reading state from {}",
                self.address
            ))),
        }
    }

    pub fn write(&self, s: &StateFile, lock_id: Option<&str>) -> Result<(), BackendError> {
        let url = match lock_id {
            Some(id) => format!(
                "{}{}ID={id}",
                self.address,
                if self.address.contains('?') { '&' } else { '?' }
            ),
            None => self.address.clone(),
        };
        let (status, body) = self.request(&self.update_method, &url, s.to_json().as_bytes())?;
        match status {
            200..=299 => Ok(()),
            409 | 423 => Err(BackendError::Locked(serde_json::from_slice(&body).ok())),
            s => Err(http_err(format!(
                "HTTP error {s} writing state to {}",
                self.address
            ))),
        }
    }

    /// Takes the lock, retrying until `timeout`.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<HttpLock, BackendError> {
        let Some(url) = self.lock_address.clone() else {
            return Ok(HttpLock {
                backend: self.clone(),
                info: None,
            });
        };
        let info = LockInfo::new(operation, "");
        let start = Instant::now();
        loop {
            let (status, body) = self.request(
                &self.lock_method,
                &url,
                serde_json::to_string(&info).unwrap_or_default().as_bytes(),
            )?;
            match status {
                200..=299 => {
                    return Ok(HttpLock {
                        backend: self.clone(),
                        info: Some(info),
                    });
                }
                409 | 423 if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                409 | 423 => return Err(BackendError::Locked(serde_json::from_slice(&body).ok())),
                s => return Err(http_err(format!("HTTP error {s} locking state at {url}"))),
            }
        }
    }

    /// `force-unlock ID`.
    pub fn force_unlock(&self, id: &str) -> Result<(), BackendError> {
        let url = self
            .unlock_address
            .clone()
            .ok_or_else(|| http_err("the http backend has no unlock_address"))?;
        let body = serde_json::json!({ "ID": id }).to_string();
        let (status, held) = self.request(&self.unlock_method, &url, body.as_bytes())?;
        match status {
            200..=299 => Ok(()),
            409 | 423 => Err(BackendError::WrongLockId {
                given: id.into(),
                held: serde_json::from_slice::<LockInfo>(&held)
                    .map(|i| i.id)
                    .unwrap_or_default(),
            }),
            s => Err(http_err(format!("HTTP error {s} unlocking state at {url}"))),
        }
    }
}

/// A small synchronous HTTP/1.1 client (one request a connection) with the
/// credentials remote state servers take: Basic, Bearer, client certificates.
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
static TLS_CONFIGS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<TlsKey, Arc<rustls::ClientConfig>>>,
> = std::sync::LazyLock::new(Default::default);

impl HttpClient {
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, BackendError> {
        let key = (
            self.ca_pem.clone(),
            self.client_cert.clone(),
            self.skip_verify,
        );
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
        let tcp =
            TcpStream::connect(&addr).map_err(|e| http_err(format!("{method} {url}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_mins(1)));
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nUser-Agent: keel\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
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
        let mut raw = Vec::new();
        let io = |e: std::io::Error| http_err(format!("{method} {url}: {e}"));
        if tls {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| http_err(e.to_string()))?;
            let conn = rustls::ClientConnection::new(self.tls_config()?, name)
                .map_err(|e| http_err(e.to_string()))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(req.as_bytes()).map_err(io)?;
            s.write_all(body).map_err(io)?;
            s.flush().map_err(io)?;
            match s.read_to_end(&mut raw) {
                Ok(_) => {}
                // Servers that close without close_notify: keep what arrived.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => return Err(io(e)),
            }
        } else {
            let mut s = tcp;
            s.write_all(req.as_bytes()).map_err(io)?;
            s.write_all(body).map_err(io)?;
            s.read_to_end(&mut raw).map_err(io)?;
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| http_err(format!("{method} {url}: malformed response")))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| http_err("malformed status line"))?;
        let mut data = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            data = dechunk(&data);
        }
        if status == 401 || status == 403 {
            return Err(http_err(format!(
                "HTTP remote state endpoint requires auth ({status} from {url})"
            )));
        }
        Ok((status, data))
    }
}

/// A held http lock; dropping it unlocks.
#[derive(Debug)]
pub struct HttpLock {
    backend: HttpBackend,
    info: Option<LockInfo>,
}

impl HttpLock {
    pub fn read(&self) -> Result<StateFile, BackendError> {
        self.backend.read()
    }

    pub fn write(&self, s: &mut StateFile) -> Result<(), BackendError> {
        s.serial += 1;
        self.backend
            .write(s, self.info.as_ref().map(|i| i.id.as_str()))
    }
}

impl Drop for HttpLock {
    fn drop(&mut self) {
        if let (Some(info), Some(url)) = (&self.info, &self.backend.unlock_address) {
            let _ = self.backend.request(
                &self.backend.unlock_method,
                url,
                serde_json::to_string(info).unwrap_or_default().as_bytes(),
            );
        }
    }
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") {
        let n =
            usize::from_str_radix(String::from_utf8_lossy(&b[i..i + nl]).trim(), 16).unwrap_or(0);
        i += nl + 2;
        if n == 0 || i + n > b.len() {
            break;
        }
        out.extend_from_slice(&b[i..i + n]);
        i += n + 2;
    }
    out
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
