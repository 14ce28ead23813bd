//! kubectl's streams through `keel server` to a `keel agent` (in a node
//! host of its own, see `node_hosts`): `kubectl logs` (-f, --previous,
//! --tail, --since, --since-time, --timestamps, -c, --all-containers, -l),
//! `kubectl exec` (WebSocket v5 with kubectl 1.32 and 1.33, SPDY with
//! kubectl 1.27 and 1.29; stdin, exit codes, -t with the
//! terminal's size), `kubectl attach -i` (stdin into a `stdin: true`
//! container), `kubectl cp` both ways, RBAC on the subresources, and the
//! namespaces a pod's containers share (IPC always, PID with
//! `shareProcessNamespace`).

mod node_hosts;
mod server_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node_hosts::{Cluster, kubectl133};
use server_common::eventually;

const PODS: &str = r"
apiVersion: v1
kind: Pod
metadata:
  name: talker
  labels: {app: talk}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox:latest
    command: [sh, -c, 'i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.2; done']
  - name: b
    image: busybox:latest
    command: [sh, -c, 'echo from-b; echo err-b >&2; exec sleep 3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: [sh, -c, 'echo run-at-$(date +%s%N); sleep 1; exit 1']
";

const WEB: &str = r"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:latest
    command: [sh, -c, 'mkdir -p /www && echo hello-forwarded > /www/index.html && exec httpd -f -p 8080 -h /www']
";

const FINITE: &str = r"
apiVersion: v1
kind: Pod
metadata:
  name: finite
spec:
  restartPolicy: Never
  containers:
  - name: f
    image: busybox:latest
    command: [sh, -c, 'for i in 1 2 3; do echo n$i; sleep 1; done']
";

const SHARING: &str = r"
apiVersion: v1
kind: Pod
metadata:
  name: sharer
spec:
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: true
  containers:
  - name: one
    image: busybox:latest
    command: [sleep, '3601']
  - name: two
    image: busybox:latest
    command: [sleep, '3602']
";

/// A pod whose container reads one line from its stdin, echoes it, exits.
fn reader(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  \
         containers:\n  - {{name: r, image: 'busybox:latest', stdin: true, command: [sh, -c, 'read l; echo got-$l']}}\n"
    )
}

fn kubectl_at(version: &str) -> PathBuf {
    let real = std::fs::canonicalize(server_common::which("kubectl").unwrap()).unwrap();
    let k = real.parent().unwrap().join(format!("kubectl.{version}"));
    assert!(k.exists(), "{} missing", k.display());
    k
}

/// The child's output once it exits, or killed after `limit`: a stream
/// that never ends fails the test instead of hanging it.
fn bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn running(c: &Cluster, pod: &str) {
    c.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("pod/{pod}"),
        "--timeout=90s",
    ]);
}

#[test]
fn logs_exec_and_cp_through_the_api_server() {
    let c = Cluster::start(1);
    let k = kubectl133();
    c.apply(PODS);
    c.apply(SHARING);
    c.apply(&reader("reader-ws"));
    c.apply(&reader("reader-spdy"));
    running(&c, "talker");

    eprintln!("agent_streams: logs");
    // -c, both streams; --timestamps with nine fractional digits.
    eventually("b's output", Duration::from_secs(10), || {
        c.kubectl(&["logs", "talker", "-c", "b"]).lines().count() == 2
    });
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "b"]), "from-b\nerr-b\n");
    let ts = c.kubectl(&["logs", "talker", "-c", "b", "--timestamps"]);
    let stamped = |l: &str, text: &str| {
        let (t, rest) = l.split_once(' ').unwrap_or_default();
        // 2026-12-07T09:00:00.123456789Z
        let digits = t.get(20..29).unwrap_or_default();
        rest == text
            && t.len() == 30
            && t.as_bytes()[19] == b'.'
            && t.ends_with('Z')
            && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let lines: Vec<&str> = ts.lines().collect();
    assert!(
        lines.len() == 2 && stamped(lines[0], "from-b") && stamped(lines[1], "err-b"),
        "{ts:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let tail = c.kubectl(&["logs", "talker", "-c", "a", "--tail=3"]);
    assert_eq!(tail.lines().count(), 3, "{tail}");
    assert!(tail.lines().all(|l| l.starts_with("line-")), "{tail}");
    let all = c.kubectl(&["logs", "talker", "-c", "a"]);
    let recent = c.kubectl(&["logs", "talker", "-c", "a", "--since=1s"]);
    let (n_all, n_recent) = (all.lines().count(), recent.lines().count());
    assert!(n_recent > 0 && n_recent < n_all, "{n_recent} of {n_all}");
    assert_eq!(
        c.kubectl(&[
            "logs",
            "talker",
            "-c",
            "b",
            "--since-time=2999-01-01T00:00:00Z"
        ]),
        ""
    );
    let both = c.kubectl(&["logs", "talker", "--all-containers", "--tail=1"]);
    assert!(both.contains("err-b") && both.contains("line-"), "{both}");
    assert_eq!(
        c.kubectl(&["logs", "-l", "app=talk", "-c", "b", "--tail=1"]),
        "err-b\n"
    );
    let err = c.server.fails(&k, &["logs", "talker", "-c", "nope"], None);
    assert!(
        err.contains("container nope is not valid for pod talker"),
        "{err}"
    );

    eprintln!("agent_streams: logs -f");
    // -f follows until the container exits: the lines written after the
    // request come through.
    c.apply(FINITE);
    running(&c, "finite");
    let started = Instant::now();
    let followed = c.kubectl(&["logs", "-f", "finite"]);
    assert_eq!(followed, "n1\nn2\nn3\n");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for later lines"
    );

    eprintln!("agent_streams: previous");
    // --previous: the log of the container before the last restart.
    eventually("crash restarted", Duration::from_mins(1), || {
        let p = c.get_json(&["pod", "crash"]);
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let prev = c.kubectl(&["logs", "crash", "--previous"]);
    assert!(prev.starts_with("run-at-"), "{prev:?}");
    let err = c
        .server
        .fails(&k, &["logs", "talker", "-c", "b", "--previous"], None);
    assert!(
        err.contains("previous terminated container \"b\" in pod \"talker\" not found"),
        "{err}"
    );

    eprintln!("agent_streams: exec");
    // exec over WebSocket v5 (kubectl 1.32 on PATH, 1.33): stdout, stderr,
    // exit codes, stdin closed by the v5 close signal.
    // SPDY/3.1 with kubectl 1.27 and 1.29.
    let mut clients = server_common::kubectls();
    clients.push(kubectl_at("1.27"));
    clients.push(kubectl_at("1.29"));
    for kc in clients {
        let out = c.server.kubectl_with(
            &kc,
            &[
                "exec",
                "talker",
                "-c",
                "b",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(3), "{}: {out:?}", kc.display());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err\n"),
            "{out:?}"
        );
        let wc = c.server.ok_in(
            &kc,
            &["exec", "-i", "talker", "-c", "b", "--", "wc", "-c"],
            Some("hello"),
        );
        assert_eq!(wc.trim(), "5", "{}", kc.display());
    }

    eprintln!("agent_streams: exec -t");
    // -t: the command sees a terminal of the client's size, and its
    // resizes (kubectl 1.33 over WebSocket, 1.27 over SPDY). The first
    // `stty` waits: `keel exec -t` sizes the terminal once the process
    // runs (the runtime makes the pty), so a command reading its size at
    // once may see 0x0.
    for kc in [k.clone(), kubectl_at("1.27")] {
        let script = format!(
            "stty rows 33 cols 111; (sleep 2; stty rows 44 cols 122 </dev/tty) & \
             KUBECONFIG={} HOME={} {} exec -it talker -c b -- sh -c 'sleep 0.5; stty size; sleep 4; stty size'",
            c.server.kubeconfig.display(),
            c.server.home.path().display(),
            kc.display()
        );
        let out = Command::new("script")
            .args(["-qec", &script, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && shown.contains("33 111") && shown.contains("44 122"),
            "{}: {out:?}",
            kc.display()
        );
    }

    eprintln!("agent_streams: attach and shared namespaces");
    // A pod's containers share its IPC namespace (not another pod's); with
    // shareProcessNamespace they see each other's processes.
    let ns_of = |pod: &str, ctr: &str| {
        c.kubectl(&[
            "exec",
            pod,
            "-c",
            ctr,
            "--",
            "readlink",
            "/proc/self/ns/ipc",
        ])
    };
    running(&c, "sharer");
    let (a, b, other) = (
        ns_of("talker", "a"),
        ns_of("talker", "b"),
        ns_of("sharer", "one"),
    );
    assert!(
        a.starts_with("ipc:[") && a == b && a != other,
        "{a} {b} {other}"
    );
    assert_eq!(ns_of("sharer", "two"), other);
    let ps = c.kubectl(&["exec", "sharer", "-c", "one", "--", "ps"]);
    assert!(ps.contains("sleep 3602"), "{ps}");
    let ps = c.kubectl(&["exec", "talker", "-c", "b", "--", "ps"]);
    assert!(!ps.contains("while true"), "{ps}");
    // attach -i writes into the container's stdin (WebSocket with 1.33,
    // SPDY with 1.27); the attach ends when the container does.
    for (pod, kc) in [
        ("reader-ws", k.clone()),
        ("reader-spdy", kubectl_at("1.27")),
    ] {
        running(&c, pod);
        // Bounded: without stdin the reader would wait forever.
        let mut attach = Command::new(&kc)
            .args(["attach", "-i", pod, "-c", "r"])
            .env("KUBECONFIG", &c.server.kubeconfig)
            .env("HOME", c.server.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            attach.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        }
        let out = bounded(attach, Duration::from_mins(1));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("got-hi"),
            "{pod}: {out:?}"
        );
        eventually("the reader to finish", Duration::from_secs(20), || {
            c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]) == "Succeeded"
        });
    }

    eprintln!("agent_streams: python");
    // The Python client's stream (v4.channel.k8s.io).
    let py = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/exec_stream.py"
        ))
        .args(["default", "talker", "b"])
        .env("KUBECONFIG", &c.server.kubeconfig)
        .env("HOME", c.server.home.path())
        .current_dir(c.server.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let py = bounded(py, Duration::from_mins(2));
    assert!(py.status.success(), "{py:?}");

    eprintln!("agent_streams: cp");
    // kubectl cp both ways (tar over exec; into the pod needs stdin's end).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    c.kubectl(&[
        "cp",
        src.to_str().unwrap(),
        "talker:/tmp/copied.bin",
        "-c",
        "b",
    ]);
    let back = dir.path().join("back.bin");
    c.kubectl(&[
        "cp",
        "talker:/tmp/copied.bin",
        back.to_str().unwrap(),
        "-c",
        "b",
    ]);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "cp round trip differs"
    );

    eprintln!("agent_streams: rbac");
    // RBAC: exec needs `create` on pods/exec; logs need `get` on pods/log.
    c.apply(
        r"
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: view-logs}
rules:
- apiGroups: ['']
  resources: [pods, pods/log]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: view-logs}
subjects:
- {kind: ServiceAccount, name: viewer, namespace: default}
",
    );
    let token = c.kubectl(&["create", "token", "viewer"]);
    let token = format!("--token={}", token.trim());
    assert_eq!(
        c.kubectl(&[&token, "logs", "talker", "-c", "b", "--tail=1"]),
        "err-b\n"
    );
    let err = c.server.fails(
        &k,
        &[&token, "exec", "talker", "-c", "b", "--", "true"],
        None,
    );
    assert!(
        err.contains("cannot create resource \"pods/exec\""),
        "{err}"
    );

    eprintln!("agent_streams: port-forward");
    // port-forward serves the pod's HTTP: kubectl 1.33 tunnels SPDY in a
    // WebSocket, 1.27 speaks SPDY.
    c.apply(WEB);
    running(&c, "web");
    for kc in [k.clone(), kubectl_at("1.27")] {
        let port = server_common::free_port();
        let mut pf = Command::new(&kc)
            .args(["port-forward", "pod/web", &format!("{port}:8080")])
            .env("KUBECONFIG", &c.server.kubeconfig)
            .env("HOME", c.server.home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/index.html");
        let mut got = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = Command::new("curl")
                .args(["-s", "-m", "5", &url])
                .output()
                .unwrap();
            got = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        // A second connection through the same forward.
        let again = Command::new("curl")
            .args(["-s", "-m", "5", &url])
            .output()
            .unwrap();
        let _ = pf.kill();
        let out = pf.wait_with_output().unwrap();
        assert_eq!(got, "hello-forwarded\n", "{}: {out:?}", kc.display());
        assert_eq!(String::from_utf8_lossy(&again.stdout), "hello-forwarded\n");
    }

    // The agent's endpoint serves the API server only: a certificate of
    // the same CA for another user is refused, no certificate fails TLS.
    let node = c.get_json(&["node", "node-0"]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    let url = format!(
        "https://{}:{port}/containerLogs/default/talker/b",
        c.nodes[0].node_ip
    );
    let tls = c.server.state_dir().join("tls");
    let admin = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", "--cert"])
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg(&url)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&admin.stdout);
    assert!(body.ends_with("403") && !body.contains("from-b"), "{body}");
    let anon = Command::new("curl").args(["-sk", &url]).output().unwrap();
    assert!(!anon.status.success() && anon.stdout.is_empty(), "{anon:?}");
}
