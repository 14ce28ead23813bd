//! Client-side apply for releases Helm 3 made (Helm 4's `--server-side`
//! choice): an upgrade or rollback takes the apply method of the release
//! it starts from (`auto`: server-side only when that record says `ssa`; a
//! Helm 3 record says nothing), and records the method it used. Client-side,
//! new objects are created (POST) and existing ones get Helm's three-way
//! strategic merge patch (old manifest, new manifest, live object), built
//! with keel-api's strategic-merge code; kinds the API has no strategic
//! metadata for (custom resources) get a two-way JSON merge patch from the
//! old manifest to the new, as Helm's `createPatch` sends them, or a
//! three-way JSON merge patch when an install takes ownership. With
//! `--force-replace` existing objects are replaced whole (PUT), as Helm's
//! `replaceResource`. Leaving client-side apply, helm's field ownership moves
//! to its apply entry first (client-go's `csaupgrade`), as Helm does.

use serde_json::Value as J;

use crate::kube::Kube;

/// Helm's `getUpgradeServerSideValue`: `auto` follows the previous release
/// (`previous` is its `apply_method`), `true`/`false` force the choice.
pub fn server_side(flag: &str, previous: &str) -> anyhow::Result<bool> {
    match flag {
        "auto" => Ok(previous == "ssa"),
        "true" => Ok(true),
        "false" => Ok(false),
        other => anyhow::bail!("invalid/unknown release server-side apply method: {other}"),
    }
}

/// The record's `apply_method` for a choice (Helm's `determineReleaseSSApplyMethod`).
pub fn method(server_side: bool) -> &'static str {
    if server_side { "ssa" } else { "csa" }
}

/// POSTs `obj` into the collection of `path` (field manager `helm`);
/// `Err` carries the API's refusal.
pub fn post(kube: &Kube, path: &str, obj: &J) -> anyhow::Result<Result<J, crate::kube::ApiError>> {
    let col = path.rsplit_once('/').map_or(path, |(c, _)| c);
    kube.call(
        "POST",
        &format!("{col}?fieldManager=helm"),
        Some(obj),
        "application/json",
    )
}

/// Creates `obj` at `path` with a POST (field manager `helm`); `Ok(false)`
/// when it already exists.
pub fn create(kube: &Kube, path: &str, obj: &J) -> anyhow::Result<bool> {
    match post(kube, path, obj)? {
        Ok(_) => Ok(true),
        Err(e) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How Helm's client-side `Update` changes an object that is live.
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    /// `--force-replace`: PUT the new object instead of patching.
    pub replace: bool,
    /// Custom resources get a three-way JSON merge patch (Helm 4's install
    /// with `--take-ownership`), not the two-way one from the old manifest.
    pub three_way_unstructured: bool,
}

/// Helm's client-side update of an object that is `live`: replaced, or
/// patched from `original` (its object in the release being replaced) to
/// `target` against the live object. Nothing is sent when the patch is empty.
pub fn change(
    kube: &Kube,
    path: &str,
    original: &J,
    target: &J,
    live: &J,
    how: How,
) -> anyhow::Result<()> {
    let kind = target["kind"].as_str().unwrap_or_default();
    let name = target["metadata"]["name"].as_str().unwrap_or_default();
    if how.replace {
        return replace(kube, path, target, live);
    }
    let api_version = target["apiVersion"].as_str().unwrap_or_default();
    let (patch, ct) = match keel_api::strategic::schema_for(api_version, kind) {
        Some(schema) => (
            keel_api::strategic::three_way(original, target, live, schema)
                .map_err(|e| anyhow::anyhow!("failed to create patch: {e}"))?,
            "application/strategic-merge-patch+json",
        ),
        None if how.three_way_unstructured => (
            keel_api::strategic::three_way_json(original, target, live)
                .map_err(|e| anyhow::anyhow!("failed to create patch: {e}"))?,
            "application/merge-patch+json",
        ),
        None => (
            keel_api::strategic::merge_patch_diff(original, target),
            "application/merge-patch+json",
        ),
    };
    if patch.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok(());
    }
    kube.call(
        "PATCH",
        &format!("{path}?fieldManager=helm"),
        Some(&patch),
        ct,
    )?
    .map_err(|e| anyhow::anyhow!("cannot patch {name:?} with kind {kind}: {e}"))?;
    Ok(())
}

/// cli-runtime's `Helper.Replace` with overwrite, as Helm's `replaceResource`
/// calls it: the whole object PUT at the live `resourceVersion`, so what
/// others added to the live object goes, and immutable fields stay refused.
fn replace(kube: &Kube, path: &str, target: &J, live: &J) -> anyhow::Result<()> {
    let mut obj = target.clone();
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_none_or(str::is_empty)
        && let Some(meta) = obj["metadata"].as_object_mut()
    {
        meta.insert(
            "resourceVersion".into(),
            live["metadata"]["resourceVersion"].clone(),
        );
    }
    kube.call(
        "PUT",
        &format!("{path}?fieldManager=helm&fieldValidation=Strict"),
        Some(&obj),
        "application/json",
    )?
    .map_err(|e| anyhow::anyhow!("failed to replace object: {e}"))?;
    Ok(())
}

/// client-go's `csaupgrade.UpgradeManagedFieldsPatch` for manager `helm`:
/// the fields `helm` set client-side (its `Update` entries) move into its
/// `Apply` entry (the newest `Update` entry becomes it when there is none),
/// so that server-side apply from now on releases what the chart drops.
/// `None` when nothing is to move. The patch replaces `managedFields` with
/// the object's `resourceVersion` as precondition.
pub fn upgrade_managed_fields(live: &J) -> Option<J> {
    const M: &str = "helm";
    let entries = live["metadata"]["managedFields"].as_array()?;
    let is = |e: &J, op: &str| {
        e["manager"] == M
            && e["operation"] == op
            && e["subresource"].as_str().unwrap_or("").is_empty()
    };
    let mut out = entries.clone();
    let target = if let Some(i) = out.iter().position(|e| is(e, "Apply")) {
        i
    } else {
        let i = out.iter().position(|e| is(e, "Update"))?;
        out[i]["operation"] = J::String("Apply".into());
        i
    };
    let api_version = out[target]["apiVersion"].clone();
    let mut fields = out[target]["fieldsV1"].clone();
    if let Some(csa) = out
        .iter()
        .find(|e| is(e, "Update") && e["apiVersion"] == api_version)
    {
        union(&mut fields, &csa["fieldsV1"]);
    }
    // the last-applied annotation is kubectl's, never the applier's
    remove_path(
        &mut fields,
        &[
            "f:metadata",
            "f:annotations",
            "f:kubectl.kubernetes.io/last-applied-configuration",
        ],
    );
    out[target]["fieldsV1"] = fields;
    out.retain(|e| !is(e, "Update"));
    if &out == entries {
        return None;
    }
    Some(serde_json::json!([
        {"op": "replace", "path": "/metadata/managedFields", "value": out},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
    ]))
}

/// The union of two `FieldsV1` sets (tries of JSON objects).
fn union(a: &mut J, b: &J) {
    let Some(bm) = b.as_object() else {
        return;
    };
    if !a.is_object() {
        *a = J::Object(serde_json::Map::new());
    }
    if let Some(am) = a.as_object_mut() {
        for (k, v) in bm {
            match am.get_mut(k) {
                Some(x) => union(x, v),
                None => {
                    am.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Takes `path` out of a `FieldsV1` set, and the nodes it leaves empty.
fn remove_path(v: &mut J, path: &[&str]) -> bool {
    let Some(m) = v.as_object_mut() else {
        return false;
    };
    match path {
        [] => false,
        [last] => m.remove(*last).is_some() && m.is_empty(),
        [first, rest @ ..] => {
            let empty = m.get_mut(*first).is_some_and(|c| remove_path(c, rest));
            if empty {
                m.remove(*first);
            }
            empty && m.is_empty()
        }
    }
}

/// Before the first server-side apply of an object `helm` wrote
/// client-side: moves its fields to its apply entry (Helm's
/// `upgradeClientSideFieldManager`).
pub fn migrate(kube: &Kube, path: &str) -> anyhow::Result<()> {
    let Some(live) = kube.get(path)? else {
        return Ok(());
    };
    let Some(patch) = upgrade_managed_fields(&live) else {
        return Ok(());
    };
    kube.call(
        "PATCH",
        &format!("{path}?fieldManager=helm"),
        Some(&patch),
        "application/json-patch+json",
    )?
    .map_err(|e| {
        anyhow::anyhow!("failed to patch object to upgrade CSA field manager {path}: {e}")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_side_fields_move_to_the_apply_entry() {
        let live = serde_json::json!({"metadata": {"resourceVersion": "7", "managedFields": [
            {"manager": "helm", "operation": "Update", "apiVersion": "v1",
             "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
            {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "v1",
             "fieldsV1": {"f:data": {"f:x": {}}}},
        ]}});
        let p = upgrade_managed_fields(&live).unwrap();
        assert_eq!(
            p[0]["value"],
            serde_json::json!([
                {"manager": "helm", "operation": "Apply", "apiVersion": "v1",
                 "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
                {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "v1",
                 "fieldsV1": {"f:data": {"f:x": {}}}},
            ])
        );
        assert_eq!(p[1]["value"], "7");
        // an Apply entry takes the Update one's fields; nothing to do twice
        let live = serde_json::json!({"metadata": {"managedFields": [
            {"manager": "helm", "operation": "Apply", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "helm", "operation": "Update", "apiVersion": "v1",
             "fieldsV1": {"f:data": {"f:b": {}}, "f:metadata": {"f:annotations": {
                 "f:kubectl.kubernetes.io/last-applied-configuration": {}}}}},
        ]}});
        let p = upgrade_managed_fields(&live).unwrap();
        assert_eq!(
            p[0]["value"],
            serde_json::json!([{"manager": "helm", "operation": "Apply", "apiVersion": "v1",
                "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}}])
        );
        let done = serde_json::json!({"metadata": {"managedFields": p[0]["value"]}});
        assert!(upgrade_managed_fields(&done).is_none());
    }

    #[test]
    fn auto_follows_the_previous_record() {
        // Helm 3 wrote no apply_method; Helm 4's client-side records say csa
        assert!(!server_side("auto", "").unwrap());
        assert!(!server_side("auto", "csa").unwrap());
        assert!(server_side("auto", "ssa").unwrap());
        assert!(server_side("true", "").unwrap());
        assert!(!server_side("false", "ssa").unwrap());
        assert_eq!(
            server_side("maybe", "").unwrap_err().to_string(),
            "invalid/unknown release server-side apply method: maybe"
        );
        assert_eq!(method(true), "ssa");
        assert_eq!(method(false), "csa");
    }
}
