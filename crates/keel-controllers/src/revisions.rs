//! `ControllerRevisions`, the history of `StatefulSet` and `DaemonSet`
//! templates as kube-controller-manager keeps it: one object per distinct
//! template (`data` is a strategic merge patch that puts it back, so
//! `kubectl rollout undo` can apply it), named `<owner>-<hash>`, labelled
//! `controller.kubernetes.io/hash`, numbered by `revision`; going back to
//! an older template renumbers its revision rather than copying it; the
//! oldest ones no pod uses are deleted beyond `revisionHistoryLimit`.

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use crate::informer::Cache;
use crate::objects::{controller_of, int, meta_str};

pub(crate) const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The pod label naming the revision a pod was made from.
pub(crate) const POD_REVISION_LABEL: &str = "controller-revision-hash";

pub(crate) fn controller_revisions() -> &'static Resource {
    resources::find("apps", "v1", "controllerrevisions").expect("controllerrevisions are served")
}

/// What a revision stores for `owner`: its template as a patch that
/// replaces the whole template (upstream's `getPatch`).
pub(crate) fn patch_of(owner: &Value) -> Value {
    let mut t = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    t["$patch"] = json!("replace");
    json!({"spec": {"template": t}})
}

/// The pod template a revision holds.
pub(crate) fn template_of(rev: &Value) -> Value {
    let mut t = rev
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

pub(crate) fn number(rev: &Value) -> i64 {
    int(rev, "/revision")
}

/// Finds or makes the revision of `owner`'s current template among
/// `history` (sorted by number afterwards); returns its name and the
/// collision count to store in status.
pub(crate) async fn sync(
    cache: &mut Cache,
    owner_r: &'static Resource,
    owner: &Value,
    history: &mut Vec<Value>,
) -> Result<(String, i64), ClientError> {
    let data = patch_of(owner);
    let mut collisions = int(owner, "/status/collisionCount");
    history.sort_by_key(number);
    let max = history.last().map_or(0, number);
    if let Some(i) = history.iter().position(|r| r.get("data") == Some(&data)) {
        let name = meta_str(&history[i], "name").to_string();
        if number(&history[i]) != max {
            // Back to an older template: it becomes the newest revision.
            let ns = meta_str(owner, "namespace").to_string();
            if let Some(v) = cache
                .modify(controller_revisions(), &ns, &name, None, |cur| {
                    let mut v = cur.clone();
                    v["revision"] = json!(max + 1);
                    Some(v)
                })
                .await?
            {
                history[i] = v;
                history.sort_by_key(number);
            }
        }
        return Ok((name, collisions));
    }
    let mut labels = owner
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    loop {
        let hash = crate::deployment::template_hash(&data, collisions);
        labels[HASH_LABEL] = json!(hash);
        let name = format!("{}-{hash}", meta_str(owner, "name"));
        let rev = json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": meta_str(owner, "namespace"),
                "labels": labels, "ownerReferences": [controller_of(owner_r, owner)]},
            "data": data, "revision": max + 1,
        });
        match cache.create(controller_revisions(), rev).await {
            Ok(made) => {
                history.push(made);
                return Ok((name, collisions));
            }
            // Another template hashed to this name: upstream's collisionCount.
            Err(e) if e.code == 409 && collisions < 100 => collisions += 1,
            Err(e) => return Err(e),
        }
    }
}

/// What a revisioned controller reads first: the pods `owner` controls
/// (adopting and releasing by its selector), its revision history, and the
/// name of the revision of its current template and the collision count.
/// `None` when it has no usable selector or is being deleted.
pub(crate) async fn claim_all(
    cache: &mut Cache,
    owner_r: &'static Resource,
    owner: &Value,
) -> Result<Option<(Vec<Value>, Vec<Value>, String, i64)>, ClientError> {
    let Some(sel) = crate::replicaset::selector(owner) else {
        return Ok(None);
    };
    if crate::objects::is_deleting(owner) {
        return Ok(None);
    }
    let (ns, pods) = (meta_str(owner, "namespace"), crate::replicaset::pods());
    let all: Vec<Value> = cache.list(pods, ns).cloned().collect();
    let owned = cache.claim(owner_r, owner, pods, &sel, all).await?;
    let revs: Vec<Value> = cache.list(controller_revisions(), ns).cloned().collect();
    let mut history = cache
        .claim(owner_r, owner, controller_revisions(), &sel, revs)
        .await?;
    let (update, collisions) = sync(cache, owner_r, owner, &mut history).await?;
    Ok(Some((owned, history, update, collisions)))
}

/// Deletes the oldest revisions not named in `live` beyond `limit`.
pub(crate) async fn truncate(
    cache: &mut Cache,
    history: &[Value],
    live: &[&str],
    limit: i64,
) -> Result<(), ClientError> {
    let old: Vec<&Value> = history
        .iter()
        .filter(|r| !live.contains(&meta_str(r, "name")))
        .collect();
    let extra = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    for r in old.into_iter().take(extra) {
        cache
            .delete(
                controller_revisions(),
                meta_str(r, "namespace"),
                meta_str(r, "name"),
                meta_str(r, "uid"),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_holds_a_replacing_patch_of_the_template() {
        let set = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
        let p = patch_of(&set);
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        let rev = json!({"data": p});
        assert_eq!(template_of(&rev), set["spec"]["template"]);
    }
}
