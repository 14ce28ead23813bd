//! Argo Rollouts' canary replica arithmetic (utils/replicaset/canary.go):
//! how many pods the canary and stable `ReplicaSets` get at the current step,
//! for a basic canary (replicas approximate the weight, within maxSurge and
//! maxUnavailable) and for a traffic-routed one (the router splits traffic,
//! so the canary gets `ceil(weight × replicas)` and stable stays full unless
//! `dynamicStableScale`). Pure functions over the Rollout's JSON so the
//! controller and the conformance table share one implementation.

use serde_json::Value;

/// What the arithmetic needs of a `ReplicaSet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsCount {
    /// Its `rollouts-pod-template-hash` (Argo compares sets by it).
    pub hash: String,
    pub spec: i64,
    pub available: i64,
}

/// Traffic weights the router currently applies (status.canary.weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub canary: i64,
    pub stable: i64,
}

impl Weights {
    /// The weights a Rollout status records, if any.
    pub fn of(status: &Value) -> Option<Self> {
        let w = &status["canary"]["weights"];
        Some(Self {
            canary: w["canary"]["weight"].as_i64()?,
            stable: w["stable"]["weight"].as_i64()?,
        })
    }
}

fn canary(ro: &Value) -> &Value {
    &ro["spec"]["strategy"]["canary"]
}

/// `spec.replicas`, 1 when unset.
pub fn spec_replicas(ro: &Value) -> i64 {
    ro["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// `trafficRouting` is set: a router splits the traffic.
pub fn traffic_routed(ro: &Value) -> bool {
    canary(ro)["trafficRouting"].is_object()
}

/// `trafficRouting.maxTrafficWeight`, 100 when unset.
pub fn max_weight(ro: &Value) -> i64 {
    canary(ro)["trafficRouting"]["maxTrafficWeight"]
        .as_i64()
        .unwrap_or(100)
}

/// An int-or-percent scaled against `total` (Kubernetes' intstr rules:
/// percentages round up or down as asked); `None` when malformed.
pub fn scaled(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%').unwrap_or(s).parse().ok()?;
            let x = pct * total;
            Some(if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            })
        }
        _ => None,
    }
}

/// maxSurge and maxUnavailable resolved against `spec.replicas` (Argo's
/// defaults are 25% each; when both resolve to 0, one may be unavailable).
pub fn surge_and_unavailable(ro: &Value) -> (i64, i64) {
    let replicas = spec_replicas(ro);
    let c = canary(ro);
    let default = Value::String("25%".into());
    let surge_v = if c["maxSurge"].is_null() {
        &default
    } else {
        &c["maxSurge"]
    };
    let unav_v = if c["maxUnavailable"].is_null() {
        &default
    } else {
        &c["maxUnavailable"]
    };
    let surge = scaled(surge_v, replicas, true).unwrap_or(0);
    let mut unavailable = scaled(unav_v, replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn max_surge(ro: &Value) -> i64 {
    if canary(ro).is_null() {
        return 0;
    }
    surge_and_unavailable(ro).0
}

fn max_unavailable(ro: &Value) -> i64 {
    let replicas = spec_replicas(ro);
    if replicas == 0 {
        return 0;
    }
    surge_and_unavailable(ro).1.min(replicas)
}

fn status_str<'a>(ro: &'a Value, field: &str) -> &'a str {
    ro["status"][field].as_str().unwrap_or("")
}

fn aborted(ro: &Value) -> bool {
    ro["status"]["abort"].as_bool().unwrap_or(false)
}

/// The current step index (0 when unset).
pub fn step_index(ro: &Value) -> i64 {
    ro["status"]["currentStepIndex"].as_i64().unwrap_or(0)
}

fn steps(ro: &Value) -> &[Value] {
    canary(ro)["steps"].as_array().map_or(&[], Vec::as_slice)
}

/// The steps up to and including the current one, latest first; empty when
/// there are no steps or all have run.
fn steps_so_far(ro: &Value) -> &[Value] {
    let s = steps(ro);
    let i = usize::try_from(step_index(ro)).unwrap_or(0);
    if i >= s.len() { &[] } else { &s[..=i] }
}

/// The abort scale-down delay in seconds (`None`: never scale the canary
/// down on abort) and whether it was set explicitly.
pub fn abort_scale_down_delay(ro: &Value) -> (Option<i64>, bool) {
    let strategy = &ro["spec"]["strategy"];
    let set = if strategy["blueGreen"].is_object() {
        &strategy["blueGreen"]["abortScaleDownDelaySeconds"]
    } else if traffic_routed(ro) {
        &canary(ro)["abortScaleDownDelaySeconds"]
    } else {
        // A basic canary scales down at once.
        return (Some(0), false);
    };
    match set.as_i64() {
        Some(0) => (None, true),
        Some(n) => (Some(n), true),
        None => (Some(30), false),
    }
}

/// The `setCanaryScale` in force, if any (traffic routing only; ignored on
/// abort unless the canary is kept, and after `matchTrafficWeight`).
pub fn set_canary_scale(ro: &Value) -> Option<&Value> {
    if !traffic_routed(ro) {
        return None;
    }
    if aborted(ro) && abort_scale_down_delay(ro).0.is_some() {
        return None;
    }
    let scs = steps_so_far(ro)
        .iter()
        .rev()
        .find_map(|s| s.get("setCanaryScale").filter(|v| v.is_object()))?;
    if scs["matchTrafficWeight"].as_bool() == Some(true) {
        return None;
    }
    Some(scs)
}

/// The weight of the latest `setWeight` at or before the current step
/// (0 on abort or before any; the maximum once every step has run).
pub fn current_set_weight(ro: &Value) -> i64 {
    if aborted(ro) {
        return 0;
    }
    if steps_so_far(ro).is_empty() {
        return max_weight(ro);
    }
    steps_so_far(ro)
        .iter()
        .rev()
        .find_map(|s| s["setWeight"].as_i64())
        .unwrap_or(0)
}

/// Pods for `weight` of `replicas`, rounded up.
pub fn trafficweight_to_replicas(replicas: i64, weight: i64, max_weight: i64) -> i64 {
    // ceil(weight × replicas / max), as Argo's float ceiling.
    (weight * replicas + max_weight - 1).div_euclid(max_weight)
}

/// Argo's `GetDesiredCanaryWeight`: the current setWeight, or on an
/// aborted dynamic-stable-scale canary the next setWeight down that the
/// canary's pods can shrink to.
pub fn desired_canary_weight(ro: &Value, new: Option<&RsCount>, stable: Option<&RsCount>) -> i64 {
    let dynamic = canary(ro)["dynamicStableScale"].as_bool() == Some(true);
    if let (true, true, Some(new), Some(stable)) = (aborted(ro), dynamic, new, stable) {
        // Dynamic stable scale: step the canary down through the setWeights
        // in reverse, so stable never has to surge to 100% at once.
        let max = max_weight(ro);
        let replicas = spec_replicas(ro);
        let expected = replicas - stable.available;
        let explicit = matches!(abort_scale_down_delay(ro), (Some(_), true));
        let canary_replicas = if explicit {
            expected
        } else {
            expected.max(new.available)
        };
        return steps(ro)
            .iter()
            .rev()
            .filter_map(|s| s["setWeight"].as_i64())
            .find(|w| trafficweight_to_replicas(replicas, *w, max) < canary_replicas)
            .unwrap_or(0);
    }
    current_set_weight(ro)
}

/// Either an explicit canary replica count (setCanaryScale.replicas) or
/// the weight the canary's replicas follow.
pub fn canary_replicas_or_weight(
    ro: &Value,
    new: Option<&RsCount>,
    stable: Option<&RsCount>,
) -> (Option<i64>, i64) {
    let stable_rs = status_str(ro, "stableRS");
    if ro["status"]["promoteFull"].as_bool() == Some(true)
        || stable_rs.is_empty()
        || status_str(ro, "currentPodHash") == stable_rs
    {
        return (None, max_weight(ro));
    }
    if let Some(scs) = set_canary_scale(ro) {
        if let Some(r) = scs["replicas"].as_i64() {
            return (Some(r), 0);
        }
        if let Some(w) = scs["weight"].as_i64() {
            return (None, w);
        }
    }
    (None, desired_canary_weight(ro, new, stable))
}

fn tied(weight: i64, max_weight: i64, total: i64) -> bool {
    // The fractional part of total×weight/max is exactly one half.
    (2 * total * weight) % (2 * max_weight) == max_weight
}

fn weight_delta(weight: i64, max_weight: i64, canary: i64, total: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // replica counts and weights are small
    let actual = (canary * max_weight) as f64 / total as f64;
    #[allow(clippy::cast_precision_loss)]
    (actual - weight as f64).abs()
}

/// Canary and stable counts approximating `weight` of `replicas`: they sum
/// to `replicas` or, when surge is allowed and it is closer, `replicas + 1`;
/// a weight strictly between 0 and max never leaves either side at 0 when
/// two or more pods are possible. Ties round the canary up.
pub fn approximate_weighted(
    replicas: i64,
    weight: i64,
    max_weight: i64,
    max_surge: i64,
) -> (i64, i64) {
    if replicas == 0 {
        return (0, 0);
    }
    let ceil = (replicas * weight + max_weight - 1).div_euclid(max_weight);
    let floor = (replicas * weight).div_euclid(max_weight);
    let zero_allowed = weight == max_weight || weight == 0 || (replicas == 1 && max_surge == 0);
    let mut options = Vec::new();
    if ceil < replicas || zero_allowed {
        options.push((ceil, replicas));
    }
    if !tied(weight, max_weight, replicas) && (floor != 0 || zero_allowed) {
        options.push((floor, replicas));
    }
    if max_surge > 0 {
        options.push((ceil, replicas + 1));
        if !tied(weight, max_weight, replicas + 1) && (floor != 0 || zero_allowed) {
            options.push((floor, replicas + 1));
        }
    }
    let Some(&first) = options.first() else {
        return (0, replicas);
    };
    let mut best = first;
    let mut best_delta = weight_delta(weight, max_weight, best.0, best.1);
    for &o in &options[1..] {
        let d = weight_delta(weight, max_weight, o.0, o.1);
        if d < best_delta {
            best = o;
            best_delta = d;
        }
    }
    (best.0, best.1 - best.0)
}

fn for_scale_down(rs: Option<&RsCount>, ignore_availability: bool) -> i64 {
    match rs {
        None => 0,
        Some(rs) if rs.spec < rs.available || ignore_availability => rs.spec,
        Some(rs) => rs.available,
    }
}

fn scale_down_count(drain: Option<&RsCount>, desired: i64, count: i64, current: i64) -> i64 {
    match drain {
        Some(rs) if rs.spec > desired => desired.max(rs.spec - count),
        _ => current,
    }
}

/// Keeps the two counts within maxSurge, then gives back to `adjust` what
/// trimming it cost in availability below the minimum.
fn within_limits(
    drain: Option<&RsCount>,
    adjust: Option<&RsCount>,
    mut drain_count: i64,
    mut adjust_count: i64,
    max_allowed: i64,
    min_available: i64,
) -> (i64, i64) {
    let mut over = (adjust_count + drain_count - max_allowed).max(0);
    let mut available = drain.map_or(0, |rs| rs.available.min(drain_count));
    if let Some(adjust) = adjust {
        adjust_count -= over;
        available += adjust.available.min(adjust_count);
        let lost = (adjust.available - adjust_count).max(0);
        let needed = (min_available - available).max(0);
        adjust_count += lost.min(needed);
        over = (adjust_count + drain_count - max_allowed).max(0);
        drain_count -= over;
    }
    (drain_count, adjust_count)
}

/// Argo's `CalculateReplicaCountsForBasicCanary`: (canary, stable) spec
/// replicas for the next scaling step of a canary without traffic routing.
pub fn basic_canary(
    ro: &Value,
    new: Option<&RsCount>,
    stable: Option<&RsCount>,
    older: &[RsCount],
) -> (i64, i64) {
    let replicas = spec_replicas(ro);
    let (_, weight) = canary_replicas_or_weight(ro, new, stable);
    let surge = max_surge(ro);
    let (mut desired_new, mut desired_stable) =
        approximate_weighted(replicas, weight, max_weight(ro), surge);
    let mut new_count = new.map_or(0, |rs| rs.spec);
    let scale_stable = match (new, stable) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(n), Some(s)) => n.hash != s.hash,
    };
    let stable = stable.filter(|_| scale_stable);
    let mut stable_count = stable.map_or(0, |rs| rs.spec);
    if !scale_stable {
        // No distinct stable: head straight for 100% new.
        desired_new = replicas;
        desired_stable = 0;
    }
    let max_allowed = replicas + surge;
    let older_total: i64 = older.iter().map(|rs| rs.spec).sum();
    let total = older_total + new_count + stable_count;
    let mut scale_up = max_allowed - total;
    if let Some(s) = stable
        && s.spec < desired_stable
        && scale_up > 0
    {
        if s.spec + scale_up < desired_stable {
            stable_count = s.spec + scale_up;
            scale_up = 0;
        } else {
            stable_count = desired_stable;
            scale_up -= desired_stable - s.spec;
        }
    }
    if let Some(n) = new
        && n.spec < desired_new
        && scale_up > 0
    {
        new_count = desired_new.min(n.spec + scale_up);
    }
    if older_total > 0 {
        // Older sets go down first.
        return (new_count, stable_count);
    }
    let min_available = replicas - max_unavailable(ro);
    // Growing the canary may ignore stable's availability; shrinking it
    // (abort) may ignore the canary's.
    let increasing = new.is_none_or(|n| desired_new >= n.spec);
    let to_scale_down = for_scale_down(new, !increasing) + for_scale_down(stable, increasing);
    if to_scale_down <= min_available {
        return (new_count, stable_count);
    }
    let count = to_scale_down - min_available;
    if !increasing {
        new_count = scale_down_count(new, desired_new, count, new_count);
        (new_count, stable_count) = within_limits(
            new,
            stable,
            new_count,
            stable_count,
            max_allowed,
            min_available,
        );
    } else if scale_stable {
        stable_count = scale_down_count(stable, desired_stable, count, stable_count);
        (stable_count, new_count) = within_limits(
            stable,
            new,
            stable_count,
            new_count,
            max_allowed,
            min_available,
        );
    }
    (new_count, stable_count)
}

/// `minPodsPerReplicaSet` (traffic routing only, capped at `replicas`) for
/// a non-zero count.
fn min_pods(ro: &Value, count: i64) -> i64 {
    match canary(ro)["minPodsPerReplicaSet"].as_i64() {
        Some(min) if count != 0 && traffic_routed(ro) => count.max(min.min(spec_replicas(ro))),
        _ => count,
    }
}

/// Argo's `CalculateReplicaCountsForTrafficRoutedCanary`: (canary, stable)
/// when a router splits the traffic; `weights` are the ones it applies now.
pub fn traffic_routed_canary(
    ro: &Value,
    new: Option<&RsCount>,
    stable: Option<&RsCount>,
    weights: Option<Weights>,
) -> (i64, i64) {
    let replicas = spec_replicas(ro);
    let (explicit, weight) = canary_replicas_or_weight(ro, new, stable);
    let max = max_weight(ro);
    let mut canary_count =
        explicit.unwrap_or_else(|| min_pods(ro, trafficweight_to_replicas(replicas, weight, max)));
    if canary(ro)["dynamicStableScale"].as_bool() != Some(true) {
        return (canary_count, replicas);
    }
    // Stable follows the higher of the desired and the applied weight so it
    // never shrinks before traffic has left it.
    let mut stable_count = trafficweight_to_replicas(replicas, max - weight, max);
    if let Some(w) = weights {
        stable_count = stable_count.max(trafficweight_to_replicas(replicas, w.stable, max));
        if aborted(ro) {
            canary_count = canary_count.max(trafficweight_to_replicas(replicas, w.canary, max));
        }
    }
    (min_pods(ro, canary_count), min_pods(ro, stable_count))
}

/// The counts for the rollout's kind of canary.
pub fn canary_counts(
    ro: &Value,
    new: Option<&RsCount>,
    stable: Option<&RsCount>,
    older: &[RsCount],
    weights: Option<Weights>,
) -> (i64, i64) {
    if traffic_routed(ro) {
        traffic_routed_canary(ro, new, stable, weights)
    } else {
        basic_canary(ro, new, stable, older)
    }
}
