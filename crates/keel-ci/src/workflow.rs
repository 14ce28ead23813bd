//! The workflow model and its converter from template tokens: events, jobs
//! (ids, needs graph), steps (generated ids, `if` with an implied
//! `success()`), reusable-workflow calls, with GitHub's messages.

use std::collections::BTreeMap;

use crate::template::{self, Diag, TKind, Token};
use crate::yaml::{self, Pos};

/// A parsed workflow file.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The name errors use (`.github/workflows/ci.yml`).
    pub file: String,
    pub name: Option<String>,
    pub run_name: Option<Token>,
    pub on: BTreeMap<String, Event>,
    pub env: Option<Token>,
    pub defaults: Option<Token>,
    pub concurrency: Option<Token>,
    pub permissions: Option<Token>,
    pub jobs: Vec<Job>,
    /// The size GitHub's reader accounts for the file's tokens
    /// ([`template::result_size`]), for limits across called files.
    pub result_size: usize,
}

/// One `on:` event's configuration.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub branches: Option<Vec<String>>,
    pub branches_ignore: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub tags_ignore: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub paths_ignore: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
    /// `workflow_dispatch`/`workflow_call` inputs (name → definition).
    pub inputs: Vec<(String, Token)>,
    pub secrets: Vec<(String, Token)>,
    pub outputs: Vec<(String, Token)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Secrets {
    None,
    Inherit,
    Map(Token),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub pos: Pos,
    pub name: Option<Token>,
    pub needs: Vec<String>,
    pub needs_pos: Vec<Pos>,
    /// The condition, always holding a status function.
    pub if_: String,
    pub runs_on: Option<Token>,
    pub strategy: Option<Token>,
    pub env: Option<Token>,
    pub container: Option<Token>,
    pub services: Option<Token>,
    pub outputs: Option<Token>,
    pub steps: Vec<Step>,
    pub timeout_minutes: Option<Token>,
    pub continue_on_error: Option<Token>,
    pub environment: Option<Token>,
    pub concurrency: Option<Token>,
    pub defaults: Option<Token>,
    pub permissions: Option<Token>,
    /// A reusable workflow call (`uses:` on the job).
    pub uses: Option<Token>,
    pub with: Option<Token>,
    pub secrets: Secrets,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    /// False when keel generated `id` (`__run`, `__actions_checkout`, …).
    pub explicit_id: bool,
    pub pos: Pos,
    pub name: Option<Token>,
    pub if_: String,
    pub run: Option<Token>,
    pub uses: Option<Token>,
    pub with: Option<Token>,
    pub env: Option<Token>,
    pub shell: Option<Token>,
    pub working_directory: Option<Token>,
    pub continue_on_error: Option<Token>,
    pub timeout_minutes: Option<Token>,
    /// `background: true` (GitHub's experimental background steps).
    pub background: bool,
    /// A step that waits for or cancels background steps instead of running.
    pub control: Option<Control>,
}

/// Background-step control (behind GitHub's experimental
/// `allowBackgroundSteps`; see [`ParseOptions::background_steps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Wait(Vec<String>),
    WaitAll,
    Cancel(String),
}

/// All the problems of one file, printed GitHub's way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.file, .diags))]
pub struct WorkflowError {
    pub file: String,
    pub diags: Vec<Diag>,
}

impl WorkflowError {
    /// Each problem as `file (Line: L, Col: C): message`.
    pub fn messages(&self) -> Vec<String> {
        self.diags.iter().map(|d| d.render(&self.file)).collect()
    }

    /// GitHub keeps the first 10 errors of a file, each cut at 500
    /// characters (`[...]` marks the cut).
    pub fn new(file: &str, mut diags: Vec<Diag>) -> WorkflowError {
        const MAX_ERRORS: usize = 10;
        const MAX_MESSAGE: usize = 500;
        diags.truncate(MAX_ERRORS);
        for d in &mut diags {
            let whole = d.render(file);
            if whole.chars().count() > MAX_MESSAGE {
                let cut: String = whole.chars().take(MAX_MESSAGE).collect();
                *d = Diag::whole(format!("{cut}[...]"));
            }
        }
        WorkflowError {
            file: file.to_string(),
            diags,
        }
    }
}

fn render(file: &str, diags: &[Diag]) -> String {
    diags
        .iter()
        .map(|d| d.render(file))
        .collect::<Vec<_>>()
        .join("\n")
}

/// GitHub's parser limits and policies (its `ParseOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Characters a file may hold (GitHub: 1 MiB).
    pub max_file_size: usize,
    /// Nested mappings and sequences (GitHub: 50).
    pub max_depth: usize,
    /// The size GitHub's reader accounts for the parsed tokens (GitHub: 10 MiB).
    pub max_result_size: usize,
    /// Jobs across the workflow and the workflows it calls (0: no limit).
    pub max_job_limit: usize,
    /// Levels of called workflows below the caller (github.com: nine,
    /// "ten levels of workflows" with the caller).
    pub max_nested_reusable_depth: usize,
    /// Distinct files a run reads, the caller included (GitHub: 51).
    pub max_files: usize,
    /// YAML anchors and aliases allowed.
    pub allow_anchors: bool,
    /// What a called workflow may request when the caller says nothing.
    pub permissions_policy: crate::reusable::PermissionsPolicy,
    /// Called workflows are not loaded (nor checked) while parsing.
    pub skip_reusable_workflows: bool,
    /// `on:` checked key by key as GitHub's editor checks it
    /// (`workflow-root-strict`); otherwise read as GitHub's runtime reads
    /// it, unknown event keys ignored (`workflow-root`).
    pub strict_events: bool,
    /// GitHub's experimental background steps (`background:`, `wait:`,
    /// `wait-all:`, `cancel:`) parsed, as its `allowBackgroundSteps` flag
    /// does. Off in `keel ci`, which does not run them.
    pub background_steps: bool,
}

impl ParseOptions {
    /// The defaults of GitHub's parser itself (anchors refused, as its
    /// `ParseOptions` has them).
    pub fn github() -> ParseOptions {
        ParseOptions {
            max_file_size: 1024 * 1024,
            max_depth: 50,
            max_result_size: 10 * 1024 * 1024,
            max_job_limit: 0,
            max_nested_reusable_depth: 9,
            max_files: 51,
            allow_anchors: false,
            permissions_policy: crate::reusable::PermissionsPolicy::Write,
            skip_reusable_workflows: false,
            strict_events: false,
            background_steps: false,
        }
    }
}

impl Default for ParseOptions {
    /// What `keel ci` uses: GitHub's limits, with anchors accepted as
    /// github.com accepts them in workflow files since 2025, and events
    /// checked strictly, as GitHub's editor checks them (a typo in a
    /// filter key would otherwise silently never match).
    fn default() -> Self {
        ParseOptions {
            allow_anchors: true,
            strict_events: true,
            ..ParseOptions::github()
        }
    }
}

/// Parses and validates a workflow file's text.
pub fn parse(file: &str, src: &str) -> Result<Workflow, WorkflowError> {
    parse_with(file, src, &ParseOptions::default())
}

/// [`parse`] with explicit limits and policies.
pub fn parse_with(file: &str, src: &str, opts: &ParseOptions) -> Result<Workflow, WorkflowError> {
    let fail = |diags| WorkflowError::new(file, diags);
    // GitHub counts UTF-16 code units.
    if src.encode_utf16().count() > opts.max_file_size {
        return Err(fail(vec![Diag::whole(format!(
            "{file}: The maximum file size of {} characters has been exceeded",
            opts.max_file_size
        ))]));
    }
    let yaml_opts = yaml::Options {
        max_depth: opts.max_depth,
        allow_anchors: opts.allow_anchors,
    };
    let root = match yaml::parse_with(src, yaml_opts) {
        Ok(Some(n)) => n,
        Ok(None) => {
            return Err(fail(vec![Diag {
                pos: Pos { line: 1, col: 1 },
                message: "Required property is missing: jobs".into(),
            }]));
        }
        Err(e) => {
            return Err(fail(vec![match e.pos {
                Some(pos) => Diag {
                    pos,
                    message: e.message,
                },
                None => Diag::whole(format!("{file}: {}", e.message)),
            }]));
        }
    };
    let mut diags = Vec::new();
    let root_def = if opts.strict_events {
        "workflow-root-strict"
    } else {
        "workflow-root"
    };
    let token = template::read(&root, root_def, &mut diags);
    // GitHub's reader also accounts the file's name (a string: 26 bytes
    // plus 2 a UTF-16 unit).
    let size = template::result_size(&token) + 26 + 2 * file.encode_utf16().count();
    if diags.is_empty() && size > opts.max_result_size {
        diags.push(Diag::whole(format!("{file}: Maximum object size exceeded")));
    }
    if !diags.is_empty() {
        return Err(fail(diags));
    }
    let mut wf = convert(file, &token, &mut diags, opts);
    wf.result_size = size;
    if diags.is_empty() {
        Ok(wf)
    } else {
        Err(fail(diags))
    }
}

fn string_list(t: &Token) -> Vec<String> {
    match &t.kind {
        TKind::Seq(items) => items.iter().map(Token::display).collect(),
        _ => vec![t.display()],
    }
}

fn convert(file: &str, root: &Token, diags: &mut Vec<Diag>, opts: &ParseOptions) -> Workflow {
    let mut wf = Workflow {
        file: file.to_string(),
        name: None,
        run_name: None,
        on: BTreeMap::new(),
        env: None,
        defaults: None,
        concurrency: None,
        permissions: None,
        jobs: Vec::new(),
        result_size: 0,
    };
    for (k, v) in root.as_map().unwrap_or_default() {
        match k.as_str().unwrap_or_default() {
            "name" => wf.name = Some(v.display()),
            "run-name" => wf.run_name = Some(v.clone()),
            "on" => wf.on = convert_on(v),
            "env" => wf.env = Some(v.clone()),
            "defaults" => wf.defaults = Some(v.clone()),
            "concurrency" => wf.concurrency = Some(v.clone()),
            "permissions" => wf.permissions = Some(v.clone()),
            "jobs" => wf.jobs = convert_jobs(v, diags, opts),
            _ => {}
        }
    }
    wf
}

fn convert_on(t: &Token) -> BTreeMap<String, Event> {
    let mut out = BTreeMap::new();
    match &t.kind {
        TKind::String(s) => {
            out.insert(s.clone(), Event::default());
        }
        TKind::Seq(items) => {
            for i in items {
                out.insert(i.display(), Event::default());
            }
        }
        TKind::Map(m) => {
            for (k, v) in m {
                let mut e = Event::default();
                for (fk, fv) in v.as_map().unwrap_or_default() {
                    let list = || Some(string_list(fv));
                    let pairs = || {
                        fv.as_map()
                            .unwrap_or_default()
                            .iter()
                            .map(|(a, b)| (a.display(), b.clone()))
                            .collect::<Vec<_>>()
                    };
                    match fk.as_str().unwrap_or_default() {
                        "branches" => e.branches = list(),
                        "branches-ignore" => e.branches_ignore = list(),
                        "tags" => e.tags = list(),
                        "tags-ignore" => e.tags_ignore = list(),
                        "paths" => e.paths = list(),
                        "paths-ignore" => e.paths_ignore = list(),
                        "types" => e.types = list(),
                        "inputs" => e.inputs = pairs(),
                        "secrets" => e.secrets = pairs(),
                        "outputs" => e.outputs = pairs(),
                        _ => {}
                    }
                }
                out.insert(k.display(), e);
            }
        }
        _ => {}
    }
    out
}

const MAX_ID_LENGTH: usize = 100;

/// GitHub's id rules (jobs and steps).
pub fn check_id(id: &str) -> Option<String> {
    let mut chars = id.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid || id.len() >= MAX_ID_LENGTH {
        return Some(format!(
            "The identifier '{id}' is invalid. IDs may only contain alphanumeric characters, '_', and '-'. IDs must start with a letter or '_' and and must be less than {MAX_ID_LENGTH} characters."
        ));
    }
    if id.starts_with("__") {
        return Some(format!(
            "The identifier '{id}' is invalid. IDs starting with '__' are reserved."
        ));
    }
    None
}

fn convert_jobs(t: &Token, diags: &mut Vec<Diag>, opts: &ParseOptions) -> Vec<Job> {
    let Some(m) = t.as_map() else {
        diags.push(Diag {
            pos: t.pos,
            message: "Invalid format for jobs".into(),
        });
        return Vec::new();
    };
    let mut jobs = Vec::new();
    for (k, v) in m {
        let id = k.display();
        if let Some(e) = check_id(&id) {
            diags.push(Diag {
                pos: k.pos,
                message: e,
            });
        }
        jobs.push(convert_job(id, k.pos, v, diags, opts));
    }
    validate_needs(t.pos, &jobs, diags);
    jobs
}

fn validate_needs(pos: Pos, jobs: &[Job], diags: &mut Vec<Diag>) {
    use std::collections::{HashMap, HashSet};
    if !jobs.iter().any(|j| j.needs.is_empty()) {
        diags.push(Diag {
            pos,
            message: "The workflow must contain at least one job with no dependencies.".into(),
        });
        return;
    }
    // Kahn's walk: a job is done once every job it needs is. What is left
    // (cycles, unknown jobs) does not depend on the walk's order, and is
    // reported in file order, as GitHub reports it.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        index.entry(j.id.as_str()).or_insert(i);
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut waiting_on: Vec<usize> = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let distinct: HashSet<&str> = j.needs.iter().map(String::as_str).collect();
        for n in &distinct {
            if let Some(&k) = index.get(n) {
                dependents[k].push(i);
            }
        }
        waiting_on.push(distinct.len());
    }
    let mut done = vec![false; jobs.len()];
    let mut queue: Vec<usize> = (0..jobs.len()).filter(|&i| waiting_on[i] == 0).collect();
    while let Some(k) = queue.pop() {
        if std::mem::replace(&mut done[k], true) {
            continue;
        }
        for &d in &dependents[k] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                queue.push(d);
            }
        }
    }
    let is_done = |n: &str| index.get(n).is_some_and(|&k| done[k]);
    for (i, j) in jobs.iter().enumerate() {
        if done[i] {
            continue;
        }
        for (n, p) in j.needs.iter().zip(&j.needs_pos) {
            if is_done(n) {
                continue;
            }
            let message = if index.contains_key(n.as_str()) {
                format!(
                    "Job '{}' depends on job '{n}' which creates a cycle in the dependency graph.",
                    j.id
                )
            } else {
                format!("Job '{}' depends on unknown job '{n}'.", j.id)
            };
            diags.push(Diag { pos: *p, message });
        }
    }
}

fn convert_job(id: String, pos: Pos, t: &Token, diags: &mut Vec<Diag>, opts: &ParseOptions) -> Job {
    let mut job = Job {
        id,
        pos,
        name: None,
        needs: Vec::new(),
        needs_pos: Vec::new(),
        if_: "success()".into(),
        runs_on: None,
        strategy: None,
        env: None,
        container: None,
        services: None,
        outputs: None,
        steps: Vec::new(),
        timeout_minutes: None,
        continue_on_error: None,
        environment: None,
        concurrency: None,
        defaults: None,
        permissions: None,
        uses: None,
        with: None,
        secrets: Secrets::None,
    };
    for (k, v) in t.as_map().unwrap_or_default() {
        let some = || Some(v.clone());
        match k.as_str().unwrap_or_default() {
            "name" if !matches!(&v.kind, TKind::String(s) if s.is_empty()) => job.name = some(),
            "needs" => {
                let items = match &v.kind {
                    TKind::Seq(s) => s.clone(),
                    _ => vec![v.clone()],
                };
                for i in items {
                    job.needs.push(i.display());
                    job.needs_pos.push(i.pos);
                }
            }
            "if" => {
                if let Some(c) = if_condition(v, "job-if", diags) {
                    job.if_ = c;
                }
            }
            "runs-on" => {
                check_runner_group(v, diags);
                job.runs_on = some();
            }
            "strategy" => {
                // A literal empty vector is refused before anything runs,
                // at its position, as GitHub refuses it.
                if let Some(TKind::Map(m)) = v.get("matrix").map(|t| &t.kind) {
                    for (key, vector) in m {
                        let name = key.display();
                        if matches!(&vector.kind, TKind::Seq(items) if items.is_empty())
                            && name != "include"
                            && name != "exclude"
                        {
                            diags.push(Diag {
                                pos: vector.pos,
                                message: format!(
                                    "Matrix vector '{name}' does not contain any values"
                                ),
                            });
                        }
                    }
                }
                job.strategy = some();
            }
            "env" => job.env = some(),
            "container" => {
                check_container(v, diags);
                job.container = some();
            }
            "services" => {
                for (_, s) in v.as_map().unwrap_or_default() {
                    check_container(s, diags);
                }
                job.services = some();
            }
            "outputs" => job.outputs = some(),
            "steps" => job.steps = convert_steps_with(v, diags, opts.background_steps),
            "timeout-minutes" => job.timeout_minutes = some(),
            "continue-on-error" => job.continue_on_error = some(),
            "environment" => job.environment = some(),
            "concurrency" => job.concurrency = some(),
            "defaults" => job.defaults = some(),
            "permissions" => job.permissions = some(),
            "uses" => job.uses = some(),
            "with" => job.with = some(),
            "secrets" => {
                job.secrets = if v.as_str() == Some("inherit") {
                    Secrets::Inherit
                } else {
                    Secrets::Map(v.clone())
                };
            }
            _ => {}
        }
    }
    job
}

/// `runs-on: {group: …}`: a plain name, or `org|organization|ent|enterprise/name`.
fn check_runner_group(t: &Token, diags: &mut Vec<Diag>) {
    let Some(group) = t.get("group") else { return };
    let Some(name) = group.as_str() else { return };
    let parts: Vec<&str> = name.split('/').collect();
    let message = match parts.as_slice() {
        [_, ""] => format!("Invalid runs-on group name '{name}'."),
        [_] | ["org" | "organization" | "ent" | "enterprise", _] => return,
        _ => format!(
            "Invalid runs-on group name '{name}'. Please use 'organization/' or 'enterprise/' prefix to target a single runner group."
        ),
    };
    diags.push(Diag {
        pos: group.pos,
        message,
    });
}

fn contains_expr(t: &Token) -> bool {
    match &t.kind {
        TKind::Expr(_) | TKind::Insert => true,
        TKind::Seq(s) => s.iter().any(contains_expr),
        TKind::Map(m) => m.iter().any(|(k, v)| contains_expr(k) || contains_expr(v)),
        _ => false,
    }
}

fn check_container(t: &Token, diags: &mut Vec<Diag>) {
    if contains_expr(t) || matches!(t.kind, TKind::String(_)) {
        return;
    }
    if t.get("image").is_none_or(|i| i.display().is_empty()) {
        diags.push(Diag {
            pos: t.pos,
            message: "Container image cannot be empty".into(),
        });
    }
}

/// An `if:` as an expression that always holds a status function.
fn if_condition(t: &Token, def: &str, diags: &mut Vec<Diag>) -> Option<String> {
    let ctx = &crate::schema::Schema::workflow().get(def).context;
    let cond = match &t.kind {
        TKind::Expr(e) => e.clone(),
        _ => t.display().trim().to_string(),
    };
    let cond = if cond.is_empty() {
        "success()".to_string()
    } else {
        match template::validate_expression(&cond, ctx) {
            Ok(e) if has_status_function(&e) => cond,
            Ok(_) => format!("success() && ({cond})"),
            Err(msg) => {
                diags.push(Diag {
                    pos: t.pos,
                    message: msg,
                });
                return None;
            }
        }
    };
    Some(cond)
}

fn has_status_function(e: &crate::expr::Expr) -> bool {
    use crate::expr::Expr;
    match e {
        Expr::Call(name, args) => {
            matches!(
                name.as_str(),
                "success" | "failure" | "cancelled" | "always"
            ) || args.iter().any(has_status_function)
        }
        Expr::Binary(l, _, r) => has_status_function(l) || has_status_function(r),
        Expr::Not(x) | Expr::Group(x) => has_status_function(x),
        Expr::And(a) | Expr::Or(a) => a.iter().any(has_status_function),
        Expr::Index(o, i) => {
            has_status_function(o) || i.as_deref().is_some_and(has_status_function)
        }
        Expr::Literal(_) | Expr::Context(_) => false,
    }
}

/// The `__name` GitHub gives a step without an id.
fn generated_id_base(step: &Step) -> String {
    match &step.control {
        Some(Control::Wait(_)) => return "wait".into(),
        Some(Control::WaitAll) => return "wait-all".into(),
        Some(Control::Cancel(_)) => return "cancel".into(),
        None => {}
    }
    let Some(uses) = step.uses.as_ref().map(Token::display) else {
        return "run".into();
    };
    if let Some(img) = uses.strip_prefix("docker://") {
        return img.to_string();
    }
    if uses.starts_with("./") || uses.starts_with(".\\") || uses.starts_with("$/") {
        return "self".into();
    }
    let parts: Vec<&str> = uses.split('@').collect();
    if parts.len() != 2 || parts[1].is_empty() {
        return "run".into();
    }
    let segs: Vec<&str> = parts[0]
        .split(['/', '\\'])
        .filter(|s| !s.is_empty())
        .collect();
    if segs.len() >= 2 {
        format!("{}/{}", segs[0], segs[1])
    } else {
        "run".into()
    }
}

/// Ids given so far, and per generated name the next suffix to try (so
/// that a job of many unnamed steps stays linear).
#[derive(Default)]
struct Ids {
    names: std::collections::HashSet<String>,
    next: std::collections::HashMap<String, usize>,
}

/// GitHub's id builder: illegal characters become `_`, collisions get `_2`,
/// `_3`… up to `_999` (`None` past it: GitHub gives up too).
fn build_id(base: &str, ids: &mut Ids) -> Option<String> {
    let mut name = String::new();
    for c in base.chars() {
        if name.is_empty() && (c.is_ascii_digit() || c == '-') {
            name.push('_');
        }
        if name.is_empty() && !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            continue;
        }
        name.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        });
    }
    if name.is_empty() {
        name = "job".into();
    }
    let first = ids.next.get(&name).copied().unwrap_or(1);
    for attempt in first..1000 {
        let suffix = if attempt == 1 {
            String::new()
        } else {
            format!("_{attempt}")
        };
        let keep = name.len().min(MAX_ID_LENGTH - suffix.len());
        let candidate = format!("{}{suffix}", &name[..keep]);
        if ids.names.insert(candidate.clone()) {
            ids.next.insert(name, attempt + 1);
            return Some(candidate);
        }
    }
    None
}

/// `{org}/{repo}[/path]@ref`, `./path`, `docker://image`.
fn check_uses(t: &Token, diags: &mut Vec<Diag>) {
    let Some(u) = t.as_str() else { return };
    if u.starts_with("./") || u.starts_with(".\\") {
        return;
    }
    if let Some(img) = u.strip_prefix("docker://") {
        if !img.is_empty() {
            return;
        }
    } else if let Some((path, r)) = u.split_once('@') {
        let segs: Vec<&str> = path.split('/').collect();
        if segs.len() >= 2 && !segs[0].is_empty() && !segs[1].is_empty() && !r.is_empty() {
            return;
        }
    }
    if u.starts_with("docker://") {
        return;
    }
    diags.push(Diag {
        pos: t.pos,
        message: format!("Expected format {{org}}/{{repo}}[/path]@ref. Actual '{u}'"),
    });
}

/// Steps from a `steps:` sequence token (a job's or a composite action's).
pub fn convert_steps(t: &Token, diags: &mut Vec<Diag>) -> Vec<Step> {
    convert_steps_with(t, diags, false)
}

/// A `wait:`/`cancel:` target: an earlier step's id, not the step itself.
fn check_target(
    target: &Token,
    own: Option<&str>,
    known: &[String],
    diags: &mut Vec<Diag>,
) -> String {
    let name = target.display();
    let message = if name.starts_with("__") {
        format!("The identifier '{name}' is invalid. IDs starting with '__' are reserved.")
    } else if own.is_some_and(|o| o.eq_ignore_ascii_case(&name)) {
        format!("Step '{}' cannot reference itself", own.unwrap_or_default())
    } else if !known.contains(&name) {
        format!("Step references unknown step ID '{name}'")
    } else {
        return name;
    };
    diags.push(Diag {
        pos: target.pos,
        message,
    });
    name
}

/// [`convert_steps`], with GitHub's experimental background steps or not.
pub fn convert_steps_with(t: &Token, diags: &mut Vec<Diag>, background: bool) -> Vec<Step> {
    let Some(items) = t.as_seq() else {
        diags.push(Diag {
            pos: t.pos,
            message: "Invalid format for steps".into(),
        });
        return Vec::new();
    };
    let mut taken: Vec<String> = Vec::new();
    // `taken` lowercased: step ids are case-insensitive, as contexts are.
    let mut taken_lower = std::collections::HashSet::new();
    let mut steps = Vec::new();
    for item in items {
        let mut s = Step {
            id: String::new(),
            explicit_id: false,
            pos: item.pos,
            name: None,
            if_: "success()".into(),
            run: None,
            uses: None,
            with: None,
            env: None,
            shell: None,
            working_directory: None,
            continue_on_error: None,
            timeout_minutes: None,
            background: false,
            control: None,
        };
        // The step's own id, for `wait:`/`cancel:` targets.
        let own = item.get("id").map(Token::display);
        for (k, v) in item.as_map().unwrap_or_default() {
            let some = || Some(v.clone());
            match k.as_str().unwrap_or_default() {
                "id" => {
                    let id = v.display();
                    if let Some(e) = check_id(&id) {
                        diags.push(Diag {
                            pos: v.pos,
                            message: e,
                        });
                    } else if !taken_lower.insert(id.to_lowercase()) {
                        diags.push(Diag {
                            pos: v.pos,
                            message: format!(
                                "The identifier '{id}' may not be used more than once within the same scope."
                            ),
                        });
                    } else {
                        taken.push(id.clone());
                    }
                    s.id = id;
                    s.explicit_id = true;
                }
                "name" => s.name = some(),
                "if" => {
                    if let Some(c) = if_condition(v, "step-if", diags) {
                        s.if_ = c;
                    }
                }
                "run" => s.run = some(),
                "uses" => {
                    check_uses(v, diags);
                    s.uses = some();
                }
                "with" => s.with = some(),
                "env" => s.env = some(),
                "shell" => s.shell = some(),
                "working-directory" => s.working_directory = some(),
                "continue-on-error" => s.continue_on_error = some(),
                "timeout-minutes" => s.timeout_minutes = some(),
                "background" if background => s.background = matches!(v.kind, TKind::Bool(true)),
                "wait" if background => {
                    let targets = match &v.kind {
                        TKind::Seq(items) => items.clone(),
                        _ => vec![v.clone()],
                    };
                    s.control = Some(Control::Wait(
                        targets
                            .iter()
                            .map(|t| check_target(t, own.as_deref(), &taken, diags))
                            .collect(),
                    ));
                }
                "wait-all" if background => {
                    if matches!(v.kind, TKind::Bool(false)) {
                        diags.push(Diag {
                            pos: v.pos,
                            message: "The value of 'wait-all' must be true or omitted".into(),
                        });
                    }
                    s.control = Some(Control::WaitAll);
                }
                "cancel" if background => {
                    s.control = Some(Control::Cancel(check_target(
                        v,
                        own.as_deref(),
                        &taken,
                        diags,
                    )));
                }
                _ => {}
            }
        }
        if let Some(c) = &s.control {
            if s.name.is_none() {
                let name = match c {
                    Control::Wait(_) => "Wait",
                    Control::WaitAll => "Wait for all",
                    Control::Cancel(_) => "Cancel",
                };
                s.name = Some(Token::new(TKind::String(name.into()), item.pos));
            }
        } else if s.run.is_none() && s.uses.is_none() {
            diags.push(Diag {
                pos: item.pos,
                message: if background {
                    "Expected one of uses, run, wait, wait-all, cancel, or parallel to be defined"
                } else {
                    "Expected one of uses or run to be defined"
                }
                .into(),
            });
        }
        steps.push(s);
    }
    let mut ids = Ids {
        names: taken.into_iter().collect(),
        next: std::collections::HashMap::new(),
    };
    for s in &mut steps {
        if s.id.is_empty() {
            let base = format!("__{}", generated_id_base(s));
            match build_id(&base, &mut ids) {
                Some(id) => s.id = id,
                None => diags.push(Diag {
                    pos: s.pos,
                    message: "Unable to create a unique name".into(),
                }),
            }
        }
    }
    steps
}

/// Checks a reusable-workflow call against the called file's `workflow_call`
/// (inputs and secrets required/defined), as GitHub does before running.
pub fn check_call(job: &Job, called: &Workflow, diags: &mut Vec<Diag>) {
    let at = job.uses.as_ref().map_or(job.pos, |u| u.pos);
    let Some(call) = called.on.get("workflow_call") else {
        diags.push(Diag {
            pos: at,
            message: "workflow_call key is not defined in the referenced workflow.".into(),
        });
        return;
    };
    // A literal given for a boolean or number input must be one (GitHub
    // checks this before running; expressions wait for run time).
    for (k, v) in job
        .with
        .as_ref()
        .and_then(Token::as_map)
        .unwrap_or_default()
    {
        let Some((_, def)) = call
            .inputs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&k.display()))
        else {
            continue;
        };
        let fits = match def.get("type").and_then(Token::as_str) {
            Some("boolean") => matches!(v.kind, TKind::Bool(_)),
            Some("number") => matches!(v.kind, TKind::Number(_)),
            _ => true,
        };
        if !fits && !v.is_expr() {
            diags.push(Diag {
                pos: v.pos,
                message: format!("Unexpected value '{}'", v.display()),
            });
        }
    }
    let pairs = |t: Option<&Token>| -> Vec<(String, Pos)> {
        t.and_then(Token::as_map)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.display(), v.pos))
            .collect()
    };
    check_given(
        ("Input", "input"),
        &call.inputs,
        &pairs(job.with.as_ref()),
        at,
        true,
        diags,
    );
    match &job.secrets {
        Secrets::Map(m) => check_given(
            ("Secret", "secret"),
            &call.secrets,
            &pairs(Some(m)),
            at,
            false,
            diags,
        ),
        Secrets::None => check_given(("Secret", "secret"), &call.secrets, &[], at, false, diags),
        Secrets::Inherit => {}
    }
}

/// Required declarations must be given (a default excuses an input), and
/// only declared names may be.
fn check_given(
    (what, lower): (&str, &str),
    declared: &[(String, Token)],
    given: &[(String, Pos)],
    at: Pos,
    default_excuses: bool,
    diags: &mut Vec<Diag>,
) {
    for (name, def) in declared {
        let required = matches!(
            def.get("required").map(|r| &r.kind),
            Some(TKind::Bool(true))
        );
        let excused = default_excuses && def.get("default").is_some();
        if required && !excused && !given.iter().any(|(g, _)| g.eq_ignore_ascii_case(name)) {
            diags.push(Diag {
                pos: at,
                message: format!("{what} {name} is required, but not provided while calling."),
            });
        }
    }
    for (g, p) in given {
        if !declared.iter().any(|(n, _)| n.eq_ignore_ascii_case(g)) {
            diags.push(Diag {
                pos: *p,
                message: format!("Invalid {lower}, {g} is not defined in the referenced workflow."),
            });
        }
    }
}
