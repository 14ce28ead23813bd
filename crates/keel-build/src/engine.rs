//! Stages and steps: the stage graph, per-instruction semantics, cache use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use keel_dockerfile::shell::{self, Options};
use keel_dockerfile::{
    Command, Dockerfile, Healthcheck, Ignore, Instruction, Location, MountType, Span, Spanned,
};
use keel_oci::layer::Snapshots;
use keel_oci::{Digest, ImageStore, OciError};
use keel_runtime::oneshot::{self, OneShot, Stream};
use keel_runtime::{MountKind, MountSpec};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::cache::{self, Cache, Entry, Inputs, LayerRef};
use crate::context::{HashMemo, SelectError, SourceRoot};
use crate::error::{BuildError, Result, io_err};
use crate::fsops::{self, Overrides};
use crate::{BuildOptions, Built, Event};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of a stage between steps.
#[derive(Debug, Clone)]
struct State {
    /// The whole image config (`config`, `rootfs`, `history`, …).
    image: Value,
    layers: Vec<LayerRef>,
    /// Key of the last step (or of the base).
    key: String,
    /// ARGs in scope with their values.
    args: BTreeMap<String, String>,
    /// Directories WORKDIR/VOLUME need, created in the next layer (as
    /// buildah does): `true` marks the working directory, which only the last
    /// WORKDIR creates, owned by the USER in effect then.
    pending: Vec<(String, bool)>,
    cmd_set: bool,
    /// PATH in Env is the default added at FROM, not one the user set.
    default_path: bool,
    /// A stage FROM an earlier stage whose PATH was only the default: buildah
    /// leaves it out of Env (RUN and `$PATH` still see it) and puts it back
    /// at the front at the end of the stage, so an `ENV PATH=…` there lands
    /// after the inherited variables.
    hidden_path: bool,
}

impl State {
    fn cfg(&mut self) -> &mut Map<String, Value> {
        let img = self.image.as_object_mut().expect("config is an object");
        img.entry("config")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("config.config is an object")
    }

    fn cfg_get(&self, k: &str) -> Option<&Value> {
        self.image.get("config").and_then(|c| c.get(k))
    }

    fn env_list(&self) -> Vec<String> {
        self.cfg_get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The environment RUN and `$VAR` see: Env plus a hidden default PATH.
    fn run_env(&self) -> Vec<String> {
        let mut env = self.env_list();
        if self.hidden_path && !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        env
    }

    /// What `$VAR` sees: ARGs, overridden by ENV.
    fn lookup_env(&self) -> BTreeMap<String, String> {
        let mut m = self.args.clone();
        for e in self.run_env() {
            if let Some((k, v)) = e.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    fn shell(&self) -> Vec<String> {
        self.cfg_get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    fn workdir(&self) -> String {
        self.cfg_get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    fn user(&self) -> String {
        self.cfg_get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn author(&self) -> Option<String> {
        self.image
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    fn push(&mut self, layer: Option<LayerRef>, history: Value) {
        if let Some(l) = layer {
            self.layers.push(l);
        }
        let img = self.image.as_object_mut().expect("object");
        img.entry("history")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("history is a list")
            .push(history);
    }
}

/// A finished stage, shared with the stages that use it.
type StageResult = Option<Arc<State>>;

struct Engine<'a> {
    opts: &'a BuildOptions,
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

/// A layer a step made: its reference, and its blob still to be committed.
struct NewLayer {
    layer: LayerRef,
    blob: keel_oci::blobs::FinishedBlob,
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
/// blobs. Nothing is tagged: see [`crate::commit`].
pub fn build(
    opts: &BuildOptions,
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

    /// The stage an image name refers to, if any (names win over images).
    fn stage_ref(&self, name: &str, before: usize, by_index: bool) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        let stages = self.df.stages();
        if let Some(s) = stages
            .iter()
            .take(before)
            .find(|s| s.from.name.as_deref() == Some(lower.as_str()))
        {
            return Some(s.index);
        }
        if by_index {
            return name.parse::<usize>().ok().filter(|i| *i < before);
        }
        None
    }

    fn expand_meta(&self, s: &str) -> Result<String> {
        Ok(shell::expand(s, &self.meta, &self.escape())?)
    }

    /// The stages `target` depends on (itself included), in file order.
    fn needed(&self, target: usize) -> Result<BTreeSet<usize>> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            todo.extend(self.deps(i)?);
        }
        Ok(need)
    }

    /// Stages that stage `i` reads: its FROM, COPY --from, RUN --mount from.
    fn deps(&self, i: usize) -> Result<Vec<usize>> {
        let stages = self.df.stages();
        let s = &stages[i];
        let mut out = Vec::new();
        let base = self.expand_meta(&s.from.image)?;
        if let Some(d) = self.stage_ref(&base, i, false) {
            out.push(d);
        }
        for ins in s.instructions {
            let from = match &ins.instruction {
                Instruction::Copy(c) => c.from.clone().into_iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.clone()).collect(),
                _ => Vec::new(),
            };
            for f in from {
                let f = self.expand_meta(&f)?;
                if let Some(d) = self.stage_ref(&f, i, true) {
                    out.push(d);
                } else if self.stage_ref(&f, usize::MAX, true).is_some() {
                    return Err(self.step_err(
                        ins.span,
                        format!("stage {f:?} is defined after this use"),
                        None,
                    ));
                }
            }
        }
        Ok(out)
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

    /// Puts the default PATH at the front of an Env without one.
    fn default_path(st: &mut State) {
        let env = st.env_list();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            let mut v = vec![DEFAULT_PATH.to_string()];
            v.extend(env);
            st.cfg().insert("Env".into(), json!(v));
            st.default_path = true;
        }
        st.hidden_path = false;
    }

    fn base_state(&self, base: &str, i: usize, span: Span) -> Result<State> {
        let mut st = if base == "scratch" {
            State {
                image: json!({
                    "architecture": keel_oci::archive::host_arch(),
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "history": [],
                }),
                layers: Vec::new(),
                key: sha("scratch"),
                args: BTreeMap::new(),
                pending: Vec::new(),
                cmd_set: false,
                default_path: false,
                hidden_path: false,
            }
        } else if let Some(d) = self.stage_ref(base, i, false) {
            let parent = self.wait_stage(d)?;
            let mut s = (*parent).clone();
            s.args.clear();
            s.cmd_set = false;
            if s.default_path {
                let env: Vec<String> = s
                    .env_list()
                    .into_iter()
                    .filter(|e| !e.starts_with("PATH="))
                    .collect();
                s.cfg().insert("Env".into(), json!(env));
                s.default_path = false;
                s.hidden_path = true;
            }
            s
        } else {
            let img = match self.store.resolve(base) {
                Ok(img) => img,
                Err(OciError::ImageNotFound(_)) => {
                    return Err(self.step_err(
                        span,
                        format!("base image {base} is not in the image store"),
                        Some(&format!(
                            "run keel pull {base}, or keel import a root filesystem as {base}"
                        )),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            let digests = img.layer_digests()?;
            let diff_ids = img.diff_ids()?;
            let layers = img
                .manifest
                .layers()
                .iter()
                .zip(digests.iter().zip(&diff_ids))
                .map(|(desc, (d, diff))| LayerRef {
                    digest: d.to_string(),
                    diff_id: diff.to_string(),
                    size: desc.size(),
                    media_type: keel_oci::image::media_type_str(desc.media_type()),
                })
                .collect();
            let mut image = img.config_json();
            if !image.get("config").is_some_and(Value::is_object) {
                image["config"] = json!({});
            }
            if !image.get("history").is_some_and(Value::is_array) {
                image["history"] = json!([]);
            }
            State {
                image,
                layers,
                key: sha(&format!("image {}", img.id())),
                args: BTreeMap::new(),
                pending: Vec::new(),
                cmd_set: false,
                default_path: false,
                hidden_path: false,
            }
        };
        // As buildah does: an image without PATH gets the default one.
        if !st.hidden_path {
            Self::default_path(&mut st);
        }
        Ok(st)
    }

    fn position(&self, stage: usize, n: usize) -> String {
        sha(&format!("{}\n{stage}\n{n}", self.position_base))
    }

    /// Runs one step through the cache: a hit reuses the stored result, a miss
    /// runs `make` and stores what it made.
    #[allow(clippy::too_many_arguments)]
    /// Takes the step from the cache if it is there (and checks out).
    fn hit(&self, st: &mut State, label: &str, step: usize, key: &str) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let Some(entry) = self.cache.get(key, self.store.blobs()) else {
            return false;
        };
        self.emit(Event::Cached {
            stage: label.to_string(),
            step,
        });
        st.push(entry.layer, entry.history);
        st.key = key.to_string();
        true
    }

    fn cached(
        &self,
        st: &mut State,
        At {
            stage,
            label,
            step,
            position,
        }: At<'_>,
        inputs: Inputs,
        created_by: &str,
        make: impl FnOnce(&mut State) -> Result<Option<NewLayer>>,
    ) -> Result<()> {
        let key = inputs.key();
        if self.hit(st, label, step, &key) {
            return Ok(());
        }
        let pos = self.position(stage, position);
        if self.opts.explain_cache && !self.opts.no_cache {
            let old = self.cache.position(&pos);
            self.emit(Event::Explain {
                stage: label.to_string(),
                step,
                reason: cache::explain(old.as_ref(), &inputs),
            });
        }
        let made = make(st)?;
        let mut history = json!({"created": now(), "created_by": created_by});
        if let Some(a) = st.author() {
            history["author"] = json!(a);
        }
        if made.is_none() {
            history["empty_layer"] = json!(true);
        }
        self.cache.remember_position(&pos, &inputs);
        let layer = made.as_ref().map(|m| m.layer.clone());
        let mut entry = Entry {
            layer: layer.clone(),
            history: history.clone(),
            inputs,
            verified: None,
        };
        match made {
            None => self.cache.put(&key, &entry)?,
            Some(NewLayer { layer, blob }) => {
                // The next steps run on the layer's snapshot, not its blob:
                // the blob's fsync and the cache entry, which must wait for
                // it, go on in the background ([`Engine::wait_commits`]).
                let (cache, blobs, key) =
                    (self.cache.clone(), self.store.blobs().clone(), key.clone());
                let handle = std::thread::spawn(move || -> Result<()> {
                    blob.commit_checked()?;
                    entry.verified = cache::fresh_stat(&blobs, &layer);
                    cache.put(&key, &entry)
                });
                self.commits.lock().expect("lock").push(handle);
            }
        }
        st.push(layer, history);
        st.key = key;
        Ok(())
    }

    /// Waits for the layer blobs (and cache entries) being committed in the
    /// background; the first error is the build's.
    fn wait_commits(&self) -> Result<()> {
        let handles = std::mem::take(&mut *self.commits.lock().expect("lock"));
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(BuildError::Io {
                    what: "commit layer blob to",
                    path: self.store.blobs().tmp_dir().to_path_buf(),
                    source: std::io::Error::other("the commit thread panicked"),
                })
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn inputs(st: &State, instruction: String) -> Inputs {
        Inputs {
            parent: st.key.clone(),
            instruction,
            ..Inputs::default()
        }
    }

    /// Expands a word with the stage's ARGs and ENV, noting which ARGs it used.
    fn expand(
        &self,
        st: &State,
        word: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<String> {
        let env = st.lookup_env();
        Self::note_args(st, word, used);
        Ok(shell::expand(word, &env, &self.escape())?)
    }

    fn expand_words(
        &self,
        st: &State,
        word: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let env = st.lookup_env();
        Self::note_args(st, word, used);
        Ok(shell::expand_words(word, &env, &self.escape())?)
    }

    fn note_args(st: &State, word: &str, used: &mut BTreeMap<String, String>) {
        for (k, v) in &st.args {
            if word.contains(&format!("${k}")) || word.contains(&format!("${{{k}")) {
                used.insert(k.clone(), v.clone());
            }
        }
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

    /// Applies a metadata instruction to the config.
    #[allow(clippy::too_many_lines)]
    fn metadata(
        &self,
        st: &mut State,
        ins: &Instruction,
        used: &mut BTreeMap<String, String>,
        span: Span,
    ) -> Result<()> {
        let shell_form = |st: &State, c: &Command| -> Vec<String> {
            match c {
                Command::Shell(s) => {
                    let mut v = st.shell();
                    v.push(s.clone());
                    v
                }
                Command::Exec(v) => v.clone(),
            }
        };
        match ins {
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((k.clone(), self.expand(st, v, used)?));
                }
                let mut env = st.env_list();
                for (k, v) in expanded {
                    if k == "PATH" {
                        st.default_path = false;
                        st.hidden_path = false;
                    }
                    // A variable set again keeps its place (docker, buildah).
                    let var = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(e) => *e = var,
                        None => env.push(var),
                    }
                }
                st.cfg().insert("Env".into(), json!(env));
            }
            Instruction::Label(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k, used)?, self.expand(st, v, used)?));
                }
                let labels = st.cfg().entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in expanded {
                    labels[k] = json!(v);
                }
            }
            Instruction::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    for w in self.expand_words(st, p, used)? {
                        let w = if w.contains('/') {
                            w
                        } else {
                            format!("{w}/tcp")
                        };
                        list.push(w);
                    }
                }
                let map = st.cfg().entry("ExposedPorts").or_insert_with(|| json!({}));
                if !map.is_object() {
                    *map = json!({});
                }
                for p in list {
                    map[p] = json!({});
                }
            }
            Instruction::Cmd(c) => {
                let v = shell_form(st, c);
                st.cfg().insert("Cmd".into(), json!(v));
                st.cmd_set = true;
            }
            Instruction::Entrypoint(c) => {
                let v = shell_form(st, c);
                st.cfg().insert("Entrypoint".into(), json!(v));
                // An inherited CMD does not survive a new ENTRYPOINT (Docker's rule).
                if !st.cmd_set {
                    st.cfg().remove("Cmd");
                }
            }
            Instruction::Workdir(w) => {
                let w = self.expand(st, w, used)?;
                let dir = abs_path(&st.workdir(), &w);
                let dir = if dir.len() > 1 {
                    dir.trim_end_matches('/').to_string()
                } else {
                    dir
                };
                st.cfg().insert("WorkingDir".into(), json!(dir));
                st.pending.retain(|(_, workdir)| !workdir);
                st.pending.push((dir, true));
            }
            Instruction::User(u) => {
                let u = self.expand(st, u, used)?;
                st.cfg().insert("User".into(), json!(u));
            }
            Instruction::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, v, used)?;
                    if v.trim().is_empty() {
                        return Err(self.step_err(
                            span,
                            "VOLUME specified can not be an empty string",
                            None,
                        ));
                    }
                    list.push(v);
                }
                let map = st.cfg().entry("Volumes").or_insert_with(|| json!({}));
                if !map.is_object() {
                    *map = json!({});
                }
                for v in &list {
                    map[v.as_str()] = json!({});
                }
                st.pending
                    .extend(list.into_iter().map(|v| (abs_path("/", &v), false)));
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(st, s, used)?;
                keel_runtime::engine::parse_signal(&s)
                    .map_err(|_| self.step_err(span, format!("invalid STOPSIGNAL {s:?}"), None))?;
                st.cfg().insert("StopSignal".into(), json!(s));
            }
            Instruction::Healthcheck(h) => {
                let v = match h {
                    Healthcheck::None => json!({"Test": ["NONE"]}),
                    Healthcheck::Cmd {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match command {
                            Command::Shell(s) => json!(["CMD-SHELL", s]),
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                json!(t)
                            }
                        };
                        let mut m = json!({"Test": test});
                        let ns = |d: &std::time::Duration| json!(d.as_nanos() as u64);
                        if let Some(d) = interval {
                            m["Interval"] = ns(d);
                        }
                        if let Some(d) = timeout {
                            m["Timeout"] = ns(d);
                        }
                        if let Some(d) = start_period {
                            m["StartPeriod"] = ns(d);
                        }
                        if let Some(d) = start_interval {
                            m["StartInterval"] = ns(d);
                        }
                        if let Some(r) = retries {
                            m["Retries"] = json!(r);
                        }
                        m
                    }
                };
                st.cfg().insert("Healthcheck".into(), v);
            }
            Instruction::Shell(v) => {
                st.cfg().insert("Shell".into(), json!(v));
            }
            Instruction::Maintainer(m) => {
                st.image["author"] = json!(m);
            }
            Instruction::Onbuild { original, .. } => {
                let list = st.cfg().entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut().expect("array").push(json!(original));
            }
            Instruction::From(_)
            | Instruction::Arg(_)
            | Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_) => {}
        }
        Ok(())
    }

    /// The argv of a RUN and its history text.
    /// The heredoc of `RUN <<EOF` (the command is nothing but the heredoc).
    fn script_heredoc(run: &keel_dockerfile::Run) -> Option<&keel_dockerfile::Heredoc> {
        let Command::Shell(s) = &run.command else {
            return None;
        };
        let h = run.heredocs.first().filter(|_| run.heredocs.len() == 1)?;
        (s.trim()
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == h.name)
            .then_some(h)
    }

    fn run_argv(st: &State, run: &keel_dockerfile::Run) -> Result<(Vec<String>, String)> {
        match &run.command {
            // History as buildah writes it: `/bin/sh -c` and the JSON form.
            Command::Exec(v) => {
                let json: Vec<String> = v
                    .iter()
                    .map(|a| serde_json::to_string(a).expect("json"))
                    .collect();
                Ok((v.clone(), format!("/bin/sh -c [{}]", json.join(", "))))
            }
            Command::Shell(s) => {
                let mut argv = st.shell();
                let script = if let Some(h) = Self::script_heredoc(run) {
                    // `RUN <<EOF`: the heredoc is the script.
                    h.text()
                } else {
                    let mut full = s.clone();
                    for h in &run.heredocs {
                        full.push('\n');
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                    }
                    full
                };
                argv.push(script.clone());
                // buildah writes `/bin/sh -c` whatever SHELL says.
                let display = format!("/bin/sh -c {script}");
                Ok((argv, display))
            }
        }
    }

    /// Snapshot directories of the stage's layers (base first).
    fn lowerdirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
        if layers.is_empty() {
            let empty = self.build_dir.join("empty");
            fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            return Ok(vec![empty]);
        }
        let snaps: Snapshots = self.store.snapshots()?;
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let blobs = self.store.blobs().clone();
        let digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
        Ok(snaps.ensure_chain(&diff_ids, |i| {
            let d = Digest::parse(&digests[i]).map_err(std::io::Error::other)?;
            let r = blobs.open(&d).map_err(std::io::Error::other)?;
            Ok(Box::new(r) as Box<dyn Read>)
        })?)
    }

    fn tmp_dir(&self) -> Result<tempfile::TempDir> {
        let d = self.build_dir.join("tmp");
        fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(&d)
            .map_err(io_err("create temp dir in", d))
    }

    /// Mounts the stage's root (overlay with a fresh upper in `dir`) for the
    /// duration of `f`; returns what `f` returned. The upper dir stays.
    fn with_root<T>(
        &self,
        dir: &Path,
        layers: &[LayerRef],
        f: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let lowers = self.lowerdirs(layers)?;
        let merged = keel_runtime::rootfs::mount_overlay(dir, &lowers, true)?;
        let guard = Unmount(merged.clone());
        let r = f(&merged);
        drop(guard);
        r
    }

    /// Writes `dir` (an unmounted overlay upper dir) as a layer blob on top
    /// of `parent`; `None` when empty. `dir` itself becomes the new chain's
    /// snapshot, so the next step needs no unpacking.
    fn layer_from(&self, dir: &Path, parent: &[LayerRef]) -> Result<Option<NewLayer>> {
        let parent: Vec<String> = parent.iter().map(|l| l.diff_id.clone()).collect();
        Ok(self.store.layer_from_dir(dir, &parent)?.map(|l| NewLayer {
            layer: LayerRef {
                digest: l.blob.digest().to_string(),
                diff_id: l.blob.digest().to_string(),
                size: l.blob.size(),
                media_type: String::new(),
            },
            blob: l.blob,
        }))
    }

    fn make_pending(root: &Path, pending: &[(String, bool)], user: &str) -> Result<()> {
        for (p, workdir) in pending {
            let (uid, gid) = if *workdir && !user.is_empty() {
                let (uid, gid) = resolve_owner(root, user)?;
                (uid, gid)
            } else {
                (0, 0)
            };
            fsops::mkdir_all(root, p, 0o755, uid, gid).map_err(io_err("create", p))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)]
    fn exec_run(
        &self,
        st: &mut State,
        run: &keel_dockerfile::Run,
        argv: Vec<String>,
        label: &str,
        span: Span,
    ) -> Result<Option<NewLayer>> {
        let location = loc(self.file(), span);
        let command = argv.last().cloned().unwrap_or_default();
        let tmp = self.tmp_dir()?;
        // Seed: WORKDIR/VOLUME directories the layer must contain.
        let seed = if st.pending.is_empty() {
            None
        } else {
            let pending = st.pending.clone();
            let user = st.user();
            self.with_root(tmp.path(), &st.layers, |root| {
                Self::make_pending(root, &pending, &user)
            })?;
            Some(tmp.path().join("upper"))
        };
        let lowerdirs = self.lowerdirs(&st.layers)?;
        let workdir = st.workdir();
        let mut mounts = Vec::new();
        let mut views: Vec<tempfile::TempDir> = Vec::new();
        let mut unmounts: Vec<Unmount> = Vec::new();
        // The runtime bind-mounts these, creating empty mount points when the
        // image has none; BuildKit's layers never contain those.
        let mut stubs: Vec<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
            .into_iter()
            .filter(|f| {
                !lowerdirs
                    .iter()
                    .any(|l| fs::symlink_metadata(l.join(&f[1..])).is_ok())
            })
            .map(str::to_string)
            .collect();
        for m in &run.mounts {
            let target = m
                .target
                .clone()
                .map(|t| abs_path(&workdir, &t))
                .or_else(|| {
                    (m.kind == MountType::Secret)
                        .then(|| format!("/run/secrets/{}", m.id.clone().unwrap_or_default()))
                })
                .ok_or_else(|| self.step_err(span, "mount needs a target", None))?;
            stubs.push(target.clone());
            let spec = match m.kind {
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self.build_dir.join("mounts").join(sha(&id));
                    if !dir.exists() {
                        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                        fs::set_permissions(
                            &dir,
                            fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                        )
                        .map_err(io_err("chmod", &dir))?;
                        std::os::unix::fs::lchown(&dir, m.uid, m.gid)
                            .map_err(io_err("chown", &dir))?;
                    }
                    MountSpec {
                        kind: MountKind::Bind,
                        source: dir.display().to_string(),
                        target,
                        read_only: m.readonly,
                        anonymous: false,
                        options: Vec::new(),
                    }
                }
                MountType::Bind => {
                    let source = m.source.clone().unwrap_or_else(|| ".".to_string());
                    let root_dir = if let Some(from) = &m.from {
                        let view = self.tmp_dir()?;
                        let layers = self.layers_of(from, span)?;
                        let lowers = self.lowerdirs(&layers)?;
                        let merged =
                            keel_runtime::rootfs::mount_overlay(view.path(), &lowers, true)?;
                        unmounts.push(Unmount(merged.clone()));
                        views.push(view);
                        merged
                    } else {
                        self.opts.context.clone().ok_or_else(|| {
                            self.step_err(span, "a bind mount needs a build context", None)
                        })?
                    };
                    let real = fsops::resolve(&root_dir, &source, true)
                        .map_err(io_err("resolve", &source))?;
                    if !real.exists() {
                        return Err(self.step_err(
                            span,
                            format!("mount source {source:?} does not exist"),
                            None,
                        ));
                    }
                    // `rw`: writes land in a throwaway copy, never in the source.
                    let real = if m.readonly {
                        real
                    } else {
                        let view = self.tmp_dir()?;
                        let writable = if real.is_dir() {
                            let merged = keel_runtime::rootfs::mount_overlay(
                                view.path(),
                                std::slice::from_ref(&real),
                                true,
                            )?;
                            unmounts.push(Unmount(merged.clone()));
                            merged
                        } else {
                            let copy = view.path().join("file");
                            fs::copy(&real, &copy).map_err(io_err("copy", &real))?;
                            copy
                        };
                        views.push(view);
                        writable
                    };
                    MountSpec {
                        kind: MountKind::Bind,
                        source: real.display().to_string(),
                        target,
                        read_only: m.readonly,
                        anonymous: false,
                        options: Vec::new(),
                    }
                }
                MountType::Tmpfs => MountSpec {
                    kind: MountKind::Tmpfs,
                    source: String::new(),
                    target,
                    read_only: false,
                    anonymous: false,
                    options: m
                        .size
                        .map(|s| vec![format!("size={s}")])
                        .unwrap_or_default(),
                },
                MountType::Secret => {
                    let id = m.id.clone().unwrap_or_else(|| {
                        target.rsplit('/').next().unwrap_or_default().to_string()
                    });
                    match self.opts.secrets.get(&id) {
                        Some(src) => MountSpec {
                            kind: MountKind::Bind,
                            source: fs::canonicalize(src)
                                .map_err(io_err("read secret", src))?
                                .display()
                                .to_string(),
                            target,
                            read_only: true,
                            anonymous: false,
                            options: Vec::new(),
                        },
                        None if m.required => {
                            return Err(self.step_err(
                                span,
                                format!("secret {id} is required but was not given"),
                                Some(&format!("pass it with --secret id={id},src=FILE")),
                            ));
                        }
                        None => continue,
                    }
                }
                MountType::Ssh => {
                    return Err(self.step_err(span, "RUN --mount=type=ssh is not supported", None));
                }
            };
            mounts.push(spec);
        }
        let mut env = st.run_env();
        for (k, v) in &st.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let network = match run.network.as_deref() {
            Some("none") => "none",
            _ => "host",
        };
        // A heredoc script with its own `#!` runs as a file, as BuildKit does.
        let script_dir = self.tmp_dir()?;
        let mut argv = argv;
        if let Some(h) = Self::script_heredoc(run).filter(|h| h.text().starts_with("#!")) {
            let path = script_dir.path().join("script");
            fs::write(&path, h.text()).map_err(io_err("write", &path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &path))?;
            let target = format!("/dev/pipes/{}", h.name);
            mounts.push(MountSpec {
                kind: MountKind::Bind,
                source: path.display().to_string(),
                target: target.clone(),
                read_only: true,
                anonymous: false,
                options: Vec::new(),
            });
            argv = vec![target];
        }
        let shot = OneShot {
            lowerdirs,
            args: argv,
            env,
            working_dir: workdir,
            user: st.user(),
            network: network.to_string(),
            mounts,
            hostname: String::new(),
        };
        let run_root = self.build_dir.join("run");
        let mut running = oneshot::start(&self.opts.exe, &run_root, &shot, |upper| {
            if let Some(seed) = &seed {
                fs::remove_dir(upper)?;
                fs::rename(seed, upper)?;
            }
            Ok(())
        })
        .map_err(|source| BuildError::RunStart {
            location: location.clone(),
            command: command.clone(),
            source: Box::new(source),
        })?;
        let mut last: Vec<String> = Vec::new();
        let mut partial = [Vec::new(), Vec::new()];
        let code = running
            .wait(self.cancel, |stream, data| {
                let buf = &mut partial[usize::from(stream == Stream::Stderr)];
                buf.extend_from_slice(data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    self.emit(Event::Output {
                        stage: label.to_string(),
                        line: line.clone(),
                    });
                    last.push(line);
                    if last.len() > 5 {
                        last.remove(0);
                    }
                }
            })
            .map_err(|source| BuildError::RunStart {
                location: location.clone(),
                command: command.clone(),
                source: Box::new(source),
            })?;
        for buf in partial {
            if !buf.is_empty() {
                last.push(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        drop(unmounts);
        drop(views);
        self.check_cancel()?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                location,
                command,
                code,
                output: last,
            });
        }
        let upper = running.upper_dir();
        // Mount points the runtime had to create are not part of the result.
        for s in &stubs {
            let p = upper.join(s.trim_start_matches('/'));
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = fs::remove_file(&p);
            } else {
                let _ = fs::remove_dir(&p);
            }
        }
        let layer = self.layer_from(&upper, &st.layers)?;
        running.remove()?;
        Ok(layer)
    }

    /// Layers of a stage (by name or index) or of an image, for `--from`.
    fn layers_of(&self, from: &str, span: Span) -> Result<Vec<LayerRef>> {
        Ok(self.source_of(from, span)?.0)
    }

    /// Layers and cache identity of a `--from` source.
    fn source_of(&self, from: &str, span: Span) -> Result<(Vec<LayerRef>, String)> {
        let from = self.expand_meta(from)?;
        if let Some(i) = self.stage_ref(&from, usize::MAX, true) {
            let s = self.wait_stage(i)?;
            return Ok((s.layers.clone(), s.key.clone()));
        }
        match self.store.resolve(&from) {
            Ok(img) => {
                let st = self.base_state(&from, 0, span)?;
                Ok((st.layers, format!("image {}", img.id())))
            }
            Err(OciError::ImageNotFound(_)) => Err(self.step_err(
                span,
                format!("--from={from}: no stage or image of that name"),
                Some(&format!(
                    "name an earlier stage (FROM … AS {from}), or keel pull {from}"
                )),
            )),
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn copy_step(&self, st: &mut State, at: At<'_>, span: Span, c: &CopyArgs<'_>) -> Result<()> {
        let kw = if c.add { "ADD" } else { "COPY" };
        let mut used = BTreeMap::new();
        let dest_raw = self.expand(st, c.dest, &mut used)?;
        let dest = abs_path(&st.workdir(), &dest_raw);
        let mut sources = Vec::new();
        for s in c.sources {
            sources.push(self.expand(st, s, &mut used)?);
        }
        let chown = c.chown.map(|s| self.expand(st, s, &mut used)).transpose()?;
        let chmod = match c.chmod {
            Some(m) => {
                let m = self.expand(st, m, &mut used)?;
                Some(u32::from_str_radix(&m, 8).map_err(|_| {
                    self.step_err(
                        span,
                        format!("invalid --chmod {m:?}: want an octal mode"),
                        None,
                    )
                })?)
            }
            None => None,
        };
        let instruction = serde_json::to_string(&json!({
            "op": kw,
            "sources": sources,
            "dest": dest,
            "chown": chown,
            "chmod": chmod,
            "parents": c.parents,
            "exclude": c.exclude,
            "pending": st.pending,
            "workdir": st.workdir(),
        }))
        .expect("json");
        // The source root: another stage or image, or the context.
        let tmp_src = self.tmp_dir()?;
        let (from_layers, from_id) = match c.from {
            Some(f) => {
                let (l, id) = self.source_of(f, span)?;
                (Some(l), id)
            }
            None => (None, String::new()),
        };
        let from_hashes = || BTreeMap::from([(format!("--from={from_id}"), sources.join(" "))]);
        // Another stage's content is named by its key: a hit needs no mount.
        if c.from.is_some() && c.heredocs.is_empty() {
            let mut inputs = Self::inputs(st, instruction.clone());
            inputs.args.clone_from(&used);
            inputs.sources = from_hashes();
            if self.hit(st, at.label, at.step, &inputs.key()) {
                st.pending.clear();
                return Ok(());
            }
        }
        let mut src_unmount = None;
        let src_dir: PathBuf = match &from_layers {
            Some(layers) => {
                let lowers = self.lowerdirs(layers)?;
                let merged = keel_runtime::rootfs::mount_overlay(tmp_src.path(), &lowers, true)?;
                src_unmount = Some(Unmount(merged.clone()));
                merged
            }
            None => match &self.opts.context {
                Some(c) => c.clone(),
                None => tmp_src.path().to_path_buf(),
            },
        };
        let root = SourceRoot {
            dir: &src_dir,
            ignore: if c.from.is_some() {
                None
            } else {
                self.ignore.as_ref()
            },
            is_context: c.from.is_none(),
        };
        let mut selected = Vec::new();
        // --parents: the part of a source before its last `/./` is not kept.
        let mut pivots: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut urls = Vec::new();
        for s in &sources {
            if c.add && (s.starts_with("http://") || s.starts_with("https://")) {
                urls.push(s.clone());
                continue;
            }
            if c.from.is_none() && self.opts.context.is_none() {
                return Err(self.step_err(
                    span,
                    format!("{kw} {s}: there is no build context (the Dockerfile came from stdin)"),
                    Some("pass a context directory instead of -"),
                ));
            }
            match root.select(s) {
                Ok(v) => {
                    if let Some((pivot, _)) = s.rsplit_once("/./") {
                        let pivot = keel_dockerfile::ignore::clean(pivot.trim_start_matches('/'));
                        for sel in &v {
                            pivots.insert(sel.real.clone(), pivot.clone());
                        }
                    }
                    selected.extend(v);
                }
                Err(SelectError::Outside(p)) => {
                    return Err(self.step_err(
                        span,
                        format!("{kw} source {p:?} is outside the build context"),
                        Some("sources are paths inside the context directory"),
                    ));
                }
                Err(SelectError::Missing(p)) => {
                    return Err(self.step_err(
                        span,
                        format!(
                            "{kw} source {p:?} not found in the {}",
                            if c.from.is_some() {
                                "source stage"
                            } else {
                                "build context"
                            }
                        ),
                        Some(if c.from.is_some() {
                            "check the path in the stage it is copied from"
                        } else {
                            "check the path, and that .dockerignore does not exclude it"
                        }),
                    ));
                }
                Err(SelectError::Io(p, e)) => {
                    return Err(self.step_err(span, format!("{kw} source {p:?}: {e}"), None));
                }
            }
        }
        // Heredocs become files of their own.
        let heredoc_dir = self.tmp_dir()?;
        let mut heredoc_sel = Vec::new();
        for h in c.heredocs {
            let text = if h.expand {
                self.expand_heredoc(st, &h.text(), &mut used)?
            } else {
                h.text()
            };
            let p = heredoc_dir.path().join(&h.name);
            fs::write(&p, text.as_bytes()).map_err(io_err("write", &p))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .map_err(io_err("chmod", &p))?;
            heredoc_sel.push(crate::context::Selected {
                rel: h.name.clone(),
                real: p,
                is_dir: false,
            });
        }
        let count = sources.len() + c.heredocs.len();
        let wildcard = sources.iter().any(|s| s.contains(['*', '?', '[']));
        let dest_is_dir = dest_raw.ends_with('/') || count > 1 || wildcard || dest == "/";
        // Hash what will be copied: that is the step's identity.
        let mut entries_by_sel = Vec::new();
        let mut hashes = BTreeMap::new();
        for sel in selected.iter().chain(&heredoc_sel) {
            let is_heredoc = heredoc_sel.iter().any(|h| h.real == sel.real);
            let src_root = if is_heredoc {
                SourceRoot {
                    dir: heredoc_dir.path(),
                    ignore: None,
                    is_context: false,
                }
            } else {
                SourceRoot {
                    dir: root.dir,
                    ignore: root.ignore,
                    is_context: root.is_context,
                }
            };
            let entries = src_root
                .entries(sel, c.exclude)
                .map_err(|e| self.step_err(span, format!("{kw} reading {}: {e}", sel.rel), None))?;
            if c.from.is_none() || is_heredoc {
                let h = crate::context::hash_entries(&entries, sel, &self.memo).map_err(|e| {
                    self.step_err(span, format!("{kw} hashing {}: {e}", sel.rel), None)
                })?;
                let prefix = if is_heredoc { "<<" } else { "" };
                hashes.extend(h.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
            }
            entries_by_sel.push((sel.clone(), entries, is_heredoc));
        }
        if c.from.is_some() {
            hashes.extend(from_hashes());
        }
        // URLs are fetched now: their content is part of the key.
        let url_dir = self.tmp_dir()?;
        for u in &urls {
            let name = u
                .split(['?', '#'])
                .next()
                .unwrap_or(u)
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("download")
                .to_string();
            let p = url_dir.path().join(&name);
            fetch(u, &p).map_err(|e| self.step_err(span, format!("ADD {u}: {e}"), None))?;
            let md = fs::metadata(&p).map_err(io_err("stat", &p))?;
            hashes.insert(
                u.clone(),
                format!(
                    "file:{}",
                    self.memo.file_hash(&p, &md).map_err(io_err("read", &p))?
                ),
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                .map_err(io_err("chmod", &p))?;
            let sel = crate::context::Selected {
                rel: name,
                real: p,
                is_dir: false,
            };
            let entries = SourceRoot {
                dir: url_dir.path(),
                ignore: None,
                is_context: false,
            }
            .entries(&sel, &[])
            .map_err(io_err("read", url_dir.path()))?;
            entries_by_sel.push((sel, entries, true));
        }
        let src_hash = sha(&serde_json::to_string(&hashes).expect("json"));
        let kind = if count > 1 || urls.len() > 1 {
            "multi"
        } else if selected.first().is_some_and(|s| s.is_dir) {
            "dir"
        } else {
            "file"
        };
        let created_by = format!("/bin/sh -c #(nop) {kw} {kind}:{src_hash} in {dest_raw} ");
        let mut inputs = Self::inputs(st, instruction);
        inputs.args = used;
        inputs.sources = hashes;
        let add = c.add;
        let parents = c.parents;
        self.cached(st, at, inputs, &created_by, |st| {
            let tmp = self.tmp_dir()?;
            let pending = st.pending.clone();
            let user = st.user();
            let layer_dir = tmp.path().join("upper");
            self.with_root(tmp.path(), &st.layers, |root| {
                Self::make_pending(root, &pending, &user)?;
                let owner =
                    match &chown {
                        Some(spec) => Some(resolve_owner(root, spec).map_err(|e| {
                            self.step_err(span, format!("--chown={spec}: {e}"), None)
                        })?),
                        None => None,
                    };
                let o = Overrides { owner, mode: chmod };
                let dest_exists_dir = fsops::resolve(root, &dest, true).is_ok_and(|p| p.is_dir());
                for (sel, entries, _) in &entries_by_sel {
                    // --parents keeps the path below the `./` pivot only.
                    let kept = pivots
                        .get(&sel.real)
                        .filter(|p| *p != ".")
                        .and_then(|p| sel.rel.strip_prefix(&format!("{p}/")))
                        .unwrap_or(&sel.rel);
                    let name = Path::new(&sel.rel)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = if sel.is_dir {
                        if parents && kept != "." {
                            format!("{}/{kept}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        }
                    } else if parents {
                        format!("{}/{kept}", dest.trim_end_matches('/'))
                    } else if dest_is_dir || dest_exists_dir {
                        format!("{}/{name}", dest.trim_end_matches('/'))
                    } else {
                        dest.clone()
                    };
                    if add && !sel.is_dir && is_archive(&sel.real) {
                        let dir = fsops::mkdir_all(root, &dest, 0o755, 0, 0)
                            .map_err(io_err("create", &dest))?;
                        let f = fs::File::open(&sel.real).map_err(io_err("open", &sel.real))?;
                        let r =
                            keel_oci::layer::decompressed(f).map_err(io_err("read", &sel.real))?;
                        keel_oci::layer::apply_layer(r, &dir, keel_oci::layer::WhiteoutMode::Flat)
                            .map_err(|e| {
                                self.step_err(span, format!("ADD {}: {e}", sel.rel), None)
                            })?;
                        continue;
                    }
                    crate::context::copy_into(root, entries, &target, o).map_err(|e| {
                        self.step_err(span, format!("{kw} {} to {target}: {e}", sel.rel), None)
                    })?;
                }
                Ok(())
            })?;
            self.layer_from(&layer_dir, &st.layers)
        })?;
        drop(src_unmount);
        st.pending.clear();
        Ok(())
    }

    fn expand_heredoc(
        &self,
        st: &State,
        text: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<String> {
        let env = st.lookup_env();
        Self::note_args(st, text, used);
        let opts = Options {
            skip_process_quotes: true,
            ..self.escape()
        };
        Ok(shell::expand(text, &env, &opts)?)
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

struct CopyArgs<'a> {
    sources: &'a [String],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    parents: bool,
    exclude: &'a [String],
    heredocs: &'a [keel_dockerfile::Heredoc],
    add: bool,
}

/// `user[:group]` to numeric ids with the root's /etc/passwd and /etc/group.
fn resolve_owner(root: &Path, spec: &str) -> Result<(u32, u32)> {
    let read = |f: &str| {
        fsops::resolve(root, f, true)
            .ok()
            .and_then(|p| fs::read_to_string(p).ok())
    };
    let id = keel_runtime::user::resolve(
        spec,
        read("/etc/passwd").as_deref(),
        read("/etc/group").as_deref(),
    )?;
    Ok((id.uid, id.gid))
}

/// Unmounts on drop (also on error and unwinding).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = keel_runtime::rootfs::unmount_if_mounted(&self.0);
    }
}

/// Whether a file is a (possibly compressed) tar archive, which ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok(mut r) = keel_oci::layer::decompressed(f) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < 512 {
        match r.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// A plain HTTP GET (ADD URL); https is not supported offline-first.
fn fetch(url: &str, dest: &Path) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported".to_string())?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s =
        std::net::TcpStream::connect(&addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_mins(1)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: keel\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!("HTTP status {status}"));
    }
    fs::write(dest, &buf[end + 4..]).map_err(|e| e.to_string())
}
