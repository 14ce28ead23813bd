//! One job instance: its backend, the step loop with `if`, status functions,
//! `continue-on-error` and timeouts, the runner's environment files and
//! `::` commands, job outputs, masking of everything written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::commands::{self, parse_command};
use crate::expr::value::{Object, Value};
use crate::mask::Masker;
use crate::template::{TKind, Token};
use crate::workflow::{Job, Step, Workflow};

use super::backend::{Backend, End, Exec, HostBackend};
use super::context::{Host, Status, eval, eval_pairs, eval_string, eval_token, object_of, set_env};
use super::{Conclusion, Options, Report, Reporter, StepRecord};

/// GitHub's default job timeout (minutes).
pub const DEFAULT_TIMEOUT_MINUTES: f64 = 360.0;

/// What a job instance runs with.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub key: String,
    pub display: String,
    pub matrix: Object,
    pub strategy: Object,
    pub needs: Object,
    pub inputs: Object,
    pub secrets: Vec<(String, String)>,
    /// The workflow file (for `github.workflow_ref`), relative to the repo.
    pub workflow_path: String,
}

/// A job instance's result.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub result: Conclusion,
    pub outputs: Vec<(String, String)>,
    pub steps: Vec<StepRecord>,
    pub environment: Option<String>,
}

/// A step's scope: the job itself or a composite action.
#[derive(Debug, Default)]
pub struct Scope {
    pub steps: Object,
    pub inputs: Option<Object>,
    /// Env the scope adds (a composite step's `env:`).
    pub env: Vec<(String, String)>,
    pub action_path: Option<PathBuf>,
    pub failed: bool,
    /// Set when this scope runs a composite action (its step results are
    /// not separate records).
    pub nested: bool,
}

/// What a post step does.
pub type PostFn = Box<dyn FnOnce(&mut JobRunner) -> Result<bool, String> + Send>;

/// A post step to run at the end of the job (`post:` of an action).
pub struct Post {
    pub name: String,
    pub condition: String,
    pub run: PostFn,
}

/// State of one running job.
pub struct JobRunner<'a> {
    pub opts: &'a Options,
    pub wf: &'a Workflow,
    pub job: &'a Job,
    pub spec: &'a JobSpec,
    pub reporter: &'a dyn Reporter,
    pub backend: Box<dyn Backend>,
    pub masker: Arc<Mutex<Masker>>,
    pub cancel: Arc<AtomicBool>,
    /// The job's env before steps (workflow + job `env:`).
    pub base_env: Vec<(String, String)>,
    /// Variables added with `GITHUB_ENV`.
    pub added_env: Vec<(String, String)>,
    /// Directories added with `GITHUB_PATH` (newest first).
    pub path_add: Vec<String>,
    pub base_path: String,
    pub dir: PathBuf,
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub tool_cache: PathBuf,
    pub home: PathBuf,
    pub log: Mutex<std::fs::File>,
    pub summary: String,
    pub posts: Vec<Post>,
    pub records: Vec<StepRecord>,
    pub step_counter: usize,
    pub deadline: Instant,
    pub failed: bool,
    pub github: Value,
}

impl std::fmt::Debug for JobRunner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("key", &self.spec.key)
            .finish_non_exhaustive()
    }
}

/// The `github` context and `GITHUB_*` defaults shared by a job's steps.
pub fn github_context(
    opts: &Options,
    wf: &Workflow,
    spec: &JobSpec,
    workspace: &Path,
    job_id: &str,
) -> Value {
    let g = &opts.git;
    let ref_name = g
        .git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| g.git_ref.strip_prefix("refs/tags/"))
        // A pull request's `N/merge`, as GitHub names it.
        .or_else(|| g.git_ref.strip_prefix("refs/pull/"))
        .unwrap_or(&g.git_ref);
    let ref_type = if g.git_ref.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    let owner = g.repository.split('/').next().unwrap_or_default();
    let mut o = Object::new();
    let s = |v: &str| Value::String(v.to_string());
    o.insert("action", s(""));
    o.insert("action_path", s(""));
    o.insert("actor", s(&g.actor));
    o.insert("actor_id", s("0"));
    o.insert("api_url", s("https://api.github.com"));
    o.insert("base_ref", s(&g.base_ref));
    o.insert("event", Value::from_json(&opts.event));
    o.insert("event_name", s(&opts.event_name));
    o.insert(
        "event_path",
        s(&opts.run_dir.join("event.json").to_string_lossy()),
    );
    o.insert("graphql_url", s("https://api.github.com/graphql"));
    o.insert("head_ref", s(&g.head_ref));
    o.insert("job", s(job_id));
    o.insert("ref", s(&g.git_ref));
    o.insert("ref_name", s(ref_name));
    o.insert("ref_protected", Value::Bool(false));
    o.insert("ref_type", s(ref_type));
    o.insert("repository", s(&g.repository));
    o.insert("repository_id", s("0"));
    o.insert("repository_owner", s(owner));
    o.insert("repository_owner_id", s("0"));
    o.insert("retention_days", s("90"));
    o.insert("run_attempt", s("1"));
    o.insert("run_id", s(&opts.run_id));
    o.insert("run_number", s(&opts.run_number.to_string()));
    o.insert("server_url", s("https://github.com"));
    o.insert("sha", s(&g.sha));
    o.insert("token", s(""));
    o.insert("triggering_actor", s(&g.actor));
    o.insert(
        "workflow",
        s(wf.name.as_deref().unwrap_or(&spec.workflow_path)),
    );
    o.insert(
        "workflow_ref",
        s(&format!(
            "{}/{}@{}",
            g.repository, spec.workflow_path, g.git_ref
        )),
    );
    o.insert("workflow_sha", s(&g.sha));
    o.insert("workspace", s(&workspace.to_string_lossy()));
    Value::object(o)
}

fn run_script_ext(shell: &str) -> &'static str {
    if shell.starts_with("python") {
        ".py"
    } else if shell.starts_with("pwsh") || shell.starts_with("powershell") {
        ".ps1"
    } else {
        ".sh"
    }
}

impl JobRunner<'_> {
    /// Writes a (masked) line to the log and the reporter.
    pub fn emit(&self, text: &str) {
        write_line(
            &self.masker,
            &self.log,
            self.reporter,
            &self.spec.display,
            text,
        );
    }

    pub fn add_mask(&self, v: &str) {
        if let Ok(mut m) = self.masker.lock() {
            m.add(v);
        }
    }

    /// The `env` context: workflow, job, `GITHUB_ENV`, then scope env.
    pub fn env_now(&self, scope: &Scope) -> Vec<(String, String)> {
        let mut env = self.base_env.clone();
        for (k, v) in self.added_env.iter().chain(&scope.env) {
            set_env(&mut env, k, v);
        }
        env
    }

    pub fn status(&self, scope: &Scope) -> Status {
        if self.cancel.load(Ordering::Relaxed) {
            Status::Cancelled
        } else if self.failed || scope.failed {
            Status::Failure
        } else {
            Status::Success
        }
    }

    /// The expression contexts for a step in `scope` with env `env`.
    pub fn contexts(&self, scope: &Scope, env: &[(String, String)]) -> Object {
        let mut c = Object::new();
        let mut gh = self.github.clone();
        if let (Some(p), Value::Object(o)) = (&scope.action_path, &mut gh) {
            let mut o2 = (**o).clone();
            o2.set("action_path", Value::String(p.to_string_lossy().into()));
            gh = Value::object(o2);
        }
        c.insert("github", gh);
        c.insert("env", object_of(env));
        c.insert("vars", object_of(&self.opts.vars));
        let mut job = Object::new();
        job.insert(
            "status",
            Value::String(match self.status(scope) {
                Status::Success => "success".into(),
                Status::Failure => "failure".into(),
                Status::Cancelled => "cancelled".into(),
            }),
        );
        c.insert("job", Value::object(job));
        c.insert("steps", Value::object(scope.steps.clone()));
        let mut runner = Object::new();
        runner.insert("os", Value::str("Linux"));
        runner.insert(
            "arch",
            Value::str(
                std::env::consts::ARCH
                    .replace("x86_64", "X64")
                    .replace("aarch64", "ARM64"),
            ),
        );
        runner.insert("name", Value::str("keel"));
        runner.insert("temp", Value::str(self.temp.to_string_lossy()));
        runner.insert("tool_cache", Value::str(self.tool_cache.to_string_lossy()));
        runner.insert("debug", Value::str(""));
        c.insert("runner", Value::object(runner));
        c.insert("secrets", object_of(&self.spec.secrets));
        c.insert("strategy", Value::object(self.spec.strategy.clone()));
        c.insert("matrix", Value::object(self.spec.matrix.clone()));
        c.insert("needs", Value::object(self.spec.needs.clone()));
        c.insert(
            "inputs",
            Value::object(
                scope
                    .inputs
                    .clone()
                    .unwrap_or_else(|| self.spec.inputs.clone()),
            ),
        );
        c.insert("jobs", Value::Null);
        c
    }

    pub fn host<'b>(&'b self, scope: &Scope) -> Host<'b> {
        Host {
            status: self.status(scope),
            workspace: &self.workspace,
        }
    }

    /// Runs `steps` in `scope`; failures mark the scope (and the job, for
    /// the job's own scope).
    pub fn run_steps(&mut self, steps: &[Step], scope: &mut Scope) {
        for step in steps {
            self.run_step(step, scope);
        }
    }

    fn step_display(&self, step: &Step, ctx: &Object, scope: &Scope) -> String {
        if let Some(n) = &step.name
            && let Ok(s) = eval_string(n, ctx, &self.host(scope))
        {
            return s;
        }
        if let Some(r) = &step.run {
            let text = r.source();
            return format!("Run {}", text.lines().next().unwrap_or_default());
        }
        if let Some(u) = &step.uses {
            return format!("Run {}", u.display());
        }
        step.id.clone()
    }

    fn run_step(&mut self, step: &Step, scope: &mut Scope) {
        let env_before = self.env_now(scope);
        let ctx = self.contexts(scope, &env_before);
        let display = self.step_display(step, &ctx, scope);
        let cond = eval(&step.if_, &ctx, &self.host(scope));
        let run = match cond {
            Ok(v) => v.is_truthy(),
            Err(e) => {
                self.fail_step(
                    scope,
                    step,
                    &display,
                    &format!("the `if` expression failed: {e}"),
                );
                return;
            }
        };
        if !run {
            self.emit(&format!("  - {display} (skipped)"));
            self.mark(
                scope,
                step,
                &display,
                Conclusion::Skipped,
                Conclusion::Skipped,
                Vec::new(),
            );
            return;
        }
        self.emit(&format!("  ⭐ {display}"));
        let continue_on_error = step
            .continue_on_error
            .as_ref()
            .and_then(|t| eval_token(t, &ctx, &self.host(scope)).ok())
            .is_some_and(|v| v.is_truthy());
        let timeout = step
            .timeout_minutes
            .as_ref()
            .and_then(|t| eval_token(t, &ctx, &self.host(scope)).ok())
            .map(|v| v.number())
            .filter(|n| n.is_finite() && *n > 0.0)
            .map(|m| Duration::from_secs_f64(m * 60.0));
        let step_env = match eval_pairs(step.env.as_ref(), &ctx, &self.host(scope)) {
            Ok(e) => e,
            Err(e) => {
                self.fail_step(scope, step, &display, &format!("env: {e}"));
                return;
            }
        };
        let mut env = env_before;
        for (k, v) in &step_env {
            set_env(&mut env, k, v);
        }
        let ctx = self.contexts(scope, &env);
        let result = if let Some(run) = &step.run {
            self.script_step(step, run, &env, &ctx, scope, timeout)
        } else if let Some(uses) = &step.uses {
            let uses = uses.display();
            super::actions::run_uses(self, step, &uses, &env, &step_env, &ctx, scope, timeout)
        } else {
            Err("a step needs `run` or `uses`".into())
        };
        let (ok, outputs) = match result {
            Ok(r) => r,
            Err(e) => {
                self.emit(&format!("::error::{e}"));
                (false, Vec::new())
            }
        };
        let outcome = if ok {
            Conclusion::Success
        } else {
            Conclusion::Failure
        };
        let conclusion = if ok || continue_on_error {
            Conclusion::Success
        } else {
            Conclusion::Failure
        };
        if self.cancel.load(Ordering::Relaxed) && !ok {
            self.mark(
                scope,
                step,
                &display,
                Conclusion::Cancelled,
                Conclusion::Cancelled,
                outputs,
            );
            return;
        }
        self.mark(scope, step, &display, outcome, conclusion, outputs);
    }

    fn fail_step(&mut self, scope: &mut Scope, step: &Step, display: &str, msg: &str) {
        self.emit(&format!("::error::{display}: {msg}"));
        let f = Conclusion::Failure;
        self.mark(scope, step, display, f, f, Vec::new());
    }

    /// Records a step's result in the `steps` context and the job's record.
    pub fn mark(
        &mut self,
        scope: &mut Scope,
        step: &Step,
        display: &str,
        outcome: Conclusion,
        conclusion: Conclusion,
        outputs: Vec<(String, String)>,
    ) {
        if conclusion == Conclusion::Failure {
            scope.failed = true;
            if !scope.nested {
                self.failed = true;
            }
        }
        let mut o = Object::new();
        o.insert("outputs", object_of(&outputs));
        o.insert("outcome", Value::str(outcome.as_str()));
        o.insert("conclusion", Value::str(conclusion.as_str()));
        scope.steps.set(step.id.clone(), Value::object(o));
        if !scope.nested {
            self.records.push(StepRecord {
                name: self
                    .masker
                    .lock()
                    .map(|m| m.mask(display))
                    .unwrap_or_default(),
                outcome,
                conclusion,
            });
        }
    }

    /// Fresh command files for one step, as the runner makes them.
    pub fn command_files(&mut self) -> std::io::Result<CommandFiles> {
        self.step_counter += 1;
        let d = self.temp.join("_runner_file_commands");
        std::fs::create_dir_all(&d)?;
        let n = self.step_counter;
        let f = |name: &str| -> std::io::Result<PathBuf> {
            let p = d.join(format!("{name}_{n}"));
            std::fs::write(&p, b"")?;
            Ok(p)
        };
        Ok(CommandFiles {
            env: f("set_env")?,
            output: f("set_output")?,
            path: f("add_path")?,
            state: f("save_state")?,
            summary: f("step_summary")?,
        })
    }

    /// The full process environment for a step.
    pub fn process_env(
        &self,
        env: &[(String, String)],
        files: &CommandFiles,
        action_id: &str,
        scope: &Scope,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut path = self.path_add.clone();
        path.push(self.base_path.clone());
        set_env(&mut out, "PATH", &path.join(":"));
        set_env(&mut out, "HOME", &self.home.to_string_lossy());
        set_env(&mut out, "LANG", "C.UTF-8");
        set_env(&mut out, "CI", "true");
        if let Value::Object(g) = &self.github {
            for (k, v) in g.iter() {
                if matches!(k.as_str(), "event" | "token" | "action" | "action_path") {
                    continue;
                }
                set_env(
                    &mut out,
                    &format!("GITHUB_{}", k.to_uppercase()),
                    &v.coerce_string(),
                );
            }
        }
        set_env(&mut out, "GITHUB_ACTIONS", "true");
        set_env(&mut out, "GITHUB_ACTION", action_id);
        if let Some(p) = &scope.action_path {
            set_env(&mut out, "GITHUB_ACTION_PATH", &p.to_string_lossy());
        }
        set_env(&mut out, "GITHUB_ENV", &files.env.to_string_lossy());
        set_env(&mut out, "GITHUB_OUTPUT", &files.output.to_string_lossy());
        set_env(&mut out, "GITHUB_PATH", &files.path.to_string_lossy());
        set_env(&mut out, "GITHUB_STATE", &files.state.to_string_lossy());
        set_env(
            &mut out,
            "GITHUB_STEP_SUMMARY",
            &files.summary.to_string_lossy(),
        );
        set_env(&mut out, "RUNNER_OS", "Linux");
        set_env(
            &mut out,
            "RUNNER_ARCH",
            &std::env::consts::ARCH
                .replace("x86_64", "X64")
                .replace("aarch64", "ARM64"),
        );
        set_env(&mut out, "RUNNER_NAME", "keel");
        set_env(&mut out, "RUNNER_TEMP", &self.temp.to_string_lossy());
        set_env(
            &mut out,
            "RUNNER_TOOL_CACHE",
            &self.tool_cache.to_string_lossy(),
        );
        set_env(
            &mut out,
            "RUNNER_WORKSPACE",
            &self
                .workspace
                .parent()
                .unwrap_or(&self.workspace)
                .to_string_lossy(),
        );
        set_env(&mut out, "ImageOS", "ubuntu24");
        for (k, v) in env {
            set_env(&mut out, k, v);
        }
        out
    }

    /// Runs one process for a step, handling `::` commands on its output.
    /// Returns whether it exited 0 and the outputs it set.
    pub fn exec_step(
        &mut self,
        argv: Vec<String>,
        env: &[(String, String)],
        cwd: &Path,
        timeout: Option<Duration>,
        files: &CommandFiles,
    ) -> Result<(bool, Vec<(String, String)>), String> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = Some(timeout.map_or(remaining, |t| t.min(remaining)));
        let unsecure = env
            .iter()
            .any(|(k, v)| k == "ACTIONS_ALLOW_UNSECURE_COMMANDS" && v == "true");
        let mut outputs: Vec<(String, String)> = Vec::new();
        let end = {
            let JobRunner {
                backend,
                masker,
                log,
                reporter,
                added_env,
                path_add,
                spec,
                cancel,
                ..
            } = self;
            let mut st = LineState {
                masker,
                log,
                reporter: *reporter,
                job: &spec.display,
                added_env,
                path_add,
                outputs: &mut outputs,
                state_file: &files.state,
                stop_token: None,
                echo: true,
                unsecure,
            };
            let exec = Exec {
                argv,
                env,
                cwd,
                timeout,
                cancel,
            };
            backend
                .exec(&exec, &mut |l| st.line(l))
                .map_err(|e| format!("starting {}: {e}", exec.argv[0]))?
        };
        self.read_command_files(files, &mut outputs)?;
        match end {
            End::Exited(0) => Ok((true, outputs)),
            End::Exited(code) => {
                self.emit(&format!("  ❌ exit code {code}"));
                Ok((false, outputs))
            }
            End::TimedOut => {
                self.emit("  ❌ The step has timed out.");
                Ok((false, outputs))
            }
            End::Cancelled => {
                self.emit("  ❌ The operation was canceled.");
                Ok((false, outputs))
            }
        }
    }

    fn read_command_files(
        &mut self,
        files: &CommandFiles,
        outputs: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        for (k, v) in
            commands::parse_env_file(&read(&files.env)).map_err(|e| format!("GITHUB_ENV: {e}"))?
        {
            set_env(&mut self.added_env, &k, &v);
        }
        for (k, v) in commands::parse_env_file(&read(&files.output))
            .map_err(|e| format!("GITHUB_OUTPUT: {e}"))?
        {
            set_env(outputs, &k, &v);
        }
        for line in read(&files.path)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            self.path_add.insert(0, line.to_string());
        }
        let summary = read(&files.summary);
        if !summary.is_empty() {
            let masked = self
                .masker
                .lock()
                .map(|m| m.mask(&summary))
                .unwrap_or_default();
            self.summary.push_str(&masked);
        }
        Ok(())
    }

    /// The shell command line GitHub uses for `shell` (or the default).
    pub fn shell_argv(&self, shell: Option<&str>, script: &Path) -> Vec<String> {
        let script = script.to_string_lossy();
        let template = match shell {
            // GitHub: bash when there is one, else sh. In a container the
            // choice is made inside, by the same process (no extra exec).
            None if !self.backend.is_host() => {
                return vec![
                    "sh".into(),
                    "-c".into(),
                    "if command -v bash >/dev/null 2>&1; then exec bash -e \"$1\"; else exec sh -e \"$1\"; fi".into(),
                    "sh".into(),
                    script.into_owned(),
                ];
            }
            None => {
                if self.backend.has("bash") {
                    "bash -e {0}".to_string()
                } else {
                    "sh -e {0}".to_string()
                }
            }
            Some("bash") => "bash --noprofile --norc -eo pipefail {0}".into(),
            Some("sh") => "sh -e {0}".into(),
            Some("python") => {
                if self.backend.has("python") {
                    "python {0}".into()
                } else {
                    "python3 {0}".into()
                }
            }
            Some("pwsh") => "pwsh -command \". '{0}'\"".into(),
            Some("powershell") => "powershell -command \". '{0}'\"".into(),
            Some(custom) if custom.contains("{0}") => custom.to_string(),
            Some(custom) => format!("{custom} {{0}}"),
        };
        shlex::split(&template)
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.replace("{0}", &script))
            .collect()
    }

    fn default_run(&self, key: &str) -> Option<Token> {
        for d in [&self.job.defaults, &self.wf.defaults] {
            if let Some(t) = d
                .as_ref()
                .and_then(|d| d.get("run"))
                .and_then(|r| r.get(key))
            {
                return Some(t.clone());
            }
        }
        None
    }

    fn script_step(
        &mut self,
        step: &Step,
        run: &Token,
        env: &[(String, String)],
        ctx: &Object,
        scope: &Scope,
        timeout: Option<Duration>,
    ) -> Result<(bool, Vec<(String, String)>), String> {
        let host = self.host(scope);
        let script = eval_string(run, ctx, &host)?;
        let shell = match step.shell.clone().or_else(|| {
            if scope.nested {
                None
            } else {
                self.default_run("shell")
            }
        }) {
            Some(t) => Some(eval_string(&t, ctx, &host)?),
            None => None,
        };
        let wd = match step.working_directory.clone().or_else(|| {
            if scope.nested {
                None
            } else {
                self.default_run("working-directory")
            }
        }) {
            Some(t) => Some(eval_string(&t, ctx, &host)?),
            None => None,
        };
        let cwd = match wd {
            Some(w) if Path::new(&w).is_absolute() => PathBuf::from(w),
            Some(w) => self.workspace.join(w),
            None => self.workspace.clone(),
        };
        let ext = run_script_ext(shell.as_deref().unwrap_or("bash"));
        self.step_counter += 1;
        let path = self.temp.join(format!("step-{}{ext}", self.step_counter));
        let body = if shell.as_deref() == Some("cmd") {
            script.clone()
        } else {
            format!("{script}\n")
        };
        std::fs::write(&path, body).map_err(|e| format!("writing the step script: {e}"))?;
        let argv = self.shell_argv(shell.as_deref(), &path);
        let files = self
            .command_files()
            .map_err(|e| format!("runner files: {e}"))?;
        let penv = self.process_env(env, &files, &step.id, scope);
        std::fs::create_dir_all(&cwd).ok();
        self.exec_step(argv, &penv, &cwd, timeout, &files)
    }

    /// Evaluates the job's `outputs:` once its steps are done.
    pub fn job_outputs(&self, scope: &Scope) -> Vec<(String, String)> {
        let env = self.env_now(scope);
        let ctx = self.contexts(scope, &env);
        let host = self.host(scope);
        let mut out = Vec::new();
        if let Some(TKind::Map(m)) = self.job.outputs.as_ref().map(|t| &t.kind) {
            for (k, v) in m {
                let val = eval_string(v, &ctx, &host).unwrap_or_default();
                let masked = self
                    .masker
                    .lock()
                    .map(|mk| mk.mask(&val))
                    .unwrap_or_default();
                // GitHub drops outputs that hold a secret rather than passing `***` on.
                if masked != val {
                    self.emit(&format!(
                        "::warning::Skip output '{}' since it may contain secret.",
                        k.display()
                    ));
                    continue;
                }
                out.push((k.display(), val));
            }
        }
        out
    }

    /// Runs registered post steps, last registered first.
    pub fn run_posts(&mut self, scope: &mut Scope) {
        while let Some(post) = self.posts.pop() {
            let env = self.env_now(scope);
            let ctx = self.contexts(scope, &env);
            let go = eval(&post.condition, &ctx, &self.host(scope)).is_ok_and(|v| v.is_truthy());
            if !go {
                continue;
            }
            self.emit(&format!("  ⭐ Post {}", post.name));
            let ok = (post.run)(self).unwrap_or_else(|e| {
                self.emit(&format!("::error::{e}"));
                false
            });
            let c = if ok {
                Conclusion::Success
            } else {
                Conclusion::Failure
            };
            if !ok {
                self.failed = true;
                scope.failed = true;
            }
            self.records.push(StepRecord {
                name: format!("Post {}", post.name),
                outcome: c,
                conclusion: c,
            });
        }
    }
}

/// The per-step environment files.
#[derive(Debug, Clone)]
pub struct CommandFiles {
    pub env: PathBuf,
    pub output: PathBuf,
    pub path: PathBuf,
    pub state: PathBuf,
    pub summary: PathBuf,
}

/// Default backend when nothing else is asked for.
pub fn host_backend() -> Box<dyn Backend> {
    Box::new(HostBackend)
}

/// Output handling of one running step: `::` commands, masking, logging.
struct LineState<'a> {
    masker: &'a Mutex<Masker>,
    log: &'a Mutex<std::fs::File>,
    reporter: &'a dyn Reporter,
    job: &'a str,
    added_env: &'a mut Vec<(String, String)>,
    path_add: &'a mut Vec<String>,
    outputs: &'a mut Vec<(String, String)>,
    state_file: &'a Path,
    stop_token: Option<String>,
    echo: bool,
    unsecure: bool,
}

impl LineState<'_> {
    fn emit(&self, text: &str) {
        write_line(self.masker, self.log, self.reporter, self.job, text);
    }

    fn line(&mut self, l: &str) {
        if let Some(tok) = &self.stop_token {
            if l.trim() == format!("::{tok}::") {
                self.stop_token = None;
            } else {
                self.emit(l);
            }
            return;
        }
        let Some(cmd) = parse_command(l) else {
            self.emit(l);
            return;
        };
        match cmd.name.as_str() {
            "add-mask" => {
                if let Ok(mut m) = self.masker.lock() {
                    m.add(&cmd.message);
                }
                if self.echo {
                    self.emit("::add-mask::***");
                }
            }
            "stop-commands" => self.stop_token = Some(cmd.message.clone()),
            "echo" => self.echo = cmd.message == "on",
            "set-output" => {
                if let Some(n) = cmd.prop("name") {
                    set_env(self.outputs, n, &cmd.message);
                }
            }
            "save-state" => {
                if let Some(n) = cmd.prop("name") {
                    let old = std::fs::read_to_string(self.state_file).unwrap_or_default();
                    let _ = std::fs::write(
                        self.state_file,
                        format!("{old}{n}<<__keel_state\n{}\n__keel_state\n", cmd.message),
                    );
                }
            }
            "set-env" if self.unsecure => {
                if let Some(n) = cmd.prop("name") {
                    set_env(self.added_env, n, &cmd.message);
                }
            }
            "add-path" if self.unsecure => self.path_add.insert(0, cmd.message.clone()),
            "set-env" | "add-path" => self.emit(&format!(
                "::error::The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`.",
                cmd.name
            )),
            "group" => self.emit(&format!("▼ {}", cmd.message)),
            "endgroup" => {}
            "debug" => self.emit(&format!("[debug] {}", cmd.message)),
            "error" | "warning" | "notice" => {
                let loc = match (cmd.prop("file"), cmd.prop("line")) {
                    (Some(f), Some(line)) => match cmd.prop("col") {
                        Some(c) => format!(" {f}:{line}:{c}:"),
                        None => format!(" {f}:{line}:"),
                    },
                    (Some(f), None) => format!(" {f}:"),
                    _ => String::new(),
                };
                let title = cmd.prop("title").map(|t| format!(" {t}:")).unwrap_or_default();
                self.emit(&format!("{}:{loc}{title} {}", cmd.name, cmd.message));
            }
            _ => self.emit(l),
        }
    }
}

/// Masks `text`, appends it to the job's log and hands it to the reporter.
fn write_line(
    masker: &Mutex<Masker>,
    log: &Mutex<std::fs::File>,
    reporter: &dyn Reporter,
    job: &str,
    text: &str,
) {
    let masked = masker.lock().map(|m| m.mask(text)).unwrap_or_default();
    if let Ok(mut f) = log.lock() {
        use std::io::Write;
        let _ = writeln!(f, "{masked}");
    }
    reporter.report(&Report::Line { job, text: &masked });
}
