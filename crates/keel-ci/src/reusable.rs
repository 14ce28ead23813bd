//! Loading the reusable workflows a workflow calls, as GitHub's parser does
//! before anything runs: each called file is read with the same limits,
//! its `workflow_call` inputs and secrets checked against the call, the
//! permissions it requests checked against what the caller grants, nested
//! calls followed down to the depth limit, and jobs counted across files.
//! Messages and their file prefixes are GitHub's (`In caller (Line, Col):
//! Error from called workflow …` for problems inside a called file).

use crate::template::{Diag, TKind, Token};
use crate::workflow::{self, Job, ParseOptions, Workflow};

/// What a called workflow may request when no caller in the chain sets
/// `permissions:` (the repository's default token permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionsPolicy {
    /// Read access to contents and packages only (GitHub's default for new repositories).
    LimitedRead,
    /// Write access to every scope.
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    None,
    Read,
    Write,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Read => "read",
            Level::Write => "write",
        }
    }
}

/// The token scopes GitHub compares, in the order its messages list them.
const SCOPES: [&str; 13] = [
    "actions",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "issues",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "statuses",
    "security-events",
    "id-token",
];

/// One level a scope.
type Permissions = [Level; SCOPES.len()];

/// `permissions:` as levels; `None` when it holds an expression or
/// something the schema already refused.
fn permissions_of(t: &Token) -> Option<Permissions> {
    match &t.kind {
        TKind::String(s) => {
            let level = match s.as_str() {
                "read-all" => Level::Read,
                "write-all" => Level::Write,
                _ => return None,
            };
            Some([level; SCOPES.len()])
        }
        TKind::Map(m) => {
            let mut p = [Level::None; SCOPES.len()];
            for (k, v) in m {
                let level = match v.as_str()? {
                    "read" => Level::Read,
                    "write" => Level::Write,
                    _ => Level::None,
                };
                if let Some(i) = SCOPES.iter().position(|s| Some(*s) == k.as_str()) {
                    p[i] = level;
                }
            }
            Some(p)
        }
        _ => None,
    }
}

/// What the policy grants a called workflow. An OIDC token (`id-token`)
/// only goes to one in the caller's own repository (`./…`): GitHub gives it
/// only inside the caller's trust boundary.
fn from_policy(policy: PermissionsPolicy, trusted: bool) -> Permissions {
    match policy {
        PermissionsPolicy::Write => {
            let mut p = [Level::Write; SCOPES.len()];
            if !trusted && let Some(i) = SCOPES.iter().position(|s| *s == "id-token") {
                p[i] = Level::None;
            }
            p
        }
        PermissionsPolicy::LimitedRead => {
            let mut p = [Level::None; SCOPES.len()];
            for scope in ["contents", "packages"] {
                if let Some(i) = SCOPES.iter().position(|s| *s == scope) {
                    p[i] = Level::Read;
                }
            }
            p
        }
    }
}

/// A caller's job and the permissions it grants (its own, or its file's).
struct Call<'a> {
    job: &'a Job,
    /// The file the job is in.
    file: &'a str,
    granted: Option<Token>,
}

struct Loader<'a> {
    opts: &'a ParseOptions,
    resolve: &'a mut dyn FnMut(&str) -> Option<String>,
    jobs: usize,
    /// Result size so far: GitHub accounts all files of a run together.
    size: usize,
    /// Distinct files read so far (case-insensitive, as GitHub counts them).
    files: Vec<String>,
    errors: Vec<String>,
}

/// Loads and checks every reusable workflow `wf` calls, through `resolve`
/// (a `uses:` value to the called file's text; `None`: not available here,
/// left for run time). Returns GitHub's messages, complete with their files.
pub fn load(
    wf: &Workflow,
    opts: &ParseOptions,
    resolve: &mut dyn FnMut(&str) -> Option<String>,
) -> Vec<String> {
    if opts.skip_reusable_workflows {
        return Vec::new();
    }
    let mut l = Loader {
        opts,
        resolve,
        jobs: wf.jobs.len(),
        size: wf.result_size,
        files: vec![wf.file.to_lowercase()],
        errors: Vec::new(),
    };
    for job in &wf.jobs {
        if job.uses.is_none() {
            continue;
        }
        let call = Call {
            job,
            file: &wf.file,
            granted: job.permissions.clone().or_else(|| wf.permissions.clone()),
        };
        l.call(&call, 1);
        if !l.errors.is_empty() {
            break;
        }
    }
    l.errors
}

impl Loader<'_> {
    fn call(&mut self, call: &Call, depth: usize) {
        if depth > self.opts.max_nested_reusable_depth {
            self.errors.push(format!(
                "Nested reusable workflow depth exceeded {}.",
                self.opts.max_nested_reusable_depth
            ));
            return;
        }
        let Some(uses) = call.job.uses.as_ref().and_then(Token::as_str) else {
            return;
        };
        let key = uses.to_lowercase();
        if !self.files.contains(&key) {
            self.files.push(key);
            if self.opts.max_files > 0 && self.files.len() > self.opts.max_files {
                self.errors.push(format!(
                    "The maximum file count of {} has been exceeded",
                    self.opts.max_files
                ));
                return;
            }
        }
        let Some(src) = (self.resolve)(uses) else {
            return;
        };
        let at = call.job.uses.as_ref().map_or(call.job.pos, |u| u.pos);
        // Problems inside the called file name it, after where it is called.
        let prefix = |errors: &mut Vec<String>, from: usize| {
            for e in &mut errors[from..] {
                if !e.starts_with(call.file) {
                    *e = format!(
                        "In {} (Line: {}, Col: {}): Error from called workflow {e}",
                        call.file, at.line, at.col
                    );
                }
            }
        };
        let opts = ParseOptions {
            max_result_size: self.opts.max_result_size.saturating_sub(self.size),
            ..*self.opts
        };
        let called = match workflow::parse_with(uses, &src, &opts) {
            Ok(c) => c,
            Err(e) => {
                let from = self.errors.len();
                self.errors.extend(e.messages());
                prefix(&mut self.errors, from);
                return;
            }
        };
        self.size += called.result_size;
        let mut diags = Vec::new();
        workflow::check_call(call.job, &called, &mut diags);
        self.errors
            .extend(diags.iter().map(|d| d.render(call.file)));
        self.jobs += called.jobs.len();
        if self.opts.max_job_limit > 0 && self.jobs > self.opts.max_job_limit {
            self.errors.push(format!(
                "The workflow may not contain more than {} jobs",
                self.opts.max_job_limit
            ));
        }
        let granted = self.check_permissions(call, &called);
        if !self.errors.is_empty() {
            return;
        }
        for job in &called.jobs {
            if job.uses.is_none() {
                continue;
            }
            let nested = Call {
                job,
                file: uses,
                granted: job.permissions.clone().or_else(|| granted.clone()),
            };
            self.call(&nested, depth + 1);
            if !self.errors.is_empty() {
                return;
            }
        }
    }

    /// Checks what `called` requests against what the caller grants (or
    /// the policy); returns what its jobs without `permissions:` get.
    fn check_permissions(&mut self, call: &Call, called: &Workflow) -> Option<Token> {
        let trusted = call
            .job
            .uses
            .as_ref()
            .and_then(Token::as_str)
            .is_some_and(|u| u.starts_with("./"));
        let max = call
            .granted
            .as_ref()
            .and_then(permissions_of)
            .unwrap_or_else(|| from_policy(self.opts.permissions_policy, trusted));
        let uses = call
            .job
            .uses
            .as_ref()
            .map(Token::display)
            .unwrap_or_default();
        let mut check = |requested: &Token, nested: Option<&Job>| {
            let Some(req) = permissions_of(requested) else {
                return;
            };
            let over: Vec<usize> = (0..SCOPES.len()).filter(|&i| req[i] > max[i]).collect();
            if over.is_empty() {
                return;
            }
            let list = |p: &Permissions| {
                over.iter()
                    .map(|&i| format!("{}: {}", SCOPES[i], p[i].name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let who = match nested {
                Some(j) => format!(
                    "The nested job '{}' is",
                    j.name.as_ref().and_then(Token::as_str).unwrap_or(&j.id)
                ),
                None => format!("The workflow '{uses}' is"),
            };
            let d = Diag {
                pos: call.job.pos,
                message: format!(
                    "Error calling workflow '{uses}'. {who} requesting '{}', but is only allowed '{}'.",
                    list(&req),
                    list(&max)
                ),
            };
            self.errors.push(d.render(call.file));
        };
        if let Some(p) = &called.permissions {
            check(p, None);
        }
        for job in &called.jobs {
            if let Some(p) = &job.permissions {
                check(p, Some(job));
            }
        }
        called.permissions.clone().or_else(|| call.granted.clone())
    }
}
