//! The example repository (`examples/pipeline`) end to end, offline, with
//! `keel ci run`: lint (flake8) → unit tests (pytest) → `keel build` → push
//! to a real registry (docker-registry on 127.0.0.1) → `kubectl apply` to
//! staging on a `keel server` → integration test against staging → the job
//! for `production` waits until `keel ci approve` → deploy to production.

mod common;
mod server_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Keel, PruneNetworks, Registry};
use server_common::KeelServer;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

#[test]
fn example_pipeline_runs_offline_with_an_approval_for_production() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline");
    let repo = tempfile::Builder::new()
        .prefix("keel-pipeline-")
        .tempdir()
        .unwrap();
    copy_dir(&example, repo.path());
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "add",
            "-A",
        ],
        &[
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-qm",
            "example",
        ],
    ] {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
    let sha = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let registry = Registry::start();
    let server = KeelServer::start(None);
    let kubectl = |args: &[&str]| {
        let o = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", server.home.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let k = Keel::new();
    let _prune = PruneNetworks(&k);
    k.seed_busybox();
    k.ok(&["ci", "environment", "protect", "production"]);
    let keel_dir = Path::new(env!("CARGO_BIN_EXE_keel"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        keel_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = k.cmd();
    c.env("PATH", &path)
        .args(["ci", "run", "-C"])
        .arg(repo.path())
        .args([
            "-P",
            "ubuntu-latest=-self-hosted",
            "--var",
            &format!("REGISTRY={}", registry.host()),
        ])
        .arg("--secret-file")
        .arg(&{
            let f = repo.path().join("../keel-pipeline-secrets");
            let kc = std::fs::read_to_string(&server.kubeconfig).unwrap();
            std::fs::write(
                &f,
                format!(
                    "KUBECONFIG=\"{}\"\n",
                    kc.replace('\n', "\\n").replace('"', "\\\"")
                ),
            )
            .unwrap();
            f
        });
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = k
        .root
        .path()
        .join("ci/runs/1/approvals/deploy-production.waiting");
    let t = Instant::now();
    while !waiting.exists() {
        assert!(
            t.elapsed() < Duration::from_mins(4),
            "production never waited for approval"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let image = format!("{}/example/site:{sha}", registry.host());
    // Staging runs the pushed image; production has nothing yet.
    let staged = kubectl(&[
        "-n",
        "staging",
        "get",
        "deployment",
        "site",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(staged, image);
    assert!(
        kubectl(&[
            "-n",
            "production",
            "get",
            "deployment",
            "site",
            "-o",
            "name"
        ])
        .is_empty()
    );
    k.ok(&["ci", "approve", "1", "deploy-production"]);
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    let deployed = kubectl(&[
        "-n",
        "production",
        "get",
        "deployment",
        "site",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(deployed, image);
    // The kubeconfig (a secret) never shows, not even its credential (the
    // admin's client key, or a token where a kubeconfig holds one).
    let kc = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let credential = kc
        .lines()
        .find_map(|line| {
            let line = line.trim();
            line.strip_prefix("client-key-data: ")
                .or_else(|| line.strip_prefix("token: "))
        })
        .unwrap_or_default();
    assert!(!credential.is_empty(), "no credential in {kc}");
    assert!(!out.contains(credential), "credential leaked");
    let view = k.ok(&["ci", "view", "1"]);
    for job in [
        "lint",
        "unit-test",
        "build",
        "push",
        "deploy-staging",
        "integration-test",
        "deploy-production",
    ] {
        assert!(view.contains(&format!("✓ {job} success")), "{job}: {view}");
    }
    let summary = std::fs::read_to_string(
        k.root
            .path()
            .join("ci/runs/1/summaries/deploy-production.md"),
    )
    .unwrap();
    assert!(
        summary.contains(&format!("Deployed {image} to production")),
        "{summary}"
    );
    let _ = std::fs::remove_file(repo.path().join("../keel-pipeline-secrets"));
}
