//! `ResourceQuota` usage, kept as kube-apiserver keeps it: `status.hard`
//! mirrors `spec.hard`, and `status.used` is charged when an object is
//! admitted, by a compare-and-swap on the quota (a conflict re-reads it and
//! checks again), so concurrent creates can never both take the last unit.
//! A create that fails after the charge gives it back; deletes and quota
//! writes recount the namespace from the store (the replenishment
//! kube-controller-manager's quota controller does).
//! Tracked: `pods`, `count/<resource>[.<group>]` and the core object
//! counts (`services`, `configmaps`, `secrets`, ...), pod compute
//! (`requests.cpu`/`cpu`, `requests.memory`/`memory`, `limits.*`),
//! `requests.storage` of claims and `services.nodeports`/`loadbalancers`;
//! scoped quotas (`scopes`, `scopeSelector`) track only the pods they match.

use serde_json::{Map, Value, json};

use crate::State;
use crate::handlers::{decode, encode};
use crate::http::Fail;
use crate::resources::{self, Resource};

/// How many times a charge re-reads a quota another write just changed.
const RETRIES: usize = 64;

/// The quota names an object of `r` counts against, besides compute.
pub(crate) fn count_names(r: &Resource) -> Vec<String> {
    let mut names = vec![if r.group.is_empty() {
        format!("count/{}", r.plural)
    } else {
        format!("count/{}.{}", r.plural, r.group)
    }];
    if r.group.is_empty()
        && matches!(
            r.plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "persistentvolumeclaims"
                | "replicationcontrollers"
                | "resourcequotas"
        )
    {
        names.push(r.plural.to_string());
    }
    names
}

/// What one object of `r` uses, by quota name.
pub(crate) fn usage(r: &Resource, obj: &Value) -> Vec<(String, f64)> {
    let is_pod = (r.group, r.kind) == ("", "Pod");
    if is_pod
        && matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
    {
        return Vec::new();
    }
    let mut out: Vec<(String, f64)> = count_names(r).into_iter().map(|n| (n, 1.0)).collect();
    let mut add = |k: String, v: f64| match out.iter_mut().find(|(n, _)| *n == k) {
        Some(e) => e.1 += v,
        None => out.push((k, v)),
    };
    match (r.group, r.kind) {
        ("", "Pod") => {
            for c in obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (kind, prefixes) in [
                    ("requests", &["requests.", ""][..]),
                    ("limits", &["limits."][..]),
                ] {
                    for (res, q) in c
                        .pointer(&format!("/resources/{kind}"))
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        let Some(v) = q
                            .as_str()
                            .and_then(|s| crate::validate::parse_quantity(s).ok())
                        else {
                            continue;
                        };
                        for p in prefixes {
                            add(format!("{p}{res}"), v);
                        }
                    }
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(v) = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(|s| crate::validate::parse_quantity(s).ok())
            {
                add("requests.storage".into(), v);
            }
        }
        ("", "Service") => match obj.pointer("/spec/type").and_then(Value::as_str) {
            Some("NodePort") => add("services.nodeports".into(), 1.0),
            Some("LoadBalancer") => {
                add("services.loadbalancers".into(), 1.0);
                add("services.nodeports".into(), 1.0);
            }
            _ => {}
        },
        _ => {}
    }
    out
}

/// A quantity as Kubernetes prints it: counts and whole cores plain,
/// fractions in milli, byte sizes with the largest binary suffix that
/// divides them.
pub(crate) fn show(name: &str, v: f64) -> String {
    if (v - v.round()).abs() >= 1e-9 {
        return format!("{}m", (v * 1000.0).round() as i64);
    }
    let n = v.round() as i64;
    if name.ends_with("memory") || name.ends_with("storage") {
        for (suffix, unit) in [
            ("Ti", 1i64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if n != 0 && n % unit == 0 {
                return format!("{}{suffix}", n / unit);
            }
        }
    }
    n.to_string()
}

/// Whether quota `q` tracks `obj`: a quota with `scopes` or a
/// `scopeSelector` tracks only the pods they match (`Terminating`,
/// `NotTerminating`, `BestEffort`, `NotBestEffort`, `PriorityClass`), as
/// upstream's pod evaluator decides.
pub(crate) fn in_scope(q: &Value, r: &Resource, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<String>)> = q
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in q
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        scopes.push((f("scopeName"), f("operator"), values));
    }
    if scopes.is_empty() {
        return true;
    }
    if (r.group, r.kind) != ("", "Pod") {
        return false;
    }
    let terminating = obj
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    let best_effort = ["containers", "initContainers"].iter().all(|list| {
        obj.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| {
                ["requests", "limits"].iter().all(|k| {
                    c.pointer(&format!("/resources/{k}"))
                        .and_then(Value::as_object)
                        .is_none_or(|m| !m.contains_key("cpu") && !m.contains_key("memory"))
                })
            })
    });
    let class = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    scopes.iter().all(|(name, op, values)| {
        let holds = match name.as_str() {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            "PriorityClass" => {
                return match op.as_str() {
                    "In" => values.iter().any(|v| v == class),
                    "NotIn" => !values.iter().any(|v| v == class),
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    _ => false,
                };
            }
            _ => false,
        };
        match op.as_str() {
            "Exists" | "In" => holds,
            "DoesNotExist" | "NotIn" => !holds,
            _ => false,
        }
    })
}

fn quotas_resource() -> &'static Resource {
    resources::find("", "v1", "resourcequotas").expect("resourcequotas are served")
}

fn hard_of(q: &Value) -> Map<String, Value> {
    q.pointer("/spec/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn quantity(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => crate::validate::parse_quantity(s).ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One resource a quota would exceed: name, requested, used, hard.
type Exceeded = (String, f64, f64, String);

/// A charge made on the namespace's quotas, to give back if the create
/// fails after all.
pub(crate) struct Charge {
    ns: String,
    amounts: Vec<(String, f64)>,
}

/// Charges the quotas of `ns` for `obj`, refusing (403, upstream's message)
/// when one would be exceeded. `dry`: check only.
pub(crate) async fn charge(
    state: &State,
    r: &Resource,
    name: &str,
    obj: &Value,
    ns: &str,
    dry: bool,
) -> Result<Option<Charge>, Fail> {
    let amounts = usage(r, obj);
    let qr = quotas_resource();
    let page = state
        .store
        .list(
            &qr.list_prefix(Some(ns)),
            keel_store::ListOptions::default(),
        )
        .await
        .map_err(Fail::internal)?;
    for kv in page.items {
        let mut kv = kv;
        for attempt in 0.. {
            let q = decode(state, &kv, kv.mod_revision)?;
            if !in_scope(&q, r, obj) {
                break;
            }
            if r.group.is_empty() && r.kind == "Pod" {
                crate::admission::pod_quota_fields(r, name, obj, &q)?;
            }
            let hard = hard_of(&q);
            let mine: Vec<&(String, f64)> = amounts
                .iter()
                .filter(|(k, _)| hard.contains_key(k))
                .collect();
            if mine.is_empty() {
                break;
            }
            let mut used = match q.pointer("/status/used").and_then(Value::as_object) {
                Some(u) if hard.keys().all(|k| u.contains_key(k)) => u.clone(),
                // Never counted yet: count now.
                _ => count(state, ns, &q, &hard).await?,
            };
            let mut exceeded: Vec<Exceeded> = Vec::new();
            for (k, want) in &mine {
                let u = used.get(k).and_then(quantity).unwrap_or(0.0);
                let h = hard.get(k).and_then(quantity).unwrap_or(f64::INFINITY);
                if u + want > h + 1e-9 {
                    exceeded.push((k.clone(), *want, u, text(&hard[k])));
                }
                used.insert(k.clone(), json!(show(k, u + want)));
            }
            if !exceeded.is_empty() {
                exceeded.sort_by(|a, b| a.0.cmp(&b.0));
                let part = |f: &dyn Fn(&Exceeded) -> String| {
                    exceeded.iter().map(f).collect::<Vec<_>>().join(",")
                };
                let qname = q
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(crate::admission::forbidden(
                    r,
                    name,
                    &format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        part(&|e| format!("{}={}", e.0, show(&e.0, e.1))),
                        part(&|e| format!("{}={}", e.0, show(&e.0, e.2))),
                        part(&|e| format!("{}={}", e.0, e.3)),
                    ),
                ));
            }
            if dry {
                break;
            }
            match write_status(state, &kv, q, &hard, used).await {
                Ok(()) => break,
                Err(Some(fresh)) if attempt < RETRIES => kv = fresh,
                Err(_) => {
                    return Err(Fail::new(
                        409,
                        "Conflict",
                        "Operation cannot be fulfilled on resourcequotas: the quota was changed by too many writes at once, please retry",
                    ));
                }
            }
        }
    }
    Ok((!dry).then(|| Charge {
        ns: ns.to_string(),
        amounts,
    }))
}

/// Stores a quota's status if the quota is still at `kv`'s revision;
/// `Err(Some(newer))` when another write came first.
async fn write_status(
    state: &State,
    kv: &keel_store::KeyValue,
    mut q: Value,
    hard: &Map<String, Value>,
    used: Map<String, Value>,
) -> Result<(), Option<keel_store::KeyValue>> {
    q["status"] = json!({"hard": hard, "used": used});
    let bytes = encode(state, quotas_resource(), &kv.key, &q).map_err(|_| None)?;
    match state.store.update(&kv.key, bytes, kv.mod_revision, 0).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Err(state.store.get(&kv.key).await.ok().flatten()),
        Err(_) => Err(None),
    }
}

/// Gives a charge back (the create it was for failed).
pub(crate) async fn refund(state: &State, c: Charge) {
    rewrite(state, &c.ns, Some(&c.amounts)).await;
}

/// Rewrites the status of every quota of `ns`, with compare-and-swap
/// (conflicts re-read the quota): `refund` subtracts those amounts from
/// `status.used`; `None` recounts usage from the store.
async fn rewrite(state: &State, ns: &str, refund: Option<&[(String, f64)]>) {
    let qr = quotas_resource();
    let Ok(page) = state
        .store
        .list(
            &qr.list_prefix(Some(ns)),
            keel_store::ListOptions::default(),
        )
        .await
    else {
        return;
    };
    for kv in page.items {
        let mut kv = kv;
        for _ in 0..RETRIES {
            let Ok(q) = decode(state, &kv, kv.mod_revision) else {
                break;
            };
            let hard = hard_of(&q);
            let used = match refund {
                Some(amounts) => {
                    let Some(mut used) = q
                        .pointer("/status/used")
                        .and_then(Value::as_object)
                        .cloned()
                    else {
                        break;
                    };
                    for (k, v) in amounts {
                        if let Some(u) = used.get(k).and_then(quantity) {
                            used.insert(k.clone(), json!(show(k, (u - v).max(0.0))));
                        }
                    }
                    used
                }
                None => match count(state, ns, &q, &hard).await {
                    Ok(used) => used,
                    Err(_) => break,
                },
            };
            if q.pointer("/status/hard") == Some(&json!(hard))
                && q.pointer("/status/used") == Some(&json!(used))
            {
                break;
            }
            match write_status(state, &kv, q, &hard, used).await {
                Ok(()) | Err(None) => break,
                Err(Some(fresh)) => kv = fresh,
            }
        }
    }
}

/// Usage of `hard`'s resources in `ns`, counted from the store.
async fn count(
    state: &State,
    ns: &str,
    quota: &Value,
    hard: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let mut used: Vec<(String, f64)> = hard.keys().map(|k| (k.clone(), 0.0)).collect();
    for r in resources::all() {
        if !r.namespaced || !r.verbs.stored() || r.version != preferred_version(r) {
            continue;
        }
        let names = count_names(r);
        let relevant = names.iter().any(|n| hard.contains_key(n))
            || matches!(
                (r.group, r.kind),
                ("", "Pod" | "PersistentVolumeClaim" | "Service")
            );
        if !relevant {
            continue;
        }
        let page = state
            .store
            .list(&r.list_prefix(Some(ns)), keel_store::ListOptions::default())
            .await
            .map_err(Fail::internal)?;
        for kv in &page.items {
            let Ok(o) = decode(state, kv, kv.mod_revision) else {
                continue;
            };
            if !in_scope(quota, r, &o) {
                continue;
            }
            for (k, v) in usage(r, &o) {
                if let Some(e) = used.iter_mut().find(|(n, _)| *n == k) {
                    e.1 += v;
                }
            }
        }
    }
    Ok(used
        .into_iter()
        .map(|(k, v)| {
            let s = show(&k, v);
            (k, json!(s))
        })
        .collect())
}

/// Objects of one group and plural share storage across versions: count
/// them once, under the first version served.
fn preferred_version(r: &Resource) -> &'static str {
    resources::all()
        .into_iter()
        .find(|x| x.group == r.group && x.plural == r.plural)
        .map_or(r.version, |x| x.version)
}

/// Recounts every quota of `ns` from the store (after deletes and quota
/// writes).
pub(crate) async fn recount(state: &State, ns: &str) {
    rewrite(state, ns, None).await;
}

/// Whether a write to `r` in a namespace can change quota usage.
pub(crate) fn affects(r: &Resource) -> bool {
    r.namespaced && r.verbs.stored()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static Resource {
        resources::find("", "v1", "pods").unwrap()
    }

    #[test]
    fn usage_and_quantities() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
        ]}});
        let u = usage(pods(), &pod);
        let get = |k: &str| u.iter().find(|(n, _)| n == k).map(|e| e.1);
        assert_eq!(get("pods"), Some(1.0));
        assert_eq!(get("count/pods"), Some(1.0));
        assert_eq!(show("requests.cpu", get("requests.cpu").unwrap()), "500m");
        assert_eq!(show("cpu", 2.0), "2");
        assert_eq!(
            show("requests.memory", get("requests.memory").unwrap()),
            "128Mi"
        );
        assert_eq!(
            show("limits.memory", get("limits.memory").unwrap()),
            "128Mi"
        );
        assert_eq!(show("requests.memory", 1000.0), "1000");
        // Finished pods use nothing.
        let done = json!({"status": {"phase": "Succeeded"}});
        assert!(usage(pods(), &done).is_empty());
    }

    #[test]
    fn scopes_select_pods() {
        let cm = resources::find("", "v1", "configmaps").unwrap();
        let best = json!({"spec": {"containers": [{"name": "c"}]}});
        let burst = json!({"spec": {"activeDeadlineSeconds": 5, "priorityClassName": "high",
            "containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        let q = |spec: Value| json!({"spec": spec});
        let plain = q(json!({"hard": {"pods": "1"}}));
        assert!(in_scope(&plain, cm, &json!({})) && in_scope(&plain, pods(), &best));
        let be = q(json!({"scopes": ["BestEffort"]}));
        assert!(in_scope(&be, pods(), &best) && !in_scope(&be, pods(), &burst));
        assert!(!in_scope(&be, cm, &json!({})));
        let term = q(json!({"scopes": ["Terminating", "NotBestEffort"]}));
        assert!(in_scope(&term, pods(), &burst) && !in_scope(&term, pods(), &best));
        let prio = q(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}));
        assert!(in_scope(&prio, pods(), &burst) && !in_scope(&prio, pods(), &best));
    }
}
