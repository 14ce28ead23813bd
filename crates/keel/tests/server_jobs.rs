//! Jobs and garbage collection converge in `keel server` as on
//! Kubernetes, driven by the real kubectl 1.33. Pods are ended by the test
//! as a kubelet would (`FakeKubelet::finish_pod`): completions never run
//! more than `parallelism` pods at once, back-off and `backoffLimit`,
//! Indexed Jobs, `podFailurePolicy`, `activeDeadlineSeconds`, `suspend`,
//! `ttlSecondsAfterFinished`.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{FakeKubelet, KeelServer, eventually, kubectls};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(40);

fn k133() -> std::path::PathBuf {
    kubectls().remove(1)
}

fn job(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: main, image: busybox}}]\n"
    )
}

fn get(s: &KeelServer, k: &Path, what: &str) -> Value {
    let out = s.ok(k, &["-n", "default", "get", what, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn try_get(s: &KeelServer, k: &Path, what: &str) -> Option<Value> {
    let out = s.kubectl_with(k, &["-n", "default", "get", what, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The pods of Job `job` (by its `job-name` label), oldest first.
fn pods_of(s: &KeelServer, k: &Path, job: &str) -> Vec<Value> {
    let out = s.ok(
        k,
        &[
            "-n",
            "default",
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn running(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp").is_none()
        && !matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap().to_string()
}

fn condition<'a>(job: &'a Value, ty: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
}

/// `kubectl wait --for=condition=<cond> job/<job>`.
fn wait_for(s: &KeelServer, k: &Path, cond: &str, job: &str) {
    s.ok(
        k,
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

fn finish(s: &KeelServer, k: &Path, pod: &str, phase: &str, code: i32, cond: Option<&str>) {
    FakeKubelet::finish_pod(s, k, "default", pod, phase, code, cond);
}

#[test]
fn completions_never_exceed_parallelism_and_kubectl_sees_complete() {
    let s = KeelServer::start(None);
    let k = k133();
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job("work", "  completions: 5\n  parallelism: 2")),
    );
    // Selector and labels are defaulted from the uid, as the registry does.
    let j = get(&s, &k, "job/work");
    let uid = j["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid.as_str()
    );
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["job-name"],
        "work"
    );
    assert_eq!(
        j["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "work"
    );
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while done < 5 {
        assert!(Instant::now() < deadline, "job did not progress");
        let pods = pods_of(&s, &k, "work");
        let active: Vec<&Value> = pods.iter().filter(|p| running(p)).collect();
        assert!(
            active.len() <= 2,
            "{} active pods with parallelism 2",
            active.len()
        );
        if active.len() < 2.min(5 - done) {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let p = active[0];
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            uid.as_str()
        );
        assert_eq!(
            p["metadata"]["finalizers"],
            serde_json::json!(["batch.kubernetes.io/job-tracking"])
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        finish(&s, &k, &name(p), "Succeeded", 0, None);
        done += 1;
    }
    wait_for(&s, &k, "complete", "work");
    let j = get(&s, &k, "job/work");
    assert_eq!(j["status"]["succeeded"], 5, "{j}");
    assert!(j["status"].get("active").is_none(), "{j}");
    assert!(j["status"]["completionTime"].is_string(), "{j}");
    let c = condition(&j, "Complete").unwrap();
    assert_eq!(c["reason"], "CompletionsReached");
    assert!(condition(&j, "SuccessCriteriaMet").is_some());
    // Counted pods lose the tracking finalizer.
    for p in pods_of(&s, &k, "work") {
        assert!(p["metadata"].get("finalizers").is_none(), "{p}");
    }
    let out = s.ok(&k, &["-n", "default", "get", "jobs"]);
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["work", "Complete", "5/5"], "{out}");
}

#[test]
fn failed_pods_back_off_then_backoff_limit_fails_the_job() {
    let s = KeelServer::start(None);
    let k = k133();
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job("flaky", "  backoffLimit: 1")),
    );
    let mut first = Vec::new();
    eventually("the first pod", LIMIT, || {
        first = pods_of(&s, &k, "flaky");
        first.len() == 1
    });
    let failed_at = Instant::now();
    finish(&s, &k, &name(&first[0]), "Failed", 1, None);
    let mut pods = Vec::new();
    eventually("a replacement pod", LIMIT, || {
        pods = pods_of(&s, &k, "flaky");
        pods.iter().any(running)
    });
    // Upstream's pod back-off: 10 s after the first failure.
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "replaced after {waited:?}"
    );
    let j = get(&s, &k, "job/flaky");
    assert_eq!(j["status"]["failed"], 1, "{j}");
    let second = pods.iter().find(|p| running(p)).unwrap();
    finish(&s, &k, &name(second), "Failed", 1, None);
    wait_for(&s, &k, "failed", "flaky");
    let j = get(&s, &k, "job/flaky");
    assert_eq!(j["status"]["failed"], 2, "{j}");
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(c["reason"], "BackoffLimitExceeded");
    assert_eq!(c["message"], "Job has reached the specified backoff limit");
    assert!(condition(&j, "FailureTarget").is_some(), "{j}");
    assert_eq!(pods_of(&s, &k, "flaky").len(), 2);
    let out = s.ok(&k, &["-n", "default", "get", "job", "flaky"]);
    assert!(out.contains("Failed"), "{out}");
}

#[test]
fn indexed_jobs_run_each_index_once() {
    let s = KeelServer::start(None);
    let k = k133();
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job(
            "ix",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        )),
    );
    let mut pods = Vec::new();
    eventually("three indexed pods", LIMIT, || {
        pods = pods_of(&s, &k, "ix");
        pods.len() == 3
    });
    let mut seen: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
                ix.as_str()
            );
            assert!(name(p).starts_with(&format!("ix-{ix}-")), "{}", name(p));
            assert_eq!(
                p["spec"]["containers"][0]["env"][0]["name"],
                "JOB_COMPLETION_INDEX"
            );
            (ix, p["spec"]["hostname"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("0", "ix-0"), ("1", "ix-1"), ("2", "ix-2")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let by_index = |i: &str| {
        pods.iter()
            .find(|p| p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == i)
            .map(name)
            .unwrap()
    };
    finish(&s, &k, &by_index("1"), "Succeeded", 0, None);
    eventually("completedIndexes 1", LIMIT, || {
        get(&s, &k, "job/ix")["status"]["completedIndexes"] == "1"
    });
    // A failed index is retried under the same index.
    finish(&s, &k, &by_index("2"), "Failed", 1, None);
    let mut retry = None;
    eventually("index 2 again", LIMIT, || {
        retry = pods_of(&s, &k, "ix").into_iter().find(|p| {
            running(p)
                && p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "2"
        });
        retry.is_some()
    });
    finish(&s, &k, &by_index("0"), "Succeeded", 0, None);
    finish(&s, &k, &name(&retry.unwrap()), "Succeeded", 0, None);
    wait_for(&s, &k, "complete", "ix");
    let j = get(&s, &k, "job/ix");
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{j}");
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
    assert_eq!(j["status"]["failed"], 1, "{j}");

    // backoffLimitPerIndex: 0: a failed index is not retried; the Job
    // fails with FailedIndexes once every index is settled.
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job(
            "per",
            "  completions: 2\n  parallelism: 2\n  completionMode: Indexed\n  backoffLimitPerIndex: 0",
        )),
    );
    eventually("two pods of per", LIMIT, || {
        pods_of(&s, &k, "per").len() == 2
    });
    let pods = pods_of(&s, &k, "per");
    let index = |p: &Value| {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let zero = pods.iter().find(|p| index(p) == "0").map(name).unwrap();
    let one = pods.iter().find(|p| index(p) == "1").map(name).unwrap();
    finish(&s, &k, &zero, "Failed", 1, None);
    eventually("failedIndexes 0", LIMIT, || {
        get(&s, &k, "job/per")["status"]["failedIndexes"] == "0"
    });
    finish(&s, &k, &one, "Succeeded", 0, None);
    wait_for(&s, &k, "failed", "per");
    let j = get(&s, &k, "job/per");
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "FailedIndexes",
        "{j}"
    );
    assert_eq!(j["status"]["completedIndexes"], "1", "{j}");
    assert_eq!(pods_of(&s, &k, "per").len(), 2, "index 0 was retried");
}

#[test]
fn pod_failure_policy_ignores_and_fails_by_rule() {
    let s = KeelServer::start(None);
    let k = k133();
    let spec = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: main, operator: In, values: [42]}\n    - action: Ignore\n      onPodConditions: [{type: DisruptionTarget}]";
    s.ok_in(&k, &["create", "-f", "-"], Some(&job("pfp", spec)));
    let mut pods = Vec::new();
    eventually("the first pod", LIMIT, || {
        pods = pods_of(&s, &k, "pfp");
        pods.len() == 1
    });
    let started = Instant::now();
    finish(
        &s,
        &k,
        &name(&pods[0]),
        "Failed",
        137,
        Some("DisruptionTarget"),
    );
    eventually("a replacement pod", LIMIT, || {
        pods = pods_of(&s, &k, "pfp");
        pods.iter().any(running)
    });
    // An ignored failure is not counted and starts no back-off.
    assert!(started.elapsed() < Duration::from_secs(8));
    let before = get(&s, &k, "job/pfp");
    assert!(before["status"].get("failed").is_none(), "{before}");
    let pname = name(pods.iter().find(|p| running(p)).unwrap());
    finish(&s, &k, &pname, "Failed", 42, None);
    wait_for(&s, &k, "failed", "pfp");
    let job = get(&s, &k, "job/pfp");
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    assert_eq!(
        failed["message"],
        format!(
            "Container main for pod default/{pname} failed with exit code 42 matching FailJob rule at index 0"
        )
    );
    assert_eq!(job["status"]["failed"], 1, "{job}");
}

#[test]
fn deadline_suspend_and_ttl() {
    let s = KeelServer::start(None);
    let k = k133();
    // Suspended: no pods until resumed.
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job("later", "  suspend: true")),
    );
    eventually("the Suspended condition", LIMIT, || {
        condition(&get(&s, &k, "job/later"), "Suspended").is_some()
    });
    assert!(pods_of(&s, &k, "later").is_empty());
    let out = s.ok(&k, &["-n", "default", "get", "job", "later"]);
    assert!(out.contains("Suspended"), "{out}");
    s.ok(
        &k,
        &[
            "-n",
            "default",
            "patch",
            "job",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
    );
    eventually("a pod after resuming", LIMIT, || {
        pods_of(&s, &k, "later").len() == 1
    });

    // activeDeadlineSeconds: the running pod is deleted, the Job fails.
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job("slow", "  activeDeadlineSeconds: 2")),
    );
    eventually("the pod of slow", LIMIT, || {
        pods_of(&s, &k, "slow").len() == 1
    });
    wait_for(&s, &k, "failed", "slow");
    let j = get(&s, &k, "job/slow");
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    eventually("the pod of slow deleted", LIMIT, || {
        pods_of(&s, &k, "slow").is_empty()
    });

    // ttlSecondsAfterFinished deletes the Job and its pods.
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&job("brief", "  ttlSecondsAfterFinished: 1")),
    );
    let mut pods = Vec::new();
    eventually("the pod of brief", LIMIT, || {
        pods = pods_of(&s, &k, "brief");
        pods.len() == 1
    });
    finish(&s, &k, &name(&pods[0]), "Succeeded", 0, None);
    eventually("brief deleted after its TTL", LIMIT, || {
        try_get(&s, &k, "job/brief").is_none()
    });
    eventually("the pods of brief deleted", LIMIT, || {
        pods_of(&s, &k, "brief").is_empty()
    });
}

fn names(s: &KeelServer, k: &Path, kind: &str, app: &str) -> Vec<Value> {
    let out = s.ok(
        k,
        &[
            "-n",
            "default",
            "get",
            kind,
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn deployment(name: &str, pod_finalizer: bool) -> String {
    let fin = if pod_finalizer {
        ", finalizers: [example.com/hold]"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}{fin}}}\n    spec: {{containers: [{{name: main, image: busybox}}]}}\n"
    )
}

/// `kubectl delete --cascade=background|orphan|foreground` on a
/// Deployment → `ReplicaSet` → Pods chain, carried out by the garbage
/// collector controller.
#[test]
fn garbage_collection_cascades_through_deployments() {
    let s = KeelServer::start(None);
    let k = k133();
    for (name, fin) in [("bg", false), ("orph", false), ("fg", true)] {
        s.ok_in(&k, &["create", "-f", "-"], Some(&deployment(name, fin)));
    }
    for name in ["bg", "orph", "fg"] {
        eventually(&format!("pods of {name}"), LIMIT, || {
            names(&s, &k, "rs", name).len() == 1 && names(&s, &k, "pods", name).len() == 2
        });
    }
    // Background: the Deployment goes at once, then its dependents.
    s.ok(&k, &["-n", "default", "delete", "deploy", "bg"]);
    eventually("bg's replica set and pods collected", LIMIT, || {
        names(&s, &k, "rs", "bg").is_empty() && names(&s, &k, "pods", "bg").is_empty()
    });
    // Orphan: the ReplicaSet stays, without its owner reference.
    s.ok(
        &k,
        &[
            "-n",
            "default",
            "delete",
            "deploy",
            "orph",
            "--cascade=orphan",
        ],
    );
    assert!(try_get(&s, &k, "deploy/orph").is_none());
    let rs = names(&s, &k, "rs", "orph");
    assert_eq!(rs.len(), 1);
    assert!(
        rs[0]["metadata"].get("ownerReferences").is_none(),
        "{}",
        rs[0]
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(names(&s, &k, "pods", "orph").len(), 2);
    // Foreground: the Deployment waits, with the foregroundDeletion
    // finalizer, until its blocking dependents are gone.
    s.ok(
        &k,
        &[
            "-n",
            "default",
            "delete",
            "deploy",
            "fg",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually("fg's pods being deleted", LIMIT, || {
        let pods = names(&s, &k, "pods", "fg");
        !pods.is_empty()
            && pods
                .iter()
                .all(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    let d = get(&s, &k, "deploy/fg");
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert!(
        d["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "foregroundDeletion"),
        "{d}"
    );
    for p in names(&s, &k, "pods", "fg") {
        s.ok(
            &k,
            &[
                "-n",
                "default",
                "patch",
                "pod",
                &name(&p),
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ],
        );
    }
    eventually("fg and its dependents gone", LIMIT, || {
        try_get(&s, &k, "deploy/fg").is_none()
            && names(&s, &k, "rs", "fg").is_empty()
            && names(&s, &k, "pods", "fg").is_empty()
    });
}
