//! `ServiceAccount` tokens as Kubernetes issues them: JWTs (ES256, the key
//! under the state directory, published as a JWKS at `/openid/v1/jwks` with
//! the OIDC discovery document at `/.well-known/openid-configuration`), made
//! by `TokenRequest` (`kubectl create token`: audiences, expiry, binding to a
//! Pod, Secret or Node) and accepted as bearer tokens while the token is
//! unexpired, meant for this server's audience, and the service account (and
//! the object it is bound to) still exist with the same uid.

use std::path::Path;

use base64::Engine;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::ApiError;

/// The issuer (`iss`) of the tokens, and the audience the API accepts.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Shortest and default token lifetimes, as Kubernetes validates them.
pub const MIN_EXPIRATION: i64 = 600;
pub const DEFAULT_EXPIRATION: i64 = 3600;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The signing key.
pub struct Keys {
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` before the point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Keys {
    /// Loads the PKCS#8 key at `path`, creating it (0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Keys, ApiError> {
        let rng = ring::rand::SystemRandom::new();
        let der = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map_err(|_| {
                            ApiError::Certificate("generate the service account key".into())
                        })?;
                crate::pki::write_private(path, doc.as_ref(), 0o600)?;
                doc.as_ref().to_vec()
            }
            Err(source) => {
                return Err(ApiError::Files {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map_err(|e| {
                    ApiError::Certificate(format!("service account key {}: {e}", path.display()))
                })?;
        // Kubernetes' key id: the SHA-256 of the DER public key, base64url.
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let kid = b64(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
        Ok(Keys { pair, kid })
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap_or_default()),
            b64(&serde_json::to_vec(claims).unwrap_or_default())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self
            .pair
            .sign(&rng, input.as_bytes())
            .map(|s| b64(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{sig}")
    }

    /// The claims of a token this key signed; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let (header, claims) = input.split_once('.')?;
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        };
        let header: Value = serde_json::from_slice(&dec(header)?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.pair.public_key().as_ref(),
        );
        public.verify(input.as_bytes(), &dec(sig)?).ok()?;
        serde_json::from_slice(&dec(claims)?).ok()
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        }]})
    }
}

/// `/.well-known/openid-configuration`.
pub fn openid_configuration() -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// What a token is bound to besides its service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// `pod`, `secret` or `node`.
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
}

/// The claims of a new token (Kubernetes' layout).
pub fn claims(
    ns: &str,
    sa: &str,
    sa_uid: &str,
    audiences: &[String],
    now: i64,
    expires_in: i64,
    bound: Option<&Bound>,
) -> Value {
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": sa, "uid": sa_uid}});
    if let Some(b) = bound {
        k8s[b.kind] = json!({"name": b.name, "uid": b.uid});
    }
    let mut jti = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti);
    json!({
        "aud": audiences,
        "exp": now + expires_in,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "jti": b64(&jti),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    })
}

/// Why verified claims are not acceptable now for `audiences` (empty: the
/// API's own), or `None` when they are.
pub fn refuse(claims: &Value, now: i64, audiences: &[String]) -> Option<String> {
    if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return Some("token issued by another issuer".into());
    }
    let n = |k: &str| claims.get(k).and_then(Value::as_i64);
    if n("exp").is_none_or(|e| now >= e) {
        return Some("token has expired".into());
    }
    if n("nbf").is_some_and(|b| now + 60 < b) {
        return Some("token is not valid yet".into());
    }
    let want: Vec<String> = if audiences.is_empty() {
        vec![ISSUER.to_string()]
    } else {
        audiences.to_vec()
    };
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    if !aud.iter().any(|a| want.contains(a)) {
        return Some("token audiences do not match the audiences this server accepts".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_when_fresh_signed_and_for_us() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(&dir.path().join("sa.key")).unwrap();
        let again = Keys::load_or_create(&dir.path().join("sa.key")).unwrap();
        assert_eq!(keys.kid, again.kid, "the key survives restarts");
        let now = 1_700_000_000;
        let c = claims("ns", "bot", "u1", &[ISSUER.to_string()], now, 3600, None);
        let t = keys.sign(&c);
        let got = keys.verify(&t).unwrap();
        assert_eq!(got["sub"], "system:serviceaccount:ns:bot");
        assert_eq!(refuse(&got, now + 10, &[]), None);
        // Expired.
        assert_eq!(
            refuse(&got, now + 3600, &[]).as_deref(),
            Some("token has expired")
        );
        // Another audience.
        let other = keys
            .verify(&keys.sign(&claims(
                "ns",
                "bot",
                "u1",
                &["vault".into()],
                now,
                3600,
                None,
            )))
            .unwrap();
        assert!(refuse(&other, now, &[]).unwrap().contains("audiences"));
        assert_eq!(refuse(&other, now, &["vault".into()]), None);
        // Tampered payload or another key.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(br#"{"sub":"system:serviceaccount:kube-system:admin"}"#);
        parts[1] = &forged;
        assert!(keys.verify(&parts.join(".")).is_none());
        let stranger = Keys::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(stranger.verify(&t).is_none());
        assert!(keys.verify("not.a.jwt").is_none());
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kid"], json!(keys.kid));
    }
}
