//! sprig's dict.go: `dict`, `get`, `set`, `merge`, `dig`, `deepCopy`, …

use std::collections::{BTreeMap, HashMap};

use super::defaults::empty;
use super::strings::strval;
use super::{s, strs, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

pub(crate) fn deep_copy(v: &Value) -> Value {
    match v {
        Value::List(l) => Value::list(l.iter().map(deep_copy).collect()),
        Value::Map(m) => Value::map(
            m.borrow()
                .iter()
                .map(|(k, v)| (k.clone(), deep_copy(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// mergo's Merge / `MergeWithOverwrite` for maps: fills missing (or, with
/// overwrite, non-empty source) keys, recursing into nested maps.
pub(crate) fn merge_into(dst: &Value, src: &Value, overwrite: bool) {
    let (Value::Map(d), Value::Map(sm)) = (dst, src) else {
        return;
    };
    if std::rc::Rc::ptr_eq(d, sm) {
        return;
    }
    let src_entries: Vec<(String, Value)> = sm
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in src_entries {
        let existing = d.borrow().get(&k).cloned();
        match existing {
            Some(dv @ Value::Map(_)) if matches!(sv, Value::Map(_)) => {
                merge_into(&dv, &sv, overwrite);
            }
            Some(dv) => {
                if (overwrite && !empty(&sv))
                    || (!overwrite && empty(&dv) && !matches!(dv, Value::Map(_)))
                {
                    d.borrow_mut().insert(k, sv);
                }
            }
            None => {
                d.borrow_mut().insert(k, sv);
            }
        }
    }
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Map, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("deepCopy", &[Any], None, |a| Ok(deep_copy(&a[0])));
    add("mustDeepCopy", &[Any], None, |a| Ok(deep_copy(&a[0])));
    add("dict", &[], Some(Any), |a| {
        let mut m = BTreeMap::new();
        for pair in a.chunks(2) {
            m.insert(
                strval(&pair[0]),
                pair.get(1).cloned().unwrap_or_else(|| Value::str("")),
            );
        }
        Ok(Value::map(m))
    });
    add("get", &[Map, Str], None, |a| {
        let Value::Map(m) = &a[0] else {
            return vstr("");
        };
        Ok(m.borrow()
            .get(s(&a[1]))
            .cloned()
            .unwrap_or_else(|| Value::str("")))
    });
    add("set", &[Map, Str, Any], None, |a| {
        if let Value::Map(m) = &a[0] {
            m.borrow_mut().insert(s(&a[1]).to_string(), a[2].clone());
        }
        Ok(a[0].clone())
    });
    add("unset", &[Map, Str], None, |a| {
        if let Value::Map(m) = &a[0] {
            m.borrow_mut().remove(s(&a[1]));
        }
        Ok(a[0].clone())
    });
    add("hasKey", &[Map, Str], None, |a| {
        Ok(Value::Bool(
            matches!(&a[0], Value::Map(m) if m.borrow().contains_key(s(&a[1]))),
        ))
    });
    add("pluck", &[Str], Some(Map), |a| {
        Ok(Value::list(
            a[1..]
                .iter()
                .filter_map(|d| match d {
                    Value::Map(m) => m.borrow().get(s(&a[0])).cloned(),
                    _ => None,
                })
                .collect(),
        ))
    });
    add("keys", &[], Some(Map), |a| {
        let mut k = Vec::new();
        for d in a {
            if let Value::Map(m) = d {
                k.extend(m.borrow().keys().cloned());
            }
        }
        Ok(strs(k))
    });
    add("pick", &[Map], Some(Str), |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::map(BTreeMap::new()));
        };
        let m = m.borrow();
        Ok(Value::map(
            a[1..]
                .iter()
                .filter_map(|k| m.get(s(k)).map(|v| (s(k).to_string(), v.clone())))
                .collect(),
        ))
    });
    add("omit", &[Map], Some(Str), |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::map(BTreeMap::new()));
        };
        let m = m.borrow();
        Ok(Value::map(
            m.iter()
                .filter(|(k, _)| !a[1..].iter().any(|o| s(o) == k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    add("values", &[Map], None, |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::list(Vec::new()));
        };
        Ok(Value::list(m.borrow().values().cloned().collect()))
    });
    add("merge", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, false);
        }
        Ok(a[0].clone())
    });
    add("mustMerge", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, false);
        }
        Ok(a[0].clone())
    });
    add("mergeOverwrite", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, true);
        }
        Ok(a[0].clone())
    });
    add("mustMergeOverwrite", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, true);
        }
        Ok(a[0].clone())
    });
    add("dig", &[], Some(Any), |a| {
        if a.len() < 3 {
            return Err("dig needs at least three arguments".into());
        }
        let Value::Map(m) = &a[a.len() - 1] else {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                a[a.len() - 1].type_name()
            ));
        };
        let def = a[a.len() - 2].clone();
        let mut cur = Value::Map(m.clone());
        for k in &a[..a.len() - 2] {
            let Value::Map(mm) = &cur else {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    cur.type_name()
                ));
            };
            let next = mm.borrow().get(s(k)).cloned();
            match next {
                Some(v) => cur = v,
                None => return Ok(def),
            }
        }
        Ok(cur)
    });
}
