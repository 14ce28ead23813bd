//! sprig 3.2.3's crypto.go: hashes (`sha1sum`, `sha256sum`, `adler32sum`),
//! `bcrypt`/`htpasswd`, `uuidv4`, `randBytes`, private keys, certificates
//! (`genCA`, `genSignedCert`, …), `derivePassword` and
//! `encryptAES`/`decryptAES`, with sprig's output formats and error messages.
//!
//! Keys and certificates come from aws-lc-rs and rcgen; their bytes differ
//! from Go's (they are random anyway), but the PEM block types, key sizes,
//! subject, SANs, validity, key usages and basic constraints are sprig's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair,
};

/// The curves Go's x509 reads EC keys for that rcgen can sign with.
const EC_CURVES: [&EcdsaSigningAlgorithm; 2] = [
    &ECDSA_P256_SHA256_ASN1_SIGNING,
    &ECDSA_P384_SHA384_ASN1_SIGNING,
];

/// An EC key from SEC 1 or PKCS#8 DER, on the first curve that accepts it.
fn ec_key(der: &[u8], pkcs8: bool) -> Result<EcdsaKeyPair, aws_lc_rs::error::KeyRejected> {
    let mut last = None;
    for alg in EC_CURVES {
        let r = if pkcs8 {
            EcdsaKeyPair::from_pkcs8(alg, der)
        } else {
            EcdsaKeyPair::from_private_key_der(alg, der)
        };
        match r {
            Ok(k) => return Ok(k),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one curve"))
}

use super::strings::{b64dec, b64enc};
use super::{s, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::gofmt;
use crate::value::{Object, Value};

type Res = Result<Value, String>;

/// sprig's `certificate` struct: what the `gen*Cert*` functions return.
#[derive(Debug)]
pub(crate) struct Certificate {
    cert: String,
    key: String,
}

impl Object for Certificate {
    fn type_name(&self) -> String {
        CERT_TYPE.into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "Cert" => Some(Value::str(&self.cert)),
            "Key" => Some(Value::str(&self.key)),
            _ => None,
        }
    }
    fn method(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }
    fn display(&self) -> String {
        format!("{{{} {}}}", self.cert, self.key)
    }
    fn method_arity(&self, _name: &str) -> Option<usize> {
        None
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
    fn struct_fields(&self) -> Option<Vec<(String, Value)>> {
        Some(vec![
            ("Cert".into(), Value::str(&self.cert)),
            ("Key".into(), Value::str(&self.key)),
        ])
    }
}

/// Go's name of sprig's certificate type (argument checks, `%T`).
pub(crate) const CERT_TYPE: &str = "sprig.certificate";

fn cert_value(cert: String, key: String) -> Value {
    Value::Object(Rc::new(Certificate { cert, key }))
}

/// The certificate behind a `sprig.certificate` argument (already type-checked).
fn cert_arg(v: &Value) -> (String, String) {
    match v {
        Value::Object(o) => (
            o.field("Cert")
                .and_then(|c| c.as_str().map(str::to_string))
                .unwrap_or_default(),
            o.field("Key")
                .and_then(|c| c.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
        _ => (String::new(), String::new()),
    }
}

// ---- DER and PEM helpers

/// One DER element: (tag, contents, rest). Only what private keys need.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The OID bytes of rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// id-Ed25519 (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// PKCS#8 `PrivateKeyInfo` → (algorithm OID, inner private key bytes).
fn pkcs8_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, body, _) = der_tlv(der)? else {
        return None;
    };
    let (0x02, _version, rest) = der_tlv(body)? else {
        return None;
    };
    let (0x30, alg, rest) = der_tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der_tlv(alg)? else {
        return None;
    };
    let (0x04, key, _) = der_tlv(rest)? else {
        return None;
    };
    Some((oid, key))
}

/// Go's `pem.EncodeToMemory` of a block without headers.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = b64enc(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// Go's `pem.Decode`, simplified: the first block's type and bytes.
fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let end_label = rest.find("-----")?;
    let label = &rest[..end_label];
    if label.contains('\n') {
        return None;
    }
    let body = rest[end_label + 5..]
        .strip_prefix('\n')
        .or_else(|| rest[end_label + 5..].strip_prefix("\r\n"))?;
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = b64dec(&b64).ok()?;
    Some((label.to_string(), der))
}

// ---- private keys

/// A private key in the form sprig's `pemBlockForKey` writes it.
enum PrivKey {
    /// PKCS#1 `RSAPrivateKey` ("RSA PRIVATE KEY").
    Rsa(Vec<u8>),
    /// SEC 1 `ECPrivateKey` with parameters and public key ("EC PRIVATE KEY").
    Ec(Vec<u8>),
    /// PKCS#8 v1 ("PRIVATE KEY"), as Go marshals Ed25519 keys.
    Ed25519(Vec<u8>),
}

impl PrivKey {
    fn pem(&self) -> String {
        match self {
            PrivKey::Rsa(d) => pem_encode("RSA PRIVATE KEY", d),
            PrivKey::Ec(d) => pem_encode("EC PRIVATE KEY", d),
            PrivKey::Ed25519(d) => pem_encode("PRIVATE KEY", d),
        }
    }

    fn key_pair(&self) -> Result<rcgen::KeyPair, String> {
        rcgen::KeyPair::from_pem(&self.pem()).map_err(|e| e.to_string())
    }

    fn from_rsa(k: &RsaKeyPair) -> Result<Self, String> {
        let p8 = k.as_der().map_err(|e| e.to_string())?;
        let (_, inner) = pkcs8_parts(p8.as_ref()).ok_or("malformed PKCS#8 RSA key")?;
        Ok(PrivKey::Rsa(inner.to_vec()))
    }

    fn from_ec(k: &EcdsaKeyPair) -> Result<Self, String> {
        let d = k.private_key().as_der().map_err(|e| e.to_string())?;
        Ok(PrivKey::Ec(d.as_ref().to_vec()))
    }

    fn from_ed25519(k: &Ed25519KeyPair) -> Result<Self, String> {
        let d = k.to_pkcs8v1().map_err(|e| e.to_string())?;
        Ok(PrivKey::Ed25519(d.as_ref().to_vec()))
    }

    fn generate_rsa(size: KeySize) -> Result<Self, String> {
        Self::from_rsa(&RsaKeyPair::generate(size).map_err(|e| e.to_string())?)
    }
}

/// sprig's `parsePrivateKeyPEM` (keys are re-marshalled the way Go does).
fn parse_private_key_pem(text: &str) -> Result<PrivKey, String> {
    let (label, der) = pem_decode(text).ok_or("no PEM data in input")?;
    if label == "PRIVATE KEY" {
        let bad = |e: &dyn std::fmt::Display| format!("decoding PEM as PKCS#8: {e}");
        let (oid, _) = pkcs8_parts(&der).ok_or_else(|| bad(&"x509: malformed PKCS#8"))?;
        return if oid == OID_RSA {
            PrivKey::from_rsa(&RsaKeyPair::from_pkcs8(&der).map_err(|e| bad(&e))?)
        } else if oid == OID_EC {
            PrivKey::from_ec(&ec_key(&der, true).map_err(|e| bad(&e))?)
        } else if oid == OID_ED25519 {
            PrivKey::from_ed25519(
                &Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| bad(&e))?,
            )
        } else {
            Err(bad(
                &"x509: PKCS#8 wrapping contained private key with unknown algorithm",
            ))
        };
    }
    let Some(kind) = label.strip_suffix(" PRIVATE KEY") else {
        return Err(format!("no private key data in PEM block of type {label}"));
    };
    match kind {
        "RSA" => RsaKeyPair::from_der(&der)
            .map_err(|e| format!("parsing RSA private key from PEM: {e}"))
            .and_then(|k| PrivKey::from_rsa(&k)),
        "EC" => ec_key(&der, false)
            .map_err(|e| format!("parsing EC private key from PEM: {e}"))
            .and_then(|k| PrivKey::from_ec(&k)),
        // Go parses DSA keys but x509 cannot sign with them; neither can keel.
        "DSA" => Err("x509: only RSA, ECDSA and Ed25519 keys supported".into()),
        _ => Err(format!("invalid private key type {label}")),
    }
}

/// sprig's `genPrivateKey`: errors are returned as the output string.
fn generate_private_key(typ: &str) -> String {
    let key = match typ {
        "" | "rsa" => PrivKey::generate_rsa(KeySize::Rsa4096),
        // Go generates DSA L2048N256 keys; aws-lc-rs exposes no DSA, and DSA is
        // deprecated everywhere (x509 cannot even sign with it).
        "dsa" => return "failed to generate dsa params: dsa keys are not supported by keel".into(),
        "ecdsa" => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|e| e.to_string())
            .and_then(|k| PrivKey::from_ec(&k)),
        "ed25519" => Ed25519KeyPair::generate()
            .map_err(|e| e.to_string())
            .and_then(|k| PrivKey::from_ed25519(&k)),
        _ => return format!("Unknown type {typ}"),
    };
    match key {
        Ok(k) => k.pem(),
        Err(e) => format!("failed to generate private key: {e}"),
    }
}

// ---- certificates

/// sprig's `getBaseCertTemplate`.
fn base_params(
    cn: &str,
    ips: &Value,
    dns: &Value,
    days: i64,
) -> Result<rcgen::CertificateParams, String> {
    use rcgen::{
        DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
        SerialNumber,
    };
    let items = |v: &Value| match v {
        Value::List(l) => l.to_vec(),
        _ => Vec::new(),
    };
    let mut sans = Vec::new();
    // Go writes DNS names before IP addresses in the SAN extension.
    let mut ip_sans = Vec::new();
    for ip in items(ips) {
        let Some(text) = ip.as_str() else {
            return Err(format!(
                "error parsing ip: {} is not a string",
                gofmt::sprint_value(&ip)
            ));
        };
        let addr: std::net::IpAddr = text
            .parse()
            .map_err(|_| format!("error parsing ip: {text}"))?;
        // Go stores IPv4-mapped IPv6 addresses as 4 bytes in certificates.
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 @ std::net::IpAddr::V4(_) => v4,
        };
        ip_sans.push(SanType::IpAddress(addr));
    }
    for d in items(dns) {
        let Some(text) = d.as_str() else {
            return Err(format!(
                "error processing alternate dns name: {} is not a string",
                gofmt::sprint_value(&d)
            ));
        };
        let name = text
            .to_string()
            .try_into()
            .map_err(|e| format!("error processing alternate dns name: {e}"))?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(ip_sans);

    let mut serial = [0u8; 16];
    os_random(&mut serial)?;
    // Go's serial is below 2^128 and positive; clearing the top bit keeps the
    // DER integer positive without a sign byte.
    serial[0] &= 0x7f;

    let mut p = rcgen::CertificateParams::default();
    let mut name = DistinguishedName::new();
    if !cn.is_empty() {
        name.push(DnType::CommonName, cn);
    }
    p.distinguished_name = name;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.subject_alt_names = sans;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now;
    // Go computes time.Hour*24*days in int64 nanoseconds, wrapping on overflow.
    let ns = days.wrapping_mul(86_400_000_000_000);
    p.not_after = now
        .checked_add(time::Duration::nanoseconds(ns))
        .unwrap_or(now);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // BasicConstraintsValid with IsCA false: Go writes CA:FALSE explicitly.
    p.is_ca = IsCa::ExplicitNoCa;
    Ok(p)
}

fn self_signed(p: &rcgen::CertificateParams, key: &PrivKey) -> Res {
    let kp = key.key_pair()?;
    let cert = p
        .self_signed(&kp)
        .map_err(|e| format!("error creating certificate: {e}"))?;
    Ok(cert_value(cert.pem(), key.pem()))
}

fn ca(cn: &str, days: i64, key: &PrivKey) -> Res {
    let mut p = base_params(cn, &Value::Nil, &Value::Nil, days)?;
    p.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    self_signed(&p, key)
}

fn signed(cn: &str, ips: &Value, dns: &Value, days: i64, ca: &Value, key: &PrivKey) -> Res {
    let (ca_cert, ca_key) = cert_arg(ca);
    let Some((_, ca_der)) = pem_decode(&ca_cert) else {
        return Err("unable to decode certificate".into());
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| format!("error parsing certificate: decodedSignerCert.Bytes: {e}"))?;
    let signer = parse_private_key_pem(&ca_key)
        .map_err(|e| format!("error parsing private key: {e}"))?
        .key_pair()?;
    if parsed.public_key().subject_public_key.data.as_ref() != signer.public_key_raw() {
        return Err(
            "error creating certificate: x509: provided PrivateKey doesn't match parent's PublicKey"
                .into(),
        );
    }
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der.clone().into(), signer)
        .map_err(|e| format!("error parsing certificate: decodedSignerCert.Bytes: {e}"))?;
    let mut p = base_params(cn, ips, dns, days)?;
    p.use_authority_key_identifier_extension = true;
    let kp = key.key_pair()?;
    let cert = p
        .signed_by(&kp, &issuer)
        .map_err(|e| format!("error creating certificate: {e}"))?;
    Ok(cert_value(cert.pem(), key.pem()))
}

fn new_rsa_2048() -> Result<PrivKey, String> {
    PrivKey::generate_rsa(KeySize::Rsa2048).map_err(|e| format!("error generating rsa key: {e}"))
}

fn with_key(pem: &Value) -> Result<PrivKey, String> {
    parse_private_key_pem(pem.as_str().unwrap_or(""))
        .map_err(|e| format!("parsing private key: {e}"))
}

/// sprig's `buildCustomCert`: validates a base64 PEM certificate and key.
fn build_custom_cert(b64cert: &str, b64key: &str) -> Res {
    let cert = b64dec(b64cert).map_err(|_| "unable to decode base64 certificate")?;
    let key = b64dec(b64key).map_err(|_| "unable to decode base64 private key")?;
    let cert = String::from_utf8_lossy(&cert).into_owned();
    let key = String::from_utf8_lossy(&key).into_owned();
    let Some((_, der)) = pem_decode(&cert) else {
        return Err("unable to decode certificate".into());
    };
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("error parsing certificate: decodedCert.Bytes: {e}"))?;
    parse_private_key_pem(&key).map_err(|e| format!("error parsing private key: {e}"))?;
    Ok(cert_value(cert, key))
}

// ---- derivePassword (the Master Password algorithm)

const MASTER_PASSWORD_SEED: &str = "com.lyndir.masterpassword";

fn password_templates(typ: &str) -> Option<&'static [&'static str]> {
    Some(match typ {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

fn template_chars(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

/// sprig's `derivePassword`: scrypt(N=32768, r=8, p=2) keyed HMAC-SHA256.
pub(crate) fn derive_password(
    counter: u32,
    typ: &str,
    password: &str,
    user: &str,
    site: &str,
) -> String {
    let Some(templates) = password_templates(typ) else {
        return format!("cannot find password template {typ}");
    };
    // Go writes len() as uint32, truncating lengths past 4 GiB.
    let mut salt = MASTER_PASSWORD_SEED.as_bytes().to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user.as_bytes());
    let mut key = [0u8; 64];
    let params = scrypt::Params::new(15, 8, 2, 64).expect("valid scrypt parameters");
    if let Err(e) = scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key) {
        return format!("failed to derive password: {e}");
    }
    let mut msg = MASTER_PASSWORD_SEED.as_bytes().to_vec();
    msg.extend_from_slice(&(site.len() as u32).to_be_bytes());
    msg.extend_from_slice(site.as_bytes());
    msg.extend_from_slice(&counter.to_be_bytes());
    let hkey = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let seed = aws_lc_rs::hmac::sign(&hkey, &msg);
    let seed = seed.as_ref();
    let temp = templates[usize::from(seed[0]) % templates.len()].as_bytes();
    temp.iter()
        .enumerate()
        .map(|(i, c)| {
            let chars = template_chars(*c);
            char::from(chars[usize::from(seed[i + 1]) % chars.len()])
        })
        .collect()
}

// ---- AES

fn aes_key(password: &str) -> Result<aws_lc_rs::cipher::UnboundCipherKey, String> {
    let mut key = [0u8; 32];
    let p = password.as_bytes();
    let n = p.len().min(32);
    key[..n].copy_from_slice(&p[..n]);
    aws_lc_rs::cipher::UnboundCipherKey::new(&aws_lc_rs::cipher::AES_256, &key)
        .map_err(|e| e.to_string())
}

/// sprig's `encryptAES`: AES-256-CBC, PKCS#7 padding, random IV prepended, base64.
fn encrypt_aes(password: &str, plaintext: &str) -> Result<String, String> {
    use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext};
    if plaintext.is_empty() {
        return Ok(String::new());
    }
    let mut content = plaintext.as_bytes().to_vec();
    let pad = 16 - content.len() % 16;
    content.extend(std::iter::repeat_n(pad as u8, pad));
    let mut iv = [0u8; 16];
    os_random(&mut iv)?;
    let key = EncryptingKey::cbc(aes_key(password)?).map_err(|e| e.to_string())?;
    key.less_safe_encrypt(
        &mut content,
        EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
    )
    .map_err(|e| e.to_string())?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&content);
    Ok(b64enc(&out))
}

/// sprig's `decryptAES`, including the runtime panics Go reports for bad input.
fn decrypt_aes(password: &str, crypt64: &str) -> Result<String, String> {
    use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext};
    if crypt64.is_empty() {
        return Ok(String::new());
    }
    let crypt = b64dec(crypt64)?;
    let key = DecryptingKey::cbc(aes_key(password)?).map_err(|e| e.to_string())?;
    if crypt.len() < 16 {
        return Err(format!(
            "runtime error: slice bounds out of range [:16] with capacity {}",
            crypt.len()
        ));
    }
    let (iv, body) = crypt.split_at(16);
    if body.len() % 16 != 0 {
        return Err("crypto/cipher: input not full blocks".into());
    }
    let Some(&last) = body.last() else {
        return Err("runtime error: index out of range [-1]".into());
    };
    let mut buf = body.to_vec();
    let mut iv16 = [0u8; 16];
    iv16.copy_from_slice(iv);
    let plain = key
        .decrypt(
            &mut buf,
            DecryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv16)),
        )
        .map_err(|e| e.to_string())?;
    let last = plain.last().copied().unwrap_or(last);
    let end = plain.len() as i64 - i64::from(last);
    if end < 0 {
        return Err(format!("runtime error: slice bounds out of range [:{end}]"));
    }
    Ok(String::from_utf8_lossy(&plain[..end as usize]).into_owned())
}

/// SHA-1, for `sha1sum` (small and self-contained).
pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bitlen = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bitlen.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | ((!b) & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

pub(super) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

pub(super) fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for x in data {
        a = (a + u32::from(*x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}
pub(super) fn uuidv4() -> Result<String, String> {
    let mut b = [0u8; 16];
    os_random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Fills `buf` from the operating system's CSPRNG (`getrandom(2)`), which is
/// what Go's crypto/rand reads: sprig's random strings, bytes and uuids are
/// passwords and keys in charts.
pub(super) fn os_random(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| format!("crypto/rand: {e}"))
}

/// A uniform integer in `0..n` from the OS CSPRNG (rejection sampling, as
/// Go's `rand.Int`, so no value is more likely than another).
pub(super) fn random_below(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("invalid argument to Intn".into());
    }
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let mut b = [0u8; 8];
        os_random(&mut b)?;
        let x = u64::from_le_bytes(b);
        if x < zone {
            return Ok(x % n);
        }
    }
}

/// `bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)` in Go's `$2a$` form.
pub(super) fn bcrypt_2a(pw: &str) -> String {
    bcrypt::hash_with_result(pw, 10).map_or_else(
        |e| e.to_string(),
        |h| h.format_for_version(bcrypt::Version::TwoA),
    )
}

pub(crate) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Cert, Int, List, Str, Uint32};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("genPrivateKey", &[Str], None, |a| {
        Ok(Value::string(generate_private_key(st(&a[0]))))
    });
    add("buildCustomCert", &[Str, Str], None, |a| {
        build_custom_cert(st(&a[0]), st(&a[1]))
    });
    add("genCA", &[Str, Int], None, |a| {
        ca(st(&a[0]), int(&a[1]), &new_rsa_2048()?)
    });
    add("genCAWithKey", &[Str, Int, Str], None, |a| {
        ca(st(&a[0]), int(&a[1]), &with_key(&a[2])?)
    });
    add("genSelfSignedCert", &[Str, List, List, Int], None, |a| {
        let p = base_params(st(&a[0]), &a[1], &a[2], int(&a[3]))?;
        self_signed(&p, &new_rsa_2048()?)
    });
    add(
        "genSelfSignedCertWithKey",
        &[Str, List, List, Int, Str],
        None,
        |a| {
            let key = with_key(&a[4])?;
            let p = base_params(st(&a[0]), &a[1], &a[2], int(&a[3]))?;
            self_signed(&p, &key)
        },
    );
    add("genSignedCert", &[Str, List, List, Int, Cert], None, |a| {
        let key = new_rsa_2048()?;
        signed(st(&a[0]), &a[1], &a[2], int(&a[3]), &a[4], &key)
    });
    add(
        "genSignedCertWithKey",
        &[Str, List, List, Int, Cert, Str],
        None,
        |a| {
            let key = with_key(&a[5])?;
            signed(st(&a[0]), &a[1], &a[2], int(&a[3]), &a[4], &key)
        },
    );
    add("derivePassword", &[Uint32, Str, Str, Str, Str], None, |a| {
        // Go's reflect.SetUint truncates constants to uint32.
        let counter = a[0].as_int().unwrap_or(0) as u32;
        Ok(Value::string(derive_password(
            counter,
            st(&a[1]),
            st(&a[2]),
            st(&a[3]),
            st(&a[4]),
        )))
    });
    add("encryptAES", &[Str, Str], None, |a| {
        encrypt_aes(st(&a[0]), st(&a[1])).map(Value::string)
    });
    add("decryptAES", &[Str, Str], None, |a| {
        decrypt_aes(st(&a[0]), st(&a[1])).map(Value::string)
    });
    add("sha1sum", &[Str], None, |a| {
        vstr(hex(&sha1(&crate::value::go_bytes(s(&a[0])))))
    });
    add("sha256sum", &[Str], None, |a| {
        use sha2::Digest;
        vstr(hex(&sha2::Sha256::digest(crate::value::go_bytes(s(&a[0])))))
    });
    add("adler32sum", &[Str], None, |a| {
        vstr(adler32(&crate::value::go_bytes(s(&a[0]))).to_string())
    });
    add("randBytes", &[Int], None, |a| {
        let n = int(&a[0]).max(0) as usize;
        let mut b = vec![0u8; n];
        os_random(&mut b)?;
        vstr(b64enc(&b))
    });
    // random and ids (not deterministic; excluded from differential tests)
    add("uuidv4", &[], None, |_| vstr(uuidv4()?));
    // password hashes (random salt: not diff-tested; Go's x/crypto writes $2a$)
    add("bcrypt", &[Str], None, |a| vstr(bcrypt_2a(s(&a[0]))));
    add("htpasswd", &[Str, Str], None, |a| {
        let user = s(&a[0]);
        if user.contains(':') {
            return vstr(format!("invalid username: {user}"));
        }
        vstr(format!("{user}:{}", bcrypt_2a(s(&a[1]))))
    });
}

fn st(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    v.as_int().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_verifies() {
        let h = bcrypt_2a("s3cret");
        assert!(h.starts_with("$2a$10$"), "{h}");
        assert!(bcrypt::verify("s3cret", &h).unwrap());
        assert!(!bcrypt::verify("other", &h).unwrap());
    }

    #[test]
    fn pem_round_trip() {
        let p = pem_encode("X", &[1u8; 100]);
        assert!(p.starts_with("-----BEGIN X-----\n"));
        assert!(p.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_decode(&p), Some(("X".into(), vec![1u8; 100])));
    }

    #[test]
    fn der_tlv_rejects_truncation() {
        assert!(der_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert!(der_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert_eq!(
            der_tlv(&[0x04, 0x01, 0x07, 0x09]),
            Some((4, &[7u8][..], &[9u8][..]))
        );
    }

    #[test]
    fn keys_parse_back() {
        for typ in ["ecdsa", "ed25519"] {
            let pem = generate_private_key(typ);
            let k = parse_private_key_pem(&pem).unwrap();
            assert_eq!(k.pem(), pem, "{typ} re-marshals identically");
        }
        assert_eq!(generate_private_key("nope"), "Unknown type nope");
    }

    #[test]
    fn aes_round_trip_and_go_panics() {
        let c = encrypt_aes("k", "hello").unwrap();
        assert_eq!(decrypt_aes("k", &c).unwrap(), "hello");
        assert_eq!(
            decrypt_aes("k", "YWJj").unwrap_err(),
            "runtime error: slice bounds out of range [:16] with capacity 3"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Key, certificate and ciphertext parsing never panics on any bytes.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                               text in "\\PC{0,80}") {
            let _ = der_tlv(&bytes);
            let _ = pkcs8_parts(&bytes);
            let _ = pem_decode(&text);
            for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "X PRIVATE KEY", "CERTIFICATE"] {
                let pem = pem_encode(label, &bytes);
                let _ = parse_private_key_pem(&pem);
                let _ = build_custom_cert(&b64enc(pem.as_bytes()), &b64enc(pem.as_bytes()));
            }
            let _ = parse_private_key_pem(&text);
            let _ = build_custom_cert(&text, &text);
            let _ = decrypt_aes("k", &b64enc(&bytes));
            let _ = decrypt_aes(&text, &text);
        }
    }
}
