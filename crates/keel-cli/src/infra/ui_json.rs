//! `plan -json`: terraform's machine-readable UI, one JSON object a line
//! (`version`, a `planned_change` per resource instance, `change_summary`,
//! `outputs`), with terraform's `@level/@message/@module/@timestamp`.

use keel_infra::config::Mode;
use keel_infra::plan::{Action, Plan};
use serde_json::{Value as J, json};

fn line(level: &str, message: &str, ty: &str, extra: J) {
    let mut j = json!({
        "@level": level,
        "@message": message,
        "@module": "terraform.ui",
        "@timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "type": ty,
    });
    if let (J::Object(m), J::Object(e)) = (&mut j, extra) {
        m.extend(e);
    }
    println!("{j}");
}

fn action(a: Action) -> Option<&'static str> {
    Some(match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace(_) => "replace",
        Action::Delete => "delete",
        Action::Read => "read",
        Action::Forget => "remove",
        Action::NoOp => return None,
    })
}

/// A resource instance as the UI's `resource` objects name it.
fn resource(
    module: &keel_infra::addr::ModInst,
    res_key: &str,
    key: &keel_infra::addr::Key,
    ty: &str,
    name: &str,
) -> J {
    json!({
        "addr": keel_infra::addr::instance_addr(module, res_key, key),
        "module": keel_infra::addr::module_prefix(module),
        "resource": keel_infra::addr::instance_addr(&Vec::new(), res_key, key),
        "implied_provider": ty.split('_').next().unwrap_or(ty),
        "resource_type": ty,
        "resource_name": name,
        "resource_key": key.to_json(),
    })
}

/// Prints the plan as `terraform plan -json` does.
pub(super) fn plan(p: &Plan, refreshed: bool) {
    let v = keel_infra::state::TERRAFORM_VERSION;
    line(
        "info",
        &format!("Terraform {v}"),
        "version",
        json!({"terraform": v, "ui": "1.2"}),
    );
    if refreshed {
        for c in p.changes.iter().filter(|c| c.mode == Mode::Managed) {
            let Some(before) = &c.before else { continue };
            let id = keel_infra::providers::get_str(before, "id").unwrap_or_default();
            let hook = json!({
                "hook": {
                    "resource": resource(&c.module, &c.res_key(), &c.key, &c.ty, &c.name),
                    "id_key": "id",
                    "id_value": id,
                }
            });
            let addr = c.addr();
            line(
                "info",
                &format!("{addr}: Refreshing state... [id={id}]"),
                "refresh_start",
                hook.clone(),
            );
            line(
                "info",
                &format!("{addr}: Refresh complete [id={id}]"),
                "refresh_complete",
                hook,
            );
        }
    }
    let mut changes: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.mode == Mode::Managed)
        .collect();
    changes.sort_by_key(|c| c.addr());
    for c in changes {
        let Some(act) = action(c.action) else {
            continue;
        };

        let verb = match act {
            "create" => "Plan to create",
            "update" => "Plan to update",
            "replace" => "Plan to replace",
            "delete" => "Plan to delete",
            "read" => "Plan to read",
            _ => "Plan to remove",
        };
        let mut change = json!({
            "resource": resource(&c.module, &c.res_key(), &c.key, &c.ty, &c.name),
            "action": act,
        });
        if let Some(from) = &c.moved_from
            && let Some(a) = keel_infra::addr::parse_inst_addr(from)
        {
            let (ty, name) = a
                .res_key
                .trim_start_matches("data.")
                .split_once('.')
                .unwrap_or_default();
            change["previous_resource"] = resource(
                &a.module,
                &a.res_key,
                &a.key.clone().unwrap_or(keel_infra::addr::Key::None),
                ty,
                name,
            );
        }
        if let Some(r) = keel_infra::plan_json::action_reason(c) {
            change["reason"] = json!(r);
        }
        line(
            "info",
            &format!("{}: {verb}", c.addr()),
            "planned_change",
            json!({ "change": change }),
        );
    }
    let (add, change, destroy, import, _forget) = p.counts();
    let op = if p.destroy { "destroy" } else { "plan" };
    let msg = if p.destroy {
        format!("Plan: {add} to add, {change} to change, {destroy} to destroy.")
    } else if !p.has_changes() {
        "Plan: 0 to add, 0 to change, 0 to destroy.".to_string()
    } else if import > 0 {
        format!("Plan: {import} to import, {add} to add, {change} to change, {destroy} to destroy.")
    } else {
        format!("Plan: {add} to add, {change} to change, {destroy} to destroy.")
    };
    line(
        "info",
        &msg,
        "change_summary",
        json!({"changes": {"add": add, "change": change, "import": import, "remove": destroy, "operation": op}}),
    );
    let outs: serde_json::Map<String, J> = p
        .outputs
        .iter()
        .filter_map(|(k, o)| {
            let act = match (&o.before, &o.after) {
                (None, Some(_)) => "create",
                (Some(_), None) => "delete",
                (Some(b), Some(a)) if b.raw_equals(a) => "noop",
                (Some(_), Some(_)) => "update",
                (None, None) => return None,
            };
            Some((k.clone(), json!({"sensitive": o.sensitive, "action": act})))
        })
        .collect();
    if !outs.is_empty() {
        line(
            "info",
            &format!("Outputs: {}", outs.len()),
            "outputs",
            json!({ "outputs": outs }),
        );
    }
}
