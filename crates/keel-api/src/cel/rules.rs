//! CRD `x-kubernetes-validations`: rules at any level of a version's
//! schema, `self` bound to the value there and `oldSelf` to the previous
//! value on an update (a rule reading `oldSelf`, a transition rule, runs
//! only where the old value exists and correlates: object fields, map keys,
//! `listType: map` items by their keys). Failures are worded as
//! kube-apiserver words them: `spec: Invalid value: "object": <message>`,
//! with `message`, `messageExpression`, `reason` and `fieldPath`. Rules that
//! do not compile are refused at CRD create/update with apiextensions'
//! message. Rules other than transition rules are ratcheted as in
//! Kubernetes 1.30+: an update that leaves a value as it was is not held to
//! them there. A rule with `optionalOldSelf` also runs where there is no
//! old value (a create, a new item), `oldSelf` then a CEL optional.

use serde_json::{Value, json};

use cel::objects::OptionalValue;

use super::{compile, eval, from_json_typed};
use crate::validate::Cause;

const REASONS: [&str; 4] = [
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

fn rules_of(s: &Value) -> impl Iterator<Item = &Value> {
    s.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Every schema node carrying rules, with its CRD path, in schema order.
fn nodes<'a>(
    s: &'a Value,
    path: &str,
    correlatable: bool,
    out: &mut Vec<(String, &'a Value, bool)>,
) {
    if s.get("x-kubernetes-validations").is_some() {
        out.push((path.to_string(), s, correlatable));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            nodes(p, &format!("{path}.properties[{k}]"), correlatable, out);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        let keyed = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        nodes(items, &format!("{path}.items"), correlatable && keyed, out);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        nodes(
            ap,
            &format!("{path}.additionalProperties"),
            correlatable,
            out,
        );
    }
}

/// Go's `%#v` of a rule, as apiextensions prints the invalid value.
fn go_rule(r: &Value) -> String {
    let s = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let reason = r.get("reason").and_then(Value::as_str).map_or_else(
        || "(*apiextensions.FieldValueErrorReason)(nil)".to_string(),
        |x| format!("\"{x}\""),
    );
    let old = r
        .get("optionalOldSelf")
        .and_then(Value::as_bool)
        .map_or_else(|| "(*bool)(nil)".to_string(), |b| format!("(*bool)({b})"));
    format!(
        "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{reason}, FieldPath:{:?}, OptionalOldSelf:{old}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath")
    )
}

/// apiextensions' checks of the rules in a CRD's schemas: each compiles,
/// reads only `self` and `oldSelf` (the latter only where values
/// correlate), and has a known reason and a one-line message.
pub(crate) fn check_crd(crd: &Value) -> Vec<Cause> {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut jobs = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if let Some(s) = v.pointer("/schema/openAPIV3Schema") {
            let mut found = Vec::new();
            nodes(
                s,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                true,
                &mut found,
            );
            for (path, node, correlatable) in found {
                jobs.push((path, node.clone(), correlatable));
            }
        }
    }
    if jobs.is_empty() {
        return Vec::new();
    }
    super::run_sync(move || {
        let mut out = Vec::new();
        for (path, node, correlatable) in jobs {
            for (j, r) in rules_of(&node).enumerate() {
                let at = format!("{path}.x-kubernetes-validations[{j}]");
                check_rule(r, &at, correlatable, &mut out);
            }
        }
        out
    })
    .unwrap_or_else(|e| vec![Cause::invalid("spec.versions", &json!(""), &e)])
}

/// An invalid rule, its value printed as Go's `%#v` (no quotes around it).
fn rule_invalid(field: &str, r: &Value, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {}: {why}", go_rule(r)),
    }
}

fn check_rule(r: &Value, at: &str, correlatable: bool, out: &mut Vec<Cause>) {
    let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
    if rule.trim().is_empty() {
        out.push(Cause::required(&format!("{at}.rule")));
        return;
    }
    match compile(rule, &["self", "oldSelf"]) {
        Err(e) => out.push(rule_invalid(&format!("{at}.rule"), r, &e)),
        Ok(c) => {
            if r.get("optionalOldSelf").and_then(Value::as_bool) == Some(true)
                && !c.variables.contains("oldSelf")
            {
                out.push(Cause::invalid(
                    &format!("{at}.optionalOldSelf"),
                    &json!(true),
                    "may not be set if oldSelf is not used in rule",
                ));
            }
            if c.variables.contains("oldSelf") && !correlatable {
                out.push(rule_invalid(
                    &format!("{at}.rule"),
                    r,
                    "oldSelf cannot be used on the uncorrelatable portion of the schema within spec",
                ));
            }
        }
    }
    if let Some(m) = r.get("messageExpression").and_then(Value::as_str)
        && let Err(e) = compile(m, &["self", "oldSelf"])
    {
        out.push(rule_invalid(
            &format!("{at}.messageExpression"),
            r,
            &format!("message{}", e.replacen("compilation", " compilation", 1)),
        ));
    }
    if let Some(m) = r.get("message").and_then(Value::as_str)
        && m.contains('\n')
    {
        out.push(Cause::invalid(
            &format!("{at}.message"),
            &json!(m),
            "message must not contain line breaks",
        ));
    }
    if r.get("message").is_none() && rule.contains('\n') {
        out.push(Cause::required(&format!("{at}.message")));
    }
    if let Some(reason) = r.get("reason").and_then(Value::as_str)
        && !REASONS.contains(&reason)
    {
        out.push(crate::validate::not_supported(
            &format!("{at}.reason"),
            reason,
            &REASONS,
        ));
    }
}

/// One node to evaluate: where, its schema type, rules, new and old value.
struct Job {
    path: String,
    schema: Value,
    ty: String,
    rules: Vec<Value>,
    new: Value,
    old: Option<Value>,
}

fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn collect(s: &Value, v: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Job>) {
    if v.is_null() {
        return;
    }
    let rules: Vec<Value> = rules_of(s).cloned().collect();
    if !rules.is_empty() {
        out.push(Job {
            path: path.to_string(),
            schema: s.clone(),
            ty: s
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            rules,
            new: v.clone(),
            old: old.cloned(),
        });
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, x) in m {
                let o = old.and_then(|o| o.get(k));
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    collect(sub, x, o, &child(path, k), out);
                } else if let Some(sub) = extra {
                    collect(sub, x, o, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = s.get("items").filter(|i| i.is_object()) else {
                return;
            };
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let keyed = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            let olds = old.and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let o = if keyed {
                    olds.and_then(|l| l.iter().find(|e| keys.iter().all(|k| e.get(k) == x.get(k))))
                } else {
                    None
                };
                collect(items, x, o, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The causes of every rule a custom object fails; `old` on an update.
pub(crate) async fn check(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut jobs = Vec::new();
    collect(schema, obj, old, "", &mut jobs);
    if jobs.is_empty() {
        return Vec::new();
    }
    let root_ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string();
    match super::run(move || jobs.iter().flat_map(evaluate).collect::<Vec<_>>()).await {
        Ok(causes) => causes,
        Err(e) => vec![Cause {
            reason: "FieldValueInvalid",
            field: "<nil>".into(),
            message: format!("Invalid value: {root_ty:?}: {e}"),
        }],
    }
}

fn evaluate(job: &Job) -> Vec<Cause> {
    let mut out = Vec::new();
    let field = if job.path.is_empty() {
        "<nil>".to_string()
    } else {
        job.path.clone()
    };
    let this = from_json_typed(&job.new, Some(&job.schema));
    let old = job
        .old
        .as_ref()
        .map(|o| from_json_typed(o, Some(&job.schema)));
    for r in &job.rules {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        let c = match compile(rule, &["self", "oldSelf"]) {
            Ok(c) => c,
            Err(e) => {
                out.push(invalid(&field, &job.ty, &e));
                continue;
            }
        };
        let mut vars = vec![("self", this.clone())];
        let optional_old = r.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
        if c.variables.contains("oldSelf") && optional_old {
            // Runs with or without an old value: oldSelf is a CEL optional.
            let o = old
                .clone()
                .map_or_else(OptionalValue::none, OptionalValue::of);
            vars.push(("oldSelf", cel::Value::Opaque(std::sync::Arc::new(o))));
        } else if c.variables.contains("oldSelf") {
            let Some(o) = &old else { continue };
            vars.push(("oldSelf", o.clone()));
        } else if job.old.as_ref() == Some(&job.new) {
            // Ratcheting (CRDValidationRatcheting, on since 1.30): a value
            // an update leaves as it was is not held to rules added since.
            continue;
        }
        let at = match r.get("fieldPath").and_then(Value::as_str) {
            Some(p) if !p.is_empty() => relative(&job.path, p),
            _ => field.clone(),
        };
        match eval(&c.program, &vars) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let message = message(r, rule, &vars);
                let reason = r.get("reason").and_then(Value::as_str).unwrap_or("FieldValueInvalid");
                out.push(for_reason(reason, &at, &job.ty, &message));
            }
            Ok(other) => out.push(invalid(
                &field,
                &job.ty,
                &format!("rule {rule:?} evaluated to {other:?}, not a bool"),
            )),
            Err(e) if e.starts_with("no such overload") => out.push(invalid(
                &field,
                &job.ty,
                &format!("'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}", rule.trim()),
            )),
            Err(e) => out.push(invalid(
                &field,
                &job.ty,
                &format!("{e} evaluating rule: {}", rule.trim()),
            )),
        }
    }
    out
}

/// The failure message: `messageExpression` when it yields a usable
/// string, else `message`, else `failed rule: <rule>`.
fn message(r: &Value, rule: &str, vars: &[(&str, cel::Value)]) -> String {
    if let Some(m) = r.get("messageExpression").and_then(Value::as_str)
        && let Ok(c) = compile(m, &["self", "oldSelf"])
        && (!c.variables.contains("oldSelf") || vars.len() > 1)
        && let Ok(cel::Value::String(s)) = eval(&c.program, vars)
        && !s.trim().is_empty()
        && !s.contains('\n')
    {
        return s.to_string();
    }
    match r.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed rule: {}", rule.trim()),
    }
}

/// `fieldPath` (`.a.b`, `['x.y']`) under the rule's own path.
fn relative(base: &str, p: &str) -> String {
    let mut out = base.to_string();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            out = format!("{out}[{}]", &r[..end]);
            rest = r.get(end + 2..).unwrap_or_default();
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out = child(&out, &r[..end]);
            rest = &r[end..];
        } else {
            break;
        }
    }
    out
}

fn invalid(field: &str, ty: &str, msg: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {ty:?}: {msg}"),
    }
}

fn for_reason(reason: &str, field: &str, ty: &str, msg: &str) -> Cause {
    match reason {
        "FieldValueForbidden" => Cause::forbidden(field, msg),
        "FieldValueRequired" => Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: format!("Required value: {msg}"),
        },
        "FieldValueDuplicate" => Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {ty:?}"),
        },
        _ => invalid(field, ty, msg),
    }
}

/// The rules of custom object `obj` (of resource `r`) on a create or
/// update; none run while the schema found type errors, as in Kubernetes.
pub(crate) async fn check_custom(
    r: &crate::resources::Resource,
    obj: &Value,
    old: Option<&Value>,
    found: &[Cause],
) -> Vec<Cause> {
    let Some(v) = crate::crd::version_of(r) else {
        return Vec::new();
    };
    let mut any = Vec::new();
    nodes(&v.schema, "", true, &mut any);
    if any.is_empty() {
        return Vec::new();
    }
    if found.iter().any(|c| c.message.contains("must be of type")) {
        return vec![Cause {
            reason: "FieldValueInvalid",
            field: "<nil>".into(),
            message: "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        }];
    }
    check(&v.schema, obj, old).await
}
