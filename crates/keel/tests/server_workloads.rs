//! `StatefulSets`, `DaemonSets` and volumes in `keel server`, driven by the
//! real kubectl 1.33 with fake nodes (a [`FakeKubelet`] marks pods Running
//! and Ready through `pods/status`): a `StatefulSet`'s pod N+1 is created
//! only once pod N is Running and Ready (seen from a watch), its claims are
//! made from `volumeClaimTemplates`, it scales down from the highest
//! ordinal, and a partitioned rolling update touches only the pods at or
//! above the partition; `kubectl rollout status|history|undo sts/x`.

#[path = "server_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeKubelet, KeelServer, kubectls};

fn kubectl() -> PathBuf {
    kubectls()[1].clone()
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_mins(1), f);
}

/// Waits until `f` gives `want`; the failure shows what it gave last.
fn wait_for<T: PartialEq + std::fmt::Debug>(what: &str, want: &T, mut f: impl FnMut() -> T) {
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    loop {
        let got = f();
        if got == *want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One change of a pod as a watch saw it.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    deleted: bool,
    /// Running and Ready.
    ready: bool,
    terminating: bool,
}

/// Every pod change in a namespace, in order, from a kube-rs watch.
struct PodLog {
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodLog {
    fn start(s: &KeelServer, ns: &str) -> Self {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Pod;
        use kube::runtime::watcher::{self, Event};
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kubeconfig, ns, out) = (s.kubeconfig.clone(), ns.to_string(), log.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = common::kube_client_for(&kubeconfig).await;
                let api: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
                let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
                loop {
                    let ev = tokio::select! {
                        ev = stream.next() => ev,
                        _ = &mut rx => return,
                    };
                    let Some(Ok(ev)) = ev else { continue };
                    let (p, deleted) = match ev {
                        Event::Apply(p) | Event::InitApply(p) => (p, false),
                        Event::Delete(p) => (p, true),
                        Event::InitDone => {
                            let _ = ready_tx.send(());
                            continue;
                        }
                        Event::Init => continue,
                    };
                    let st = p.status.as_ref();
                    let ready = st.and_then(|s| s.phase.as_deref()) == Some("Running")
                        && st.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    out.lock().unwrap().push(Seen {
                        name: p.metadata.name.unwrap_or_default(),
                        deleted,
                        ready,
                        terminating: p.metadata.deletion_timestamp.is_some(),
                    });
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("pod watch started");
        PodLog {
            log,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pods `<set>-N` that appeared while an `<set>-M`, M < N, was missing or
/// not Running and Ready (what `OrderedReady` forbids).
fn out_of_order(log: &[Seen], set: &str) -> Vec<String> {
    let mut state: std::collections::BTreeMap<u32, bool> = std::collections::BTreeMap::new();
    let mut bad = Vec::new();
    for e in log {
        let Some(ord) = e
            .name
            .strip_prefix(&format!("{set}-"))
            .and_then(|o| o.parse::<u32>().ok())
        else {
            continue;
        };
        if e.deleted {
            state.remove(&ord);
            continue;
        }
        if !state.contains_key(&ord) && (0..ord).any(|m| state.get(&m) != Some(&true)) {
            bad.push(format!("{} created while {state:?}", e.name));
        }
        state.insert(ord, e.ready && !e.terminating);
    }
    bad
}

fn get(s: &KeelServer, k: &Path, ns: &str, what: &str, path: &str) -> String {
    s.ok(
        k,
        &["-n", ns, "get", what, "-o", &format!("jsonpath={path}")],
    )
}

fn statefulset(ns: &str, image: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec: {{clusterIP: None, selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {ns}}}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: {policy}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: \"{image}\"}}]}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
"
    )
}

fn rollout_status(s: &KeelServer, k: &Path, ns: &str) -> String {
    let out = s.kubectl_with(
        k,
        &["-n", ns, "rollout", "status", "sts/web", "--timeout=60s"],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        let state = s.kubectl_with(
            k,
            &[
                "-n",
                ns,
                "get",
                "sts,pods,controllerrevisions",
                "-o",
                "yaml",
            ],
            None,
        );
        panic!(
            "rollout status: {text}{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout),
            s.log()
        );
    }
    text
}

/// `kubectl patch --type=merge`.
fn merge_patch(s: &KeelServer, k: &Path, ns: &str, what: &str, patch: &str) {
    s.ok(k, &["-n", ns, "patch", what, "--type=merge", "-p", patch]);
}

/// `kubectl rollout history sts/web` and the revision numbers it lists.
fn history(s: &KeelServer, k: &Path, ns: &str) -> (String, Vec<String>) {
    let hist = s.ok(k, &["-n", ns, "rollout", "history", "sts/web"]);
    let revs = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .map(String::from)
        .collect();
    (hist, revs)
}

/// `pod → (image, controller-revision-hash)` of the set's pods.
fn pod_versions(s: &KeelServer, k: &Path, ns: &str) -> Vec<(String, String, String)> {
    let out = get(
        s,
        k,
        ns,
        "pods",
        r#"{range .items[*]}{.metadata.name} {.spec.containers[0].image} {.metadata.labels.controller-revision-hash}{"\n"}{end}"#,
    );
    let mut v: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.into(),
                w.next()?.into(),
                w.next().unwrap_or("").into(),
            ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn statefulset_orders_pods_makes_claims_scales_down_in_reverse_and_rolls_a_partition() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let _kubelet = FakeKubelet::start(&s, Duration::from_millis(300));
    let ns = "sts";
    s.ok_in(
        &k,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        )),
    );
    let log = PodLog::start(&s, ns);
    s.ok_in(
        &k,
        &["apply", "-f", "-"],
        Some(&statefulset(ns, "nginx:1", "OrderedReady")),
    );
    let text = rollout_status(&s, &k, ns);
    assert!(
        text.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{text}"
    );
    let bad = out_of_order(&log.snapshot(), "web");
    assert!(bad.is_empty(), "OrderedReady broken: {bad:?}");

    // Stable identities and one claim per pod from the template.
    assert_eq!(
        get(
            &s,
            &k,
            ns,
            "pod/web-1",
            "{.spec.hostname} {.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.spec.volumes[0].persistentVolumeClaim.claimName}"
        ),
        "web-1 web web-1 1 data-web-1"
    );
    assert_eq!(
        s.ok(&k, &["-n", ns, "get", "pvc", "-o", "name"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "persistentvolumeclaim/data-web-0",
            "persistentvolumeclaim/data-web-1",
            "persistentvolumeclaim/data-web-2"
        ]
    );
    assert_eq!(
        get(
            &s,
            &k,
            ns,
            "sts/web",
            "{.status.replicas} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas} {.status.availableReplicas}"
        ),
        "3 3 3 3 3"
    );

    // Scale down: web-2 goes before web-1; claims stay (Retain).
    let before = log.snapshot().len();
    s.ok(&k, &["-n", ns, "scale", "sts/web", "--replicas=1"]);
    wait_until("scale down to 1", || {
        get(&s, &k, ns, "pods", "{.items[*].metadata.name}") == "web-0"
    });
    let gone: Vec<String> = log.snapshot()[before..]
        .iter()
        .filter(|e| e.deleted)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(gone, ["web-2", "web-1"], "scale-down order");
    assert_eq!(
        s.ok(&k, &["-n", ns, "get", "pvc", "-o", "name"])
            .lines()
            .count(),
        3
    );

    // Back to 3, then a partitioned update: only web-2 changes.
    s.ok(&k, &["-n", ns, "scale", "sts/web", "--replicas=3"]);
    rollout_status(&s, &k, ns);
    let bad = out_of_order(&log.snapshot(), "web");
    assert!(bad.is_empty(), "OrderedReady broken on scale-up: {bad:?}");
    let old_rev = get(&s, &k, ns, "sts/web", "{.status.currentRevision}");
    merge_patch(
        &s,
        &k,
        ns,
        "sts/web",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
    );
    s.ok(&k, &["-n", ns, "set", "image", "sts/web", "c=nginx:2"]);
    let text = rollout_status(&s, &k, ns);
    assert!(
        text.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{text}"
    );
    let new_rev = get(&s, &k, ns, "sts/web", "{.status.updateRevision}");
    assert_ne!(old_rev, new_rev);
    assert_eq!(
        get(&s, &k, ns, "sts/web", "{.status.currentRevision}"),
        old_rev
    );
    let v = pod_versions(&s, &k, ns);
    assert_eq!(
        v,
        [
            ("web-0".into(), "nginx:1".into(), old_rev.clone()),
            ("web-1".into(), "nginx:1".into(), old_rev.clone()),
            ("web-2".into(), "nginx:2".into(), new_rev.clone()),
        ]
    );

    // Partition 0: the rest follows, highest ordinal first; then the
    // update is complete and the revisions agree.
    let before = log.snapshot().len();
    merge_patch(
        &s,
        &k,
        ns,
        "sts/web",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    );
    rollout_status(&s, &k, ns);
    wait_until("update complete", || {
        get(&s, &k, ns, "sts/web", "{.status.currentRevision}") == new_rev
    });
    let gone: Vec<String> = log.snapshot()[before..]
        .iter()
        .filter(|e| e.deleted)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(gone, ["web-1", "web-0"], "update order");
    assert!(pod_versions(&s, &k, ns).iter().all(|p| p.1 == "nginx:2"));

    // History and undo through ControllerRevisions.
    let (hist, revs) = history(&s, &k, ns);
    assert_eq!(revs, ["1", "2"], "{hist}");
    s.ok(&k, &["-n", ns, "rollout", "undo", "sts/web"]);
    rollout_status(&s, &k, ns);
    wait_until("undo rolled back", || {
        pod_versions(&s, &k, ns)
            .iter()
            .all(|p| p.1 == "nginx:1" && p.2 == old_rev)
    });
    let (hist, revs) = history(&s, &k, ns);
    assert_eq!(revs, ["2", "3"], "undo renumbers the old revision: {hist}");
}

#[test]
fn parallel_statefulset_creates_all_pods_at_once_and_scaled_claims_go() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let ns = "par";
    // No kubelet: no pod ever becomes Ready, and Parallel creates them all.
    s.ok_in(
        &k,
        &["apply", "-f", "-"],
        Some(&statefulset(ns, "nginx:1", "Parallel")),
    );
    wait_until("3 pods", || {
        get(&s, &k, ns, "pods", "{.items[*].metadata.name}") == "web-0 web-1 web-2"
    });
    // whenScaled: Delete — the claims of pods removed by a scale-down go
    // with them (the garbage collector follows the pod owner reference).
    merge_patch(
        &s,
        &k,
        ns,
        "sts/web",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#,
    );
    s.ok(&k, &["-n", ns, "scale", "sts/web", "--replicas=1"]);
    wait_for(
        "claims of removed pods deleted",
        &"data-web-0".to_string(),
        || get(&s, &k, ns, "pvc", "{.items[*].metadata.name}"),
    );
    assert_eq!(
        get(&s, &k, ns, "pods", "{.items[*].metadata.name}"),
        "web-0"
    );
    // whenDeleted: Delete, set after the claims were made: deleting the set
    // takes its remaining claim too.
    merge_patch(
        &s,
        &k,
        ns,
        "sts/web",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}"#,
    );
    wait_until("the set owns its claim", || {
        get(
            &s,
            &k,
            ns,
            "pvc/data-web-0",
            "{.metadata.ownerReferences[*].kind}",
        ) == "StatefulSet"
    });
    s.ok(&k, &["-n", ns, "delete", "sts/web"]);
    wait_for("claims deleted with the set", &String::new(), || {
        get(&s, &k, ns, "pvc", "{.items[*].metadata.name}")
    });
    // OrderedReady stops at the first pod that is not Ready.
    let ns = "ord";
    s.ok_in(
        &k,
        &["apply", "-f", "-"],
        Some(&statefulset(ns, "nginx:1", "OrderedReady")),
    );
    wait_until("web-0", || {
        get(&s, &k, ns, "pods", "{.items[*].metadata.name}") == "web-0"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(&s, &k, ns, "pods", "{.items[*].metadata.name}"),
        "web-0"
    );
}

/// Fake nodes: created Ready with capacity, their Leases renewed every
/// second (one `kubectl apply` of all of them) until dropped.
struct Nodes {
    names: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn leases(names: &[String]) -> String {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {n}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {n}, leaseDurationSeconds: 40, renewTime: \"{now}\"}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

impl Nodes {
    fn start(s: &KeelServer) -> Self {
        let names: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (n2, stop2) = (names.clone(), stop.clone());
        let (kubeconfig, home) = (s.kubeconfig.clone(), s.home.path().to_path_buf());
        let k = kubectl();
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let list = n2.lock().unwrap().clone();
                if !list.is_empty() {
                    let mut child = std::process::Command::new(&k)
                        .args(["apply", "-f", "-"])
                        .env("KUBECONFIG", &kubeconfig)
                        .env("HOME", &home)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    let mut stdin = child.stdin.take().unwrap();
                    let _ = std::io::Write::write_all(&mut stdin, leases(&list).as_bytes());
                    drop(stdin);
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Nodes {
            names,
            stop,
            thread: Some(thread),
        }
    }

    /// Adds a Ready node with `taints` (a YAML flow list).
    fn add(&self, s: &KeelServer, name: &str, taints: &str) {
        let k = kubectl();
        s.ok_in(
            &k,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\nspec:\n  taints: {taints}\n"
            )),
        );
        let status = r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"fake kubelet is ready"}]}}"#;
        s.ok(
            &k,
            &[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
        );
        self.names.lock().unwrap().push(name.to_string());
    }

    fn remove(&self, s: &KeelServer, name: &str) {
        self.names.lock().unwrap().retain(|n| n != name);
        s.ok(&kubectl(), &["delete", "node", name]);
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `node → pod names` of the pods labelled `app`, with their images.
fn placement(s: &KeelServer, k: &Path, ns: &str, app: &str) -> Vec<(String, String)> {
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
            r#"jsonpath={range .items[*]}{.spec.nodeName}|{.spec.containers[0].image}{"\n"}{end}"#,
        ],
    );
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn daemonset_follows_nodes_skips_tainted_ones_and_rolls() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let _kubelet = FakeKubelet::start(&s, Duration::from_millis(200));
    let nodes = Nodes::start(&s);
    nodes.add(&s, "n1", "[]");
    nodes.add(
        &s,
        "n2",
        "[{key: dedicated, value: db, effect: NoSchedule}]",
    );
    let ds = |image: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ds}}\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent, namespace: ds}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec: {{containers: [{{name: c, image: \"{image}\"}}]}}\n"
        )
    };
    s.ok_in(&k, &["apply", "-f", "-"], Some(&ds("agent:1")));
    let out = s.ok(
        &k,
        &["-n", "ds", "rollout", "status", "ds/agent", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    // The tainted node gets none.
    assert_eq!(
        placement(&s, &k, "ds", "agent"),
        [("n1".into(), "agent:1".into())]
    );
    // A node added later gets one; a node removed loses it.
    nodes.add(&s, "n3", "[]");
    wait_until("a pod on n3", || {
        placement(&s, &k, "ds", "agent").iter().any(|p| p.0 == "n3")
    });
    wait_until("status counts n3", || {
        get(
            &s,
            &k,
            "ds",
            "ds/agent",
            "{.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.numberMisscheduled}",
        ) == "2 2 2 0"
    });
    nodes.remove(&s, "n3");
    wait_until("n3's pod deleted", || {
        placement(&s, &k, "ds", "agent") == [("n1".to_string(), "agent:1".to_string())]
    });
    // Daemon pods tolerate what Kubernetes adds for them: a cordoned node
    // keeps its pod.
    s.ok(&k, &["cordon", "n1"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(placement(&s, &k, "ds", "agent").len(), 1);
    let tolerations = get(&s, &k, "ds", "pods", "{.items[0].spec.tolerations[*].key}");
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );
    s.ok(&k, &["uncordon", "n1"]);
    // A rolling update replaces it; the history has both templates.
    nodes.add(&s, "n4", "[]");
    s.ok_in(&k, &["apply", "-f", "-"], Some(&ds("agent:2")));
    let out = s.ok(
        &k,
        &["-n", "ds", "rollout", "status", "ds/agent", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(
        "old pods gone",
        &vec![
            ("n1".to_string(), "agent:2".to_string()),
            ("n4".to_string(), "agent:2".to_string()),
        ],
        || placement(&s, &k, "ds", "agent"),
    );
    let hist = s.ok(&k, &["-n", "ds", "rollout", "history", "ds/agent"]);
    assert!(hist.contains("\n1 ") && hist.contains("\n2 "), "{hist}");
    assert_eq!(
        get(
            &s,
            &k,
            "ds",
            "ds/agent",
            "{.status.updatedNumberScheduled} {.status.numberAvailable}"
        ),
        "2 2"
    );
    // maxSurge: the new pod starts beside the old one, which goes once the
    // new is available, so no node is ever without a Ready pod.
    let log = PodLog::start(&s, "ds");
    let before = log.snapshot().len();
    merge_patch(
        &s,
        &k,
        "ds",
        "ds/agent",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    );
    s.ok(&k, &["-n", "ds", "set", "image", "ds/agent", "c=agent:3"]);
    let out = s.ok(
        &k,
        &["-n", "ds", "rollout", "status", "ds/agent", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(
        "surge update done",
        &vec![
            ("n1".to_string(), "agent:3".to_string()),
            ("n4".to_string(), "agent:3".to_string()),
        ],
        || placement(&s, &k, "ds", "agent"),
    );
    let snap = log.snapshot();
    assert!(
        snap[before..].iter().any(|e| e.deleted),
        "old pods replaced: {snap:?}"
    );
    assert_eq!(fewest_ready(&snap, before), 2, "{snap:?}");
    // Undo goes back to the previous template through its revision.
    s.ok(&k, &["-n", "ds", "rollout", "undo", "ds/agent"]);
    wait_for(
        "undo rolled back",
        &vec![
            ("n1".to_string(), "agent:2".to_string()),
            ("n4".to_string(), "agent:2".to_string()),
        ],
        || placement(&s, &k, "ds", "agent"),
    );
}

/// The fewest pods Running, Ready and not terminating at once in `log`
/// from entry `from` on.
fn fewest_ready(log: &[Seen], from: usize) -> usize {
    let mut ready: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    let mut fewest = usize::MAX;
    for (i, e) in log.iter().enumerate() {
        if e.deleted {
            ready.remove(e.name.as_str());
        } else {
            ready.insert(&e.name, e.ready && !e.terminating);
        }
        if i >= from {
            fewest = fewest.min(ready.values().filter(|r| **r).count());
        }
    }
    fewest
}

#[test]
fn local_path_claims_bind_on_the_consumers_node_and_keep_it_there() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let _kubelet = FakeKubelet::start(&s, Duration::from_millis(200));
    let nodes = Nodes::start(&s);
    nodes.add(&s, "n1", "[]");
    nodes.add(&s, "n2", "[]");
    wait_until("the default class", || {
        s.ok(&k, &["get", "sc"]).contains("local-path (default)")
    });
    let claim = "apiVersion: v1\nkind: Namespace\nmetadata: {name: vol}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: vol}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(claim));
    std::thread::sleep(Duration::from_secs(1));
    // WaitForFirstConsumer: nothing yet.
    assert_eq!(get(&s, &k, "vol", "pvc/data", "{.status.phase}"), "Pending");
    assert_eq!(s.ok(&k, &["get", "pv", "-o", "name"]), "");
    let pod = |name: &str, prefer: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: vol, labels: {{app: consumer}}}}\nspec:\n  affinity: {{nodeAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 100, preference: {{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{prefer}]}}]}}}}]}}}}\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: data}}}}]\n"
        )
    };
    s.ok_in(&k, &["apply", "-f", "-"], Some(&pod("first", "n1")));
    wait_until("claim bound", || {
        get(&s, &k, "vol", "pvc/data", "{.status.phase}") == "Bound"
    });
    let node = get(&s, &k, "vol", "pod/first", "{.spec.nodeName}");
    assert_eq!(node, "n1");
    assert_eq!(
        get(
            &s,
            &k,
            "vol",
            "pvc/data",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "n1"
    );
    let pv = get(&s, &k, "vol", "pvc/data", "{.spec.volumeName}");
    assert_eq!(
        s.ok(&k, &["get", "pv", &pv, "-o", "jsonpath={.status.phase} {.spec.storageClassName} {.spec.claimRef.name} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.persistentVolumeReclaimPolicy}"]),
        "Bound local-path data n1 Delete"
    );
    // A second consumer prefers n2 but the volume lives on n1.
    s.ok_in(&k, &["apply", "-f", "-"], Some(&pod("second", "n2")));
    wait_until("second scheduled", || {
        !get(&s, &k, "vol", "pod/second", "{.spec.nodeName}").is_empty()
    });
    assert_eq!(get(&s, &k, "vol", "pod/second", "{.spec.nodeName}"), "n1");

    // A pod whose claim does not exist yet waits, explained as
    // kube-scheduler does, and is scheduled as soon as the claim appears
    // (not at the next periodic retry, a minute later).
    let third = "apiVersion: v1\nkind: Pod\nmetadata: {name: third, namespace: vol}\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes: [{name: d, persistentVolumeClaim: {claimName: later}}]\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(third));
    // (From its Event: the fake kubelet overwrites every pod's conditions.)
    wait_until("third explained", || {
        get(
            &s,
            &k,
            "vol",
            "events",
            r#"{range .items[?(@.involvedObject.name=="third")]}{.message}{"\n"}{end}"#,
        )
        .contains(r#"0/2 nodes are available: 2 persistentvolumeclaim "later" not found."#)
    });
    let later = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: later, namespace: vol}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(later));
    common::eventually("third scheduled", Duration::from_secs(15), || {
        !get(&s, &k, "vol", "pod/third", "{.spec.nodeName}").is_empty()
    });
    wait_until("later bound", || {
        get(&s, &k, "vol", "pvc/later", "{.status.phase}") == "Bound"
    });

    // A StatefulSet's claims are made and bound, each beside its pod.
    s.ok_in(
        &k,
        &["apply", "-f", "-"],
        Some(&statefulset("vol", "db:1", "Parallel")),
    );
    wait_until("sts claims bound", || {
        get(&s, &k, "vol", "pvc", "{.items[*].status.phase}") == "Bound Bound Bound Bound Bound"
    });
    for i in 0..3 {
        let pv = get(
            &s,
            &k,
            "vol",
            &format!("pvc/data-web-{i}"),
            "{.spec.volumeName}",
        );
        let pinned = s.ok(&k, &["get", "pv", &pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"]);
        assert_eq!(
            get(&s, &k, "vol", &format!("pod/web-{i}"), "{.spec.nodeName}"),
            pinned
        );
    }

    // A static volume binds by class, size and modes; Retain keeps it
    // Released when its claim goes, Delete removes it.
    let static_pv = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: manual-1, labels: {tier: gold}}\nspec:\n  storageClassName: manual\n  capacity: {storage: 5Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {path: /srv/manual-1}\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(static_pv));
    let too_big = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: big, namespace: vol}\nspec:\n  storageClassName: manual\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 10Gi}}\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(too_big));
    let fits = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: small, namespace: vol}\nspec:\n  storageClassName: manual\n  selector: {matchLabels: {tier: gold}}\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n";
    s.ok_in(&k, &["apply", "-f", "-"], Some(fits));
    wait_until("static claim bound", || {
        get(
            &s,
            &k,
            "vol",
            "pvc/small",
            "{.status.phase} {.spec.volumeName} {.status.capacity.storage}",
        ) == "Bound manual-1 5Gi"
    });
    assert_eq!(get(&s, &k, "vol", "pvc/big", "{.status.phase}"), "Pending");
    s.ok(&k, &["-n", "vol", "delete", "pvc", "small"]);
    wait_until("retained volume released", || {
        s.ok(
            &k,
            &["get", "pv", "manual-1", "-o", "jsonpath={.status.phase}"],
        ) == "Released"
    });
    s.ok(&k, &["-n", "vol", "delete", "pod", "first", "second"]);
    s.ok(&k, &["-n", "vol", "delete", "pvc", "data"]);
    wait_until("provisioned volume deleted", || {
        !s.ok(&k, &["get", "pv", "-o", "name"]).contains(&pv)
    });
}
