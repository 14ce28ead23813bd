//! `keel rollout …`: the commands of `kubectl argo rollouts` against any
//! cluster (keel's own serves Argo's kinds): the same flags, the same
//! merge patches (status subresource for promote/abort/retry, spec for
//! pause/resume/restart) and the same messages, so scripts written for the
//! plugin keep working.

pub mod lint;
pub mod tree;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args, Subcommand};
use serde_json::{Value as J, json};

use crate::kube::Kube;

const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The namespace (default: the context's, else `default`).
    #[arg(short = 'n', long = "namespace", global = true)]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file.
    #[arg(long = "kubeconfig", global = true)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long = "context", global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Get details about rollouts and experiments (a live tree with --watch).
    #[command(subcommand)]
    Get(GetCommand),
    /// Show the status of a rollout (waits until it is done unless --watch=false).
    Status(StatusArgs),
    /// List rollouts or experiments.
    #[command(subcommand)]
    List(ListCommand),
    /// Promote a rollout paused at a step or before blue-green promotion.
    Promote(PromoteArgs),
    /// Abort a rollout: back to the stable version.
    Abort(Names),
    /// Retry an aborted rollout or a failed experiment.
    #[command(subcommand)]
    Retry(RetryCommand),
    /// Roll back to the previous revision (or --to-revision).
    Undo(UndoArgs),
    /// Set the rollout's paused state to 'true'.
    Pause(Names),
    /// Set the rollout's paused state to 'false'.
    Resume(Names),
    /// Restart the pods of a rollout.
    Restart(RestartArgs),
    /// Update a rollout's fields.
    #[command(subcommand)]
    Set(SetCommand),
    /// Lint and validate a Rollout (and the Services it names) from a file.
    Lint(LintArgs),
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Get details about a rollout.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(GetArgs),
    /// Get details about an experiment.
    #[command(visible_aliases = ["exp", "experiments"])]
    Experiment(GetArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub name: String,
    /// Watch live updates to the rollout.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Do not colorize output.
    #[arg(long = "no-color")]
    pub no_color: bool,
    /// Timeout after specified seconds (with --watch).
    #[arg(long = "timeout-seconds", default_value_t = 0)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub name: String,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = ArgAction::Set)]
    pub watch: bool,
    /// The length of time to watch before giving up (e.g. 1s, 2m, 3h); 0 waits forever.
    #[arg(short = 't', long, default_value = "0s")]
    pub timeout: String,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// List rollouts.
    #[command(visible_aliases = ["ro", "rollout"])]
    Rollouts(ListArgs),
    /// List experiments.
    #[command(visible_aliases = ["exp", "experiment"])]
    Experiments(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Only show the rollout with this name.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub name: String,
    /// Perform a full promotion, skipping analysis, pauses, and steps.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct Names {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RetryCommand {
    /// Retry an aborted rollout.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(Names),
    /// Retry a failed experiment.
    #[command(visible_aliases = ["exp", "experiments"])]
    Experiment(Names),
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    pub name: String,
    /// The revision to roll back to (0: the previous one).
    #[arg(long = "to-revision", default_value_t = 0)]
    pub to_revision: i64,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    pub name: String,
    /// Amount of time before a restart (e.g. 30s, 5m, 1h).
    #[arg(short = 'i', long = "in")]
    pub in_: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Update the image of a rollout: `set image ROLLOUT CONTAINER=IMAGE` (`*` for all).
    Image { rollout: String, image: String },
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// File to lint.
    #[arg(short = 'f', long = "filename")]
    pub filename: String,
}

struct Ctx {
    kube: Kube,
    ns: String,
}

impl Ctx {
    fn new(a: &RolloutArgs) -> anyhow::Result<Ctx> {
        let kube = Kube::connect(a.kubeconfig.as_deref(), a.context.as_deref())?;
        let ns = a
            .namespace
            .clone()
            .or_else(|| kube.context_namespace().map(str::to_string))
            .unwrap_or_else(|| "default".into());
        Ok(Ctx { kube, ns })
    }

    fn path(&self, plural: &str, name: &str) -> String {
        format!("{}/{name}", self.coll(plural))
    }

    fn coll(&self, plural: &str) -> String {
        let group = match plural {
            "replicasets" | "deployments" => "apis/apps/v1",
            "pods" | "podtemplates" => "api/v1",
            _ => "apis/argoproj.io/v1alpha1",
        };
        format!("/{group}/namespaces/{}/{plural}", self.ns)
    }

    fn rollout(&self, name: &str) -> anyhow::Result<J> {
        self.get_object("rollouts", name)
    }

    fn get_object(&self, plural: &str, name: &str) -> anyhow::Result<J> {
        Ok(self
            .kube
            .call("GET", &self.path(plural, name), None, MERGE)??)
    }

    fn patch(&self, path: &str, body: &J, ct: &str) -> anyhow::Result<J> {
        Ok(self.kube.call("PATCH", path, Some(body), ct)??)
    }

    /// A status patch, or (for Argo before v0.10, without the status
    /// subresource) the same patch on the object, as the plugin does.
    fn patch_status(&self, name: &str, body: &J) -> anyhow::Result<J> {
        let path = self.path("rollouts", name);
        match self
            .kube
            .call("PATCH", &format!("{path}/status"), Some(body), MERGE)?
        {
            Ok(j) => Ok(j),
            Err(e) if e.code == 404 && e.reason != "NotFound" => self.patch(&path, body, MERGE),
            Err(e) => Err(e.into()),
        }
    }

    /// The Rollout `name` (if any) and what the tree shows beside it.
    fn objects(&self, name: Option<&str>) -> anyhow::Result<tree::Objects> {
        let rollout = match name {
            Some(n) => self.rollout(n)?,
            None => J::Null,
        };
        let list = |p: &str| self.kube.list(&self.coll(p), "");
        Ok(tree::Objects {
            rollout,
            replica_sets: list("replicasets")?,
            pods: list("pods")?,
            analysis_runs: list("analysisruns")?,
            experiments: list("experiments")?,
        })
    }
}

/// Runs `keel rollout …`.
///
/// # Errors
/// API errors and bad flags, as one line.
pub fn run(a: RolloutArgs) -> anyhow::Result<ExitCode> {
    if let RolloutCommand::Lint(l) = &a.command {
        return Ok(lint::run(&l.filename));
    }
    let ctx = Ctx::new(&a)?;
    match a.command {
        RolloutCommand::Get(GetCommand::Rollout(g)) => get(&ctx, &g, false)?,
        RolloutCommand::Get(GetCommand::Experiment(g)) => get(&ctx, &g, true)?,
        RolloutCommand::Status(s) => return status(&ctx, &s),
        RolloutCommand::List(ListCommand::Rollouts(l)) => list_rollouts(&ctx, &l)?,
        RolloutCommand::List(ListCommand::Experiments(l)) => list_experiments(&ctx, &l)?,
        RolloutCommand::Promote(p) => promote(&ctx, &p)?,
        RolloutCommand::Abort(n) => {
            for name in n.names {
                let ro = ctx.patch_status(&name, &json!({"status": {"abort": true}}))?;
                println!("rollout '{}' aborted", obj_name(&ro));
            }
        }
        RolloutCommand::Retry(RetryCommand::Rollout(n)) => {
            for name in n.names {
                let ro = ctx.patch_status(&name, &json!({"status": {"abort": false}}))?;
                println!("rollout '{}' retried", obj_name(&ro));
            }
        }
        RolloutCommand::Retry(RetryCommand::Experiment(n)) => {
            for name in n.names {
                let ex = ctx.patch(
                    &ctx.path("experiments", &name),
                    &json!({"status": null}),
                    MERGE,
                )?;
                println!("experiment '{}' retried", obj_name(&ex));
            }
        }
        RolloutCommand::Pause(n) => spec_paused(&ctx, &n.names, true)?,
        RolloutCommand::Resume(n) => spec_paused(&ctx, &n.names, false)?,
        RolloutCommand::Restart(r) => restart(&ctx, &r)?,
        RolloutCommand::Undo(u) => print!("{}", undo(&ctx, &u)?),
        RolloutCommand::Set(SetCommand::Image { rollout, image }) => {
            set_image(&ctx, &rollout, &image)?;
        }
        RolloutCommand::Lint(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn obj_name(o: &J) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn spec_paused(ctx: &Ctx, names: &[String], paused: bool) -> anyhow::Result<()> {
    for name in names {
        let ro = ctx.patch(
            &ctx.path("rollouts", name),
            &json!({"spec": {"paused": paused}}),
            MERGE,
        )?;
        let word = if paused { "paused" } else { "resumed" };
        println!("rollout '{}' {word}", obj_name(&ro));
    }
    Ok(())
}

/// The plugin's promote patches: (spec patch, status patch).
#[must_use]
pub fn promote_patches(ro: &J, full: bool) -> (Option<J>, Option<J>) {
    let paused = ro["spec"]["paused"].as_bool() == Some(true);
    let spec = paused.then(|| json!({"spec": {"paused": false}}));
    let st = &ro["status"];
    if full {
        let status = (st["currentPodHash"] != st["stableRS"])
            .then(|| json!({"status": {"promoteFull": true}}));
        return (spec, status);
    }
    let pause_conditions = st["pauseConditions"]
        .as_array()
        .is_some_and(|p| !p.is_empty());
    let steps = ro["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .map_or(0, Vec::len);
    let steps = i64::try_from(steps).unwrap_or(i64::MAX);
    let canary = !ro["spec"]["strategy"]["canary"].is_null();
    let next = || {
        let idx = st["currentStepIndex"].as_i64().unwrap_or(0);
        if idx < steps { idx + 1 } else { idx }
    };
    let inconclusive =
        canary && st["canary"]["currentStepAnalysisRunStatus"]["status"] == "Inconclusive";
    let status = if inconclusive
        && pause_conditions
        && st["controllerPause"].as_bool() == Some(true)
        && steps > 0
    {
        Some(
            json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": next()}}),
        )
    } else if pause_conditions {
        Some(json!({"status": {"pauseConditions": null}}))
    } else if canary && steps > 0 {
        Some(json!({"status": {"pauseConditions": null, "currentStepIndex": next()}}))
    } else {
        None
    };
    (spec, status)
}

fn promote(ctx: &Ctx, p: &PromoteArgs) -> anyhow::Result<()> {
    let ro = ctx.rollout(&p.name)?;
    let (spec, status) = promote_patches(&ro, p.full);
    let mut out = ro;
    if let Some(status) = status {
        out = ctx.patch_status(&p.name, &status)?;
    }
    if let Some(spec) = spec {
        out = ctx.patch(&ctx.path("rollouts", &p.name), &spec, MERGE)?;
    }
    let how = if p.full { "fully promoted" } else { "promoted" };
    println!("rollout '{}' {how}", obj_name(&out));
    Ok(())
}

/// Argo's `DurationString`: a Go duration, or a plain number of seconds.
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let ns = match s.parse::<u64>() {
        Ok(secs) => i64::try_from(secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX),
        Err(_) => keel_go::duration::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("invalid duration {s:?}: {e}"))?,
    };
    Ok(Duration::from_nanos(u64::try_from(ns).unwrap_or(0)))
}

fn restart(ctx: &Ctx, r: &RestartArgs) -> anyhow::Result<()> {
    let delay = match &r.in_ {
        Some(d) => parse_duration(d)?,
        None => Duration::ZERO,
    };
    let at = chrono::Utc::now() + chrono::Duration::from_std(delay).context("--in is too long")?;
    let ro = ctx.patch(
        &ctx.path("rollouts", &r.name),
        &json!({"spec": {"restartAt": at.format("%Y-%m-%dT%H:%M:%SZ").to_string()}}),
        MERGE,
    )?;
    println!(
        "rollout '{}' restarts in {}",
        obj_name(&ro),
        r.in_.as_deref().unwrap_or("0s")
    );
    Ok(())
}

/// apimachinery's `DeepDerivative`: `a` matches `b` where it says anything.
fn derivative(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Null, _) => true,
        (J::Object(a), J::Object(b)) => a
            .iter()
            .all(|(k, v)| derivative(v, b.get(k).unwrap_or(&J::Null)) || is_empty(v)),
        (J::Object(a), J::Null) => a.is_empty(),
        (J::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| derivative(x, y))
        }
        (J::Array(a), J::Null) => a.is_empty(),
        (J::String(a), J::Null) => a.is_empty(),
        _ => a == b,
    }
}

fn is_empty(v: &J) -> bool {
    match v {
        J::Null => true,
        J::Object(m) => m.is_empty(),
        J::Array(a) => a.is_empty(),
        J::String(s) => s.is_empty(),
        J::Bool(b) => !b,
        J::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn strip_hash(mut t: J) -> J {
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove("rollouts-pod-template-hash");
    }
    t
}

/// `undo`: the template of the previous (or `--to-revision`) `ReplicaSet`
/// put back as a JSON patch, on the Rollout or its `workloadRef`.
fn undo(ctx: &Ctx, u: &UndoArgs) -> anyhow::Result<String> {
    let ro = ctx.rollout(&u.name)?;
    let uid = ro["metadata"]["uid"].as_str().unwrap_or_default();
    let selector = label_selector(&ro["spec"]["selector"]);
    let all = ctx
        .kube
        .list(&ctx.coll("replicasets"), &selector)
        .with_context(|| format!("failed to retrieve replica sets from rollout {}", u.name))?;
    let owned = all.into_iter().filter(|rs| {
        rs["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["uid"] == uid && r["controller"].as_bool() == Some(true))
    });
    let rev = |rs: &J| {
        rs["metadata"]["annotations"]["rollout.argoproj.io/revision"]
            .as_str()
            .map_or(Some(0), |v| v.parse::<i64>().ok())
    };
    let mut latest: Option<(i64, J)> = None;
    let mut previous: Option<(i64, J)> = None;
    let mut target = None;
    for rs in owned {
        let Some(v) = rev(&rs) else { continue };
        if u.to_revision == 0 {
            if latest.as_ref().is_none_or(|(l, _)| *l < v) {
                previous = latest.replace((v, rs));
            } else if previous.as_ref().is_none_or(|(p, _)| *p < v) {
                previous = Some((v, rs));
            }
        } else if v == u.to_revision {
            target = Some(rs);
            break;
        }
    }
    let rs = match (u.to_revision, target, previous) {
        (0, _, Some((_, rs))) | (_, Some(rs), _) => rs,
        (0, _, None) => bail!("no revision found for rollout {:?}", u.name),
        (n, None, _) => bail!("unable to find specified revision {n} in history"),
    };
    let template = strip_hash(rs["spec"]["template"].clone());
    if derivative(&strip_hash(ro["spec"]["template"].clone()), &template)
        && !ro["spec"]["template"].is_null()
    {
        return Ok(format!(
            "skipped rollback (current template already matches revision {})",
            u.to_revision
        ));
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let target = match ro["spec"]["workloadRef"]["kind"].as_str() {
        None => ctx.path("rollouts", &u.name),
        Some(kind) => {
            let name = ro["spec"]["workloadRef"]["name"]
                .as_str()
                .unwrap_or_default();
            match kind {
                "Deployment" => ctx.path("deployments", name),
                "ReplicaSet" => ctx.path("replicasets", name),
                "PodTemplate" => ctx.path("podtemplates", name),
                other => bail!("workload of type {other} is not supported"),
            }
        }
    };
    ctx.patch(&target, &patch, JSON_PATCH)
        .with_context(|| format!("failed restoring revision {}", u.to_revision))?;
    Ok(format!("rollout '{}' undo\n", obj_name(&ro)))
}

/// A label selector object as a `labelSelector` query.
fn label_selector(sel: &J) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(J::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn set_image(ctx: &Ctx, rollout: &str, spec: &str) -> anyhow::Result<()> {
    let Some((container, image)) = spec.split_once('=').filter(|(_, i)| !i.contains('=')) else {
        bail!("expected CONTAINER=IMAGE, got {spec:?}");
    };
    // Updates race with the controller: retry on conflicts as the plugin does.
    for attempt in 0..5 {
        let ro = ctx.rollout(rollout)?;
        let (path, mut obj) = match ro["spec"]["workloadRef"]["name"].as_str() {
            Some(name) => {
                let path = ctx.path("deployments", name);
                (path.clone(), ctx.kube.call("GET", &path, None, MERGE)??)
            }
            None => (ctx.path("rollouts", rollout), ro),
        };
        let mut found = false;
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            // `pointer_mut`, not indexing: `obj[..][list]` would insert a
            // null for a missing list, which the Rollout's schema refuses.
            for c in obj
                .pointer_mut(&format!("/spec/template/spec/{list}"))
                .and_then(J::as_array_mut)
                .into_iter()
                .flatten()
            {
                if container == "*" || c["name"].as_str() == Some(container) {
                    c["image"] = J::from(image);
                    found = true;
                }
            }
        }
        if !found {
            bail!("unable to find container named {container:?}");
        }
        match ctx
            .kube
            .call("PUT", &path, Some(&obj), "application/json")?
        {
            Ok(o) => {
                let kind = o["kind"].as_str().unwrap_or("Rollout").to_lowercase();
                println!("{kind} \"{}\" image updated", obj_name(&o));
                return Ok(());
            }
            Err(e) if e.code == 409 && attempt < 4 => {}
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn get(ctx: &Ctx, g: &GetArgs, experiment: bool) -> anyhow::Result<()> {
    let render = || -> anyhow::Result<String> {
        let view = tree::View {
            color: !g.no_color,
            now: now(),
        };
        if experiment {
            let exp = ctx.get_object("experiments", &g.name)?;
            let objs = ctx.objects(None)?;
            return Ok(tree::render_experiment(&exp, &objs, &view));
        }
        Ok(tree::render(&ctx.objects(Some(&g.name))?, &view))
    };
    if !g.watch {
        print!("{}", render()?);
        return Ok(());
    }
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let out = render()?;
        // Redrawn each second (ages move) and on every change.
        if out != last || start.elapsed().as_secs() > 0 {
            print!("\x1b[H\x1b[2J\x1b[0;0H{out}");
            last = out;
        }
        if g.timeout_seconds > 0 && start.elapsed() >= Duration::from_secs(g.timeout_seconds) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn status(ctx: &Ctx, s: &StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = parse_duration(&s.timeout)?;
    let start = Instant::now();
    let mut printed = String::new();
    let (st, msg) = loop {
        let (st, msg) = tree::phase(&ctx.rollout(&s.name)?);
        if !s.watch {
            if st == "Healthy" || st == "Degraded" {
                println!("{st}");
            } else {
                println!("{st} - {msg}");
            }
            break (st, msg);
        }
        let line = if msg.is_empty() {
            st.clone()
        } else {
            format!("{st} - {msg}")
        };
        if line != printed {
            println!("{line}");
            printed = line;
        }
        if st == "Healthy" || st == "Degraded" {
            break (st, msg);
        }
        if !timeout.is_zero() && start.elapsed() >= timeout {
            break (st, msg);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if st == "Degraded" {
        bail!("The rollout is in a degraded state with message: {msg}");
    }
    if st != "Healthy" && s.watch {
        bail!("Rollout status watch exceeded timeout");
    }
    Ok(ExitCode::SUCCESS)
}

fn list_of(ctx: &Ctx, plural: &str, all: bool) -> anyhow::Result<Vec<J>> {
    let coll = if all {
        format!("/apis/argoproj.io/v1alpha1/{plural}")
    } else {
        ctx.coll(plural)
    };
    ctx.kube.list(&coll, "")
}

/// One `list rollouts` row, padded as the plugin's format string pads it.
fn rollout_row(ro: &J, all: bool) -> Vec<String> {
    let canary = &ro["spec"]["strategy"]["canary"];
    let (strategy, step, weight) = if canary.is_null() {
        let s = if ro["spec"]["strategy"]["blueGreen"].is_null() {
            "unknown"
        } else {
            "BlueGreen"
        };
        (s, "-".to_string(), "-".to_string())
    } else {
        let steps = canary["steps"].as_array().map_or(0, Vec::len);
        let step = match ro["status"]["currentStepIndex"].as_i64() {
            Some(n) if steps > 0 => format!("{n}/{steps}"),
            _ => "-".into(),
        };
        ("Canary", step, tree::set_weight(ro).to_string())
    };
    let st = &ro["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    let mut row = vec![];
    if all {
        row.push(format!(
            "{:<9}",
            ro["metadata"]["namespace"].as_str().unwrap_or_default()
        ));
    }
    row.extend([
        format!("{:<10}", obj_name(ro)),
        format!("{strategy:<9}"),
        format!("{:<12}", tree::phase(ro).0),
        format!("{step:<4}"),
        format!("{weight:<10}"),
        format!("{:<5}", format!("{}/{}", n("readyReplicas"), n("replicas"))),
        format!("{:<7}", ro["spec"]["replicas"].as_i64().unwrap_or(1)),
        format!("{:<10}", n("updatedReplicas")),
        format!("{:<9}", n("availableReplicas")),
    ]);
    row
}

fn list_rollouts(ctx: &Ctx, l: &ListArgs) -> anyhow::Result<()> {
    let items: Vec<J> = list_of(ctx, "rollouts", l.all_namespaces)?
        .into_iter()
        .filter(|r| l.name.as_deref().is_none_or(|n| obj_name(r) == n))
        .collect();
    if items.is_empty() {
        eprintln!("No resources found.");
        return Ok(());
    }
    let mut header: Vec<String> =
        "NAME STRATEGY STATUS STEP SET-WEIGHT READY DESIRED UP-TO-DATE AVAILABLE"
            .split(' ')
            .map(str::to_string)
            .collect();
    if l.all_namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    let mut lines = vec![header];
    lines.extend(items.iter().map(|r| rollout_row(r, l.all_namespaces)));
    print!("{}", tree::tabwrite(&lines));
    Ok(())
}

fn list_experiments(ctx: &Ctx, l: &ListArgs) -> anyhow::Result<()> {
    let items = list_of(ctx, "experiments", l.all_namespaces)?;
    if items.is_empty() {
        eprintln!("No resources found.");
        return Ok(());
    }
    let mut header: Vec<String> = ["NAME", "STATUS", "DURATION", "REMAINING", "AGE"]
        .map(str::to_string)
        .to_vec();
    if l.all_namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    let now = now();
    let mut lines = vec![header];
    for e in &items {
        let phase = e["status"]["phase"].as_str().unwrap_or_default();
        let created = tree::timestamp(
            e["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default(),
        );
        let age = tree::human_duration(now - created.unwrap_or(now));
        let (mut dur, mut remaining) = ("-".to_string(), "-".to_string());
        if let Some(Ok(d)) = e["spec"]["duration"].as_str().map(parse_duration) {
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            dur = tree::human_duration(secs);
            let done = matches!(phase, "Successful" | "Failed" | "Error" | "Inconclusive");
            if let Some(at) = e["status"]["availableAt"]
                .as_str()
                .and_then(tree::timestamp)
                && !done
                && secs - (now - at) > 0
            {
                remaining = tree::human_duration(secs - (now - at));
            }
        }
        let mut row = vec![];
        if l.all_namespaces {
            row.push(format!(
                "{:<9}",
                e["metadata"]["namespace"].as_str().unwrap_or_default()
            ));
        }
        row.extend([
            format!("{:<10}", obj_name(e)),
            format!("{phase:<6}"),
            format!("{dur:<8}"),
            format!("{remaining:<9}"),
            format!("{age:<3}"),
        ]);
        lines.push(row);
    }
    print!("{}", tree::tabwrite(&lines));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_patches_are_the_plugins() {
        let paused_bg = json!({"spec": {"paused": true, "strategy": {"blueGreen": {}}},
            "status": {"pauseConditions": [{"reason": "BlueGreenPause"}]}});
        assert_eq!(
            promote_patches(&paused_bg, false),
            (
                Some(json!({"spec": {"paused": false}})),
                Some(json!({"status": {"pauseConditions": null}}))
            )
        );
        let canary_mid_analysis = json!({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}]}}},
            "status": {"currentStepIndex": 1}});
        assert_eq!(
            promote_patches(&canary_mid_analysis, false),
            (
                None,
                Some(json!({"status": {"pauseConditions": null, "currentStepIndex": 2}}))
            )
        );
        let full = json!({"spec": {}, "status": {"currentPodHash": "a", "stableRS": "b"}});
        assert_eq!(
            promote_patches(&full, true),
            (None, Some(json!({"status": {"promoteFull": true}})))
        );
    }

    #[test]
    fn undo_compares_templates_semantically() {
        let ro = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let rs = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {}}], "dnsPolicy": "ClusterFirst"}});
        assert!(derivative(&ro, &rs));
        let other = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "y"}]}});
        assert!(!derivative(&ro, &other));
    }
}

#[cfg(test)]
mod conformance_tests;
