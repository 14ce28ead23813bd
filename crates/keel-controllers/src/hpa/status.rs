//! The HPA's status as the controller rewrites it, and pods as the
//! replica calculator reads them.

use serde_json::{Value, json};

use super::calc;
use super::source::{milli, seconds};

/// An HPA's `status`, edited in place.
pub(super) struct Status {
    v: Value,
}

impl Status {
    pub fn of(hpa: &Value) -> Status {
        let v = match hpa.get("status") {
            Some(s) if s.is_object() => s.clone(),
            _ => json!({}),
        };
        Status { v }
    }

    /// Sets condition `kind`; its `lastTransitionTime` moves only when its
    /// status does.
    pub fn condition(&mut self, kind: &str, ok: bool, reason: &str, message: &str) {
        let status = if ok { "True" } else { "False" };
        if !self.v["conditions"].is_array() {
            self.v["conditions"] = json!([]);
        }
        let list = self.v["conditions"]
            .as_array_mut()
            .expect("conditions is an array");
        let new = |since: Value| {
            json!({"type": kind, "status": status, "lastTransitionTime": since,
                "reason": reason, "message": message})
        };
        match list.iter_mut().find(|c| c["type"] == kind) {
            Some(c) => {
                let since = if c["status"] == status {
                    c["lastTransitionTime"].clone()
                } else {
                    json!(super::rfc3339())
                };
                *c = new(since);
            }
            None => list.push(new(json!(super::rfc3339()))),
        }
    }

    pub fn current_metrics(&self) -> Option<Value> {
        self.v.get("currentMetrics").cloned()
    }

    pub fn desired(&self) -> i32 {
        self.v["desiredReplicas"]
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .unwrap_or(0)
    }

    pub fn set(&mut self, current: i32, desired: i32, metrics: Option<Value>, rescale: bool) {
        self.v["currentReplicas"] = json!(current);
        self.v["desiredReplicas"] = json!(desired);
        match metrics {
            Some(m) if !m.is_null() => self.v["currentMetrics"] = m,
            _ => {
                if let Some(o) = self.v.as_object_mut() {
                    o.remove("currentMetrics");
                }
            }
        }
        if rescale {
            self.v["lastScaleTime"] = json!(super::rfc3339());
        }
    }

    pub fn value(&self) -> Value {
        self.v.clone()
    }
}

/// A pod for the calculator, with its containers' requests of `resource`.
pub(super) fn pod_of(p: &Value, resource: &str) -> calc::Pod {
    let st = &p["status"];
    let ready = st["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            (
                c["status"] == "True",
                c["lastTransitionTime"]
                    .as_str()
                    .and_then(seconds)
                    .unwrap_or(0.0),
            )
        });
    let requests = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["resources"]["requests"][resource]
                    .as_str()
                    .and_then(milli),
            )
        })
        .collect();
    calc::Pod {
        name: p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        phase: st["phase"].as_str().unwrap_or("Pending").to_string(),
        deleting: crate::objects::is_deleting(p),
        ready,
        start_time: st["startTime"].as_str().and_then(seconds),
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let hpa = json!({"status": {"conditions": [{"type": "AbleToScale", "status": "True",
            "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "x", "message": "y"}]}});
        let mut s = Status::of(&hpa);
        s.condition("AbleToScale", true, "SucceededGetScale", "m");
        s.condition("ScalingActive", false, "FailedGetResourceMetric", "n");
        let v = s.value();
        assert_eq!(
            v["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(v["conditions"][0]["reason"], "SucceededGetScale");
        assert_eq!(v["conditions"][1]["status"], "False");
        s.condition("AbleToScale", false, "FailedGetScale", "m");
        assert_ne!(
            s.value()["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        s.set(2, 3, Some(json!([])), true);
        assert_eq!(s.value()["desiredReplicas"], 3);
        assert!(s.value()["lastScaleTime"].is_string());
    }

    #[test]
    fn pods_read_requests_and_readiness() {
        let p = json!({"metadata": {"name": "w"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}, {"name": "b"}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}});
        let c = pod_of(&p, "cpu");
        assert_eq!(
            c.requests,
            [("a".to_string(), Some(100)), ("b".to_string(), None)]
        );
        assert_eq!(c.ready, Some((true, 1_767_225_610.0)));
        assert_eq!(c.start_time, Some(1_767_225_600.0));
        assert_eq!(pod_of(&json!({}), "cpu").phase, "Pending");
    }
}
