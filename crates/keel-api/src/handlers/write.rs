//! Writes that replace an object: create (names, uid, timestamps,
//! defaults, namespace checks), update with compare-and-swap and the
//! bookkeeping rules (system fields, status, generation, managedFields,
//! completion of a pending deletion), and the `scale` subresource.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use keel_store::{KeyValue, StoreError};
use serde_json::{Value, json};

use super::delete::namespace_finalizers_pending;
use super::object::{decode, encode, get_current, merge_string_data, next_cluster_ip};
use super::{
    Ctx, Track, conflict, dry_run, invalid, meta, meta_str, namespaces, new_uid, now,
    random_suffix, record_update, set_meta, store_fail, track,
};
use crate::State;
use crate::http::{Body, Fail, Target, json_response, qualified};
use crate::resources::Resource;
use crate::validate::{self, Cause};

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
    let mut ns_obj = None;
    if r.namespaced {
        let ns = ns.as_deref().unwrap_or("default");
        let nsr = namespaces();
        match state.store.get(&nsr.key(None, ns)).await {
            Ok(Some(kv)) => {
                let nso = decode(state, &kv, kv.mod_revision)?;
                ns_obj = Some(nso.clone());
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
    let alloc = service_alloc(state, r, &name, &mut obj, None).await?;
    validate::apply_defaults(r.kind, &mut obj, &mut || alloc.cluster_ip(state));
    if is_crd(r) {
        crate::crd::apply_defaults(&mut obj);
        crate::crd::add_finalizer(&mut obj);
    }
    crate::admission::admit(state, r, &mut obj, ns.as_deref()).await?;
    let hook = crate::webhook::Request {
        r,
        sub: None,
        op: "CREATE",
        name: &name,
        namespace: ns.as_deref().filter(|_| r.namespaced),
        old: None,
        dry_run: dry,
    };
    crate::webhook::mutate(state, &hook, &mut obj, ns_obj.as_ref()).await?;
    crate::admission::validate(r, &name, &obj, ns_obj.as_ref())?;
    if r.kind == "Secret" {
        merge_string_data(&mut obj);
    }
    if let Some(t) = track {
        record_update(r, t, &json!({}), &mut obj);
    }
    let mut causes = validate::validate_object(r, &obj);
    extra_checks(r, &obj, &mut causes);
    causes.extend(crate::cel::rules::check_custom(r, &obj, None, &causes).await);
    if !causes.is_empty() {
        return Err(invalid(r, &name, &causes));
    }
    crate::cel::policy::validate(state, &hook, &obj, ns_obj.as_ref()).await?;
    crate::webhook::validate(state, &hook, &obj, ns_obj.as_ref()).await?;
    let key = r.key(ns.as_deref(), &name);
    let bytes = encode(state, r, &key, &obj)?;
    let quota_ns = ns.as_deref().unwrap_or("default");
    let charge = if crate::quota::affects(r) {
        crate::quota::charge(state, r, &name, &obj, quota_ns, dry).await?
    } else {
        None
    };
    if dry {
        return Ok(obj);
    }
    let rev = match state.store.create(&key, bytes, 0).await {
        Ok(rev) => rev,
        Err(e) => {
            if let Some(c) = charge {
                crate::quota::refund(state, c).await;
            }
            return Err(store_fail(r, &name, e));
        }
    };
    set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
    if r.group.is_empty() && r.kind == "ResourceQuota" {
        crate::quota::recount(state, quota_ns).await;
    }
    if is_crd(r) {
        crate::crd::register(state, &obj);
    }
    if r.group.is_empty() && r.kind == "Namespace" {
        Box::pin(namespace_defaults(state, &name)).await;
    }
    Ok(obj)
}

/// What every namespace holds from its creation, as Kubernetes' controllers
/// make it: the `default` service account and the `kube-root-ca.crt`
/// config map (the CA pods trust the API with). Made here rather than by a
/// controller so a pod created right after its namespace finds them.
pub(crate) async fn namespace_defaults(state: &State, ns: &str) {
    let find = |p| crate::resources::find("", "v1", p).expect("core kinds are served");
    let mut objs = vec![(
        find("serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
    )];
    if let Ok(ca) = std::fs::read_to_string(state.paths.ca_cert()) {
        objs.push((
            find("configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": ca}}),
        ));
    }
    for (r, obj) in objs {
        match create(state, r, obj, false, None).await {
            Ok(_) => {}
            Err(f) if f.reason == "AlreadyExists" => {}
            Err(f) => tracing::warn!(ns, kind = r.kind, error = f.message, "namespace defaults"),
        }
    }
}

fn is_crd(r: &Resource) -> bool {
    r.group == crate::crd::GROUP && r.kind == "CustomResourceDefinition"
}

/// Checks beyond a kind's own: CRDs as apiextensions validates them, and
/// custom objects against their schema.
fn extra_checks(r: &Resource, obj: &Value, causes: &mut Vec<Cause>) {
    if is_crd(r) {
        causes.extend(crate::crd::validate(obj));
        causes.extend(crate::cel::rules::check_crd(obj));
    } else if let Some(v) = crate::crd::version_of(r) {
        causes.extend(crate::crd::check_object(&v, obj));
    }
}

// ---------- update ----------

/// Read-modify-write of one object with compare-and-swap; `f` maps the
/// current object to the desired one. Retries lost races unless the caller
/// pinned a resourceVersion.
pub(super) async fn update(
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

/// What other Services hold, for a core Service's create or update.
struct Alloc(Option<crate::service_alloc::Taken>);

impl Alloc {
    fn cluster_ip(&self, state: &State) -> String {
        match &self.0 {
            Some(t) => state.reserved.cluster_ip(t, || next_cluster_ip(state)),
            None => next_cluster_ip(state),
        }
    }
}

/// Node ports (and on create the requested cluster IP) of a core Service,
/// checked and allocated against the stored Services; an update keeps the
/// node ports it leaves out.
async fn service_alloc(
    state: &State,
    r: &Resource,
    name: &str,
    obj: &mut Value,
    cur: Option<&Value>,
) -> Result<Alloc, Fail> {
    use crate::service_alloc::{Reserved, drop_type_dependent_fields, keep_node_ports, taken};
    if r.kind != "Service" || !r.group.is_empty() {
        return Ok(Alloc(None));
    }
    let t = taken(state, obj).await?;
    let mut causes = Vec::new();
    match cur {
        Some(c) => {
            drop_type_dependent_fields(obj, c);
            keep_node_ports(obj, c);
        }
        None => causes = Reserved::check_cluster_ip(obj, &t),
    }
    causes.extend(state.reserved.node_ports(obj, &t));
    if !causes.is_empty() {
        return Err(invalid(r, name, &causes));
    }
    Ok(Alloc(Some(t)))
}

/// Sets the `PodScheduled` condition of a pod to `True` (a `False` one left
/// by the scheduler is replaced).
fn set_pod_scheduled(pod: &mut Value) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
    match pod["status"]
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        Some(conds) => {
            conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conds.insert(0, cond);
        }
        None => pod["status"]["conditions"] = json!([cond]),
    }
}

/// Applies the bookkeeping rules of an update and writes it with CAS.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_update(
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
        // pods/binding: only the node changes, whatever else pod updates
        // forbid, and the pod is marked scheduled (PodScheduled=True), as
        // kube-apiserver's binding storage does.
        Some("binding") => {
            let mut m = cur.clone();
            m["spec"]["nodeName"] = new
                .pointer("/spec/nodeName")
                .cloned()
                .unwrap_or(Value::Null);
            set_pod_scheduled(&mut m);
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
    let alloc = if sub.is_none() {
        service_alloc(state, r, &name, &mut merged, Some(cur)).await?
    } else {
        Alloc(None)
    };
    validate::apply_defaults(r.kind, &mut merged, &mut || alloc.cluster_ip(state));
    let ns = meta(cur, "namespace").and_then(Value::as_str);
    let hook = crate::webhook::Request {
        r,
        sub,
        op: "UPDATE",
        name: &name,
        namespace: ns,
        old: Some(cur),
        dry_run: dry,
    };
    let ns_obj = crate::webhook::namespace_of(state, ns).await;
    crate::webhook::mutate(state, &hook, &mut merged, ns_obj.as_ref()).await?;
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
    let mut causes = validate::validate_object(r, &merged);
    extra_checks(r, &merged, &mut causes);
    if sub != Some("binding") {
        causes.extend(validate::validate_update(r.kind, cur, &merged));
    }
    causes.extend(crate::cel::rules::check_custom(r, &merged, Some(cur), &causes).await);
    if !causes.is_empty() {
        return Err(invalid(r, &name, &causes));
    }
    crate::cel::policy::validate(state, &hook, &merged, ns_obj.as_ref()).await?;
    crate::webhook::validate(state, &hook, &merged, ns_obj.as_ref()).await?;
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
    if meta(&merged, "deletionTimestamp").is_some()
        && finalizers_empty
        && !(r.kind == "Namespace" && namespace_finalizers_pending(&merged))
    {
        // The last finalizer is gone: the pending deletion completes.
        tracing::debug!(kind = r.kind, name, "last finalizer removed, deleting");
        state
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| retryable(r, &name, e))?;
        if crate::quota::affects(r) {
            crate::quota::recount(state, ns.unwrap_or("default")).await;
        }
        return Ok(merged);
    }
    let bytes = encode(state, r, &kv.key, &merged)?;
    let rev = state
        .store
        .update(&kv.key, bytes, kv.mod_revision, 0)
        .await
        .map_err(|e| retryable(r, &name, e))?;
    set_meta(&mut merged, "resourceVersion", json!(rev.to_string()));
    if is_crd(r) {
        crate::crd::register(state, &merged);
    }
    // A quota's new limits, or a pod that stopped counting, change usage.
    let phase = |v: &Value| v.pointer("/status/phase").cloned();
    let quota_changed = (r.group, r.kind) == ("", "ResourceQuota") && sub != Some("status");
    let pod_finished = (r.group, r.kind) == ("", "Pod") && phase(cur) != phase(&merged);
    if quota_changed || pod_finished {
        crate::quota::recount(state, ns.unwrap_or("default")).await;
    }
    Ok(merged)
}

/// A CAS loss inside a read-modify-write loop: marked so the loop retries.
pub(super) fn retryable(r: &Resource, name: &str, e: StoreError) -> Fail {
    let mut f = store_fail(r, name, e);
    if f.code == 409 {
        f.details = Some(json!({"name": name, "group": r.group, "kind": r.plural, "retry": true}));
    }
    f
}

// ---------- scale ----------

pub(super) fn scale_view(r: &Resource, obj: &Value) -> Value {
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

pub(super) async fn scale_write(
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
        user: ctx.user.clone(),
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

/// Read-modify-write of one object for the server's own controllers:
/// `f` maps the current object to the desired one (`None`: leave it). The
/// same rules as an HTTP update apply; lost races are retried.
pub(crate) async fn update_object(
    state: &Arc<State>,
    r: &'static Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    manager: &str,
    f: impl Fn(&Value) -> Option<Value>,
) -> Result<Option<Value>, Fail> {
    const UNCHANGED: &str = "Unchanged";
    let ctx = Ctx {
        state: state.clone(),
        target: Target {
            resource: r,
            namespace: ns.map(String::from),
            name: Some(name.to_string()),
            subresource: sub.map(String::from),
        },
        query: crate::http::Query::default(),
        accept: String::new(),
        content_type: String::new(),
        user_agent: manager.to_string(),
        user: Arc::new(crate::auth::User::controllers()),
        body: Bytes::new(),
    };
    // "Unchanged" travels out of the loop as a marker failure.
    let tr = track(&ctx, sub);
    match update(&ctx, name, None, Some(&tr), |cur| {
        f(cur).ok_or_else(|| Fail::new(304, UNCHANGED, String::new()))
    })
    .await
    {
        Ok((v, _)) => Ok(Some(v)),
        Err(f) if f.reason == UNCHANGED => Ok(None),
        Err(f) => Err(f),
    }
}
