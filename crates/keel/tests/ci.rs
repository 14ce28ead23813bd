//! `keel ci` end to end on the host (`-P ubuntu-latest=-self-hosted`): each
//! test writes a small repository with workflows, runs the real binary and
//! checks exit code, output, stored logs/summaries/artifacts. Container
//! jobs and services are in `ci_containers.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Keel;

/// A git repository with files.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("keel-ci-repo-")
            .tempdir()
            .unwrap();
        for (p, c) in files {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, c).unwrap();
        }
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        git(&["init", "-q", "-b", "main"]);
        git(&[
            "-c",
            "user.name=tester",
            "-c",
            "user.email=t@example.com",
            "add",
            "-A",
        ]);
        git(&[
            "-c",
            "user.name=tester",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "init",
        ]);
        Repo { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn ci(k: &Keel, repo: &Repo, extra: &[&str]) -> Output {
    let mut c = k.cmd();
    c.args(["ci", "run", "-C"])
        .arg(repo.path())
        .args(["-P", "ubuntu-latest=-self-hosted"])
        .args(extra);
    c.stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `keel ci run` in the background (host mode).
fn spawn_ci(k: &Keel, repo: &Repo) -> std::process::Child {
    let mut c = k.cmd();
    c.args(["ci", "run", "-C"])
        .arg(repo.path())
        .args(["-P", "ubuntu-latest=-self-hosted"]);
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `file` contains `text`.
fn wait_for(file: &Path, text: &str) {
    let t = Instant::now();
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{text:?} never showed in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_dir(k: &Keel, n: u32) -> PathBuf {
    k.root.path().join("ci/runs").join(n.to_string())
}

#[test]
fn matrix_needs_outputs_and_exit_code() {
    let repo = Repo::new(&[(
        ".github/workflows/ci.yml",
        r#"name: CI
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [a, b]
        n: [1, 2]
        include:
          - os: c
            n: 9
        exclude:
          - os: b
            n: 2
    outputs:
      last: ${{ steps.s.outputs.value }}
    steps:
      - id: s
        run: echo "value=${{ matrix.os }}${{ matrix.n }}" >> "$GITHUB_OUTPUT"
      - run: echo "combo ${{ matrix.os }}-${{ matrix.n }} of ${{ strategy.job-total }}"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "build said ${{ needs.build.outputs.last }} result ${{ needs.build.result }}"
          test "${{ needs.build.result }}" = success
  skipped:
    needs: test
    if: github.ref == 'refs/heads/other'
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
"#,
    )]);
    let k = Keel::new();
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for combo in ["a-1 of 4", "a-2 of 4", "b-1 of 4", "c-9 of 4"] {
        assert!(
            out.contains(&format!("combo {combo}")),
            "missing {combo}: {out}"
        );
    }
    assert!(!out.contains("combo b-2"), "{out}");
    assert!(
        out.contains("build said") && out.contains("result success"),
        "{out}"
    );
    assert!(
        out.contains("[CI/build (a, 1)]"),
        "act-style job prefix: {out}"
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&k, 1).join("run.json")).unwrap()).unwrap();
    assert_eq!(rec["conclusion"], "success");
    let skipped = rec["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "skipped")
        .unwrap();
    assert_eq!(skipped["result"], "skipped");

    // A failing step fails the job, skips what needs it, and the exit code says so.
    let repo = Repo::new(&[(
        ".github/workflows/f.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 3\n      - run: echo never\n      - if: failure()\n        run: echo cleanup-ran\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo b-ran\n",
    )]);
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("| cleanup-ran") && !out.contains("| never") && !out.contains("b-ran"),
        "{out}"
    );
    let view = k.ok(&["ci", "view", "2"]);
    assert!(
        view.contains("✗ a failure") && view.contains("- b skipped"),
        "{view}"
    );
}

#[test]
fn runner_files_and_commands() {
    let repo = Repo::new(&[(
        ".github/workflows/c.yml",
        r###"on: push
env:
  WF: wf
jobs:
  c:
    runs-on: ubuntu-latest
    env:
      JOB: job
    steps:
      - shell: bash
        run: |
          echo "A=1" >> "$GITHUB_ENV"
          { echo "MULTI<<EOF"; echo "line1"; echo "line2"; echo "EOF"; } >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\necho from-path\n' > "$RUNNER_TEMP/bin/mytool" && chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          { echo "out<<X"; echo "o1"; echo "o2"; echo "X"; } >> "$GITHUB_OUTPUT"
          echo "## Summary for $WF" >> "$GITHUB_STEP_SUMMARY"
        id: first
      - run: |
          test "$A" = 1 && test "$WF" = wf && test "$JOB" = job
          test "$MULTI" = "$(printf 'line1\nline2')"
          mytool
          echo "outputs: ${{ steps.first.outputs.out }}" | tr '\n' ' '; echo
          echo "::add-mask::hide-me-please"
          echo "value hide-me-please here"
          echo "::error file=app.js,line=3,col=5::broken thing"
          echo "::warning::careful"
          echo "::group::G1"
          echo "::stop-commands::tok123"
          echo "::error::not a command now"
          echo "::tok123::"
          test "$GITHUB_WORKSPACE" = "${{ github.workspace }}" && test -n "$RUNNER_TEMP" && test "$CI" = true
          test "$GITHUB_EVENT_NAME" = push && test "$GITHUB_REF" = refs/heads/main
      - run: echo "env step ${{ env.A }} $STEP"
        env:
          STEP: s
      - run: sleep 20
        timeout-minutes: 0.02
        continue-on-error: true
      - run: echo "after timeout ${{ steps.x.outcome }}"
"###,
    )]);
    let k = Keel::new();
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("from-path"), "{out}");
    assert!(out.contains("outputs: o1 o2"), "{out}");
    assert!(
        out.contains("value *** here") && !out.contains("hide-me-please"),
        "{out}"
    );
    assert!(out.contains("error: app.js:3:5: broken thing"), "{out}");
    assert!(out.contains("warning: careful"), "{out}");
    assert!(
        out.contains("::error::not a command now"),
        "stop-commands: {out}"
    );
    assert!(out.contains("env step 1 s"), "{out}");
    assert!(out.contains("The step has timed out"), "{out}");
    let summary = std::fs::read_to_string(run_dir(&k, 1).join("summaries/c.md")).unwrap();
    assert_eq!(summary.trim(), "## Summary for wf");
    let logs = k.ok(&["ci", "logs", "1", "c"]);
    assert!(
        logs.contains("value *** here") && !logs.contains("hide-me-please"),
        "{logs}"
    );
}

#[test]
fn secrets_are_masked_in_every_form_and_place() {
    let repo = Repo::new(&[(
        ".github/workflows/s.yml",
        r#"on: push
jobs:
  s:
    runs-on: ubuntu-latest
    outputs:
      leaked: ${{ steps.o.outputs.v }}
    steps:
      - id: o
        run: |
          echo "plain $TOKEN"
          printf '%s' "$TOKEN" | base64
          printf 'x%s' "$TOKEN" | base64
          printf 'xy%s' "$TOKEN" | base64
          printf 'user:%s\n' "$TOKEN" | base64
          python3 -c 'import json,os; print(json.dumps({"t": os.environ["TOKEN"]}))'
          python3 -c 'import urllib.parse,os; print(urllib.parse.quote(os.environ["TOKEN"], safe=""))'
          printf '%q\n' "$TOKEN"
          echo "$MULTI"
          echo "v=$TOKEN" >> "$GITHUB_OUTPUT"
          echo "secret in summary $TOKEN" >> "$GITHUB_STEP_SUMMARY"
          printf 'artifact %s\n' "$TOKEN" > art.txt
        shell: bash
        env:
          TOKEN: ${{ secrets.TOKEN }}
          MULTI: ${{ secrets.MULTI }}
      - uses: actions/upload-artifact@v4
        with:
          name: leak
          path: art.txt
"#,
    )]);
    let k = Keel::new();
    let token = "s3cr3t value/with+chars&'q\"";
    let o = ci(
        &k,
        &repo,
        &[
            "-s",
            &format!("TOKEN={token}"),
            "-s",
            "MULTI=first-line-secret\nsecond-line-secret",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut everything = out.clone();
    let dir = run_dir(&k, 1);
    let artifact = k.root.path().join("ci/artifacts/1/leak/art.txt");
    for f in [
        dir.join("logs/s.log"),
        dir.join("summaries/s.md"),
        artifact,
        dir.join("run.json"),
    ] {
        everything.push_str(
            &std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        );
    }
    let forms = [
        token.to_string(),
        b64.encode(token),
        b64.encode(format!("user:{token}\n")),
        serde_json::to_string(token)
            .unwrap()
            .trim_matches('"')
            .to_string(),
        "first-line-secret".into(),
        "second-line-secret".into(),
        "s3cr3t".into(),
    ];
    for f in &forms {
        assert!(
            !everything.contains(f.as_str()),
            "{f:?} leaked:\n{everything}"
        );
    }
    assert!(out.contains("plain ***"), "{out}");
    assert!(everything.contains("artifact ***"), "artifact masked");
    assert!(
        std::fs::read_to_string(dir.join("summaries/s.md"))
            .unwrap()
            .contains("secret in summary ***")
    );
}

#[test]
fn reusable_workflows_composite_actions_cache_and_artifacts() {
    let repo = Repo::new(&[
        (
            ".github/workflows/main.yml",
            r#"on: push
jobs:
  call:
    uses: ./.github/workflows/called.yml
    with:
      who: keel
    secrets:
      pass: ${{ secrets.PASS }}
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: test "${{ needs.call.outputs.greeting }}" = "hello keel" && echo "reusable-ok"
  produce:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: ./.github/actions/greet
        id: g
        with:
          name: composite
      - run: test "${{ steps.g.outputs.said }}" = "hi composite" && echo composite-ok
      - uses: actions/cache@v4
        id: c
        with:
          path: cached
          key: k-${{ hashFiles('data.txt') }}
      - run: mkdir -p cached && echo stored > cached/f && echo "hit=${{ steps.c.outputs.cache-hit }}"
      - run: mkdir -p out/sub && echo one > out/a.txt && echo two > out/sub/b.txt
      - uses: actions/upload-artifact@v4
        with:
          name: bundle
          path: out/
  consume:
    needs: produce
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: bundle
          path: got
      - run: test "$(cat got/a.txt got/sub/b.txt)" = "$(printf 'one\ntwo')" && echo artifacts-ok
      - uses: actions/cache/restore@v4
        id: c
        with:
          path: cached
          key: k-${{ hashFiles('nothing-matches') }}
          restore-keys: k-
      - run: test "$(cat cached/f)" = stored && echo "restore-key-ok hit=${{ steps.c.outputs.cache-hit }}"
"#,
        ),
        (
            ".github/workflows/called.yml",
            r#"on:
  workflow_call:
    inputs:
      who:
        type: string
        required: true
    secrets:
      pass:
        required: true
    outputs:
      greeting:
        value: ${{ jobs.inner.outputs.g }}
jobs:
  inner:
    runs-on: ubuntu-latest
    outputs:
      g: ${{ steps.s.outputs.g }}
    steps:
      - id: s
        run: |
          test "${{ secrets.pass }}" = pw
          echo "g=hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
"#,
        ),
        (
            ".github/actions/greet/action.yml",
            r#"name: greet
inputs:
  name:
    required: true
  greeting:
    default: hi
outputs:
  said:
    value: ${{ steps.x.outputs.said }}
runs:
  using: composite
  steps:
    - id: x
      shell: bash
      run: echo "said=${{ inputs.greeting }} ${{ inputs.name }}" >> "$GITHUB_OUTPUT"
"#,
        ),
        ("data.txt", "data\n"),
    ]);
    let k = Keel::new();
    let o = ci(&k, &repo, &["-s", "PASS=pw"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "reusable-ok",
        "composite-ok",
        "artifacts-ok",
        "hit=false",
        "restore-key-ok hit=false",
    ] {
        assert!(out.contains(want), "missing {want}: {out}");
    }
    // Second run: the exact key hits.
    let o = ci(&k, &repo, &["-s", "PASS=pw", "-j", "produce"]);
    let out = text(&o);
    assert!(o.status.success() && out.contains("hit=true"), "{out}");
}

#[test]
fn approvals_wait_then_approve_or_reject() {
    let repo = Repo::new(&[(
        ".github/workflows/d.yml",
        "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    environment:\n      name: production\n      url: https://example.com\n    steps:\n      - run: echo deployed-${{ github.sha }}\n",
    )]);
    let k = Keel::new();
    k.ok(&["ci", "environment", "protect", "production"]);
    assert_eq!(k.ok(&["ci", "environment", "list"]).trim(), "production");
    for (n, verdict) in [(1, "approve"), (2, "reject")] {
        let mut c = k.cmd();
        c.args(["ci", "run", "-C"])
            .arg(repo.path())
            .args(["-P", "ubuntu-latest=-self-hosted"]);
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let waiting = run_dir(&k, n).join("approvals/deploy.waiting");
        let t = Instant::now();
        while !waiting.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "job never waited for approval"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Still waiting a moment later: nothing runs without approval.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!run_dir(&k, n).join("run.json").exists());
        k.ok(&["ci", verdict, &n.to_string(), "deploy"]);
        let o = child.wait_with_output().unwrap();
        let out = text(&o);
        if verdict == "approve" {
            assert!(o.status.success() && out.contains("deployed-"), "{out}");
        } else {
            assert!(
                !o.status.success() && out.contains("rejected") && !out.contains("deployed-"),
                "{out}"
            );
        }
    }
    let err = k.fails(&["ci", "approve", "1", "deploy"]);
    assert!(err.contains("not waiting"), "{err}");
}

#[test]
fn concurrency_cancel_in_progress() {
    let repo = Repo::new(&[(
        ".github/workflows/c.yml",
        "on: push\nconcurrency:\n  group: deploy-${{ github.ref }}\n  cancel-in-progress: true\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 30; echo finished\n",
    )]);
    let k = Keel::new();
    let first = spawn_ci(&k, &repo);
    let t = Instant::now();
    wait_for(&run_dir(&k, 1).join("logs/slow.log"), "started");
    let second = spawn_ci(&k, &repo);
    let o1 = first.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "first run was not cancelled"
    );
    assert!(!o1.status.success(), "{}", text(&o1));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&k, 1).join("run.json")).unwrap()).unwrap();
    assert_eq!(rec["conclusion"], "cancelled");
    // The second run then holds the group; its cancel file stops it.
    wait_for(&run_dir(&k, 2).join("logs/slow.log"), "started");
    std::fs::write(run_dir(&k, 2).join("cancel"), "test").unwrap();
    let o2 = second.wait_with_output().unwrap();
    assert!(!o2.status.success());
}

#[test]
fn bad_workflows_say_file_line_col_with_githubs_message() {
    let k = Keel::new();
    let repo = Repo::new(&[(
        ".github/workflows/bad.yml",
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - runn: echo hi\n",
    )]);
    let err = k.fails(&["ci", "run", "-C", repo.path().to_str().unwrap()]);
    assert!(
        err.contains(".github/workflows/bad.yml (Line: 6, Col: 9): Unexpected value 'runn'"),
        "{err}"
    );
    let repo = Repo::new(&[(
        ".github/workflows/cyc.yml",
        "on: push\njobs:\n  a:\n    needs: b\n    runs-on: x\n    steps: [{run: echo}]\n  b:\n    needs: a\n    runs-on: x\n    steps: [{run: echo}]\n",
    )]);
    let err = k.fails(&["ci", "run", "-C", repo.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "(Line: 3, Col: 3): The workflow must contain at least one job with no dependencies."
        ),
        "{err}"
    );
    assert!(
        k.root
            .path()
            .join("ci/runs")
            .read_dir()
            .map_or(true, |mut d| d.next().is_none()),
        "nothing half-written"
    );
}

#[test]
fn list_dry_run_secrets_store_and_triggers() {
    let repo = Repo::new(&[
        (
            ".github/workflows/a.yml",
            "name: A\non:\n  push:\n    branches: [main]\njobs:\n  one:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"stored=${{ secrets.STORED }}\" ; test \"${{ secrets.STORED }}\" = topsecret\n",
        ),
        (
            ".github/workflows/b.yml",
            "name: B\non:\n  push:\n    branches: [release]\njobs:\n  two:\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 1\n",
        ),
        (
            ".github/workflows/d.yml",
            "name: D\non:\n  workflow_dispatch:\n    inputs:\n      level:\n        type: number\n        default: 3\njobs:\n  three:\n    runs-on: ubuntu-latest\n    steps:\n      - run: test \"${{ inputs.level }}\" = 7 && echo dispatched\n",
        ),
    ]);
    let k = Keel::new();
    let mut c = k.cmd();
    let o = c
        .args(["ci", "secret", "set", "STORED"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write as _;
            ch.stdin.take().unwrap().write_all(b"topsecret\n")?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success());
    assert_eq!(k.ok(&["ci", "secret", "list"]).trim(), "STORED");
    let stored = std::fs::read(k.root.path().join("ci/secrets.json")).unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("topsecret"),
        "secrets are encrypted at rest"
    );
    let list = String::from_utf8_lossy(&ci(&k, &repo, &["-l"]).stdout).to_string();
    assert!(
        list.contains("one") && !list.contains("two") && !list.contains("three"),
        "{list}"
    );
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(o.status.success() && out.contains("stored=***"), "{out}");
    let o = ci(&k, &repo, &["workflow_dispatch", "--input", "level=7"]);
    assert!(
        o.status.success() && text(&o).contains("dispatched"),
        "{}",
        text(&o)
    );
    let o = ci(&k, &repo, &["-n"]);
    assert!(
        o.status.success() && text(&o).contains("*DRYRUN*"),
        "{}",
        text(&o)
    );
    k.ok(&["ci", "secret", "rm", "STORED"]);
    assert_eq!(k.ok(&["ci", "secret", "list"]).trim(), "");
    let runs = k.ok(&["ci", "runs"]);
    assert!(runs.contains("RUN") && runs.contains("success"), "{runs}");
}

#[test]
fn watch_runs_each_new_commit_and_a_revert_redeploys() {
    let repo = Repo::new(&[
        (
            ".github/workflows/deploy.yml",
            "on:\n  push:\n    branches: [main]\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo \"deployed version $(cat VERSION)\"\n",
        ),
        ("VERSION", "1\n"),
    ]);
    let k = Keel::new();
    let mut c = k.cmd();
    c.args(["ci", "watch", "-C"])
        .arg(repo.path())
        .args(["-P", "ubuntu-latest=-self-hosted"]);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let wait_run = |n: u32| -> String {
        let t = Instant::now();
        loop {
            let f = run_dir(&k, n).join("run.json");
            if f.exists() {
                return std::fs::read_to_string(run_dir(&k, n).join("logs/deploy.log")).unwrap();
            }
            assert!(t.elapsed() < Duration::from_secs(30), "run {n} never came");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Give watch a moment to record the starting commit, then move the branch.
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(repo.path().join("VERSION"), "2\n").unwrap();
    git(&["commit", "-qam", "v2"]);
    assert!(wait_run(1).contains("deployed version 2"));
    git(&["revert", "--no-edit", "HEAD"]);
    assert!(
        wait_run(2).contains("deployed version 1"),
        "the revert redeploys version 1"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn job_concurrency_groups_serialize_jobs() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let wf = format!(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    concurrency:\n      group: staging\n    steps:\n      - run: echo start-a >> {0}; sleep 0.5; echo end-a >> {0}\n  b:\n    runs-on: ubuntu-latest\n    concurrency: staging\n    steps:\n      - run: echo start-b >> {0}; sleep 0.5; echo end-b >> {0}\n",
        log.path().display()
    );
    let repo = Repo::new(&[(".github/workflows/c.yml", &wf)]);
    let k = Keel::new();
    let o = ci(&k, &repo, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let order: Vec<String> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(order.len(), 4, "{order:?}");
    let first = order[0].trim_start_matches("start-").to_string();
    assert_eq!(
        order[1],
        format!("end-{first}"),
        "jobs of one group never overlap: {order:?}"
    );
}

#[test]
fn node_actions_with_state_cached_remote_actions_setup_and_checkout_options() {
    let cache = tempfile::tempdir().unwrap();
    let remote = cache.path().join("acme/greet@v1");
    std::fs::create_dir_all(&remote).unwrap();
    std::fs::write(
        remote.join("action.yml"),
        "name: greet\ninputs:\n  who:\n    default: world\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo \"remote greets ${{ inputs.who }} from $GITHUB_ACTION_PATH\"\n",
    )
    .unwrap();
    let repo = Repo::new(&[
        (
            ".github/workflows/a.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: ./.github/actions/js
        id: js
        with:
          who: keel
      - run: echo "js said ${{ steps.js.outputs.said }}"
      - uses: acme/greet@v1
        with:
          who: cache
      - uses: actions/setup-python@v5
        id: py
        with:
          python-version: "3"
      - run: python --version && echo "setup-python ${{ steps.py.outputs.python-version }}"
      - uses: actions/checkout@v4
        with:
          path: sub
          ref: main
      - run: test -f sub/README && test -d sub/.git && echo checkout-path-ok
"#,
        ),
        (
            ".github/actions/js/action.yml",
            "name: js\ninputs:\n  who:\n    required: true\noutputs:\n  said:\n    description: what it said\nruns:\n  using: node20\n  pre: pre.js\n  main: main.js\n  post: post.js\n",
        ),
        (
            ".github/actions/js/pre.js",
            "const fs = require('fs');\nfs.appendFileSync(process.env.GITHUB_STATE, 'started=yes\\n');\nconsole.log('pre ran');\n",
        ),
        (
            ".github/actions/js/main.js",
            "const fs = require('fs');\nconsole.log(`main: hello ${process.env.INPUT_WHO}, state ${process.env.STATE_started}`);\nfs.appendFileSync(process.env.GITHUB_OUTPUT, `said=hi ${process.env.INPUT_WHO}\\n`);\nfs.appendFileSync(process.env.GITHUB_STATE, 'main=done\\n');\n",
        ),
        (
            ".github/actions/js/post.js",
            "console.log(`post: state ${process.env.STATE_started} ${process.env.STATE_main}`);\n",
        ),
        ("README", "readme\n"),
    ]);
    let k = Keel::new();
    let o = ci(
        &k,
        &repo,
        &["--action-cache-path", cache.path().to_str().unwrap()],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "pre ran",
        "main: hello keel, state yes",
        "js said hi keel",
        "remote greets cache from",
        "setup-python 3.",
        "checkout-path-ok",
        "post: state yes done",
    ] {
        assert!(out.contains(want), "missing {want:?}: {out}");
    }
    // The post step ran last.
    assert!(
        out.rfind("post: state").unwrap() > out.find("checkout-path-ok").unwrap(),
        "{out}"
    );
    // A remote action not in the cache fails clearly.
    let repo = Repo::new(&[(
        ".github/workflows/b.yml",
        "on: push\njobs:\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: someone/missing@v9\n",
    )]);
    let o = ci(&k, &repo, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("someone/missing@v9 is not available offline"),
        "{}",
        text(&o)
    );
}

#[test]
fn ctrl_c_cancels_the_run_and_its_steps() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let wf = format!(
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 30; echo survived > {}\n",
        marker.path().display()
    );
    let repo = Repo::new(&[(".github/workflows/s.yml", &wf)]);
    let k = Keel::new();
    let child = spawn_ci(&k, &repo);
    let t = Instant::now();
    wait_for(&run_dir(&k, 1).join("logs/slow.log"), "started");
    let pid = i32::try_from(child.id()).unwrap();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "Ctrl-C did not stop the run"
    );
    assert!(!o.status.success());
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&k, 1).join("run.json")).unwrap()).unwrap();
    assert_eq!(rec["conclusion"], "cancelled");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        std::fs::read_to_string(marker.path()).unwrap().is_empty(),
        "the step outlived the run"
    );
}

#[test]
fn job_timeout_minutes_fails_the_job() {
    let repo = Repo::new(&[(
        ".github/workflows/t.yml",
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    timeout-minutes: 0.03\n    steps:\n      - run: sleep 20\n      - if: always()\n        run: echo always-ran\n",
    )]);
    let k = Keel::new();
    let t = Instant::now();
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "job timeout not enforced: {out}"
    );
    assert!(out.contains("exceeded the maximum execution time"), "{out}");
    let logs = k.ok(&["ci", "logs", "1", "t", "Run sleep 20"]);
    assert!(
        logs.contains("Run sleep 20") && !logs.contains("always-ran"),
        "step filter: {logs}"
    );
}
