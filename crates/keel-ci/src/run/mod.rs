//! The executor: runs a workflow's jobs (in parallel along the `needs`
//! graph, matrix instances bounded by `max-parallel`, `fail-fast`), each on
//! a [`backend`] (host or job container), step by step ([`job`]), with the
//! runner's files and commands, built-in and local actions ([`actions`]),
//! reusable workflows, environments that wait for approval, and masking of
//! every secret in everything written.

pub mod actions;
pub mod backend;
pub mod concurrency;
pub mod context;
pub mod job;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use schedule::run_workflow;

/// Where jobs whose `runs-on` has a label run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// On this machine (`-self-hosted`).
    Host,
    /// In a container of this image.
    Image(String),
}

/// What the local repository says about the triggering commit.
#[derive(Debug, Clone, Default)]
pub struct GitInfo {
    pub sha: String,
    /// `refs/heads/main`.
    pub git_ref: String,
    pub actor: String,
    /// `owner/name`.
    pub repository: String,
    pub base_ref: String,
    pub head_ref: String,
}

/// Decides whether a job may use a protected environment.
pub trait Approver: Send + Sync {
    /// Whether `environment` needs approval.
    fn protected(&self, environment: &str) -> bool;
    /// Blocks until the job `job_key` is approved (`true`) or rejected.
    fn wait(&self, run_dir: &Path, job_key: &str, environment: &str, cancel: &AtomicBool) -> bool;
}

/// No environment is protected.
#[derive(Debug)]
pub struct NoApprovals;

impl Approver for NoApprovals {
    fn protected(&self, _: &str) -> bool {
        false
    }
    fn wait(&self, _: &Path, _: &str, _: &str, _: &AtomicBool) -> bool {
        true
    }
}

/// Approval by files: `<run>/approvals/<job>` holding `approved` or
/// `rejected` (written by `keel ci approve|reject`).
#[derive(Debug)]
pub struct FileApprovals {
    pub protected: Vec<String>,
}

impl Approver for FileApprovals {
    fn protected(&self, environment: &str) -> bool {
        self.protected
            .iter()
            .any(|p| p.eq_ignore_ascii_case(environment))
    }
    fn wait(&self, run_dir: &Path, job_key: &str, _: &str, cancel: &AtomicBool) -> bool {
        let f = run_dir.join("approvals").join(job_key);
        loop {
            match std::fs::read_to_string(&f)
                .map(|s| s.trim().to_string())
                .as_deref()
            {
                Ok("approved") => return true,
                Ok("rejected") => return false,
                _ => {}
            }
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Everything a run needs besides the workflow.
pub struct Options {
    /// The local repository (checkout source, `./` actions and workflows).
    pub repo: PathBuf,
    /// This run's directory (logs, summaries, workspaces).
    pub run_dir: PathBuf,
    pub run_id: String,
    pub run_number: u64,
    /// The keel binary and root, for containers and `keel build`.
    pub keel: Option<PathBuf>,
    pub root: PathBuf,
    pub platforms: Vec<(String, Platform)>,
    /// Image for labels with no platform (`busybox` offline).
    pub default_image: String,
    pub event_name: String,
    pub event: serde_json::Value,
    pub git: GitInfo,
    pub secrets: Vec<(String, String)>,
    pub vars: Vec<(String, String)>,
    pub inputs: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub matrix_filter: Vec<(String, String)>,
    pub job_filter: Option<String>,
    pub artifact_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Remote actions `owner/repo@ref` are looked up here
    /// (`<dir>/owner/repo@ref` or `<dir>/owner-repo@ref`).
    pub action_cache: Option<PathBuf>,
    /// Exact `uses:` refs mapped to local directories.
    pub local_repositories: Vec<(String, PathBuf)>,
    pub dry_run: bool,
    /// Keep job containers after their jobs (`--reuse`).
    pub reuse: bool,
    pub approvals: Arc<dyn Approver>,
    /// Set to stop the whole run (concurrency cancel-in-progress, Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// Where job-level concurrency groups keep their locks (shared by runs).
    pub concurrency_dir: PathBuf,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("repo", &self.repo)
            .field("run_dir", &self.run_dir)
            .field("event_name", &self.event_name)
            .finish_non_exhaustive()
    }
}

/// A job's or step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }
}

/// What a run reports while it goes.
#[derive(Debug, Clone)]
pub enum Report<'a> {
    /// A (masked) output line of a job.
    Line {
        job: &'a str,
        text: &'a str,
    },
    JobStart {
        job: &'a str,
    },
    JobEnd {
        job: &'a str,
        result: Conclusion,
        duration: Duration,
    },
    /// A job waits for approval of an environment.
    Waiting {
        job: &'a str,
        environment: &'a str,
    },
}

/// Receives progress.
pub trait Reporter: Send + Sync {
    fn report(&self, r: &Report);
}

/// One job instance's record, kept in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unique within the run (`build`, `build-2` for matrix instances).
    pub key: String,
    pub id: String,
    pub name: String,
    pub needs: Vec<String>,
    pub result: Conclusion,
    pub duration_ms: u64,
    pub outputs: Vec<(String, String)>,
    pub environment: Option<String>,
    pub steps: Vec<StepRecord>,
    /// The job's `continue-on-error` held: its failure does not fail the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub outcome: Conclusion,
    pub conclusion: Conclusion,
}

/// A finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    pub event: String,
    pub sha: String,
    pub git_ref: String,
    pub conclusion: Conclusion,
    pub started: String,
    pub duration_ms: u64,
    pub jobs: Vec<JobRecord>,
}
