//! `CronJobs` in `keel server` on a fake clock (the server's
//! `KEEL_TEST_CLOCK_FILE` test hook: the test writes the time), driven by
//! kubectl 1.33: Jobs at scheduled times, `concurrencyPolicy`
//! Allow/Forbid/Replace, history limits, time zones,
//! `startingDeadlineSeconds`, too many missed times, `suspend`.

#[path = "server_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{FakeKubelet, KeelServer, eventually, kubectls};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(40);
const HOUR: i64 = 3600;

struct Env {
    s: KeelServer,
    k: PathBuf,
    clock: PathBuf,
    _dir: tempfile::TempDir,
    /// A midnight (UTC) two days ahead: after any real creation time.
    base: i64,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("now");
    let real = k8s_openapi::jiff::Timestamp::now().as_second();
    let base = (real / 86_400 + 2) * 86_400;
    let s = KeelServer::start_with_env(
        None,
        vec![("KEEL_TEST_CLOCK_FILE".into(), clock.display().to_string())],
    );
    Env {
        s,
        k: kubectls().remove(1),
        clock,
        _dir: dir,
        base,
    }
}

fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Env {
    fn set_clock(&self, secs: i64) {
        std::fs::write(&self.clock, rfc3339(secs)).unwrap();
    }

    fn create(&self, name: &str, schedule: &str, extra: &str) {
        let cj = format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  schedule: \"{schedule}\"\n{extra}  jobTemplate:\n    spec:\n      backoffLimit: 0\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: main, image: busybox}}]\n"
        );
        self.s.ok_in(&self.k, &["create", "-f", "-"], Some(&cj));
    }

    fn get(&self, what: &str) -> Value {
        let out = self
            .s
            .ok(&self.k, &["-n", "default", "get", what, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// Names of the Jobs of `CronJob` `cj`, sorted.
    fn jobs_of(&self, cj: &str) -> Vec<String> {
        let v = self.get("jobs");
        let mut names: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                j["metadata"]["ownerReferences"][0]["name"] == cj
                    && j["metadata"].get("deletionTimestamp").is_none()
            })
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    fn wait_jobs(&self, cj: &str, want: &[String]) {
        eventually(&format!("jobs of {cj}: {want:?}"), LIMIT, || {
            self.jobs_of(cj) == want
        });
    }

    /// Ends the pod of Job `job` with `phase`, then waits for the Job to
    /// finish.
    fn finish(&self, job: &str, phase: &str) {
        let mut pod = String::new();
        eventually(&format!("the pod of {job}"), LIMIT, || {
            let out = self.s.ok(
                &self.k,
                &[
                    "-n",
                    "default",
                    "get",
                    "pods",
                    "-l",
                    &format!("job-name={job}"),
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ],
            );
            pod = out
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            !pod.is_empty()
        });
        let code = i32::from(phase != "Succeeded");
        FakeKubelet::finish_pod(&self.s, &self.k, "default", &pod, phase, code, None);
        let cond = if phase == "Succeeded" {
            "complete"
        } else {
            "failed"
        };
        self.s.ok(
            &self.k,
            &[
                "-n",
                "default",
                "wait",
                &format!("--for=condition={cond}"),
                &format!("job/{job}"),
                "--timeout=30s",
            ],
        );
    }

    fn has_event(&self, reason: &str) -> bool {
        let v = self.get("events");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == reason)
    }
}

fn job_name(cj: &str, at: i64) -> String {
    format!("{cj}-{}", at / 60)
}

#[test]
fn allow_runs_side_by_side_and_history_is_limited() {
    let e = setup();
    let b = e.base;
    e.set_clock(b + 10);
    e.create(
        "tick",
        "*/5 * * * *",
        "  successfulJobsHistoryLimit: 2\n  failedJobsHistoryLimit: 1\n",
    );
    // Days of missed times since creation: reported, the latest one runs.
    let first = job_name("tick", b);
    e.wait_jobs("tick", std::slice::from_ref(&first));
    eventually("TooManyMissedTimes", LIMIT, || {
        e.has_event("TooManyMissedTimes")
    });
    let j = e.get(&format!("job/{first}"));
    assert_eq!(
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        rfc3339(b)
    );
    // Allow: the next time runs beside the active one.
    e.set_clock(b + 5 * 60 + 10);
    let second = job_name("tick", b + 300);
    e.wait_jobs("tick", &[first.clone(), second.clone()]);
    eventually("two active", LIMIT, || {
        e.get("cronjob/tick")["status"]["active"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let cj = e.get("cronjob/tick");
    assert_eq!(cj["status"]["lastScheduleTime"], rfc3339(b + 300));
    e.finish(&first, "Succeeded");
    e.finish(&second, "Succeeded");
    eventually("lastSuccessfulTime", LIMIT, || {
        e.get("cronjob/tick")["status"]["lastSuccessfulTime"].is_string()
    });
    e.set_clock(b + 10 * 60 + 10);
    let third = job_name("tick", b + 600);
    e.finish(&third, "Succeeded");
    // Three successful Jobs, two kept: the oldest goes.
    e.wait_jobs("tick", &[second.clone(), third.clone()]);
    // Failed history: one kept.
    e.set_clock(b + 15 * 60 + 10);
    let fourth = job_name("tick", b + 900);
    e.finish(&fourth, "Failed");
    e.set_clock(b + 20 * 60 + 10);
    let fifth = job_name("tick", b + 1200);
    e.finish(&fifth, "Failed");
    e.wait_jobs("tick", &[second, third, fifth]);
    let out = e.s.ok(&e.k, &["-n", "default", "get", "cronjobs"]);
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]
    );
}

#[test]
fn forbid_skips_and_replace_replaces() {
    let e = setup();
    let b = e.base;
    e.set_clock(b + 10);
    e.create("forbid", "0 * * * *", "  concurrencyPolicy: Forbid\n");
    e.create("replace", "0 * * * *", "  concurrencyPolicy: Replace\n");
    let f1 = job_name("forbid", b);
    e.wait_jobs("forbid", std::slice::from_ref(&f1));
    e.wait_jobs("replace", &[job_name("replace", b)]);
    e.set_clock(b + HOUR + 10);
    // Replace: the active Job is deleted for the new one.
    e.wait_jobs("replace", &[job_name("replace", b + HOUR)]);
    eventually("JobAlreadyActive", LIMIT, || {
        e.has_event("JobAlreadyActive")
    });
    assert_eq!(e.jobs_of("forbid"), std::slice::from_ref(&f1));
    // Once it finishes, the skipped time (no deadline) starts late, as
    // upstream does.
    e.finish(&f1, "Succeeded");
    e.wait_jobs("forbid", &[f1, job_name("forbid", b + HOUR)]);
}

#[test]
fn time_zone_starting_deadline_and_suspend() {
    let e = setup();
    let b = e.base;
    e.set_clock(b + 10);
    // 09:30 in Kolkata (UTC+05:30) is 04:00 UTC.
    e.create(
        "tz",
        "30 9 * * *",
        "  timeZone: Asia/Kolkata\n  startingDeadlineSeconds: 120\n",
    );
    // A bad zone or schedule is refused at create, as the apiserver does.
    let bad = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: bad, namespace: default}\nspec:\n  schedule: \"61 * * * *\"\n  timeZone: Mars/Olympus\n  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}}\n";
    let err = e.s.fails(&e.k, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains(
            "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"
        ) && err.contains("spec.schedule: Invalid value: \"61 * * * *\""),
        "{err}"
    );
    e.set_clock(b + 4 * HOUR - 60);
    std::thread::sleep(Duration::from_secs(1));
    assert!(e.jobs_of("tz").is_empty());
    e.set_clock(b + 4 * HOUR + 30);
    let first = job_name("tz", b + 4 * HOUR);
    e.wait_jobs("tz", std::slice::from_ref(&first));
    let j = e.get(&format!("job/{first}"));
    let day = rfc3339(b);
    assert_eq!(
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        format!("{}T09:30:00+05:30", &day[..10])
    );
    assert_eq!(
        e.get("cronjob/tz")["status"]["lastScheduleTime"],
        rfc3339(b + 4 * HOUR)
    );
    let out = e.s.ok(&e.k, &["-n", "default", "get", "cronjob", "tz"]);
    assert!(
        out.contains("Asia/Kolkata") && out.contains("False"),
        "{out}"
    );
    // Five minutes late with a two-minute deadline: that day is skipped.
    e.set_clock(b + 86_400 + 4 * HOUR + 300);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(e.jobs_of("tz"), std::slice::from_ref(&first));
    // Suspended: nothing starts until resumed (within the deadline).
    e.s.ok(
        &e.k,
        &[
            "-n",
            "default",
            "patch",
            "cronjob",
            "tz",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    e.set_clock(b + 2 * 86_400 + 4 * HOUR + 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(e.jobs_of("tz"), std::slice::from_ref(&first));
    e.s.ok(
        &e.k,
        &[
            "-n",
            "default",
            "patch",
            "cronjob",
            "tz",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
    );
    e.wait_jobs("tz", &[first, job_name("tz", b + 2 * 86_400 + 4 * HOUR)]);
}
