//! PATCH: JSON merge, JSON (RFC 6902) and strategic merge patches applied
//! to the current object in a compare-and-swap loop, and server-side apply
//! with field ownership (including kubectl's client-side to server-side
//! migration).

use bytes::Bytes;
use hyper::Response;
use keel_store::KeyValue;
use serde_json::{Value, json};

use super::object::check_object;
use super::write::{create, scale_write, update};
use super::{
    Ctx, conflict, dry_run, invalid, manager_entry, meta, meta_str, respond, scope_for,
    set_managed, store_fail, track,
};
use crate::http::{Body, Fail};
use crate::managed::{self, Scope};
use crate::patch;
use crate::validate::Cause;

pub(super) async fn patch_request(ctx: &Ctx, name: &str) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json" {
        return apply(ctx, name).await;
    }
    let patch_doc: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| Fail::bad_request(format!("error decoding patch: {e}")))?;
    let kind = match ct.as_str() {
        "application/merge-patch+json" => 0,
        "application/json-patch+json" => 1,
        "application/strategic-merge-patch+json" if crate::strategic::schema_of(r).is_some() => 2,
        other => {
            if crate::crd::version_of(r).is_some() {
                // Custom resources take no strategic merge patch: kubectl
                // then says the type does not support it.
                return Err(Fail::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            return Err(Fail::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                ),
            ));
        }
    };
    let apply_patch = |base: &Value| -> Result<Value, Fail> {
        let mut v = base.clone();
        match kind {
            0 => patch::merge_patch(&mut v, &patch_doc),
            1 => patch::json_patch(&mut v, &patch_doc).map_err(|e| {
                Fail::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?,
            _ => {
                let schema = if ctx.target.subresource.as_deref() == Some("scale") {
                    None
                } else {
                    crate::strategic::schema_of(r)
                };
                let defs = serde_json::Map::new();
                let schema = schema.unwrap_or_else(|| crate::strategic::Schema::new(&defs, None));
                crate::strategic::apply(&mut v, &patch_doc, schema).map_err(smp_fail)?;
            }
        }
        Ok(v)
    };
    if ctx.query.get("force").is_some() {
        return Err(invalid(
            r,
            name,
            &[Cause {
                reason: "FieldValueForbidden",
                field: "force".into(),
                message: "Forbidden: may not be specified for non-apply patch".into(),
            }],
        ));
    }
    if ctx.target.subresource.as_deref() == Some("scale") {
        return scale_write(ctx, name, |scale| apply_patch(scale)).await;
    }
    let pinned = patch_doc
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    let tr = track(ctx, ctx.target.subresource.as_deref());
    let (obj, _) = update(ctx, name, pinned, Some(&tr), |cur| {
        let mut v = apply_patch(cur)?;
        // A patch that sets resourceVersion (kubectl's managedFields
        // migration does) makes it a precondition.
        if meta_str(&v, "resourceVersion") != meta_str(cur, "resourceVersion") {
            return Err(conflict(r, name));
        }
        let fake = Ctx {
            state: ctx.state.clone(),
            target: ctx.target.clone(),
            query: ctx.query.clone(),
            accept: String::new(),
            content_type: String::new(),
            user_agent: String::new(),
            user: ctx.user.clone(),
            body: Bytes::new(),
        };
        check_object(&fake, &mut v)?;
        Ok(v)
    })
    .await?;
    Ok(respond(ctx, 200, &obj))
}

/// kube-apiserver's answers to a strategic merge patch it cannot apply.
fn smp_fail(e: crate::strategic::SmpError) -> Fail {
    use crate::strategic::SmpError;
    match e {
        SmpError::BadRequest(m) => Fail::bad_request(m),
        SmpError::Invalid(m) => Fail::new(422, "", m),
        SmpError::Other(m) => Fail::new(500, "", m),
    }
}

async fn apply(ctx: &Ctx, name: &str) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let Some(manager) = ctx
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .map(String::from)
    else {
        return Err(Fail::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    };
    let mut applied: Value = serde_yaml_ng::from_slice(&ctx.body)
        .map_err(|e| Fail::bad_request(format!("error decoding YAML: {e}")))?;
    check_object(ctx, &mut applied)?;
    if meta_str(&applied, "name") != name {
        return Err(Fail::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&applied, "name")
        )));
    }
    let t = &ctx.target;
    let sub = t.subresource.as_deref();
    let scope = scope_for(r, sub);
    let mut clean = applied.clone();
    if let Some(m) = clean.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            m.remove(f);
        }
    }
    if scope == Scope::MainWithoutStatus
        && let Some(m) = clean.as_object_mut()
    {
        m.remove("status");
    }
    let force = ctx.query.flag("force");
    let me = manager_entry(r, &manager, "Apply", sub.unwrap_or_default());
    if state_get(ctx, name).await?.is_none() {
        let mut entries = Vec::new();
        let mut obj = managed::apply(&json!({}), &clean, &mut entries, me.clone(), true, scope)
            .map_err(|c| apply_conflict(&c))?;
        set_managed(&mut obj, &entries);
        match create(&ctx.state, r, obj, dry_run(&ctx.query), None).await {
            Ok(o) => return Ok(respond(ctx, 201, &o)),
            Err(f) if f.reason == "AlreadyExists" => {}
            Err(f) => return Err(f),
        }
    }
    let (obj, _) = update(ctx, name, None, None, |cur| {
        let entries = managed::parse_entries(meta(cur, "managedFields"));
        let mut out = entries.clone();
        let mut result = managed::apply(cur, &clean, &mut out, me.clone(), force, scope);
        if let Err(conflicts) = &result
            && manager == KUBECTL
        {
            // kubectl moving an object from client-side to server-side
            // apply may take the fields its last-applied annotation lists.
            let allowed = last_applied_fields(cur);
            let rest: Vec<managed::Conflict> = conflicts
                .iter()
                .filter(|c| !allowed.contains(&c.path))
                .cloned()
                .collect();
            result = if rest.is_empty() {
                out.clone_from(&entries);
                managed::apply(cur, &clean, &mut out, me.clone(), true, scope)
            } else {
                Err(rest)
            };
        }
        let mut live = result.map_err(|c| apply_conflict(&c))?;
        set_managed(&mut live, &out);
        if manager == KUBECTL {
            sync_last_applied(&mut live, &applied);
        }
        Ok(live)
    })
    .await?;
    Ok(respond(ctx, 200, &obj))
}

/// kubectl's own field manager, which Kubernetes lets upgrade objects from
/// client-side apply.
const KUBECTL: &str = "kubectl";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Fields both in the object and in its last client-side applied
/// configuration.
fn last_applied_fields(live: &Value) -> managed::FieldSet {
    let Some(last) = meta(live, "annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    else {
        return managed::FieldSet::new();
    };
    let live_fields = managed::config_fields(live);
    managed::config_fields(&last)
        .intersection(&live_fields)
        .cloned()
        .collect()
}

/// Keeps an existing last-applied annotation in step with what kubectl
/// applies server-side, so a later client-side apply diffs correctly.
fn sync_last_applied(live: &mut Value, applied: &Value) {
    if meta(live, "annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_none()
    {
        return;
    }
    let mut last = applied.clone();
    if let Some(a) = last
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
        if a.is_empty()
            && let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("annotations");
        }
    }
    let text = serde_json::to_string(&last).unwrap_or_default();
    live["metadata"]["annotations"][LAST_APPLIED] = json!(format!("{text}\n"));
}

/// The 409 of an apply that would change fields other managers own, worded
/// as Kubernetes words it (kubectl prints it with its own advice).
fn apply_conflict(conflicts: &[managed::Conflict]) -> Fail {
    let message = if let [c] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager,
            managed::display(&c.path)
        )
    } else {
        let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for c in conflicts.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", managed::display(&c.path)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager),
                "field": managed::display(&c.path),
            })
        })
        .collect();
    Fail::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
}

async fn state_get(ctx: &Ctx, name: &str) -> Result<Option<KeyValue>, Fail> {
    let t = &ctx.target;
    ctx.state
        .store
        .get(&t.resource.key(t.namespace.as_deref(), name))
        .await
        .map_err(|e| store_fail(t.resource, name, e))
}
