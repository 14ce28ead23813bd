//! Decoding checks, defaulting and validation of built-in objects. Type checks
//! decode into the `k8s-openapi` structs; fields the struct does not know are
//! unknown fields (an error with `fieldValidation=Strict`, pruned otherwise).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// One invalid field (a `StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    fn invalid(field: &str, value: &Value, why: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            v => v.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {why}"),
        }
    }
    fn required(field: &str) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }
    fn forbidden(field: &str, why: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {why}"),
        }
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Kinds whose names must be DNS-1123 labels rather than subdomains.
fn name_is_label(kind: &str) -> bool {
    matches!(kind, "Namespace" | "Service")
}

pub fn validate_name(kind: &str, name: &str) -> Option<Cause> {
    if name.is_empty() {
        return Some(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    }
    let (ok, msg) = if name_is_label(kind) {
        (is_dns_label(name), LABEL_MSG)
    } else {
        (is_dns_subdomain(name), SUBDOMAIN_MSG)
    };
    (!ok).then(|| Cause::invalid("metadata.name", &json!(name), msg))
}

fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn valid_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && valid_label_value(name)
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

/// Decodes `obj` as its kind's typed struct and re-encodes it; `Err` is a
/// decoding error (wrong type of a field).
pub fn typed_roundtrip(kind: &str, obj: &Value) -> Result<Value, String> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        networking::v1 as networking,
    };
    match kind {
        "Namespace" => roundtrip::<core::Namespace>(obj),
        "Pod" => roundtrip::<core::Pod>(obj),
        "Service" => roundtrip::<core::Service>(obj),
        "Endpoints" => roundtrip::<core::Endpoints>(obj),
        "ConfigMap" => roundtrip::<core::ConfigMap>(obj),
        "Secret" => roundtrip::<core::Secret>(obj),
        "ServiceAccount" => roundtrip::<core::ServiceAccount>(obj),
        "Event" => roundtrip::<core::Event>(obj),
        "Node" => roundtrip::<core::Node>(obj),
        "Deployment" => roundtrip::<apps::Deployment>(obj),
        "ReplicaSet" => roundtrip::<apps::ReplicaSet>(obj),
        "StatefulSet" => roundtrip::<apps::StatefulSet>(obj),
        "DaemonSet" => roundtrip::<apps::DaemonSet>(obj),
        "Job" => roundtrip::<batch::Job>(obj),
        "Ingress" => roundtrip::<networking::Ingress>(obj),
        "HorizontalPodAutoscaler" => roundtrip::<autoscaling::HorizontalPodAutoscaler>(obj),
        "Lease" => roundtrip::<coordination::Lease>(obj),
        "EndpointSlice" => roundtrip::<discovery::EndpointSlice>(obj),
        _ => Ok(obj.clone()),
    }
}

/// Paths (dotted) of fields in `orig` that `typed` (the typed re-encoding)
/// lacks. With `prune`, those fields are removed from `orig`.
pub fn unknown_fields(
    orig: &mut Value,
    typed: &Value,
    path: &str,
    prune: bool,
    out: &mut Vec<String>,
) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            let mut drop = Vec::new();
            for (k, v) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, prune, out),
                    None if v.is_null() => {}
                    None => {
                        out.push(p);
                        drop.push(k.clone());
                    }
                }
            }
            if prune {
                for k in drop {
                    o.remove(&k);
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter_mut().zip(t.iter()).enumerate() {
                unknown_fields(ov, tv, &format!("{path}[{i}]"), prune, out);
            }
        }
        _ => {}
    }
}

/// Resource quantities may be written as numbers; Kubernetes stores strings.
pub fn normalize_quantities(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if matches!(
                    k.as_str(),
                    "limits" | "requests" | "capacity" | "allocatable" | "hard"
                ) && let Value::Object(q) = child
                {
                    for qv in q.values_mut() {
                        if let Value::Number(n) = qv {
                            *qv = Value::String(n.to_string());
                        }
                    }
                }
                normalize_quantities(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize_quantities),
        _ => {}
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let m = v.as_object_mut().expect("caller passes an object");
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut().expect("just made an object")
}

fn default(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.entry(k.to_string()).or_insert(v);
}

fn default_containers(list: Option<&mut Value>) {
    for c in list.and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(c) = c.as_object_mut() else { continue };
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let last = image.rsplit('/').next().unwrap_or_default();
        let tagged = last.contains(':') && !last.ends_with(":latest") || image.contains('@');
        default(
            c,
            "imagePullPolicy",
            json!(if tagged { "IfNotPresent" } else { "Always" }),
        );
        default(c, "terminationMessagePath", json!("/dev/termination-log"));
        default(c, "terminationMessagePolicy", json!("File"));
        default(c, "resources", json!({}));
        for p in c
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(p) = p.as_object_mut() {
                default(p, "protocol", json!("TCP"));
            }
        }
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>, in_job: bool) {
    if !in_job {
        default(spec, "restartPolicy", json!("Always"));
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default_containers(spec.get_mut("containers"));
    default_containers(spec.get_mut("initContainers"));
}

fn template_spec(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("spec")?
        .get_mut("template")?
        .get_mut("spec")?
        .as_object_mut()
}

/// Fills the defaults Kubernetes fills for built-in kinds. `next_ip` yields
/// a cluster IP for a new Service.
pub fn apply_defaults(kind: &str, obj: &mut Value, next_ip: &mut dyn FnMut() -> String) {
    match kind {
        "Pod" => {
            default_pod_spec(obj_mut(obj, "spec"), false);
            let status = obj_mut(obj, "status");
            default(status, "phase", json!("Pending"));
            default(status, "qosClass", json!("BestEffort"));
        }
        "Deployment" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s, false);
            }
        }
        "ReplicaSet" => {
            default(obj_mut(obj, "spec"), "replicas", json!(1));
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s, false);
            }
        }
        "StatefulSet" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s, false);
            }
        }
        "DaemonSet" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s, false);
            }
        }
        "Job" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "backoffLimit", json!(6));
            default(spec, "completions", json!(1));
            default(spec, "parallelism", json!(1));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s, true);
            }
        }
        "Service" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if ty != "ExternalName" {
                default(spec, "internalTrafficPolicy", json!("Cluster"));
                default(spec, "ipFamilies", json!(["IPv4"]));
                default(spec, "ipFamilyPolicy", json!("SingleStack"));
                if !spec.contains_key("clusterIP") {
                    let ip = next_ip();
                    spec.insert("clusterIP".into(), json!(ip));
                }
                let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
                default(spec, "clusterIPs", json!([ip]));
            }
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        "Secret" => {
            if let Some(m) = obj.as_object_mut() {
                default(m, "type", json!("Opaque"));
            }
        }
        "Namespace" => {
            default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            default(obj_mut(obj, "status"), "phase", json!("Active"));
        }
        _ => {}
    }
}

fn validate_containers(field: &str, list: Option<&Value>, required: bool, out: &mut Vec<Cause>) {
    let items = list.and_then(Value::as_array);
    if required && items.is_none_or(Vec::is_empty) {
        out.push(Cause::required(field));
        return;
    }
    let mut seen = Vec::new();
    for (i, c) in items.into_iter().flatten().enumerate() {
        let f = format!("{field}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required(&format!("{f}.name"))),
            Some(n) if !is_dns_label(n) => {
                out.push(Cause::invalid(&format!("{f}.name"), &json!(n), LABEL_MSG));
            }
            Some(n) if seen.contains(&n) => out.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{f}.name"),
                message: format!("Duplicate value: {n:?}"),
            }),
            Some(n) => seen.push(n),
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            out.push(Cause::required(&format!("{f}.image")));
        }
    }
}

fn validate_pod_spec(field: &str, spec: Option<&Value>, out: &mut Vec<Cause>) {
    let spec = spec.unwrap_or(&Value::Null);
    validate_containers(
        &format!("{field}.containers"),
        spec.get("containers"),
        true,
        out,
    );
    validate_containers(
        &format!("{field}.initContainers"),
        spec.get("initContainers"),
        false,
        out,
    );
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        out.push(Cause {
            reason: "FieldValueNotSupported",
            field: format!("{field}.restartPolicy"),
            message: format!(
                "Unsupported value: {rp:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
        });
    }
}

fn validate_selector_matches(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let Some(sel) = spec.get("selector") else {
        out.push(Cause::required("spec.selector"));
        return;
    };
    let labels = spec.pointer("/template/metadata/labels");
    let s = crate::selectors::LabelSelector::from_json(sel);
    if sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none() {
        out.push(Cause::invalid(
            "spec.selector",
            sel,
            "empty selector is invalid for deployment",
        ));
    } else if !s.matches(labels) {
        out.push(Cause::invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
}

/// Validation of a whole object (create or update).
pub fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    for (field, check_values) in [("labels", true), ("annotations", false)] {
        if let Some(m) = meta.get(field).and_then(Value::as_object) {
            for (k, v) in m {
                if !valid_qualified_name(k) {
                    out.push(Cause::invalid(&format!("metadata.{field}"), &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                }
                if check_values && !v.as_str().is_some_and(valid_label_value) {
                    out.push(Cause::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                }
            }
        }
    }
    match kind {
        "Pod" => validate_pod_spec("spec", obj.get("spec"), &mut out),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            validate_selector_matches(obj, &mut out);
            validate_pod_spec(
                "spec.template.spec",
                obj.pointer("/spec/template/spec"),
                &mut out,
            );
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                out.push(Cause::invalid(
                    "spec.replicas",
                    &json!(r),
                    "must be greater than or equal to 0",
                ));
            }
        }
        "Job" => {
            validate_pod_spec(
                "spec.template.spec",
                obj.pointer("/spec/template/spec"),
                &mut out,
            );
            match obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
            {
                Some("OnFailure" | "Never") => {}
                other => out.push(Cause {
                    reason: "FieldValueRequired",
                    field: "spec.template.spec.restartPolicy".into(),
                    message: format!(
                        "Required value: valid values: \"OnFailure\", \"Never\" (got {other:?})"
                    ),
                }),
            }
        }
        "Service" => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = spec.get("ports").and_then(Value::as_array);
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            if ty != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
                out.push(Cause::required("spec.ports"));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    out.push(Cause::invalid(
                        &format!("spec.ports[{i}].port"),
                        &json!(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if !matches!(
                ty,
                "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
            ) {
                out.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "spec.type".into(),
                    message: format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
                });
            }
        }
        "ConfigMap" | "Secret" => {
            for field in ["data", "binaryData", "stringData"] {
                for k in obj
                    .get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                    if !ok {
                        out.push(Cause::invalid(&format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Changes an update may not make (immutable fields).
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let same = |p: &str| old.pointer(p) == new.pointer(p);
    match kind {
        "ConfigMap" | "Secret" => {
            if old.get("immutable") == Some(&Value::Bool(true))
                && (!same("/data") || !same("/binaryData") || !same("/immutable"))
            {
                out.push(Cause::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
            if kind == "Secret" && !same("/type") {
                out.push(Cause::invalid(
                    "type",
                    new.get("type").unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" if !same("/spec/selector") => {
            out.push(Cause::invalid(
                "spec.selector",
                new.pointer("/spec/selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        "Job" => {
            for (p, f) in [
                ("/spec/selector", "spec.selector"),
                ("/spec/template", "spec.template"),
            ] {
                if !same(p) {
                    out.push(Cause::invalid(
                        f,
                        new.pointer(p).unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        "Service" => {
            let oip = old.pointer("/spec/clusterIP");
            let nip = new.pointer("/spec/clusterIP");
            if oip.is_some() && nip.is_some() && oip != nip {
                out.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    nip.unwrap_or(&Value::Null),
                    "may not change once set",
                ));
            }
        }
        "Pod" => {
            // Only images (and a few scheduling fields) of a pod may change.
            let mask = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                for list in ["containers", "initContainers"] {
                    for c in s
                        .get_mut(list)
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                    m.remove("terminationGracePeriodSeconds");
                }
                s
            };
            if mask(old) != mask(new) {
                out.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("Bad_Name"));
        assert!(!is_dns_subdomain("-a"));
        assert!(is_dns_label("abc-1"));
        assert!(!is_dns_label("a.b"));
        assert!(validate_name("Service", "a.b").is_some());
        assert!(validate_name("ConfigMap", "a.b").is_none());
        assert_eq!(
            validate_name("Pod", "").unwrap().reason,
            "FieldValueRequired"
        );
    }

    #[test]
    fn typed_decoding_and_unknown_fields() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"k": "v"}, "extra": {"x": 1}});
        let typed = typed_roundtrip("ConfigMap", &cm).unwrap();
        let mut unknown = Vec::new();
        unknown_fields(&mut cm, &typed, "", true, &mut unknown);
        assert_eq!(
            unknown,
            vec!["extra".to_string(), "metadata.bogus".to_string()]
        );
        assert!(cm.get("extra").is_none());
        assert!(typed_roundtrip("ConfigMap", &json!({"data": {"k": 5}})).is_err());
    }

    #[test]
    fn deployment_selector_must_match() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let causes = validate("Deployment", &d);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn defaults_and_immutability() {
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        apply_defaults("Service", &mut svc, &mut || "10.43.0.9".into());
        assert_eq!(svc["spec"]["clusterIP"], "10.43.0.9");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        let mut changed = svc.clone();
        changed["spec"]["clusterIP"] = json!("10.43.0.10");
        assert_eq!(validate_update("Service", &svc, &changed).len(), 1);
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        let cm2 = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(validate_update("ConfigMap", &cm, &cm2).len(), 1);
        let mut q = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": 1}}}]}});
        normalize_quantities(&mut q);
        assert_eq!(
            q["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }
}
