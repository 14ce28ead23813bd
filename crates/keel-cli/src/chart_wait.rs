//! `--wait`: poll a release's objects until they are ready, as Helm 4's
//! status watcher judges them: kstatus's `Compute` (the generic checks of
//! deletion, observed generation and `Reconciling`/`Stalled` conditions,
//! then the rules for the built-in kinds, then a `Ready` condition), with
//! Helm's own Job rule under `--wait-for-jobs` (current only once
//! complete). A failed object is not waited for. On timeout, or once only
//! failed objects are left, each object that is not current is named as
//! Helm names it (`resource Kind/ns/name not ready. status: …, message: …`).

use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::chart_release::Ctx;

/// kstatus's verdict: a status word (`Current`, `InProgress`, `Failed`,
/// `Terminating`, `NotFound`) and its message.
type Verdict = (&'static str, String);

fn field<'a>(o: &'a J, path: &str) -> &'a J {
    path.split('.').fold(o, |v, k| &v[k])
}

/// kstatus's `GetIntField`: the integer at `path`, else `default`.
fn int(o: &J, path: &str, default: i64) -> i64 {
    field(o, path).as_i64().unwrap_or(default)
}

fn text<'a>(o: &'a J, path: &str, default: &'a str) -> &'a str {
    field(o, path).as_str().unwrap_or(default)
}

fn conditions(o: &J) -> Vec<&J> {
    o["status"]["conditions"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn has<'a>(o: &'a J, ty: &str, status: &str) -> Option<&'a J> {
    conditions(o)
        .into_iter()
        .find(|c| c["type"] == ty && c["status"] == status)
}

fn msg(c: &J) -> String {
    c["message"].as_str().unwrap_or_default().to_string()
}

fn current(m: impl Into<String>) -> Verdict {
    ("Current", m.into())
}

fn in_progress(m: impl Into<String>) -> Verdict {
    ("InProgress", m.into())
}

/// kstatus's `checkGenericProperties`.
fn generic(o: &J) -> Option<Verdict> {
    if o["metadata"]["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Some(("Terminating", "Resource scheduled for deletion".into()));
    }
    if let (Some(g), Some(seen)) = (
        o["metadata"]["generation"].as_i64(),
        o["status"]["observedGeneration"].as_i64(),
    ) && g != seen
    {
        return Some(in_progress(format!(
            "{} generation is {g}, but latest observed generation is {seen}",
            text(o, "kind", "")
        )));
    }
    for c in conditions(o) {
        if c["status"] != "True" {
            continue;
        }
        match c["type"].as_str() {
            Some("Reconciling") => return Some(in_progress(msg(c))),
            Some("Stalled") => return Some(("Failed", msg(c))),
            _ => {}
        }
    }
    None
}

/// kstatus's `Compute`: generic checks, the kind's rules, a `Ready`
/// condition, else current.
pub(crate) fn compute(o: &J) -> Verdict {
    if let Some(v) = generic(o) {
        return v;
    }
    let group = text(o, "apiVersion", "")
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let kind = text(o, "kind", "");
    let v = match (group, kind) {
        ("", "Service") => Some(service(o)),
        ("", "Pod") => Some(pod(o)),
        ("", "Secret" | "ConfigMap") | ("batch", "CronJob") => {
            Some(current("Resource is always ready"))
        }
        ("", "PersistentVolumeClaim") => Some(pvc(o)),
        ("apps", "StatefulSet") => Some(statefulset(o)),
        ("apps" | "extensions", "DaemonSet") => Some(daemonset(o)),
        ("apps" | "extensions", "Deployment") => Some(deployment(o)),
        ("apps" | "extensions", "ReplicaSet") => Some(replicaset(o)),
        ("policy", "PodDisruptionBudget") => Some(current("AllowedDisruptions has been computed.")),
        ("batch", "Job") => Some(job(o)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(o)),
        _ => None,
    };
    if let Some(v) = v {
        return v;
    }
    for c in conditions(o).into_iter().filter(|c| c["type"] == "Ready") {
        match c["status"].as_str() {
            Some("True") => return current("Resource is Ready"),
            Some("False" | "Unknown") => return in_progress(msg(c)),
            _ => {}
        }
    }
    current("Resource is current")
}

fn service(o: &J) -> Verdict {
    if text(o, "spec.type", "ClusterIP") == "LoadBalancer"
        && text(o, "spec.clusterIP", "").is_empty()
    {
        return in_progress("ClusterIP not set. Service type: LoadBalancer");
    }
    current("Service is ready")
}

fn pod(o: &J) -> Verdict {
    match text(o, "status.phase", "") {
        "Succeeded" => current("Pod has completed successfully"),
        "Failed" => current("Pod has completed, but not successfully"),
        "Running" => {
            if has(o, "Ready", "True").is_some() {
                return current("Pod is Ready");
            }
            let looping: Vec<&str> = o["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["state"]["waiting"]["reason"] == "CrashLoopBackOff")
                .filter_map(|c| c["name"].as_str())
                .collect();
            if looping.is_empty() {
                in_progress("Pod is running but is not Ready")
            } else {
                (
                    "Failed",
                    format!("Containers in CrashLoop state: {}", looping.join(",")),
                )
            }
        }
        "Pending" => {
            let unschedulable = conditions(o).into_iter().any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
            });
            if !unschedulable {
                return in_progress("Pod is in the Pending phase");
            }
            // kstatus gives a pod 15 s to be scheduled before it calls it failed
            let created =
                chrono::DateTime::parse_from_rfc3339(text(o, "metadata.creationTimestamp", ""))
                    .map(|t| t.with_timezone(&chrono::Utc));
            match created {
                Ok(t) if chrono::Utc::now() - chrono::Duration::seconds(15) < t => {
                    in_progress("Pod has not been scheduled")
                }
                _ => ("Failed", "Pod could not be scheduled".into()),
            }
        }
        "" => in_progress("Pod phase not available"),
        other => ("Unknown", format!("unknown phase {other}")),
    }
}

fn pvc(o: &J) -> Verdict {
    match text(o, "status.phase", "unknown") {
        "Bound" => current("PVC is Bound"),
        phase => in_progress(format!("PVC is not Bound. phase: {phase}")),
    }
}

fn statefulset(o: &J) -> Verdict {
    if text(o, "spec.updateStrategy.type", "") == "OnDelete" {
        return current("StatefulSet is using the ondelete update strategy");
    }
    let spec = int(o, "spec.replicas", 1);
    let ready = int(o, "status.readyReplicas", 0);
    let cur = int(o, "status.currentReplicas", 0);
    let updated = int(o, "status.updatedReplicas", 0);
    let have = int(o, "status.replicas", 0);
    let partition = int(o, "spec.updateStrategy.rollingUpdate.partition", -1);
    if spec > have {
        return in_progress(format!("Replicas: {have}/{spec}"));
    }
    if spec > ready {
        return in_progress(format!("Ready: {ready}/{spec}"));
    }
    if have > spec {
        return in_progress(format!("Pending termination: {}", have - spec));
    }
    if partition != -1 {
        if updated < spec - partition {
            return in_progress(format!("updated: {updated}/{}", spec - partition));
        }
        return current(format!("Partition rollout complete. updated: {updated}"));
    }
    if spec > cur {
        return in_progress(format!("current: {cur}/{spec}"));
    }
    if text(o, "status.currentRevision", "") != text(o, "status.updateRevision", "") {
        return in_progress("Waiting for updated revision to match current");
    }
    current(format!(
        "All replicas scheduled as expected. Replicas: {have}"
    ))
}

fn daemonset(o: &J) -> Verdict {
    let kind = text(o, "kind", "");
    if !o["metadata"]["generation"].is_i64() {
        return in_progress(format!("{kind} metadata.generation not found"));
    }
    if !o["status"]["observedGeneration"].is_i64() {
        return in_progress(format!("{kind} status.observedGeneration not found"));
    }
    let want = int(o, "status.desiredNumberScheduled", -1);
    if want == -1 {
        return in_progress("Missing .status.desiredNumberScheduled");
    }
    for (label, path) in [
        ("Current", "status.currentNumberScheduled"),
        ("Updated", "status.updatedNumberScheduled"),
        ("Available", "status.numberAvailable"),
        ("Ready", "status.numberReady"),
    ] {
        let n = int(o, path, 0);
        if want > n {
            return in_progress(format!("{label}: {n}/{want}"));
        }
    }
    current(format!(
        "All replicas scheduled as expected. Replicas: {want}"
    ))
}

fn deployment(o: &J) -> Verdict {
    // without progressDeadlineSeconds the controller sets no Progressing
    let mut progressing = !o["spec"]["progressDeadlineSeconds"].is_i64();
    let mut available = false;
    for c in conditions(o) {
        match c["type"].as_str() {
            Some("Progressing") => {
                if c["reason"] == "ProgressDeadlineExceeded" {
                    return ("Failed", "Progress deadline exceeded".into());
                }
                if c["status"] == "True" && c["reason"] == "NewReplicaSetAvailable" {
                    progressing = true;
                }
            }
            Some("Available") if c["status"] == "True" => available = true,
            _ => {}
        }
    }
    let spec = int(o, "spec.replicas", 1);
    let have = int(o, "status.replicas", 0);
    let updated = int(o, "status.updatedReplicas", 0);
    let ready = int(o, "status.readyReplicas", 0);
    let avail = int(o, "status.availableReplicas", 0);
    if spec > have {
        return in_progress(format!("Replicas: {have}/{spec}"));
    }
    if spec > updated {
        return in_progress(format!("Updated: {updated}/{spec}"));
    }
    if have > spec {
        return in_progress(format!("Pending termination: {}", have - spec));
    }
    if updated > avail {
        return in_progress(format!("Available: {avail}/{updated}"));
    }
    if spec > ready {
        return in_progress(format!("Ready: {ready}/{spec}"));
    }
    if !progressing {
        return in_progress("ReplicaSet not Available");
    }
    if !available {
        return in_progress("Deployment not Available");
    }
    current(format!("Deployment is available. Replicas: {have}"))
}

fn replicaset(o: &J) -> Verdict {
    if has(o, "ReplicaFailure", "True").is_some() {
        return in_progress("Replica Failure condition. Check Pods");
    }
    let spec = int(o, "spec.replicas", 1);
    let have = int(o, "status.replicas", 0);
    for (label, path) in [
        ("Labelled", "status.fullyLabeledReplicas"),
        ("Available", "status.availableReplicas"),
        ("Ready", "status.readyReplicas"),
    ] {
        let n = int(o, path, 0);
        if spec > n {
            return in_progress(format!("{label}: {n}/{spec}"));
        }
    }
    if have > spec {
        return in_progress(format!("Pending termination: {}", have - spec));
    }
    current(format!("ReplicaSet is available. Replicas: {have}"))
}

/// kstatus's Job rule: current once started (plain `--wait`).
fn job(o: &J) -> Verdict {
    let parallelism = int(o, "spec.parallelism", 1);
    let completions = int(o, "spec.completions", parallelism);
    let succeeded = int(o, "status.succeeded", 0);
    let active = int(o, "status.active", 0);
    let failed = int(o, "status.failed", 0);
    for c in conditions(o) {
        match (c["type"].as_str(), c["status"] == "True") {
            (Some("Complete"), true) => {
                return current(format!(
                    "Job Completed. succeeded: {succeeded}/{completions}"
                ));
            }
            (Some("Failed"), true) => {
                return (
                    "Failed",
                    format!("Job Failed. failed: {failed}/{completions}"),
                );
            }
            _ => {}
        }
    }
    if text(o, "status.startTime", "").is_empty() {
        return in_progress("Job not started");
    }
    current(format!(
        "Job in progress. success:{succeeded}, active: {active}, failed: {failed}"
    ))
}

/// Helm's Job rule under `--wait-for-jobs`: current only once complete.
fn job_complete(o: &J) -> Verdict {
    let parallelism = int(o, "spec.parallelism", 1);
    let completions = int(o, "spec.completions", parallelism);
    if has(o, "Complete", "True").is_some() {
        let succeeded = int(o, "status.succeeded", 0);
        return current(format!(
            "Job Completed. succeeded: {succeeded}/{completions}"
        ));
    }
    if has(o, "Failed", "True").is_some() {
        let failed = int(o, "status.failed", 0);
        return (
            "Failed",
            format!("Job Failed. failed: {failed}/{completions}"),
        );
    }
    in_progress("Job in progress")
}

/// Helm's rules for a hook's resource (`WatchUntilReady`): Jobs until
/// complete, Pods until they succeed, anything else at once.
fn hook_verdict(o: &J) -> Verdict {
    let name = text(o, "metadata.name", "");
    match text(o, "kind", "") {
        "Job" => job_complete(o),
        "Pod" => match text(o, "status.phase", "") {
            "Succeeded" => current(format!("pod {name} succeeded")),
            "Failed" => ("Failed", format!("pod {name} failed")),
            _ => in_progress("Pod in progress"),
        },
        _ => current("Resource is current"),
    }
}

/// Helm's line for an object that is not current.
fn not_ready(kind: &str, ns: &str, name: &str, (status, message): &Verdict) -> String {
    format!("resource {kind}/{ns}/{name} not ready. status: {status}, message: {message}")
}

/// Helm's `WatchUntilReady` for one hook resource at `path`: done when it
/// is current; a failed one, or the deadline, is an error naming it.
pub fn wait_hook(ctx: &Ctx, path: &str, obj: &J, deadline: Instant) -> anyhow::Result<()> {
    let (kind, name) = (text(obj, "kind", ""), text(obj, "metadata.name", ""));
    let ns = text(obj, "metadata.namespace", "");
    loop {
        let v = match ctx.kube.get(path)? {
            None => ("NotFound", "Resource not found".to_string()),
            Some(live) => hook_verdict(&live),
        };
        match v.0 {
            "Current" => return Ok(()),
            "Failed" => anyhow::bail!("{}", not_ready(kind, ns, name, &v)),
            _ if Instant::now() >= deadline => {
                anyhow::bail!(
                    "{}\ncontext deadline exceeded",
                    not_ready(kind, ns, name, &v)
                );
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn crd(o: &J) -> Verdict {
    for c in conditions(o) {
        if c["type"] == "NamesAccepted" && c["status"] == "False" {
            return ("Failed", msg(c));
        }
        if c["type"] == "Established" {
            if c["status"] == "False" && c["reason"] != "Installing" {
                return ("Failed", msg(c));
            }
            if c["status"] == "True" {
                return current("CRD is established");
            }
        }
    }
    in_progress("Install in progress")
}

/// Waits until every object of `objs` is current (failed ones are not
/// waited for), or fails naming those that are not.
pub fn wait(ctx: &Ctx, objs: &[J], timeout: Duration, jobs: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for o in objs {
            // Helm does not wait for a paused Deployment
            if o["kind"] == "Deployment" && o["spec"]["paused"] == true {
                continue;
            }
            let Ok((path, namespaced)) = ctx.kube.object_path(o, &ctx.ns) else {
                continue;
            };
            let v = match ctx.kube.get(&path)? {
                None => ("NotFound", "Resource not found".to_string()),
                Some(live) if jobs && live["kind"] == "Job" => job_complete(&live),
                Some(live) => compute(&live),
            };
            let ns = o["metadata"]["namespace"]
                .as_str()
                .unwrap_or(if namespaced { &ctx.ns } else { "" });
            seen.push((o, ns.to_string(), v));
        }
        let done = seen
            .iter()
            .all(|(_, _, (s, _))| *s == "Current" || *s == "Failed");
        let late = Instant::now() >= deadline;
        if done || late {
            let mut errs: Vec<String> = seen
                .iter()
                .filter(|(_, _, v)| v.0 != "Current")
                .map(|(o, ns, v)| {
                    not_ready(text(o, "kind", ""), ns, text(o, "metadata.name", ""), v)
                })
                .collect();
            if !done {
                errs.push("context deadline exceeded".into());
            }
            if errs.is_empty() {
                return Ok(());
            }
            anyhow::bail!("{}", errs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kstatus_rules() {
        let dep = |avail: i64| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 1},
                "spec": {"replicas": 2, "progressDeadlineSeconds": 600},
                "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                    "readyReplicas": avail, "availableReplicas": avail,
                    "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                                   {"type": "Available", "status": "True"}]}})
        };
        assert_eq!(compute(&dep(1)), in_progress("Available: 1/2"));
        assert_eq!(
            compute(&dep(2)),
            current("Deployment is available. Replicas: 2")
        );
        let mut old = dep(2);
        old["metadata"]["generation"] = serde_json::json!(2);
        assert_eq!(
            compute(&old),
            in_progress("Deployment generation is 2, but latest observed generation is 1")
        );
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]}});
        assert_eq!(
            compute(&pod),
            in_progress("Pod is running but is not Ready")
        );
        let pvc = serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}});
        assert_eq!(compute(&pvc).0, "Current");
        // Helm 4's watcher: a LoadBalancer is ready once it has a cluster IP
        let lb = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}, "status": {}});
        assert_eq!(compute(&lb).0, "Current");
        let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"startTime": "x", "active": 1}});
        assert_eq!(compute(&job).0, "Current");
        assert_eq!(job_complete(&job), in_progress("Job in progress"));
        let cr = serde_json::json!({"apiVersion": "x/v1", "kind": "W",
            "status": {"conditions": [{"type": "Ready", "status": "False", "message": "m"}]}});
        assert_eq!(compute(&cr), in_progress("m"));
    }
}
