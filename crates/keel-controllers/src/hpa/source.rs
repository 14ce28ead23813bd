//! Where the autoscaler's readings come from: a [`MetricsSource`].
//! [`ResourceMetrics`] reads `metrics.k8s.io` (CPU and memory from the
//! agents' cgroups) in process. Pods and Object metrics (requests per
//! second from the gateway, any `PromQL` series) are the seam for a metrics
//! backend: a source that serves them overrides [`MetricsSource::pods`] and
//! [`MetricsSource::object`] (keel server plugs in keel-metrics' `PromQL`
//! over the gateways' counters); without one they fail with the message
//! the HPA's `ScalingActive` condition then shows.

use std::future::Future;
use std::pin::Pin;

use keel_api::Loopback;
use keel_api::selectors::LabelSelector;
use serde_json::Value;

use super::calc::{Reading, Readings};

pub type MetricsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Readings for the replica calculator, in milli-units.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Usage of `resource` (`cpu`, `memory`) by the pods of `ns` that
    /// `selector` matches (only `container`'s, when given), by pod name.
    fn resource<'a>(
        &'a self,
        ns: &'a str,
        resource: &'a str,
        selector: &'a LabelSelector,
        container: Option<&'a str>,
    ) -> MetricsFuture<'a, Readings>;

    /// A per-pod metric (`spec.metrics[].pods`) of the pods `selector`
    /// matches, by pod name.
    fn pods<'a>(
        &'a self,
        ns: &'a str,
        metric: &'a str,
        metric_selector: &'a Value,
        selector: &'a LabelSelector,
    ) -> MetricsFuture<'a, Readings> {
        let _ = (ns, metric_selector, selector);
        Box::pin(async move {
            Err(format!(
                "unable to get metric {metric}: no metrics backend serves pods metrics"
            ))
        })
    }

    /// A metric describing one object (`spec.metrics[].object`), e.g. an
    /// Ingress's requests per second.
    fn object<'a>(
        &'a self,
        ns: &'a str,
        described: &'a Value,
        metric: &'a str,
        metric_selector: &'a Value,
    ) -> MetricsFuture<'a, i64> {
        let _ = (ns, metric_selector);
        Box::pin(async move {
            Err(format!(
                "unable to get metric {metric}: {}/{}: no metrics backend serves object metrics",
                described["kind"].as_str().unwrap_or_default(),
                described["name"].as_str().unwrap_or_default()
            ))
        })
    }
}

/// `metrics.k8s.io` through the in-process API.
#[derive(Debug, Clone)]
pub struct ResourceMetrics {
    pub api: Loopback,
}

impl MetricsSource for ResourceMetrics {
    fn resource<'a>(
        &'a self,
        ns: &'a str,
        resource: &'a str,
        selector: &'a LabelSelector,
        container: Option<&'a str>,
    ) -> MetricsFuture<'a, Readings> {
        Box::pin(async move {
            let items = self.api.pod_metrics(ns).await.map_err(|e| e.message)?;
            let items: Vec<Value> = items
                .into_iter()
                .filter(|i| selector.matches(i.pointer("/metadata/labels")))
                .collect();
            if items.is_empty() {
                return Err("no metrics returned from resource metrics API".into());
            }
            Ok(readings(&items, resource, container))
        })
    }
}

/// Per-pod sums of `resource` from `PodMetrics` items (pods without a
/// value for every counted container, or without `container`, are left
/// out, as metrics-server's client does).
pub fn readings(items: &[Value], resource: &str, container: Option<&str>) -> Readings {
    let mut out = Readings::new();
    for i in items {
        let Some(name) = i.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let mut sum = 0i64;
        let mut found = false;
        let mut complete = true;
        for c in i["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|want| c["name"] != want) {
                continue;
            }
            found = true;
            match c["usage"][resource].as_str().and_then(milli) {
                Some(v) => sum += v,
                None => complete = false,
            }
        }
        if !found || !complete {
            continue;
        }
        out.insert(
            name.to_string(),
            Reading {
                value: sum,
                timestamp: i["timestamp"].as_str().and_then(seconds).unwrap_or(0.0),
                window: i["window"].as_str().and_then(duration).unwrap_or(0.0),
            },
        );
    }
    out
}

/// A quantity in milli-units, rounded up as `MilliValue` rounds.
pub fn milli(q: &str) -> Option<i64> {
    if let Some(n) = q.strip_suffix('n')
        && let Ok(n) = n.parse::<i64>()
    {
        return Some((n + 999_999).div_euclid(1_000_000));
    }
    let x = keel_api::validate::parse_quantity(q).ok()? * 1000.0;
    let r = x.round();
    #[allow(clippy::cast_possible_truncation)]
    Some(if (x - r).abs() < 1e-6 { r } else { x.ceil() } as i64)
}

/// Milli-units as a canonical quantity (`250m`, `2`, `3k`).
pub fn quantity(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut v = milli / 1000;
    let mut e = 0;
    while v != 0 && v % 1000 == 0 && e < 6 {
        v /= 1000;
        e += 1;
    }
    format!("{v}{}", ["", "k", "M", "G", "T", "P", "E"][e])
}

#[allow(clippy::cast_precision_loss)]
pub fn seconds(ts: &str) -> Option<f64> {
    let t: jiff::Timestamp = ts.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

fn duration(d: &str) -> Option<f64> {
    if let Some(ms) = d.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    d.strip_suffix('s')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_round_as_kubernetes() {
        assert_eq!(milli("250000000n"), Some(250));
        assert_eq!(milli("250000001n"), Some(251));
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("4Ki"), Some(4_096_000));
        assert_eq!(milli("x"), None);
        assert_eq!(quantity(250), "250m");
        assert_eq!(quantity(104_857_600_000), "104857600");
        assert_eq!(quantity(2_000_000_000), "2M");
        assert_eq!(quantity(0), "0");
    }

    #[test]
    fn readings_sum_containers() {
        let items = [
            json!({"metadata": {"name": "a"}, "timestamp": "2026-01-01T00:00:10Z", "window": "5s",
                "containers": [{"name": "app", "usage": {"cpu": "200000000n", "memory": "1Ki"}},
                               {"name": "side", "usage": {"cpu": "50m", "memory": "1Ki"}}]}),
            json!({"metadata": {"name": "b"}, "containers": [{"name": "app", "usage": {"memory": "1Ki"}}]}),
        ];
        let all = readings(&items, "cpu", None);
        assert_eq!(all.len(), 1, "b has no CPU reading");
        assert_eq!(all["a"].value, 250);
        assert!((all["a"].window - 5.0).abs() < 1e-9);
        assert!((all["a"].timestamp - 1_767_225_610.0).abs() < 1e-9);
        assert_eq!(readings(&items, "cpu", Some("side"))["a"].value, 50);
        assert!(readings(&items, "cpu", Some("nope")).is_empty());
        assert_eq!(readings(&items, "memory", None)["b"].value, 1_024_000);
    }
}
