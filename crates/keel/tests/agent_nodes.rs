//! A 3-node cluster on this machine (see `node_hosts`): pods spread over
//! the nodes, pods of a node reach each other and the node, an agent killed
//! with -9 and restarted adopts its running pods, and a node whose agent
//! is gone has its Deployment pods running elsewhere within keel's default
//! detection time (8 s node-monitor grace + 10 s default tolerations).

mod node_hosts;
mod server_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use node_hosts::{Cluster, condition, leftovers};
use serde_json::Value;
use server_common::eventually;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchLabels: {app: web}}
              topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {port: http}
          periodSeconds: 2
"#;

/// A pod pinned to node-0 whose container fails once (restartCount 1),
/// then stays up: what an adopting agent must not reset.
const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-0
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:latest
    command: ["sh", "-c", "if [ ! -e /state/once ]; then touch /state/once; exit 3; fi; exec sleep 3600"]
    volumeMounts: [{name: state, mountPath: /state}]
  volumes: [{name: state, emptyDir: {}}]
"#;

fn pods_by_node(c: &Cluster) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in c.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
    {
        m.entry(p["spec"]["nodeName"].as_str().unwrap_or_default().into())
            .or_default()
            .push(p.clone());
    }
    m
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    // The nodes' podCIDRs are /24s.
    let (net, bits) = cidr.split_once('/').unwrap();
    assert_eq!(bits, "24", "{cidr}");
    let prefix = net.rsplit_once('.').unwrap().0;
    ip.rsplit_once('.').unwrap().0 == prefix
}

#[test]
fn three_nodes_spread_a_deployment_adopt_pods_and_replace_a_lost_node() {
    let mut c = Cluster::start(3);

    // The Deployment spreads over the three nodes and becomes Available.
    c.apply(WEB);
    c.apply(CLIENT);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    c.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ]);
    let by_node = pods_by_node(&c);
    assert_eq!(
        by_node.keys().cloned().collect::<BTreeSet<_>>(),
        (0..3).map(Cluster::name).collect::<BTreeSet<_>>(),
        "one web pod per node: {:?}",
        by_node.keys()
    );
    // Each node's pods have addresses from its own podCIDR, on a bridge in
    // the node's namespace.
    for (node, pods) in &by_node {
        let cidr = c.get_json(&["node", node])["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_string();
        for p in pods {
            let ip = p["status"]["podIP"].as_str().unwrap();
            assert!(in_cidr(ip, &cidr), "{node}: pod IP {ip} not in {cidr}");
            assert_eq!(p["status"]["hostIP"], c.host(node).node_ip.as_str());
        }
        let inside = c.host(node).exec(&["ip", "-o", "-4", "addr", "show"]);
        let inside = String::from_utf8_lossy(&inside.stdout).to_string();
        let gw = format!(" {} ", cidr.replace(".0/24", ".1/24"));
        let line = inside.lines().find(|l| l.contains(&gw));
        assert!(
            line.is_some_and(|l| l.contains(": keel-")),
            "{node}'s bridge has {gw}: {inside}"
        );
    }

    // On node-0: the node reaches its pod, a pod reaches another pod of the
    // node and the node itself (an httpd the test runs on the node host).
    eventually("client running", Duration::from_mins(1), || {
        let p = c.get_json(&["pod", "client"]);
        condition(&p, "Ready") == Some("True")
            && p["status"]["containerStatuses"][0]["restartCount"] == 1
    });
    let n0 = &by_node["node-0"][0];
    let web_ip = n0["status"]["podIP"].as_str().unwrap().to_string();
    let web_name = n0["metadata"]["name"].as_str().unwrap().to_string();
    let host0 = &c.nodes[0];
    let out = host0.exec(&["busybox", "wget", "-qO-", &format!("http://{web_ip}:8080/")]);
    assert!(out.status.success(), "node -> pod: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web_name);
    let client = c.get_json(&["pod", "client"]);
    let client_uid = client["metadata"]["uid"].as_str().unwrap().to_string();
    let client_ctr = host0
        .container_of(&client_uid, "sh")
        .expect("client's container");
    let out = host0.exec_in(
        &client_ctr,
        &["wget", "-qO-", &format!("http://{web_ip}:8080/")],
    );
    assert!(out.status.success(), "pod -> pod: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web_name);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "the-node\n").unwrap();
    let node_ip = host0.node_ip.clone();
    c.nodes[0].spawn(&[
        "busybox",
        "httpd",
        "-f",
        "-p",
        &format!("{node_ip}:8081"),
        "-h",
        www.path().to_str().unwrap(),
    ]);
    let host0 = &c.nodes[0];
    eventually("pod -> node", Duration::from_secs(20), || {
        let out = host0.exec_in(
            &client_ctr,
            &["wget", "-qO-", &format!("http://{node_ip}:8081/")],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "the-node"
    });

    // node-0's agent killed with -9 and started again adopts its pods: the
    // same containers (ids, processes) and restart counts.
    let statuses = |c: &Cluster| -> Vec<(String, String, i64)> {
        let mut v: Vec<(String, String, i64)> = ["client", web_name.as_str()]
            .iter()
            .map(|p| {
                let s = &c.get_json(&["pod", p])["status"]["containerStatuses"][0];
                (
                    (*p).to_string(),
                    s["containerID"].as_str().unwrap_or_default().to_string(),
                    s["restartCount"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = statuses(&c);
    assert!(
        before.iter().all(|(_, id, _)| id.starts_with("keel://")),
        "{before:?}"
    );
    let pids_before: BTreeSet<(String, i64)> = c.nodes[0]
        .containers()
        .into_iter()
        .map(|(id, _, pid)| (id, pid))
        .collect();
    c.nodes[0].kill_agent();
    std::thread::sleep(Duration::from_secs(1));
    c.start_agent(0);
    c.wait_ready(0);
    // The new agent has reported (its status patch brings the pods back to
    // Ready after it looked at them) and nothing was restarted.
    let lines = |log: &str| log.matches("node registered").count();
    eventually("the new agent registered", Duration::from_secs(30), || {
        lines(&c.nodes[0].log()) >= 2
    });
    std::thread::sleep(Duration::from_secs(3));
    eventually("pods Ready after adoption", Duration::from_secs(30), || {
        ["client", web_name.as_str()]
            .iter()
            .all(|p| condition(&c.get_json(&["pod", p]), "Ready") == Some("True"))
    });
    assert_eq!(statuses(&c), before, "adoption kept ids and restart counts");
    let pids_after: BTreeSet<(String, i64)> = c.nodes[0]
        .containers()
        .into_iter()
        .map(|(id, _, pid)| (id, pid))
        .collect();
    assert_eq!(pids_after, pids_before, "no container was re-created");
    assert!(
        pids_after
            .iter()
            .all(|(_, pid)| Path::new(&format!("/proc/{pid}")).exists()),
        "{pids_after:?}"
    );

    // node-2's agent dies for good: within the default detection time its
    // pod is replaced by one on node-0 or node-1 that is Ready.
    let lost: Vec<String> = by_node["node-2"]
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    c.nodes[2].kill_agent();
    let t0 = Instant::now();
    eventually(
        "node-2's pod replaced on another node",
        Duration::from_mins(1),
        || {
            let d = c.get_json(&["deployment", "web"]);
            let ready_elsewhere = c.get_json(&["pods", "-l", "app=web"])["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] != "node-2"
                        && p["metadata"]["deletionTimestamp"].is_null()
                        && condition(p, "Ready") == Some("True")
                })
                .count();
            ready_elsewhere == 3 && d["status"]["availableReplicas"] == 3
        },
    );
    let took = t0.elapsed();
    eprintln!("node-2's pod replaced after {took:?}");
    assert!(
        took < Duration::from_secs(40),
        "replaced after {took:?}: keel's default detection time is 8 s + 10 s"
    );
    let node2 = c.get_json(&["node", "node-2"]);
    assert_eq!(condition(&node2, "Ready"), Some("Unknown"), "{node2}");
    for p in &lost {
        let pod = c.server.kubectl_with(
            &node_hosts::kubectl133(),
            &["get", "pod", p, "-o", "json"],
            None,
        );
        // Gone, or left Terminating for the node's kubelet to finish.
        if pod.status.success() {
            let pod: Value = serde_json::from_slice(&pod.stdout).unwrap();
            assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
        }
    }

    // Tearing the cluster down leaves nothing of the nodes behind.
    let roots: Vec<(std::path::PathBuf, Vec<String>)> = c
        .nodes
        .iter()
        .map(|n| {
            (
                n.root().to_path_buf(),
                n.containers().into_iter().map(|(id, _, _)| id).collect(),
            )
        })
        .collect();
    let netns: Vec<String> = c.nodes.iter().map(|n| n.ns.clone()).collect();
    let veths: Vec<String> = c.nodes.iter().map(|n| n.veth.clone()).collect();
    for n in &c.nodes {
        assert!(!n.log().contains("panicked"), "{}", n.log());
    }
    drop(c);
    for (root, ids) in &roots {
        let left = leftovers(root, ids);
        assert!(left.is_empty(), "left behind: {left:#?}");
    }
    let links = node_hosts::must(&["ip", "-o", "link"]);
    let spaces = node_hosts::must(&["ip", "netns", "list"]);
    for (ns, veth) in netns.iter().zip(&veths) {
        assert!(!spaces.contains(ns.as_str()), "{ns} left");
        assert!(!links.contains(&format!(" {veth}@")), "{veth} left");
    }
}

const NODE_OBJECTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: used-0}
stringData: {v: zero}
---
apiVersion: v1
kind: Secret
metadata: {name: used-1}
stringData: {v: one}
---
apiVersion: v1
kind: Secret
metadata: {name: unrelated}
stringData: {v: nobody}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-0}
data: {v: zero}
---
apiVersion: v1
kind: Pod
metadata: {name: p0}
spec:
  nodeName: node-0
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    env: [{name: V, valueFrom: {secretKeyRef: {name: used-0, key: v}}}]
    volumeMounts: [{name: cm, mountPath: /cm}]
  volumes: [{name: cm, configMap: {name: cm-0}}]
---
apiVersion: v1
kind: Pod
metadata: {name: p1}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    env: [{name: V, valueFrom: {secretKeyRef: {name: used-1, key: v}}}]
"#;

#[test]
fn a_node_credential_reaches_only_its_node_and_what_its_pods_use() {
    let c = Cluster::start(2);
    c.apply(NODE_OBJECTS);
    // Each agent read its pod's secret and configMap with its own
    // credential (the pods run).
    for p in ["p0", "p1"] {
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=60s",
        ]);
    }
    let n0 = &c.nodes[0];
    let allowed = |args: &[&str]| {
        let out = n0.kubectl_as_node(args, None);
        assert!(
            out.status.success(),
            "node-0 may {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |args: &[&str], stdin: Option<&str>| {
        let out = n0.kubectl_as_node(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && err.contains("forbidden"),
            "node-0 may not {args:?}: {err}"
        );
        err
    };
    let who = allowed(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "system:node:node-0");
    assert!(allowed(&["get", "secret", "used-0", "-o", "jsonpath={.data.v}"]).contains("emVybw"));
    allowed(&["get", "configmap", "cm-0"]);
    allowed(&["get", "node", "node-1"]);
    allowed(&["get", "pods", "-A"]);
    allowed(&["label", "node", "node-0", "checked=yes"]);
    allowed(&[
        "patch",
        "pod",
        "p0",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"message":"from node-0"}}"#,
    ]);

    // What the Node authorizer refuses: another node's objects, secrets no
    // pod of the node uses, listing secrets.
    let err = refused(&["get", "secret", "unrelated"], None);
    assert!(err.contains("no relationship found"), "{err}");
    refused(&["get", "secret", "used-1"], None);
    refused(&["get", "secrets"], None);
    refused(&["label", "node", "node-1", "hijacked=yes"], None);
    refused(
        &[
            "annotate",
            "-n",
            "kube-node-lease",
            "lease",
            "node-1",
            "hijacked=yes",
        ],
        None,
    );
    refused(
        &[
            "patch",
            "pod",
            "p1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"message":"from node-0"}}"#,
        ],
        None,
    );
    refused(&["delete", "pod", "p1", "--wait=false"], None);
    refused(&["create", "namespace", "mine"], None);
    // NodeRestriction: no Node of another name, no pod bound elsewhere.
    refused(
        &["create", "-f", "-"],
        Some("{apiVersion: v1, kind: Node, metadata: {name: node-9}}"),
    );
    refused(
        &["create", "-f", "-"],
        Some(
            "{apiVersion: v1, kind: Pod, metadata: {name: x}, spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}}",
        ),
    );
    let n1 = c.get_json(&["node", "node-1"]);
    assert!(n1["metadata"]["labels"]["hijacked"].is_null(), "{n1}");
    assert_eq!(
        c.get_json(&["node", "node-0"])["metadata"]["labels"]["checked"],
        "yes"
    );

    // CEL's `authorizer` asks the Node authorizer for a node, as the API
    // server's chain does: node-0 may get `used-0` (its pod uses it), which
    // RBAC alone would refuse.
    c.apply(NODE_CEL_POLICY);
    let create = |name: &str, secret: &str| {
        n0.kubectl_as_node(
            &[
                "create",
                "configmap",
                name,
                &format!("--from-literal=secret={secret}"),
            ],
            None,
        )
    };
    let mut tries = 0;
    let refuses = "the policy to refuse a secret node-0 may not read";
    eventually(refuses, Duration::from_secs(20), || {
        tries += 1;
        let out = create(&format!("probe-{tries}"), "unrelated");
        String::from_utf8_lossy(&out.stderr)
            .contains("denied request: node-0 may not read unrelated")
    });
    let out = create("named-used-0", "used-0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NODE_CEL_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-maker}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-maker}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-maker}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:node:node-0"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: names-readable-secrets}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - expression: >-
      !has(object.data) || !('secret' in object.data) ||
      authorizer.group('').resource('secrets').namespace(object.metadata.namespace).name(object.data.secret).check('get').allowed()
    messageExpression: "'node-0 may not read ' + object.data.secret"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: names-readable-secrets}
spec:
  policyName: names-readable-secrets
  validationActions: [Deny]
"#;

const EVENTFUL: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: one}
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    command: ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 3600"]
    readinessProbe:
      exec: {command: ["test", "-e", "/tmp/ready"]}
      periodSeconds: 1
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
  volumes: [{name: cfg, configMap: {name: settings}}]
---
apiVersion: v1
kind: Pod
metadata: {name: secure}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    command: ["sleep", "3600"]
    readinessProbe:
      httpGet: {scheme: HTTPS, path: /, port: 8443}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: grpc}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    command: ["sleep", "3600"]
    readinessProbe:
      grpc: {port: 2379}
      periodSeconds: 1
      failureThreshold: 1
  - name: side
    image: busybox:latest
    command: ["sleep", "3600"]
    readinessProbe:
      grpc: {port: 2379, service: unknown}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    command: ["sh", "-c", "exit 1"]
"#;

/// `kubectl get events` for one pod: (type, reason, message, count, fieldPath).
fn events_of(c: &Cluster, pod: &str) -> Vec<(String, String, String, i64, String)> {
    let sel = format!("involvedObject.name={pod}");
    c.get_json(&["events", "--field-selector", &sel])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
                e["count"].as_i64().unwrap_or(0),
                e["involvedObject"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn the_agent_writes_events_and_updates_configmap_volumes_in_place() {
    let c = Cluster::start(1);
    c.apply(EVENTFUL);
    c.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/reader",
        "--timeout=60s",
    ]);

    // The kubelet's events, as `kubectl describe` shows them.
    let d = c.kubectl(&["describe", "pod", "reader"]);
    for want in [
        "Container image \"busybox:latest\" already present on machine",
        "Created container: app",
        "Started container app",
        "Readiness probe failed:",
        "kubelet",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{d}");
    }
    let ev = events_of(&c, "reader");
    let unhealthy = ev
        .iter()
        .find(|e| e.1 == "Unhealthy")
        .unwrap_or_else(|| panic!("{ev:?}"));
    assert_eq!(unhealthy.0, "Warning");
    assert_eq!(unhealthy.4, "spec.containers{app}");
    assert!(unhealthy.3 >= 2, "repeats are counted: {unhealthy:?}");
    eventually("BackOff for crasher", Duration::from_secs(30), || {
        events_of(&c, "crasher").iter().any(|e| {
            e.0 == "Warning"
                && e.1 == "BackOff"
                && e.2
                    .starts_with("Back-off restarting failed container app in pod crasher_default(")
        })
    });

    // An updated ConfigMap reaches the running container's file, through
    // the kubelet's ..data link.
    let host = &c.nodes[0];
    let uid = c.get_json(&["pod", "reader"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let ctr = host.container_of(&uid, "app").unwrap();
    let read = |path: &str| {
        let out = host.exec_in(&ctr, &["cat", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read("/etc/cfg/greeting"), "one");
    let ls = host.exec_in(&ctr, &["ls", "-la", "/etc/cfg/"]);
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(ls.contains("..data -> ..20"), "{ls}");
    assert!(ls.contains("greeting -> ..data/greeting"), "{ls}");
    c.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"two","added":"new"}}"#,
    ]);
    let t0 = Instant::now();
    eventually(
        "the new greeting in the file",
        Duration::from_secs(30),
        || read("/etc/cfg/greeting") == "two" && read("/etc/cfg/added") == "new",
    );
    eprintln!("configMap update reached the file after {:?}", t0.elapsed());

    // An HTTPS probe (the certificate is not checked, as the kubelet does):
    // not Ready until a TLS server answers in the pod's network namespace.
    let secure = c.get_json(&["pod", "secure"]);
    assert_eq!(condition(&secure, "Ready"), Some("False"), "{secure}");
    let uid = secure["metadata"]["uid"].as_str().unwrap().to_string();
    let sandbox = host.container_of(&uid, "POD").unwrap();
    let pod_ns = host.root().join("run/netns").join(&sandbox);
    let tls = tempfile::tempdir().unwrap();
    let (crt, key) = (tls.path().join("crt.pem"), tls.path().join("key.pem"));
    node_hosts::must(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=secure",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    let net = format!("--net={}", pod_ns.display());
    let mut server = std::process::Command::new("nsenter")
        .args([
            &net, "openssl", "s_server", "-quiet", "-www", "-accept", "8443",
        ])
        .args([
            "-cert",
            crt.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod/secure",
            "--timeout=30s",
        ]);
    }));
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = ready {
        std::panic::resume_unwind(e);
    }

    // grpc probes against a real grpc-go health service (etcd's) in the
    // pod's network namespace: the server's status makes `app` Ready, the
    // service it does not know keeps `side` unready with the kubelet's
    // message, and the server gone makes `app` unready again.
    let grpc = c.get_json(&["pod", "grpc"]);
    let uid = grpc["metadata"]["uid"].as_str().unwrap().to_string();
    let sandbox = host.container_of(&uid, "POD").unwrap();
    let net = format!(
        "--net={}",
        host.root().join("run/netns").join(&sandbox).display()
    );
    let mut etcd = std::process::Command::new("nsenter")
        .args([&net, "etcd", "--data-dir"])
        .arg(tls.path().join("etcd"))
        .args([
            "--listen-client-urls",
            "http://0.0.0.0:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = |name: &str| {
        c.get_json(&["pod", "grpc"])["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == name && s["ready"] == true)
    };
    let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("app Ready through grpc", Duration::from_mins(1), || {
            ready("app")
        });
        assert!(!ready("side"));
        eventually(
            "the kubelet's message for an unknown service",
            Duration::from_secs(10),
            || {
                events_of(&c, "grpc").iter().any(|e| {
                e.1 == "Unhealthy"
                    && e.4 == "spec.containers{side}"
                    && e.2 == "Readiness probe failed: error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
            })
            },
        );
    }));
    let _ = etcd.kill();
    let _ = etcd.wait();
    if let Err(e) = probed {
        std::panic::resume_unwind(e);
    }
    eventually(
        "app unready without its server",
        Duration::from_secs(30),
        || !ready("app"),
    );

    // Deleting the pod: the kubelet says it stops the container.
    c.kubectl(&["delete", "pod", "reader", "--timeout=60s"]);
    let ev = events_of(&c, "reader");
    assert!(
        ev.iter()
            .any(|e| e.1 == "Killing" && e.2 == "Stopping container app"),
        "{ev:?}"
    );
}

#[test]
fn pull_secrets_let_the_agent_pull_from_a_private_registry() {
    let mut c = Cluster::start(1);
    // A registry with basic auth inside the node host, on its loopback
    // (plain HTTP, as for any loopback registry).
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = node_hosts::must(&["htpasswd", "-Bbn", "alice", "s3cret"]);
    std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:5000\nlog:\n  level: warn\nauth:\n  htpasswd:\n    realm: keel-test\n    path: {pw}\n",
            data = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display()
        ),
    )
    .unwrap();
    c.nodes[0].spawn(&["docker-registry", "serve", cfg.to_str().unwrap()]);
    let host = &c.nodes[0];
    eventually("the registry", Duration::from_secs(20), || {
        let out = host.exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:5000/v2/",
        ]);
        String::from_utf8_lossy(&out.stdout) == "401"
    });
    // Pushed from a root of its own: the node's root holds no credentials.
    let pusher = dir.path().join("pusher");
    let p = pusher.to_str().unwrap();
    let k = node_hosts::keel();
    for args in [
        vec![k, "--root", p, "image", "seed-busybox"],
        vec![
            k,
            "--root",
            p,
            "login",
            "-u",
            "alice",
            "-p",
            "s3cret",
            "127.0.0.1:5000",
        ],
        vec![
            k,
            "--root",
            p,
            "tag",
            "busybox:latest",
            "127.0.0.1:5000/private/busybox:v1",
        ],
        vec![
            k,
            "--root",
            p,
            "tag",
            "busybox:latest",
            "127.0.0.1:5000/private/busybox:v2",
        ],
        vec![k, "--root", p, "push", "127.0.0.1:5000/private/busybox:v1"],
        vec![k, "--root", p, "push", "127.0.0.1:5000/private/busybox:v2"],
    ] {
        let out = host.exec(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server=127.0.0.1:5000",
        "--docker-username=alice",
        "--docker-password=s3cret",
    ]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: private}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{name: regcred}, {name: absent}]
  containers:
  - {name: app, image: "127.0.0.1:5000/private/busybox:v1", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: nocred}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: "127.0.0.1:5000/private/busybox:v2", command: ["sleep", "3600"]}
"#,
    );
    c.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/private",
        "--timeout=60s",
    ]);
    let ev = events_of(&c, "private");
    assert!(
        ev.iter().any(|e| e.1 == "Pulled"
            && e.2
                .starts_with("Successfully pulled image \"127.0.0.1:5000/private/busybox:v1\"")),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.1 == "FailedToRetrieveImagePullSecret" && e.2.contains("(absent)")),
        "{ev:?}"
    );
    // Without the secret the registry refuses the node.
    eventually("nocred fails to pull", Duration::from_mins(1), || {
        let p = c.get_json(&["pod", "nocred"]);
        let reason = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    // The credentials lived only for the pull.
    let tmp = host.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().starts_with("pull-")),
        "{left:?}"
    );
}
