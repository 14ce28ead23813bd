//! Decoding checks, defaulting and validation of built-in objects. Type checks
//! decode into the `k8s-openapi` structs; fields the struct does not know are
//! unknown fields (an error with `fieldValidation=Strict`, pruned otherwise).

use serde_json::{Map, Value, json};

/// One invalid field (a `StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub(crate) fn invalid(field: &str, value: &Value, why: &str) -> Self {
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
    pub(crate) fn required(field: &str) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }
    pub(crate) fn forbidden(field: &str, why: &str) -> Self {
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
    if matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    ) {
        // RBAC names are path segments (`ValidateRBACName`).
        let why = match name {
            "." => Some("may not be '.'"),
            ".." => Some("may not be '..'"),
            n if n.contains('/') => Some("may not contain '/'"),
            n if n.contains('%') => Some("may not contain '%'"),
            _ => None,
        };
        return why.map(|w| Cause::invalid("metadata.name", &json!(name), w));
    }
    let (ok, msg) = if name_is_label(kind) {
        (is_dns_label(name), LABEL_MSG)
    } else {
        (is_dns_subdomain(name), SUBDOMAIN_MSG)
    };
    (!ok).then(|| Cause::invalid("metadata.name", &json!(name), msg))
}

/// Decodes `obj` as its kind's typed struct and re-encodes it; `Err` is a
/// decoding error (wrong type of a field). Kinds the server does not serve
/// pass unchanged.
pub fn typed_roundtrip(kind: &str, obj: &Value) -> Result<Value, String> {
    match crate::resources::RESOURCES.iter().find(|r| r.kind == kind) {
        Some(r) => (r.typed)(obj),
        None => Ok(obj.clone()),
    }
}

/// Paths (dotted) of fields in `orig` that `typed` (the typed re-encoding)
/// lacks. With `prune`, those fields are removed from `orig`. Fields set to
/// `null` that the typed form leaves out are removed always: decoding into
/// Go structs drops them (`strategy: {type: Recreate, rollingUpdate: null}`
/// is a Recreate strategy without rolling parameters).
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
            let mut nulls = Vec::new();
            for (k, v) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, prune, out),
                    None if v.is_null() => nulls.push(k.clone()),
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
            for k in nulls {
                o.remove(&k);
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

/// Pod templates of Jobs get `Always` too, which Job validation then
/// refuses: the error users of Kubernetes know.
fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
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

/// A Job's defaults. Completions default to 1 only when parallelism is
/// unset too (a work-queue Job has neither). Unless `manualSelector`, the
/// selector is generated from the uid and the template gets its labels, as
/// the Job registry strategy does (`batch.kubernetes.io/controller-uid`,
/// `batch.kubernetes.io/job-name` and their legacy short forms).
fn default_job(obj: &mut Value) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = obj_mut(obj, "spec");
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = spec.contains_key("backoffLimitPerIndex");
    default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let replacement = if spec.contains_key("podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
    // `onPodConditions` patterns default to `status: "True"`.
    for rule in spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for pat in rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            default(pat, "status", json!("True"));
        }
    }
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_empty() && !spec.contains_key("selector") {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
        let labels = obj_mut(obj_mut_at(obj, &["spec", "template"]), "metadata");
        let labels = labels.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", &uid),
                ("batch.kubernetes.io/job-name", &name),
                ("controller-uid", &uid),
                ("job-name", &name),
            ] {
                l.entry(k).or_insert_with(|| json!(v));
            }
        }
    }
    // An unlabelled Job takes its template's labels (SetDefaults_Job).
    let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(l) = template_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        let meta = obj_mut(obj, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), l);
        }
    }
    if let Some(s) = template_spec(obj) {
        default_pod_spec(s);
    }
}

/// The object at `path` (made when missing).
fn obj_mut_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for k in path {
        obj_mut(cur, k);
        cur = cur.get_mut(*k).expect("just made");
    }
    cur
}

/// A `CronJob`'s schedule and time zone, with the apiserver's messages.
fn validate_cronjob(obj: &Value, out: &mut Vec<Cause>) {
    match obj.pointer("/spec/schedule") {
        None | Some(Value::Null) => out.push(Cause::required("spec.schedule")),
        Some(v) => {
            let s = v.as_str().unwrap_or_default();
            if s.contains("TZ") {
                out.push(Cause::invalid(
                    "spec.schedule",
                    v,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if let Err(e) = s.parse::<crate::cron::Schedule>() {
                out.push(Cause::invalid("spec.schedule", v, &e));
            }
        }
    }
    if let Some(v) = obj.pointer("/spec/timeZone").filter(|v| !v.is_null()) {
        let tz = v.as_str().unwrap_or_default();
        if tz.parse::<chrono_tz::Tz>().is_err() || tz == "Local" {
            out.push(Cause::invalid(
                "spec.timeZone",
                v,
                &format!("unknown time zone {tz}"),
            ));
        }
    }
}

/// Fills the defaults Kubernetes fills for built-in kinds. `next_ip` yields
/// a cluster IP for a new Service.
pub fn apply_defaults(kind: &str, obj: &mut Value, next_ip: &mut dyn FnMut() -> String) {
    match kind {
        "Pod" => {
            default_pod_spec(obj_mut(obj, "spec"));
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
                default_pod_spec(s);
            }
        }
        "ReplicaSet" => {
            default(obj_mut(obj, "spec"), "replicas", json!(1));
            if let Some(s) = template_spec(obj) {
                default_pod_spec(s);
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
                default_pod_spec(s);
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
                default_pod_spec(s);
            }
        }
        "Job" => {
            default_job(obj);
        }
        "CronJob" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(s) = obj
                .pointer_mut("/spec/jobTemplate/spec/template/spec")
                .and_then(Value::as_object_mut)
            {
                default_pod_spec(s);
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
            node_ports::apply_defaults(spec);
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
        "RoleBinding" | "ClusterRoleBinding" => crate::rbac::apply_defaults(obj),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            crate::webhook::apply_defaults(kind, obj);
        }
        _ => {}
    }
}

const QUALIFIED_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const PORT_MSG: &str = "must be between 1 and 65535, inclusive";
const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn qualified_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// apimachinery's `IsQualifiedName`: the messages for one label or
/// annotation key.
pub fn qualified_name_errors(k: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = k.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else if prefix.len() > 253 {
                errs.push(format!("prefix part {}", max_len(253)));
            } else if !is_dns_subdomain(prefix) {
                errs.push(format!("prefix part {SUBDOMAIN_MSG}"));
            }
            name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len(63)));
    }
    if !qualified_chars(name) {
        errs.push(format!("name part {QUALIFIED_MSG}"));
    }
    errs
}

/// apimachinery's `IsValidLabelValue`.
pub fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len(63));
    }
    if !v.is_empty() && !qualified_chars(v) {
        errs.push(LABEL_VALUE_MSG.into());
    }
    errs
}

fn validate_labels(field: &str, labels: Option<&Value>, out: &mut Vec<Cause>) {
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        for msg in qualified_name_errors(k) {
            out.push(Cause::invalid(field, &json!(k), &msg));
        }
        match v.as_str() {
            Some(s) => {
                for msg in label_value_errors(s) {
                    out.push(Cause::invalid(field, v, &msg));
                }
            }
            None => out.push(Cause::invalid(field, v, LABEL_VALUE_MSG)),
        }
    }
}

fn validate_annotations(annotations: Option<&Value>, out: &mut Vec<Cause>) {
    let Some(m) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in m {
        for msg in qualified_name_errors(&k.to_lowercase()) {
            out.push(Cause::invalid("metadata.annotations", &json!(k), &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_LIMIT {
        out.push(Cause {
            reason: "FieldValueTooLong",
            field: "metadata.annotations".into(),
            message: format!("Too long: may not be more than {ANNOTATIONS_LIMIT} bytes"),
        });
    }
}

pub(crate) fn not_supported(field: &str, v: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!(
            "Unsupported value: {v:?}: supported values: {}",
            list.join(", ")
        ),
    }
}

pub(crate) fn duplicate(field: &str, v: &str) -> Cause {
    Cause {
        reason: "FieldValueDuplicate",
        field: field.into(),
        message: format!("Duplicate value: {v:?}"),
    }
}

fn one_of(field: &str, v: Option<&Value>, supported: &[&str], out: &mut Vec<Cause>) {
    if let Some(s) = v.and_then(Value::as_str)
        && !supported.contains(&s)
    {
        out.push(not_supported(field, s, supported));
    }
}

/// `IsValidPortName` (an IANA service name).
pub fn port_name_errors(p: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if p.len() > 15 {
        errs.push(max_len(15));
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || p.is_empty()
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !p.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if p.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if p.starts_with('-') || p.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

fn check_port(field: &str, v: Option<&Value>, required: bool, out: &mut Vec<Cause>) {
    match v.and_then(Value::as_i64) {
        None | Some(0) if required => out.push(Cause::required(field)),
        None | Some(0) => {}
        Some(n) if !(1..=65535).contains(&n) => {
            out.push(Cause::invalid(field, &json!(n), PORT_MSG));
        }
        Some(_) => {}
    }
}

fn non_negative(obj: &Value, pointer: &str, out: &mut Vec<Cause>) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64)
        && n < 0
    {
        out.push(Cause::invalid(
            &pointer.trim_start_matches('/').replace('/', "."),
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// A resource quantity's value, or why it does not parse (the message
/// Kubernetes decodes with).
pub fn parse_quantity(s: &str) -> Result<f64, &'static str> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_len = body
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, suffix) = body.split_at(num_len);
    if num.is_empty() || !num.bytes().any(|b| b.is_ascii_digit()) || num.matches('.').count() > 1 {
        return Err(QUANTITY_MSG);
    }
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .and_then(|e| e.parse::<i32>().ok());
            let Some(e) = exp else {
                let shape = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
                let shape = shape.strip_prefix(['+', '-']).unwrap_or(shape);
                return Err(if shape.bytes().all(|b| b.is_ascii_digit()) {
                    "unable to parse quantity's suffix"
                } else {
                    QUANTITY_MSG
                });
            };
            10f64.powi(e)
        }
    };
    let v: f64 = num.parse().map_err(|_| QUANTITY_MSG)?;
    Ok(if s.starts_with('-') {
        -v * mult
    } else {
        v * mult
    })
}

/// Every resource quantity in an object parses (a decoding error otherwise,
/// as in Kubernetes).
pub fn check_quantities(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if matches!(
                    k.as_str(),
                    "limits" | "requests" | "capacity" | "allocatable" | "hard"
                ) && let Value::Object(q) = child
                {
                    for qv in q.values() {
                        if let Some(s) = qv.as_str() {
                            parse_quantity(s).map_err(String::from)?;
                        }
                    }
                }
                check_quantities(child)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(check_quantities),
        _ => Ok(()),
    }
}

fn validate_resources(field: &str, res: Option<&Value>, out: &mut Vec<Cause>) {
    let Some(res) = res else { return };
    let quantities = |kind: &str| -> Vec<(String, f64, String)> {
        res.get(kind)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let s = v.as_str()?;
                parse_quantity(s)
                    .ok()
                    .map(|q| (k.clone(), q, s.to_string()))
            })
            .collect()
    };
    let limits = quantities("limits");
    let requests = quantities("requests");
    for (kind, list) in [("limits", &limits), ("requests", &requests)] {
        for (name, q, s) in list {
            if *q < 0.0 {
                out.push(Cause::invalid(
                    &format!("{field}.{kind}[{name}]"),
                    &json!(s),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    for (name, q, s) in &requests {
        if let Some((_, l, ls)) = limits.iter().find(|(n, _, _)| n == name)
            && q > l
        {
            out.push(Cause::invalid(
                &format!("{field}.requests"),
                &json!(s),
                &format!("must be less than or equal to {name} limit of {ls}"),
            ));
        }
    }
}

fn validate_env(field: &str, env: Option<&Value>, out: &mut Vec<Cause>) {
    for (i, e) in env
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{field}[{i}]");
        match e.get("name").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required(&format!("{f}.name"))),
            // Kubernetes 1.33 relaxed the rule to printable ASCII but '='.
            Some(n) if !n.bytes().all(|b| (32..=126).contains(&b) && b != b'=') => {
                out.push(Cause::invalid(
                    &format!("{f}.name"),
                    &json!(n),
                    "a valid environment variable name must consist only of printable ASCII characters other than '='",
                ));
            }
            Some(_) => {}
        }
        if e.get("valueFrom").is_some()
            && e.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        {
            out.push(Cause::invalid(
                &format!("{f}.valueFrom"),
                &json!(""),
                "may not be specified when `value` is not empty",
            ));
        }
    }
}

fn validate_container_ports(field: &str, ports: Option<&Value>, out: &mut Vec<Cause>) {
    let mut names = Vec::new();
    for (i, p) in ports
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{field}[{i}]");
        if let Some(n) = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            let errs = port_name_errors(n);
            if !errs.is_empty() {
                for m in errs {
                    out.push(Cause::invalid(&format!("{f}.name"), &json!(n), &m));
                }
            } else if names.contains(&n) {
                out.push(duplicate(&format!("{f}.name"), n));
            } else {
                names.push(n);
            }
        }
        check_port(
            &format!("{f}.containerPort"),
            p.get("containerPort"),
            true,
            out,
        );
        check_port(&format!("{f}.hostPort"), p.get("hostPort"), false, out);
        one_of(
            &format!("{f}.protocol"),
            p.get("protocol"),
            &["SCTP", "TCP", "UDP"],
            out,
        );
    }
}

fn validate_containers(
    field: &str,
    list: Option<&Value>,
    required: bool,
    volumes: &[&str],
    seen: &mut Vec<String>,
    out: &mut Vec<Cause>,
) {
    let items = list.and_then(Value::as_array);
    if required && items.is_none_or(Vec::is_empty) {
        out.push(Cause::required(field));
        return;
    }
    for (i, c) in items.into_iter().flatten().enumerate() {
        let f = format!("{field}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required(&format!("{f}.name"))),
            Some(n) if n.len() > 63 => out.push(Cause::invalid(
                &format!("{f}.name"),
                &json!(n),
                &max_len(63),
            )),
            Some(n) if !is_dns_label(n) => {
                out.push(Cause::invalid(&format!("{f}.name"), &json!(n), LABEL_MSG));
            }
            Some(n) if seen.iter().any(|s| s == n) => out.push(duplicate(&format!("{f}.name"), n)),
            Some(n) => seen.push(n.to_string()),
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            out.push(Cause::required(&format!("{f}.image")));
        }
        one_of(
            &format!("{f}.imagePullPolicy"),
            c.get("imagePullPolicy"),
            &["Always", "IfNotPresent", "Never"],
            out,
        );
        one_of(
            &format!("{f}.terminationMessagePolicy"),
            c.get("terminationMessagePolicy"),
            &["FallbackToLogsOnError", "File"],
            out,
        );
        validate_container_ports(&format!("{f}.ports"), c.get("ports"), out);
        validate_env(&format!("{f}.env"), c.get("env"), out);
        validate_resources(&format!("{f}.resources"), c.get("resources"), out);
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mf = format!("{f}.volumeMounts[{j}]");
            match m.get("name").and_then(Value::as_str) {
                None | Some("") => out.push(Cause::required(&format!("{mf}.name"))),
                Some(n) if !volumes.contains(&n) => out.push(Cause {
                    reason: "FieldValueNotFound",
                    field: format!("{mf}.name"),
                    message: format!("Not found: {n:?}"),
                }),
                Some(_) => {}
            }
            if m.get("mountPath")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(Cause::required(&format!("{mf}.mountPath")));
            }
        }
    }
}

fn validate_pod_spec(field: &str, spec: Option<&Value>, out: &mut Vec<Cause>) {
    validate_pod_spec_with(field, spec, &[], out);
}

/// `claims`: names mounts may refer to besides the pod's volumes (a
/// `StatefulSet`'s `volumeClaimTemplates`).
fn validate_pod_spec_with(
    field: &str,
    spec: Option<&Value>,
    claims: &[&str],
    out: &mut Vec<Cause>,
) {
    let spec = spec.unwrap_or(&Value::Null);
    let mut volumes = claims.to_vec();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{field}.volumes[{i}].name");
        match v.get("name").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required(&f)),
            Some(n) if !is_dns_label(n) => out.push(Cause::invalid(&f, &json!(n), LABEL_MSG)),
            Some(n) if volumes.contains(&n) => out.push(duplicate(&f, n)),
            Some(n) => volumes.push(n),
        }
    }
    let mut seen = Vec::new();
    validate_containers(
        &format!("{field}.containers"),
        spec.get("containers"),
        true,
        &volumes,
        &mut seen,
        out,
    );
    validate_containers(
        &format!("{field}.initContainers"),
        spec.get("initContainers"),
        false,
        &volumes,
        &mut seen,
        out,
    );
    one_of(
        &format!("{field}.restartPolicy"),
        spec.get("restartPolicy"),
        &["Always", "OnFailure", "Never"],
        out,
    );
    one_of(
        &format!("{field}.dnsPolicy"),
        spec.get("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        out,
    );
    if let Some(n) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && n < 0
    {
        out.push(Cause::invalid(
            &format!("{field}.terminationGracePeriodSeconds"),
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// How Go's `%#v` prints a `map[string]string` (Kubernetes shows template
/// labels that way).
fn go_map(v: Option<&Value>) -> String {
    let Some(m) = v.and_then(Value::as_object) else {
        return "map[string]string(nil)".into();
    };
    let mut parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
        .collect();
    parts.sort();
    format!("map[string]string{{{}}}", parts.join(", "))
}

fn validate_selector_matches(kind: &str, obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let Some(sel) = spec.get("selector") else {
        out.push(Cause::required("spec.selector"));
        return;
    };
    validate_labels("spec.selector.matchLabels", sel.get("matchLabels"), out);
    let labels = spec.pointer("/template/metadata/labels");
    validate_labels("spec.template.metadata.labels", labels, out);
    let s = crate::selectors::LabelSelector::from_json(sel);
    if sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none() {
        out.push(Cause::invalid(
            "spec.selector",
            sel,
            &format!("empty selector is invalid for {}", kind.to_lowercase()),
        ));
    } else if !s.matches(labels) {
        out.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.template.metadata.labels".into(),
            message: format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                go_map(labels)
            ),
        });
    }
}

/// `maxSurge`/`maxUnavailable`: an integer ≥ 0 or a percentage ≤ 100%.
fn int_or_percent(field: &str, v: Option<&Value>, out: &mut Vec<Cause>) -> Option<i64> {
    match v? {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                out.push(Cause::invalid(
                    field,
                    &json!(n),
                    "must be greater than or equal to 0",
                ));
            }
            Some(n)
        }
        Value::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                out.push(Cause::invalid(field, &json!(s), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                return None;
            };
            if p > 100 {
                out.push(Cause::invalid(
                    field,
                    &json!(s),
                    "must not be greater than 100%",
                ));
            }
            Some(p)
        }
        _ => None,
    }
}

fn validate_deployment(obj: &Value, out: &mut Vec<Cause>) {
    for p in [
        "/spec/revisionHistoryLimit",
        "/spec/minReadySeconds",
        "/spec/progressDeadlineSeconds",
    ] {
        non_negative(obj, p, out);
    }
    let min_ready = obj
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(pd) = obj
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        && pd >= 0
        && pd <= min_ready
    {
        out.push(Cause::invalid(
            "spec.progressDeadlineSeconds",
            &json!(pd),
            "must be greater than minReadySeconds",
        ));
    }
    let strategy = obj.pointer("/spec/strategy").unwrap_or(&Value::Null);
    let ty = strategy
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    match ty {
        "Recreate" if strategy.get("rollingUpdate").is_some() => out.push(Cause::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "RollingUpdate" => {
            let ru = strategy.get("rollingUpdate").unwrap_or(&Value::Null);
            let surge = int_or_percent(
                "spec.strategy.rollingUpdate.maxSurge",
                ru.get("maxSurge"),
                out,
            );
            let unavailable = int_or_percent(
                "spec.strategy.rollingUpdate.maxUnavailable",
                ru.get("maxUnavailable"),
                out,
            );
            if surge == Some(0) && unavailable == Some(0) {
                out.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru.get("maxUnavailable").unwrap_or(&Value::Null),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "Recreate" => {}
        other => out.push(not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

fn validate_service(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ports = spec.get("ports").and_then(Value::as_array);
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        out.push(not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if ty == "ExternalName" {
        match spec.get("externalName").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required("spec.externalName")),
            Some(n) if !is_dns_subdomain(n) => out.push(Cause::invalid(
                "spec.externalName",
                &json!(n),
                SUBDOMAIN_MSG,
            )),
            Some(_) => {}
        }
    } else if !headless && ports.is_none_or(Vec::is_empty) {
        out.push(Cause::required("spec.ports"));
    }
    let several = ports.is_some_and(|p| p.len() > 1);
    let mut names = Vec::new();
    let mut keys = Vec::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let f = format!("spec.ports[{i}]");
        match p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None if several => out.push(Cause::required(&format!("{f}.name"))),
            None => {}
            Some(n) if !is_dns_label(n) => {
                out.push(Cause::invalid(&format!("{f}.name"), &json!(n), LABEL_MSG));
            }
            Some(n) if names.contains(&n) => out.push(duplicate(&format!("{f}.name"), n)),
            Some(n) => names.push(n),
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            out.push(Cause::invalid(&format!("{f}.port"), &json!(port), PORT_MSG));
        }
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        one_of(
            &format!("{f}.protocol"),
            p.get("protocol"),
            &["SCTP", "TCP", "UDP"],
            out,
        );
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    out.push(Cause::invalid(
                        &format!("{f}.targetPort"),
                        &json!(n),
                        PORT_MSG,
                    ));
                }
            }
            Some(Value::String(s)) => {
                for m in port_name_errors(s) {
                    out.push(Cause::invalid(&format!("{f}.targetPort"), &json!(s), &m));
                }
            }
            _ => {}
        }
        if keys.contains(&(port, protocol)) {
            out.push(Cause {
                reason: "FieldValueDuplicate",
                field: f.clone(),
                message: format!("Duplicate value: core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"),
            });
        }
        keys.push((port, protocol));
    }
    validate_labels("spec.selector", spec.get("selector"), out);
    one_of(
        "spec.sessionAffinity",
        spec.get("sessionAffinity"),
        &["ClientIP", "None"],
        out,
    );
    node_ports::validate(spec, out);
}

/// Validation of a whole object of resource `r` (create or update): the
/// kind's own rules, then the fields its `OpenAPI` schema requires (generated
/// from the types) where the kind's rules said nothing about that field.
pub fn validate_object(r: &crate::resources::Resource, obj: &Value) -> Vec<Cause> {
    let mut out = validate(r.kind, obj);
    if r.group == crate::rbac::GROUP {
        out.extend(crate::rbac::validate(r.kind, obj));
    }
    if r.group == crate::webhook::GROUP && r.plural.ends_with("webhookconfigurations") {
        out.extend(crate::webhook::validate_config(obj));
    }
    if r.group == crate::webhook::GROUP && r.plural.starts_with("validatingadmissionpolic") {
        out.extend(crate::cel::policy::check_object(r.kind, obj));
    }
    for c in required_fields(r, obj) {
        if !out.iter().any(|o| o.field == c.field) {
            out.push(c);
        }
    }
    out
}

/// Fields the kind's schema marks required that `obj` lacks (status is the
/// controllers' and is not checked).
pub fn required_fields(r: &crate::resources::Resource, obj: &Value) -> Vec<Cause> {
    fn walk(schema: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
        let schemas = &*crate::openapi::SCHEMAS;
        let s = schemas.resolve(schema);
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match v {
            Value::Object(m) => {
                for f in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if path.is_empty() && f == "metadata" {
                        continue;
                    }
                    if m.get(f).is_none_or(Value::is_null) {
                        out.push(Cause::required(&join(f)));
                    }
                }
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    for (k, x) in m {
                        if path.is_empty() && (k == "status" || k == "metadata") {
                            continue;
                        }
                        if let Some(ps) = props.get(k) {
                            walk(ps, x, &join(k), out);
                        }
                    }
                } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    for (k, x) in m {
                        walk(ap, x, &format!("{path}[{k}]"), out);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = s.get("items") {
                    for (i, x) in a.iter().enumerate() {
                        walk(items, x, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(root) = crate::openapi::SCHEMAS.of(r) {
        walk(root, obj, "", &mut out);
    }
    out
}

/// Validation of a whole object (create or update).
pub fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    validate_labels("metadata.labels", meta.get("labels"), &mut out);
    validate_annotations(meta.get("annotations"), &mut out);
    match kind {
        "Pod" => validate_pod_spec("spec", obj.get("spec"), &mut out),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            validate_selector_matches(kind, obj, &mut out);
            let claims: Vec<&str> = obj
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
                .collect();
            validate_pod_spec_with(
                "spec.template.spec",
                obj.pointer("/spec/template/spec"),
                &claims,
                &mut out,
            );
            non_negative(obj, "/spec/replicas", &mut out);
            if kind == "Deployment" {
                validate_deployment(obj, &mut out);
            }
            if kind == "StatefulSet" {
                one_of(
                    "spec.podManagementPolicy",
                    obj.pointer("/spec/podManagementPolicy"),
                    &["OrderedReady", "Parallel"],
                    &mut out,
                );
            }
            match obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
            {
                Some("Always") | None => {}
                Some(other) => out.push(not_supported(
                    "spec.template.spec.restartPolicy",
                    other,
                    &["Always"],
                )),
            }
        }
        "Job" => {
            validate_pod_spec(
                "spec.template.spec",
                obj.pointer("/spec/template/spec"),
                &mut out,
            );
            for p in [
                "/spec/parallelism",
                "/spec/completions",
                "/spec/backoffLimit",
                "/spec/activeDeadlineSeconds",
            ] {
                non_negative(obj, p, &mut out);
            }
            one_of(
                "spec.completionMode",
                obj.pointer("/spec/completionMode"),
                &["Indexed", "NonIndexed"],
                &mut out,
            );
            match obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
            {
                Some("OnFailure" | "Never") => {}
                None => out.push(Cause {
                    reason: "FieldValueRequired",
                    field: "spec.template.spec.restartPolicy".into(),
                    message: "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                }),
                Some(other) => out.push(not_supported(
                    "spec.template.spec.restartPolicy",
                    other,
                    &["OnFailure", "Never"],
                )),
            }
        }
        "CronJob" => validate_cronjob(obj, &mut out),
        "Service" => validate_service(obj, &mut out),
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
                        out.push(Cause::invalid(&format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
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
    let mut out = crate::rbac::validate_update(kind, old, new);
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

pub(crate) mod node_ports;
#[cfg(test)]
mod tests;
