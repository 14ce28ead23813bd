//! sprig's reflect.go: `typeOf`, `kindOf`, `typeIs`, `kindIs`, `deepEqual`.

use std::collections::HashMap;

use super::{s, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

/// Go's `reflect.DeepEqual` over our values.
pub(crate) fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Invalid | Value::Nil, Value::Invalid | Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) | (Value::Int64(x), Value::Int64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.elem == y.elem
                && x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        _ => false,
    }
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("typeOf", &[Any], None, |a| {
        vstr(if a[0].is_nil_like() {
            "<nil>".to_string()
        } else {
            a[0].type_name()
        })
    });
    add("typeIs", &[Str, Any], None, |a| {
        Ok(Value::Bool(
            s(&a[0])
                == (if a[1].is_nil_like() {
                    "<nil>".to_string()
                } else {
                    a[1].type_name()
                }),
        ))
    });
    add("typeIsLike", &[Str, Any], None, |a| {
        let t = a[1].type_name();
        Ok(Value::Bool(s(&a[0]) == t || s(&a[0]) == format!("*{t}")))
    });
    add("kindOf", &[Any], None, |a| {
        vstr(if a[0].is_nil_like() {
            "invalid"
        } else {
            a[0].kind_name()
        })
    });
    add("kindIs", &[Str, Any], None, |a| {
        Ok(Value::Bool(
            s(&a[0])
                == (if a[1].is_nil_like() {
                    "invalid"
                } else {
                    a[1].kind_name()
                }),
        ))
    });
    add("deepEqual", &[Any, Any], None, |a| {
        Ok(Value::Bool(deep_equal(&a[0], &a[1])))
    });
}
