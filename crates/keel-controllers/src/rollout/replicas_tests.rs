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

/// Argo's dynamic stable scaling cases (`canary_test.go`'s
/// `TestCalculateReplicaCountsForCanaryTrafficRoutingDynamicScale`): one
/// setWeight step of `set`, then `more`; (canary spec, stable spec and
/// available) sets, the applied weights; the expected (canary, stable).
#[test]
fn argo_dynamic_stable_scale_counts() {
    use super::replicas::Weights;
    #[allow(clippy::type_complexity)]
    let cases: [(
        i64,
        i64,
        bool,
        &[i64],
        (i64, i64),
        i64,
        (i64, i64),
        (i64, i64),
    ); 8] = [
        (10, 20, true, &[60], (60, 40), 6, (4, 4), (6, 8)),
        (10, 20, true, &[60], (60, 40), 1, (4, 4), (6, 8)),
        (10, 20, true, &[60], (60, 40), 2, (8, 4), (6, 8)),
        (10, 20, true, &[60], (60, 40), 0, (0, 0), (6, 10)),
        (10, 10, false, &[], (10, 90), 0, (0, 0), (1, 9)),
        (10, 20, false, &[], (10, 90), 0, (0, 0), (2, 9)),
        (10, 20, true, &[], (20, 80), 0, (0, 0), (2, 10)),
        (10, 20, true, &[], (10, 90), 0, (0, 0), (1, 10)),
    ];
    for (i, (replicas, set, abort, more, (wc, ws), canary, (stable, avail), want)) in
        cases.into_iter().enumerate()
    {
        let mut steps = vec![json!({"setWeight": set})];
        steps.extend(more.iter().map(|w| json!({"setWeight": w})));
        let ro = json!({
            "spec": {"replicas": replicas, "strategy": {"canary": {
                "maxSurge": 0, "maxUnavailable": 1, "trafficRouting": {},
                "dynamicStableScale": true, "steps": steps}}},
            "status": {"stableRS": "stable", "currentPodHash": "canary", "abort": abort},
        });
        let rs = |hash: &str, spec: i64, available: i64| {
            (spec > 0).then(|| RsCount {
                hash: hash.into(),
                spec,
                available,
            })
        };
        let (new, old) = (rs("canary", canary, canary), rs("stable", stable, avail));
        let w = Weights {
            canary: wc,
            stable: ws,
        };
        let got = traffic_routed_canary(&ro, new.as_ref(), old.as_ref(), Some(w));
        assert_eq!(got, want, "case {i}");
    }
}

/// Argo's `TestGetDesiredCanaryWeightOnAbortWithScaleDownDelay`: an aborted
/// dynamic canary of 10 (5 available, steps 10% and 50%) steps its weight
/// down with stable's availability; only an explicit, non-zero
/// abortScaleDownDelaySeconds lets it drop below the canary's own size.
#[test]
fn argo_abort_weight_with_scale_down_delay() {
    use super::replicas::desired_canary_weight;
    for (delay, stable, want) in [
        (None, 9, 10),
        (Some(30), 5, 10),
        (Some(30), 9, 0),
        (Some(0), 9, 10),
    ] {
        let mut canary = json!({"maxSurge": 1, "maxUnavailable": 0, "trafficRouting": {},
            "dynamicStableScale": true, "steps": [{"setWeight": 10}, {"setWeight": 50}]});
        if let Some(d) = delay {
            canary["abortScaleDownDelaySeconds"] = json!(d);
        }
        let ro = json!({"spec": {"replicas": 10, "strategy": {"canary": canary}},
            "status": {"stableRS": "stable", "currentPodHash": "canary", "abort": true}});
        let rs = |hash: &str, n: i64| RsCount {
            hash: hash.into(),
            spec: n,
            available: n,
        };
        let got = desired_canary_weight(&ro, Some(&rs("canary", 5)), Some(&rs("stable", stable)));
        assert_eq!(got, want, "delay {delay:?}, stable {stable}");
    }
}
