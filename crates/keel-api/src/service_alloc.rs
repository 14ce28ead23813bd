//! Node ports and cluster IPs of Services, allocated against the Services
//! the store holds, as kube-apiserver's allocators repair their bitmaps
//! from the store: a restarted server never hands out a port or address a
//! live Service has, and a requested one that is taken is refused
//! ("provided port is already allocated"). Ports handed out but not yet
//! written stay reserved for a while, so two concurrent creates cannot get
//! the same one either.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::State;
use crate::validate::Cause;
use crate::validate::node_ports::{FIRST, LAST};

/// How long a handed-out value stays reserved without being in the store
/// (a create takes far less; a failed one frees it after this).
const RESERVE: Duration = Duration::from_mins(1);

/// Values handed out recently, with when.
#[derive(Default)]
pub(crate) struct Reserved {
    ports: Mutex<HashMap<i64, Instant>>,
    ips: Mutex<HashMap<String, Instant>>,
}

/// What other Services hold: node ports and cluster IPs.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub ports: BTreeSet<i64>,
    pub ips: BTreeSet<String>,
}

fn key_of(v: &Value) -> (String, String) {
    let m = |f: &str| {
        v.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (m("namespace"), m("name"))
}

/// Node ports and cluster IPs of `services`, except the one named like `own`.
pub(crate) fn taken_by<'a>(services: impl IntoIterator<Item = &'a Value>, own: &Value) -> Taken {
    let me = key_of(own);
    let mut t = Taken::default();
    for s in services {
        if key_of(s) == me {
            continue;
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                t.ports.insert(n);
            }
        }
        for ip in s
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(s.pointer("/spec/clusterIP"))
            .filter_map(Value::as_str)
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            t.ips.insert(ip.to_string());
        }
    }
    t
}

fn needs_node_ports(spec: &Value) -> bool {
    match spec.get("type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            spec.get("allocateLoadBalancerNodePorts") != Some(&Value::Bool(false))
        }
        _ => false,
    }
}

/// What an update that changes a Service's type leaves behind, dropped as
/// the API server's `dropTypeDependentFields` drops it (Kubernetes >= 1.20):
/// node ports when the new type needs none and the update adds none, the
/// health-check node port, `allocateLoadBalancerNodePorts` and
/// `externalTrafficPolicy` when the new type has no use for them and the
/// update left them as they were. What the update did change is left for
/// validation to refuse.
pub(crate) fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let (Some(o), Some(n)) = (old.get("spec"), new.get("spec")) else {
        return;
    };
    let ty = |s: &Value| {
        s.get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let (oty, nty) = (ty(o), ty(n));
    let external = |t: &str| t == "NodePort" || t == "LoadBalancer";
    let node_ports = |s: &Value| -> Vec<i64> {
        s.get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("nodePort")?.as_i64())
            .filter(|n| *n != 0)
            .collect()
    };
    let clear_ports = external(&oty)
        && !external(&nty)
        && node_ports(n).iter().all(|p| node_ports(o).contains(p));
    let hc = |s: &Value| {
        ty(s) == "LoadBalancer"
            && s.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
    };
    let clear_hc = hc(o) && !hc(n) && o.get("healthCheckNodePort") == n.get("healthCheckNodePort");
    let clear_alloc = oty == "LoadBalancer"
        && nty != "LoadBalancer"
        && o.get("allocateLoadBalancerNodePorts").is_some()
        && o.get("allocateLoadBalancerNodePorts") == n.get("allocateLoadBalancerNodePorts");
    let clear_etp = external(&oty)
        && !external(&nty)
        && o.get("externalTrafficPolicy") == n.get("externalTrafficPolicy");
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if clear_ports {
        for p in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            p.remove("nodePort");
        }
    }
    for (clear, field) in [
        (clear_hc, "healthCheckNodePort"),
        (clear_alloc, "allocateLoadBalancerNodePorts"),
        (clear_etp, "externalTrafficPolicy"),
    ] {
        if clear {
            spec.remove(field);
        }
    }
}

/// Keeps the node ports `old` had for ports an update leaves without one
/// (matched by port and protocol, as Kubernetes does), when the new type
/// has node ports at all.
pub(crate) fn keep_node_ports(new: &mut Value, old: &Value) {
    if !new.get("spec").is_some_and(needs_node_ports) {
        return;
    }
    let proto = |p: &Value| {
        p.get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string()
    };
    let olds: Vec<(i64, String, i64)> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.get("port")?.as_i64()?,
                proto(p),
                p.get("nodePort")?.as_i64()?,
            ))
        })
        .collect();
    for p in new
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
            continue;
        }
        let (port, pr) = (p.get("port").and_then(Value::as_i64), proto(p));
        if let Some((_, _, n)) = olds.iter().find(|(o, op, _)| Some(*o) == port && *op == pr)
            && let Some(m) = p.as_object_mut()
        {
            m.insert("nodePort".into(), json!(n));
        }
    }
}

/// A random place to start looking (restarts start elsewhere).
fn start() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id().wrapping_mul(2_654_435_761) ^ t)
}

impl Reserved {
    /// Refuses requested node ports other Services hold and gives every
    /// port that needs one a free node port. The Service's own type
    /// decides (`NodePort`, or `LoadBalancer` unless it opts out).
    pub(crate) fn node_ports(&self, obj: &mut Value, taken: &Taken) -> Vec<Cause> {
        let mut causes = Vec::new();
        let Some(spec) = obj.get_mut("spec") else {
            return causes;
        };
        if !needs_node_ports(spec) {
            return causes;
        }
        let now = Instant::now();
        let mut reserved = self
            .ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reserved.retain(|p, at| now.duration_since(*at) < RESERVE && !taken.ports.contains(p));
        let ports = spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mine: BTreeSet<i64> = ports
            .iter()
            .filter_map(|p| p.get("nodePort")?.as_i64())
            .filter(|n| *n > 0)
            .collect();
        let mut out = Vec::with_capacity(ports.len());
        let span = u64::try_from(LAST - FIRST + 1).unwrap_or(1);
        let mut at = start();
        for (i, mut p) in ports.into_iter().enumerate() {
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(n) if taken.ports.contains(&n) => causes.push(Cause::invalid(
                    &format!("spec.ports[{i}].nodePort"),
                    &json!(n),
                    "provided port is already allocated",
                )),
                Some(_) => {}
                None => {
                    let free = (0..span).find_map(|k| {
                        let n = FIRST + i64::try_from((at + k) % span).unwrap_or(0);
                        let busy = taken.ports.contains(&n)
                            || reserved.contains_key(&n)
                            || mine.contains(&n);
                        (!busy).then_some((k, n))
                    });
                    match free {
                        Some((k, n)) => {
                            at += k + 1;
                            reserved.insert(n, now);
                            if let Some(m) = p.as_object_mut() {
                                m.insert("nodePort".into(), json!(n));
                            }
                        }
                        None => causes.push(Cause::invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            &Value::Null,
                            &format!("failed to allocate a nodePort: range {FIRST}-{LAST} is full"),
                        )),
                    }
                }
            }
            out.push(p);
        }
        spec["ports"] = Value::Array(out);
        causes
    }

    /// Refuses a requested cluster IP another Service holds.
    pub(crate) fn check_cluster_ip(obj: &Value, taken: &Taken) -> Vec<Cause> {
        obj.pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| taken.ips.contains(*ip))
            .map(|ip| {
                vec![Cause::invalid(
                    "spec.clusterIP",
                    &json!(ip),
                    "provided IP is already allocated",
                )]
            })
            .unwrap_or_default()
    }

    /// The first address of `next` that neither the store nor a recent
    /// create holds (gives up after many tries: the range is 65,000 wide).
    pub(crate) fn cluster_ip(&self, taken: &Taken, mut next: impl FnMut() -> String) -> String {
        let now = Instant::now();
        let mut reserved = self
            .ips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reserved.retain(|ip, at| now.duration_since(*at) < RESERVE && !taken.ips.contains(ip));
        let mut ip = next();
        for _ in 0..70_000 {
            if !taken.ips.contains(&ip) && !reserved.contains_key(&ip) {
                break;
            }
            ip = next();
        }
        reserved.insert(ip.clone(), now);
        ip
    }
}

/// What the stored Services other than `own` hold.
pub(crate) async fn taken(state: &State, own: &Value) -> Result<Taken, crate::http::Fail> {
    let r = crate::resources::find("", "v1", "services").expect("services are served");
    let page = state
        .store
        .list(&r.list_prefix(None), keel_store::ListOptions::default())
        .await
        .map_err(|e| crate::http::Fail::internal(e.to_string()))?;
    let mut all = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        all.push(crate::handlers::decode(state, kv, kv.mod_revision)?);
    }
    Ok(taken_by(&all, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ty: &str, ports: &[i64], ip: &str) -> Value {
        let ports: Vec<Value> = ports
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut p = json!({"port": 80 + i, "protocol": "TCP"});
                if *n > 0 {
                    p["nodePort"] = json!(n);
                }
                p
            })
            .collect();
        json!({"metadata": {"namespace": ns, "name": name},
            "spec": {"type": ty, "clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn a_taken_port_is_refused_and_free_ones_skip_the_taken() {
        // Every port but two is held by stored Services.
        let stored: Vec<Value> = (FIRST..=LAST)
            .filter(|n| *n != 31_000 && *n != 32_000)
            .map(|n| svc("d", &format!("s{n}"), "NodePort", &[n], "10.43.0.1"))
            .collect();
        let mut new = svc("d", "new", "NodePort", &[0, 0], "10.43.0.2");
        let t = taken_by(&stored, &new);
        let r = Reserved::default();
        assert!(r.node_ports(&mut new, &t).is_empty());
        let got: BTreeSet<i64> = new["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["nodePort"].as_i64().unwrap())
            .collect();
        assert_eq!(got, BTreeSet::from([31_000, 32_000]));
        // The range is now full (the two are reserved).
        let mut more = svc("d", "more", "LoadBalancer", &[0], "10.43.0.3");
        let c = r.node_ports(&mut more, &t);
        assert!(c[0].message.contains("is full"), "{c:?}");
        let mut dup = svc("d", "dup", "NodePort", &[30_500], "10.43.0.4");
        let c = r.node_ports(&mut dup, &t);
        assert_eq!(c[0].field, "spec.ports[0].nodePort");
        assert!(c[0].message.contains("already allocated"));
    }

    #[test]
    fn a_service_does_not_collide_with_itself() {
        let stored = [svc("d", "a", "NodePort", &[30_100], "10.43.0.1")];
        let mut again = svc("d", "a", "NodePort", &[30_100, 0], "10.43.0.1");
        let t = taken_by(&stored, &again);
        assert!(t.ports.is_empty() && t.ips.is_empty());
        assert!(Reserved::default().node_ports(&mut again, &t).is_empty());
        assert_ne!(again["spec"]["ports"][1]["nodePort"], json!(30_100));
        // Another namespace's Service of the same name is another Service.
        let other = svc("e", "a", "NodePort", &[0], "10.43.0.1");
        let c = Reserved::check_cluster_ip(&other, &taken_by(&stored, &other));
        assert!(
            c[0].message.ends_with("provided IP is already allocated"),
            "{c:?}"
        );
    }

    #[test]
    fn cluster_ips_skip_stored_and_reserved_addresses() {
        let stored = [svc("d", "a", "ClusterIP", &[], "10.43.0.11")];
        let t = taken_by(&stored, &json!({}));
        let r = Reserved::default();
        let seq = ["10.43.0.11", "10.43.0.12", "10.43.0.12", "10.43.0.13"];
        let mut i = 0;
        let mut next = || {
            i += 1;
            seq[i - 1].to_string()
        };
        assert_eq!(r.cluster_ip(&t, &mut next), "10.43.0.12");
        assert_eq!(r.cluster_ip(&t, &mut next), "10.43.0.13");
    }

    #[test]
    fn updates_keep_node_ports_by_port_and_protocol() {
        let old = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 53, "protocol": "UDP", "nodePort": 30053},
            {"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80}, {"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        keep_node_ports(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());
        assert_eq!(new["spec"]["ports"][2]["nodePort"], 30053);
    }
}
