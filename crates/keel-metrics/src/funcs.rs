//! PromQL's functions, operators and aggregations on evaluated values, each
//! following Prometheus' `promql/functions.go`, `quantile.go` and
//! `engine.go` (comments name the rule where it is not obvious).

use std::collections::HashMap;

use promql_parser::parser::LabelModifier;

use crate::eval::{EvalError, Sample, Value};
use crate::labels::{Labels, NAME};

pub fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// `l op r`: the value, and for comparisons whether it holds.
pub fn scalar_op(op: &str, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        // Go's math.Mod: the sign of the dividend, as Rust's `%`.
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return Err(EvalError::Unsupported(format!("operator {other:?}"))),
    })
}

/// Functions over one series' samples in `(range_start, range_end]`;
/// `None` when the function has no value for the series.
pub fn over_range(
    name: &str,
    pts: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    extra: &[f64],
) -> Result<Option<f64>, EvalError> {
    let vals = || pts.iter().map(|p| p.1);
    Ok(match name {
        "rate" => extrapolated_rate(pts, range_start, range_end, true, true),
        "increase" => extrapolated_rate(pts, range_start, range_end, true, false),
        "delta" => extrapolated_rate(pts, range_start, range_end, false, false),
        "irate" => instant_value(pts, true),
        "idelta" => instant_value(pts, false),
        "sum_over_time" => Some(vals().sum()),
        "count_over_time" => Some(pts.len() as f64),
        "avg_over_time" => Some(vals().sum::<f64>() / pts.len() as f64),
        "min_over_time" => vals().reduce(|a, b| if b < a || a.is_nan() { b } else { a }),
        "max_over_time" => vals().reduce(|a, b| if b > a || a.is_nan() { b } else { a }),
        "last_over_time" => pts.last().map(|p| p.1),
        "present_over_time" => Some(1.0),
        "changes" => Some(
            pts.windows(2)
                .filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
                .count() as f64,
        ),
        "resets" => Some(pts.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        "quantile_over_time" => {
            let q = extra.first().copied().unwrap_or(f64::NAN);
            let mut v: Vec<f64> = vals().collect();
            Some(quantile(q, &mut v))
        }
        other => {
            return Err(EvalError::Unsupported(format!(
                "function {other}() over a range"
            )));
        }
    })
}

/// rate, increase and delta (Prometheus' `extrapolatedRate`): the change
/// between the first and last sample in the range (for counters, a drop is
/// a reset: the value before it is added back), extrapolated to the range's
/// edges when the first/last sample is within 1.1 average sample intervals
/// of them, else by half an average interval; for counters, never back past
/// the point where the counter would have been zero. rate divides by the
/// range in seconds.
fn extrapolated_rate(
    pts: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first_t, first_v) = pts[0];
    let (last_t, last_v) = pts[pts.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &pts[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// irate and idelta (Prometheus' `instantValue`): the last two samples;
/// for irate a drop is a counter reset, so the rate is the last value over
/// the interval.
fn instant_value(pts: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (pt, pv) = pts[pts.len() - 2];
    let (lt, lv) = pts[pts.len() - 1];
    let mut result = if is_rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Functions of instant vectors and scalars.
pub fn call(name: &str, args: Vec<Value>, t: i64) -> Result<Value, EvalError> {
    const KNOWN: &[&str] = &[
        "time",
        "pi",
        "vector",
        "histogram_quantile",
        "abs",
        "ceil",
        "floor",
        "exp",
        "ln",
        "log2",
        "log10",
        "sqrt",
        "round",
        "clamp_min",
        "clamp_max",
        "clamp",
        "scalar",
        "sort",
        "sort_desc",
    ];
    if !KNOWN.contains(&name) {
        return Err(EvalError::Unsupported(format!("function {name}()")));
    }
    let mut args = args.into_iter();
    let mut next_scalar = |what: &str| match args.next() {
        Some(Value::Scalar(v)) => Ok(v),
        _ => Err(EvalError::BadData(format!(
            "{name}(): expected a scalar {what}"
        ))),
    };
    let math = |f: fn(f64) -> f64, v: Vec<Sample>| {
        Value::Vector(
            v.into_iter()
                .map(|s| Sample {
                    labels: s.labels.without_name(),
                    v: f(s.v),
                })
                .collect(),
        )
    };
    match name {
        "time" => return Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = next_scalar("argument")?;
            return Ok(Value::Vector(vec![Sample {
                labels: Labels::default(),
                v,
            }]));
        }
        "histogram_quantile" => {
            let q = next_scalar("quantile")?;
            let Some(Value::Vector(v)) = args.next() else {
                return Err(EvalError::BadData(
                    "histogram_quantile(): expected a vector".into(),
                ));
            };
            return Ok(Value::Vector(histogram_quantile(q, v)));
        }
        _ => {}
    }
    let Some(Value::Vector(v)) = args.next() else {
        return Err(EvalError::Unsupported(format!("function {name}()")));
    };
    let rest: Vec<f64> = args
        .map(|a| match a {
            Value::Scalar(s) => Ok(s),
            _ => Err(EvalError::BadData(format!(
                "{name}(): expected scalar arguments"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(match name {
        "abs" => math(f64::abs, v),
        "ceil" => math(f64::ceil, v),
        "floor" => math(f64::floor, v),
        "exp" => math(f64::exp, v),
        "ln" => math(f64::ln, v),
        "log2" => math(f64::log2, v),
        "log10" => math(f64::log10, v),
        "sqrt" => math(f64::sqrt, v),
        "round" => {
            // Prometheus: floor(v * 1/to_nearest + 0.5) / (1/to_nearest).
            let inv = 1.0 / rest.first().copied().unwrap_or(1.0);
            Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        v: (s.v * inv + 0.5).floor() / inv,
                    })
                    .collect(),
            )
        }
        "clamp_min" | "clamp_max" | "clamp" => {
            let (lo, hi) = match name {
                "clamp_min" => (rest.first().copied().unwrap_or(f64::NAN), f64::INFINITY),
                "clamp_max" => (f64::NEG_INFINITY, rest.first().copied().unwrap_or(f64::NAN)),
                _ => (
                    rest.first().copied().unwrap_or(f64::NAN),
                    rest.get(1).copied().unwrap_or(f64::NAN),
                ),
            };
            if lo > hi {
                return Ok(Value::Vector(Vec::new()));
            }
            Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        v: s.v.max(lo).min(hi),
                    })
                    .collect(),
            )
        }
        "scalar" => Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }),
        "sort" | "sort_desc" => {
            let mut v = v;
            // NaN last in both orders, as Prometheus sorts.
            v.sort_by(|a, b| {
                let o =
                    a.v.partial_cmp(&b.v)
                        .unwrap_or_else(|| b.v.is_nan().cmp(&a.v.is_nan()).reverse());
                if name == "sort" || a.v.is_nan() || b.v.is_nan() {
                    o
                } else {
                    o.reverse()
                }
            });
            Value::Vector(v)
        }
        other => return Err(EvalError::Unsupported(format!("function {other}()"))),
    })
}

/// The labels an aggregation groups by.
fn group_labels(l: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        None => Labels::default(),
        Some(LabelModifier::Include(by)) => l.filter(|k| by.labels.iter().any(|x| x == k)),
        Some(LabelModifier::Exclude(w)) => {
            l.filter(|k| k != NAME && !w.labels.iter().any(|x| x == k))
        }
    }
}

/// sum, avg, min, max, count, group, stddev, stdvar, topk, bottomk and
/// quantile `by`/`without`; groups come out in order of first appearance.
pub fn aggregate(
    op: &str,
    param: Option<Value>,
    m: Option<&LabelModifier>,
    input: Vec<Sample>,
) -> Result<Vec<Sample>, EvalError> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for s in input {
        let g = group_labels(&s.labels, m);
        groups
            .entry(g.clone())
            .or_insert_with(|| {
                order.push(g);
                Vec::new()
            })
            .push(s);
    }
    let p = match param {
        Some(Value::Scalar(p)) => Some(p),
        None => None,
        Some(other) => {
            return Err(EvalError::BadData(format!(
                "expected a scalar parameter for {op}, got {}",
                other.type_name()
            )));
        }
    };
    let mut out = Vec::new();
    for g in order {
        let members = groups.remove(&g).unwrap_or_default();
        let vals: Vec<f64> = members.iter().map(|s| s.v).collect();
        let n = vals.len() as f64;
        let v = match op {
            "sum" => vals.iter().sum(),
            "avg" => {
                // Sum over count, an incremental mean only when the sum
                // overflows (Prometheus 3 also Kahan-compensates the sum:
                // results agree to the last bits).
                let s: f64 = vals.iter().sum();
                if s.is_infinite() && vals.iter().all(|x| x.is_finite()) {
                    vals.iter().enumerate().fold(0.0, |mean, (i, x)| {
                        mean + x / (i + 1) as f64 - mean / (i + 1) as f64
                    })
                } else {
                    s / n
                }
            }
            // min/max: NaN only when every value is NaN.
            "min" => vals
                .iter()
                .copied()
                .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
            "max" => vals
                .iter()
                .copied()
                .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
            "count" => n,
            "group" => 1.0,
            "stddev" | "stdvar" => {
                // Welford's online variance, as Prometheus computes it.
                let (mut mean, mut m2) = (0.0, 0.0);
                for (i, x) in vals.iter().enumerate() {
                    let d = x - mean;
                    mean += d / (i + 1) as f64;
                    m2 += d * (x - mean);
                }
                let var = m2 / n;
                if op == "stddev" { var.sqrt() } else { var }
            }
            "quantile" => {
                let mut vals = vals;
                quantile(p.unwrap_or(f64::NAN), &mut vals)
            }
            "topk" | "bottomk" => {
                let k = p.unwrap_or(0.0);
                if k < 1.0 {
                    continue;
                }
                let mut members = members;
                members.sort_by(|a, b| {
                    let o =
                        b.v.partial_cmp(&a.v)
                            .unwrap_or_else(|| a.v.is_nan().cmp(&b.v.is_nan()));
                    if op == "topk" || a.v.is_nan() || b.v.is_nan() {
                        o
                    } else {
                        o.reverse()
                    }
                });
                out.extend(members.into_iter().take(k as usize));
                continue;
            }
            other => return Err(EvalError::Unsupported(format!("aggregation {other}"))),
        };
        out.push(Sample { labels: g, v });
    }
    Ok(out)
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(f64::total_cmp);
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lower as usize] * (1.0 - w) + vals[upper as usize] * w
}

/// histogram_quantile over classic buckets: series are grouped by their
/// labels without `le` and the name; see [`bucket_quantile`].
fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut order = Vec::new();
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    for s in v {
        // A bucket without a parseable `le` is ignored, as Prometheus does.
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        let g = s.labels.filter(|k| k != NAME && k != "le");
        groups
            .entry(g.clone())
            .or_insert_with(|| {
                order.push(g);
                Vec::new()
            })
            .push((le, s.v));
    }
    order
        .into_iter()
        .map(|g| {
            let mut b = groups.remove(&g).unwrap_or_default();
            Sample {
                labels: g,
                v: bucket_quantile(q, &mut b),
            }
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Prometheus' `bucketQuantile` on `(upper bound, cumulative count)`
/// buckets: sorted by bound, buckets of equal bound merged, counts forced
/// monotonic (differences within a relative 1e-12 treated as equal); NaN
/// without a +Inf bucket or observations. The rank `q * count` falls in a
/// bucket; the result interpolates linearly inside it, from 0 for the
/// first bucket (when its bound is positive, else that bound), and the
/// +Inf bucket answers the bound of the one below it.
pub fn bucket_quantile(q: f64, b: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    b.dedup_by(|cur, prev| {
        if cur.0 == prev.0 {
            prev.1 += cur.1;
            true
        } else {
            false
        }
    });
    let mut prev = b[0].1;
    for x in b.iter_mut().skip(1) {
        if x.1 == prev {
            continue;
        }
        if almost_equal(prev, x.1, 1e-12) || x.1 < prev {
            x.1 = prev;
            continue;
        }
        prev = x.1;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let i = b[..b.len() - 1].partition_point(|x| x.1 < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus' `almost.Equal`.
fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / sum.min(f64::MAX) < eps
}
