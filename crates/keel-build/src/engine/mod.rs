//! The build engine: stages and steps. This file runs the stages (in
//! parallel threads, each waiting for those it reads) and dispatches each
//! step; the instruction families live beside it: [`graph`] (the stage
//! graph, `FROM` and `--from`), [`config`] (metadata instructions and
//! `$VAR` expansion), [`run`] (`RUN`), [`copy`] (`COPY`/`ADD`), [`cached`]
//! (cache keys, hits, storing results), [`roots`] (snapshots and overlay
//! mounts), [`state`] (a stage between steps). Everything that touches the
//! kernel goes through a [`Runner`].

mod cached;
mod config;
mod copy;
mod graph;
mod roots;
mod run;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use keel_dockerfile::shell::{self, Options};
use keel_dockerfile::{Dockerfile, Ignore, Instruction, Location, Span, Spanned};
use keel_oci::{Digest, ImageStore};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::cache::Cache;
use crate::context::HashMemo;
use crate::error::{BuildError, Result, io_err};
use crate::fsops;
use crate::runner::{HostRunner, Runner};
use crate::{BuildOptions, Built, Event};
use copy::CopyArgs;
use state::State;

/// A finished stage, shared with the stages that use it.
type StageResult = Option<Arc<State>>;

struct Engine<'a> {
    opts: &'a BuildOptions,
    runner: &'a dyn Runner,
    df: Dockerfile,
    store: ImageStore,
    cache: Cache,
    build_dir: PathBuf,
    memo: HashMemo,
    ignore: Option<Ignore>,
    cancel: &'a AtomicBool,
    progress: &'a (dyn Fn(Event) + Sync),
    /// Meta ARGs (before the first FROM) with their values.
    meta: BTreeMap<String, String>,
    /// Stage names for progress (`name` or the index).
    labels: Vec<String>,
    done: Mutex<HashMap<usize, StageResult>>,
    done_cv: Condvar,
    used_args: Mutex<BTreeSet<String>>,
    position_base: String,
    started: Instant,
    /// Layer blobs being committed in the background.
    commits: Mutex<Vec<std::thread::JoinHandle<Result<()>>>>,
}

fn loc(file: &str, span: Span) -> Location {
    Location {
        file: file.to_string(),
        line: span.start_line,
        col: span.col,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Joins a possibly relative path onto the working directory and cleans it.
fn abs_path(workdir: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", workdir.trim_end_matches('/'))
    };
    let mut out = format!("/{}", fsops::components(&joined).join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// Builds the image of `opts`: parses, plans, runs the needed stages
/// (independent ones in parallel) and writes the final config and manifest
/// blobs. Nothing is tagged: see [`crate::commit`]. `RUN` runs in one-shot
/// containers monitored by `opts.exe` ([`HostRunner`]).
pub fn build(
    opts: &BuildOptions,
    cancel: &AtomicBool,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Built> {
    let runner = HostRunner {
        exe: opts.exe.clone(),
        run_root: opts.root.join("build").join("run"),
    };
    build_with(opts, &runner, cancel, progress)
}

/// [`build`] with the kernel effects (overlay mounts, `RUN`) done by `runner`.
pub fn build_with(
    opts: &BuildOptions,
    runner: &dyn Runner,
    cancel: &AtomicBool,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Built> {
    let df = Dockerfile::parse(&opts.dockerfile, &opts.dockerfile_name)?;
    let store = ImageStore::open(&opts.root)?;
    let build_dir = opts.root.join("build");
    let cache = Cache::open(&build_dir)?;
    let ignore = match &opts.context {
        Some(dir) => match fs::read_to_string(dir.join(".dockerignore")) {
            Ok(s) => Some(Ignore::parse(&s, ".dockerignore")?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", dir.join(".dockerignore"))(e)),
        },
        None => None,
    };
    let ctx_name = opts
        .context
        .as_ref()
        .map(|c| fs::canonicalize(c).unwrap_or_else(|_| c.clone()))
        .map(|c| c.display().to_string())
        .unwrap_or_default();
    let memo = HashMemo::load(
        build_dir
            .join("hashes")
            .join(format!("{}.json", sha(&ctx_name))),
    );
    // BuildKit's automatic platform ARGs (this host is the only platform).
    let arch = keel_oci::archive::host_arch();
    let mut meta: BTreeMap<String, String> = [
        ("BUILDPLATFORM", format!("linux/{arch}")),
        ("TARGETPLATFORM", format!("linux/{arch}")),
        ("BUILDOS", "linux".to_string()),
        ("TARGETOS", "linux".to_string()),
        ("BUILDARCH", arch.to_string()),
        ("TARGETARCH", arch.to_string()),
        ("BUILDVARIANT", String::new()),
        ("TARGETVARIANT", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for a in df.meta_args() {
        let v = match opts.build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => match &a.default {
                Some(d) => Some(shell::expand(
                    d,
                    &meta,
                    &Options::with_escape(df.directives.escape),
                )?),
                None => None,
            },
        };
        if let Some(v) = v {
            meta.insert(a.name.clone(), v);
        }
    }
    let stages = df.stages();
    if stages.is_empty() {
        return Err(BuildError::NoStages);
    }
    let labels: Vec<String> = stages
        .iter()
        .map(|s| s.from.name.clone().unwrap_or_else(|| s.index.to_string()))
        .collect();
    let target = match &opts.target {
        Some(t) => {
            df.stage(t)
                .ok_or_else(|| BuildError::UnknownTarget(t.clone()))?
                .index
        }
        None => stages.len() - 1,
    };
    drop(stages);
    let engine = Engine {
        opts,
        runner,
        df,
        store,
        cache,
        build_dir,
        memo,
        ignore,
        cancel,
        progress,
        meta,
        labels,
        done: Mutex::new(HashMap::new()),
        done_cv: Condvar::new(),
        used_args: Mutex::new(BTreeSet::new()),
        position_base: format!("{ctx_name}\n{}", opts.dockerfile_name),
        started: Instant::now(),
        commits: Mutex::new(Vec::new()),
    };
    // Blobs written from here on are not garbage until the image is committed.
    let _guard = engine.store.write_guard()?;
    let needed = engine.needed(target)?;
    let result = engine.run_stages(&needed, target);
    let committed = engine.wait_commits();
    engine.memo.save();
    let state = result?;
    committed?;
    let unused: Vec<String> = {
        let used = engine.used_args.lock().expect("lock");
        opts.build_args
            .keys()
            .filter(|k| !used.contains(*k) && !engine.meta.contains_key(*k))
            .cloned()
            .collect()
    };
    if !unused.is_empty() {
        progress(Event::Warning(format!(
            "build args not consumed by the Dockerfile: {}",
            unused.join(", ")
        )));
    }
    engine.finish(&state)
}

impl Engine<'_> {
    fn emit(&self, e: Event) {
        (self.progress)(e);
    }

    fn escape(&self) -> Options {
        Options::with_escape(self.df.directives.escape)
    }

    fn file(&self) -> &str {
        &self.opts.dockerfile_name
    }

    fn step_err(&self, span: Span, message: impl Into<String>, hint: Option<&str>) -> BuildError {
        BuildError::Step {
            location: loc(self.file(), span),
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }

    fn run_stages(&self, needed: &BTreeSet<usize>, target: usize) -> Result<Arc<State>> {
        let errors: Mutex<Vec<(usize, BuildError)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for &i in needed {
                let errors = &errors;
                scope.spawn(move || {
                    let r = self.build_stage(i);
                    let out = match r {
                        Ok(s) => Some(Arc::new(s)),
                        Err(e) => {
                            errors.lock().expect("lock").push((i, e));
                            None
                        }
                    };
                    self.done.lock().expect("lock").insert(i, out);
                    self.done_cv.notify_all();
                });
            }
        });
        let mut errors = errors.into_inner().expect("lock");
        // Report the root cause, not the stages that waited for it.
        errors.sort_by_key(|(i, e)| (matches!(e, BuildError::DependencyFailed), *i));
        if let Some((_, e)) = errors.into_iter().next() {
            return Err(e);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        self.done
            .lock()
            .expect("lock")
            .get(&target)
            .cloned()
            .flatten()
            .ok_or(BuildError::DependencyFailed)
    }

    /// Waits for stage `i` to finish.
    fn wait_stage(&self, i: usize) -> Result<Arc<State>> {
        let mut done = self.done.lock().expect("lock");
        loop {
            if let Some(r) = done.get(&i) {
                return r.clone().ok_or(BuildError::DependencyFailed);
            }
            done = self.done_cv.wait(done).expect("lock");
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(BuildError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn build_stage(&self, i: usize) -> Result<State> {
        let stages = self.df.stages();
        let stage = &stages[i];
        let label = self.labels[i].clone();
        let total = stage.instructions.len() + 1;
        let base_name = self.expand_meta(&stage.from.image)?;
        let from_text = format!("FROM {}", stage.from.image);
        let t0 = Instant::now();
        self.emit(Event::Step {
            stage: label.clone(),
            step: 1,
            total,
            text: from_text,
        });
        if let Some(p) = &stage.from.platform {
            let p = self.expand_meta(p)?;
            let host = format!("linux/{}", keel_oci::archive::host_arch());
            if !p.is_empty() && !p.starts_with(&host) {
                return Err(self.step_err(
                    stage.from_span,
                    format!("platform {p} is not supported (this host builds {host})"),
                    None,
                ));
            }
        }
        let mut st = self.base_state(&base_name, i, stage.from_span)?;
        self.emit(Event::Done {
            stage: label.clone(),
            step: 1,
            seconds: t0.elapsed().as_secs_f64(),
        });
        // ONBUILD triggers of the base run first, then are cleared.
        let triggers: Vec<String> = st
            .cfg_get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        st.cfg().remove("OnBuild");
        for (n, t) in triggers.iter().enumerate() {
            let parsed = Dockerfile::parse(&format!("FROM scratch\n{t}\n"), "ONBUILD")?;
            for ins in parsed.instructions.iter().skip(1) {
                let mut ins = ins.clone();
                ins.span = stage.from_span;
                self.check_cancel()?;
                self.step(&mut st, i, &label, (1, total), 1000 + n, &ins)?;
            }
        }
        for (n, ins) in stage.instructions.iter().enumerate() {
            self.check_cancel()?;
            self.step(&mut st, i, &label, (n + 2, total), n, ins)?;
        }
        // WORKDIR/VOLUME directories no later RUN or COPY created stay
        // uncreated, as in buildah (a stage built on this one inherits them).
        if st.hidden_path {
            Self::default_path(&mut st);
        }
        Ok(st)
    }

    #[allow(clippy::too_many_lines)]
    fn step(
        &self,
        st: &mut State,
        stage: usize,
        label: &str,
        (step, total): (usize, usize),
        position: usize,
        ins: &Spanned,
    ) -> Result<()> {
        let t0 = Instant::now();
        let text = ins.original.trim().to_string();
        self.emit(Event::Step {
            stage: label.to_string(),
            step,
            total,
            text: text.clone(),
        });
        let nop = |s: &str| format!("/bin/sh -c #(nop) {s}");
        let mut used = BTreeMap::new();
        let span = ins.span;
        let at = At {
            stage,
            label,
            step,
            position,
        };
        match &ins.instruction {
            Instruction::From(_) => unreachable!("stages start at FROM"),
            Instruction::Arg(defs) => {
                let mut names = Vec::new();
                for d in defs {
                    let v = match self.opts.build_args.get(&d.name) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(def) => Some(self.expand(st, def, &mut used)?),
                            None => self.meta.get(&d.name).cloned(),
                        },
                    };
                    self.used_args.lock().expect("lock").insert(d.name.clone());
                    st.args.insert(d.name.clone(), v.unwrap_or_default());
                    names.push(d.name.clone());
                }
                // buildah lists every ARG the stage declared so far, sorted.
                let created_by = nop(&format!(
                    "ARG {}",
                    st.args.keys().cloned().collect::<Vec<_>>().join(" ")
                ));
                let inputs = Self::inputs(st, format!("ARG {}", names.join(" ")));
                self.cached(st, at, inputs, &created_by, |_| Ok(None))?;
            }
            Instruction::Run(run) => {
                let (argv, display) = Self::run_argv(st, run)?;
                let mut inputs = Self::inputs(
                    st,
                    serde_json::to_string(&json!({
                        "run": argv,
                        "heredocs": run.heredocs.iter().map(keel_dockerfile::Heredoc::text).collect::<Vec<_>>(),
                        "mounts": format!("{:?}", run.mounts),
                        "network": run.network,
                        "user": st.user(),
                        "workdir": st.workdir(),
                        "pending": st.pending,
                    }))
                    .expect("json"),
                );
                // Every ARG in scope is in the command's environment.
                inputs.args.clone_from(&st.args);
                let prefix = if st.args.is_empty() {
                    String::new()
                } else {
                    format!(
                        "|{} {} ",
                        st.args.len(),
                        st.args
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                let created_by = format!("{prefix}{display}");
                self.cached(st, at, inputs, &created_by, |st| {
                    self.exec_run(st, run, argv, label, span)
                })?;
                st.pending.clear();
            }
            Instruction::Copy(c) => {
                self.copy_step(
                    st,
                    at,
                    span,
                    &CopyArgs {
                        sources: &c.sources,
                        dest: &c.dest,
                        from: c.from.as_deref(),
                        chown: c.chown.as_deref(),
                        chmod: c.chmod.as_deref(),
                        parents: c.parents,
                        exclude: &c.exclude,
                        heredocs: &c.heredocs,
                        add: false,
                    },
                )?;
            }
            Instruction::Add(a) => {
                self.copy_step(
                    st,
                    at,
                    span,
                    &CopyArgs {
                        sources: &a.sources,
                        dest: &a.dest,
                        from: None,
                        chown: a.chown.as_deref(),
                        chmod: a.chmod.as_deref(),
                        parents: false,
                        exclude: &a.exclude,
                        heredocs: &a.heredocs,
                        add: true,
                    },
                )?;
            }
            other => {
                self.metadata(st, other, &mut used, span)?;
                let created_by = nop(&text);
                let mut inputs = Self::inputs(st, text.clone());
                inputs.args = used;
                inputs.instruction = format!(
                    "{text}\n{}",
                    serde_json::to_string(st.image.get("config").unwrap_or(&Value::Null))
                        .expect("json")
                );
                self.cached(st, at, inputs, &created_by, |_| Ok(None))?;
            }
        }
        self.emit(Event::Done {
            stage: label.to_string(),
            step,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// Writes the final config and manifest blobs.
    fn finish(&self, st: &State) -> Result<Built> {
        let mut image = st.image.clone();
        image["rootfs"] = json!({"type": "layers", "diff_ids": st.diff_ids()});
        let created = image
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.iter().rev().find_map(|e| e.get("created").cloned()))
            .unwrap_or_else(|| json!(now()));
        image["created"] = created;
        // Remove `null` history placeholders (never written, kept safe).
        if let Some(h) = image.get_mut("history").and_then(Value::as_array_mut) {
            h.retain(|e| !e.is_null());
        }
        let bytes = serde_json::to_vec(&image).expect("json");
        let put = self.store.blobs().put_bytes(&bytes)?;
        let layers: Vec<(Digest, u64, keel_oci::layer::Compression)> = st
            .layers
            .iter()
            .map(|l| {
                Ok((
                    Digest::parse(&l.digest)?,
                    l.size,
                    crate::compression_of(&l.media_type),
                ))
            })
            .collect::<Result<_>>()?;
        let manifest = keel_oci::archive::build_manifest((&put.digest, put.size), &layers);
        self.store.blobs().put_bytes(&manifest)?;
        let _ = self.started;
        Ok(Built {
            config: image,
            config_digest: put.digest,
            manifest,
            layers: st.layers.clone(),
        })
    }
}

/// Where a step is: for progress, and its position for `--explain-cache`.
#[derive(Clone, Copy)]
struct At<'a> {
    stage: usize,
    label: &'a str,
    step: usize,
    position: usize,
}
