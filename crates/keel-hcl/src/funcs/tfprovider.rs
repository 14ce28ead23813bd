//! The functions of terraform's built-in `terraform` provider
//! (`terraform.io/builtin/terraform`, terraform 1.8+): `encode_tfvars`,
//! `decode_tfvars` and `encode_expr`, callable as
//! `provider::<local name>::<function>` in a module that declares the
//! provider in `required_providers`. Values are written as hclwrite's
//! `TokensForValue` writes them (objects one attribute per line, aligned;
//! sequences on one line), through keel's own `fmt`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{FnError, Functions, Param, def, p, s};
use crate::diag::{Diagnostic, Diagnostics};
use crate::value::{Kind, Type, Value};

/// The provider's source address in `required_providers`.
pub const SOURCE: &str = "terraform.io/builtin/terraform";

/// Registers the provider's functions under `provider::{local}::`.
pub fn register(f: &mut Functions, local: &str) {
    let value = || Param {
        name: "value",
        ty: Type::Dynamic,
        nullable: false,
        unknown: false,
    };
    def(
        f,
        &format!("provider::{local}::encode_tfvars"),
        vec![value()],
        None,
        Type::String,
        |a, _| encode_tfvars(&a[0]).map(Value::string),
    );
    def(
        f,
        &format!("provider::{local}::encode_expr"),
        vec![value()],
        None,
        Type::String,
        |a, _| Ok(Value::string(encode_expr(&a[0]))),
    );
    def(
        f,
        &format!("provider::{local}::decode_tfvars"),
        vec![p("src", Type::String)],
        None,
        Type::Dynamic,
        |a, _| decode_tfvars(s(&a[0])),
    );
}

fn encode_tfvars(v: &Value) -> Result<String, FnError> {
    let entries: Vec<(&String, &Value)> = match &v.kind {
        Kind::Object(m) | Kind::Map(_, m) => m.iter().collect(),
        _ => {
            return Err(FnError::Msg(
                "invalid value to encode: must be an object whose attribute names will become the encoded variable names"
                    .into(),
            ));
        }
    };
    let mut out = String::new();
    for (k, x) in entries {
        if !is_identifier(k) {
            return Err(FnError::Msg(format!(
                "invalid variable name {k:?}: must be a valid identifier, per Terraform's rules for input variable declarations"
            )));
        }
        // Each value is formatted on its own (hclwrite formats the value's
        // tokens, not the file): top-level `=` signs do not align.
        out.push_str(k);
        out.push_str(" = ");
        out.push_str(&encode_expr(x));
        out.push('\n');
    }
    Ok(out)
}

/// hclwrite's `TokensForValue(v).Bytes()`.
fn encode_expr(v: &Value) -> String {
    let mut raw = String::new();
    tokens(v, &mut raw);
    if !raw.contains('\n') {
        return raw;
    }
    let formatted = crate::fmt::format(&format!("x = {raw}\n"));
    formatted
        .strip_prefix("x = ")
        .unwrap_or(&formatted)
        .trim_end_matches('\n')
        .to_string()
}

/// The value's tokens before formatting: objects and maps open a line per
/// element, sequences stay on one line.
fn tokens(v: &Value, out: &mut String) {
    match &v.kind {
        Kind::Null(_) | Kind::Unknown(_) => out.push_str("null"),
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Number(n) => out.push_str(&n.to_string()),
        Kind::String(st) => quoted(st, out),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            out.push('[');
            for (i, x) in e.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                tokens(x, out);
            }
            out.push(']');
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            out.push('{');
            if !m.is_empty() {
                out.push('\n');
            }
            for (k, x) in m {
                if is_identifier(k) {
                    out.push_str(k);
                } else {
                    quoted(k, out);
                }
                out.push_str(" = ");
                tokens(x, out);
                out.push('\n');
            }
            out.push('}');
        }
    }
}

/// hclwrite's quoted string literal: template introducers doubled,
/// unprintable characters as `\u` escapes.
fn quoted(st: &str, out: &mut String) {
    out.push('"');
    let mut it = st.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' | '%' => {
                out.push(c);
                if it.peek() == Some(&'{') {
                    out.push(c);
                }
            }
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let n = u32::from(c);
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// hclsyntax's `ValidIdentifier`, for the ASCII names tfvars use (and any
/// letter HCL accepts).
fn is_identifier(k: &str) -> bool {
    let mut cs = k.chars();
    cs.next().is_some_and(char::is_alphabetic)
        && cs.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

const NAME: &str = "<decode_tfvars argument>";

/// Parses `src` as a `.tfvars` file: attributes whose values are constant
/// expressions (no references, no function calls), as terraform reads one.
fn decode_tfvars(src: &str) -> Result<Value, FnError> {
    let body = crate::syntax::parse_body(NAME, src)
        .map_err(|d| FnError::Msg(format!("invalid tfvars syntax: {d}")))?;
    let attrs = crate::syntax::just_attributes(&body)
        .map_err(|d| FnError::Msg(format!("invalid tfvars content: {d}")))?;
    let vars = BTreeMap::new();
    let funcs = Functions::default();
    let scope = crate::eval::Scope {
        vars: &vars,
        funcs: &funcs,
        base_dir: PathBuf::new(),
    };
    let mut out = BTreeMap::new();
    for (name, a) in attrs {
        let invalid =
            |d: Diagnostics| FnError::Msg(format!("invalid expression for variable {name:?}: {d}"));
        if let Some(r) = a.expr.references().first() {
            return Err(invalid(Diagnostics(vec![Diagnostic::error(
                "Variables not allowed",
                "Variables may not be used here.",
                Some(r.range.clone()),
            )])));
        }
        let v = crate::eval::eval(&a.expr, &scope).map_err(|d| {
            // The table is empty: every call is to an unknown function.
            let d = match d.0.first() {
                Some(x) if x.summary == "Call to unknown function" => {
                    Diagnostics(vec![Diagnostic::error(
                        "Function calls not allowed",
                        "Functions may not be called here.",
                        Some(a.expr.range().clone()),
                    )])
                }
                _ => d,
            };
            invalid(d)
        })?;
        out.insert(name, v);
    }
    Ok(Value::object(out))
}
