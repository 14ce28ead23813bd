//! The example repository (`examples/pipeline`) end to end, offline, with
//! `keel ci run`: lint (flake8) → unit tests (pytest) → `keel build` → push
//! to a real registry (docker-registry on 127.0.0.1) → `kubectl apply` to
//! staging on a `keel server` → integration test against staging → the job
//! for `production` waits until `keel ci approve` → deploy to production as
//! an Argo Rollout (canary with an analysis step) that reaches Healthy; a
//! second commit goes through the canary's steps and its analysis.

mod common;
mod server_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Keel, PruneNetworks, Registry};
use server_common::{FakeKubelet, KeelServer};

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

/// Runs git in `repo`, asserts success, returns stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// Commits everything; returns the commit's sha.
fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", message]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}

#[test]
fn example_pipeline_runs_offline_with_an_approval_for_production() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline");
    let repo = tempfile::Builder::new()
        .prefix("keel-pipeline-")
        .tempdir()
        .unwrap();
    copy_dir(&example, repo.path());
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let sha = commit(repo.path(), "example");
    let registry = Registry::start();
    let server = KeelServer::start(None);
    // The Rollout's pods turn Ready as on a node (the suite runs no agent).
    let _kubelet = FakeKubelet::start(&server, Duration::from_millis(200));
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
    let secrets = repo.path().join("../keel-pipeline-secrets");
    let kc = std::fs::read_to_string(&server.kubeconfig).unwrap();
    std::fs::write(
        &secrets,
        format!(
            "KUBECONFIG=\"{}\"\n",
            kc.replace('\n', "\\n").replace('"', "\\\"")
        ),
    )
    .unwrap();
    // `keel ci run` of the repository as run `n`: returns its output once
    // the production job waited for approval and was approved; `before`
    // checks the cluster while it waits.
    let run = |n: u32, before: &dyn Fn()| -> String {
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
            .arg(&secrets);
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let waiting = k
            .root
            .path()
            .join(format!("ci/runs/{n}/approvals/deploy-production.waiting"));
        let t = Instant::now();
        while !waiting.exists() {
            assert!(
                t.elapsed() < Duration::from_mins(4),
                "production never waited for approval"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        before();
        k.ok(&["ci", "approve", &n.to_string(), "deploy-production"]);
        let o = child.wait_with_output().unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{out}");
        out
    };
    let image = format!("{}/example/site:{sha}", registry.host());
    let out = run(1, &|| {
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
        assert!(kubectl(&["-n", "production", "get", "rollout", "site", "-o", "name"]).is_empty());
    });
    let rollout = |path: &str| {
        kubectl(&[
            "-n",
            "production",
            "get",
            "rollout",
            "site",
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
    };
    assert_eq!(rollout(".spec.template.spec.containers[0].image"), image);
    assert_eq!(rollout(".status.phase"), "Healthy");
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

    // A second commit: production goes through the canary's steps, its
    // analysis (keel's gateway metrics through keel's Prometheus API)
    // passes and the new version becomes stable.
    let first_stable = rollout(".status.stableRS");
    std::fs::write(repo.path().join("CHANGES"), "second\n").unwrap();
    let sha2 = commit(repo.path(), "second");
    let image2 = format!("{}/example/site:{sha2}", registry.host());
    run(2, &|| {});
    assert_eq!(rollout(".spec.template.spec.containers[0].image"), image2);
    assert_eq!(rollout(".status.phase"), "Healthy");
    assert_ne!(rollout(".status.stableRS"), first_stable);
    let runs = kubectl(&[
        "-n",
        "production",
        "get",
        "analysisruns",
        "-o",
        "jsonpath={range .items[*]}{.spec.metrics[0].name}={.status.phase}{\"\\n\"}{end}",
    ]);
    assert_eq!(runs.trim(), "error-rate=Successful", "{runs}");
    let _ = std::fs::remove_file(&secrets);
}
