//! Resource metrics and the Horizontal Pod Autoscaler end to end: a real
//! `keel server` with its own agent in a network namespace made here.
//! Busy busybox pods (a CPU request of 100m, a limit of 200m) show in
//! `kubectl top pod` and `kubectl top node`; `kubectl autoscale deployment
//! web --cpu-percent=50 --min=2 --max=5` scales them up to 5, shows
//! `cpu: N%/50%` in `kubectl get hpa`, records `SuccessfulRescale`; once
//! the pods go idle the Deployment returns to 2, not before the
//! (test-shortened) downscale stabilization window. Everything is torn
//! down on drop, failure included.

mod server_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use server_common::{eventually, free_port};

/// `--hpa-downscale-stabilization` of the server under test.
const WINDOW: Duration = Duration::from_secs(20);
/// The least time from idle to the scale-down: the window, less a sync
/// and a reading's lag.
const HELD: Duration = Duration::from_secs(15);

fn keel() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

struct Host {
    ns: String,
    root: tempfile::TempDir,
    home: tempfile::TempDir,
    server: Option<Child>,
}

impl Host {
    fn start() -> Self {
        let ns = format!("keel-hpa-t{}", std::process::id());
        let mut h = Host {
            ns: ns.clone(),
            root: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            server: None,
        };
        assert!(sh(&["ip", "netns", "add", &ns]).status.success());
        assert!(h.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        let root = h.root().to_str().unwrap().to_string();
        let seed = sh(&[keel(), "--root", &root, "image", "seed-busybox"]);
        assert!(
            seed.status.success(),
            "{}",
            String::from_utf8_lossy(&seed.stderr)
        );
        let log = std::fs::File::create(h.root().join("server.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args([keel(), "--root", &root, "server", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--write-kubeconfig")
            .arg(h.kubeconfig())
            .args(["--node-name", "hpa-node", "--dns-listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(["--hpa-sync-period", "2s", "--hpa-downscale-stabilization"])
            .arg(format!("{}s", WINDOW.as_secs()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start keel server");
        h.server = Some(child);
        eventually("the server's kubeconfig", Duration::from_secs(30), || {
            h.kubeconfig().exists()
        });
        h
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.root().join("kubeconfig")
    }

    fn exec(&self, args: &[&str]) -> Output {
        let net = format!("--net=/run/netns/{}", self.ns);
        let mut v = vec!["nsenter", &net];
        v.extend_from_slice(args);
        sh(&v)
    }

    fn kubectl_bin(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(bin)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_bin(&server_common::kubectls().pop().unwrap(), args, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn replicas(&self) -> i64 {
        self.ok(
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None,
        )
        .trim()
        .parse()
        .unwrap_or(-1)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let root = self.root().to_str().unwrap().to_string();
        if let Ok(rd) = std::fs::read_dir(self.root().join("containers")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.exec(&[keel(), "--root", &root, "rm", "-f", &id]);
            }
        }
        let _ = self.exec(&[keel(), "--root", &root, "network", "rm", "keel-pods"]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

/// Pods that spin until `/tmp/idle` exists, then sleep.
const WEB: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: spin
        image: busybox
        command: [sh, -c, 'while [ ! -e /tmp/idle ]; do :; done; exec sleep 100000']
        resources:
          requests: {cpu: 100m}
          limits: {cpu: 200m}
";

/// `kubectl top` output with numbers as `N` (units kept), pod name
/// suffixes and the node's name masked, columns single-spaced.
fn masked(out: &str) -> String {
    out.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|w| {
                    if w.starts_with("web-") {
                        "web-<hash>".to_string()
                    } else if w.starts_with(|c: char| c.is_ascii_digit()) {
                        format!("N{}", w.trim_start_matches(|c: char| c.is_ascii_digit()))
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn busy_pods_scale_up_and_back_down_after_the_window() {
    let h = Host::start();
    eventually("node hpa-node Ready", Duration::from_mins(1), || {
        h.kubectl(&["get", "node", "hpa-node"], None)
            .status
            .success()
    });
    h.ok(&["apply", "-f", "-"], Some(WEB));
    eventually("web Available", Duration::from_mins(2), || {
        h.ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
            None,
        ) == "1"
    });

    // metrics.k8s.io: the busy pod uses CPU (kubectl top needs two
    // readings of the agent's sampler first).
    let mut top = String::new();
    eventually("kubectl top pod", Duration::from_mins(1), || {
        let out = h.kubectl(&["top", "pod", "--containers"], None);
        top = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && top.contains("spin")
    });
    let cpu: u64 = top
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|c| c.strip_suffix('m'))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{top}"));
    assert!(cpu > 50, "a busy pod at {cpu}m: {top}");
    insta::assert_snapshot!("top_pod_containers", masked(&top));
    let nodes = h.ok(&["top", "node"], None);
    insta::assert_snapshot!("top_node", masked(&nodes));
    let all = h.ok(&["top", "pod", "-A"], None);
    assert!(
        all.lines()
            .next()
            .unwrap_or_default()
            .starts_with("NAMESPACE"),
        "{all}"
    );

    // The autoscaler: min 2 first, then up on CPU, at most 5.
    let load = Instant::now();
    h.ok(
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu-percent=50",
            "--min=2",
            "--max=5",
        ],
        None,
    );
    eventually("web scaled to 5", Duration::from_mins(3), || {
        h.replicas() == 5
    });
    let up = load.elapsed();
    eventually("5 pods Ready", Duration::from_mins(2), || {
        h.ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        ) == "5"
    });
    eprintln!("scaled to 5 in {up:?}, Ready after {:?}", load.elapsed());
    let mut table = String::new();
    eventually("TARGETS with a reading", Duration::from_mins(1), || {
        table = h.ok(&["get", "hpa", "web"], None);
        table.contains("cpu: ") && !table.contains("<unknown>")
    });
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("web") && row.contains("Deployment/web"),
        "{table}"
    );
    let target = row.split_whitespace().nth(3).unwrap();
    assert!(
        target.ends_with("%/50%") && target.trim_end_matches("%/50%").parse::<u32>().is_ok(),
        "TARGETS as Kubernetes prints them: {table}"
    );
    let conditions = h.ok(
        &[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason};{end}",
        ],
        None,
    );
    assert!(conditions.contains("AbleToScale=True/"), "{conditions}");
    assert!(
        conditions.contains("ScalingActive=True/ValidMetricFound"),
        "{conditions}"
    );
    let events = h.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulRescale",
            "-o",
            "jsonpath={range .items[*]}{.message}|{end}",
        ],
        None,
    );
    assert!(
        events.contains("New size: 2; reason: Current number of replicas below Spec.MinReplicas"),
        "{events}"
    );
    assert!(
        events.contains("; reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );

    // Idle: down to the minimum, but only after the window.
    let pods = h.ok(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    );
    for p in pods.split_whitespace() {
        h.ok(&["exec", p, "--", "touch", "/tmp/idle"], None);
    }
    let idle = Instant::now();
    eventually("web back to 2", Duration::from_mins(3), || {
        h.replicas() == 2
    });
    let down = idle.elapsed();
    assert!(
        down >= HELD,
        "scaled down {down:?} after the load stopped, inside the {WINDOW:?} window"
    );
    let events = h.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulRescale",
            "-o",
            "jsonpath={range .items[*]}{.message}|{end}",
        ],
        None,
    );
    assert!(
        events.contains("New size: 2; reason: All metrics below target"),
        "{events}"
    );
}

/// kubectl 1.27 sends `kubectl autoscale` as autoscaling/v1: the object is
/// stored as v2 (a CPU Utilization metric), read back as v1, and the
/// controller acts on it: the Deployment goes to `--min`, and with no
/// readings (no node runs the pods) `ScalingActive` says why in
/// Kubernetes' words.
#[test]
fn kubectl_127_autoscale_v1_is_served_and_acted_on() {
    let s = server_common::KeelServer::start(None);
    let real = std::fs::canonicalize(server_common::which("kubectl").unwrap()).unwrap();
    let k127 = real.parent().unwrap().join("kubectl.1.27");
    let k133 = server_common::kubectls().pop().unwrap();
    s.ok_in(&k133, &["apply", "-f", "-"], Some(WEB));
    let out = s.kubectl_with(
        &k127,
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu-percent=50",
            "--min=2",
            "--max=5",
            "-v=6",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("POST https://127.0.0.1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"),
        "kubectl 1.27 sends v1"
    );
    let v1 = s.ok(
        &k127,
        &[
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
        ],
    );
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    assert_eq!(v1["spec"]["minReplicas"], 2);
    let v2 = s.ok(
        &k133,
        &[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ],
    );
    assert_eq!(v2, "50");
    eventually("web scaled to the minimum", Duration::from_secs(40), || {
        s.ok(
            &k133,
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        ) == "2"
    });
    let mut active = String::new();
    eventually("ScalingActive reported", Duration::from_secs(40), || {
        active = s.ok(
            &k133,
            &[
                "get",
                "hpa",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"ScalingActive\")].message}",
            ],
        );
        !active.is_empty()
    });
    assert_eq!(
        active,
        "the HPA was unable to compute the replica count: failed to get cpu utilization: \
         unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    let table = s.ok(&k127, &["get", "hpa", "web"]);
    assert!(table.contains("cpu: <unknown>/50%"), "{table}");
    let events = s.ok(
        &k133,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulRescale",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert_eq!(
        events,
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
    );
    // Watching v1 is refused with a pointer to v2 rather than served wrong.
    let err = s.fails(
        &k127,
        &[
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1",
        ],
        None,
    );
    assert!(err.contains("use autoscaling/v2"), "{err}");
}
