//! The server's identity and credentials under its state directory: a CA and
//! a serving certificate (generated on first start), bearer tokens (admin and
//! read-only) and the kubeconfig that points kubectl at the server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::ApiError;

/// Files of one server's state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Self {
        Paths {
            dir: dir.to_path_buf(),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("tls/ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("tls/server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("tls/server.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("tls/admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("tls/admin.key")
    }
    /// The key service account tokens are signed with.
    /// The client certificate the server presents to agents (the
    /// apiserver's `--kubelet-client-certificate`).
    pub fn kubelet_client_cert(&self) -> PathBuf {
        self.dir.join("tls/kubelet-client.crt")
    }
    pub fn kubelet_client_key(&self) -> PathBuf {
        self.dir.join("tls/kubelet-client.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("tls/sa.key")
    }
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }
    pub fn secrets_key(&self) -> PathBuf {
        self.dir.join("secrets.key")
    }
    pub fn database(&self) -> PathBuf {
        self.dir.join("state.db")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |source| ApiError::Files {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `data` to `path` atomically (temp file, fsync, rename), mode `mode`.
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), ApiError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn cert_err(e: rcgen::Error) -> ApiError {
    ApiError::Certificate(e.to_string())
}

/// The CA's parameters; the same on every start, so a CA key read back from
/// disk issues certificates that chain to the CA certificate written first.
fn ca_params() -> Result<CertificateParams, ApiError> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "keel-server-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

/// A client certificate for `cn` (and group `org`) signed by the CA,
/// written to `cert` and `key` unless both exist.
fn ensure_client_cert(
    paths: &Paths,
    cn: &str,
    org: Option<&str>,
    cert: &Path,
    key: &Path,
) -> Result<(), ApiError> {
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let ca_pem = std::fs::read_to_string(paths.ca_key()).map_err(io(&paths.ca_key()))?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let k = KeyPair::generate().map_err(cert_err)?;
    let c = p.signed_by(&k, &issuer).map_err(cert_err)?;
    write_private(key, k.serialize_pem().as_bytes(), 0o600)?;
    write_private(cert, c.pem().as_bytes(), 0o644)
}

/// The admin's client certificate (CN `keel:admin`, O `system:masters`),
/// signed by the CA, unless it exists.
pub fn ensure_admin_cert(paths: &Paths) -> Result<(), ApiError> {
    ensure_client_cert(
        paths,
        crate::auth::ADMIN_USER,
        Some(crate::auth::MASTERS),
        &paths.admin_cert(),
        &paths.admin_key(),
    )
}

/// The CN of the server's client certificate for agents; keel-agent's
/// node endpoint serves only it (`keel_agent::streams::APISERVER_CLIENT`).
pub const KUBELET_CLIENT_CN: &str = "keel:kube-apiserver-kubelet-client";

/// The server's client certificate for agents (CN [`KUBELET_CLIENT_CN`],
/// no group: it authenticates to agents only), unless it exists.
pub fn ensure_kubelet_client_cert(paths: &Paths) -> Result<(), ApiError> {
    ensure_client_cert(
        paths,
        KUBELET_CLIENT_CN,
        None,
        &paths.kubelet_client_cert(),
        &paths.kubelet_client_key(),
    )
}

/// The user a verified client certificate names: CN is the user, each O a
/// group (as the apiserver's x509 authenticator reads them).
pub fn certificate_user(der: &[u8]) -> Option<crate::auth::User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push(crate::auth::AUTHENTICATED.into());
    Some(crate::auth::User {
        name,
        uid: String::new(),
        groups,
    })
}

/// [`certificate_user`] of the first certificate in `pem`.
pub fn pem_user(pem: &str) -> Option<crate::auth::User> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    certificate_user(&der)
}

/// Creates the CA and serving certificate unless they exist. The serving
/// certificate names localhost, 127.0.0.1, `::1`, this host and `extra_sans`.
pub fn ensure_certificates(paths: &Paths, extra_sans: &[String]) -> Result<(), ApiError> {
    if paths.server_cert().exists() && paths.server_key().exists() && paths.ca_cert().exists() {
        return Ok(());
    }
    // A CA already here (copied from the first server of several sharing
    // one etcd) signs this server's certificate; only a missing one is made.
    let (ca_key, ca_pem, new_ca) = if paths.ca_cert().exists() && paths.ca_key().exists() {
        let key_pem = std::fs::read_to_string(paths.ca_key()).map_err(io(&paths.ca_key()))?;
        let cert_pem = std::fs::read_to_string(paths.ca_cert()).map_err(io(&paths.ca_cert()))?;
        (
            KeyPair::from_pem(&key_pem).map_err(cert_err)?,
            cert_pem,
            false,
        )
    } else {
        let key = KeyPair::generate().map_err(cert_err)?;
        let pem = ca_params()?.self_signed(&key).map_err(cert_err)?.pem();
        (key, pem, true)
    };
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim().to_string();
        if !h.is_empty() && !sans.contains(&h) {
            sans.push(h);
        }
    }
    for s in extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let mut sp = CertificateParams::new(sans).map_err(cert_err)?;
    sp.distinguished_name
        .push(DnType::CommonName, "keel-server");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_key = KeyPair::generate().map_err(cert_err)?;
    let server_cert = sp.signed_by(&server_key, &issuer).map_err(cert_err)?;
    if new_ca {
        write_private(&paths.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&paths.ca_cert(), ca_pem.as_bytes(), 0o644)?;
    }
    write_private(
        &paths.server_key(),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    // The chain carries the CA too, so clients that pin only the leaf work.
    let chain = format!("{}{}", server_cert.pem(), ca_pem);
    write_private(&paths.server_cert(), chain.as_bytes(), 0o644)?;
    Ok(())
}

/// rustls configuration serving the certificate under `paths`.
pub fn tls_config(paths: &Paths) -> Result<rustls::ServerConfig, ApiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(paths.server_cert())
        .map_err(|e| ApiError::Certificate(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::Certificate(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(paths.server_key())
        .map_err(|e| ApiError::Certificate(e.to_string()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are optional (tokens are the other way in); one
    // that is presented must chain to the CA.
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(paths.ca_cert())
        .map_err(|e| ApiError::Certificate(e.to_string()))?
    {
        roots
            .add(ca.map_err(|e| ApiError::Certificate(e.to_string()))?)
            .map_err(|e| ApiError::Certificate(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| ApiError::Certificate(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Certificate(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| ApiError::Certificate(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    ReadOnly,
    /// A node's join token (`<id>.<secret>`): authenticates as
    /// `system:bootstrap:<id>` in `system:bootstrappers`, which may only ask
    /// for node credentials (a CSR), as kubeadm's bootstrap tokens.
    Join,
}

fn random_token() -> Result<String, ApiError> {
    let mut b = [0u8; 24];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ApiError::Certificate("no randomness".into()))?;
    Ok(b.iter().fold(String::new(), |mut acc, x| {
        let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{x:02x}"));
        acc
    }))
}

/// Tokens file: one `<token> <admin|read-only>` per line.
pub fn read_tokens(paths: &Paths) -> Result<Vec<(String, Role)>, ApiError> {
    let text = match std::fs::read_to_string(paths.tokens()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&paths.tokens())(e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (t, r) = l.trim().split_once(' ')?;
            let role = match r.trim() {
                "admin" => Role::Admin,
                "read-only" => Role::ReadOnly,
                "join" => Role::Join,
                _ => return None,
            };
            Some((t.to_string(), role))
        })
        .collect())
}

/// Adds a new token with `role`; returns it.
pub fn create_token(paths: &Paths, role: Role) -> Result<String, ApiError> {
    let mut tokens = read_tokens(paths)?;
    let t = if role == Role::Join {
        // Bootstrap token shape: 6 and 16 characters of [a-z0-9].
        let r = random_token()?;
        format!("{}.{}", &r[..6], &r[6..22])
    } else {
        random_token()?
    };
    tokens.push((t.clone(), role));
    let mut text = String::new();
    for (t, r) in &tokens {
        let role = match r {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
            Role::Join => "join",
        };
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{t} {role}\n"));
    }
    write_private(&paths.tokens(), text.as_bytes(), 0o600)?;
    Ok(t)
}

/// The sha256 (hex) of the CA certificate's DER: what a join token pins.
pub fn ca_hash(paths: &Paths) -> Result<String, ApiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(paths.ca_cert())
        .map_err(|e| ApiError::Certificate(e.to_string()))?;
    Ok(hex(
        ring::digest::digest(&ring::digest::SHA256, &der).as_ref()
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut acc, x| {
        let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{x:02x}"));
        acc
    })
}

/// A new join token for `keel agent --token`: `K10<CA sha256>::<id>.<secret>`
/// (k3s's format: the agent trusts the server whose CA has that hash).
pub fn create_join_token(paths: &Paths) -> Result<String, ApiError> {
    let hash = ca_hash(paths)?;
    let t = create_token(paths, Role::Join)?;
    Ok(format!("K10{hash}::{t}"))
}

/// Signs a node's client certificate request (PEM): the subject must be
/// `CN=system:node:<name>, O=system:nodes`; the certificate is valid for a
/// year and for client authentication only. Returns the certificate (PEM).
pub fn sign_node_csr(paths: &Paths, csr_pem: &str) -> Result<String, ApiError> {
    let mut req = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(cert_err)?;
    let dn = &req.params.distinguished_name;
    let text = |t: &DnType| match dn.get(t) {
        Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
        Some(rcgen::DnValue::PrintableString(s)) => s.as_str().to_string(),
        _ => String::new(),
    };
    let cn = text(&DnType::CommonName);
    let org = text(&DnType::OrganizationName);
    let name = cn.strip_prefix("system:node:").unwrap_or_default();
    if name.is_empty() || org != "system:nodes" {
        return Err(ApiError::Certificate(format!(
            "a node CSR names CN=system:node:<name>, O=system:nodes, not CN={cn:?} O={org:?}"
        )));
    }
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    p.distinguished_name.push(DnType::CommonName, cn.as_str());
    p.distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let now = std::time::SystemTime::now();
    p.not_before = (now - std::time::Duration::from_mins(5)).into();
    p.not_after = (now + std::time::Duration::from_hours(365 * 24)).into();
    req.params = p;
    let ca_pem = std::fs::read_to_string(paths.ca_key()).map_err(io(&paths.ca_key()))?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params()?, &ca_key);
    Ok(req.signed_by(&issuer).map_err(cert_err)?.pem())
}

/// A client certificate and key for node `name` (the server's own agent,
/// which needs no CSR: the server holds the CA). Returns (cert, key) PEM.
pub fn issue_node_cert(paths: &Paths, name: &str) -> Result<(String, String), ApiError> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    p.distinguished_name
        .push(DnType::CommonName, format!("system:node:{name}"));
    p.distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    let csr = p.serialize_request(&key).map_err(cert_err)?;
    let pem = csr.pem().map_err(cert_err)?;
    Ok((sign_node_csr(paths, &pem)?, key.serialize_pem()))
}

/// The admin token, created on first start.
pub fn ensure_admin_token(paths: &Paths) -> Result<String, ApiError> {
    if let Some((t, _)) = read_tokens(paths)?
        .into_iter()
        .find(|(_, r)| *r == Role::Admin)
    {
        return Ok(t);
    }
    create_token(paths, Role::Admin)
}

/// A kubeconfig for `server` (an https URL) authenticating with the admin's
/// client certificate.
pub fn kubeconfig(paths: &Paths, server: &str) -> Result<String, ApiError> {
    let file = |p: PathBuf| -> Result<String, ApiError> {
        let b = std::fs::read(&p).map_err(io(&p))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(b))
    };
    let ca = file(paths.ca_cert())?;
    let cert = file(paths.admin_cert())?;
    let key = file(paths.admin_key())?;
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: keel
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: keel-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: keel
  context:
    cluster: keel
    user: keel-admin
    namespace: default
current-context: keel
preferences: {{}}
"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn certificates_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::new(dir.path());
        ensure_certificates(&p, &["10.1.2.3".into()]).unwrap();
        let first = std::fs::read(p.server_cert()).unwrap();
        ensure_certificates(&p, &[]).unwrap();
        assert_eq!(
            first,
            std::fs::read(p.server_cert()).unwrap(),
            "kept on restart"
        );
        tls_config(&p).unwrap();
        let admin = ensure_admin_token(&p).unwrap();
        assert_eq!(ensure_admin_token(&p).unwrap(), admin);
        let ro = create_token(&p, Role::ReadOnly).unwrap();
        let tokens = read_tokens(&p).unwrap();
        assert!(tokens.contains(&(admin.clone(), Role::Admin)));
        assert!(tokens.contains(&(ro, Role::ReadOnly)));
        ensure_admin_cert(&p).unwrap();
        let kc = kubeconfig(&p, "https://127.0.0.1:6443").unwrap();
        assert!(kc.contains("certificate-authority-data: ") && kc.contains("client-key-data: "));
        let pem = std::fs::read_to_string(p.admin_cert()).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let user = certificate_user(&der).unwrap();
        assert_eq!(user.name, "keel:admin");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
    }

    #[test]
    fn node_certificates_and_join_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::new(dir.path());
        ensure_certificates(&p, &[]).unwrap();
        let (cert, _key) = issue_node_cert(&p, "n1").unwrap();
        let user = pem_user(&cert).unwrap();
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, ["system:nodes", "system:authenticated"]);
        // Only node identities are signed.
        let key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.distinguished_name.push(DnType::CommonName, "keel:admin");
        cp.distinguished_name
            .push(DnType::OrganizationName, crate::auth::MASTERS);
        let csr = cp.serialize_request(&key).unwrap().pem().unwrap();
        assert!(sign_node_csr(&p, &csr).is_err());
        let join = create_join_token(&p).unwrap();
        let (hash, token) = join.strip_prefix("K10").unwrap().split_once("::").unwrap();
        assert_eq!(hash, ca_hash(&p).unwrap());
        assert_eq!(token.len(), 23);
        assert!(
            read_tokens(&p)
                .unwrap()
                .contains(&(token.to_string(), Role::Join))
        );
    }

    /// Regression: a second server given the first one's CA (several
    /// servers on one etcd) made a CA of its own, so the first server's
    /// kubeconfigs and node certificates were not trusted by it.
    #[test]
    fn a_copied_ca_signs_the_new_serving_certificate() {
        let first = tempfile::tempdir().unwrap();
        let a = Paths::new(first.path());
        ensure_certificates(&a, &[]).unwrap();
        let second = tempfile::tempdir().unwrap();
        let b = Paths::new(second.path());
        std::fs::create_dir_all(b.dir.join("tls")).unwrap();
        std::fs::copy(a.ca_cert(), b.ca_cert()).unwrap();
        std::fs::copy(a.ca_key(), b.ca_key()).unwrap();
        ensure_certificates(&b, &[]).unwrap();
        assert_eq!(
            std::fs::read(a.ca_cert()).unwrap(),
            std::fs::read(b.ca_cert()).unwrap()
        );
        let chain = std::fs::read_to_string(b.server_cert()).unwrap();
        let ca = std::fs::read_to_string(a.ca_cert()).unwrap();
        assert!(chain.ends_with(&ca), "the chain ends with the shared CA");
        // The serving certificate verifies against the shared CA.
        let leaf = rustls::pki_types::CertificateDer::from_pem_slice(chain.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            rustls::crypto::ring::default_provider().into(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &leaf,
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
    }
}
