//! nektos/act's own runner cases (../shared/conformance/act, `cases.tsv`),
//! the host-mode rows (`TestRunEventHostEnvironment`, `-P LABEL=-self-hosted`)
//! run with `keel ci run`: each must succeed or fail as act's test expects.
//!
//! The testdata is copied to a temporary git repository whose origin is
//! nektos/act (where act's tests run; some workflows check
//! `github.repository_owner`), and keel is given act's default actor
//! (`--actor nektos/act`).
//!
//! Which rows do not run, and why:
//! - the 5 Windows rows (`windows-*`): they need Windows (cmd, PowerShell 5);
//! - `shells/pwsh`: there is no `pwsh` on this machine, and its container
//!   job needs an image from a registry;
//! - `local-action-js`: its JavaScript action's `dist/index.js` is not in the
//!   conformance data (left out upstream, see its README);
//! - `remote-action-js`, `issue-597`, `issue-598`,
//!   `uses-action-with-pre-and-post-step`: they use actions from GitHub
//!   (`actions/hello-world-javascript-action`, `nektos/act-test-actions`),
//!   which need the network;
//! - `uses-nested-composite`: its composite action runs
//!   `actions/setup-node` with node-version 16; keel's offline setup-node
//!   uses the installed node (20 here) and fails clearly on a mismatch.
//!
//! And which run partly: `shells/{defaults,bash,python,sh}` without their
//! `check-container` job, whose image (alpine, node:16-buster) would come
//! from a registry.
//!
//! All 9 dry-run rows (`TestDryrunEvent`, `-n`) run too: nothing executes,
//! so their images and remote actions are not needed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Keel;

const EXCLUDED: &[(&str, &str)] = &[
    (
        "shells/pwsh",
        "no pwsh here; container job needs a registry image",
    ),
    (
        "local-action-js",
        "dist/index.js fixture not in the conformance data",
    ),
    ("remote-action-js", "remote action from GitHub (network)"),
    ("issue-597", "remote action from GitHub (network)"),
    ("issue-598", "remote action from GitHub (network)"),
    (
        "uses-action-with-pre-and-post-step",
        "remote action from GitHub (network)",
    ),
    (
        "uses-nested-composite",
        "asks setup-node for node 16; installed node differs",
    ),
];

/// ../shared/conformance/SUB from an ancestor of the repo, or `KEEL_CONFORMANCE`.
fn conformance_dir(sub: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_default()
        },
        |c| std::path::PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}

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
fn act_host_environment_cases() {
    let data = conformance_dir("act");
    let cases = std::fs::read_to_string(data.join("cases.tsv")).unwrap();
    let repo = tempfile::Builder::new()
        .prefix("keel-act-")
        .tempdir()
        .unwrap();
    copy_dir(&data.join("pkg/runner/testdata"), repo.path());
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "-b", "master"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/nektos/act.git",
    ]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "add",
        "-A",
    ]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "testdata",
    ]);
    let k = Keel::new();
    let (mut ran, mut failures, mut excluded, mut windows) = (0, Vec::new(), 0, 0);
    for line in cases.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() != Some(&"TestRunEventHostEnvironment") {
            continue;
        }
        let (workflow, event, expected_error, platforms) = (f[2], f[3], f[4], f[5]);
        if platforms.contains("windows-latest") {
            windows += 1;
            continue;
        }
        if EXCLUDED.iter().any(|(w, _)| *w == workflow) {
            excluded += 1;
            continue;
        }
        let partial = workflow.starts_with("shells/");
        let jobs: Vec<Option<&str>> = if partial {
            vec![Some("check"), Some("check-job-default")]
        } else {
            vec![None]
        };
        for job in jobs {
            if let Some(j) = job
                && !std::fs::read_to_string(repo.path().join(workflow).join("push.yml"))
                    .unwrap_or_default()
                    .contains(&format!("  {j}:"))
            {
                continue;
            }
            let mut c = k.cmd();
            c.args(["ci", "run", event, "-C"]).arg(repo.path()).args([
                "-W",
                workflow,
                "--actor",
                "nektos/act",
            ]);
            for p in platforms.split(';') {
                c.args(["-P", p]);
            }
            if let Some(j) = job {
                c.args(["-j", j]);
            }
            let o = c.stdin(Stdio::null()).output().unwrap();
            ran += 1;
            let ok = o.status.success();
            if ok != expected_error.is_empty() {
                failures.push(format!(
                    "{workflow} {job:?}: act expects {}, keel {}\n{}{}",
                    if expected_error.is_empty() {
                        "success".to_string()
                    } else {
                        format!("failure ({expected_error})")
                    },
                    if ok { "succeeded" } else { "failed" },
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
    }
    // act's dry-run rows (`TestDryrunEvent`): planned and walked, nothing
    // runs, so no image or network is needed: all 9 run.
    let mut dry = 0;
    for line in cases.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() != Some(&"TestDryrunEvent") {
            continue;
        }
        let (workflow, event, expected_error, platforms) = (f[2], f[3], f[4], f[5]);
        let mut c = k.cmd();
        c.args(["ci", "run", event, "-n", "-C"])
            .arg(repo.path())
            .args(["-W", workflow, "--actor", "nektos/act"]);
        for p in platforms.split(';') {
            c.args(["-P", p]);
        }
        let o = c.stdin(Stdio::null()).output().unwrap();
        dry += 1;
        if o.status.success() != expected_error.is_empty() {
            failures.push(format!(
                "dry run {workflow}: keel {}\n{}{}",
                if o.status.success() {
                    "succeeded"
                } else {
                    "failed"
                },
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    assert_eq!(dry, 9);
    eprintln!(
        "act host cases: {ran} runs, {excluded} rows excluded (see the module docs), {windows} Windows rows; {dry} dry-run rows"
    );
    assert_eq!(windows, 5);
    assert!(ran >= 35, "only {ran} runs");
    assert!(
        failures.is_empty(),
        "{} of {ran} differ from act:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
