//! Plans as terraform prints them (`+ create`, `~ update in-place`,
//! `-/+ destroy and then create replacement`, `# forces replacement`,
//! `(known after apply)`, `(sensitive value)`, the `Plan:` line) and the
//! `Outputs:` block after apply. No colours here: the CLI adds none.

use std::collections::BTreeSet;

use keel_hcl::{Kind, Value};

use crate::config::Mode;
use crate::plan::{Action, Change, Plan};
use crate::providers::Schema;

fn sym(a: Action) -> &'static str {
    match a {
        Action::Create => "  +",
        Action::Update => "  ~",
        Action::Delete => "  -",
        Action::Replace(false) => "-/+",
        Action::Replace(true) => "+/-",
        Action::Read => " <=",
        Action::NoOp | Action::Forget => "   ",
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn prim(v: &Value) -> Option<String> {
    // Sensitive first: terraform hides even an unknown sensitive value.
    if v.sensitive {
        return Some("(sensitive value)".into());
    }
    if !v.is_known() {
        return Some("(known after apply)".into());
    }
    Some(match &v.kind {
        Kind::Null(_) => "null".into(),
        Kind::String(s) if s.contains('\n') => {
            let mut out = String::from("<<-EOT\n");
            for l in s.trim_end_matches('\n').split('\n') {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("EOT");
            out
        }
        Kind::String(s) => q(s),
        Kind::Number(n) => n.to_string(),
        Kind::Bool(b) => b.to_string(),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) if e.is_empty() => "[]".into(),
        Kind::Map(_, m) | Kind::Object(m) if m.is_empty() => "{}".into(),
        _ => return None,
    })
}

/// Renders `v` for a `+`/`-` line at indentation `ind` (column of the symbol).
fn whole(v: &Value, s: char, ind: usize) -> String {
    if let Some(p) = prim(v) {
        return p;
    }
    let pad = " ".repeat(ind + 4);
    let end = " ".repeat(ind + 2);
    match &v.kind {
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            let mut out = String::from("[\n");
            for x in e {
                out.push_str(&format!("{pad}{s} {},\n", whole(x, s, ind + 4)));
            }
            out.push_str(&format!("{end}]"));
            out
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            let w = m
                .keys()
                .map(|k| key_label(k, matches!(v.kind, Kind::Map(..))).len())
                .max()
                .unwrap_or(0);
            let mut out = String::from("{\n");
            for (k, x) in m {
                if x.is_null() && x.is_known() {
                    continue;
                }
                out.push_str(&format!(
                    "{pad}{s} {:w$} = {}\n",
                    key_label(k, matches!(v.kind, Kind::Map(..))),
                    whole(x, s, ind + 4)
                ));
            }
            out.push_str(&format!("{end}}}"));
            out
        }
        _ => String::new(),
    }
}

fn key_label(k: &str, quoted: bool) -> String {
    if quoted || !keel_hcl_ident(k) {
        q(k)
    } else {
        k.to_string()
    }
}

fn keel_hcl_ident(k: &str) -> bool {
    let mut c = k.chars();
    c.next().is_some_and(|f| f.is_alphabetic() || f == '_')
        && c.all(|x| x.is_alphanumeric() || x == '_' || x == '-')
}

/// The attribute lines of one resource change, then its nested blocks as
/// terraform prints them (`+ ports {`, `# (1 unchanged block hidden)`).
fn attrs(c: &Change, schema: Option<&Schema>, out: &mut String) {
    let empty = Value::empty_object();
    let before = c.before.as_ref().unwrap_or(&empty);
    let after = c.after.as_ref().unwrap_or(&empty);
    let forced: BTreeSet<&str> = c.replace_paths.iter().map(String::as_str).collect();
    let action = match c.action {
        Action::Read => Action::Create,
        Action::Forget => Action::Delete,
        a => a,
    };
    body(before, after, schema, action, 6, &forced, out);
}

/// One object's lines at symbol column `ind`: attributes (aligned, the
/// unchanged ones counted), then each block type's blocks.
fn body(
    before: &Value,
    after: &Value,
    schema: Option<&Schema>,
    action: Action,
    ind: usize,
    forced: &BTreeSet<&str>,
    out: &mut String,
) {
    let bm = before.as_map().cloned().unwrap_or_default();
    let am = after.as_map().cloned().unwrap_or_default();
    let is_block = |k: &str| schema.is_some_and(|s| s.blocks.contains_key(k));
    let keys: BTreeSet<&String> = bm
        .keys()
        .chain(am.keys())
        .filter(|k| !is_block(k))
        .collect();
    let mut lines: Vec<(String, String, String)> = Vec::new();
    let mut hidden = 0;
    let null = Value::dyn_null();
    for k in keys {
        let b = bm.get(k).unwrap_or(&null);
        let a = am.get(k).unwrap_or(&null);
        let (s, text) = match action {
            Action::Create | Action::Read => {
                if a.is_null() && a.is_known() {
                    continue;
                }
                ('+', whole(a, '+', ind))
            }
            Action::Delete | Action::Forget => {
                if b.is_null() {
                    continue;
                }
                ('-', format!("{} -> null", whole(b, '-', ind)))
            }
            _ => {
                let same = a.raw_equals(b) && a.sensitive == b.sensitive;
                if same && b.is_null() {
                    continue;
                }
                if same {
                    if matches!(k.as_str(), "id" | "name" | "tags") && !b.is_null() {
                        (' ', whole(b, ' ', ind))
                    } else {
                        hidden += 1;
                        continue;
                    }
                } else if b.is_null() && b.is_known() {
                    ('+', whole(a, '+', ind))
                } else if a.is_null() && a.is_known() {
                    ('-', format!("{} -> null", whole(b, '-', ind)))
                } else {
                    (
                        '~',
                        format!("{} -> {}", whole(b, '-', ind), whole(a, '+', ind)),
                    )
                }
            }
        };
        let suffix = if forced.contains(k.as_str()) {
            " # forces replacement".to_string()
        } else {
            String::new()
        };
        lines.push((s.to_string(), k.clone(), format!("{text}{suffix}")));
    }
    let pad = " ".repeat(ind);
    // As terraform: aligned over every attribute not null on both sides,
    // the hidden unchanged ones included.
    let both_null = |k: &String| {
        [bm.get(k), am.get(k)]
            .iter()
            .all(|v| v.is_none_or(|v| v.is_null() && v.is_known()))
    };
    let w = bm
        .keys()
        .chain(am.keys())
        .filter(|k| !is_block(k) && !both_null(k))
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (s, k, t) in lines {
        out.push_str(&format!("{pad}{s} {k:w$} = {t}\n"));
    }
    if hidden > 0 {
        out.push_str(&format!(
            "{pad}  # ({hidden} unchanged attribute{} hidden)\n",
            if hidden == 1 { "" } else { "s" }
        ));
    }
    let Some(schema) = schema else {
        return;
    };
    let mut unchanged = 0;
    for (k, nb) in &schema.blocks {
        let items = |m: &std::collections::BTreeMap<String, Value>| -> Vec<Value> {
            match m.get(k) {
                Some(v) if v.is_known() => match &v.kind {
                    Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => e.clone(),
                    Kind::Object(_) => vec![v.clone()],
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            }
        };
        let (olds, news) = (items(&bm), items(&am));
        // (before, after) pairs: lists by position, sets and single blocks by equality.
        let mut pairs: Vec<(Option<Value>, Option<Value>)> = Vec::new();
        match action {
            Action::Create => pairs.extend(news.into_iter().map(|a| (None, Some(a)))),
            Action::Delete | Action::Forget => {
                pairs.extend(olds.into_iter().map(|b| (Some(b), None)));
            }
            _ if nb.nesting == crate::providers::Nesting::Set => {
                let mut rest = news.clone();
                for b in olds {
                    if let Some(i) = rest.iter().position(|a| a.raw_equals(&b)) {
                        pairs.push((Some(b), Some(rest.remove(i))));
                    } else {
                        pairs.push((Some(b), None));
                    }
                }
                pairs.extend(rest.into_iter().map(|a| (None, Some(a))));
            }
            _ => {
                for i in 0..olds.len().max(news.len()) {
                    pairs.push((olds.get(i).cloned(), news.get(i).cloned()));
                }
            }
        }
        let mut first = true;
        for (b, a) in pairs {
            let (sym, inner) = match (&b, &a) {
                (Some(b), Some(a)) if a.raw_equals(b) => {
                    unchanged += 1;
                    continue;
                }
                (Some(_), Some(_)) => ('~', Action::Update),
                (None, Some(_)) => ('+', Action::Create),
                (Some(_), None) => ('-', Action::Delete),
                (None, None) => continue,
            };
            if first {
                out.push('\n');
                first = false;
            }
            let suffix = if forced.contains(k.as_str()) {
                " # forces replacement"
            } else {
                ""
            };
            out.push_str(&format!("{pad}{sym} {k} {{{suffix}\n"));
            body(
                b.as_ref().unwrap_or(&Value::empty_object()),
                a.as_ref().unwrap_or(&Value::empty_object()),
                Some(&nb.block),
                inner,
                ind + 4,
                &BTreeSet::new(),
                out,
            );
            out.push_str(&format!("{pad}  }}\n"));
        }
    }
    if unchanged > 0 {
        out.push_str(&format!(
            "\n{pad}  # ({unchanged} unchanged block{} hidden)\n",
            if unchanged == 1 { "" } else { "s" }
        ));
    }
}

fn header(c: &Change) -> String {
    let addr = c.addr();
    let what = match c.action {
        Action::Create => "will be created".to_string(),
        Action::Update => "will be updated in-place".to_string(),
        Action::Delete => "will be destroyed".to_string(),
        Action::Replace(_) => "must be replaced".to_string(),
        Action::Read => "will be read during apply".to_string(),
        Action::Forget => "will no longer be managed by Terraform".to_string(),
        Action::NoOp => match &c.moved_from {
            Some(f) => return format!("  # {f} has moved to {addr}\n"),
            None => String::new(),
        },
    };
    let mut out = format!("  # {addr} {what}\n");
    if let Some(r) = &c.reason {
        out.push_str(&format!("  # ({r})\n"));
    }
    if let (Some(f), true) = (&c.moved_from, c.action != Action::NoOp) {
        out.push_str(&format!("  # (moved from {f})\n"));
    }
    out
}

/// One resource change block (nested blocks as blocks when `schema` says which).
pub fn change_block(c: &Change, schema: Option<&Schema>) -> String {
    let mut out = header(c);
    if c.action == Action::NoOp {
        return out;
    }
    let kw = if c.mode == Mode::Data {
        "data"
    } else {
        "resource"
    };
    out.push_str(&format!(
        "{} {kw} {} {} {{\n",
        sym(c.action),
        q(&c.ty),
        q(&c.name)
    ));
    attrs(c, schema, &mut out);
    out.push_str("    }\n");
    out
}

/// The whole `terraform plan` text (after refresh lines).
pub fn plan_text(p: &Plan) -> String {
    let mut out = String::new();
    let shown: Vec<&Change> = p
        .changes
        .iter()
        .filter(|c| {
            !(c.action == Action::NoOp && c.moved_from.is_none()
                || c.mode == Mode::Data && c.action != Action::Read)
        })
        .collect();
    let outputs: Vec<(&String, &crate::plan::OutputChange)> = p
        .outputs
        .iter()
        .filter(|(_, o)| match (&o.before, &o.after) {
            (Some(a), Some(b)) => !(a.raw_equals(b) && a.sensitive == b.sensitive),
            (None, None) => false,
            _ => true,
        })
        .collect();
    if shown.is_empty() && outputs.is_empty() {
        out.push_str("\nNo changes. Your infrastructure matches the configuration.\n\nTerraform has compared your real infrastructure against your configuration\nand found no differences, so no changes are needed.\n");
        return out;
    }
    if !shown.is_empty() {
        let acts: BTreeSet<u8> = shown
            .iter()
            .map(|c| match c.action {
                Action::Create => 0,
                Action::Update => 1,
                Action::Delete => 2,
                Action::Replace(false) => 3,
                Action::Replace(true) => 4,
                Action::Read => 5,
                _ => 6,
            })
            .collect();
        out.push_str("\nTerraform used the selected providers to generate the following execution\nplan. Resource actions are indicated with the following symbols:\n");
        for a in acts {
            out.push_str(match a {
                0 => "  + create\n",
                1 => "  ~ update in-place\n",
                2 => "  - destroy\n",
                3 => "-/+ destroy and then create replacement\n",
                4 => "+/- create replacement and then destroy\n",
                5 => " <= read (data resources)\n",
                _ => "",
            });
        }
        out.push_str("\nTerraform will perform the following actions:\n");
        let providers = crate::providers::Providers::builtin();
        for c in &shown {
            out.push('\n');
            let schema = match c.mode {
                Mode::Managed => providers.resource(&c.ty).map(|r| r.schema().clone()),
                Mode::Data => providers.data(&c.ty).map(|d| d.schema().clone()),
            };
            out.push_str(&change_block(c, schema.as_ref()));
        }
        let (add, change, destroy, import, forget) = p.counts();
        out.push('\n');
        if import > 0 {
            out.push_str(&format!(
                "Plan: {import} to import, {add} to add, {change} to change, {destroy} to destroy"
            ));
        } else {
            out.push_str(&format!(
                "Plan: {add} to add, {change} to change, {destroy} to destroy"
            ));
        }
        if forget > 0 {
            out.push_str(&format!(", {forget} to forget"));
        }
        out.push_str(".\n");
    }
    if !outputs.is_empty() {
        out.push_str("\nChanges to Outputs:\n");
        let w = outputs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, o) in &outputs {
            let mark = |v: &Value| {
                if o.sensitive {
                    v.clone().with_sensitive()
                } else {
                    v.clone()
                }
            };
            let line = match (&o.before, &o.after) {
                (None, Some(a)) => format!("  + {k:w$} = {}", whole(&mark(a), '+', 2)),
                (Some(b), None) => format!("  - {k:w$} = {} -> null", whole(&mark(b), '-', 2)),
                (Some(b), Some(a)) => format!(
                    "  ~ {k:w$} = {} -> {}",
                    whole(&mark(b), '-', 2),
                    whole(&mark(a), '+', 2)
                ),
                (None, None) => continue,
            };
            out.push_str(&line);
            out.push('\n');
        }
        if shown.is_empty() {
            out.push_str("\nYou can apply this plan to save these new output values to the Terraform\nstate, without changing any real infrastructure.\n");
        }
    }
    out
}

/// `Outputs:` after apply and `terraform output`: `name = value`.
pub fn outputs_text(outputs: &[(String, Value, bool)]) -> String {
    let w = outputs.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v, sensitive) in outputs {
        let text = if *sensitive {
            "<sensitive>".to_string()
        } else {
            keel_hcl::render::format_value(&v.unmark_deep(), 0)
        };
        out.push_str(&format!("{k:w$} = {text}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Key;
    use crate::providers::{Attr, Nesting};
    use crate::scope::Expansion;
    use keel_hcl::Type;

    fn schema() -> Schema {
        Schema::default()
            .attr("id", Attr::computed(Type::String))
            .attr("image", Attr::required(Type::String))
            .block(
                "ports",
                Nesting::List,
                Schema::default()
                    .attr("internal", Attr::required(Type::Number))
                    .attr("protocol", Attr::optional(Type::String)),
            )
    }

    fn obj(id: Option<&str>, image: &str, ports: &[(i64, &str)]) -> Value {
        let pt = schema().blocks["ports"].block.implied_type();
        Value::object(std::collections::BTreeMap::from([
            (
                "id".to_string(),
                id.map_or_else(|| Value::unknown(Type::String), Value::string),
            ),
            ("image".to_string(), Value::string(image)),
            (
                "ports".to_string(),
                Value::list(
                    pt,
                    ports
                        .iter()
                        .map(|(i, p)| {
                            Value::object(std::collections::BTreeMap::from([
                                ("internal".to_string(), Value::int(*i)),
                                ("protocol".to_string(), Value::string(*p)),
                            ]))
                        })
                        .collect(),
                ),
            ),
        ]))
    }

    fn change(action: Action, before: Option<Value>, after: Option<Value>) -> Change {
        Change {
            module: Vec::new(),
            mode: Mode::Managed,
            ty: "docker_container".into(),
            name: "web".into(),
            key: Key::None,
            action,
            before,
            after,
            replace_paths: Vec::new(),
            reason: None,
            provider: String::new(),
            expansion: Expansion::Single,
            deps: Vec::new(),
            moved_from: None,
            importing: None,
        }
    }

    /// Nested blocks used to print as list attributes (`ports = [ { … } ]`);
    /// terraform prints them as blocks after the attributes.
    #[test]
    fn nested_blocks_print_as_terraform_prints_them() {
        let s = schema();
        let create = change(
            Action::Create,
            None,
            Some(obj(None, "busybox", &[(80, "tcp")])),
        );
        assert_eq!(
            change_block(&create, Some(&s)),
            r#"  # docker_container.web will be created
  + resource "docker_container" "web" {
      + id    = (known after apply)
      + image = "busybox"

      + ports {
          + internal = 80
          + protocol = "tcp"
        }
    }
"#
        );
        let update = change(
            Action::Update,
            Some(obj(Some("c1"), "busybox", &[(80, "tcp"), (53, "tcp")])),
            Some(obj(Some("c1"), "busybox", &[(80, "tcp"), (53, "udp")])),
        );
        assert_eq!(
            change_block(&update, Some(&s)),
            r#"  # docker_container.web will be updated in-place
  ~ resource "docker_container" "web" {
        id    = "c1"
        # (1 unchanged attribute hidden)

      ~ ports {
          ~ protocol = "tcp" -> "udp"
            # (1 unchanged attribute hidden)
        }

        # (1 unchanged block hidden)
    }
"#
        );
    }
}
