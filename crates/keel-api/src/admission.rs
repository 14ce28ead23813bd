//! Admission plugins that run on create, after defaulting and before
//! validation, as kube-apiserver's do: `DefaultTolerationSeconds`,
//! `Priority` (`PriorityClass` → `spec.priority`, the global default class, the
//! built-in `system-*-critical` classes), `DefaultStorageClass`,
//! `LimitRanger` (container defaults and maxima from a namespace's
//! `LimitRange`s) and `PodSecurity` (the `enforce` level of a namespace's
//! `pod-security.kubernetes.io` labels: baseline and restricted checks with
//! upstream's messages), `ResourceQuota` (object counts and pod compute
//! requests/limits against the namespace's quotas, charged on the quotas'
//! status with compare-and-swap in [`crate::quota`]). `NamespaceLifecycle` is part of create itself.

use serde_json::{Value, json};

use crate::State;
use crate::http::Fail;
use crate::resources::{self, Resource};

pub(crate) fn forbidden(r: &Resource, name: &str, why: &str) -> Fail {
    let what = crate::http::qualified(r);
    Fail::new(
        403,
        "Forbidden",
        format!("{what} \"{name}\" is forbidden: {why}"),
    )
    .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
}

async fn list(state: &State, group: &str, plural: &str, ns: Option<&str>) -> Vec<Value> {
    let Some(r) = resources::find(group, "v1", plural) else {
        return Vec::new();
    };
    let Ok(page) = state
        .store
        .list(&r.list_prefix(ns), keel_store::ListOptions::default())
        .await
    else {
        return Vec::new();
    };
    page.items
        .iter()
        .filter_map(|kv| crate::handlers::decode(state, kv, kv.mod_revision).ok())
        .collect()
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Runs the mutating plugins for an object of `r` about to be created in namespace
/// `ns`.
pub(crate) async fn admit(
    state: &State,
    r: &Resource,
    obj: &mut Value,
    ns: Option<&str>,
) -> Result<(), Fail> {
    let name = name_of(obj).to_string();
    match (r.group, r.kind) {
        ("", "Pod") => {
            service_account(state, r, &name, obj, ns.unwrap_or("default")).await?;
            default_toleration_seconds(
                obj,
                state
                    .default_toleration_seconds
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            priority(state, r, &name, obj).await?;
            limit_ranger(state, r, &name, obj, ns).await?;
        }
        ("", "PersistentVolumeClaim") => default_storage_class(state, obj).await,
        _ => {}
    }
    Ok(())
}

// ---------- ResourceQuota ----------

/// Quotas on cpu or memory require every container of a pod to state
/// them (checked by [`crate::quota::charge`] on the quotas it reads anyway).
pub(crate) fn pod_quota_fields(
    r: &Resource,
    name: &str,
    obj: &Value,
    q: &Value,
) -> Result<(), Fail> {
    let mut missing: Vec<String> = Vec::new();
    for res in [
        "cpu",
        "limits.cpu",
        "limits.memory",
        "memory",
        "requests.cpu",
        "requests.memory",
    ] {
        if q.pointer(&format!("/spec/hard/{res}")).is_none() {
            continue;
        }
        let (kind, what) = res.split_once('.').unwrap_or(("requests", res));
        let mut names: Vec<&str> = containers(obj)
            .into_iter()
            .filter(|c| c.pointer(&format!("/resources/{kind}/{what}")).is_none())
            .map(cname)
            .collect();
        names.sort_unstable();
        if !names.is_empty() {
            missing.push(format!("{res} for: {}", names.join(",")));
        }
    }
    if !missing.is_empty() {
        return Err(forbidden(
            r,
            name,
            &format!(
                "failed quota: {}: must specify {}",
                name_of(q),
                missing.join("; ")
            ),
        ));
    }
    Ok(())
}

/// The validating plugins, run after the mutating webhooks so they judge
/// what will be stored: `PodSecurity`.
pub(crate) fn validate(
    r: &Resource,
    name: &str,
    obj: &Value,
    ns_obj: Option<&Value>,
) -> Result<(), Fail> {
    match ns_obj {
        Some(nso) => pod_security(r, name, obj, nso),
        None => Ok(()),
    }
}

const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `ServiceAccount`: a pod runs as `default` unless it names an account,
/// which must exist; unless automounting is off (pod or account), its
/// containers mount a projected token, the cluster CA and the namespace.
async fn service_account(
    state: &State,
    r: &Resource,
    name: &str,
    pod: &mut Value,
    ns: &str,
) -> Result<(), Fail> {
    let spec = &mut pod["spec"];
    let sa = [spec.get("serviceAccountName"), spec.get("serviceAccount")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa);
    spec["serviceAccount"] = json!(sa);
    let sar = resources::find("", "v1", "serviceaccounts").expect("served");
    let account = match state.store.get(&sar.key(Some(ns), &sa)).await {
        Ok(Some(kv)) => crate::handlers::decode(state, &kv, kv.mod_revision)?,
        Ok(None) => {
            return Err(forbidden(
                r,
                name,
                &format!(
                    "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
                ),
            ));
        }
        Err(e) => return Err(Fail::new(500, "InternalError", e.to_string())),
    };
    let off = |v: Option<&Value>| v == Some(&json!(false));
    let automount = match spec.get("automountServiceAccountToken") {
        Some(v) => !off(Some(v)),
        None => !off(account.get("automountServiceAccountToken")),
    };
    let mounted = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| {
                m.iter()
                    .any(|m| m.get("mountPath") == Some(&json!(SA_MOUNT)))
            })
    };
    if !automount {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", crate::handlers::random_suffix());
    let mut added = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if mounted(c) {
                continue;
            }
            let mount = json!({"name": volume, "readOnly": true, "mountPath": SA_MOUNT});
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(m) => m.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
            added = true;
        }
    }
    if added {
        let v = json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}});
        match spec.get_mut("volumes").and_then(Value::as_array_mut) {
            Some(vs) => vs.push(v),
            None => spec["volumes"] = json!([v]),
        }
    }
    Ok(())
}

/// Pods tolerate `not-ready` and `unreachable` nodes for `seconds` (300 in
/// Kubernetes, a flag of `keel server`) unless they say otherwise.
fn default_toleration_seconds(pod: &mut Value, seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tols = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(tols) = tols.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let has = tols.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(key)
                && t.get("effect")
                    .and_then(Value::as_str)
                    .is_none_or(|e| e == "NoExecute")
        });
        if !has {
            tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// The built-in `PriorityClass`es Kubernetes creates.
pub(crate) fn system_priority_classes() -> Vec<Value> {
    [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)]
        .iter()
        .map(|(n, v)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": n},
                "value": v,
                "description": "Used for system critical pods that must not be moved from their current node.",
                "preemptionPolicy": "PreemptLowerPriority",
            })
        })
        .collect()
}

async fn priority(state: &State, r: &Resource, name: &str, pod: &mut Value) -> Result<(), Fail> {
    let classes = list(state, "scheduling.k8s.io", "priorityclasses", None).await;
    let wanted = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let class = match &wanted {
        Some(w) => Some(classes.iter().find(|c| name_of(c) == w).ok_or_else(|| {
            forbidden(
                r,
                name,
                &format!("no PriorityClass with name {w} was found"),
            )
        })?),
        None => classes
            .iter()
            .find(|c| c.get("globalDefault") == Some(&json!(true))),
    };
    let value = class
        .and_then(|c| c.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(forbidden(
            r,
            name,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    let spec = &mut pod["spec"];
    spec["priority"] = json!(value);
    if let Some(c) = class {
        spec["priorityClassName"] = json!(name_of(c));
        spec["preemptionPolicy"] = c
            .get("preemptionPolicy")
            .cloned()
            .unwrap_or(json!("PreemptLowerPriority"));
    }
    Ok(())
}

async fn default_storage_class(state: &State, pvc: &mut Value) {
    if pvc.pointer("/spec/storageClassName").is_some() {
        return;
    }
    let classes = list(state, "storage.k8s.io", "storageclasses", None).await;
    let default = classes
        .iter()
        .filter(|c| {
            c.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true")
        })
        // The newest default wins, as in Kubernetes.
        .max_by_key(|c| {
            c.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
    if let Some(c) = default {
        pvc["spec"]["storageClassName"] = json!(name_of(c));
    }
}

/// Container defaults from `LimitRange`s of type Container, and their maxima.
async fn limit_ranger(
    state: &State,
    r: &Resource,
    name: &str,
    pod: &mut Value,
    ns: Option<&str>,
) -> Result<(), Fail> {
    let ranges = list(state, "", "limitranges", ns).await;
    for lr in &ranges {
        for item in lr
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("Container"))
        {
            for list_name in ["containers", "initContainers"] {
                let Some(cs) = pod
                    .pointer_mut(&format!("/spec/{list_name}"))
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for c in cs.iter_mut() {
                    for (from, to) in [("default", "limits"), ("defaultRequest", "requests")] {
                        if let Some(d) = item.get(from).and_then(Value::as_object) {
                            for (res, q) in d {
                                if c.pointer(&format!("/resources/{to}/{res}")).is_none() {
                                    c["resources"][to][res] = q.clone();
                                }
                            }
                        }
                    }
                    let quantity = |v: &Value| match v {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    for (res, q) in item
                        .get("max")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        let Some(lim) =
                            c.pointer(&format!("/resources/limits/{res}")).map(quantity)
                        else {
                            continue;
                        };
                        let max = quantity(q);
                        if let (Ok(l), Ok(m)) = (
                            crate::validate::parse_quantity(&lim),
                            crate::validate::parse_quantity(&max),
                        ) && l > m
                        {
                            return Err(forbidden(
                                r,
                                name,
                                &format!(
                                    "maximum {res} usage per Container is {max}, but limit is {lim}"
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------- PodSecurity ----------

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn cname(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// `container "a"` or `containers "a", "b"`.
fn who(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("container {}", quoted[0])
    } else {
        format!("containers {}", quoted.join(", "))
    }
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The reasons a pod fails `level` (`baseline` or `restricted`), in
/// upstream's check order, worded as pod-security-admission words them.
pub fn pod_security_violations(pod: &Value, level: &str) -> Vec<String> {
    let restricted = level == "restricted";
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let cs = containers(pod);
    let sc = |c: &Value, p: &str| c.pointer(&format!("/securityContext/{p}")).cloned();
    let pod_sc = |p: &str| spec.pointer(&format!("/securityContext/{p}")).cloned();
    let mut out = Vec::new();
    if restricted {
        let bad: Vec<&str> = cs
            .iter()
            .filter(|c| sc(c, "allowPrivilegeEscalation") != Some(json!(false)))
            .map(|c| cname(c))
            .collect();
        if !bad.is_empty() {
            out.push(format!("allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)", who(&bad)));
        }
    }
    // capabilities_baseline
    let mut extra: Vec<(String, String)> = Vec::new();
    for c in &cs {
        for cap in sc(c, "capabilities/add")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
        {
            let cap = cap.as_str().unwrap_or_default().to_string();
            if !BASELINE_CAPS.contains(&cap.as_str()) {
                extra.push((cname(c).to_string(), cap));
            }
        }
    }
    if !extra.is_empty() {
        let names: Vec<&str> = extra.iter().map(|e| e.0.as_str()).collect();
        let caps: Vec<String> = extra.iter().map(|e| format!("{:?}", e.1)).collect();
        out.push(format!(
            "non-default capabilities ({} must not include {} in securityContext.capabilities.add)",
            who(&names),
            caps.join(", ")
        ));
    }
    if restricted {
        let mut parts = Vec::new();
        let no_drop: Vec<&str> = cs
            .iter()
            .filter(|c| {
                !sc(c, "capabilities/drop")
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .any(|d| d == "ALL")
            })
            .map(|c| cname(c))
            .collect();
        if !no_drop.is_empty() {
            parts.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                who(&no_drop)
            ));
        }
        let adds: Vec<(&str, String)> = cs
            .iter()
            .flat_map(|c| {
                sc(c, "capabilities/add")
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .filter(|a| a != "NET_BIND_SERVICE")
                    .map(move |a| (cname(c), a))
            })
            .collect();
        if !adds.is_empty() {
            let names: Vec<&str> = adds.iter().map(|a| a.0).collect();
            let caps: Vec<String> = adds.iter().map(|a| format!("{:?}", a.1)).collect();
            parts.push(format!(
                "{} must not include {} in securityContext.capabilities.add",
                who(&names),
                caps.join(", ")
            ));
        }
        if !parts.is_empty() {
            out.push(format!("unrestricted capabilities ({})", parts.join("; ")));
        }
    }
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec.get(**k) == Some(&json!(true)))
        .map(|k| format!("{k}=true"))
        .collect();
    if !host.is_empty() {
        out.push(format!("host namespaces ({})", host.join(", ")));
    }
    let host_paths: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| {
            format!(
                "{:?}",
                v.get("name").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        out.push(format!(
            "hostPath volumes ({noun} {})",
            host_paths.join(", ")
        ));
    }
    let mut ports = Vec::new();
    for c in &cs {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|h| *h != 0)
            {
                ports.push((cname(c), hp));
            }
        }
    }
    if !ports.is_empty() {
        let names: Vec<&str> = ports.iter().map(|p| p.0).collect();
        let nums: Vec<String> = ports.iter().map(|p| p.1.to_string()).collect();
        let noun = if nums.len() == 1 {
            "hostPort"
        } else {
            "hostPorts"
        };
        out.push(format!(
            "hostPort ({} uses {noun} {})",
            who(&names),
            nums.join(", ")
        ));
    }
    let privileged: Vec<&str> = cs
        .iter()
        .filter(|c| sc(c, "privileged") == Some(json!(true)))
        .map(|c| cname(c))
        .collect();
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            who(&privileged)
        ));
    }
    if restricted {
        let pod_ok = pod_sc("runAsNonRoot") == Some(json!(true));
        let bad: Vec<&str> = cs
            .iter()
            .filter(|c| match sc(c, "runAsNonRoot") {
                Some(v) => v != json!(true),
                None => !pod_ok,
            })
            .map(|c| cname(c))
            .collect();
        if !bad.is_empty() {
            out.push(format!(
                "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
                who(&bad)
            ));
        }
        let root: Vec<&str> = cs
            .iter()
            .filter(|c| sc(c, "runAsUser") == Some(json!(0)))
            .map(|c| cname(c))
            .collect();
        if !root.is_empty() {
            out.push(format!(
                "runAsUser=0 ({} must not set runAsUser=0)",
                who(&root)
            ));
        }
        let ok = |t: Option<Value>| {
            matches!(
                t.as_ref().and_then(Value::as_str),
                Some("RuntimeDefault" | "Localhost")
            )
        };
        let pod_seccomp = ok(pod_sc("seccompProfile/type"));
        let bad: Vec<&str> = cs
            .iter()
            .filter(|c| match sc(c, "seccompProfile/type") {
                Some(t) => !ok(Some(t)),
                None => !pod_seccomp,
            })
            .map(|c| cname(c))
            .collect();
        if !bad.is_empty() {
            out.push(format!(
                "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                who(&bad)
            ));
        }
    } else if pod_sc("seccompProfile/type") == Some(json!("Unconfined")) {
        out.push("seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")".into());
    }
    out
}

/// The level a namespace sets for `mode` (enforce, warn), with its version.
fn level_of<'a>(ns: &'a Value, mode: &str) -> Option<(&'a str, &'a str)> {
    let label = |k: &str| {
        ns.pointer(&format!("/metadata/labels/pod-security.kubernetes.io~1{k}"))
            .and_then(Value::as_str)
    };
    let level = label(mode).filter(|l| matches!(*l, "baseline" | "restricted"))?;
    Some((level, label(&format!("{mode}-version")).unwrap_or("latest")))
}

/// The pod (or pod template) of an object `PodSecurity` looks at.
fn pod_of(r: &Resource, obj: &Value) -> Option<Value> {
    let spec = match (r.group, r.kind) {
        ("", "Pod") => obj.get("spec"),
        ("", "PodTemplate") => obj.pointer("/template/spec"),
        ("batch", "CronJob") => obj.pointer("/spec/jobTemplate/spec/template/spec"),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => obj.pointer("/spec/template/spec"),
        _ => None,
    }?;
    Some(json!({"spec": spec}))
}

/// `enforce` refuses pods; `warn` answers pods and workload templates with
/// a warning, as pod-security-admission does.
fn pod_security(r: &Resource, name: &str, obj: &Value, ns: &Value) -> Result<(), Fail> {
    let Some(pod) = pod_of(r, obj) else {
        return Ok(());
    };
    if let Some((level, version)) = level_of(ns, "warn") {
        let reasons = pod_security_violations(&pod, level);
        if !reasons.is_empty() {
            crate::webhook::warn(format!(
                "would violate PodSecurity \"{level}:{version}\": {}",
                reasons.join(", ")
            ));
        }
    }
    if let Some((level, version)) = level_of(ns, "audit") {
        let reasons = pod_security_violations(&pod, level);
        if !reasons.is_empty() {
            crate::audit::annotate(
                name,
                "pod-security.kubernetes.io/audit-violations",
                format!(
                    "would violate PodSecurity \"{level}:{version}\": {}",
                    reasons.join(", ")
                ),
            );
        }
    }
    if r.kind != "Pod" {
        return Ok(());
    }
    let Some((level, version)) = level_of(ns, "enforce") else {
        return Ok(());
    };
    let reasons = pod_security_violations(&pod, level);
    if reasons.is_empty() {
        return Ok(());
    }
    Err(forbidden(
        r,
        name,
        &format!(
            "violates PodSecurity \"{level}:{version}\": {}",
            reasons.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_and_baseline_reasons_as_upstream_words_them() {
        let plain = json!({"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}});
        assert_eq!(
            pod_security_violations(&plain, "restricted").join(", "),
            "allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert!(pod_security_violations(&plain, "baseline").is_empty());
        let privileged = json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]}});
        assert_eq!(
            pod_security_violations(&privileged, "baseline"),
            [
                "host namespaces (hostNetwork=true)",
                "privileged (container \"c\" must not set securityContext.privileged=true)"
            ]
        );
        let good = json!({"spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}});
        assert!(pod_security_violations(&good, "restricted").is_empty());
    }

    #[test]
    fn tolerations_added_once() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        default_toleration_seconds(&mut pod, 300);
        let tols = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tols.len(), 2);
        assert_eq!(tols[0]["tolerationSeconds"], 10);
        assert_eq!(tols[1]["key"], "node.kubernetes.io/not-ready");
    }
}
