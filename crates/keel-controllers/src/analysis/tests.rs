//! The run loop with a fake clock and a fake provider: the controller's
//! plan → tasks → record → finish cycle without I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(s)).unwrap()
}

/// Drives a run like the controller does: at each due time, every due
/// measurement gets the phase `fake` returns (with the measurement's
/// index); returns the final status and the times measurements were taken.
fn drive(
    spec: &Value,
    mut fake: impl FnMut(&str, usize) -> Phase,
    limit: usize,
) -> (RunStatus, Vec<(String, i64)>) {
    let plan = plan(spec, &BTreeMap::new()).unwrap();
    let mut status = RunStatus::default();
    let mut now = t0();
    let mut taken = Vec::new();
    let mut n: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..limit {
        let stopping = run::terminating(plan.terminate, &status);
        for t in run::tasks(&plan.metrics, &status, plan.terminate, now) {
            let m = &plan.metrics[t.metric];
            let i = n.entry(m.name.clone()).or_default();
            let phase = if t.incomplete.is_some() && stopping {
                Phase::Successful
            } else {
                fake(&m.name, *i)
            };
            *i += 1;
            taken.push((m.name.clone(), now.duration_since(t0()).as_secs()));
            let meas = Measurement {
                phase,
                started_at: Some(run::stamp(now)),
                message: if phase == Phase::Error {
                    "boom".into()
                } else {
                    String::new()
                },
                ..Measurement::default()
            };
            run::record(
                &mut status,
                m,
                plan.dry_run[t.metric],
                t.incomplete.is_some(),
                meas,
                now,
            );
        }
        match finish(&plan, &mut status, now) {
            Some(next) => now = next.max(secs(now, 0)),
            None if status.phase.completed() => break,
            None => now = secs(now, 1),
        }
    }
    (status, taken)
}

#[test]
fn one_measurement_without_interval_or_count() {
    let spec = json!({"metrics": [{"name": "m", "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Successful, 10);
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(taken, vec![("m".to_string(), 0)]);
    assert_eq!(
        s.run_summary,
        Summary {
            count: 1,
            successful: 1,
            ..Summary::default()
        }
    );
    assert_eq!(s.metric_results[0].count, 1);
    assert!(s.completed_at.is_some() && s.started_at.is_some());
}

#[test]
fn interval_and_count_space_the_measurements() {
    let spec = json!({"metrics": [{"name": "m", "interval": "30s", "count": 3,
        "initialDelay": "1m", "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Successful, 20);
    assert_eq!(s.phase, Phase::Successful);
    let times: Vec<i64> = taken.iter().map(|t| t.1).collect();
    assert_eq!(times, vec![60, 90, 120]);
    assert_eq!(s.metric_results[0].successful, 3);
}

#[test]
fn fails_once_failures_exceed_the_limit() {
    let spec = json!({"metrics": [{"name": "m", "interval": "10s", "count": 10,
        "failureLimit": 2, "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Failed, 30);
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(taken.len(), 3, "stops at the third failure");
    assert_eq!(
        s.message,
        "Metric \"m\" assessed Failed due to failed (3) > failureLimit (2)"
    );
    assert_eq!(s.run_summary.failed, 1);
}

#[test]
fn failures_within_the_limit_still_succeed() {
    let spec = json!({"metrics": [{"name": "m", "interval": "10s", "count": 4,
        "failureLimit": 2, "provider": {"web": {}}}]});
    let (s, _) = drive(
        &spec,
        |_, i| {
            if i < 2 {
                Phase::Failed
            } else {
                Phase::Successful
            }
        },
        30,
    );
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(s.metric_results[0].failed, 2);
}

#[test]
fn errors_retry_every_ten_seconds_up_to_the_consecutive_limit() {
    let spec = json!({"metrics": [{"name": "m", "interval": "1m", "count": 3,
        "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Error, 30);
    assert_eq!(s.phase, Phase::Error);
    // Default consecutiveErrorLimit 4: the fifth error ends it; errors are
    // retried after 10 s, not the interval, and do not count.
    let times: Vec<i64> = taken.iter().map(|t| t.1).collect();
    assert_eq!(times, vec![0, 10, 20, 30, 40]);
    let r = &s.metric_results[0];
    assert_eq!((r.count, r.error, r.consecutive_error), (0, 5, 5));
    assert!(
        s.message
            .contains("consecutiveErrors (5) > consecutiveErrorLimit (4)"),
        "{}",
        s.message
    );
    assert!(
        s.message.ends_with(": \"Error Message: boom\""),
        "{}",
        s.message
    );
}

#[test]
fn an_error_then_success_resets_the_streak() {
    let spec = json!({"metrics": [{"name": "m", "interval": "1m", "count": 2,
        "consecutiveErrorLimit": 1, "provider": {"web": {}}}]});
    let (s, _) = drive(
        &spec,
        |_, i| {
            if i % 2 == 0 {
                Phase::Error
            } else {
                Phase::Successful
            }
        },
        30,
    );
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(s.metric_results[0].error, 2);
}

#[test]
fn inconclusive_over_the_limit() {
    let spec = json!({"metrics": [{"name": "m", "interval": "5s", "count": 5,
        "inconclusiveLimit": 1, "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Inconclusive, 30);
    assert_eq!(s.phase, Phase::Inconclusive);
    assert_eq!(taken.len(), 2);
}

#[test]
fn a_failed_metric_stops_the_others_and_dry_run_ones_do_not_decide() {
    let spec = json!({"metrics": [
            {"name": "slow", "interval": "1m", "provider": {"web": {}}},
            {"name": "bad", "provider": {"web": {}}},
            {"name": "dry", "provider": {"web": {}}}],
        "dryRun": [{"metricName": "dry"}]});
    let (s, taken) = drive(
        &spec,
        |n, _| {
            if n == "slow" {
                Phase::Successful
            } else {
                Phase::Failed
            }
        },
        30,
    );
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(taken.iter().filter(|t| t.0 == "slow").count(), 1);
    let dry = s.result("dry").unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        dry.message,
        "Metric assessed Failed due to failed (1) > failureLimit (0)"
    );
    assert_eq!(s.dry_run_summary.as_ref().unwrap().failed, 1);
    assert_eq!(s.run_summary.count, 2);
    assert_eq!(s.result("slow").unwrap().phase, Phase::Successful);

    let only_dry = json!({"metrics": [{"name": "dry", "provider": {"web": {}}}],
        "dryRun": [{"metricName": "*"}]});
    let (s, _) = drive(&only_dry, |_, _| Phase::Failed, 5);
    assert_eq!(s.phase, Phase::Successful);
}

#[test]
fn terminate_ends_an_endless_metric_successfully() {
    let mut spec = json!({"metrics": [{"name": "m", "interval": "10s",
        "provider": {"web": {}}}]});
    let (s, taken) = drive(&spec, |_, _| Phase::Successful, 5);
    assert_eq!(s.phase, Phase::Running, "no count: runs until terminated");
    assert_eq!(taken.len(), 5);
    spec["terminate"] = json!(true);
    let plan = plan(&spec, &BTreeMap::new()).unwrap();
    let mut s = s;
    let now = secs(t0(), 100);
    assert!(run::tasks(&plan.metrics, &s, true, now).is_empty());
    assert_eq!(finish(&plan, &mut s, now), None);
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(s.message, "Run Terminated");
}

#[test]
fn in_flight_measurements_are_resumed_and_terminated() {
    let spec = json!({"metrics": [{"name": "j", "provider": {"job": {}}}]});
    let p = plan(&spec, &BTreeMap::new()).unwrap();
    let mut s = RunStatus::default();
    let now = t0();
    let running = Measurement {
        phase: Phase::Running,
        ..Measurement::default()
    };
    run::record(&mut s, &p.metrics[0], false, false, running, now);
    assert_eq!(finish(&p, &mut s, now), None);
    assert_eq!(s.phase, Phase::Running);
    let t = run::tasks(&p.metrics, &s, false, now);
    assert!(t.len() == 1 && t[0].incomplete.is_some());
    let done = Measurement {
        phase: Phase::Successful,
        ..Measurement::default()
    };
    run::record(&mut s, &p.metrics[0], false, true, done, secs(now, 5));
    finish(&p, &mut s, secs(now, 5));
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(s.metric_results[0].measurements.len(), 1);
    assert!(s.metric_results[0].measurements[0].finished_at.is_some());
}

#[test]
fn measurement_history_is_trimmed() {
    let spec = json!({"metrics": [
        {"name": "a", "interval": "1s", "count": 15, "provider": {"web": {}}},
        {"name": "b", "interval": "1s", "count": 15, "provider": {"web": {}}}],
        "measurementRetention": [{"metricName": "b", "limit": 20}]});
    let (s, _) = drive(&spec, |_, _| Phase::Successful, 40);
    assert_eq!(s.phase, Phase::Successful);
    assert_eq!(s.result("a").unwrap().measurements.len(), 10);
    assert_eq!(s.result("b").unwrap().measurements.len(), 15);
    assert_eq!(s.result("a").unwrap().count, 15);
}

#[test]
fn args_are_substituted_and_missing_ones_are_errors() {
    let spec = json!({"metrics": [{"name": "m", "count": "{{args.n}}", "successCondition": "result == '{{ args.want }}'",
        "provider": {"web": {"url": "http://{{args.host}}/x?q={{args.host}}"}}}]});
    let args: BTreeMap<String, Option<String>> = [
        ("n".to_string(), Some("3".to_string())),
        ("want".to_string(), Some("ok".to_string())),
        ("host".to_string(), Some("svc:80".to_string())),
    ]
    .into();
    let p = plan(&spec, &args).unwrap();
    assert_eq!(p.metrics[0].count, Some(3));
    assert_eq!(p.metrics[0].success_condition, "result == 'ok'");
    assert_eq!(
        p.metrics[0].provider["web"]["url"],
        "http://svc:80/x?q=svc:80"
    );
    let mut missing = args.clone();
    missing.insert("host".into(), None);
    assert_eq!(
        plan(&spec, &missing).unwrap_err(),
        "Unable to resolve metric arguments: failed to resolve {{args.host}}"
    );
}

#[test]
fn invalid_specs_are_refused_with_argos_words() {
    let bad = |spec: Value| plan(&spec, &BTreeMap::new()).unwrap_err();
    assert!(bad(json!({"metrics": []})).contains("metrics must be non-empty"));
    assert!(
        bad(json!({"metrics": [{"name": "m", "provider": {}}]}))
            .contains("metric 'm' must specify exactly one provider")
    );
    assert!(
        bad(json!({"metrics": [{"name": "m", "interval": "soon", "provider": {"web": {}}}]}))
            .contains("invalid duration")
    );
    assert!(
        bad(json!({"metrics": [{"name": "m", "provider": {"web": {}}}],
        "dryRun": [{"metricName": "other"}]}))
        .contains("doesn't match with any metric")
    );
}

#[test]
fn go_durations() {
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("1.5h"), Some(Duration::from_mins(90)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("3d"), None);
}

#[test]
fn status_serializes_as_argo_writes_it() {
    let spec = json!({"metrics": [{"name": "m", "provider": {"web": {}}}]});
    let (s, _) = drive(&spec, |_, _| Phase::Successful, 3);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["phase"], "Successful");
    assert_eq!(
        v["metricResults"][0]["measurements"][0]["phase"],
        "Successful"
    );
    assert_eq!(v["metricResults"][0]["count"], 1);
    assert_eq!(v["runSummary"], json!({"count": 1, "successful": 1}));
    assert_eq!(v["startedAt"], "2026-01-01T00:00:00Z");
    let back: RunStatus = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
    let unset: RunStatus = serde_json::from_value(json!({})).unwrap();
    assert_eq!(unset.phase, Phase::Unset);
}

/// A one-thread HTTP server on 127.0.0.1: `/ok` and `/bad` answer JSON,
/// `/500` an error; returns its port.
fn json_server() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, body) = match path.as_str() {
                "/ok" => ("200 OK", r#"{"data":{"ok":true,"rate":0.99}}"#),
                "/bad" => ("200 OK", r#"{"data":{"ok":false,"rate":0.5}}"#),
                _ => ("500 Internal Server Error", "{}"),
            };
            let _ = write!(
                c,
                "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

async fn wait_phase(api: &keel_api::Loopback, name: &str, want: &str) -> Value {
    let runs = analysisruns().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.get(runs, Some("default"), name).await.unwrap().unwrap();
        if r["status"]["phase"] == want {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never {want}: {}",
            r["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn analysis_run(name: &str, metrics: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"metrics": metrics, "args": [{"name": "port", "value": "x"}]}})
}

/// The controller against a real API server: web metrics succeed and fail
/// (after failureLimit), a prometheus metric for keel's Service is answered
/// in-process, a job metric follows its Job's conditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = keel_api::Server::bind(keel_api::Config {
        state_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore: None,
    })
    .await
    .unwrap();
    let api = server.loopback();
    set_local_prometheus(std::sync::Arc::new(|q: &str| {
        assert!(
            q.contains("query=sum%28up%29") || q.contains("query=sum(up)"),
            "{q}"
        );
        (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#.to_string())
    }));
    tokio::spawn(spawn(
        api.clone(),
        std::sync::Arc::new(crate::clock::SystemClock),
    ));
    let port = json_server();
    let runs = loop {
        if let Some(r) = analysisruns() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let web = |path: &str| json!({"web": {"url": format!("http://127.0.0.1:{port}{path}"), "jsonPath": "{$.data}"}});
    let mut good = analysis_run(
        "good",
        json!([{"name": "ok", "interval": "1s", "count": 2,
        "successCondition": "result.ok && result.rate >= 0.95", "provider": web("/ok")}]),
    );
    good["spec"]["args"] = json!([{"name": "path", "value": "/ok"}]);
    good["spec"]["metrics"][0]["provider"]["web"]["url"] =
        json!(format!("http://127.0.0.1:{port}{{{{args.path}}}}"));
    api.create(runs, good, "test").await.unwrap();
    api.create(
        runs,
        analysis_run(
            "bad",
            json!([{"name": "ok", "interval": "200ms", "count": 5,
        "failureLimit": 1, "successCondition": "result.ok", "provider": web("/bad")}]),
        ),
        "test",
    )
    .await
    .unwrap();
    api.create(runs, analysis_run("prom", json!([{"name": "up", "successCondition": "result[0] == 3",
        "provider": {"prometheus": {"address": "http://prometheus.keel-system.svc:9090", "query": "sum(up)"}}}])), "test").await.unwrap();
    api.create(
        runs,
        analysis_run(
            "job",
            json!([{"name": "smoke", "provider": {"job": {"spec": {
        "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}}}]),
        ),
        "test",
    )
    .await
    .unwrap();

    let good = wait_phase(&api, "good", "Successful").await;
    let res = &good["status"]["metricResults"][0];
    assert_eq!(
        (res["count"].as_i64(), res["successful"].as_i64()),
        (Some(2), Some(2)),
        "{good}"
    );
    assert_eq!(
        res["measurements"][0]["value"],
        json!({"ok": true, "rate": 0.99}).to_string()
    );
    let bad = wait_phase(&api, "bad", "Failed").await;
    assert_eq!(bad["status"]["metricResults"][0]["failed"], 2, "{bad}");
    assert_eq!(
        bad["status"]["message"],
        "Metric \"ok\" assessed Failed due to failed (2) > failureLimit (1)"
    );
    let prom = wait_phase(&api, "prom", "Successful").await;
    assert_eq!(
        prom["status"]["metricResults"][0]["measurements"][0]["value"],
        "[3]"
    );

    // The job metric: Running until its Job (owned by the run) completes.
    let jobs_r = jobs();
    let j = wait_phase(&api, "job", "Running").await;
    let meta = &j["status"]["metricResults"][0]["measurements"][0]["metadata"];
    let job_name = meta["job-name"].as_str().unwrap().to_string();
    let job = api
        .get(jobs_r, Some("default"), &job_name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "job");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "AnalysisRun");
    assert!(job_name.starts_with(j["metadata"]["uid"].as_str().unwrap()));
    // Plays the job controller (no kubelet here): the Job completes.
    api.modify(
        jobs_r,
        Some("default"),
        &job_name,
        Some("status"),
        "test",
        |cur| {
            let mut v = cur.clone();
            v["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
            Some(v)
        },
    )
    .await
    .unwrap();
    wait_phase(&api, "job", "Successful").await;

    // A terminated endless run is Successful, "Run Terminated".
    api.create(
        runs,
        analysis_run(
            "endless",
            json!([{"name": "ok", "interval": "100ms",
        "provider": web("/ok")}]),
        ),
        "test",
    )
    .await
    .unwrap();
    wait_phase(&api, "endless", "Running").await;
    api.modify(runs, Some("default"), "endless", None, "test", |cur| {
        let mut v = cur.clone();
        v["spec"]["terminate"] = json!(true);
        Some(v)
    })
    .await
    .unwrap();
    let e = wait_phase(&api, "endless", "Successful").await;
    assert_eq!(e["status"]["message"], "Run Terminated");
    // A 500 is an Error measurement, not a failure.
    api.create(
        runs,
        analysis_run(
            "err",
            json!([{"name": "ok", "consecutiveErrorLimit": 0,
        "provider": web("/500")}]),
        ),
        "test",
    )
    .await
    .unwrap();
    let e = wait_phase(&api, "err", "Error").await;
    assert_eq!(
        e["status"]["metricResults"][0]["measurements"][0]["message"],
        "received non 2xx response code: 500"
    );
}
