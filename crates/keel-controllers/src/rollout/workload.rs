//! `spec.workloadRef`: a Rollout that takes its pod template (and, when it
//! has none, its selector) from an existing Deployment, as Argo does for
//! migrations; `scaleDown` says what happens to the Deployment: `never`
//! (default), `onsuccess` (to 0 once the Rollout is Healthy) or
//! `progressively` (down as the Rollout's pods become available).

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::informer::Cache;

pub(super) fn deployments() -> &'static Resource {
    resources::find("apps", "v1", "deployments").expect("deployments are served")
}

/// Whether `ro` references the Deployment `name`.
pub(super) fn references(ro: &Value, name: &str) -> bool {
    let w = &ro["spec"]["workloadRef"];
    w["kind"] == "Deployment" && w["name"] == name
}

/// The Rollout with the referenced Deployment's template (and selector if
/// it has none); `None` while the Deployment is missing.
pub(super) async fn resolve(cache: &Cache, ro: &Value) -> Result<Option<Value>, ClientError> {
    let w = &ro["spec"]["workloadRef"];
    if !w.is_object() {
        return Ok(Some(ro.clone()));
    }
    if w["kind"] != "Deployment" {
        return Ok(None);
    }
    let ns = crate::objects::meta_str(ro, "namespace");
    let name = w["name"].as_str().unwrap_or("");
    let dep = match cache.get(deployments(), ns, name) {
        Some(d) => d.clone(),
        None => match cache.api.get(deployments(), Some(ns), name).await? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let mut ro = ro.clone();
    ro["spec"]["template"] = dep["spec"]["template"].clone();
    if !ro["spec"]["selector"].is_object() {
        ro["spec"]["selector"] = dep["spec"]["selector"].clone();
    }
    Ok(Some(ro))
}

/// Scales the referenced Deployment as `scaleDown` asks, given the
/// Rollout's status as just written.
pub(super) async fn scale_down(
    cache: &mut Cache,
    ro: &Value,
    st: &Value,
) -> Result<(), ClientError> {
    let w = &ro["spec"]["workloadRef"];
    let Some(name) = w["name"].as_str().filter(|_| w["kind"] == "Deployment") else {
        return Ok(());
    };
    let replicas = super::replicas::spec_replicas(ro);
    let want = match w["scaleDown"].as_str().unwrap_or("never") {
        "onsuccess" if st["phase"] == "Healthy" => 0,
        "progressively" => (replicas - crate::objects::int(st, "/availableReplicas")).max(0),
        _ => return Ok(()),
    };
    let ns = crate::objects::meta_str(ro, "namespace").to_string();
    let r = cache
        .modify(deployments(), &ns, name, None, |cur| {
            let have = cur["spec"]["replicas"].as_i64().unwrap_or(1);
            // Only ever down: the Rollout never scales the Deployment up.
            (want < have).then(|| {
                let mut v = cur.clone();
                v["spec"]["replicas"] = json!(want);
                v
            })
        })
        .await;
    match r {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}
