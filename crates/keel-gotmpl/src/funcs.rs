//! Function signatures and Go's builtin functions (`and`, `eq`, `index`, `printf`, …).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::exec::State;
use crate::gofmt;
use crate::value::Value;

/// A Go parameter type, for Go's argument conversion rules and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `interface{}`
    Any,
    /// `reflect.Value`: passed through untouched (invalid stays invalid).
    Value,
    Str,
    Int,
    Int64,
    Float,
    Bool,
    List,
    Map,
    /// `uint32` (sprig's `derivePassword` counter): only constants convert.
    Uint32,
    /// sprig's `certificate` struct (an [`crate::Object`] of that type).
    Cert,
}

impl Ty {
    pub fn go_name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Value => "reflect.Value",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Int64 => "int64",
            Ty::Float => "float64",
            Ty::Bool => "bool",
            Ty::List => "[]interface {}",
            Ty::Map => "map[string]interface {}",
            Ty::Uint32 => "uint32",
            Ty::Cert => crate::sprig::CERT_TYPE,
        }
    }
}

pub type PlainFn = fn(&[Value]) -> Result<Value, String>;
pub(crate) type StateFn = fn(&mut State<'_>, &[Value]) -> Result<Value, String>;

/// How a function is implemented.
#[derive(Clone, Copy)]
pub enum Imp {
    Plain(PlainFn),
    #[allow(private_interfaces)]
    State(StateFn),
    /// `and` (false) / `or` (true): short-circuit, handled by the executor.
    AndOr(bool),
}

/// One function of the map: its Go signature and implementation.
#[derive(Clone)]
pub struct FuncDef {
    pub params: Vec<Ty>,
    pub variadic: Option<Ty>,
    pub imp: Imp,
}

pub(crate) fn def(params: &[Ty], variadic: Option<Ty>, f: PlainFn) -> FuncDef {
    FuncDef {
        params: params.to_vec(),
        variadic,
        imp: Imp::Plain(f),
    }
}

pub(crate) fn builtins() -> HashMap<&'static str, FuncDef> {
    use Ty::{Any, Str, Value as V};
    let mut m = HashMap::new();
    m.insert(
        "and",
        FuncDef {
            params: vec![V],
            variadic: Some(V),
            imp: Imp::AndOr(false),
        },
    );
    m.insert(
        "or",
        FuncDef {
            params: vec![V],
            variadic: Some(V),
            imp: Imp::AndOr(true),
        },
    );
    m.insert("not", def(&[V], None, |a| Ok(Value::Bool(!a[0].truth()))));
    m.insert("len", def(&[V], None, length));
    m.insert("index", def(&[V], Some(V), index));
    m.insert("slice", def(&[V], Some(V), slice));
    m.insert(
        "print",
        def(&[], Some(Any), |a| Ok(Value::string(gofmt::sprint(a)))),
    );
    m.insert(
        "println",
        def(&[], Some(Any), |a| Ok(Value::string(gofmt::sprintln(a)))),
    );
    m.insert(
        "printf",
        def(&[Str], Some(Any), |a| {
            Ok(Value::string(gofmt::sprintf(
                a[0].as_str().unwrap_or(""),
                &a[1..],
            )))
        }),
    );
    m.insert(
        "html",
        def(&[], Some(Any), |a| {
            Ok(Value::string(html_escape(&eval_args(a))))
        }),
    );
    m.insert(
        "js",
        def(&[], Some(Any), |a| {
            Ok(Value::string(js_escape(&eval_args(a))))
        }),
    );
    m.insert(
        "urlquery",
        def(&[], Some(Any), |a| {
            Ok(Value::string(query_escape(&eval_args(a))))
        }),
    );
    m.insert(
        "eq",
        def(&[V], Some(V), |a| eq(&a[0], &a[1..]).map(Value::Bool)),
    );
    m.insert(
        "ne",
        def(&[V, V], None, |a| {
            eq(&a[0], &a[1..2]).map(|b| Value::Bool(!b))
        }),
    );
    m.insert(
        "lt",
        def(&[V, V], None, |a| lt(&a[0], &a[1]).map(Value::Bool)),
    );
    m.insert(
        "le",
        def(&[V, V], None, |a| le(&a[0], &a[1]).map(Value::Bool)),
    );
    m.insert(
        "gt",
        def(&[V, V], None, |a| le(&a[0], &a[1]).map(|b| Value::Bool(!b))),
    );
    m.insert(
        "ge",
        def(&[V, V], None, |a| lt(&a[0], &a[1]).map(|b| Value::Bool(!b))),
    );
    m.insert(
        "call",
        def(&[V], Some(V), |a| {
            Err(match &a[0] {
                Value::Invalid | Value::Nil => "call of nil".to_string(),
                v => format!("non-function of type {}", v.type_name()),
            })
        }),
    );
    m
}

/// Every function: Go's builtins, sprig's text functions, Helm's functions.
pub(crate) fn all() -> HashMap<&'static str, FuncDef> {
    let mut m = builtins();
    crate::sprig::register(&mut m);
    crate::helm::register(&mut m);
    m
}

fn indirect_iface(v: &Value) -> &Value {
    match v {
        Value::Nil => &Value::Invalid,
        v => v,
    }
}

fn length(a: &[Value]) -> Result<Value, String> {
    match &a[0] {
        Value::Invalid => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Nil => Err("len of nil pointer".into()),
        Value::Str(s) => Ok(Value::Int(s.len() as i64)),
        Value::List(l) => Ok(Value::Int(l.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.borrow().len() as i64)),
        Value::Object(o) if o.entries().is_some() => {
            Ok(Value::Int(o.entries().map_or(0, |e| e.len()) as i64))
        }
        Value::Object(o) if o.items().is_some() => {
            Ok(Value::Int(o.items().map_or(0, |e| e.len()) as i64))
        }
        v => Err(format!("len of type {}", v.type_name())),
    }
}

fn index_arg(i: &Value, cap: usize) -> Result<usize, String> {
    let x = match i {
        Value::Int(x) | Value::Int64(x) => *x,
        Value::Invalid | Value::Nil => return Err("cannot index slice/array with nil".into()),
        v => {
            return Err(format!(
                "cannot index slice/array with type {}",
                v.type_name()
            ));
        }
    };
    if x < 0 || x as usize > cap {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index(a: &[Value]) -> Result<Value, String> {
    let mut item = indirect_iface(&a[0]).clone();
    if let Value::Invalid = item {
        return Err("index of untyped nil".into());
    }
    for idx in &a[1..] {
        let idx = indirect_iface(idx);
        item = match &item {
            Value::Nil | Value::Invalid => return Err("index of nil pointer".into()),
            Value::List(l) => {
                let x = index_arg(idx, l.len())?;
                match l.get(x) {
                    Some(v) => v.clone(),
                    None => return Err("reflect: slice index out of range".into()),
                }
            }
            Value::Str(s) => {
                let x = index_arg(idx, s.len())?;
                match s.as_bytes().get(x) {
                    Some(b) => Value::Int(i64::from(*b)),
                    None => return Err("reflect: string index out of range".into()),
                }
            }
            Value::Map(m) => {
                let key = match idx {
                    Value::Str(k) => k.clone(),
                    Value::Invalid | Value::Nil => {
                        return Err("value is nil; should be of type string".into());
                    }
                    v => {
                        return Err(format!(
                            "value has type {}; should be string",
                            v.type_name()
                        ));
                    }
                };
                m.borrow().get(&*key).cloned().unwrap_or(Value::Nil)
            }
            v => return Err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(item)
}

fn slice(a: &[Value]) -> Result<Value, String> {
    let item = indirect_iface(&a[0]);
    if let Value::Invalid = item {
        return Err("slice of untyped nil".into());
    }
    let idxs = &a[1..];
    if idxs.len() > 3 {
        return Err(format!("too many slice indexes: {}", idxs.len()));
    }
    let len = match item {
        Value::Str(s) => {
            if idxs.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::List(l) => l.len(),
        v => return Err(format!("can't slice item of type {}", v.type_name())),
    };
    let mut idx = [0usize, len, len];
    for (i, x) in idxs.iter().enumerate() {
        idx[i] = index_arg(x, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if idxs.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::Str(s) => {
            Value::string(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::List(l) => Value::list(l[idx[0]..idx[1]].to_vec()),
        _ => Value::Invalid,
    })
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::Int64(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Invalid,
    }
}

/// Go 1.21+'s wording (Helm 4 is built with Go 1.25); Go 1.19 said only
/// "incompatible types for comparison".
fn incompatible(a: &Value, b: &Value) -> String {
    format!(
        "incompatible types for comparison: {} and {}",
        a.type_name(),
        b.type_name()
    )
}

pub(crate) fn eq(a1: &Value, rest: &[Value]) -> Result<bool, String> {
    let a1 = indirect_iface(a1);
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a1);
    for a in rest {
        let a = indirect_iface(a);
        let k2 = basic_kind(a);
        let truth = if k1 == k2 {
            match (a1, a) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x), Value::Str(y)) => x == y,
                (x, y) if k1 == Kind::Int => x.as_int() == y.as_int(),
                (Value::Invalid, Value::Invalid) => true,
                (Value::Invalid, _) | (_, Value::Invalid) => false,
                (Value::List(_), Value::List(_)) | (Value::Map(_), Value::Map(_)) => {
                    return Err(format!(
                        "non-comparable type {}: {}",
                        gofmt::sprintf("%s", std::slice::from_ref(a)),
                        a.type_name()
                    ));
                }
                (Value::Object(x), Value::Object(y)) => {
                    std::ptr::addr_eq(std::rc::Rc::as_ptr(x), std::rc::Rc::as_ptr(y))
                }
                (x, y) => {
                    return Err(format!(
                        "non-comparable types {}: {}, {}: {}",
                        gofmt::sprint_value(x),
                        x.type_name(),
                        y.type_name(),
                        gofmt::sprint_value(y)
                    ));
                }
            }
        } else {
            if !matches!(a1, Value::Invalid) && !matches!(a, Value::Invalid) {
                return Err(incompatible(a1, a));
            }
            false
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a1: &Value, a2: &Value) -> Result<bool, String> {
    let a1 = indirect_iface(a1);
    let a2 = indirect_iface(a2);
    let k1 = basic_kind(a1);
    if k1 == Kind::Invalid {
        return Err("invalid type for comparison".into());
    }
    let k2 = basic_kind(a2);
    if k2 == Kind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return Err(incompatible(a1, a2));
    }
    Ok(match (a1, a2) {
        (Value::Bool(_), _) => return Err("invalid type for comparison".into()),
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        (x, y) => x.as_int() < y.as_int(),
    })
}

fn le(a1: &Value, a2: &Value) -> Result<bool, String> {
    if lt(a1, a2)? {
        return Ok(true);
    }
    eq(a1, std::slice::from_ref(a2))
}

/// text/template's evalArgs: one string as is, else `fmt.Sprint` with
/// invalid values shown as `<no value>`.
fn eval_args(a: &[Value]) -> String {
    if let [Value::Str(s)] = a {
        return s.to_string();
    }
    let conv: Vec<Value> = a
        .iter()
        .map(|v| match v {
            Value::Invalid | Value::Nil => Value::str("<no value>"),
            v => v.clone(),
        })
        .collect();
    gofmt::sprint(&conv)
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", c as u32);
            }
            c if c.is_ascii() => out.push(c),
            c if !c.is_control() => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}
