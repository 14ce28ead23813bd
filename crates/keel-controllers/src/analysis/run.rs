//! One reconcile of an `AnalysisRun`, free of I/O: which measurements are
//! due ([`tasks`]), how a finished measurement updates its metric's counts
//! ([`record`]), how metrics and the run are assessed ([`assess`]), how
//! many measurements are kept ([`retain`]) and when to look again
//! ([`next_time`]); Argo's `analysis/analysis.go` as read, on keel's types.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

use super::{Measurement, Metric, MetricResult, Phase, RunStatus, Summary};

/// How long after an Error measurement the next is taken (Argo's
/// `DefaultErrorRetryInterval`).
pub const ERROR_RETRY: Duration = Duration::from_secs(10);
/// Measurements kept per metric unless `measurementRetention` says more.
pub const HISTORY_LIMIT: usize = 10;
/// Argo's `DefaultConsecutiveErrorLimit`.
pub const CONSECUTIVE_ERROR_LIMIT: i64 = 4;

/// A measurement to take now: `incomplete` is an in-flight one to resume
/// (or terminate).
#[derive(Debug, Clone)]
pub struct Task {
    pub metric: usize,
    pub incomplete: Option<Measurement>,
}

pub(crate) fn ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Whether the run stops taking measurements: `spec.terminate`, or a
/// metric (not a dry-run one) already Failed, Error or Inconclusive.
pub fn terminating(terminate: bool, status: &RunStatus) -> bool {
    terminate
        || status.metric_results.iter().any(|r| {
            !r.dry_run && matches!(r.phase, Phase::Failed | Phase::Error | Phase::Inconclusive)
        })
}

/// The measurements due at `now` (Argo's `generateMetricTasks`).
pub fn tasks(metrics: &[Metric], status: &RunStatus, terminate: bool, now: Timestamp) -> Vec<Task> {
    let stopping = terminating(terminate, status);
    let mut out = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let result = status.result(&m.name);
        if result.is_some_and(|r| r.phase.completed()) {
            continue;
        }
        let last = result.and_then(|r| r.measurements.last());
        if let Some(l) = last.filter(|l| l.finished_at.is_none()) {
            let wait = ts(l.resume_at.as_deref()).is_some_and(|r| r > now);
            if stopping || !wait {
                out.push(Task {
                    metric: i,
                    incomplete: Some(l.clone()),
                });
            }
            continue;
        }
        if stopping {
            continue;
        }
        let Some(last) = last else {
            if let Some(delay) = m.initial_delay {
                match ts(status.started_at.as_deref()) {
                    Some(start) if after(start, delay) <= now => {}
                    _ => continue,
                }
            }
            out.push(Task {
                metric: i,
                incomplete: None,
            });
            continue;
        };
        let count = result.map_or(0, |r| r.count);
        if m.effective_count().is_some_and(|c| count >= c) {
            continue;
        }
        let interval = if last.phase == Phase::Error {
            ERROR_RETRY
        } else {
            m.interval.unwrap_or(ERROR_RETRY)
        };
        let finished = ts(last.finished_at.as_deref()).unwrap_or(now);
        if now > after(finished, interval) || now == after(finished, interval) {
            out.push(Task {
                metric: i,
                incomplete: None,
            });
        }
    }
    out
}

/// Puts `m` (new, or the completion of the in-flight last one) into the
/// metric's result and counts it when it is complete.
pub fn record(
    status: &mut RunStatus,
    metric: &Metric,
    dry_run: bool,
    resumed: bool,
    mut m: Measurement,
    now: Timestamp,
) {
    let idx = if let Some(i) = status
        .metric_results
        .iter()
        .position(|r| r.name == metric.name)
    {
        i
    } else {
        status.metric_results.push(MetricResult {
            name: metric.name.clone(),
            phase: Phase::Running,
            dry_run,
            ..MetricResult::default()
        });
        status.metric_results.len() - 1
    };
    let r = &mut status.metric_results[idx];
    if m.phase.completed() {
        if m.finished_at.is_none() {
            m.finished_at = Some(stamp(now));
        }
        match m.phase {
            Phase::Successful => {
                r.successful += 1;
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success += 1;
            }
            Phase::Failed | Phase::Inconclusive => {
                if m.phase == Phase::Failed {
                    r.failed += 1;
                } else {
                    r.inconclusive += 1;
                }
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success = 0;
            }
            _ => {
                r.error += 1;
                r.consecutive_error += 1;
                r.consecutive_success = 0;
            }
        }
    }
    if resumed && !r.measurements.is_empty() {
        let last = r.measurements.len() - 1;
        r.measurements[last] = m;
    } else {
        r.measurements.push(m);
    }
}

/// Argo's `metav1.Time` form.
pub fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Failed, Inconclusive or Error by the metric's limits, with why.
pub fn over_limit(m: &Metric, r: &MetricResult) -> Option<(Phase, String)> {
    let mut out = None;
    let failure_limit = m.failure_limit.unwrap_or(0);
    if failure_limit >= 0 && r.failed > failure_limit {
        out = Some((
            Phase::Failed,
            format!("failed ({}) > failureLimit ({failure_limit})", r.failed),
        ));
    }
    let inconclusive_limit = m.inconclusive_limit.unwrap_or(0);
    if r.inconclusive > inconclusive_limit {
        out = Some((
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
                r.inconclusive
            ),
        ));
    }
    let error_limit = m.consecutive_error_limit.unwrap_or(CONSECUTIVE_ERROR_LIMIT);
    if r.consecutive_error > error_limit {
        out = Some((
            Phase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({error_limit})",
                r.consecutive_error
            ),
        ));
    }
    out
}

/// A metric's phase from its measurements and limits (Argo's
/// `assessMetricStatus`).
pub fn metric_phase(m: &Metric, r: &MetricResult, stopping: bool) -> Phase {
    if r.phase.completed() {
        return r.phase;
    }
    let Some(last) = r.measurements.last() else {
        return if stopping {
            Phase::Successful
        } else {
            Phase::Pending
        };
    };
    if !last.phase.completed() {
        return Phase::Running;
    }
    if let Some((p, _)) = over_limit(m, r) {
        return p;
    }
    let success_limit = m.consecutive_success_limit.filter(|l| *l > 0);
    if success_limit.is_some_and(|l| r.consecutive_success >= l) {
        return Phase::Successful;
    }
    if m.effective_count().is_some_and(|c| r.count >= c) {
        let failure_applies = m.failure_limit.is_none_or(|l| l >= 0);
        return match (failure_applies, success_limit.is_some()) {
            (true, true) => Phase::Inconclusive,
            (false, true) => Phase::Failed,
            _ => Phase::Successful,
        };
    }
    if stopping {
        Phase::Successful
    } else {
        Phase::Running
    }
}

/// Best to worst, as Argo orders completed phases.
fn rank(p: Phase) -> u8 {
    match p {
        Phase::Successful | Phase::Unset => 0,
        Phase::Running => 1,
        Phase::Pending => 2,
        Phase::Inconclusive => 3,
        Phase::Error => 4,
        Phase::Failed => 5,
    }
}

/// Updates each metric's phase, the run summaries, and returns the run's
/// phase and message (Argo's `assessRunStatus`).
pub fn assess(
    metrics: &[Metric],
    dry: &[bool],
    status: &mut RunStatus,
    terminate: bool,
    now: Timestamp,
) -> (Phase, String) {
    let stopping = terminating(terminate, status);
    if status.started_at.is_none() {
        status.started_at = Some(stamp(now));
    }
    let mut worst: Option<Phase> = None;
    let mut message = if terminate {
        "Run Terminated".to_string()
    } else {
        String::new()
    };
    let mut all_done = true;
    let (mut summary, mut dry_summary) = (Summary::default(), Summary::default());
    for (i, m) in metrics.iter().enumerate() {
        let is_dry = dry.get(i).copied().unwrap_or(false);
        if is_dry {
            dry_summary.count += 1;
        } else {
            summary.count += 1;
        }
        let Some(r) = status.metric_results.iter_mut().find(|r| r.name == m.name) else {
            all_done = false;
            continue;
        };
        let phase = metric_phase(m, r, stopping);
        if phase != r.phase {
            if let Some(last) = r.measurements.last() {
                r.message.clone_from(&last.message);
            }
            r.phase = phase;
        }
        if !phase.completed() {
            all_done = false;
            continue;
        }
        let limit = over_limit(m, r);
        let tally = limit.as_ref().map_or(Phase::Successful, |l| l.0);
        if is_dry {
            worst.get_or_insert(Phase::Successful);
            if let Some((p, why)) = &limit {
                r.message = format!("Metric assessed {p} due to {why}");
            }
            dry_summary.add(tally);
        } else {
            if worst.is_none_or(|w| rank(phase) > rank(w)) {
                worst = Some(phase);
                if let Some((_, why)) = &limit {
                    message = format!("Metric \"{}\" assessed {phase} due to {why}", m.name);
                    if !r.message.is_empty() {
                        let _ = write!(message, ": \"Error Message: {}\"", r.message);
                    }
                }
            }
            summary.add(tally);
        }
    }
    status.run_summary = summary;
    status.dry_run_summary = Some(dry_summary);
    let message = message.trim().to_string();
    if stopping {
        return (worst.unwrap_or(Phase::Successful), message);
    }
    match worst {
        Some(w) if all_done => (w, message),
        _ => (Phase::Running, String::new()),
    }
}

/// Drops all but the newest `limit` measurements of each metric
/// (`limits[i]` for metric i).
pub fn retain(status: &mut RunStatus, metrics: &[Metric], limits: &[usize]) {
    for (i, m) in metrics.iter().enumerate() {
        let limit = limits.get(i).copied().unwrap_or(HISTORY_LIMIT);
        if let Some(r) = status.metric_results.iter_mut().find(|r| r.name == m.name) {
            let n = r.measurements.len();
            if n > limit {
                r.measurements.drain(..n - limit);
            }
        }
    }
}

/// When the run needs looking at again (Argo's `calculateNextReconcileTime`).
pub fn next_time(metrics: &[Metric], status: &RunStatus, now: Timestamp) -> Option<Timestamp> {
    let mut next: Option<Timestamp> = None;
    let mut earliest = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
    for m in metrics {
        let r = status.result(&m.name);
        if r.is_some_and(|r| r.phase.completed()) {
            continue;
        }
        let Some(last) = r.and_then(|r| r.measurements.last()) else {
            if let Some(d) = m.initial_delay {
                earliest(after(ts(status.started_at.as_deref()).unwrap_or(now), d));
            }
            continue;
        };
        if last.finished_at.is_none() {
            if let Some(t) = ts(last.resume_at.as_deref()) {
                earliest(t);
            }
            continue;
        }
        if m.effective_count()
            .is_some_and(|c| r.map_or(0, |r| r.count) >= c)
        {
            continue;
        }
        let interval = if last.phase == Phase::Error {
            ERROR_RETRY
        } else if let Some(i) = m.interval {
            i
        } else {
            continue;
        };
        earliest(after(
            ts(last.finished_at.as_deref()).unwrap_or(now),
            interval,
        ));
    }
    next
}
