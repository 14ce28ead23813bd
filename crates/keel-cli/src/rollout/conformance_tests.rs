//! `keel rollout lint` and `get` against Argo's own test data: the 23 lint
//! cases of `lint_cases.tsv`, and the live-object snapshots of the plugin's
//! `info/testdata` rendered as `get rollout --no-color` (the snapshots are
//! byte-for-byte the outputs Argo's `get_test.go` expects, ages included:
//! every object is made a week old, as Argo's test loader does).

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value as J;

use super::{lint, tree};

fn conformance(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {}",
        dir.display()
    );
    dir
}

#[test]
fn argo_lint_cases() {
    let root = conformance("argo-rollouts");
    let tsv = std::fs::read_to_string(root.join("lint_cases.tsv")).unwrap();
    let mut n = 0;
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expect) = (cols[0], cols[1]);
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let got = match lint::problems(&text) {
            Err(e) => Some(e),
            Ok(errs) => errs.first().map(ToString::to_string),
        };
        if expect == "valid" {
            assert_eq!(got, None, "{file}");
        } else {
            let want = cols[2].replace("\\n", "\n");
            assert_eq!(
                format!("Error: {}\n", got.unwrap_or_default()),
                want,
                "{file}"
            );
        }
        n += 1;
    }
    assert_eq!(n, 23);
}

const NOW: i64 = 1_800_000_000;

/// The objects of one `info/testdata` scenario, a week old.
fn scenario(dir: &str) -> Vec<J> {
    let dir = conformance("argo-rollouts/pkg/kubectl-argo-rollouts/info/testdata").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let week_ago = chrono::DateTime::from_timestamp(NOW - 7 * 86_400, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let mut v = J::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            v["metadata"]["creationTimestamp"] = J::from(week_ago.clone());
            // Argo's loader dates the first metric's measurements too.
            let first = v.pointer_mut("/status/metricResults/0/measurements");
            for m in first.and_then(J::as_array_mut).into_iter().flatten() {
                m["startedAt"] = J::from(week_ago.clone());
                m["finishedAt"] = J::from(week_ago.clone());
            }
            out.push(v);
        }
    }
    out
}

fn get(dir: &str, name: &str) -> String {
    let all = scenario(dir);
    let of = |kind: &str| -> Vec<J> { all.iter().filter(|o| o["kind"] == kind).cloned().collect() };
    let rollout = all
        .iter()
        .find(|o| o["kind"] == "Rollout" && o["metadata"]["name"] == name)
        .cloned()
        .unwrap();
    let objs = tree::Objects {
        rollout,
        replica_sets: of("ReplicaSet"),
        pods: of("Pod"),
        analysis_runs: of("AnalysisRun"),
        experiments: of("Experiment"),
    };
    let out = tree::render(
        &objs,
        &tree::View {
            color: false,
            now: NOW,
        },
    );
    // Argo's test compares with trailing spaces removed.
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn get_experiment() {
    let all = scenario("experiment-analysis");
    let of = |kind: &str| -> Vec<J> { all.iter().filter(|o| o["kind"] == kind).cloned().collect() };
    let exp = of("Experiment").remove(0);
    let objs = tree::Objects {
        rollout: J::Null,
        replica_sets: of("ReplicaSet"),
        pods: of("Pod"),
        analysis_runs: of("AnalysisRun"),
        experiments: Vec::new(),
    };
    let out = tree::render_experiment(
        &exp,
        &objs,
        &tree::View {
            color: false,
            now: NOW,
        },
    );
    let out = out
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    insta::assert_snapshot!(out);
}

#[test]
fn get_blue_green() {
    insta::assert_snapshot!(get("blue-green", "bluegreen-demo"));
}

#[test]
fn get_canary() {
    insta::assert_snapshot!(get("canary", "canary-demo"));
}

#[test]
fn get_canary_ping_pong() {
    insta::assert_snapshot!(get("canary", "canary-demo-pingpong"));
}

#[test]
fn get_experiment_analysis() {
    insta::assert_snapshot!(get("experiment-analysis", "rollout-experiment-analysis"));
}

#[test]
fn get_experiment_step() {
    insta::assert_snapshot!(get("experiment-step", "canary-demo"));
}

#[test]
fn get_invalid() {
    insta::assert_snapshot!(get("rollout-invalid", "rollout-invalid"));
}

#[test]
fn get_aborted() {
    insta::assert_snapshot!(get("rollout-aborted", "rollout-background-analysis"));
}

/// Arbitrary JSON shaped like a Rollout's neighbourhood: Argo's keys at
/// random depths with values of any type.
fn arb_json() -> impl proptest::strategy::Strategy<Value = J> {
    use proptest::prelude::*;
    let key = prop::sample::select(vec![
        "spec",
        "status",
        "strategy",
        "canary",
        "blueGreen",
        "steps",
        "setWeight",
        "pause",
        "selector",
        "matchLabels",
        "matchExpressions",
        "template",
        "metadata",
        "labels",
        "maxSurge",
        "maxUnavailable",
        "trafficRouting",
        "pingPong",
        "experiment",
        "templates",
        "weight",
        "currentStepIndex",
        "pauseConditions",
        "uid",
        "ownerReferences",
        "replicas",
        "containers",
        "image",
        "annotations",
        "metricResults",
        "measurements",
        "phase",
    ]);
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::from),
        any::<i64>().prop_map(J::from),
        "[a-z0-9%]{0,4}".prop_map(J::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                J::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn lint_and_get_never_panic(spec in arb_json(), status in arb_json(), mut rs in arb_json()) {
        // Owned by the Rollout, so the tree walks into it.
        if rs.is_object() {
            rs["metadata"] = serde_json::json!({"uid": "c", "ownerReferences": [{"uid": "u"}, {"uid": "c"}]});
        }
        let ro = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r", "uid": "u"}, "spec": spec, "status": status});
        let _ = lint::problems(&serde_json::to_string(&ro).unwrap());
        let objs = tree::Objects {
            rollout: ro,
            replica_sets: vec![rs.clone()],
            pods: vec![rs.clone()],
            analysis_runs: vec![rs.clone()],
            experiments: vec![rs],
        };
        let _ = tree::render(&objs, &tree::View { color: true, now: NOW });
        let _ = super::promote_patches(&objs.rollout, false);
    }
}
