//! sprig's list.go: `list`, `append`, `first`, `uniq`, `slice`, `chunk`, …

use std::collections::HashMap;

use super::defaults::empty;
use super::numeric::to_i64;
use super::reflect::deep_equal;
use super::strings::strslice;
use super::{int, strs};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

pub(super) fn list_items(v: &Value, what: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l.to_vec()),
        Value::Object(o) if o.items().is_some() => Ok(o.items().unwrap_or_default()),
        // reflect.TypeOf(nil).Kind() dereferences a nil pointer in Go
        Value::Invalid | Value::Nil => {
            Err("runtime error: invalid memory address or nil pointer dereference".into())
        }
        v => Err(format!("Cannot {what} on type {}", v.kind_name())),
    }
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Int};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("sortAlpha", &[Any], None, |a| {
        let mut v = strslice(&a[0]);
        v.sort();
        Ok(strs(v))
    });
    add("compact", &[Any], None, |a| {
        Ok(Value::list(
            list_items(&a[0], "compact")?
                .into_iter()
                .filter(|v| !empty(v))
                .collect(),
        ))
    });
    add("mustCompact", &[Any], None, |a| {
        Ok(Value::list(
            list_items(&a[0], "compact")?
                .into_iter()
                .filter(|v| !empty(v))
                .collect(),
        ))
    });
    add("list", &[], Some(Any), |a| Ok(Value::list(a.to_vec())));
    add("tuple", &[], Some(Any), |a| Ok(Value::list(a.to_vec())));
    let push: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "push")?;
        l.push(a[1].clone());
        Ok(Value::list(l))
    };
    add("append", &[Any, Any], None, push);
    add("push", &[Any, Any], None, push);
    add("mustAppend", &[Any, Any], None, push);
    add("mustPush", &[Any, Any], None, push);
    let prepend: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "prepend")?;
        l.insert(0, a[1].clone());
        Ok(Value::list(l))
    };
    add("prepend", &[Any, Any], None, prepend);
    add("mustPrepend", &[Any, Any], None, prepend);
    let first: crate::funcs::PlainFn = |a| {
        Ok(list_items(&a[0], "find first")?
            .first()
            .cloned()
            .unwrap_or(Value::Nil))
    };
    add("first", &[Any], None, first);
    add("mustFirst", &[Any], None, first);
    let last: crate::funcs::PlainFn = |a| {
        Ok(list_items(&a[0], "find last")?
            .last()
            .cloned()
            .unwrap_or(Value::Nil))
    };
    add("last", &[Any], None, last);
    add("mustLast", &[Any], None, last);
    let rest: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find rest")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[1..].to_vec()))
    };
    add("rest", &[Any], None, rest);
    add("mustRest", &[Any], None, rest);
    let initial: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find initial")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[..l.len() - 1].to_vec()))
    };
    add("initial", &[Any], None, initial);
    add("mustInitial", &[Any], None, initial);
    let reverse: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "find reverse")?;
        l.reverse();
        Ok(Value::list(l))
    };
    add("reverse", &[Any], None, reverse);
    add("mustReverse", &[Any], None, reverse);
    let uniq: crate::funcs::PlainFn = |a| {
        let mut out: Vec<Value> = Vec::new();
        for v in list_items(&a[0], "find uniq")? {
            if !out.iter().any(|x| deep_equal(x, &v)) {
                out.push(v);
            }
        }
        Ok(Value::list(out))
    };
    add("uniq", &[Any], None, uniq);
    add("mustUniq", &[Any], None, uniq);
    let without: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find without")?;
        Ok(Value::list(
            l.into_iter()
                .filter(|v| !a[1..].iter().any(|o| deep_equal(o, v)))
                .collect(),
        ))
    };
    add("without", &[Any], Some(Any), without);
    add("mustWithout", &[Any], Some(Any), without);
    let has: crate::funcs::PlainFn = |a| {
        if a[1].is_nil_like() {
            return Ok(Value::Bool(false));
        }
        let l = list_items(&a[1], "find has")?;
        Ok(Value::Bool(l.iter().any(|x| deep_equal(x, &a[0]))))
    };
    add("has", &[Any, Any], None, has);
    add("mustHas", &[Any, Any], None, has);
    let sslice: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "slice")?;
        let len = l.len() as i64;
        let st = a.get(1).map_or(0, to_i64);
        let en = a.get(2).map_or(len, to_i64);
        if st < 0 || en > len || st > en {
            return Err(format!(
                "runtime error: slice bounds out of range [{st}:{en}]"
            ));
        }
        Ok(Value::list(l[st as usize..en as usize].to_vec()))
    };
    add("slice", &[Any], Some(Any), sslice);
    add("mustSlice", &[Any], Some(Any), sslice);
    add("concat", &[], Some(Any), |a| {
        let mut out = Vec::new();
        for l in a {
            match l {
                Value::List(x) => out.extend(x.iter().cloned()),
                v => return Err(format!("Cannot concat type {} as list", v.kind_name())),
            }
        }
        Ok(Value::list(out))
    });
    let chunk: crate::funcs::PlainFn = |a| {
        let size = int(&a[0]);
        let l = list_items(&a[1], "chunk")?;
        if size <= 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::typed_list(
            l.chunks(size as usize)
                .map(|c| Value::list(c.to_vec()))
                .collect(),
            crate::value::Elem::AnyList,
        ))
    };
    add("chunk", &[Int, Any], None, chunk);
    add("mustChunk", &[Int, Any], None, chunk);
}
