//! The built-in `tls` provider (hashicorp/tls's resources and attribute
//! names): a CA, a server key and CSR signed by it, keys of the three
//! algorithms; what it makes is checked with openssl and ssh-keygen, and a
//! second plan has nothing to do.

use std::path::Path;
use std::process::{Command, Output};

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("infra")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keel")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tool(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
    ok(&o, cmd)
}

const MAIN: &str = r#"
resource "tls_private_key" "ca" {
  algorithm = "ECDSA"
  ecdsa_curve = "P256"
}
resource "tls_self_signed_cert" "ca" {
  private_key_pem = tls_private_key.ca.private_key_pem
  subject {
    common_name  = "keel test CA"
    organization = "keel"
  }
  validity_period_hours = 24
  is_ca_certificate     = true
  allowed_uses          = ["cert_signing", "crl_signing"]
}
resource "tls_private_key" "server" {
  algorithm = "RSA"
}
resource "tls_cert_request" "server" {
  private_key_pem = tls_private_key.server.private_key_pem
  subject {
    common_name = "server.example.test"
  }
  dns_names    = ["server.example.test"]
  ip_addresses = ["127.0.0.1"]
}
resource "tls_locally_signed_cert" "server" {
  cert_request_pem      = tls_cert_request.server.cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = 12
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth"]
}
resource "tls_private_key" "ssh" {
  algorithm = "ED25519"
}
data "tls_public_key" "server" {
  private_key_pem = tls_private_key.server.private_key_pem
}
output "ca" {
  value = tls_self_signed_cert.ca.cert_pem
}
output "server" {
  value = tls_locally_signed_cert.server.cert_pem
}
output "server_key" {
  value     = tls_private_key.server.private_key_pem
  sensitive = true
}
output "server_pub" {
  value = tls_private_key.server.public_key_pem
}
output "same_pub" {
  value = data.tls_public_key.server.public_key_pem == tls_private_key.server.public_key_pem
}
output "ssh_pub" {
  value = tls_private_key.ssh.public_key_openssh
}
output "ssh_key" {
  value     = tls_private_key.ssh.private_key_openssh
  sensitive = true
}
output "rsa_ssh_key" {
  value     = tls_private_key.server.private_key_openssh
  sensitive = true
}
output "rsa_ssh_pub" {
  value = tls_private_key.server.public_key_openssh
}
output "ec_ssh_key" {
  value     = tls_private_key.ca.private_key_openssh
  sensitive = true
}
output "ec_ssh_pub" {
  value = tls_private_key.ca.public_key_openssh
}
output "ssh_fp" {
  value = tls_private_key.ssh.public_key_fingerprint_sha256
}
output "rsa_bits" {
  value = tls_private_key.server.rsa_bits
}
"#;

#[test]
fn tls_provider_makes_what_openssl_accepts() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(d.join("main.tf"), MAIN).unwrap();
    ok(&keel(d, &["init", "-no-color"]), "init");
    let plan = ok(&keel(d, &["plan", "-no-color"]), "plan");
    assert!(
        plan.contains("Plan: 6 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    assert!(
        plan.contains("private_key_pem") && plan.contains("(sensitive value)"),
        "{plan}"
    );
    ok(&keel(d, &["apply", "-auto-approve", "-no-color"]), "apply");
    let out = |name: &str| ok(&keel(d, &["output", "-raw", name]), name);
    std::fs::write(d.join("ca.pem"), out("ca")).unwrap();
    std::fs::write(d.join("server.pem"), out("server")).unwrap();
    std::fs::write(d.join("server.key"), out("server_key")).unwrap();

    let v = tool(
        d,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "server.pem",
        ],
    );
    assert!(v.contains("server.pem: OK"), "{v}");
    let text = tool(
        d,
        "openssl",
        &["x509", "-in", "server.pem", "-noout", "-text"],
    );
    assert!(
        text.contains("DNS:server.example.test") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("CN = keel test CA"), "{text}");
    let ca = tool(d, "openssl", &["x509", "-in", "ca.pem", "-noout", "-text"]);
    assert!(ca.contains("CA:TRUE"), "{ca}");
    // The key matches its public half, in PKCS#1 as hashicorp/tls writes RSA keys.
    assert!(out("server_key").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let pubkey = tool(d, "openssl", &["pkey", "-in", "server.key", "-pubout"]);
    assert_eq!(pubkey, out("server_pub"));
    assert_eq!(out("same_pub"), "true");
    assert_eq!(out("rsa_bits"), "2048");
    // The OpenSSH key and its fingerprint are what ssh-keygen computes.
    let ssh = out("ssh_pub");
    assert!(ssh.starts_with("ssh-ed25519 "), "{ssh}");
    std::fs::write(d.join("id.pub"), &ssh).unwrap();
    let fp = tool(d, "ssh-keygen", &["-l", "-f", "id.pub"]);
    assert!(fp.contains(&out("ssh_fp")), "{fp} vs {}", out("ssh_fp"));
    // The OpenSSH private keys are ones ssh-keygen reads back to their public halves.
    for (key, public) in [
        ("ssh_key", "ssh_pub"),
        ("rsa_ssh_key", "rsa_ssh_pub"),
        ("ec_ssh_key", "ec_ssh_pub"),
    ] {
        let path = d.join(key);
        std::fs::write(&path, out(key)).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let derived = tool(d, "ssh-keygen", &["-y", "-f", key]);
        assert_eq!(derived.trim(), out(public).trim(), "{key}");
    }

    // Stable: a second plan has nothing to do; a changed validity replaces.
    let again = keel(d, &["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", ok(&again, "plan 2"));
    std::fs::write(
        d.join("main.tf"),
        MAIN.replace("validity_period_hours = 12", "validity_period_hours = 13"),
    )
    .unwrap();
    let re = ok(&keel(d, &["plan", "-no-color"]), "plan 3");
    assert!(
        re.contains("tls_locally_signed_cert.server must be replaced")
            && re.contains("Plan: 1 to add, 0 to change, 1 to destroy."),
        "{re}"
    );
    ok(
        &keel(d, &["destroy", "-auto-approve", "-no-color"]),
        "destroy",
    );
}

/// hashicorp/tls's default curve: `algorithm = "ECDSA"` without
/// `ecdsa_curve` is P224 (keel used to refuse it). openssl reads the key as
/// secp224r1, in SEC 1 and PKCS#8, with the public half keel gives; the
/// OpenSSH encodings are empty (OpenSSH has no P224), as the provider's are;
/// `tls_public_key` reads it back; signing a certificate with it is one
/// clear error.
#[test]
fn ecdsa_p224_the_default_curve() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    let main = r#"
resource "tls_private_key" "k" {
  algorithm = "ECDSA"
}
data "tls_public_key" "k" {
  private_key_pem = tls_private_key.k.private_key_pem
}
output "curve" {
  value = tls_private_key.k.ecdsa_curve
}
output "key" {
  value     = tls_private_key.k.private_key_pem
  sensitive = true
}
output "pkcs8" {
  value     = tls_private_key.k.private_key_pem_pkcs8
  sensitive = true
}
output "pub" {
  value = tls_private_key.k.public_key_pem
}
output "ssh" {
  value = "[${tls_private_key.k.public_key_openssh}]"
}
output "same" {
  value = data.tls_public_key.k.public_key_pem == tls_private_key.k.public_key_pem
}
"#;
    std::fs::write(d.join("main.tf"), main).unwrap();
    ok(&keel(d, &["init", "-no-color"]), "init");
    ok(&keel(d, &["apply", "-auto-approve", "-no-color"]), "apply");
    let out = |name: &str| ok(&keel(d, &["output", "-raw", name]), name);
    assert_eq!(out("curve"), "P224");
    assert!(out("key").starts_with("-----BEGIN EC PRIVATE KEY-----"));
    std::fs::write(d.join("k.pem"), out("key")).unwrap();
    std::fs::write(d.join("k8.pem"), out("pkcs8")).unwrap();
    let text = tool(d, "openssl", &["ec", "-in", "k.pem", "-noout", "-text"]);
    assert!(text.contains("secp224r1"), "{text}");
    for f in ["k.pem", "k8.pem"] {
        let public = tool(d, "openssl", &["pkey", "-in", f, "-pubout"]);
        assert_eq!(public, out("pub"), "{f}");
    }
    assert_eq!(out("ssh"), "[]");
    assert_eq!(out("same"), "true");
    let again = keel(d, &["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", ok(&again, "plan 2"));

    std::fs::write(
        d.join("main.tf"),
        format!(
            "{main}\nresource \"tls_self_signed_cert\" \"c\" {{\n  private_key_pem = tls_private_key.k.private_key_pem\n  validity_period_hours = 1\n  allowed_uses = [\"digital_signature\"]\n}}\n"
        ),
    )
    .unwrap();
    let o = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("P224") && err.contains("P256"), "{err}");
}
