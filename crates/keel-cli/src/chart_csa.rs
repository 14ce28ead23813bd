//! Client-side apply for releases Helm 3 made (Helm 4's `--server-side`
//! choice): an upgrade or rollback takes the apply method of the release
//! it starts from (`auto`: server-side only when that record says `ssa`; a
//! Helm 3 record says nothing), and records the method it used. Client-side,
//! new objects are created (POST) and existing ones get Helm's three-way
//! strategic merge patch (old manifest, new manifest, live object), built
//! with keel-api's strategic-merge code; kinds the API has no strategic
//! metadata for (custom resources) get a two-way JSON merge patch from the
//! old manifest to the new, as Helm's `createPatch` sends them.

use anyhow::Context as _;
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

/// Creates `obj` at `path` with a POST (field manager `helm`); `Ok(false)`
/// when it already exists.
pub fn create(kube: &Kube, path: &str, obj: &J) -> anyhow::Result<bool> {
    let col = path.rsplit_once('/').map_or(path, |(c, _)| c);
    match kube.call(
        "POST",
        &format!("{col}?fieldManager=helm"),
        Some(obj),
        "application/json",
    )? {
        Ok(_) => Ok(true),
        Err(e) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Helm's client-side update of one object: created when it is not live,
/// else patched from `original` (its object in the release being replaced)
/// to `target` against the live object. Nothing is sent when the patch is
/// empty.
pub fn update(kube: &Kube, path: &str, original: Option<&J>, target: &J) -> anyhow::Result<()> {
    let kind = target["kind"].as_str().unwrap_or_default();
    let name = target["metadata"]["name"].as_str().unwrap_or_default();
    let Some(live) = kube.get(path)? else {
        create(kube, path, target).context("failed to create resource")?;
        return Ok(());
    };
    let Some(original) = original else {
        anyhow::bail!("original object {kind} with the name {name:?} not found");
    };
    let api_version = target["apiVersion"].as_str().unwrap_or_default();
    let (patch, ct) = match keel_api::strategic::schema_for(api_version, kind) {
        Some(schema) => (
            keel_api::strategic::three_way(original, target, &live, schema)
                .map_err(|e| anyhow::anyhow!("failed to create patch: {e}"))?,
            "application/strategic-merge-patch+json",
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

#[cfg(test)]
mod tests {
    use super::*;

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
