//! Node ports of `NodePort` and `LoadBalancer` Services, allocated as the
//! API server does it (30000-32767, the default `--service-node-port-range`)
//! and checked against that range.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value, json};

use super::Cause;

pub const FIRST: i64 = 30_000;
pub const LAST: i64 = 32_767;

/// The next port of a sequence that starts at a random place (restarts
/// rarely hand out a live port again).
fn next() -> i64 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let span = u32::try_from(LAST - FIRST + 1).unwrap_or(1);
    FIRST + i64::from(NEXT.fetch_add(1, Ordering::SeqCst) % span)
}

/// Gives every port of a `NodePort` Service (and of a `LoadBalancer` one
/// unless `allocateLoadBalancerNodePorts: false`) a node port, and the
/// traffic policy its default.
pub fn apply_defaults(spec: &mut Map<String, Value>) {
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or_default();
    let lb = ty == "LoadBalancer";
    if ty != "NodePort" && !lb {
        return;
    }
    if !spec.contains_key("externalTrafficPolicy") {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if lb && !spec.contains_key("allocateLoadBalancerNodePorts") {
        spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
    }
    if lb && spec.get("allocateLoadBalancerNodePorts") == Some(&Value::Bool(false)) {
        return;
    }
    let taken: Vec<i64> = ports(spec)
        .iter()
        .filter_map(|p| p.get("nodePort")?.as_i64())
        .collect();
    let mut i = 0;
    for p in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
            continue;
        }
        // Ports of one Service never share a node port.
        let mut n = next();
        while taken.contains(&n) && i < 100 {
            n = next();
            i += 1;
        }
        p.insert("nodePort".into(), json!(n));
    }
}

fn ports(spec: &Map<String, Value>) -> Vec<Value> {
    spec.get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Node ports outside the range, or on a Service type without them.
pub fn validate(spec: &Value, out: &mut Vec<Cause>) {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    for (i, p) in spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(n) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        else {
            continue;
        };
        let field = format!("spec.ports[{i}].nodePort");
        if ty != "NodePort" && ty != "LoadBalancer" {
            out.push(Cause::forbidden(
                &field,
                "may not be used when `type` is 'ClusterIP'",
            ));
        } else if !(FIRST..=LAST).contains(&n) {
            out.push(Cause::invalid(
                &field,
                &json!(n),
                &format!("provided port is not in the valid range. The range of valid ports is {FIRST}-{LAST}"),
            ));
        }
    }
}
