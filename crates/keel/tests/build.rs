//! `keel build` end to end: real builds as root on the busybox image, the
//! cache rules, multi-stage graphs, images that run with keel and podman,
//! bad input and Ctrl-C.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// A file of an exported root filesystem.
fn read(out: &Path, rel: &str) -> String {
    std::fs::read_to_string(out.join(rel)).unwrap()
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
    let out = e.k.ok(&["run", "--rm", "--network", "none", "app:1"]);
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
    assert_eq!(
        e.k.ok(&["run", "--rm", "--network", "none", "app:2"]),
        "package main\na1\nv=2\n"
    );
    // One source file: from the COPY that reads it.
    e.write("app/main.go", "package main // 2\n");
    let (_, p) = e.build(&["--explain-cache", "-t", "app:3"]);
    assert_eq!(rebuilt(&p, "0", 8), vec![6, 7, 8], "{p}");
    assert!(p.contains("source app/main.go changed"), "{p}");
    assert!(p.contains("parent changed"), "{p}");
    assert_eq!(
        e.k.ok(&["run", "--rm", "--network", "none", "app:3"]),
        "package main // 2\na1\nv=1\n"
    );
    e.write("a.txt", "a2\n");
    let (_, p) = e.build(&[]);
    assert_eq!(rebuilt(&p, "0", 8), vec![3, 4, 5, 6, 7, 8], "{p}");
    // --no-cache: nothing cached.
    let (_, p) = e.build(&["--no-cache"]);
    assert!(cached(&p).is_empty(), "{p}");
}

/// Regression (issue 14, test audit): this test used to `rmi` the image
/// first, which collected the very blobs it meant to damage, so every
/// damage was skipped and `cached < 7` held on any miss. Now the blobs are
/// damaged while the image still references them, and exactly the steps
/// whose layer is damaged rebuild: a step's key does not depend on its
/// parent's bytes, so the steps after a damaged one stay cached.
#[test]
fn corrupt_or_missing_cache_blobs_are_not_reused() {
    let e = cache_env();
    e.build(&["-t", "app:1"]);
    // Layers in order: busybox, then the layers of steps 2 (RUN), 3 (COPY),
    // 5 (RUN), 6 (COPY) and 7 (RUN); keel's own layers are uncompressed, so
    // each blob's digest is its diff id.
    let layers: Vec<PathBuf> = e.inspect("app:1")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let hex = d.as_str().unwrap().strip_prefix("sha256:").unwrap();
            e.k.root.path().join("oci/blobs/sha256").join(hex)
        })
        .collect();
    assert_eq!(layers.len(), 6, "{layers:?}");
    assert!(layers.iter().all(|l| l.exists()), "{layers:?}");
    // Step 3's blob: same size, other bytes. Step 6's blob: gone.
    let mut bytes = std::fs::read(&layers[2]).unwrap();
    for x in bytes.iter_mut().take(100) {
        *x ^= 0xff;
    }
    std::fs::write(&layers[2], bytes).unwrap();
    std::fs::remove_file(&layers[4]).unwrap();
    let (_, p) = e.build(&["-t", "app:1"]);
    assert_eq!(
        rebuilt(&p, "0", 8),
        vec![3, 6],
        "exactly the damaged steps rebuild:\n{p}"
    );
    assert_eq!(
        e.k.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "package main\na1\nv=1\n"
    );
    // The rebuilt steps put good blobs back: the image's layers hash to
    // their names, and the next build is all cached.
    for d in e.inspect("app:1")["RootFS"]["Layers"].as_array().unwrap() {
        let hex = d.as_str().unwrap().strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(e.k.root.path().join("oci/blobs/sha256").join(hex)).unwrap();
        assert_eq!(keel_oci::Digest::of(&bytes).hex(), hex);
    }
    let (_, p) = e.build(&["-t", "app:1"]);
    assert_eq!(rebuilt(&p, "0", 8), Vec::<usize>::new(), "{p}");
}

/// A tar with entries written verbatim (the tar crate refuses `..`).
fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Issue 14, defect 1, the build way in: `ADD` unpacks a local archive into
/// the image, so a hostile one must be refused there, naming the entry, with
/// nothing reaching the image store. (Layers a build writes are diffs of
/// real trees, checked as they are written: no other build path can make a
/// hostile layer.)
#[test]
fn add_of_a_hostile_archive_is_refused_naming_the_entry() {
    use tar::EntryType::{Link, Regular, Symlink};
    let e = Env::new();
    // Unpack busybox once, so that a failing build has nothing to add.
    e.write("Dockerfile", "FROM busybox\nRUN true\n");
    e.build(&[]);
    for (entry, entries) in [
        ("../../tmp/x", vec![("../../tmp/x", Regular, "")]),
        (
            "a/etc/x",
            vec![("a", Symlink, "/"), ("a/etc/x", Regular, "")],
        ),
        (
            "b/etc/x",
            vec![("b", Symlink, "../.."), ("b/etc/x", Regular, "")],
        ),
        ("h", vec![("h", Link, "../../etc/shadow")]),
    ] {
        std::fs::write(e.ctx().join("evil.tar"), raw_tar(&entries)).unwrap();
        e.write("Dockerfile", "FROM busybox\nADD evil.tar /\n");
        let before = e.k.snapshot_store();
        let oci: Vec<(String, u64)> = before
            .iter()
            .filter(|(p, _)| p.starts_with("oci/"))
            .cloned()
            .collect();
        let err = e.build_fails(&["-t", "evil:1"]);
        let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
        assert!(
            line.starts_with("error: Dockerfile:2:1: ADD evil.tar: ")
                && line.contains(&format!("entry {entry:?}")),
            "{err}"
        );
        let after: Vec<(String, u64)> =
            e.k.snapshot_store()
                .into_iter()
                .filter(|(p, _)| p.starts_with("oci/"))
                .collect();
        assert_eq!(after, oci, "the image store changed");
    }
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
        "FROM --platform=$BUILDPLATFORM busybox AS a
RUN sleep 1 && echo a > /a
FROM busybox AS b
RUN sleep 1 && echo b > /b
FROM busybox AS unused
RUN exit 1
FROM busybox AS final
COPY --from=a /a /a
COPY --from=1 /b /b
COPY --from=busybox /bin/busybox /opt/busybox
ARG TARGETARCH
RUN echo $TARGETARCH > /arch
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
    assert_eq!(
        e.k.ok(&["run", "--rm", "--network", "none", "ms:1"]),
        "a\nb\n"
    );
    e.k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "ms:1",
        "/opt/busybox",
        "true",
    ]);
    // BuildKit's automatic platform ARGs.
    let arch =
        e.k.ok(&["run", "--rm", "--network", "none", "ms:1", "cat", "/arch"]);
    assert!(matches!(arch.trim(), "amd64" | "arm64"), "{arch}");
    // --target b: only b (and nothing after it).
    let (_, p) = e.build(&["--target", "b", "-t", "ms:b"]);
    assert!(!p.contains("[a ") && !p.contains("[final"), "{p}");
    let o =
        e.k.run(&["run", "--rm", "--network", "none", "ms:b", "cat", "/b"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b\n");
    let o = e.k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "ms:b",
        "test",
        "-e",
        "/a",
    ]);
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
        // On a closed loopback port: the default `--pull missing` tries
        // it, and the build still reports the base at its FROM line.
        ("missing_base", "FROM 127.0.0.1:9/nosuchimage:1\nRUN true\n"),
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
RUN <<EOF
#!/usr/bin/awk -f
BEGIN { print \"from awk\" > \"/awk.txt\" }
EOF
RUN --mount=type=bind,source=a.txt,target=/mnt/a.txt cp /mnt/a.txt /bound
RUN --mount=type=bind,target=/ctx,rw echo scribble > /ctx/a.txt && cat /ctx/a.txt > /scribbled
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
    assert_eq!(read(&out, "count").trim(), "1");
    assert_eq!(read(&out, "secret-copy"), "s3cret\n");
    assert_eq!(read(&out, "greeting"), "hello \n");
    assert_eq!(read(&out, "hd"), "from heredoc\n");
    assert_eq!(read(&out, "awk.txt"), "from awk\n");
    assert!(!out.join("dev/pipes").exists());
    assert_eq!(read(&out, "bound"), "bound\n");
    // A rw bind mount takes writes without changing the context.
    assert_eq!(read(&out, "scribbled"), "scribble\n");
    assert_eq!(
        std::fs::read_to_string(e.ctx().join("a.txt")).unwrap(),
        "bound\n"
    );
    assert!(
        !out.join("run/secrets/tok").exists(),
        "secret leaked into the image"
    );
    // The cache mount survives builds, even --no-cache ones.
    std::fs::remove_dir_all(&out).unwrap();
    e.build(&["--no-cache", "--secret", &sec, "-o", &o]);
    assert_eq!(read(&out, "count").trim(), "2");
    // builder prune empties the cache.
    let pr = e.k.ok(&["builder", "prune", "-a"]);
    assert!(pr.contains("Total reclaimed space"), "{pr}");
    let (_, p) = e.build(&["--secret", &sec]);
    assert!(cached(&p).is_empty(), "{p}");
}

/// docs/builds.md says RUN takes `--network=none|host` and runs on the host's
/// network by default: a RUN sees only `lo` with `none`, and the host's
/// uplink with `host` and by default.
#[test]
fn run_network_none_and_default() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox
RUN --network=none cat /proc/net/dev > /none
RUN --network=host cat /proc/net/dev > /host
RUN cat /proc/net/dev > /default
",
    );
    let out = e.ctx().join("out");
    e.build(&["-o", &format!("type=local,dest={}", out.display())]);
    let ifaces = |f: &str| -> Vec<String> {
        read(&out, f)
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect()
    };
    assert_eq!(ifaces("none"), ["lo"]);
    // Other tests add and remove bridges on the host meanwhile: compare on
    // the interface of the host's default route, which stays.
    let route = std::fs::read_to_string("/proc/net/route").unwrap();
    let uplink = route
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the host has a default route")
        .to_string();
    for f in ["host", "default"] {
        assert!(ifaces(f).contains(&uplink), "{f}: {:?}", ifaces(f));
    }
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
    // The reader thread may still be draining stderr: wait for its end.
    let mut rest: Vec<String> = Vec::new();
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
    assert_eq!(
        e.k.ok(&["run", "--rm", "--network", "none", "child:1"]),
        "triggered\n"
    );
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

/// Serves `body` for every request on 127.0.0.1 until dropped.
struct HttpFile {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpFile {
    fn start(body: &'static [u8]) -> Self {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        // The whole request head before answering: a client
                        // that writes it in pieces would otherwise meet a
                        // closed socket (EPIPE) under load.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = write!(
                            c,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = c.write_all(body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HttpFile { port, stop }
    }
}

impl Drop for HttpFile {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn add_archives_urls_and_copy_flags() {
    let e = Env::new();
    let http = HttpFile::start(b"downloaded\n");
    // A gzip'd tar in the context: ADD unpacks it.
    let src = e.ctx().join("tree");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    std::fs::write(src.join("inner/file"), "from tar\n").unwrap();
    let st = std::process::Command::new("tar")
        .args(["-czf", "archive.tar.gz", "-C"])
        .arg(&src)
        .arg("inner")
        .current_dir(e.ctx())
        .status()
        .unwrap();
    assert!(st.success());
    e.write("src/a.go", "a\n");
    e.write("src/skip.tmp", "tmp\n");
    e.write("src/sub/b.go", "b\n");
    e.write(
        "Dockerfile",
        &format!(
            "FROM busybox
ADD archive.tar.gz /unpacked/
ADD http://127.0.0.1:{}/dl.txt /web/
COPY --chown=65534:65534 --exclude=*.tmp src/ /copied/
COPY --parents src/sub/b.go /parents/
COPY src/*.go /glob/
",
            http.port
        ),
    );
    let out = e.ctx().join("rootfs");
    let o = format!("type=local,dest={}", out.display());
    e.build(&["-o", &o]);
    assert_eq!(read(&out, "unpacked/inner/file"), "from tar\n");
    assert_eq!(read(&out, "web/dl.txt"), "downloaded\n");
    let md = std::fs::metadata(out.join("web/dl.txt")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let md = std::fs::metadata(out.join("copied/sub/b.go")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
    assert!(out.join("copied/a.go").exists());
    assert!(!out.join("copied/skip.tmp").exists(), "--exclude ignored");
    assert!(out.join("parents/src/sub/b.go").exists());
    assert!(out.join("glob/a.go").exists() && !out.join("glob/skip.tmp").exists());
}

/// One line per entry of a tree (root excluded): path, type, mode, owner,
/// whole-second mtime, content hash or link target or device, xattrs and
/// hardlink group — everything a snapshot is made of.
fn describe_tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::fs::Metadata, PathBuf)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(n);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let is_dir = md.is_dir();
            out.push((rel, md, p.clone()));
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    let mut entries = Vec::new();
    walk(root, root, &mut entries);
    let mut first = std::collections::HashMap::new();
    entries
        .iter()
        .map(|(rel, md, p)| {
            let ft = md.file_type();
            let what = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(p).unwrap().display())
            } else if ft.is_file() {
                let data = std::fs::read(p).unwrap();
                format!("file {}", keel_oci::Digest::of(&data))
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev {:x}", md.rdev())
            } else {
                format!("{ft:?}")
            };
            let mut buf = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
            let xattrs: Vec<String> = buf[..n]
                .split(|b| *b == 0)
                .filter(|x| !x.is_empty() && !x.starts_with(b"security."))
                .map(|x| {
                    let name = String::from_utf8_lossy(x).into_owned();
                    let mut v = vec![0u8; 4096];
                    let m = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
                    format!("{name}={:?}", String::from_utf8_lossy(&v[..m]))
                })
                .collect();
            let link = if !ft.is_dir() && md.nlink() > 1 {
                first
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone()
            } else {
                String::new()
            };
            format!(
                "{rel} {what} {:o} {}:{} {} [{}] {link}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.mtime(),
                xattrs.join(",")
            )
        })
        .collect()
}

/// Regression guard for snapshot adoption: the build moves each new layer's
/// upper dir into the snapshot cache instead of unpacking the layer again;
/// every such snapshot must equal what unpacking its layer blob gives (RUN
/// whiteouts, an opaque dir, hardlinks, setuid, mount stubs stripped, COPY
/// with WORKDIR).
#[test]
fn adopted_build_snapshots_equal_their_unpacked_layers() {
    let e = Env::new();
    e.write(
        "Dockerfile",
        "FROM busybox
RUN mkdir -p /data/sub && echo one > /data/sub/f && ln /data/sub/f /data/hard \\
 && ln -s sub/f /data/link && chmod 4755 /data/sub/f && mkfifo /data/fifo
RUN rm -rf /data/sub && mkdir /data/sub && echo two > /data/sub/g && rm /bin/ls
WORKDIR /work
COPY files/ /work/
RUN --mount=type=tmpfs,target=/scratch echo done > /work/done
",
    );
    e.write("files/a.txt", "a\n");
    e.write("files/dir/b.txt", "b\n");
    e.build(&["-t", "adopt:1"]);
    let store = keel_oci::ImageStore::open(e.k.root.path()).unwrap();
    let img = store.resolve("adopt:1").unwrap();
    let diff_ids: Vec<String> = img
        .diff_ids()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let digests = img.layer_digests().unwrap();
    let chains = keel_oci::layer::Snapshots::chain_ids(&diff_ids);
    let snaps = store.snapshots().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // The busybox base (layer 0) was unpacked; every built layer adopted.
    assert_eq!(diff_ids.len(), 5, "{diff_ids:?}");
    for i in 1..diff_ids.len() {
        let adopted = snaps
            .get(&chains[i])
            .unwrap()
            .expect("snapshot of a built layer");
        let marker = snaps.dir().join(format!(
            ".unsynced-{}",
            chains[i].strip_prefix("sha256:").unwrap()
        ));
        assert!(marker.is_symlink(), "written without a sync, so marked");
        let unpacked = scratch.path().join(i.to_string());
        std::fs::create_dir(&unpacked).unwrap();
        let blob = store.blobs().open(&digests[i]).unwrap();
        keel_oci::layer::apply_layer(blob, &unpacked, keel_oci::layer::WhiteoutMode::Overlay)
            .unwrap();
        let (got, want) = (describe_tree(&adopted), describe_tree(&unpacked));
        assert_eq!(got, want, "layer {i}");
        if i == 2 {
            let text = want.join("\n");
            assert!(text.contains("bin/ls dev 0 0 0:0"), "{text}");
            assert!(text.contains("trusted.overlay.opaque=\"y\""), "{text}");
        }
    }
    let out = e.k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "adopt:1",
        "cat",
        "/work/done",
        "/work/dir/b.txt",
        "/data/sub/g",
    ]);
    assert_eq!(out, "done\nb\ntwo\n");
}
