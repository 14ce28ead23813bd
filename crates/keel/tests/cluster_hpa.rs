//! Resource metrics and the Horizontal Pod Autoscaler end to end: a real
//! `keel server` with its own agent in a network namespace made here.
//! Busy busybox pods (a CPU request of 100m, a limit of 200m) show in
//! `kubectl top pod` and `kubectl top node`; `kubectl autoscale deployment
//! web --cpu-percent=50 --min=2 --max=5` scales them up to 5, shows
//! `cpu: N%/50%` in `kubectl get hpa`, records `SuccessfulRescale`; once
//! the pods go idle the Deployment returns to 2, not before the
//! (test-shortened) downscale stabilization window. A Deployment behind an
//! Ingress scales on its requests per second through the gateway (an HPA
//! on a Pods metric, keel-metrics' `PromQL` over the scraped gateway), whose
//! counted requests the `PromQL` API reports exactly. Everything is torn
//! down on drop, failure included.

mod node_hosts;
mod server_common;

use std::time::{Duration, Instant};

use node_hosts::Host;
use server_common::{eventually, free_port};

/// `--hpa-downscale-stabilization` of the server under test.
const WINDOW: Duration = Duration::from_secs(20);
/// The least time from idle to the scale-down: the window, less a sync
/// and a reading's lag.
const HELD: Duration = Duration::from_secs(15);

/// `spec.replicas` of Deployment `web`.
fn replicas(h: &Host) -> i64 {
    h.ok(
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        None,
    )
    .trim()
    .parse()
    .unwrap_or(-1)
}

/// A server whose autoscaler syncs every 2 s with a short window.
fn start(tag: &str, extra: &[&str]) -> Host {
    let window = format!("{}s", WINDOW.as_secs());
    let mut args = vec![
        "--hpa-sync-period",
        "2s",
        "--hpa-downscale-stabilization",
        &window,
    ];
    args.extend_from_slice(extra);
    Host::start(tag, &format!("{tag}-node"), &args)
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
    let h = start("hpa", &[]);
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
        replicas(&h) == 5
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
        replicas(&h) == 2
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

/// busybox httpd behind a Service and an Ingress for `rps.test`, and an
/// HPA on its requests per second per pod (and the Ingress's, as an
/// Object metric with a target too high to matter).
const RPS: &str = r#"
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
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: rps.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

const RPS_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Pods
    pods:
      metric: {name: keel_gateway_requests_per_second}
      target: {type: AverageValue, averageValue: "4"}
  - type: Object
    object:
      describedObject: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}
      metric: {name: requests-per-second}
      target: {type: Value, value: "1k"}
"#;

/// `n` GETs of `rps.test` through the namespace's gateway (one
/// connection, curl's URL globbing); the count of answers.
fn through_gateway(h: &Host, n: usize) -> usize {
    let url = format!("http://127.0.0.1/?n=[1-{n}]");
    let out = h.exec(&[
        "curl",
        "-s",
        "--max-time",
        "60",
        "-H",
        "Host: rps.test",
        &url,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "web")
        .count()
}

/// A Prometheus API query (GET, `-k`: the server's own CA signed the
/// certificate; the kubelet-client certificate authenticates).
fn promql(h: &Host, port: u16, query: &str, time: Option<&str>) -> serde_json::Value {
    let tls = h.root().join("server/tls");
    let (cert, key) = (
        tls.join("kubelet-client.crt"),
        tls.join("kubelet-client.key"),
    );
    let mut args = vec![
        "curl".to_string(),
        "-sk".into(),
        "--cert".into(),
        cert.to_string_lossy().into_owned(),
        "--key".into(),
        key.to_string_lossy().into_owned(),
        "--data-urlencode".into(),
        format!("query={query}"),
    ];
    if let Some(t) = time {
        args.extend(["--data-urlencode".into(), format!("time={t}")]);
    }
    args.push(format!("https://127.0.0.1:{port}/api/v1/query"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.exec(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{query}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The single value of an instant vector's first sample.
fn first_value(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_deployment_scales_on_requests_per_second_through_the_gateway() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let h = start(
        "rps",
        &[
            "--metrics-listen",
            &listen,
            "--metrics-scrape-interval",
            "1s",
        ],
    );
    eventually("node rps-node Ready", Duration::from_mins(1), || {
        h.kubectl(&["get", "node", "rps-node"], None)
            .status
            .success()
    });
    h.ok(&["apply", "-f", "-"], Some(RPS));
    eventually("the Ingress answers", Duration::from_mins(2), || {
        through_gateway(&h, 1) == 1
    });

    // (a) The query API counts exactly what was sent: the gateway of the
    // node, found through its Node, scraped every second.
    let counter = "keel_gateway_requests_total{namespace=\"default\",ingress=\"web\",status=\"200\",job=\"keel-gateway\",node=\"rps-node\"}";
    let sum = format!("sum({counter})");
    eventually("the first request scraped", Duration::from_secs(30), || {
        let got = promql(&h, port, &sum, None);
        let ok = first_value(&got) == Some(1.0);
        if !ok {
            let up = promql(&h, port, "up", None);
            eprintln!("{sum}: {got}\nup: {up}");
        }
        ok
    });
    assert_eq!(through_gateway(&h, 200), 200);
    eventually("201 requests scraped", Duration::from_secs(30), || {
        first_value(&promql(&h, port, &sum, None)) == Some(201.0)
    });
    // At the newest sample's time, so nothing is extrapolated past it;
    // the series began inside the window, so increase() extrapolates to
    // its zero, as Prometheus does: every request counts.
    let raw = promql(&h, port, &format!("{counter}[3s]"), None);
    let points = raw["data"]["result"][0]["values"].as_array().unwrap();
    let last = points.last().unwrap()[0].as_f64().unwrap().to_string();
    let increase = first_value(&promql(
        &h,
        port,
        &format!("sum(increase({counter}[2m]))"),
        Some(&last),
    ))
    .unwrap();
    assert!(
        (increase - 201.0).abs() < 0.01,
        "increase {increase}: {raw}"
    );
    let rate = first_value(&promql(
        &h,
        port,
        &format!("sum(rate({counter}[2m]))"),
        Some(&last),
    ))
    .unwrap();
    assert!((rate * 120.0 - 201.0).abs() < 0.01, "rate {rate}");

    // (b) Load of ~20 requests/s against 4 per pod: up to the maximum, 3.
    h.ok(&["apply", "-f", "-"], Some(RPS_HPA));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let ns = h.exec_prefix();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let _ = std::process::Command::new("nsenter")
                    .args([
                        ns.as_str(),
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "--max-time",
                        "5",
                    ])
                    .args(["-H", "Host: rps.test", "http://127.0.0.1/?n=[1-10]"])
                    .output();
                std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
            }
        })
    };
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            "web scaled to 3 on requests",
            Duration::from_mins(2),
            || replicas(&h) == 3,
        );
        eprintln!("scaled to 3 in {:?}", started.elapsed());
        let metrics = h.ok(
            &[
                "get",
                "hpa",
                "web",
                "-o",
                "jsonpath={.status.currentMetrics}",
            ],
            None,
        );
        assert!(
            metrics.contains("keel_gateway_requests_per_second")
                && metrics.contains("requests-per-second"),
            "{metrics}"
        );
        let events = h.ok(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=SuccessfulRescale",
                "-o",
                "jsonpath={.items[*].message}",
            ],
            None,
        );
        assert!(
            events.contains("reason: pods metric keel_gateway_requests_per_second above target"),
            "{events}"
        );
    }));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    // Idle: back to 1 once the (20 s) window passed, not before.
    let idle = Instant::now();
    eventually("web back to 1", Duration::from_mins(2), || {
        replicas(&h) == 1
    });
    assert!(
        idle.elapsed() >= HELD,
        "scaled down after {:?}, inside the window",
        idle.elapsed()
    );
}
