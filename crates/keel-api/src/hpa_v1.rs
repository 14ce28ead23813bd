//! `autoscaling/v1` `HorizontalPodAutoscalers`, served by converting to and
//! from the stored `autoscaling/v2` objects as kube-apiserver converts them:
//! `targetCPUUtilizationPercentage` ↔ a CPU `Utilization` metric,
//! `currentCPUUtilizationPercentage` ↔ its current reading, `behavior` and
//! the status conditions carried in the `autoscaling.alpha.kubernetes.io/*`
//! annotations. kubectl before 1.32 sends `kubectl autoscale` as v1.
//!
//! Requests are rewritten to v2 (bodies converted, JSON answers asked for)
//! and answers converted back. Watches and patches of v1 are refused with a
//! message naming v2: a patch written against v1 fields cannot be applied
//! to the v2 object without a converter per patch type.

use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::http::{Body, Fail, fail_response};

const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// Whether a path addresses v1 HPAs: `/apis/autoscaling/v1/.../horizontalpodautoscalers...`.
pub(crate) fn is_v1(segs: &[&str]) -> bool {
    matches!(segs, ["apis", "autoscaling", "v1", rest @ ..]
        if rest.iter().take(3).any(|s| *s == "horizontalpodautoscalers"))
}

/// The refusal for what is not converted.
pub(crate) fn unsupported(what: &str) -> hyper::Response<Body> {
    fail_response(&Fail::new(
        405,
        "MethodNotAllowed",
        format!(
            "{what} of autoscaling/v1 horizontalpodautoscalers is not supported; use autoscaling/v2"
        ),
    ))
}

fn cpu_metric(m: &Value) -> bool {
    m["type"] == "Resource" && m["resource"]["name"] == "cpu"
}

/// The fields both versions share: of `spec` and of `status`.
fn shared(v: &Value, keys: &[&str]) -> Value {
    let mut out = json!({});
    for k in keys {
        if let Some(x) = v.get(*k) {
            out[*k] = x.clone();
        }
    }
    out
}

const SPEC: [&str; 3] = ["scaleTargetRef", "minReplicas", "maxReplicas"];
const STATUS: [&str; 4] = [
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];

/// Converts each item of a list, or `None` for a single object.
fn each(v: &Value, version: &str, f: fn(&Value) -> Value) -> Option<Value> {
    let items = v.get("items")?.as_array()?;
    let mut l = v.clone();
    l["apiVersion"] = json!(format!("autoscaling/{version}"));
    l["items"] = items.iter().map(f).collect();
    Some(l)
}

/// A v1 object (or list) as v2.
pub fn to_v2(v1: &Value) -> Value {
    if let Some(l) = each(v1, "v2", to_v2) {
        return l;
    }
    let mut v = v1.clone();
    v["apiVersion"] = json!("autoscaling/v2");
    let spec = &v1["spec"];
    let mut s = shared(spec, &SPEC);
    if let Some(p) = spec.get("targetCPUUtilizationPercentage") {
        s["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": p}}}]);
    }
    let ann = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut);
    if let Some(ann) = ann {
        if let Some(b) = ann.remove(BEHAVIOR)
            && let Some(b) = b
                .as_str()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            s["behavior"] = b;
        }
        ann.remove(CONDITIONS);
    }
    v["spec"] = s;
    if let Some(st) = v1.get("status").filter(|s| s.is_object()) {
        let mut out = shared(st, &STATUS);
        if let Some(p) = st.get("currentCPUUtilizationPercentage") {
            out["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": p}}}]);
        }
        v["status"] = out;
    }
    v
}

/// A v2 object (or list) as v1.
pub fn to_v1(v2: &Value) -> Value {
    if let Some(l) = each(v2, "v1", to_v1) {
        return l;
    }
    if v2["kind"] != "HorizontalPodAutoscaler" {
        return v2.clone();
    }
    let mut v = v2.clone();
    v["apiVersion"] = json!("autoscaling/v1");
    let spec = &v2["spec"];
    let mut s = shared(spec, &SPEC);
    let metrics = spec["metrics"].as_array();
    if let Some(p) = metrics
        .into_iter()
        .flatten()
        .find(|m| cpu_metric(m))
        .and_then(|m| m["resource"]["target"].get("averageUtilization"))
    {
        s["targetCPUUtilizationPercentage"] = p.clone();
    }
    let mut ann = Vec::new();
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        ann.push((BEHAVIOR, b.to_string()));
    }
    v["spec"] = s;
    if let Some(st) = v2.get("status").filter(|s| s.is_object()) {
        let mut out = shared(st, &STATUS);
        if let Some(p) = st["currentMetrics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| cpu_metric(m))
            .and_then(|m| m["resource"]["current"].get("averageUtilization"))
        {
            out["currentCPUUtilizationPercentage"] = p.clone();
        }
        if let Some(c) = st.get("conditions").filter(|c| c.is_array()) {
            ann.push((CONDITIONS, c.to_string()));
        }
        v["status"] = out;
    }
    if !ann.is_empty() {
        if !v["metadata"]["annotations"].is_object() {
            v["metadata"]["annotations"] = json!({});
        }
        for (k, x) in ann {
            v["metadata"]["annotations"][k] = json!(x);
        }
    }
    v
}

/// A request body for v2 (unparseable bodies go on for the handler's error).
pub(crate) fn request(body: bytes::Bytes) -> bytes::Bytes {
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => bytes::Bytes::from(to_v2(&v).to_string()),
        _ => body,
    }
}

/// The handler's answer as v1.
pub(crate) async fn response(resp: hyper::Response<Body>) -> hyper::Response<Body> {
    let (mut parts, body) = resp.into_parts();
    // The body's error type is Infallible.
    let Ok(b) = body.collect().await;
    let b = b.to_bytes();
    let out = match serde_json::from_slice::<Value>(&b) {
        Ok(v) => bytes::Bytes::from(to_v1(&v).to_string()),
        Err(_) => b,
    };
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    hyper::Response::from_parts(parts, http_body_util::Full::new(out).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_round_trips_through_v2() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(to_v1(&v2), v1);
        let mut stored = v2.clone();
        stored["status"] = json!({"currentReplicas": 2, "desiredReplicas": 3,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 80, "averageValue": "80m"}}}],
            "conditions": [{"type": "AbleToScale", "status": "True"}]});
        stored["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
        let back = to_v1(&stored);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 80);
        assert_eq!(back["status"]["desiredReplicas"], 3);
        assert!(
            back["metadata"]["annotations"][CONDITIONS]
                .as_str()
                .unwrap()
                .contains("AbleToScale")
        );
        assert_eq!(to_v2(&back)["spec"]["behavior"], stored["spec"]["behavior"]);
        let list = to_v1(
            &json!({"kind": "HorizontalPodAutoscalerList", "apiVersion": "autoscaling/v2", "items": [stored]}),
        );
        assert_eq!(list["apiVersion"], "autoscaling/v1");
        assert_eq!(
            list["items"][0]["spec"]["targetCPUUtilizationPercentage"],
            50
        );
        let status = json!({"kind": "Status", "code": 404});
        assert_eq!(to_v1(&status), status);
    }

    #[test]
    fn paths() {
        assert!(is_v1(&[
            "apis",
            "autoscaling",
            "v1",
            "namespaces",
            "d",
            "horizontalpodautoscalers"
        ]));
        assert!(is_v1(&[
            "apis",
            "autoscaling",
            "v1",
            "horizontalpodautoscalers"
        ]));
        assert!(!is_v1(&[
            "apis",
            "autoscaling",
            "v2",
            "horizontalpodautoscalers"
        ]));
        assert!(!is_v1(&["apis", "autoscaling", "v1"]));
    }
}
