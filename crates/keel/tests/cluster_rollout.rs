//! Argo Rollouts on a keel cluster, every request sent through a node's
//! ingress gateway and every response recorded: a canary with
//! `trafficRouting.nginx` goes 25% → pause → 75% → pause → 100% with the
//! share of canary responses within ±5 points of each weight; a kill -9 of
//! `keel server` at the first pause resumes at the same step; an abort of
//! the next canary sends all traffic back to stable.

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
    let out = Command::new("curl")
        .args(["-s", "--max-time", "120", "-H", "Host: rollout.test"])
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
