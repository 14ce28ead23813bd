//! Helm 4.1.4's kube client for a release's objects: `Create` (an install
//! that adopts nothing: every object tried, the failures one a line),
//! `Update` (server-side apply with manager `helm`, or client-side from
//! `chart_csa`; every live object tried, the failures joined with ` && `,
//! then what the chart dropped deleted unless kept) and the uninstall's
//! deletes.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use serde_json::Value as J;

use crate::chart_owner::owned;
use crate::chart_release::{Ctx, identity};

/// `helm.sh/resource-policy: keep`: never deleted by Helm.
pub(crate) fn keeps(o: &J) -> bool {
    o["metadata"]["annotations"]["helm.sh/resource-policy"].as_str() == Some("keep")
}

/// How Helm's kube client `Update` applies a release's objects.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct UpdateOpts {
    pub ssa: bool,
    pub force_conflicts: bool,
    pub force_replace: bool,
    /// Custom resources get a three-way JSON merge patch (client-side only).
    pub three_way_unstructured: bool,
    /// Move helm's client-side field ownership to its apply entry first.
    pub migrate: bool,
}

impl UpdateOpts {
    /// The combinations Helm's `Update` refuses, in its order and words.
    pub fn check(self) -> anyhow::Result<()> {
        if !self.ssa && self.force_conflicts {
            bail!(
                "invalid client update option(s): forceConflicts enabled when serverSideApply disabled"
            );
        }
        if self.three_way_unstructured && self.ssa {
            bail!(
                "invalid operation: cannot use three-way merge for unstructured and server-side apply together"
            );
        }
        if self.force_conflicts && self.force_replace {
            bail!("invalid operation: cannot use force conflicts and force replace together");
        }
        if self.ssa && self.force_replace {
            bail!("invalid operation: cannot use server-side apply and force replace together");
        }
        Ok(())
    }
}

/// Helm's `patchResourceServerSide`: `obj` applied at `path` with field
/// manager `helm`; a conflict is named as Helm names it.
fn apply_ssa(ctx: &Ctx, path: &str, obj: &J, force: bool) -> anyhow::Result<()> {
    let Err(e) = ctx.kube.apply(path, obj, "helm", force) else {
        return Ok(());
    };
    if e.downcast_ref::<crate::kube::ApiError>()
        .is_some_and(|a| a.code == 409)
    {
        // client-go's namespace/name and GroupVersionKind.String()
        let av = obj["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        bail!(
            "conflict occurred while applying object {}/{} {group}/{version}, Kind={}: {e:#}",
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
    }
    Err(e)
}

/// Helm's create of one object that is not live: applied server-side, or
/// created with a POST client-side.
fn create_one(ctx: &Ctx, path: &str, obj: &J, how: UpdateOpts) -> anyhow::Result<()> {
    if how.ssa {
        return apply_ssa(ctx, path, obj, how.force_conflicts);
    }
    crate::chart_csa::post(&ctx.kube, path, obj)??;
    Ok(())
}

/// Helm's kube client `Create`, what an install that adopts nothing does:
/// every object of `target` is created (none stops the others) and the
/// failures are joined one a line, as Go's `errors.Join`.
pub(crate) fn create_objects(
    ctx: &Ctx,
    name: &str,
    target: &[J],
    how: UpdateOpts,
) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for o in target {
        let (path, obj) = owned(&ctx.kube, o, name, &ctx.ns)?;
        if let Err(e) = create_one(ctx, &path, &obj, how) {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("\n"))
    }
}

/// Helm's kube client `Update`: each object of `target` that is not live is
/// created (a failure stops there); each live one is applied (server-side,
/// manager `helm`; else client-side: replaced with `--force-replace`, else
/// patched three-way from its original), every one tried and the failures
/// joined with ` && `, as Helm's `joinErrors`. Then what `current` has and
/// `target` dropped is deleted (unless kept), failures joined alike. What an
/// install or upgrade `adopted` is its own original, as in Helm; a live
/// object with no original is refused.
pub(crate) fn update_objects(
    ctx: &Ctx,
    name: &str,
    current: &[J],
    adopted: &[J],
    target: &[J],
    how: UpdateOpts,
) -> anyhow::Result<()> {
    how.check()?;
    let ns = &ctx.ns;
    let adopted: BTreeSet<String> = adopted.iter().map(|o| identity(o, ns)).collect();
    let csa = crate::chart_csa::How {
        replace: how.force_replace,
        three_way_unstructured: how.three_way_unstructured,
    };
    let mut errors = Vec::new();
    for o in target {
        let (path, obj) = owned(&ctx.kube, o, name, ns)?;
        let id = identity(&obj, ns);
        let original = if adopted.contains(&id) {
            Some(&obj)
        } else {
            current.iter().find(|o| identity(o, ns) == id)
        };
        // Server-side, what has an original is applied without Helm's GET
        // first (apply creates what went missing), one request an object
        if let (true, Some(_)) = (how.ssa, original) {
            let res = if how.migrate {
                crate::chart_csa::migrate(&ctx.kube, &path)
            } else {
                Ok(())
            }
            .and_then(|()| apply_ssa(ctx, &path, &obj, how.force_conflicts));
            if let Err(e) = res {
                errors.push(format!("{e:#}"));
            }
            continue;
        }
        let live = ctx
            .kube
            .get(&path)
            .context("could not get information about the resource")?;
        let Some(live) = live else {
            create_one(ctx, &path, &obj, how).context("failed to create resource")?;
            continue;
        };
        let Some(original) = original else {
            bail!(
                "original object {} with the name {:?} not found",
                obj["kind"].as_str().unwrap_or_default(),
                obj["metadata"]["name"].as_str().unwrap_or_default()
            );
        };
        if let Err(e) = crate::chart_csa::change(&ctx.kube, &path, original, &obj, &live, csa) {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join(" && "));
    }
    let want: BTreeSet<String> = target.iter().map(|o| identity(o, ns)).collect();
    for o in current.iter().rev() {
        if want.contains(&identity(o, ns)) || keeps(o) {
            continue;
        }
        if let Ok((path, _)) = ctx.kube.object_path(o, ns)
            && let Err(e) = ctx.kube.delete(&path)
        {
            errors.push(format!(
                "failed to delete resource {}: {e:#}",
                o["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join(" && "));
    }
    Ok(())
}

/// Deletes a release's objects in reverse install order; returns those kept
/// by `helm.sh/resource-policy: keep`.
pub(crate) fn delete_objects(ctx: &Ctx, objs: &[J]) -> anyhow::Result<Vec<String>> {
    let mut kept = Vec::new();
    for o in objs.iter().rev() {
        if keeps(o) {
            kept.push(format!(
                "[{}] {}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            ));
            continue;
        }
        let Ok((path, _)) = ctx.kube.object_path(o, &ctx.ns) else {
            continue;
        };
        ctx.kube.delete(&path)?;
    }
    Ok(kept)
}
