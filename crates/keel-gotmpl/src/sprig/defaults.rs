//! sprig's defaults.go: `default`, `empty`, `coalesce`, `all`, `any`,
//! `ternary` (Helm replaces the JSON functions; see helm.rs).

use std::collections::HashMap;

use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

/// sprig's `empty`.
pub(crate) fn empty(v: &Value) -> bool {
    !v.truth()
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Bool};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("default", &[Any], Some(Any), |a| {
        if a.len() < 2 || empty(&a[1]) {
            return Ok(a[0].clone());
        }
        Ok(a[1].clone())
    });
    add("empty", &[Any], None, |a| Ok(Value::Bool(empty(&a[0]))));
    add("coalesce", &[], Some(Any), |a| {
        Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
    });
    add("all", &[], Some(Any), |a| {
        Ok(Value::Bool(a.iter().all(|v| !empty(v))))
    });
    add("any", &[], Some(Any), |a| {
        Ok(Value::Bool(a.iter().any(|v| !empty(v))))
    });
    add("ternary", &[Any, Any, Bool], None, |a| {
        Ok(if matches!(a[2], Value::Bool(true)) {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
}
