//! Instruction semantics without root: builds through a [`FakeRunner`]
//! that records every `RUN` and plays it by writing files, so what the
//! engine asks for (argv, env, user, workdir, mounts), what it stores
//! (config, layers) and what it takes from the cache are checked directly.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use keel_runtime::MountKind;
use serde_json::json;

use crate::runner::{RunRequest, Stream};
use crate::testing::{Call, FakeRunner, write};
use crate::{BuildError, BuildOptions, Built, Event, Result, build_with};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A keel root and a context directory.
struct Env {
    root: tempfile::TempDir,
    ctx: tempfile::TempDir,
}

/// What one build did.
struct Outcome {
    built: Result<Built>,
    /// Every RUN the runner was asked for.
    calls: Vec<RunRequest>,
    /// (stage, step) the progress reported as cached.
    cached: Vec<(String, usize)>,
    /// Lines RUN printed.
    output: Vec<String>,
}

impl Outcome {
    fn ok(&self) -> &Built {
        match &self.built {
            Ok(b) => b,
            Err(e) => panic!("build failed: {e}"),
        }
    }

    fn commands(&self) -> Vec<&str> {
        self.calls
            .iter()
            .map(|r| r.argv.last().map_or("", String::as_str))
            .collect()
    }
}

/// The default script: `echo TEXT > PATH` writes the file (as sh would);
/// `exit N` fails; anything else prints its argv and succeeds.
fn shell(c: Call<'_>) -> i32 {
    let cmd = c.req.argv.last().cloned().unwrap_or_default();
    if let Some(code) = cmd.strip_prefix("exit ") {
        (c.output)(Stream::Stderr, b"about to fail\n");
        return code.parse().unwrap();
    }
    if let Some((text, path)) = cmd.strip_prefix("echo ").and_then(|r| r.split_once(" > ")) {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", c.req.workdir)
        };
        write(c.upper, &path, &format!("{text}\n"));
        return 0;
    }
    (c.output)(Stream::Stdout, format!("ran {cmd}\n").as_bytes());
    0
}

impl Env {
    fn new() -> Self {
        Env {
            root: tempfile::tempdir().unwrap(),
            ctx: tempfile::tempdir().unwrap(),
        }
    }

    fn opts(&self, dockerfile: &str, args: &[(&str, &str)]) -> BuildOptions {
        BuildOptions {
            root: self.root.path().to_path_buf(),
            exe: "/nonexistent/keel".into(),
            context: Some(self.ctx.path().to_path_buf()),
            dockerfile: dockerfile.to_string(),
            dockerfile_name: "Dockerfile".to_string(),
            build_args: args
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..BuildOptions::default()
        }
    }

    fn build(&self, dockerfile: &str, args: &[(&str, &str)]) -> Outcome {
        self.build_opts(&self.opts(dockerfile, args))
    }

    fn build_opts(&self, opts: &BuildOptions) -> Outcome {
        let runs = self.root.path().join("fake-runs");
        // `RUN interrupt` plays a Ctrl-C arriving while it runs.
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let runner = FakeRunner::new(&runs, move |c| {
            if c.req.argv.last().is_some_and(|a| a == "interrupt") {
                flag.store(true, Ordering::Relaxed);
            }
            shell(c)
        });
        let events = Mutex::new(Vec::new());
        let built = build_with(opts, &runner, &cancel, &|e| {
            events.lock().unwrap().push(e);
        });
        let mut cached = Vec::new();
        let mut output = Vec::new();
        for e in events.into_inner().unwrap() {
            match e {
                Event::Cached { stage, step } => cached.push((stage, step)),
                Event::Output { line, .. } => output.push(line),
                _ => {}
            }
        }
        Outcome {
            built,
            calls: runner.calls.into_inner().unwrap(),
            cached,
            output,
        }
    }

    /// The files of the built image (path → content; directories end in `/`
    /// and have no content), its layers applied in order.
    fn files(&self, built: &Built) -> BTreeMap<String, String> {
        let store = keel_oci::ImageStore::open(self.root.path()).unwrap();
        let mut out = BTreeMap::new();
        for l in &built.layers {
            let d = keel_oci::Digest::parse(&l.digest).unwrap();
            let mut ar = tar::Archive::new(store.blobs().open(&d).unwrap());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                out.insert(name, s);
            }
        }
        out
    }
}

fn env_of(r: &RunRequest, k: &str) -> Option<String> {
    r.env
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{k}=")).map(str::to_string))
}

#[test]
fn env_and_arg_reach_run_and_the_config() {
    let e = Env::new();
    let df = "FROM scratch\nARG V=1\nENV A=$V B=b\nENV A=again-$V\nRUN go\nARG LATE\n";
    let o = e.build(df, &[]);
    let b = o.ok();
    let r = &o.calls[0];
    assert_eq!(r.argv, ["/bin/sh", "-c", "go"]);
    // A variable set again keeps its place; PATH is the default (first).
    assert_eq!(r.env, [PATH, "A=again-1", "B=b", "V=1"]);
    assert_eq!(
        b.config["config"]["Env"],
        json!([PATH, "A=again-1", "B=b"]),
        "ARGs are not in the image"
    );
    // --build-arg wins over the default, in ENV and in RUN's environment.
    let o = e.build(df, &[("V", "2")]);
    assert_eq!(env_of(&o.calls[0], "A").as_deref(), Some("again-2"));
    assert_eq!(env_of(&o.calls[0], "V").as_deref(), Some("2"));
    // An ARG declared after the RUN is not in its environment, nor in its
    // key: the RUN is a cache hit.
    let o = e.build(df, &[("LATE", "x")]);
    assert!(o.calls.is_empty(), "{:?}", o.commands());
    assert!(o.cached.contains(&("0".to_string(), 5)), "{:?}", o.cached);
}

#[test]
fn workdir_user_and_shell_shape_the_run() {
    let e = Env::new();
    let o = e.build(
        "FROM scratch
WORKDIR /srv
WORKDIR app
USER 1000:1000
SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]
RUN echo hi > out.txt
RUN [\"/bin/tool\", \"--flag\"]
CMD run me
",
        &[],
    );
    let b = o.ok();
    let (r1, r2) = (&o.calls[0], &o.calls[1]);
    assert_eq!(r1.workdir, "/srv/app");
    assert_eq!(r1.user, "1000:1000");
    assert_eq!(
        r1.argv,
        ["/bin/bash", "-eo", "pipefail", "-c", "echo hi > out.txt"]
    );
    assert_eq!(r2.argv, ["/bin/tool", "--flag"], "exec form ignores SHELL");
    assert_eq!(r1.network, "host");
    let cfg = &b.config["config"];
    assert_eq!(cfg["WorkingDir"], "/srv/app");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(
        cfg["Cmd"],
        json!(["/bin/bash", "-eo", "pipefail", "-c", "run me"])
    );
    // The WORKDIR is created in the first RUN's layer, with the file RUN wrote.
    let files = e.files(b);
    assert_eq!(
        files.get("srv/app/out.txt").map(String::as_str),
        Some("hi\n")
    );
    assert!(files.contains_key("srv/app/"), "{files:?}");
}

#[test]
fn onbuild_triggers_run_first_in_the_child_and_are_cleared() {
    let e = Env::new();
    let o = e.build(
        "FROM scratch AS base
ONBUILD RUN echo trigger > /t
RUN echo base > /b
FROM base
RUN echo child > /c
",
        &[],
    );
    let b = o.ok();
    assert_eq!(
        o.commands(),
        ["echo base > /b", "echo trigger > /t", "echo child > /c"]
    );
    assert!(
        b.config["config"].get("OnBuild").is_none(),
        "{:#}",
        b.config
    );
    let files = e.files(b);
    for (f, v) in [("b", "base\n"), ("t", "trigger\n"), ("c", "child\n")] {
        assert_eq!(files.get(f).map(String::as_str), Some(v), "{files:?}");
    }
}

#[test]
fn cache_reuses_unchanged_steps_and_reruns_from_a_change() {
    let e = Env::new();
    write(e.ctx.path(), "a.txt", "one");
    let df = "FROM scratch\nRUN echo x > /x\nCOPY a.txt /a.txt\nARG V=1\nRUN echo $V > /v\nENV E=1\nRUN echo y > /y\n";
    let first = e.build(df, &[]);
    first.ok();
    assert_eq!(first.calls.len(), 3);
    assert!(first.cached.is_empty());
    // Nothing changed: nothing runs, every step after FROM is a hit.
    let again = e.build(df, &[]);
    assert!(again.calls.is_empty(), "{:?}", again.commands());
    let steps: Vec<usize> = again.cached.iter().map(|(_, s)| *s).collect();
    assert_eq!(steps, [2, 3, 4, 5, 6, 7]);
    assert_eq!(again.ok().config_digest, first.ok().config_digest);
    // A build arg: steps from its first use on rerun (the ARG itself is a
    // hit); RUN sees it in its environment (the shell expands it).
    let o = e.build(df, &[("V", "2")]);
    assert_eq!(o.commands(), ["echo $V > /v", "echo y > /y"]);
    assert_eq!(env_of(&o.calls[0], "V").as_deref(), Some("2"));
    // A source file: the COPY and everything after it.
    write(e.ctx.path(), "a.txt", "two");
    let o = e.build(df, &[]);
    assert_eq!(o.commands(), ["echo $V > /v", "echo y > /y"]);
    let steps: Vec<usize> = o.cached.iter().map(|(_, s)| *s).collect();
    assert_eq!(steps, [2]);
    assert_eq!(
        e.files(o.ok()).get("a.txt").map(String::as_str),
        Some("two")
    );
}

#[test]
fn the_stage_graph_builds_what_the_target_needs() {
    let e = Env::new();
    let df = "FROM scratch AS builder
RUN echo built > /out/app
FROM scratch AS unused
RUN echo never > /n
FROM scratch AS tools
RUN echo tool > /tool
FROM scratch
COPY --from=builder /out/app /app
COPY --from=2 /tool /usr/bin/tool
";
    let o = e.build(df, &[]);
    let mut cmds = o.commands();
    cmds.sort_unstable();
    assert_eq!(cmds, ["echo built > /out/app", "echo tool > /tool"]);
    let files = e.files(o.ok());
    assert_eq!(files.get("app").map(String::as_str), Some("built\n"));
    assert_eq!(
        files.get("usr/bin/tool").map(String::as_str),
        Some("tool\n")
    );
    // --target builds that stage and its dependencies only.
    let mut opts = e.opts(df, &[]);
    opts.target = Some("unused".into());
    opts.no_cache = true;
    let o = e.build_opts(&opts);
    assert_eq!(o.commands(), ["echo never > /n"]);
    opts.target = Some("nope".into());
    let o = e.build_opts(&opts);
    assert!(matches!(o.built, Err(BuildError::UnknownTarget(_))));
}

#[test]
fn copy_from_names_that_do_not_resolve_fail_at_the_instruction() {
    let e = Env::new();
    let mut opts = e.opts(
        "FROM scratch\nCOPY --from=after /x /x\nFROM scratch AS after\n",
        &[],
    );
    opts.target = Some("0".into());
    let later = e.build_opts(&opts);
    let err = later.built.err().unwrap().to_string();
    assert_eq!(
        err,
        "Dockerfile:2:1: stage \"after\" is defined after this use"
    );
    let unknown = e.build("FROM scratch\nCOPY --from=nowhere /x /x\n", &[]);
    let err = unknown.built.err().unwrap();
    assert!(
        err.to_string()
            .contains("--from=nowhere: no stage or image of that name"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("keel pull nowhere"));
    assert!(unknown.calls.is_empty());
}

#[test]
fn run_mounts_and_network_are_passed_on() {
    let e = Env::new();
    let o = e.build(
        "FROM scratch
RUN --network=none --mount=type=tmpfs,target=/scratch,size=1m --mount=type=secret,id=tok go
",
        &[],
    );
    o.ok();
    let r = &o.calls[0];
    assert_eq!(r.network, "none");
    // The secret was not given and is not required: no mount.
    assert_eq!(r.mounts.len(), 1, "{:?}", r.mounts);
    assert_eq!(r.mounts[0].kind, MountKind::Tmpfs);
    assert_eq!(r.mounts[0].target, "/scratch");
    assert_eq!(r.mounts[0].options, ["size=1048576"]);
    // A required secret that is missing fails before anything runs.
    let o = e.build(
        "FROM scratch\nRUN --mount=type=secret,id=tok,required go\n",
        &[],
    );
    let err = o.built.err().unwrap();
    assert!(err.to_string().contains("secret tok is required"), "{err}");
    assert!(o.calls.is_empty());
}

#[test]
fn a_failing_run_reports_its_code_and_last_lines() {
    let e = Env::new();
    let o = e.build("FROM scratch\nRUN first\nRUN exit 3\nRUN never\n", &[]);
    assert_eq!(o.commands(), ["first", "exit 3"]);
    assert_eq!(o.output, ["ran first", "about to fail"]);
    match o.built {
        Err(BuildError::RunFailed {
            location,
            code,
            output,
            ..
        }) => {
            assert_eq!((location.line, code), (3, 3));
            assert_eq!(output, ["about to fail"]);
        }
        other => panic!("{:?}", other.map(|b| b.config)),
    }
}

#[test]
fn heredoc_scripts_are_the_command() {
    let e = Env::new();
    let o = e.build(
        "FROM scratch\nRUN <<EOF\necho a > /a\nEOF\nRUN <<EOF\n#!/bin/tool\nbody\nEOF\n",
        &[],
    );
    o.ok();
    assert_eq!(o.calls[0].argv, ["/bin/sh", "-c", "echo a > /a\n"]);
    // A script with its own #! is mounted and run as a file.
    let r = &o.calls[1];
    assert_eq!(r.argv, ["/dev/pipes/EOF"]);
    let m = r
        .mounts
        .iter()
        .find(|m| m.target == "/dev/pipes/EOF")
        .unwrap();
    assert!(m.read_only);
}

#[test]
fn default_path_is_added_once_and_follows_env_path() {
    let e = Env::new();
    let o = e.build(
        "FROM scratch AS a\nENV PATH=/opt/bin\nFROM a\nRUN go\n",
        &[],
    );
    assert_eq!(o.ok().config["config"]["Env"], json!(["PATH=/opt/bin"]));
    assert_eq!(env_of(&o.calls[0], "PATH").as_deref(), Some("/opt/bin"));
    let o = e.build("FROM scratch AS a\nENV X=1\nFROM a\nENV Y=2\nRUN go\n", &[]);
    // buildah: the inherited default PATH goes back to the front at the end.
    assert_eq!(o.ok().config["config"]["Env"], json!([PATH, "X=1", "Y=2"]));
    assert_eq!(env_of(&o.calls[0], "PATH").as_deref(), Some(&PATH[5..]));
}

#[test]
fn the_context_is_hashed_not_timed() {
    let e = Env::new();
    write(e.ctx.path(), "d/f", "same");
    let df = "FROM scratch\nCOPY d /d\nRUN go\n";
    e.build(df, &[]).ok();
    let f = std::fs::File::options()
        .write(true)
        .open(e.ctx.path().join("d/f"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_hours(1))
        .unwrap();
    drop(f);
    let o = e.build(df, &[]);
    assert!(o.calls.is_empty(), "an mtime is not a change");
    assert_eq!(o.cached.len(), 2, "{:?}", o.cached);
}

#[test]
fn meta_args_and_platform_args_reach_the_stage() {
    let e = Env::new();
    let o = e.build(
        "ARG BASE=scratch\nFROM $BASE\nARG TARGETARCH\nARG BASE\nRUN go\n",
        &[],
    );
    let r = &o.calls[0];
    let arch = keel_oci::archive::host_arch();
    assert_eq!(env_of(r, "TARGETARCH").as_deref(), Some(arch));
    // A meta ARG re-declared in the stage takes the meta value.
    assert_eq!(env_of(r, "BASE").as_deref(), Some("scratch"));
    // An undeclared platform ARG is not in the environment.
    assert_eq!(env_of(r, "BUILDARCH"), None);
    let o = e.build("ARG BASE=nowhere:1\nFROM $BASE\n", &[]);
    let err = o.built.err().unwrap();
    assert_eq!(
        err.to_string(),
        "Dockerfile:2:1: base image nowhere:1 is not in the image store"
    );
}

#[test]
fn metadata_instructions_shape_the_config_and_the_cache() {
    let e = Env::new();
    let df = |env: &str| {
        format!(
            "FROM scratch
LABEL a=1 \"b c\"=\"d e\"
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD [\"check\"]
ENV {env}
RUN go
ENTRYPOINT [\"/bin/app\"]
"
        )
    };
    let o = e.build(&df("A=1"), &[]);
    let cfg = &o.ok().config["config"];
    assert_eq!(cfg["Labels"], json!({"a": "1", "b c": "d e"}));
    assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(cfg["Volumes"], json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD", "check"], "Interval": 5_000_000_000_u64, "Retries": 2})
    );
    assert_eq!(cfg["Entrypoint"], json!(["/bin/app"]));
    // The VOLUME directory is created in the next layer, as buildah does.
    assert!(e.files(o.ok()).contains_key("data/"));
    // A changed ENV changes every later key: the RUN runs again.
    assert!(e.build(&df("A=1"), &[]).calls.is_empty());
    assert_eq!(e.build(&df("A=2"), &[]).calls.len(), 1);
    // A bad STOPSIGNAL fails at its line.
    let o = e.build("FROM scratch\nSTOPSIGNAL SIGNOPE\n", &[]);
    assert_eq!(
        o.built.err().unwrap().to_string(),
        "Dockerfile:2:1: invalid STOPSIGNAL \"SIGNOPE\""
    );
}

#[test]
fn an_interrupted_build_stops_after_the_running_step() {
    let e = Env::new();
    let o = e.build("FROM scratch\nRUN first\nRUN interrupt\nRUN never\n", &[]);
    assert!(
        matches!(o.built, Err(BuildError::Cancelled)),
        "{:?}",
        o.built.map(|b| b.config)
    );
    assert_eq!(o.commands(), ["first", "interrupt"]);
    // What finished before is cached; the interrupted step is not.
    let o = e.build("FROM scratch\nRUN first\nRUN interrupt2\n", &[]);
    assert_eq!(o.commands(), ["interrupt2"]);
}
