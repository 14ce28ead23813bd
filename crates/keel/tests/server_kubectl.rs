//! `keel server` driven by the real kubectl (1.32 and 1.33) through the
//! kubeconfig it writes, on the embedded store and on a 3-member etcd cluster.

#[path = "server_common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KeelServer, kubectls};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: suite
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: suite
  labels: {app: web, tier: fe}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
        resources:
          limits: {cpu: 1, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: suite
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: suite
  labels: {app: web}
data:
  mode: "one"
"#;

fn jsonpath(s: &KeelServer, k: &Path, what: &str, path: &str) -> String {
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "get",
            what,
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

/// The kubectl workflow every backend and kubectl version must pass.
fn kubectl_suite(s: &KeelServer, k: &Path) {
    // apply (client-side) creates, re-apply with a changed field configures.
    let out = s.ok_in(k, &["apply", "-f", "-"], Some(APP));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(out.contains("namespace/suite created"), "{out}");
    let changed = APP
        .replace("replicas: 2", "replicas: 3")
        .replace("mode: \"one\"", "mode: \"two\"");
    let out = s.ok_in(k, &["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    assert_eq!(jsonpath(s, k, "deploy/web", "{.spec.replicas}"), "3");
    assert_eq!(jsonpath(s, k, "deploy/web", "{.metadata.generation}"), "2");
    assert_eq!(jsonpath(s, k, "cm/settings", "{.data.mode}"), "two");
    // Server-side apply, then a re-apply that changes a field and drops a label.
    let ssa = changed.replace("image: nginx:1.25", "image: nginx:1.27");
    let out = s.ok_in(k, &["apply", "--server-side", "-f", "-"], Some(&ssa));
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    assert_eq!(
        jsonpath(
            s,
            k,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.27"
    );
    let ssa2 = ssa.replace("labels: {app: web, tier: fe}", "labels: {app: web}");
    s.ok_in(k, &["apply", "--server-side", "-f", "-"], Some(&ssa2));
    assert_eq!(
        jsonpath(s, k, "deploy/web", "{.metadata.labels}"),
        "{\"app\":\"web\"}"
    );
    // create: new object, then AlreadyExists.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: suite\ndata:\n  k: v\n";
    assert!(
        s.ok_in(k, &["create", "-f", "-"], Some(cm))
            .contains("configmap/extra created")
    );
    let err = s.fails(k, &["create", "-f", "-"], Some(cm));
    assert!(
        err.contains("AlreadyExists") && err.contains("\"extra\" already exists"),
        "{err}"
    );

    // Generators send protobuf bodies (typed clients).
    s.ok(k, &["create", "namespace", "gen"]);
    s.ok(
        k,
        &[
            "-n",
            "gen",
            "create",
            "configmap",
            "g1",
            "--from-literal=a=b",
            "--from-literal=empty=",
        ],
    );
    assert_eq!(
        s.ok(
            k,
            &["-n", "gen", "get", "cm", "g1", "-o", "jsonpath={.data}"]
        ),
        "{\"a\":\"b\",\"empty\":\"\"}"
    );
    s.ok(
        k,
        &[
            "-n",
            "gen",
            "create",
            "deployment",
            "gd",
            "--image=nginx:1.25",
            "--replicas=2",
            "--port=80",
        ],
    );
    assert_eq!(s.ok(k, &["-n", "gen", "get", "deploy", "gd", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}"]), "2 80");
    s.ok(
        k,
        &[
            "-n",
            "gen",
            "create",
            "secret",
            "generic",
            "gs",
            "--from-literal=pw=hunter2",
        ],
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "-n",
                "gen",
                "get",
                "secret",
                "gs",
                "-o",
                "jsonpath={.data.pw}"
            ]
        ),
        "aHVudGVyMg=="
    );
    s.ok(
        k,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "clusterip",
            "gsvc",
            "--tcp=80:8080",
        ],
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "-n",
                "gen",
                "get",
                "svc",
                "gsvc",
                "-o",
                "jsonpath={.spec.ports[0].targetPort}"
            ]
        ),
        "8080"
    );
    s.ok(
        k,
        &[
            "-n",
            "gen",
            "create",
            "job",
            "gj",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ],
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "-n",
                "gen",
                "get",
                "job",
                "gj",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].command}"
            ]
        ),
        "[\"echo\",\"hi\"]"
    );
    s.ok(k, &["delete", "namespace", "gen", "--timeout=60s"]);

    // get: table columns, -o wide, -o yaml, -l, --field-selector.
    let out = s.ok(k, &["-n", "suite", "get", "deploy"]);
    assert!(
        out.starts_with("NAME")
            && out.contains("READY")
            && out.contains("UP-TO-DATE")
            && out.contains("web"),
        "{out}"
    );
    let out = s.ok(k, &["-n", "suite", "get", "deploy", "-o", "wide"]);
    assert!(
        out.contains("CONTAINERS") && out.contains("nginx:1.27") && out.contains("app=web"),
        "{out}"
    );
    let out = s.ok(k, &["-n", "suite", "get", "svc", "-o", "wide"]);
    assert!(
        out.contains("CLUSTER-IP") && out.contains("80/TCP") && out.contains("10.43."),
        "{out}"
    );
    let out = s.ok(k, &["get", "ns"]);
    assert!(
        out.contains("suite") && out.contains("Active") && out.contains("kube-system"),
        "{out}"
    );
    let out = s.ok(k, &["-n", "suite", "get", "cm", "settings", "-o", "yaml"]);
    assert!(
        out.contains("resourceVersion:") && out.contains("uid:") && out.contains("mode: two"),
        "{out}"
    );
    let out = s.ok(
        k,
        &["-n", "suite", "get", "cm", "-l", "app=web", "-o", "name"],
    );
    assert_eq!(out.trim(), "configmap/settings");
    let out = s.ok(
        k,
        &[
            "-n",
            "suite",
            "get",
            "cm",
            "--field-selector",
            "metadata.name=extra",
            "-o",
            "name",
        ],
    );
    assert_eq!(out.trim(), "configmap/extra");
    let out = s.ok(k, &["get", "cm", "-A", "-l", "app=web", "-o", "name"]);
    assert_eq!(out.trim(), "configmap/settings");

    // get -w receives events.
    let mut watch = Command::new(k)
        .args(["-n", "suite", "get", "cm", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The initial list first, then our change.
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch output");
    assert!(
        first.starts_with("EVENT") && first.contains("NAME") && first.contains("DATA"),
        "{first}"
    );
    s.ok(k, &["-n", "suite", "label", "cm", "extra", "watched=yes"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no MODIFIED event; saw {seen:?}"));
        if line.starts_with("MODIFIED") && line.contains("extra") {
            break;
        }
        seen.push(line);
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // describe.
    let out = s.ok(k, &["-n", "suite", "describe", "deploy", "web"]);
    assert!(
        out.contains("Replicas:") && out.contains("3 desired") && out.contains("nginx:1.27"),
        "{out}"
    );
    let out = s.ok(k, &["-n", "suite", "describe", "cm", "extra"]);
    assert!(out.contains("watched=yes"), "{out}");

    // edit by patch: strategic (merge key on containers), merge, JSON patch.
    s.ok(k, &["-n", "suite", "patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"B","value":"2"}]}]}}}}"#]);
    assert_eq!(
        jsonpath(
            s,
            k,
            "deploy/web",
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        // Kubernetes puts a patch's new items before the server's own
        // (apimachinery's merge order; the strategic-merge-patch cases pin it).
        "B A"
    );
    assert_eq!(
        jsonpath(
            s,
            k,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.27"
    );
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "patch",
            "cm",
            "extra",
            "--type=merge",
            "-p",
            r#"{"data":{"k":null,"n":"1"}}"#,
        ],
    );
    assert_eq!(jsonpath(s, k, "cm/extra", "{.data}"), "{\"n\":\"1\"}");
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "patch",
            "cm",
            "extra",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"x"}]"#,
        ],
    );
    assert_eq!(jsonpath(s, k, "cm/extra", "{.data.j}"), "x");

    // label, annotate, scale, wait.
    s.ok(k, &["-n", "suite", "label", "deploy", "web", "env=prod"]);
    s.ok(
        k,
        &["-n", "suite", "annotate", "deploy", "web", "owner=team-a"],
    );
    assert_eq!(
        jsonpath(s, k, "deploy/web", "{.metadata.labels.env}"),
        "prod"
    );
    assert_eq!(
        jsonpath(s, k, "deploy/web", "{.metadata.annotations.owner}"),
        "team-a"
    );
    let out = s.ok(
        k,
        &["-n", "suite", "scale", "deploy", "web", "--replicas=5"],
    );
    assert!(out.contains("scaled"), "{out}");
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "wait",
            "deploy/web",
            "--for=jsonpath={.spec.replicas}=5",
            "--timeout=20s",
        ],
    );
    // A status written through the status subresource satisfies wait --for=condition.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  namespace: suite\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    s.ok_in(k, &["create", "-f", "-"], Some(pod));
    assert_eq!(jsonpath(s, k, "pod/p1", "{.status.phase}"), "Pending");
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "patch",
            "pod",
            "p1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    );
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "wait",
            "pod/p1",
            "--for=condition=Ready",
            "--timeout=20s",
        ],
    );
    let out = s.ok(k, &["-n", "suite", "get", "pods"]);
    assert!(out.contains("Running"), "{out}");
    let out = s.ok(
        k,
        &[
            "-n",
            "suite",
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
    );
    assert_eq!(out.trim(), "pod/p1");

    // Owner cascade: a ConfigMap owned by the Deployment goes with it.
    let uid = jsonpath(s, k, "deploy/web", "{.metadata.uid}");
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: suite\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: web\n    uid: {uid}\n"
    );
    s.ok_in(k, &["create", "-f", "-"], Some(&owned));
    // Finalizers hold a deletion until removed.
    let fin = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: suite\n  finalizers: [example.com/hold]\n";
    s.ok_in(k, &["create", "-f", "-"], Some(fin));
    s.ok(k, &["-n", "suite", "delete", "cm", "held", "--wait=false"]);
    assert!(!jsonpath(s, k, "cm/held", "{.metadata.deletionTimestamp}").is_empty());
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "patch",
            "cm",
            "held",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "wait",
            "cm/held",
            "--for=delete",
            "--timeout=20s",
        ],
    );

    // Orphan and foreground propagation.
    let dep2 = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: suite\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - {{name: c, image: busybox}}\n"
        )
    };
    let child = |name: &str, owner: &str, uid: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: suite\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: {owner}, uid: {uid}}}\n"
        )
    };
    for (owner, cascade) in [("orph", "orphan"), ("fore", "foreground")] {
        s.ok_in(k, &["create", "-f", "-"], Some(&dep2(owner)));
        let ouid = jsonpath(s, k, &format!("deploy/{owner}"), "{.metadata.uid}");
        s.ok_in(
            k,
            &["create", "-f", "-"],
            Some(&child(&format!("{owner}-child"), owner, &ouid)),
        );
        s.ok(
            k,
            &[
                "-n",
                "suite",
                "delete",
                "deploy",
                owner,
                &format!("--cascade={cascade}"),
            ],
        );
    }
    assert_eq!(
        jsonpath(s, k, "cm/orph-child", "{.metadata.ownerReferences}"),
        ""
    );
    let err = s.fails(k, &["-n", "suite", "get", "cm", "fore-child"], None);
    assert!(err.contains("NotFound"), "{err}");

    s.ok(k, &["-n", "suite", "delete", "deploy", "web"]);
    s.ok(
        k,
        &[
            "-n",
            "suite",
            "wait",
            "cm/owned",
            "--for=delete",
            "--timeout=20s",
        ],
    );
    let err = s.fails(k, &["-n", "suite", "get", "deploy", "web"], None);
    assert!(err.contains("NotFound"), "{err}");

    // Namespace deletion removes its contents.
    s.ok(k, &["delete", "ns", "suite", "--timeout=60s"]);
    let out = s.ok(k, &["get", "cm", "-A", "-o", "name"]);
    assert!(!out.contains("settings") && !out.contains("extra"), "{out}");
    let err = s.fails(k, &["get", "ns", "suite"], None);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn kubectl_1_32_on_sqlite() {
    let s = KeelServer::start(None);
    kubectl_suite(&s, &kubectls()[0]);
}

#[test]
fn kubectl_1_33_on_sqlite() {
    let s = KeelServer::start(None);
    kubectl_suite(&s, &kubectls()[1]);
}

#[test]
fn kubectl_on_three_member_etcd_survives_member_loss() {
    let mut cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    let k = &kubectls()[1];
    kubectl_suite(&s, k);
    cluster.kill(1);
    for i in 0..5 {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-{i}\ndata:\n  i: \"{i}\"\n"
        );
        s.ok_in(k, &["create", "-f", "-"], Some(&cm));
    }
    let out = s.ok(k, &["get", "cm", "-o", "name"]);
    assert_eq!(
        out.lines().filter(|l| l.contains("after-")).count(),
        5,
        "{out}"
    );
}

#[test]
fn read_only_token_reads_but_cannot_write() {
    let s = KeelServer::start(None);
    let k = &kubectls()[0];
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--root")
        .arg(s.root.path())
        .args(["server", "token", "create", "--read-only"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 48);
    let out = s.ok(k, &["--token", &token, "get", "ns", "-o", "name"]);
    assert!(out.contains("namespace/default"), "{out}");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nope\n";
    let err = s.fails(k, &["--token", &token, "create", "-f", "-"], Some(cm));
    assert!(
        err.contains("Forbidden") && err.contains("read-only"),
        "{err}"
    );
    let err = s.fails(k, &["--token", "wrong", "get", "ns"], None);
    assert!(err.contains("Unauthorized"), "{err}");
}

#[test]
fn secrets_are_encrypted_at_rest() {
    let s = KeelServer::start(None);
    let k = &kubectls()[0];
    let plain = "correct-horse-battery-staple-0123";
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {plain}\n"
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&secret));
    let got = s.ok(
        k,
        &["get", "secret", "creds", "-o", "jsonpath={.data.password}"],
    );
    assert_eq!(got, "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZS0wMTIz");
    // Neither the plaintext nor its base64 is anywhere in the state files.
    let mut scanned = 0;
    for entry in std::fs::read_dir(s.state_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            scanned += bytes.len();
            for needle in [plain, got.as_str(), "correct-horse"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    p.display()
                );
            }
        }
    }
    assert!(scanned > 0);
}

/// Server-side apply conflicts between field managers, as kubectl shows them.
fn ssa_conflicts(s: &KeelServer, k: &Path, ns: &str) {
    s.ok(k, &["create", "namespace", ns]);
    let dep = |replicas: u32, image: &str, labels: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: c\n        image: {image}\n"
        )
    };
    let apply = |manager: &str, doc: &str, extra: &[&str]| {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-f",
            "-",
        ];
        args.extend_from_slice(extra);
        s.kubectl_with(k, &args, Some(doc))
    };
    let managed = || -> serde_json::Value {
        let out = s.ok(
            k,
            &[
                "-n",
                ns,
                "get",
                "deploy",
                "web",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["metadata"]["managedFields"].clone()
    };
    let owns = |manager: &str, pointer: &str| {
        managed()
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["manager"] == manager)
            .any(|e| e["fieldsV1"].pointer(pointer).is_some())
    };
    let base = dep(2, "nginx:1.25", "app: web, team: a");
    let out = apply("alice", &base, &[]);
    assert!(out.status.success(), "{out:?}");
    // A different value for a field alice owns: one conflict, kubectl's text.
    let out = apply("bob", &dep(3, "nginx:1.25", "app: web, team: a"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(jsonpath_in(s, k, ns, "{.spec.replicas}"), "2");
    // The same value co-owns.
    let out = apply("bob", &base, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(owns("alice", "/f:spec/f:replicas") && owns("bob", "/f:spec/f:replicas"));
    // Forced: bob takes replicas from alice.
    let out = apply(
        "bob",
        &dep(4, "nginx:1.25", "app: web, team: a"),
        &["--force-conflicts"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(jsonpath_in(s, k, ns, "{.spec.replicas}"), "4");
    assert!(!owns("alice", "/f:spec/f:replicas") && owns("bob", "/f:spec/f:replicas"));
    assert!(owns("alice", "/f:metadata/f:labels/f:team"));
    // kubectl scale is an update through the scale subresource: it takes
    // replicas, and the next apply with another value conflicts with it.
    s.ok(k, &["-n", ns, "scale", "deploy", "web", "--replicas=5"]);
    assert!(!owns("bob", "/f:spec/f:replicas"));
    let out = apply("bob", &dep(4, "nginx:1.27", "app: web, team: a"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Apply failed with 2 conflicts"), "{err}");
    assert!(
        err.contains(r#"with subresource "scale" using apps/v1:"#)
            && err.contains("- .spec.replicas"),
        "{err}"
    );
    assert!(
        err.contains(
            "conflicts with \"alice\":\n- .spec.template.spec.containers[name=\"c\"].image"
        ),
        "{err}"
    );
    assert_eq!(jsonpath_in(s, k, ns, "{.spec.replicas}"), "5");
    // Fields a manager stops applying are released; removed from the
    // object only when no one else owns them.
    let out = apply(
        "alice",
        &dep(2, "nginx:1.25", "app: web"),
        &["--force-conflicts"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        jsonpath_in(s, k, ns, "{.metadata.labels}"),
        r#"{"app":"web","team":"a"}"#,
        "bob still applies team"
    );
    let out = apply("bob", &dep(2, "nginx:1.25", "app: web"), &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        jsonpath_in(s, k, ns, "{.metadata.labels}"),
        r#"{"app":"web"}"#
    );
    // The classic: kubectl scale, then kubectl's own server-side apply of
    // another replica count.
    s.ok(k, &["-n", ns, "scale", "deploy", "web", "--replicas=6"]);
    let out = s.kubectl_with(
        k,
        &["apply", "--server-side", "-f", "-"],
        Some(&dep(2, "nginx:1.25", "app: web")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl"#)
            && err.contains(r#" with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
}

fn jsonpath_in(s: &KeelServer, k: &Path, ns: &str, path: &str) -> String {
    s.ok(
        k,
        &[
            "-n",
            ns,
            "get",
            "deploy",
            "web",
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

#[test]
fn server_side_apply_conflicts_between_managers() {
    let s = KeelServer::start(None);
    for (i, k) in kubectls().iter().enumerate() {
        ssa_conflicts(&s, k, &format!("ssa-{i}"));
    }
}

/// kubectl and client-go offer h2 in ALPN, so with HTTP/2 on they talk
/// HTTP/2 to keel server (the kubectl suites above run over it); a client
/// that offers only HTTP/1.1 still gets it.
#[test]
fn http2_is_negotiated_and_http1_still_served() {
    let s = KeelServer::start(None);
    let auth = format!("Authorization: Bearer {}", s.admin_token());
    let url = format!(
        "https://127.0.0.1:{}/api/v1/namespaces/default/configmaps",
        s.port
    );
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sk",
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(["-H", &auth, &url])
            .output()
            .expect("run curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{version} 200")
        );
    }
    // A watch streams over HTTP/2 too.
    let mut watch = Command::new("curl")
        .args(["-skN", "--http2", "--max-time", "20", "-H", &auth])
        .arg(format!("{url}?watch=true&resourceVersion=0"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let k = &kubectls()[0];
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-h2\n"),
    );
    let mut line = String::new();
    let mut reader = BufReader::new(watch.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !line.contains("over-h2") && Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        line.contains("\"ADDED\"") && line.contains("over-h2"),
        "{line}"
    );
}
