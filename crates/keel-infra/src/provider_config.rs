//! `provider` blocks of the root module, evaluated once per run from the
//! root's variables and locals (the provider settings users write:
//! `config_path = var.kubeconfig`, `host = local.engine`). Resources and
//! data sources are not available there: keel configures providers before
//! the walk, so a plan with `-destroy` or an orphan's deletion sees the same
//! settings as everything else. Child modules use the root's providers.

use std::collections::BTreeMap;

use keel_hcl::convert::convert;
use keel_hcl::diag::{Diagnostic, Diagnostics};
use keel_hcl::syntax::{Body, RefStep, Reference};
use keel_hcl::{Type, Value};

use crate::config::Module;
use crate::scope::{InstCtx, ModVals, RunInfo, Store, eval};

/// The key a configuration is kept under: `kubernetes`, `kubernetes.west`.
pub fn key(name: &str, alias: Option<&str>) -> String {
    match alias {
        Some(a) => format!("{name}.{a}"),
        None => name.to_string(),
    }
}

/// Evaluated provider blocks by [`key`].
pub fn evaluate(
    root: &Module,
    run: &RunInfo,
    inputs: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let mut out = BTreeMap::new();
    if root.providers.is_empty() {
        return Ok(out);
    }
    let empty = BTreeMap::new();
    let mut mv = ModVals::default();
    for (k, v) in &root.variables {
        let raw = inputs
            .get(k)
            .filter(|x| !x.is_null())
            .cloned()
            .or_else(|| {
                v.default
                    .as_ref()
                    .and_then(|d| eval(d, &empty, run, &root.dir).ok())
            })
            .unwrap_or_else(|| Value::unknown(Type::Dynamic));
        let val = convert(&raw, &v.ty).unwrap_or(raw);
        mv.vars.insert(k.clone(), val.mark(v.sensitive));
    }
    let mut store = Store::default();
    // Locals in dependency order: those whose references are all known by now.
    let mut pending: Vec<&String> = root.locals.keys().collect();
    loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for name in pending {
            let e = &root.locals[name].expr;
            let refs = e.references();
            if refs.iter().all(|r| available(r, &mv)) {
                store.mods.insert(Vec::new(), mv.clone());
                let vars = store.scope(&Vec::new(), &root.dir, &refs, &InstCtx::default(), run);
                if let Ok(v) = eval(e, &vars, run, &root.dir) {
                    mv.locals.insert(name.clone(), v);
                    progressed = true;
                    continue;
                }
            }
            still.push(name);
        }
        pending = still;
        if !progressed || pending.is_empty() {
            break;
        }
    }
    store.mods.insert(Vec::new(), mv.clone());
    for p in &root.providers {
        let v = eval_loose(&p.body, &store, &mv, root, run)?;
        out.insert(key(&p.name, p.alias.as_deref()), v);
    }
    Ok(out)
}

fn available(r: &Reference, mv: &ModVals) -> bool {
    match r.root.as_str() {
        "var" | "path" | "terraform" => true,
        "local" => matches!(r.steps.first(), Some(RefStep::Attr(n)) if mv.locals.contains_key(n)),
        _ => false,
    }
}

fn ref_text(r: &Reference) -> String {
    match r.steps.first() {
        Some(RefStep::Attr(a)) => format!("{}.{a}", r.root),
        _ => r.root.clone(),
    }
}

/// A body without a schema: attributes as they evaluate, blocks as lists of objects.
fn eval_loose(
    b: &Body,
    store: &Store,
    mv: &ModVals,
    root: &Module,
    run: &RunInfo,
) -> Result<Value, Diagnostics> {
    let mut obj = BTreeMap::new();
    for a in &b.attributes {
        let refs = a.expr.references();
        if let Some(bad) = refs.iter().find(|r| !available(r, mv)) {
            return Err(Diagnostic::error(
                "Unsupported provider configuration reference",
                format!(
                    "keel evaluates provider blocks before planning, from the root module's variables and locals only; {} is not one of them.",
                    ref_text(bad)
                ),
                Some(bad.range.clone()),
            )
            .into());
        }
        let vars = store.scope(&Vec::new(), &root.dir, &refs, &InstCtx::default(), run);
        obj.insert(a.name.clone(), eval(&a.expr, &vars, run, &root.dir)?);
    }
    let mut blocks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for blk in &b.blocks {
        blocks
            .entry(blk.kind.clone())
            .or_default()
            .push(eval_loose(&blk.body, store, mv, root, run)?);
    }
    for (k, items) in blocks {
        obj.insert(k, Value::tuple(items));
    }
    Ok(Value::object(obj))
}
