//! `AnalysisRuns` (argoproj.io/v1alpha1) measured as Argo's analysis
//! controller measures them: each metric's provider queried every
//! `interval` up to `count` times after `initialDelay`, each value judged by
//! `successCondition` / `failureCondition` ([`expr`]), the metric and the
//! run assessed against `failureLimit`, `inconclusiveLimit` and
//! `consecutiveErrorLimit` ([`run`]), status written as Argo writes it
//! (`phase`, `message`, `metricResults[].measurements`, `runSummary`).
//! Providers ([`providers`]): `web`, `prometheus` (keel's own query API
//! in-process for `prometheus.keel-system.svc`, or any Prometheus) and
//! `job`. The Rollout controller creates runs and reads their phase.

pub mod expr;
pub mod providers;
pub mod run;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_api::resources::{self, Resource};
use keel_api::{ClientError, Loopback};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Clock;
use crate::informer::{self, Cache, Queue, Reconciler, key_of, split_key};
use crate::objects::meta_str;

pub use providers::set_local_prometheus;

/// Argo's `AnalysisPhase` (the empty string before the first reconcile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
    #[default]
    #[serde(rename = "", other)]
    Unset,
}

impl Phase {
    pub fn completed(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(Value::as_str).unwrap_or_default())
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One measurement of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<String>,
}

impl Measurement {
    /// A measurement that could not be taken.
    pub fn error(msg: impl Into<String>) -> Self {
        Measurement {
            phase: Phase::Error,
            message: msg.into(),
            ..Measurement::default()
        }
    }
}

/// `status.metricResults[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: Phase,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successful: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_error: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_success: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// `status.runSummary` / `status.dryRunSummary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successful: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error: i64,
}

impl Summary {
    fn add(&mut self, p: Phase) {
        match p {
            Phase::Error => self.error += 1,
            Phase::Failed => self.failed += 1,
            Phase::Inconclusive => self.inconclusive += 1,
            _ => self.successful += 1,
        }
    }
}

/// An `AnalysisRun`'s status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub metric_results: Vec<MetricResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub run_summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_summary: Option<Summary>,
}

impl RunStatus {
    pub fn result(&self, name: &str) -> Option<&MetricResult> {
        self.metric_results.iter().find(|r| r.name == name)
    }
}

/// A metric of `spec.metrics`, arguments substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub interval: Option<Duration>,
    pub initial_delay: Option<Duration>,
    pub count: Option<i64>,
    pub failure_limit: Option<i64>,
    pub inconclusive_limit: Option<i64>,
    pub consecutive_error_limit: Option<i64>,
    pub consecutive_success_limit: Option<i64>,
    pub success_condition: String,
    pub failure_condition: String,
    pub provider: Value,
}

impl Metric {
    /// Argo's `EffectiveCount`: no count and no interval is one
    /// measurement; an interval without count measures until terminated.
    pub fn effective_count(&self) -> Option<i64> {
        match self.count {
            None | Some(0) if self.interval.is_none() => Some(1),
            None | Some(0) => None,
            c => c,
        }
    }

    /// Reads one metric (after [`substitute`]).
    pub fn parse(v: &Value) -> Result<Metric, String> {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err("metric has no name".into());
        }
        let dur = |f: &str| -> Result<Option<Duration>, String> {
            match v.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => parse_duration(s)
                    .map(Some)
                    .ok_or_else(|| format!("metric '{name}': {f}: time: invalid duration \"{s}\"")),
                Some(other) => Err(format!("metric '{name}': {f}: not a duration: {other}")),
            }
        };
        let int = |f: &str| -> Result<Option<i64>, String> {
            match v.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("metric '{name}': {f}: not an integer: {n}")),
                Some(Value::String(s)) => s
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("metric '{name}': {f}: not an integer: \"{s}\"")),
                Some(other) => Err(format!("metric '{name}': {f}: not an integer: {other}")),
            }
        };
        let provider = v.get("provider").cloned().unwrap_or(Value::Null);
        let kinds = provider.as_object().map_or(0, serde_json::Map::len);
        if kinds != 1 {
            return Err(format!("metric '{name}' must specify exactly one provider"));
        }
        let m = Metric {
            interval: dur("interval")?,
            initial_delay: dur("initialDelay")?,
            count: int("count")?,
            failure_limit: int("failureLimit")?,
            inconclusive_limit: int("inconclusiveLimit")?,
            consecutive_error_limit: int("consecutiveErrorLimit")?,
            consecutive_success_limit: int("consecutiveSuccessLimit")?,
            success_condition: v["successCondition"].as_str().unwrap_or_default().into(),
            failure_condition: v["failureCondition"].as_str().unwrap_or_default().into(),
            provider,
            name,
        };
        if let (Some(c), Some(f)) = (m.count, m.failure_limit)
            && c > 0
            && c < f
        {
            return Err(format!(
                "metric '{}': count must be >= failureLimit",
                m.name
            ));
        }
        Ok(m)
    }
}

/// Go's `time.ParseDuration` ("1m30s", "500ms", "2h", "1.5s").
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * secs;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Replaces `{{args.NAME}}` in every string of `v` with the argument's
/// value; an argument without a value is an error (Argo: "failed to
/// resolve").
pub fn substitute(v: &Value, args: &BTreeMap<String, Option<String>>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, args)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, args))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, args)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_str(s: &str, args: &BTreeMap<String, Option<String>>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let tag = rest[i + 2..i + j].trim();
        match tag.strip_prefix("args.") {
            Some(name) => match args.get(name) {
                Some(Some(val)) => out.push_str(val),
                _ => return Err(format!("failed to resolve {{{{{tag}}}}}")),
            },
            // Other tags (Argo's `{{metric...}}` ones) stay as written.
            None => out.push_str(&rest[i..i + j + 2]),
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a run's spec says besides its metrics.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub metrics: Vec<Metric>,
    /// Per metric: a dry-run metric does not decide the run's phase.
    pub dry_run: Vec<bool>,
    /// Per metric: measurements kept.
    pub retention: Vec<usize>,
    pub terminate: bool,
    /// Secret values, masked in messages.
    pub secrets: Vec<String>,
}

/// Matches Argo's `GetDryRunMetrics` / `GetMeasurementRetentionMetrics`:
/// `*` is every metric, anything else a regular expression searched in the
/// name; a rule that matches no metric is an error.
fn rule_matches(rule: &str, metrics: &[Metric], what: &str) -> Result<Vec<bool>, String> {
    if rule == "*" {
        return Ok(vec![true; metrics.len()]);
    }
    let re = regex::Regex::new(rule).map_err(|e| format!("{what} metric {rule:?}: {e}"))?;
    let hits: Vec<bool> = metrics.iter().map(|m| re.is_match(&m.name)).collect();
    if !hits.contains(&true) {
        return Err(format!(
            "{what} metric rule '{rule}' doesn't match with any metric"
        ));
    }
    Ok(hits)
}

/// Reads a run's spec with resolved `args` (name → value; secrets given).
pub fn plan(spec: &Value, args: &BTreeMap<String, Option<String>>) -> Result<Plan, String> {
    let mut metrics = Vec::new();
    for m in spec["metrics"].as_array().into_iter().flatten() {
        let m =
            substitute(m, args).map_err(|e| format!("Unable to resolve metric arguments: {e}"))?;
        let m = Metric::parse(&m).map_err(|e| format!("Analysis spec invalid: {e}"))?;
        if metrics.iter().any(|x: &Metric| x.name == m.name) {
            return Err(format!(
                "Analysis spec invalid: metrics[{}]: duplicate name '{}'",
                metrics.len(),
                m.name
            ));
        }
        metrics.push(m);
    }
    if metrics.is_empty() {
        return Err("Analysis spec invalid: metrics must be non-empty".into());
    }
    let mut dry_run = vec![false; metrics.len()];
    for d in spec["dryRun"].as_array().into_iter().flatten() {
        let hits = rule_matches(
            d["metricName"].as_str().unwrap_or_default(),
            &metrics,
            "dryRun",
        )
        .map_err(|e| format!("Analysis spec invalid: {e}"))?;
        for (a, b) in dry_run.iter_mut().zip(hits) {
            *a |= b;
        }
    }
    let mut retention = vec![run::HISTORY_LIMIT; metrics.len()];
    for r in spec["measurementRetention"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = r["metricName"].as_str().unwrap_or_default();
        let hits = rule_matches(rule, &metrics, "measurementRetention")
            .map_err(|e| format!("Analysis spec invalid: {e}"))?;
        let limit = r["limit"]
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(run::HISTORY_LIMIT);
        for (a, b) in retention.iter_mut().zip(hits) {
            if b {
                *a = limit;
            }
        }
    }
    Ok(Plan {
        metrics,
        dry_run,
        retention,
        terminate: spec["terminate"].as_bool().unwrap_or(false),
        secrets: Vec::new(),
    })
}

/// After the due measurements were taken and [`run::record`]ed: assess,
/// trim history, and say when to look again.
pub fn finish(
    plan: &Plan,
    status: &mut RunStatus,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let (phase, message) = run::assess(&plan.metrics, &plan.dry_run, status, plan.terminate, now);
    if phase != status.phase {
        status.phase = phase;
        status.message = message;
        if phase.completed() && status.completed_at.is_none() {
            status.completed_at = Some(run::stamp(now));
        }
    }
    run::retain(status, &plan.metrics, &plan.retention);
    if status.phase.completed() {
        return None;
    }
    run::next_time(&plan.metrics, status, now)
}

fn analysisruns() -> Option<&'static Resource> {
    resources::find("argoproj.io", "v1alpha1", "analysisruns")
}

fn jobs() -> &'static Resource {
    resources::find("batch", "v1", "jobs").expect("built-in resource")
}

fn secrets() -> &'static Resource {
    resources::find("", "v1", "secrets").expect("built-in resource")
}

/// The controller.
pub struct AnalysisController {
    runs: &'static Resource,
    clock: Arc<dyn Clock>,
    providers: providers::Providers,
}

/// Waits for the `AnalysisRun` CRD (created at bootstrap) and runs the
/// controller until the runtime stops.
pub async fn spawn(api: Loopback, clock: Arc<dyn Clock>) {
    let runs = loop {
        if let Some(r) = analysisruns() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c = AnalysisController {
        runs,
        clock,
        providers: providers::Providers::new(),
    };
    informer::run(api, c).await;
}

/// A secret's key, base64-decoded.
async fn secret_value(api: &Loopback, ns: &str, name: &str, key: &str) -> Result<String, String> {
    use base64::Engine as _;
    let s = api
        .get(secrets(), Some(ns), name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("secret \"{name}\" not found"))?;
    let enc = s["data"][key]
        .as_str()
        .ok_or_else(|| format!("key '{key}' not found in secret '{name}'"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(enc)
        .map_err(|e| format!("secret '{name}' key '{key}': {e}"))?;
    String::from_utf8(raw).map_err(|_| format!("secret '{name}' key '{key}' is not UTF-8"))
}

/// `spec.args` resolved: literal values, secret keys, the run's own fields.
async fn resolve_args(
    api: &Loopback,
    run: &Value,
) -> Result<(BTreeMap<String, Option<String>>, Vec<String>), String> {
    let ns = meta_str(run, "namespace");
    let mut out = BTreeMap::new();
    let mut secret_values = Vec::new();
    for a in run["spec"]["args"].as_array().into_iter().flatten() {
        let name = a["name"].as_str().unwrap_or_default().to_string();
        let value = if let Some(v) = a["value"].as_str() {
            Some(v.to_string())
        } else if let Some(s) = a.pointer("/valueFrom/secretKeyRef") {
            let v = secret_value(
                api,
                ns,
                s["name"].as_str().unwrap_or_default(),
                s["key"].as_str().unwrap_or_default(),
            )
            .await?;
            secret_values.push(v.clone());
            Some(v)
        } else if let Some(p) = a
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            let ptr = format!("/{}", p.trim_start_matches('.').replace('.', "/"));
            run.pointer(&ptr).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        } else {
            None
        };
        out.insert(name, value);
    }
    Ok((out, secret_values))
}

/// Who a run is, for providers.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The run's owner reference (jobs are owned by it).
    pub owner: Value,
}

impl Reconciler for AnalysisController {
    const NAME: &'static str = "analysis";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![self.runs, jobs()]
    }

    fn keys_for(&self, _: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, self.runs) {
            queue.add(key_of(obj));
        } else if let Some(o) = crate::objects::controller_ref(obj)
            && o["kind"] == "AnalysisRun"
        {
            queue.add(format!(
                "{}/{}",
                meta_str(obj, "namespace"),
                o["name"].as_str().unwrap_or_default()
            ));
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(obj) = cache.get(self.runs, ns, name).cloned() else {
            return Ok(None);
        };
        let mut status: RunStatus =
            serde_json::from_value(obj["status"].clone()).unwrap_or_default();
        if status.phase.completed() || crate::objects::is_deleting(&obj) {
            return Ok(None);
        }
        let now = self.clock.now();
        let resolved = match resolve_args(&cache.api, &obj).await {
            Ok((args, secrets)) => plan(&obj["spec"], &args).map(|mut p| {
                p.secrets = secrets;
                p
            }),
            Err(e) => Err(format!("Unable to resolve metric arguments: {e}")),
        };
        let next = match resolved {
            Err(message) => {
                status.phase = Phase::Error;
                status.message = message;
                None
            }
            Ok(plan) => {
                let who = RunRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    uid: meta_str(&obj, "uid").to_string(),
                    owner: crate::objects::controller_of(self.runs, &obj),
                };
                let stopping = run::terminating(plan.terminate, &status);
                for t in run::tasks(&plan.metrics, &status, plan.terminate, now) {
                    let metric = &plan.metrics[t.metric];
                    let taken = status.result(&metric.name).map_or(0, |r| r.count + r.error);
                    let resumed = t.incomplete.is_some();
                    let mut m = self
                        .providers
                        .measure(cache, &who, metric, taken, t.incomplete, stopping)
                        .await;
                    if m.started_at.is_none() {
                        m.started_at = Some(run::stamp(now));
                    }
                    for s in plan.secrets.iter().filter(|s| !s.is_empty()) {
                        m.message = m.message.replace(s.as_str(), "*****");
                    }
                    let done = self.clock.now();
                    run::record(
                        &mut status,
                        metric,
                        plan.dry_run[t.metric],
                        resumed,
                        m,
                        done,
                    );
                }
                let next = finish(&plan, &mut status, self.clock.now());
                // In-flight measurements (jobs) are looked at again soon even
                // when no watch event arrives.
                let in_flight = status
                    .metric_results
                    .iter()
                    .any(|r| r.measurements.last().is_some_and(|m| !m.phase.completed()));
                let now = self.clock.now();
                let wait = next
                    .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO));
                match (wait, in_flight) {
                    (Some(w), true) => Some(w.min(Duration::from_secs(2))),
                    (None, true) => Some(Duration::from_secs(2)),
                    (w, false) => w,
                }
            }
        };
        let status = serde_json::to_value(&status).unwrap_or(Value::Null);
        if obj["status"] != status {
            let written = cache
                .modify(self.runs, ns, name, None, |cur| {
                    let mut v = cur.clone();
                    v["status"] = status.clone();
                    (v != *cur).then_some(v)
                })
                .await;
            match written {
                Err(e) if e.is_not_found() => return Ok(None),
                other => {
                    other?;
                }
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
