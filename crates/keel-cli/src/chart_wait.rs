//! `--wait`: poll a release's objects until they are ready, as Helm 4's
//! status watcher judges them: Deployments with every replica updated and
//! available, `StatefulSet`s and `DaemonSet`s with every pod ready, Pods Ready,
//! PVCs Bound, `LoadBalancer` Services with an ingress address, Jobs complete
//! (with `--wait-for-jobs`). On timeout, the resources that are not ready are
//! named.

use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::chart_release::Ctx;

/// Why an object is not ready yet (`None`: it is).
fn not_ready(o: &J, jobs: bool) -> Option<&'static str> {
    let spec = &o["spec"];
    let st = &o["status"];
    let n = |v: &J| v.as_i64().unwrap_or(0);
    let gen_seen = n(&st["observedGeneration"]) >= n(&o["metadata"]["generation"]);
    match o["kind"].as_str().unwrap_or_default() {
        "Deployment" => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            (!(gen_seen
                && n(&st["updatedReplicas"]) >= want
                && n(&st["availableReplicas"]) >= want
                && n(&st["replicas"]) <= want))
                .then_some("InProgress")
        }
        "StatefulSet" => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            (!(gen_seen
                && n(&st["readyReplicas"]) >= want
                && n(&st["currentReplicas"]).max(n(&st["updatedReplicas"])) >= want))
                .then_some("InProgress")
        }
        "DaemonSet" => {
            let want = n(&st["desiredNumberScheduled"]);
            (!(gen_seen
                && st["desiredNumberScheduled"].is_i64()
                && n(&st["numberReady"]) >= want
                && n(&st["updatedNumberScheduled"]) >= want))
                .then_some("InProgress")
        }
        "Pod" => {
            let ready = st["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (!(ready || st["phase"] == "Succeeded")).then_some("InProgress")
        }
        "PersistentVolumeClaim" => (st["phase"] != "Bound").then_some("InProgress"),
        "Service" => (spec["type"] == "LoadBalancer"
            && st["loadBalancer"]["ingress"]
                .as_array()
                .is_none_or(Vec::is_empty))
        .then_some("InProgress"),
        "Job" if jobs => {
            let conds = st["conditions"].as_array().cloned().unwrap_or_default();
            if conds
                .iter()
                .any(|c| c["type"] == "Failed" && c["status"] == "True")
            {
                return Some("Failed");
            }
            (!conds
                .iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True"))
            .then_some("InProgress")
        }
        _ => None,
    }
}

/// Waits until every object of `objs` is ready, or fails naming those that are not.
pub fn wait(ctx: &Ctx, objs: &[J], timeout: Duration, jobs: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        for o in objs {
            let Ok((path, _)) = ctx.kube.object_path(o, &ctx.ns) else {
                continue;
            };
            let live = ctx.kube.get(&path)?.unwrap_or(J::Null);
            let why = if live.is_null() {
                Some("NotFound")
            } else {
                not_ready(&live, jobs)
            };
            if let Some(why) = why {
                pending.push(format!(
                    "resource not ready, name: {}, kind: {}, status: {why}",
                    o["metadata"]["name"].as_str().unwrap_or_default(),
                    o["kind"].as_str().unwrap_or_default()
                ));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{}\ncontext deadline exceeded", pending.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_rules() {
        let dep = |avail: i64| {
            serde_json::json!({"kind": "Deployment", "metadata": {"generation": 1},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": avail}})
        };
        assert_eq!(not_ready(&dep(1), false), Some("InProgress"));
        assert_eq!(not_ready(&dep(2), false), None);
        let pod = serde_json::json!({"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(not_ready(&pod, false).is_some());
        let pvc =
            serde_json::json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}});
        assert!(not_ready(&pvc, false).is_none());
        let lb =
            serde_json::json!({"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}});
        assert!(not_ready(&lb, false).is_some());
        let job = serde_json::json!({"kind": "Job", "status": {}});
        assert!(not_ready(&job, false).is_none());
        assert!(not_ready(&job, true).is_some());
    }
}
