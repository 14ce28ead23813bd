//! Argo Rollouts on a keel cluster, every request sent through a node's
//! ingress gateway and every response recorded: a canary with
//! `trafficRouting.nginx` goes 25% → pause → 75% → pause → 100% with the
//! share of canary responses within ±5 points of each weight; a kill -9 of
//! `keel server` at the first pause resumes at the same step; an abort of
//! the next canary sends all traffic back to stable. Blue-green: the preview
//! answers on its own host before promotion, promotion moves all traffic at
//! once, an abort points the preview back.

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
