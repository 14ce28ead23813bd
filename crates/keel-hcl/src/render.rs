//! Values as text: terraform console's rendering (`tolist([...])`, heredocs
//! for multi-line strings, `(sensitive value)`), cty's JSON encoding
//! (`jsonencode`, Go's HTML-safe escaping) and JSON decoding against a type.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::num::Number;
use crate::value::{Kind, Type, Value};

/// Go's `strconv.Quote`.
pub use keel_go::quote as go_quote;

/// terraform console's `FormatValue`.
pub fn format_value(v: &Value, indent: usize) -> String {
    if !v.is_known() {
        return "(known after apply)".into();
    }
    if v.sensitive {
        return "(sensitive value)".into();
    }
    match &v.kind {
        Kind::Null(t) => match t {
            Type::Dynamic => "null".into(),
            Type::String => "tostring(null)".into(),
            Type::Number => "tonumber(null)".into(),
            Type::Bool => "tobool(null)".into(),
            Type::List(e) => format!("tolist(null) /* of {} */", e.friendly()),
            Type::Set(e) => format!("toset(null) /* of {} */", e.friendly()),
            Type::Map(e) => format!("tomap(null) /* of {} */", e.friendly()),
            t => format!("null /* {} */", t.friendly()),
        },
        Kind::String(s) => multiline(s, indent).unwrap_or_else(|| go_quote(s)),
        Kind::Number(n) => n.to_string(),
        Kind::Bool(b) => b.to_string(),
        Kind::Object(m) => mapping(m, indent),
        Kind::Map(_, m) => format!("tomap({})", mapping(m, indent)),
        Kind::Tuple(e) => sequence(e, indent),
        Kind::List(_, e) => format!("tolist({})", sequence(e, indent)),
        Kind::Set(_, e) => format!("toset({})", sequence(e, indent)),
        Kind::Unknown(_) => "(known after apply)".into(),
    }
}

fn multiline(s: &str, indent: usize) -> Option<String> {
    let lines: Vec<&str> = s.split('\n').collect();
    if lines.len() < 2 {
        return None;
    }
    let op = if indent > 0 { "<<-" } else { "<<" };
    let mut delim = String::from("EOT");
    while lines.iter().any(|l| l.trim() == delim) {
        delim.push('_');
    }
    let pad = " ".repeat(indent);
    let mut out = format!("{op}{delim}");
    for l in &lines {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(l);
    }
    out.push('\n');
    out.push_str(&pad);
    out.push_str(&delim);
    Some(out)
}

fn mapping(m: &BTreeMap<String, Value>, indent: usize) -> String {
    let mut out = String::from("{");
    let inner = indent + 2;
    for (k, v) in m {
        out.push('\n');
        out.push_str(&" ".repeat(inner));
        out.push_str(&format_value(&Value::string(k.clone()), inner));
        out.push_str(" = ");
        out.push_str(&format_value(v, inner));
    }
    if !m.is_empty() {
        out.push('\n');
        out.push_str(&" ".repeat(indent));
    }
    out.push('}');
    out
}

fn sequence(e: &[Value], indent: usize) -> String {
    let mut out = String::from("[");
    let inner = indent + 2;
    for v in e {
        out.push('\n');
        out.push_str(&" ".repeat(inner));
        out.push_str(&format_value(v, inner));
        out.push(',');
    }
    if !e.is_empty() {
        out.push('\n');
        out.push_str(&" ".repeat(indent));
    }
    out.push(']');
    out
}

/// Go's encoding/json string escaping (with HTML-safe `<`, `>`, `&`).
pub fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// cty's JSON encoding of a known value (`jsonencode`). Unknown parts become
/// `null` here; callers check `is_wholly_known` first where it matters.
pub fn to_json_string(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match &v.kind {
        Kind::Null(_) | Kind::Unknown(_) => out.push_str("null"),
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Number(n) => out.push_str(&n.to_string()),
        Kind::String(s) => out.push_str(&json_quote(s)),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            out.push('[');
            for (i, x) in e.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_quote(k));
                out.push(':');
                write_json(x, out);
            }
            out.push('}');
        }
    }
}

/// A value as serde JSON (state files, `-json` output). Integers stay exact;
/// other numbers go through f64 as JSON readers will anyway.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        Kind::Null(_) | Kind::Unknown(_) => J::Null,
        Kind::Bool(b) => J::Bool(*b),
        Kind::Number(n) => number_json(n),
        Kind::String(s) => J::String(s.clone()),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            J::Array(e.iter().map(to_json).collect())
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            J::Object(m.iter().map(|(k, x)| (k.clone(), to_json(x))).collect())
        }
    }
}

fn number_json(n: &Number) -> serde_json::Value {
    if let Some(i) = n.to_i64() {
        return serde_json::Value::from(i);
    }
    if let Some(u) = n.to_bigint().and_then(|b| u64::try_from(b).ok()) {
        return serde_json::Value::from(u);
    }
    serde_json::Number::from_f64(n.to_f64())
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Decodes JSON against a type (state attributes, `jsondecode` with a type).
pub fn from_json_typed(j: &serde_json::Value, t: &Type) -> Result<Value, String> {
    use serde_json::Value as J;
    if j.is_null() {
        return Ok(Value::null(t.clone()));
    }
    match t {
        Type::Dynamic => Ok(crate::json::json_to_value(j)),
        Type::String => match j {
            J::String(s) => Ok(Value::string(s.clone())),
            J::Number(n) => Ok(Value::string(n.to_string())),
            J::Bool(b) => Ok(Value::string(b.to_string())),
            _ => Err("string required".into()),
        },
        Type::Number => match j {
            J::Number(n) => Number::parse(&n.to_string())
                .map(Value::number)
                .map_err(|e| e.0),
            J::String(s) => Number::parse(s).map(Value::number).map_err(|e| e.0),
            _ => Err("number required".into()),
        },
        Type::Bool => match j {
            J::Bool(b) => Ok(Value::bool(*b)),
            J::String(s) if s == "true" || s == "false" => Ok(Value::bool(s == "true")),
            _ => Err("bool required".into()),
        },
        Type::List(e) | Type::Set(e) => {
            let J::Array(a) = j else {
                return Err("array required".into());
            };
            let items = a
                .iter()
                .map(|x| from_json_typed(x, e))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(t, Type::Set(_)) {
                Value::set((**e).clone(), items)
            } else {
                Value::list((**e).clone(), items)
            })
        }
        Type::Tuple(ts) => {
            let J::Array(a) = j else {
                return Err("array required".into());
            };
            if a.len() != ts.len() {
                return Err("wrong number of tuple elements".into());
            }
            Ok(Value::tuple(
                a.iter()
                    .zip(ts)
                    .map(|(x, t)| from_json_typed(x, t))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Type::Map(e) => {
            let J::Object(o) = j else {
                return Err("object required".into());
            };
            Ok(Value::map(
                (**e).clone(),
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), from_json_typed(x, e)?)))
                    .collect::<Result<_, String>>()?,
            ))
        }
        Type::Object(attrs) => {
            let J::Object(o) = j else {
                return Err("object required".into());
            };
            let mut out = BTreeMap::new();
            for (k, at) in attrs {
                let x = o.get(k).unwrap_or(&J::Null);
                out.insert(k.clone(), from_json_typed(x, at)?);
            }
            Ok(Value::object(out))
        }
        Type::Optional(t) => from_json_typed(j, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_forms() {
        let l = Value::list(Type::Number, vec![Value::int(1), Value::int(2)]);
        assert_eq!(format_value(&l, 0), "tolist([\n  1,\n  2,\n])");
        assert_eq!(format_value(&Value::string("a\nb"), 0), "<<EOT\na\nb\nEOT");
        assert_eq!(
            format_value(&Value::null(Type::String), 0),
            "tostring(null)"
        );
        assert_eq!(format_value(&Value::tuple(vec![]), 0), "[]");
        assert_eq!(go_quote("x\ty\"q$"), "\"x\\ty\\\"q$\"");
        assert_eq!(
            to_json_string(&Value::string("<&>")),
            "\"\\u003c\\u0026\\u003e\""
        );
    }
}
