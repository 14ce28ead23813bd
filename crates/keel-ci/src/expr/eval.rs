//! Evaluation with GitHub's semantics: short-circuit `&&`/`||` returning an
//! operand, loose comparisons, `*` filters, and the built-in functions.

use std::sync::Arc;

use super::lexer::Tok;
use super::parser::Expr;
use super::value::{Object, Value, greater, loose_eq, upper_special};

/// Functions supplied by the caller (status functions, `hashFiles`).
pub trait Functions {
    /// `None`: not this host's function.
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
}

/// No extension functions.
#[derive(Debug)]
pub struct NoFunctions;

impl Functions for NoFunctions {
    fn call(&self, _: &str, _: &[Value]) -> Option<Result<Value, String>> {
        None
    }
}

/// GitHub's runner caps what one evaluation may allocate (1 MiB, counting
/// UTF-16 code units as the C# runner does).
pub const MAX_MEMORY: usize = 1 << 20;

pub fn eval(e: &Expr, ctx: &Object, f: &dyn Functions) -> Result<Value, String> {
    let mut mem = 0usize;
    eval_in(e, ctx, f, &mut mem)
}

fn eval_in(e: &Expr, ctx: &Object, f: &dyn Functions, mem: &mut usize) -> Result<Value, String> {
    Ok(match e {
        Expr::Literal(v) => v.clone(),
        Expr::Context(name) => ctx.get(name).cloned().unwrap_or(Value::Null),
        Expr::Group(g) => eval_in(g, ctx, f, mem)?,
        Expr::Not(x) => Value::Bool(!eval_in(x, ctx, f, mem)?.is_truthy()),
        Expr::Binary(l, op, r) => {
            let l = eval_in(l, ctx, f, mem)?;
            let r = eval_in(r, ctx, f, mem)?;
            Value::Bool(match op {
                Tok::EqEq => loose_eq(&l, &r),
                Tok::BangEq => !loose_eq(&l, &r),
                Tok::Gt => greater(&l, &r),
                Tok::Ge => loose_eq(&l, &r) || greater(&l, &r),
                Tok::Lt => greater(&r, &l),
                Tok::Le => loose_eq(&l, &r) || greater(&r, &l),
                _ => return Err(format!("unknown binary operator: {op:?}")),
            })
        }
        Expr::And(args) => {
            let mut last = Value::Null;
            for a in args {
                last = eval_in(a, ctx, f, mem)?;
                if !last.is_truthy() {
                    break;
                }
            }
            last
        }
        Expr::Or(args) => {
            let mut last = Value::Null;
            for a in args {
                last = eval_in(a, ctx, f, mem)?;
                if last.is_truthy() {
                    break;
                }
            }
            last
        }
        Expr::Index(obj, idx) => {
            let idx = match idx {
                None => Idx::Star,
                Some(i) => Idx::of(
                    &eval_in(i, ctx, f, mem)
                        .map_err(|e| format!("could not evaluate index for index access: {e}"))?,
                ),
            };
            let obj = eval_in(obj, ctx, f, mem)?;
            index(&obj, &idx)
        }
        Expr::Call(name, args) => {
            let args = args
                .iter()
                .map(|a| eval_in(a, ctx, f, mem))
                .collect::<Result<Vec<_>, _>>()?;
            let v = call(name, &args, f)?;
            if let Value::String(s) = &v {
                *mem += 2 * s.len() + 32;
                if *mem > MAX_MEMORY {
                    return Err("The maximum allowed memory size was exceeded".into());
                }
            }
            v
        }
    })
}

enum Idx {
    Star,
    Key { s: Option<String>, i: Option<usize> },
}

impl Idx {
    fn of(v: &Value) -> Idx {
        let s = v.is_primitive().then(|| v.coerce_string());
        let n = v.number();
        let i = (n.is_finite() && n >= 0.0).then(|| n.floor() as usize);
        Idx::Key { s, i }
    }
}

fn filtered(items: Vec<Value>) -> Value {
    Value::Array {
        items: Arc::new(items),
        filtered: true,
    }
}

fn index(obj: &Value, idx: &Idx) -> Value {
    match obj {
        Value::Array {
            items,
            filtered: true,
        } => {
            let mut out = Vec::new();
            for item in items.iter() {
                match (item, idx) {
                    (Value::Object(o), Idx::Star) => out.extend(o.values().cloned()),
                    (Value::Object(o), Idx::Key { s: Some(s), .. }) => {
                        if let Some(v) = o.get(s) {
                            out.push(v.clone());
                        }
                    }
                    (Value::Array { items: a, .. }, Idx::Star) => out.extend(a.iter().cloned()),
                    (Value::Array { items: a, .. }, Idx::Key { i: Some(i), .. }) => {
                        if let Some(v) = a.get(*i) {
                            out.push(v.clone());
                        }
                    }
                    _ => {}
                }
            }
            filtered(out)
        }
        Value::Array { items, .. } => match idx {
            Idx::Star => filtered(items.to_vec()),
            Idx::Key { i: Some(i), .. } => items.get(*i).cloned().unwrap_or(Value::Null),
            Idx::Key { .. } => Value::Null,
        },
        Value::Object(o) => match idx {
            Idx::Star => filtered(o.values().cloned().collect()),
            Idx::Key { s: Some(s), .. } => o.get(s).cloned().unwrap_or(Value::Null),
            Idx::Key { .. } => Value::Null,
        },
        _ => match idx {
            Idx::Star => filtered(Vec::new()),
            Idx::Key { .. } => Value::Null,
        },
    }
}

fn call(name: &str, args: &[Value], f: &dyn Functions) -> Result<Value, String> {
    if let Some(r) = f.call(name, args) {
        return r;
    }
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    Ok(match name {
        "contains" => {
            let (l, r) = (arg(0), arg(1));
            Value::Bool(match &l {
                Value::Array { items, .. } => items.iter().any(|v| loose_eq(&r, v)),
                l if l.is_primitive() && r.is_primitive() => l
                    .coerce_string()
                    .to_lowercase()
                    .contains(&r.coerce_string().to_lowercase()),
                _ => false,
            })
        }
        "startswith" | "endswith" => {
            let (l, r) = (arg(0), arg(1));
            if !l.is_primitive() || !r.is_primitive() {
                return Ok(Value::Bool(false));
            }
            let l = upper_special(&l.coerce_string());
            let r = upper_special(&r.coerce_string());
            Value::Bool(if name == "startswith" {
                l.starts_with(&r)
            } else {
                l.ends_with(&r)
            })
        }
        "format" => Value::String(format(&arg(0).coerce_string(), &args[1.min(args.len())..])?),
        "join" => {
            let a = arg(0);
            match &a {
                Value::Array { items, .. } => {
                    let sep = match args.get(1) {
                        Some(s) if s.is_primitive() => s.coerce_string(),
                        _ => ",".into(),
                    };
                    Value::String(
                        items
                            .iter()
                            .map(Value::coerce_string)
                            .collect::<Vec<_>>()
                            .join(&sep),
                    )
                }
                a if a.is_primitive() => Value::String(a.coerce_string()),
                _ => Value::String(String::new()),
            }
        }
        "tojson" => Value::String(arg(0).to_json_pretty()),
        "fromjson" => {
            let s = arg(0).coerce_string();
            if s.trim().is_empty() {
                return Err("empty input".into());
            }
            super::json::parse(&s)
                .map_err(|_| "Error parsing JSON when evaluating fromJson".to_string())?
        }
        "case" => {
            let mut i = 0;
            while i + 1 < args.len() {
                match &args[i] {
                    Value::Bool(true) => return Ok(args[i + 1].clone()),
                    Value::Bool(false) => {}
                    _ => return Err("case predicate must evaluate to a boolean value".into()),
                }
                i += 2;
            }
            args.last().cloned().unwrap_or(Value::Null)
        }
        _ => return Err(format!("Unrecognized function: '{name}'")),
    })
}

/// GitHub's `format`: `{N}` placeholders, `{{`/`}}` escapes.
#[allow(clippy::many_single_char_names)] // l/r/c/i/n as in GitHub's own implementation
fn format(fs: &str, args: &[Value]) -> Result<String, String> {
    let invalid = || format!("The following format string is invalid: {fs}");
    let c: Vec<char> = fs.chars().collect();
    let find = |ch: char, from: usize| {
        c[from.min(c.len())..]
            .iter()
            .position(|&x| x == ch)
            .map(|p| p + from)
    };
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        let l = find('{', i);
        let r = find('}', i);
        match (l, r) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if c.get(l + 1) == Some(&'{') {
                    out.extend(&c[i..=l]);
                    i = l + 2;
                    continue;
                }
                if let Some(r) = r
                    && r > l + 1
                {
                    let digits: String = c[l + 1..]
                        .iter()
                        .take_while(|d| d.is_ascii_digit())
                        .collect();
                    if !digits.is_empty() {
                        // `{0:x}` style specifiers: GitHub reads the index and
                        // ignores the rest up to the brace.
                        let n: usize = digits.parse().map_err(|_| invalid())?;
                        if n >= args.len() {
                            return Err(format!(
                                "The following format string references more arguments than were supplied: {fs}"
                            ));
                        }
                        out.extend(&c[i..l]);
                        out.push_str(&args[n].coerce_string());
                        i = r + 1;
                        continue;
                    }
                }
                return Err(invalid());
            }
            (_, Some(r)) => {
                if c.get(r + 1) == Some(&'}') {
                    out.extend(&c[i..=r]);
                    i = r + 2;
                } else {
                    return Err(invalid());
                }
            }
            _ => {
                out.extend(&c[i..]);
                break;
            }
        }
    }
    Ok(out)
}
