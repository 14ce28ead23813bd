//! `HashiCorp`'s `tls` provider: `tls_private_key` (RSA, ECDSA P224/P256/P384,
//! ED25519), `tls_self_signed_cert`, `tls_cert_request`,
//! `tls_locally_signed_cert` and the `tls_public_key` data source, with
//! hashicorp/tls's attribute names and PEM/OpenSSH formats. Keys come from
//! aws-lc-rs, certificates from rcgen (both already in the workspace).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use keel_hcl::{Kind, Type, Value};
use sha2::Digest as _;

use super::misc::hex;
use super::{
    Attr, DataType, Nesting, OpCtx, Planned, Provider, ResourceType, Schema, fill_unknown, get,
    get_bool, get_i64, get_str, set,
};

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER TLV at the start of `b`: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr + len)?;
    Some((tag, content, &b[hdr + len..]))
}

/// The INTEGERs of a DER SEQUENCE (PKCS#1 keys), leading zeros kept.
fn der_integers(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (_, mut body, _) = tlv(der)?;
    let mut out = Vec::new();
    while !body.is_empty() {
        let (tag, c, rest) = tlv(body)?;
        if tag == 0x02 {
            out.push(c.to_vec());
        }
        body = rest;
    }
    Some(out)
}

/// The private key inside PKCS#8 (`OCTET STRING privateKey`).
fn pkcs8_inner(der: &[u8]) -> Option<&[u8]> {
    let (_, body, _) = tlv(der)?;
    let (_, _, rest) = tlv(body)?; // version
    let (_, _, rest) = tlv(rest)?; // algorithm
    let (tag, key, _) = tlv(rest)?;
    (tag == 0x04).then_some(key)
}

fn ssh_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(b);
}

/// An SSH mpint from a big-endian DER INTEGER (already sign-padded).
fn ssh_mpint(out: &mut Vec<u8>, b: &[u8]) {
    let mut b = b;
    while b.len() > 1 && b[0] == 0 && b[1] & 0x80 == 0 {
        b = &b[1..];
    }
    ssh_string(out, b);
}

/// SEC 1 `ECPrivateKey` with the curve named, as Go's
/// `x509.MarshalECPrivateKey` writes it (the p224 crate leaves the
/// parameters out, and openssl then cannot tell the curve).
fn p224_sec1(sk: &p224::SecretKey) -> Vec<u8> {
    use p224::elliptic_curve::sec1::ToEncodedPoint as _;
    let d = sk.to_bytes();
    let point = sk.public_key().to_encoded_point(false);
    let mut body = vec![0x02, 0x01, 0x01, 0x04, 28];
    body.extend_from_slice(&d);
    // [0] { OID 1.3.132.0.33 (secp224r1) }
    body.extend_from_slice(&[0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21]);
    // [1] { BIT STRING 0 unused bits || 04 X Y }
    body.extend_from_slice(&[0xa1, 0x3c, 0x03, 0x3a, 0x00]);
    body.extend_from_slice(point.as_bytes());
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap_or(0)];
    out.extend_from_slice(&body);
    out
}

/// A generated or parsed private key and its encodings.
struct Key {
    algorithm: &'static str,
    /// PKCS#8 DER.
    pkcs8: Vec<u8>,
    /// "RSA PRIVATE KEY" / "EC PRIVATE KEY" / "PRIVATE KEY" PEM, as Go marshals them.
    native_pem: String,
    /// The SSH public key blob.
    ssh_blob: Vec<u8>,
    ssh_type: String,
    /// The key-specific fields of OpenSSH's private key section.
    ssh_private: Vec<u8>,
    /// ECDSA P224 (hashicorp/tls's default curve): OpenSSH has no P224, so
    /// its SSH encodings are empty, as the provider leaves them; no
    /// certificate is signed with it (rcgen and aws-lc-rs lack the curve).
    p224: bool,
}

impl Key {
    fn generate(algorithm: &str, rsa_bits: i64, curve: &str) -> Result<Key, String> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
            Ed25519KeyPair,
        };
        match algorithm {
            "RSA" => {
                let size = match rsa_bits {
                    2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                    3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                    4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                    8192 => aws_lc_rs::rsa::KeySize::Rsa8192,
                    n => {
                        return Err(format!(
                            "rsa_bits = {n}: keel generates 2048, 3072, 4096 or 8192-bit RSA keys"
                        ));
                    }
                };
                let k = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| e.to_string())?;
                let der = k.as_der().map_err(|e| e.to_string())?.as_ref().to_vec();
                Key::from_pkcs8(&der)
            }
            "ECDSA" => {
                let alg = match curve {
                    "P224" => loop {
                        // A uniformly random scalar: 28 random bytes, retried
                        // in the rare case they are zero or not below n.
                        let bytes: [u8; 28] = rand::random();
                        if let Ok(sk) = p224::SecretKey::from_slice(&bytes) {
                            return Key::p224(&sk);
                        }
                    },
                    "P256" => &ECDSA_P256_SHA256_ASN1_SIGNING,
                    "P384" => &ECDSA_P384_SHA384_ASN1_SIGNING,
                    c => {
                        return Err(format!(
                            "ecdsa_curve = {c:?}: keel generates P224, P256 and P384 keys (P521 is not supported)"
                        ));
                    }
                };
                let k = EcdsaKeyPair::generate(alg).map_err(|e| e.to_string())?;
                let der = k.to_pkcs8v1().map_err(|e| e.to_string())?.as_ref().to_vec();
                Key::from_pkcs8(&der)
            }
            "ED25519" => {
                let k = Ed25519KeyPair::generate().map_err(|e| e.to_string())?;
                let der = k.to_pkcs8v1().map_err(|e| e.to_string())?.as_ref().to_vec();
                Key::from_pkcs8(&der)
            }
            a => Err(format!("algorithm = {a:?}: expected RSA, ECDSA or ED25519")),
        }
    }

    fn p224(sk: &p224::SecretKey) -> Result<Key, String> {
        use p224::pkcs8::EncodePrivateKey as _;
        let pkcs8 = sk.to_pkcs8_der().map_err(|e| e.to_string())?;
        Ok(Key {
            algorithm: "ECDSA",
            pkcs8: pkcs8.as_bytes().to_vec(),
            native_pem: pem("EC PRIVATE KEY", &p224_sec1(sk)),
            ssh_blob: Vec::new(),
            ssh_type: String::new(),
            ssh_private: Vec::new(),
            p224: true,
        })
    }

    /// From PKCS#8 DER of any of the three algorithms.
    fn from_pkcs8(der: &[u8]) -> Result<Key, String> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
            Ed25519KeyPair,
        };
        use p224::pkcs8::DecodePrivateKey as _;
        if let Ok(sk) = p224::SecretKey::from_pkcs8_der(der) {
            return Key::p224(&sk);
        }
        if let Ok(k) = aws_lc_rs::rsa::KeyPair::from_pkcs8(der) {
            let pkcs1 = pkcs8_inner(der).ok_or("malformed PKCS#8 RSA key")?;
            let ints = der_integers(k.public_key().as_ref()).ok_or("malformed RSA public key")?;
            let (n, e) = (ints.first().ok_or("no n")?, ints.get(1).ok_or("no e")?);
            let mut blob = Vec::new();
            ssh_string(&mut blob, b"ssh-rsa");
            ssh_mpint(&mut blob, e);
            ssh_mpint(&mut blob, n);
            // PKCS#1: version, n, e, d, p, q, dp, dq, qinv.
            let pk = der_integers(pkcs1)
                .filter(|v| v.len() >= 9)
                .ok_or("malformed PKCS#1 key")?;
            let mut private = Vec::new();
            for i in [1, 2, 3, 8, 4, 5] {
                ssh_mpint(&mut private, &pk[i]);
            }
            return Ok(Key {
                algorithm: "RSA",
                pkcs8: der.to_vec(),
                native_pem: pem("RSA PRIVATE KEY", pkcs1),
                ssh_blob: blob,
                ssh_type: "ssh-rsa".into(),
                ssh_private: private,
                p224: false,
            });
        }
        for (alg, name) in [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, "nistp256"),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, "nistp384"),
        ] {
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(alg, der) {
                let sec1 = k.private_key().as_der().map_err(|e| e.to_string())?;
                let ty = format!("ecdsa-sha2-{name}");
                let mut blob = Vec::new();
                ssh_string(&mut blob, ty.as_bytes());
                ssh_string(&mut blob, name.as_bytes());
                ssh_string(&mut blob, k.public_key().as_ref());
                // SEC 1: version, then the private scalar as an OCTET STRING.
                let d = tlv(sec1.as_ref())
                    .and_then(|(_, body, _)| tlv(body))
                    .and_then(|(_, _, rest)| tlv(rest))
                    .map(|(_, d, _)| d.to_vec())
                    .ok_or("malformed EC private key")?;
                let mut private = Vec::new();
                ssh_string(&mut private, name.as_bytes());
                ssh_string(&mut private, k.public_key().as_ref());
                let mut scalar = vec![0u8];
                scalar.extend_from_slice(&d);
                ssh_mpint(&mut private, &scalar);
                return Ok(Key {
                    algorithm: "ECDSA",
                    pkcs8: der.to_vec(),
                    native_pem: pem("EC PRIVATE KEY", sec1.as_ref()),
                    ssh_blob: blob,
                    ssh_type: ty,
                    ssh_private: private,
                    p224: false,
                });
            }
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let mut blob = Vec::new();
            ssh_string(&mut blob, b"ssh-ed25519");
            ssh_string(&mut blob, k.public_key().as_ref());
            // PKCS#8's privateKey holds the 32-byte seed as an OCTET STRING.
            let seed = pkcs8_inner(der)
                .and_then(tlv)
                .map(|(_, seed, _)| seed.to_vec())
                .filter(|s| s.len() == 32)
                .ok_or("malformed ED25519 key")?;
            let mut private = Vec::new();
            ssh_string(&mut private, k.public_key().as_ref());
            let mut both = seed;
            both.extend_from_slice(k.public_key().as_ref());
            ssh_string(&mut private, &both);
            return Ok(Key {
                algorithm: "ED25519",
                pkcs8: der.to_vec(),
                native_pem: pem("PRIVATE KEY", der),
                ssh_blob: blob,
                ssh_type: "ssh-ed25519".into(),
                ssh_private: private,
                p224: false,
            });
        }
        Err("unsupported private key (RSA, ECDSA P256/P384 or ED25519 expected)".into())
    }

    /// From any PEM private key hashicorp/tls reads (PKCS#1, SEC 1, PKCS#8).
    fn from_pem(text: &str) -> Result<Key, String> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
        };
        let bad = |e: &dyn std::fmt::Display| format!("failed to decode PEM private key: {e}");
        let begin = text
            .find("-----BEGIN ")
            .ok_or_else(|| bad(&"no PEM block"))?;
        let rest = &text[begin + 11..];
        let label_end = rest.find("-----").ok_or_else(|| bad(&"malformed PEM"))?;
        let label = &rest[..label_end];
        let body_end = rest
            .find("-----END ")
            .ok_or_else(|| bad(&"unterminated PEM block"))?;
        let b64: String = rest[label_end + 5..body_end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(&e))?;
        match label {
            "PRIVATE KEY" => Key::from_pkcs8(&der),
            "RSA PRIVATE KEY" => {
                let k = aws_lc_rs::rsa::KeyPair::from_der(&der).map_err(|e| bad(&e))?;
                Key::from_pkcs8(k.as_der().map_err(|e| bad(&e))?.as_ref())
            }
            "EC PRIVATE KEY" => {
                for alg in [
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    &ECDSA_P384_SHA384_ASN1_SIGNING,
                ] {
                    if let Ok(k) = EcdsaKeyPair::from_private_key_der(alg, &der) {
                        return Key::from_pkcs8(k.to_pkcs8v1().map_err(|e| bad(&e))?.as_ref());
                    }
                }
                if let Ok(sk) = p224::SecretKey::from_sec1_der(&der) {
                    return Key::p224(&sk);
                }
                Err(bad(&"EC key on a curve other than P224, P256 or P384"))
            }
            other => Err(bad(&format!("unexpected PEM block {other:?}"))),
        }
    }

    fn signing_key(&self) -> Result<rcgen::KeyPair, String> {
        if self.p224 {
            return Err("keel cannot sign with an ECDSA P224 key (neither rcgen nor aws-lc-rs has the curve): use ecdsa_curve = \"P256\" or \"P384\" for keys that sign certificates or requests".into());
        }
        rcgen::KeyPair::from_pem(&pem("PRIVATE KEY", &self.pkcs8)).map_err(|e| e.to_string())
    }

    /// OpenSSH's own private key format (`openssh-key-v1`, unencrypted).
    fn private_key_openssh(&self) -> String {
        if self.p224 {
            return String::new();
        }
        let mut section = Vec::new();
        let check: [u8; 4] = rand::random();
        section.extend_from_slice(&check);
        section.extend_from_slice(&check);
        ssh_string(&mut section, self.ssh_type.as_bytes());
        section.extend_from_slice(&self.ssh_private);
        ssh_string(&mut section, b"");
        let mut pad = 1u8;
        while section.len() % 8 != 0 {
            section.push(pad);
            pad += 1;
        }
        let mut out = b"openssh-key-v1\0".to_vec();
        ssh_string(&mut out, b"none");
        ssh_string(&mut out, b"none");
        ssh_string(&mut out, b"");
        out.extend_from_slice(&1u32.to_be_bytes());
        ssh_string(&mut out, &self.ssh_blob);
        ssh_string(&mut out, &section);
        let b64 = base64::engine::general_purpose::STANDARD.encode(out);
        let mut text = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(70) {
            text.push_str(&String::from_utf8_lossy(chunk));
            text.push('\n');
        }
        text.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        text
    }

    fn public_key_openssh(&self) -> String {
        if self.p224 {
            return String::new();
        }
        format!(
            "{} {}\n",
            self.ssh_type,
            base64::engine::general_purpose::STANDARD.encode(&self.ssh_blob)
        )
    }

    /// The public attributes `tls_private_key` and `tls_public_key` share.
    fn public_attrs(&self) -> Result<BTreeMap<&'static str, Value>, String> {
        if self.p224 {
            use p224::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
            let sk = p224::SecretKey::from_pkcs8_der(&self.pkcs8).map_err(|e| e.to_string())?;
            let spki = sk
                .public_key()
                .to_public_key_der()
                .map_err(|e| e.to_string())?;
            return Ok(BTreeMap::from([
                ("algorithm", Value::string(self.algorithm)),
                (
                    "public_key_pem",
                    Value::string(pem("PUBLIC KEY", spki.as_bytes())),
                ),
                ("public_key_openssh", Value::string("")),
                ("public_key_fingerprint_md5", Value::string("")),
                ("public_key_fingerprint_sha256", Value::string("")),
                (
                    "id",
                    Value::string(hex(&sha1::Sha1::digest(spki.as_bytes()))),
                ),
            ]));
        }
        let kp = self.signing_key()?;
        let md5 = md5::Md5::digest(&self.ssh_blob);
        let fp_md5: Vec<String> = md5.iter().map(|b| format!("{b:02x}")).collect();
        let sha = sha2::Sha256::digest(&self.ssh_blob);
        Ok(BTreeMap::from([
            ("algorithm", Value::string(self.algorithm)),
            ("public_key_pem", Value::string(kp.public_key_pem())),
            (
                "public_key_openssh",
                Value::string(self.public_key_openssh()),
            ),
            (
                "public_key_fingerprint_md5",
                Value::string(fp_md5.join(":")),
            ),
            (
                "public_key_fingerprint_sha256",
                Value::string(format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha)
                )),
            ),
            (
                "id",
                Value::string(hex(&sha1::Sha1::digest(kp.public_key_der()))),
            ),
        ]))
    }
}

trait PublicKeyDer {
    fn public_key_der(&self) -> Vec<u8>;
}

impl PublicKeyDer for rcgen::KeyPair {
    fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }
}

struct PrivateKey {
    schema: Schema,
}

impl ResourceType for PrivateKey {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn modify_plan(
        &self,
        _prior: Option<&Value>,
        config: &Value,
        mut p: Planned,
    ) -> Result<Planned, String> {
        // hashicorp/tls's defaults.
        if get(config, "rsa_bits").is_none() {
            set(&mut p.value, "rsa_bits", Value::int(2048));
        }
        if get(config, "ecdsa_curve").is_none() {
            set(&mut p.value, "ecdsa_curve", Value::string("P224"));
        }
        Ok(p)
    }

    fn apply(&self, _prior: Option<&Value>, planned: &Value, _: &OpCtx) -> Result<Value, String> {
        let k = Key::generate(
            get_str(planned, "algorithm").unwrap_or_default(),
            get_i64(planned, "rsa_bits").unwrap_or(2048),
            get_str(planned, "ecdsa_curve").unwrap_or("P224"),
        )?;
        let mut attrs = k.public_attrs()?;
        attrs.insert("private_key_pem", Value::string(k.native_pem.clone()));
        attrs.insert(
            "private_key_openssh",
            Value::string(k.private_key_openssh()),
        );
        attrs.insert(
            "private_key_pem_pkcs8",
            Value::string(pem("PRIVATE KEY", &k.pkcs8)),
        );
        Ok(fill_unknown(planned, |n| attrs.get(n).cloned()))
    }
}

/// A `subject` block and the SANs, as certificate parameters.
fn cert_params(v: &Value) -> Result<rcgen::CertificateParams, String> {
    use rcgen::{DnType, SanType};
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(Kind::List(_, items)) = get(v, "subject").map(|s| &s.kind)
        && let Some(s) = items.first()
    {
        for (attr, ty) in [
            ("common_name", DnType::CommonName),
            ("organization", DnType::OrganizationName),
            ("organizational_unit", DnType::OrganizationalUnitName),
            ("locality", DnType::LocalityName),
            ("province", DnType::StateOrProvinceName),
            ("country", DnType::CountryName),
        ] {
            if let Some(x) = get_str(s, attr) {
                p.distinguished_name.push(ty, x);
            }
        }
    }
    let strings = |name: &str| -> Vec<String> {
        get(v, name)
            .and_then(Value::as_seq)
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for d in strings("dns_names") {
        p.subject_alt_names.push(SanType::DnsName(
            d.try_into().map_err(|e| format!("dns_names: {e}"))?,
        ));
    }
    for ip in strings("ip_addresses") {
        p.subject_alt_names.push(SanType::IpAddress(
            ip.parse()
                .map_err(|e| format!("ip_addresses: {ip:?}: {e}"))?,
        ));
    }
    for u in strings("uris") {
        p.subject_alt_names.push(SanType::URI(
            u.try_into().map_err(|e| format!("uris: {e}"))?,
        ));
    }
    for u in strings("allowed_uses") {
        use rcgen::{ExtendedKeyUsagePurpose as E, KeyUsagePurpose as K};
        match u.as_str() {
            "digital_signature" => p.key_usages.push(K::DigitalSignature),
            "content_commitment" => p.key_usages.push(K::ContentCommitment),
            "key_encipherment" => p.key_usages.push(K::KeyEncipherment),
            "data_encipherment" => p.key_usages.push(K::DataEncipherment),
            "key_agreement" => p.key_usages.push(K::KeyAgreement),
            "cert_signing" => p.key_usages.push(K::KeyCertSign),
            "crl_signing" => p.key_usages.push(K::CrlSign),
            "encipher_only" => p.key_usages.push(K::EncipherOnly),
            "decipher_only" => p.key_usages.push(K::DecipherOnly),
            "any_extended" => p.extended_key_usages.push(E::Any),
            "server_auth" => p.extended_key_usages.push(E::ServerAuth),
            "client_auth" => p.extended_key_usages.push(E::ClientAuth),
            "code_signing" => p.extended_key_usages.push(E::CodeSigning),
            "email_protection" => p.extended_key_usages.push(E::EmailProtection),
            "timestamping" => p.extended_key_usages.push(E::TimeStamping),
            "ocsp_signing" => p.extended_key_usages.push(E::OcspSigning),
            other => return Err(format!("allowed_uses: unknown use {other:?}")),
        }
    }
    if get_bool(v, "is_ca_certificate") == Some(true) {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let hours = get_i64(v, "validity_period_hours").unwrap_or(0);
    let now = chrono::Utc::now().timestamp();
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| format!("validity_period_hours = {hours}: {e}"))
    };
    p.not_before = at(now)?;
    p.not_after = at(now + hours * 3600)?;
    let mut serial = [0u8; 16];
    rand::RngExt::fill(&mut rand::rng(), &mut serial[..]);
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(p)
}

/// RFC 3339 in UTC, as hashicorp/tls prints validity times.
fn rfc3339(t: time::OffsetDateTime) -> String {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The attributes every certificate resource computes.
fn cert_attrs(
    p: &rcgen::CertificateParams,
    cert_pem: String,
    key_algorithm: &str,
    key_attr: &str,
) -> BTreeMap<String, Value> {
    // The serial number in decimal (rcgen prints it as colon-separated hex).
    let serial = p
        .serial_number
        .as_ref()
        .and_then(|s| {
            num_bigint::BigUint::parse_bytes(s.to_string().replace(':', "").as_bytes(), 16)
        })
        .map(|n| n.to_string())
        .unwrap_or_default();
    BTreeMap::from([
        ("cert_pem".to_string(), Value::string(cert_pem)),
        (
            "validity_start_time".into(),
            Value::string(rfc3339(p.not_before)),
        ),
        (
            "validity_end_time".into(),
            Value::string(rfc3339(p.not_after)),
        ),
        ("ready_for_renewal".into(), Value::bool(false)),
        (key_attr.to_string(), Value::string(key_algorithm)),
        ("id".into(), Value::string(serial)),
    ])
}

struct SelfSignedCert {
    schema: Schema,
}

impl ResourceType for SelfSignedCert {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn apply(&self, _prior: Option<&Value>, planned: &Value, _: &OpCtx) -> Result<Value, String> {
        let key = Key::from_pem(get_str(planned, "private_key_pem").unwrap_or_default())?;
        let p = cert_params(planned)?;
        let cert = p
            .self_signed(&key.signing_key()?)
            .map_err(|e| format!("failed to create certificate: {e}"))?;
        let attrs = cert_attrs(&p, cert.pem(), key.algorithm, "key_algorithm");
        Ok(fill_unknown(planned, |n| attrs.get(n).cloned()))
    }
}

struct CertRequest {
    schema: Schema,
}

impl ResourceType for CertRequest {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn apply(&self, _prior: Option<&Value>, planned: &Value, _: &OpCtx) -> Result<Value, String> {
        let key = Key::from_pem(get_str(planned, "private_key_pem").unwrap_or_default())?;
        let mut p = cert_params(planned)?;
        // The signer picks the serial number.
        p.serial_number = None;
        let csr = p
            .serialize_request(&key.signing_key()?)
            .and_then(|c| c.pem())
            .map_err(|e| format!("failed to create certificate request: {e}"))?;
        let kp = key.signing_key()?;
        let attrs = BTreeMap::from([
            ("cert_request_pem", Value::string(csr)),
            ("key_algorithm", Value::string(key.algorithm)),
            (
                "id",
                Value::string(hex(&sha1::Sha1::digest(kp.public_key_der()))),
            ),
        ]);
        Ok(fill_unknown(planned, |n| attrs.get(n).cloned()))
    }
}

struct LocallySignedCert {
    schema: Schema,
}

impl ResourceType for LocallySignedCert {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn apply(&self, _prior: Option<&Value>, planned: &Value, _: &OpCtx) -> Result<Value, String> {
        let ca_key = Key::from_pem(get_str(planned, "ca_private_key_pem").unwrap_or_default())?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            get_str(planned, "ca_cert_pem").unwrap_or_default(),
            ca_key.signing_key()?,
        )
        .map_err(|e| format!("failed to decode ca_cert_pem: {e}"))?;
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(
            get_str(planned, "cert_request_pem").unwrap_or_default(),
        )
        .map_err(|e| format!("failed to decode cert_request_pem: {e}"))?;
        // The CA decides validity, uses and CA-ness; the request the rest.
        let p = cert_params(planned)?;
        csr.params.not_before = p.not_before;
        csr.params.not_after = p.not_after;
        csr.params.serial_number.clone_from(&p.serial_number);
        csr.params.key_usages.clone_from(&p.key_usages);
        csr.params
            .extended_key_usages
            .clone_from(&p.extended_key_usages);
        csr.params.is_ca = p.is_ca;
        csr.params.use_authority_key_identifier_extension = true;
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| format!("failed to create certificate: {e}"))?;
        let attrs = cert_attrs(
            &csr.params,
            cert.pem(),
            ca_key.algorithm,
            "ca_key_algorithm",
        );
        Ok(fill_unknown(planned, |n| attrs.get(n).cloned()))
    }
}

/// `data "tls_public_key"`: the public half of `private_key_pem`.
struct PublicKey {
    schema: Schema,
}

impl DataType for PublicKey {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn read(&self, config: &Value, _: &OpCtx) -> Result<Value, String> {
        let key = Key::from_pem(get_str(config, "private_key_pem").unwrap_or_default())?;
        let mut v = config.clone();
        for (k, x) in key.public_attrs()? {
            set(&mut v, k, x);
        }
        Ok(v)
    }
}

fn subject_block() -> Schema {
    let mut s = Schema::default();
    for a in [
        "common_name",
        "organization",
        "organizational_unit",
        "locality",
        "province",
        "country",
        "postal_code",
        "serial_number",
    ] {
        s = s.attr(a, Attr::optional(Type::String).force_new());
    }
    s.attr(
        "street_address",
        Attr::optional(Type::list(Type::String)).force_new(),
    )
}

/// What the certificate resources share: subject, validity, uses, computed results.
fn cert_schema(s: Schema, with_subject: bool) -> Schema {
    let strings = || Attr::optional(Type::list(Type::String)).force_new();
    let mut s = s
        .attr(
            "validity_period_hours",
            Attr::required(Type::Number).force_new(),
        )
        .attr("early_renewal_hours", Attr::opt_computed(Type::Number))
        .attr(
            "allowed_uses",
            Attr::required(Type::list(Type::String)).force_new(),
        )
        .attr(
            "is_ca_certificate",
            Attr::opt_computed(Type::Bool).force_new(),
        )
        .attr(
            "set_subject_key_id",
            Attr::opt_computed(Type::Bool).force_new(),
        )
        .attr("cert_pem", Attr::computed(Type::String))
        .attr("validity_start_time", Attr::computed(Type::String))
        .attr("validity_end_time", Attr::computed(Type::String))
        .attr("ready_for_renewal", Attr::computed(Type::Bool))
        .attr("id", Attr::computed(Type::String));
    if with_subject {
        s = s
            .attr("dns_names", strings())
            .attr("ip_addresses", strings())
            .attr("uris", strings())
            .attr(
                "set_authority_key_id",
                Attr::opt_computed(Type::Bool).force_new(),
            );
        s = with_subject_block(s);
    }
    s
}

fn with_subject_block(s: Schema) -> Schema {
    let mut s = s.block("subject", Nesting::List, subject_block());
    if let Some(b) = s.blocks.get_mut("subject") {
        b.force_new = true;
    }
    s
}

pub(super) fn tls() -> Provider {
    let key_pem = || Attr::required(Type::String).force_new().sensitive();
    let public = |s: Schema| {
        s.attr("algorithm", Attr::computed(Type::String))
            .attr("public_key_pem", Attr::computed(Type::String))
            .attr("public_key_openssh", Attr::computed(Type::String))
            .attr("public_key_fingerprint_md5", Attr::computed(Type::String))
            .attr(
                "public_key_fingerprint_sha256",
                Attr::computed(Type::String),
            )
            .attr("id", Attr::computed(Type::String))
    };
    let private_key = public(Schema::default())
        .attr("algorithm", Attr::required(Type::String).force_new())
        .attr("rsa_bits", Attr::opt_computed(Type::Number).force_new())
        .attr("ecdsa_curve", Attr::opt_computed(Type::String).force_new())
        .attr("private_key_pem", Attr::computed(Type::String).sensitive())
        .attr(
            "private_key_openssh",
            Attr::computed(Type::String).sensitive(),
        )
        .attr(
            "private_key_pem_pkcs8",
            Attr::computed(Type::String).sensitive(),
        );
    let self_signed = cert_schema(
        Schema::default()
            .attr("private_key_pem", key_pem())
            .attr("key_algorithm", Attr::computed(Type::String)),
        true,
    );
    let locally_signed = cert_schema(
        Schema::default()
            .attr("cert_request_pem", Attr::required(Type::String).force_new())
            .attr("ca_private_key_pem", key_pem())
            .attr("ca_cert_pem", Attr::required(Type::String).force_new())
            .attr("ca_key_algorithm", Attr::computed(Type::String)),
        false,
    );
    let strings = || Attr::optional(Type::list(Type::String)).force_new();
    let cert_request = with_subject_block(
        Schema::default()
            .attr("private_key_pem", key_pem())
            .attr("dns_names", strings())
            .attr("ip_addresses", strings())
            .attr("uris", strings())
            .attr("cert_request_pem", Attr::computed(Type::String))
            .attr("key_algorithm", Attr::computed(Type::String))
            .attr("id", Attr::computed(Type::String)),
    );
    let mut resources: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    resources.insert(
        "tls_private_key",
        Arc::new(PrivateKey {
            schema: private_key,
        }),
    );
    resources.insert(
        "tls_self_signed_cert",
        Arc::new(SelfSignedCert {
            schema: self_signed,
        }),
    );
    resources.insert(
        "tls_cert_request",
        Arc::new(CertRequest {
            schema: cert_request,
        }),
    );
    resources.insert(
        "tls_locally_signed_cert",
        Arc::new(LocallySignedCert {
            schema: locally_signed,
        }),
    );
    let mut data: BTreeMap<&'static str, Arc<dyn DataType>> = BTreeMap::new();
    data.insert(
        "tls_public_key",
        Arc::new(PublicKey {
            schema: public(
                Schema::default().attr("private_key_pem", Attr::required(Type::String).sensitive()),
            ),
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/tls",
        resources,
        data,
    }
}
