//! `terraform console`'s evaluation of one input line: parse, evaluate in a
//! scope, render the value (or `type(...)`'s type) as the console prints it.

use std::collections::BTreeMap;

use crate::diag::Diagnostics;
use crate::eval::{Scope, eval};
use crate::funcs::Functions;
use crate::render::format_value;
use crate::syntax::{Expr, parse_expr};
use crate::value::{Type, Value};

/// Evaluates `line` and renders the result as terraform console does.
pub fn console_line(
    line: &str,
    vars: &BTreeMap<String, Value>,
    funcs: &Functions,
    base_dir: &std::path::Path,
) -> Result<String, Diagnostics> {
    let expr = parse_expr("<console-input>", line)?;
    let scope = Scope {
        vars,
        funcs,
        base_dir: base_dir.to_path_buf(),
    };
    // type() exists only in the console and answers with a type, not a value.
    if let Expr::Call { name, args, .. } = &expr
        && name == "type"
        && args.len() == 1
    {
        let v = eval(&args[0], &scope)?;
        return Ok(type_string(&v.ty(), 0));
    }
    let v = eval(&expr, &scope)?;
    Ok(format_value(&v, 0))
}

/// terraform's `TypeString` for console's `type()`.
pub fn type_string(t: &Type, indent: usize) -> String {
    let pad = " ".repeat(indent + 4);
    let end = " ".repeat(indent);
    match t {
        Type::Dynamic => "dynamic".into(),
        Type::Object(m) if m.is_empty() => "object({})".into(),
        Type::Object(m) => {
            let mut out = String::from("object({\n");
            for (k, v) in m {
                out.push_str(&format!("{pad}{k}: {},\n", type_string(v, indent + 4)));
            }
            out.push_str(&format!("{end}}})"));
            out
        }
        Type::Tuple(ts) if ts.is_empty() => "tuple([])".into(),
        Type::Tuple(ts) => {
            let mut out = String::from("tuple([\n");
            for v in ts {
                out.push_str(&format!("{pad}{},\n", type_string(v, indent + 4)));
            }
            out.push_str(&format!("{end}])"));
            out
        }
        Type::List(e) => format!("list({})", type_string(e, indent)),
        Type::Set(e) => format!("set({})", type_string(e, indent)),
        Type::Map(e) => format!("map({})", type_string(e, indent)),
        t => t.to_string(),
    }
}
