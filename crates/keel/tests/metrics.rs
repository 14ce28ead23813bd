//! `keel server`'s Prometheus query API end to end: the server scrapes a
//! counter this test advances at a known pace on 127.0.0.1, and
//! `/api/v1/query` answers rate() equal to that pace, and equal to
//! Prometheus' rule applied here to the raw samples the API returns.

#![allow(clippy::doc_markdown, clippy::float_cmp, clippy::cast_precision_loss)]

mod server_common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use server_common::{KeelServer, eventually, free_port};

/// Requests per second the test "serves".
const PACE: f64 = 20.0;

/// A `/metrics` endpoint whose counter rises by PACE per second of wall
/// time (set from the clock, so it does not drift with thread scheduling).
struct Target {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (s, c) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        // 1000 to start with, so the zero-point rule of
                        // rate() never cuts the extrapolation.
                        let n = 1000 + (started.elapsed().as_millis() as u64) * 20 / 1000;
                        c.store(n, Ordering::Relaxed);
                        let body = format!(
                            "# TYPE test_requests_total counter\ntest_requests_total{{path=\"/a\"}} {n}\n"
                        );
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target { port, stop }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Api {
    port: u16,
    ca: std::path::PathBuf,
    token: String,
}

impl Api {
    /// GET (or POST with `form`) `path`; returns the HTTP status and body.
    fn call(&self, path: &str, form: &[(&str, &str)], token: Option<&str>) -> (u16, String) {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://127.0.0.1:{}{path}", self.port));
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        for (k, v) in form {
            cmd.args(["--data-urlencode", &format!("{k}={v}")]);
        }
        let out = cmd.output().expect("run curl");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }

    fn query(&self, q: &str, t: &str) -> serde_json::Value {
        let (code, body) = self.call(
            "/api/v1/query",
            &[("query", q), ("time", t)],
            Some(&self.token),
        );
        assert_eq!(code, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn rate_of_a_scraped_counter_matches_what_the_target_served() {
    let target = Target::start();
    let api_port = free_port();
    let server = KeelServer::start_with_env(
        None,
        vec![
            (
                "KEEL_METRICS_LISTEN".into(),
                format!("127.0.0.1:{api_port}"),
            ),
            (
                "KEEL_METRICS_TARGETS".into(),
                format!("web=http://127.0.0.1:{}/metrics", target.port),
            ),
            ("KEEL_METRICS_SCRAPE_INTERVAL".into(), "1s".into()),
        ],
    );
    let api = Api {
        port: api_port,
        ca: server.state_dir().join("tls/ca.crt"),
        token: server.admin_token(),
    };
    // The query API binds a moment after the Kubernetes API.
    eventually("the query API", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
    });
    // Without credentials: 401, nothing answered.
    let (code, body) = api.call("/api/v1/query", &[("query", "up")], None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = api.call("/api/v1/query", &[("query", "up")], Some("not-a-token"));
    assert_eq!(code, 401);

    // Wait for 12 scrapes.
    eventually("12 scrapes", Duration::from_secs(40), || {
        let r = api.query("count_over_time(test_requests_total[1m])", "");
        r["data"]["result"][0]["value"][1]
            .as_str()
            .is_some_and(|v| v.parse::<f64>().unwrap() >= 12.0)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = format!("{}.{:03}", now / 1000, now % 1000);
    let up = api.query("up{job=\"web\"}", &t);
    assert_eq!(num(&up["data"]["result"][0]["value"][1]), 1.0, "{up}");
    assert_eq!(
        up["data"]["result"][0]["metric"]["instance"],
        format!("127.0.0.1:{}", target.port)
    );

    let rate = api.query("rate(test_requests_total{job=\"web\"}[10s])", &t);
    let got = num(&rate["data"]["result"][0]["value"][1]);
    assert_eq!(rate["data"]["result"][0]["metric"]["path"], "/a", "{rate}");
    assert!(
        (got - PACE).abs() < PACE * 0.05,
        "rate {got}, the target served {PACE}/s"
    );

    // The same rate by Prometheus' extrapolation rule, applied here to the
    // raw samples of the window: the first and last samples are within 1.1
    // average intervals of the window's edges (scrapes every second), so
    // the delta is stretched to the whole 10s.
    let raw = api.query("test_requests_total{job=\"web\"}[10s]", &t);
    // Timestamps in integer ms, as the engine computes with them.
    let pts: Vec<(i64, f64)> = raw["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, num(&p[1])))
        .collect();
    assert!(pts.len() >= 8, "{raw}");
    let (t0, v0) = pts[0];
    let (t1, v1) = pts[pts.len() - 1];
    let sampled = (t1 - t0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    let mut to_start = (t0 - (now - 10_000)) as f64 / 1000.0;
    if to_start >= avg * 1.1 {
        to_start = avg / 2.0;
    }
    let mut to_end = (now - t1) as f64 / 1000.0;
    if to_end >= avg * 1.1 {
        to_end = avg / 2.0;
    }
    let want = (v1 - v0) * (sampled + to_start + to_end) / sampled / 10.0;
    assert!(
        (got - want).abs() < 1e-9 * want,
        "rate {got}, by the rule {want}"
    );

    // sum by, and a query_range whose every step is near the pace.
    let sum = api.query("sum by (job) (rate(test_requests_total[10s]))", &t);
    assert_eq!(
        sum["data"]["result"][0]["metric"],
        serde_json::json!({"job": "web"})
    );
    let start = format!("{}", now / 1000 - 4);
    let end = format!("{}", now / 1000);
    let (code, body) = api.call(
        "/api/v1/query_range",
        &[
            ("query", "rate(test_requests_total[5s])"),
            ("start", &start),
            ("end", &end),
            ("step", "1"),
        ],
        Some(&api.token),
    );
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["data"]["resultType"], "matrix");
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5, "{body}");
    for v in values {
        let x = num(&v[1]);
        assert!((x - PACE).abs() < PACE * 0.1, "{body}");
    }

    // Bad input: Prometheus' error shape with 400.
    let (code, body) = api.call("/api/v1/query", &[("query", "rate(")], Some(&api.token));
    assert_eq!(code, 400);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["status"], "error");
    assert_eq!(e["errorType"], "bad_data");

    // The series API knows the target's labels.
    let (code, body) = api.call(
        "/api/v1/series",
        &[("match[]", "test_requests_total")],
        Some(&api.token),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"path\":\"/a\""), "{body}");
    drop(server);
}
