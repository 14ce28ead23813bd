//! The autoscaler's Pods and Object metrics, read from keel server's own
//! metrics store with `PromQL` (what prometheus-adapter does for a
//! Kubernetes cluster, without an adapter to install). CPU and memory
//! still come from `metrics.k8s.io`.
//!
//! Metric names (`spec.metrics[].pods.metric.name`,
//! `spec.metrics[].object.metric.name`):
//! - `keel_gateway_requests_per_second` (also `requests-per-second`, the
//!   name of Kubernetes' HPA walkthrough): the gateway's requests per
//!   second, `rate(keel_gateway_requests_total[W])`, per pod (Pods) or
//!   for an Ingress, `HTTPRoute` or Service (Object);
//! - `NAME_per_second`: `rate(NAME_total[W])`;
//! - any other name: the gauge of that name.
//!
//! W is four scrape intervals (Prometheus' rule of thumb for `rate`). The
//! metric's `selector` adds label matchers; series are always restricted
//! to the HPA's namespace.

use std::sync::Arc;
use std::time::Duration;

use keel_api::Loopback;
use keel_api::resources;
use keel_api::selectors::LabelSelector;
use keel_controllers::hpa::calc::{Reading, Readings};
use keel_controllers::hpa::source::{MetricsFuture, MetricsSource, ResourceMetrics};
use keel_metrics::Store;
use serde_json::Value;

/// The autoscaler's source: `metrics.k8s.io` plus the store.
pub fn source(api: Loopback, store: Arc<Store>, scrape: Duration) -> Arc<dyn MetricsSource> {
    Arc::new(StoreMetrics {
        resource: ResourceMetrics { api: api.clone() },
        api,
        store,
        window: (scrape * 4).max(Duration::from_secs(1)),
    })
}

struct StoreMetrics {
    resource: ResourceMetrics,
    api: Loopback,
    store: Arc<Store>,
    window: Duration,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The series a metric name stands for, as a `PromQL` expression over the
/// label matchers `m` (already written, comma-separated).
pub fn expression(metric: &str, m: &str, window: Duration) -> Result<String, String> {
    let w = format!("{}ms", window.as_millis());
    let base = match metric {
        "keel_gateway_requests_per_second" | "requests-per-second" => {
            return Ok(format!("rate(keel_gateway_requests_total{{{m}}}[{w}])"));
        }
        _ => metric.strip_suffix("_per_second").unwrap_or(metric),
    };
    if !valid_name(base, true) {
        return Err(format!(
            "{metric} is not a metric name (letters, digits, _ and :)"
        ));
    }
    Ok(if base.len() == metric.len() {
        format!("{metric}{{{m}}}")
    } else {
        format!("rate({base}_total{{{m}}}[{w}])")
    })
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A `PromQL` string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Values as an RE2 alternation matching exactly them.
fn alternation<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let escaped: Vec<String> = values
        .map(|v| {
            v.chars().fold(String::new(), |mut s, c| {
                if "\\.+*?()|[]{}^$".contains(c) {
                    s.push('\\');
                }
                s.push(c);
                s
            })
        })
        .collect();
    escaped.join("|")
}

/// Label matchers for `namespace` and a metric's `LabelSelector`
/// (`matchLabels`, `matchExpressions` with In/NotIn/Exists/DoesNotExist).
pub fn matchers(ns: &str, selector: &Value) -> Result<String, String> {
    let mut m = vec![format!("namespace={}", quoted(ns))];
    let check = |k: &str| {
        if valid_name(k, false) {
            Ok(())
        } else {
            Err(format!(
                "metric selector: {k:?} is not a label name (letters, digits and _)"
            ))
        }
    };
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (k, v) in labels {
            check(k)?;
            m.push(format!("{k}={}", quoted(v.as_str().unwrap_or_default())));
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let k = e["key"].as_str().unwrap_or_default();
        check(k)?;
        let values = e["values"].as_array().into_iter().flatten();
        let values = alternation(values.filter_map(Value::as_str));
        match e["operator"].as_str().unwrap_or_default() {
            "In" => m.push(format!("{k}=~{}", quoted(&values))),
            "NotIn" => m.push(format!("{k}!~{}", quoted(&values))),
            "Exists" => m.push(format!("{k}!=\"\"")),
            "DoesNotExist" => m.push(format!("{k}=\"\"")),
            op => return Err(format!("metric selector: unknown operator {op:?}")),
        }
    }
    Ok(m.join(","))
}

#[allow(clippy::cast_possible_truncation)]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A value in milli-units (custom metrics API quantities).
#[allow(clippy::cast_possible_truncation)]
fn milli(v: f64) -> Option<i64> {
    v.is_finite().then(|| (v * 1000.0).round() as i64)
}

impl StoreMetrics {
    fn query(&self, q: &str) -> Result<Vec<keel_metrics::eval::Sample>, String> {
        match keel_metrics::eval::instant(&self.store, q, now_ms()) {
            Ok(keel_metrics::eval::Value::Vector(v)) => Ok(v),
            Ok(other) => Err(format!("{q}: a {} rather than a vector", other.type_name())),
            Err(e) => Err(format!("{q}: {e}")),
        }
    }
}

impl MetricsSource for StoreMetrics {
    fn resource<'a>(
        &'a self,
        ns: &'a str,
        resource: &'a str,
        selector: &'a LabelSelector,
        container: Option<&'a str>,
    ) -> MetricsFuture<'a, Readings> {
        self.resource.resource(ns, resource, selector, container)
    }

    fn pods<'a>(
        &'a self,
        ns: &'a str,
        metric: &'a str,
        metric_selector: &'a Value,
        selector: &'a LabelSelector,
    ) -> MetricsFuture<'a, Readings> {
        Box::pin(async move {
            let pods = resources::find("", "v1", "pods").expect("pods are served");
            let (items, _) = self.api.list(pods, Some(ns)).await.map_err(|e| e.message)?;
            let names: Vec<&str> = items
                .iter()
                .filter(|p| selector.matches(p.pointer("/metadata/labels")))
                .filter_map(|p| p.pointer("/metadata/name")?.as_str())
                .collect();
            let m = matchers(ns, metric_selector)?;
            let q = format!("sum by (pod) ({})", expression(metric, &m, self.window)?);
            #[allow(clippy::cast_precision_loss)]
            let now = now_ms() as f64 / 1000.0;
            let mut out = Readings::new();
            for s in self.query(&q)? {
                let pod = s.labels.value("pod");
                if let (true, Some(value)) = (names.contains(&pod), milli(s.v)) {
                    out.insert(
                        pod.to_string(),
                        Reading {
                            value,
                            timestamp: now,
                            window: self.window.as_secs_f64(),
                        },
                    );
                }
            }
            if out.is_empty() {
                return Err(format!(
                    "unable to get metric {metric}: no series of it for the target's pods (no requests through the gateway yet?)"
                ));
            }
            Ok(out)
        })
    }

    fn object<'a>(
        &'a self,
        ns: &'a str,
        described: &'a Value,
        metric: &'a str,
        metric_selector: &'a Value,
    ) -> MetricsFuture<'a, i64> {
        Box::pin(async move {
            let kind = described["kind"].as_str().unwrap_or_default();
            let name = described["name"].as_str().unwrap_or_default();
            let label = match kind {
                "Ingress" | "HTTPRoute" => "ingress",
                "Service" => "service",
                "Pod" => "pod",
                _ => {
                    return Err(format!(
                        "unable to get metric {metric}: {kind}/{name}: keel's metrics describe Ingresses, HTTPRoutes, Services and Pods"
                    ));
                }
            };
            let m = format!(
                "{},{label}={}",
                matchers(ns, metric_selector)?,
                quoted(name)
            );
            let q = format!("sum({})", expression(metric, &m, self.window)?);
            self.query(&q)?
                .first()
                .and_then(|s| milli(s.v))
                .ok_or_else(|| {
                    format!("unable to get metric {metric}: {kind}/{name}: no series of it")
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_names_become_promql() {
        let w = Duration::from_secs(4);
        assert_eq!(
            expression("requests-per-second", "namespace=\"a\"", w).unwrap(),
            "rate(keel_gateway_requests_total{namespace=\"a\"}[4000ms])"
        );
        assert_eq!(
            expression("keel_gateway_requests_per_second", "x=\"1\"", w).unwrap(),
            "rate(keel_gateway_requests_total{x=\"1\"}[4000ms])"
        );
        assert_eq!(
            expression("jobs_per_second", "x=\"1\"", w).unwrap(),
            "rate(jobs_total{x=\"1\"}[4000ms])"
        );
        assert_eq!(expression("queue_depth", "", w).unwrap(), "queue_depth{}");
        assert!(expression("packets-per-second", "", w).is_err());
        assert!(expression("a{b}", "", w).is_err());
    }

    #[test]
    fn selectors_become_matchers_and_cannot_inject() {
        let sel = json!({"matchLabels": {"status": "200"},
        "matchExpressions": [
            {"key": "service", "operator": "In", "values": ["web", "a.b"]},
            {"key": "pod", "operator": "NotIn", "values": ["x\"}"]},
            {"key": "ingress", "operator": "Exists"},
        ]});
        let m = matchers("prod", &sel).unwrap();
        assert_eq!(
            m,
            r#"namespace="prod",status="200",service=~"web|a\\.b",pod!~"x\"\\}",ingress!="""#
        );
        // The result parses as PromQL.
        keel_metrics::eval::parse(&format!("x{{{m}}}")).unwrap();
        assert!(matchers("a", &json!({"matchLabels": {"a}": "b"}})).is_err());
        assert!(
            matchers(
                "a",
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn pods_rates_come_from_the_store_for_the_targets_pods_only() {
        let store = Store::new(keel_metrics::Options::default());
        let now = now_ms();
        for (pod, ns, per_s) in [
            ("web-1", "default", 10.0),
            ("web-2", "default", 4.0),
            ("web-1", "other", 99.0),
        ] {
            let l = keel_metrics::Labels::new([
                ("__name__", "keel_gateway_requests_total"),
                ("namespace", ns),
                ("pod", pod),
                ("status", "200"),
            ]);
            for i in 0..6i32 {
                let t = now - 5000 + i64::from(i) * 1000;
                store.append(&l, t, f64::from(i) * per_s).unwrap();
            }
        }
        let m = matchers("default", &json!({})).unwrap();
        let q = format!(
            "sum by (pod) ({})",
            expression("requests-per-second", &m, Duration::from_secs(4)).unwrap()
        );
        let keel_metrics::eval::Value::Vector(mut v) =
            keel_metrics::eval::instant(&store, &q, now).unwrap()
        else {
            panic!("vector")
        };
        v.sort_by(|a, b| a.labels.value("pod").cmp(b.labels.value("pod")));
        let got: Vec<(&str, Option<i64>)> = v
            .iter()
            .map(|s| (s.labels.value("pod"), milli(s.v)))
            .collect();
        assert_eq!(got, [("web-1", Some(10_000)), ("web-2", Some(4_000))]);
    }
}
