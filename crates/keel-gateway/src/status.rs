//! Gateway API status, as the spec asks of an implementation: each
//! `HTTPRoute`'s `status.parents` entry for every parent Gateway keel
//! serves (`Accepted`, `ResolvedRefs`, with the route's
//! `observedGeneration`; other controllers' entries are kept), and each
//! served Gateway's `status.listeners` (`supportedKinds`,
//! `attachedRoutes`, `Accepted`/`Programmed`/`ResolvedRefs`). Pure: the
//! watcher writes what these return when it differs from what is there
//! (every node computes the same, so the writes converge).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::build::{GATEWAY_CONTROLLER, Objects};
use crate::watch::GATEWAY_GROUP;

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn condition(t: &str, ok: bool, reason: &str, message: &str, generation: &Value) -> Value {
    json!({"type": t, "status": if ok { "True" } else { "False" }, "reason": reason,
        "message": message, "observedGeneration": generation})
}

/// Gateways of a class keel serves, by `(namespace, name)`.
fn served(o: &Objects) -> HashMap<(String, String), Arc<Value>> {
    let classes: Vec<&str> = o
        .gateway_classes
        .iter()
        .filter(|c| s(c, "/spec/controllerName") == GATEWAY_CONTROLLER)
        .map(|c| s(c, "/metadata/name"))
        .collect();
    o.gateways
        .iter()
        .filter(|g| classes.contains(&s(g, "/spec/gatewayClassName")))
        .map(|g| {
            (
                (
                    s(g, "/metadata/namespace").to_string(),
                    s(g, "/metadata/name").to_string(),
                ),
                g.clone(),
            )
        })
        .collect()
}

/// The listeners of `g` a parentRef with `section` attaches to.
fn listeners<'a>(g: &'a Value, section: &str) -> Vec<&'a str> {
    g["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| matches!(s(l, "/protocol"), "HTTP" | "HTTPS"))
        .map(|l| s(l, "/name"))
        .filter(|n| section.is_empty() || *n == section)
        .collect()
}

/// Why a route's backends do not all resolve, if they do not.
fn unresolved(o: &Objects, r: &Value) -> Option<(&'static str, String)> {
    let ns = s(r, "/metadata/namespace");
    for rule in r["spec"]["rules"].as_array().into_iter().flatten() {
        for b in rule["backendRefs"].as_array().into_iter().flatten() {
            let name = s(b, "/name");
            if !matches!(s(b, "/group"), "" | "core") || !matches!(s(b, "/kind"), "" | "Service") {
                return Some((
                    "InvalidKind",
                    format!("backendRef {name}: only Services are supported"),
                ));
            }
            let bns = b["namespace"].as_str().unwrap_or(ns);
            let found = o.services.iter().any(|svc| {
                svc.metadata.namespace.as_deref() == Some(bns)
                    && svc.metadata.name.as_deref() == Some(name)
            });
            if !found {
                return Some((
                    "BackendNotFound",
                    format!("backendRef Service {bns}/{name} not found"),
                ));
            }
        }
    }
    None
}

/// Each route's `status.parents` entries of keel's controller, by
/// `(namespace, name)` of the route (routes with no parent keel serves
/// are left out).
pub fn route_parents(o: &Objects) -> HashMap<(String, String), Vec<Value>> {
    let gateways = served(o);
    let mut out = HashMap::new();
    for r in &o.routes {
        let ns = s(r, "/metadata/namespace");
        let generation = r
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let resolved = unresolved(o, r);
        let mut parents = Vec::new();
        for p in r["spec"]["parentRefs"].as_array().into_iter().flatten() {
            if !matches!(s(p, "/kind"), "" | "Gateway") {
                continue;
            }
            let pns = p["namespace"].as_str().unwrap_or(ns);
            let Some(g) = gateways.get(&(pns.to_string(), s(p, "/name").to_string())) else {
                continue;
            };
            let section = s(p, "/sectionName");
            let accepted = if listeners(g, section).is_empty() {
                condition(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    &format!("the Gateway has no HTTP or HTTPS listener named {section:?}"),
                    &generation,
                )
            } else {
                condition("Accepted", true, "Accepted", "", &generation)
            };
            let refs = match &resolved {
                Some((reason, msg)) => condition("ResolvedRefs", false, reason, msg, &generation),
                None => condition("ResolvedRefs", true, "ResolvedRefs", "", &generation),
            };
            parents.push(json!({"parentRef": p, "controllerName": GATEWAY_CONTROLLER,
                "conditions": [accepted, refs]}));
        }
        if !parents.is_empty() {
            out.insert(
                (ns.to_string(), s(r, "/metadata/name").to_string()),
                parents,
            );
        }
    }
    out
}

/// `status.listeners` of each served Gateway, by `(namespace, name)`.
pub fn gateway_listeners(o: &Objects) -> HashMap<(String, String), Vec<Value>> {
    let gateways = served(o);
    let mut attached: HashMap<(String, String, String), i64> = HashMap::new();
    for r in &o.routes {
        let ns = s(r, "/metadata/namespace");
        for p in r["spec"]["parentRefs"].as_array().into_iter().flatten() {
            if !matches!(s(p, "/kind"), "" | "Gateway") {
                continue;
            }
            let pns = p["namespace"].as_str().unwrap_or(ns).to_string();
            let name = s(p, "/name").to_string();
            if let Some(g) = gateways.get(&(pns.clone(), name.clone())) {
                for l in listeners(g, s(p, "/sectionName")) {
                    *attached
                        .entry((pns.clone(), name.clone(), l.to_string()))
                        .or_default() += 1;
                }
            }
        }
    }
    gateways
        .iter()
        .map(|((ns, name), g)| {
            let generation = g
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let ls = g["spec"]["listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    let ln = s(l, "/name");
                    let http = matches!(s(l, "/protocol"), "HTTP" | "HTTPS");
                    let (kinds, conds) = if http {
                        (
                            json!([{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}]),
                            vec![
                                condition("Accepted", true, "Accepted", "", &generation),
                                condition("Programmed", true, "Programmed", "", &generation),
                                condition("ResolvedRefs", true, "ResolvedRefs", "", &generation),
                            ],
                        )
                    } else {
                        let msg = format!("protocol {} is not served", s(l, "/protocol"));
                        (
                            json!([]),
                            vec![
                                condition(
                                    "Accepted",
                                    false,
                                    "UnsupportedProtocol",
                                    &msg,
                                    &generation,
                                ),
                                condition("Programmed", false, "Invalid", &msg, &generation),
                                condition("ResolvedRefs", true, "ResolvedRefs", "", &generation),
                            ],
                        )
                    };
                    let n = attached
                        .get(&(ns.clone(), name.clone(), ln.to_string()))
                        .copied()
                        .unwrap_or(0);
                    json!({"name": ln, "supportedKinds": kinds, "attachedRoutes": n,
                        "conditions": conds})
                })
                .collect();
            ((ns.clone(), name.clone()), ls)
        })
        .collect()
}

/// Conditions of `want` with `lastTransitionTime`: kept from `current`'s
/// condition of the same type and status, else `now`.
pub fn stamp(want: &mut Value, current: &Value, now: &str) {
    let Some(conds) = want["conditions"].as_array_mut() else {
        return;
    };
    for c in conds {
        let old = current["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
        c["lastTransitionTime"] = old
            .and_then(|o| o.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
    }
}

/// `entries` (keel's) after the entries of other controllers in
/// `current`, stamped; `None` when that is what `current` holds.
pub fn merged_parents(current: &Value, entries: &[Value], now: &str) -> Option<Vec<Value>> {
    let old: Vec<&Value> = current.as_array().into_iter().flatten().collect();
    let mut out: Vec<Value> = old
        .iter()
        .filter(|p| p["controllerName"] != GATEWAY_CONTROLLER)
        .map(|p| (*p).clone())
        .collect();
    for e in entries {
        let mut e = e.clone();
        let prev = old
            .iter()
            .find(|p| p["controllerName"] == GATEWAY_CONTROLLER && p["parentRef"] == e["parentRef"])
            .map_or(&Value::Null, |p| *p);
        stamp(&mut e, prev, now);
        out.push(e);
    }
    (out.iter().collect::<Vec<_>>() != old).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    fn objects(routes: Vec<Value>) -> Objects {
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}}))
                .unwrap();
        Objects {
            services: vec![Arc::new(svc)],
            gateway_classes: vec![Arc::new(json!({"metadata": {"name": "keel"},
                "spec": {"controllerName": GATEWAY_CONTROLLER}}))],
            gateways: vec![
                Arc::new(
                    json!({"metadata": {"name": "gw", "namespace": "default", "generation": 2},
                    "spec": {"gatewayClassName": "keel", "listeners": [
                        {"name": "http", "protocol": "HTTP", "port": 80},
                        {"name": "tcp", "protocol": "TCP", "port": 9000}]}}),
                ),
                Arc::new(
                    json!({"metadata": {"name": "theirs", "namespace": "default"},
                    "spec": {"gatewayClassName": "other", "listeners": []}}),
                ),
            ],
            routes: routes.into_iter().map(Arc::new).collect(),
            ..Objects::default()
        }
    }

    fn route(name: &str, parent: Value, backend: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "generation": 3},
            "spec": {"parentRefs": [parent],
                "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}})
    }

    #[test]
    fn routes_get_accepted_and_resolved_refs_per_parent() {
        let o = objects(vec![
            route("ok", json!({"name": "gw"}), "web"),
            route("missing", json!({"name": "gw"}), "nope"),
            route(
                "section",
                json!({"name": "gw", "sectionName": "tcp"}),
                "web",
            ),
            route("other", json!({"name": "theirs"}), "web"),
        ]);
        let p = route_parents(&o);
        let conds = |n: &str| p[&("default".to_string(), n.to_string())][0]["conditions"].clone();
        let ok = conds("ok");
        assert_eq!(ok[0]["type"], "Accepted");
        assert_eq!(ok[0]["status"], "True");
        assert_eq!(ok[0]["observedGeneration"], 3);
        assert_eq!(ok[1]["reason"], "ResolvedRefs");
        assert_eq!(conds("missing")[1]["reason"], "BackendNotFound");
        assert_eq!(conds("missing")[1]["status"], "False");
        assert_eq!(conds("section")[0]["reason"], "NoMatchingParent");
        assert!(!p.contains_key(&("default".to_string(), "other".to_string())));
        let gw = &gateway_listeners(&o)[&("default".to_string(), "gw".to_string())];
        assert_eq!(gw[0]["name"], "http");
        assert_eq!(gw[0]["attachedRoutes"], 2, "ok and missing: {gw:?}");
        assert_eq!(gw[0]["supportedKinds"][0]["kind"], "HTTPRoute");
        assert_eq!(gw[1]["conditions"][0]["reason"], "UnsupportedProtocol");
        assert_eq!(gw[1]["attachedRoutes"], 0);
    }

    #[test]
    fn parents_of_other_controllers_stay_and_times_are_kept() {
        let o = objects(vec![route("ok", json!({"name": "gw"}), "web")]);
        let mine = &route_parents(&o)[&("default".to_string(), "ok".to_string())];
        let theirs = json!({"parentRef": {"name": "x"}, "controllerName": "example.com/gw",
            "conditions": []});
        let first = merged_parents(&json!([theirs]), mine, "T1").unwrap();
        assert_eq!(first[0], theirs);
        assert_eq!(first[1]["conditions"][0]["lastTransitionTime"], "T1");
        // Unchanged: nothing to write, and a later change keeps the time
        // of a condition that did not flip.
        assert_eq!(merged_parents(&json!(first), mine, "T2"), None);
        let mut changed = mine.clone();
        changed[0]["conditions"][1]["status"] = json!("False");
        let second = merged_parents(&json!(first), &changed, "T3").unwrap();
        assert_eq!(second[1]["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(second[1]["conditions"][1]["lastTransitionTime"], "T3");
    }
}
