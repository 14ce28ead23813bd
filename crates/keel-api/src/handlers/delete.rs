//! DELETE and deletecollection. Deletion itself never walks owner
//! references: as in Kubernetes, a propagation policy becomes a finalizer
//! (`orphan`, `foregroundDeletion`) on the object, and the garbage collector
//! (keel-controllers) removes dependents and then the finalizer. An object
//! without finalizers is removed at once; one with finalizers gets a
//! `deletionTimestamp` and is removed when its last finalizer goes (see
//! `write_update`). Namespaces wait for their `spec.finalizers` too, which the
//! namespace controller clears through the `finalize` subresource once the
//! namespace is empty.

use std::sync::Arc;

use hyper::Response;
use serde_json::{Value, json};

use super::object::{encode, get_current};
use super::read::list_items;
use super::{Ctx, conflict, meta, meta_str, now, set_meta, store_fail};
use crate::State;
use crate::http::{Body, Fail, json_response, qualified};
use crate::resources::Resource;
use crate::validate::Cause;

/// Finalizer that makes the garbage collector orphan an object's dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer that makes the garbage collector delete an object's dependents
/// before the object.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What a DELETE asks for (`DeleteOptions` plus query parameters).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `Orphan`, `Background` or `Foreground`; `None`: the object's
    /// finalizers decide, else background.
    pub propagation: Option<String>,
    /// The deprecated `orphanDependents` flag.
    pub orphan_dependents: Option<bool>,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: how long a pod on a node gets to stop (`None`:
    /// its `terminationGracePeriodSeconds`).
    pub grace_period: Option<i64>,
}

impl DeleteOptions {
    /// Reads a request's `DeleteOptions` body and query; an invalid policy is
    /// apimachinery's 422.
    pub(crate) fn from_request(ctx: &Ctx) -> Result<Self, Fail> {
        let body = if ctx.body.is_empty() {
            json!({})
        } else if ctx
            .content_type
            .contains("application/vnd.kubernetes.protobuf")
        {
            crate::proto::decode(&ctx.body)
                .map_err(|e| Fail::bad_request(format!("invalid DeleteOptions: {e}")))?
        } else {
            serde_json::from_slice(&ctx.body)
                .map_err(|e| Fail::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(String::from);
        let opts = DeleteOptions {
            propagation: ctx
                .query
                .get("propagationPolicy")
                .map(String::from)
                .or_else(|| s("/propagationPolicy")),
            orphan_dependents: match ctx.query.get("orphanDependents") {
                Some(v) => Some(v == "true"),
                None => body.get("orphanDependents").and_then(Value::as_bool),
            },
            precondition_rv: s("/preconditions/resourceVersion"),
            precondition_uid: s("/preconditions/uid"),
            grace_period: ctx
                .query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
                .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64)),
            dry_run: super::dry_run(&ctx.query)
                || body
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|x| x == "All")),
        };
        opts.validate()?;
        Ok(opts)
    }

    fn validate(&self) -> Result<(), Fail> {
        let mut causes = Vec::new();
        if let Some(p) = &self.propagation {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "propagationPolicy".into(),
                    message: format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                });
            }
            if let Some(o) = self.orphan_dependents {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: "propagationPolicy".into(),
                    message: format!(
                        "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set (orphanDependents: {o})"
                    ),
                });
            }
        }
        if causes.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        Err(Fail::new(
            422,
            "Invalid",
            format!("DeleteOptions.meta.k8s.io \"\" is invalid: {}", list.join(", ")),
        )
        .with_details(json!({
            "group": "meta.k8s.io",
            "kind": "DeleteOptions",
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        })))
    }

    /// The object's finalizers once this deletion's policy is applied
    /// (apiserver's `shouldOrphanDependents` / `shouldDeleteDependents`).
    pub fn finalizers(&self, current: &[String]) -> Vec<String> {
        let has = |f: &str| current.iter().any(|x| x == f);
        let first_gc = current
            .iter()
            .find(|f| *f == ORPHAN_FINALIZER || *f == FOREGROUND_FINALIZER);
        let (orphan, foreground) = match (self.orphan_dependents, self.propagation.as_deref()) {
            (Some(o), _) => (o, false),
            (None, Some(p)) => (p == "Orphan", p == "Foreground"),
            (None, None) => (
                first_gc.is_some_and(|f| f == ORPHAN_FINALIZER),
                has(FOREGROUND_FINALIZER),
            ),
        };
        let mut out: Vec<String> = current
            .iter()
            .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
            .cloned()
            .collect();
        if orphan {
            out.push(ORPHAN_FINALIZER.into());
        }
        if foreground {
            out.push(FOREGROUND_FINALIZER.into());
        }
        out
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a namespace still waits for its `spec.finalizers`.
pub(crate) fn namespace_finalizers_pending(obj: &Value) -> bool {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The grace period a pod gets when deleted with `opts`, when it gets one:
/// it is bound to a Ready node a keel agent runs (annotation
/// [`AGENT_NODE`]) and not finished. Pods elsewhere (unscheduled, on nodes without a kubelet)
/// are deleted at once.
async fn pod_grace(state: &Arc<State>, pod: &Value, opts: &DeleteOptions) -> Option<i64> {
    let grace = opts
        .grace_period
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if grace <= 0 || node.is_empty() || matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let nodes = crate::resources::find("", "v1", "nodes")?;
    let (_, n) = get_current(state, nodes, None, node).await.ok()?;
    // A node that is not Ready has no kubelet to finish the deletion (pod GC
    // force-deletes such pods in Kubernetes).
    let ready = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    let agent = n
        .pointer(&format!(
            "/metadata/annotations/{}",
            AGENT_NODE.replace('/', "~1")
        ))
        .is_some();
    (ready && agent).then_some(grace)
}

/// The annotation a keel agent puts on its Node: deleting a pod there is
/// graceful.
pub const AGENT_NODE: &str = "node.keel.dev/agent";

/// Deletes one object, or marks it for deletion when finalizers hold it.
pub(crate) async fn delete(
    state: &Arc<State>,
    r: &'static Resource,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, Fail> {
    for attempt in 0..16 {
        let (kv, mut obj) = get_current(state, r, ns, name).await?;
        if attempt == 0 {
            let hook = crate::webhook::Request {
                r,
                sub: None,
                op: "DELETE",
                name,
                namespace: ns,
                old: Some(&obj),
                dry_run: opts.dry_run,
            };
            let ns_obj = crate::webhook::namespace_of(state, ns).await;
            crate::cel::policy::validate(state, &hook, &obj, ns_obj.as_ref()).await?;
            crate::webhook::validate(state, &hook, &obj, ns_obj.as_ref()).await?;
        }
        if opts
            .precondition_rv
            .as_ref()
            .is_some_and(|p| *p != kv.mod_revision.to_string())
            || opts
                .precondition_uid
                .as_ref()
                .is_some_and(|u| *u != meta_str(&obj, "uid"))
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
        let deleting = meta(&obj, "deletionTimestamp").is_some();
        if r.kind == "Pod"
            && let Some(grace) = pod_grace(state, &obj, opts).await
        {
            let shorter = meta(&obj, "deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| grace < g);
            if deleting && !shorter || opts.dry_run {
                return Ok(obj);
            }
            // A running pod is only marked: its kubelet stops it within the
            // grace period and deletes it with grace 0 (as the apiserver).
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            set_meta(
                &mut obj,
                "deletionTimestamp",
                json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            set_meta(&mut obj, "deletionGracePeriodSeconds", json!(grace));
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
        let current = string_list(meta(&obj, "finalizers"));
        let finalizers = opts.finalizers(&current);
        let pod_now = r.kind == "Pod" && opts.grace_period == Some(0);
        let held =
            !finalizers.is_empty() || r.kind == "Namespace" && namespace_finalizers_pending(&obj);
        if deleting && finalizers == current && !pod_now {
            return Ok(obj);
        }
        if held {
            if finalizers.is_empty() {
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("finalizers");
                }
            } else {
                set_meta(&mut obj, "finalizers", json!(finalizers));
            }
            if !deleting {
                set_meta(&mut obj, "deletionTimestamp", json!(now()));
                set_meta(&mut obj, "deletionGracePeriodSeconds", json!(0));
                if r.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
            }
            if opts.dry_run {
                return Ok(obj);
            }
            let bytes = encode(state, r, &kv.key, &obj)?;
            match state.store.update(&kv.key, bytes, kv.mod_revision, 0).await {
                Ok(rev) => {
                    set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
                    tracing::debug!(
                        kind = r.kind,
                        ns,
                        name,
                        ?finalizers,
                        "deletion pending on finalizers"
                    );
                    return Ok(obj);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(store_fail(r, name, e)),
            }
        }
        if opts.dry_run {
            return Ok(obj);
        }
        match state.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => {
                if crate::quota::affects(r) {
                    crate::quota::recount(state, ns.unwrap_or("default")).await;
                }
                return Ok(obj);
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(store_fail(r, name, e)),
        }
    }
    Err(conflict(r, name))
}

pub(crate) async fn delete_collection(ctx: &Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let opts = DeleteOptions::from_request(ctx)?;
    let (items, _, _) = list_items(ctx, 0, None).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = meta_str(&obj, "name");
        let ns = meta(&obj, "namespace")
            .and_then(Value::as_str)
            .map(String::from);
        match delete(&ctx.state, r, ns.as_deref(), &name, &opts).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(p: Option<&str>, o: Option<bool>) -> DeleteOptions {
        DeleteOptions {
            grace_period: None,
            propagation: p.map(String::from),
            orphan_dependents: o,
            ..DeleteOptions::default()
        }
    }

    #[test]
    fn policy_becomes_gc_finalizers() {
        let cur = vec!["example.com/x".to_string()];
        assert_eq!(opts(None, None).finalizers(&cur), cur);
        assert_eq!(
            opts(Some("Foreground"), None).finalizers(&cur),
            vec!["example.com/x", "foregroundDeletion"]
        );
        assert_eq!(opts(Some("Orphan"), None).finalizers(&[]), vec!["orphan"]);
        assert_eq!(opts(None, Some(true)).finalizers(&[]), vec!["orphan"]);
        // An explicit background policy drops GC finalizers already set.
        let gc = vec!["orphan".to_string(), "a/b".to_string()];
        assert_eq!(opts(Some("Background"), None).finalizers(&gc), vec!["a/b"]);
        // Without a policy the object's finalizers decide.
        assert_eq!(opts(None, None).finalizers(&gc), vec!["a/b", "orphan"]);
    }

    #[test]
    fn bad_policy_is_invalid() {
        let f = opts(Some("Sideways"), None).validate().unwrap_err();
        assert_eq!(f.code, 422);
        assert_eq!(
            f.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        );
        assert!(opts(Some("Orphan"), Some(true)).validate().is_err());
    }
}
