//! Certificates by SNI: the `kubernetes.io/tls` Secrets Ingresses and
//! Gateways name, chosen per handshake by server name (exact, then the
//! `*.` wildcard of its parent); clients without a match get a self-signed
//! fallback (ingress-nginx's "Fake Certificate").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::GatewayError;
use crate::build::TlsRef;

/// Loads a certificate chain and key from PEM.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, GatewayError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::Tls(format!("tls.crt: {e}")))?;
    if certs.is_empty() {
        return Err(GatewayError::Tls("tls.crt: no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| GatewayError::Tls(format!("tls.key: {e}")))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| GatewayError::Tls(format!("tls.key: {e}")))?;
    Ok(CertifiedKey::new(certs, key))
}

/// The fallback certificate (self-signed, made at start).
pub fn fallback() -> Result<CertifiedKey, GatewayError> {
    let key = rcgen::KeyPair::generate().map_err(|e| GatewayError::Tls(e.to_string()))?;
    let mut p = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        "keel Ingress Controller Fake Certificate",
    );
    let cert = p
        .self_signed(&key)
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// Certificates by host, swapped whole when Secrets or routes change.
#[derive(Debug)]
pub struct Certs {
    by_host: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    fallback: Arc<CertifiedKey>,
}

impl Certs {
    pub fn new(fallback: CertifiedKey) -> Self {
        Certs {
            by_host: RwLock::default(),
            fallback: Arc::new(fallback),
        }
    }

    /// Rebuilds from the references and the Secrets (by `(ns, name)`); a
    /// host named twice keeps its first (oldest Ingress's) certificate.
    pub fn update(&self, refs: &[TlsRef], secrets: &HashMap<(String, String), Arc<Secret>>) {
        let mut map = HashMap::new();
        for r in refs {
            let Some(s) = secrets.get(&(r.namespace.clone(), r.secret.clone())) else {
                tracing::debug!(ns = r.namespace, secret = r.secret, "TLS secret not found");
                continue;
            };
            let data = s.data.as_ref();
            let (Some(c), Some(k)) = (
                data.and_then(|d| d.get("tls.crt")),
                data.and_then(|d| d.get("tls.key")),
            ) else {
                continue;
            };
            match certified_key(&c.0, &k.0) {
                Ok(ck) => {
                    let ck = Arc::new(ck);
                    for h in &r.hosts {
                        map.entry(h.to_ascii_lowercase())
                            .or_insert_with(|| ck.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(ns = r.namespace, secret = r.secret, error = %e, "TLS secret not usable");
                }
            }
        }
        *self
            .by_host
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(map);
    }

    /// The certificate for a server name.
    pub fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let map = self
            .by_host
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        sni.map(str::to_ascii_lowercase)
            .and_then(|h| {
                map.get(&h).cloned().or_else(|| {
                    let (_, rest) = h.split_once('.')?;
                    map.get(&format!("*.{rest}")).cloned()
                })
            })
            .unwrap_or_else(|| self.fallback.clone())
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}
