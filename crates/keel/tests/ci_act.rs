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
//!
//! `act_one_off_cases` runs act's single-purpose rows, on the host where
//! act's test names a `node:24-bookworm-slim` image (it would come from a
//! registry): secrets and env from dotenv files (`TestRunEventSecrets`),
//! `--input` (`TestRunActionInputs`), an event payload (`-e`,
//! `TestRunEventPullRequest`), `--matrix` (`TestRunMatrixWithUserDefinedInclusions`),
//! masking (`TestMaskValues`), a failing post step (`TestPullAndPostStepFailureIsJobFailure`,
//! with our own two-line JavaScript fixture since act's is not in the data),
//! a remote action that cannot be fetched (`TestFetchFailureIsJobFailure`) and
//! 8 of the 9 `TestJobExecutor` rows (`uses:`/step validation, dry run).
//! `uses-github-short-sha` does not run: act tells a short commit SHA from a
//! branch or tag by asking GitHub for the repository's refs (network).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Keel, PruneNetworks};

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

/// act's runner testdata in a temporary git repository whose origin is nektos/act.
fn act_repo(data: &Path) -> tempfile::TempDir {
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
    repo
}

/// The rows of cases.tsv whose first column is `func`, split on tabs.
fn rows<'a>(cases: &'a str, func: &str) -> Vec<Vec<&'a str>> {
    cases
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&func))
        .collect()
}

#[test]
fn act_host_environment_cases() {
    let data = conformance_dir("act");
    let cases = std::fs::read_to_string(data.join("cases.tsv")).unwrap();
    let repo = act_repo(&data);
    let k = Keel::new();
    let _prune = PruneNetworks(&k);
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

/// act's single-purpose rows (see the module docs): each run succeeds or
/// fails as act's test expects, plus the check act's test makes on its log.
#[test]
fn act_one_off_cases() {
    let data = conformance_dir("act");
    let cases = std::fs::read_to_string(data.join("cases.tsv")).unwrap();
    let repo = act_repo(&data);
    let r = repo.path();
    // act's JavaScript fixture for the failing post step is not in the
    // conformance data: ours runs its main and fails in its post step.
    let action = r.join("post-step-failure-is-job-failure/post-step-failure");
    std::fs::write(action.join("main.js"), "console.log('main ran');\n").unwrap();
    std::fs::write(
        action.join("post.js"),
        "console.log('post step fails');\nprocess.exit(1);\n",
    )
    .unwrap();
    let at = |p: &str| r.join(p).to_string_lossy().to_string();
    let k = Keel::new();
    let _prune = PruneNetworks(&k);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    let funcs: &[(&str, Vec<String>)] = &[
        (
            "TestRunEventSecrets",
            vec![
                "--secret-file".into(),
                at("secrets/.secrets"),
                "--env-file".into(),
                at("secrets/.env"),
            ],
        ),
        (
            "TestRunActionInputs",
            vec!["--input".into(), "SOME_INPUT=input".into()],
        ),
        (
            "TestRunEventPullRequest",
            vec!["-e".into(), at("pull-request/event.json")],
        ),
        (
            "TestRunMatrixWithUserDefinedInclusions",
            ["node:8", "node:8.x", "os:ubuntu-18.04"]
                .iter()
                .flat_map(|m| ["--matrix".to_string(), (*m).to_string()])
                .collect(),
        ),
        ("TestMaskValues", vec![]),
        ("TestPullAndPostStepFailureIsJobFailure", vec![]),
        ("TestFetchFailureIsJobFailure", vec![]),
        ("TestJobExecutor", vec!["-n".into()]),
    ];
    for (func, extra) in funcs {
        for f in rows(&cases, func) {
            let (workflow, event, expected_error, platforms) = (f[2], f[3], f[4], f[5]);
            if workflow == "uses-github-short-sha" {
                continue;
            }
            let mut c = k.cmd();
            c.args(["ci", "run", event, "-C"])
                .arg(r)
                .args(["-W", workflow, "--actor", "nektos/act"])
                .args(extra);
            for p in platforms.split(';') {
                // The image act's test names would come from a registry.
                c.args(["-P", &p.replace("node:24-bookworm-slim", "-self-hosted")]);
            }
            let o = c.stdin(Stdio::null()).output().unwrap();
            let out = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            ran.push(format!("{func} {workflow}"));
            if o.status.success() != expected_error.is_empty() {
                failures.push(format!(
                    "{func} {workflow}: act expects {}, keel {}\n{out}",
                    if expected_error.is_empty() {
                        "success".to_string()
                    } else {
                        format!("failure ({expected_error})")
                    },
                    if o.status.success() {
                        "succeeded"
                    } else {
                        "failed"
                    },
                ));
                continue;
            }
            // What act's test checks beyond the exit status.
            let check = match (*func, workflow) {
                // Never printed once masked (the `::add-mask::` step's
                // own title shows it, as on GitHub: the mask is not set yet).
                ("TestMaskValues", _) => {
                    out.matches("secret value").count()
                        == out.matches("Run echo \"::add-mask::secret value\"").count()
                        && !out.contains("YWJjCg==")
                }
                // Only the filtered combinations run (act's selectMatrixes).
                ("TestRunMatrixWithUserDefinedInclusions", _) => {
                    out.contains("PHP ubuntu-18.04 8")
                        && out.contains("(8.x)")
                        && !out.contains("ubuntu-16.04")
                        && !out.contains("macos-latest")
                        && !out.contains("10.x")
                }
                ("TestPullAndPostStepFailureIsJobFailure", "post-step-failure-is-job-failure") => {
                    out.contains("main ran") && out.contains("post step fails")
                }
                _ => true,
            };
            if !check {
                failures.push(format!("{func} {workflow}: act's log check fails\n{out}"));
            }
        }
    }
    eprintln!("act one-off rows: {}", ran.join(", "));
    assert_eq!(ran.len(), 16, "{ran:?}");
    assert!(
        failures.is_empty(),
        "{} of {} differ from act:\n{}",
        failures.len(),
        ran.len(),
        failures.join("\n\n")
    );
}
