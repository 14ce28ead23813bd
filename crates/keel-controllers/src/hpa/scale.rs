//! From the metrics' proposal to the replica count to set, as
//! `horizontal.go` normalizes it: stabilization windows over recent
//! recommendations, then rate limits: without `spec.behavior` at most
//! max(2×current, 4) up and the controller's downscale window; with it the
//! scaling policies (Pods/Percent per period, `selectPolicy`
//! Max/Min/Disabled) over the scale events of their periods. Pure: the
//! clock is an argument.

use serde_json::Value;

/// How the policies of one direction combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `Pods` (else `Percent`).
    pub pods: bool,
    pub value: i32,
    pub period: i64,
}

/// `HPAScalingRules` with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub window: i64,
    pub select: Select,
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

fn rules(v: Option<&Value>, window: i64, defaults: &[Policy]) -> Rules {
    let v = v.cloned().unwrap_or(Value::Null);
    let select = match v["selectPolicy"].as_str() {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let policies = match v["policies"].as_array() {
        Some(ps) => ps
            .iter()
            .map(|p| Policy {
                pods: p["type"] == "Pods",
                value: p["value"]
                    .as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .unwrap_or(0),
                period: p["periodSeconds"].as_i64().unwrap_or(15),
            })
            .collect(),
        None => defaults.to_vec(),
    };
    Rules {
        window: v["stabilizationWindowSeconds"].as_i64().unwrap_or(window),
        select,
        policies,
    }
}

/// `spec.behavior` with Kubernetes' defaults (up: no window, 4 pods or
/// 100% per 15 s; down: `down_window`, 100% per 15 s); `None` without one.
pub fn behavior(spec: &Value, down_window: i64) -> Option<Behavior> {
    let b = spec.get("behavior").filter(|b| b.is_object())?;
    let up = [
        Policy {
            pods: true,
            value: 4,
            period: 15,
        },
        Policy {
            pods: false,
            value: 100,
            period: 15,
        },
    ];
    let down = [Policy {
        pods: false,
        value: 100,
        period: 15,
    }];
    Some(Behavior {
        up: rules(b.get("scaleUp"), 0, &up),
        down: rules(b.get("scaleDown"), down_window, &down),
    })
}

/// What one autoscaler remembers between syncs.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (time, unstabilized recommendation).
    pub recommendations: Vec<(f64, i32)>,
    /// (time, replicas added) and (time, replicas removed).
    pub up_events: Vec<(f64, i32)>,
    pub down_events: Vec<(f64, i32)>,
}

/// The normalized count with the `AbleToScale` reason and message and the
/// `ScalingLimited` status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub replicas: i32,
    pub able: (&'static str, &'static str),
    pub limited: (bool, &'static str, &'static str),
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

/// Remembers the count the target had when first seen, so a scale-down
/// right after the controller starts is stabilized too.
pub fn record_initial(h: &mut History, current: i32, now: f64) {
    if h.recommendations.is_empty() {
        h.recommendations.push((now, current));
    }
}

/// Replaces the oldest sample that fell out of every window, or appends.
fn remember(h: &mut History, old: Option<usize>, now: f64, desired: i32) {
    match old {
        Some(i) => h.recommendations[i] = (now, desired),
        None => h.recommendations.push((now, desired)),
    }
}

fn limited(
    replicas: i32,
    stabilized: i32,
    able: (&'static str, &'static str),
    why: (&'static str, &'static str),
) -> Outcome {
    Outcome {
        replicas,
        able,
        limited: (replicas != stabilized, why.0, why.1),
    }
}

/// The count to set for a proposal of `desired` replicas.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    h: &mut History,
    behavior: Option<&Behavior>,
    down_window: f64,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: f64,
) -> Outcome {
    match behavior {
        None => {
            let cutoff = now - down_window;
            let mut stabilized = desired;
            let mut old = None;
            for (i, (t, r)) in h.recommendations.iter().enumerate() {
                if *t < cutoff {
                    old = Some(i);
                } else if *r > stabilized {
                    stabilized = *r;
                }
            }
            remember(h, old, now, desired);
            let able = if stabilized == desired {
                READY
            } else {
                DOWN_STABILIZED
            };
            let up_limit = (2 * current).max(4);
            let (max_allowed, max_why) = if max > up_limit {
                (up_limit, UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            let (replicas, why) = if stabilized < min {
                (min, TOO_FEW)
            } else if stabilized > max_allowed {
                (max_allowed, max_why)
            } else {
                (stabilized, WITHIN)
            };
            limited(replicas, stabilized, able, why)
        }
        Some(b) => {
            let stabilized = stabilize(h, b, current, desired, now);
            let able = match stabilized.cmp(&desired) {
                std::cmp::Ordering::Equal => READY,
                std::cmp::Ordering::Greater => DOWN_STABILIZED,
                std::cmp::Ordering::Less => UP_STABILIZED,
            };
            let (replicas, why) = rate_limit(h, b, current, stabilized, min, max, now);
            limited(replicas, stabilized, able, why)
        }
    }
}

fn stabilize(h: &mut History, b: &Behavior, current: i32, desired: i32, now: f64) -> i32 {
    #[allow(clippy::cast_precision_loss)]
    let (up_cut, down_cut) = (now - b.up.window as f64, now - b.down.window as f64);
    let (mut up, mut down) = (desired, desired);
    let mut old = None;
    for (i, (t, r)) in h.recommendations.iter().enumerate() {
        if *t > up_cut {
            up = up.min(*r);
        }
        if *t > down_cut {
            down = down.max(*r);
        }
        if *t < up_cut && *t < down_cut {
            old = Some(i);
        }
    }
    remember(h, old, now, desired);
    current.max(up).min(down)
}

#[allow(clippy::cast_precision_loss)]
fn changed_within(events: &[(f64, i32)], period: i64, now: f64) -> i32 {
    let cut = now - period as f64;
    events
        .iter()
        .filter(|(t, _)| *t > cut)
        .map(|(_, n)| n)
        .sum()
}

/// The most replicas `rules` allow from `current`.
#[allow(clippy::cast_possible_truncation)]
fn up_limit(h: &History, rules: &Rules, current: i32, now: f64) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::min,
        Select::Max => i32::max,
    };
    let mut out = if rules.select == Select::Min {
        i32::MAX
    } else {
        i32::MIN
    };
    for p in &rules.policies {
        let start = current - changed_within(&h.up_events, p.period, now)
            + changed_within(&h.down_events, p.period, now);
        let proposed = if p.pods {
            start + p.value
        } else {
            (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
        };
        out = pick(out, proposed);
    }
    out
}

/// The fewest replicas `rules` allow from `current`.
#[allow(clippy::cast_possible_truncation)]
fn down_limit(h: &History, rules: &Rules, current: i32, now: f64) -> i32 {
    // The Min policy is the one that changes least: the highest floor.
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::max,
        Select::Max => i32::min,
    };
    let mut out = if rules.select == Select::Min {
        i32::MIN
    } else {
        i32::MAX
    };
    for p in &rules.policies {
        let start = current - changed_within(&h.up_events, p.period, now)
            + changed_within(&h.down_events, p.period, now);
        let proposed = if p.pods {
            start - p.value
        } else {
            (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
        };
        out = pick(out, proposed);
    }
    out
}

fn rate_limit(
    h: &History,
    b: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: f64,
) -> (i32, (&'static str, &'static str)) {
    if desired > current {
        let limit = up_limit(h, &b.up, current, now).max(current);
        let (allowed, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if desired > allowed {
            return (allowed, why);
        }
    } else if desired < current {
        let limit = down_limit(h, &b.down, current, now).min(current);
        let (allowed, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if desired < allowed {
            return (allowed, why);
        }
    }
    (desired, WITHIN)
}

/// Records a scale from `prev` to `new` for the policies' periods (only
/// with a behavior, as Kubernetes does); events older than the longest
/// period of their direction are dropped.
#[allow(clippy::cast_precision_loss)]
pub fn record_scale(h: &mut History, b: Option<&Behavior>, prev: i32, new: i32, now: f64) {
    let Some(b) = b else {
        return;
    };
    let (rules, events, n) = if new > prev {
        (&b.up, &mut h.up_events, new - prev)
    } else {
        (&b.down, &mut h.down_events, prev - new)
    };
    let longest = rules.policies.iter().map(|p| p.period).max().unwrap_or(0);
    events.retain(|(t, _)| *t > now - longest as f64);
    events.push((now, n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(v: Value) -> Behavior {
        behavior(&json!({"behavior": v}), 300).unwrap()
    }

    #[test]
    fn defaults_fill_a_partial_behavior() {
        assert_eq!(behavior(&json!({}), 300), None);
        let d = b(json!({}));
        assert_eq!(d.up.window, 0);
        assert_eq!(d.down.window, 300);
        assert_eq!(d.up.policies.len(), 2);
        assert_eq!(
            d.down.policies,
            [Policy {
                pods: false,
                value: 100,
                period: 15
            }]
        );
        let c =
            b(json!({"scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Disabled"}}));
        assert_eq!((c.down.window, c.down.select), (5, Select::Disabled));
    }

    #[test]
    fn without_behavior_downscales_are_stabilized_and_upscales_capped() {
        let mut h = History::default();
        record_initial(&mut h, 5, 0.0);
        // Lower proposals within 300 s keep the highest recent one.
        let o = normalize(&mut h, None, 300.0, 5, 2, 1, 10, 10.0);
        assert_eq!(o.replicas, 5);
        assert_eq!(o.able.0, "ScaleDownStabilized");
        assert!(!o.limited.0);
        let o = normalize(&mut h, None, 300.0, 5, 2, 1, 10, 320.0);
        assert_eq!(o.replicas, 2, "{o:?}");
        assert_eq!(o.able.0, "ReadyForNewScale");
        // Up: at most max(2×current, 4).
        let o = normalize(&mut h, None, 300.0, 2, 9, 1, 10, 330.0);
        assert_eq!(
            (o.replicas, o.limited),
            (4, (true, "ScaleUpLimit", UP_LIMIT.1))
        );
        let o = normalize(&mut h, None, 300.0, 8, 12, 1, 10, 340.0);
        assert_eq!((o.replicas, o.limited.1), (10, "TooManyReplicas"));
        let mut h = History::default();
        let o = normalize(&mut h, None, 300.0, 3, 0, 2, 10, 0.0);
        assert_eq!(
            (o.replicas, o.limited.0, o.limited.1),
            (2, true, "TooFewReplicas")
        );
    }

    #[test]
    fn policies_limit_by_period() {
        // Up 1 pod per 60 s, or 50% per 60 s, whichever is more.
        let up = b(json!({"scaleUp": {"policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60},
            {"type": "Percent", "value": 50, "periodSeconds": 60}]}}));
        let mut h = History::default();
        let o = normalize(&mut h, Some(&up), 300.0, 4, 10, 1, 20, 0.0);
        assert_eq!((o.replicas, o.limited.1), (6, "ScaleUpLimit"));
        record_scale(&mut h, Some(&up), 4, 6, 0.0);
        // Within the period the start is still 4: nothing more.
        let o = normalize(&mut h, Some(&up), 300.0, 6, 10, 1, 20, 30.0);
        assert_eq!(o.replicas, 6);
        // After it, 50% of 6.
        let o = normalize(&mut h, Some(&up), 300.0, 6, 10, 1, 20, 61.0);
        assert_eq!(o.replicas, 9);
        // Min picks the smaller step.
        let min = b(json!({"scaleUp": {"selectPolicy": "Min", "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60},
            {"type": "Percent", "value": 50, "periodSeconds": 60}]}}));
        let o = normalize(
            &mut History::default(),
            Some(&min),
            300.0,
            4,
            10,
            1,
            20,
            0.0,
        );
        assert_eq!(o.replicas, 5);
        let off = b(json!({"scaleUp": {"selectPolicy": "Disabled"}}));
        let o = normalize(
            &mut History::default(),
            Some(&off),
            300.0,
            4,
            10,
            1,
            20,
            0.0,
        );
        assert_eq!((o.replicas, o.limited.0), (4, true));
    }

    #[test]
    fn downscale_window_and_policies() {
        let d = b(
            json!({"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [
            {"type": "Pods", "value": 2, "periodSeconds": 30}]}}),
        );
        let mut h = History::default();
        record_initial(&mut h, 8, 0.0);
        let o = normalize(&mut h, Some(&d), 300.0, 8, 1, 1, 10, 10.0);
        assert_eq!((o.replicas, o.able.0), (8, "ScaleDownStabilized"));
        let o = normalize(&mut h, Some(&d), 300.0, 8, 1, 1, 10, 71.0);
        assert_eq!((o.replicas, o.limited.1), (6, "ScaleDownLimit"));
        record_scale(&mut h, Some(&d), 8, 6, 71.0);
        let o = normalize(&mut h, Some(&d), 300.0, 6, 1, 1, 10, 80.0);
        assert_eq!(o.replicas, 6, "two removed within the 30 s period");
        let o = normalize(&mut h, Some(&d), 300.0, 6, 1, 1, 10, 102.0);
        assert_eq!(o.replicas, 4);
        // Up-scale windows hold the lowest recent recommendation.
        let u = b(json!({"scaleUp": {"stabilizationWindowSeconds": 60}}));
        let mut h = History::default();
        record_initial(&mut h, 2, 0.0);
        let o = normalize(&mut h, Some(&u), 300.0, 2, 5, 1, 10, 10.0);
        assert_eq!((o.replicas, o.able.0), (2, "ScaleUpStabilized"));
    }
}
