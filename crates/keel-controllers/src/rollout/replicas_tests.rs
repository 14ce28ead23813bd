//! The 97 canary replica-math cases transcribed from Argo's
//! `utils/replicaset/canary_test.go` (../shared/conformance/argo-rollouts).

use serde_json::{Value, json};

use super::replicas::{RsCount, approximate_weighted, basic_canary, traffic_routed_canary};

fn cases() -> Value {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance"))
                .find(|d| d.is_dir())
                .expect("../shared/conformance is missing (set KEEL_CONFORMANCE)")
        },
        std::path::PathBuf::from,
    );
    let file = dir.join("argo-rollouts/extracted_canary_replica_math.json");
    serde_json::from_str(&std::fs::read_to_string(&file).expect("replica math cases")).unwrap()
}

fn int(c: &Value, k: &str) -> i64 {
    c[k].as_i64().unwrap_or(0)
}

/// The Rollout Argo's test builds: one step (setWeight + setCanaryScale),
/// maxSurge/maxUnavailable as given (0 when absent), canary hash "canary",
/// stable "stable".
fn rollout_of(c: &Value) -> Value {
    let or0 = |k: &str| {
        if c[k].is_null() {
            json!(0)
        } else {
            c[k].clone()
        }
    };
    let mut canary = json!({
        "maxSurge": or0("maxSurge"),
        "maxUnavailable": or0("maxUnavailable"),
        "steps": [{"setWeight": int(c, "setWeight"), "setCanaryScale": c["setCanaryScale"].clone()}],
    });
    if c["trafficRouting"].is_object() {
        canary["trafficRouting"] = json!({});
    }
    for k in ["abortScaleDownDelaySeconds", "minPodsPerReplicaSet"] {
        if !c[k].is_null() {
            canary[k] = c[k].clone();
        }
    }
    json!({
        "spec": {"replicas": int(c, "rolloutSpecReplicas"), "strategy": {"canary": canary}},
        "status": {
            "stableRS": "stable", "currentPodHash": "canary",
            "promoteFull": c["promoteFull"].as_bool().unwrap_or(false),
            "abort": c["statusAbort"].as_bool().unwrap_or(false),
        },
    })
}

#[test]
fn argo_canary_replica_counts() {
    let all = cases();
    let list = all["calculate_replica_counts_for_canary"]["cases"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 40);
    let mut failed = Vec::new();
    for c in list {
        let ro = rollout_of(c);
        let got = if c["trafficRouting"].is_object() {
            traffic_routed_canary(&ro, None, None, None)
        } else {
            let rs = |hash: &str, spec: &str, avail: &str| RsCount {
                hash: hash.into(),
                spec: int(c, spec),
                available: int(c, avail),
            };
            let older: Vec<RsCount> = c["olderRS"]
                .as_object()
                .map(|o| RsCount {
                    hash: "older".into(),
                    spec: o["specReplicas"].as_i64().unwrap(),
                    available: o["availableReplicas"].as_i64().unwrap(),
                })
                .into_iter()
                .collect();
            let new = rs("canary", "canarySpecReplica", "canaryAvailableReplica");
            let stable = rs("stable", "stableSpecReplica", "stableAvailableReplica");
            basic_canary(&ro, Some(&new), Some(&stable), &older)
        };
        let want = (
            int(c, "expectedCanaryReplicaCount"),
            int(c, "expectedStableReplicaCount"),
        );
        if got != want {
            failed.push(format!("{}: got {got:?}, want {want:?}", c["name"]));
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases differ:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn argo_approximate_weighted_counts() {
    let all = cases();
    let list = all["approximate_weighted_canary_stable_replica_counts"]["cases"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 57);
    for c in list {
        let got = approximate_weighted(
            int(c, "replicas"),
            int(c, "weight"),
            int(c, "maxWeight"),
            int(c, "maxSurge"),
        );
        assert_eq!(got, (int(c, "expCanary"), int(c, "expStable")), "{c}");
    }
}
