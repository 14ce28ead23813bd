//! `ValidatingAdmissionPolicy` and its bindings
//! (`admissionregistration.k8s.io/v1`), and webhook `matchConditions`.
//! A binding applies its policy where both the policy's
//! `matchConstraints` and the binding's `matchResources` match (rules,
//! excluded rules, resource names, namespace and object selectors); the
//! policy's `matchConditions` then decide, and its `validations` run with
//! `object`, `oldObject`, `request`, `params` (the binding's `paramRef` by
//! name, or once for each object its selector matches), `namespaceObject`,
//! `variables` and `authorizer` ([`super::authz`]) bound. A failed validation denies (`Deny`), warns
//! (`Warn`) or is written to the audit log (`Audit`, kube-apiserver's
//! `validation_failure` annotation), with kube-apiserver's messages;
//! `auditAnnotations` add `POLICY/KEY` annotations; an evaluation error
//! follows `failurePolicy`.
//! The policies and bindings live in an index kept current by the watch
//! that feeds the webhook configurations' (`webhook::Cache::follow`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::{compile, eval, from_json};
use crate::State;
use crate::http::Fail;
use crate::resources::{self, Resource};
use crate::validate::Cause;
use crate::webhook::{GROUP, Request};

const POLICY_VARS: [&str; 7] = [
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
    "authorizer",
];
const WEBHOOK_VARS: [&str; 4] = ["object", "oldObject", "request", "authorizer"];

#[derive(Default)]
struct Index {
    revision: i64,
    policies: BTreeMap<String, Value>,
    /// Bindings in name order.
    bindings: Vec<Value>,
}

/// The policies and their bindings, indexed.
#[derive(Default)]
pub(crate) struct Cache(RwLock<Arc<Index>>);

fn kinds() -> [&'static Resource; 2] {
    let find = |p| resources::find(GROUP, "v1", p).expect("admissionregistration is served");
    [
        find("validatingadmissionpolicies"),
        find("validatingadmissionpolicybindings"),
    ]
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Cache {
    pub(crate) async fn reload(&self, state: &State) -> Result<(), keel_store::StoreError> {
        let rev = state.store.current_revision().await?;
        let mut idx = Index {
            revision: rev,
            ..Index::default()
        };
        for r in kinds() {
            let opts = keel_store::ListOptions {
                revision: Some(rev),
                ..keel_store::ListOptions::default()
            };
            let list = state.store.list(&r.key_prefix(), opts).await?;
            for kv in list.items {
                let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
                    continue;
                };
                if r.kind == "ValidatingAdmissionPolicy" {
                    idx.policies.insert(name_of(&obj).to_string(), obj);
                } else {
                    idx.bindings.push(obj);
                }
            }
        }
        idx.bindings.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        if let Ok(mut w) = self.0.write()
            && w.revision <= rev
        {
            *w = Arc::new(idx);
        }
        Ok(())
    }

    fn snapshot(&self) -> Arc<Index> {
        self.0
            .read()
            .map_or_else(|e| e.into_inner().clone(), |i| i.clone())
    }

    /// Whether any binding exists (the namespace is loaded only then).
    pub(crate) fn any(&self) -> bool {
        !self.snapshot().bindings.is_empty()
    }

    pub(crate) fn revision(&self) -> i64 {
        self.snapshot().revision
    }
}

/// The `request` variable: the admission request as a webhook receives it.
fn request_var(req: &Request, obj: &Value) -> Value {
    crate::webhook::review(req, obj, "")
        .get("request")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The `authorizer` variable: checks for the requesting user (in-process
/// controllers, which send no request over HTTP, are the API server's own
/// privileged identity), with `requestResource` the resource admitted.
fn authorizer_var(state: &State, req: &Request) -> super::Value {
    let user = crate::webhook::USER
        .try_with(|u| (**u).clone())
        .unwrap_or_else(|_| crate::auth::User::new("system:apiserver", &[crate::auth::MASTERS]));
    let request = super::authz::RequestResource {
        group: req.r.group.to_string(),
        resource: req.r.plural.to_string(),
        subresource: req.sub.unwrap_or_default().to_string(),
        namespace: req.namespace.unwrap_or_default().to_string(),
        name: req.name.to_string(),
    };
    super::authz::variable(super::authz::Authorizers::of(state), user, Some(request))
}

/// `(object, oldObject)` of a request: DELETE has no new object.
fn objects(req: &Request, obj: &Value) -> (Value, Value) {
    let object = if req.op == "DELETE" {
        Value::Null
    } else {
        obj.clone()
    };
    (object, req.old.cloned().unwrap_or(Value::Null))
}

fn compile_all(list: Option<&Value>, field: &str, at: &str, vars: &[&str], out: &mut Vec<Cause>) {
    for (i, c) in list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in [field, "messageExpression"] {
            let Some(src) = c.get(f).and_then(Value::as_str) else {
                if f == field {
                    out.push(Cause::required(&format!("{at}[{i}].{f}")));
                }
                continue;
            };
            if let Err(e) = compile(src, vars) {
                out.push(Cause::invalid(&format!("{at}[{i}].{f}"), &json!(src), &e));
            }
        }
    }
}

/// Checks of a webhook's `matchConditions` (`at` names the field).
pub(crate) fn check_match_conditions(w: &Value, at: &str) -> Vec<Cause> {
    let Some(list) = w.get("matchConditions").cloned() else {
        return Vec::new();
    };
    let at = at.to_string();
    super::run_sync(move || {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, c) in list.as_array().into_iter().flatten().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                out.push(Cause::required(&format!("{at}[{i}].name")));
            } else if !seen.insert(name.to_string()) {
                out.push(crate::validate::duplicate(&format!("{at}[{i}].name"), name));
            }
        }
        if list.as_array().is_some_and(|l| l.len() > 64) {
            out.push(Cause {
                reason: "FieldValueTooMany",
                field: at.clone(),
                message: format!(
                    "Too many: {}: must have at most 64 items",
                    list.as_array().map_or(0, Vec::len)
                ),
            });
        }
        compile_all(Some(&list), "expression", &at, &WEBHOOK_VARS, &mut out);
        out
    })
    .unwrap_or_else(|e| vec![Cause::invalid(&at_root(), &json!(""), &e)])
}

fn at_root() -> String {
    "spec".into()
}

/// Checks of a `ValidatingAdmissionPolicy` or binding as admissionregistration makes them.
pub(crate) fn check_object(kind: &str, obj: &Value) -> Vec<Cause> {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if kind == "ValidatingAdmissionPolicyBinding" {
        let mut out = Vec::new();
        if spec
            .get("policyName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            out.push(Cause::required("spec.policyName"));
        }
        let actions: Vec<&str> = spec
            .get("validationActions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if actions.is_empty() {
            out.push(Cause {
                reason: "FieldValueRequired",
                field: "spec.validationActions".into(),
                message: "Required value: at least one validation action is required".into(),
            });
        }
        for (i, a) in actions.iter().enumerate() {
            if !matches!(*a, "Deny" | "Warn" | "Audit") {
                out.push(crate::validate::not_supported(
                    &format!("spec.validationActions[{i}]"),
                    a,
                    &["Audit", "Deny", "Warn"],
                ));
            }
        }
        if let Some(pref) = spec.get("paramRef") {
            match (pref.get("name"), pref.get("selector")) {
                (Some(_), Some(_)) => out.push(Cause::invalid(
                    "spec.paramRef.name",
                    pref.get("name").unwrap_or(&Value::Null),
                    "name and selector are mutually exclusive",
                )),
                (None, None) => out.push(Cause::required("spec.paramRef")),
                _ => {}
            }
        }
        if actions.contains(&"Deny") && actions.contains(&"Warn") {
            out.push(Cause::invalid(
                "spec.validationActions",
                &json!(actions),
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
        return out;
    }
    super::run_sync(move || {
        let mut out = Vec::new();
        if spec.get("matchConstraints").is_none() {
            out.push(Cause::required("spec.matchConstraints"));
        }
        if spec
            .get("validations")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
            && spec
                .get("auditAnnotations")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            out.push(Cause {
                reason: "FieldValueRequired",
                field: "spec.validations".into(),
                message:
                    "Required value: validations or auditAnnotations must contain at least one item"
                        .into(),
            });
        }
        if let Some(p) = spec.get("failurePolicy").and_then(Value::as_str)
            && !matches!(p, "Fail" | "Ignore")
        {
            out.push(crate::validate::not_supported(
                "spec.failurePolicy",
                p,
                &["Fail", "Ignore"],
            ));
        }
        compile_all(
            spec.get("validations"),
            "expression",
            "spec.validations",
            &POLICY_VARS,
            &mut out,
        );
        compile_all(
            spec.get("matchConditions"),
            "expression",
            "spec.matchConditions",
            &POLICY_VARS,
            &mut out,
        );
        compile_all(
            spec.get("variables"),
            "expression",
            "spec.variables",
            &POLICY_VARS,
            &mut out,
        );
        compile_all(
            spec.get("auditAnnotations"),
            "valueExpression",
            "spec.auditAnnotations",
            &POLICY_VARS,
            &mut out,
        );
        out
    })
    .unwrap_or_else(|e| vec![Cause::invalid("spec", &json!(""), &e)])
}

/// Whether a webhook's `matchConditions` all hold; an error follows its
/// `failurePolicy` (Ignore: the webhook is skipped).
pub(crate) async fn webhook_matches(
    state: &State,
    w: &Value,
    req: &Request<'_>,
    obj: &Value,
) -> Result<bool, Fail> {
    let Some(conds) = w
        .get("matchConditions")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .cloned()
    else {
        return Ok(true);
    };
    let (object, old) = objects(req, obj);
    let request = request_var(req, obj);
    let authorizer = authorizer_var(state, req);
    let outcome = super::run(move || {
        let vars = [
            ("object", from_json(&object)),
            ("oldObject", from_json(&old)),
            ("request", from_json(&request)),
            ("authorizer", authorizer),
        ];
        let mut error = None;
        for c in &conds {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let src = c
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match compile(src, &WEBHOOK_VARS).and_then(|p| eval(&p.program, &vars)) {
                Ok(cel::Value::Bool(true)) => {}
                // Any false condition skips the webhook, errors or not.
                Ok(cel::Value::Bool(false)) => return Ok(false),
                Ok(v) => {
                    error.get_or_insert(format!(
                        "matchCondition '{name}': expected a bool, got {v:?}"
                    ));
                }
                Err(e) => {
                    error.get_or_insert(format!("matchCondition '{name}': {e}"));
                }
            }
        }
        error.map_or(Ok(true), Err)
    })
    .await
    .and_then(|r| r);
    match outcome {
        Ok(m) => Ok(m),
        Err(e) => {
            let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
            if w.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
                tracing::warn!(
                    webhook = name,
                    error = e,
                    "match conditions failed; failurePolicy Ignore"
                );
                return Ok(false);
            }
            Err(Fail::new(
                500,
                "InternalError",
                format!(
                    "Internal error occurred: failed calling webhook {name:?}: failed evaluating match conditions: {e}"
                ),
            ))
        }
    }
}

fn rules_match(
    spec: Option<&Value>,
    req: &Request,
    obj: &Value,
    ns_obj: Option<&Value>,
    all_if_none: bool,
) -> bool {
    let Some(spec) = spec else { return all_if_none };
    let named = |rules: Option<&Value>| -> Value {
        // resourceNames narrows a rule to some objects.
        Value::Array(
            rules
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| {
                    r.get("resourceNames")
                        .and_then(Value::as_array)
                        .filter(|n| !n.is_empty())
                        .is_none_or(|n| n.iter().any(|x| x.as_str() == Some(req.name)))
                })
                .cloned()
                .collect(),
        )
    };
    let rules = match spec.get("resourceRules") {
        Some(r) => named(Some(r)),
        None if all_if_none => {
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}])
        }
        None => json!([]),
    };
    let w = json!({
        "rules": rules,
        "namespaceSelector": spec.get("namespaceSelector").cloned().unwrap_or(json!({})),
        "objectSelector": spec.get("objectSelector").cloned().unwrap_or(json!({})),
    });
    if !crate::webhook::applies(&w, req, obj, ns_obj) {
        return false;
    }
    let excluded = named(spec.get("excludeResourceRules"));
    let ex = json!({"rules": excluded});
    !(excluded.as_array().is_some_and(|e| !e.is_empty())
        && crate::webhook::applies(&ex, req, obj, ns_obj))
}

/// What one binding decided.
enum Outcome {
    Pass,
    Failed {
        message: String,
        reason: String,
        /// The failing validation's index (none for binding-level failures).
        index: Option<usize>,
    },
    /// An `auditAnnotations` value, for the audit event as `POLICY/KEY`.
    Annotation {
        key: String,
        value: String,
    },
}

/// Runs the policies bound to `req`; a `Deny` failure refuses it.
pub(crate) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    ns_obj: Option<&Value>,
) -> Result<(), Fail> {
    let idx = state.policies.snapshot();
    if idx.bindings.is_empty() || exempt(req.r) {
        return Ok(());
    }
    for b in &idx.bindings {
        let bname = name_of(b).to_string();
        let pname = b
            .pointer("/spec/policyName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(p) = idx.policies.get(pname) else {
            continue;
        };
        if !rules_match(p.pointer("/spec/matchConstraints"), req, obj, ns_obj, false)
            || !rules_match(b.pointer("/spec/matchResources"), req, obj, ns_obj, true)
        {
            continue;
        }
        let fail_open = p.pointer("/spec/failurePolicy").and_then(Value::as_str) == Some("Ignore");
        let actions: Vec<String> = b
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let params = match params(state, p, b, req).await {
            Ok(v) => v,
            // parameterNotFoundAction: Allow.
            Err(msg) if msg.is_empty() => continue,
            Err(msg) => {
                deny_or_warn(req, pname, &bname, &actions, &msg, "Invalid", None)?;
                continue;
            }
        };
        // A `paramRef.selector` binds every matching object: the policy
        // runs once for each.
        for param in params {
            let outcomes = evaluate(state, p.clone(), req, obj, ns_obj, param, fail_open).await;
            for o in outcomes {
                match o {
                    Outcome::Failed {
                        message,
                        reason,
                        index,
                    } => deny_or_warn(req, pname, &bname, &actions, &message, &reason, index)?,
                    Outcome::Annotation { key, value } => {
                        crate::audit::annotate(req.name, &format!("{pname}/{key}"), value);
                    }
                    Outcome::Pass => {}
                }
            }
        }
    }
    Ok(())
}

/// The audit annotation a failure under the `Audit` action records.
pub(crate) const AUDIT_FAILURE_KEY: &str = "validation.policy.admission.k8s.io/validation_failure";

fn exempt(r: &Resource) -> bool {
    // Policies never see their own kinds, so a bad one can be fixed.
    r.group == GROUP && r.plural.starts_with("validatingadmissionpolic")
}

fn deny_or_warn(
    req: &Request,
    policy: &str,
    binding: &str,
    actions: &[String],
    message: &str,
    reason: &str,
    index: Option<usize>,
) -> Result<(), Fail> {
    if actions.iter().any(|a| a == "Warn") {
        crate::webhook::warn(format!(
            "Validation failed for ValidatingAdmissionPolicy '{policy}' with binding '{binding}': {message}"
        ));
    }
    if actions.iter().any(|a| a == "Audit") {
        // kube-apiserver's annotation: a JSON list, one entry per failure
        // (audit.rs joins the lists of several failures).
        let mut entry = json!({
            "message": message,
            "policy": policy,
            "binding": binding,
            "validationActions": actions,
        });
        if let Some(i) = index {
            entry["expressionIndex"] = json!(i);
        }
        crate::audit::annotate(req.name, AUDIT_FAILURE_KEY, json!([entry]).to_string());
    }
    if !actions.iter().any(|a| a == "Deny") {
        return Ok(());
    }
    let text = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
    );
    // admission.NewForbidden's wording, whatever the reason then says.
    let resource = if req.r.group.is_empty() {
        req.r.plural.to_string()
    } else {
        format!("{}.{}", req.r.plural, req.r.group)
    };
    let full = if req.name.is_empty() {
        format!("{resource} is forbidden: {text}")
    } else {
        format!("{resource} {:?} is forbidden: {text}", req.name)
    };
    let (code, reason) = match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    Err(Fail::new(code, reason, full).with_details(json!({
        "name": req.name,
        "group": req.r.group,
        "kind": req.r.plural,
        "causes": [{"message": text}],
    })))
}

/// The binding's parameter objects (`paramRef` by name: one; by
/// selector: every match), `[Null]` without `paramKind`; `Err` is a denial
/// message, empty for `parameterNotFoundAction: Allow`.
async fn params(
    state: &State,
    policy: &Value,
    binding: &Value,
    req: &Request<'_>,
) -> Result<Vec<Value>, String> {
    let Some(kind) = policy.pointer("/spec/paramKind") else {
        return Ok(vec![Value::Null]);
    };
    let Some(pref) = binding.pointer("/spec/paramRef") else {
        return Err(
            "failed to configure binding: no paramRef provided for policy with paramKind".into(),
        );
    };
    let api = kind
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let kind = kind.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(r) = resources::all().into_iter().find(|x| {
        x.group == group && x.version == version && x.kind == kind && !x.plural.contains('/')
    }) else {
        return Err(format!(
            "failed to configure policy: failed to find resource referenced by paramKind: '{api}, Kind={kind}'"
        ));
    };
    let name = pref.get("name").and_then(Value::as_str).unwrap_or_default();
    let ns = pref
        .get("namespace")
        .and_then(Value::as_str)
        .or(req.namespace)
        .filter(|_| r.namespaced);
    let found: Vec<Value> = if let Some(sel) = pref.get("selector") {
        let sel = crate::selectors::LabelSelector::from_json(sel);
        match state
            .store
            .list(&r.list_prefix(ns), keel_store::ListOptions::default())
            .await
        {
            Ok(page) => page
                .items
                .iter()
                .filter_map(|kv| crate::handlers::decode(state, kv, kv.mod_revision).ok())
                .filter(|v| sel.matches(v.pointer("/metadata/labels")))
                .collect(),
            Err(e) => return Err(format!("failed to list params: {e}")),
        }
    } else if name.is_empty() {
        Vec::new()
    } else {
        match state.store.get(&r.key(ns, name)).await {
            Ok(Some(kv)) => crate::handlers::decode(state, &kv, kv.mod_revision)
                .ok()
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    };
    match found {
        v if !v.is_empty() => Ok(v),
        _ if pref.get("parameterNotFoundAction").and_then(Value::as_str) == Some("Allow") => {
            Err(String::new())
        }
        _ => Err("no params found for policy binding with `Deny` parameterNotFoundAction".into()),
    }
}

async fn evaluate(
    state: &State,
    p: Value,
    req: &Request<'_>,
    obj: &Value,
    ns_obj: Option<&Value>,
    params: Value,
    fail_open: bool,
) -> Vec<Outcome> {
    let (object, old) = objects(req, obj);
    let request = request_var(req, obj);
    let ns = ns_obj.cloned().unwrap_or(Value::Null);
    let authorizer = authorizer_var(state, req);
    let result = super::run(move || {
        let spec = p.get("spec").cloned().unwrap_or(Value::Null);
        let mut vars = vec![
            ("object", from_json(&object)),
            ("oldObject", from_json(&old)),
            ("request", from_json(&request)),
            ("params", from_json(&params)),
            ("namespaceObject", from_json(&ns)),
            ("authorizer", authorizer),
        ];
        let list = |k: &str| {
            spec.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        // Variables, in order: each may read those before it.
        let mut cel_vars: Vec<(String, cel::Value)> = Vec::new();
        for v in list("variables") {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let src = v
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut all = vars.clone();
            all.push(("variables", vars_map(&cel_vars)));
            match compile(src, &POLICY_VARS).and_then(|c| eval(&c.program, &all)) {
                Ok(x) => cel_vars.push((name, x)),
                Err(e) => return Err(format!("variable '{name}': {e}")),
            }
        }
        vars.push(("variables", vars_map(&cel_vars)));
        for c in list("matchConditions") {
            let src = c
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match compile(src, &POLICY_VARS).and_then(|c| eval(&c.program, &vars)) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => return Ok(Vec::new()),
                Ok(v) => {
                    return Err(format!(
                        "matchCondition {src:?} evaluated to {v:?}, not a bool"
                    ));
                }
                Err(e) => return Err(format!("expression '{src}' resulted in error: {e}")),
            }
        }
        let mut out = Vec::new();
        for (index, v) in list("validations").into_iter().enumerate() {
            let src = v
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let reason = v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("Invalid")
                .to_string();
            match compile(src, &POLICY_VARS).and_then(|c| eval(&c.program, &vars)) {
                Ok(cel::Value::Bool(true)) => out.push(Outcome::Pass),
                Ok(cel::Value::Bool(false)) => {
                    let message = v
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|m| {
                            match compile(m, &POLICY_VARS).and_then(|c| eval(&c.program, &vars)) {
                                Ok(cel::Value::String(s)) if !s.trim().is_empty() => {
                                    Some(s.to_string())
                                }
                                _ => None,
                            }
                        })
                        .or_else(|| {
                            v.get("message")
                                .and_then(Value::as_str)
                                .filter(|m| !m.is_empty())
                                .map(String::from)
                        })
                        .unwrap_or_else(|| format!("failed expression: {}", src.trim()));
                    out.push(Outcome::Failed {
                        message,
                        reason,
                        index: Some(index),
                    });
                }
                Ok(x) => {
                    if !fail_open {
                        out.push(Outcome::Failed {
                            message: format!(
                                "expression '{src}' resulted in error: expected a bool, got {x:?}"
                            ),
                            reason: "Invalid".into(),
                            index: Some(index),
                        });
                    }
                }
                Err(e) => {
                    if !fail_open {
                        out.push(Outcome::Failed {
                            message: format!("expression '{src}' resulted in error: {e}"),
                            reason: "Invalid".into(),
                            index: Some(index),
                        });
                    }
                }
            }
        }
        for a in list("auditAnnotations") {
            let key = a.get("key").and_then(Value::as_str).unwrap_or_default();
            let src = a
                .get("valueExpression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match compile(src, &POLICY_VARS).and_then(|c| eval(&c.program, &vars)) {
                // A null value records nothing.
                Ok(cel::Value::Null) => {}
                Ok(cel::Value::String(v)) => out.push(Outcome::Annotation {
                    key: key.to_string(),
                    value: v.to_string(),
                }),
                Ok(x) if !fail_open => out.push(Outcome::Failed {
                    message: format!(
                        "valueExpression '{src}' resulted in error: value expression must evaluate to a string or null, got {x:?}"
                    ),
                    reason: "Invalid".into(),
                    index: None,
                }),
                Err(e) if !fail_open => out.push(Outcome::Failed {
                    message: format!("valueExpression '{src}' resulted in error: {e}"),
                    reason: "Invalid".into(),
                    index: None,
                }),
                _ => {}
            }
        }
        Ok(out)
    })
    .await
    .and_then(|r| r);
    match result {
        Ok(o) => o,
        Err(_) if fail_open => Vec::new(),
        Err(e) => vec![Outcome::Failed {
            message: e,
            reason: "Invalid".into(),
            index: None,
        }],
    }
}

fn vars_map(list: &[(String, cel::Value)]) -> cel::Value {
    let map: std::collections::HashMap<cel::objects::Key, cel::Value> = list
        .iter()
        .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), v.clone()))
        .collect();
    cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
}
