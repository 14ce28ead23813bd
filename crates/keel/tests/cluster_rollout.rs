//! Argo Rollouts on a keel cluster, every request sent through a node's
//! ingress gateway and every response recorded: a canary with
//! `trafficRouting.nginx` goes 25% → pause → 75% → pause → 100% with the
//! share of canary responses within ±5 points of each weight; a kill -9 of
//! `keel server` at the first pause resumes at the same step; an abort of
//! the next canary sends all traffic back to stable. Blue-green: the preview
//! answers on its own host before promotion, promotion moves all traffic at
//! once, an abort points the preview back. A canary whose pods answer 500
//! is aborted by its `prometheus` analysis over keel's gateway metrics
//! within one analysis interval. The ignored `bench_*` tests are
//! scripts/bench-rollout.sh's benchmark.

mod node_hosts;
mod server_common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use node_hosts::Cluster;
use server_common::eventually;

const SETUP: &str = r"
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: rollout.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {number: 80}}}}
";

/// The Rollout; its busybox httpd answers `version`.
fn rollout(version: &str) -> String {
    format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      scaleDownDelaySeconds: 5
      trafficRouting:
        nginx: {{stableIngress: web}}
      steps:
      - setWeight: 25
      - pause: {{}}
      - setWeight: 75
      - pause: {{}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /index.html, port: http}}
          periodSeconds: 1
"#
    )
}

/// `n` requests over one connection through the gateway; the count of each
/// body (anything but a version line is a failed request).
fn split(ip: &str, n: usize) -> BTreeMap<String, usize> {
    split_on(ip, "rollout.test", n)
}

fn split_on(ip: &str, host: &str, n: usize) -> BTreeMap<String, usize> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "120", "-H", &format!("Host: {host}")])
        .arg(format!("http://{ip}/?n=[1-{n}]"))
        .output()
        .unwrap();
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        *m.entry(l.to_string()).or_default() += 1;
    }
    assert_eq!(
        m.values().sum::<usize>(),
        n,
        "every request answered: {m:?}"
    );
    m
}

/// The share of `canary` in `n` requests is `pct`% ± 5 points, and every
/// other response is `stable`.
fn share_is(ip: &str, stable: &str, canary: &str, pct: usize) {
    let n = 400;
    let m = split(ip, n);
    let got = m.get(canary).copied().unwrap_or(0);
    assert_eq!(
        got + m.get(stable).copied().unwrap_or(0),
        n,
        "only the two versions answer: {m:?}"
    );
    // 0% and 100% are exact: no stray request.
    let slack = if pct == 0 || pct == 100 {
        0
    } else {
        n * 5 / 100
    };
    assert!(
        got.abs_diff(n * pct / 100) <= slack,
        "canary share {got}/{n}, want {pct}%: {m:?}"
    );
}

fn status(c: &Cluster) -> serde_json::Value {
    c.get_json(&["rollout", "web"])["status"].clone()
}

fn wait_step(c: &Cluster, phase: &str, step: i64) {
    eventually(
        &format!("{phase} at step {step}"),
        Duration::from_mins(2),
        || {
            let st = status(c);
            st["phase"] == phase && st["currentStepIndex"] == step
        },
    );
}

fn promote(c: &Cluster) {
    c.kubectl(&[
        "patch",
        "rollout",
        "web",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"pauseConditions":null}}"#,
    ]);
}

#[test]
fn canary_weights_through_the_gateway_survive_a_server_crash_and_abort() {
    let mut c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    c.apply(SETUP);
    c.apply(&rollout("v1"));
    eventually("v1 Healthy", Duration::from_mins(2), || {
        status(&c)["phase"] == "Healthy"
    });
    eventually("v1 served", Duration::from_mins(1), || {
        split(&ip, 20).get("v1") == Some(&20)
    });
    // Argo's canary Ingress exists from the start, at weight 0.
    let canary = c.get_json(&["ingress", "web-web-canary"]);
    assert_eq!(
        canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );

    c.apply(&rollout("v2"));
    wait_step(&c, "Paused", 1);
    eventually("the gateway at 25%", Duration::from_secs(20), || {
        c.get_json(&["ingress", "web-web-canary"])["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
            == "25"
    });
    // The gateway's watch gets the change a moment later.
    std::thread::sleep(Duration::from_secs(1));
    share_is(&ip, "v1", "v2", 25);

    // kill -9 of the server at the pause: it comes back at the same step.
    c.server.restart();
    std::thread::sleep(Duration::from_secs(3));
    wait_step(&c, "Paused", 1);
    share_is(&ip, "v1", "v2", 25);

    promote(&c);
    wait_step(&c, "Paused", 3);
    std::thread::sleep(Duration::from_secs(1));
    share_is(&ip, "v1", "v2", 75);
    promote(&c);
    eventually("v2 Healthy", Duration::from_mins(2), || {
        let st = status(&c);
        st["phase"] == "Healthy" && st["stableRS"] == st["currentPodHash"]
    });
    std::thread::sleep(Duration::from_secs(1));
    share_is(&ip, "v1", "v2", 100);

    // The next canary is aborted at 25%: everything back to v2 at once.
    c.apply(&rollout("v3"));
    wait_step(&c, "Paused", 1);
    std::thread::sleep(Duration::from_secs(1));
    share_is(&ip, "v2", "v3", 25);
    c.kubectl(&[
        "patch",
        "rollout",
        "web",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"abort":true}}"#,
    ]);
    eventually("Degraded", Duration::from_secs(30), || {
        status(&c)["phase"] == "Degraded"
    });
    std::thread::sleep(Duration::from_secs(1));
    share_is(&ip, "v2", "v3", 0);
    let st = status(&c);
    assert_eq!(
        st["message"],
        "RolloutAborted: Rollout aborted update to revision 3"
    );
}

const BG_SETUP: &str = r"
apiVersion: v1
kind: Service
metadata: {name: bg-active}
spec:
  selector: {app: bg}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: bg-preview}
spec:
  selector: {app: bg}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bg}
spec:
  rules:
  - host: bg.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bg-active, port: {number: 80}}}}
  - host: preview.bg.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bg-preview, port: {number: 80}}}}
";

fn bluegreen(version: &str) -> String {
    rollout(version)
        .replace("name: web}", "name: bg}")
        .replace("app: web", "app: bg")
        .replace(
            "    canary:\n      canaryService: web-canary\n      stableService: web-stable\n      scaleDownDelaySeconds: 5\n      trafficRouting:\n        nginx: {stableIngress: web}\n      steps:\n      - setWeight: 25\n      - pause: {}\n      - setWeight: 75\n      - pause: {}\n",
            "    blueGreen: {activeService: bg-active, previewService: bg-preview, autoPromotionEnabled: false, scaleDownDelaySeconds: 5}\n",
        )
}

/// All of `n` requests to `host` answered by `version`.
fn all_from(ip: &str, host: &str, version: &str) -> bool {
    split_on(ip, host, 200).get(version) == Some(&200)
}

#[test]
fn bluegreen_preview_promotion_and_abort_through_the_gateway() {
    let c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    c.apply(BG_SETUP);
    let v1 = bluegreen("v1");
    assert!(v1.contains("blueGreen"), "{v1}");
    c.apply(&v1);
    let phase = || c.get_json(&["rollout", "bg"])["status"]["phase"].clone();
    eventually("v1 Healthy", Duration::from_mins(2), || {
        phase() == "Healthy"
    });
    eventually("v1 active", Duration::from_mins(1), || {
        all_from(&ip, "bg.test", "v1")
    });

    c.apply(&bluegreen("v2"));
    eventually("v2 paused", Duration::from_mins(2), || phase() == "Paused");
    eventually("v2 on the preview", Duration::from_secs(30), || {
        all_from(&ip, "preview.bg.test", "v2")
    });
    assert!(
        all_from(&ip, "bg.test", "v1"),
        "the active host keeps v1 before promotion"
    );

    c.kubectl(&[
        "patch",
        "rollout",
        "bg",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"pauseConditions":null}}"#,
    ]);
    eventually("v2 active", Duration::from_secs(30), || {
        split_on(&ip, "bg.test", 1).contains_key("v2")
    });
    // Switched at once: from the first v2 answer on, no v1.
    assert!(all_from(&ip, "bg.test", "v2"));
    eventually("v2 Healthy", Duration::from_mins(1), || {
        phase() == "Healthy"
    });

    c.apply(&bluegreen("v3"));
    eventually("v3 paused", Duration::from_mins(2), || phase() == "Paused");
    eventually("v3 on the preview", Duration::from_secs(30), || {
        all_from(&ip, "preview.bg.test", "v3")
    });
    c.kubectl(&[
        "patch",
        "rollout",
        "bg",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"abort":true}}"#,
    ]);
    eventually("the preview back on v2", Duration::from_secs(30), || {
        all_from(&ip, "preview.bg.test", "v2")
    });
    assert!(all_from(&ip, "bg.test", "v2"));
    eventually("Degraded", Duration::from_secs(30), || {
        phase() == "Degraded"
    });
}

/// One response through the gateway: when it ended, its status (0: no
/// answer) and its body.
#[derive(Debug, Clone)]
struct Resp {
    at: std::time::Instant,
    code: u16,
    body: String,
}

/// Requests sent one after another, each on a new connection, until
/// stopped; every response recorded.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<Resp>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn request(ip: &str, host: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect((ip, 80)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let Some((head, body)) = out.split_once("\r\n\r\n") else {
        return (0, out);
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.trim().to_string())
}

impl Traffic {
    fn start(ip: &str, host: &str, path: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ip, host, path) = (ip.to_string(), host.to_string(), path.to_string());
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (code, body) = request(&ip, &host, &path);
                    let at = std::time::Instant::now();
                    log.lock().unwrap().push(Resp { at, code, body });
                }
            })
        };
        Traffic {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// The responses so far.
    fn seen(&self) -> Vec<Resp> {
        self.log.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<Resp> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An `AnalysisTemplate` over keel's gateway metrics, as the server's own
/// Prometheus API answers them: any 5xx answered by a pod of the canary's
/// template fails. `initialDelay` covers one scrape, so the first
/// measurement already sees the canary's first answers.
const ERRORS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: canary-errors}
spec:
  args: [{name: hash}]
  metrics:
  - name: canary-5xx
    initialDelay: 1s
    interval: 3s
    count: 30
    failureLimit: 0
    failureCondition: len(result) > 0 && result[0] > 0
    provider:
      prometheus:
        address: http://prometheus.keel-system.svc.cluster.local:9090
        query: sum(keel_gateway_requests_total{service="web-canary",pod=~"web-{{args.hash}}-.*",status=~"5.."})
"#;

/// The canary weight and analysis interval of [`failing`].
const WEIGHT: f64 = 0.20;
const INTERVAL: Duration = Duration::from_secs(3);

/// A Rollout whose busybox httpd answers `/cgi-bin/v` with `status` and
/// body `version` (a CGI script: busybox httpd passes its Status line on).
fn failing(version: &str, status: &str) -> String {
    let steps =
        "      - setWeight: 25\n      - pause: {}\n      - setWeight: 75\n      - pause: {}\n";
    let command = format!(
        r#"command: ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www"]"#
    );
    let cgi = format!(
        r#"command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          echo ok > /www/index.html
          printf '#!/bin/sh\necho "Status: %s"\necho\necho %s\n' "{status}" "{version}" > /www/cgi-bin/v
          chmod +x /www/cgi-bin/v
          exec httpd -f -p 8080 -h /www"#
    );
    let out = rollout(version)
        .replace(
            steps,
            "      - setWeight: 20\n      - analysis:\n          templates: [{templateName: canary-errors}]\n          args: [{name: hash, valueFrom: {podTemplateHashValue: Latest}}]\n      - setWeight: 100\n",
        )
        .replace(&command, &cgi);
    assert!(
        out.contains("canary-errors") && out.contains("cgi-bin"),
        "{out}"
    );
    out
}

/// A one-node cluster whose server scrapes the node's gateway twice a
/// second, with [`SETUP`], [`ERRORS`] and `version` of [`failing`]
/// answering 200 and served; its node's address.
fn errors_cluster(version: &str) -> (Cluster, String) {
    let mut c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    c.server.env = vec![
        ("KEEL_METRICS_SCRAPE_INTERVAL".into(), "500ms".into()),
        ("KEEL_METRICS_LISTEN".into(), "off".into()),
    ];
    c.server.restart();
    // An agent that was still starting when its server went away exits
    // (seen in CI): start it again, as its service manager would.
    c.nodes[0].kill_agent();
    c.start_agent(0);
    c.wait_ready(0);
    c.apply(SETUP);
    c.apply(ERRORS);
    c.apply(&failing(version, "200 OK"));
    eventually("the first version Healthy", Duration::from_mins(2), || {
        status(&c)["phase"] == "Healthy"
    });
    eventually("the first version served", Duration::from_mins(1), || {
        request(&ip, "rollout.test", "/cgi-bin/v") == (200, version.into())
    });
    (c, ip)
}

#[test]
fn a_canary_answering_500_is_aborted_by_its_prometheus_analysis() {
    let (c, ip) = errors_cluster("v1");

    let traffic = Traffic::start(&ip, "rollout.test", "/cgi-bin/v");
    c.apply(&failing("v2", "500 Internal Server Error"));
    eventually("the canary aborted", Duration::from_mins(2), || {
        status(&c)["phase"] == "Degraded"
    });
    // Some more traffic after the abort: none of it reaches the canary.
    let degraded = traffic.seen().len();
    eventually(
        "200 requests after the abort",
        Duration::from_mins(1),
        || traffic.seen().len() >= degraded + 200,
    );
    let log = traffic.finish();

    let st = status(&c);
    let msg = st["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("RolloutAborted: Rollout aborted update to revision 2: Metric \"canary-5xx\" assessed Failed"),
        "{st}"
    );
    assert_eq!(st["canary"]["weights"]["canary"]["weight"], 0, "{st}");
    // Every answer is v1's 200 or v2's 500.
    let odd: Vec<&Resp> = log
        .iter()
        .filter(|r| !matches!((r.code, r.body.as_str()), (200, "v1") | (500, "v2")))
        .collect();
    assert!(
        odd.is_empty(),
        "unexpected answers: {:?}",
        &odd[..odd.len().min(5)]
    );
    let errors: Vec<usize> = (0..log.len()).filter(|&i| log[i].code == 500).collect();
    let (Some(&first), Some(&last)) = (errors.first(), errors.last()) else {
        panic!("the canary never answered");
    };
    assert!(last < degraded, "a 500 after Degraded");
    // The 500s: no more than the weight (+5 points for sampling) of the
    // requests of one analysis interval, at the rate they were sent.
    let span = log.last().unwrap().at - log[0].at;
    let count = |n: usize| f64::from(u32::try_from(n).unwrap());
    let per_interval = count(log.len()) * INTERVAL.as_secs_f64() / span.as_secs_f64();
    let allowed = (WEIGHT + 0.05) * per_interval;
    let exposure = log[last].at - log[first].at;
    eprintln!(
        "{} requests in {span:?} ({per_interval:.0} per interval): {} answered 500 over {exposure:?}, {allowed:.0} allowed",
        log.len(),
        errors.len()
    );
    assert!(
        count(errors.len()) <= allowed,
        "{} 500s, more than {allowed:.0} (the weight's share of one interval)",
        errors.len()
    );
}

/// Lines of a long-running `kubectl ... --watch`, each stamped when read.
struct Watch {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl Watch {
    fn start(c: &Cluster, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(node_hosts::kubectl133())
            .args(["--kubeconfig", c.server.kubeconfig.to_str().unwrap()])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push((std::time::Instant::now(), line));
            }
        });
        Watch { child, lines }
    }

    /// When a line starting with `head` and ending with `tail` was first
    /// read.
    fn first(&self, head: &str, tail: &str) -> Option<std::time::Instant> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.starts_with(head) && l.ends_with(tail))
            .map(|(t, _)| *t)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Benchmark (scripts/bench-rollout.sh runs it): blue-green switch time,
/// from the promotion until every new request reaches green, over
/// `KEEL_BENCH_RUNS` promotions (default 5).
#[test]
#[ignore = "benchmark: scripts/bench-rollout.sh"]
fn bench_bluegreen_switch() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    c.apply(BG_SETUP);
    c.apply(&bluegreen("v0"));
    let phase = || c.get_json(&["rollout", "bg"])["status"]["phase"].clone();
    eventually("v0 Healthy", Duration::from_mins(2), || {
        phase() == "Healthy"
    });
    eventually("v0 active", Duration::from_mins(1), || {
        all_from(&ip, "bg.test", "v0")
    });
    let (mut from_ack, mut from_call) = (Vec::new(), Vec::new());
    for k in 1..=runs {
        let (old, new) = (format!("v{}", k - 1), format!("v{k}"));
        c.apply(&bluegreen(&new));
        // Promote only once the controller paused: a promotion before the
        // pause is recorded is nothing to Argo (and keel), and the pause
        // that comes after it waits for the next one.
        eventually("paused", Duration::from_mins(2), || phase() == "Paused");
        eventually("the preview up", Duration::from_secs(30), || {
            all_from(&ip, "preview.bg.test", &new)
        });
        let traffic = Traffic::start(&ip, "bg.test", "/");
        eventually("traffic flowing", Duration::from_secs(10), || {
            traffic.seen().len() > 50
        });
        let called = std::time::Instant::now();
        promote_bg(&c);
        let acked = std::time::Instant::now();
        eventually("all green", Duration::from_secs(30), || {
            let log = traffic.seen();
            log.len() > 100 && log[log.len() - 100..].iter().all(|r| r.body == new)
        });
        let log = traffic.finish();
        assert!(
            log.iter()
                .all(|r| r.code == 200 && (r.body == old || r.body == new)),
            "every request answered by blue or green"
        );
        // The end of blue's last answer: every request after it is green's.
        let last_blue = log.iter().rev().find(|r| r.body == old).map(|r| r.at);
        let switch = |t0: std::time::Instant| {
            last_blue.map_or(0.0, |b| b.saturating_duration_since(t0).as_secs_f64() * 1e3)
        };
        from_ack.push(switch(acked));
        from_call.push(switch(called));
        eprintln!(
            "run {k}: switch {:.1} ms after the API acknowledged the promotion, {:.1} ms after kubectl started ({} requests)",
            switch(acked),
            switch(called),
            log.len()
        );
        eventually("Healthy", Duration::from_mins(1), || phase() == "Healthy");
    }
    eprintln!(
        "bench-rollout: blue-green switch over {runs} promotions: median {:.1} ms, max {:.1} ms after the API acknowledged the promotion (median {:.1} ms from kubectl's start)",
        median(from_ack.clone()),
        from_ack.iter().copied().fold(0.0, f64::max),
        median(from_call)
    );
}

fn promote_bg(c: &Cluster) {
    c.kubectl(&[
        "patch",
        "rollout",
        "bg",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"pauseConditions":null}}"#,
    ]);
}

/// Benchmark (scripts/bench-rollout.sh runs it): abort time, from the
/// analysis' failing measurement (the `AnalysisRun` turning Failed, as a
/// watch sees it) to the canary's last answer, over `KEEL_BENCH_RUNS`
/// canaries answering 500 (default 5).
#[test]
#[ignore = "benchmark: scripts/bench-rollout.sh"]
fn bench_canary_abort() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let (c, ip) = errors_cluster("v0");
    let runs_watch = Watch::start(
        &c,
        &[
            "get",
            "analysisruns",
            "--watch",
            "-o",
            r#"jsonpath={.metadata.name} {.status.phase}{"\n"}"#,
        ],
    );
    let mut times = Vec::new();
    for k in 1..=runs {
        let traffic = Traffic::start(&ip, "rollout.test", "/cgi-bin/v");
        c.apply(&failing(&format!("bad{k}"), "500 Internal Server Error"));
        eventually("Degraded", Duration::from_mins(2), || {
            let st = status(&c);
            st["phase"] == "Degraded" && st["currentPodHash"] != st["stableRS"]
        });
        let hash = status(&c)["currentPodHash"].as_str().unwrap().to_string();
        let seen = traffic.seen().len();
        eventually("traffic after the abort", Duration::from_secs(30), || {
            traffic.seen().len() > seen + 200
        });
        let log = traffic.finish();
        let failed = runs_watch
            .first(&format!("web-{hash}-"), " Failed")
            .expect("the run's Failed seen by the watch");
        let last = log
            .iter()
            .rev()
            .find(|r| r.code == 500)
            .map(|r| r.at)
            .expect("the canary answered");
        let ms = last.saturating_duration_since(failed).as_secs_f64() * 1e3;
        let errors = log.iter().filter(|r| r.code == 500).count();
        eprintln!(
            "run {k}: 0% canary {ms:.1} ms after the run failed ({errors} 500s of {} requests)",
            log.len()
        );
        times.push(ms);
        // The next canary starts from the stable template again.
        c.apply(&failing("v0", "200 OK"));
        eventually("back to Healthy", Duration::from_mins(1), || {
            status(&c)["phase"] == "Healthy"
        });
    }
    eprintln!(
        "bench-rollout: abort over {runs} canaries: median {:.1} ms, max {:.1} ms from the failed AnalysisRun to the canary's last answer",
        median(times.clone()),
        times.iter().copied().fold(0.0, f64::max)
    );
}
