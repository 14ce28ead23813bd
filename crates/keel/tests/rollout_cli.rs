//! `keel rollout …` (the `kubectl argo rollouts` commands) through the real
//! binary: Argo's 23 lint cases, and against a `keel server` (objects made
//! with the real kubectl, status set through `rollouts/status` as Argo's
//! controller would) the patches of promote, abort, retry, pause, resume,
//! restart, set image and undo read back from the API, with the plugin's
//! messages; `get`, `status` and `list` printouts as insta snapshots.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{KeelServer, conformance, kubectls};
use serde_json::Value as J;

fn keel(kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.args(args).env("TERM", "dumb");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().expect("run keel")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn argo_lint_cases_through_the_binary() {
    let root = conformance("argo-rollouts");
    let tsv = std::fs::read_to_string(root.join("lint_cases.tsv")).unwrap();
    let mut cases = 0;
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let file = root.join(cols[0]);
        let out = keel(None, &["rollout", "lint", "-f", file.to_str().unwrap()]);
        if cols[1] == "valid" {
            assert!(out.status.success(), "{}: {}", cols[0], text(&out.stderr));
            assert_eq!(text(&out.stdout), "", "{}", cols[0]);
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", cols[0]);
            assert_eq!(
                text(&out.stderr),
                cols[2].replace("\\n", "\n"),
                "{}",
                cols[0]
            );
        }
        cases += 1;
    }
    assert_eq!(cases, 23);
    // A missing file is one line, not a panic.
    let out = keel(None, &["rollout", "lint", "-f", "/nonexistent/r.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

const ROLLOUT: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
  # Another controller's (Argo's instance IDs): keel's leaves it alone, so
  # the test can write the status Argo's controller would have.
  labels: {argo-rollouts.argoproj.io/controller-instance-id: elsewhere}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: 'registry.local/web:2'}]
  strategy:
    canary:
      steps: [{setWeight: 25}, {pause: {}}, {setWeight: 75}, {pause: {duration: 10s}}]
";

/// A `ReplicaSet` of revision `rev` owned by the Rollout `uid`, scaled to 0.
fn replica_set(uid: &str, rev: u32, hash: &str, image: &str) -> String {
    format!(
        r"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-{hash}
  namespace: shop
  labels: {{app: web, rollouts-pod-template-hash: {hash}}}
  annotations: {{rollout.argoproj.io/revision: '{rev}'}}
  ownerReferences: [{{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: web, uid: {uid}, controller: true}}]
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web, rollouts-pod-template-hash: {hash}}}}}
  template:
    metadata: {{labels: {{app: web, rollouts-pod-template-hash: {hash}}}}}
    spec:
      containers: [{{name: web, image: '{image}'}}]
"
    )
}

#[test]
#[allow(clippy::too_many_lines)] // one server, the plugin's commands in turn
fn commands_send_the_plugins_patches() {
    let s = KeelServer::start(None);
    let kubectl = &kubectls()[0];
    s.ok_in(kubectl, &["apply", "-f", "-"], Some(ROLLOUT));
    let get = || -> J {
        serde_json::from_str(&s.ok(
            kubectl,
            &["-n", "shop", "get", "rollout", "web", "-o", "json"],
        ))
        .unwrap()
    };
    let uid = get()["metadata"]["uid"].as_str().unwrap().to_string();
    for (rev, hash, image) in [
        (1, "6b5f7c4d9", "registry.local/web:1"),
        (2, "7d8c9f6b5", "registry.local/web:2"),
    ] {
        s.ok_in(
            kubectl,
            &["apply", "-f", "-"],
            Some(&replica_set(&uid, rev, hash, image)),
        );
    }
    // What Argo's controller would have written at the canary's first pause.
    let status = r#"{"status":{"currentStepIndex":1,"stableRS":"6b5f7c4d9","currentPodHash":"7d8c9f6b5",
        "phase":"Paused","message":"CanaryPauseStep","controllerPause":true,
        "pauseConditions":[{"reason":"CanaryPauseStep","startTime":"2026-01-01T00:00:00Z"}]}}"#;
    let set_status = |patch: &str| {
        let args = [
            "-n",
            "shop",
            "patch",
            "rollout",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ];
        s.ok(kubectl, &args);
    };
    set_status(status);
    let kc = Some(s.kubeconfig.as_path());
    let run = |args: &[&str]| -> String {
        let mut all = vec!["rollout", "-n", "shop"];
        all.extend_from_slice(args);
        let out = keel(kc, &all);
        assert!(out.status.success(), "keel {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    // `get` and `status` read the state as the plugin does.
    insta::with_settings!({filters => vec![(r"\b\d{1,3}s\b *", "<age>  ")]}, {
        insta::assert_snapshot!("get_paused", run(&["get", "rollout", "web", "--no-color"]));
    });
    assert_eq!(
        run(&["status", "web", "--watch=false"]),
        "Paused - CanaryPauseStep\n"
    );
    insta::assert_snapshot!("list", run(&["list", "rollouts"]));

    // promote at a pause: the pause conditions go (status subresource).
    assert_eq!(run(&["promote", "web"]), "rollout 'web' promoted\n");
    let ro = get();
    assert!(
        ro["status"].get("pauseConditions").is_none(),
        "{}",
        ro["status"]
    );
    assert_eq!(
        ro["status"]["currentStepIndex"], 1,
        "a pause is left by the controller"
    );
    assert!(ro["spec"].get("paused").is_none_or(|p| p == false));

    // pause/resume: spec.paused.
    assert_eq!(run(&["pause", "web"]), "rollout 'web' paused\n");
    assert_eq!(get()["spec"]["paused"], true);
    assert_eq!(run(&["resume", "web"]), "rollout 'web' resumed\n");
    assert_eq!(get()["spec"]["paused"], false);

    // promote without a pause: the next step.
    assert_eq!(run(&["promote", "web"]), "rollout 'web' promoted\n");
    assert_eq!(get()["status"]["currentStepIndex"], 2);

    // abort and retry: status.abort.
    assert_eq!(run(&["abort", "web"]), "rollout 'web' aborted\n");
    assert_eq!(get()["status"]["abort"], true);
    assert_eq!(run(&["retry", "rollout", "web"]), "rollout 'web' retried\n");
    assert_eq!(get()["status"]["abort"], false);

    // promote --full: status.promoteFull (the canary is not stable yet).
    assert_eq!(
        run(&["promote", "web", "--full"]),
        "rollout 'web' fully promoted\n"
    );
    assert_eq!(get()["status"]["promoteFull"], true);

    // restart: spec.restartAt, now.
    assert_eq!(run(&["restart", "web"]), "rollout 'web' restarts in 0s\n");
    let at = get()["spec"]["restartAt"].as_str().unwrap().to_string();
    let at: k8s_openapi::jiff::Timestamp = at.parse().unwrap();
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!((now.as_second() - at.as_second()).abs() < 30, "{at}");

    // set image: the container's image, the plugin's message.
    assert_eq!(
        run(&["set", "image", "web", "web=registry.local/web:3"]),
        "rollout \"web\" image updated\n"
    );
    assert_eq!(
        get()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:3"
    );
    let out = keel(
        kc,
        &["rollout", "-n", "shop", "set", "image", "web", "nope=x:1"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unable to find container named \"nope\""),
        "{}",
        text(&out.stderr)
    );

    // undo: back to the previous revision's template (2 is the newest, so 1).
    assert_eq!(run(&["undo", "web"]), "rollout 'web' undo\n");
    let ro = get();
    assert_eq!(
        ro["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:1"
    );
    assert!(
        ro["spec"]["template"]["metadata"]["labels"]
            .get("rollouts-pod-template-hash")
            .is_none()
    );
    assert_eq!(
        run(&["undo", "web", "--to-revision=1"]),
        "skipped rollback (current template already matches revision 1)"
    );
    let out = keel(
        kc,
        &["rollout", "-n", "shop", "undo", "web", "--to-revision=9"],
    );
    assert!(text(&out.stderr).contains("unable to find specified revision 9 in history"));

    // status of a Degraded rollout fails with the plugin's message.
    let degraded = r#"{"status":{"controllerPause":false,"phase":"Degraded","message":"RolloutAborted: Rollout aborted update to revision 2"}}"#;
    set_status(degraded);
    let out = keel(
        kc,
        &["rollout", "-n", "shop", "status", "web", "--timeout", "5s"],
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stdout),
        "Degraded - RolloutAborted: Rollout aborted update to revision 2\n"
    );
    assert!(
        text(&out.stderr)
            .contains("The rollout is in a degraded state with message: RolloutAborted")
    );

    // get --watch redraws the tree as the rollout changes; status (watching
    // by default) prints each new state and ends at Healthy.
    let progressing =
        r#"{"status":{"phase":"Progressing","message":"more replicas need to be updated"}}"#;
    set_status(progressing);
    let watch = std::thread::scope(|sc| {
        let get = sc.spawn(|| {
            keel(
                kc,
                &[
                    "rollout",
                    "-n",
                    "shop",
                    "get",
                    "rollout",
                    "web",
                    "-w",
                    "--no-color",
                    "--timeout-seconds",
                    "4",
                ],
            )
        });
        let status = sc.spawn(|| {
            keel(
                kc,
                &["rollout", "-n", "shop", "status", "web", "--timeout", "20s"],
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        set_status(r#"{"status":{"phase":"Healthy","message":""}}"#);
        (get.join().unwrap(), status.join().unwrap())
    });
    let frames = text(&watch.0.stdout);
    assert!(watch.0.status.success(), "{}", text(&watch.0.stderr));
    let first = frames.find("◌ Progressing").expect(&frames);
    let later = frames.rfind("✔ Healthy").expect(&frames);
    assert!(
        first < later && frames.matches("\x1b[H\x1b[2J").count() >= 2,
        "{frames}"
    );
    assert!(watch.1.status.success(), "{}", text(&watch.1.stderr));
    assert_eq!(
        text(&watch.1.stdout),
        "Progressing - more replicas need to be updated\nHealthy\n"
    );

    // Unknown rollouts: the API's not-found, one line.
    let out = keel(kc, &["rollout", "-n", "shop", "get", "rollout", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}
