//! The scheduler and the node controllers of `keel server` against fake
//! nodes, through kubectl 1.32 as a user would drive them: Node objects
//! created by the test with capacity and a Ready condition, their Leases
//! renewed by a test thread (the kubelet's heartbeat), and pods marked
//! Running/Ready through `pods/status`, as kwok does.
//!
//! Shown: placement by resources, node selectors, node affinity, taints and
//! tolerations, pod affinity and anti-affinity, topology spread; an
//! unschedulable pod explained in kube-scheduler's words (`kubectl
//! describe`); pods of another scheduler left alone; preemption by
//! `PriorityClass`; a node whose Lease stops is tainted unreachable and its
//! pods evicted within 30 s; cordon, a drain held by a `PodDisruptionBudget`,
//! uncordon.

#[path = "server_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KeelServer, eventually as wait, kubectls};

fn kubectl() -> PathBuf {
    kubectls()[0].clone()
}

/// A fake node: labels, allocatable CPU and taints (YAML flow list).
fn node_yaml(name: &str, zone: &str, labels: &str, taints: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}{labels}}}\nspec:\n  taints: {taints}\n"
    )
}

/// Creates the nodes and marks them Ready with capacity through
/// `nodes/status`, as a kubelet registering would.
fn add_nodes(s: &KeelServer, k: &Path, nodes: &[(&str, &str, &str, &str, &str)]) {
    for (name, zone, cpu, labels, taints) in nodes {
        s.ok_in(
            k,
            &["apply", "-f", "-"],
            Some(&node_yaml(name, zone, labels, taints)),
        );
        let status = format!(
            r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"fake kubelet is ready"}}]}}}}"#
        );
        s.ok(
            k,
            &[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
        );
    }
}

/// Renews the Leases of a set of nodes every 500 ms from a thread.
struct Heartbeat {
    nodes: Arc<Mutex<Vec<String>>>,
    /// Node → when its Lease was last renewed.
    last: Arc<Mutex<BTreeMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(s: &KeelServer, nodes: &[&str]) -> Self {
        let list = Arc::new(Mutex::new(
            nodes.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
        ));
        let last = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let kubeconfig = s.kubeconfig.clone();
        let (l2, last2, stop2) = (list.clone(), last.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let cfg = kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .unwrap();
                let client = kube::Client::try_from(cfg).unwrap();
                let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                    kube::Api::namespaced(client, "kube-node-lease");
                while !stop2.load(Ordering::Relaxed) {
                    let names = l2.lock().unwrap().clone();
                    for n in names {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap();
                        let renew = format!(
                            "{}",
                            k8s_openapi::jiff::Timestamp::from_second(
                                i64::try_from(now.as_secs()).unwrap()
                            )
                            .unwrap()
                            .strftime("%Y-%m-%dT%H:%M:%S")
                        ) + &format!(".{:06}Z", now.subsec_micros());
                        let lease = serde_json::json!({
                            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": n, "namespace": "kube-node-lease"},
                            "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": renew},
                        });
                        let pp = kube::api::PatchParams::apply("fake-kubelet").force();
                        if leases
                            .patch(&n, &pp, &kube::api::Patch::Apply(&lease))
                            .await
                            .is_ok()
                        {
                            last2.lock().unwrap().insert(n.clone(), Instant::now());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        });
        Heartbeat {
            nodes: list,
            last,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops renewing `node`'s Lease; when it was last renewed.
    fn lose(&self, node: &str) -> Instant {
        self.nodes.lock().unwrap().retain(|n| n != node);
        // A renewal in flight may still land.
        std::thread::sleep(Duration::from_millis(700));
        self.last.lock().unwrap()[node]
    }

    fn wait_started(&self, nodes: &[&str]) {
        wait("leases renewed", Duration::from_secs(20), || {
            let l = self.last.lock().unwrap();
            nodes.iter().all(|n| l.contains_key(*n))
        });
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn jsonpath(s: &KeelServer, k: &Path, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &expr]);
    let out = s.kubectl_with(k, &args, None);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn node_of(s: &KeelServer, k: &Path, pod: &str) -> String {
    jsonpath(s, k, &["pod", pod], "{.spec.nodeName}")
}

fn wait_bound(s: &KeelServer, k: &Path, pod: &str) -> String {
    let mut node = String::new();
    wait(&format!("{pod} bound"), Duration::from_secs(20), || {
        node = node_of(s, k, pod);
        !node.is_empty()
    });
    node
}

/// Waits for the pod's `PodScheduled=False` message.
fn wait_unschedulable(s: &KeelServer, k: &Path, pod: &str) -> String {
    let mut msg = String::new();
    wait(
        &format!("{pod} unschedulable"),
        Duration::from_secs(20),
        || {
            msg = jsonpath(
                s,
                k,
                &["pod", pod],
                "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
            );
            !msg.is_empty()
        },
    );
    msg
}

fn pod_yaml(name: &str, labels: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: {cpu}}}}}\n{extra}"
    )
}

#[test]
fn pods_are_placed_by_resources_selectors_taints_affinity_and_spread() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let k = k.as_path();
    add_nodes(
        &s,
        k,
        &[
            ("n1", "za", "2", ", disk: ssd", "[]"),
            ("n2", "zb", "2", "", "[]"),
            (
                "n3",
                "zb",
                "4",
                "",
                "[{key: dedicated, value: gpu, effect: NoSchedule}]",
            ),
        ],
    );
    let hb = Heartbeat::start(&s, &["n1", "n2", "n3"]);
    hb.wait_started(&["n1", "n2", "n3"]);

    // Resources and taints: 3 CPUs fit only n3, which is tainted.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&pod_yaml("big", "app: big", "3", "")),
    );
    let msg = wait_unschedulable(&s, k, "big");
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.";
    assert_eq!(msg, want);
    let described = s.ok(k, &["describe", "pod", "big"]);
    assert!(
        described.contains("FailedScheduling") && described.contains("default-scheduler"),
        "{described}"
    );
    assert!(described.contains("2 Insufficient cpu."), "{described}");
    let tolerant = pod_yaml(
        "big-tolerant",
        "app: big",
        "3",
        "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&tolerant));
    assert_eq!(wait_bound(&s, k, "big-tolerant"), "n3");
    let described = s.ok(k, &["describe", "pod", "big-tolerant"]);
    assert!(
        described.contains("Successfully assigned default/big-tolerant to n3"),
        "{described}"
    );
    let cond = jsonpath(
        &s,
        k,
        &["pod", "big-tolerant"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].status}",
    );
    assert_eq!(cond, "True");

    // Node selector and required node affinity.
    let ssd = pod_yaml("ssd", "app: ssd", "100m", "  nodeSelector: {disk: ssd}\n");
    s.ok_in(k, &["apply", "-f", "-"], Some(&ssd));
    assert_eq!(wait_bound(&s, k, "ssd"), "n1");
    let zb = pod_yaml(
        "in-zb",
        "app: zb",
        "100m",
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zb]}]\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&zb));
    assert_eq!(wait_bound(&s, k, "in-zb"), "n2", "n3 is tainted");
    let nowhere = pod_yaml(
        "nowhere",
        "app: x",
        "100m",
        "  nodeSelector: {disk: nvme}\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&nowhere));
    let msg = wait_unschedulable(&s, k, "nowhere");
    assert!(
        msg.starts_with("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector."),
        "{msg}"
    );

    // Pod affinity: next to the ssd pod.
    let near = pod_yaml(
        "near-ssd",
        "app: near",
        "100m",
        "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {app: ssd}}\n        topologyKey: kubernetes.io/hostname\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&near));
    assert_eq!(wait_bound(&s, k, "near-ssd"), "n1");

    // Anti-affinity per host: two fit (n3 is tainted), the third waits.
    let mut solo = String::new();
    for i in 1..=3 {
        solo.push_str(&pod_yaml(
            &format!("solo-{i}"),
            "app: solo",
            "100m",
            "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {app: solo}}\n        topologyKey: kubernetes.io/hostname\n",
        ));
        solo.push_str("---\n");
    }
    s.ok_in(k, &["apply", "-f", "-"], Some(&solo));
    let mut placed = Vec::new();
    let mut waiting = Vec::new();
    wait("solo pods decided", Duration::from_secs(20), || {
        placed.clear();
        waiting.clear();
        for i in 1..=3 {
            let pod = format!("solo-{i}");
            let node = node_of(&s, k, &pod);
            if node.is_empty() {
                let m = jsonpath(
                    &s,
                    k,
                    &["pod", &pod],
                    "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
                );
                if !m.is_empty() {
                    waiting.push(m);
                }
            } else {
                placed.push(node);
            }
        }
        placed.len() + waiting.len() == 3
    });
    placed.sort();
    assert_eq!(placed, ["n1", "n2"]);
    assert!(
        waiting[0].starts_with("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match pod anti-affinity rules."),
        "{waiting:?}"
    );

    // Topology spread over zones: 4 pods, 2 per zone.
    let mut spread = String::new();
    for i in 1..=4 {
        spread.push_str(&pod_yaml(
            &format!("spread-{i}"),
            "app: spread",
            "50m",
            "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}\n",
        ));
        spread.push_str("---\n");
    }
    s.ok_in(k, &["apply", "-f", "-"], Some(&spread));
    let mut zones = BTreeMap::new();
    for i in 1..=4 {
        let n = wait_bound(&s, k, &format!("spread-{i}"));
        let zone = if n == "n1" { "za" } else { "zb" };
        *zones.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(zones, BTreeMap::from([("za", 2), ("zb", 2)]));

    // Another scheduler's pod is left alone.
    let other = pod_yaml(
        "other",
        "app: other",
        "10m",
        "  schedulerName: my-scheduler\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&other));

    // Preemption: a high-priority pod pinned to n1 evicts the low one.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n"),
    );
    let filler = pod_yaml(
        "filler",
        "app: filler",
        "1500m",
        "  nodeSelector: {kubernetes.io/hostname: n1}\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&filler));
    assert_eq!(wait_bound(&s, k, "filler"), "n1");
    let vip = pod_yaml(
        "vip",
        "app: vip",
        "1500m",
        "  priorityClassName: high\n  nodeSelector: {kubernetes.io/hostname: n1}\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&vip));
    assert_eq!(wait_bound(&s, k, "vip"), "n1");
    let gone = s.kubectl_with(k, &["get", "pod", "filler"], None);
    assert!(!gone.status.success(), "the low-priority pod was preempted");
    let events = s.ok(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Preempted",
            "-o",
            "name",
        ],
    );
    assert!(!events.trim().is_empty(), "a Preempted event");

    assert_eq!(node_of(&s, k, "other"), "");
    let other_events = s.ok(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=other",
            "-o",
            "name",
        ],
    );
    assert_eq!(other_events.trim(), "", "no scheduler touched it");
    // Every node got a pod CIDR from the cluster CIDR.
    let cidrs = jsonpath(&s, k, &["nodes"], "{.items[*].spec.podCIDR}");
    let mut cidrs: Vec<&str> = cidrs.split_whitespace().collect();
    cidrs.sort_unstable();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "{cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.42.") && c.ends_with("/24")),
        "{cidrs:?}"
    );
    drop(hb);
}

#[test]
fn a_node_whose_lease_stops_is_tainted_and_its_pods_evicted() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let k = k.as_path();
    add_nodes(
        &s,
        k,
        &[("n1", "za", "2", "", "[]"), ("n2", "za", "2", "", "[]")],
    );
    let hb = Heartbeat::start(&s, &["n1", "n2"]);
    hb.wait_started(&["n1", "n2"]);
    let on_n1 = pod_yaml(
        "doomed",
        "app: d",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n1}\n",
    );
    let stays = pod_yaml(
        "stays",
        "app: s",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n1}\n  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]\n",
    );
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&format!("{on_n1}---\n{stays}")),
    );
    assert_eq!(wait_bound(&s, k, "doomed"), "n1");
    assert_eq!(wait_bound(&s, k, "stays"), "n1");
    let tol = jsonpath(
        &s,
        k,
        &["pod", "doomed"],
        "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}",
    );
    assert_eq!(tol, "10", "keel server's default tolerationSeconds");

    let lost_at = hb.lose("n1");
    wait("n1 NotReady", Duration::from_secs(30), || {
        s.ok(k, &["get", "node", "n1", "--no-headers"])
            .contains("NotReady")
    });
    let ready = jsonpath(
        &s,
        k,
        &["node", "n1"],
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    );
    assert_eq!(ready, "NodeStatusUnknown");
    let taints = jsonpath(
        &s,
        k,
        &["node", "n1"],
        "{range .spec.taints[*]}{.key}:{.effect} {end}",
    );
    assert!(
        taints.contains("node.kubernetes.io/unreachable:NoSchedule")
            && taints.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{taints}"
    );
    wait("doomed evicted", Duration::from_secs(40), || {
        !s.kubectl_with(k, &["get", "pod", "doomed"], None)
            .status
            .success()
    });
    let took = lost_at.elapsed();
    assert!(took < Duration::from_secs(30), "eviction took {took:?}");
    assert_eq!(
        node_of(&s, k, "stays"),
        "n1",
        "a pod tolerating unreachable stays"
    );
    assert!(
        jsonpath(&s, k, &["node", "n2"], "{.spec.taints[*].key}").is_empty(),
        "n2 keeps its heartbeat"
    );
    // A new pod avoids the lost node.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&pod_yaml("fresh", "app: f", "100m", "")),
    );
    assert_eq!(wait_bound(&s, k, "fresh"), "n2");
    drop(hb);
}

#[test]
fn cordon_and_a_drain_held_by_a_pod_disruption_budget() {
    let s = KeelServer::start(None);
    let k = kubectl();
    let k = k.as_path();
    add_nodes(
        &s,
        k,
        &[("n1", "za", "2", "", "[]"), ("n2", "za", "2", "", "[]")],
    );
    let hb = Heartbeat::start(&s, &["n1", "n2"]);
    hb.wait_started(&["n1", "n2"]);
    let mut db = String::new();
    for i in 1..=2 {
        db.push_str(&pod_yaml(
            &format!("db-{i}"),
            "app: db",
            "100m",
            "  nodeSelector: {kubernetes.io/hostname: n1}\n",
        ));
        db.push_str("---\n");
    }
    s.ok_in(k, &["apply", "-f", "-"], Some(&db));
    for i in 1..=2 {
        let p = format!("db-{i}");
        assert_eq!(wait_bound(&s, k, &p), "n1");
        // The fake kubelet: Running and Ready.
        s.ok(
            k,
            &["patch", "pod", &p, "--subresource=status", "--type=merge", "-p",
              r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}]}}"#],
        );
    }
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: db}}\n"),
    );
    wait("PDB status", Duration::from_secs(20), || {
        jsonpath(
            &s,
            k,
            &["pdb", "db"],
            "{.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.disruptionsAllowed}",
        ) == "2 2 1 1"
    });
    let table = s.ok(k, &["get", "pdb", "db"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()[1..4] == ["1", "N/A", "1"]),
        "{table}"
    );

    s.ok(k, &["cordon", "n1"]);
    assert_eq!(
        jsonpath(&s, k, &["node", "n1"], "{.spec.unschedulable}"),
        "true"
    );
    let pinned = pod_yaml(
        "pinned",
        "app: p",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n1}\n",
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&pinned));
    let msg = wait_unschedulable(&s, k, "pinned");
    assert!(
        msg.starts_with("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable."),
        "{msg}"
    );

    // The drain evicts one db pod; the budget keeps the other.
    let out = s.kubectl_with(
        k,
        &[
            "drain",
            "n1",
            "--force",
            "--ignore-daemonsets",
            "--timeout=12s",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the drain cannot finish: {err}");
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    let left = s.ok(k, &["get", "pods", "-l", "app=db", "-o", "name"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    wait("PDB recounted", Duration::from_secs(20), || {
        jsonpath(
            &s,
            k,
            &["pdb", "db"],
            "{.status.currentHealthy} {.status.disruptionsAllowed}",
        ) == "1 0"
    });

    s.ok(k, &["uncordon", "n1"]);
    assert_eq!(wait_bound(&s, k, "pinned"), "n1");
    assert_eq!(
        jsonpath(&s, k, &["node", "n1"], "{.spec.taints[*].key}"),
        ""
    );
    drop(hb);
}
