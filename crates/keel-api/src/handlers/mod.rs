//! The REST verbs on stored objects, one module per family:
//! [`object`] (storage encoding, request bodies, decoding checks),
//! [`write`] (create, update, the `scale` subresource), [`patch`] (merge,
//! JSON and strategic patches, server-side apply), [`delete`] (deletion with
//! finalizers; propagation is the garbage collector's, in keel-controllers),
//! [`read`] (get, list, watch, Table output). This module holds what they
//! share: the request context, bookkeeping helpers, errors and dispatch.

mod computed;
mod delete;
mod object;
mod patch;
mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Response};
use keel_store::StoreError;
use serde_json::{Value, json};

use crate::State;
use crate::http::{Body, Fail, Query, Target, json_response, qualified};
use crate::managed::{self, Scope};
use crate::resources::Resource;
use crate::table::{self, Include};
use crate::validate::Cause;

pub(crate) use delete::delete;
pub use delete::{AGENT_NODE, DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
pub(crate) use object::{Decoded, decode, encode, get_current};
pub(crate) use write::{create, update_object};

/// Largest stored object (etcd's default request limit).
pub(crate) const MAX_OBJECT: usize = 1536 * 1024;

pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub target: Target,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// Who is asking (authenticated).
    pub user: Arc<crate::auth::User>,
    pub body: Bytes,
}

/// Who a non-apply write is recorded for in `managedFields`.
pub(crate) struct Track {
    pub manager: String,
    pub subresource: String,
    pub scope: Scope,
}

/// The field manager of a request: `fieldManager`, else the client's name
/// from its User-Agent, as Kubernetes does.
fn manager_name(ctx: &Ctx) -> String {
    if let Some(m) = ctx.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = ctx.user_agent.split('/').next().unwrap_or_default();
    let ua: String = ua.chars().take(128).collect();
    if ua.is_empty() { "unknown".into() } else { ua }
}

/// Which fields a write through `sub` may own.
pub(crate) fn scope_for(r: &Resource, sub: Option<&str>) -> Scope {
    match sub {
        Some("status") => Scope::StatusOnly,
        None | Some("scale") if r.status && r.kind != "Node" => Scope::MainWithoutStatus,
        _ => Scope::Whole,
    }
}

fn track(ctx: &Ctx, sub: Option<&str>) -> Track {
    Track {
        manager: manager_name(ctx),
        subresource: sub.unwrap_or_default().to_string(),
        scope: scope_for(ctx.target.resource, sub),
    }
}

fn manager_entry(r: &Resource, manager: &str, operation: &str, sub: &str) -> managed::Entry {
    managed::Entry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: r.api_version(),
        time: now(),
        subresource: sub.to_string(),
        fields: managed::FieldSet::new(),
    }
}

/// Records a non-apply write from `old` to `new` in `new`'s managedFields.
fn record_update(r: &Resource, t: &Track, old: &Value, new: &mut Value) {
    let mut entries = managed::parse_entries(meta(new, "managedFields"));
    let me = manager_entry(r, &t.manager, "Update", &t.subresource);
    managed::track_update(&mut entries, old, new, me, t.scope);
    set_managed(new, &entries);
}

fn set_managed(obj: &mut Value, entries: &[managed::Entry]) {
    if entries.is_empty() {
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    } else {
        set_meta(obj, "managedFields", managed::entries_json(entries));
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random RFC 4122 version 4 UUID, as object uids are.
pub fn new_uid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = b.iter().fold(String::new(), |mut acc, x| {
        let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{x:02x}"));
        acc
    });
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(crate) fn random_suffix() -> String {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

fn store_fail(r: &Resource, name: &str, e: StoreError) -> Fail {
    match e {
        StoreError::NotFound(_) => Fail::not_found(r, name),
        StoreError::AlreadyExists(_) => Fail::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(r)),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.plural})),
        StoreError::Conflict { .. } => conflict(r, name),
        StoreError::Expired { .. } => {
            Fail::new(410, "Expired", format!("too old resource version: {e}"))
        }
        e => Fail::internal(error_chain(&e)),
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn conflict(r: &Resource, name: &str) -> Fail {
    Fail::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            qualified(r)
        ),
    )
    .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
}

fn invalid(r: &Resource, name: &str, causes: &[Cause]) -> Fail {
    let summary: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let msg = if summary.len() == 1 {
        summary[0].clone()
    } else {
        format!("[{}]", summary.join(", "))
    };
    Fail::new(
        422,
        "Invalid",
        format!("{}.{} \"{name}\" is invalid: {msg}", r.kind, if r.group.is_empty() { "" } else { r.group })
            .replace(". \"", " \""),
    )
    .with_details(json!({
        "name": name,
        "group": r.group,
        "kind": r.kind,
        "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
    }))
}

fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get("metadata").and_then(|m| m.get(field))
}

fn meta_str(obj: &Value, field: &str) -> String {
    meta(obj, field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn set_meta(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert(field.into(), v);
    }
}

// ---------- dispatch ----------

pub(crate) async fn dispatch(ctx: Ctx, method: &Method) -> Result<Response<Body>, Fail> {
    let t = &ctx.target;
    if !t.resource.verbs.stored() {
        return computed::dispatch(&ctx, method).await;
    }
    let pod_sub = |s: &str| {
        t.resource.kind == "Pod"
            && t.resource.group.is_empty()
            && s == t.subresource.as_deref().unwrap_or_default()
    };
    if let Some(name) = &t.name
        && method == Method::POST
    {
        if pod_sub("binding") {
            let body = object::parse_body(&ctx)?;
            return computed::bind(&ctx, name, &body).await;
        }
        if pod_sub("eviction") {
            return computed::evict(&ctx, name).await;
        }
        if t.resource.kind == "ServiceAccount" && t.subresource.as_deref() == Some("token") {
            return computed::token_request(&ctx, name).await;
        }
    }
    if let Some(sub) = &t.subresource
        && !(sub == "status" && t.resource.status
            || sub == "scale" && t.resource.scale
            || sub == "finalize" && t.resource.kind == "Namespace")
    {
        return Err(Fail::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    match (method, &t.name) {
        (&Method::GET, None) if ctx.query.flag("watch") => read::watch(ctx).await,
        (&Method::GET, None) => read::list(&ctx).await,
        (&Method::GET, Some(name)) => {
            let (_, obj) =
                get_current(&ctx.state, t.resource, t.namespace.as_deref(), name).await?;
            if t.subresource.as_deref() == Some("scale") {
                return Ok(json_response(200, &write::scale_view(t.resource, &obj)));
            }
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::POST, None) => {
            let mut obj = object::parse_body(&ctx)?;
            object::check_object(&ctx, &mut obj)?;
            if t.resource.kind == "CertificateSigningRequest" {
                // The requester is who asked, never what the body claims
                // (signers and approvers decide on it).
                obj["spec"]["username"] = json!(ctx.user.name);
                obj["spec"]["uid"] = json!(ctx.user.uid);
                obj["spec"]["groups"] = json!(ctx.user.groups);
            }
            crate::node_authz::restrict_create(&ctx.user, t.resource, &obj)?;
            let tr = track(&ctx, None);
            let obj = create(&ctx.state, t.resource, obj, dry_run(&ctx.query), Some(&tr)).await?;
            Ok(respond(&ctx, 201, &obj))
        }
        (&Method::PUT, Some(name)) => {
            let mut obj = object::parse_body(&ctx)?;
            if t.subresource.as_deref() == Some("scale") {
                return write::scale_write(&ctx, name, |_| Ok(obj.clone())).await;
            }
            object::check_object(&ctx, &mut obj)?;
            if meta_str(&obj, "name") != *name {
                return Err(Fail::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&obj, "name")
                )));
            }
            let expected = meta_str(&obj, "resourceVersion");
            let tr = track(&ctx, t.subresource.as_deref());
            let (obj, _) = write::update(
                &ctx,
                name,
                Some(expected).filter(|s| !s.is_empty()),
                Some(&tr),
                |_| Ok(obj.clone()),
            )
            .await?;
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::PATCH, Some(name)) => patch::patch_request(&ctx, name).await,
        (&Method::DELETE, Some(name)) => {
            let opts = DeleteOptions::from_request(&ctx)?;
            let obj = delete(&ctx.state, t.resource, t.namespace.as_deref(), name, &opts).await?;
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::DELETE, None) => delete::delete_collection(&ctx).await,
        _ => Err(Fail::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on this resource"),
        )),
    }
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun") == Some("All")
}

fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn include_mode(q: &Query) -> Include {
    match q.get("includeObject") {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    }
}

fn respond(ctx: &Ctx, code: u16, obj: &Value) -> Response<Body> {
    let r = ctx.target.resource;
    if wants_table(&ctx.accept) && obj.get("kind").and_then(Value::as_str) == Some(r.kind) {
        let t = make_table(
            r,
            std::slice::from_ref(obj),
            json!({"resourceVersion": meta_str(obj, "resourceVersion")}),
            include_mode(&ctx.query),
        );
        return json_response(code, &t);
    }
    if crate::crd::version_of(r).is_some()
        && obj.get("apiVersion").and_then(Value::as_str) != Some(&r.api_version())
    {
        // Conversion strategy None: another version differs only in apiVersion.
        let mut o = obj.clone();
        o["apiVersion"] = json!(r.api_version());
        return json_response(code, &o);
    }
    json_response(code, obj)
}

/// The Table of `objects` of `r` (a custom resource's printer columns).
fn make_table(r: &Resource, objects: &[Value], meta: Value, include: Include) -> Value {
    match crate::crd::version_of(r) {
        Some(v) => crate::crd::table(&v, objects, meta, include),
        None => table::table(r.kind, objects, meta, include),
    }
}

// ---------- startup ----------

/// Creates the default namespaces (and keel's `keel-overlay`, where nodes
/// record the overlay networks of plain containers).
pub(crate) async fn bootstrap(state: &Arc<State>) -> Result<(), StoreError> {
    let r = namespaces();
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        crate::node_authz::OVERLAY_NS,
    ] {
        if state.store.get(&r.key(None, ns)).await?.is_none() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
            match create(state, r, obj, false, None).await {
                Ok(_) => {}
                Err(f) if f.reason == "AlreadyExists" => {}
                Err(f) => {
                    return Err(StoreError::InvalidUrl {
                        url: String::new(),
                        reason: f.message,
                    });
                }
            }
        }
    }
    // Stores written before namespaces had their defaults get them now.
    let page = state
        .store
        .list(&r.list_prefix(None), keel_store::ListOptions::default())
        .await?;
    for kv in &page.items {
        if let Ok(obj) = decode(state, kv, kv.mod_revision)
            && meta(&obj, "deletionTimestamp").is_none()
        {
            write::namespace_defaults(state, &meta_str(&obj, "name")).await;
        }
    }
    Ok(())
}

pub(crate) fn namespaces() -> &'static Resource {
    crate::resources::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Periodic compaction keeps the revision log bounded.
pub(crate) fn start_background(state: &Arc<State>) {
    let st = state.clone();
    tokio::spawn(async move {
        let mut compacted = 0;
        loop {
            tokio::time::sleep(Duration::from_mins(1)).await;
            if let Ok(rev) = st.store.current_revision().await {
                let target = rev - 10_000;
                if target > compacted {
                    match st.store.compact(target).await {
                        Ok(()) => {
                            compacted = target;
                            tracing::debug!(revision = target, "compacted the store");
                        }
                        Err(e) => {
                            tracing::warn!(revision = target, error = %error_chain(&e), "compaction failed");
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn invalid_message_names_kind() {
        let r = crate::resources::find("apps", "v1", "deployments").unwrap();
        let f = invalid(
            r,
            "x",
            &[Cause {
                reason: "FieldValueRequired",
                field: "spec.selector".into(),
                message: "Required value".into(),
            }],
        );
        assert_eq!(
            f.message,
            "Deployment.apps \"x\" is invalid: spec.selector: Required value"
        );
        let r = crate::resources::find("", "v1", "configmaps").unwrap();
        let f = invalid(
            r,
            "Bad",
            &[Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: "Invalid value".into(),
            }],
        );
        assert!(
            f.message.starts_with("ConfigMap \"Bad\" is invalid"),
            "{}",
            f.message
        );
    }
}
