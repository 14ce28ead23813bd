//! Golden tests of the PromQL evaluator on series built here; every
//! expected value is worked out by hand from Prometheus' documented rules
//! (the comment before each says which).

// Values are compared exactly where the rule gives an exact result.
#![allow(clippy::float_cmp, clippy::doc_markdown, clippy::cast_precision_loss)]

use keel_metrics::api;
use keel_metrics::eval::{self, Value};
use keel_metrics::store::{Store, stale_nan};
use keel_metrics::{Labels, Options};

const S: i64 = 1000;

fn store() -> Store {
    Store::new(Options::default())
}

fn add(s: &Store, labels: &[(&str, &str)], pts: &[(i64, f64)]) {
    let l = Labels::new(labels.iter().copied());
    for (t, v) in pts {
        s.append(&l, *t, *v).unwrap();
    }
}

/// The single value of an instant query, or panic.
fn one(s: &Store, q: &str, t: i64) -> f64 {
    match eval::instant(s, q, t).unwrap() {
        Value::Vector(v) if v.len() == 1 => v[0].v,
        Value::Scalar(x) => x,
        other => panic!("{q}: expected one value, got {other:?}"),
    }
}

/// `labels => value` of an instant vector, sorted.
fn vector(s: &Store, q: &str, t: i64) -> Vec<(String, f64)> {
    let Value::Vector(v) = eval::instant(s, q, t).unwrap() else {
        panic!("{q}: not a vector");
    };
    let mut out: Vec<(String, f64)> = v.into_iter().map(|x| (x.labels.to_string(), x.v)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn rate_extrapolates_to_the_window_edges() {
    let s = store();
    // Counter samples 15s apart inside the window (0s, 60s].
    add(
        &s,
        &[("__name__", "c"), ("job", "a")],
        &[
            (10 * S, 100.0),
            (25 * S, 130.0),
            (40 * S, 160.0),
            (55 * S, 190.0),
        ],
    );
    // extrapolatedRate: delta 90 over the sampled 45s; the first sample is
    // 10s after the window start and the last 5s before its end, both under
    // 1.1 x the 15s average interval, so the delta is extrapolated to the
    // whole 60s: 90 * 60/45 = 120; rate divides by 60s.
    assert!(close(one(&s, "increase(c[1m])", 60 * S), 120.0));
    assert!(close(one(&s, "rate(c[1m])", 60 * S), 2.0));
    // delta (not a counter) extrapolates the same way.
    assert!(close(one(&s, "delta(c[1m])", 60 * S), 120.0));
    // irate: the last two samples, 30 over 15s.
    assert!(close(one(&s, "irate(c[1m])", 60 * S), 2.0));
    // A single sample in the window gives no rate.
    assert!(vector(&s, "rate(c[10s])", 60 * S).is_empty());
    // The result drops the metric name.
    assert_eq!(vector(&s, "rate(c[1m])", 60 * S)[0].0, "{job=\"a\"}");
}

#[test]
fn rate_extrapolates_half_an_interval_when_samples_stop_short() {
    let s = store();
    add(&s, &[("__name__", "c")], &[(40 * S, 10.0), (50 * S, 20.0)]);
    // The first sample is 40s after the window start, past 1.1 x the 10s
    // average interval: extrapolate only avg/2 = 5s there; the end is 10s
    // away, under the threshold (11s): all the way. Zero point: 10s * 10/10
    // = 10s, not shorter than 5s. 10 * (10 + 5 + 10)/10 = 25.
    assert!(close(one(&s, "increase(c[1m])", 60 * S), 25.0));
    assert!(close(one(&s, "rate(c[1m])", 60 * S), 25.0 / 60.0));
}

#[test]
fn rate_stops_extrapolating_at_the_counters_zero_point() {
    let s = store();
    add(
        &s,
        &[("__name__", "c")],
        &[
            (10 * S, 1.0),
            (25 * S, 31.0),
            (40 * S, 61.0),
            (55 * S, 91.0),
        ],
    );
    // Counters are never negative: the counter would have been 0 at
    // 45s * 1/90 = 0.5s before the first sample, sooner than the 10s to the
    // window start, so the start extrapolates 0.5s: 90 * (45+0.5+5)/45 = 101.
    assert!(close(one(&s, "increase(c[1m])", 60 * S), 101.0));
    // delta is not a counter function: extrapolated all 10s, 90 * 60/45.
    assert!(close(one(&s, "delta(c[1m])", 60 * S), 120.0));
}

#[test]
fn counter_resets_are_added_back() {
    let s = store();
    add(
        &s,
        &[("__name__", "c")],
        &[
            (10 * S, 100.0),
            (25 * S, 130.0),
            (40 * S, 10.0),
            (55 * S, 40.0),
        ],
    );
    // A drop (130 -> 10) is a reset: the value before it is added back,
    // 40 - 100 + 130 = 70, extrapolated by 60/45.
    assert!(close(
        one(&s, "increase(c[1m])", 60 * S),
        70.0 * 60.0 / 45.0
    ));
    assert!(close(one(&s, "rate(c[1m])", 60 * S), 70.0 / 45.0));
    // irate looks at the last two samples only (10 -> 40): 30/15.
    assert!(close(one(&s, "irate(c[1m])", 60 * S), 2.0));
    // When they straddle a reset, the last value over the interval: 10/15.
    add(&s, &[("__name__", "d")], &[(40 * S, 160.0), (55 * S, 10.0)]);
    assert!(close(one(&s, "irate(d[1m])", 60 * S), 10.0 / 15.0));
    assert!(close(one(&s, "resets(c[1m])", 60 * S), 1.0));
}

#[test]
fn lookback_offset_and_staleness() {
    let s = store();
    add(&s, &[("__name__", "g")], &[(0, 1.0), (60 * S, 2.0)]);
    add(
        &s,
        &[("__name__", "gone")],
        &[(0, 5.0), (60 * S, 6.0), (70 * S, stale_nan())],
    );
    // An instant selector takes the newest sample in (t - 5m, t].
    assert_eq!(one(&s, "g", 59 * S), 1.0);
    assert_eq!(one(&s, "g", 360 * S - 1), 2.0);
    assert!(vector(&s, "g", 360 * S).is_empty());
    // offset moves the reference time back.
    assert_eq!(one(&s, "g offset 1m", 90 * S), 1.0);
    assert_eq!(one(&s, "g offset 30s", 90 * S), 2.0);
    // A staleness marker ends the series at once, not after 5 minutes.
    assert_eq!(one(&s, "gone", 65 * S), 6.0);
    assert!(vector(&s, "gone", 70 * S).is_empty());
    assert!(vector(&s, "gone", 200 * S).is_empty());
    // Range selectors skip the marker: two samples, one delta of 1.
    assert_eq!(one(&s, "count_over_time(gone[5m])", 100 * S), 2.0);
    // time() is the evaluation time in seconds.
    assert_eq!(one(&s, "time()", 90_500), 90.5);
}

fn fleet(s: &Store) {
    for (job, inst, v) in [
        ("api", "a", 1.0),
        ("api", "b", 3.0),
        ("api", "c", 8.0),
        ("db", "a", 10.0),
        ("db", "b", f64::NAN),
    ] {
        add(
            s,
            &[("__name__", "up_time"), ("job", job), ("instance", inst)],
            &[(0, v)],
        );
    }
}

#[test]
fn matchers() {
    let s = store();
    fleet(&s);
    assert_eq!(vector(&s, "up_time{job=\"api\"}", 0).len(), 3);
    assert_eq!(vector(&s, "up_time{job!=\"api\"}", 0).len(), 2);
    // Regexes are anchored: "a" does not match "api".
    assert_eq!(vector(&s, "up_time{job=~\"a\"}", 0).len(), 0);
    assert_eq!(
        vector(&s, "up_time{job=~\"a.*|d.\",instance!~\"a|b\"}", 0).len(),
        1
    );
    // An absent label matches "".
    assert_eq!(vector(&s, "up_time{zone=\"\"}", 0).len(), 5);
    assert_eq!(vector(&s, "{__name__=~\"up_.*\",job=\"db\"}", 0).len(), 2);
}

#[test]
fn aggregations() {
    let s = store();
    fleet(&s);
    let q = |e: &str| vector(&s, e, 0);
    assert_eq!(
        q("sum by (job) (up_time{job=\"api\"})"),
        vec![("{job=\"api\"}".into(), 12.0)]
    );
    assert_eq!(
        q("avg without (instance) (up_time{job=\"api\"})"),
        vec![("{job=\"api\"}".into(), 4.0)]
    );
    assert_eq!(q("count(up_time)"), vec![("{}".into(), 5.0)]);
    assert_eq!(
        q("min by (job) (up_time)"),
        vec![("{job=\"api\"}".into(), 1.0), ("{job=\"db\"}".into(), 10.0)]
    );
    // max ignores NaN unless every value is NaN.
    assert_eq!(
        q("max by (job) (up_time)")[1],
        ("{job=\"db\"}".into(), 10.0)
    );
    // sum propagates NaN.
    assert!(q("sum by (job) (up_time)")[1].1.is_nan());
    // Population standard deviation of 1, 3, 8: mean 4, variance 26/3.
    assert!(close(
        q("stddev(up_time{job=\"api\"})")[0].1,
        (26.0f64 / 3.0).sqrt()
    ));
    assert_eq!(
        q("topk(1, up_time{job=\"api\"})")[0].0,
        "up_time{instance=\"c\", job=\"api\"}"
    );
    // quantile 0.5 of 1, 3, 8: rank 1 -> 3.
    assert_eq!(q("quantile(0.5, up_time{job=\"api\"})")[0].1, 3.0);
}

#[test]
fn histogram_quantile_interpolates_inside_the_bucket() {
    let s = store();
    for (le, c) in [("0.1", 10.0), ("0.5", 30.0), ("1", 40.0), ("+Inf", 50.0)] {
        add(
            &s,
            &[("__name__", "d_bucket"), ("le", le), ("job", "x")],
            &[(0, c)],
        );
    }
    // Rank 0.5 x 50 = 25 falls in the (0.1, 0.5] bucket holding 20, 15 into
    // it: 0.1 + 0.4 x 15/20.
    assert!(close(one(&s, "histogram_quantile(0.5, d_bucket)", 0), 0.4));
    // Rank 5 in the first bucket, which starts at 0: 0.1 x 5/10.
    assert!(close(one(&s, "histogram_quantile(0.1, d_bucket)", 0), 0.05));
    // Rank 49.5 is in the +Inf bucket: the bound below it.
    assert_eq!(one(&s, "histogram_quantile(0.99, d_bucket)", 0), 1.0);
    assert_eq!(
        one(&s, "histogram_quantile(1.5, d_bucket)", 0),
        f64::INFINITY
    );
    // Grouped by the labels other than le; the name is dropped.
    assert_eq!(
        vector(&s, "histogram_quantile(0.5, sum by (le) (d_bucket))", 0)[0].0,
        "{}"
    );
    let mut b = vec![(1.0, 5.0), (f64::INFINITY, 4.0)];
    // Counts forced monotonic: the +Inf bucket's 4 becomes 5; rank 2.5 in
    // (0, 1].
    assert!(close(
        keel_metrics::funcs::bucket_quantile(0.5, &mut b),
        0.5
    ));
    let mut no_inf = vec![(1.0, 5.0)];
    assert!(keel_metrics::funcs::bucket_quantile(0.5, &mut no_inf).is_nan());
}

#[test]
fn binary_operators_and_vector_matching() {
    let s = store();
    add(
        &s,
        &[("__name__", "req"), ("job", "api"), ("code", "200")],
        &[(0, 90.0)],
    );
    add(
        &s,
        &[("__name__", "req"), ("job", "api"), ("code", "500")],
        &[(0, 10.0)],
    );
    add(
        &s,
        &[("__name__", "req"), ("job", "db"), ("code", "200")],
        &[(0, 4.0)],
    );
    add(&s, &[("__name__", "limit"), ("job", "api")], &[(0, 50.0)]);
    add(&s, &[("__name__", "limit"), ("job", "db")], &[(0, 8.0)]);
    let q = |e: &str| vector(&s, e, 0);
    // Scalar arithmetic and comparison.
    assert_eq!(one(&s, "2 * 3 + 1", 0), 7.0);
    assert_eq!(one(&s, "2 > bool 1", 0), 1.0);
    assert_eq!(one(&s, "7 % 4 ^ 1", 0), 3.0);
    // Vector-scalar: arithmetic drops the name; a comparison filters and
    // keeps it; with bool it gives 0/1 without the name.
    assert_eq!(
        q("req{job=\"db\"} * 2"),
        vec![("{code=\"200\", job=\"db\"}".into(), 8.0)]
    );
    assert_eq!(q("req > 5").len(), 2);
    assert_eq!(q("5 < req")[0].0, "req{code=\"200\", job=\"api\"}");
    assert_eq!(q("req > bool 5").iter().map(|x| x.1).sum::<f64>(), 2.0);
    // One-to-one on job: sum by (job) matches limit's label set minus name.
    assert_eq!(
        q("sum by (job) (req) / on (job) limit"),
        vec![("{job=\"api\"}".into(), 2.0), ("{job=\"db\"}".into(), 0.5)]
    );
    // Many-to-one: each req series divided by its job's limit, keeping the
    // req labels.
    assert_eq!(
        q("req / ignoring (code) group_left limit"),
        vec![
            ("{code=\"200\", job=\"api\"}".into(), 1.8),
            ("{code=\"200\", job=\"db\"}".into(), 0.5),
            ("{code=\"500\", job=\"api\"}".into(), 0.2),
        ]
    );
    // Without group_left, two req series per job matching one limit is an error.
    let e = eval::instant(&s, "req / ignoring (code) limit", 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("many-to-one matching must be explicit"),
        "{e}"
    );
    // Comparison between vectors filters the left side.
    assert_eq!(
        q("sum by (job) (req) > on (job) limit"),
        vec![("{job=\"api\"}".into(), 100.0)]
    );
    // Set operators.
    assert_eq!(q("req and on (job) limit > 10").len(), 2);
    assert_eq!(q("req unless on (job) limit > 10").len(), 1);
    assert_eq!(q("limit or req").len(), 5);
    // Unary minus.
    assert_eq!(q("-limit{job=\"db\"}"), vec![("{job=\"db\"}".into(), -8.0)]);
}

#[test]
fn range_queries_step_and_sort() {
    let s = store();
    for i in 0..=20 {
        add(
            &s,
            &[("__name__", "c"), ("job", "b")],
            &[(i * 15 * S, i as f64 * 30.0)],
        );
        add(
            &s,
            &[("__name__", "c"), ("job", "a")],
            &[(i * 15 * S + 1, i as f64 * 15.0)],
        );
    }
    let r = eval::range(&s, "rate(c[1m])", 120 * S, 240 * S, 60 * S).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].labels.to_string(), "{job=\"a\"}");
    assert_eq!(r[0].points.len(), 3);
    for (t, v) in &r[1].points {
        // A steady 2/s counter: rate is 2 at every step.
        assert!(close(*v, 2.0), "{t}: {v}");
    }
    let e = eval::range(&s, "c[1m]", 0, 60 * S, 15 * S).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );
}

#[test]
fn http_api_json_and_errors() {
    let s = store();
    add(&s, &[("__name__", "x"), ("job", "a")], &[(60 * S, 0.1)]);
    let r = api::handle(&s, "GET", "/api/v1/query", "query=x&time=60.5", b"", 0).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"x","job":"a"},"value":[60.500,"0.1"]}]}}"#
    );
    // POST form, a scalar, RFC 3339 time.
    let r = api::handle(
        &s,
        "POST",
        "/api/v1/query",
        "",
        b"query=1%2F0&time=1970-01-01T00%3A01%3A00Z",
        0,
    )
    .unwrap();
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[60,"+Inf"]}}"#
    );
    let r = api::handle(
        &s,
        "GET",
        "/api/v1/query_range",
        "query=x*2&start=60&end=70&step=5s",
        b"",
        0,
    )
    .unwrap();
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[60,"0.2"],[65,"0.2"],[70,"0.2"]]}]}}"#
    );
    let r = api::handle(&s, "GET", "/api/v1/query", "query=sum(", b"", 0).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.starts_with(
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": "#
        ),
        "{}",
        r.body
    );
    let r = api::handle(
        &s,
        "GET",
        "/api/v1/query_range",
        "query=x&start=10&end=0&step=1",
        b"",
        0,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let r = api::handle(
        &s,
        "GET",
        "/api/v1/query_range",
        "query=x&start=0&end=100000&step=1",
        b"",
        0,
    )
    .unwrap();
    assert!(
        r.body
            .contains("exceeded maximum resolution of 11,000 points"),
        "{}",
        r.body
    );
    // Valid PromQL keel does not evaluate: a clear 400, not a wrong answer.
    let r = api::handle(
        &s,
        "GET",
        "/api/v1/query",
        "query=label_replace(x,\"a\",\"$1\",\"job\",\"(.*)\")",
        b"",
        0,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("function label_replace() is not supported by keel"),
        "{}",
        r.body
    );
    let r = api::handle(&s, "GET", "/api/v1/query", "query=rate(x[5m:1m])", b"", 0).unwrap();
    assert!(
        r.body.contains("a subquery is not supported by keel"),
        "{}",
        r.body
    );
    let r = api::handle(&s, "GET", "/api/v1/labels", "", b"", 0).unwrap();
    assert_eq!(r.body, r#"{"status":"success","data":["__name__","job"]}"#);
    let r = api::handle(&s, "GET", "/api/v1/label/job/values", "", b"", 0).unwrap();
    assert_eq!(r.body, r#"{"status":"success","data":["a"]}"#);
    let r = api::handle(&s, "GET", "/api/v1/series", "match[]=x", b"", 0).unwrap();
    assert_eq!(
        r.body,
        r#"{"status":"success","data":[{"__name__":"x","job":"a"}]}"#
    );
    assert!(api::handle(&s, "GET", "/other", "", b"", 0).is_none());
    assert_eq!(api::fmt_value(1e21), "1000000000000000000000");
    assert_eq!(api::fmt_value(1e-7), "0.0000001");
    assert_eq!(api::fmt_time(-1500), "-1.500");
}
