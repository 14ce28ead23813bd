//! keel's answers equal real Prometheus' on the same data: the samples
//! generated here go into a keel store and, through `promtool tsdb
//! create-blocks-from openmetrics`, into Debian's Prometheus (2.42), which
//! is then asked the same instant and range queries over its HTTP API.
//! Values must agree to 1e-9 relative (Prometheus 3 and keel sum in a
//! different order than 2.42 in places); label sets exactly.
//!
//! The data avoids the two corners where Prometheus 2 and 3 differ (and keel
//! follows 3): no sample sits exactly on a window's edge (closed in 2,
//! open in 3), and every series spans the queried windows (the order of the
//! zero-point and half-interval rules of rate() only differs for series
//! that start or end inside a window).

#![allow(
    clippy::doc_markdown,
    clippy::type_complexity,
    clippy::cast_precision_loss,
    clippy::float_cmp
)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_metrics::eval::{self, Value};
use keel_metrics::{Labels, Options, Store};

/// A deterministic generator (no dependency on rand's stream stability).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every series: labels and (ms, value) samples.
fn data(start: i64, end: i64) -> Vec<(Vec<(String, String)>, Vec<(i64, f64)>)> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    let jitter = |rng: &mut Lcg| {
        // 1..999 ms but never 500: query times sit on .500.
        let j = 1 + rng.below(998) as i64;
        if j == 500 { 501 } else { j }
    };
    for inst in 0..4 {
        for code in ["200", "500"] {
            let labels = vec![
                ("__name__".to_string(), "http_requests_total".to_string()),
                ("job".into(), "api".into()),
                ("instance".into(), format!("i{inst}")),
                ("code".into(), code.into()),
            ];
            let mut v = 1000.0 + rng.below(5000) as f64;
            let mut pts = Vec::new();
            let mut t = start;
            while t < end {
                pts.push((t + jitter(&mut rng), v));
                v += rng.below(if code == "200" { 300 } else { 20 }) as f64;
                // A rare counter reset.
                if rng.below(97) == 0 {
                    v = rng.below(10) as f64;
                }
                t += 15_000;
            }
            out.push((labels, pts));
        }
    }
    for room in ["a", "b", "c"] {
        let labels = vec![
            ("__name__".to_string(), "temperature".to_string()),
            ("room".into(), room.into()),
        ];
        let mut pts = Vec::new();
        let mut t = start;
        while t < end {
            pts.push((t + jitter(&mut rng), 15.0 + rng.below(1000) as f64 / 100.0));
            t += 15_000;
        }
        out.push((labels, pts));
    }
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for inst in 0..3 {
        let mut counts = vec![0.0; bounds.len()];
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
        let mut t = start;
        while t < end {
            let ts = t + jitter(&mut rng);
            // Observations fall in buckets; cumulative counts rise together.
            for _ in 0..rng.below(40) {
                let b = rng.below(bounds.len() as u64) as usize;
                for c in counts.iter_mut().skip(b) {
                    *c += 1.0;
                }
            }
            for (i, s) in series.iter_mut().enumerate() {
                s.push((ts, 100.0 + counts[i]));
            }
            t += 15_000;
        }
        for (i, pts) in series.into_iter().enumerate() {
            let labels = vec![
                (
                    "__name__".to_string(),
                    "req_duration_seconds_bucket".to_string(),
                ),
                ("instance".into(), format!("i{inst}")),
                ("le".into(), bounds[i].into()),
            ];
            out.push((labels, pts));
        }
    }
    out
}

fn openmetrics(series: &[(Vec<(String, String)>, Vec<(i64, f64)>)]) -> String {
    let mut s = String::new();
    for (labels, pts) in series {
        let name = &labels[0].1;
        let ls: Vec<String> = labels[1..]
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        for (t, v) in pts {
            let _ = writeln!(
                s,
                "{name}{{{}}} {v} {}.{:03}",
                ls.join(","),
                t / 1000,
                t % 1000
            );
        }
    }
    s.push_str("# EOF\n");
    s
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(om: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.om");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(om.as_bytes())
        .unwrap();
    let tsdb = dir.path().join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&tsdb)
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global: {}\n").unwrap();
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=30d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if get(port, "/-/ready").is_some_and(|b| b.contains("Ready")) {
                return Prometheus {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("prometheus did not start");
}

fn get(port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "-g", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `labels -> values` of a Prometheus API result (vector or matrix).
fn from_prometheus(json: &serde_json::Value) -> Vec<(String, Vec<(i64, f64)>)> {
    let data = &json["data"];
    let parse_point = |p: &serde_json::Value| {
        (
            (p[0].as_f64().unwrap() * 1000.0).round() as i64,
            p[1].as_str().unwrap().parse::<f64>().unwrap(),
        )
    };
    let res = &data["result"];
    if data["resultType"] == "scalar" {
        return vec![("{}".into(), vec![parse_point(res)])];
    }
    let mut out: Vec<(String, Vec<(i64, f64)>)> = res
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = s["metric"].as_object().unwrap();
            let l = Labels::new(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
            );
            let pts = match s.get("values") {
                Some(vs) => vs.as_array().unwrap().iter().map(parse_point).collect(),
                None => vec![parse_point(&s["value"])],
            };
            (l.to_string(), pts)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn from_keel(v: Value, t: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out: Vec<(String, Vec<(i64, f64)>)> = match v {
        Value::Scalar(x) => vec![("{}".into(), vec![(t, x)])],
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels.to_string(), vec![(t, s.v)]))
            .collect(),
        Value::Matrix(m) => m
            .into_iter()
            .map(|s| (s.labels.to_string(), s.points))
            .collect(),
        Value::String(_) => panic!("string result"),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Compares two results; returns how many values agreed.
fn compare(
    what: &str,
    keel: &[(String, Vec<(i64, f64)>)],
    prom: &[(String, Vec<(i64, f64)>)],
) -> usize {
    let mut n = 0;
    let kl: Vec<&String> = keel.iter().map(|x| &x.0).collect();
    let pl: Vec<&String> = prom.iter().map(|x| &x.0).collect();
    assert_eq!(kl, pl, "{what}: label sets differ");
    for ((l, k), (_, p)) in keel.iter().zip(prom) {
        assert_eq!(k.len(), p.len(), "{what} {l}: {k:?} vs Prometheus {p:?}");
        for (a, b) in k.iter().zip(p) {
            assert!(
                a.0 == b.0 && same(a.1, b.1),
                "{what} {l}: keel {a:?}, Prometheus {b:?}"
            );
            n += 1;
        }
    }
    n
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    "http_requests_total offset 2m",
    "http_requests_total{code=~\"5..\",instance!=\"i0\"}",
    "{__name__=~\"http_.*\",code!~\"2..\"}",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[1m])",
    "increase(http_requests_total[2m])",
    "delta(temperature[3m])",
    "sum by (code) (rate(http_requests_total[5m]))",
    "avg without (instance) (rate(http_requests_total[5m]))",
    "max by (job) (http_requests_total)",
    "min(temperature)",
    "count by (code) (http_requests_total)",
    "sum(rate(http_requests_total{code=\"500\"}[5m])) / sum(rate(http_requests_total[5m]))",
    "http_requests_total / ignoring (code) group_left sum without (code) (http_requests_total)",
    "sum by (instance) (rate(http_requests_total[5m])) > on (instance) sum by (instance) (rate(req_duration_seconds_bucket{le=\"+Inf\"}[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(req_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.99, rate(req_duration_seconds_bucket[1m]))",
    "temperature > 20",
    "temperature > bool 20",
    "2 * temperature + 1",
    "temperature - on (room) temperature offset 1m",
    "time() - 5",
    "max_over_time(temperature[2m])",
    "avg_over_time(temperature[5m])",
    "-temperature",
    "resets(http_requests_total[30m])",
];

#[test]
fn keel_answers_equal_prometheus_on_the_same_data() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Two hours of data ending an hour ago, aligned to the minute.
    let end = (now - 3_600_000) / 60_000 * 60_000;
    let start = end - 7_200_000;
    let series = data(start, end);
    let store = Store::new(Options::default());
    for (labels, pts) in &series {
        let l = Labels::new(labels.iter().cloned());
        for (t, v) in pts {
            store.append(&l, *t, *v).unwrap();
        }
    }
    let prom = start_prometheus(&openmetrics(&series));
    let (mut checked, mut values) = (0, 0);
    for q in QUERIES {
        // Instant queries at three times on .500 seconds, past the first
        // 30 minutes so every window is full.
        for k in [40, 77, 110] {
            let t = start + k * 60_000 + 500;
            let body = get(
                prom.port,
                &format!("/api/v1/query?query={}&time={}.500", encode(q), t / 1000),
            )
            .unwrap_or_else(|| panic!("Prometheus failed on {q}"));
            let p: serde_json::Value = serde_json::from_str(&body).unwrap();
            let k = eval::instant(&store, q, t).unwrap_or_else(|e| panic!("{q}: {e}"));
            values += compare(
                &format!("{q} @ {t}"),
                &from_keel(k, t),
                &from_prometheus(&p),
            );
            checked += 1;
        }
        // A range query over 20 minutes at a 30s step.
        let (rs, re) = (start + 40 * 60_000 + 500, start + 60 * 60_000 + 500);
        let body = get(
            prom.port,
            &format!(
                "/api/v1/query_range?query={}&start={}.500&end={}.500&step=30",
                encode(q),
                rs / 1000,
                re / 1000
            ),
        )
        .unwrap_or_else(|| panic!("Prometheus failed on range {q}"));
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        let k = eval::range(&store, q, rs, re, 30_000).unwrap_or_else(|e| panic!("{q}: {e}"));
        values += compare(
            &format!("range {q}"),
            &from_keel(Value::Matrix(k), rs),
            &from_prometheus(&p),
        );
        checked += 1;
    }
    assert_eq!(checked, QUERIES.len() * 4);
    // Not an empty agreement: most queries return several series.
    assert!(values > 2000, "only {values} values compared");
}
