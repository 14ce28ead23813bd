//! Helm's release ownership of live objects: the marks every object of a
//! release carries (`setMetadataVisitor`), the check that an object a
//! release would take over carries this release's marks, and which live
//! objects an install or upgrade adopts.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value as J};

use crate::chart_release::{Ctx, identity};
use crate::kube::Kube;

/// Helm's `setMetadataVisitor`: the managed-by label and the release
/// annotations on every object; namespaced objects get the release namespace.
pub(crate) fn owned(kube: &Kube, o: &J, name: &str, ns: &str) -> anyhow::Result<(String, J)> {
    let mut o = o.clone();
    let (path, namespaced) = kube.object_path(&o, ns)?;
    let meta = o["metadata"]
        .as_object_mut()
        .context("object has no metadata")?;
    if namespaced && !meta.contains_key("namespace") {
        meta.insert("namespace".into(), J::String(ns.into()));
    }
    for (field, k, v) in [
        ("labels", "app.kubernetes.io/managed-by", "Helm"),
        ("annotations", "meta.helm.sh/release-name", name),
        ("annotations", "meta.helm.sh/release-namespace", ns),
    ] {
        let m = meta.entry(field).or_insert_with(|| J::Object(Map::new()));
        if !m.is_object() {
            *m = J::Object(Map::new());
        }
        m[k] = J::String(v.into());
    }
    Ok((path, o))
}

/// Helm's ownership check for an object that exists (`live`) but is not in
/// the release: it must carry this release's annotations.
fn check_ownership(live: &J, o: &J, name: &str, ns: &str, op: &str) -> anyhow::Result<()> {
    let mut errs = Vec::new();
    let labels = &live["metadata"]["labels"];
    let ann = &live["metadata"]["annotations"];
    match labels["app.kubernetes.io/managed-by"].as_str() {
        None => errs.push("label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"".to_string()),
        Some("Helm") => {}
        Some(v) => errs.push(format!("label validation error: key \"app.kubernetes.io/managed-by\" must equal \"Helm\": current value is \"{v}\"")),
    }
    for (k, want) in [
        ("meta.helm.sh/release-name", name),
        ("meta.helm.sh/release-namespace", ns),
    ] {
        match ann[k].as_str() {
            None => errs.push(format!("annotation validation error: missing key \"{k}\": must be set to \"{want}\"")),
            Some(v) if v == want => {}
            Some(v) => errs.push(format!("annotation validation error: key \"{k}\" must equal \"{want}\": current value is \"{v}\"")),
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    // Helm's resourceString: the namespace is named even when empty
    bail!(
        "unable to continue with {op}: {} \"{}\" in namespace \"{}\" exists and cannot be imported into the current release: invalid ownership metadata; {}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default(),
        live["metadata"]["namespace"].as_str().unwrap_or_default(),
        errs.join("; ")
    )
}

/// Helm's check before an install or upgrade records anything: objects of
/// `target` that `current` does not hold but that are live must carry this
/// release's ownership marks (unless `--take-ownership`); they are returned
/// (as rendered) to be adopted.
pub(crate) fn adoptions(
    ctx: &Ctx,
    name: &str,
    current: &[J],
    target: &[J],
    op: &str,
) -> anyhow::Result<Vec<J>> {
    let ns = &ctx.ns;
    let had: BTreeSet<String> = current.iter().map(|o| identity(o, ns)).collect();
    let mut adopted = Vec::new();
    for o in target.iter().filter(|o| !had.contains(&identity(o, ns))) {
        let (path, obj) = owned(&ctx.kube, o, name, ns)?;
        let Some(live) = ctx.kube.get(&path)? else {
            continue;
        };
        if !ctx.opts.take_ownership {
            check_ownership(&live, &obj, name, ns, op)?;
        }
        adopted.push(o.clone());
    }
    Ok(adopted)
}
