//! `keel build` end to end: real builds as root on the busybox image, the
//! cache rules, multi-stage graphs, images that run with keel and podman,
//! bad input and Ctrl-C.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Keel, Podman, unmount_under};

/// A keel root with busybox seeded and a context directory; on drop,
/// anything still mounted under the root is unmounted.
struct Env {
    k: Keel,
    ctx: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let k = Keel::new();
        k.seed_busybox();
        Env {
            k,
            ctx: tempfile::Builder::new()
                .prefix("keel-build-ctx-")
                .tempdir()
                .unwrap(),
        }
    }

    fn ctx(&self) -> &Path {
        self.ctx.path()
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn build_out(&self, extra: &[&str]) -> Output {
        let ctx = self.ctx().display().to_string();
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(&ctx);
        self.k.run(&args)
    }

    /// Builds and returns (image ID, progress output).
    fn build(&self, extra: &[&str]) -> (String, String) {
        let o = self.build_out(extra);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "keel build {extra:?} failed:\n{err}");
        (String::from_utf8(o.stdout).unwrap().trim().to_string(), err)
    }

    /// Builds expecting a clean failure; returns stderr with the context path replaced.
    fn build_fails(&self, extra: &[&str]) -> String {
        let ctx = self.ctx().display().to_string();
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.push(&ctx);
        self.k.fails(&args).replace(&ctx, "[CTX]")
    }

    fn inspect(&self, image: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.k.ok(&["inspect", image])).unwrap()[0]
            .clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        unmount_under(self.k.root.path());
    }
}

/// Steps (`stage`, `step`) that plain progress reports as CACHED.
fn cached(progress: &str) -> BTreeSet<(String, usize)> {
    progress
        .lines()
        .filter(|l| l.ends_with("] CACHED"))
        .filter_map(|l| {
            let inner = l.rsplit_once("] [")?.1.strip_suffix("] CACHED")?;
            let (stage, step) = inner.rsplit_once(' ')?;
            Some((stage.to_string(), step.parse().ok()?))
        })
        .collect()
}

/// Steps (stage, step) that ran (started and were not cached).
fn rebuilt(progress: &str, stage: &str, total: usize) -> Vec<usize> {
    let c = cached(progress);
    (2..=total)
        .filter(|n| !c.contains(&(stage.to_string(), *n)))
        .collect()
}

const CACHE_DOCKERFILE: &str = "FROM busybox
RUN echo base > /base
COPY a.txt /a.txt
ARG VERSION=1
RUN echo \"v=$VERSION\" > /v
COPY app/ /app/
RUN cat /app/main.go /a.txt /v > /out
CMD [\"cat\", \"/out\"]
";

fn cache_env() -> Env {
    let e = Env::new();
    e.write("Dockerfile", CACHE_DOCKERFILE);
    e.write("a.txt", "a1\n");
    e.write("app/main.go", "package main\n");
    e.write("notes.txt", "ignored\n");
    e.write(".dockerignore", "notes.txt\n");
    e
}

#[test]
fn build_runs_with_keel_and_config_matches() {
    let e = cache_env();
    let (id, progress) = e.build(&["-t", "app:1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(
        cached(&progress).is_empty(),
        "first build is cold:\n{progress}"
    );
    let out = e.k.ok(&["run", "--rm", "app:1"]);
    assert_eq!(out, "package main\na1\nv=1\n");
    let cfg = e.inspect("app:1");
    let config = &cfg["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["cat", "/out"]), "{cfg:#}");
    // busybox has no Env: the default PATH is added, as buildah does.
    assert_eq!(
        config["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let hist = e.k.ok(&["history", "--no-trunc", "app:1"]);
    assert!(
        hist.contains("|1 VERSION=1 /bin/sh -c echo \"v=$VERSION\" > /v"),
        "{hist}"
    );
    assert!(hist.contains("#(nop) ARG VERSION"), "{hist}");
}

#[test]
fn cache_follows_sources_args_and_ignores_mtime() {
    let e = cache_env();
    let (id1, _) = e.build(&["-t", "app:1"]);
    // No change: every step cached, same image.
    let (id2, p) = e.build(&["-t", "app:1"]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
    assert_eq!(id1, id2);
    // mtime only: cached.
    let f = std::fs::File::options()
        .write(true)
        .open(e.ctx().join("app/main.go"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_hours(1))
        .unwrap();
    drop(f);
    let (id3, p) = e.build(&[]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
    assert_eq!(id1, id3);
    // A file .dockerignore excludes: cached.
    e.write("notes.txt", "changed\n");
    let (_, p) = e.build(&[]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
    // A build arg nobody declares: cached (and a warning).
    let (_, p) = e.build(&["--build-arg", "NOBODY=1"]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
    assert!(p.contains("NOBODY"), "{p}");
    // A used build arg: from its first use (step 5) on.
    let (_, p) = e.build(&["--build-arg", "VERSION=2", "--explain-cache", "-t", "app:2"]);
    assert_eq!(rebuilt(&p, "0", 8), vec![5, 6, 7, 8], "{p}");
    assert!(p.contains("build arg VERSION changed 1 -> 2"), "{p}");
    assert_eq!(e.k.ok(&["run", "--rm", "app:2"]), "package main\na1\nv=2\n");
    // One source file: from the COPY that reads it.
    e.write("app/main.go", "package main // 2\n");
    let (_, p) = e.build(&["--explain-cache", "-t", "app:3"]);
    assert_eq!(rebuilt(&p, "0", 8), vec![6, 7, 8], "{p}");
    assert!(p.contains("source app/main.go changed"), "{p}");
    assert!(p.contains("parent changed"), "{p}");
    assert_eq!(
        e.k.ok(&["run", "--rm", "app:3"]),
        "package main // 2\na1\nv=1\n"
    );
    e.write("a.txt", "a2\n");
    let (_, p) = e.build(&[]);
    assert_eq!(rebuilt(&p, "0", 8), vec![3, 4, 5, 6, 7, 8], "{p}");
    // --no-cache: nothing cached.
    let (_, p) = e.build(&["--no-cache"]);
    assert!(cached(&p).is_empty(), "{p}");
}

/// Layer blobs the cache entries name.
fn cache_blobs(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(root.join("build/cache/entries")).unwrap() {
        let entry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        if let Some(d) = entry["layer"]["digest"].as_str() {
            let hex = d.strip_prefix("sha256:").unwrap();
            v.push(root.join("oci/blobs/sha256").join(hex));
        }
    }
    v
}

#[test]
fn corrupt_or_missing_cache_blobs_are_not_reused() {
    let e = cache_env();
    e.build(&["-t", "app:1"]);
    let blobs = cache_blobs(e.k.root.path());
    assert!(blobs.len() >= 5, "{blobs:?}");
    // Remove the image so nothing else needs the blobs, then damage them.
    e.k.ok(&["rmi", "app:1"]);
    for (i, b) in blobs.iter().enumerate() {
        if !b.exists() {
            continue;
        }
        if i % 2 == 0 {
            std::fs::remove_file(b).unwrap();
        } else {
            // Same size, other bytes.
            let mut bytes = std::fs::read(b).unwrap();
            for x in bytes.iter_mut().take(100) {
                *x ^= 0xff;
            }
            std::fs::write(b, bytes).unwrap();
        }
    }
    let (_, p) = e.build(&["-t", "app:1"]);
    assert!(
        cached(&p).len() < 7,
        "damaged entries must not be hits:\n{p}"
    );
    assert_eq!(e.k.ok(&["run", "--rm", "app:1"]), "package main\na1\nv=1\n");
    // And the rebuilt entries are good again.
    let (_, p) = e.build(&["-t", "app:1"]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
}

/// Start and end times of each step from plain progress.
fn step_times(progress: &str, stage: &str, step: usize) -> (f64, f64) {
    let time = |l: &str| -> f64 {
        l.trim_start_matches('[')
            .split(']')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let start = progress
        .lines()
        .find(|l| l.contains(&format!("] [{stage} {step}/")))
        .map_or_else(|| panic!("no start of {stage} {step}:\n{progress}"), time);
    let end = progress
        .lines()
        .find(|l| l.contains(&format!("] [{stage} {step}] DONE")))
        .map_or_else(|| panic!("no end of {stage} {step}:\n{progress}"), time);
    (start, end)
}

#[test]
fn multi_stage_targets_skips_and_overlaps() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox AS a
RUN sleep 1 && echo a > /a
FROM busybox AS b
RUN sleep 1 && echo b > /b
FROM busybox AS unused
RUN exit 1
FROM busybox AS final
COPY --from=a /a /a
COPY --from=1 /b /b
COPY --from=busybox /bin/busybox /opt/busybox
CMD [\"cat\", \"/a\", \"/b\"]
",
    );
    let (_, p) = e.build(&["-t", "ms:1"]);
    assert!(!p.contains("[unused"), "unused stage built:\n{p}");
    let (a0, a1) = step_times(&p, "a", 2);
    let (b0, b1) = step_times(&p, "b", 2);
    assert!(
        a0 < b1 && b0 < a1,
        "independent stages must overlap: a {a0}-{a1}, b {b0}-{b1}\n{p}"
    );
    assert_eq!(e.k.ok(&["run", "--rm", "ms:1"]), "a\nb\n");
    e.k.ok(&["run", "--rm", "ms:1", "/opt/busybox", "true"]);
    // --target b: only b (and nothing after it).
    let (_, p) = e.build(&["--target", "b", "-t", "ms:b"]);
    assert!(!p.contains("[a ") && !p.contains("[final"), "{p}");
    let o = e.k.run(&["run", "--rm", "ms:b", "cat", "/b"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b\n");
    let o = e.k.run(&["run", "--rm", "ms:b", "test", "-e", "/a"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn image_runs_with_podman_after_save() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox\nWORKDIR /srv\nCOPY hello.txt .\nRUN ln -s hello.txt link && chmod 640 hello.txt\nENV GREETING=hi\nCMD [\"sh\", \"-c\", \"echo $GREETING; cat link; pwd\"]\n",
    );
    e.write("hello.txt", "hello\n");
    e.build(&["-t", "localhost/built:1"]);
    let tar = e.ctx().join("img.tar");
    e.k.ok(&["save", "-o", tar.to_str().unwrap(), "localhost/built:1"]);
    let p = Podman::new();
    p.ok(&["load", "-i", tar.to_str().unwrap()]);
    let out = p.ok(&["run", "--rm", "--network", "none", "localhost/built:1"]);
    assert_eq!(out, "hi\nhello\n/srv\n");
}

#[test]
fn bad_input_fails_with_position_and_hint() {
    let e = Env::new();
    e.write("a.txt", "a\n");
    let cases: &[(&str, &str)] = &[
        ("unknown_instruction", "FROM busybox\nFOO bar\n"),
        ("unterminated_heredoc", "FROM busybox\nRUN <<EOF\necho hi\n"),
        ("unknown_stage", "FROM busybox\nCOPY --from=nosuch /a /a\n"),
        ("missing_source", "FROM busybox\nCOPY missing.txt /m\n"),
        ("outside_context", "FROM busybox\nCOPY ../etc/passwd /p\n"),
        ("missing_base", "FROM nosuchimage:1\nRUN true\n"),
        (
            "run_fails",
            "FROM busybox\nRUN echo first; echo boom >&2; exit 3\n",
        ),
    ];
    for (name, df) in cases {
        e.write("Dockerfile", df);
        let err = e.build_fails(&["-t", "bad:1"]);
        insta::assert_snapshot!(format!("build_error_{name}"), err);
        assert!(
            e.k.run(&["inspect", "bad:1"]).status.code() != Some(0),
            "{name}: a failed build must not tag"
        );
    }
}

#[test]
fn cache_mounts_secrets_heredocs_and_local_output() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/log && cat /cache/log | wc -l > /count
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /secret-copy
COPY <<EOF /greeting
hello $HOSTNAME_UNSET
EOF
RUN <<EOF
echo from heredoc > /hd
EOF
RUN --mount=type=bind,source=a.txt,target=/mnt/a.txt cp /mnt/a.txt /bound
",
    );
    e.write("a.txt", "bound\n");
    let secret = e.ctx().join("secret.txt");
    std::fs::write(&secret, "s3cret\n").unwrap();
    // The secret file lives in the context but is excluded from it.
    e.write(".dockerignore", "secret.txt\n");
    let sec = format!("id=tok,src={}", secret.display());
    let out = e.ctx().join("out");
    let o = format!("type=local,dest={}", out.display());
    e.build(&["--secret", &sec, "-o", &o]);
    assert_eq!(
        std::fs::read_to_string(out.join("count")).unwrap().trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("secret-copy")).unwrap(),
        "s3cret\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("greeting")).unwrap(),
        "hello \n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("hd")).unwrap(),
        "from heredoc\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("bound")).unwrap(),
        "bound\n"
    );
    assert!(
        !out.join("run/secrets/tok").exists(),
        "secret leaked into the image"
    );
    // The cache mount survives builds, even --no-cache ones.
    std::fs::remove_dir_all(&out).unwrap();
    e.build(&["--no-cache", "--secret", &sec, "-o", &o]);
    assert_eq!(
        std::fs::read_to_string(out.join("count")).unwrap().trim(),
        "2"
    );
    // builder prune empties the cache.
    let pr = e.k.ok(&["builder", "prune", "-a"]);
    assert!(pr.contains("Total reclaimed space"), "{pr}");
    let (_, p) = e.build(&["--secret", &sec]);
    assert!(cached(&p).is_empty(), "{p}");
}

#[test]
fn sigint_stops_the_build_cleanly() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox\nRUN echo one > /one\nRUN echo started && sleep 60\n",
    );
    let ctx = e.ctx().display().to_string();
    let mut child =
        e.k.cmd()
            .args(["build", "--progress", "plain", "-t", "int:1", &ctx])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the RUN never started");
        if l.ends_with("| started") {
            break;
        }
    }
    let t0 = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the build did not stop"
    );
    // The reader ends at EOF: everything the build printed after the signal.
    let mut rest = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        rest.push(l);
    }
    assert!(
        rest.iter().any(|l| l.contains("error: build interrupted")),
        "{rest:?}"
    );
    // No tag, no mounts, no build containers left.
    assert!(!e.k.run(&["inspect", "int:1"]).status.success());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = e.k.root.path().display().to_string();
    assert!(!info.contains(&root), "mounts left under the root");
    let run_dir = e.k.root.path().join("build/run/containers");
    let left: Vec<_> = std::fs::read_dir(&run_dir)
        .map(|rd| rd.flatten().map(|d| d.file_name()).collect())
        .unwrap_or_default();
    let left: Vec<_> = left
        .into_iter()
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "build containers left: {left:?}");
    // The cache stays valid: the first RUN is reused, the build works.
    e.write(
        "Dockerfile",
        "FROM busybox\nRUN echo one > /one\nRUN echo done\n",
    );
    let (_, p) = e.build(&["-t", "int:1"]);
    assert!(cached(&p).contains(&("0".to_string(), 2)), "{p}");
}

/// History as (`created_by` with content hashes masked, `empty_layer`).
fn history_shape(h: &serde_json::Value, skip: usize) -> Vec<(String, bool)> {
    h.as_array()
        .unwrap()
        .iter()
        .skip(skip)
        .map(|e| {
            let by = e["created_by"].as_str().unwrap_or_default().to_string();
            let by = if by.contains("#(nop) COPY") {
                by.split(' ')
                    .map(|w| match w.split_once(':') {
                        Some((k @ ("file" | "dir" | "multi"), _)) => format!("{k}:HASH"),
                        _ => w.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                by
            };
            (by, e["empty_layer"].as_bool().unwrap_or(false))
        })
        .collect()
}

#[test]
fn config_and_history_match_podman_build() {
    let e = Env::new();
    e.k.ok(&["tag", "busybox", "localhost/bb"]);
    e.write("a.txt", "hi\n");
    e.write("d/sub/x", "x\n");
    e.write(
        "Dockerfile",
        "ARG BASE=localhost/bb
FROM $BASE AS base
ENV A=1
WORKDIR rel
WORKDIR /abs
ENTRYPOINT [\"/bin/sh\",\"-c\"]
CMD [\"echo hi\"]
FROM base
ENTRYPOINT echo ep
USER 123:45
EXPOSE 8080/TCP 53/udp
LABEL a=b \"c d\"=\"e f\"
ENV PATH=/custom:$PATH
COPY --chmod=600 a.txt d/ /dst/
STOPSIGNAL 9
VOLUME /data
ARG V=1
RUN echo $A
MAINTAINER someone
",
    );
    e.build(&["-t", "localhost/par:1"]);
    let p = Podman::new();
    let tar = common::busybox_tar(e.ctx());
    p.ok(&["import", tar.to_str().unwrap(), "localhost/bb"]);
    let ctx = e.ctx().display().to_string();
    p.ok(&["build", "--format", "docker", "-t", "localhost/par:1", &ctx]);
    let pi: serde_json::Value =
        serde_json::from_str(&p.ok(&["image", "inspect", "localhost/par:1"])).unwrap();
    let ki = e.inspect("localhost/par:1");
    let mut pc = pi[0]["Config"].clone();
    pc["Labels"]
        .as_object_mut()
        .unwrap()
        .remove("io.buildah.version");
    let kc = ki["Config"].clone();
    for f in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
    ] {
        assert_eq!(kc[f], pc[f], "{f}: keel {kc:#} podman {pc:#}");
    }
    assert_eq!(ki["Author"], pi[0]["Author"]);
    // Both images start from one imported layer; compare what the build added.
    let pcfg: serde_json::Value = serde_json::from_str(&p.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .History}}",
        "localhost/par:1",
    ]))
    .unwrap();
    let khist = keel_history(&e, "localhost/par:1");
    assert_eq!(history_shape(&khist, 1), history_shape(&pcfg, 1));
}

/// The image config's history, read from the store.
fn keel_history(e: &Env, image: &str) -> serde_json::Value {
    let manifest = e.inspect(image)["Id"].as_str().unwrap().to_string();
    let hex = manifest.strip_prefix("sha256:").unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e.k.root.path().join("oci/blobs/sha256").join(hex)).unwrap(),
    )
    .unwrap();
    cfg["history"].clone()
}

#[test]
fn onbuild_stdin_dockerfile_and_archive_output() {
    let e = Env::new();
    // ONBUILD triggers are stored, then run in the build that uses the image.
    e.write(
        "Dockerfile",
        "FROM busybox\nONBUILD RUN echo triggered > /onbuild\nCMD [\"cat\", \"/onbuild\"]\n",
    );
    e.build(&["-t", "base:1"]);
    assert_eq!(
        e.inspect("base:1")["Config"]["OnBuild"],
        serde_json::json!(["RUN echo triggered > /onbuild"])
    );
    // A Dockerfile on stdin, no context.
    let mut child =
        e.k.cmd()
            .args(["build", "-q", "-t", "child:1", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"FROM base:1\n").unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.k.ok(&["run", "--rm", "child:1"]), "triggered\n");
    assert!(e.inspect("child:1")["Config"]["OnBuild"].is_null());
    // COPY needs a context: a clear error when there is none.
    let mut child =
        e.k.cmd()
            .args(["build", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"FROM busybox\nCOPY a /a\n").unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:2:1: COPY a: there is no build context"),
        "{err}"
    );
    // --output type=docker writes an archive that podman loads.
    e.write("Dockerfile", "FROM busybox\nRUN echo archived > /x\n");
    let tar = e.ctx().join("out.tar");
    let o = format!("type=docker,dest={}", tar.display());
    e.build(&["-t", "localhost/arch:1", "-o", &o]);
    let p = Podman::new();
    p.ok(&["load", "-i", tar.to_str().unwrap()]);
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/arch:1",
        "cat",
        "/x",
    ]);
    assert_eq!(out, "archived\n");
}
