//! `keel rollout get`'s view of a Rollout: its summary (status, strategy,
//! step, weights, images, replicas) and the tree of revisions, `ReplicaSets`,
//! pods, Experiments and `AnalysisRuns`, computed and printed as the Argo
//! plugin's `info` package and `get` command do.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value as J;

pub const ICON_WAITING: &str = "◷";
pub const ICON_PROGRESSING: &str = "◌";
pub const ICON_WARNING: &str = "⚠";
pub const ICON_UNKNOWN: &str = "?";
pub const ICON_OK: &str = "✔";
pub const ICON_BAD: &str = "✖";
pub const ICON_PAUSED: &str = "॥";
pub const ICON_NEUTRAL: &str = "•";

/// Everything in the Rollout's namespace the view looks at.
#[derive(Default)]
pub struct Objects {
    pub rollout: J,
    pub replica_sets: Vec<J>,
    pub pods: Vec<J>,
    pub analysis_runs: Vec<J>,
    pub experiments: Vec<J>,
}

fn s<'a>(v: &'a J, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_str()
        .unwrap_or_default()
}

fn i(v: &J, path: &[&str]) -> i64 {
    path.iter().fold(v, |v, k| &v[*k]).as_i64().unwrap_or(0)
}

fn created(v: &J) -> i64 {
    timestamp(s(v, &["metadata", "creationTimestamp"])).unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn timestamp(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp())
}

fn revision(v: &J) -> i64 {
    s(
        v,
        &["metadata", "annotations", "rollout.argoproj.io/revision"],
    )
    .parse()
    .unwrap_or(0)
}

fn owned_by(v: &J, uid: &str) -> bool {
    v["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"].as_str() == Some(uid))
}

/// Kubernetes' `duration.HumanDuration` (apimachinery): 45s, 3m20s, 3h59m, 7d, 2y3d.
#[must_use]
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    let with = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if minutes < 10 {
        return with(minutes, "m", secs % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// Argo's current canary step index, when the strategy has steps.
fn step_index(ro: &J) -> Option<i64> {
    let steps = ro["spec"]["strategy"]["canary"]["steps"].as_array()?;
    if steps.is_empty() {
        return None;
    }
    Some(i(ro, &["status", "currentStepIndex"]))
}

fn current_step(ro: &J) -> Option<&J> {
    let idx = usize::try_from(step_index(ro)?).ok()?;
    ro["spec"]["strategy"]["canary"]["steps"].get(idx)
}

/// The weight the current step asks for (Argo's `GetCurrentSetWeight`).
#[must_use]
pub fn set_weight(ro: &J) -> i64 {
    if ro["status"]["abort"].as_bool() == Some(true) {
        return 0;
    }
    let max = keel_controllers::rollout_validate::max_traffic_weight(ro);
    if current_step(ro).is_none() {
        return max;
    }
    let idx = usize::try_from(step_index(ro).unwrap_or(0)).unwrap_or(0);
    let steps = ro["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    steps[..=idx.min(steps.len().saturating_sub(1))]
        .iter()
        .rev()
        .find_map(|st| st["setWeight"].as_i64())
        .unwrap_or(0)
}

fn has(v: &J) -> bool {
    !v.is_null()
}

/// The Rollout's phase and message (Argo's `GetRolloutPhase`: the
/// controller's own, else computed from the spec and status as v0.10 did).
#[must_use]
pub fn phase(ro: &J) -> (String, String) {
    let st = &ro["status"];
    let observed = s(ro, &["status", "observedGeneration"]);
    if let Ok(g) = observed.parse::<i64>()
        && g < i(ro, &["metadata", "generation"])
    {
        return (
            "Progressing".into(),
            "waiting for rollout spec update to be observed".into(),
        );
    }
    let pause_conditions = st["pauseConditions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if st["controllerPause"].as_bool() == Some(true) && pause_conditions.is_empty() {
        return (
            "Progressing".into(),
            "waiting for rollout to unpause".into(),
        );
    }
    if let Some(p) = st["phase"].as_str().filter(|p| !p.is_empty()) {
        return (p.to_string(), s(st, &["message"]).to_string());
    }
    for c in st["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "InvalidSpec" {
            return (
                "Degraded".into(),
                format!("InvalidSpec: {}", s(c, &["message"])),
            );
        }
        let reason = s(c, &["reason"]);
        if reason == "RolloutAborted" || reason == "ProgressDeadlineExceeded" {
            return (
                "Degraded".into(),
                format!("{reason}: {}", s(c, &["message"])),
            );
        }
    }
    if ro["spec"]["paused"].as_bool() == Some(true) {
        return ("Paused".into(), "manually paused".into());
    }
    if let Some(c) = pause_conditions.first() {
        return ("Paused".into(), s(c, &["reason"]).to_string());
    }
    let progressing = |m: &str| ("Progressing".to_string(), m.to_string());
    let replicas = ro["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = i(st, &["updatedReplicas"]);
    if updated < replicas {
        return progressing("more replicas need to be updated");
    }
    if i(st, &["availableReplicas"]) < updated {
        return progressing("updated replicas are still becoming available");
    }
    let stable = s(st, &["stableRS"]);
    let promoted = !stable.is_empty() && stable == s(st, &["currentPodHash"]);
    let strategy = &ro["spec"]["strategy"];
    if has(&strategy["blueGreen"]) {
        let active = s(st, &["blueGreen", "activeSelector"]);
        if active.is_empty() || active != s(st, &["currentPodHash"]) {
            return progressing("active service cutover pending");
        }
        if !promoted {
            return progressing("waiting for post-promotion verification to complete");
        }
    } else if has(&strategy["canary"]) {
        if !has(&strategy["canary"]["trafficRouting"]) && i(st, &["replicas"]) > updated {
            return progressing("old replicas are pending termination");
        }
        if !promoted {
            return progressing("waiting for all steps to complete");
        }
    }
    ("Healthy".into(), String::new())
}

fn rollout_icon(status: &str) -> &'static str {
    match status {
        "Progressing" => ICON_PROGRESSING,
        "Error" | "InvalidSpec" => ICON_WARNING,
        "Paused" => ICON_PAUSED,
        "Healthy" => ICON_OK,
        "Degraded" => ICON_BAD,
        "Unknown" => ICON_UNKNOWN,
        "ScaledDown" => ICON_NEUTRAL,
        _ => " ",
    }
}

fn analysis_icon(phase: &str) -> &'static str {
    match phase {
        "Successful" => ICON_OK,
        "Inconclusive" => ICON_UNKNOWN,
        "Failed" => ICON_BAD,
        "Error" => ICON_WARNING,
        "Running" => ICON_PROGRESSING,
        "Pending" => ICON_WAITING,
        _ => " ",
    }
}

struct PodInfo {
    name: String,
    status: String,
    ready: String,
    restarts: i64,
    created: i64,
}

#[derive(Default)]
struct RsInfo {
    name: String,
    uid: String,
    status: &'static str,
    revision: i64,
    replicas: i64,
    available: i64,
    stable: bool,
    canary: bool,
    active: bool,
    preview: bool,
    ping: bool,
    pong: bool,
    scale_down_deadline: String,
    /// The Experiment template it runs (`Σ:name` in the images).
    template: String,
    images: Vec<String>,
    created: i64,
    pods: Vec<PodInfo>,
}

struct ArInfo {
    name: String,
    status: String,
    revision: i64,
    created: i64,
    counts: [i64; 4],
    jobs: Vec<(String, String, i64)>,
}

struct ExpInfo {
    name: String,
    namespace: String,
    status: String,
    message: String,
    revision: i64,
    created: i64,
    replica_sets: Vec<RsInfo>,
    analysis_runs: Vec<ArInfo>,
}

fn rs_health(rs: &J) -> &'static str {
    let spec_replicas = rs["spec"]["replicas"].as_i64();
    if i(rs, &["metadata", "generation"]) > i(rs, &["status", "observedGeneration"]) {
        return "Progressing";
    }
    let failure = rs["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ReplicaFailure");
    if failure.is_some_and(|c| c["status"] == "True") {
        return "ReplicaFailure";
    }
    if spec_replicas.is_some_and(|r| i(rs, &["status", "availableReplicas"]) < r) {
        return "Progressing";
    }
    if spec_replicas == Some(0) {
        return "ScaledDown";
    }
    "Healthy"
}

fn rs_icon(status: &str) -> &'static str {
    match status {
        "Progressing" => ICON_PROGRESSING,
        "Healthy" => ICON_OK,
        "ReplicaFailure" => ICON_BAD,
        "ScaledDown" => ICON_NEUTRAL,
        _ => " ",
    }
}

/// A pod's status word as `kubectl get pods` prints it (the plugin's copy
/// of kubectl's printer), its ready count and restarts.
fn pod_info(pod: &J) -> PodInfo {
    let st = &pod["status"];
    let mut reason = s(st, &["phase"]).to_string();
    if let Some(r) = st["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    let init_specs = pod["spec"]["initContainers"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"].as_str() == Some(name) && c["restartPolicy"] == "Always")
    };
    let mut restarts = 0;
    let mut initializing = false;
    for (n, c) in st["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        restarts += i(c, &["restartCount"]);
        let term = &c["state"]["terminated"];
        let waiting = s(c, &["state", "waiting", "reason"]);
        if has(term) && i(term, &["exitCode"]) == 0 {
            continue;
        }
        if has(term) {
            reason = match (s(term, &["reason"]), i(term, &["signal"])) {
                ("", 0) => format!("Init:ExitCode:{}", i(term, &["exitCode"])),
                ("", sig) => format!("Init:Signal:{sig}"),
                (r, _) => format!("Init:{r}"),
            };
        } else if sidecar(s(c, &["name"])) && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                continue;
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            reason = format!("Init:{waiting}");
        } else {
            reason = format!("Init:{n}/{}", init_specs.len());
        }
        initializing = !(sidecar(s(c, &["name"])) && c["started"].as_bool() == Some(true));
        break;
    }
    let mut ready = 0;
    if !initializing {
        restarts = 0;
        let mut running = false;
        let statuses = st["containerStatuses"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for c in statuses.iter().rev() {
            restarts += i(c, &["restartCount"]);
            let term = &c["state"]["terminated"];
            let waiting = s(c, &["state", "waiting", "reason"]);
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if has(term) && !s(term, &["reason"]).is_empty() {
                reason = s(term, &["reason"]).to_string();
            } else if has(term) {
                reason = match i(term, &["signal"]) {
                    0 => format!("ExitCode:{}", i(term, &["exitCode"])),
                    sig => format!("Signal:{sig}"),
                };
            } else if c["ready"].as_bool() == Some(true) && has(&c["state"]["running"]) {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".into();
        }
    }
    if has(&pod["metadata"]["deletionTimestamp"]) {
        reason = if s(st, &["reason"]) == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    PodInfo {
        name: s(pod, &["metadata", "name"]).to_string(),
        status: reason,
        ready: format!("{ready}/{total}"),
        restarts,
        created: created(pod),
    }
}

fn pod_icon(status: &str) -> &'static str {
    if status.starts_with("Init:") {
        return ICON_PROGRESSING;
    }
    if status.starts_with("Signal:") || status.starts_with("ExitCode:") {
        return ICON_BAD;
    }
    if status.ends_with("Error") || status.starts_with("Err") {
        return ICON_WARNING;
    }
    match status {
        "Pending" | "Terminating" | "ContainerCreating" => ICON_PROGRESSING,
        "Running" | "Completed" => ICON_OK,
        "Failed" | "InvalidImageName" | "CrashLoopBackOff" => ICON_BAD,
        "ImagePullBackOff" | "RegistryUnavailable" => ICON_WARNING,
        "Unknown" => ICON_UNKNOWN,
        _ => " ",
    }
}

fn replica_sets(owner: &str, ro: Option<&J>, objs: &Objects) -> Vec<RsInfo> {
    let mut out: Vec<RsInfo> = Vec::new();
    for rs in objs.replica_sets.iter().filter(|rs| owned_by(rs, owner)) {
        let status = rs_health(rs);
        let mut info = RsInfo {
            name: s(rs, &["metadata", "name"]).to_string(),
            uid: s(rs, &["metadata", "uid"]).to_string(),
            status,
            revision: revision(rs),
            replicas: i(rs, &["status", "replicas"]),
            available: i(rs, &["status", "availableReplicas"]),
            scale_down_deadline: s(rs, &["metadata", "annotations", "scale-down-deadline"])
                .to_string(),
            template: s(
                rs,
                &[
                    "metadata",
                    "annotations",
                    "experiment.argoproj.io/template-name",
                ],
            )
            .to_string(),
            created: created(rs),
            images: rs["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| s(c, &["image"]).to_string())
                .collect(),
            ..RsInfo::default()
        };
        if let Some(ro) = ro {
            let hash = s(rs, &["metadata", "labels", "rollouts-pod-template-hash"]);
            let st = &ro["status"];
            let strategy = &ro["spec"]["strategy"];
            if has(&strategy["canary"]) {
                let ping_pong = has(&strategy["canary"]["pingPong"]);
                let stable_is_ping = s(st, &["canary", "stablePingPong"]) == "ping";
                if s(st, &["stableRS"]) == hash {
                    info.stable = true;
                    info.ping = ping_pong && stable_is_ping;
                    info.pong = ping_pong && !stable_is_ping;
                } else if s(st, &["currentPodHash"]) == hash {
                    info.canary = true;
                    info.ping = ping_pong && !stable_is_ping;
                    info.pong = ping_pong && stable_is_ping;
                }
            }
            if has(&strategy["blueGreen"]) {
                info.stable = s(st, &["stableRS"]) == hash;
                if s(st, &["blueGreen", "activeSelector"]) == hash {
                    info.active = true;
                } else if s(st, &["blueGreen", "previewSelector"]) == hash {
                    info.preview = true;
                }
            }
        }
        out.push(info);
    }
    out.sort_by(|a, b| {
        b.revision
            .cmp(&a.revision)
            .then_with(|| a.name.cmp(&b.name))
    });
    for pod in &objs.pods {
        if let Some(rs) = out.iter_mut().find(|rs| owned_by(pod, &rs.uid)) {
            rs.pods.push(pod_info(pod));
        }
    }
    for rs in &mut out {
        rs.pods
            .sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    }
    out
}

fn analysis_runs(owner: &str, objs: &Objects) -> Vec<ArInfo> {
    let mut out: Vec<ArInfo> = Vec::new();
    for run in objs.analysis_runs.iter().filter(|r| owned_by(r, owner)) {
        let mut counts = [0; 4];
        let mut jobs = Vec::new();
        for mr in run["status"]["metricResults"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for (n, k) in ["successful", "failed", "inconclusive", "error"]
                .iter()
                .enumerate()
            {
                counts[n] += i(mr, &[k]);
            }
            for m in mr["measurements"].as_array().into_iter().flatten() {
                if let Some(job) = m["metadata"]["job-name"].as_str() {
                    let started = timestamp(s(m, &["startedAt"])).unwrap_or(0);
                    jobs.push((job.to_string(), s(m, &["phase"]).to_string(), started));
                }
            }
        }
        out.push(ArInfo {
            name: s(run, &["metadata", "name"]).to_string(),
            status: s(run, &["status", "phase"]).to_string(),
            revision: revision(run),
            created: created(run),
            counts,
            jobs,
        });
    }
    out.sort_by(|a, b| {
        b.revision
            .cmp(&a.revision)
            .then_with(|| a.created.cmp(&b.created))
            .then_with(|| b.name.cmp(&a.name))
    });
    out
}

/// The rendering options (`--no-color`) and the clock ages are measured against.
pub struct View {
    pub color: bool,
    pub now: i64,
}

impl View {
    fn paint(&self, text: &str, key: &str) -> String {
        let code = match key {
            ICON_WAITING | ICON_UNKNOWN | "canary" => 33,
            ICON_PROGRESSING | "preview" | "ping" | "pong" | "Pending" | "Running" => 94,
            ICON_WARNING | ICON_BAD => 31,
            ICON_OK | "stable" | "active" => 32,
            _ => return text.to_string(),
        };
        if !self.color || std::env::var("TERM").is_ok_and(|t| t == "dumb") {
            return text.to_string();
        }
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn age(&self, created: i64) -> String {
        human_duration(self.now - created)
    }
}

/// The plugin's `get rollout` output for `objs`.
#[must_use]
#[allow(clippy::too_many_lines)] // one printout, in the plugin's order
pub fn render(objs: &Objects, view: &View) -> String {
    let ro = &objs.rollout;
    let uid = s(ro, &["metadata", "uid"]);
    let rss = replica_sets(uid, Some(ro), objs);
    let ars = analysis_runs(uid, objs);
    let mut exps: Vec<ExpInfo> = objs
        .experiments
        .iter()
        .filter(|e| owned_by(e, uid))
        .map(|e| exp_info(e, objs))
        .collect();
    exps.sort_by(|a, b| {
        b.revision
            .cmp(&a.revision)
            .then_with(|| a.created.cmp(&b.created))
    });

    let (status, message) = phase(ro);
    let icon = rollout_icon(&status);
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{k:<17}{v}");
    };
    row(&mut out, "Name:", s(ro, &["metadata", "name"]));
    row(&mut out, "Namespace:", s(ro, &["metadata", "namespace"]));
    row(
        &mut out,
        "Status:",
        &format!("{} {status}", view.paint(icon, icon)),
    );
    if !message.is_empty() {
        row(&mut out, "Message:", &message);
    }
    let strategy = &ro["spec"]["strategy"];
    if has(&strategy["canary"]) {
        row(&mut out, "Strategy:", "Canary");
        let steps = strategy["canary"]["steps"].as_array().map_or(0, Vec::len);
        let step = match ro["status"]["currentStepIndex"].as_i64() {
            Some(n) if steps > 0 => format!("{n}/{steps}"),
            _ => String::new(),
        };
        row(&mut out, "  Step:", &step);
        let weight = set_weight(ro);
        row(&mut out, "  SetWeight:", &weight.to_string());
        let max = keel_controllers::rollout_validate::max_traffic_weight(ro);
        let available = i(ro, &["status", "availableReplicas"]);
        let actual = if current_step(ro).is_none() {
            max.to_string()
        } else if available > 0 {
            if has(&strategy["canary"]["trafficRouting"]) {
                match ro["status"]["canary"]["weights"]["canary"]["weight"].as_i64() {
                    Some(w) if has(&ro["status"]["canary"]["weights"]) => w.to_string(),
                    _ => weight.to_string(),
                }
            } else {
                rss.iter()
                    .rfind(|r| r.canary)
                    .map_or("0".into(), |r| (r.available * max / available).to_string())
            }
        } else {
            "0".into()
        };
        row(&mut out, "  ActualWeight:", &actual);
    } else if has(&strategy["blueGreen"]) {
        row(&mut out, "Strategy:", "BlueGreen");
    } else {
        row(&mut out, "Strategy:", "");
    }
    // Images of the ReplicaSets that have pods, with their roles.
    let mut images = Images::default();
    for rs in rss.iter().filter(|r| r.replicas > 0) {
        let tags: Vec<String> = [
            (rs.canary, "canary"),
            (rs.stable, "stable"),
            (rs.active, "active"),
            (rs.preview, "preview"),
            (rs.ping, "ping"),
            (rs.pong, "pong"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, t)| t.to_string())
        .collect();
        for image in &rs.images {
            images.add(image, tags.clone());
        }
    }
    for exp in &exps {
        images.add_experiment(exp);
    }
    images.print(&mut out, view);
    out.push_str("Replicas:\n");
    let desired = ro["spec"]["replicas"].as_i64().unwrap_or(1);
    row(&mut out, "  Desired:", &desired.to_string());
    for (label, key) in [
        ("  Current:", "replicas"),
        ("  Updated:", "updatedReplicas"),
        ("  Ready:", "readyReplicas"),
        ("  Available:", "availableReplicas"),
    ] {
        row(&mut out, label, &i(ro, &["status", key]).to_string());
    }
    out.push('\n');

    let mut lines: Vec<[String; 5]> = vec![[
        "NAME".into(),
        "KIND".into(),
        "STATUS".into(),
        "AGE".into(),
        "INFO".into(),
    ]];
    lines.push([
        format!("⟳ {}", s(ro, &["metadata", "name"])),
        "Rollout".into(),
        format!("{} {status}", view.paint(icon, icon)),
        view.age(created(ro)),
        String::new(),
    ]);
    let mut revisions: BTreeSet<i64> = rss.iter().map(|r| r.revision).collect();
    revisions.extend(exps.iter().map(|e| e.revision));
    revisions.extend(ars.iter().map(|a| a.revision));
    let count = revisions.len();
    for (n, rev) in revisions.iter().rev().enumerate() {
        let (prefix, sub) = prefixes(n + 1 == count, "");
        lines.push([
            format!("{prefix}# revision:{rev}"),
            String::new(),
            " ".into(),
            String::new(),
            String::new(),
        ]);
        let these_rs: Vec<&RsInfo> = rss.iter().filter(|r| r.revision == *rev).collect();
        let these_exp: Vec<&ExpInfo> = exps.iter().filter(|e| e.revision == *rev).collect();
        let these_ar: Vec<&ArInfo> = ars.iter().filter(|a| a.revision == *rev).collect();
        let total = these_rs.len() + these_exp.len() + these_ar.len();
        let mut curr = 0;
        for rs in these_rs {
            let (p, sp) = prefixes(curr + 1 == total, &sub);
            self::rs_lines(&mut lines, rs, &p, &sp, view);
            curr += 1;
        }
        for exp in these_exp {
            let (p, sp) = prefixes(curr + 1 == total, &sub);
            exp_lines(&mut lines, exp, &p, &sp, view);
            curr += 1;
        }
        for ar in these_ar {
            let (p, sp) = prefixes(curr + 1 == total, &sub);
            ar_lines(&mut lines, ar, &p, &sp, view);
            curr += 1;
        }
    }
    out.push_str(&tabwrite(&lines));
    out
}

fn exp_info(e: &J, objs: &Objects) -> ExpInfo {
    let euid = s(e, &["metadata", "uid"]);
    ExpInfo {
        name: s(e, &["metadata", "name"]).to_string(),
        namespace: s(e, &["metadata", "namespace"]).to_string(),
        status: s(e, &["status", "phase"]).to_string(),
        message: s(e, &["status", "message"]).to_string(),
        revision: revision(e),
        created: created(e),
        replica_sets: replica_sets(euid, None, objs),
        analysis_runs: analysis_runs(euid, objs),
    }
}

/// Images with their tags. Tags keep their order on an image seen once and
/// are sorted when two `ReplicaSets`' tags merge, as the plugin's
/// `mergeImageAndTags` does; images print sorted.
#[derive(Default)]
struct Images(Vec<(String, Vec<String>)>);

impl Images {
    fn add(&mut self, image: &str, tags: Vec<String>) {
        if let Some(e) = self.0.iter_mut().find(|(i, _)| i == image) {
            let merged: BTreeSet<String> = e.1.drain(..).chain(tags).collect();
            e.1 = merged.into_iter().collect();
        } else {
            self.0.push((image.to_string(), tags));
        }
    }

    /// An Experiment's images, tagged `Σ:template`.
    fn add_experiment(&mut self, exp: &ExpInfo) {
        for rs in exp.replica_sets.iter().filter(|r| r.replicas > 0) {
            let tags: Vec<String> = if rs.template.is_empty() {
                Vec::new()
            } else {
                vec![format!("Σ:{}", rs.template)]
            };
            for image in &rs.images {
                self.add(image, tags.clone());
            }
        }
    }

    fn print(mut self, out: &mut String, view: &View) {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        for (n, (image, tags)) in self.0.iter().enumerate() {
            let text = if tags.is_empty() {
                image.clone()
            } else {
                let tags: Vec<String> = tags.iter().map(|t| view.paint(t, t)).collect();
                format!("{image} ({})", tags.join(", "))
            };
            let _ = writeln!(out, "{:<17}{text}", if n == 0 { "Images:" } else { "" });
        }
    }
}

fn exp_lines(lines: &mut Vec<[String; 5]>, exp: &ExpInfo, prefix: &str, sub: &str, view: &View) {
    let icon = analysis_icon(&exp.status);
    lines.push([
        format!("{prefix}Σ {}", view.paint(&exp.name, &exp.status)),
        "Experiment".into(),
        format!("{} {}", view.paint(icon, icon), exp.status),
        view.age(exp.created),
        String::new(),
    ]);
    let total = exp.replica_sets.len() + exp.analysis_runs.len();
    let mut curr = 0;
    for rs in &exp.replica_sets {
        let (p, sp) = prefixes(curr + 1 == total, sub);
        rs_lines(lines, rs, &p, &sp, view);
        curr += 1;
    }
    for ar in &exp.analysis_runs {
        let (p, sp) = prefixes(curr + 1 == total, sub);
        ar_lines(lines, ar, &p, &sp, view);
        curr += 1;
    }
}

/// The plugin's `get experiment` output for `exp` (its `ReplicaSets`, pods
/// and `AnalysisRuns` among `objs`).
#[must_use]
pub fn render_experiment(exp: &J, objs: &Objects, view: &View) -> String {
    let info = exp_info(exp, objs);
    let mut out = String::new();
    let icon = analysis_icon(&info.status);
    let _ = writeln!(out, "{:<17}{}", "Name:", info.name);
    let _ = writeln!(out, "{:<17}{}", "Namespace:", info.namespace);
    let _ = writeln!(
        out,
        "{:<17}{} {}",
        "Status:",
        view.paint(icon, icon),
        info.status
    );
    if !info.message.is_empty() {
        let _ = writeln!(out, "{:<17}{}", "Message:", info.message);
    }
    let mut images = Images::default();
    images.add_experiment(&info);
    images.print(&mut out, view);
    out.push('\n');
    let mut lines = vec![["NAME", "KIND", "STATUS", "AGE", "INFO"].map(str::to_string)];
    exp_lines(&mut lines, &info, "", "", view);
    out.push_str(&tabwrite(&lines));
    out
}

fn rs_lines(lines: &mut Vec<[String; 5]>, rs: &RsInfo, prefix: &str, sub: &str, view: &View) {
    let mut cols = Vec::new();
    let mut name = rs.name.clone();
    let mut tag = |on: bool, t: &str, name: &mut String| {
        if on {
            cols.push(view.paint(t, t));
            *name = view.paint(name, t);
        }
    };
    tag(rs.stable, "stable", &mut name);
    if rs.canary {
        tag(true, "canary", &mut name);
    } else if rs.active {
        tag(true, "active", &mut name);
    } else if rs.preview {
        tag(true, "preview", &mut name);
    }
    tag(rs.ping, "ping", &mut name);
    tag(rs.pong, "pong", &mut name);
    if !rs.scale_down_deadline.is_empty() {
        let delay = match timestamp(&rs.scale_down_deadline) {
            Some(t) if t < view.now => "passed".to_string(),
            Some(t) => human_duration(t - view.now),
            None => String::new(),
        };
        cols.push(format!("delay:{delay}"));
    }
    let icon = rs_icon(rs.status);
    lines.push([
        format!("{prefix}⧉ {name}"),
        "ReplicaSet".into(),
        format!("{} {}", view.paint(icon, icon), rs.status),
        view.age(rs.created),
        cols.join(","),
    ]);
    for (n, pod) in rs.pods.iter().enumerate() {
        let (p, _) = prefixes(n + 1 == rs.pods.len(), sub);
        let mut info = format!("ready:{}", pod.ready);
        if pod.restarts > 0 {
            let _ = write!(info, ",restarts:{}", pod.restarts);
        }
        let icon = pod_icon(&pod.status);
        lines.push([
            format!("{p}□ {}", pod.name),
            "Pod".into(),
            format!("{} {}", view.paint(icon, icon), pod.status),
            view.age(pod.created),
            info,
        ]);
    }
}

fn ar_lines(lines: &mut Vec<[String; 5]>, ar: &ArInfo, prefix: &str, sub: &str, view: &View) {
    let cols: Vec<String> = [ICON_OK, ICON_BAD, ICON_UNKNOWN, ICON_WARNING]
        .iter()
        .zip(ar.counts)
        .filter(|(_, c)| *c > 0)
        .map(|(icon, c)| format!("{} {c}", view.paint(icon, icon)))
        .collect();
    let icon = analysis_icon(&ar.status);
    lines.push([
        format!("{prefix}α {}", view.paint(&ar.name, &ar.status)),
        "AnalysisRun".into(),
        format!("{} {}", view.paint(icon, icon), ar.status),
        view.age(ar.created),
        cols.join(","),
    ]);
    for (n, (job, phase, started)) in ar.jobs.iter().enumerate() {
        let (p, _) = prefixes(n + 1 == ar.jobs.len(), sub);
        let icon = analysis_icon(phase);
        lines.push([
            format!("{p}⊞ {}", view.paint(job, phase)),
            "Job".into(),
            format!("{} {phase}", view.paint(icon, icon)),
            view.age(*started),
            String::new(),
        ]);
    }
}

fn prefixes(last: bool, sub: &str) -> (String, String) {
    if last {
        (format!("{sub}└──"), format!("{sub}   "))
    } else {
        (format!("{sub}├──"), format!("{sub}│  "))
    }
}

/// Display width of a cell: characters, not counting ANSI colour sequences.
fn width(cell: &str) -> usize {
    let mut n = 0;
    let mut esc = false;
    for c in cell.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Go's `tabwriter` with padding 2: every column but the last as wide as
/// its widest cell plus two.
#[must_use]
pub fn tabwrite<L: AsRef<[String]>>(lines: &[L]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for l in lines {
        let l = l.as_ref();
        for (n, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            if widths.len() <= n {
                widths.push(0);
            }
            widths[n] = widths[n].max(width(c) + 2);
        }
    }
    let mut out = String::new();
    for l in lines {
        let l = l.as_ref();
        for (n, c) in l.iter().enumerate() {
            out.push_str(c);
            if n + 1 < l.len() {
                out.push_str(&" ".repeat(widths[n] - width(c)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_apimachinery() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (240, "4m"),
            (3600, "60m"),
            (4 * 3600 - 60, "3h59m"),
            (7 * 86_400, "7d"),
            (3 * 86_400 + 3600, "3d1h"),
            (400 * 86_400, "400d"),
            (800 * 86_400, "2y70d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }
}
