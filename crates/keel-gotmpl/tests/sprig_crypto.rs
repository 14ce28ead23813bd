//! sprig's random crypto functions cannot be compared byte for byte with Go,
//! so the same templates run through keel and through Go (tests/goref) and
//! both outputs are checked structurally with the openssl CLI: subject, SANs,
//! validity, key usages, CA constraints, chain verification, key/cert match.
//! AES ciphertexts cross over: keel encrypts and Go decrypts, and vice versa.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Case, Outcome, run_go, run_keel};

fn case(tmpl: &str) -> Case {
    Case {
        name: "crypto".into(),
        tmpl: tmpl.into(),
        data: serde_json::Value::Null,
        ints: false,
        missing: keel_gotmpl::MissingKey::Invalid,
        loose_err: false,
    }
}

/// Renders with keel and with Go; both must succeed.
fn both(tmpl: &str) -> (String, String) {
    let c = case(tmpl);
    let k = run_keel(&c);
    let g = run_go(std::slice::from_ref(&c), 1).remove(0).0;
    let ok = |o: Outcome, who: &str| {
        assert!(o.err.is_none(), "{who} failed: {:?}", o.err);
        o.out
    };
    (ok(k, "keel"), ok(g, "go"))
}

/// A temp dir removed on drop, even when an assertion fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "keel-gotmpl-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(file)
        .output()
        .expect("run openssl (see scripts/lib.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The lines of `openssl x509 -text` that sprig's template determines.
fn summary(cert: &Path) -> Vec<String> {
    let (ok, text) = openssl(&["x509", "-noout", "-text"], cert);
    assert!(ok, "openssl cannot parse certificate: {text}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let keep_next = l.starts_with("X509v3 Key Usage")
            || l.starts_with("X509v3 Extended Key Usage")
            || l.starts_with("X509v3 Basic Constraints")
            || l.starts_with("X509v3 Subject Alternative Name");
        if keep_next {
            out.push(format!("{l} {}", lines.get(i + 1).unwrap_or(&"")));
        } else if l.starts_with("Subject:")
            || l.starts_with("Issuer:")
            || l.starts_with("Public Key Algorithm:")
            || l.contains("Public-Key:")
            || l.starts_with("Version:")
        {
            out.push((*l).to_string());
        }
    }
    // Extension order is not meaningful (Go writes SANs last, rcgen first).
    out.sort();
    out
}

/// Whether the certificate is still valid in `days` days (openssl -checkend).
fn valid_in_days(cert: &Path, days: i64) -> bool {
    openssl(
        &["x509", "-noout", "-checkend", &(days * 86_400).to_string()],
        cert,
    )
    .0
}

fn pubkey_of_cert(cert: &Path) -> String {
    let (ok, t) = openssl(&["x509", "-noout", "-pubkey"], cert);
    assert!(ok, "{t}");
    t
}

fn pubkey_of_key(key: &Path) -> String {
    let (ok, t) = openssl(&["pkey", "-pubout"], key);
    assert!(ok, "{t}");
    t
}

const BUNDLE: &str = r#"{{- $ca := genCA "keel-ca" 365 -}}
{{- $leaf := genSignedCert "svc.example" (list "10.1.2.3" "::1") (list "svc.example" "*.svc.example") 30 $ca -}}
{{- $self := genSelfSignedCert "self" (list "127.0.0.1") (list "localhost") 7 -}}
{{- $ek := genPrivateKey "ecdsa" -}}
{{- $eca := genCAWithKey "ec-ca" 10 $ek -}}
{{- $edk := genPrivateKey "ed25519" -}}
{{- $edleaf := genSignedCertWithKey "ed-leaf" nil (list "ed.example") 5 $eca $edk -}}
{{- $selfk := genSelfSignedCertWithKey "self-ec" (list "192.168.0.1") nil 2 $ek -}}
{{ $ca.Cert }}@@{{ $ca.Key }}@@{{ $leaf.Cert }}@@{{ $leaf.Key }}@@{{ $self.Cert }}@@{{ $self.Key }}@@{{ $eca.Cert }}@@{{ $eca.Key }}@@{{ $edleaf.Cert }}@@{{ $edleaf.Key }}@@{{ $selfk.Cert }}@@{{ $selfk.Key }}"#;

const NAMES: [&str; 12] = [
    "ca.crt",
    "ca.key",
    "leaf.crt",
    "leaf.key",
    "self.crt",
    "self.key",
    "eca.crt",
    "eca.key",
    "edleaf.crt",
    "edleaf.key",
    "selfk.crt",
    "selfk.key",
];

/// Checks one rendered bundle; returns the certificate summaries for comparison.
fn check_bundle(who: &str, out: &str) -> Vec<Vec<String>> {
    let parts: Vec<&str> = out.split("@@").collect();
    assert_eq!(parts.len(), NAMES.len(), "{who}: {out}");
    let dir = TempDir::new(who);
    let files: Vec<PathBuf> = NAMES
        .iter()
        .zip(&parts)
        .map(|(n, p)| dir.write(n, p))
        .collect();
    let f = |n: &str| &files[NAMES.iter().position(|x| *x == n).unwrap()];

    // Every key belongs to its certificate.
    for pair in NAMES.chunks(2) {
        assert_eq!(
            pubkey_of_cert(f(pair[0])),
            pubkey_of_key(f(pair[1])),
            "{who}: {} does not match {}",
            pair[1],
            pair[0]
        );
    }
    // Key formats as sprig writes them.
    assert!(
        parts[1].starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "{who}"
    );
    assert!(
        parts[7].starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
        "{who}"
    );
    assert!(
        parts[9].starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{who}"
    );
    // Chains verify; a leaf is not its own CA.
    for (ca, leaf) in [("ca.crt", "leaf.crt"), ("eca.crt", "edleaf.crt")] {
        let st = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(f(ca))
            .arg(f(leaf))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{who}: {leaf} does not verify against {ca}: {}",
            String::from_utf8_lossy(&st.stdout)
        );
    }
    let st = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(f("leaf.crt"))
        .arg(f("self.crt"))
        .output()
        .unwrap();
    assert!(
        !st.status.success(),
        "{who}: self.crt verified against leaf"
    );
    // Validity windows in days.
    for (n, days) in [
        ("ca.crt", 365),
        ("leaf.crt", 30),
        ("self.crt", 7),
        ("eca.crt", 10),
        ("edleaf.crt", 5),
        ("selfk.crt", 2),
    ] {
        assert!(
            valid_in_days(f(n), days - 1),
            "{who}: {n} expires too early"
        );
        assert!(!valid_in_days(f(n), days + 1), "{who}: {n} lives too long");
    }
    let sums: Vec<Vec<String>> = NAMES.iter().step_by(2).map(|n| summary(f(n))).collect();
    let leaf = sums[1].join("\n");
    assert!(
        leaf.contains("Subject: CN=svc.example") || leaf.contains("Subject: CN = svc.example"),
        "{who}: {leaf}"
    );
    assert!(
        leaf.contains(
            "DNS:svc.example, DNS:*.svc.example, IP Address:10.1.2.3, IP Address:0:0:0:0:0:0:0:1"
        ),
        "{who}: {leaf}"
    );
    assert!(leaf.contains("CA:FALSE"), "{who}: {leaf}");
    assert!(
        sums[0].join("\n").contains("CA:TRUE"),
        "{who}: {:?}",
        sums[0]
    );
    sums
}

#[test]
fn certificates_have_sprigs_shape_in_keel_and_go() {
    let (keel, go) = both(BUNDLE);
    let k = check_bundle("keel", &keel);
    let g = check_bundle("go", &go);
    assert_eq!(
        k, g,
        "openssl reads keel's and Go's certificates differently"
    );
}

#[test]
fn private_keys_parse_like_gos() {
    let tmpl = r#"{{ genPrivateKey "rsa" }}@@{{ genPrivateKey "ecdsa" }}@@{{ genPrivateKey "ed25519" }}@@{{ genPrivateKey "" }}"#;
    let (keel, go) = both(tmpl);
    let describe = |who: &str, out: &str| -> Vec<String> {
        let dir = TempDir::new(&format!("keys-{who}"));
        out.split("@@")
            .enumerate()
            .map(|(i, pem)| {
                let p = dir.write(&format!("k{i}.pem"), pem);
                let (ok, text) = openssl(&["pkey", "-noout", "-text"], &p);
                assert!(ok, "{who}: openssl rejects key {i}: {text}");
                let first = text.lines().next().unwrap_or("").to_string();
                let label = pem.lines().next().unwrap_or("").to_string();
                let curve = text
                    .lines()
                    .find(|l| l.starts_with("ASN1 OID:"))
                    .unwrap_or("")
                    .to_string();
                format!("{label} | {first} | {curve}")
            })
            .collect()
    };
    let k = describe("keel", &keel);
    assert_eq!(k, describe("go", &go));
    assert!(
        k[0].contains("RSA PRIVATE KEY") && k[0].contains("4096 bit"),
        "{k:?}"
    );
    assert!(
        k[1].contains("EC PRIVATE KEY") && k[1].contains("prime256v1"),
        "{k:?}"
    );
    assert!(
        k[2].contains("BEGIN PRIVATE KEY") && k[2].contains("ED25519"),
        "{k:?}"
    );
}

#[test]
fn aes_ciphertexts_cross_between_keel_and_go() {
    let plain = "webhook secret ✓ with more than one block of text";
    let enc = format!("{{{{ encryptAES \"pw\" {plain:?} }}}}");
    let (keel_ct, go_ct) = both(&enc);
    assert_ne!(keel_ct, go_ct, "random IVs");
    for ct in [&keel_ct, &go_ct] {
        let (k, g) = both(&format!("{{{{ decryptAES \"pw\" {ct:?} }}}}"));
        assert_eq!(k, plain);
        assert_eq!(g, plain);
    }
}

#[test]
fn get_host_by_name_resolves_localhost_only_locally() {
    // Only names the local resolver answers from /etc/hosts (network rule).
    let (k, g) = both(r#"{{ getHostByName "localhost" }}"#);
    for ip in [k, g] {
        assert!(ip == "127.0.0.1" || ip == "::1", "{ip}");
    }
}
