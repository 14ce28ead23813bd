//! Runs a workflow's jobs: ready jobs (all `needs` done) start at once on
//! their own threads; a job's `if` sees its needs' results; matrix
//! instances run at most `max-parallel` at a time and `fail-fast` cancels
//! the siblings of a failed one; reusable workflows run nested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::expr::value::{Object, Value};
use crate::mask::Masker;
use crate::matrix;
use crate::template::{TKind, Token};
use crate::workflow::{self, Job, Secrets, Workflow};

use super::backend::{Backend, ContainerBackend, HostBackend};
use super::context::{Host, Status, eval, eval_pairs, eval_string, eval_token, object_of};
use super::job::{DEFAULT_TIMEOUT_MINUTES, JobOutcome, JobRunner, JobSpec, Scope, github_context};
use super::{Conclusion, JobRecord, Options, Platform, Report, Reporter, RunRecord};

/// A job's aggregated result as `needs.<id>` shows it.
#[derive(Debug, Clone)]
struct Done {
    result: Conclusion,
    outputs: Vec<(String, String)>,
}

fn needs_context(job: &Job, done: &BTreeMap<String, Done>) -> Object {
    let mut o = Object::new();
    for n in &job.needs {
        if let Some(d) = done.get(n) {
            let mut e = Object::new();
            e.insert("result", Value::str(d.result.as_str()));
            e.insert("outputs", object_of(&d.outputs));
            o.insert(n.clone(), Value::object(e));
        }
    }
    o
}

/// Jobs `filter` needs, transitively (act's `-j`).
fn with_dependencies(wf: &Workflow, filter: &str) -> Vec<String> {
    let mut want = vec![filter.to_string()];
    let mut i = 0;
    while i < want.len() {
        if let Some(j) = wf.jobs.iter().find(|j| j.id == want[i]) {
            for n in &j.needs {
                if !want.contains(n) {
                    want.push(n.clone());
                }
            }
        }
        i += 1;
    }
    want
}

struct Shared<'a> {
    opts: &'a Options,
    wf: &'a Workflow,
    reporter: &'a dyn Reporter,
    masker: Arc<Mutex<Masker>>,
    workflow_path: String,
    inputs: Object,
    secrets: Vec<(String, String)>,
    key_prefix: String,
}

/// Runs `wf` (read from `workflow_path`, relative to the repo) to the end.
pub fn run_workflow(
    wf: &Workflow,
    workflow_path: &str,
    opts: &Options,
    reporter: &dyn Reporter,
) -> RunRecord {
    let started = chrono_now();
    let t0 = Instant::now();
    let _ = std::fs::create_dir_all(&opts.run_dir);
    let _ = std::fs::write(
        opts.run_dir.join("event.json"),
        serde_json::to_vec_pretty(&opts.event).unwrap_or_default(),
    );
    let mut masker = Masker::new();
    for (_, v) in &opts.secrets {
        masker.add(v);
    }
    let inputs = inputs_context(wf, opts);
    let shared = Shared {
        opts,
        wf,
        reporter,
        masker: Arc::new(Mutex::new(masker)),
        workflow_path: workflow_path.to_string(),
        inputs,
        secrets: opts.secrets.clone(),
        key_prefix: String::new(),
    };
    let (records, _) = run_jobs(&shared);
    super::backend::wait_cleanup();
    let conclusion = overall(&records);
    RunRecord {
        id: opts.run_id.clone(),
        workflow: workflow_path.to_string(),
        event: opts.event_name.clone(),
        sha: opts.git.sha.clone(),
        git_ref: opts.git.git_ref.clone(),
        conclusion,
        started,
        duration_ms: t0.elapsed().as_millis() as u64,
        jobs: records,
    }
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs.to_string()
}

/// Failure if any job failed (a job with `continue-on-error` may fail
/// without failing the run), else cancelled if any was, else success.
pub fn overall(records: &[JobRecord]) -> Conclusion {
    if records
        .iter()
        .any(|r| r.result == Conclusion::Failure && !r.continue_on_error)
    {
        Conclusion::Failure
    } else if records.iter().any(|r| r.result == Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    }
}

/// `inputs` for a dispatch (defaults, then `--input`), typed as declared.
fn inputs_context(wf: &Workflow, opts: &Options) -> Object {
    let mut o = Object::new();
    let decl = wf
        .on
        .get(&opts.event_name)
        .map(|e| e.inputs.clone())
        .unwrap_or_default();
    for (name, def) in &decl {
        let given = opts
            .inputs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        let ty = def.get("type").map(Token::display).unwrap_or_default();
        let v = match given {
            Some(v) => typed(&ty, &v),
            None => def.get("default").map_or(Value::Null, |d| match &d.kind {
                crate::template::TKind::Bool(b) => Value::Bool(*b),
                crate::template::TKind::Number(n) => Value::Number(*n),
                _ => typed(&ty, &d.display()),
            }),
        };
        o.insert(name.clone(), v);
    }
    for (k, v) in &opts.inputs {
        if o.get(k).is_none() {
            o.insert(k.clone(), Value::String(v.clone()));
        }
    }
    o
}

fn typed(ty: &str, v: &str) -> Value {
    match ty {
        "boolean" => Value::Bool(v == "true"),
        "number" => Value::Number(crate::expr::value::parse_js_number(v)),
        _ => Value::String(v.to_string()),
    }
}

#[allow(clippy::large_enum_variant)] // one message per finished job
enum Msg {
    Instance {
        job: String,
        index: usize,
        outcome: JobOutcome,
        record: JobRecord,
    },
    Nested {
        job: String,
        records: Vec<JobRecord>,
        done: Done,
    },
}

struct Group {
    total: usize,
    next: usize,
    running: usize,
    max_parallel: usize,
    fail_fast: bool,
    continue_on_error: bool,
    cancel: Arc<AtomicBool>,
    specs: Vec<JobSpec>,
    results: Vec<Option<JobOutcome>>,
}

/// Runs the jobs of `shared.wf`; returns the records and each job's result.
fn run_jobs(shared: &Shared) -> (Vec<JobRecord>, BTreeMap<String, Done>) {
    let opts = shared.opts;
    let wf = shared.wf;
    let selected: Vec<&Job> = match &opts.job_filter {
        Some(f) if shared.key_prefix.is_empty() => {
            let keep = with_dependencies(wf, f);
            wf.jobs.iter().filter(|j| keep.contains(&j.id)).collect()
        }
        _ => wf.jobs.iter().collect(),
    };
    let mut done: BTreeMap<String, Done> = BTreeMap::new();
    let mut records: Vec<JobRecord> = Vec::new();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::scope(|scope| {
        // Job containers started ahead, while the jobs they wait for still run.
        let mut ahead: BTreeMap<
            String,
            std::thread::ScopedJoinHandle<'_, Option<ContainerBackend>>,
        > = BTreeMap::new();
        loop {
            // Start what is ready.
            for job in &selected {
                if done.contains_key(&job.id) || groups.contains_key(&job.id) {
                    continue;
                }
                if !job
                    .needs
                    .iter()
                    .all(|n| done.contains_key(n) || !selected.iter().any(|j| &j.id == n))
                {
                    continue;
                }
                let needs = needs_context(job, &done);
                match prepare(shared, job, &needs, &done) {
                    Prepared::Skip => {
                        records.push(not_run(shared, job, Conclusion::Skipped, None));
                        done.insert(
                            job.id.clone(),
                            Done {
                                result: Conclusion::Skipped,
                                outputs: Vec::new(),
                            },
                        );
                    }
                    Prepared::Fail(msg) => {
                        records.push(not_run(shared, job, Conclusion::Failure, Some(&msg)));
                        done.insert(
                            job.id.clone(),
                            Done {
                                result: Conclusion::Failure,
                                outputs: Vec::new(),
                            },
                        );
                    }
                    Prepared::Call {
                        called,
                        path,
                        inputs,
                        secrets,
                    } => {
                        let tx = tx.clone();
                        let job_id = job.id.clone();
                        let masker = shared.masker.clone();
                        let prefix = format!("{}{}/", shared.key_prefix, job.id);
                        groups.insert(
                            job.id.clone(),
                            Group {
                                total: 1,
                                next: 1,
                                running: 1,
                                max_parallel: 1,
                                fail_fast: false,
                                continue_on_error: false,
                                cancel: Arc::new(AtomicBool::new(false)),
                                specs: Vec::new(),
                                results: vec![None],
                            },
                        );
                        let reporter = shared.reporter;
                        scope.spawn(move || {
                            let inner = Shared {
                                opts,
                                wf: &called,
                                reporter,
                                masker,
                                workflow_path: path,
                                inputs,
                                secrets,
                                key_prefix: prefix,
                            };
                            let (records, inner_done) = run_jobs(&inner);
                            let result = overall(&records);
                            let outputs = call_outputs(&inner, &inner_done);
                            let _ = tx.send(Msg::Nested {
                                job: job_id,
                                records,
                                done: Done { result, outputs },
                            });
                        });
                    }
                    Prepared::Run(group) => {
                        groups.insert(job.id.clone(), group);
                    }
                }
            }
            // Start instances within max-parallel.
            for (id, g) in &mut groups {
                while g.next < g.total && g.running < g.max_parallel && g.specs.len() == g.total {
                    let spec = g.specs[g.next].clone();
                    let index = g.next;
                    g.next += 1;
                    g.running += 1;
                    let job = selected
                        .iter()
                        .find(|j| &j.id == id)
                        .copied()
                        .expect("group of a selected job");
                    let tx = tx.clone();
                    let cancel = g.cancel.clone();
                    let masker = shared.masker.clone();
                    let id = id.clone();
                    let reporter = shared.reporter;
                    let wf_path = shared.workflow_path.clone();
                    let early = if g.total == 1 {
                        ahead.remove(&id)
                    } else {
                        None
                    };
                    scope.spawn(move || {
                        let t = Instant::now();
                        reporter.report(&Report::JobStart { job: &spec.display });
                        let mut spec = spec;
                        spec.workflow_path = wf_path;
                        let early = early.and_then(|h| h.join().ok().flatten());
                        let outcome =
                            run_instance(opts, wf, job, &spec, reporter, masker, cancel, early);
                        let duration = t.elapsed();
                        reporter.report(&Report::JobEnd {
                            job: &spec.display,
                            result: outcome.result,
                            duration,
                        });
                        let record = JobRecord {
                            key: spec.key.clone(),
                            id: job.id.clone(),
                            name: spec.display.clone(),
                            needs: job.needs.clone(),
                            result: outcome.result,
                            duration_ms: duration.as_millis() as u64,
                            outputs: outcome.outputs.clone(),
                            environment: outcome.environment.clone(),
                            steps: outcome.steps.clone(),
                            continue_on_error: false,
                        };
                        let _ = tx.send(Msg::Instance {
                            job: id,
                            index,
                            outcome,
                            record,
                        });
                    });
                }
            }
            // The next jobs' containers start now, overlapping what runs.
            for job in &selected {
                if done.contains_key(&job.id)
                    || groups.contains_key(&job.id)
                    || ahead.contains_key(&job.id)
                {
                    continue;
                }
                let waits_on_running = job.needs.iter().any(|n| groups.contains_key(n));
                let all_started = job
                    .needs
                    .iter()
                    .all(|n| groups.contains_key(n) || done.contains_key(n));
                if !(waits_on_running && all_started) {
                    continue;
                }
                if let Some(image) = static_image(opts, job) {
                    let key = format!("{}{}", shared.key_prefix, job.id).replace('/', ".");
                    ahead.insert(
                        job.id.clone(),
                        scope.spawn(move || start_container(opts, &key, &image, None)),
                    );
                }
            }
            if groups.is_empty() {
                break;
            }
            let Ok(msg) = rx.recv_timeout(Duration::from_millis(100)) else {
                if opts.cancel.load(Ordering::Relaxed) {
                    for g in groups.values() {
                        g.cancel.store(true, Ordering::Relaxed);
                    }
                }
                continue;
            };
            match msg {
                Msg::Nested {
                    job,
                    records: r,
                    done: d,
                } => {
                    groups.remove(&job);
                    records.extend(r);
                    done.insert(job, d);
                }
                Msg::Instance {
                    job,
                    index,
                    outcome,
                    record,
                } => {
                    let mut record = record;
                    record.continue_on_error =
                        groups.get(&job).is_some_and(|g| g.continue_on_error);
                    records.push(record);
                    let finished = {
                        let g = groups.get_mut(&job).expect("running group");
                        g.running -= 1;
                        if outcome.result == Conclusion::Failure
                            && g.fail_fast
                            && !g.continue_on_error
                        {
                            // Siblings not yet started are cancelled too.
                            g.cancel.store(true, Ordering::Relaxed);
                        }
                        g.results[index] = Some(outcome);
                        if g.cancel.load(Ordering::Relaxed) && g.running == 0 && g.next < g.total {
                            for i in g.next..g.total {
                                g.results[i] = Some(JobOutcome {
                                    result: Conclusion::Cancelled,
                                    outputs: Vec::new(),
                                    steps: Vec::new(),
                                    environment: None,
                                });
                            }
                            g.next = g.total;
                        }
                        g.results.iter().all(Option::is_some) && g.running == 0
                    };
                    if finished {
                        let g = groups.remove(&job).expect("group");
                        let results: Vec<JobOutcome> = g.results.into_iter().flatten().collect();
                        let mut result = if results.iter().any(|r| r.result == Conclusion::Failure)
                        {
                            Conclusion::Failure
                        } else if results.iter().any(|r| r.result == Conclusion::Cancelled) {
                            Conclusion::Cancelled
                        } else {
                            Conclusion::Success
                        };
                        if result == Conclusion::Failure && g.continue_on_error {
                            result = Conclusion::Success;
                        }
                        let mut outputs: Vec<(String, String)> = Vec::new();
                        for r in &results {
                            for (k, v) in &r.outputs {
                                if !v.is_empty() || !outputs.iter().any(|(x, _)| x == k) {
                                    super::context::set_env(&mut outputs, k, v);
                                }
                            }
                        }
                        done.insert(job, Done { result, outputs });
                    }
                }
            }
        }
        // Containers started ahead for jobs that did not run go away.
        for (_, h) in std::mem::take(&mut ahead) {
            drop(h.join());
        }
    });
    (records, done)
}

/// The record of a job that did not run (skipped by `if`, or failed before
/// starting), reported as it ends.
fn not_run(shared: &Shared, job: &Job, result: Conclusion, error: Option<&str>) -> JobRecord {
    let key = format!("{}{}", shared.key_prefix, job.id);
    if let Some(msg) = error {
        shared.reporter.report(&Report::Line {
            job: &key,
            text: &format!("::error::{msg}"),
        });
    }
    shared.reporter.report(&Report::JobEnd {
        job: &key,
        result,
        duration: Duration::ZERO,
    });
    JobRecord {
        key: key.clone(),
        id: job.id.clone(),
        name: key,
        needs: job.needs.clone(),
        result,
        duration_ms: 0,
        outputs: Vec::new(),
        environment: None,
        steps: Vec::new(),
        continue_on_error: false,
    }
}

#[allow(clippy::large_enum_variant)] // one per job, moved once
enum Prepared {
    Skip,
    Fail(String),
    Run(Group),
    Call {
        called: Workflow,
        path: String,
        inputs: Object,
        secrets: Vec<(String, String)>,
    },
}

/// Contexts a job-level expression sees (`if`, `strategy`, `runs-on`…).
fn job_contexts(shared: &Shared, needs: &Object, matrix: Option<&Object>) -> Object {
    let mut c = Object::new();
    let tmp = PathBuf::new();
    let spec = JobSpec {
        key: String::new(),
        display: String::new(),
        matrix: Object::new(),
        strategy: Object::new(),
        needs: needs.clone(),
        inputs: shared.inputs.clone(),
        secrets: Vec::new(),
        workflow_path: shared.workflow_path.clone(),
    };
    c.insert(
        "github",
        github_context(shared.opts, shared.wf, &spec, &tmp, ""),
    );
    c.insert("needs", Value::object(needs.clone()));
    c.insert("vars", object_of(&shared.opts.vars));
    c.insert("inputs", Value::object(shared.inputs.clone()));
    c.insert("secrets", object_of(&shared.secrets));
    c.insert("matrix", Value::object(matrix.cloned().unwrap_or_default()));
    c
}

#[allow(clippy::cast_precision_loss)] // matrix sizes are at most 256
fn prepare(shared: &Shared, job: &Job, needs: &Object, done: &BTreeMap<String, Done>) -> Prepared {
    let opts = shared.opts;
    let status = if opts.cancel.load(Ordering::Relaxed) {
        Status::Cancelled
    } else if job.needs.iter().any(|n| {
        done.get(n)
            .is_some_and(|d| matches!(d.result, Conclusion::Failure | Conclusion::Cancelled))
    }) {
        Status::Failure
    } else if job
        .needs
        .iter()
        .any(|n| done.get(n).is_some_and(|d| d.result == Conclusion::Skipped))
    {
        // A skipped need makes `success()` false, as on GitHub.
        Status::Cancelled
    } else {
        Status::Success
    };
    let ws = opts.repo.clone();
    let host = Host {
        status,
        workspace: &ws,
    };
    let ctx = job_contexts(shared, needs, None);
    match eval(&job.if_, &ctx, &host) {
        Ok(v) if v.is_truthy() => {}
        Ok(_) => return Prepared::Skip,
        Err(e) => return Prepared::Fail(format!("job {}: `if`: {e}", job.id)),
    }
    let host = Host {
        status: Status::Success,
        workspace: &ws,
    };
    if let Some(uses) = &job.uses {
        return prepare_call(shared, job, uses, &ctx, &host);
    }
    // Strategy.
    let strategy = match job.strategy.as_ref().map(|s| eval_token(s, &ctx, &host)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Prepared::Fail(format!("job {}: strategy: {e}", job.id)),
        None => Value::Null,
    };
    let combos = match matrix::expand(strategy.get("matrix")) {
        Ok(c) => c,
        Err(e) => return Prepared::Fail(format!("job {}: matrix: {e}", job.id)),
    };
    // act's --matrix: a combination stays when, for each filtered key it
    // has, its value is one of the values given for that key (so
    // `--matrix node:8 --matrix node:8.x` keeps both).
    let combos: Vec<Object> = combos
        .into_iter()
        .filter(|c| {
            c.iter().all(|(k, x)| {
                let mut allowed = opts
                    .matrix_filter
                    .iter()
                    .filter(|(fk, _)| fk == k)
                    .peekable();
                allowed.peek().is_none() || allowed.any(|(_, v)| x.coerce_string() == *v)
            })
        })
        .collect();
    let fail_fast = strategy.get("fail-fast").is_none_or(Value::is_truthy);
    let total = combos.len();
    let max_parallel = strategy
        .get("max-parallel")
        .map(Value::number)
        .filter(|n| n.is_finite() && *n >= 1.0)
        .map_or(total.max(1), |n| n as usize);
    let continue_on_error = job
        .continue_on_error
        .as_ref()
        .and_then(|t| eval_token(t, &ctx, &host).ok())
        .is_some_and(|v| v.is_truthy());
    let has_matrix = strategy.get("matrix").is_some();
    let mut specs = Vec::new();
    for (i, combo) in combos.iter().enumerate() {
        let mut st = Object::new();
        st.insert("fail-fast", Value::Bool(fail_fast));
        st.insert("job-index", Value::Number(i as f64));
        st.insert("job-total", Value::Number(total as f64));
        st.insert("max-parallel", Value::Number(max_parallel as f64));
        let mctx = job_contexts(shared, needs, Some(combo));
        let base = match &job.name {
            Some(n) => eval_string(n, &mctx, &host).unwrap_or_else(|_| job.id.clone()),
            None => job.id.clone(),
        };
        let display = if has_matrix
            && !combo.is_empty()
            && job
                .name
                .as_ref()
                .is_none_or(|n| !n.is_expr() && !n.display().contains("${{"))
        {
            format!(
                "{}{base} ({})",
                shared.key_prefix,
                matrix::display_suffix(combo)
            )
        } else {
            format!("{}{base}", shared.key_prefix)
        };
        let key = if total > 1 {
            format!("{}{}-{}", shared.key_prefix, job.id, i + 1)
        } else {
            format!("{}{}", shared.key_prefix, job.id)
        };
        specs.push(JobSpec {
            key: key.replace('/', "."),
            display,
            matrix: combo.clone(),
            strategy: st,
            needs: needs.clone(),
            inputs: shared.inputs.clone(),
            secrets: shared.secrets.clone(),
            workflow_path: shared.workflow_path.clone(),
        });
    }
    if specs.is_empty() {
        return Prepared::Skip;
    }
    Prepared::Run(Group {
        total,
        next: 0,
        running: 0,
        max_parallel,
        fail_fast,
        continue_on_error,
        cancel: Arc::new(AtomicBool::new(false)),
        results: vec![None; total],
        specs,
    })
}

/// A reusable-workflow call: the called file, its inputs and secrets.
fn prepare_call(shared: &Shared, job: &Job, uses: &Token, ctx: &Object, host: &Host) -> Prepared {
    let opts = shared.opts;
    let u = uses.display();
    let path = match u.strip_prefix("./") {
        Some(p) => p.split('@').next().unwrap_or(p).to_string(),
        None => {
            // owner/repo/.github/workflows/x.yml@ref from local repositories or the action cache.
            match super::actions::resolve_remote(opts, &u) {
                Some(p) => p.to_string_lossy().into_owned(),
                None => {
                    return Prepared::Fail(format!(
                        "job {}: reusable workflow {u} not found locally (keel runs offline: put it under --action-cache)",
                        job.id
                    ));
                }
            }
        }
    };
    let file = if Path::new(&path).is_absolute() {
        PathBuf::from(&path)
    } else {
        opts.repo.join(&path)
    };
    let src = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) => {
            return Prepared::Fail(format!("job {}: reading {}: {e}", job.id, file.display()));
        }
    };
    let called = match workflow::parse(&path, &src) {
        Ok(w) => w,
        Err(e) => return Prepared::Fail(e.to_string()),
    };
    let mut diags = Vec::new();
    workflow::check_call(job, &called, &mut diags);
    if !diags.is_empty() {
        return Prepared::Fail(
            workflow::WorkflowError {
                file: shared.workflow_path.clone(),
                diags,
            }
            .to_string(),
        );
    }
    let call = called.on.get("workflow_call").cloned().unwrap_or_default();
    let given = match job.with.as_ref().map(|w| eval_token(w, ctx, host)) {
        Some(Ok(Value::Object(o))) => (*o).clone(),
        Some(Err(e)) => return Prepared::Fail(format!("job {}: with: {e}", job.id)),
        _ => Object::new(),
    };
    let mut inputs = Object::new();
    for (name, def) in &call.inputs {
        let v = given.get(name).cloned().or_else(|| {
            def.get("default")
                .and_then(|d| eval_token(d, ctx, host).ok())
        });
        let ty = def.get("type").map(Token::display).unwrap_or_default();
        inputs.insert(
            name.clone(),
            match (v, ty.as_str()) {
                (Some(Value::String(s)), t) => typed(t, &s),
                (Some(v), _) => v,
                (None, "boolean") => Value::Bool(false),
                (None, "number") => Value::Number(0.0),
                (None, _) => Value::String(String::new()),
            },
        );
    }
    let secrets = match &job.secrets {
        Secrets::Inherit => shared.secrets.clone(),
        Secrets::Map(m) => eval_pairs(Some(m), ctx, host).unwrap_or_default(),
        Secrets::None => Vec::new(),
    };
    Prepared::Call {
        called,
        path,
        inputs,
        secrets,
    }
}

/// A called workflow's `on.workflow_call.outputs` from its jobs' outputs.
fn call_outputs(inner: &Shared, done: &BTreeMap<String, Done>) -> Vec<(String, String)> {
    let Some(call) = inner.wf.on.get("workflow_call") else {
        return Vec::new();
    };
    let mut jobs = Object::new();
    for (id, d) in done {
        let mut e = Object::new();
        e.insert("result", Value::str(d.result.as_str()));
        e.insert("outputs", object_of(&d.outputs));
        jobs.insert(id.clone(), Value::object(e));
    }
    let mut ctx = job_contexts(inner, &Object::new(), None);
    ctx.set("jobs", Value::object(jobs));
    let ws = inner.opts.repo.clone();
    let host = Host {
        status: Status::Success,
        workspace: &ws,
    };
    call.outputs
        .iter()
        .filter_map(|(k, def)| {
            let v = def.get("value")?;
            Some((k.clone(), eval_string(v, &ctx, &host).unwrap_or_default()))
        })
        .collect()
}

/// The image of a job that can start before the job is ready: one instance,
/// no services, `runs-on`/`container` without expressions, a container
/// platform. `None` otherwise.
fn static_image(opts: &Options, job: &Job) -> Option<String> {
    if opts.dry_run
        || job.uses.is_some()
        || job.services.is_some()
        || job.strategy.is_some()
        || opts.keel.is_none()
    {
        return None;
    }
    if let Some(c) = &job.container {
        return c.as_str().filter(|s| !s.is_empty()).map(String::from);
    }
    let labels: Vec<String> = match &job.runs_on.as_ref()?.kind {
        TKind::String(s) => vec![s.clone()],
        TKind::Seq(items) if items.iter().all(|i| matches!(i.kind, TKind::String(_))) => {
            items.iter().map(Token::display).collect()
        }
        _ => return None,
    };
    let platform = labels
        .iter()
        .find_map(|l| {
            opts.platforms
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(l))
                .map(|(_, p)| p.clone())
        })
        .unwrap_or_else(|| Platform::Image(opts.default_image.clone()));
    match platform {
        Platform::Host => None,
        Platform::Image(i) => Some(i),
    }
}

/// Starts a job container for job instance `key` (mounting its directory).
fn start_container(
    opts: &Options,
    key: &str,
    image: &str,
    network: Option<&str>,
) -> Option<ContainerBackend> {
    start_container_with(opts, key, image, network, &[], &[]).ok()
}

fn start_container_with(
    opts: &Options,
    key: &str,
    image: &str,
    network: Option<&str>,
    env: &[(String, String)],
    options: &[String],
) -> Result<ContainerBackend, String> {
    let keel = opts
        .keel
        .as_ref()
        .ok_or("container jobs need the keel binary")?;
    let dir = opts.run_dir.join("jobs").join(key);
    let tool_cache = opts.run_dir.join("tool-cache");
    for d in [&dir, &tool_cache] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let name = format!("keel-ci-{}-{}", opts.run_id, key.replace(['/', ' '], "_"));
    let mut b = ContainerBackend::start(
        keel,
        &opts.root,
        &name,
        image,
        &[dir, tool_cache],
        Some(&opts.repo),
        network,
        env,
        options,
    )
    .map_err(|e| e.to_string())?;
    b.keep = opts.reuse;
    Ok(b)
}

/// Where a job instance runs.
fn backend_for(
    opts: &Options,
    job: &Job,
    ctx: &Object,
    host: &Host,
    key: &str,
    network: Option<&str>,
) -> Result<Box<dyn Backend>, String> {
    let container = match &job.container {
        Some(c) => match eval_token(c, ctx, host)? {
            Value::String(s) if !s.is_empty() => Some((s, Vec::new(), Vec::new())),
            Value::Object(o) => {
                let image = o.get("image").map(Value::coerce_string).unwrap_or_default();
                let env = o
                    .get("env")
                    .and_then(Value::as_object)
                    .map(|e| {
                        e.iter()
                            .map(|(k, v)| (k.clone(), v.coerce_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let options = o
                    .get("options")
                    .map(|v| shlex::split(&v.coerce_string()).unwrap_or_default())
                    .unwrap_or_default();
                (!image.is_empty()).then_some((image, env, options))
            }
            _ => None,
        },
        None => None,
    };
    let image = if let Some(c) = container {
        Some(c)
    } else {
        let labels: Vec<String> = match job.runs_on.as_ref().map(|r| eval_token(r, ctx, host)) {
            Some(Ok(Value::String(s))) => vec![s],
            Some(Ok(Value::Array { items, .. })) => {
                items.iter().map(Value::coerce_string).collect()
            }
            Some(Ok(Value::Object(o))) => match o.get("labels") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array { items, .. }) => {
                    items.iter().map(Value::coerce_string).collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let platform = labels
            .iter()
            .find_map(|l| {
                opts.platforms
                    .iter()
                    .find(|(p, _)| p.eq_ignore_ascii_case(l))
                    .map(|(_, p)| p.clone())
            })
            .unwrap_or_else(|| Platform::Image(opts.default_image.clone()));
        match platform {
            Platform::Host => None,
            Platform::Image(i) => Some((i, Vec::new(), Vec::new())),
        }
    };
    let Some((image, env, options)) = image else {
        return Ok(Box::new(HostBackend));
    };
    Ok(Box::new(start_container_with(
        opts, key, &image, network, &env, &options,
    )?))
}

/// Runs one job instance to the end.
#[allow(clippy::too_many_arguments)]
fn run_instance(
    opts: &Options,
    wf: &Workflow,
    job: &Job,
    spec: &JobSpec,
    reporter: &dyn Reporter,
    masker: Arc<Mutex<Masker>>,
    cancel: Arc<AtomicBool>,
    early: Option<ContainerBackend>,
) -> JobOutcome {
    let fail = |msg: String| {
        reporter.report(&Report::Line {
            job: &spec.display,
            text: &format!("::error::{msg}"),
        });
        JobOutcome {
            result: Conclusion::Failure,
            outputs: Vec::new(),
            steps: Vec::new(),
            environment: None,
        }
    };
    let dir = opts.run_dir.join("jobs").join(&spec.key);
    let repo_name = opts
        .git
        .repository
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .to_string();
    let workspace = dir.join("work").join(&repo_name);
    let temp = dir.join("temp");
    let home = dir.join("home");
    let tool_cache = opts.run_dir.join("tool-cache");
    for d in [&workspace, &temp, &home, &tool_cache] {
        if let Err(e) = std::fs::create_dir_all(d) {
            return fail(format!("creating {}: {e}", d.display()));
        }
    }
    let logs = opts.run_dir.join("logs");
    let _ = std::fs::create_dir_all(&logs);
    let log = match std::fs::File::create(logs.join(format!("{}.log", spec.key))) {
        Ok(f) => f,
        Err(e) => return fail(format!("creating the log: {e}")),
    };
    let github = github_context(opts, wf, spec, &workspace, &job.id);
    let mut ctx = Object::new();
    ctx.insert("github", github.clone());
    ctx.insert("needs", Value::object(spec.needs.clone()));
    ctx.insert("matrix", Value::object(spec.matrix.clone()));
    ctx.insert("strategy", Value::object(spec.strategy.clone()));
    ctx.insert("inputs", Value::object(spec.inputs.clone()));
    ctx.insert("vars", object_of(&opts.vars));
    ctx.insert("secrets", object_of(&spec.secrets));
    let host = Host {
        status: Status::Success,
        workspace: &workspace,
    };
    // Environment (and its protection).
    let mut environment = None;
    if let Some(e) = &job.environment {
        let name = match eval_token(e, &ctx, &host) {
            Ok(Value::Object(o)) => o.get("name").map(Value::coerce_string),
            Ok(v) => Some(v.coerce_string()),
            Err(err) => return fail(format!("environment: {err}")),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if opts.approvals.protected(&n) {
                reporter.report(&Report::Waiting {
                    job: &spec.display,
                    environment: &n,
                });
                let _ = std::fs::create_dir_all(opts.run_dir.join("approvals"));
                let _ = std::fs::write(
                    opts.run_dir
                        .join("approvals")
                        .join(format!("{}.waiting", spec.key)),
                    &n,
                );
                let ok = opts.approvals.wait(&opts.run_dir, &spec.key, &n, &cancel);
                let _ = std::fs::remove_file(
                    opts.run_dir
                        .join("approvals")
                        .join(format!("{}.waiting", spec.key)),
                );
                if !ok {
                    let mut o = fail(format!("deployment to environment '{n}' was rejected"));
                    o.environment = Some(n);
                    return o;
                }
            }
            environment = Some(n);
        }
    }
    let mut base_env = opts.env.clone();
    let wf_env = match eval_pairs(wf.env.as_ref(), &ctx, &host) {
        Ok(e) => e,
        Err(e) => return fail(format!("env: {e}")),
    };
    for (k, v) in wf_env {
        super::context::set_env(&mut base_env, &k, &v);
    }
    ctx.insert("env", object_of(&base_env));
    match eval_pairs(job.env.as_ref(), &ctx, &host) {
        Ok(e) => {
            for (k, v) in e {
                super::context::set_env(&mut base_env, &k, &v);
            }
        }
        Err(e) => return fail(format!("env: {e}")),
    }
    let timeout_min = job
        .timeout_minutes
        .as_ref()
        .and_then(|t| eval_token(t, &ctx, &host).ok())
        .map(|v| v.number())
        .filter(|n| n.is_finite() && *n > 0.0)
        .unwrap_or(DEFAULT_TIMEOUT_MINUTES);
    // Job-level concurrency: wait for (or cancel) the holder of the group;
    // a `cancel` file in the job's directory cancels this job.
    let job_lock = match job.concurrency.as_ref().map(|t| eval_token(t, &ctx, &host)) {
        Some(Ok(v)) => {
            let (group, cip) = match &v {
                Value::Object(o) => (
                    o.get("group").map(Value::coerce_string).unwrap_or_default(),
                    o.get("cancel-in-progress").is_some_and(Value::is_truthy),
                ),
                v => (v.coerce_string(), false),
            };
            let cancel_file = dir.join("cancel");
            let _ = std::fs::remove_file(&cancel_file);
            let say = |m: &str| {
                reporter.report(&Report::Line {
                    job: &spec.display,
                    text: m,
                });
            };
            match super::concurrency::acquire(
                &opts.concurrency_dir,
                &group,
                cip,
                &cancel_file,
                &cancel,
                say,
            ) {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    return JobOutcome {
                        result: Conclusion::Cancelled,
                        outputs: Vec::new(),
                        steps: Vec::new(),
                        environment,
                    };
                }
                Err(e) => return fail(format!("concurrency group {group}: {e}")),
            }
        }
        Some(Err(e)) => return fail(format!("concurrency: {e}")),
        None => None,
    };
    let watch_stop = Arc::new(AtomicBool::new(false));
    if job_lock.is_some() {
        let (flag, stop, f) = (cancel.clone(), watch_stop.clone(), dir.join("cancel"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if f.exists() {
                    flag.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    // A dry run starts nothing: no services, no job container.
    let services = if opts.dry_run {
        super::actions::Services::default()
    } else {
        match super::actions::start_services(opts, job, &ctx, &host, &spec.key) {
            Ok(s) => s,
            Err(e) => return fail(format!("services: {e}")),
        }
    };
    let backend: Box<dyn Backend> = if opts.dry_run {
        Box::new(HostBackend)
    } else if let Some(b) =
        early.filter(|_| services.network.is_none() && static_image(opts, job).is_some())
    {
        Box::new(b)
    } else {
        match backend_for(
            opts,
            job,
            &ctx,
            &host,
            &spec.key,
            services.network.as_deref(),
        ) {
            Ok(b) => b,
            Err(e) => {
                services.stop();
                return fail(e);
            }
        }
    };
    let in_container = !backend.is_host();
    let base_path = if in_container {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
    } else {
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
    };
    let mut runner = JobRunner {
        opts,
        wf,
        job,
        spec,
        reporter,
        backend,
        masker,
        cancel,
        base_env,
        added_env: Vec::new(),
        path_add: Vec::new(),
        base_path,
        dir: dir.clone(),
        workspace,
        temp,
        tool_cache,
        home,
        log: Mutex::new(log),
        summary: String::new(),
        posts: Vec::new(),
        records: Vec::new(),
        step_counter: 0,
        deadline: Instant::now() + Duration::from_secs_f64(timeout_min * 60.0),
        failed: false,
        github,
    };
    runner.emit(&format!(
        "🚀 Start job {} ({})",
        spec.display,
        runner.backend.describe()
    ));
    let mut scope = Scope::default();
    if opts.dry_run {
        for s in &job.steps {
            runner.emit(&format!(
                "  *DRYRUN* {}",
                s.name.as_ref().map_or_else(|| s.id.clone(), Token::display)
            ));
        }
    } else {
        runner.run_steps(&job.steps, &mut scope);
        runner.run_posts(&mut scope);
    }
    let outputs = runner.job_outputs(&scope);
    if !runner.summary.is_empty() {
        let sdir = opts.run_dir.join("summaries");
        let _ = std::fs::create_dir_all(&sdir);
        let _ = std::fs::write(sdir.join(format!("{}.md", spec.key)), &runner.summary);
    }
    let timed_out = Instant::now() >= runner.deadline;
    let result = if runner.cancel.load(Ordering::Relaxed) {
        Conclusion::Cancelled
    } else if runner.failed {
        Conclusion::Failure
    } else {
        Conclusion::Success
    };
    if timed_out && result == Conclusion::Failure {
        runner.emit(&format!("::error::The job running on runner keel has exceeded the maximum execution time of {timeout_min} minutes."));
    }
    let steps = std::mem::take(&mut runner.records);
    drop(runner);
    if services.network.is_some() {
        // The job container leaves the network before the network goes.
        super::backend::wait_cleanup();
    }
    services.stop();
    watch_stop.store(true, Ordering::Relaxed);
    drop(job_lock);
    JobOutcome {
        result,
        outputs,
        steps,
        environment,
    }
}
