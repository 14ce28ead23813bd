//! Deployments converge in `keel server` as on Kubernetes, driven by the
//! real kubectl (1.32 and 1.33) with fake nodes (a [`FakeKubelet`] marks
//! pods Ready through `pods/status`): `rollout status|history|undo
//! [--to-revision]|pause|resume|restart`, scale up and down, a rolling
//! update that never exceeds maxSurge nor drops below maxUnavailable (seen
//! from a watch), Recreate that never mixes versions, progress deadlines,
//! and the controllers' Events in `kubectl describe`.

#[path = "server_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeKubelet, KeelServer, NEVER_READY, kubectls};

fn deployment(ns: &str, name: &str, strategy: &str, image: &str, extra_labels: &str) -> String {
    [
        "apiVersion: v1",
        "kind: Namespace",
        &format!("metadata: {{name: {ns}}}"),
        "---",
        "apiVersion: apps/v1",
        "kind: Deployment",
        &format!("metadata: {{name: {name}, namespace: {ns}}}"),
        "spec:",
        "  replicas: 4",
        &format!("  strategy: {strategy}"),
        &format!("  selector: {{matchLabels: {{app: {name}}}}}"),
        "  template:",
        &format!("    metadata: {{labels: {{app: {name}{extra_labels}}}}}"),
        &format!("    spec: {{containers: [{{name: c, image: \"{image}\"}}]}}"),
        "",
    ]
    .join("\n")
}

/// What a watch on an app's pods saw: most pods at once, fewest ready at
/// once, and whether two images ran at once.
#[derive(Debug, Default, Clone)]
struct Seen {
    most: usize,
    fewest_ready: usize,
    mixed: bool,
}

/// Watches the pods of `app` in `ns` from a kube-rs client until dropped.
struct PodWatch {
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodWatch {
    fn start(s: &KeelServer, ns: &str, app: &str) -> Self {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Pod;
        use kube::runtime::watcher::{self, Event};
        let seen = Arc::new(Mutex::new(Seen {
            fewest_ready: usize::MAX,
            ..Seen::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let kubeconfig = s.kubeconfig.clone();
        let (ns, app, out) = (ns.to_string(), app.to_string(), seen.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = common::kube_client_for(&kubeconfig).await;
                let api: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
                let cfg = watcher::Config::default().labels(&format!("app={app}"));
                let mut stream = std::pin::pin!(watcher::watcher(api, cfg));
                let mut live: HashMap<String, (bool, String)> = HashMap::new();
                // Counted once the initial list is complete.
                let mut synced = false;
                let mut rx = rx;
                loop {
                    let ev = tokio::select! {
                        ev = stream.next() => ev,
                        _ = &mut rx => return,
                    };
                    let Some(Ok(ev)) = ev else { continue };
                    let mut changed = true;
                    match ev {
                        Event::Apply(p) | Event::InitApply(p) => {
                            let ready = p
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                            let image = p
                                .spec
                                .as_ref()
                                .and_then(|s| s.containers[0].image.clone())
                                .unwrap_or_default();
                            live.insert(p.metadata.name.unwrap_or_default(), (ready, image));
                        }
                        Event::Delete(p) => {
                            live.remove(&p.metadata.name.unwrap_or_default());
                        }
                        Event::Init => {
                            live.clear();
                            synced = false;
                            changed = false;
                        }
                        Event::InitDone => {
                            synced = true;
                            let _ = ready_tx.send(());
                        }
                    }
                    if changed && synced {
                        let mut s = out.lock().unwrap();
                        s.most = s.most.max(live.len());
                        let ready = live.values().filter(|v| v.0).count();
                        s.fewest_ready = s.fewest_ready.min(ready);
                        let first = live.values().next().map(|v| v.1.clone());
                        if live.values().any(|v| Some(&v.1) != first.as_ref()) {
                            s.mixed = true;
                        }
                    }
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("pod watch started");
        PodWatch {
            seen,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Seen {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

fn get(s: &KeelServer, k: &Path, ns: &str, what: &str, path: &str) -> String {
    s.ok(
        k,
        &["-n", ns, "get", what, "-o", &format!("jsonpath={path}")],
    )
}

fn rollout_status(s: &KeelServer, k: &Path, ns: &str, name: &str) {
    let target = format!("deploy/{name}");
    let out = s.kubectl_with(
        k,
        &["-n", ns, "rollout", "status", &target, "--timeout=60s"],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("successfully rolled out") {
        let state = s.kubectl_with(k, &["-n", ns, "get", "deploy,rs,pods", "-o", "yaml"], None);
        panic!(
            "rollout status {name}: {text}{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout),
            s.log()
        );
    }
}

/// Images of the app's pods, sorted.
fn images(s: &KeelServer, k: &Path, ns: &str, app: &str) -> Vec<String> {
    let out = s.ok(
        k,
        &[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
    );
    let mut v: Vec<String> = out.split_whitespace().map(String::from).collect();
    v.sort();
    v
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_mins(1), f);
}

fn rollouts(s: &KeelServer, k: &Path, ns: &str) {
    let n = |v: &str| vec![v.to_string(); 4];
    // The kubelet stands in for fake nodes for the whole flow.
    let _kubelet = FakeKubelet::start(s, Duration::from_millis(200));
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}";
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&deployment(ns, "web", strategy, "img:1", "")),
    );
    rollout_status(s, k, ns, "web");
    assert_eq!(images(s, k, ns, "web"), n("img:1"));
    let out = s.ok(k, &["-n", ns, "get", "deploy", "web"]);
    assert!(out.contains("4/4"), "{out}");

    // Rolling update watched pod by pod.
    let watch = PodWatch::start(s, ns, "web");
    s.ok(k, &["-n", ns, "set", "image", "deploy/web", "c=img:2"]);
    s.ok(
        k,
        &[
            "-n",
            ns,
            "annotate",
            "deploy/web",
            "kubernetes.io/change-cause=to img:2",
        ],
    );
    rollout_status(s, k, ns, "web");
    let seen = watch.finish();
    assert!(seen.most <= 5, "maxSurge 1 of 4 exceeded: {seen:?}");
    assert!(
        seen.fewest_ready >= 3,
        "maxUnavailable 1 of 4 exceeded: {seen:?}"
    );
    assert!(
        seen.mixed,
        "a rolling update runs both versions for a while: {seen:?}"
    );
    wait_until("old pods gone", || images(s, k, ns, "web") == n("img:2"));

    // History, undo, undo --to-revision.
    let out = s.ok(k, &["-n", ns, "rollout", "history", "deploy/web"]);
    assert!(
        out.contains("REVISION") && out.contains("to img:2"),
        "{out}"
    );
    let revs: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2"], "{out}");
    let out = s.ok(
        k,
        &["-n", ns, "rollout", "history", "deploy/web", "--revision=1"],
    );
    assert!(out.contains("img:1"), "{out}");
    let out = s.ok(k, &["-n", ns, "rollout", "undo", "deploy/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(s, k, ns, "web");
    wait_until("undo to img:1", || images(s, k, ns, "web") == n("img:1"));
    // The old set came back as revision 3, remembering it was 1.
    assert_eq!(
        get(
            s,
            k,
            ns,
            "deploy/web",
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3"
    );
    let out = s.ok(k, &["-n", ns, "rollout", "history", "deploy/web"]);
    let revs: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "{out}");
    s.ok(
        k,
        &["-n", ns, "rollout", "undo", "deploy/web", "--to-revision=2"],
    );
    rollout_status(s, k, ns, "web");
    wait_until("undo to revision 2", || {
        images(s, k, ns, "web") == n("img:2")
    });
    assert_eq!(
        get(s, k, ns, "rs", "{.items[*].metadata.name}")
            .split_whitespace()
            .count(),
        2
    );

    // Pause: template changes wait; resume rolls them out.
    s.ok(k, &["-n", ns, "rollout", "pause", "deploy/web"]);
    s.ok(k, &["-n", ns, "set", "image", "deploy/web", "c=img:3"]);
    wait_until("paused condition", || {
        get(
            s,
            k,
            ns,
            "deploy/web",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        ) == "DeploymentPaused"
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        images(s, k, ns, "web"),
        n("img:2"),
        "a paused deployment rolled out"
    );
    assert_eq!(
        get(s, k, ns, "rs", "{.items[*].metadata.name}")
            .split_whitespace()
            .count(),
        2
    );
    s.ok(k, &["-n", ns, "rollout", "resume", "deploy/web"]);
    rollout_status(s, k, ns, "web");
    wait_until("resumed to img:3", || images(s, k, ns, "web") == n("img:3"));

    // Restart: same image, new pods carrying the restartedAt annotation.
    let before = s.ok(k, &["-n", ns, "get", "pods", "-l", "app=web", "-o", "name"]);
    s.ok(k, &["-n", ns, "rollout", "restart", "deploy/web"]);
    rollout_status(s, k, ns, "web");
    wait_until("restarted pods", || {
        let now = s.ok(k, &["-n", ns, "get", "pods", "-l", "app=web", "-o", "name"]);
        now.lines().count() == 4 && now.lines().all(|p| !before.lines().any(|b| b == p))
    });
    let ann = get(
        s,
        k,
        ns,
        "pods",
        "{.items[*].metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert_eq!(ann.split_whitespace().count(), 4, "{ann}");

    // Scale up and down.
    s.ok(k, &["-n", ns, "scale", "deploy/web", "--replicas=7"]);
    rollout_status(s, k, ns, "web");
    wait_until("7 pods", || images(s, k, ns, "web").len() == 7);
    s.ok(k, &["-n", ns, "scale", "deploy/web", "--replicas=2"]);
    rollout_status(s, k, ns, "web");
    wait_until("2 pods", || images(s, k, ns, "web").len() == 2);
    assert_eq!(
        get(s, k, ns, "deploy/web", "{.status.availableReplicas}"),
        "2"
    );

    // A Service gets Endpoints and an EndpointSlice of the Ready pods.
    let svc = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&svc));
    let ips = get(s, k, ns, "pods", "{.items[*].status.podIP}");
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    ips.sort_unstable();
    assert_eq!(ips.len(), 2);
    wait_until("endpoints", || {
        let got = get(s, k, ns, "endpoints/web", "{.subsets[*].addresses[*].ip}");
        let mut got: Vec<&str> = got.split_whitespace().collect();
        got.sort_unstable();
        got == ips
    });
    let out = s.ok(k, &["-n", ns, "describe", "svc", "web"]);
    assert!(out.contains(&format!("{}:8080", ips[0])), "{out}");
    let out = s.ok(
        k,
        &[
            "-n",
            ns,
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    );
    assert!(out.contains("IPv4") && out.contains("8080"), "{out}");

    // Events from both controllers, as kubectl describe shows them.
    let out = s.ok(k, &["-n", ns, "describe", "deploy", "web"]);
    assert!(
        out.contains("ScalingReplicaSet") && out.contains("deployment-controller"),
        "{out}"
    );
    assert!(out.contains("NewReplicaSetAvailable"), "{out}");
    let out = s.ok(k, &["-n", ns, "describe", "rs", "-l", "app=web"]);
    assert!(
        out.contains("SuccessfulCreate") && out.contains("Created pod: web-"),
        "{out}"
    );

    // Recreate: the old version is gone before the new one starts.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&deployment(ns, "rec", "{type: Recreate}", "img:1", "")),
    );
    rollout_status(s, k, ns, "rec");
    let watch = PodWatch::start(s, ns, "rec");
    s.ok(k, &["-n", ns, "set", "image", "deploy/rec", "c=img:2"]);
    rollout_status(s, k, ns, "rec");
    let seen = watch.finish();
    assert!(!seen.mixed, "Recreate ran both versions at once: {seen:?}");
    assert_eq!(
        seen.fewest_ready, 0,
        "Recreate scales to zero first: {seen:?}"
    );
    wait_until("recreated", || images(s, k, ns, "rec") == n("img:2"));

    // A rollout that cannot progress fails rollout status after the deadline.
    let stuck = deployment(
        ns,
        "stuck",
        "{type: RollingUpdate}",
        "img:1",
        &format!(", {NEVER_READY}: \"1\""),
    )
    .replace(
        "  replicas: 4\n",
        "  replicas: 1\n  progressDeadlineSeconds: 2\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&stuck));
    let out = s.kubectl_with(
        k,
        &[
            "-n",
            ns,
            "rollout",
            "status",
            "deploy/stuck",
            "--timeout=60s",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("exceeded its progress deadline"),
        "{err}"
    );
    assert_eq!(
        get(
            s,
            k,
            ns,
            "deploy/stuck",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "ProgressDeadlineExceeded"
    );
}

#[test]
fn rollouts_through_kubectl() {
    let s = KeelServer::start(None);
    for (i, k) in kubectls().iter().enumerate() {
        rollouts(&s, k, &format!("roll{i}"));
    }
}
