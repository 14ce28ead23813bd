//! Argo `AnalysisRuns` end to end (`node_hosts`: a keel server and one
//! agent in a node host): a busybox httpd pod serves JSON and a Prometheus
//! text file behind a `NodePort`; a `web` metric on it succeeds, one whose
//! condition is false fails after its `failureLimit`; a `prometheus`
//! metric addressed to `prometheus.keel-system.svc` is answered by the
//! server's own query API over what it scraped from the pod; `job` metrics
//! follow their Jobs; Argo's analysis examples are accepted by kubectl.

mod node_hosts;
mod server_common;

use std::io::{Read, Write};
use std::time::Duration;

use node_hosts::Cluster;
use serde_json::Value;
use server_common::eventually;

const APP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: app, labels: {app: app}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo '{\"data\":{\"ok\":true,\"rate\":0.99}}' > /www/ok.json && echo '{\"data\":{\"ok\":false,\"rate\":0.4}}' > /www/bad.json && printf 'app_success_rate 0.97\n' > /www/metrics && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  type: NodePort
  selector: {app: app}
  ports: [{port: 80, targetPort: 8080, nodePort: NODEPORT}]
"#;

fn runs(base: &str) -> String {
    format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: web-ok}}
spec:
  args: [{{name: base, value: "{base}"}}]
  metrics:
  - name: ok
    interval: 1s
    count: 2
    successCondition: result.ok && result.rate >= 0.95
    provider:
      web: {{url: "{{{{args.base}}}}/ok.json", jsonPath: "{{$.data}}"}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: web-bad}}
spec:
  metrics:
  - name: ok
    interval: 1s
    count: 5
    failureLimit: 1
    successCondition: result == true
    provider:
      web: {{url: "{base}/bad.json", jsonPath: "{{$.data.ok}}"}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: prom}}
spec:
  metrics:
  - name: success-rate
    interval: 2s
    count: 1
    consecutiveErrorLimit: 20
    successCondition: len(result) == 1 && result[0] >= 0.95
    provider:
      prometheus:
        address: http://prometheus.keel-system.svc.cluster.local:9090
        query: max(app_success_rate)
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: job-ok}}
spec:
  metrics:
  - name: smoke
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers: [{{name: t, image: "busybox:latest", command: ["true"]}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: job-fail}}
spec:
  metrics:
  - name: smoke
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers: [{{name: t, image: "busybox:latest", command: ["false"]}}]
"#
    )
}

/// A plain HTTP GET from this host; the body on 200.
fn get(host: &str, port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_string())
}

fn phase_of(c: &Cluster, name: &str) -> Value {
    c.get_json(&["analysisrun", name])
}

fn wait_phase(c: &Cluster, name: &str, want: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    eventually(&format!("AnalysisRun {name} {want}"), limit, || {
        last = phase_of(c, name);
        assert!(
            last["status"]["phase"] != "Error" || want == "Error",
            "{name} errored: {}",
            last["status"]
        );
        last["status"]["phase"] == want
    });
    last
}

#[test]
fn analysis_runs_measure_web_prometheus_and_job_metrics() {
    let mut c = Cluster::start(1);
    let node_ip = c.nodes[0].node_ip.clone();
    let node_port = 30_000 + u16::try_from(std::process::id() % 2_000).unwrap();
    c.apply(&APP.replace("NODEPORT", &node_port.to_string()));
    eventually(
        "the app answers on its NodePort",
        Duration::from_mins(2),
        || get(&node_ip, node_port, "/ok.json").is_some_and(|b| b.contains("\"ok\":true")),
    );
    // The server scrapes the app (its own query API is what `prometheus`
    // metrics addressed to keel's Service read).
    c.server.env = vec![
        (
            "KEEL_METRICS_TARGETS".into(),
            format!("app=http://{node_ip}:{node_port}/metrics"),
        ),
        ("KEEL_METRICS_SCRAPE_INTERVAL".into(), "1s".into()),
        ("KEEL_METRICS_LISTEN".into(), "off".into()),
    ];
    c.server.restart();

    let base = format!("http://{node_ip}:{node_port}");
    c.apply(&runs(&base));

    let ok = wait_phase(&c, "web-ok", "Successful", Duration::from_mins(1));
    let r = &ok["status"]["metricResults"][0];
    assert_eq!(r["count"], 2, "{ok}");
    assert_eq!(r["successful"], 2, "{ok}");
    assert_eq!(ok["status"]["runSummary"]["successful"], 1, "{ok}");

    let bad = wait_phase(&c, "web-bad", "Failed", Duration::from_mins(1));
    let r = &bad["status"]["metricResults"][0];
    assert_eq!(r["failed"], 2, "stopped after failureLimit + 1: {bad}");
    assert_eq!(r["measurements"][0]["value"], "false");
    assert_eq!(
        bad["status"]["message"],
        "Metric \"ok\" assessed Failed due to failed (2) > failureLimit (1)"
    );

    let prom = wait_phase(&c, "prom", "Successful", Duration::from_secs(90));
    let last = prom["status"]["metricResults"][0]["measurements"]
        .as_array()
        .and_then(|m| m.last().cloned())
        .unwrap();
    assert_eq!(last["value"], "[0.97]", "{prom}");

    let job = wait_phase(&c, "job-ok", "Successful", Duration::from_mins(2));
    let meta = &job["status"]["metricResults"][0]["measurements"][0]["metadata"];
    let name = meta["job-name"].as_str().unwrap();
    let j = c.get_json(&["job", name]);
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "AnalysisRun");
    wait_phase(&c, "job-fail", "Failed", Duration::from_mins(2));

    // Deleting a run deletes its Jobs (owned by it).
    c.kubectl(&["delete", "analysisrun", "job-ok"]);
    eventually(
        "the run's job is collected",
        Duration::from_secs(30),
        || !c.kubectl(&["get", "jobs", "-o", "name"]).contains(name),
    );
}

/// Argo's own analysis manifests are accepted as they are.
#[test]
fn argos_analysis_examples_are_accepted() {
    let s = server_common::KeelServer::start(None);
    let kubectl = node_hosts::kubectl133();
    let dir = server_common::conformance("argo-rollouts/examples");
    for f in ["analysis-templates.yaml", "cluster-analysis-templates.yaml"] {
        let yaml = std::fs::read_to_string(dir.join(f)).unwrap();
        s.ok_in(&kubectl, &["apply", "-f", "-"], Some(&yaml));
    }
    let templates = s.ok(&kubectl, &["get", "analysistemplates", "-o", "name"]);
    assert!(
        templates.contains("analysistemplate.argoproj.io/pass"),
        "{templates}"
    );
    let cluster = s.ok(&kubectl, &["get", "clusteranalysistemplates", "-o", "name"]);
    assert!(!cluster.trim().is_empty());
}
