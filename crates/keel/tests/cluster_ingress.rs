//! The ingress gateway of a node (keel-gateway in `keel agent`), asked from
//! the host over the node host's address as a client outside the cluster
//! would: Ingress host and path routing to two Services, TLS from a Secret
//! with SNI (and HTTP/2 by ALPN, and plain HTTP redirected with a 308),
//! ingress-nginx canary annotations by weight and by header, an `HTTPRoute`
//! with weighted backends and a header match, the gateway's metrics
//! matching the requests sent, `status.loadBalancer` filled, and a Service
//! that lost its pods answering 503.

mod node_hosts;
mod server_common;

use std::process::Command;
use std::time::Duration;

use node_hosts::Cluster;
use server_common::eventually;

/// A Deployment and Service `name` whose busybox httpd answers its name.
fn app(name: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www/deep && echo {name} > /www/index.html && echo {name}-deep > /www/deep/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /index.html, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"#
    )
}

const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: alpha.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
  - host: "*.beta.test"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {name: web}}}}
  - http:
      paths:
      - {path: /deep, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
      - {path: /deep/index.html, pathType: Exact, backend: {service: {name: alpha, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  ingressClassName: keel
  tls:
  - {hosts: [secure.test], secretName: secure-tls}
  rules:
  - host: secure.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other-class}
spec:
  ingressClassName: nginx
  rules:
  - host: other.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main}
spec:
  rules:
  - host: canary.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: main-canary
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "30"
    nginx.ingress.kubernetes.io/canary-by-header: X-Canary
spec:
  rules:
  - host: canary.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
"#;

const GATEWAY: &str = r"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: keel}
spec: {controllerName: keel.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: keel
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{name: gw}]
  hostnames: [route.test]
  rules:
  - matches: [{headers: [{name: x-env, value: beta}]}]
    backendRefs: [{name: beta, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-from, value: route}]}
    backendRefs:
    - {name: alpha, port: 80, weight: 80}
    - {name: beta, port: 80, weight: 20}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken}
spec:
  parentRefs: [{name: gw}]
  hostnames: [broken.test]
  rules:
  - backendRefs: [{name: gone, port: 80}]
";

/// `curl` from the host; returns (stdout, exit success).
fn curl(args: &[&str]) -> (String, bool) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// The body of GET `path` on the node's port 80 for `host`.
fn get(ip: &str, host: &str, path: &str, extra: &[&str]) -> String {
    let url = format!("http://{ip}{path}");
    let h = format!("Host: {host}");
    let mut args = vec!["-H", h.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).0
}

fn code(ip: &str, host: &str, path: &str) -> String {
    get(ip, host, path, &["-o", "/dev/null", "-w", "%{http_code}"])
}

/// `n` requests over one connection (curl's URL globbing); the count of
/// each body line.
fn split(
    ip: &str,
    host: &str,
    n: usize,
    extra: &[&str],
) -> std::collections::BTreeMap<String, usize> {
    let out = get(ip, host, &format!("/?n=[1-{n}]"), extra);
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        *m.entry(l.to_string()).or_default() += 1;
    }
    assert_eq!(m.values().sum::<usize>(), n, "{m:?}");
    m
}

fn within(got: usize, n: usize, pct: usize) -> bool {
    let want = n * pct / 100;
    got.abs_diff(want) <= n * 5 / 100
}

/// Sum of `keel_gateway_requests_total` series whose labels contain all of `want`.
fn requests_total(metrics: &str, want: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("keel_gateway_requests_total{"))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn ingress_gateway_routes_tls_canaries_httproutes_and_counts() {
    let c = Cluster::start(1);
    let ip = c.nodes[0].node_ip.clone();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=secure.test",
        ])
        .args(["-addext", "subjectAltName=DNS:secure.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);

    // The server made `keel` the default IngressClass.
    let class = c.get_json(&["ingressclass", "keel"]);
    assert_eq!(class["spec"]["controller"], "keel.dev/ingress-controller");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    c.apply(&app("alpha"));
    c.apply(&app("beta"));
    c.apply(INGRESS);
    c.kubectl(&["rollout", "status", "deployment/alpha", "--timeout=120s"]);
    c.kubectl(&["rollout", "status", "deployment/beta", "--timeout=120s"]);

    // Host, wildcard and path routing.
    eventually("alpha.test routed", Duration::from_mins(1), || {
        get(&ip, "alpha.test", "/", &[]) == "alpha\n"
    });
    eventually("x.beta.test routed", Duration::from_mins(1), || {
        get(&ip, "x.beta.test", "/", &[]) == "beta\n"
    });
    assert_eq!(get(&ip, "Alpha.Test:80", "/deep/", &[]), "alpha-deep\n");
    assert_eq!(
        get(&ip, "x.y.beta.test", "/deep/", &[]),
        "beta-deep\n",
        "*.beta.test covers one label only"
    );
    assert_eq!(
        get(&ip, "nohost", "/deep/index.html", &[]),
        "alpha-deep\n",
        "Exact wins"
    );
    assert_eq!(get(&ip, "nohost", "/deep/", &[]), "beta-deep\n");
    assert_eq!(
        code(&ip, "nohost", "/deeper"),
        "404",
        "Prefix is element-wise"
    );
    assert_eq!(
        code(&ip, "other.test", "/"),
        "404",
        "another class's Ingress is not served"
    );

    // status.loadBalancer has the node's address.
    eventually("Ingress status", Duration::from_secs(30), || {
        c.get_json(&["ingress", "web"])["status"]["loadBalancer"]["ingress"][0]["ip"] == ip.as_str()
    });

    // TLS by SNI from the Secret, HTTP/2 by ALPN; plain HTTP gets a 308.
    let resolve = format!("secure.test:443:{ip}");
    let cacert = crt.to_str().unwrap();
    eventually("TLS served", Duration::from_mins(1), || {
        curl(&[
            "--cacert",
            cacert,
            "--resolve",
            &resolve,
            "https://secure.test/",
        ])
        .0 == "alpha\n"
    });
    let (v, ok) = curl(&[
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        "https://secure.test/",
    ]);
    assert!(ok && v == "2", "HTTP/2 over TLS: {v}");
    let redirect = get(
        &ip,
        "secure.test",
        "/x?y=1",
        &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
    );
    assert_eq!(redirect, "308 https://secure.test/x?y=1");

    // Canary: by header exactly, by weight within 5 points over 2,000.
    assert_eq!(
        split(&ip, "canary.test", 200, &["-H", "X-Canary: always"]).get("beta"),
        Some(&200)
    );
    assert_eq!(
        split(&ip, "canary.test", 200, &["-H", "X-Canary: never"]).get("alpha"),
        Some(&200)
    );
    let by_weight = split(&ip, "canary.test", 2000, &[]);
    let beta = by_weight.get("beta").copied().unwrap_or(0);
    assert!(within(beta, 2000, 30), "30% canary: {by_weight:?}");

    // Gateway API: an HTTPRoute with weights 80/20 and a header match.
    c.apply(GATEWAY);
    eventually("HTTPRoute routed", Duration::from_mins(1), || {
        get(&ip, "route.test", "/", &["-H", "x-env: beta"]) == "beta\n"
    });
    assert_eq!(
        split(&ip, "route.test", 100, &["-H", "x-env: beta"]).get("beta"),
        Some(&100)
    );
    let weighted = split(&ip, "route.test", 2000, &[]);
    let alpha = weighted.get("alpha").copied().unwrap_or(0);
    assert!(within(alpha, 2000, 80), "80/20: {weighted:?}");
    eventually("Gateway status", Duration::from_secs(30), || {
        c.get_json(&["gateway", "gw"])["status"]["addresses"][0]["value"] == ip.as_str()
    });
    // Gateway API status: routes' parents, the listener's attached routes.
    let cond = |obj: &serde_json::Value, t: &str| -> (String, String) {
        let c = obj["status"]["parents"][0]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or_default();
        assert_eq!(
            c["observedGeneration"], obj["metadata"]["generation"],
            "{obj}"
        );
        (
            c["status"].as_str().unwrap_or_default().into(),
            c["reason"].as_str().unwrap_or_default().into(),
        )
    };
    eventually("HTTPRoute status.parents", Duration::from_secs(30), || {
        !c.get_json(&["httproute", "broken"])["status"]["parents"].is_null()
    });
    let split_route = c.get_json(&["httproute", "split"]);
    let parent = &split_route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "keel.dev/gateway-controller");
    assert_eq!(parent["parentRef"]["name"], "gw");
    assert_eq!(
        cond(&split_route, "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        cond(&split_route, "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    let broken = c.get_json(&["httproute", "broken"]);
    assert_eq!(
        cond(&broken, "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        cond(&broken, "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    eventually("listener attachedRoutes", Duration::from_secs(30), || {
        c.get_json(&["gateway", "gw"])["status"]["listeners"][0]["attachedRoutes"] == 2
    });
    let gw = c.get_json(&["gateway", "gw"]);
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute", "{gw}");
    assert!(
        listener["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Programmed" && c["status"] == "True"),
        "{gw}"
    );

    // The gateway's metrics count what was sent (the node endpoint, as the
    // API server reaches it: its client certificate).
    let node = c.get_json(&["node", &Cluster::name(0)]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    let state = c.server.state_dir();
    let (cert, key) = (
        state.join("tls/kubelet-client.crt"),
        state.join("tls/kubelet-client.key"),
    );
    let url = format!("https://{ip}:{port}/metrics/gateway");
    let (metrics, ok) = curl(&[
        "-k",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        &url,
    ]);
    assert!(ok, "{metrics}");
    let route_alpha = requests_total(
        &metrics,
        &["ingress=\"split\"", "service=\"alpha\"", "status=\"200\""],
    );
    let route_beta = requests_total(
        &metrics,
        &["ingress=\"split\"", "service=\"beta\"", "status=\"200\""],
    );
    assert_eq!(route_alpha, alpha as u64, "{metrics}");
    assert!(
        route_alpha + route_beta >= 2100,
        "{route_alpha} + {route_beta}"
    );
    let canary_beta = requests_total(&metrics, &["ingress=\"main-canary\"", "service=\"beta\""]);
    assert_eq!(
        canary_beta,
        200 + beta as u64,
        "canary requests are counted under the canary Ingress"
    );
    assert!(metrics.contains("keel_gateway_request_duration_seconds_bucket{namespace=\"default\",ingress=\"split\",service=\"alpha\",pod=\"alpha-"));
    let (_, ok) = curl(&["-k", "-f", &url]);
    assert!(!ok, "the metrics need the API server's client certificate");

    // A Service that loses its pods answers 503.
    c.kubectl(&["scale", "deployment/alpha", "--replicas=0"]);
    eventually("503 without pods", Duration::from_mins(1), || {
        code(&ip, "alpha.test", "/") == "503"
    });
    assert_eq!(get(&ip, "x.beta.test", "/", &[]), "beta\n");
}
