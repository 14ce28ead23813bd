//! The replica calculator: Kubernetes' `replica_calculator.go` rules, as
//! pure functions of pods, readings and the clock (seconds since the epoch),
//! so every case of its unit tests is a row of data here.
//!
//! - A pod being deleted or `Failed` is ignored; a `Pending` one counts as
//!   unready; one with no reading is missing.
//! - For CPU, a pod is also unready while within the CPU initialization
//!   period of its start when it is not Ready or its reading predates its
//!   readiness by less than the reading's window; after that period, when it
//!   is not Ready and has never been Ready since the readiness delay.
//! - The ratio of usage to target decides; within the tolerance nothing
//!   changes. With missing pods, a scale-down counts them at 100% of their
//!   request (or the target, if higher) and a scale-up at 0%; on a scale-up
//!   unready pods count at 0%. If that flips the direction or lands within
//!   tolerance, the replica count stays.

use std::collections::{BTreeMap, BTreeSet};

/// One pod as the calculator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (status is True, `lastTransitionTime`).
    pub ready: Option<(bool, f64)>,
    pub start_time: Option<f64>,
    /// Per container: name and its request of the resource (milli-units).
    pub requests: Vec<(String, Option<i64>)>,
}

/// One pod's reading (milli-units), when it was taken and over what window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub value: i64,
    pub timestamp: f64,
    pub window: f64,
}

pub type Readings = BTreeMap<String, Reading>;

/// The controller's settings (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: f64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tolerance: 0.1,
            cpu_initialization_period: 300.0,
            initial_readiness_delay: 30.0,
        }
    }
}

/// A proposal: replicas, the utilization (percent of request; 0 for plain
/// metrics) and the raw average usage (milli-units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    pub utilization: i32,
    pub raw: i64,
}

#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(pods: &[Pod], readings: &Readings, cpu: bool, s: &Settings, now: f64) -> Groups {
    let mut g = Groups::default();
    for p in pods {
        if p.deleting || p.phase == "Failed" {
            g.ignored.insert(p.name.clone());
            continue;
        }
        if p.phase == "Pending" {
            g.unready.insert(p.name.clone());
            continue;
        }
        let Some(r) = readings.get(&p.name) else {
            g.missing.insert(p.name.clone());
            continue;
        };
        if cpu {
            let unready = match (p.ready, p.start_time) {
                (Some((ready, changed)), Some(start)) => {
                    if start + s.cpu_initialization_period > now {
                        // Still initializing: a reading from before the pod
                        // became Ready (by its window) reflects start-up.
                        !ready || r.timestamp < changed + r.window
                    } else {
                        // Never Ready since the readiness delay.
                        !ready && start + s.initial_readiness_delay > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(p.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

fn remove(readings: &mut Readings, names: &BTreeSet<String>) {
    for n in names {
        readings.remove(n);
    }
}

/// Each pod's request of the resource (its containers', or `container`'s).
fn requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for p in pods {
        let mut sum = 0;
        for (name, req) in &p.requests {
            if container.is_none_or(|c| c == name) {
                match req {
                    Some(r) => sum += r,
                    None => {
                        return Err(format!(
                            "missing request for {resource} in container {name} of Pod {}",
                            p.name
                        ));
                    }
                }
            }
        }
        out.insert(p.name.clone(), sum);
    }
    Ok(out)
}

/// (usage / target ratio, utilization %, raw average) over the readings of
/// pods with a known request.
fn utilization_ratio(
    readings: &Readings,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, r) in readings {
        let Some(req) = requests.get(name) else {
            continue;
        };
        used += r.value;
        requested += req;
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

#[allow(clippy::cast_precision_loss)]
fn plain_ratio(readings: &Readings, target: i64) -> (f64, i64) {
    let total: i64 = readings.values().map(|r| r.value).sum();
    let n = i64::try_from(readings.len()).unwrap_or(1).max(1);
    let avg = total / n;
    (avg as f64 / target as f64, avg)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn ceil_times(ratio: f64, n: usize) -> i32 {
    (ratio * n as f64).ceil() as i32
}

fn no_readings() -> String {
    "did not receive metrics for targeted pods (pods might be unready)".into()
}

/// Replicas for a `Utilization` target of `resource` (percent of request).
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target: i32,
    resource: &str,
    container: Option<&str>,
    pods: &[Pod],
    readings: &Readings,
    s: &Settings,
    now: f64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut readings = readings.clone();
    let g = group_pods(pods, &readings, resource == "cpu", s, now);
    remove(&mut readings, &g.ignored);
    remove(&mut readings, &g.unready);
    if readings.is_empty() {
        return Err(no_readings());
    }
    let requests = requests(pods, resource, container)?;
    let (ratio, utilization, raw) = utilization_ratio(&readings, &requests, target)?;
    let keep = Proposal {
        replicas: current,
        utilization,
        raw,
    };
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= s.tolerance {
            return Ok(keep);
        }
        return Ok(Proposal {
            replicas: ceil_times(ratio, g.ready),
            ..keep
        });
    }
    if !g.missing.is_empty() {
        let fallback = i64::from(target.max(100));
        for name in &g.missing {
            let value = if ratio < 1.0 {
                requests.get(name).copied().unwrap_or(0) * fallback / 100
            } else {
                0
            };
            readings.insert(name.clone(), filler(value));
        }
    }
    if up_with_unready {
        for name in &g.unready {
            readings.insert(name.clone(), filler(0));
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&readings, &requests, target)?;
    Ok(Proposal {
        replicas: settle(current, ratio, new_ratio, readings.len(), s),
        ..keep
    })
}

fn filler(value: i64) -> Reading {
    Reading {
        value,
        timestamp: 0.0,
        window: 0.0,
    }
}

/// The count after filling in missing and unready pods: unchanged when the
/// new ratio is within tolerance or points the other way.
fn settle(current: i32, ratio: f64, new_ratio: f64, n: usize, s: &Settings) -> i32 {
    if (1.0 - new_ratio).abs() <= s.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return current;
    }
    let replicas = ceil_times(new_ratio, n);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return current;
    }
    replicas
}

/// Replicas for an `AverageValue` target per pod (a resource's raw value or
/// a Pods metric), in milli-units.
pub fn plain_replicas(
    current: i32,
    target: i64,
    cpu: bool,
    pods: &[Pod],
    readings: &Readings,
    s: &Settings,
    now: f64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut readings = readings.clone();
    let g = group_pods(pods, &readings, cpu, s, now);
    remove(&mut readings, &g.ignored);
    remove(&mut readings, &g.unready);
    if readings.is_empty() {
        return Err(no_readings());
    }
    let (ratio, avg) = plain_ratio(&readings, target);
    let keep = Proposal {
        replicas: current,
        utilization: 0,
        raw: avg,
    };
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= s.tolerance {
            return Ok(keep);
        }
        return Ok(Proposal {
            replicas: ceil_times(ratio, g.ready),
            ..keep
        });
    }
    for name in &g.missing {
        readings.insert(name.clone(), filler(if ratio < 1.0 { target } else { 0 }));
    }
    if up_with_unready {
        for name in &g.unready {
            readings.insert(name.clone(), filler(0));
        }
    }
    let (new_ratio, _) = plain_ratio(&readings, target);
    Ok(Proposal {
        replicas: settle(current, ratio, new_ratio, readings.len(), s),
        ..keep
    })
}

/// Replicas for an Object metric's `Value` target: the ratio times the
/// Ready pods (or the ratio itself when scaled to zero).
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
pub fn object_replicas(
    current: i32,
    usage: i64,
    target: i64,
    ready_pods: usize,
    s: &Settings,
) -> i32 {
    let ratio = usage as f64 / target as f64;
    if current == 0 {
        return ratio.ceil() as i32;
    }
    if (1.0 - ratio).abs() <= s.tolerance {
        return current;
    }
    ceil_times(ratio, ready_pods)
}

/// Replicas for an Object metric's `AverageValue` target: the usage over
/// the target per pod, against the target's current replica count; also
/// the average per pod.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
pub fn object_per_pod_replicas(
    status_replicas: i32,
    usage: i64,
    target_avg: i64,
    s: &Settings,
) -> (i32, i64) {
    let ratio = usage as f64 / (target_avg as f64 * f64::from(status_replicas));
    let replicas = if (1.0 - ratio).abs() > s.tolerance {
        (usage as f64 / target_avg as f64).ceil() as i32
    } else {
        status_replicas
    };
    let avg = (usage as f64 / f64::from(status_replicas.max(1))).ceil() as i64;
    (replicas, avg)
}

/// Pods Ready now (for Object metrics).
pub fn ready_count(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| p.phase == "Running" && p.ready.is_some_and(|(r, _)| r))
        .count()
}

#[cfg(test)]
#[path = "calc_tests.rs"]
mod tests;
