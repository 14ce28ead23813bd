//! Per ingress (or `HTTPRoute`), Service and backend pod: requests by status,
//! latency histograms and bytes, rendered in Prometheus' text format
//! (0.0.4). Hand-written: a handful of atomics per series, no registry
//! crate needed for one counter family and one histogram.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// ingress-nginx's buckets (seconds).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct Series {
    requests: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    observed: AtomicU64,
    sum_micros: AtomicU64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
}

impl Series {
    /// Counts a request (at its response head).
    pub fn request(&self, request_bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.request_bytes
            .fetch_add(request_bytes, Ordering::Relaxed);
    }

    /// Records a finished response (its body sent or dropped).
    pub fn finished(&self, took: Duration, response_bytes: u64) {
        let s = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.observed.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.response_bytes
            .fetch_add(response_bytes, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    series: RwLock<HashMap<Labels, Arc<Series>>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn series(&self, l: Labels) -> Arc<Series> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&l)
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(l)
            .or_default()
            .clone()
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut all: Vec<(Labels, Arc<Series>)> = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let fam = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let labels = |l: &Labels| {
            format!(
                "namespace=\"{}\",ingress=\"{}\",service=\"{}\",pod=\"{}\",status=\"{}\"",
                escape(&l.namespace),
                escape(&l.ingress),
                escape(&l.service),
                escape(&l.pod),
                l.status
            )
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        fam(
            &mut out,
            "keel_gateway_requests_total",
            "counter",
            "Requests proxied, by response status.",
        );
        for (l, s) in &all {
            let _ = writeln!(
                out,
                "keel_gateway_requests_total{{{}}} {}",
                labels(l),
                get(&s.requests)
            );
        }
        fam(
            &mut out,
            "keel_gateway_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to the response's last byte.",
        );
        for (l, s) in &all {
            let ls = labels(l);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += get(&s.buckets[i]);
                let _ = writeln!(
                    out,
                    "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"{b}\"}} {cum}"
                );
            }
            let n = get(&s.observed);
            let _ = writeln!(
                out,
                "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"+Inf\"}} {n}"
            );
            // Microsecond sums stay far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let sum = get(&s.sum_micros) as f64 / 1e6;
            let _ = writeln!(
                out,
                "keel_gateway_request_duration_seconds_sum{{{ls}}} {sum}"
            );
            let _ = writeln!(
                out,
                "keel_gateway_request_duration_seconds_count{{{ls}}} {n}"
            );
        }
        fam(
            &mut out,
            "keel_gateway_request_size_bytes_total",
            "counter",
            "Request body bytes received.",
        );
        for (l, s) in &all {
            let _ = writeln!(
                out,
                "keel_gateway_request_size_bytes_total{{{}}} {}",
                labels(l),
                get(&s.request_bytes)
            );
        }
        fam(
            &mut out,
            "keel_gateway_response_size_bytes_total",
            "counter",
            "Response body bytes sent.",
        );
        for (l, s) in &all {
            let _ = writeln!(
                out,
                "keel_gateway_response_size_bytes_total{{{}}} {}",
                labels(l),
                get(&s.response_bytes)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        let l = Labels {
            namespace: "default".into(),
            ingress: "web".into(),
            service: "a".into(),
            pod: "a-1".into(),
            status: 200,
        };
        let s = m.series(l.clone());
        s.request(10);
        s.finished(Duration::from_millis(3), 100);
        m.series(l).request(0);
        s.finished(Duration::from_millis(30), 50);
        let text = m.render();
        let ls = r#"namespace="default",ingress="web",service="a",pod="a-1",status="200""#;
        assert!(
            text.contains(&format!("keel_gateway_requests_total{{{ls}}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"0.025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"0.05\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "keel_gateway_request_duration_seconds_bucket{{{ls},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "keel_gateway_response_size_bytes_total{{{ls}}} 150\n"
        )));
        assert!(text.contains(&format!(
            "keel_gateway_request_size_bytes_total{{{ls}}} 10\n"
        )));
    }
}
