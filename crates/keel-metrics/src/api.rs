//! Prometheus' HTTP query API on a [`Store`], independent of any server:
//! [`handle`] takes a request's method, path, query string and body and
//! returns the status and JSON body Prometheus would. Endpoints:
//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values` and `/api/v1/series` (GET or POST form).

use std::fmt::Write as _;

use promql_parser::parser::Expr;

use crate::eval::{self, EvalError, Value};
use crate::labels::Labels;
use crate::store::Store;

/// Points a range query may return per series (Prometheus' limit).
pub const MAX_POINTS: i64 = 11_000;

/// A response: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

fn error(status: u16, kind: &str, msg: &str) -> Response {
    Response {
        status,
        body: format!(
            "{{\"status\":\"error\",\"errorType\":{},\"error\":{}}}",
            json_str(kind),
            json_str(msg)
        ),
    }
}

fn bad_data(msg: &str) -> Response {
    error(400, "bad_data", msg)
}

fn success(data: &str) -> Response {
    Response {
        status: 200,
        body: format!("{{\"status\":\"success\",\"data\":{data}}}"),
    }
}

fn eval_error(e: &EvalError) -> Response {
    match e {
        EvalError::BadData(m) => bad_data(&format!("invalid parameter \"query\": {m}")),
        EvalError::Unsupported(_) => bad_data(&e.to_string()),
        EvalError::Execution(m) => error(422, "execution", m),
    }
}

/// Serves one API request; `None` when `path` is not an API path.
pub fn handle(
    store: &Store,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now_ms: i64,
) -> Option<Response> {
    let mut params = parse_form(query);
    if method == "POST" {
        params.extend(parse_form(&String::from_utf8_lossy(body)));
    }
    if method != "GET" && method != "POST" {
        return Some(error(405, "bad_data", "method not allowed"));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    Some(match path {
        "/api/v1/query" => {
            let t = match get("time") {
                None | Some("") => now_ms,
                Some(s) => match parse_time(s) {
                    Some(t) => t,
                    None => {
                        return Some(bad_data(&format!(
                            "invalid parameter \"time\": cannot parse {s:?} to a valid timestamp"
                        )));
                    }
                },
            };
            let q = get("query").unwrap_or_default();
            match eval::instant(store, q, t) {
                Ok(v) => success(&instant_json(&v, t)),
                Err(e) => eval_error(&e),
            }
        }
        "/api/v1/query_range" => query_range(store, &get),
        "/api/v1/labels" => success(&json_list(&store.label_names())),
        "/api/v1/series" => {
            let sels: Vec<&str> = params
                .iter()
                .filter(|(k, _)| k == "match[]")
                .map(|(_, v)| v.as_str())
                .collect();
            if sels.is_empty() {
                return Some(bad_data("no match[] parameter provided"));
            }
            let mut parsed = Vec::new();
            for s in sels {
                match eval::parse(s) {
                    Ok(Expr::VectorSelector(vs)) => {
                        let mut m = vs.matchers.matchers.clone();
                        if let Some(n) = &vs.name {
                            m.push(promql_parser::label::Matcher::new(
                                promql_parser::label::MatchOp::Equal,
                                crate::labels::NAME,
                                n,
                            ));
                        }
                        parsed.push((m, vs.matchers.or_matchers.clone()));
                    }
                    Ok(_) => {
                        return Some(bad_data(&format!(
                            "invalid parameter \"match[]\": {s:?} is not a series selector"
                        )));
                    }
                    Err(e) => {
                        return Some(bad_data(&format!("invalid parameter \"match[]\": {e}")));
                    }
                }
            }
            let mut out = String::from("[");
            for (i, l) in store.series(&parsed).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&labels_json(l));
            }
            out.push(']');
            success(&out)
        }
        p => {
            let name = p
                .strip_prefix("/api/v1/label/")
                .and_then(|r| r.strip_suffix("/values"))?;
            success(&json_list(&store.label_values(name)))
        }
    })
}

fn query_range<'a>(store: &Store, get: &impl Fn(&str) -> Option<&'a str>) -> Response {
    let mut times = [0i64; 2];
    for (i, k) in ["start", "end"].iter().enumerate() {
        let s = get(k).unwrap_or_default();
        match parse_time(s) {
            Some(t) => times[i] = t,
            None => {
                return bad_data(&format!(
                    "invalid parameter \"{k}\": cannot parse {s:?} to a valid timestamp"
                ));
            }
        }
    }
    let [start, end] = times;
    if end < start {
        return bad_data("invalid parameter \"end\": end timestamp must not be before start time");
    }
    let s = get("step").unwrap_or_default();
    let Some(step) = parse_duration(s) else {
        return bad_data(&format!(
            "invalid parameter \"step\": cannot parse {s:?} to a valid duration"
        ));
    };
    if step <= 0 {
        return bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        );
    }
    if (end - start) / step > MAX_POINTS {
        return bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }
    let q = get("query").unwrap_or_default();
    match eval::range(store, q, start, end, step) {
        Ok(series) => success(&format!(
            "{{\"resultType\":\"matrix\",\"result\":{}}}",
            matrix_json(&series)
        )),
        Err(e) => eval_error(&e),
    }
}

fn instant_json(v: &Value, t: i64) -> String {
    let mut out = format!("{{\"resultType\":\"{}\",\"result\":", v.type_name());
    match v {
        Value::Scalar(x) => out.push_str(&point_json(t, *x)),
        Value::String(s) => {
            let _ = write!(out, "[{},{}]", fmt_time(t), json_str(s));
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"metric\":{},\"value\":{}}}",
                    labels_json(&s.labels),
                    point_json(t, s.v)
                );
            }
            out.push(']');
        }
        Value::Matrix(series) => out.push_str(&matrix_json(series)),
    }
    out.push('}');
    out
}

fn matrix_json(series: &[eval::Series]) -> String {
    let mut out = String::from("[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"metric\":{},\"values\":[", labels_json(&s.labels));
        for (j, (t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&point_json(*t, *v));
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn point_json(t: i64, v: f64) -> String {
    format!("[{},\"{}\"]", fmt_time(t), fmt_value(v))
}

/// A sample value as Prometheus writes it (Go's `FormatFloat(v, 'f', -1,
/// 64)`: shortest round-tripping digits, never an exponent).
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp as Prometheus writes it: seconds, then `.` and three
/// digits of milliseconds unless they are zero.
pub fn fmt_time(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    let (s, f) = (a / 1000, a % 1000);
    if f == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}.{f:03}")
    }
}

fn labels_json(l: &Labels) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_str(k), json_str(v));
    }
    out.push('}');
    out
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Unix seconds (a float) or RFC 3339, as Prometheus' `parseTime`.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        return Some((f * 1000.0).round() as i64);
    }
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(ts.as_millisecond())
}

/// Seconds (a float) or a PromQL duration like `15s` or `1m30s`, in ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.2e15 {
            return None;
        }
        return Some((f * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

/// `application/x-www-form-urlencoded` pairs.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
