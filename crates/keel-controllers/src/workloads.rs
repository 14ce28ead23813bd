//! Starts the `StatefulSet`, `DaemonSet` and storage controllers (kept apart
//! from `spawn_with` so each group's list stays short).

use keel_api::resources::Resource;
use keel_api::{ClientError, Loopback};
use serde_json::Value;

use crate::informer::Cache;
use crate::objects::meta_str;

pub(crate) fn spawn(api: &Loopback) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(crate::statefulset::StatefulSetController::new(api).run(api.clone())),
        tokio::spawn(crate::daemonset::DaemonSetController::new(api).run(api.clone())),
        tokio::spawn(crate::volumes::VolumeController::new(api).run(api.clone())),
    ]
}

/// Writes `status` into `obj` (of `r`) unless it already has it; an
/// object gone or replaced meanwhile is left alone.
pub(crate) async fn write_status(
    cache: &mut Cache,
    r: &'static Resource,
    obj: &Value,
    status: Value,
) -> Result<(), ClientError> {
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let (ns, name, uid) = (
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
        meta_str(obj, "uid"),
    );
    let res = cache
        .modify(r, ns, name, Some("status"), |cur| {
            (meta_str(cur, "uid") == uid && cur.get("status") != Some(&status)).then(|| {
                let mut v = cur.clone();
                v["status"] = status.clone();
                v
            })
        })
        .await;
    match res {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}
