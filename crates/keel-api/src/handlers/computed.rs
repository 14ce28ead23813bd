//! Requests that are not stored objects: pod binding (`pods/binding` and
//! `bindings`), pod eviction (`pods/eviction`, honouring
//! `PodDisruptionBudgets`), `componentstatuses`, and the review kinds
//! (authentication and authorization questions, answered in
//! [`crate::auth`]).

use hyper::{Method, Response};
use serde_json::{Value, json};

use super::object::parse_body;
use super::write::update;
use super::{Ctx, DeleteOptions, delete, meta, meta_str, respond};
use crate::http::{Body, Fail, json_response, qualified};
use crate::resources::{self, Resource};
use crate::selectors::LabelSelector;

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// Requests on resources whose objects are not stored.
pub(super) async fn dispatch(ctx: &Ctx, method: &Method) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    match (method, r.kind, &ctx.target.name) {
        (&Method::POST, "Binding", None) => {
            let body = parse_body(ctx)?;
            let pod = meta_str(&body, "name");
            bind(ctx, &pod, &body).await
        }
        (&Method::GET, "ComponentStatus", name) => {
            let healthy = ctx.state.store.current_revision().await.is_ok();
            let cs = json!({
                "kind": "ComponentStatus",
                "apiVersion": "v1",
                "metadata": {"name": "etcd-0"},
                "conditions": [{
                    "type": "Healthy",
                    "status": if healthy { "True" } else { "False" },
                    "message": if healthy { "ok" } else { "the datastore does not answer" },
                }],
            });
            match name.as_deref() {
                Some("etcd-0") => Ok(respond(ctx, 200, &cs)),
                Some(n) => Err(Fail::not_found(r, n)),
                None if super::wants_table(&ctx.accept) => Ok(json_response(
                    200,
                    &crate::table::table(r.kind, &[cs], json!({}), super::include_mode(&ctx.query)),
                )),
                None => Ok(json_response(
                    200,
                    &json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": [cs]}),
                )),
            }
        }
        (&Method::POST, _, None) if r.verbs == resources::Verbs::CreateOnly => {
            let mut body = parse_body(ctx)?;
            super::object::check_object(ctx, &mut body)?;
            let answer = crate::auth::review(ctx, body).await?;
            Ok(json_response(201, &answer))
        }
        _ => Err(Fail::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", qualified(r)),
        )),
    }
}

/// `pods/binding`: assigns a pod to a node, once.
pub(super) async fn bind(ctx: &Ctx, pod: &str, binding: &Value) -> Result<Response<Body>, Fail> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(Fail::new(
            422,
            "Invalid",
            format!("Binding \"{pod}\" is invalid: target.name: Required value"),
        ));
    }
    let main = Ctx {
        target: crate::http::Target {
            subresource: Some("binding".into()),
            ..pod_ctx(ctx).target
        },
        ..pod_ctx(ctx)
    };
    let tr = super::track(&main, Some("binding"));
    update(&main, pod, None, Some(&tr), |cur| {
        let assigned = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !assigned.is_empty() {
            return Err(Fail::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{pod}\": pod {pod} is already assigned to node \"{assigned}\""
                ),
            ));
        }
        let mut v = cur.clone();
        v["spec"]["nodeName"] = json!(node);
        Ok(v)
    })
    .await?;
    Ok(json_response(201, &success(201)))
}

/// The context of the pod a pod subresource request names.
fn pod_ctx(ctx: &Ctx) -> Ctx {
    Ctx {
        target: crate::http::Target {
            resource: pods(),
            subresource: None,
            ..ctx.target.clone()
        },
        query: ctx.query.clone(),
        state: ctx.state.clone(),
        accept: String::new(),
        content_type: String::new(),
        user_agent: ctx.user_agent.clone(),
        user: ctx.user.clone(),
        body: bytes::Bytes::new(),
    }
}

/// `pods/eviction`: deletes a pod unless a `PodDisruptionBudget` covering it
/// allows no disruption now; a pod that is not running is always evictable.
pub(super) async fn evict(ctx: &Ctx, pod: &str) -> Result<Response<Body>, Fail> {
    let eviction = parse_body(ctx)?;
    let ns = ctx.target.namespace.clone().unwrap_or_default();
    let (_, cur) = super::get_current(&ctx.state, pods(), Some(&ns), pod).await?;
    let phase = cur
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || meta(&cur, "deletionTimestamp").is_some();
    if !ignore_pdb {
        let pdbs = resources::find("policy", "v1", "poddisruptionbudgets")
            .expect("PodDisruptionBudgets are served");
        let (items, _, _) = super::read::list_in(ctx, pdbs, Some(&ns)).await?;
        for pdb in items {
            let Some(sel) = pdb.pointer("/spec/selector") else {
                continue;
            };
            if !LabelSelector::from_json(sel).matches(meta(&cur, "labels")) {
                continue;
            }
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if allowed < 1 {
                return Err(budget_exhausted(&pdb));
            }
            // The disruption is spent until the budget's controller recounts.
            let pdb_ctx = Ctx {
                target: crate::http::Target {
                    resource: pdbs,
                    namespace: Some(ns.clone()),
                    name: Some(name_of(&pdb)),
                    subresource: Some("status".into()),
                },
                ..pod_ctx(ctx)
            };
            let tr = super::track(&pdb_ctx, Some("status"));
            update(&pdb_ctx, &name_of(&pdb), None, Some(&tr), |p| {
                let mut v = p.clone();
                let n = p
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                // Another eviction spent it since the read.
                if n < 1 {
                    return Err(budget_exhausted(p));
                }
                v["status"]["disruptionsAllowed"] = json!(n - 1);
                // Until the disruption controller sees the pod go, it does
                // not count as healthy (Kubernetes' disruptedPods).
                if !v["status"]
                    .get("disruptedPods")
                    .is_some_and(Value::is_object)
                {
                    v["status"]["disruptedPods"] = json!({});
                }
                v["status"]["disruptedPods"][pod] = json!(super::now());
                Ok(v)
            })
            .await?;
        }
    }
    let opts = DeleteOptions {
        grace_period: None,
        precondition_uid: eviction
            .pointer("/deleteOptions/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: super::dry_run(&ctx.query),
        ..DeleteOptions::default()
    };
    delete(&ctx.state, pods(), Some(&ns), pod, &opts).await?;
    Ok(json_response(201, &success(201)))
}

/// The 429 an eviction gets when `pdb` allows no disruption.
fn budget_exhausted(pdb: &Value) -> Fail {
    let name = meta_str(pdb, "name");
    let want = pdb
        .pointer("/status/desiredHealthy")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let have = pdb
        .pointer("/status/currentHealthy")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Fail::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .with_details(json!({"causes": [{
        "reason": "DisruptionBudget",
        "message": format!("The disruption budget {name} needs {want} healthy pods and has {have} currently"),
    }]}))
}

fn name_of(obj: &Value) -> String {
    meta_str(obj, "name")
}

/// `serviceaccounts/token` (`TokenRequest`, `kubectl create token`): a signed
/// token for the account, for the audiences asked (else this API's), for
/// `expirationSeconds` (at least 10 minutes; 1 hour by default), bound to a
/// Pod, Secret or Node when asked.
pub(super) async fn token_request(ctx: &Ctx, sa: &str) -> Result<Response<Body>, Fail> {
    use crate::tokens::{Bound, DEFAULT_EXPIRATION, ISSUER, MIN_EXPIRATION};
    let mut req = parse_body(ctx)?;
    let ns = ctx.target.namespace.clone().unwrap_or_default();
    let accounts = ctx.target.resource;
    let (_, account) = super::get_current(&ctx.state, accounts, Some(&ns), sa).await?;
    let invalid = |field: &str, msg: String| {
        Fail::new(
            422,
            "Invalid",
            format!("TokenRequest.authentication.k8s.io \"{sa}\" is invalid: {field}: {msg}"),
        )
    };
    let expires = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expires < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expires}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expires > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expires}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut audiences: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_string());
    }
    let bound = match req.pointer("/spec/boundObjectRef").filter(|b| !b.is_null()) {
        None => None,
        Some(b) => {
            let kind = b.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
            let (plural, key, namespaced) = match kind {
                "Pod" => ("pods", "pod", true),
                "Secret" => ("secrets", "secret", true),
                "Node" => ("nodes", "node", false),
                other => {
                    return Err(Fail::bad_request(format!(
                        "cannot bind token for serviceaccount \"{sa}\" to object of type {other}"
                    )));
                }
            };
            let r = resources::find("", "v1", plural).expect("served");
            let (_, obj) =
                super::get_current(&ctx.state, r, namespaced.then_some(ns.as_str()), name).await?;
            let uid = meta_str(&obj, "uid");
            if let Some(want) = b
                .get("uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                && want != uid
            {
                return Err(Fail::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {plural} \"{name}\": the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            Some(Bound {
                kind: key,
                name: name.to_string(),
                uid,
            })
        }
    };
    let now = jiff::Timestamp::now();
    let claims = crate::tokens::claims(
        &ns,
        sa,
        &meta_str(&account, "uid"),
        &audiences,
        now.as_second(),
        expires,
        bound.as_ref(),
    );
    let token = ctx.state.sa_keys.sign(&claims);
    let expiry = jiff::Timestamp::from_second(now.as_second() + expires)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    tracing::info!(
        namespace = ns,
        serviceaccount = sa,
        ?audiences,
        expires,
        "token issued"
    );
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": sa, "namespace": ns, "creationTimestamp": null});
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expires);
    req["status"] = json!({"token": token, "expirationTimestamp": expiry});
    Ok(json_response(201, &req))
}
