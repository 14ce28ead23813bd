//! `docker_registry_image` (kreuzwerker/docker's schema) against a real
//! docker-registry on 127.0.0.1 (delete enabled): apply pushes the local
//! image with keel's push code and records the digest the registry serves
//! (checked with skopeo); a second plan has nothing to do; destroy deletes
//! the manifest unless `keep_remotely`; a manifest deleted behind keel's
//! back drops out of state on refresh.

mod common;

use std::process::Output;

use common::{Keel, Registry, skopeo, skopeo_digest};

fn infra(k: &Keel, dir: &std::path::Path, args: &[&str]) -> Output {
    k.cmd()
        .arg("infra")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn ok(k: &Keel, dir: &std::path::Path, args: &[&str]) -> String {
    let o = infra(k, dir, args);
    assert!(
        o.status.success(),
        "keel infra {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn gone(reference: &str) -> bool {
    let o = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    !o.status.success() && err.contains("manifest unknown")
}

fn delete_behind_keels_back(reference: &str) {
    let o = skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn docker_registry_image_pushes_tracks_digest_and_deletes_unless_kept() {
    let reg = Registry::start();
    let k = Keel::new();
    k.seed_busybox();
    let dropped = format!("{}/kid/dropped:1", reg.host());
    let kept = format!("{}/kid/kept:1", reg.host());
    k.ok(&["tag", "busybox", &dropped]);
    k.ok(&["tag", "busybox", &kept]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("main.tf"),
        format!(
            r#"
resource "docker_registry_image" "dropped" {{
  name = "{dropped}"
}}

resource "docker_registry_image" "kept" {{
  name          = "{kept}"
  keep_remotely = true
}}

output "digest" {{
  value = docker_registry_image.dropped.sha256_digest
}}
"#
        ),
    )
    .unwrap();
    ok(&k, d, &["init"]);
    let plan = ok(&k, d, &["plan"]);
    assert!(
        plan.lines()
            .any(|l| l.contains("+ sha256_digest") && l.ends_with("= (known after apply)")),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );

    ok(&k, d, &["apply", "-auto-approve"]);
    let out = ok(&k, d, &["output", "-raw", "digest"]);
    assert!(out.starts_with("sha256:"), "{out}");
    // What the registry serves, as another client sees it.
    assert_eq!(skopeo_digest(&dropped), out);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("terraform.tfstate")).unwrap())
            .unwrap();
    let kept_digest = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kept")
        .map(|r| r["instances"][0]["attributes"]["sha256_digest"].clone())
        .unwrap();
    assert_eq!(kept_digest.as_str(), Some(skopeo_digest(&kept).as_str()));

    let again = infra(&k, d, &["plan", "-detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );

    ok(&k, d, &["destroy", "-auto-approve"]);
    assert!(gone(&dropped), "{dropped} is still in the registry");
    // keep_remotely: the manifest stays (and the test cleans it up itself).
    assert_eq!(skopeo_digest(&kept), kept_digest.as_str().unwrap());
    delete_behind_keels_back(&kept);
    assert!(gone(&kept));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("terraform.tfstate")).unwrap())
            .unwrap();
    assert_eq!(state["resources"].as_array().map(Vec::len), Some(0));

    // Deleted behind keel's back: refresh drops it, the plan creates it again.
    ok(&k, d, &["apply", "-auto-approve"]);
    delete_behind_keels_back(&dropped);
    let plan = ok(&k, d, &["plan"]);
    assert!(
        plan.contains("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    ok(&k, d, &["destroy", "-auto-approve"]);
    assert!(gone(&dropped));
    delete_behind_keels_back(&kept);
}

#[test]
fn docker_registry_image_without_the_local_image_fails_naming_it() {
    let reg = Registry::start();
    let k = Keel::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        format!(
            "resource \"docker_registry_image\" \"r\" {{\n  name = \"{}/kid/none:1\"\n}}\n",
            reg.host()
        ),
    )
    .unwrap();
    let o = infra(&k, dir.path(), &["apply", "-auto-approve"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pushing") && err.contains("kid/none:1") && err.contains("no such image"),
        "{err}"
    );
}

/// Regression: with Docker's token auth a DELETE needs a token for the
/// `delete` action, which a push token does not carry.
#[test]
fn docker_registry_image_with_token_auth_pushes_and_deletes() {
    let reg = common::TokenRegistry::start("alice", "s3cret");
    let k = Keel::new();
    k.seed_busybox();
    let target = format!("{}/kid/tok:1", reg.registry.host());
    k.ok(&["tag", "busybox", &target]);
    k.ok(&["login", "-u", "alice", "-p", "s3cret", &reg.registry.host()]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("main.tf"),
        format!(
            "resource \"docker_registry_image\" \"r\" {{\n  name = \"{target}\"\n}}\noutput \"digest\" {{\n  value = docker_registry_image.r.sha256_digest\n}}\n"
        ),
    )
    .unwrap();
    ok(&k, d, &["apply", "-auto-approve"]);
    let digest = ok(&k, d, &["output", "-raw", "digest"]);
    let inspect = |creds: &str| {
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            creds,
            &format!("docker://{target}"),
        ])
    };
    let o = inspect("alice:s3cret");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(digest.as_str()));
    ok(&k, d, &["destroy", "-auto-approve"]);
    let o = inspect("alice:s3cret");
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
