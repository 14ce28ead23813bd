//! Credentials of a node: the server's CA pinned by the join token's hash,
//! then a client certificate of the node's own through a
//! `CertificateSigningRequest` (kubeadm's TLS bootstrap), kept under
//! `<root>/agent/` and reused on the next start.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Api;
use kube::api::PostParams;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{AgentError, Config, Credentials, io_err};

const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// A join token: the CA's sha256 and the bootstrap token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub token: String,
}

/// Parses `K10<64 hex>::<6>.<16>`.
pub fn parse_token(s: &str) -> Result<JoinToken, AgentError> {
    let bad = |why: &str| {
        AgentError::Token(format!(
            "{why} (expected K10<hash>::<id>.<secret> from `keel server token create --join`)"
        ))
    };
    let rest = s
        .trim()
        .strip_prefix("K10")
        .ok_or_else(|| bad("no K10 prefix"))?;
    let (hash, token) = rest.split_once("::").ok_or_else(|| bad("no ::"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the CA hash is not 64 hex digits"));
    }
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match token.split_once('.') {
        Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            token: token.to_string(),
        }),
        _ => Err(bad("the token is not <6 chars>.<16 chars>")),
    }
}

/// A client of the API server as this node, joining first when needed.
pub async fn client(cfg: &Config) -> Result<kube::Client, AgentError> {
    let dir = cfg.root.join("agent");
    std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    match &cfg.credentials {
        Credentials::Issued {
            ca_pem,
            cert_pem,
            key_pem,
        } => {
            save(&dir, &cfg.server, ca_pem, cert_pem, key_pem)?;
        }
        Credentials::JoinToken(t) => {
            let t = parse_token(t)?;
            let saved = std::fs::read_to_string(dir.join("server")).unwrap_or_default();
            let have = dir.join("node.crt").exists()
                && saved.trim() == cfg.server
                && std::fs::read_to_string(dir.join("ca.hash")).unwrap_or_default() == t.ca_hash;
            if !have {
                let ca_pem = fetch_ca(&cfg.server, &t.ca_hash).await?;
                let boot =
                    client_from(&kubeconfig(&cfg.server, &ca_pem, User::Token(&t.token))).await?;
                let (cert, key) = request_certificate(&boot, &cfg.name).await?;
                save(&dir, &cfg.server, &ca_pem, &cert, &key)?;
                write(&dir.join("ca.hash"), t.ca_hash.as_bytes(), 0o644)?;
            }
        }
    }
    let kc = std::fs::read_to_string(dir.join("kubeconfig"))
        .map_err(io_err("read the agent's kubeconfig"))?;
    client_from(&kc).await
}

fn save(dir: &Path, server: &str, ca: &str, cert: &str, key: &str) -> Result<(), AgentError> {
    write(&dir.join("ca.crt"), ca.as_bytes(), 0o644)?;
    write(&dir.join("node.crt"), cert.as_bytes(), 0o644)?;
    write(&dir.join("node.key"), key.as_bytes(), 0o600)?;
    write(&dir.join("server"), server.as_bytes(), 0o644)?;
    let kc = kubeconfig(server, ca, User::Cert { cert, key });
    write(&dir.join("kubeconfig"), kc.as_bytes(), 0o600)
}

/// temp → fsync → rename, mode `mode`.
fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let what = || format!("write {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(what()))?;
    f.write_all(data).map_err(io_err(what()))?;
    f.sync_all().map_err(io_err(what()))?;
    std::fs::rename(&tmp, path).map_err(io_err(what()))
}

enum User<'a> {
    Token(&'a str),
    Cert { cert: &'a str, key: &'a str },
}

fn kubeconfig(server: &str, ca_pem: &str, user: User<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let user = match user {
        User::Token(t) => format!("    token: {t}\n"),
        User::Cert { cert, key } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert),
            b64(key)
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n{user}contexts:\n- name: keel\n  context:\n    cluster: keel\n    user: node\ncurrent-context: keel\n",
        b64(ca_pem)
    )
}

pub(crate) async fn client_from(kubeconfig: &str) -> Result<kube::Client, AgentError> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    Ok(kube::Client::try_from(cfg)?)
}

/// Asks for a node client certificate; returns (certificate, key) PEM.
async fn request_certificate(
    boot: &kube::Client,
    node: &str,
) -> Result<(String, String), AgentError> {
    let cred = |e: rcgen::Error| AgentError::Credentials(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(cred)?;
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cred)?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr = p
        .serialize_request(&key)
        .map_err(cred)?
        .pem()
        .map_err(cred)?;
    let api: Api<CertificateSigningRequest> = Api::all(boot.clone());
    let obj = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &obj).await?;
    let name = created.metadata.name.unwrap_or_default();
    for _ in 0..600 {
        let c = api.get(&name).await?;
        if let Some(cert) = c.status.as_ref().and_then(|s| s.certificate.as_ref()) {
            let cert = String::from_utf8(cert.0.clone())
                .map_err(|e| AgentError::Credentials(e.to_string()))?;
            return Ok((cert, key.serialize_pem()));
        }
        let denied = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Denied" || c.type_ == "Failed");
        if let Some(d) = denied {
            return Err(AgentError::Credentials(format!(
                "certificate request {name} {}: {}",
                d.type_.to_lowercase(),
                d.message.unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(AgentError::Credentials(format!(
        "certificate request {name} was not signed within 2 minutes"
    )))
}

/// Records the chain the server presents and accepts it: only used to read
/// the chain, whose CA must then match the pinned hash. Nothing is sent
/// over that connection.
#[derive(Debug)]
struct Capture {
    chain: Arc<Mutex<Vec<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.chain.lock() {
            c.push(end_entity.to_vec());
            c.extend(intermediates.iter().map(|d| d.to_vec()));
        }
        Ok(ServerCertVerified::assertion())
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

/// A TLS client that accepts any server certificate: what the kubelet's
/// HTTPS probes use (`InsecureSkipVerify`: a probe checks that the pod
/// answers, not who it is).
pub(crate) fn any_server_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Capture {
        chain: Arc::new(Mutex::new(Vec::new())),
        provider: provider.clone(),
    });
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

/// `host:port` of an `https://` URL.
pub fn host_port(server: &str) -> Result<(String, u16), AgentError> {
    let bad = || AgentError::Token(format!("--server {server}: expected https://HOST:PORT"));
    let rest = server.strip_prefix("https://").ok_or_else(bad)?;
    let hp = rest.split('/').next().unwrap_or_default();
    let (host, port) = match hp.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (hp, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The server's CA (PEM): the certificate of the presented chain whose
/// sha256 is `hash`.
async fn fetch_ca(server: &str, hash: &str) -> Result<String, AgentError> {
    let err = |why: String| AgentError::Ca {
        server: server.to_string(),
        why,
    };
    let (host, port) = host_port(server)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(Capture {
        chain: chain.clone(),
        provider: provider.clone(),
    });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| err(e.to_string()))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| err(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| err(e.to_string()))?;
    let chain = chain.lock().map(|c| c.clone()).unwrap_or_default();
    let ca = chain
        .iter()
        .find(|der| hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()) == hash)
        .ok_or_else(|| {
            err("no certificate the server presents has the join token's CA hash: the token is for another server".into())
        })?;
    Ok(pem("CERTIFICATE", ca))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut acc, x| {
        let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{x:02x}"));
        acc
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    use std::fmt::Write;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens() {
        let h = "a".repeat(64);
        let t = parse_token(&format!("K10{h}::abcdef.0123456789abcdef")).unwrap();
        assert_eq!(t.token, "abcdef.0123456789abcdef");
        assert!(parse_token("abcdef.0123456789abcdef").is_err());
        assert!(parse_token(&format!("K10{h}::abc.0123456789abcdef")).is_err());
        assert!(parse_token("K10abc::abcdef.0123456789abcdef").is_err());
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            host_port("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(host_port("https://h").unwrap(), ("h".into(), 443));
        assert!(host_port("http://h:1").is_err());
    }
}
