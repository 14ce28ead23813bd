//! The REST verbs on stored objects: bookkeeping (uid, resourceVersion,
//! generation, timestamps), defaulting and validation, optimistic
//! concurrency, patches, subresources, deletion with finalizers and owner
//! cascade, namespace termination, list/watch with selectors and Table output.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Method, Response};
use keel_store::{EventKind, KeyValue, ListOptions, StoreError, WatchItem};
use serde_json::{Value, json};

use crate::State;
use crate::http::{Body, Fail, Query, Target, json_response, qualified};
use crate::managed::{self, Scope};
use crate::patch;
use crate::resources::{RESOURCES, Resource};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table::{self, Include};
use crate::validate::{self, Cause};

/// Largest stored object (etcd's default request limit).
pub(crate) const MAX_OBJECT: usize = 1536 * 1024;

pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub target: Target,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
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
fn scope_for(r: &Resource, sub: Option<&str>) -> Scope {
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

fn new_uid() -> String {
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

fn random_suffix() -> String {
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

fn error_chain(e: &dyn std::error::Error) -> String {
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

// ---------- storage encoding ----------

fn encode(state: &State, r: &Resource, key: &str, obj: &Value) -> Result<Vec<u8>, Fail> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&o).map_err(Fail::internal)?;
    if bytes.len() > MAX_OBJECT {
        return Err(Fail::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: object is {} bytes, limit is {MAX_OBJECT}",
                bytes.len()
            ),
        ));
    }
    if r.kind == "Secret" {
        return state
            .secrets
            .seal(&bytes, key.as_bytes())
            .map_err(|e| Fail::internal(error_chain(&e)));
    }
    Ok(bytes)
}

fn decode(state: &State, kv: &KeyValue, rev: i64) -> Result<Value, Fail> {
    let plain;
    let bytes = if keel_secrets::is_sealed(&kv.value) {
        plain = state
            .secrets
            .open(&kv.value, kv.key.as_bytes())
            .map_err(|e| Fail::internal(error_chain(&e)))?;
        &plain
    } else {
        &kv.value
    };
    let mut v: Value = serde_json::from_slice(bytes).map_err(Fail::internal)?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    Ok(v)
}

async fn get_current(
    state: &State,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<(KeyValue, Value), Fail> {
    let key = r.key(ns, name);
    let kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| store_fail(r, name, e))?
        .ok_or_else(|| Fail::not_found(r, name))?;
    let v = decode(state, &kv, kv.mod_revision)?;
    Ok((kv, v))
}

// ---------- request parsing ----------

fn parse_body(ctx: &Ctx) -> Result<Value, Fail> {
    if ctx
        .content_type
        .contains("application/vnd.kubernetes.protobuf")
    {
        return crate::proto::decode(&ctx.body)
            .map_err(|e| Fail::bad_request(format!("error decoding protobuf: {e}")));
    }
    let yaml = ctx.content_type.contains("yaml");
    let v: Value = if yaml {
        serde_yaml_ng::from_slice(&ctx.body)
            .map_err(|e| Fail::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            Fail::bad_request(format!(
                "error decoding JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?
    };
    Ok(v)
}

/// Checks an incoming object against the URL and strictness settings.
fn check_object(ctx: &Ctx, obj: &mut Value) -> Result<(), Fail> {
    let r = ctx.target.resource;
    if !obj.is_object() {
        return Err(Fail::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() && kind.is_empty() {
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(r.kind);
    } else if api_version != r.api_version() || kind != r.kind {
        return Err(Fail::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
            r.api_version(),
            r.kind
        )));
    }
    if !obj.get("metadata").is_none_or(Value::is_object) {
        return Err(Fail::bad_request("metadata must be an object"));
    }
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    if r.namespaced {
        let url_ns = ctx
            .target
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(Fail::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(url_ns),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    validate::normalize_quantities(obj);
    let typed = validate::check_quantities(obj)
        .and_then(|()| validate::typed_roundtrip(r.kind, obj))
        .map_err(|e| {
            Fail::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                r.kind, r.version, r.kind
            ))
        })?;
    let mut unknown = Vec::new();
    let strict = ctx.query.get("fieldValidation") == Some("Strict");
    validate::unknown_fields(obj, &typed, "", !strict, &mut unknown);
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(Fail::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(())
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

fn next_cluster_ip(state: &State) -> String {
    let n = state.next_ip.fetch_add(1, Ordering::SeqCst);
    // Random start so restarts rarely hand out a live address again.
    let base = u32::from_be_bytes([0, 0, (std::process::id() % 200) as u8, 10]);
    let x = (base + n) % 65_000 + 10;
    format!("10.43.{}.{}", (x >> 8) & 0xff, x & 0xff)
}

// ---------- dispatch ----------

pub(crate) async fn dispatch(ctx: Ctx, method: &Method) -> Result<Response<Body>, Fail> {
    let t = &ctx.target;
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
        (&Method::GET, None) if ctx.query.flag("watch") => watch(ctx).await,
        (&Method::GET, None) => list(&ctx).await,
        (&Method::GET, Some(name)) => {
            let (_, obj) =
                get_current(&ctx.state, t.resource, t.namespace.as_deref(), name).await?;
            if t.subresource.as_deref() == Some("scale") {
                return Ok(json_response(200, &scale_view(t.resource, &obj)));
            }
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::POST, None) => {
            let mut obj = parse_body(&ctx)?;
            check_object(&ctx, &mut obj)?;
            let tr = track(&ctx, None);
            let obj = create(&ctx.state, t.resource, obj, dry_run(&ctx.query), Some(&tr)).await?;
            Ok(respond(&ctx, 201, &obj))
        }
        (&Method::PUT, Some(name)) => {
            let mut obj = parse_body(&ctx)?;
            if t.subresource.as_deref() == Some("scale") {
                return scale_write(&ctx, name, |_| Ok(obj.clone())).await;
            }
            check_object(&ctx, &mut obj)?;
            if meta_str(&obj, "name") != *name {
                return Err(Fail::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&obj, "name")
                )));
            }
            let expected = meta_str(&obj, "resourceVersion");
            let tr = track(&ctx, t.subresource.as_deref());
            let (obj, _) = update(
                &ctx,
                name,
                Some(expected).filter(|s| !s.is_empty()),
                Some(&tr),
                |_| Ok(obj.clone()),
            )
            .await?;
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::PATCH, Some(name)) => patch_request(&ctx, name).await,
        (&Method::DELETE, Some(name)) => {
            let opts = if ctx.body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&ctx.body)
                    .map_err(|e| Fail::bad_request(format!("invalid DeleteOptions: {e}")))?
            };
            let policy = ctx
                .query
                .get("propagationPolicy")
                .map(String::from)
                .or_else(|| {
                    opts.get("propagationPolicy")
                        .and_then(Value::as_str)
                        .map(String::from)
                });
            let precondition = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
            let uid = opts
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from);
            let obj = delete(
                &ctx.state,
                t.resource,
                t.namespace.as_deref(),
                name,
                policy.as_deref(),
                precondition.as_deref(),
                uid.as_deref(),
            )
            .await?;
            Ok(respond(&ctx, 200, &obj))
        }
        (&Method::DELETE, None) => delete_collection(&ctx).await,
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
    if wants_table(&ctx.accept)
        && obj.get("kind").and_then(Value::as_str) == Some(ctx.target.resource.kind)
    {
        let t = table::table(
            ctx.target.resource.kind,
            std::slice::from_ref(obj),
            json!({"resourceVersion": meta_str(obj, "resourceVersion")}),
            include_mode(&ctx.query),
        );
        return json_response(code, &t);
    }
    json_response(code, obj)
}

// ---------- create ----------

pub(crate) async fn create(
    state: &State,
    r: &Resource,
    mut obj: Value,
    dry: bool,
    track: Option<&Track>,
) -> Result<Value, Fail> {
    let mut name = meta_str(&obj, "name");
    if name.is_empty() {
        let gen_name = meta_str(&obj, "generateName");
        if !gen_name.is_empty() {
            name = format!("{gen_name}{}", random_suffix());
            set_meta(&mut obj, "name", json!(name));
        }
    }
    if let Some(c) = validate::validate_name(r.kind, &name) {
        return Err(invalid(r, &name, &[c]));
    }
    let ns = meta(&obj, "namespace")
        .and_then(Value::as_str)
        .map(String::from);
    if r.namespaced {
        let ns = ns.as_deref().unwrap_or("default");
        let nsr = namespaces();
        match state.store.get(&nsr.key(None, ns)).await {
            Ok(Some(kv)) => {
                let nso = decode(state, &kv, kv.mod_revision)?;
                if meta(&nso, "deletionTimestamp").is_some() {
                    return Err(Fail::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            qualified(r)
                        ),
                    ));
                }
            }
            Ok(None) => {
                return Err(
                    Fail::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
                        .with_details(json!({"name": ns, "kind": "namespaces"})),
                );
            }
            Err(e) => return Err(store_fail(r, &name, e)),
        }
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now()));
        if r.has_spec {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    // Status belongs to controllers: a create starts from the default status.
    if r.status
        && r.kind != "Node"
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    validate::apply_defaults(r.kind, &mut obj, &mut || next_cluster_ip(state));
    if r.kind == "Secret" {
        merge_string_data(&mut obj);
    }
    if let Some(t) = track {
        record_update(r, t, &json!({}), &mut obj);
    }
    let causes = validate::validate(r.kind, &obj);
    if !causes.is_empty() {
        return Err(invalid(r, &name, &causes));
    }
    let key = r.key(ns.as_deref(), &name);
    let bytes = encode(state, r, &key, &obj)?;
    if dry {
        return Ok(obj);
    }
    let rev = state
        .store
        .create(&key, bytes, 0)
        .await
        .map_err(|e| store_fail(r, &name, e))?;
    set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
    Ok(obj)
}

/// `stringData` is write-only: merged into base64 `data`.
fn merge_string_data(obj: &mut Value) {
    let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    let Some(sd) = sd.as_object() else { return };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
        obj["data"][k] = json!(enc);
    }
}

// ---------- update ----------

/// Read-modify-write of one object with compare-and-swap; `f` maps the
/// current object to the desired one. Retries lost races unless the caller
/// pinned a resourceVersion.
async fn update(
    ctx: &Ctx,
    name: &str,
    expected: Option<String>,
    track: Option<&Track>,
    f: impl Fn(&Value) -> Result<Value, Fail>,
) -> Result<(Value, bool), Fail> {
    let t = &ctx.target;
    let r = t.resource;
    for _ in 0..16 {
        let (kv, cur) = get_current(&ctx.state, r, t.namespace.as_deref(), name).await?;
        if let Some(exp) = &expected
            && *exp != kv.mod_revision.to_string()
        {
            return Err(conflict(r, name));
        }
        let desired = f(&cur)?;
        match write_update(
            &ctx.state,
            r,
            t.subresource.as_deref(),
            &kv,
            &cur,
            desired,
            dry_run(&ctx.query),
            track,
        )
        .await
        {
            Err(f)
                if f.reason == "Conflict"
                    && expected.is_none()
                    && f.code == 409
                    && f.details.as_ref().is_some_and(|d| d.get("retry").is_some()) => {}
            other => return other.map(|v| (v, false)),
        }
    }
    Err(conflict(r, name))
}

/// Applies the bookkeeping rules of an update and writes it with CAS.
#[allow(clippy::too_many_arguments)]
async fn write_update(
    state: &State,
    r: &Resource,
    sub: Option<&str>,
    kv: &KeyValue,
    cur: &Value,
    mut new: Value,
    dry: bool,
    track: Option<&Track>,
) -> Result<Value, Fail> {
    let name = meta_str(cur, "name");
    let mut merged = match sub {
        Some("status") => {
            let mut m = cur.clone();
            m["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            m
        }
        Some("finalize") => {
            let mut m = cur.clone();
            m["spec"] = new.get("spec").cloned().unwrap_or(Value::Null);
            m
        }
        _ => {
            if r.status && r.kind != "Node" {
                match cur.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            // System fields are the server's, whatever the client sent.
            for f in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match meta(cur, f) {
                    Some(v) => set_meta(&mut new, f, v.clone()),
                    None => {
                        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.remove(f);
                        }
                    }
                }
            }
            // Allocated addresses stay when an update leaves them out (an
            // apply that never set them does), as Kubernetes keeps them.
            if r.kind == "Service" {
                for f in ["clusterIP", "clusterIPs"] {
                    let p = format!("/spec/{f}");
                    if new.pointer(&p).is_none()
                        && let Some(v) = cur.pointer(&p)
                        && new.get("spec").is_none_or(Value::is_object)
                    {
                        new["spec"][f] = v.clone();
                    }
                }
            }
            // Clients that do not know managedFields keep the current ones;
            // `[{}]` resets them, anything else replaces them.
            if meta(&new, "managedFields")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                match meta(cur, "managedFields") {
                    Some(mf) => set_meta(&mut new, "managedFields", mf.clone()),
                    None => {
                        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.remove("managedFields");
                        }
                    }
                }
            }
            new
        }
    };
    validate::apply_defaults(r.kind, &mut merged, &mut || next_cluster_ip(state));
    if r.kind == "Secret" {
        merge_string_data(&mut merged);
    }
    if let Some(t) = track {
        record_update(r, t, cur, &mut merged);
    }
    // Generation counts changes of everything but metadata and status.
    if r.has_spec {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        let gen_now = meta(cur, "generation").and_then(Value::as_i64).unwrap_or(1);
        let gen_next = if strip(cur) == strip(&merged) {
            gen_now
        } else {
            gen_now + 1
        };
        set_meta(&mut merged, "generation", json!(gen_next));
    }
    let mut causes = validate::validate(r.kind, &merged);
    causes.extend(validate::validate_update(r.kind, cur, &merged));
    if !causes.is_empty() {
        return Err(invalid(r, &name, &causes));
    }
    set_meta(
        &mut merged,
        "resourceVersion",
        json!(kv.mod_revision.to_string()),
    );
    if merged == *cur {
        // No-op updates do not bump resourceVersion, as in Kubernetes.
        return Ok(merged);
    }
    if dry {
        return Ok(merged);
    }
    let finalizers_empty = meta(&merged, "finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if meta(&merged, "deletionTimestamp").is_some() && finalizers_empty && r.kind != "Namespace" {
        // The last finalizer is gone: the pending deletion completes.
        state
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| retryable(r, &name, e))?;
        return Ok(merged);
    }
    let bytes = encode(state, r, &kv.key, &merged)?;
    let rev = state
        .store
        .update(&kv.key, bytes, kv.mod_revision, 0)
        .await
        .map_err(|e| retryable(r, &name, e))?;
    set_meta(&mut merged, "resourceVersion", json!(rev.to_string()));
    Ok(merged)
}

/// A CAS loss inside a read-modify-write loop: marked so the loop retries.
fn retryable(r: &Resource, name: &str, e: StoreError) -> Fail {
    let mut f = store_fail(r, name, e);
    if f.code == 409 {
        f.details = Some(json!({"name": name, "group": r.group, "kind": r.plural, "retry": true}));
    }
    f
}

// ---------- patch ----------

async fn patch_request(ctx: &Ctx, name: &str) -> Result<Response<Body>, Fail> {
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
        "application/strategic-merge-patch+json" => 2,
        other => {
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
            _ => patch::strategic_merge(&mut v, &patch_doc).map_err(Fail::bad_request)?,
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
            body: Bytes::new(),
        };
        check_object(&fake, &mut v)?;
        Ok(v)
    })
    .await?;
    Ok(respond(ctx, 200, &obj))
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

// ---------- scale ----------

fn scale_view(r: &Resource, obj: &Value) -> Value {
    let sel = obj.pointer("/spec/selector").map(|s| {
        let m = s.get("matchLabels").unwrap_or(s);
        m.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    });
    let _ = r;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": meta_str(obj, "namespace"),
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": sel.unwrap_or_default(),
        },
    })
}

async fn scale_write(
    ctx: &Ctx,
    name: &str,
    f: impl Fn(&Value) -> Result<Value, Fail>,
) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let main = Ctx {
        state: ctx.state.clone(),
        target: Target {
            subresource: None,
            ..ctx.target.clone()
        },
        query: ctx.query.clone(),
        accept: String::new(),
        content_type: String::new(),
        user_agent: ctx.user_agent.clone(),
        body: Bytes::new(),
    };
    let tr = track(ctx, Some("scale"));
    let (obj, _) = update(&main, name, None, Some(&tr), |cur| {
        let scale = f(&scale_view(r, cur))?;
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| Fail::bad_request("Scale.spec.replicas must be an integer"))?;
        if replicas < 0 {
            return Err(invalid(
                r,
                name,
                &[Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.replicas".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                }],
            ));
        }
        let mut v = cur.clone();
        v["spec"]["replicas"] = json!(replicas);
        Ok(v)
    })
    .await?;
    Ok(json_response(200, &scale_view(r, &obj)))
}

// ---------- delete ----------

fn namespaces() -> &'static Resource {
    crate::resources::find("", "v1", "namespaces").expect("namespaces are served")
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Deletes one object (boxed: deletion recurses through owner cascades).
pub(crate) fn delete<'a>(
    state: &'a Arc<State>,
    r: &'static Resource,
    ns: Option<&'a str>,
    name: &'a str,
    policy: Option<&'a str>,
    precondition_rv: Option<&'a str>,
    precondition_uid: Option<&'a str>,
) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(delete_inner(
        state,
        r,
        ns,
        name,
        policy,
        precondition_rv,
        precondition_uid,
    ))
}

async fn delete_inner(
    state: &Arc<State>,
    r: &'static Resource,
    ns: Option<&str>,
    name: &str,
    policy: Option<&str>,
    precondition_rv: Option<&str>,
    precondition_uid: Option<&str>,
) -> Result<Value, Fail> {
    for _ in 0..16 {
        let (kv, mut obj) = get_current(state, r, ns, name).await?;
        if precondition_rv.is_some_and(|p| p != kv.mod_revision.to_string())
            || precondition_uid.is_some_and(|u| u != meta_str(&obj, "uid"))
        {
            return Err(Fail::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed",
                    qualified(r)
                ),
            ));
        }
        let uid = meta_str(&obj, "uid");
        if r.kind == "Namespace" {
            if meta(&obj, "deletionTimestamp").is_none() {
                set_meta(&mut obj, "deletionTimestamp", json!(now()));
                obj["status"]["phase"] = json!("Terminating");
                let bytes = encode(state, r, &kv.key, &obj)?;
                match state.store.update(&kv.key, bytes, kv.mod_revision, 0).await {
                    Ok(rev) => set_meta(&mut obj, "resourceVersion", json!(rev.to_string())),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(store_fail(r, name, e)),
                }
            }
            let st = state.clone();
            let ns_name = name.to_string();
            tokio::spawn(async move { finalize_namespace(st, ns_name).await });
            return Ok(obj);
        }
        let policy = policy.unwrap_or("Background");
        if policy == "Foreground" {
            cascade(state, ns, &uid, "Foreground").await;
        } else if policy == "Orphan" {
            orphan(state, ns, &uid).await;
        }
        let has_finalizers = meta(&obj, "finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if meta(&obj, "deletionTimestamp").is_some() {
                return Ok(obj);
            }
            set_meta(&mut obj, "deletionTimestamp", json!(now()));
            set_meta(&mut obj, "deletionGracePeriodSeconds", json!(0));
            let bytes = encode(state, r, &kv.key, &obj)?;
            match state.store.update(&kv.key, bytes, kv.mod_revision, 0).await {
                Ok(rev) => {
                    set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
                    return Ok(obj);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(store_fail(r, name, e)),
            }
        }
        match state.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => {
                if policy == "Background" {
                    let st = state.clone();
                    let ns = ns.map(String::from);
                    tokio::spawn(
                        async move { cascade(&st, ns.as_deref(), &uid, "Background").await },
                    );
                }
                return Ok(obj);
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(store_fail(r, name, e)),
        }
    }
    Err(conflict(r, name))
}

/// Objects (in `ns`, and cluster-scoped ones) whose ownerReferences name `uid`.
async fn dependents(state: &State, ns: Option<&str>, uid: &str) -> Vec<(&'static Resource, Value)> {
    let mut out = Vec::new();
    if uid.is_empty() {
        return out;
    }
    for r in RESOURCES {
        if r.namespaced && ns.is_none() {
            // Owner is cluster-scoped: dependents may be anywhere.
        }
        let prefix = r.list_prefix(if r.namespaced { ns } else { None });
        let Ok(list) = state.store.list(&prefix, ListOptions::default()).await else {
            continue;
        };
        for kv in list.items {
            // Cheap pre-filter before decoding (Secrets are sealed: always decode).
            if r.kind != "Secret" && !kv.value.windows(uid.len()).any(|w| w == uid.as_bytes()) {
                continue;
            }
            let Ok(obj) = decode(state, &kv, kv.mod_revision) else {
                continue;
            };
            let owned = meta(&obj, "ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
                });
            if owned {
                out.push((r, obj));
            }
        }
    }
    out
}

async fn cascade(state: &Arc<State>, ns: Option<&str>, uid: &str, policy: &str) {
    for (r, obj) in dependents(state, ns, uid).await {
        let name = meta_str(&obj, "name");
        let dns = meta(&obj, "namespace")
            .and_then(Value::as_str)
            .map(String::from);
        let _ = delete(state, r, dns.as_deref(), &name, Some(policy), None, None).await;
    }
}

async fn orphan(state: &Arc<State>, ns: Option<&str>, uid: &str) {
    for (r, obj) in dependents(state, ns, uid).await {
        let name = meta_str(&obj, "name");
        let dns = meta(&obj, "namespace")
            .and_then(Value::as_str)
            .map(String::from);
        for _ in 0..8 {
            let Ok((kv, mut cur)) = get_current(state, r, dns.as_deref(), &name).await else {
                break;
            };
            if let Some(refs) = cur
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|o| o.get("uid").and_then(Value::as_str) != Some(uid));
            }
            if cur
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
                && let Some(m) = cur.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.remove("ownerReferences");
            }
            let Ok(bytes) = encode(state, r, &kv.key, &cur) else {
                break;
            };
            match state.store.update(&kv.key, bytes, kv.mod_revision, 0).await {
                Err(e) if e.is_conflict() => {}
                _ => break,
            }
        }
    }
}

/// Deletes everything in a terminating namespace, then the namespace.
async fn finalize_namespace(state: Arc<State>, ns: String) {
    loop {
        let mut remaining = 0;
        for r in RESOURCES.iter().filter(|r| r.namespaced) {
            let Ok(list) = state
                .store
                .list(&r.list_prefix(Some(&ns)), ListOptions::default())
                .await
            else {
                remaining += 1;
                continue;
            };
            for kv in list.items {
                remaining += 1;
                let name = kv.key.rsplit('/').next().unwrap_or_default().to_string();
                let _ = delete(&state, r, Some(&ns), &name, Some("Background"), None, None).await;
            }
        }
        if remaining == 0 {
            let key = namespaces().key(None, &ns);
            if let Ok(Some(kv)) = state.store.get(&key).await {
                match state.store.delete(&key, Some(kv.mod_revision)).await {
                    Err(e) if e.is_conflict() => continue,
                    _ => return,
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delete_collection(ctx: &Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let (items, _, _) = list_items(ctx, 0, None).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = meta_str(&obj, "name");
        let ns = meta(&obj, "namespace")
            .and_then(Value::as_str)
            .map(String::from);
        match delete(
            &ctx.state,
            r,
            ns.as_deref(),
            &name,
            ctx.query.get("propagationPolicy"),
            None,
            None,
        )
        .await
        {
            Ok(o) => deleted.push(o),
            Err(f) if f.code == 404 => {}
            Err(f) => return Err(f),
        }
    }
    Ok(json_response(
        200,
        &json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": {},
            "items": deleted,
        }),
    ))
}

// ---------- list ----------

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn selectors(ctx: &Ctx) -> Result<(LabelSelector, FieldSelector), Fail> {
    let ls = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default())
        .map_err(Fail::bad_request)?;
    let fs = FieldSelector::parse(
        ctx.query.get("fieldSelector").unwrap_or_default(),
        ctx.target.resource.kind,
    )
    .map_err(Fail::bad_request)?;
    Ok((ls, fs))
}

/// Matching objects, at most `limit` (0: all), from `cont` on. Returns the
/// items, the list's revision and the next continue token.
async fn list_items(
    ctx: &Ctx,
    limit: usize,
    cont: Option<&str>,
) -> Result<(Vec<Value>, i64, Option<String>), Fail> {
    let t = &ctx.target;
    let r = t.resource;
    let (ls, fs) = selectors(ctx)?;
    let prefix = r.list_prefix(t.namespace.as_deref());
    let mut opts = ListOptions::default();
    if let Some(c) = cont.filter(|c| !c.is_empty()) {
        let tok: ContinueToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Fail::bad_request("continue key is not valid"))?;
        opts.revision = Some(tok.rv);
        opts.start_after = Some(tok.start);
    }
    let mut items = Vec::new();
    loop {
        opts.limit = if limit == 0 {
            0
        } else {
            (limit - items.len()).max(1) * 2
        };
        let page = ctx.state.store.list(&prefix, opts.clone()).await.map_err(|e| match e {
            StoreError::Expired { .. } => Fail::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."),
            e => Fail::internal(error_chain(&e)),
        })?;
        opts.revision = Some(page.revision);
        let mut last_key = None;
        for kv in &page.items {
            last_key = Some(kv.key.clone());
            let obj = decode(&ctx.state, kv, kv.mod_revision)?;
            if ls.matches(meta(&obj, "labels")) && fs.matches(&obj) {
                items.push(obj);
                if limit > 0 && items.len() == limit {
                    let more = page.more
                        || kv.key != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                    let token = more.then(|| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                            serde_json::to_vec(&ContinueToken {
                                rv: page.revision,
                                start: kv.key.clone(),
                            })
                            .unwrap_or_default(),
                        )
                    });
                    return Ok((items, page.revision, token));
                }
            }
        }
        if !page.more {
            return Ok((items, page.revision, None));
        }
        opts.start_after = last_key;
    }
}

async fn list(ctx: &Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let limit = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let (items, rev, cont) = list_items(ctx, limit, ctx.query.get("continue")).await?;
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if wants_table(&ctx.accept) {
        return Ok(json_response(
            200,
            &table::table(r.kind, &items, meta, include_mode(&ctx.query)),
        ));
    }
    Ok(json_response(
        200,
        &json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": meta,
            "items": items,
        }),
    ))
}

// ---------- watch ----------

fn watch_line(ty: &str, obj: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

async fn watch(ctx: Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let (ls, mut fs) = selectors(&ctx)?;
    if let Some(name) = &ctx.target.name {
        fs = FieldSelector::parse(&format!("metadata.name={name}"), r.kind)
            .map_err(Fail::bad_request)?;
    }
    let rv = ctx
        .query
        .get("resourceVersion")
        .unwrap_or_default()
        .to_string();
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let initial_events = ctx.query.flag("sendInitialEvents");
    if initial_events && ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(Fail::new(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    let table_mode = wants_table(&ctx.accept);
    let include = include_mode(&ctx.query);
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let prefix = r.list_prefix(ctx.target.namespace.as_deref());
    let state = ctx.state.clone();

    let render = move |obj: &Value| -> Value {
        if table_mode {
            table::table(
                r.kind,
                std::slice::from_ref(obj),
                json!({"resourceVersion": meta_str(obj, "resourceVersion")}),
                include,
            )
        } else {
            obj.clone()
        }
    };
    let mut initial = Vec::new();
    let start;
    if rv.is_empty() || rv == "0" || initial_events {
        let (items, list_rev, _) = list_items(&ctx, 0, None).await?;
        for obj in &items {
            if fs.matches(obj) {
                initial.push(watch_line("ADDED", &render(obj)));
            }
        }
        if initial_events {
            initial.push(watch_line(
                "BOOKMARK",
                &json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": list_rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}),
            ));
        }
        start = list_rev + 1;
    } else {
        let n: i64 = rv
            .parse()
            .map_err(|_| Fail::bad_request(format!("invalid resource version: {rv}")))?;
        start = n + 1;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let resp = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .map_err(Fail::internal)?;
    let mut store_watch = match state.store.watch(&prefix, start).await {
        Ok(w) => w,
        Err(StoreError::Expired { .. }) => {
            let status =
                Fail::new(410, "Expired", format!("too old resource version: {rv}")).to_json();
            let _ = tx.try_send(Ok(Frame::data(watch_line("ERROR", &status))));
            return Ok(resp);
        }
        Err(e) => return Err(Fail::internal(error_chain(&e))),
    };
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut last_bookmark = tokio::time::Instant::now();
        let matches = |o: &Value| ls.matches(meta(o, "labels")) && fs.matches(o);
        loop {
            let item = tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
                i = store_watch.next() => i,
            };
            let line = match item {
                None | Some(Err(StoreError::WatchClosed)) => return,
                Some(Err(StoreError::Expired { .. })) => {
                    let status = Fail::new(410, "Expired", "too old resource version").to_json();
                    let _ = tx.send(Ok(Frame::data(watch_line("ERROR", &status)))).await;
                    return;
                }
                Some(Err(e)) => {
                    let status = Fail::internal(error_chain(&e)).to_json();
                    let _ = tx.send(Ok(Frame::data(watch_line("ERROR", &status)))).await;
                    return;
                }
                Some(Ok(WatchItem::Progress(rev))) => {
                    if !bookmarks || last_bookmark.elapsed() < Duration::from_secs(5) {
                        continue;
                    }
                    last_bookmark = tokio::time::Instant::now();
                    watch_line(
                        "BOOKMARK",
                        &json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": rev.to_string()}}),
                    )
                }
                Some(Ok(WatchItem::Event(ev))) => {
                    let rev = ev.revision();
                    let new = match ev.kind {
                        EventKind::Put => decode(&state, &ev.kv, rev).ok(),
                        EventKind::Delete => None,
                    };
                    let old = ev.prev.as_ref().and_then(|p| decode(&state, p, rev).ok());
                    let (ty, obj) = match (ev.kind, new, old) {
                        (EventKind::Put, Some(n), Some(o)) => match (matches(&o), matches(&n)) {
                            (true, true) => ("MODIFIED", n),
                            (false, true) => ("ADDED", n),
                            (true, false) => ("DELETED", n),
                            (false, false) => continue,
                        },
                        (EventKind::Put, Some(n), None) => {
                            if !matches(&n) {
                                continue;
                            }
                            if ev.kv.create_revision == rev {
                                ("ADDED", n)
                            } else {
                                ("MODIFIED", n)
                            }
                        }
                        (EventKind::Delete, _, Some(o)) if matches(&o) => ("DELETED", o),
                        _ => continue,
                    };
                    watch_line(ty, &render(&obj))
                }
            };
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

// ---------- startup ----------

/// Creates the default namespaces and resumes namespace terminations.
pub(crate) async fn bootstrap(state: &Arc<State>) -> Result<(), StoreError> {
    let r = namespaces();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
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
    let existing: HashSet<String> = state
        .store
        .list(&r.key_prefix(), ListOptions::default())
        .await?
        .items
        .into_iter()
        .filter_map(|kv| decode(state, &kv, kv.mod_revision).ok())
        .filter(|o| meta(o, "deletionTimestamp").is_some())
        .map(|o| meta_str(&o, "name"))
        .collect();
    for ns in existing {
        let st = state.clone();
        tokio::spawn(async move { finalize_namespace(st, ns).await });
    }
    Ok(())
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
                if target > compacted && st.store.compact(target).await.is_ok() {
                    compacted = target;
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
