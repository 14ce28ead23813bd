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
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "init"]);
        repo
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// git in the repository, as a user (file:// submodules allowed).
    fn git(&self, args: &[&str]) {
        let o = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(["-c", "user.name=tester", "-c", "user.email=t@example.com"])
            .args(["-c", "protocol.file.allow=always"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
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

/// Run `n`'s `run.json`.
fn record(k: &Keel, n: u32) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir(k, n).join("run.json")).unwrap()).unwrap()
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
    let rec = record(&k, 1);
    assert_eq!(rec["conclusion"], "success");
    let skipped = rec["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "skipped")
        .unwrap();
    assert_eq!(skipped["result"], "skipped");

    // act's --matrix: two values for one key keep both (a regression: each
    // filter had to match, so nothing ran and the run still succeeded).
    let o = ci(
        &k,
        &repo,
        &["-j", "build", "--matrix", "os:a", "--matrix", "os:c"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for combo in ["a-1", "a-2", "c-9"] {
        assert!(
            out.contains(&format!("combo {combo}")),
            "missing {combo}: {out}"
        );
    }
    assert!(!out.contains("combo b-"), "{out}");

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
    let view = k.ok(&["ci", "view", "3"]);
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
    // base64 at the other two alignments: the characters that depend on the
    // secret's bytes alone (the first and last quantum also hold neighbours).
    let mut forms = forms.to_vec();
    for prefix in ["x", "xy"] {
        let enc = b64.encode(format!("{prefix}{token}"));
        forms.push(enc[4..enc.len() - 4].to_string());
    }
    for f in &forms {
        assert!(
            !everything.contains(f.as_str()),
            "{f:?} leaked:\n{everything}"
        );
    }
    assert!(out.contains("plain ***"), "{out}");
    assert!(out.contains(r#"{"t": "***"}"#), "JSON form: {out}");
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
      - run: test "${{ needs.call.outputs.deep }}" = "level 2 inherited" && echo "nested-ok"
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
      deep:
        value: ${{ jobs.deeper.outputs.level }}
jobs:
  deeper:
    uses: ./.github/workflows/nested.yml
    with:
      n: 2
    secrets: inherit
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
        (
            ".github/workflows/nested.yml",
            r#"on:
  workflow_call:
    inputs:
      n:
        type: number
    outputs:
      level:
        value: ${{ jobs.leaf.outputs.l }}
jobs:
  leaf:
    runs-on: ubuntu-latest
    outputs:
      l: ${{ steps.s.outputs.l }}
    steps:
      - id: s
        run: |
          test "${{ secrets.pass }}" = pw && seen=inherited
          echo "l=level ${{ inputs.n }} $seen" >> "$GITHUB_OUTPUT"
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
        "nested-ok",
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
    // Unprotected, the environment needs no approval.
    k.ok(&["ci", "environment", "unprotect", "production"]);
    assert_eq!(k.ok(&["ci", "environment", "list"]).trim(), "");
    let o = ci(&k, &repo, &[]);
    assert!(
        o.status.success() && text(&o).contains("deployed-"),
        "{}",
        text(&o)
    );
    assert!(!run_dir(&k, 3).join("approvals/deploy.waiting").exists());
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
    let rec = record(&k, 1);
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
    // An empty matrix vector: refused at its place before anything runs (a
    // regression: keel started the run and failed the job).
    let repo = Repo::new(&[(
        ".github/workflows/m.yml",
        "on: push\njobs:\n  a:\n    strategy:\n      matrix:\n        os: []\n        v: [1]\n    runs-on: x\n    steps:\n      - run: echo\n",
    )]);
    let err = k.fails(&["ci", "run", "-C", repo.path().to_str().unwrap()]);
    assert!(
        err.contains("m.yml (Line: 6, Col: 13): Matrix vector 'os' does not contain any values"),
        "{err}"
    );
    // Step ids differ only in case: GitHub refuses the second (a regression:
    // keel ran it, and steps.s1 named whichever came last).
    let repo = Repo::new(&[(
        ".github/workflows/ids.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: s1\n        run: echo\n      - id: S1\n        run: echo\n",
    )]);
    let err = k.fails(&["ci", "run", "-C", repo.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "ids.yml (Line: 8, Col: 13): The identifier 'S1' may not be used more than once within the same scope."
        ),
        "{err}"
    );
    // A called workflow asking for more than its caller grants: GitHub
    // refuses the run before it starts (keel ran it: the check was missing).
    let repo = Repo::new(&[
        (
            ".github/workflows/main.yml",
            "on: push\npermissions:\n  contents: read\njobs:\n  call:\n    uses: ./.github/workflows/called.yml\n",
        ),
        (
            ".github/workflows/called.yml",
            "on: workflow_call\njobs:\n  deploy:\n    permissions:\n      contents: write\n    runs-on: x\n    steps:\n      - run: echo deployed > deployed\n",
        ),
    ]);
    let err = k.fails(&["ci", "run", "-C", repo.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "main.yml (Line: 5, Col: 3): Error calling workflow './.github/workflows/called.yml'. The nested job 'deploy' is requesting 'contents: write', but is only allowed 'contents: read'."
        ),
        "{err}"
    );
    assert!(!repo.path().join("deployed").exists());
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
    let git = |args: &[&str]| repo.git(args);
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
    // setup-go and setup-node use the installed toolchains; a version that
    // is not installed fails the step clearly.
    let repo = Repo::new(&[(
        ".github/workflows/s.yml",
        "on: push\njobs:\n  s:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/setup-go@v5\n        id: go\n      - run: go version && echo \"setup-go ${{ steps.go.outputs.go-version }}\"\n      - uses: actions/setup-node@v4\n        with:\n          node-version: '8'\n      - run: echo never-here\n",
    )]);
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("setup-go 1."), "{out}");
    assert!(
        out.contains("actions/setup-node: node-version 8 was asked for, the installed node is")
            && !out.contains("| never-here"),
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
    let rec = record(&k, 1);
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

#[test]
fn strategy_max_parallel_fail_fast_and_job_continue_on_error() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let wf = format!(
        r"on: push
jobs:
  serial:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        i: [1, 2, 3]
    steps:
      - run: echo start-${{{{ matrix.i }}}} >> {0}; sleep 0.3; echo end-${{{{ matrix.i }}}} >> {0}
  fast:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        i: [fails, slow]
    steps:
      - run: if [ ${{{{ matrix.i }}}} = fails ]; then sleep 0.5; exit 1; fi; echo slow-started; sleep 30; echo slow-finished
  patient:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        i: [fails, slow]
    steps:
      - run: if [ ${{{{ matrix.i }}}} = fails ]; then exit 1; fi; sleep 1; echo patient-slow-finished
",
        log.path().display()
    );
    let repo = Repo::new(&[(".github/workflows/s.yml", &wf)]);
    let k = Keel::new();
    let t = Instant::now();
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "fail-fast did not cancel the slow instance: {out}"
    );
    assert_eq!(o.status.code(), Some(1), "{out}");
    // max-parallel 1: each instance ends before the next starts.
    let order: Vec<String> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(order.len(), 6, "{order:?}");
    for pair in order.chunks(2) {
        assert_eq!(
            pair[0].replace("start", "end"),
            pair[1],
            "instances overlapped: {order:?}"
        );
    }
    assert!(
        out.contains("slow-started") && !out.contains("| slow-finished"),
        "{out}"
    );
    assert!(
        out.contains("patient-slow-finished"),
        "fail-fast: false: {out}"
    );
    let rec = record(&k, 1);
    let results: Vec<(String, String)> = rec["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap_or_default().to_string(),
                j["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let result = |name: &str| {
        results.iter().find(|(n, _)| n == name).map_or_else(
            || panic!("no job {name} in {results:?}"),
            |(_, r)| r.as_str(),
        )
    };
    assert_eq!(result("fast (slow)"), "cancelled", "{results:?}");
    assert_eq!(result("patient (slow)"), "success", "{results:?}");

    // A job with continue-on-error fails without failing the workflow (a
    // regression: the run concluded failure and exited 1); what needs it
    // runs and sees success, as on GitHub.
    let repo = Repo::new(&[(
        ".github/workflows/c.yml",
        "on: push\njobs:\n  allowed:\n    runs-on: ubuntu-latest\n    continue-on-error: true\n    steps:\n      - run: exit 1\n  after:\n    needs: allowed\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"after ran, allowed was ${{ needs.allowed.result }}\"\n",
    )]);
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("after ran, allowed was success"), "{out}");
    let view = k.ok(&["ci", "view", "2"]);
    assert!(
        view.contains("✗ allowed failure"),
        "the job itself failed: {view}"
    );
}

#[test]
fn act_flags_secrets_from_env_and_files_vars_env_and_artifact_dir() {
    let repo = Repo::new(&[(
        ".github/workflows/f.yml",
        r#"on: push
jobs:
  f:
    runs-on: ubuntu-latest
    steps:
      - run: |
          test "${{ secrets.FROM_ENV }}" = from-env-secret
          test "${{ vars.LEVEL }}" = high && test "${{ vars.FILEVAR }}" = file
          test "$EXTRA" = extra && test "$FILEENV" = fileenv
          echo "secret ${{ secrets.FROM_FILE }} and $FROM_ENV_COPY"
          echo data > a.txt
        env:
          FROM_ENV_COPY: ${{ secrets.FROM_ENV }}
      - uses: actions/upload-artifact@v4
        with:
          name: art
          path: a.txt
"#,
    )]);
    let files = tempfile::tempdir().unwrap();
    let f = |name: &str, body: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().to_string()
    };
    let (secret_file, var_file, env_file) = (
        f(
            "secrets",
            "# act's .secrets format\nFROM_FILE=\"file-secret\"\n",
        ),
        f("vars", "FILEVAR=file\n"),
        f("env", "export FILEENV=fileenv\n"),
    );
    let artifacts = files.path().join("artifacts");
    let k = Keel::new();
    let mut c = k.cmd();
    let o = c
        .args(["ci", "run", "-C"])
        .arg(repo.path())
        .args(["-P", "ubuntu-latest=-self-hosted", "-s", "FROM_ENV"])
        .args(["--secret-file", &secret_file, "--var", "LEVEL=high"])
        .args(["--var-file", &var_file, "--env", "EXTRA=extra"])
        .args(["--env-file", &env_file, "--artifact-dir"])
        .arg(&artifacts)
        .env("FROM_ENV", "from-env-secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("secret *** and ***"), "{out}");
    assert!(
        !out.contains("file-secret") && !out.contains("from-env-secret"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(artifacts.join("1/art/a.txt")).unwrap(),
        "data\n"
    );
    // -s NAME with NAME unset: one clear line, nothing runs.
    let err = k.fails(&[
        "ci",
        "run",
        "-C",
        repo.path().to_str().unwrap(),
        "-s",
        "KEEL_TEST_UNSET_SECRET",
    ]);
    assert!(
        err.contains("secret KEEL_TEST_UNSET_SECRET: not set in the environment"),
        "{err}"
    );
}

#[test]
fn checkout_fetch_depth_and_submodules_offline() {
    // A submodule whose URL is on GitHub (unreachable offline): checkout
    // takes it from the local repository's own checkout of it.
    let sub = Repo::new(&[("sub.txt", "sub\n")]);
    let repo = Repo::new(&[(
        ".github/workflows/c.yml",
        r#"on: push
jobs:
  c:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          path: full
          fetch-depth: 0
          submodules: true
      - run: test "$(git -C full rev-list --count HEAD)" = 2 && test "$(cat full/lib/sub.txt)" = sub && echo full-ok
      - uses: actions/checkout@v4
        with:
          path: shallow
      - run: test "$(git -C shallow rev-list --count HEAD)" = 1 && test ! -e shallow/lib/sub.txt && echo shallow-ok
"#,
    )]);
    repo.git(&[
        "submodule",
        "add",
        "-q",
        sub.path().to_str().unwrap(),
        "lib",
    ]);
    repo.git(&[
        "config",
        "-f",
        ".gitmodules",
        "submodule.lib.url",
        "https://github.com/example/sub.git",
    ]);
    repo.git(&["add", ".gitmodules"]);
    repo.git(&["commit", "-qm", "submodule"]);
    let k = Keel::new();
    let o = ci(&k, &repo, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("full-ok") && out.contains("shallow-ok"),
        "{out}"
    );
}

#[test]
fn pull_request_context_from_the_event_payload() {
    let repo = Repo::new(&[(
        ".github/workflows/pr.yml",
        "on:\n  pull_request:\n    branches: [main]\njobs:\n  pr:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"pr $GITHUB_REF $GITHUB_REF_NAME head=$GITHUB_HEAD_REF base=${{ github.base_ref }}\"\n",
    )]);
    let payload = repo.path().join("event.json");
    std::fs::write(
        &payload,
        r#"{"number": 7, "pull_request": {"head": {"ref": "feature"}, "base": {"ref": "main"}}}"#,
    )
    .unwrap();
    let k = Keel::new();
    // A regression: head_ref and base_ref were always empty.
    let o = ci(
        &k,
        &repo,
        &["pull_request", "-e", payload.to_str().unwrap()],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("pr refs/pull/7/merge 7/merge head=feature base=main"),
        "{out}"
    );
    // Without a payload: the local branch is the head, main the base.
    let o = ci(&k, &repo, &["pull_request"]);
    let out = text(&o);
    assert!(
        o.status.success() && out.contains("pr refs/pull/1/merge 1/merge head=main base=main"),
        "{out}"
    );
}

#[test]
fn push_filters_on_paths_and_tags_use_the_local_repository() {
    let repo = Repo::new(&[
        (
            ".github/workflows/src.yml",
            "on:\n  push:\n    paths: ['src/**']\njobs:\n  src:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo src-workflow-ran\n",
        ),
        (
            ".github/workflows/release.yml",
            "on:\n  push:\n    tags: ['v*']\njobs:\n  rel:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"released ${{ github.ref_name }} $GITHUB_REF_TYPE\"\n",
        ),
        ("docs/a.md", "a\n"),
        ("src/main.c", "int main;\n"),
    ]);
    let k = Keel::new();
    // The last commit changed only docs: the src workflow does not run.
    std::fs::write(repo.path().join("docs/a.md"), "b\n").unwrap();
    repo.git(&["commit", "-qam", "docs"]);
    let out = text(&ci(&k, &repo, &[]));
    assert!(
        !out.contains("src-workflow-ran") && !out.contains("released"),
        "{out}"
    );
    std::fs::write(repo.path().join("src/main.c"), "int main2;\n").unwrap();
    repo.git(&["commit", "-qam", "src"]);
    let out = text(&ci(&k, &repo, &[]));
    assert!(out.contains("src-workflow-ran"), "{out}");
    // A detached HEAD at a tag is that tag's push (it used to be taken as
    // refs/heads/main, so tag filters never matched).
    repo.git(&["tag", "v1.2"]);
    repo.git(&["checkout", "-q", "v1.2"]);
    let o = ci(&k, &repo, &["-W", ".github/workflows/release.yml"]);
    let out = text(&o);
    assert!(
        o.status.success() && out.contains("released v1.2 tag"),
        "{out}"
    );
}
