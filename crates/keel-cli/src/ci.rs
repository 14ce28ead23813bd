//! `keel ci …`: GitHub Actions workflows run locally with keel-ci, with act's
//! flags (`run`), plus what act lacks: runs kept under the root (`runs`,
//! `logs`, `view`), protected environments and approvals, secrets stored
//! encrypted, and `watch` (run what a push would on each new commit).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use keel_ci::filters::{self, Trigger};
use keel_ci::run::{
    self, Conclusion, FileApprovals, GitInfo, Options, Platform, Report, Reporter, RunRecord,
};
use keel_ci::workflow::{self, Workflow};

use crate::Hint;

#[derive(Debug, Args)]
pub struct CiArgs {
    #[command(subcommand)]
    pub command: CiCommand,
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Run the workflows an event triggers (act's flags).
    Run(Box<RunArgs>),
    /// Run what a push would trigger whenever the repository's branch moves.
    Watch(Box<RunArgs>),
    /// List runs.
    Runs,
    /// Print a run's logs (all jobs, one job, or one step of it).
    Logs {
        run: String,
        job: Option<String>,
        step: Option<String>,
    },
    /// Show a run's job graph with each job's conclusion and duration.
    View { run: String },
    /// Approve a job waiting for a protected environment.
    Approve { run: String, job: String },
    /// Reject a job waiting for a protected environment (the job fails).
    Reject { run: String, job: String },
    /// Protected environments (jobs using them wait for approval).
    #[command(subcommand)]
    Environment(EnvironmentCommand),
    /// Secrets for workflow runs, stored encrypted under the keel root.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
pub enum EnvironmentCommand {
    /// Jobs using NAME wait for `keel ci approve` (GitHub's required reviewers).
    Protect {
        name: String,
    },
    Unprotect {
        name: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret (value from --body, or stdin).
    Set {
        name: String,
        #[arg(short = 'b', long)]
        body: Option<String>,
    },
    /// List secret names.
    List,
    /// Remove a secret.
    Rm { name: String },
}

/// `keel ci run` flags, named as act names them.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Event to trigger (default: push, with the local repository's ref and sha).
    pub event: Option<String>,
    /// Workflow file or directory.
    #[arg(short = 'W', long = "workflows", default_value = ".github/workflows/")]
    pub workflows: PathBuf,
    /// Run this job (and the jobs it needs).
    #[arg(short = 'j', long)]
    pub job: Option<String>,
    /// Event payload (JSON file).
    #[arg(short = 'e', long = "eventpath")]
    pub event_path: Option<PathBuf>,
    /// `workflow_dispatch` / `workflow_call` input (KEY=VALUE).
    #[arg(long = "input")]
    pub inputs: Vec<String>,
    /// Secret: NAME=VALUE, or NAME to take it from the environment.
    #[arg(short = 's', long = "secret")]
    pub secrets: Vec<String>,
    /// File of secrets (KEY=VALUE lines; default .secrets when present).
    #[arg(long = "secret-file")]
    pub secret_file: Option<PathBuf>,
    /// Variable for the `vars` context (KEY=VALUE).
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// File of variables (KEY=VALUE lines; default .vars when present).
    #[arg(long = "var-file")]
    pub var_file: Option<PathBuf>,
    /// Environment variable for every step (KEY=VALUE).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// File of environment variables (default .env when present).
    #[arg(long = "env-file")]
    pub env_file: Option<PathBuf>,
    /// Only matrix combinations with KEY:VALUE.
    #[arg(long = "matrix")]
    pub matrix: Vec<String>,
    /// LABEL=IMAGE, or LABEL=-self-hosted to run on this machine.
    #[arg(short = 'P', long = "platform")]
    pub platforms: Vec<String>,
    /// Plan and print, run nothing.
    #[arg(short = 'n', long = "dryrun", alias = "dry-run")]
    pub dry_run: bool,
    /// List the jobs that would run.
    #[arg(short = 'l', long)]
    pub list: bool,
    /// Where artifacts go, in a directory per run (default: ROOT/ci/artifacts).
    #[arg(long = "artifact-server-path", alias = "artifact-dir")]
    pub artifact_dir: Option<PathBuf>,
    /// Keep job containers after the run.
    #[arg(short = 'r', long)]
    pub reuse: bool,
    /// The repository (default: the current directory).
    #[arg(short = 'C', long = "directory", default_value = ".")]
    pub directory: PathBuf,
    /// Remote actions `owner/repo@ref` are read from DIR/owner/repo@ref.
    #[arg(long = "action-cache-path", alias = "action-cache")]
    pub action_cache: Option<PathBuf>,
    /// `github.actor` (default: git's user.name).
    #[arg(short = 'a', long)]
    pub actor: Option<String>,
    /// Map a `uses:` reference to a local directory (REF=DIR).
    #[arg(long = "local-repository")]
    pub local_repositories: Vec<String>,
}

fn kv(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .with_context(|| format!("{s:?}: expected KEY=VALUE"))
}

/// KEY=VALUE lines (`#` comments, optional quotes), as act reads .env/.secrets.
fn dotenv(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("{}:{}: expected KEY=VALUE", path.display(), i + 1))?;
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') {
                inner.replace("\\n", "\n").replace("\\\"", "\"")
            } else {
                inner.to_string()
            }
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), v));
    }
    Ok(out)
}

fn git_out(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The local repository's commit, ref, actor and `owner/name`.
fn git_info(repo: &Path) -> GitInfo {
    let sha = git_out(repo, &["rev-parse", "HEAD"]).unwrap_or_else(|| "0".repeat(40));
    // A detached HEAD at a tag is that tag's push, as GitHub sees it.
    let git_ref = git_out(repo, &["symbolic-ref", "-q", "HEAD"])
        .or_else(|| {
            git_out(repo, &["describe", "--exact-match", "--tags", "HEAD"])
                .map(|t| format!("refs/tags/{t}"))
        })
        .unwrap_or_else(|| "refs/heads/main".into());
    let actor = git_out(repo, &["config", "user.name"])
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "keel".into());
    let name = repo
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "repo".into());
    let repository = git_out(repo, &["config", "--get", "remote.origin.url"])
        .and_then(|u| {
            let u = u.trim_end_matches(".git").replace(':', "/");
            let parts: Vec<&str> = u.rsplit('/').take(2).collect();
            (parts.len() == 2).then(|| format!("{}/{}", parts[1], parts[0]))
        })
        .unwrap_or_else(|| format!("local/{name}"));
    GitInfo {
        sha,
        git_ref,
        actor,
        repository,
        base_ref: String::new(),
        head_ref: String::new(),
    }
}

fn ci_dir(root: &Path) -> PathBuf {
    root.join("ci")
}

/// Colours per job, as act prints them.
struct Printer {
    workflow: String,
    color: bool,
    palette: Mutex<Vec<String>>,
}

impl Printer {
    fn tag(&self, job: &str) -> String {
        let label = format!("[{}/{job}]", self.workflow);
        if !self.color {
            return label;
        }
        let mut p = self
            .palette
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = p.iter().position(|j| j == job).unwrap_or_else(|| {
            p.push(job.to_string());
            p.len() - 1
        });
        let code = [32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96][i % 11];
        format!("\x1b[{code}m{label}\x1b[0m")
    }
}

impl Reporter for Printer {
    fn report(&self, r: &Report) {
        let mut out = std::io::stdout().lock();
        let _ = match r {
            Report::Line { job, text } => writeln!(out, "{}   | {text}", self.tag(job)),
            Report::JobStart { job } => writeln!(out, "{} 🚀  Start", self.tag(job)),
            Report::JobEnd {
                job,
                result,
                duration,
            } => {
                let word = match result {
                    Conclusion::Success => "succeeded",
                    Conclusion::Failure => "failed",
                    Conclusion::Cancelled => "cancelled",
                    Conclusion::Skipped => "skipped",
                };
                writeln!(
                    out,
                    "{} 🏁  Job {word} ({:.1}s)",
                    self.tag(job),
                    duration.as_secs_f64()
                )
            }
            Report::Waiting { job, environment } => writeln!(
                out,
                "{} ⏸  Waiting for approval of environment '{environment}': keel ci approve <run> {job}",
                self.tag(job)
            ),
        };
    }
}

fn protected_envs(root: &Path) -> Vec<String> {
    std::fs::read(ci_dir(root).join("environments.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

const SECRETS_FILE: &str = "secrets.json";

fn secret_box(root: &Path) -> anyhow::Result<keel_secrets::SecretBox> {
    keel_secrets::SecretBox::load_or_create(&ci_dir(root).join("secrets.key"))
        .context("opening the secrets key")
}

/// Stored secrets: name → sealed value (base64), associated data `ci/secret/NAME`.
fn stored_secrets(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let path = ci_dir(root).join(SECRETS_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(Vec::new());
    };
    let sealed: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&bytes).context("reading stored secrets")?;
    let sb = secret_box(root)?;
    sealed
        .into_iter()
        .map(|(k, v)| {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v)
                .context("stored secret is not base64")?;
            let plain = sb
                .open(&raw, format!("ci/secret/{k}").as_bytes())
                .with_context(|| format!("decrypting secret {k}"))?;
            Ok((k, String::from_utf8_lossy(&plain).into_owned()))
        })
        .collect()
}

fn secret_cmd(root: &Path, c: SecretCommand) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let path = ci_dir(root).join(SECRETS_FILE);
    let mut sealed: std::collections::BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .context("reading stored secrets")?
        .unwrap_or_default();
    match c {
        SecretCommand::Set { name, body } => {
            if workflow::check_id(&name).is_some()
                && !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                bail!("secret name {name:?}: only letters, digits and _");
            }
            let value = if let Some(b) = body {
                b
            } else {
                {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                        .context("reading the secret from stdin")?;
                    s.trim_end_matches('\n').to_string()
                }
            };
            let sb = secret_box(root)?;
            let s = sb
                .seal(value.as_bytes(), format!("ci/secret/{name}").as_bytes())
                .context("encrypting")?;
            sealed.insert(
                name.clone(),
                base64::engine::general_purpose::STANDARD.encode(s),
            );
            write_atomic(&path, &serde_json::to_vec_pretty(&sealed)?)?;
            eprintln!("secret {name} stored (encrypted)");
        }
        SecretCommand::List => {
            for k in sealed.keys() {
                println!("{k}");
            }
        }
        SecretCommand::Rm { name } => {
            if sealed.remove(&name).is_none() {
                bail!("no secret named {name}");
            }
            write_atomic(&path, &serde_json::to_vec_pretty(&sealed)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn environment_cmd(root: &Path, c: EnvironmentCommand) -> anyhow::Result<ExitCode> {
    let mut envs = protected_envs(root);
    match c {
        EnvironmentCommand::Protect { name } => {
            if !envs.iter().any(|e| e.eq_ignore_ascii_case(&name)) {
                envs.push(name.clone());
            }
            eprintln!("environment {name} now needs approval (keel ci approve RUN JOB)");
        }
        EnvironmentCommand::Unprotect { name } => envs.retain(|e| !e.eq_ignore_ascii_case(&name)),
        EnvironmentCommand::List => {
            for e in &envs {
                println!("{e}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    write_atomic(
        &ci_dir(root).join("environments.json"),
        &serde_json::to_vec_pretty(&envs)?,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn run_dir(root: &Path, run: &str) -> anyhow::Result<PathBuf> {
    let d = ci_dir(root).join("runs").join(run);
    if !d.is_dir() {
        return Err(anyhow::anyhow!("no run {run}"))
            .context(Hint::new("keel ci runs lists the runs"));
    }
    Ok(d)
}

fn load_record(dir: &Path) -> Option<RunRecord> {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).ok()?).ok()
}

fn approve(root: &Path, run: &str, job: &str, verdict: &str) -> anyhow::Result<ExitCode> {
    let dir = run_dir(root, run)?;
    let approvals = dir.join("approvals");
    let waiting: Vec<String> = std::fs::read_dir(&approvals)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".waiting")
                .map(String::from)
        })
        .collect();
    let key = if waiting.iter().any(|w| w == job) {
        job.to_string()
    } else {
        let m: Vec<&String> = waiting
            .iter()
            .filter(|w| w.split('-').next() == Some(job) || w.starts_with(&format!("{job}-")))
            .collect();
        match m.as_slice() {
            [one] => (*one).clone(),
            _ => {
                return Err(anyhow::anyhow!(
                    "job {job} of run {run} is not waiting for approval"
                ))
                .context(Hint::new(format!(
                    "waiting: {}",
                    if waiting.is_empty() {
                        "none".into()
                    } else {
                        waiting.join(", ")
                    }
                )));
            }
        }
    };
    write_atomic(&approvals.join(&key), verdict.as_bytes())?;
    eprintln!("{key}: {verdict}");
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::cast_precision_loss)] // durations for display
fn runs(root: &Path) -> anyhow::Result<ExitCode> {
    let mut rows: Vec<(u64, Vec<String>)> = Vec::new();
    for e in std::fs::read_dir(ci_dir(root).join("runs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().to_string();
        let n: u64 = id.parse().unwrap_or(0);
        let (wf, ev, git_ref, concl, dur, when) = if let Some(rec) = load_record(&e.path()) {
            (
                rec.workflow,
                rec.event,
                rec.git_ref,
                rec.conclusion.as_str().to_string(),
                format!("{:.1}s", rec.duration_ms as f64 / 1000.0),
                started(&rec.started),
            )
        } else {
            {
                let wf = std::fs::read_to_string(e.path().join("workflow")).unwrap_or_default();
                (
                    wf,
                    String::new(),
                    String::new(),
                    "running".into(),
                    String::new(),
                    String::new(),
                )
            }
        };
        rows.push((n, vec![id, wf, ev, git_ref, concl, dur, when]));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    print!(
        "{}",
        crate::output::table(
            &[
                "RUN",
                "WORKFLOW",
                "EVENT",
                "REF",
                "CONCLUSION",
                "DURATION",
                "STARTED"
            ],
            &rows.into_iter().map(|r| r.1).collect::<Vec<_>>()
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn started(epoch: &str) -> String {
    let secs: i64 = epoch.parse().unwrap_or(0);
    let rfc = chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339());
    crate::output::ago(rfc.as_deref())
}

fn logs(root: &Path, run: &str, job: Option<&str>, step: Option<&str>) -> anyhow::Result<ExitCode> {
    let dir = run_dir(root, run)?.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            job.is_none_or(|j| {
                stem == j
                    || stem.starts_with(&format!("{j}-"))
                    || stem.starts_with(&format!("{j}."))
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no logs for {}", job.unwrap_or("this run"));
    }
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut on = step.is_none();
        for line in text.lines() {
            if let Some(s) = step
                && let Some(title) = line.trim_start().strip_prefix("⭐ ")
            {
                on = title == s || title.starts_with(s);
            }
            if on {
                println!("{name}\t{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::cast_precision_loss)]
fn view(root: &Path, run: &str) -> anyhow::Result<ExitCode> {
    let dir = run_dir(root, run)?;
    let Some(rec) = load_record(&dir) else {
        bail!("run {run} is still running (its record is written at the end)");
    };
    println!(
        "run {} · {} · {} {} · {}",
        rec.id,
        rec.workflow,
        rec.event,
        rec.git_ref,
        rec.conclusion.as_str()
    );
    // Stages: a job sits one level below the deepest job it needs.
    let mut level: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for _ in 0..rec.jobs.len() {
        for j in &rec.jobs {
            let l = j
                .needs
                .iter()
                .filter_map(|n| level.get(n))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level.insert(j.id.clone(), l);
        }
    }
    let max = level.values().copied().max().unwrap_or(0);
    for l in 0..=max {
        for j in rec.jobs.iter().filter(|j| level.get(&j.id) == Some(&l)) {
            let mark = match j.result {
                Conclusion::Success => "✓",
                Conclusion::Failure => "✗",
                Conclusion::Cancelled => "⊘",
                Conclusion::Skipped => "-",
            };
            let needs = if j.needs.is_empty() {
                String::new()
            } else {
                format!("  ← {}", j.needs.join(", "))
            };
            let env = j
                .environment
                .as_ref()
                .map(|e| format!("  [{e}]"))
                .unwrap_or_default();
            println!(
                "{}{mark} {} {} {:.1}s{env}{needs}",
                "  ".repeat(l),
                j.name,
                j.result.as_str(),
                j.duration_ms as f64 / 1000.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The workflow files under `-W`.
fn workflow_files(repo: &Path, w: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let p = if w.is_absolute() {
        w.to_path_buf()
    } else {
        repo.join(w)
    };
    if p.is_file() {
        return Ok(vec![p]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
        .with_context(|| format!("reading {}", p.display()))
        .context(Hint::new(
            "keel ci run looks for .github/workflows/*.yml; -W FILE|DIR chooses",
        ))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

fn next_run_id(root: &Path) -> anyhow::Result<(String, PathBuf, u64)> {
    let runs = ci_dir(root).join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let mut n = std::fs::read_dir(&runs)?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    loop {
        n += 1;
        let d = runs.join(n.to_string());
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok((n.to_string(), d, n)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
        }
    }
}

fn default_event(name: &str, git: &GitInfo) -> serde_json::Value {
    let (owner, repo) = git
        .repository
        .split_once('/')
        .unwrap_or(("local", &git.repository));
    let repository = serde_json::json!({"name": repo, "full_name": git.repository, "owner": {"login": owner, "name": owner}, "default_branch": "main"});
    match name {
        "push" => serde_json::json!({
            "ref": git.git_ref, "after": git.sha, "before": "0".repeat(40),
            "head_commit": {"id": git.sha}, "repository": repository,
            "pusher": {"name": git.actor}, "sender": {"login": git.actor},
        }),
        "pull_request" => serde_json::json!({
            "action": "opened", "number": 1,
            "pull_request": {"head": {"ref": git.git_ref.trim_start_matches("refs/heads/"), "sha": git.sha}, "base": {"ref": "main"}},
            "repository": repository, "sender": {"login": git.actor},
        }),
        _ => serde_json::json!({"repository": repository, "sender": {"login": git.actor}}),
    }
}

/// A pull request's `github.head_ref`/`base_ref` from the event payload, and
/// `github.ref` as GitHub sets it: `refs/pull/N/merge` for `pull_request`,
/// the base branch for `pull_request_target`.
fn pull_request_refs(event_name: &str, event: &serde_json::Value, git: &mut GitInfo) {
    let field = |p: &str| event.pointer(p).and_then(|v| v.as_str()).map(String::from);
    if let Some(h) = field("/pull_request/head/ref") {
        git.head_ref = h;
    }
    if let Some(b) = field("/pull_request/base/ref") {
        git.base_ref = b;
    }
    if event_name == "pull_request_target" {
        if !git.base_ref.is_empty() {
            git.git_ref = format!("refs/heads/{}", git.base_ref);
        }
    } else if let Some(n) = event.get("number").and_then(serde_json::Value::as_u64) {
        git.git_ref = format!("refs/pull/{n}/merge");
    }
}

/// `github.event.inputs` of a `workflow_dispatch` whose payload has none:
/// the declared defaults and the `--input` values, as strings (GitHub keeps
/// booleans as strings there), undeclared `--input`s too, as act does.
fn dispatch_event(
    event: &serde_json::Value,
    wf: &Workflow,
    inputs: &[(String, String)],
) -> serde_json::Value {
    let mut event = event.clone();
    let Some(obj) = event.as_object_mut() else {
        return event;
    };
    if obj.contains_key("inputs") {
        return event;
    }
    let mut map = serde_json::Map::new();
    if let Some(e) = wf.on.get("workflow_dispatch") {
        for (name, def) in &e.inputs {
            if let Some(d) = def.get("default") {
                map.insert(name.clone(), serde_json::Value::String(d.display()));
            }
        }
    }
    for (k, v) in inputs {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    obj.insert("inputs".into(), serde_json::Value::Object(map));
    event
}

struct Loaded {
    path: PathBuf,
    rel: String,
    wf: Workflow,
}

fn changed_files(repo: &Path) -> Option<Vec<String>> {
    let out = git_out(repo, &["diff", "--name-only", "HEAD~1", "HEAD"])
        .or_else(|| git_out(repo, &["show", "--pretty=", "--name-only", "HEAD"]))?;
    let mut files: Vec<String> = out.lines().map(String::from).collect();
    if let Some(wt) = git_out(repo, &["status", "--porcelain"]) {
        files.extend(wt.lines().filter_map(|l| l.get(3..)).map(String::from));
    }
    Some(files)
}

#[allow(clippy::cast_precision_loss)]
fn run_cmd(root: &Path, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let repo = a
        .directory
        .canonicalize()
        .with_context(|| format!("repository {}", a.directory.display()))?;
    let git = git_info(&repo);
    let event_name = a.event.clone().unwrap_or_else(|| "push".into());
    let mut loaded = Vec::new();
    for f in workflow_files(&repo, &a.workflows)? {
        let rel = f
            .strip_prefix(&repo)
            .unwrap_or(&f)
            .to_string_lossy()
            .to_string();
        let src =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let wf = workflow::parse(&rel, &src).map_err(|e| anyhow::anyhow!("{e}"))?;
        loaded.push(Loaded { path: f, rel, wf });
    }
    let event: serde_json::Value = match &a.event_path {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?,
        None => default_event(&event_name, &git),
    };
    let mut git = git;
    if let Some(a) = &a.actor {
        git.actor.clone_from(a);
    }
    if let Some(r) = event.get("ref").and_then(|r| r.as_str()) {
        git.git_ref = r.to_string();
    }
    if event_name.starts_with("pull_request") {
        pull_request_refs(&event_name, &event, &mut git);
    }
    let trigger = Trigger {
        event: event_name.clone(),
        git_ref: match event_name.as_str() {
            "pull_request" | "pull_request_target" => format!(
                "refs/heads/{}",
                event
                    .pointer("/pull_request/base/ref")
                    .and_then(|v| v.as_str())
                    .unwrap_or("main")
            ),
            _ => git.git_ref.clone(),
        },
        changed: changed_files(&repo),
        action: event
            .get("action")
            .and_then(|v| v.as_str())
            .map(String::from),
    };
    let selected: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| filters::triggers(&l.wf, &trigger))
        .filter(|l| {
            a.job
                .as_ref()
                .is_none_or(|j| l.wf.jobs.iter().any(|x| &x.id == j))
        })
        .collect();
    if a.list {
        let mut rows = Vec::new();
        for l in &selected {
            for j in &l.wf.jobs {
                rows.push(vec![
                    j.id.clone(),
                    j.name
                        .as_ref()
                        .map_or_else(|| j.id.clone(), keel_ci::template::Token::display),
                    l.wf.name.clone().unwrap_or_default(),
                    l.rel.clone(),
                    l.wf.on.keys().cloned().collect::<Vec<_>>().join(","),
                    j.needs.join(","),
                ]);
            }
        }
        print!(
            "{}",
            crate::output::table(
                &[
                    "JOB ID",
                    "JOB NAME",
                    "WORKFLOW NAME",
                    "WORKFLOW FILE",
                    "EVENTS",
                    "NEEDS"
                ],
                &rows
            )
        );
        return Ok(ExitCode::SUCCESS);
    }
    if selected.is_empty() {
        eprintln!(
            "no workflow in {} runs on {event_name} for {}",
            a.workflows.display(),
            trigger.git_ref
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut secrets: Vec<(String, String)> = stored_secrets(root)?;
    let secret_file = a
        .secret_file
        .clone()
        .or_else(|| Some(repo.join(".secrets")).filter(|p| p.is_file()));
    if let Some(f) = &secret_file {
        secrets.extend(dotenv(f)?);
    }
    for s in &a.secrets {
        secrets.push(match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (
                s.clone(),
                std::env::var(s)
                    .with_context(|| format!("secret {s}: not set in the environment"))?,
            ),
        });
    }
    let mut vars = Vec::new();
    let var_file = a
        .var_file
        .clone()
        .or_else(|| Some(repo.join(".vars")).filter(|p| p.is_file()));
    if let Some(f) = &var_file {
        vars.extend(dotenv(f)?);
    }
    for v in &a.vars {
        vars.push(kv(v)?);
    }
    // As act does, so that workflows can tell a local run (`if: ${{ !env.ACT }}`).
    let mut env = vec![
        ("ACT".to_string(), "true".to_string()),
        ("KEEL".to_string(), "true".to_string()),
    ];
    let env_file = a
        .env_file
        .clone()
        .or_else(|| Some(repo.join(".env")).filter(|p| p.is_file()));
    if let Some(f) = &env_file {
        env.extend(dotenv(f)?);
    }
    for v in &a.env {
        env.push(kv(v)?);
    }
    let inputs = a
        .inputs
        .iter()
        .map(|i| kv(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let matrix_filter = a
        .matrix
        .iter()
        .map(|m| {
            m.split_once(':')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .context("--matrix KEY:VALUE")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platforms = a
        .platforms
        .iter()
        .map(|p| {
            let (l, i) = p
                .split_once('=')
                .context("-P LABEL=IMAGE or LABEL=-self-hosted")?;
            Ok((
                l.to_string(),
                if i == "-self-hosted" {
                    Platform::Host
                } else {
                    Platform::Image(i.to_string())
                },
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let local_repositories = a
        .local_repositories
        .iter()
        .map(|m| kv(m).map(|(k, v)| (k, PathBuf::from(v))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The reusable workflows a run calls are read and checked before
    // anything runs, as GitHub does (inputs, secrets, the permissions a
    // called workflow requests against what its caller grants, nesting).
    for l in &selected {
        let errors = keel_ci::reusable::load(
            &l.wf,
            &keel_ci::workflow::ParseOptions::default(),
            &mut |uses| {
                keel_ci::run::actions::called_workflow_source(
                    &repo,
                    &local_repositories,
                    a.action_cache.as_deref(),
                    uses,
                )
            },
        );
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("\n"));
        }
    }
    let keel = std::env::current_exe().context("locating the keel binary")?;
    // Ctrl-C or SIGTERM cancels the run: steps are killed, containers and
    // networks removed, the record written (steps run in their own process
    // groups, so the terminal's signal does not reach them directly).
    let interrupted = Arc::new(AtomicBool::new(false));
    crate::build::cancel_on_signals(interrupted.clone())?;
    ensure_busybox(root, &keel, &selected, &platforms);
    let mut worst = Conclusion::Success;
    for l in selected {
        let (run_id, run_dir, run_number) = next_run_id(root)?;
        std::fs::write(run_dir.join("workflow"), &l.rel)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let opts = Options {
            repo: repo.clone(),
            run_dir: run_dir.clone(),
            run_id: run_id.clone(),
            run_number,
            keel: Some(keel.clone()),
            root: root.to_path_buf(),
            platforms: platforms.clone(),
            default_image: "busybox".into(),
            event_name: event_name.clone(),
            event: if event_name == "workflow_dispatch" {
                dispatch_event(&event, &l.wf, &inputs)
            } else {
                event.clone()
            },
            git: git.clone(),
            secrets: secrets.clone(),
            vars: vars.clone(),
            inputs: inputs.clone(),
            env: env.clone(),
            matrix_filter: matrix_filter.clone(),
            job_filter: a.job.clone(),
            artifact_dir: a
                .artifact_dir
                .clone()
                .unwrap_or_else(|| ci_dir(root).join("artifacts")),
            cache_dir: ci_dir(root).join("cache"),
            action_cache: a.action_cache.clone(),
            local_repositories: local_repositories.clone(),
            dry_run: a.dry_run,
            reuse: a.reuse,
            approvals: Arc::new(FileApprovals {
                protected: protected_envs(root),
            }),
            cancel: cancel.clone(),
            concurrency_dir: ci_dir(root).join("concurrency"),
        };
        let name = l.wf.name.clone().unwrap_or_else(|| l.rel.clone());
        eprintln!(
            "run {run_id}: {name} ({}) on {event_name} {}",
            l.rel,
            git.sha.get(..12).unwrap_or(&git.sha)
        );
        let _lock = match workflow_concurrency(&l.wf, &opts) {
            Some((group, cip)) => keel_ci::run::concurrency::acquire(
                &ci_dir(root).join("concurrency"),
                &group,
                cip,
                &run_dir.join("cancel"),
                &interrupted,
                |m| eprintln!("{m}"),
            )
            .context("taking the concurrency group")?,
            None => None,
        };
        // A `cancel` file in the run directory (concurrency) stops the run.
        let watcher_stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (cancel, stop, f) = (cancel.clone(), watcher_stop.clone(), run_dir.join("cancel"));
            let interrupted = interrupted.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if f.exists() || interrupted.load(Ordering::Relaxed) {
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let printer = Printer {
            workflow: name,
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            palette: Mutex::new(Vec::new()),
        };
        let rec = run::run_workflow(&l.wf, &l.rel, &opts, &printer);
        watcher_stop.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        write_atomic(&run_dir.join("run.json"), &serde_json::to_vec_pretty(&rec)?)?;
        eprintln!(
            "run {run_id}: {} in {:.1}s ({})",
            rec.conclusion.as_str(),
            rec.duration_ms as f64 / 1000.0,
            l.path.display()
        );
        if rec.conclusion != Conclusion::Success {
            worst = rec.conclusion;
        }
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(if worst == Conclusion::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The workflow's `concurrency:` group and cancel-in-progress.
fn workflow_concurrency(wf: &Workflow, opts: &Options) -> Option<(String, bool)> {
    let t = wf.concurrency.as_ref()?;
    let mut ctx = keel_ci::expr::Object::new();
    let spec = keel_ci::run::job::JobSpec {
        key: String::new(),
        display: String::new(),
        matrix: keel_ci::expr::Object::new(),
        strategy: keel_ci::expr::Object::new(),
        needs: keel_ci::expr::Object::new(),
        inputs: keel_ci::expr::Object::new(),
        secrets: Vec::new(),
        workflow_path: String::new(),
    };
    ctx.insert(
        "github",
        keel_ci::run::job::github_context(opts, wf, &spec, &opts.repo, ""),
    );
    ctx.insert("vars", keel_ci::run::context::object_of(&opts.vars));
    ctx.insert(
        "inputs",
        keel_ci::expr::Value::object(keel_ci::expr::Object::new()),
    );
    let host = keel_ci::run::context::Host {
        status: keel_ci::run::context::Status::Success,
        workspace: &opts.repo,
    };
    match keel_ci::run::context::eval_token(t, &ctx, &host).ok()? {
        keel_ci::expr::Value::Object(o) => Some((
            o.get("group")?.coerce_string(),
            o.get("cancel-in-progress")
                .is_some_and(keel_ci::expr::Value::is_truthy),
        )),
        v => Some((v.coerce_string(), false)).filter(|(g, _)| !g.is_empty()),
    }
}

/// Seeds the offline busybox image when a job will need it and it is missing.
fn ensure_busybox(
    root: &Path,
    keel: &Path,
    selected: &[&Loaded],
    platforms: &[(String, Platform)],
) {
    let wants_busybox = selected.iter().flat_map(|l| &l.wf.jobs).any(|j| {
        j.container.is_none()
            && j.uses.is_none()
            && !platforms.iter().any(|(l, p)| {
                *p == Platform::Host
                    && j.runs_on.as_ref().is_some_and(|r| {
                        let d = r.display();
                        d == *l
                            || r.as_seq()
                                .is_some_and(|s| s.iter().any(|x| x.display() == *l))
                    })
            })
            && !platforms
                .iter()
                .any(|(l, _)| j.runs_on.as_ref().is_some_and(|r| r.display() == *l))
    });
    if !wants_busybox {
        return;
    }
    let have = Command::new(keel)
        .arg("--root")
        .arg(root)
        .args(["image", "inspect", "busybox"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("seeding the offline busybox image (keel image seed-busybox)");
        let _ = Command::new(keel)
            .arg("--root")
            .arg(root)
            .args(["image", "seed-busybox", "busybox:latest"])
            .stdout(Stdio::null())
            .status();
    }
}

/// Runs what a push triggers each time the branch's commit changes.
fn watch(root: &Path, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let repo = a
        .directory
        .canonicalize()
        .with_context(|| format!("repository {}", a.directory.display()))?;
    let mut last =
        git_out(&repo, &["rev-parse", "HEAD"]).context("keel ci watch needs a git repository")?;
    eprintln!(
        "watching {} at {}",
        repo.display(),
        &last[..12.min(last.len())]
    );
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Some(now) = git_out(&repo, &["rev-parse", "HEAD"]) else {
            continue;
        };
        if now == last {
            continue;
        }
        last = now;
        eprintln!(
            "new commit {}: running the push workflows",
            &last[..12.min(last.len())]
        );
        let mut args = a.clone();
        args.event = Some("push".into());
        if let Err(e) = run_cmd(root, &args) {
            eprintln!("{}", crate::render_error(&e));
        }
    }
}

pub fn run(root: &Path, args: CiArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CiCommand::Run(a) => run_cmd(root, &a),
        CiCommand::Watch(a) => watch(root, &a),
        CiCommand::Runs => runs(root),
        CiCommand::Logs { run, job, step } => logs(root, &run, job.as_deref(), step.as_deref()),
        CiCommand::View { run } => view(root, &run),
        CiCommand::Approve { run, job } => approve(root, &run, &job, "approved"),
        CiCommand::Reject { run, job } => approve(root, &run, &job, "rejected"),
        CiCommand::Environment(c) => environment_cmd(root, c),
        CiCommand::Secret(c) => secret_cmd(root, c),
    }
}
