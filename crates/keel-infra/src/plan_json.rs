//! Terraform's JSON formats: a state's `values` (`show -json`) and a plan's
//! representation (`show -json PLANFILE`): `variables`, `planned_values`,
//! `resource_changes`, `output_changes`, `prior_state`, `configuration`.
//! Unknown values are left out of `values`/`after` and flagged in
//! `after_unknown`; sensitive ones are flagged in `*_sensitive`, as
//! terraform's jsonplan does.

use std::collections::BTreeMap;

use keel_hcl::render::to_json;
use keel_hcl::syntax::{Body, Expr, RefStep, Reference};
use keel_hcl::{Kind, Value};
use serde_json::{Map, Value as J, json};

use crate::addr::{Key, ModInst, module_prefix};
use crate::config::{Mode, Module, ModuleCall};
use crate::plan::{Action, Change, Plan};
use crate::providers::Providers;
use crate::state::{StateFile, apply_sensitive};

/// The value with unknowns left out (object attributes dropped, sequence
/// elements nulled: their position says which is which).
pub fn omit_unknowns(v: &Value) -> Option<J> {
    match &v.kind {
        Kind::Unknown(_) => None,
        Kind::Null(_) => Some(J::Null),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => Some(J::Array(
            e.iter()
                .map(|x| omit_unknowns(x).unwrap_or(J::Null))
                .collect(),
        )),
        Kind::Map(_, m) | Kind::Object(m) => Some(J::Object(
            m.iter()
                .filter_map(|(k, x)| omit_unknowns(x).map(|j| (k.clone(), j)))
                .collect(),
        )),
        _ => Some(to_json(v)),
    }
}

/// terraform's `unknownAsBool`: `true` where unknown, objects keep only what is not `false`.
pub fn unknown_as_bool(v: &Value) -> J {
    match &v.kind {
        Kind::Unknown(_) => J::Bool(true),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            J::Array(e.iter().map(unknown_as_bool).collect())
        }
        Kind::Map(_, m) | Kind::Object(m) => J::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), unknown_as_bool(x)))
                .filter(|(_, j)| *j != J::Bool(false))
                .collect(),
        ),
        _ => J::Bool(false),
    }
}

/// terraform's `SensitiveAsBool`: `true` where marked sensitive.
pub fn sensitive_as_bool(v: &Value) -> J {
    if v.sensitive {
        return J::Bool(true);
    }
    match &v.kind {
        Kind::Unknown(keel_hcl::Type::Object(_) | keel_hcl::Type::Map(_)) => json!({}),
        Kind::Unknown(
            keel_hcl::Type::List(_) | keel_hcl::Type::Set(_) | keel_hcl::Type::Tuple(_),
        ) => json!([]),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            J::Array(e.iter().map(sensitive_as_bool).collect())
        }
        Kind::Map(_, m) | Kind::Object(m) => J::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), sensitive_as_bool(x)))
                .filter(|(_, j)| *j != J::Bool(false))
                .collect(),
        ),
        _ => J::Bool(false),
    }
}

fn provider_name(provider: &str) -> String {
    provider
        .trim_start_matches("provider[\"")
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One resource instance of a `values` tree.
struct ResJson {
    module: String,
    j: J,
}

// The fields of one `values` entry, as terraform names them.
#[allow(clippy::too_many_arguments)]
fn res_json(
    module: &str,
    mode: &str,
    ty: &str,
    name: &str,
    key: Option<&J>,
    provider: &str,
    schema_version: u64,
    v: Option<&Value>,
    raw: &J,
) -> ResJson {
    let address = instance_address(module, mode, ty, name, key);
    let mut j = json!({
        "address": address,
        "mode": mode,
        "type": ty,
        "name": name,
        "provider_name": provider_name(provider),
        "schema_version": schema_version,
        "values": v.map_or_else(|| raw.clone(), |v| omit_unknowns(v).unwrap_or(J::Null)),
        "sensitive_values": v.map_or_else(|| json!({}), sensitive_as_bool),
    });
    if let Some(k) = key {
        j["index"] = k.clone();
    }
    ResJson {
        module: module.to_string(),
        j,
    }
}

fn instance_address(module: &str, mode: &str, ty: &str, name: &str, key: Option<&J>) -> String {
    let res = if mode == "data" {
        format!("data.{ty}.{name}")
    } else {
        format!("{ty}.{name}")
    };
    let idx = key
        .map(|k| Key::from_json(Some(k)).to_string())
        .unwrap_or_default();
    if module.is_empty() {
        format!("{res}{idx}")
    } else {
        format!("{module}.{res}{idx}")
    }
}

/// Changes made outside terraform: the prior state against what refresh read.
fn resource_drift(root: &Module, plan: &Plan, prior: &StateFile, providers: &Providers) -> Vec<J> {
    let (moved, _) = crate::apply::apply_moves(root, prior);
    let mut out = Vec::new();
    for c in plan.changes.iter().filter(|c| c.mode == Mode::Managed) {
        let prefix = module_prefix(&c.module);
        let Some((r, i)) = moved.resources.iter().find_map(|r| {
            (r.mode == "managed"
                && r.ty == c.ty
                && r.name == c.name
                && r.module.clone().unwrap_or_default() == prefix)
                .then(|| {
                    r.instances
                        .iter()
                        .find(|i| {
                            i.deposed.is_none() && Key::from_json(i.index_key.as_ref()) == c.key
                        })
                        .map(|i| (r, i))
                })
                .flatten()
        }) else {
            continue;
        };
        let Some(old) = crate::apply::state_value(providers, i, &r.ty, Mode::Managed)
            .map(|v| apply_sensitive(v, &i.sensitive_attributes))
        else {
            continue;
        };
        let now = if matches!(c.action, Action::Create) {
            None
        } else {
            c.before.clone()
        };
        if now
            .as_ref()
            .is_some_and(|n| n.raw_equals(&old) && n.sensitive == old.sensitive)
        {
            continue;
        }
        let mut d = Change {
            action: if now.is_some() {
                Action::Update
            } else {
                Action::Delete
            },
            before: Some(old),
            after: now,
            replace_paths: Vec::new(),
            reason: None,
            importing: None,
            ..c.clone()
        };
        d.provider.clone_from(&r.provider);
        out.push(change_json(&d));
    }
    out
}

/// Nests resources by module address into terraform's `root_module` shape.
fn module_tree(mut rs: Vec<ResJson>) -> J {
    fn build(addr: &str, all: &[String], by_mod: &BTreeMap<String, Vec<J>>) -> J {
        let mut j = Map::new();
        if let Some(rs) = by_mod.get(addr)
            && !rs.is_empty()
        {
            j.insert("resources".into(), J::Array(rs.clone()));
        }
        if !addr.is_empty() {
            j.insert("address".into(), J::String(addr.to_string()));
        }
        let kids: Vec<J> = all
            .iter()
            .filter(|m| {
                !m.is_empty()
                    && if addr.is_empty() {
                        parent_module(m).is_none()
                    } else {
                        parent_module(m).map(|i| &m[..i]) == Some(addr)
                    }
            })
            .map(|m| build(m, all, by_mod))
            .collect();
        if !kids.is_empty() {
            j.insert("child_modules".into(), J::Array(kids));
        }
        J::Object(j)
    }
    rs.sort_by(|a, b| a.j["address"].as_str().cmp(&b.j["address"].as_str()));
    let mut by_mod: BTreeMap<String, Vec<J>> = BTreeMap::new();
    for r in rs {
        by_mod.entry(r.module).or_default().push(r.j);
    }
    // Every ancestor of a module with resources appears.
    let mut all: Vec<String> = by_mod.keys().cloned().collect();
    for m in by_mod.keys() {
        let mut p = m.as_str();
        while let Some(i) = parent_module(p) {
            p = &m[..i];
            all.push(p.to_string());
        }
    }
    all.sort();
    all.dedup();
    build("", &all, &by_mod)
}

/// The end of the parent's address in a module address (`module.a.module.b` → 8).
fn parent_module(m: &str) -> Option<usize> {
    let i = m.rfind(".module.")?;
    Some(i)
}

/// `show -json` of a state: its `values` (outputs and `root_module`).
pub fn state_values(s: &StateFile, providers: &Providers) -> J {
    values_of(s, providers, &BTreeMap::new())
}

/// A state's values with some instances' values replaced (refreshed ones;
/// `None`: gone).
fn values_of(s: &StateFile, providers: &Providers, over: &BTreeMap<String, Option<Value>>) -> J {
    let mut rs = Vec::new();
    for r in &s.resources {
        let mode = if r.mode == "data" {
            Mode::Data
        } else {
            Mode::Managed
        };
        for i in r.instances.iter().filter(|i| i.deposed.is_none()) {
            let mut v = crate::apply::state_value(providers, i, &r.ty, mode)
                .map(|v| apply_sensitive(v, &i.sensitive_attributes));
            let addr = instance_address(
                r.module.as_deref().unwrap_or_default(),
                &r.mode,
                &r.ty,
                &r.name,
                i.index_key.as_ref(),
            );
            match over.get(&addr) {
                Some(None) => continue,
                Some(Some(n)) => v = Some(n.clone()),
                None => {}
            }
            let mut x = res_json(
                r.module.as_deref().unwrap_or_default(),
                &r.mode,
                &r.ty,
                &r.name,
                i.index_key.as_ref(),
                &r.provider,
                i.schema_version,
                v.as_ref(),
                &i.attributes,
            );
            if !i.dependencies.is_empty() {
                x.j["depends_on"] = json!(i.dependencies);
            }
            rs.push(x);
        }
    }
    let mut values = json!({"root_module": module_tree(rs)});
    let outputs: Map<String, J> = s
        .outputs
        .iter()
        .map(|(k, o)| {
            (
                k.clone(),
                json!({"sensitive": o.sensitive, "value": o.value, "type": o.ty}),
            )
        })
        .collect();
    if !outputs.is_empty() {
        values["outputs"] = J::Object(outputs);
    }
    values
}

/// `show -json` of a state, whole.
pub fn state_json(s: &StateFile, providers: &Providers) -> J {
    if s.resources.is_empty() && s.outputs.is_empty() {
        return json!({ "format_version": "1.0" });
    }
    json!({
        "format_version": "1.0",
        "terraform_version": s.terraform_version,
        "values": state_values(s, providers),
    })
}

fn actions(a: Action) -> J {
    match a {
        Action::NoOp => json!(["no-op"]),
        Action::Create => json!(["create"]),
        Action::Read => json!(["read"]),
        Action::Update => json!(["update"]),
        Action::Replace(true) => json!(["create", "delete"]),
        Action::Replace(false) => json!(["delete", "create"]),
        Action::Delete => json!(["delete"]),
        Action::Forget => json!(["forget"]),
    }
}

fn change_json(c: &Change) -> J {
    let null = Value::dyn_null();
    let before = c.before.as_ref().unwrap_or(&null);
    let after = c.after.as_ref().unwrap_or(&null);
    let mut ch = json!({
        "actions": actions(c.action),
        "before": omit_unknowns(before).unwrap_or(J::Null),
        "after": omit_unknowns(after).unwrap_or(J::Null),
        "after_unknown": if after.is_wholly_known() { json!({}) } else { unknown_as_bool(after) },
        "before_sensitive": if before.is_null() { J::Bool(false) } else { sensitive_as_bool(before) },
        "after_sensitive": if after.is_null() { J::Bool(false) } else { sensitive_as_bool(after) },
    });
    if !c.replace_paths.is_empty() {
        ch["replace_paths"] = J::Array(c.replace_paths.iter().map(|p| json!([p])).collect());
    }
    if let Some(id) = &c.importing {
        ch["importing"] = json!({ "id": id });
    }
    let mode = if c.mode == Mode::Data {
        "data"
    } else {
        "managed"
    };
    let mut j = json!({
        "address": c.addr(),
        "mode": mode,
        "type": c.ty,
        "name": c.name,
        "provider_name": provider_name(&c.provider),
        "change": ch,
    });
    let prefix = module_prefix(&c.module);
    if !prefix.is_empty() {
        j["module_address"] = J::String(prefix);
    }
    if let Some(k) = c.key.to_json() {
        j["index"] = k;
    }
    if let Some(p) = &c.moved_from {
        j["previous_address"] = J::String(p.clone());
    }
    if let Some(r) = action_reason(c) {
        j["action_reason"] = J::String(r.into());
    }
    j
}

/// terraform's `action_reason` of a change, if it has one.
pub fn action_reason(c: &Change) -> Option<&'static str> {
    if matches!(c.action, Action::Replace(_)) && c.reason.is_none() && !c.replace_paths.is_empty() {
        return Some("replace_because_cannot_update");
    }
    let r = c.reason.as_deref()?;
    Some(if r.contains("tainted") {
        "replace_because_tainted"
    } else if r.contains("requested") {
        "replace_by_request"
    } else if r.contains("replace_triggered_by") {
        "replace_by_triggers"
    } else if r.contains("cannot be updated") || !c.replace_paths.is_empty() {
        "replace_because_cannot_update"
    } else if r.contains("count") || r.contains("each") {
        if matches!(c.key, Key::Str(_)) {
            "delete_because_each_key"
        } else {
            "delete_because_count_index"
        }
    } else if r.contains("no longer in") || r.contains("not in configuration") {
        "delete_because_no_resource_config"
    } else if r.contains("module") {
        "delete_because_no_module"
    } else {
        return None;
    })
}

/// The plan as `terraform show -json PLANFILE` prints it.
pub fn plan_json(root: &Module, plan: &Plan, prior: &StateFile, providers: &Providers) -> J {
    let mut out = Map::new();
    out.insert("format_version".into(), json!("1.2"));
    out.insert(
        "terraform_version".into(),
        json!(crate::state::TERRAFORM_VERSION),
    );
    let vars: Map<String, J> = plan
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), json!({ "value": to_json(&v.unmark_deep()) })))
        .collect();
    if !vars.is_empty() {
        out.insert("variables".into(), J::Object(vars));
    }

    // planned_values: what each instance will be after apply.
    let mut rs = Vec::new();
    for c in &plan.changes {
        if matches!(c.action, Action::Delete | Action::Forget) {
            continue;
        }
        let Some(after) = &c.after else { continue };
        let provider = c.provider.clone();
        let mode = if c.mode == Mode::Data {
            "data"
        } else {
            "managed"
        };
        rs.push(res_json(
            &module_prefix(&c.module),
            mode,
            &c.ty,
            &c.name,
            c.key.to_json().as_ref(),
            &provider,
            0,
            Some(after),
            &J::Null,
        ));
    }
    let mut planned = json!({ "root_module": module_tree(rs) });
    let mut outs = Map::new();
    let mut prior_outs = Map::new();
    for (k, o) in &plan.outputs {
        let Some(after) = &o.after else { continue };
        let mut j = json!({ "sensitive": o.sensitive || after.has_sensitive() });
        if after.is_wholly_known() {
            j["value"] = to_json(&after.unmark_deep());
            j["type"] = after.ty().to_json();
            prior_outs.insert(k.clone(), j.clone());
        }
        outs.insert(k.clone(), j);
    }
    if !outs.is_empty() {
        planned["outputs"] = J::Object(outs);
    }
    out.insert("planned_values".into(), planned);

    let mut changes: Vec<J> = plan
        .changes
        .iter()
        .filter(|c| c.mode == Mode::Managed || c.action == Action::Read)
        .map(change_json)
        .collect();
    // Root module first, then modules by address (terraform's order).
    let order = |j: &J| {
        (
            j["module_address"].as_str().unwrap_or_default().to_string(),
            j["address"].as_str().unwrap_or_default().to_string(),
        )
    };
    changes.sort_by_key(|j| {
        let (m, a) = order(j);
        (m.matches("module.").count(), m, a)
    });
    let drift = resource_drift(root, plan, prior, providers);
    if !drift.is_empty() {
        out.insert("resource_drift".into(), J::Array(drift));
    }
    if !changes.is_empty() {
        out.insert("resource_changes".into(), J::Array(changes));
    }

    let mut oc = Map::new();
    for (k, o) in &plan.outputs {
        let null = Value::dyn_null();
        let before = o.before.as_ref().unwrap_or(&null);
        let after = o.after.as_ref().unwrap_or(&null);
        let action = match (&o.before, &o.after) {
            (None, Some(_)) => "create",
            (Some(_), None) => "delete",
            (Some(b), Some(a)) if b.raw_equals(a) && b.sensitive == a.sensitive => "no-op",
            _ => "update",
        };
        let sens = o.sensitive;
        let mut j = json!({
            "actions": [action],
            "before": omit_unknowns(&before.unmark_deep()).unwrap_or(J::Null),
            "after_unknown": if after.is_wholly_known() { J::Bool(false) } else { unknown_as_bool(after) },
            // Plans keep one sensitivity flag per output, as terraform's do.
            "before_sensitive": sens,
            "after_sensitive": sens,
        });
        if let Some(a) = omit_unknowns(&after.unmark_deep())
            && (!a.is_null() || after.is_known())
        {
            j["after"] = a;
        }
        oc.insert(k.clone(), j);
    }
    if !oc.is_empty() {
        out.insert("output_changes".into(), J::Object(oc));
    }

    // The prior state as planning saw it: moves applied, refreshed, root
    // outputs evaluated.
    let (moved, _) = crate::apply::apply_moves(root, prior);
    let refreshed: BTreeMap<String, Option<Value>> = plan
        .changes
        .iter()
        .filter(|c| c.mode == Mode::Managed)
        .map(|c| (c.addr(), c.before.clone()))
        .collect();
    let mut ps = values_of(&moved, providers, &refreshed);
    // The state's outputs, with the ones planning knows already updated.
    if !prior_outs.is_empty() && !plan.destroy {
        let mut outs = ps["outputs"].as_object().cloned().unwrap_or_default();
        outs.extend(prior_outs);
        ps["outputs"] = J::Object(outs);
    }
    let mut pj = json!({ "format_version": "1.0", "terraform_version": prior.terraform_version });
    if ps.get("outputs").is_some() || ps["root_module"] != json!({}) {
        pj["values"] = ps;
    }
    out.insert("prior_state".into(), pj);
    out.insert("configuration".into(), configuration(root, providers));
    let relevant = relevant_attributes(root, plan);
    if !relevant.is_empty() {
        out.insert("relevant_attributes".into(), J::Array(relevant));
    }
    out.insert(
        "timestamp".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    out.insert("applyable".into(), J::Bool(plan.has_changes()));
    out.insert("complete".into(), J::Bool(true));
    out.insert("errored".into(), J::Bool(false));
    J::Object(out)
}

/// References as terraform's jsonconfig lists them: the traversal, then
/// the instance and resource (or module call) it names.
fn references(e: &Expr) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for r in e.references() {
        for s in reference_strings(&r) {
            push(s);
        }
    }
    out
}

fn reference_strings(r: &Reference) -> Vec<String> {
    let step = |s: &RefStep| match s {
        RefStep::Attr(a) => format!(".{a}"),
        RefStep::Key(k) => format!("[{k:?}]"),
        RefStep::Index(i) => format!("[{i}]"),
    };
    // The subject: how many steps name the object (`var.x` 1, `aws_x.y` 1, `data.t.n` 2).
    let subject = if r.root == "data" { 2 } else { 1 };
    // Every prefix of the traversal, longest first, down to the subject.
    let mut out = Vec::new();
    for n in (subject.min(r.steps.len())..=r.steps.len()).rev() {
        let mut s = r.root.clone();
        for st in &r.steps[..n] {
            s.push_str(&step(st));
        }
        out.push(s);
    }
    out
}

/// A reference-free expression's value, if it is known when planning.
fn const_eval(e: &Expr) -> Option<Value> {
    let funcs = keel_hcl::Functions::terraform().pure_only();
    let vars = BTreeMap::new();
    let scope = keel_hcl::Scope {
        vars: &vars,
        funcs: &funcs,
        base_dir: std::path::PathBuf::from("."),
    };
    keel_hcl::eval(e, &scope)
        .ok()
        .filter(Value::is_wholly_known)
}

fn expression(e: &Expr) -> J {
    let refs = references(e);
    if !refs.is_empty() {
        return json!({ "references": refs });
    }
    match const_eval(e) {
        Some(v) => json!({ "constant_value": to_json(&v.unmark_deep()) }),
        None => json!({}),
    }
}

fn body_expressions(b: &Body) -> Map<String, J> {
    let mut m = Map::new();
    for a in &b.attributes {
        m.insert(a.name.clone(), expression(&a.expr));
    }
    for blk in &b.blocks {
        let entry = m
            .entry(blk.kind.clone())
            .or_insert_with(|| J::Array(Vec::new()));
        if let J::Array(a) = entry {
            a.push(J::Object(body_expressions(&blk.body)));
        }
    }
    m
}

/// The provider configuration a module's provider key stands for: its own
/// block, else what its caller passes (`providers = {…}`, or the default
/// configuration inherited implicitly), else an implied one of its own.
fn resolve_provider(chain: &[(&Module, &str, Option<&ModuleCall>)], key: &str) -> String {
    resolve(chain, key).0
}

/// The resolved key, and whether a provider block declares it.
fn resolve(chain: &[(&Module, &str, Option<&ModuleCall>)], key: &str) -> (String, bool) {
    // A module has a configuration for a key when a provider block declares
    // it, or a resource of its own uses it without one being passed in.
    let own = |m: &Module, k: &str, call: Option<&ModuleCall>| {
        m.providers.iter().any(|p| {
            p.alias
                .as_ref()
                .map_or_else(|| p.name.clone(), |a| format!("{}.{a}", p.name))
                == k
        }) || (!k.contains('.')
            && !call.is_some_and(|c| c.providers.iter().any(|(ch, _)| ch == k))
            && m.resources.values().any(|r| {
                r.provider.as_ref().map_or_else(
                    || r.ty.split('_').next() == Some(k),
                    |(n, a)| n == k && a.is_none(),
                )
            }))
    };
    let opaque = |addr: &str, k: &str| {
        if addr.is_empty() {
            k.to_string()
        } else {
            format!("{addr}:{k}")
        }
    };
    let Some(((m, addr, call), parents)) = chain.split_last() else {
        return (key.to_string(), false);
    };
    let call = *call;
    let declared = m.providers.iter().any(|p| {
        p.alias
            .as_ref()
            .map_or_else(|| p.name.clone(), |a| format!("{}.{a}", p.name))
            == key
    });
    if declared || parents.is_empty() {
        return (opaque(addr, key), declared || own(m, key, call));
    }
    let passed = call.and_then(|c| {
        c.providers
            .iter()
            .find(|(child, _)| child == key)
            .map(|(_, parent)| parent.clone())
    });
    if let Some(p) = passed {
        return resolve(parents, &p);
    }
    // A default configuration is inherited implicitly, when the provider
    // is the same one (the same source) in both modules.
    let name = key.split('.').next().unwrap_or(key);
    let source = |m: &Module| {
        m.required_providers
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("hashicorp/{name}"))
    };
    if !key.contains('.') && source(m) == source(parents[parents.len() - 1].0) {
        let r = resolve(parents, key);
        if r.1 {
            return r;
        }
    }
    (opaque(addr, key), own(m, key, call))
}

fn configuration(root: &Module, providers: &Providers) -> J {
    let mut pc = Map::new();
    let root_module = config_module(&[(root, "", None)], providers, &mut pc);
    let mut j = json!({ "root_module": root_module });
    if !pc.is_empty() {
        j["provider_config"] = J::Object(pc);
    }
    j
}

fn config_module(
    chain: &[(&Module, &str, Option<&ModuleCall>)],
    providers: &Providers,
    pc: &mut Map<String, J>,
) -> J {
    let (m, addr, _) = chain[chain.len() - 1];
    let key = |name: &str, alias: Option<&str>| {
        let n = alias.map_or_else(|| name.to_string(), |a| format!("{name}.{a}"));
        if addr.is_empty() {
            n
        } else {
            format!("{addr}:{n}")
        }
    };
    let full_name = |name: &str| {
        providers.by_name.get(name).map_or_else(
            || format!("registry.terraform.io/hashicorp/{name}"),
            |p| p.address.to_string(),
        )
    };
    // Version constraints: required_providers' first, then a provider block's own.
    let constraint = |name: &str, own: Option<String>| {
        let v: Vec<String> = m
            .provider_versions
            .get(name)
            .cloned()
            .into_iter()
            .chain(own)
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    };
    for p in &m.providers {
        let mut j = json!({ "name": p.name, "full_name": full_name(&p.name) });
        if let Some(a) = &p.alias {
            j["alias"] = J::String(a.clone());
        }
        if !addr.is_empty() {
            j["module_address"] = J::String(addr.to_string());
        }
        let mut ex = body_expressions(&p.body);
        let own = ex
            .remove("version")
            .and_then(|v| v["constant_value"].as_str().map(str::to_string));
        ex.remove("alias");
        if !ex.is_empty() {
            j["expressions"] = J::Object(ex);
        }
        if let Some(c) = constraint(&p.name, own) {
            j["version_constraint"] = J::String(c);
        }
        pc.insert(key(&p.name, p.alias.as_deref()), j);
    }
    let mut out = Map::new();
    let mut outputs = Map::new();
    for (k, o) in &m.outputs {
        let mut j = json!({ "expression": expression(&o.expr) });
        if o.sensitive {
            j["sensitive"] = J::Bool(true);
        }
        if let Some(d) = &o.description {
            j["description"] = J::String(d.clone());
        }
        if !o.depends_on.is_empty() {
            j["depends_on"] = json!(
                o.depends_on
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        outputs.insert(k.clone(), j);
    }
    if !outputs.is_empty() {
        out.insert("outputs".into(), J::Object(outputs));
    }
    let mut resources = Vec::new();
    for r in m.resources.values() {
        let local = r.provider.as_ref().map_or_else(
            || r.ty.split('_').next().unwrap_or(&r.ty).to_string(),
            |p| p.0.clone(),
        );
        let alias = r.provider.as_ref().and_then(|p| p.1.clone());
        let local_key = alias
            .as_ref()
            .map_or_else(|| local.clone(), |a| format!("{local}.{a}"));
        let pkey = resolve_provider(chain, &local_key);
        // A provider used without a block of its own is configured implicitly.
        if pkey == key(&local, alias.as_deref()) && !pc.contains_key(&pkey) {
            let mut j = json!({ "name": local, "full_name": full_name(&local) });
            if !addr.is_empty() {
                j["module_address"] = J::String(addr.to_string());
            }
            if let Some(c) = constraint(&local, None) {
                j["version_constraint"] = J::String(c);
            }
            pc.insert(pkey.clone(), j);
        }
        let mut j = json!({
            "address": r.key(),
            "mode": if r.mode == Mode::Data { "data" } else { "managed" },
            "type": r.ty,
            "name": r.name,
            "provider_config_key": pkey,
            "expressions": J::Object(body_expressions(&r.body)),
            "schema_version": 0,
        });
        if let Some(c) = &r.count {
            j["count_expression"] = expression(c);
        }
        if let Some(f) = &r.for_each {
            j["for_each_expression"] = expression(f);
        }
        if !r.depends_on.is_empty() {
            j["depends_on"] = json!(
                r.depends_on
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        resources.push(j);
    }
    resources.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    if !resources.is_empty() {
        out.insert("resources".into(), J::Array(resources));
    }
    let mut calls = Map::new();
    for (k, c) in &m.calls {
        let child = if addr.is_empty() {
            format!("module.{k}")
        } else {
            format!("{addr}.module.{k}")
        };
        let mut sub = chain.to_vec();
        sub.push((&c.module, &child, Some(c)));
        let mut j = json!({
            "source": c.source,
            "module": config_module(&sub, providers, pc),
        });
        let ex: Map<String, J> = c
            .inputs
            .iter()
            .map(|(n, a)| (n.clone(), expression(&a.expr)))
            .collect();
        if !ex.is_empty() {
            j["expressions"] = J::Object(ex);
        }
        if let Some(x) = &c.count {
            j["count_expression"] = expression(x);
        }
        if let Some(x) = &c.for_each {
            j["for_each_expression"] = expression(x);
        }
        if !c.depends_on.is_empty() {
            j["depends_on"] = json!(
                c.depends_on
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        calls.insert(k.clone(), j);
    }
    if !calls.is_empty() {
        out.insert("module_calls".into(), J::Object(calls));
    }
    let mut vars = Map::new();
    for (k, v) in &m.variables {
        let mut j = json!({});
        if let Some(d) = &v.default
            && let Some(x) = const_eval(d)
        {
            // As the variable will hold it: optional attributes' defaults filled in.
            let x = keel_hcl::convert::convert(&v.defaults.apply(&x), &v.ty).unwrap_or(x);
            j["default"] = to_json(&x.unmark_deep());
        }
        if let Some(d) = &v.description {
            j["description"] = J::String(d.clone());
        }
        if v.sensitive {
            j["sensitive"] = J::Bool(true);
        }
        vars.insert(k.clone(), j);
    }
    if !vars.is_empty() {
        out.insert("variables".into(), J::Object(vars));
    }
    J::Object(out)
}

fn body_refs(b: &Body, out: &mut Vec<Reference>) {
    for a in &b.attributes {
        out.extend(a.expr.references());
    }
    for blk in &b.blocks {
        body_refs(&blk.body, out);
    }
}

/// terraform's `relevant_attributes`: the resource attributes that changed
/// resources and outputs depend on, followed transitively through locals,
/// module calls (a variable leads to the caller's argument, `module.x.out`
/// to that output of the callee, `module.x` alone to all its outputs) and
/// the arguments of the resources referenced (narrowed to the referenced
/// argument, as terraform's globalref analyzer does; a computed attribute
/// leads nowhere further). Each reference is followed in the module
/// instance it was written in.
fn relevant_attributes(root: &Module, plan: &Plan) -> Vec<J> {
    let mut pending: Vec<(ModInst, Reference)> = Vec::new();
    let refs_in = |mi: &ModInst, refs: Vec<Reference>, pending: &mut Vec<(ModInst, Reference)>| {
        pending.extend(refs.into_iter().map(|r| (mi.clone(), r)));
    };
    for c in &plan.changes {
        if c.action == Action::NoOp {
            continue;
        }
        let key = match c.mode {
            Mode::Managed => format!("{}.{}", c.ty, c.name),
            Mode::Data => format!("data.{}.{}", c.ty, c.name),
        };
        if let Some(r) = module_at(root, &c.module).and_then(|m| m.resources.get(&key)) {
            let mut refs = Vec::new();
            resource_refs(r, &mut refs);
            refs_in(&c.module, refs, &mut pending);
        }
    }
    for (k, o) in &plan.outputs {
        let same = match (&o.before, &o.after) {
            (Some(b), Some(a)) => b.raw_equals(a) && b.sensitive == a.sensitive,
            (None, None) => true,
            _ => false,
        };
        if let (false, Some(out)) = (same, root.outputs.get(k)) {
            refs_in(&Vec::new(), out.expr.references(), &mut pending);
        }
    }
    for (mi, k) in &plan.module_outputs {
        if let Some(out) = module_at(root, mi).and_then(|m| m.outputs.get(k)) {
            refs_in(mi, out.expr.references(), &mut pending);
        }
    }
    let mut seen: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut found: Vec<(String, J)> = Vec::new();
    while let Some((mi, r)) = pending.pop() {
        if !seen.insert((module_prefix(&mi), r.to_string())) {
            continue;
        }
        let Some(m) = module_at(root, &mi) else {
            continue;
        };
        match (r.root.as_str(), r.steps.first()) {
            ("local", Some(RefStep::Attr(n))) => {
                if let Some(l) = m.locals.get(n) {
                    refs_in(&mi, l.expr.references(), &mut pending);
                }
                continue;
            }
            ("var", Some(RefStep::Attr(n))) => {
                // The caller's argument, in the caller's instance.
                if let Some(((call, _), parent)) = mi.split_last()
                    && let Some(arg) = module_at(root, &parent.to_vec())
                        .and_then(|p| p.calls.get(call))
                        .and_then(|c| c.inputs.get(n))
                {
                    refs_in(&parent.to_vec(), arg.expr.references(), &mut pending);
                }
                continue;
            }
            ("module", Some(RefStep::Attr(n))) => {
                let Some(call) = m.calls.get(n) else {
                    continue;
                };
                let (key, rest) = match &r.steps[1..] {
                    [RefStep::Index(i), rest @ ..] => (Key::Int(*i), rest),
                    [RefStep::Key(k), rest @ ..] => (Key::Str(k.clone()), rest),
                    rest => (Key::None, rest),
                };
                let mut callee = mi.clone();
                callee.push((n.clone(), key));
                match rest.first() {
                    Some(RefStep::Attr(o)) => {
                        if let Some(out) = call.module.outputs.get(o) {
                            refs_in(&callee, out.expr.references(), &mut pending);
                        }
                    }
                    _ => {
                        for out in call.module.outputs.values() {
                            refs_in(&callee, out.expr.references(), &mut pending);
                        }
                    }
                }
                continue;
            }
            _ => {}
        }
        let (key, rest) = match (r.root.as_str(), r.steps.as_slice()) {
            ("data", [RefStep::Attr(t), RefStep::Attr(n), rest @ ..]) => {
                (format!("data.{t}.{n}"), rest)
            }
            ("var" | "local" | "module" | "path" | "count" | "each" | "self" | "terraform", _) => {
                continue;
            }
            (t, [RefStep::Attr(n), rest @ ..]) => (format!("{t}.{n}"), rest),
            _ => continue,
        };
        let Some(res) = m.resources.get(&key) else {
            continue;
        };
        let prefix = module_prefix(&mi);
        let full = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let (addr, rest) = match rest {
            [RefStep::Index(i), rest @ ..] => (format!("{full}[{i}]"), rest),
            [RefStep::Key(k), rest @ ..] => (format!("{full}[{k:?}]"), rest),
            _ => (full, rest),
        };
        let path: Vec<J> = rest
            .iter()
            .map(|s| match s {
                RefStep::Attr(a) | RefStep::Key(a) => json!(a),
                RefStep::Index(i) => json!(i),
            })
            .collect();
        let entry = (addr, J::Array(path));
        if !found.contains(&entry) {
            found.push(entry);
        }
        let mut more = Vec::new();
        match rest.first() {
            Some(RefStep::Attr(a)) => {
                if let Some(x) = res.body.attr(a) {
                    more.extend(x.expr.references());
                } else {
                    for blk in res.body.blocks.iter().filter(|b| &b.kind == a) {
                        body_refs(&blk.body, &mut more);
                    }
                }
            }
            _ => resource_refs(res, &mut more),
        }
        refs_in(&mi, more, &mut pending);
    }
    found.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    found
        .into_iter()
        .map(|(resource, attribute)| json!({ "resource": resource, "attribute": attribute }))
        .collect()
}

/// The configuration of a module instance (keys do not matter).
fn module_at<'a>(root: &'a Module, mi: &ModInst) -> Option<&'a Module> {
    let mut m = root;
    for (name, _) in mi {
        m = &m.calls.get(name)?.module;
    }
    Some(m)
}

fn resource_refs(r: &crate::config::Resource, out: &mut Vec<Reference>) {
    body_refs(&r.body, out);
    for e in r.count.iter().chain(&r.for_each) {
        out.extend(e.references());
    }
}
