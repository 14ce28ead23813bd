//! `keel agent`, the kubelet, against a real `keel server` and kubectl 1.33:
//! the agent runs in a node host of its own (`node_hosts`: a network
//! namespace joined to the host by a veth pair, its own root), joins with a
//! bootstrap token, and runs busybox pods. Everything (agent, containers,
//! bridge, namespace, veth) is torn down on drop, failure included.

mod node_hosts;
mod server_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use node_hosts::{NodeHost, condition, keel, kubectl133, must, sh};
use serde_json::Value;
use server_common::{KeelServer, eventually};

fn get_json(s: &KeelServer, args: &[&str]) -> Value {
    let mut v = vec!["get"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.ok(&kubectl133(), &v)).unwrap()
}

/// A server on the host side of a node host's veth, an agent joined with a
/// fresh join token, busybox in the node's image store.
fn cluster() -> (KeelServer, NodeHost) {
    let mut node = NodeHost::create();
    let s = KeelServer::start_on(&node.host_ip);
    let token = must(&[
        keel(),
        "--root",
        s.root.path().to_str().unwrap(),
        "server",
        "token",
        "create",
        "--join",
    ]);
    let token = token.trim().to_string();
    assert!(token.starts_with("K10"), "{token}");
    // How an image gets onto a node: into the node's own store.
    node.keel(&["image", "seed-busybox"]);
    let server = format!("https://{}:{}", s.ip, s.port);
    node.start_agent(&server, &token, "node-a");
    (s, node)
}

#[test]
fn agent_joins_and_runs_a_deployment_with_probes_and_graceful_deletion() {
    let (s, node) = cluster();
    let k = kubectl133();

    // The node registers with what the machine has, Ready, its Lease
    // renewed, a podCIDR; it authenticates with its own certificate.
    eventually("node-a Ready", Duration::from_mins(1), || {
        let out = s.kubectl_with(&k, &["get", "node", "node-a", "-o", "json"], None);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|n| condition(&n, "Ready") == Some("True"))
    });
    let nd = get_json(&s, &["node", "node-a"]);
    assert_eq!(
        nd["status"]["nodeInfo"]["kubeletVersion"], "v1.33.0-keel",
        "{nd}"
    );
    assert!(
        nd["status"]["capacity"]["cpu"]
            .as_str()
            .is_some_and(|c| c.parse::<u32>().unwrap() >= 1)
    );
    assert!(
        nd["status"]["capacity"]["memory"]
            .as_str()
            .is_some_and(|m| m.ends_with("Ki"))
    );
    let addrs = nd["status"]["addresses"].to_string();
    assert!(addrs.contains(&node.node_ip), "{addrs}");
    assert!(
        nd["spec"]["podCIDR"]
            .as_str()
            .is_some_and(|c| c.starts_with("10.42.")),
        "{nd}"
    );
    let lease = get_json(&s, &["lease", "-n", "kube-node-lease", "node-a"]);
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");
    let csrs = get_json(&s, &["csr"]);
    let csr = &csrs["items"][0];
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert!(
        csr["spec"]["username"]
            .as_str()
            .unwrap()
            .starts_with("system:bootstrap:"),
        "{csr}"
    );
    assert_eq!(condition(csr, "Approved"), Some("True"));
    let kc = std::fs::read_to_string(node.root().join("agent/kubeconfig")).unwrap();
    assert!(
        kc.contains("client-certificate-data") && !kc.contains("token:"),
        "{kc}"
    );

    // A Deployment with a readiness probe becomes Available; env from a
    // ConfigMap and the downward API, a configMap volume.
    s.ok_in(&k, &["apply", "-f", "-"], Some(WEB));
    s.ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    s.ok(
        &k,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=60s",
        ],
    );
    let pods = get_json(&s, &["pods", "-l", "app=web"]);
    let pod = pods["items"][0].clone();
    let st = &pod["status"];
    assert_eq!(st["phase"], "Running", "{st}");
    for c in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(condition(&pod, c), Some("True"), "{c}: {st}");
    }
    let ip = st["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.42."), "{st}");
    assert_eq!(st["podIPs"][0]["ip"], ip.as_str());
    assert_eq!(st["hostIP"], node.node_ip.as_str());
    assert!(st["startTime"].is_string(), "{st}");
    assert_eq!(st["qosClass"], "Burstable");
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["ready"], true, "{cs}");
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"].as_str().unwrap().starts_with("keel://"),
        "{cs}"
    );
    assert!(cs["imageID"].as_str().unwrap().contains("sha256:"), "{cs}");

    // The pod's IP answers HTTP from inside the node host.
    let get = |path: &str| {
        let out = node.exec(&[
            "busybox",
            "wget",
            "-qO-",
            &format!("http://{ip}:8080/{path}"),
        ]);
        assert!(
            out.status.success(),
            "wget {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(get("index.html"), "hello-from-configmap");
    assert_eq!(get("ip.txt"), ip);
    assert_eq!(get("file.txt"), "hello-from-configmap");
    assert_eq!(get("secret.txt"), "s3cr3t");
    // The init container ran first, into the pod's emptyDir.
    assert_eq!(get("init.txt"), "from-init");
    let init = &st["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(
        get("hostname.txt"),
        pod["metadata"]["name"].as_str().unwrap()
    );

    // A failing liveness probe restarts the container.
    s.ok_in(&k, &["apply", "-f", "-"], Some(LIVENESS));
    eventually("a liveness restart", Duration::from_secs(90), || {
        let flaky = get_json(&s, &["pod", "flaky"]);
        let c = &flaky["status"]["containerStatuses"][0];
        c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["lastState"]["terminated"].is_object()
    });

    // Deleting a pod stops its processes and removes its network namespace,
    // mounts and cgroups; the pod object goes once the agent is done.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let mine: Vec<(String, i64)> = node
        .containers()
        .into_iter()
        .filter(|(_, l, _)| l["io.kubernetes.pod.uid"] == uid.as_str())
        .map(|(id, _, pid)| (id, pid))
        .collect();
    assert_eq!(mine.len(), 3, "sandbox, init and httpd: {mine:?}");
    let netns: Vec<PathBuf> = mine
        .iter()
        .map(|(id, _)| node.root().join("run/netns").join(id))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(netns.len(), 1, "the sandbox holds the pod's netns");
    let cgroups = |id: &str| -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|c| c.path().join("keel").join(id))
            .filter(|p| p.exists())
            .collect()
    };
    // The sandbox and httpd run (the init container is done).
    let running: Vec<&(String, i64)> = mine
        .iter()
        .filter(|(_, pid)| *pid > 0 && Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert_eq!(running.len(), 2, "{mine:?}");
    assert!(running.iter().all(|(id, _)| !cgroups(id).is_empty()));
    s.ok(&k, &["delete", "pod", &name, "--timeout=60s"]);
    let out = s.kubectl_with(&k, &["get", "pod", &name], None);
    assert!(!out.status.success(), "the pod object is gone");
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", node.agent_pid()))
        .unwrap_or_default();
    for (id, pid) in &mine {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of {id} stopped"
        );
        assert!(cgroups(id).is_empty(), "cgroups of {id}: {:?}", cgroups(id));
        assert!(!mountinfo.contains(id.as_str()), "mounts of {id} left");
        assert!(!node.root().join("containers").join(id).exists());
    }
    assert!(netns.iter().all(|p| !p.exists()), "netns {netns:?} removed");
    assert!(!node.root().join("pods").join(&uid).exists());
    // The Deployment's replacement runs again.
    s.ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[test]
fn a_join_token_for_another_server_is_refused() {
    let s = KeelServer::start(None);
    let token = must(&[
        keel(),
        "--root",
        s.root.path().to_str().unwrap(),
        "server",
        "token",
        "create",
        "--join",
    ]);
    // The same bootstrap token, pinned to a CA this server does not have.
    let (_, tok) = token.trim().split_once("::").unwrap();
    let forged = format!("K10{}::{tok}", "0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let out = sh(&[
        keel(),
        "--root",
        dir.path().to_str().unwrap(),
        "agent",
        "--server",
        &format!("https://127.0.0.1:{}", s.port),
        "--token",
        &forged,
        "--name",
        "intruder",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the token is for another server"), "{err}");
    let out = sh(&[
        keel(),
        "agent",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "nope",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("hint:"), "{err}");
    let nodes = s.ok(
        &server_common::kubectls()[0],
        &["get", "nodes", "-o", "name"],
    );
    assert!(nodes.trim().is_empty(), "{nodes}");
}

const WEB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
stringData: {token: s3cr3t}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      initContainers:
      - name: prepare
        image: busybox:latest
        command: ["sh", "-c", "echo from-init > /work/init.txt"]
        volumeMounts: [{name: work, mountPath: /work}]
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c"]
        args:
        - mkdir -p /www && echo $GREETING > /www/index.html && echo $POD_IP > /www/ip.txt
          && cat /etc/web/greeting > /www/file.txt && hostname > /www/hostname.txt
          && echo $TOKEN > /www/secret.txt && cp /work/init.txt /www/init.txt
          && exec httpd -f -p 8080 -h /www
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: web-secret, key: token}}
        ports: [{containerPort: 8080, name: http}]
        resources: {limits: {memory: 64Mi}}
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        volumeMounts: [{name: cfg, mountPath: /etc/web}, {name: work, mountPath: /work}]
      volumes: [{name: cfg, configMap: {name: web-config}}, {name: work, emptyDir: {}}]
"#;

const LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
"#;
